//! Files in the embedded store: file records, read grants, download tokens
//! (keyed by the token's hash, spent inside one write transaction), and
//! upload sessions with one row per stored chunk and an in-progress index
//! that carries the expiry, so recording a chunk writes two small rows and
//! counting a user's uploads in progress is a short range scan.

use super::*;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone};
use huddle_actors::model::{DownloadToken, FileRecord, SessionStart, TokenUse, UploadSession};
use huddle_actors::store::{FileStore, UploadSessionStore};

fn millis(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Loads a session with its current expiry filled in.
fn load_session(
    sessions: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    in_progress: &impl ReadableTable<(&'static str, &'static str), i64>,
    user: &str,
    upload_id: &str,
) -> StoreResult<Option<UploadSession>> {
    let Some(guard) = sessions
        .get((user, upload_id))
        .ctx("reading upload session")?
    else {
        return Ok(None);
    };
    let mut session: UploadSession = decode(guard.value())?;
    if let Some(exp) = in_progress
        .get((user, upload_id))
        .ctx("reading upload expiry")?
    {
        session.expires_at = from_millis(exp.value());
    }
    Ok(Some(session))
}

/// Deletes every chunk row of a session.
fn delete_chunks(txn: &WriteTransaction, user: &str, upload_id: &str) -> StoreResult<()> {
    let mut chunks = txn.open_table(UPLOAD_CHUNKS).ctx("open upload_chunks")?;
    chunks
        .retain_in(
            (user, upload_id, 0u32)..=(user, upload_id, u32::MAX),
            |_, _| false,
        )
        .ctx("deleting chunk rows")?;
    Ok(())
}

#[async_trait]
impl FileStore for EmbeddedStore {
    async fn create_file(&self, file: FileRecord) -> StoreResult<(FileRecord, bool)> {
        self.write("create_file", move |txn| {
            let mut files = txn.open_table(FILES).ctx("open files")?;
            if let Some(existing) = get_json::<FileRecord>(&files, &file.id)? {
                return Ok((existing, false));
            }
            files
                .insert(file.id.as_str(), encode(&file)?.as_slice())
                .ctx("writing file")?;
            Ok((file.clone(), true))
        })
        .await
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        let id = id.to_owned();
        self.read("file", move |txn| {
            let files = txn.open_table(FILES).ctx("open files")?;
            get_json(&files, &id)
        })
        .await
    }

    async fn grant_file_read(&self, file_id: &str, users: &[UserId]) -> StoreResult<()> {
        let file_id = file_id.to_owned();
        let users = users.to_vec();
        self.write("grant_file_read", move |txn| {
            let files = txn.open_table(FILES).ctx("open files")?;
            if files.get(file_id.as_str()).ctx("reading file")?.is_none() {
                return Err(StoreError::NotFound(format!("file {file_id}")));
            }
            let mut grants = txn.open_table(FILE_GRANTS).ctx("open file_grants")?;
            for user in &users {
                grants
                    .insert((file_id.as_str(), user.as_str()), 1u8)
                    .ctx("writing grant")?;
            }
            Ok(())
        })
        .await
    }

    async fn can_read_file(&self, file_id: &str, user: &UserId) -> StoreResult<bool> {
        let file_id = file_id.to_owned();
        let user = user.clone();
        self.read("can_read_file", move |txn| {
            let files = txn.open_table(FILES).ctx("open files")?;
            let Some(file) = get_json::<FileRecord>(&files, &file_id)? else {
                return Ok(false);
            };
            if file.uploaded_by == user {
                return Ok(true);
            }
            let grants = txn.open_table(FILE_GRANTS).ctx("open file_grants")?;
            if grants
                .get((file_id.as_str(), user.as_str()))
                .ctx("reading grant")?
                .is_some()
            {
                return Ok(true);
            }
            super::workspaces::reads_through_task(txn, &file_id, user.as_str())
        })
        .await
    }

    async fn put_download_token(&self, token: DownloadToken) -> StoreResult<()> {
        self.write("put_download_token", move |txn| {
            let mut tokens = txn
                .open_table(DOWNLOAD_TOKENS)
                .ctx("open download_tokens")?;
            if tokens
                .get(token.token_hash.as_str())
                .ctx("reading token")?
                .is_some()
            {
                return Err(StoreError::Conflict("download token exists".into()));
            }
            tokens
                .insert(token.token_hash.as_str(), encode(&token)?.as_slice())
                .ctx("writing token")?;
            Ok(())
        })
        .await
    }

    async fn use_download_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<TokenUse> {
        let token_hash = token_hash.to_owned();
        self.write("use_download_token", move |txn| {
            let mut tokens = txn
                .open_table(DOWNLOAD_TOKENS)
                .ctx("open download_tokens")?;
            let Some(mut token) = get_json::<DownloadToken>(&tokens, &token_hash)? else {
                return Ok(TokenUse::Unknown);
            };
            if token.spent {
                return Ok(TokenUse::Spent);
            }
            if token.expires_at <= now {
                return Ok(TokenUse::Expired);
            }
            if token.one_time {
                token.spent = true;
                tokens
                    .insert(token_hash.as_str(), encode(&token)?.as_slice())
                    .ctx("spending token")?;
            }
            Ok(TokenUse::Valid(token))
        })
        .await
    }

    async fn purge_download_tokens(&self, expired_before: DateTime<Utc>) -> StoreResult<u64> {
        self.purge_json(
            "purging download tokens",
            DOWNLOAD_TOKENS,
            move |t: &DownloadToken| t.expires_at < expired_before,
        )
        .await
    }
}

#[async_trait]
impl UploadSessionStore for EmbeddedStore {
    async fn create_upload_session(
        &self,
        session: UploadSession,
        max_in_progress: usize,
    ) -> StoreResult<SessionStart> {
        self.write("create_upload_session", move |txn| {
            let mut sessions = txn
                .open_table(UPLOAD_SESSIONS)
                .ctx("open upload_sessions")?;
            let mut in_progress = txn
                .open_table(UPLOADS_IN_PROGRESS)
                .ctx("open uploads_in_progress")?;
            let user = session.user_id.as_str();
            let id = session.upload_id.as_str();
            if let Some(existing) = load_session(&sessions, &in_progress, user, id)? {
                return Ok(SessionStart::Existing(existing));
            }
            let count = in_progress
                .range((user, "")..)
                .ctx("counting uploads")?
                .map_while(|row| match row {
                    Ok((k, _)) if k.value().0 == user => Some(Ok(())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .take(max_in_progress)
                .collect::<Result<Vec<()>, _>>()
                .ctx("counting uploads")?
                .len();
            if count >= max_in_progress {
                return Ok(SessionStart::TooMany);
            }
            sessions
                .insert((user, id), encode(&session)?.as_slice())
                .ctx("writing upload session")?;
            in_progress
                .insert((user, id), millis(&session.expires_at))
                .ctx("writing upload expiry")?;
            Ok(SessionStart::Created(session.clone()))
        })
        .await
    }

    async fn upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
    ) -> StoreResult<Option<UploadSession>> {
        let (user, upload_id) = (user.clone(), upload_id.to_owned());
        self.read("upload_session", move |txn| {
            let sessions = txn
                .open_table(UPLOAD_SESSIONS)
                .ctx("open upload_sessions")?;
            let in_progress = txn
                .open_table(UPLOADS_IN_PROGRESS)
                .ctx("open uploads_in_progress")?;
            load_session(&sessions, &in_progress, user.as_str(), &upload_id)
        })
        .await
    }

    async fn received_chunks(&self, user: &UserId, upload_id: &str) -> StoreResult<Vec<u32>> {
        let (user, upload_id) = (user.clone(), upload_id.to_owned());
        self.read("received_chunks", move |txn| {
            let chunks = txn.open_table(UPLOAD_CHUNKS).ctx("open upload_chunks")?;
            let (u, id) = (user.as_str(), upload_id.as_str());
            let mut out = Vec::new();
            for row in chunks
                .range((u, id, 0u32)..=(u, id, u32::MAX))
                .ctx("range chunks")?
            {
                let (k, _) = row.ctx("reading chunk row")?;
                out.push(k.value().2);
            }
            Ok(out)
        })
        .await
    }

    async fn record_chunk(
        &self,
        user: &UserId,
        upload_id: &str,
        index: u32,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (user, upload_id) = (user.clone(), upload_id.to_owned());
        // Lazy: losing the record in a crash only makes the client send the
        // chunk again (its bytes are on disk either way).
        self.write_lazy("record_chunk", move |txn| {
            let mut in_progress = txn
                .open_table(UPLOADS_IN_PROGRESS)
                .ctx("open uploads_in_progress")?;
            let key = (user.as_str(), upload_id.as_str());
            if in_progress.get(key).ctx("reading upload expiry")?.is_none() {
                return Err(StoreError::NotFound(format!(
                    "upload {upload_id} is not in progress"
                )));
            }
            in_progress
                .insert(key, millis(&expires_at))
                .ctx("writing upload expiry")?;
            let mut chunks = txn.open_table(UPLOAD_CHUNKS).ctx("open upload_chunks")?;
            chunks
                .insert((user.as_str(), upload_id.as_str(), index), 1u8)
                .ctx("writing chunk row")?;
            Ok(())
        })
        .await
    }

    async fn complete_upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
        file_id: &str,
    ) -> StoreResult<()> {
        let (user, upload_id, file_id) = (user.clone(), upload_id.to_owned(), file_id.to_owned());
        self.write("complete_upload_session", move |txn| {
            let mut sessions = txn
                .open_table(UPLOAD_SESSIONS)
                .ctx("open upload_sessions")?;
            let mut in_progress = txn
                .open_table(UPLOADS_IN_PROGRESS)
                .ctx("open uploads_in_progress")?;
            let key = (user.as_str(), upload_id.as_str());
            let Some(mut session) = load_session(&sessions, &in_progress, key.0, key.1)? else {
                return Err(StoreError::NotFound(format!("upload {upload_id}")));
            };
            session.completed_file_id = Some(file_id.clone());
            sessions
                .insert(key, encode(&session)?.as_slice())
                .ctx("writing upload session")?;
            in_progress.remove(key).ctx("removing upload expiry")?;
            drop((sessions, in_progress));
            delete_chunks(txn, key.0, key.1)
        })
        .await
    }

    /// Found in a read transaction (a full scan of the sessions, for the
    /// hourly sweep), then removed in writes of at most 1000, each
    /// checking again that the session is still the completed one found.
    async fn purge_completed_upload_sessions(
        &self,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        const WHAT: &str = "purging completed upload sessions";
        let gone = self
            .read(WHAT, move |txn| {
                let sessions = txn.open_table(UPLOAD_SESSIONS).ctx(WHAT)?;
                let mut gone = Vec::new();
                for row in sessions.iter().ctx(WHAT)? {
                    let (key, value) = row.ctx(WHAT)?;
                    let (user, id) = key.value();
                    match decode::<UploadSession>(value.value()) {
                        Ok(s) if s.completed_file_id.is_some() && s.expires_at < expired_before => {
                            gone.push((user.to_owned(), id.to_owned(), s.session_id));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            log::warn!("{WHAT}: left session {user}/{id} it cannot read: {e}")
                        }
                    }
                }
                Ok(gone)
            })
            .await?;
        self.remove_in_batches(WHAT, gone, |txn, (user, id, session_id)| {
            let mut sessions = txn.open_table(UPLOAD_SESSIONS).ctx(WHAT)?;
            let key = (user.as_str(), id.as_str());
            let same = match sessions.get(key).ctx(WHAT)? {
                Some(v) => {
                    decode::<UploadSession>(v.value()).is_ok_and(|s| &s.session_id == session_id)
                }
                None => false,
            };
            if same {
                sessions.remove(key).ctx(WHAT)?;
            }
            Ok(same)
        })
        .await
    }

    async fn delete_upload_session(&self, user: &UserId, upload_id: &str) -> StoreResult<bool> {
        let (user, upload_id) = (user.clone(), upload_id.to_owned());
        self.write("delete_upload_session", move |txn| {
            let mut sessions = txn
                .open_table(UPLOAD_SESSIONS)
                .ctx("open upload_sessions")?;
            let mut in_progress = txn
                .open_table(UPLOADS_IN_PROGRESS)
                .ctx("open uploads_in_progress")?;
            let key = (user.as_str(), upload_id.as_str());
            let existed = sessions
                .remove(key)
                .ctx("removing upload session")?
                .is_some();
            in_progress.remove(key).ctx("removing upload expiry")?;
            drop((sessions, in_progress));
            delete_chunks(txn, key.0, key.1)?;
            Ok(existed)
        })
        .await
    }

    async fn expired_upload_sessions(
        &self,
        now: DateTime<Utc>,
        user: Option<&UserId>,
        limit: usize,
    ) -> StoreResult<Vec<UploadSession>> {
        let user = user.cloned();
        self.read("expired_upload_sessions", move |txn| {
            let sessions = txn
                .open_table(UPLOAD_SESSIONS)
                .ctx("open upload_sessions")?;
            let in_progress = txn
                .open_table(UPLOADS_IN_PROGRESS)
                .ctx("open uploads_in_progress")?;
            let now = millis(&now);
            let mut out = Vec::new();
            // Sessions in progress are few (at most a handful per user), so a
            // scan of this index is cheap; a user's are one range of it.
            let rows = match &user {
                Some(u) => in_progress.range((u.as_str(), "")..),
                None => in_progress.iter(),
            }
            .ctx("scanning uploads")?;
            for row in rows {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = row.ctx("reading upload expiry")?;
                let (owner, id) = k.value();
                if user.as_ref().is_some_and(|u| u.as_str() != owner) {
                    break;
                }
                if v.value() < now {
                    if let Some(s) = load_session(&sessions, &in_progress, owner, id)? {
                        out.push(s);
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}
