//! The real embedded store, in a temporary directory, behind an outage
//! switch: while it is on, every operation fails as a backend would when its
//! disk or database goes away. Tests use it to check that failures reach
//! clients as `internal` / `unavailable` without leaking details.

use async_trait::async_trait;
use huddle::store::EmbeddedStore;
use huddle_actors::ids::{ConversationId, UserId};
use huddle_actors::model::{
    Conversation, Message, NewConversation, NewMessage, Page, RefreshTokenRecord, User,
};
use huddle_actors::store::{AccountStore, ChatStore, DocumentStore, StoreError, StoreResult};
use std::sync::atomic::{AtomicBool, Ordering};

/// An embedded store with an outage switch.
pub struct FaultyStore {
    inner: EmbeddedStore,
    down: AtomicBool,
    _dir: tempfile::TempDir,
}

impl FaultyStore {
    /// A fresh embedded store in its own temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let inner = EmbeddedStore::open(dir.path()).expect("embedded store opens");
        FaultyStore {
            inner,
            down: AtomicBool::new(false),
            _dir: dir,
        }
    }

    /// While `true`, every operation fails with a backend error.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> StoreResult<&EmbeddedStore> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::backend(
                "test store is down",
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "outage switch on"),
            ));
        }
        Ok(&self.inner)
    }
}

#[async_trait]
impl DocumentStore for FaultyStore {
    async fn ping(&self) -> StoreResult<()> {
        self.check()?.ping().await
    }
}

#[async_trait]
impl AccountStore for FaultyStore {
    async fn create_user(&self, user: User) -> StoreResult<User> {
        self.check()?.create_user(user).await
    }
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
        self.check()?.user_by_id(id).await
    }
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.check()?.user_by_email(email).await
    }
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        self.check()?.user_by_username(username).await
    }
    async fn ensure_user(&self, user: User) -> StoreResult<User> {
        self.check()?.ensure_user(user).await
    }
    async fn put_refresh_token(&self, record: RefreshTokenRecord) -> StoreResult<()> {
        self.check()?.put_refresh_token(record).await
    }
    async fn take_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        self.check()?.take_refresh_token(jti).await
    }
}

#[async_trait]
impl ChatStore for FaultyStore {
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)> {
        self.check()?.create_conversation(new).await
    }
    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<Conversation>> {
        self.check()?.conversation(id).await
    }
    async fn conversations_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Conversation>> {
        self.check()?
            .conversations_for_user(user, cursor, limit)
            .await
    }
    async fn append_message(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        self.check()?.append_message(new).await
    }
    async fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        self.check()?
            .messages_before(conversation, before, limit)
            .await
    }
    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        seq: u64,
    ) -> StoreResult<()> {
        self.check()?.mark_read(conversation, user, seq).await
    }
    async fn read_marker(&self, conversation: &ConversationId, user: &UserId) -> StoreResult<u64> {
        self.check()?.read_marker(conversation, user).await
    }
}
