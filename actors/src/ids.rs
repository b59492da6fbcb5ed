//! Newtype identifiers used across the core, so a user id can never be passed
//! where a room or a conversation is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// A user's id: the JWT `sub`.
    UserId
);
string_id!(
    /// A conversation's id.
    ConversationId
);
string_id!(
    /// A chat message's id.
    MessageId
);
string_id!(
    /// A client-chosen upload id (`uploadId`), unique per user.
    UploadId
);
string_id!(
    /// A room name inside a namespace, e.g. `conversation:42` or `user:7`.
    RoomName
);
string_id!(
    /// An Engine.IO session id (`sid`).
    Sid
);

/// Generates a fresh random id (UUID v4, simple form: 32 hex characters).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A room key: the namespace plus the room name. Rooms with the same name in
/// different namespaces are different rooms.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey {
    /// Namespace, e.g. `/` or `/chat`.
    pub nsp: String,
    /// Room name, e.g. `user:7`.
    pub room: RoomName,
}

impl RoomKey {
    /// Builds a key from a namespace and a room name.
    pub fn new(nsp: impl Into<String>, room: impl Into<String>) -> Self {
        Self {
            nsp: nsp.into(),
            room: RoomName(room.into()),
        }
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.nsp, self.room)
    }
}

string_id!(
    /// A workspace's id.
    WorkspaceId
);
string_id!(
    /// A project's id.
    ProjectId
);
string_id!(
    /// A task's id.
    TaskId
);
string_id!(
    /// A comment's id.
    CommentId
);
string_id!(
    /// A notification's id.
    NotificationId
);
