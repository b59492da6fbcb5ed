//! The contract's JSON shapes for records that both HTTP and sockets send, so
//! a message looks the same in `new_message` and in the history endpoint.

use crate::model::{Conversation, FileRecord, Message, MessageBody};
use serde_json::{json, Value};

/// ISO 8601 UTC with millisecond precision, as JavaScript's `toISOString`.
pub fn iso(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A chat message: `{ id, seq, conversationId, senderId, text, clientId, createdAt }`
/// for text, `{ id, seq, conversationId, senderId, fileInfo, message, createdAt }`
/// for a shared file.
pub fn message(m: &Message) -> Value {
    match &m.body {
        MessageBody::Text { text } => json!({
            "id": m.id,
            "seq": m.seq,
            "conversationId": m.conversation_id,
            "senderId": m.sender_id,
            "text": text,
            "clientId": m.client_id,
            "createdAt": iso(&m.created_at),
        }),
        MessageBody::File { file_info, message } => json!({
            "id": m.id,
            "seq": m.seq,
            "conversationId": m.conversation_id,
            "senderId": m.sender_id,
            "fileInfo": file_info,
            "message": message,
            "clientId": m.client_id,
            "createdAt": iso(&m.created_at),
        }),
    }
}

/// A conversation: `{ id, workspaceId, title, memberIds, createdBy, createdAt, lastSeq }`.
pub fn conversation(c: &Conversation) -> Value {
    json!({
        "id": c.id,
        "workspaceId": c.workspace_id,
        "title": c.title,
        "memberIds": c.member_ids,
        "createdBy": c.created_by,
        "createdAt": iso(&c.created_at),
        "lastSeq": c.last_seq,
    })
}

/// A file object: `{ id, fileName, size, mimeType, sha256, downloadUrl, uploadedBy, createdAt }`.
pub fn file(f: &FileRecord) -> Value {
    json!({
        "id": f.id,
        "fileName": f.file_name,
        "size": f.size,
        "mimeType": f.mime_type,
        "sha256": f.sha256,
        "downloadUrl": f.download_url(),
        "uploadedBy": f.uploaded_by,
        "createdAt": iso(&f.created_at),
    })
}

/// The `fileInfo` of a file message: `{ id, fileName, size, mimeType, downloadUrl }`.
pub fn file_info(f: &FileRecord) -> Value {
    json!({
        "id": f.id,
        "fileName": f.file_name,
        "size": f.size,
        "mimeType": f.mime_type,
        "downloadUrl": f.download_url(),
    })
}
