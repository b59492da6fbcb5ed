//! The document store port: everything the core and the HTTP API persist.
//!
//! The core defines the trait; `src/store/` implements it (embedded on-disk
//! store by default, MongoDB when configured). Every backend must pass the same
//! conformance suite (`tests/store_conformance.rs`), so behaviour described in
//! these doc comments is the contract the suite checks.

use crate::ids::{ConversationId, UserId};
use crate::model::{
    Conversation, Message, NewConversation, NewMessage, Page, RefreshTokenRecord, User,
};
use async_trait::async_trait;

/// What can go wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (the message names which).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The record the operation needs does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend failed (I/O, connection, corruption...).
    #[error("store backend error: {message}")]
    Backend {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// Wraps a backend error, keeping it as the source.
    pub fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Backend {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Short alias for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// The persistent document store. Implementations are shared as
/// `Arc<dyn DocumentStore>` and must be safe to call concurrently.
#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// Cheap liveness check for `/ready`.
    async fn ping(&self) -> StoreResult<()>;

    // ---- users ----

    /// Creates a user. `email` and `username` are stored lower-cased by the
    /// caller; a duplicate email or username is `Conflict`.
    async fn create_user(&self, user: User) -> StoreResult<User>;
    /// The user with this id.
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// The user with this (lower-cased) email.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// The user with this (lower-cased) username.
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    /// Returns the user with `user.id`, creating it from `user` when absent
    /// (tokens from another service name users we have never seen). If the
    /// username is taken by someone else, the store picks a free variant
    /// (`name`, `name-2`, ...). Never overwrites an existing user.
    async fn ensure_user(&self, user: User) -> StoreResult<User>;

    // ---- refresh tokens ----

    /// Records an issued refresh token.
    async fn put_refresh_token(&self, record: RefreshTokenRecord) -> StoreResult<()>;
    /// Atomically removes and returns the record for `jti`; `None` when it
    /// is unknown or was already consumed. Two concurrent calls for one `jti`
    /// never both get `Some`.
    async fn take_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshTokenRecord>>;

    // ---- conversations ----

    /// Creates a conversation with `last_seq` 0. When `direct_key` is set and
    /// a conversation with that key exists, returns it instead; the flag says
    /// whether it was created.
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)>;
    /// The conversation with this id.
    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<Conversation>>;
    /// Conversations the user is a member of, newest first, `limit` per page;
    /// `cursor` is the `next_cursor` of the previous page.
    async fn conversations_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Conversation>>;

    // ---- messages ----

    /// Appends a message with the next `seq` of its conversation (gap-free,
    /// from 1, atomic under concurrency). When `client_id` is set and the
    /// sender already has a message with that client id, returns that message
    /// unchanged with `false` (idempotent retry). `NotFound` when the
    /// conversation does not exist.
    async fn append_message(&self, new: NewMessage) -> StoreResult<(Message, bool)>;
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
