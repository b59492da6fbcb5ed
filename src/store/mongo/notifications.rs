//! Notifications in the MongoDB store: one document per notification,
//! listed newest first by a creation `seq` from a counter. The unread count
//! is counted, not kept: `count_documents` over the `(userId, read)` index
//! is always in step with the notifications themselves, which a separate
//! counter could only be with a transaction. After an insert, the `keep`-th
//! newest of the user's notifications is looked up on the `(userId, seq
//! desc)` index (one query, at most `keep` index entries) and everything
//! older is deleted: concurrent creations may both delete, which is
//! idempotent.

use super::*;
use huddle_actors::ids::{new_id, NotificationId};
use huddle_actors::model::{NewNotification, Notification, Page};
use huddle_actors::store::NotificationStore;

/// Counter of creation order.
const NOTIFICATION_SEQ: &str = "notification_seq";

impl MongoStore {
    /// Deletes the user's notifications older than the newest `keep`: the
    /// newest one not kept is looked up, and it and everything older go.
    async fn trim_notifications(&self, user: &str, keep: usize) -> StoreResult<()> {
        let first_gone = self
            .notifications
            .find_one(doc! { "userId": user })
            .sort(doc! { "seq": -1 })
            .skip(u64::try_from(keep).unwrap_or(u64::MAX))
            .projection(doc! { "seq": 1 })
            .await
            .ctx("finding the oldest notifications kept")?;
        if let Some(first_gone) = first_gone {
            let seq = seq_of(&first_gone)?;
            self.notifications
                .delete_many(doc! { "userId": user, "seq": { "$lte": seq } })
                .await
                .ctx("deleting the oldest notifications")?;
        }
        Ok(())
    }
}

#[async_trait]
impl NotificationStore for MongoStore {
    async fn create_notification(
        &self,
        new: NewNotification,
        keep: usize,
    ) -> StoreResult<(Notification, u64)> {
        let seq = self.next_counter(NOTIFICATION_SEQ).await?;
        let notification = Notification {
            id: NotificationId(new_id()),
            user_id: new.user_id,
            kind: new.kind,
            title: new.title,
            body: new.body,
            link: new.link,
            read: false,
            created_at: now(),
            seq: from_stored_seq(seq)?,
        };
        self.notifications
            .insert_one(to_doc(&notification, notification.id.as_str())?)
            .await
            .ctx("inserting a notification")?;
        let user = notification.user_id.as_str();
        if keep > 0 {
            // Best effort: the notification is stored whatever happens here,
            // and the next one trims again.
            if let Err(e) = self.trim_notifications(user, keep).await {
                log::warn!("trimming the notifications of {user}: {e}");
            }
        }
        let unread = self.unread_count(&notification.user_id).await?;
        Ok((notification, unread))
    }

    async fn notifications(
        &self,
        user: &UserId,
        unread_only: bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Notification>> {
        let mut filter = doc! { "userId": user.as_str() };
        if unread_only {
            filter.insert("read", false);
        }
        seq_page(&self.notifications, filter, cursor, limit, true).await
    }

    async fn mark_notification_read(&self, user: &UserId, id: &NotificationId) -> StoreResult<u64> {
        let result = self
            .notifications
            .update_one(
                doc! { "_id": id.as_str(), "userId": user.as_str() },
                doc! { "$set": { "read": true } },
            )
            .await
            .ctx("marking a notification read")?;
        if result.matched_count == 0 {
            return Err(StoreError::NotFound(format!("notification {id}")));
        }
        self.unread_count(user).await
    }

    async fn mark_all_notifications_read(&self, user: &UserId) -> StoreResult<u64> {
        let result = self
            .notifications
            .update_many(
                doc! { "userId": user.as_str(), "read": false },
                doc! { "$set": { "read": true } },
            )
            .await
            .ctx("marking notifications read")?;
        Ok(result.modified_count)
    }

    async fn unread_count(&self, user: &UserId) -> StoreResult<u64> {
        self.notifications
            .count_documents(doc! { "userId": user.as_str(), "read": false })
            .await
            .ctx("counting unread notifications")
    }
}
