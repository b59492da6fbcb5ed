//! The contract's JSON shapes for records that both HTTP and sockets send, so
//! a message looks the same in `new_message` and in the history endpoint, and
//! a task the same in `task:updated` and in `GET /tasks/{id}`.

use crate::model::{
    Comment, Conversation, FileRecord, Member, Message, MessageBody, Notification, Project, Task,
    Workspace,
};
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

/// A workspace: `{ id, name, ownerId, createdAt }`, plus the caller's `role`
/// when given.
pub fn workspace(w: &Workspace, role: Option<&str>) -> Value {
    let mut v = json!({
        "id": w.id,
        "name": w.name,
        "ownerId": w.owner_id,
        "createdAt": iso(&w.created_at),
    });
    if let Some(r) = role {
        v["role"] = json!(r);
    }
    v
}

/// A member: `{ id, userId, name, role, joinedAt }` (`id` is the user id).
pub fn member(m: &Member, name: &str) -> Value {
    json!({
        "id": m.user_id,
        "userId": m.user_id,
        "workspaceId": m.workspace_id,
        "name": name,
        "role": m.role.as_str(),
        "joinedAt": iso(&m.joined_at),
    })
}

/// A project: `{ id, workspaceId, name, description, createdBy, createdAt }`.
pub fn project(p: &Project) -> Value {
    json!({
        "id": p.id,
        "workspaceId": p.workspace_id,
        "name": p.name,
        "description": p.description,
        "createdBy": p.created_by,
        "createdAt": iso(&p.created_at),
    })
}

/// A task, every field of the contract, times in ISO 8601 UTC.
pub fn task(t: &Task) -> Value {
    json!({
        "id": t.id,
        "workspaceId": t.workspace_id,
        "projectId": t.project_id,
        "title": t.title,
        "description": t.description,
        "status": t.status.as_str(),
        "priority": t.priority,
        "assigneeId": t.assignee_id,
        "tags": t.tags,
        "dueDate": t.due_date.as_ref().map(iso),
        "attachments": t.attachments,
        "createdBy": t.created_by,
        "createdAt": iso(&t.created_at),
        "updatedAt": iso(&t.updated_at),
        "deletedAt": t.deleted_at.as_ref().map(iso),
    })
}

/// A comment: `{ id, taskId, projectId, workspaceId, authorId, body, createdAt, updatedAt }`.
pub fn comment(c: &Comment) -> Value {
    json!({
        "id": c.id,
        "workspaceId": c.workspace_id,
        "projectId": c.project_id,
        "taskId": c.task_id,
        "authorId": c.author_id,
        "body": c.body,
        "createdAt": iso(&c.created_at),
        "updatedAt": c.updated_at.as_ref().map(iso),
    })
}

/// A notification as listed: `{ id, type, title, body, link, read, createdAt }`.
pub fn notification(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "type": n.kind,
        "title": n.title,
        "body": n.body,
        "link": n.link,
        "read": n.read,
        "createdAt": iso(&n.created_at),
    })
}
