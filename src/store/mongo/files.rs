//! Files in the MongoDB store: file records (`_id` is the file id, readers
//! granted in a `readerIds` set on the record) and download tokens (`_id` is
//! the token's hash).
//!
//! - one file per id: the record is one insert; a duplicate key means the
//!   upload was finished before, and the stored record is returned.
//! - grants are idempotent: `$addToSet` on the record, one write.
//! - a one-time token is spent once: `findOneAndUpdate` on `spent: false`,
//!   which exactly one of any number of concurrent callers wins; the others
//!   see `Spent`.

use super::*;
use futures_util::TryStreamExt;
use huddle_actors::model::{DownloadToken, FileRecord, TokenUse};
use huddle_actors::store::FileStore;

#[async_trait]
impl FileStore for MongoStore {
    async fn create_file(&self, file: FileRecord) -> StoreResult<(FileRecord, bool)> {
        let mut document = to_doc(&file, &file.id)?;
        // Present from the start: nx-27017 ignores `$addToSet` with `$each`
        // on a missing field (see the README, section "MongoDB document store").
        document.insert("readerIds", bson::Bson::Array(Vec::new()));
        match self.files.insert_one(document).await {
            Ok(_) => Ok((file, true)),
            Err(e) if is_duplicate_key(&e) => match self.file(&file.id).await? {
                Some(existing) => Ok((existing, false)),
                None => Err(StoreError::backend(
                    format!("file {}: duplicate key but no record", file.id),
                    e,
                )),
            },
            Err(e) => Err(StoreError::backend("inserting a file", e)),
        }
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        self.files
            .find_one(doc! { "_id": id })
            .await
            .ctx("finding a file")?
            .map(from_doc)
            .transpose()
    }

    async fn grant_file_read(&self, file_id: &str, users: &[UserId]) -> StoreResult<()> {
        let ids: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        let result = self
            .files
            .update_one(
                doc! { "_id": file_id },
                doc! { "$addToSet": { "readerIds": { "$each": ids } } },
            )
            .await
            .ctx("granting file reads")?;
        if result.matched_count == 0 {
            return Err(StoreError::NotFound(format!("file {file_id}")));
        }
        Ok(())
    }

    async fn can_read_file(&self, file_id: &str, user: &UserId) -> StoreResult<bool> {
        let n = self
            .files
            .count_documents(doc! {
                "_id": file_id,
                "$or": [ { "uploadedBy": user.as_str() }, { "readerIds": user.as_str() } ],
            })
            .await
            .ctx("checking a file read")?;
        if n > 0 {
            return Ok(true);
        }
        // Members of the workspace of a live task the file is attached to.
        let mut tasks = self
            .tasks
            .find(doc! { "attachments.id": file_id, "deletedAt": { "$in": [ bson::Bson::Null ] } })
            .projection(doc! { "workspaceId": 1 })
            .limit(100)
            .await
            .ctx("finding tasks a file is attached to")?;
        while let Some(task) = tasks
            .try_next()
            .await
            .ctx("reading tasks a file is attached to")?
        {
            if let Ok(ws) = task.get_str("workspaceId") {
                let workspace = huddle_actors::ids::WorkspaceId::from(ws);
                if huddle_actors::store::WorkspaceStore::member(self, &workspace, user)
                    .await?
                    .is_some()
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    async fn put_download_token(&self, token: DownloadToken) -> StoreResult<()> {
        let mut document = to_doc(&token, &token.token_hash)?;
        document.insert("expiresAtMs", to_bson_time(token.expires_at));
        match self.download_tokens.insert_one(document).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => {
                Err(StoreError::Conflict("download token exists".into()))
            }
            Err(e) => Err(StoreError::backend("inserting a download token", e)),
        }
    }

    async fn use_download_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<TokenUse> {
        let Some(document) = self
            .download_tokens
            .find_one(doc! { "_id": token_hash })
            .await
            .ctx("finding a download token")?
        else {
            return Ok(TokenUse::Unknown);
        };
        let mut token: DownloadToken = from_doc(document)?;
        if token.spent {
            return Ok(TokenUse::Spent);
        }
        if token.expires_at <= now {
            return Ok(TokenUse::Expired);
        }
        if token.one_time {
            let won = self
                .download_tokens
                .find_one_and_update(
                    doc! { "_id": token_hash, "spent": false },
                    doc! { "$set": { "spent": true } },
                )
                .await
                .ctx("spending a download token")?;
            if won.is_none() {
                return Ok(TokenUse::Spent);
            }
            token.spent = true;
        }
        Ok(TokenUse::Valid(token))
    }

    async fn purge_download_tokens(&self, expired_before: DateTime<Utc>) -> StoreResult<u64> {
        let deleted = self
            .download_tokens
            .delete_many(doc! { "expiresAtMs": { "$lt": to_bson_time(expired_before) } })
            .await
            .ctx("purging download tokens")?;
        Ok(deleted.deleted_count)
    }
}
