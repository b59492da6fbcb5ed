//! Chat: conversations, messages with gap-free `seq`, read markers.

use super::StoreResult;
use crate::ids::{ConversationId, UserId};
use crate::model::{Conversation, Message, NewConversation, NewMessage, Page};
use async_trait::async_trait;
use std::future::Future;
use std::pin::Pin;

/// The answer to an append begun with [`ChatStore::start_append`].
pub type PendingAppend = Pin<Box<dyn Future<Output = StoreResult<(Message, bool)>> + Send>>;

/// Conversations and their messages.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Creates a conversation with `last_seq` 0. When `direct_key` is set and
    /// a conversation with that key exists, returns it instead; the flag says
    /// whether it was created.
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)>;
    /// The conversation with this id.
    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<Conversation>>;
    /// The conversation's `last_seq` (as [`conversation`](Self::conversation)
    /// would give it) without loading the rest of it, member list included;
    /// `None` when it does not exist.
    async fn last_seq(&self, id: &ConversationId) -> StoreResult<Option<u64>>;
    /// Conversations the user is a member of, newest first, `limit` per page;
    /// `cursor` is the `next_cursor` of the previous page.
    async fn conversations_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Conversation>>;

    /// Appends a message with the next `seq` of its conversation (gap-free,
    /// from 1, atomic under concurrency). When `client_id` is set and the
    /// sender already has a message with that client id, returns that message
    /// unchanged with `false` (idempotent retry). `NotFound` when the
    /// conversation does not exist.
    async fn append_message(&self, new: NewMessage) -> StoreResult<(Message, bool)>;
    /// Whether [`start_append`](Self::start_append) is supported: appends
    /// take their seqs in the order they are started, so a caller may start
    /// the next before the last is answered.
    fn orders_appends(&self) -> bool {
        false
    }
    /// Begins [`append_message`](Self::append_message) and fixes its place
    /// before returning: its seq (in its conversation) follows that of every
    /// append started before it. Only where
    /// [`orders_appends`](Self::orders_appends); elsewhere an error.
    fn start_append(&self, new: NewMessage) -> StoreResult<PendingAppend> {
        let _ = new;
        Err(super::StoreError::Backend {
            message: "start_append: this store does not order appends".into(),
            source: None,
        })
    }
    /// Messages with `seq < before` (all when `None`), the newest `limit` of
    /// them, returned oldest first.
    async fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<Message>>;
    /// Records that `user` has read up to `seq` (kept as the maximum seen).
    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        seq: u64,
    ) -> StoreResult<()>;
    /// The highest `seq` the user has marked read (0 when none).
    async fn read_marker(&self, conversation: &ConversationId, user: &UserId) -> StoreResult<u64>;
}
