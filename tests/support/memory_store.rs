//! `TestMemoryStore`: a simple, complete in-memory `DocumentStore` for the HTTP
//! tests, written to the trait's documented contract (uniqueness, atomic
//! refresh-token consumption, gap-free per-conversation seqs, idempotent
//! client ids, newest-first conversation pages).
//!
//! Test-only. It exists because the embedded on-disk store is being written
//! on another branch; at merge the tests switch to the real store, which must
//! pass the shared conformance suite. It also has an outage switch so tests
//! can see how the API answers when the store fails.

use async_trait::async_trait;
use chrono::Utc;
use huddle_actors::ids::{new_id, ConversationId, MessageId, UserId};
use huddle_actors::model::{
    Conversation, Message, NewConversation, NewMessage, Page, RefreshTokenRecord, User,
};
use huddle_actors::store::{DocumentStore, StoreError, StoreResult};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
struct Inner {
    users: HashMap<UserId, User>,
    by_email: HashMap<String, UserId>,
    by_username: HashMap<String, UserId>,
    refresh: HashMap<String, RefreshTokenRecord>,
    /// Conversations with their creation order (for newest-first pages).
    conversations: HashMap<ConversationId, (u64, Conversation)>,
    next_order: u64,
    by_direct_key: HashMap<String, ConversationId>,
    messages: HashMap<ConversationId, Vec<Message>>,
    by_client_id: HashMap<(UserId, String), (ConversationId, u64)>,
    read: HashMap<(ConversationId, UserId), u64>,
}

/// The in-memory test store.
#[derive(Default)]
pub struct TestMemoryStore {
    inner: Mutex<Inner>,
    down: AtomicBool,
}

impl TestMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// While `true`, every operation fails with a backend error.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn lock(&self) -> StoreResult<std::sync::MutexGuard<'_, Inner>> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::backend(
                "test store is down",
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "outage switch on"),
            ));
        }
        Ok(self.inner.lock().unwrap())
    }
}

fn insert_user(inner: &mut Inner, user: User) -> StoreResult<User> {
    if inner.users.contains_key(&user.id) {
        return Err(StoreError::Conflict(format!("user id {} exists", user.id)));
    }
    if let Some(email) = &user.email {
        if inner.by_email.contains_key(email) {
            return Err(StoreError::Conflict("email taken".into()));
        }
    }
    if inner.by_username.contains_key(&user.username) {
        return Err(StoreError::Conflict("username taken".into()));
    }
    if let Some(email) = &user.email {
        inner.by_email.insert(email.clone(), user.id.clone());
    }
    inner
        .by_username
        .insert(user.username.clone(), user.id.clone());
    inner.users.insert(user.id.clone(), user.clone());
    Ok(user)
}

#[async_trait]
impl DocumentStore for TestMemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        self.lock().map(|_| ())
    }

    async fn create_user(&self, user: User) -> StoreResult<User> {
        let mut inner = self.lock()?;
        insert_user(&mut inner, user)
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
        Ok(self.lock()?.users.get(id).cloned())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let inner = self.lock()?;
        Ok(inner
            .by_email
            .get(email)
            .and_then(|id| inner.users.get(id))
            .cloned())
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let inner = self.lock()?;
        Ok(inner
            .by_username
            .get(username)
            .and_then(|id| inner.users.get(id))
            .cloned())
    }

    async fn ensure_user(&self, mut user: User) -> StoreResult<User> {
        let mut inner = self.lock()?;
        if let Some(existing) = inner.users.get(&user.id) {
            return Ok(existing.clone());
        }
        let base = user.username.clone();
        let mut n = 2;
        while inner.by_username.contains_key(&user.username) {
            user.username = format!("{base}-{n}");
            n += 1;
        }
        if user
            .email
            .as_ref()
            .is_some_and(|e| inner.by_email.contains_key(e))
        {
            user.email = None;
        }
        insert_user(&mut inner, user)
    }

    async fn put_refresh_token(&self, record: RefreshTokenRecord) -> StoreResult<()> {
        self.lock()?.refresh.insert(record.jti.clone(), record);
        Ok(())
    }

    async fn take_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        Ok(self.lock()?.refresh.remove(jti))
    }

    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)> {
        let mut inner = self.lock()?;
        if let Some(key) = &new.direct_key {
            if let Some(id) = inner.by_direct_key.get(key) {
                let (_, existing) = &inner.conversations[id];
                return Ok((existing.clone(), false));
            }
        }
        let conversation = Conversation {
            id: ConversationId(new_id()),
            workspace_id: new.workspace_id,
            title: new.title,
            member_ids: new.member_ids,
            created_by: new.created_by,
            created_at: Utc::now(),
            last_seq: 0,
            direct_key: new.direct_key,
        };
        let order = inner.next_order;
        inner.next_order += 1;
        if let Some(key) = &conversation.direct_key {
            inner
                .by_direct_key
                .insert(key.clone(), conversation.id.clone());
        }
        inner
            .conversations
            .insert(conversation.id.clone(), (order, conversation.clone()));
        Ok((conversation, true))
    }

    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<Conversation>> {
        Ok(self.lock()?.conversations.get(id).map(|(_, c)| c.clone()))
    }

    async fn conversations_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Conversation>> {
        let inner = self.lock()?;
        let below = match cursor {
            None => u64::MAX,
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| StoreError::NotFound(format!("cursor {c:?}")))?,
        };
        let mut mine: Vec<&(u64, Conversation)> = inner
            .conversations
            .values()
            .filter(|(order, c)| *order < below && c.member_ids.contains(user))
            .collect();
        mine.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        let more = mine.len() > limit;
        let page: Vec<&(u64, Conversation)> = mine.into_iter().take(limit).collect();
        let next_cursor = if more {
            page.last().map(|(order, _)| order.to_string())
        } else {
            None
        };
        Ok(Page {
            items: page.into_iter().map(|(_, c)| c.clone()).collect(),
            next_cursor,
        })
    }

    async fn append_message(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        let mut inner = self.lock()?;
        if let Some(client_id) = &new.client_id {
            if let Some((conv, seq)) = inner
                .by_client_id
                .get(&(new.sender_id.clone(), client_id.clone()))
            {
                let original = inner.messages[conv][(*seq - 1) as usize].clone();
                return Ok((original, false));
            }
        }
        let (_, conversation) = inner
            .conversations
            .get_mut(&new.conversation_id)
            .ok_or_else(|| StoreError::NotFound(format!("conversation {}", new.conversation_id)))?;
        conversation.last_seq += 1;
        let seq = conversation.last_seq;
        let message = Message {
            id: MessageId(new_id()),
            conversation_id: new.conversation_id.clone(),
            seq,
            sender_id: new.sender_id.clone(),
            client_id: new.client_id.clone(),
            body: new.body,
            created_at: Utc::now(),
        };
        inner
            .messages
            .entry(new.conversation_id.clone())
            .or_default()
            .push(message.clone());
        if let Some(client_id) = new.client_id {
            inner
                .by_client_id
                .insert((new.sender_id, client_id), (new.conversation_id, seq));
        }
        Ok((message, true))
    }

    async fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let inner = self.lock()?;
        let all = inner
            .messages
            .get(conversation)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let eligible: Vec<&Message> = all
            .iter()
            .filter(|m| before.is_none_or(|b| m.seq < b))
            .collect();
        let start = eligible.len().saturating_sub(limit);
        Ok(eligible[start..].iter().map(|m| (*m).clone()).collect())
    }

    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        seq: u64,
    ) -> StoreResult<()> {
        let mut inner = self.lock()?;
        let marker = inner
            .read
            .entry((conversation.clone(), user.clone()))
            .or_insert(0);
        *marker = (*marker).max(seq);
        Ok(())
    }

    async fn read_marker(&self, conversation: &ConversationId, user: &UserId) -> StoreResult<u64> {
        Ok(self
            .lock()?
            .read
            .get(&(conversation.clone(), user.clone()))
            .copied()
            .unwrap_or(0))
    }
}
