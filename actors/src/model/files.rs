//! Files and uploads as the document store keeps them: file records, download
//! tokens, and the resumable state of a chunked upload session.

use crate::ids::{ConversationId, TaskId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A stored file: its metadata and where its bytes are in the blob store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRecord {
    pub id: String,
    /// Sanitized file name.
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
    /// Declared (and checked) MIME type.
    pub mime_type: String,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// Key of the bytes in the blob store.
    pub blob_key: String,
    pub uploaded_by: UserId,
    pub created_at: DateTime<Utc>,
}

impl FileRecord {
    /// The contract's `downloadUrl`: the Bearer-authenticated content path,
    /// relative to the server.
    pub fn download_url(&self) -> String {
        format!("/api/v1/files/{}/content", self.id)
    }
}

/// What a download token allows: the same bytes, shown inline or saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloadPermission {
    /// `Content-Disposition: inline`.
    Preview,
    /// `Content-Disposition: attachment`.
    Download,
}

/// A download token's server-side record, keyed by the SHA-256 of the token
/// (the token itself is never stored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadToken {
    /// Hex SHA-256 of the token handed to the client.
    pub token_hash: String,
    pub file_id: String,
    /// Who asked for it.
    pub created_by: UserId,
    pub permission: DownloadPermission,
    /// Works once, then answers 410.
    pub one_time: bool,
    pub expires_at: DateTime<Utc>,
    /// Set when a one-time token has been used.
    pub spent: bool,
}

/// The outcome of presenting a download token.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenUse {
    /// Valid: the bytes may be served (a one-time token is now spent).
    Valid(DownloadToken),
    /// A one-time token used before.
    Spent,
    /// Past its expiry.
    Expired,
    /// Never issued (or swept long ago).
    Unknown,
}

/// Where an upload is going once complete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UploadTarget {
    /// Shared into this conversation (`new_file_message`) on completion.
    Conversation(ConversationId),
    /// Attached to this task (`task:updated`) on completion.
    Task(TaskId),
}

/// The state of a resumable upload session. The chunks received so far are
/// kept beside it by the store (one row each), not in this record, so
/// recording a chunk never rewrites it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSession {
    /// Server-chosen, stable across resumes; also the id of the file made
    /// from it, so finishing twice can never make two files.
    pub session_id: String,
    /// Client-chosen, unique per user.
    pub upload_id: String,
    pub user_id: UserId,
    pub file_name: String,
    pub file_size: u64,
    pub mime_type: String,
    pub chunk_size: u32,
    pub total_chunks: u32,
    /// Expected whole-file SHA-256 (lower-case hex), when the client gave one.
    pub sha256: Option<String>,
    pub target: Option<UploadTarget>,
    pub created_at: DateTime<Utc>,
    /// Expiry: a fixed time after the last chunk (or the initiation).
    pub expires_at: DateTime<Utc>,
    /// The file made from it, once completed.
    pub completed_file_id: Option<String>,
}

impl UploadSession {
    /// Size of chunk `index`: `chunk_size`, except the last one.
    pub fn expected_chunk_len(&self, index: u32) -> Option<u64> {
        if index >= self.total_chunks {
            return None;
        }
        let start = u64::from(index) * u64::from(self.chunk_size);
        Some((self.file_size - start).min(u64::from(self.chunk_size)))
    }
}

/// What `create_upload_session` did.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionStart {
    /// A new session was created.
    Created(UploadSession),
    /// A session with this `(user, uploadId)` exists (in progress or
    /// completed); it is returned unchanged.
    Existing(UploadSession),
    /// The user already has the maximum of sessions in progress.
    TooMany,
}
