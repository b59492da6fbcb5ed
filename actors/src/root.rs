//! Namespace `/`, the default one every `io(url)` connects to: workspace,
//! project and task rooms with authorization, presence and typing (contract
//! section 4).
//!
//! Each socket is in its `user:{id}` room (the engine joins it on connect),
//! so notifications and server publishes reach every device. Events are
//! decoded once into `RootEvent` and dispatched with one match; the state
//! they touch (tracked rooms, viewing, typing, the workspace actors' member
//! caches) lives in [`Collab`], which HTTP handlers share.

use crate::collab::Collab;
use crate::events::{project_room, task_room, workspace_room};
use crate::ids::{ProjectId, RoomName, TaskId, UserId, WorkspaceId};
use crate::namespace::{DisconnectReason, EventError, IncomingEvent, Namespace, Reply, Socket};
use crate::store::prelude::*;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Longest id accepted from a client.
const MAX_ID_LEN: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomsRef {
    workspace_id: Option<String>,
    project_id: Option<String>,
    task_id: Option<String>,
}

impl RoomsRef {
    /// The reference a room of `/` names (`workspace:`, `project:` or
    /// `task:` and its id); `None` for any other room (`user:{id}`).
    fn of_room(room: &RoomName) -> Option<Self> {
        let (kind, id) = room.0.split_once(':')?;
        let id = Some(id.to_owned());
        let mut r = RoomsRef {
            workspace_id: None,
            project_id: None,
            task_id: None,
        };
        match kind {
            "workspace" => r.workspace_id = id,
            "project" => r.project_id = id,
            "task" => r.task_id = id,
            _ => return None,
        }
        Some(r)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Online,
    Away,
}

#[derive(Debug, Deserialize)]
struct PresenceUpdate {
    status: Status,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskRef {
    task_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingRef {
    task_id: String,
    comment_id: Option<String>,
}

/// The events of `/`, decoded from the wire.
#[derive(Debug)]
enum RootEvent {
    Join(RoomsRef),
    Leave(RoomsRef),
    Presence(PresenceUpdate),
    Viewing(TaskRef),
    TypingStart(TypingRef),
    TypingStop(TypingRef),
}

impl RootEvent {
    fn decode(event: &IncomingEvent) -> Result<RootEvent, EventError> {
        Ok(match event.name.as_str() {
            "room:join" => RootEvent::Join(event.decode_payload()?),
            "room:leave" => RootEvent::Leave(event.decode_payload()?),
            "presence:update" => RootEvent::Presence(event.decode_payload()?),
            "presence:viewing" => RootEvent::Viewing(event.decode_payload()?),
            "typing:start" => RootEvent::TypingStart(event.decode_payload()?),
            "typing:stop" => RootEvent::TypingStop(event.decode_payload()?),
            other => {
                return Err(EventError::bad_request(format!(
                    "unknown event {:?} in /",
                    other.chars().take(64).collect::<String>()
                )))
            }
        })
    }
}

fn check_id(id: &str, what: &str) -> Result<(), EventError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(EventError::bad_request(format!(
            "{what} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    Ok(())
}

fn forbidden() -> EventError {
    EventError::forbidden("not a member of the workspace")
}

fn store_error(e: StoreError) -> EventError {
    log::error!(
        "root namespace store error: {e}: {:?}",
        std::error::Error::source(&e)
    );
    EventError::internal()
}

/// The `/` namespace.
pub struct RootNamespace {
    collab: Arc<Collab>,
}

impl RootNamespace {
    /// The namespace over the node's collaboration layer.
    pub fn new(collab: Arc<Collab>) -> Self {
        RootNamespace { collab }
    }

    /// The rooms a request names with the workspace of each; unknown or
    /// deleted projects and tasks are `forbidden`, as for non-members, so
    /// ids leak nothing.
    async fn resolve(&self, r: &RoomsRef) -> Result<Vec<(RoomName, WorkspaceId)>, EventError> {
        if r.workspace_id.is_none() && r.project_id.is_none() && r.task_id.is_none() {
            return Err(EventError::bad_request(
                "name at least one of workspaceId, projectId, taskId",
            ));
        }
        let store = self.collab.store();
        let mut out = Vec::new();
        if let Some(w) = &r.workspace_id {
            check_id(w, "workspaceId")?;
            out.push((workspace_room(w), WorkspaceId::from(w.as_str())));
        }
        if let Some(p) = &r.project_id {
            check_id(p, "projectId")?;
            let project = store
                .project(&ProjectId::from(p.as_str()))
                .await
                .map_err(store_error)?
                .ok_or_else(forbidden)?;
            out.push((project_room(p), project.workspace_id));
        }
        if let Some(t) = &r.task_id {
            check_id(t, "taskId")?;
            let task = self.live_task(t).await?;
            out.push((task_room(t), task.workspace_id));
        }
        Ok(out)
    }

    async fn live_task(&self, id: &str) -> Result<crate::model::Task, EventError> {
        check_id(id, "taskId")?;
        self.collab
            .store()
            .task(&TaskId::from(id))
            .await
            .map_err(store_error)?
            .filter(|t| t.deleted_at.is_none())
            .ok_or_else(forbidden)
    }

    async fn require_member(&self, socket: &Socket, ws: &WorkspaceId) -> Result<(), EventError> {
        match self
            .collab
            .authorize(ws, socket.user_id())
            .await
            .map_err(store_error)?
        {
            Some(_) => Ok(()),
            None => Err(forbidden()),
        }
    }

    async fn require_all(
        &self,
        socket: &Socket,
        targets: &[(RoomName, WorkspaceId)],
    ) -> Result<(), EventError> {
        let mut checked: Vec<&WorkspaceId> = Vec::new();
        for (_, ws) in targets {
            if !checked.contains(&ws) {
                self.require_member(socket, ws).await?;
                checked.push(ws);
            }
        }
        Ok(())
    }

    /// Joins the rooms after checking membership. The rooms are tracked
    /// before joining and membership is checked again after, so a removal
    /// that races with the join either sees the tracked rooms (and takes the
    /// socket out) or makes the second check fail.
    async fn join(
        &self,
        socket: &Socket,
        targets: Vec<(RoomName, WorkspaceId)>,
    ) -> Result<Vec<RoomName>, EventError> {
        self.require_all(socket, &targets).await?;
        let rooms: Vec<RoomName> = targets.iter().map(|(r, _)| r.clone()).collect();
        self.collab.track(socket, &targets);
        socket.join(rooms.clone()).await?;
        if let Err(e) = self.require_all(socket, &targets).await {
            self.collab.untrack(socket, &rooms);
            socket.leave(rooms).await?;
            return Err(e);
        }
        Ok(rooms)
    }

    /// Whether `user` may be in a workspace, project or task room: a member
    /// of the workspace, its project or task still there. `false` otherwise
    /// (a store error included: the room is left, the client may join
    /// again).
    async fn allowed(&self, user: &UserId, r: &RoomsRef) -> bool {
        let Some((_, ws)) = self.resolve(r).await.ok().and_then(|mut t| t.pop()) else {
            return false;
        };
        matches!(self.collab.authorize(&ws, user).await, Ok(Some(_)))
    }

    /// Tracks the workspace, project and task rooms a recovered socket came
    /// back with, as a join does, so a later removal takes the socket out of
    /// them; they were checked before the socket rejoined them
    /// ([`Namespace::restorable_rooms`]), and are checked again after the
    /// tracking, as a join's are, for a removal in between.
    async fn readmit(&self, socket: &Socket, restored: Vec<RoomName>) {
        let mut kept: Vec<(RoomName, WorkspaceId)> = Vec::new();
        let mut dropped: Vec<RoomName> = Vec::new();
        for room in restored {
            let Some(r) = RoomsRef::of_room(&room) else {
                continue;
            };
            // Membership was checked before the socket rejoined: here only
            // the workspace is needed to track the room.
            match self.resolve(&r).await.ok().and_then(|mut t| t.pop()) {
                Some(target) => kept.push(target),
                None => dropped.push(room),
            }
        }
        self.collab.track(socket, &kept);
        for (room, ws) in &kept {
            if self.require_member(socket, ws).await.is_err() {
                dropped.push(room.clone());
            }
        }
        if dropped.is_empty() {
            return;
        }
        log::debug!("{socket:?} recovered: no longer allowed in {dropped:?}");
        self.collab.untrack(socket, &dropped);
        if let Err(e) = socket.leave(dropped).await {
            log::debug!("{socket:?}: leaving the rooms it may no longer be in: {e}");
        }
    }

    async fn handle(&self, socket: &Socket, event: RootEvent) -> Result<Value, EventError> {
        match event {
            RootEvent::Join(r) => {
                let targets = self.resolve(&r).await?;
                let rooms = self.join(socket, targets).await?;
                Ok(json!({ "ok": true, "rooms": rooms }))
            }
            RootEvent::Leave(r) => {
                let mut rooms = Vec::new();
                for (id, what, room) in [
                    (
                        &r.workspace_id,
                        "workspaceId",
                        workspace_room as fn(&str) -> RoomName,
                    ),
                    (&r.project_id, "projectId", project_room),
                    (&r.task_id, "taskId", task_room),
                ] {
                    if let Some(id) = id {
                        check_id(id, what)?;
                        rooms.push(room(id));
                    }
                }
                if rooms.is_empty() {
                    return Err(EventError::bad_request(
                        "name at least one of workspaceId, projectId, taskId",
                    ));
                }
                self.collab.untrack(socket, &rooms);
                socket.leave(rooms.clone()).await?;
                Ok(json!({ "ok": true, "rooms": rooms }))
            }
            RootEvent::Presence(p) => {
                let status = match p.status {
                    Status::Online => "online",
                    Status::Away => "away",
                };
                self.collab
                    .announce(
                        socket.user_id(),
                        "presence:user_online",
                        status,
                        socket.device_id(),
                    )
                    .await;
                Ok(json!({ "ok": true, "status": status }))
            }
            RootEvent::Viewing(v) => {
                let task = self.live_task(&v.task_id).await?;
                let targets = vec![(task_room(task.id.as_str()), task.workspace_id.clone())];
                self.join(socket, targets).await?;
                let list = self
                    .collab
                    .set_viewing(socket, &task.id, &task.workspace_id);
                Ok(json!({ "ok": true, "taskId": task.id, "users": list["users"] }))
            }
            RootEvent::TypingStart(t) => {
                let task = self.live_task(&t.task_id).await?;
                if let Some(c) = &t.comment_id {
                    check_id(c, "commentId")?;
                }
                self.require_member(socket, &task.workspace_id).await?;
                self.collab.start_typing(socket, task.id, t.comment_id);
                Ok(json!({ "ok": true }))
            }
            RootEvent::TypingStop(t) => {
                check_id(&t.task_id, "taskId")?;
                self.collab
                    .stop_typing(socket, &TaskId::from(t.task_id.as_str()));
                Ok(json!({ "ok": true }))
            }
        }
    }
}

#[async_trait(?Send)]
impl Namespace for RootNamespace {
    async fn on_connect(&self, socket: &Socket, _auth: &Value) -> Result<(), EventError> {
        self.collab.register(socket);
        // A new socket is in its user room alone; a recovered one is back
        // in the rooms it was in.
        let restored = socket.rooms().await;
        if restored.iter().any(|r| RoomsRef::of_room(r).is_some()) {
            self.readmit(socket, restored).await;
        }
        Ok(())
    }

    async fn restorable_rooms(&self, user: &UserId, rooms: Vec<RoomName>) -> Vec<RoomName> {
        let mut kept = Vec::with_capacity(rooms.len());
        for room in rooms {
            let keep = match RoomsRef::of_room(&room) {
                Some(r) => self.allowed(user, &r).await,
                None => true,
            };
            if keep {
                kept.push(room);
            }
        }
        kept
    }

    async fn on_event(&self, socket: &Socket, event: IncomingEvent) -> Result<Reply, EventError> {
        let decoded = RootEvent::decode(&event)?;
        self.handle(socket, decoded).await.map(Reply::one)
    }

    async fn on_disconnect(&self, socket: &Socket, _reason: DisconnectReason) {
        self.collab.unregister_socket(socket);
    }
}
