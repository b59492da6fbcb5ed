//! Domain records as the document store keeps them. HTTP and socket handlers
//! turn them into the contract's JSON shapes (camelCase, ISO 8601 UTC times);
//! secrets such as password hashes never leave through those views.

mod files;
pub use files::*;

use crate::ids::{ConversationId, MessageId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A user account (or the record made for a `sub` first seen in a token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    /// Lower-cased; `None` for users known only from an external token.
    pub email: Option<String>,
    pub name: String,
    /// Unique, lower-cased; used for @mentions.
    pub username: String,
    /// argon2 PHC string; `None` for users without a password here.
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The public view of a user, as the contract shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicUser {
    pub id: UserId,
    pub email: Option<String>,
    pub name: String,
    pub username: String,
}

impl User {
    /// The view safe to send to clients.
    pub fn public(&self) -> PublicUser {
        PublicUser {
            id: self.id.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            username: self.username.clone(),
        }
    }
}

/// A refresh token's server-side record, keyed by its `jti`. Rotation consumes
/// the old record atomically, so a refresh token works once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshTokenRecord {
    pub jti: String,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
}

/// A chat conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: ConversationId,
    pub workspace_id: Option<String>,
    pub title: Option<String>,
    pub member_ids: Vec<UserId>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    /// Highest `seq` given out so far (0 when empty).
    pub last_seq: u64,
    /// `Some("a|b")` (ids sorted) for an untitled two-person conversation:
    /// there is at most one per pair.
    pub direct_key: Option<String>,
}

/// What is needed to create a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct NewConversation {
    pub workspace_id: Option<String>,
    pub title: Option<String>,
    /// Already includes the creator, deduplicated.
    pub member_ids: Vec<UserId>,
    pub created_by: UserId,
    pub direct_key: Option<String>,
}

/// What a message carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum MessageBody {
    /// A text message.
    Text { text: String },
    /// A shared file; `file_info` is the contract's `fileInfo` object.
    File {
        #[serde(rename = "fileInfo")]
        file_info: serde_json::Value,
        message: Option<String>,
    },
}

/// A persisted chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    /// Gap-free, starting at 1, per conversation.
    pub seq: u64,
    pub sender_id: UserId,
    pub client_id: Option<String>,
    pub body: MessageBody,
    pub created_at: DateTime<Utc>,
}

/// What is needed to append a message.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    /// Idempotency key: (sender, client id) maps to one message.
    pub client_id: Option<String>,
    pub body: MessageBody,
}

/// A page of a list, with the cursor for the next one (`None` at the end).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

mod workspace;
pub use workspace::{
    Comment, Member, NewComment, NewNotification, NewProject, NewTask, Notification, Priority,
    Project, Role, SearchHits, Task, TaskFilter, TaskPatch, TaskStatus, Workspace,
};
