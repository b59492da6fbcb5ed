//! The collaboration layer's shared state on one node: the directory of
//! workspace actors, which socket of `/` is in which workspace's rooms (so a
//! removed member can be taken out at once), who views and who types in
//! which task, per-user online presence, and notifications.
//!
//! Who calls it: the `/` namespace ([`RootNamespace`](crate::root)) for
//! socket events, the HTTP handlers after every write (`publish`,
//! `member_changed`, `member_removed`, `notify`), and the engine through
//! [`UserPresence`] when a user's first connection opens or last one closes.
//! @mentions in comments (HTTP) and chat messages (`/chat`) go through
//! [`Collab::notify_mentions`], so both resolve and notify them alike.
//! It lives as long as the engine (one `Arc`, owned by the `/` namespace and
//! the application state); it holds the engine only weakly.

use crate::cluster::{Signal, SignalListener};
use crate::engine::{Engine, UserPresence, WeakEngine};
use crate::events::{task_room, user_room, workspace_room, DomainEvent};
use crate::ids::{RoomName, TaskId, UserId, WorkspaceId};
use crate::model::{NewNotification, Notification, Role};
use crate::namespace::Socket;
use crate::registry::ConnId;
use crate::store::prelude::*;
use crate::wire;
use crate::workspace::{self, Authorize, Forget, Route, WorkspaceActor};
use actix::prelude::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Settings of the collaboration layer.
#[derive(Clone, Debug)]
pub struct CollabConfig {
    /// Typing stops by itself this long after the last `typing:start`.
    pub typing_timeout: Duration,
    /// `presence:user_offline` goes out this long after the user's last
    /// connection closed, unless one opened meanwhile (at most 10 s by the
    /// contract).
    pub offline_grace: Duration,
    /// A workspace actor stops after this long without messages.
    pub workspace_idle: Duration,
    /// Notifications kept per user: making one past it deletes the user's
    /// oldest (0: no limit).
    pub notifications_kept: usize,
}

impl Default for CollabConfig {
    fn default() -> Self {
        CollabConfig {
            typing_timeout: Duration::from_secs(5),
            offline_grace: Duration::from_secs(5),
            workspace_idle: Duration::from_secs(300),
            notifications_kept: 1000,
        }
    }
}

/// Most workspaces a presence change is announced to.
const MAX_PRESENCE_WORKSPACES: usize = 1000;

/// Most distinct @mentions turned into notifications per text.
pub const MAX_MENTIONS: usize = 20;

/// Longest excerpt of the mentioning text put in a notification's body.
const MENTION_BODY_CHARS: usize = 200;

/// Whether `text` can mention anyone at all (it has an `@`); a cheap test
/// before [`mentions`] and what a caller builds for a notification.
pub fn may_mention(text: &str) -> bool {
    text.contains('@')
}

/// The distinct `@username`s in a text, lower-cased, at most
/// [`MAX_MENTIONS`]. An `@` counts only at the start of a word, so e-mail
/// addresses mention nobody; a trailing `.` or `-` is punctuation.
pub fn mentions(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if !may_mention(text) {
        // (Most texts: no walk over their characters.)
        return out;
    }
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        let at_word_start = !prev.is_some_and(|p| p.is_alphanumeric() || p == '_');
        prev = Some(c);
        if c != '@' || !at_word_start {
            continue;
        }
        let rest = &text[i + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .collect();
        let name = name.trim_end_matches(['.', '-']).to_lowercase();
        if !name.is_empty() && !out.contains(&name) && out.len() < MAX_MENTIONS {
            out.push(name);
        }
    }
    out
}

/// Who may be told about an @mention: only people who can read the text.
#[derive(Clone, Copy, Debug)]
pub enum MentionScope<'a> {
    /// Members of a workspace (a comment on one of its tasks).
    Workspace(&'a WorkspaceId),
    /// These users (the members of a conversation).
    Users(&'a HashSet<UserId>),
}

/// A text that may @mention people, and where the notification points.
#[derive(Clone, Copy, Debug)]
pub struct Mentioning<'a> {
    /// The text (comment body, chat message).
    pub text: &'a str,
    /// Who wrote it; never told about their own mention.
    pub author: &'a UserId,
    /// The author's display name, for the title.
    pub author_name: &'a str,
    /// Who may be told.
    pub scope: MentionScope<'a>,
    /// The notification's `link`.
    pub link: &'a str,
}

/// A socket of `/` and the workspace rooms it joined (room → workspace).
struct Tracked {
    socket: Socket,
    rooms: HashMap<RoomName, WorkspaceId>,
}

/// Who views which task.
#[derive(Default)]
struct Viewing {
    by_conn: HashMap<ConnId, (TaskId, WorkspaceId)>,
    by_task: HashMap<TaskId, HashMap<ConnId, (UserId, String)>>,
}

/// Typing: (connection, task) → generation of the last `typing:start`, so a
/// timer only stops the typing it started.
type TypingMap = HashMap<(ConnId, TaskId), (u64, Option<String>)>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_iso() -> String {
    wire::iso(&chrono::Utc::now())
}

/// The collaboration layer of one node.
pub struct Collab {
    store: Arc<dyn DocumentStore>,
    config: CollabConfig,
    me: Weak<Collab>,
    engine: OnceLock<WeakEngine>,
    directory: Mutex<HashMap<WorkspaceId, Addr<WorkspaceActor>>>,
    sockets: Mutex<HashMap<UserId, HashMap<ConnId, Tracked>>>,
    viewing: Mutex<Viewing>,
    typing: Arc<Mutex<TypingMap>>,
    typing_generation: AtomicU64,
}

impl Collab {
    /// The layer over `store`; call [`Collab::attach`] once the engine exists.
    pub fn new(store: Arc<dyn DocumentStore>, config: CollabConfig) -> Arc<Self> {
        Arc::new_cyclic(|me| Collab {
            store,
            config,
            me: me.clone(),
            engine: OnceLock::new(),
            directory: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            viewing: Mutex::new(Viewing::default()),
            typing: Arc::new(Mutex::new(HashMap::new())),
            typing_generation: AtomicU64::new(0),
        })
    }

    /// Gives the layer the engine it broadcasts through (held weakly: the
    /// engine owns the `/` namespace, which owns this).
    pub fn attach(&self, engine: &Engine) {
        let _ = self.engine.set(engine.downgrade());
    }

    /// The settings.
    pub fn config(&self) -> &CollabConfig {
        &self.config
    }

    /// The document store.
    pub fn store(&self) -> &Arc<dyn DocumentStore> {
        &self.store
    }

    fn engine(&self) -> Option<Engine> {
        self.engine.get().and_then(WeakEngine::upgrade)
    }

    // ---- workspace actors ----

    /// The running actor of workspace `ws`, started if needed.
    fn actor(&self, ws: &WorkspaceId) -> Addr<WorkspaceActor> {
        let mut dir = lock(&self.directory);
        if let Some(addr) = dir.get(ws).filter(|a| a.connected()) {
            return addr.clone();
        }
        let engine = self.engine.get().cloned().unwrap_or_else(|| {
            // Not attached (a unit test without an engine): events are dropped.
            WeakEngine::dangling()
        });
        let addr = WorkspaceActor::new(
            ws.clone(),
            self.store.clone(),
            engine,
            self.config.workspace_idle,
            self.me.clone(),
        )
        .start();
        dir.insert(ws.clone(), addr.clone());
        addr
    }

    /// Removes a stopping actor from the directory (if it is still the one
    /// registered).
    pub(crate) fn unregister(&self, ws: &WorkspaceId, addr: &Addr<WorkspaceActor>) {
        let mut dir = lock(&self.directory);
        if dir.get(ws) == Some(addr) {
            dir.remove(ws);
        }
    }

    /// Number of running workspace actors (for tests and metrics).
    pub fn active_workspaces(&self) -> usize {
        lock(&self.directory).len()
    }

    /// The user's role in `ws` (`None`: not a member), from the workspace
    /// actor's cache.
    pub async fn authorize(&self, ws: &WorkspaceId, user: &UserId) -> StoreResult<Option<Role>> {
        match self.actor(ws).send(Authorize { user: user.clone() }).await {
            Ok(res) => res,
            // The actor stopped between lookup and send: ask the store.
            Err(_) => Ok(self.store.member(ws, user).await?.map(|m| m.role)),
        }
    }

    /// Emits a domain event to its rooms, through its workspace's actor.
    pub async fn publish(&self, event: DomainEvent) {
        let ws = event.workspace_id().clone();
        let sent = self
            .actor(&ws)
            .send(Route {
                event: event.clone(),
            })
            .await;
        if sent.is_err() {
            // The actor stopped before handling it: route it here.
            if let Some(engine) = self.engine() {
                workspace::route(&engine, &event);
            }
        }
    }

    /// A member's role changed (or they were added): the cached membership
    /// is dropped before this returns; a member demoted to nothing they can
    /// see keeps their rooms (every role may join rooms).
    /// Every other node hears of it too.
    pub async fn member_changed(&self, ws: &WorkspaceId, user: &UserId) {
        self.forget_member(ws, user).await;
        if let Some(engine) = self.engine() {
            engine.signal(Signal::MemberChanged {
                workspace: ws.clone(),
                user: user.clone(),
            });
        }
    }

    /// Drops the cached membership of `user` in `ws` on this node.
    async fn forget_member(&self, ws: &WorkspaceId, user: &UserId) {
        let addr = lock(&self.directory).get(ws).cloned();
        if let Some(addr) = addr {
            let _ = addr.send(Forget { user: user.clone() }).await;
        }
    }

    /// A member was removed: the cache forgets them, and every socket of
    /// theirs leaves the workspace's rooms (workspace, projects, tasks)
    /// before this returns, ending their viewing and typing there; every
    /// other node does the same with its sockets when it hears of it.
    pub async fn member_removed(&self, ws: &WorkspaceId, user: &UserId) {
        if let Some(engine) = self.engine() {
            engine.signal(Signal::MemberRemoved {
                workspace: ws.clone(),
                user: user.clone(),
            });
        }
        self.evict_member(ws, user).await;
    }

    /// Forgets `user`'s membership of `ws` and takes this node's sockets of
    /// theirs out of the workspace's rooms.
    async fn evict_member(&self, ws: &WorkspaceId, user: &UserId) {
        self.forget_member(ws, user).await;
        let evicted: Vec<(Socket, Vec<RoomName>)> = {
            let mut sockets = lock(&self.sockets);
            let Some(mine) = sockets.get_mut(user) else {
                return;
            };
            mine.values_mut()
                .map(|t| {
                    let rooms: Vec<RoomName> = t
                        .rooms
                        .iter()
                        .filter(|(_, w)| *w == ws)
                        .map(|(r, _)| r.clone())
                        .collect();
                    for r in &rooms {
                        t.rooms.remove(r);
                    }
                    (t.socket.clone(), rooms)
                })
                .filter(|(_, rooms)| !rooms.is_empty())
                .collect()
        };
        for (socket, rooms) in evicted {
            let viewed = lock(&self.viewing).by_conn.get(&socket.conn_id()).cloned();
            if let Some((task, w)) = viewed {
                if &w == ws {
                    self.end_viewing(&socket);
                    let _ = task;
                }
            }
            self.stop_typing_where(&socket, |t| rooms.contains(&task_room(t.as_str())));
            if let Err(e) = socket.leave(rooms).await {
                log::debug!("evicting {socket:?}: {e}");
            }
        }
    }

    // ---- sockets of `/` ----

    /// Starts tracking a socket of `/` (on connect).
    pub fn register(&self, socket: &Socket) {
        lock(&self.sockets)
            .entry(socket.user_id().clone())
            .or_default()
            .insert(
                socket.conn_id(),
                Tracked {
                    socket: socket.clone(),
                    rooms: HashMap::new(),
                },
            );
    }

    /// Stops tracking a socket (on disconnect), ending its viewing and typing.
    pub fn unregister_socket(&self, socket: &Socket) {
        {
            let mut sockets = lock(&self.sockets);
            if let Some(mine) = sockets.get_mut(socket.user_id()) {
                mine.remove(&socket.conn_id());
                if mine.is_empty() {
                    sockets.remove(socket.user_id());
                }
            }
        }
        self.end_viewing(socket);
        self.stop_typing_where(socket, |_| true);
    }

    /// Records that the socket is in `rooms` of workspace `ws`.
    pub fn track(&self, socket: &Socket, rooms: &[(RoomName, WorkspaceId)]) {
        if let Some(t) = lock(&self.sockets)
            .get_mut(socket.user_id())
            .and_then(|m| m.get_mut(&socket.conn_id()))
        {
            for (r, w) in rooms {
                t.rooms.insert(r.clone(), w.clone());
            }
        }
    }

    /// Forgets that the socket is in `rooms`; ends viewing and typing in the
    /// task rooms among them.
    pub fn untrack(&self, socket: &Socket, rooms: &[RoomName]) {
        if let Some(t) = lock(&self.sockets)
            .get_mut(socket.user_id())
            .and_then(|m| m.get_mut(&socket.conn_id()))
        {
            for r in rooms {
                t.rooms.remove(r);
            }
        }
        let viewed = lock(&self.viewing).by_conn.get(&socket.conn_id()).cloned();
        if let Some((task, _)) = viewed {
            if rooms.contains(&task_room(task.as_str())) {
                self.end_viewing(socket);
            }
        }
        self.stop_typing_where(socket, |t| rooms.contains(&task_room(t.as_str())));
    }

    // ---- viewing ----

    fn viewers(&self, task: &TaskId) -> Value {
        let viewing = lock(&self.viewing);
        let mut users: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        if let Some(v) = viewing.by_task.get(task) {
            let mut entries: Vec<&(UserId, String)> = v.values().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (user, name) in entries {
                if seen.insert(user.clone()) {
                    users.push(json!({ "userId": user, "name": name }));
                }
            }
        }
        json!({ "taskId": task, "users": users })
    }

    /// The socket views `task` (of `ws`) now; a task it viewed before gets
    /// its new list. Returns the new list of `task`, which its room gets.
    pub fn set_viewing(&self, socket: &Socket, task: &TaskId, ws: &WorkspaceId) -> Value {
        let previous = {
            let mut v = lock(&self.viewing);
            let prev = v
                .by_conn
                .insert(socket.conn_id(), (task.clone(), ws.clone()));
            if let Some((p, _)) = &prev {
                if let Some(m) = v.by_task.get_mut(p) {
                    m.remove(&socket.conn_id());
                    if m.is_empty() {
                        v.by_task.remove(p);
                    }
                }
            }
            v.by_task.entry(task.clone()).or_default().insert(
                socket.conn_id(),
                (socket.user_id().clone(), socket.name().to_owned()),
            );
            prev.map(|(p, _)| p).filter(|p| p != task)
        };
        if let Some(p) = previous {
            socket.broadcast(
                &[task_room(p.as_str())],
                "presence:users_viewing",
                &self.viewers(&p),
            );
        }
        let list = self.viewers(task);
        socket.broadcast(&[task_room(task.as_str())], "presence:users_viewing", &list);
        list
    }

    /// The socket stops viewing; its task's room gets the new list.
    pub fn end_viewing(&self, socket: &Socket) {
        let task = {
            let mut v = lock(&self.viewing);
            let Some((task, _)) = v.by_conn.remove(&socket.conn_id()) else {
                return;
            };
            if let Some(m) = v.by_task.get_mut(&task) {
                m.remove(&socket.conn_id());
                if m.is_empty() {
                    v.by_task.remove(&task);
                }
            }
            task
        };
        socket.broadcast(
            &[task_room(task.as_str())],
            "presence:users_viewing",
            &self.viewers(&task),
        );
    }

    // ---- typing ----

    fn typing_payload(socket: &Socket, task: &TaskId, comment: Option<&str>) -> Value {
        let mut v = json!({ "userId": socket.user_id(), "name": socket.name(), "taskId": task });
        if let Some(c) = comment {
            v["commentId"] = json!(c);
        }
        v
    }

    /// `typing:user_typing` to the task room but the sender; stops by itself
    /// after the typing timeout unless started again.
    pub fn start_typing(&self, socket: &Socket, task: TaskId, comment: Option<String>) {
        let generation = self.typing_generation.fetch_add(1, Ordering::Relaxed);
        let key = (socket.conn_id(), task.clone());
        lock(&self.typing).insert(key.clone(), (generation, comment.clone()));
        socket.broadcast_others(
            &[task_room(task.as_str())],
            "typing:user_typing",
            &Self::typing_payload(socket, &task, comment.as_deref()),
        );
        let typing = self.typing.clone();
        let socket = socket.clone();
        let timeout = self.config.typing_timeout;
        actix::spawn(async move {
            tokio::time::sleep(timeout).await;
            let expired = {
                let mut t = lock(&typing);
                match t.get(&key) {
                    Some((g, c)) if *g == generation => {
                        let c = c.clone();
                        t.remove(&key);
                        Some(c)
                    }
                    _ => None,
                }
            };
            if let Some(comment) = expired {
                socket.broadcast_others(
                    &[task_room(key.1.as_str())],
                    "typing:user_stopped",
                    &Self::typing_payload(&socket, &key.1, comment.as_deref()),
                );
            }
        });
    }

    /// Stops the socket's typing in `task`, if it was typing there.
    pub fn stop_typing(&self, socket: &Socket, task: &TaskId) {
        self.stop_typing_where(socket, |t| t == task);
    }

    fn stop_typing_where(&self, socket: &Socket, pred: impl Fn(&TaskId) -> bool) {
        let stopped: Vec<(TaskId, Option<String>)> = {
            let mut t = lock(&self.typing);
            let keys: Vec<(ConnId, TaskId)> = t
                .keys()
                .filter(|(c, task)| *c == socket.conn_id() && pred(task))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| t.remove(&k).map(|(_, c)| (k.1, c)))
                .collect()
        };
        for (task, comment) in stopped {
            socket.broadcast_others(
                &[task_room(task.as_str())],
                "typing:user_stopped",
                &Self::typing_payload(socket, &task, comment.as_deref()),
            );
        }
    }

    // ---- presence ----

    async fn user_workspaces(store: &Arc<dyn DocumentStore>, user: &UserId) -> Vec<RoomName> {
        let mut rooms = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            match store
                .workspaces_for_user(user, cursor.as_deref(), 200)
                .await
            {
                Ok(page) => {
                    rooms.extend(page.items.iter().map(|w| workspace_room(w.id.as_str())));
                    match page.next_cursor {
                        Some(c) if rooms.len() < MAX_PRESENCE_WORKSPACES => cursor = Some(c),
                        _ => break,
                    }
                }
                Err(e) => {
                    log::warn!("presence: cannot list workspaces of {user}: {e}");
                    break;
                }
            }
        }
        rooms
    }

    /// Announces presence `event` (`presence:user_online` or
    /// `presence:user_offline`) with `status` to the user's workspace rooms;
    /// `deviceId` names the device the change came from (the connection that
    /// made the user online, the one that set the status), when its client
    /// named it.
    pub async fn announce(
        &self,
        user: &UserId,
        event: &'static str,
        status: &str,
        device: Option<&str>,
    ) {
        let rooms = Self::user_workspaces(&self.store, user).await;
        if let Some(engine) = self.engine() {
            let mut payload = json!({ "userId": user, "status": status, "at": now_iso() });
            if let Some(device) = device {
                payload["deviceId"] = json!(device);
            }
            engine.emit("/", &rooms, None, event, &payload);
        }
    }

    // ---- notifications ----

    /// Stores a notification (the user's oldest beyond
    /// [`CollabConfig::notifications_kept`] go) and pushes it as
    /// `notification` to every device of the user (room `user:{id}` of `/`).
    pub async fn notify(&self, new: NewNotification) -> StoreResult<Notification> {
        let user = new.user_id.clone();
        let (n, unread) = self
            .store
            .create_notification(new, self.config.notifications_kept)
            .await?;
        if let Some(engine) = self.engine() {
            let mut payload = wire::notification(&n);
            payload["unreadCount"] = json!(unread);
            engine.emit(
                "/",
                &[user_room(user.as_str())],
                None,
                "notification",
                &payload,
            );
        }
        Ok(n)
    }

    /// The users `text` @mentions who are in `scope`, never the author,
    /// each once.
    pub async fn mentioned(
        &self,
        text: &str,
        author: &UserId,
        scope: MentionScope<'_>,
    ) -> StoreResult<Vec<UserId>> {
        let mut out: Vec<UserId> = Vec::new();
        for name in mentions(text) {
            let Some(user) = self.store.user_by_username(&name).await? else {
                continue;
            };
            if &user.id == author || out.contains(&user.id) {
                continue;
            }
            let in_scope = match scope {
                MentionScope::Workspace(ws) => self.store.member(ws, &user.id).await?.is_some(),
                MentionScope::Users(users) => users.contains(&user.id),
            };
            if in_scope {
                out.push(user.id);
            }
        }
        Ok(out)
    }

    /// Makes a `mention` notification for everyone the text @mentions in
    /// its scope (never the author), pushed to their devices. Returns who
    /// was mentioned; a notification that cannot be stored is logged and
    /// the others still go out.
    pub async fn notify_mentions(&self, m: Mentioning<'_>) -> StoreResult<Vec<UserId>> {
        let users = self.mentioned(m.text, m.author, m.scope).await?;
        for user in &users {
            let new = NewNotification {
                user_id: user.clone(),
                kind: "mention".into(),
                title: format!("{} mentioned you", m.author_name),
                body: m.text.chars().take(MENTION_BODY_CHARS).collect(),
                link: m.link.to_owned(),
            };
            if let Err(e) = self.notify(new).await {
                log::error!(
                    "mention notification failed: {e}: {:?}",
                    std::error::Error::source(&e)
                );
            }
        }
        Ok(users)
    }
}

// Presence is per user across the cluster: the engine calls these when the
// user's slot count goes 0 → 1 and back to 0, and the slots decide, once for
// the whole cluster, whether the change is announced (a user who comes back
// within the grace period never appears offline).
impl UserPresence for Collab {
    fn first_connection(&self, engine: &Engine, user: &UserId, device: Option<&str>) {
        let Some(me) = self.me.upgrade() else { return };
        let slots = engine.slots();
        let user = user.clone();
        let device = device.map(str::to_owned);
        actix::spawn(async move {
            if slots.mark_online(&user).await {
                me.announce(&user, "presence:user_online", "online", device.as_deref())
                    .await;
            }
        });
    }

    fn last_connection_closed(&self, engine: &Engine, user: &UserId) {
        let Some(me) = self.me.upgrade() else { return };
        let slots = engine.slots();
        let user = user.clone();
        let grace = self.config.offline_grace;
        actix::spawn(async move {
            tokio::time::sleep(grace).await;
            if slots.mark_offline_if_gone(&user).await {
                // Offline is the user's, on no device.
                me.announce(&user, "presence:user_offline", "offline", None)
                    .await;
            }
        });
    }
}

impl SignalListener for Collab {
    fn on_signal(&self, signal: Signal) {
        let Some(me) = self.me.upgrade() else { return };
        actix::spawn(async move {
            match signal {
                Signal::MemberChanged { workspace, user } => {
                    me.forget_member(&workspace, &user).await
                }
                Signal::MemberRemoved { workspace, user } => {
                    me.evict_member(&workspace, &user).await
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_words_starting_with_at() {
        assert_eq!(
            mentions("hi @Alice and @bob.smith, not mail@example.com; @alice again @"),
            vec!["alice".to_owned(), "bob.smith".to_owned()]
        );
        assert!(mentions("no mentions").is_empty());
        assert_eq!(mentions("(@carol-) @dan_1."), vec!["carol", "dan_1"]);
    }

    #[test]
    fn mentions_are_capped() {
        let text: String = (0..50).map(|i| format!("@user{i} ")).collect();
        assert_eq!(mentions(&text).len(), MAX_MENTIONS);
    }
}
