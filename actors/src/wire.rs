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
/// for text, `{ id, seq, conversationId, senderId, fileInfo, message, clientId,
/// createdAt }` for a shared file.
pub fn message(m: &Message) -> Value {
    serde_json::to_value(MessageView(m)).unwrap_or_else(|e| {
        log::error!("cannot serialize message {}: {e}", m.id.0);
        Value::Null
    })
}

/// A chat message as [`message`] shows it, serialized straight from the
/// record: a `new_message` and its sender's ack are encoded from one
/// serialization, with no `Value` built, cloned and walked twice.
pub struct MessageView<'a>(pub &'a Message);

impl serde::Serialize for MessageView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let m = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", &m.id)?;
        map.serialize_entry("seq", &m.seq)?;
        map.serialize_entry("conversationId", &m.conversation_id)?;
        map.serialize_entry("senderId", &m.sender_id)?;
        match &m.body {
            MessageBody::Text { text } => map.serialize_entry("text", text)?,
            MessageBody::File { file_info, message } => {
                map.serialize_entry("fileInfo", file_info)?;
                map.serialize_entry("message", message)?;
            }
        }
        map.serialize_entry("clientId", &m.client_id)?;
        map.serialize_entry("createdAt", &iso(&m.created_at))?;
        map.end()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ConversationId, MessageId, UserId};
    use chrono::TimeZone;

    fn record(body: MessageBody, client_id: Option<&str>) -> Message {
        Message {
            id: MessageId("m1".into()),
            conversation_id: ConversationId("c1".into()),
            seq: 7,
            sender_id: UserId("u1".into()),
            client_id: client_id.map(str::to_owned),
            body,
            created_at: chrono::Utc.with_ymd_and_hms(2026, 12, 5, 8, 9, 10).unwrap(),
        }
    }

    /// The view is the contract's shape, as JSON text in the documented key
    /// order (a missing client id is `null`, not left out) and as a `Value`.
    #[test]
    fn a_message_view_has_the_contract_shape() {
        let text = record(
            MessageBody::Text {
                text: "hi \"there\"".into(),
            },
            Some("k1"),
        );
        let json = serde_json::to_string(&MessageView(&text)).unwrap();
        assert_eq!(
            json,
            r#"{"id":"m1","seq":7,"conversationId":"c1","senderId":"u1","text":"hi \"there\"","clientId":"k1","createdAt":"2026-12-05T08:09:10.000Z"}"#
        );
        assert_eq!(
            message(&text),
            serde_json::from_str::<Value>(&json).unwrap()
        );
        let file = record(
            MessageBody::File {
                file_info: json!({ "id": "f1" }),
                message: None,
            },
            None,
        );
        let json = serde_json::to_string(&MessageView(&file)).unwrap();
        assert_eq!(
            json,
            r#"{"id":"m1","seq":7,"conversationId":"c1","senderId":"u1","fileInfo":{"id":"f1"},"message":null,"clientId":null,"createdAt":"2026-12-05T08:09:10.000Z"}"#
        );
        assert_eq!(
            message(&file),
            serde_json::from_str::<Value>(&json).unwrap()
        );
    }
}
