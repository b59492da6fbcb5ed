//! Namespace `/file-upload`: chunked, resumable uploads (contract section 6).
//!
//! Events are decoded once into `UploadEvent` and dispatched with one
//! match. `initiate_upload` validates the request and creates (or finds, to
//! resume) the session in the upload-session store; chunks, completion and
//! cancellation go to the session's [`Upload`] actor, started on demand from
//! the stored state and kept in a registry while it lives. A failed chunk
//! answers a failed ack and `chunk_error` to the sending socket only; the
//! user's devices get progress and outcomes from the actor. A sweeper drops
//! expired sessions and their parts every `sweep_interval`.

use crate::ids::{ConversationId, TaskId, UploadId, UserId};
use crate::model::{SessionStart, UploadSession, UploadTarget};
use crate::namespace::{EventError, IncomingEvent, Namespace, Reply, Socket};
use crate::protocol::socketio::resolve_placeholder;
use crate::store::StoreError;
use crate::upload::{
    check_task_target, Cancel, Complete, ReceiveChunk, Stop, Upload, UploadDeps, UploadError,
    UploadRegistry,
};
use crate::upload_rules::{normalize_mime, parse_sha256, sanitize_file_name, valid_upload_id};
use crate::wire;
use actix::prelude::*;
use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Longest id (session, conversation, task) accepted from a client.
const MAX_ID_LEN: usize = 128;
/// Expired sessions handled per sweep round.
const SWEEP_BATCH: usize = 100;
/// Most rounds of one sweep (so at most 5000 sessions a sweep).
const MAX_SWEEP_ROUNDS: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TargetRef {
    task_id: Option<String>,
    conversation_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Initiate {
    upload_id: String,
    file_name: String,
    file_size: u64,
    mime_type: String,
    chunk_size: Option<u32>,
    sha256: Option<String>,
    target: Option<TargetRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk {
    session_id: String,
    upload_id: String,
    chunk_index: u32,
    checksum: Option<String>,
    /// Base64 text, or a binary placeholder resolved against the
    /// attachments; moved out of the event's arguments when it is decoded,
    /// not copied (it is most of a chunk's bytes). `None` when missing.
    #[serde(skip)]
    chunk_data: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionRef {
    session_id: String,
    upload_id: String,
    reason: Option<String>,
}

/// The events of `/file-upload`, decoded from the wire.
#[derive(Debug)]
enum UploadEvent {
    Initiate(Initiate),
    Chunk(Chunk),
    Complete(SessionRef),
    Cancel(SessionRef),
}

impl UploadEvent {
    fn decode(event: &mut IncomingEvent) -> Result<UploadEvent, EventError> {
        Ok(match event.name.as_str() {
            "initiate_upload" => UploadEvent::Initiate(event.decode_payload()?),
            "upload_chunk" => {
                let data = event
                    .args
                    .first_mut()
                    .and_then(Value::as_object_mut)
                    .and_then(|fields| fields.remove("chunkData"));
                let mut chunk: Chunk = event.decode_payload()?;
                chunk.chunk_data = data;
                UploadEvent::Chunk(chunk)
            }
            "complete_upload" => UploadEvent::Complete(event.decode_payload()?),
            "cancel_upload" => UploadEvent::Cancel(event.decode_payload()?),
            other => {
                return Err(EventError::bad_request(format!(
                    "unknown event {:?} in /file-upload",
                    other.chars().take(64).collect::<String>()
                )))
            }
        })
    }
}

fn store_error(e: StoreError) -> EventError {
    match e {
        StoreError::NotFound(_) => EventError::not_found("upload session not found"),
        StoreError::Conflict(m) => EventError::new("conflict", m),
        other => {
            log::error!(
                "upload store error: {other}: {:?}",
                std::error::Error::source(&other)
            );
            EventError::internal()
        }
    }
}

fn upload_event_error(e: &UploadError) -> EventError {
    let json = e.to_json();
    EventError::new(
        e.code(),
        json["message"]
            .as_str()
            .unwrap_or("upload failed")
            .to_owned(),
    )
}

fn check_upload_id(id: &str) -> Result<(), EventError> {
    if valid_upload_id(id) {
        Ok(())
    } else {
        Err(EventError::bad_request(
            "uploadId must be 1 to 128 printable ASCII characters",
        ))
    }
}

fn check_id(id: &str, what: &str) -> Result<(), EventError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(EventError::bad_request(format!(
            "{what} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    Ok(())
}

/// The `/file-upload` namespace.
pub struct FileUploadNamespace {
    deps: UploadDeps,
    live: UploadRegistry,
    generation: AtomicU64,
}

impl FileUploadNamespace {
    /// The namespace, with its expiry sweeper; call inside an actix system.
    pub fn new(deps: UploadDeps) -> Arc<Self> {
        let ns = Arc::new(FileUploadNamespace {
            deps,
            live: Default::default(),
            generation: AtomicU64::new(1),
        });
        let weak = Arc::downgrade(&ns);
        let every = ns.deps.config.sweep_interval;
        actix::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(ns) = weak.upgrade() else { break };
                ns.sweep().await;
            }
        });
        ns
    }

    /// Deletes expired in-progress sessions and their parts, in rounds of
    /// 100 until a round finds none (at most 50 rounds a call, so a backlog
    /// never holds one sweep for long; the next sweep goes on with it).
    pub async fn sweep(&self) {
        for _ in 0..MAX_SWEEP_ROUNDS {
            let (listed, discarded) = self.sweep_round(None, SWEEP_BATCH).await;
            // An empty round was the last (a short one may be short for
            // index entries the store dropped as dangling); a round that
            // discarded nothing (the blob store failing) would only list the
            // same ones again.
            if listed == 0 || discarded == 0 {
                break;
            }
        }
    }

    /// One round: lists at most `limit` expired sessions (only `user`'s when
    /// given) and discards them; how many were listed and how many are gone.
    async fn sweep_round(&self, user: Option<&UserId>, limit: usize) -> (usize, usize) {
        let now = chrono::Utc::now();
        let expired = match self
            .deps
            .sessions
            .expired_upload_sessions(now, user, limit)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                log::error!("listing expired uploads: {e}");
                return (0, 0);
            }
        };
        let mut discarded = 0;
        for session in &expired {
            if self.discard_expired(session).await {
                discarded += 1;
            }
        }
        (expired.len(), discarded)
    }

    /// Deletes an expired session and its parts; whether they are gone.
    async fn discard_expired(&self, session: &UploadSession) -> bool {
        // The id may have been initiated afresh since `session` was read (on
        // another device, or after the sweeper listed it): only that very
        // session goes, never the one that replaced it (whose initiation
        // deleted the old parts already).
        match self
            .deps
            .sessions
            .upload_session(&session.user_id, &session.upload_id)
            .await
        {
            Ok(Some(current)) if current.session_id == session.session_id => {}
            Ok(_) => return true,
            Err(e) => {
                log::error!("reading expired upload {}: {e}", session.session_id);
                return false;
            }
        }
        self.stop_actor(&session.user_id, &session.upload_id);
        if let Err(e) = self.deps.blobs.delete_parts(&session.session_id).await {
            log::error!(
                "deleting parts of expired upload {}: {e}",
                session.session_id
            );
            return false;
        }
        if let Err(e) = self
            .deps
            .sessions
            .delete_upload_session(&session.user_id, &session.upload_id)
            .await
        {
            log::error!("deleting expired upload {}: {e}", session.session_id);
            return false;
        }
        log::info!(
            "upload {} of {} expired; parts deleted",
            session.upload_id,
            session.user_id
        );
        true
    }

    fn stop_actor(&self, user: &UserId, upload_id: &str) {
        let key = (user.clone(), UploadId(upload_id.to_owned()));
        let removed = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        if let Some((_, addr)) = removed {
            addr.do_send(Stop);
        }
    }

    /// The live actor of an in-progress session, started from the stored
    /// state when there is none.
    async fn actor(&self, socket: &Socket, upload_id: &str) -> Result<Addr<Upload>, EventError> {
        let user = socket.user_id();
        let key = (user.clone(), UploadId(upload_id.to_owned()));
        if let Some((_, addr)) = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            if addr.connected() {
                return Ok(addr.clone());
            }
        }
        let session = self
            .deps
            .sessions
            .upload_session(user, upload_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| EventError::not_found("upload session not found"))?;
        if session.completed_file_id.is_some() {
            return Err(EventError::new(
                "conflict",
                "this upload is already completed",
            ));
        }
        let chunks = self
            .deps
            .sessions
            .received_chunks(user, upload_id)
            .await
            .map_err(store_error)?;
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        // Another event may have started it while we were loading.
        if let Some((_, addr)) = live.get(&key) {
            if addr.connected() {
                return Ok(addr.clone());
            }
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let addr = Upload::new(
            session,
            &chunks,
            self.deps.clone(),
            socket.engine().clone(),
            self.live.clone(),
            generation,
        )
        .start();
        live.insert(key, (generation, addr.clone()));
        Ok(addr)
    }

    async fn initiate(&self, socket: &Socket, req: Initiate) -> Result<Value, EventError> {
        let config = &self.deps.config;
        check_upload_id(&req.upload_id)?;
        let user = socket.user_id().clone();
        let file_name = sanitize_file_name(&req.file_name);
        let mime_type = normalize_mime(&req.mime_type);
        let chunk_size = req.chunk_size.unwrap_or(config.default_chunk_size);
        let sha256 =
            match &req.sha256 {
                None => None,
                Some(s) => Some(parse_sha256(s).ok_or_else(|| {
                    EventError::bad_request("sha256 must be 64 hexadecimal digits")
                })?),
            };
        let existing = self
            .deps
            .sessions
            .upload_session(&user, &req.upload_id)
            .await
            .map_err(store_error)?;
        if let Some(session) = existing {
            let expired =
                session.completed_file_id.is_none() && session.expires_at <= chrono::Utc::now();
            if !expired {
                return self.resume(session, &req, sha256).await;
            }
            // Expired, not swept yet: it is gone all the same (the contract
            // deletes it at expiry), so this initiation starts a new one.
            if !self.discard_expired(&session).await {
                return Err(EventError::internal());
            }
        }
        if req.file_size == 0 {
            return Err(EventError::bad_request("fileSize must be at least 1 byte"));
        }
        if req.file_size > config.max_file_size {
            return Err(EventError::new(
                "payload_too_large",
                format!("fileSize must be 1 to {} bytes", config.max_file_size),
            ));
        }
        if !config.allowed_mime_types.contains(&mime_type) {
            return Err(EventError::new(
                "unsupported_media_type",
                format!(
                    "{:?} is not an allowed type ({})",
                    mime_type.chars().take(100).collect::<String>(),
                    config.allowed_mime_types.join(", ")
                ),
            ));
        }
        if chunk_size < config.min_chunk_size || chunk_size > config.max_chunk_size {
            return Err(EventError::bad_request(format!(
                "chunkSize must be {} to {} bytes",
                config.min_chunk_size, config.max_chunk_size
            )));
        }
        let target = match req.target {
            None => None,
            Some(TargetRef {
                task_id: Some(t),
                conversation_id: None,
            }) => {
                check_id(&t, "target.taskId")?;
                let id = TaskId(t);
                check_task_target(&*self.deps.store, &id, &user, config.max_task_attachments)
                    .await
                    .map_err(|e| upload_event_error(&e))?;
                Some(UploadTarget::Task(id))
            }
            Some(TargetRef {
                conversation_id: Some(c),
                ..
            }) => {
                check_id(&c, "target.conversationId")?;
                let id = ConversationId(c);
                let member = self
                    .deps
                    .store
                    .conversation(&id)
                    .await
                    .map_err(store_error)?
                    .is_some_and(|conv| conv.member_ids.contains(&user));
                if !member {
                    return Err(EventError::not_found("conversation not found"));
                }
                Some(UploadTarget::Conversation(id))
            }
            Some(_) => {
                return Err(EventError::bad_request(
                    "target must name taskId or conversationId",
                ))
            }
        };
        let now = chrono::Utc::now();
        let total_chunks = req.file_size.div_ceil(u64::from(chunk_size));
        let session = UploadSession {
            session_id: crate::ids::new_id(),
            upload_id: req.upload_id,
            user_id: user,
            file_name,
            file_size: req.file_size,
            mime_type,
            chunk_size,
            total_chunks: u32::try_from(total_chunks)
                .map_err(|_| EventError::bad_request("too many chunks"))?,
            sha256,
            target,
            created_at: now,
            expires_at: now + chrono::Duration::from_std(config.session_ttl).unwrap_or_default(),
            completed_file_id: None,
        };
        let mut started = self
            .deps
            .sessions
            .create_upload_session(session.clone(), config.max_in_progress)
            .await
            .map_err(store_error)?;
        if matches!(started, SessionStart::TooMany) {
            // Expired sessions do not count: sweep the user's that are not
            // swept yet (however many of others' wait for the sweeper), then
            // try once more.
            self.sweep_round(Some(&session.user_id), config.max_in_progress)
                .await;
            started = self
                .deps
                .sessions
                .create_upload_session(session, config.max_in_progress)
                .await
                .map_err(store_error)?;
        }
        match started {
            SessionStart::Created(s) => {
                // A previous session of this id (swept, cancelled) may still
                // have a live actor: it must not serve the new one.
                self.stop_actor(&s.user_id, &s.upload_id);
                Ok(session_ack(&s, &[]))
            }
            SessionStart::Existing(s) => self.resume_checked(s).await,
            SessionStart::TooMany => Err(EventError::new(
                "too_many_uploads",
                format!(
                    "at most {} uploads may be in progress; complete or cancel one first",
                    config.max_in_progress
                ),
            )),
        }
    }

    /// Initiating a known upload id: same parameters resume it.
    async fn resume(
        &self,
        session: UploadSession,
        req: &Initiate,
        sha256: Option<String>,
    ) -> Result<Value, EventError> {
        let differs = req.file_size != session.file_size
            || req.chunk_size.is_some_and(|c| c != session.chunk_size)
            || (sha256.is_some() && sha256 != session.sha256);
        if differs {
            return Err(EventError::new(
                "conflict",
                "uploadId is in use with a different fileSize, chunkSize or sha256",
            ));
        }
        self.resume_checked(session).await
    }

    async fn resume_checked(&self, session: UploadSession) -> Result<Value, EventError> {
        if let Some(file_id) = &session.completed_file_id {
            let file = self
                .deps
                .store
                .file(file_id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| EventError::not_found("file not found"))?;
            return Ok(json!({ "ok": true, "completed": true, "file": wire::file(&file) }));
        }
        let chunks = self
            .deps
            .sessions
            .received_chunks(&session.user_id, &session.upload_id)
            .await
            .map_err(store_error)?;
        Ok(session_ack(&session, &chunks))
    }

    async fn chunk(
        &self,
        socket: &Socket,
        event: &IncomingEvent,
        c: Chunk,
    ) -> Result<Value, EventError> {
        let fail = |err: EventError| {
            socket.emit(
                "chunk_error",
                &json!({
                    "uploadId": c.upload_id,
                    "chunkIndex": c.chunk_index,
                    "error": { "code": err.code, "message": err.message },
                }),
            );
            err
        };
        check_upload_id(&c.upload_id).map_err(fail)?;
        check_id(&c.session_id, "sessionId").map_err(fail)?;
        let Some(chunk_data) = &c.chunk_data else {
            return Err(fail(EventError::bad_request(
                "invalid upload_chunk payload: missing field `chunkData`",
            )));
        };
        let data: Bytes = match chunk_data {
            Value::String(text) => {
                let max = self.deps.config.max_chunk_size as usize;
                if text.len() > max.div_ceil(3) * 4 + 4 {
                    return Err(fail(EventError::bad_request("chunkData is too large")));
                }
                // The SIMD decoder is several times faster; the other one
                // says where the text went wrong.
                base64_simd::STANDARD
                    .decode_to_vec(text.as_bytes())
                    .map(Bytes::from)
                    .map_err(|_| {
                        let why = base64::engine::general_purpose::STANDARD
                            .decode(text.as_bytes())
                            .err()
                            .map_or_else(|| "rejected".to_owned(), |e| e.to_string());
                        fail(EventError::bad_request(format!(
                            "chunkData is not valid base64: {why}"
                        )))
                    })?
            }
            other => resolve_placeholder(other, &event.attachments)
                .cloned()
                .ok_or_else(|| {
                    fail(EventError::bad_request(
                        "chunkData must be base64 text or a binary attachment",
                    ))
                })?,
        };
        let checksum = match &c.checksum {
            None => None,
            Some(s) => Some(parse_sha256(s).ok_or_else(|| {
                fail(EventError::bad_request(
                    "checksum must be 64 hexadecimal digits",
                ))
            })?),
        };
        let addr = self.actor(socket, &c.upload_id).await.map_err(fail)?;
        let msg = ReceiveChunk {
            session_id: c.session_id.clone(),
            index: c.chunk_index,
            data,
            checksum,
        };
        match addr.send(msg).await {
            Ok(Ok(stored)) => {
                Ok(json!({ "ok": true, "uploadId": c.upload_id, "chunkIndex": stored.index }))
            }
            Ok(Err(e)) => Err(fail(upload_event_error(&e))),
            Err(_) => Err(fail(EventError::new(
                "unavailable",
                "the upload was busy closing; send the chunk again",
            ))),
        }
    }

    async fn complete(&self, socket: &Socket, r: SessionRef) -> Result<Value, EventError> {
        check_upload_id(&r.upload_id)?;
        check_id(&r.session_id, "sessionId")?;
        // A completed session answers its file again (idempotent completion).
        if let Some(s) = self
            .deps
            .sessions
            .upload_session(socket.user_id(), &r.upload_id)
            .await
            .map_err(store_error)?
        {
            if s.completed_file_id.is_some() && s.session_id == r.session_id {
                let mut ack = self.resume_checked(s).await?;
                ack.as_object_mut().map(|o| o.remove("completed"));
                return Ok(ack);
            }
        }
        let addr = self.actor(socket, &r.upload_id).await?;
        match addr
            .send(Complete {
                session_id: r.session_id,
            })
            .await
        {
            Ok(Ok(file)) => Ok(json!({ "ok": true, "file": wire::file(&file) })),
            Ok(Err(e)) => Err(upload_event_error(&e)),
            Err(_) => Err(EventError::new(
                "unavailable",
                "the upload was closing; try again",
            )),
        }
    }

    async fn cancel(&self, socket: &Socket, r: SessionRef) -> Result<Value, EventError> {
        check_upload_id(&r.upload_id)?;
        check_id(&r.session_id, "sessionId")?;
        let reason = r.reason.map(|s| s.chars().take(200).collect::<String>());
        let addr = self.actor(socket, &r.upload_id).await?;
        match addr
            .send(Cancel {
                session_id: r.session_id,
                reason,
            })
            .await
        {
            Ok(Ok(())) => Ok(json!({ "ok": true, "uploadId": r.upload_id })),
            Ok(Err(e)) => Err(upload_event_error(&e)),
            Err(_) => Err(EventError::new(
                "unavailable",
                "the upload was closing; try again",
            )),
        }
    }
}

/// The ack of `initiate_upload` for a session in progress.
fn session_ack(s: &UploadSession, chunks: &[u32]) -> Value {
    json!({
        "ok": true,
        "uploadId": s.upload_id,
        "sessionId": s.session_id,
        "chunkSize": s.chunk_size,
        "totalChunks": s.total_chunks,
        "receivedChunks": chunks,
        "expiresAt": wire::iso(&s.expires_at),
    })
}

#[async_trait(?Send)]
impl Namespace for FileUploadNamespace {
    async fn on_event(
        &self,
        socket: &Socket,
        mut event: IncomingEvent,
    ) -> Result<Reply, EventError> {
        let decoded = UploadEvent::decode(&mut event)?;
        let value = match decoded {
            UploadEvent::Initiate(r) => self.initiate(socket, r).await,
            UploadEvent::Chunk(c) => self.chunk(socket, &event, c).await,
            UploadEvent::Complete(r) => self.complete(socket, r).await,
            UploadEvent::Cancel(r) => self.cancel(socket, r).await,
        }?;
        Ok(Reply::one(value))
    }

    /// A client may keep several chunks in flight; their disk flushes then
    /// overlap. Initiate, complete and cancel still wait for the chunks sent
    /// before them.
    fn runs_beside(&self, event: &str) -> bool {
        event == "upload_chunk"
    }
}
