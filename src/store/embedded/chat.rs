//! Chat in the embedded store: conversations, messages keyed by
//! `(conversation, seq)`, the idempotency index and read markers.

use super::journal::{self, Tail};
use super::*;
use async_trait::async_trait;
use huddle_actors::store::ChatStore;
use huddle_actors::store::PendingAppend;

#[async_trait]
impl ChatStore for EmbeddedStore {
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)> {
        let tail = std::sync::Arc::clone(&self.tail);
        self.write("create_conversation", move |txn| {
            let mut conversations = txn.open_table(CONVERSATIONS).ctx("open conversations")?;
            let mut last_seqs = txn
                .open_table(CONVERSATION_LAST_SEQ)
                .ctx("open conversation_last_seq")?;
            let mut by_direct_key = txn
                .open_table(CONVERSATIONS_BY_DIRECT_KEY)
                .ctx("open conversations_by_direct_key")?;
            if let Some(key) = &new.direct_key {
                if let Some(id) = get_id(&by_direct_key, key)? {
                    let mut existing = load_conversation(&conversations, &last_seqs, &id)?
                        .ok_or_else(|| {
                            StoreError::NotFound(format!(
                                "conversation {id} named by direct key {key} is missing"
                            ))
                        })?;
                    if let Some(seq) = journal::read(&tail).last_seq(&id) {
                        existing.last_seq = seq;
                    }
                    return Ok((existing, false));
                }
            }

            let mut counters = txn.open_table(COUNTERS).ctx("open counters")?;
            let order = counters
                .get(CONVERSATION_ORDER)
                .ctx("reading counter")?
                .map_or(0, |guard| guard.value())
                + 1;
            counters
                .insert(CONVERSATION_ORDER, order)
                .ctx("writing counter")?;

            let mut member_ids = new.member_ids.clone();
            let mut seen = std::collections::HashSet::new();
            member_ids.retain(|id| seen.insert(id.clone()));
            let conversation = Conversation {
                id: ConversationId(new_id()),
                workspace_id: new.workspace_id.clone(),
                title: new.title.clone(),
                member_ids,
                created_by: new.created_by.clone(),
                created_at: Utc::now(),
                last_seq: 0,
                direct_key: new.direct_key.clone(),
            };
            let id = conversation.id.as_str();
            conversations
                .insert(id, encode(&conversation)?.as_slice())
                .ctx("writing conversation")?;
            // The seq row also marks the conversation as existing for appends.
            last_seqs.insert(id, 0).ctx("writing last seq")?;
            if let Some(key) = &conversation.direct_key {
                by_direct_key
                    .insert(key.as_str(), id)
                    .ctx("writing direct key")?;
            }
            let mut by_user = txn
                .open_table(USER_CONVERSATIONS)
                .ctx("open user_conversations")?;
            for member in &conversation.member_ids {
                by_user
                    .insert((member.as_str(), order), id)
                    .ctx("writing membership")?;
            }
            Ok((conversation, true))
        })
        .await
    }

    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<Conversation>> {
        let id = id.clone();
        let key = id.clone();
        self.read_chat(
            "conversation",
            move |tail| tail.last_seq(key.as_str()),
            move |txn, newest| {
                let conversations = txn.open_table(CONVERSATIONS).ctx("open conversations")?;
                let last_seqs = txn
                    .open_table(CONVERSATION_LAST_SEQ)
                    .ctx("open conversation_last_seq")?;
                let mut found = load_conversation(&conversations, &last_seqs, id.as_str())?;
                if let (Some(c), Some(seq)) = (found.as_mut(), newest) {
                    c.last_seq = seq;
                }
                Ok(found)
            },
        )
        .await
    }

    async fn last_seq(&self, id: &ConversationId) -> StoreResult<Option<u64>> {
        let id = id.clone();
        let key = id.clone();
        self.read_chat(
            "last_seq",
            move |tail| tail.last_seq(key.as_str()),
            move |txn, newest| {
                if newest.is_some() {
                    return Ok(newest);
                }
                let last_seqs = txn
                    .open_table(CONVERSATION_LAST_SEQ)
                    .ctx("open conversation_last_seq")?;
                Ok(last_seqs
                    .get(id.as_str())
                    .ctx("reading last seq")?
                    .map(|guard| guard.value()))
            },
        )
        .await
    }

    async fn conversations_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Conversation>> {
        // The cursor is the creation order of the last conversation handed
        // out; the next page starts strictly below it.
        let below = match cursor {
            None => None,
            Some(c) => Some(c.parse::<u64>().map_err(|_| {
                StoreError::NotFound(format!("conversation cursor {c:?} is not valid"))
            })?),
        };
        let user = user.clone();
        self.read_chat(
            "conversations_for_user",
            Tail::last_seqs,
            move |txn, newest| {
                let mut page = Page {
                    items: Vec::new(),
                    next_cursor: None,
                };
                if limit == 0 {
                    return Ok(page);
                }
                let by_user = txn
                    .open_table(USER_CONVERSATIONS)
                    .ctx("open user_conversations")?;
                let conversations = txn.open_table(CONVERSATIONS).ctx("open conversations")?;
                let last_seqs = txn
                    .open_table(CONVERSATION_LAST_SEQ)
                    .ctx("open conversation_last_seq")?;
                let user = user.as_str();
                let range = match below {
                    Some(below) => by_user.range((user, 0u64)..(user, below)),
                    None => by_user.range((user, 0u64)..=(user, u64::MAX)),
                }
                .ctx("scanning user_conversations")?;
                let mut last_order = 0;
                // One more than asked, to know whether another page exists.
                for entry in range.rev().take(limit + 1) {
                    let (key, id) = entry.ctx("reading user_conversations")?;
                    if page.items.len() == limit {
                        page.next_cursor = Some(last_order.to_string());
                        break;
                    }
                    last_order = key.value().1;
                    let id = id.value();
                    let mut conversation = load_conversation(&conversations, &last_seqs, id)?
                        .ok_or_else(|| {
                            StoreError::NotFound(format!("indexed conversation {id} is missing"))
                        })?;
                    if let Some(seq) = newest.get(id) {
                        conversation.last_seq = *seq;
                    }
                    page.items.push(conversation);
                }
                Ok(page)
            },
        )
        .await
    }

    async fn append_message(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        self.writer.append("append_message", append_job(new)).await
    }

    fn orders_appends(&self) -> bool {
        // One writer thread runs the queued writes in order.
        true
    }

    fn start_append(&self, new: NewMessage) -> StoreResult<PendingAppend> {
        let pending = self
            .writer
            .start_append("append_message", append_job(new))?;
        Ok(Box::pin(pending))
    }

    async fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let conversation = conversation.clone();
        let id = conversation.clone();
        self.read_chat(
            "messages_before",
            // The newest messages may still be in the journal's tail.
            move |tail| tail.before(id.as_str(), before, limit),
            move |txn, newest| {
                let mut page = Vec::with_capacity(limit.min(256));
                // redb holds what is below the tail's part.
                let below = newest.first().map(|e| e.seq).or(before);
                let rest = limit - newest.len();
                if rest > 0 {
                    let messages = txn.open_table(MESSAGES).ctx("open messages")?;
                    let conversation = conversation.as_str();
                    let range = match below {
                        Some(below) => messages.range((conversation, 0u64)..(conversation, below)),
                        None => messages.range((conversation, 0u64)..=(conversation, u64::MAX)),
                    }
                    .ctx("scanning messages")?;
                    // Walk back from the bound and stop after `rest`: the
                    // cost is the page, not the history.
                    for entry in range.rev().take(rest) {
                        let (_, value) = entry.ctx("reading message")?;
                        page.push(decode::<Message>(value.value())?);
                    }
                    page.reverse();
                }
                for e in &newest {
                    page.push(decode::<Message>(&e.bytes)?);
                }
                Ok(page)
            },
        )
        .await
    }

    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        seq: u64,
    ) -> StoreResult<()> {
        let conversation = conversation.clone();
        let user = user.clone();
        self.write("mark_read", move |txn| {
            let mut markers = txn.open_table(READ_MARKERS).ctx("open read_markers")?;
            let key = (conversation.as_str(), user.as_str());
            let current = markers
                .get(key)
                .ctx("reading read marker")?
                .map_or(0, |guard| guard.value());
            if seq > current {
                markers.insert(key, seq).ctx("writing read marker")?;
            }
            Ok(())
        })
        .await
    }

    async fn read_marker(&self, conversation: &ConversationId, user: &UserId) -> StoreResult<u64> {
        let conversation = conversation.clone();
        let user = user.clone();
        self.read("read_marker", move |txn| {
            let markers = txn.open_table(READ_MARKERS).ctx("open read_markers")?;
            Ok(markers
                .get((conversation.as_str(), user.as_str()))
                .ctx("reading read marker")?
                .map_or(0, |guard| guard.value()))
        })
        .await
    }
}

/// The writer job of an append: the message goes to the journal (see
/// `journal`); redb is only read.
fn append_job(
    new: NewMessage,
) -> impl Fn(&journal::Redb<'_>, &mut journal::Journal) -> StoreResult<(Message, bool)> + Send + 'static
{
    move |redb, journal| {
        let conversation = new.conversation_id.as_str();
        let Some(last_seq) = journal.last_seq(redb, conversation)? else {
            return Err(StoreError::NotFound(format!("conversation {conversation}")));
        };
        let sender = new.sender_id.as_str();
        if let Some(client_id) = &new.client_id {
            if let Some(original) = journal.original(redb, sender, client_id)? {
                return Ok((decode(&original)?, false));
            }
        }
        let seq = last_seq + 1;
        let message = Message {
            id: MessageId(new_id()),
            conversation_id: new.conversation_id.clone(),
            seq,
            sender_id: new.sender_id.clone(),
            client_id: new.client_id.clone(),
            body: new.body.clone(),
            created_at: Utc::now(),
        };
        let client = new.client_id.as_deref().map(|c| (sender, c));
        journal.append(conversation, seq, client, encode(&message)?)?;
        Ok((message, true))
    }
}
