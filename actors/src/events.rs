//! Domain events: what a write in a workspace tells the clients looking at
//! it. Each event knows its Socket.IO name, the rooms of namespace `/` it
//! goes to and its payload, so routing is one pure function, tested here
//! without a network.
//!
//! | event | rooms |
//! |---|---|
//! | `task:created` | `project:{id}` |
//! | `task:updated`, `task:moved`, `task:deleted` | `project:{id}`, `task:{id}` |
//! | `comment:*` | `task:{id}` |
//! | `member:*` | `workspace:{id}` |

use crate::ids::{RoomName, UserId, WorkspaceId};
use crate::model::{Comment, Task, TaskStatus};
use crate::wire;
use serde_json::{json, Value};

/// What happened to a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskChange {
    Created,
    Updated,
    /// Its status changed.
    Moved {
        from: TaskStatus,
        to: TaskStatus,
    },
    Deleted,
}

/// What happened to a comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommentChange {
    Created,
    Updated,
    Deleted,
}

/// What happened to a membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    Joined,
    Left,
    RoleChanged,
}

/// A change made in a workspace, by `actor`.
#[derive(Clone, Debug)]
pub enum DomainEvent {
    /// A task changed.
    Task {
        change: TaskChange,
        task: Box<Task>,
        actor: UserId,
    },
    /// A comment changed.
    Comment {
        change: CommentChange,
        comment: Box<Comment>,
        actor: UserId,
    },
    /// A membership changed; `member` is `{ userId, name, role }`.
    Member {
        change: MemberChange,
        workspace: WorkspaceId,
        member: Value,
        actor: UserId,
    },
}

/// `workspace:{id}`.
pub fn workspace_room(id: &str) -> RoomName {
    RoomName(format!("workspace:{id}"))
}
/// `project:{id}`.
pub fn project_room(id: &str) -> RoomName {
    RoomName(format!("project:{id}"))
}
/// `task:{id}`.
pub fn task_room(id: &str) -> RoomName {
    RoomName(format!("task:{id}"))
}
/// `user:{id}`.
pub fn user_room(id: &str) -> RoomName {
    RoomName(format!("user:{id}"))
}

impl DomainEvent {
    /// The workspace the event belongs to.
    pub fn workspace_id(&self) -> &WorkspaceId {
        match self {
            DomainEvent::Task { task, .. } => &task.workspace_id,
            DomainEvent::Comment { comment, .. } => &comment.workspace_id,
            DomainEvent::Member { workspace, .. } => workspace,
        }
    }

    /// The Socket.IO event name.
    pub fn name(&self) -> &'static str {
        match self {
            DomainEvent::Task { change, .. } => match change {
                TaskChange::Created => "task:created",
                TaskChange::Updated => "task:updated",
                TaskChange::Moved { .. } => "task:moved",
                TaskChange::Deleted => "task:deleted",
            },
            DomainEvent::Comment { change, .. } => match change {
                CommentChange::Created => "comment:created",
                CommentChange::Updated => "comment:updated",
                CommentChange::Deleted => "comment:deleted",
            },
            DomainEvent::Member { change, .. } => match change {
                MemberChange::Joined => "member:joined",
                MemberChange::Left => "member:left",
                MemberChange::RoleChanged => "member:role_changed",
            },
        }
    }

    /// The rooms of namespace `/` that get it.
    pub fn rooms(&self) -> Vec<RoomName> {
        match self {
            DomainEvent::Task { change, task, .. } => {
                let mut rooms = vec![project_room(task.project_id.as_str())];
                if *change != TaskChange::Created {
                    rooms.push(task_room(task.id.as_str()));
                }
                rooms
            }
            DomainEvent::Comment { comment, .. } => vec![task_room(comment.task_id.as_str())],
            DomainEvent::Member { workspace, .. } => vec![workspace_room(workspace.as_str())],
        }
    }

    /// The payload, in the contract's shape.
    pub fn payload(&self) -> Value {
        match self {
            DomainEvent::Task {
                change,
                task,
                actor,
            } => {
                let mut v = json!({
                    "workspaceId": task.workspace_id,
                    "projectId": task.project_id,
                    "task": wire::task(task),
                    "actorId": actor,
                });
                if let TaskChange::Moved { from, to } = change {
                    v["fromStatus"] = json!(from.as_str());
                    v["toStatus"] = json!(to.as_str());
                }
                v
            }
            DomainEvent::Comment { comment, actor, .. } => json!({
                "workspaceId": comment.workspace_id,
                "projectId": comment.project_id,
                "taskId": comment.task_id,
                "comment": wire::comment(comment),
                "actorId": actor,
            }),
            DomainEvent::Member {
                workspace,
                member,
                actor,
                ..
            } => json!({
                "workspaceId": workspace,
                "member": member,
                "actorId": actor,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ProjectId, TaskId};
    use crate::model::Priority;

    fn task() -> Task {
        let now = chrono::Utc::now();
        Task {
            id: TaskId::from("t1"),
            workspace_id: WorkspaceId::from("w1"),
            project_id: ProjectId::from("p1"),
            title: "x".into(),
            description: None,
            status: TaskStatus::Todo,
            priority: Priority::Medium,
            assignee_id: None,
            tags: vec![],
            due_date: None,
            attachments: vec![],
            created_by: UserId::from("u"),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            seq: 1,
        }
    }

    #[test]
    fn task_events_route_to_project_and_task_rooms() {
        let created = DomainEvent::Task {
            change: TaskChange::Created,
            task: Box::new(task()),
            actor: UserId::from("u"),
        };
        assert_eq!(created.name(), "task:created");
        assert_eq!(created.rooms(), vec![project_room("p1")]);
        let moved = DomainEvent::Task {
            change: TaskChange::Moved {
                from: TaskStatus::Todo,
                to: TaskStatus::Done,
            },
            task: Box::new(task()),
            actor: UserId::from("u"),
        };
        assert_eq!(moved.rooms(), vec![project_room("p1"), task_room("t1")]);
        let p = moved.payload();
        assert_eq!(p["fromStatus"], "todo");
        assert_eq!(p["toStatus"], "done");
        assert_eq!(p["task"]["id"], "t1");
        assert_eq!(p["actorId"], "u");
    }

    #[test]
    fn member_events_route_to_the_workspace_room() {
        let e = DomainEvent::Member {
            change: MemberChange::RoleChanged,
            workspace: WorkspaceId::from("w1"),
            member: json!({ "userId": "b", "name": "B", "role": "viewer" }),
            actor: UserId::from("u"),
        };
        assert_eq!(e.name(), "member:role_changed");
        assert_eq!(e.rooms(), vec![workspace_room("w1")]);
        assert_eq!(e.payload()["member"]["role"], "viewer");
    }
}
