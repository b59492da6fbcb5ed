//! Upload sessions in the MongoDB store: one document per (user, upload id)
//! (unique index), with the indexes of its stored chunks in a `chunks` set
//! and its expiry also as a BSON date (`expiresAtMs`) for the sweep.
//!
//! The in-progress limit holds under concurrency without a transaction
//! through **slots**: a session in progress holds a `slot` number below the
//! limit, and the partial unique index `(userId, slot)` lets each slot be held
//! by one session. Creating a session counts the user's sessions in progress
//! (`TooMany` at the limit), then inserts with the lowest slot that is free,
//! moving to the next one on a duplicate key; when every slot below the limit
//! is held, the answer is `TooMany`. Concurrent creations thus never exceed
//! the limit: there are only that many slots. Completing a session unsets its
//! slot (it stops counting), deleting it frees it with the document. A
//! duplicate key on the `(userId, uploadId)` index instead means the same
//! upload was initiated concurrently: the winner's session is returned as
//! `Existing`. Recording a chunk is one `$addToSet` filtered on the slot being
//! held, so it is idempotent and fails (`NotFound`) once the session is
//! completed or gone.

use super::*;
use futures_util::TryStreamExt;
use huddle_actors::model::{SessionStart, UploadSession};
use huddle_actors::store::UploadSessionStore;

fn session_filter(user: &UserId, upload_id: &str) -> Document {
    doc! { "userId": user.as_str(), "uploadId": upload_id }
}

fn in_progress() -> Document {
    doc! { "$exists": true }
}

#[async_trait]
impl UploadSessionStore for MongoStore {
    async fn create_upload_session(
        &self,
        session: UploadSession,
        max_in_progress: usize,
    ) -> StoreResult<SessionStart> {
        if let Some(existing) = self
            .upload_session(&session.user_id, &session.upload_id)
            .await?
        {
            return Ok(SessionStart::Existing(existing));
        }
        let held = self
            .upload_sessions
            .count_documents(doc! { "userId": session.user_id.as_str(), "slot": in_progress() })
            .await
            .ctx("counting uploads in progress")?;
        if held >= max_in_progress as u64 {
            return Ok(SessionStart::TooMany);
        }
        let mut document = bson::to_document(&session).ctx("encoding an upload session")?;
        document.insert("expiresAtMs", to_bson_time(session.expires_at));
        document.insert("chunks", bson::Bson::Array(Vec::new()));
        for slot in 0..max_in_progress {
            document.insert("slot", i64::try_from(slot).unwrap_or(i64::MAX));
            match self.upload_sessions.insert_one(&document).await {
                Ok(_) => return Ok(SessionStart::Created(session)),
                Err(e) if is_duplicate_key(&e) => {
                    if let Some(existing) = self
                        .upload_session(&session.user_id, &session.upload_id)
                        .await?
                    {
                        return Ok(SessionStart::Existing(existing));
                    }
                    // That slot is held: try the next one.
                }
                Err(e) => return Err(StoreError::backend("inserting an upload session", e)),
            }
        }
        Ok(SessionStart::TooMany)
    }

    async fn upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
    ) -> StoreResult<Option<UploadSession>> {
        self.upload_sessions
            .find_one(session_filter(user, upload_id))
            .await
            .ctx("finding an upload session")?
            .map(from_doc)
            .transpose()
    }

    async fn received_chunks(&self, user: &UserId, upload_id: &str) -> StoreResult<Vec<u32>> {
        let Some(document) = self
            .upload_sessions
            .find_one(session_filter(user, upload_id))
            .projection(doc! { "chunks": 1 })
            .await
            .ctx("finding an upload session")?
        else {
            return Ok(Vec::new());
        };
        let mut chunks: Vec<u32> = match document.get_array("chunks") {
            Ok(array) => array
                .iter()
                .filter_map(|v| match v {
                    bson::Bson::Int32(i) => u32::try_from(*i).ok(),
                    bson::Bson::Int64(i) => u32::try_from(*i).ok(),
                    _ => None,
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        chunks.sort_unstable();
        chunks.dedup();
        Ok(chunks)
    }

    async fn record_chunk(
        &self,
        user: &UserId,
        upload_id: &str,
        index: u32,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut filter = session_filter(user, upload_id);
        filter.insert("slot", in_progress());
        let expires = bson::to_bson(&expires_at).ctx("encoding an expiry")?;
        let result = self
            .upload_sessions
            .update_one(
                filter,
                doc! {
                    "$addToSet": { "chunks": i64::from(index) },
                    "$set": { "expiresAt": expires, "expiresAtMs": to_bson_time(expires_at) },
                },
            )
            .await
            .ctx("recording a chunk")?;
        if result.matched_count == 0 {
            return Err(StoreError::NotFound(format!("upload {upload_id}")));
        }
        Ok(())
    }

    async fn complete_upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
        file_id: &str,
    ) -> StoreResult<()> {
        let result = self
            .upload_sessions
            .update_one(
                session_filter(user, upload_id),
                doc! {
                    "$set": { "completedFileId": file_id, "chunks": bson::Bson::Array(Vec::new()) },
                    "$unset": { "slot": "" },
                },
            )
            .await
            .ctx("completing an upload session")?;
        if result.matched_count == 0 {
            return Err(StoreError::NotFound(format!("upload {upload_id}")));
        }
        Ok(())
    }

    async fn purge_completed_upload_sessions(
        &self,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let deleted = self
            .upload_sessions
            .delete_many(doc! {
                "slot": { "$exists": false },
                "completedFileId": { "$ne": null },
                "expiresAtMs": { "$lt": to_bson_time(expired_before) },
            })
            .await
            .ctx("purging completed upload sessions")?;
        Ok(deleted.deleted_count)
    }

    async fn delete_upload_session(&self, user: &UserId, upload_id: &str) -> StoreResult<bool> {
        let result = self
            .upload_sessions
            .delete_one(session_filter(user, upload_id))
            .await
            .ctx("deleting an upload session")?;
        Ok(result.deleted_count > 0)
    }

    async fn expired_upload_sessions(
        &self,
        now: DateTime<Utc>,
        user: Option<&UserId>,
        limit: usize,
    ) -> StoreResult<Vec<UploadSession>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter =
            doc! { "slot": in_progress(), "expiresAtMs": { "$lt": to_bson_time(now) } };
        if let Some(user) = user {
            filter.insert("userId", user.as_str());
        }
        let docs: Vec<Document> = self
            .upload_sessions
            .find(filter)
            .sort(doc! { "expiresAtMs": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .ctx("finding expired uploads")?
            .try_collect()
            .await
            .ctx("reading expired uploads")?;
        docs.into_iter().map(from_doc).collect()
    }
}
