//! The upload actor: one per upload session that is being worked on.
//!
//! It owns the session's in-memory view — the record and the set of chunks
//! durably stored — and serializes everything done to the session: each chunk
//! is checked (session, index, size, checksum, first bytes), written to the
//! blob store as a part, then recorded in the upload-session store, and only
//! then counted; `complete_upload` assembles the parts into the blob (hashing
//! as it streams), creates the file record and marks the session completed;
//! `cancel_upload` deletes parts and state. It emits `upload_progress`
//! (throttled), `upload_completed`, `upload_cancelled` and `upload_error` to
//! room `user:{id}` of `/file-upload`, so every device of the user sees them.
//!
//! The `/file-upload` namespace starts it on the first message for a session
//! (loading the state from the store, so a resume after a restart or from
//! another device continues where the server stands) and sends it
//! [`ReceiveChunk`], [`Complete`], [`Cancel`] and [`Stop`]. It stops once the
//! session is completed, cancelled or discarded, when told to ([`Stop`]: the
//! session expired or was replaced), or after `actor_idle` without a message;
//! its state is durable, so stopping loses nothing. Memory per upload is
//! bounded: one chunk in flight at a time plus a bitset of the chunks.

use crate::blob::{BlobError, BlobStore};
use crate::engine::Engine;
use crate::events::{DomainEvent, TaskChange};
use crate::ids::{RoomName, TaskId, UploadId, UserId};
use crate::model::{FileRecord, Task, UploadSession, UploadTarget};
use crate::store::{DocumentStore, StoreError, UploadSessionStore};
use crate::upload_rules::{content_agrees, is_text, sha256_hex, ChunkSet, UploadConfig};
use crate::wire;
use actix::prelude::*;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The namespace the actor's events go to.
pub const NSP: &str = "/file-upload";
/// Most missing chunk indexes listed in an `incomplete` error.
pub const MAX_MISSING_LISTED: usize = 1000;

/// What uploads need from the node: stores, blobs, settings.
#[derive(Clone)]
pub struct UploadDeps {
    /// File records and conversations (for a conversation target).
    pub store: Arc<dyn DocumentStore>,
    /// Resumable session state (the document store now, Redis later).
    pub sessions: Arc<dyn UploadSessionStore>,
    /// Where the bytes go.
    pub blobs: Arc<dyn BlobStore>,
    /// Limits and timers.
    pub config: Arc<UploadConfig>,
}

/// The live upload actors of a node, by (user, upload id), with the
/// generation that lets a stopping actor remove only its own entry.
pub type UploadRegistry =
    Arc<Mutex<std::collections::HashMap<(UserId, UploadId), (u64, Addr<Upload>)>>>;

/// Why an upload operation failed; each maps to a contract error code.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Unknown or stale session (`not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The user may not do this (`forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// Invalid chunk or request (`bad_request`).
    #[error("{0}")]
    BadRequest(String),
    /// A chunk's or the file's SHA-256 differs (`checksum_mismatch`).
    #[error("{0}")]
    ChecksumMismatch(String),
    /// The bytes are not of the declared type (`unsupported_media_type`);
    /// the session has been discarded.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The target task cannot take the file (`conflict`: it has the most
    /// attachments already); the session is kept.
    #[error("{0}")]
    Conflict(String),
    /// Chunks are missing (`incomplete`).
    #[error("{count} chunks are missing")]
    Incomplete {
        /// The first missing indexes (at most [`MAX_MISSING_LISTED`]).
        missing: Vec<u32>,
        /// How many are missing in all.
        count: u32,
    },
    /// A store failed (`internal`; the cause is logged).
    #[error("upload state store: {0}")]
    Store(#[from] StoreError),
    /// The blob store failed (`internal`; the cause is logged).
    #[error("blob store: {0}")]
    Blob(#[from] BlobError),
}

impl UploadError {
    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::NotFound(_) | UploadError::Store(StoreError::NotFound(_)) => "not_found",
            UploadError::BadRequest(_) => "bad_request",
            UploadError::Forbidden(_) => "forbidden",
            UploadError::ChecksumMismatch(_) => "checksum_mismatch",
            UploadError::UnsupportedMediaType(_) => "unsupported_media_type",
            UploadError::Conflict(_) => "conflict",
            UploadError::Incomplete { .. } => "incomplete",
            UploadError::Store(_) | UploadError::Blob(_) => "internal",
        }
    }

    /// The error as the client sees it, `{ code, message }` (plus
    /// `missingChunks` for `incomplete`); internal details stay in the log.
    pub fn to_json(&self) -> Value {
        match self {
            UploadError::Incomplete { missing, count } => json!({
                "code": self.code(),
                "message": self.to_string(),
                "missingChunks": missing,
                "missingCount": count,
            }),
            UploadError::Store(StoreError::NotFound(_)) => {
                json!({ "code": "not_found", "message": "upload session not found" })
            }
            UploadError::Store(_) | UploadError::Blob(_) => {
                log::error!(
                    "upload failed: {self}: {:?}",
                    std::error::Error::source(self)
                );
                json!({ "code": "internal", "message": "internal error" })
            }
            other => json!({ "code": other.code(), "message": other.to_string() }),
        }
    }
}

/// A chunk for the session: `data` already decoded from base64 or taken
/// from the binary attachment.
#[derive(Message)]
#[rtype(result = "Result<ChunkStored, UploadError>")]
pub struct ReceiveChunk {
    pub session_id: String,
    pub index: u32,
    pub data: Bytes,
    /// Expected SHA-256 of `data`, normalized lower-case hex.
    pub checksum: Option<String>,
}

/// A chunk is stored (now or before: a repeated chunk is accepted once).
#[derive(Debug, Clone, Copy)]
pub struct ChunkStored {
    pub index: u32,
    /// `false` when it was stored before.
    pub new: bool,
}

/// Assemble, verify and record the file.
#[derive(Message)]
#[rtype(result = "Result<FileRecord, UploadError>")]
pub struct Complete {
    pub session_id: String,
}

/// Delete parts and state.
#[derive(Message)]
#[rtype(result = "Result<(), UploadError>")]
pub struct Cancel {
    pub session_id: String,
    pub reason: Option<String>,
}

/// Stop now (the session expired or a new one replaced it); nothing is
/// written.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// The actor of one upload session.
pub struct Upload {
    session: UploadSession,
    received: ChunkSet,
    /// Chunks being written now (several of one upload may be in flight).
    writing: HashSet<u32>,
    deps: UploadDeps,
    /// For the events to the user's devices.
    engine: Engine,
    registry: UploadRegistry,
    generation: u64,
    last_activity: Instant,
    last_progress: Option<Instant>,
    /// Set once the session is completed, cancelled or discarded.
    finished: bool,
}

impl Upload {
    /// An actor for `session` with the chunks already stored, emitting
    /// through `engine`; registered under `generation` in `registry`.
    pub fn new(
        session: UploadSession,
        chunks: &[u32],
        deps: UploadDeps,
        engine: Engine,
        registry: UploadRegistry,
        generation: u64,
    ) -> Self {
        let mut received = ChunkSet::new(session.total_chunks);
        for i in chunks {
            received.insert(*i);
        }
        Upload {
            session,
            received,
            writing: HashSet::new(),
            deps,
            engine,
            registry,
            generation,
            last_activity: Instant::now(),
            last_progress: None,
            finished: false,
        }
    }

    fn key(&self) -> (UserId, UploadId) {
        (
            self.session.user_id.clone(),
            UploadId(self.session.upload_id.clone()),
        )
    }

    /// Emits to every device of the user.
    fn emit_user(engine: &Engine, user: &UserId, event: &str, data: &Value) {
        engine.emit(NSP, &[RoomName(format!("user:{user}"))], None, event, data);
    }

    fn check_session(&self, session_id: &str) -> Result<(), UploadError> {
        if self.finished || session_id != self.session.session_id {
            return Err(UploadError::NotFound(
                "unknown sessionId for this uploadId; initiate the upload again".to_owned(),
            ));
        }
        Ok(())
    }

    fn check_chunk(&self, msg: &ReceiveChunk) -> Result<(), UploadError> {
        self.check_session(&msg.session_id)?;
        let Some(expected) = self.session.expected_chunk_len(msg.index) else {
            return Err(UploadError::BadRequest(format!(
                "chunkIndex {} is out of range (0 to {})",
                msg.index,
                self.session.total_chunks.saturating_sub(1)
            )));
        };
        if msg.data.len() as u64 != expected {
            return Err(UploadError::BadRequest(format!(
                "chunk {} must be {expected} bytes, got {}",
                msg.index,
                msg.data.len()
            )));
        }
        if let Some(sum) = &msg.checksum {
            if *sum != sha256_hex(&msg.data) {
                return Err(UploadError::ChecksumMismatch(format!(
                    "chunk {} does not match its checksum",
                    msg.index
                )));
            }
        }
        Ok(())
    }

    fn progress(&mut self, force: bool) {
        let now = Instant::now();
        let due = self
            .last_progress
            .is_none_or(|t| now.duration_since(t) >= self.deps.config.progress_interval);
        if !(force || due) {
            return;
        }
        self.last_progress = Some(now);
        let s = &self.session;
        let completed = self.received.count();
        let bytes: u64 = if self.received.contains(s.total_chunks - 1) {
            u64::from(completed - 1) * u64::from(s.chunk_size)
                + s.expected_chunk_len(s.total_chunks - 1).unwrap_or(0)
        } else {
            u64::from(completed) * u64::from(s.chunk_size)
        };
        let progress = u64::from(completed) * 100 / u64::from(s.total_chunks.max(1));
        Self::emit_user(
            &self.engine,
            &s.user_id,
            "upload_progress",
            &json!({
                "uploadId": s.upload_id,
                "progress": progress,
                "completedChunks": completed,
                "totalChunks": s.total_chunks,
                "bytesReceived": bytes,
            }),
        );
    }

    /// Deletes parts and state; used by cancel and by discarding.
    async fn discard(deps: &UploadDeps, session: &UploadSession) -> Result<(), UploadError> {
        deps.blobs.delete_parts(&session.session_id).await?;
        deps.sessions
            .delete_upload_session(&session.user_id, &session.upload_id)
            .await?;
        Ok(())
    }
}

impl Actor for Upload {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let idle = self.deps.config.actor_idle;
        ctx.run_interval(
            idle / 4 + std::time::Duration::from_millis(1),
            move |act, ctx| {
                if act.last_activity.elapsed() >= idle {
                    ctx.stop();
                }
            },
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let key = self.key();
        let mut live = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if live.get(&key).is_some_and(|(g, _)| *g == self.generation) {
            live.remove(&key);
        }
    }
}

impl Handler<ReceiveChunk> for Upload {
    type Result = ResponseActFuture<Self, Result<ChunkStored, UploadError>>;

    fn handle(&mut self, msg: ReceiveChunk, _ctx: &mut Context<Self>) -> Self::Result {
        self.last_activity = Instant::now();
        let index = msg.index;
        if let Err(e) = self.check_chunk(&msg) {
            return Box::pin(fut::ready(Err(e)));
        }
        if self.received.contains(index) {
            return Box::pin(fut::ready(Ok(ChunkStored { index, new: false })));
        }
        if self.writing.contains(&index) {
            return Box::pin(fut::ready(Err(UploadError::Conflict(format!(
                "chunk {index} is being written by an earlier send; wait for its answer"
            )))));
        }
        let deps = self.deps.clone();
        let engine = self.engine.clone();
        let session = self.session.clone();
        let mime = &self.session.mime_type;
        if (index == 0 || is_text(mime)) && !content_agrees(mime, &msg.data) {
            // The bytes lie about their type: the session is discarded.
            let err_text = format!("the file's content is not {mime}");
            return Box::pin(
                async move {
                    if let Err(e) = Self::discard(&deps, &session).await {
                        log::error!("discarding upload {}: {e}", session.session_id);
                    }
                    let err = UploadError::UnsupportedMediaType(err_text);
                    Self::emit_user(
                        &engine,
                        &session.user_id,
                        "upload_error",
                        &json!({ "uploadId": session.upload_id, "error": err.to_json() }),
                    );
                    Err(err)
                }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.finished = true;
                    ctx.stop();
                    res
                }),
            );
        }
        let expires_at = chrono::Utc::now()
            + chrono::Duration::from_std(deps.config.session_ttl).unwrap_or_default();
        let bytes = msg.data.len();
        let offset = u64::from(index) * u64::from(session.chunk_size);
        // Not atomic: the chunks of one upload are written side by side (the
        // connection lets a few of a socket's upload_chunk events run at
        // once), so their flushes to disk share the journal's commits.
        self.writing.insert(index);
        Box::pin(
            async move {
                deps.blobs
                    .put_part(&session.session_id, index, offset, msg.data)
                    .await?;
                let recorded = deps
                    .sessions
                    .record_chunk(&session.user_id, &session.upload_id, index, expires_at)
                    .await;
                if let Err(StoreError::NotFound(_)) = &recorded {
                    // Cancelled or completed while this part was written:
                    // what the discard removed must not come back.
                    if let Err(e) = deps.blobs.delete_parts(&session.session_id).await {
                        log::warn!("removing parts of ended upload {}: {e}", session.upload_id);
                    }
                }
                recorded?;
                Ok(ChunkStored { index, new: true })
            }
            .into_actor(self)
            .map(move |res: Result<ChunkStored, UploadError>, act, ctx| {
                act.writing.remove(&index);
                match &res {
                    Ok(_) => {
                        act.engine.metrics().upload_bytes(bytes);
                        act.session.expires_at = expires_at;
                        act.received.insert(index);
                        let last = act.received.is_complete();
                        act.progress(last);
                    }
                    Err(UploadError::Store(StoreError::NotFound(_))) => {
                        // Expired or cancelled elsewhere meanwhile.
                        act.finished = true;
                        ctx.stop();
                    }
                    Err(_) => {}
                }
                res
            }),
        )
    }
}

impl Handler<Complete> for Upload {
    type Result = AtomicResponse<Self, Result<FileRecord, UploadError>>;

    fn handle(&mut self, msg: Complete, _ctx: &mut Context<Self>) -> Self::Result {
        self.last_activity = Instant::now();
        if let Err(e) = self.check_session(&msg.session_id) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        let deps = self.deps.clone();
        let engine = self.engine.clone();
        let session = self.session.clone();
        // Chunks still being written are missing until they are stored.
        if !self.received.is_complete() {
            let err = UploadError::Incomplete {
                missing: self.received.missing(MAX_MISSING_LISTED),
                count: session.total_chunks - self.received.count(),
            };
            Self::emit_user(
                &engine,
                &session.user_id,
                "upload_error",
                &json!({ "uploadId": session.upload_id, "error": err.to_json() }),
            );
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        AtomicResponse::new(Box::pin(
            async move {
                let result = finish(&deps, &engine, &session).await;
                match &result {
                    Ok(file) => Self::emit_user(
                        &engine,
                        &session.user_id,
                        "upload_completed",
                        &json!({ "uploadId": session.upload_id, "file": wire::file(file) }),
                    ),
                    Err(err) => Self::emit_user(
                        &engine,
                        &session.user_id,
                        "upload_error",
                        &json!({ "uploadId": session.upload_id, "error": err.to_json() }),
                    ),
                }
                result
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                // Done, or discarded on a whole-file mismatch; a backend
                // failure keeps the session for another try.
                if matches!(res, Ok(_) | Err(UploadError::ChecksumMismatch(_))) {
                    act.finished = true;
                    ctx.stop();
                }
                res
            }),
        ))
    }
}

/// Checks that `user` may attach a file to `task`: the task is live, the user
/// can write in its workspace (member, admin or owner; not viewer), and it
/// has fewer than `max` attachments. Unknown tasks and non-members are
/// `NotFound` alike.
pub async fn check_task_target(
    store: &dyn DocumentStore,
    task: &TaskId,
    user: &UserId,
    max: usize,
) -> Result<Task, UploadError> {
    let not_found = || UploadError::NotFound("task not found".to_owned());
    let task = store
        .task(task)
        .await?
        .filter(|t| t.deleted_at.is_none())
        .ok_or_else(not_found)?;
    let role = store
        .member(&task.workspace_id, user)
        .await?
        .map(|m| m.role)
        .ok_or_else(not_found)?;
    if !role.can_write() {
        return Err(UploadError::Forbidden(
            "viewers cannot attach files to tasks".to_owned(),
        ));
    }
    if task.attachments.len() >= max {
        return Err(UploadError::Conflict(format!(
            "a task has at most {max} attachments"
        )));
    }
    Ok(task)
}

/// Attaches `file` to `task` and tells the task's rooms (`task:updated`).
/// Returns the task after; attaching a file twice changes nothing and emits
/// nothing.
pub async fn attach_to_task(
    store: &dyn DocumentStore,
    engine: &Engine,
    file: &FileRecord,
    task: &TaskId,
    actor: &UserId,
    max: usize,
) -> Result<Task, StoreError> {
    let (task, changed) = store
        .attach_file(task, &file.id, wire::file(file), max)
        .await?;
    if changed {
        crate::workspace::route(
            engine,
            &DomainEvent::Task {
                change: TaskChange::Updated,
                task: Box::new(task.clone()),
                actor: actor.clone(),
            },
        );
    }
    Ok(task)
}

/// Assembles, verifies and records the file of a session whose chunks are
/// all stored. On a whole-file SHA-256 mismatch the session is discarded.
async fn finish(
    deps: &UploadDeps,
    engine: &Engine,
    session: &UploadSession,
) -> Result<FileRecord, UploadError> {
    let key = &session.session_id;
    if let Some(UploadTarget::Task(task)) = &session.target {
        // Checked again: roles and attachments may have changed since the
        // upload began. Failing here keeps the session for a later try.
        check_task_target(
            &*deps.store,
            task,
            &session.user_id,
            deps.config.max_task_attachments,
        )
        .await?;
    }
    let assembled = deps
        .blobs
        .assemble(&session.session_id, session.total_chunks, key)
        .await?;
    let size_ok = assembled.size == session.file_size;
    let sha_ok = session
        .sha256
        .as_ref()
        .is_none_or(|want| *want == assembled.sha256);
    if !size_ok || !sha_ok {
        if let Err(e) = deps.blobs.delete(key).await {
            log::error!("deleting mismatched blob {key}: {e}");
        }
        if let Err(e) = Upload::discard(deps, session).await {
            log::error!("discarding upload {key}: {e}");
        }
        return Err(UploadError::ChecksumMismatch(if size_ok {
            "the file's SHA-256 does not match sha256; the upload was discarded".to_owned()
        } else {
            "the file's size does not match fileSize; the upload was discarded".to_owned()
        }));
    }
    // The file id is the session id, so finishing twice (after a crash
    // between these steps) finds the same record.
    let (file, _) = deps
        .store
        .create_file(FileRecord {
            id: session.session_id.clone(),
            file_name: session.file_name.clone(),
            size: assembled.size,
            mime_type: session.mime_type.clone(),
            sha256: assembled.sha256,
            blob_key: key.clone(),
            uploaded_by: session.user_id.clone(),
            created_at: chrono::Utc::now(),
        })
        .await?;
    deps.sessions
        .complete_upload_session(&session.user_id, &session.upload_id, &file.id)
        .await?;
    if let Err(e) = deps.blobs.delete_parts(&session.session_id).await {
        // The file is complete; leftover parts only cost disk.
        log::warn!("deleting parts of {}: {e}", session.session_id);
    }
    if let Some(UploadTarget::Conversation(conversation)) = &session.target {
        if let Err(e) = crate::chat::share_file(
            &*deps.store,
            engine,
            &file,
            conversation,
            &session.user_id,
            None,
            Some(format!("upload:{}", session.session_id)),
        )
        .await
        {
            log::error!("sharing upload {} into {conversation}: {e}", file.id);
        }
    }
    if let Some(UploadTarget::Task(task)) = &session.target {
        // The file exists and the session is complete whatever happens here;
        // only a race with another attachment (the task filled up or was
        // deleted since the check above) can fail, and that is reported.
        if let Err(e) = attach_to_task(
            &*deps.store,
            engine,
            &file,
            task,
            &session.user_id,
            deps.config.max_task_attachments,
        )
        .await
        {
            log::warn!("attaching upload {} to task {task}: {e}", file.id);
            let err = match e {
                StoreError::Conflict(m) => UploadError::Conflict(m),
                StoreError::NotFound(_) => UploadError::NotFound("task not found".to_owned()),
                other => UploadError::Store(other),
            };
            Upload::emit_user(
                engine,
                &session.user_id,
                "upload_error",
                &json!({
                    "uploadId": session.upload_id,
                    "error": err.to_json(),
                }),
            );
        }
    }
    Ok(file)
}

impl Handler<Cancel> for Upload {
    type Result = AtomicResponse<Self, Result<(), UploadError>>;

    fn handle(&mut self, msg: Cancel, _ctx: &mut Context<Self>) -> Self::Result {
        self.last_activity = Instant::now();
        if let Err(e) = self.check_session(&msg.session_id) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        let deps = self.deps.clone();
        let engine = self.engine.clone();
        let session = self.session.clone();
        AtomicResponse::new(Box::pin(
            async move {
                Upload::discard(&deps, &session).await?;
                Upload::emit_user(
                    &engine,
                    &session.user_id,
                    "upload_cancelled",
                    &json!({ "uploadId": session.upload_id, "reason": msg.reason }),
                );
                Ok(())
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                if res.is_ok() {
                    act.finished = true;
                    ctx.stop();
                }
                res
            }),
        ))
    }
}

impl Handler<Stop> for Upload {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        self.finished = true;
        ctx.stop();
    }
}
