//! The document store port: everything the core and the HTTP API persist.
//!
//! The core defines the traits; `src/store/` implements them (embedded on-disk
//! store by default, MongoDB when configured). The store is one
//! [`DocumentStore`] made of one trait per area ([`AccountStore`],
//! [`ChatStore`], [`FileStore`], [`UploadSessionStore`], ...), each in its own file, so each area's operations and
//! each backend's implementation of them read on their own. Every backend must
//! pass the same conformance suite (`huddle::store::conformance`), so the
//! behaviour described in these doc comments is the contract the suite checks.
//!
//! Callers bring the area traits into scope with `use
//! huddle_actors::store::prelude::*`.

mod accounts;
mod chat;
mod files;
mod notifications;
mod search;
mod workspaces;

pub use accounts::AccountStore;
pub use chat::{ChatStore, PendingAppend};
pub use files::{FileStore, UploadSessionStore};
pub use notifications::NotificationStore;
pub use search::SearchStore;
pub use workspaces::WorkspaceStore;

use async_trait::async_trait;

/// Everything needed to call the store through `Arc<dyn DocumentStore>`.
pub mod prelude {
    pub use super::{
        AccountStore, ChatStore, DocumentStore, FileStore, NotificationStore, SearchStore,
        StoreError, StoreResult, UploadSessionStore, WorkspaceStore,
    };
}

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

/// The persistent document store: every area's operations, plus a health
/// check. Implementations are shared as `Arc<dyn DocumentStore>` and must be
/// safe to call concurrently.
#[async_trait]
pub trait DocumentStore:
    AccountStore
    + ChatStore
    + WorkspaceStore
    + NotificationStore
    + SearchStore
    + FileStore
    + UploadSessionStore
    + Send
    + Sync
    + 'static
{
    /// Cheap liveness check for `/ready`.
    async fn ping(&self) -> StoreResult<()>;
}
