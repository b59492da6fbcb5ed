//! Chat in the MongoDB store: conversations (one per `directKey`, listed
//! newest first by their creation `order`), messages whose insert is their
//! seq allocation (see the module above for why), and read markers kept as
//! a maximum with `$max`.

use super::*;
use futures_util::{StreamExt, TryStreamExt};
use huddle_actors::ids::new_id;
use huddle_actors::model::{NewConversation, NewMessage, Page};
use huddle_actors::store::{ChatStore, PendingAppend};

/// Conversations of a listed page whose newest message is looked up at once.
const LAST_SEQ_LOOKUPS: usize = 8;

impl MongoStore {
    async fn conversation_doc(&self, id: &str) -> StoreResult<Option<ConversationDoc>> {
        self.conversations
            .find_one(doc! { "_id": id })
            .await
            .ctx("finding a conversation")
    }

    async fn conversation_by_direct_key(&self, key: &str) -> StoreResult<Option<Conversation>> {
        let found = self
            .conversations
            .find_one(doc! { "directKey": key })
            .await
            .ctx("finding a conversation by direct key")?;
        match found {
            Some(doc) => Ok(Some(self.current(Conversation::try_from(doc)?).await?)),
            None => Ok(None),
        }
    }

    /// The seq of the conversation's newest message, through the
    /// `(conversationId, seq)` index. A message is answered once inserted,
    /// before its conversation's `lastSeq` is raised (see `appender`), so
    /// this, not `lastSeq`, is what a reader is told: a client must never
    /// learn a last seq below a message it was already sent.
    async fn newest_seq(&self, conversation: &str) -> StoreResult<Option<u64>> {
        let newest = self
            .messages
            .clone_with_type::<Document>()
            .find_one(doc! { "conversationId": conversation })
            .sort(doc! { "seq": -1 })
            .projection(doc! { "_id": 0, "seq": 1 })
            .await
            .ctx("finding a conversation's newest message")?;
        Ok(newest.and_then(|d| stored_seq(&d)))
    }

    /// `conversation` with its last seq read from its messages.
    async fn current(&self, conversation: Conversation) -> StoreResult<Conversation> {
        let newest = self.newest_seq(conversation.id.as_str()).await?;
        Ok(counting(conversation, newest))
    }
}

/// `conversation` with a last seq no lower than `newest`, the seq of its
/// newest stored message (its record's `lastSeq` may lag: see `appender`).
fn counting(mut conversation: Conversation, newest: Option<u64>) -> Conversation {
    conversation.last_seq = conversation.last_seq.max(newest.unwrap_or(0));
    conversation
}

#[async_trait]
impl ChatStore for MongoStore {
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)> {
        if let Some(key) = &new.direct_key {
            if let Some(existing) = self.conversation_by_direct_key(key).await? {
                return Ok((existing, false));
            }
        }
        let order = self.next_counter(CONVERSATION_ORDER).await?;
        let mut member_ids = new.member_ids;
        let mut seen = std::collections::HashSet::new();
        member_ids.retain(|id| seen.insert(id.clone()));
        let conversation = Conversation {
            id: ConversationId(new_id()),
            workspace_id: new.workspace_id,
            title: new.title,
            member_ids,
            created_by: new.created_by,
            created_at: now(),
            last_seq: 0,
            direct_key: new.direct_key,
        };
        let doc = ConversationDoc {
            id: conversation.id.0.clone(),
            workspace_id: conversation.workspace_id.clone(),
            title: conversation.title.clone(),
            member_ids: conversation
                .member_ids
                .iter()
                .map(|id| id.0.clone())
                .collect(),
            created_by: conversation.created_by.0.clone(),
            created_at: to_bson_time(conversation.created_at),
            last_seq: 0,
            direct_key: conversation.direct_key.clone(),
            order,
        };
        match self.conversations.insert_one(doc).await {
            Ok(_) => Ok((conversation, true)),
            // Only the direct key can collide (the id is fresh): another
            // caller created the pair's conversation first.
            Err(e) if is_duplicate_key(&e) => {
                let key = conversation.direct_key.as_deref().unwrap_or_default();
                match self.conversation_by_direct_key(key).await? {
                    Some(existing) => Ok((existing, false)),
                    None => Err(StoreError::backend(
                        "inserting a conversation: duplicate key, yet no conversation has its direct key",
                        e,
                    )),
                }
            }
            Err(e) => Err(StoreError::backend("inserting a conversation", e)),
        }
    }

    async fn last_seq(&self, id: &ConversationId) -> StoreResult<Option<u64>> {
        if let Some(seq) = self.newest_seq(id.as_str()).await? {
            return Ok(Some(seq));
        }
        // No message: 0 if the conversation exists.
        let found = self
            .conversations
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id.as_str() })
            .projection(doc! { "_id": 0, "lastSeq": 1 })
            .await
            .ctx("finding a conversation's lastSeq")?;
        Ok(found.map(|d| stored_last_seq(&d).max(0) as u64))
    }

    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<Conversation>> {
        let (doc, newest) = tokio::try_join!(
            self.conversation_doc(id.as_str()),
            self.newest_seq(id.as_str())
        )?;
        let Some(doc) = doc else {
            return Ok(None);
        };
        Ok(Some(counting(Conversation::try_from(doc)?, newest)))
    }

    async fn conversations_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Conversation>> {
        // The cursor is the creation order of the last conversation handed
        // out; the next page starts strictly below it.
        let mut filter = doc! { "memberIds": user.as_str() };
        if let Some(c) = cursor {
            let below = c
                .parse::<i64>()
                .ok()
                .filter(|order| *order > 0)
                .ok_or_else(|| {
                    StoreError::NotFound(format!("conversation cursor {c:?} is not valid"))
                })?;
            filter.insert("order", doc! { "$lt": below });
        }
        let mut page = Page {
            items: Vec::new(),
            next_cursor: None,
        };
        if limit == 0 {
            return Ok(page);
        }
        // One more than asked, to know whether another page exists.
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let docs: Vec<ConversationDoc> = self
            .conversations
            .find(filter)
            .sort(doc! { "order": -1 })
            .limit(fetch)
            .await
            .ctx("listing a user's conversations")?
            .try_collect()
            .await
            .ctx("reading a user's conversations")?;
        let more = docs.len() > limit;
        let mut last_order = 0;
        let mut listed = Vec::with_capacity(limit.min(docs.len()));
        for doc in docs.into_iter().take(limit) {
            last_order = doc.order;
            listed.push(Conversation::try_from(doc)?);
        }
        // Each one's last seq from its messages, a few lookups at a time.
        page.items = futures_util::stream::iter(listed)
            .map(|c| self.current(c))
            .buffered(LAST_SEQ_LOOKUPS)
            .try_collect()
            .await?;
        if more {
            page.next_cursor = Some(last_order.to_string());
        }
        Ok(page)
    }

    async fn append_message(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        self.appender.append(new).await
    }

    fn orders_appends(&self) -> bool {
        // One task per node stores the appends in batches, in queue order.
        true
    }

    fn start_append(&self, new: NewMessage) -> StoreResult<PendingAppend> {
        Ok(Box::pin(self.appender.start_append(new)?))
    }

    async fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "conversationId": conversation.as_str() };
        if let Some(before) = before {
            // A bound past the i64 range excludes nothing.
            if let Ok(before) = i64::try_from(before) {
                filter.insert("seq", doc! { "$lt": before });
            }
        }
        // Walk back from the bound through the index and stop after
        // `limit`: the cost is the page, not the history.
        let docs: Vec<MessageDoc> = self
            .messages
            .find(filter)
            .sort(doc! { "seq": -1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .ctx("reading history")?
            .try_collect()
            .await
            .ctx("reading history")?;
        let mut page = docs
            .into_iter()
            .map(Message::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        page.reverse();
        Ok(page)
    }

    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        seq: u64,
    ) -> StoreResult<()> {
        let filter = doc! { "conversationId": conversation.as_str(), "userId": user.as_str() };
        let update = doc! { "$max": { "seq": to_stored_seq(seq)? } };
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self
                .read_markers
                .update_one(filter.clone(), update.clone())
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                // Two upserts of a new marker: one inserted it, so the next
                // attempt updates it.
                Err(e) if is_duplicate_key(&e) && attempts < 3 => continue,
                Err(e) => return Err(StoreError::backend("marking read", e)),
            }
        }
    }

    async fn read_marker(&self, conversation: &ConversationId, user: &UserId) -> StoreResult<u64> {
        let marker = self
            .read_markers
            .find_one(doc! { "conversationId": conversation.as_str(), "userId": user.as_str() })
            .await
            .ctx("reading a read marker")?;
        marker.map_or(Ok(0), |m| from_stored_seq(m.seq))
    }
}
