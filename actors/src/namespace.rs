//! Namespaces: what the application plugs into the engine.
//!
//! A [`Namespace`] receives the events of its sockets, already decoded from the
//! wire, and answers with a [`Reply`] (sent as the acknowledgement when the
//! client asked for one) or an [`EventError`] (a failed acknowledgement
//! `{ ok: false, error }`, or an `error` event when no ack was asked). The
//! [`Socket`] handle given to it joins and leaves rooms, emits to the socket,
//! and broadcasts through the engine.

use crate::auth::Identity;
use crate::connection::{Connection, JoinRooms, LeaveRooms, SendPacket};
use crate::engine::Engine;
use crate::ids::{RoomName, UserId};
use crate::registry::ConnId;
use actix::Addr;
use async_trait::async_trait;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// An event from a client: `socket.emit(name, ...args)`.
#[derive(Debug)]
pub struct IncomingEvent {
    /// Event name (first element of the array).
    pub name: String,
    /// The arguments after the name, with binary placeholders in place.
    pub args: Vec<Value>,
    /// Binary attachments the placeholders refer to.
    pub attachments: Vec<Bytes>,
    /// Whether the client waits for an acknowledgement.
    pub wants_ack: bool,
    /// For an event that runs pipelined ([`Namespace::pipelines`]): drop it
    /// once the event's order is fixed, and the connection starts its next
    /// event.
    pub ordered: Option<Ordered>,
}

/// Held by a pipelined event until it has passed the point that fixes its
/// order among the connection's events (dropping it, early return included,
/// lets the next one start).
#[derive(Debug)]
pub struct Ordered(Option<tokio::sync::oneshot::Sender<()>>);

impl Ordered {
    /// The handle and what the connection waits on.
    pub fn new() -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Ordered(Some(tx)), rx)
    }
}

impl Drop for Ordered {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl IncomingEvent {
    /// The first argument, or `null`.
    pub fn payload(&self) -> &Value {
        self.args.first().unwrap_or(&Value::Null)
    }

    /// The first argument as the event's typed payload; a payload of the
    /// wrong shape is the client's `bad_request`, naming the event and what
    /// was wrong with it.
    pub fn decode_payload<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        T::deserialize(self.payload())
            .map_err(|e| EventError::bad_request(format!("invalid {} payload: {e}", self.name)))
    }
}

/// A failed event: the contract's `{ code, message }`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EventError {
    /// Machine-readable code (`bad_request`, `forbidden`, ...).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl EventError {
    /// An error with this code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        EventError {
            code,
            message: message.into(),
        }
    }
    /// `bad_request`: malformed or invalid input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("bad_request", message)
    }
    /// `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("forbidden", message)
    }
    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("not_found", message)
    }
    /// `internal`: details stay in the log.
    pub fn internal() -> Self {
        Self::new("internal", "internal error")
    }
    /// The JSON the client sees in a failed ack: `{ ok: false, error: { code, message } }`.
    pub fn to_ack(&self) -> Value {
        serde_json::json!({ "ok": false, "error": { "code": self.code, "message": self.message } })
    }
    /// The JSON of an `error` event: `{ code, message }`.
    pub fn to_event(&self) -> Value {
        serde_json::json!({ "code": self.code, "message": self.message })
    }
}

/// What a handler answers.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Acknowledgement arguments.
    pub args: Vec<Value>,
    /// Binary attachments referenced by placeholders in `args`.
    pub attachments: Vec<Bytes>,
    /// The one acknowledgement argument already encoded as JSON (`args` and
    /// `attachments` are then empty).
    pub encoded: Option<Vec<u8>>,
}

impl Reply {
    /// No acknowledgement arguments.
    pub fn none() -> Self {
        Reply::default()
    }
    /// One acknowledgement argument.
    pub fn one(value: Value) -> Self {
        Reply {
            args: vec![value],
            ..Reply::default()
        }
    }
    /// One acknowledgement argument, given as its JSON text.
    pub fn encoded(json: Vec<u8>) -> Self {
        Reply {
            encoded: Some(json),
            ..Reply::default()
        }
    }
}

/// Why a socket left its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client disconnected the namespace (`socket.disconnect()`).
    ClientNamespaceDisconnect,
    /// The transport closed (network loss, tab closed).
    TransportClose,
    /// No pong within `pingTimeout`.
    PingTimeout,
    /// The server closed the connection (drain, kick, slow client).
    ServerDisconnect,
    /// The client sent something that broke the protocol.
    ParseError,
}

impl DisconnectReason {
    /// Socket.IO's name for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ServerDisconnect => "server shutting down",
            DisconnectReason::ParseError => "parse error",
        }
    }

    /// Whether the session may be recovered (the client did not leave on purpose).
    pub fn recoverable(self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportClose
                | DisconnectReason::PingTimeout
                | DisconnectReason::ServerDisconnect
        )
    }
}

/// A namespace's event handling. One instance serves every socket of the
/// namespace on every worker thread.
#[async_trait(?Send)]
pub trait Namespace: Send + Sync + 'static {
    /// Called once the socket is authenticated and in its rooms (its
    /// `user:{id}` room, when [`joins_user_room`](Self::joins_user_room)),
    /// before the CONNECT is answered. An error refuses the connection with
    /// CONNECT_ERROR.
    async fn on_connect(&self, _socket: &Socket, _auth: &Value) -> Result<(), EventError> {
        Ok(())
    }

    /// The rooms, of those a recovered socket of `user` was in, that it may
    /// rejoin now; asked before the socket joins any of them, so nothing
    /// from a room it may no longer be in reaches it. All of them unless a
    /// namespace says otherwise.
    async fn restorable_rooms(&self, _user: &UserId, rooms: Vec<RoomName>) -> Vec<RoomName> {
        rooms
    }

    /// Handles one event. Events of one connection are handled one at a time,
    /// in arrival order (but see [`runs_beside`](Self::runs_beside)).
    async fn on_event(&self, socket: &Socket, event: IncomingEvent) -> Result<Reply, EventError>;

    /// Whether events named `event` may run beside each other: up to
    /// [`MAX_BESIDE`](crate::connection::MAX_BESIDE) of a socket's run at
    /// once, in no order among themselves; every other event of the
    /// connection waits until they are done, and they wait for it. For work
    /// whose order does not matter and whose latency does (upload chunks).
    fn runs_beside(&self, _event: &str) -> bool {
        false
    }

    /// Whether `event` runs pipelined: the connection's next event may start
    /// once this one has dropped its [`IncomingEvent::ordered`], before it
    /// finishes (at most [`MAX_BESIDE`](crate::connection::MAX_BESIDE) at
    /// once); events that run beside or alone wait for all of them. For
    /// events whose order is fixed early (`send_message`: when its append
    /// starts) and whose wait is long (the disk).
    fn pipelines(&self, _event: &str) -> bool {
        false
    }

    /// Whether the namespace's sockets join `user:{id}` on connect, so that
    /// one broadcast reaches every device of the user on every node. A room
    /// costs a room actor on each node the user is connected to (about
    /// 1.2 KiB per connected user) and, in a cluster, a Redis subscription:
    /// a namespace that never addresses its users that way says `false`.
    fn joins_user_room(&self) -> bool {
        true
    }

    /// Called when the socket leaves (its rooms are left by the engine).
    async fn on_disconnect(&self, _socket: &Socket, _reason: DisconnectReason) {}
}

struct SocketInner {
    engine: Engine,
    conn: Addr<Connection>,
    conn_id: ConnId,
    nsp: Arc<str>,
    sid: String,
    /// Shared with the connection (and its other sockets).
    identity: Arc<Identity>,
    device_id: Option<String>,
}

/// A socket: one namespace on one connection, as handlers see it.
#[derive(Clone)]
pub struct Socket {
    inner: Arc<SocketInner>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("nsp", &self.inner.nsp)
            .field("sid", &self.inner.sid)
            .field("user", &self.inner.identity.user_id)
            .finish()
    }
}

impl Socket {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        engine: Engine,
        conn: Addr<Connection>,
        conn_id: ConnId,
        nsp: Arc<str>,
        sid: String,
        identity: Arc<Identity>,
        device_id: Option<String>,
    ) -> Self {
        Socket {
            inner: Arc::new(SocketInner {
                engine,
                conn,
                conn_id,
                nsp,
                sid,
                identity,
                device_id,
            }),
        }
    }

    /// The engine, for broadcasts.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }
    /// The namespace.
    pub fn nsp(&self) -> &str {
        &self.inner.nsp
    }
    /// The socket id (as sent in the CONNECT answer).
    pub fn sid(&self) -> &str {
        &self.inner.sid
    }
    /// The connection this socket belongs to.
    pub fn conn_id(&self) -> ConnId {
        self.inner.conn_id
    }
    /// The authenticated user.
    pub fn user_id(&self) -> &UserId {
        &self.inner.identity.user_id
    }
    /// The user's display name.
    pub fn name(&self) -> &str {
        &self.inner.identity.name
    }
    /// The `deviceId` from the auth payload.
    pub fn device_id(&self) -> Option<&str> {
        self.inner.device_id.as_deref()
    }

    /// Emits an event to this socket only.
    pub fn emit(&self, event: &str, data: &impl Serialize) {
        match serde_json::to_vec(data) {
            Ok(json) => {
                let packet = crate::engine::encode_event(&self.inner.nsp, event, &[&json], None);
                self.inner.conn.do_send(SendPacket { packet });
            }
            Err(e) => log::error!("cannot serialize {event} for {}: {e}", self.inner.sid),
        }
    }

    /// Emits an event with binary attachments to this socket only; `args`
    /// hold `{"_placeholder":true,"num":n}` where attachment `n` goes.
    pub fn emit_binary(&self, event: &str, mut args: Vec<Value>, attachments: Vec<Bytes>) {
        args.insert(0, Value::String(event.to_owned()));
        let kind = if attachments.is_empty() {
            crate::protocol::socketio::PacketKind::Event
        } else {
            crate::protocol::socketio::PacketKind::BinaryEvent
        };
        let packet = crate::engine::encode_packet(
            &crate::protocol::socketio::Packet {
                kind,
                nsp: self.inner.nsp.to_string(),
                id: None,
                data: Some(Value::Array(args)),
                attachments: attachments.len(),
            },
            &attachments,
        );
        self.inner.conn.do_send(SendPacket { packet });
    }

    /// Joins rooms of this namespace; returns once the rooms have the socket,
    /// so a broadcast sent afterwards reaches it.
    pub async fn join(&self, rooms: Vec<RoomName>) -> Result<(), EventError> {
        self.inner
            .conn
            .send(JoinRooms {
                nsp: self.inner.nsp.clone(),
                rooms,
            })
            .await
            .map_err(|_| EventError::new("internal", "connection closed"))?
    }

    /// Leaves rooms of this namespace.
    pub async fn leave(&self, rooms: Vec<RoomName>) -> Result<(), EventError> {
        self.inner
            .conn
            .send(LeaveRooms {
                nsp: self.inner.nsp.clone(),
                rooms,
            })
            .await
            .map_err(|_| EventError::new("internal", "connection closed"))
    }

    /// Whether the socket is in `room`.
    pub async fn in_room(&self, room: &RoomName) -> bool {
        self.inner
            .conn
            .send(crate::connection::InRoom {
                nsp: self.inner.nsp.clone(),
                room: room.clone(),
            })
            .await
            .unwrap_or(false)
    }

    /// The rooms the socket is in (those a recovery restored included).
    pub async fn rooms(&self) -> Vec<RoomName> {
        self.inner
            .conn
            .send(crate::connection::SocketRooms {
                nsp: self.inner.nsp.clone(),
            })
            .await
            .unwrap_or_default()
    }

    /// Broadcasts to rooms of this namespace, every socket in them included.
    pub fn broadcast(&self, rooms: &[RoomName], event: &str, data: &impl Serialize) {
        self.inner
            .engine
            .emit(&self.inner.nsp, rooms, None, event, data);
    }

    /// Broadcasts to rooms of this namespace an event whose one argument is
    /// already JSON text.
    pub fn broadcast_json(&self, rooms: &[RoomName], event: &str, json: &[u8]) {
        self.inner
            .engine
            .emit_raw(&self.inner.nsp, rooms, None, event, &[json]);
    }

    /// Broadcasts to rooms of this namespace except this socket's connection.
    pub fn broadcast_others(&self, rooms: &[RoomName], event: &str, data: &impl Serialize) {
        self.inner.engine.emit(
            &self.inner.nsp,
            rooms,
            Some(self.inner.conn_id),
            event,
            data,
        );
    }
}
