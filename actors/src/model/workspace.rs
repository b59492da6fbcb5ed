//! Collaboration records: workspaces, their members and roles, projects,
//! tasks, comments and notifications, as the document store keeps them.
//!
//! Records that are listed in creation order carry a `seq`: their position in
//! that order, given by the store, used as the pagination cursor and never
//! shown to clients.

use crate::ids::{CommentId, NotificationId, ProjectId, TaskId, UserId, WorkspaceId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A member's role in a workspace, from most to least powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Created the workspace; cannot be removed or demoted.
    Owner,
    /// Manages members.
    Admin,
    /// Writes projects, tasks and comments.
    Member,
    /// Reads, joins rooms, is present and types; never writes.
    Viewer,
}

impl Role {
    /// The contract's name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// May create and change projects, tasks and comments.
    pub fn can_write(self) -> bool {
        !matches!(self, Role::Viewer)
    }

    /// May add, remove and change members, and moderate comments.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// A workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub owner_id: UserId,
    pub created_at: DateTime<Utc>,
}

/// A user's membership in a workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// A project inside a workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: ProjectId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    /// Creation order within the store.
    #[serde(default)]
    pub seq: u64,
}

/// What is needed to create a project.
#[derive(Clone, Debug, PartialEq)]
pub struct NewProject {
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    pub created_by: UserId,
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Todo,
    InProgress,
    InReview,
    Done,
}

impl TaskStatus {
    /// The contract's name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Todo => "todo",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::InReview => "in_review",
            TaskStatus::Done => "done",
        }
    }
}

/// How urgent a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

/// A task. Deleting one is soft: `deleted_at` is set and it leaves lists,
/// search and reads, but the record stays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: TaskId,
    pub workspace_id: WorkspaceId,
    pub project_id: ProjectId,
    pub title: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    pub priority: Priority,
    pub assignee_id: Option<UserId>,
    pub tags: Vec<String>,
    pub due_date: Option<DateTime<Utc>>,
    /// File objects (the contract's shape), attached through the upload API.
    #[serde(default)]
    pub attachments: Vec<serde_json::Value>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Creation order within the store.
    #[serde(default)]
    pub seq: u64,
}

/// What is needed to create a task (the project's workspace is filled in by
/// the store).
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    pub project_id: ProjectId,
    pub title: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    pub priority: Priority,
    pub assignee_id: Option<UserId>,
    pub tags: Vec<String>,
    pub due_date: Option<DateTime<Utc>>,
    pub created_by: UserId,
}

/// A partial update of a task: `None` leaves a field as it is; for nullable
/// fields `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<TaskStatus>,
    pub priority: Option<Priority>,
    pub assignee_id: Option<Option<UserId>>,
    pub tags: Option<Vec<String>>,
    pub due_date: Option<Option<DateTime<Utc>>>,
}

impl TaskPatch {
    /// Applies the patch to `task` (not touching `updated_at`).
    pub fn apply(&self, task: &mut Task) {
        if let Some(v) = &self.title {
            task.title = v.clone();
        }
        if let Some(v) = &self.description {
            task.description = v.clone();
        }
        if let Some(v) = self.status {
            task.status = v;
        }
        if let Some(v) = self.priority {
            task.priority = v;
        }
        if let Some(v) = &self.assignee_id {
            task.assignee_id = v.clone();
        }
        if let Some(v) = &self.tags {
            task.tags = v.clone();
        }
        if let Some(v) = self.due_date {
            task.due_date = v;
        }
    }
}

/// Which tasks of a project a list wants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub assignee_id: Option<UserId>,
}

/// A comment on a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub id: CommentId,
    pub workspace_id: WorkspaceId,
    pub project_id: ProjectId,
    pub task_id: TaskId,
    pub author_id: UserId,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    /// Creation order within the store.
    #[serde(default)]
    pub seq: u64,
}

/// What is needed to create a comment (workspace and project come from the
/// task).
#[derive(Clone, Debug, PartialEq)]
pub struct NewComment {
    pub task_id: TaskId,
    pub author_id: UserId,
    pub body: String,
}

/// A stored notification for one user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: NotificationId,
    pub user_id: UserId,
    /// `task_assigned`, `task_comment`, `mention`.
    pub kind: String,
    pub title: String,
    pub body: String,
    /// Where the client should go, e.g. `/tasks/{id}`.
    pub link: String,
    pub read: bool,
    pub created_at: DateTime<Utc>,
    /// Creation order within the store.
    #[serde(default)]
    pub seq: u64,
}

/// What is needed to create a notification.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNotification {
    pub user_id: UserId,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: String,
}

/// One page of search hits, best first, with the number of all hits.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHits {
    pub items: Vec<Task>,
    pub total: u64,
}
