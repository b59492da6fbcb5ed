//! Notifications in the embedded store: records by id, a user's list and
//! unread list keyed by `(user, seq)`, and the unread count kept in the same
//! write as every change to it. A user's total is kept too, so creating one
//! past the number kept deletes the oldest (at most 1000 in one creation)
//! without counting the list (a user without a total, from before it was
//! kept, is counted once).

use super::workspaces::{load_all, next_seq, page_of_ids, seq_cursor};
use super::*;
use async_trait::async_trait;
use huddle_actors::ids::NotificationId;
use huddle_actors::model::{NewNotification, Notification};
use huddle_actors::store::NotificationStore;

/// notification id → `Notification` (JSON).
pub(super) const NOTIFICATIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("notifications");
/// (user id, seq) → notification id: all of a user's notifications.
pub(super) const USER_NOTIFICATIONS: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("user_notifications");
/// (user id, seq) → notification id: the unread ones.
pub(super) const USER_UNREAD: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("user_unread_notifications");
/// user id → number of unread notifications.
pub(super) const UNREAD_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("unread_counts");
/// user id → number of notifications (read or not).
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("notification_totals");
/// Notifications one write of "mark all read" marks at most.
const READ_ALL_BATCH: usize = 500;
/// Notifications one creation deletes at most past the number kept (a list
/// from before the limit, or a limit lowered, shrinks over several).
const TRIM_BATCH: u64 = 1000;

/// Opens every table of this area.
pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(NOTIFICATIONS).ctx("open notifications")?;
    txn.open_table(USER_NOTIFICATIONS)
        .ctx("open user_notifications")?;
    txn.open_table(USER_UNREAD).ctx("open user_unread")?;
    txn.open_table(UNREAD_COUNTS).ctx("open unread_counts")?;
    txn.open_table(TOTALS).ctx("open notification_totals")?;
    Ok(())
}

fn count(table: &impl ReadableTable<&'static str, u64>, user: &str) -> StoreResult<u64> {
    Ok(table
        .get(user)
        .ctx("reading unread count")?
        .map_or(0, |g| g.value()))
}

#[async_trait]
impl NotificationStore for EmbeddedStore {
    async fn create_notification(
        &self,
        new: NewNotification,
        keep: usize,
    ) -> StoreResult<(Notification, u64)> {
        self.write("create_notification", move |txn| {
            let seq = next_seq(txn, "notification_seq")?;
            let n = Notification {
                id: NotificationId(new_id()),
                user_id: new.user_id.clone(),
                kind: new.kind.clone(),
                title: new.title.clone(),
                body: new.body.clone(),
                link: new.link.clone(),
                read: false,
                created_at: Utc::now(),
                seq,
            };
            let user = n.user_id.as_str();
            let mut t = txn.open_table(NOTIFICATIONS).ctx("open notifications")?;
            t.insert(n.id.as_str(), encode(&n)?.as_slice())
                .ctx("writing notification")?;
            let mut all = txn
                .open_table(USER_NOTIFICATIONS)
                .ctx("open user_notifications")?;
            let mut totals = txn.open_table(TOTALS).ctx("open notification_totals")?;
            let mut total = match totals.get(user).ctx("reading notification total")? {
                Some(g) => g.value(),
                None => all
                    .range((user, 0u64)..=(user, u64::MAX))
                    .ctx("counting notifications")?
                    .count() as u64,
            };
            all.insert((user, seq), n.id.as_str())
                .ctx("writing notification index")?;
            total += 1;
            let mut unread = txn.open_table(USER_UNREAD).ctx("open user_unread")?;
            unread
                .insert((user, seq), n.id.as_str())
                .ctx("writing unread index")?;
            let mut counts = txn.open_table(UNREAD_COUNTS).ctx("open unread_counts")?;
            let mut c = count(&counts, user)? + 1;
            // The oldest beyond the newest `keep` go, read or not.
            if keep > 0 && total > keep as u64 {
                let mut oldest = Vec::new();
                for entry in all
                    .range((user, 0u64)..=(user, u64::MAX))
                    .ctx("scanning notifications")?
                    .take(usize::try_from((total - keep as u64).min(TRIM_BATCH)).unwrap_or(0))
                {
                    let (k, v) = entry.ctx("reading notification index")?;
                    oldest.push((k.value().1, v.value().to_owned()));
                }
                for (old_seq, id) in &oldest {
                    all.remove((user, *old_seq))
                        .ctx("removing notification index")?;
                    t.remove(id.as_str()).ctx("removing notification")?;
                    if unread
                        .remove((user, *old_seq))
                        .ctx("removing unread index")?
                        .is_some()
                    {
                        c = c.saturating_sub(1);
                    }
                }
                total -= oldest.len() as u64;
            }
            counts.insert(user, c).ctx("writing unread count")?;
            totals
                .insert(user, total)
                .ctx("writing notification total")?;
            drop((t, all, unread, counts, totals));
            Ok((n, c))
        })
        .await
    }

    async fn notifications(
        &self,
        user: &UserId,
        unread_only: bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Notification>> {
        let cursor = seq_cursor(cursor)?;
        let user = user.clone();
        self.read("notifications", move |txn| {
            let index = if unread_only {
                txn.open_table(USER_UNREAD).ctx("open user_unread")?
            } else {
                txn.open_table(USER_NOTIFICATIONS)
                    .ctx("open user_notifications")?
            };
            let (ids, next_cursor) = page_of_ids(&index, user.as_str(), cursor, limit, true)?;
            let t = txn.open_table(NOTIFICATIONS).ctx("open notifications")?;
            Ok(Page {
                items: load_all(&t, &ids)?,
                next_cursor,
            })
        })
        .await
    }

    async fn mark_notification_read(&self, user: &UserId, id: &NotificationId) -> StoreResult<u64> {
        let (user, id) = (user.clone(), id.clone());
        self.write("mark_notification_read", move |txn| {
            let mut t = txn.open_table(NOTIFICATIONS).ctx("open notifications")?;
            let mut n: Notification = match get_json::<Notification>(&t, id.as_str())? {
                Some(n) if n.user_id == user => n,
                _ => return Err(StoreError::NotFound(format!("notification {id}"))),
            };
            let mut counts = txn.open_table(UNREAD_COUNTS).ctx("open unread_counts")?;
            let mut c = count(&counts, user.as_str())?;
            if !n.read {
                n.read = true;
                t.insert(id.as_str(), encode(&n)?.as_slice())
                    .ctx("writing notification")?;
                let mut unread = txn.open_table(USER_UNREAD).ctx("open user_unread")?;
                unread
                    .remove((user.as_str(), n.seq))
                    .ctx("removing unread index")?;
                c = c.saturating_sub(1);
                counts
                    .insert(user.as_str(), c)
                    .ctx("writing unread count")?;
            }
            Ok(c)
        })
        .await
    }

    /// In writes of at most `READ_ALL_BATCH` notifications each, oldest
    /// first, so a user with very many unread ones does not hold the writer
    /// (and every other write) for one long transaction.
    async fn mark_all_notifications_read(&self, user: &UserId) -> StoreResult<u64> {
        let mut total = 0;
        loop {
            let user = user.clone();
            let marked = self
                .write("mark_all_notifications_read", move |txn| {
                    let mut unread = txn.open_table(USER_UNREAD).ctx("open user_unread")?;
                    let mut t = txn.open_table(NOTIFICATIONS).ctx("open notifications")?;
                    let u = user.as_str();
                    let mut entries = Vec::new();
                    for entry in unread
                        .range((u, 0u64)..=(u, u64::MAX))
                        .ctx("scanning unread")?
                        .take(READ_ALL_BATCH)
                    {
                        let (k, v) = entry.ctx("reading unread")?;
                        entries.push((k.value().1, v.value().to_owned()));
                    }
                    for (seq, id) in &entries {
                        if let Some(mut n) = get_json::<Notification>(&t, id)? {
                            n.read = true;
                            t.insert(id.as_str(), encode(&n)?.as_slice())
                                .ctx("writing notification")?;
                        }
                        unread.remove((u, *seq)).ctx("removing unread index")?;
                    }
                    let mut counts = txn.open_table(UNREAD_COUNTS).ctx("open unread_counts")?;
                    // The last write leaves none unread (later ones have
                    // higher seqs and were in its range).
                    let left = if entries.len() < READ_ALL_BATCH {
                        0
                    } else {
                        count(&counts, u)?.saturating_sub(entries.len() as u64)
                    };
                    counts.insert(u, left).ctx("writing unread count")?;
                    Ok(entries.len())
                })
                .await?;
            total += marked as u64;
            if marked < READ_ALL_BATCH {
                return Ok(total);
            }
        }
    }

    async fn unread_count(&self, user: &UserId) -> StoreResult<u64> {
        let user = user.clone();
        self.read("unread_count", move |txn| {
            let counts = txn.open_table(UNREAD_COUNTS).ctx("open unread_counts")?;
            count(&counts, user.as_str())
        })
        .await
    }
}
