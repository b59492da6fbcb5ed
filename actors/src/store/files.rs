//! Files: file records, read grants, download tokens ([`FileStore`]), and the
//! resumable state of upload sessions ([`UploadSessionStore`]).
//!
//! Upload-session state has its own small trait because it is the one part
//! that moves to Redis when Redis is configured; without Redis the document
//! store serves it, so it survives a restart either way.

use super::StoreResult;
use crate::ids::UserId;
use crate::model::{DownloadToken, FileRecord, SessionStart, TokenUse, UploadSession};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// File records, who may read them, and download tokens.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Creates a file record. A record with the same id that exists already
    /// is returned unchanged with `false` (finishing an upload twice makes
    /// one file).
    async fn create_file(&self, file: FileRecord) -> StoreResult<(FileRecord, bool)>;
    /// The file with this id.
    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>>;
    /// Lets each of `users` read the file (idempotent). `NotFound` when the
    /// file does not exist.
    async fn grant_file_read(&self, file_id: &str, users: &[UserId]) -> StoreResult<()>;
    /// Whether `user` may read the file: its uploader, a user granted it, or a
    /// member of the workspace of a live task the file is attached to
    /// ([`WorkspaceStore::attach_file`](super::WorkspaceStore::attach_file)).
    async fn can_read_file(&self, file_id: &str, user: &UserId) -> StoreResult<bool>;
    /// Records a download token (keyed by `token_hash`; a duplicate hash is
    /// `Conflict`).
    async fn put_download_token(&self, token: DownloadToken) -> StoreResult<()>;
    /// Presents a token at `now`: atomically marks a valid one-time token
    /// spent, so two concurrent uses never both get `Valid`.
    async fn use_download_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<TokenUse>;
    /// Deletes the download tokens that expired before `expired_before`
    /// (until then an expired token answers 410; after, it is unknown); how
    /// many went.
    async fn purge_download_tokens(&self, expired_before: DateTime<Utc>) -> StoreResult<u64>;
}

/// The resumable state of chunked uploads.
#[async_trait]
pub trait UploadSessionStore: Send + Sync + 'static {
    /// Creates `session` unless the user has one with the same `upload_id`
    /// (returned as `Existing`, whatever its state), or already has
    /// `max_in_progress` sessions in progress (`TooMany`). Atomic: concurrent
    /// calls never exceed the maximum nor create one id twice.
    async fn create_upload_session(
        &self,
        session: UploadSession,
        max_in_progress: usize,
    ) -> StoreResult<SessionStart>;
    /// The user's session with this upload id (in progress or completed).
    async fn upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
    ) -> StoreResult<Option<UploadSession>>;
    /// Indexes of the chunks recorded for the session, ascending.
    async fn received_chunks(&self, user: &UserId, upload_id: &str) -> StoreResult<Vec<u32>>;
    /// Records chunk `index` as durably stored and moves the session's expiry
    /// to `expires_at`. Idempotent. `NotFound` when the session is not in
    /// progress (cancelled, expired, completed). The record itself may be
    /// lost in a crash shortly after (the embedded store makes it durable
    /// within 100 ms): the chunk is then reported missing and sent again.
    async fn record_chunk(
        &self,
        user: &UserId,
        upload_id: &str,
        index: u32,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Marks the session completed with `file_id`: it stops counting as in
    /// progress, its chunk rows go, and it is kept so that initiating the same
    /// upload id answers the file (its `expires_at` stays as it was, at most
    /// a session's lifetime after the completion). `NotFound` when it does
    /// not exist.
    async fn complete_upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
        file_id: &str,
    ) -> StoreResult<()>;
    /// Deletes the completed sessions whose `expires_at` is before
    /// `expired_before`; how many went (a store whose records expire by
    /// themselves, as Redis keys do, has none left to delete).
    async fn purge_completed_upload_sessions(
        &self,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Deletes the session and its chunk rows (cancel, discard, expiry).
    /// Returns whether it existed.
    async fn delete_upload_session(&self, user: &UserId, upload_id: &str) -> StoreResult<bool>;
    /// In-progress sessions whose expiry is before `now` — only `user`'s
    /// when given — at most `limit`.
    async fn expired_upload_sessions(
        &self,
        now: DateTime<Utc>,
        user: Option<&UserId>,
        limit: usize,
    ) -> StoreResult<Vec<UploadSession>>;
}
