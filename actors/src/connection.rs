//! The connection actor: one per Engine.IO session, whatever the transport.
//!
//! It owns the session: the heartbeat, the sockets (one per namespace joined,
//! multiplexed on this connection), their rooms, the user the session is
//! authenticated as, and the bounded [`Outbox`] the transport drains.
//! Transports send it [`Inbound`] packets (a WebSocket reader task, or the
//! long-polling `POST` handler) and [`TransportClosed`]; socket handles send
//! it [`SendPacket`], [`JoinRooms`] and [`LeaveRooms`]. Rooms put broadcasts
//! straight into its outbox (see [`Member`]) and send it only [`TooSlow`].
//!
//! Socket.IO packets are handled one at a time in arrival order (a per
//! connection pipeline, bounded by `max_events_pending`), so one client's
//! `send_message`s keep their order; only events a namespace lets run beside
//! each other (upload chunks) overlap, up to [`MAX_BESIDE`] at once. It stops
//! when the transport closes, the heartbeat times out, the client falls too far
//! behind, or the server drains; `stopped` leaves every room, releases the
//! user's connection slot, and remembers the sockets for connection state
//! recovery.

use crate::auth::{AuthFailure, Identity};
use crate::encoded::Encoded;
use crate::engine::{encode_ack, encode_packet, Engine};
use crate::ids::{RoomKey, RoomName, UserId};
use crate::namespace::{
    DisconnectReason, EventError, IncomingEvent, Namespace, Ordered, Reply, Socket,
};
use crate::outbox::{Outbox, OutboxFull};
use crate::protocol::engineio;
use crate::protocol::socketio::{self, PacketKind, Reassembler};
use crate::recovery::Snapshot;
use crate::registry::{ConnId, Join, Leave};
use crate::room::{Member, TooSlow};
use actix::prelude::*;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Engine.IO packets from the transport.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound {
    pub packets: Vec<engineio::Packet>,
}

/// The transport is gone (or broke the protocol).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TransportClosed {
    pub reason: DisconnectReason,
    /// WebSocket close code to send, when the transport can still carry one.
    pub code: u16,
}

/// A packet for this connection only (direct emits).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendPacket {
    pub packet: Encoded,
}

/// Joins rooms of a namespace this connection has a socket in.
#[derive(Message)]
#[rtype(result = "Result<(), EventError>")]
pub struct JoinRooms {
    pub nsp: Arc<str>,
    pub rooms: Vec<RoomName>,
}

/// Leaves rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveRooms {
    pub nsp: Arc<str>,
    pub rooms: Vec<RoomName>,
}

/// Whether the socket of `nsp` is in `room`.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct InRoom {
    pub nsp: Arc<str>,
    pub room: RoomName,
}

/// Closes the connection from the server side (drain, kick).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    pub reason: DisconnectReason,
}

struct SocketState {
    socket: Socket,
    namespace: Arc<dyn Namespace>,
    /// Private id for recovery (sent in the CONNECT answer as `pid`).
    pid: String,
    rooms: HashSet<RoomName>,
}

/// One complete Socket.IO packet waiting for the pipeline.
struct Work {
    packet: socketio::Packet,
    attachments: Vec<Bytes>,
}

/// Sliding one-second window for the per-connection event rate: the count of
/// the current window plus the previous window's, weighted by how much of it
/// still overlaps the last second (constant memory, no burst at the edge of
/// a fixed window).
struct RateWindow {
    started: Instant,
    current: u32,
    previous: u32,
}

impl RateWindow {
    fn new(now: Instant) -> Self {
        RateWindow {
            started: now,
            current: 0,
            previous: 0,
        }
    }

    /// Counts one event at `now`; whether it is within `limit` per second.
    fn hit(&mut self, now: Instant, limit: u32) -> bool {
        let window = Duration::from_secs(1);
        let elapsed = now.duration_since(self.started);
        if elapsed >= window * 2 {
            self.previous = 0;
            self.current = 0;
            self.started = now;
        } else if elapsed >= window {
            self.previous = self.current;
            self.current = 0;
            self.started += window;
        }
        let into = now.duration_since(self.started).as_secs_f64();
        let estimate = f64::from(self.previous) * (1.0 - into) + f64::from(self.current);
        if estimate >= f64::from(limit) {
            return false;
        }
        self.current += 1;
        true
    }
}

/// Most events of one connection running beside each other (see
/// [`Namespace::runs_beside`]).
pub const MAX_BESIDE: usize = 8;

/// How an event runs among its connection's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// After everything before it, and before anything after it.
    Alone,
    /// Beside other such events, in no order (`Namespace::runs_beside`).
    Beside,
    /// Started in order, each once the one before has fixed its order
    /// (`Namespace::pipelines`).
    Pipelined,
}

/// What of a connection's events runs now, and whether the next may start:
/// events that run beside each other share at most [`MAX_BESIDE`] places,
/// a pipelined one also waits for the one before it to fix its order, and
/// anything else (CONNECT, DISCONNECT, an event of its own) runs alone,
/// after all of them.
#[derive(Debug, Default)]
struct Lanes {
    /// Something runs alone.
    alone: bool,
    /// Events running beside each other (see `Namespace::runs_beside`; at
    /// most [`MAX_BESIDE`], hence the small type).
    beside: u8,
    /// Pipelined events running (see `Namespace::pipelines`).
    pipelined: u8,
    /// The last pipelined event has not fixed its order yet.
    ordering: bool,
}

impl Lanes {
    /// Whether nothing runs alone (the pipeline may look at its next packet).
    fn open(&self) -> bool {
        !self.alone
    }

    /// Whether work of `mode` may start now.
    fn admits(&self, mode: Mode) -> bool {
        if self.alone {
            return false;
        }
        match mode {
            Mode::Beside => usize::from(self.beside) < MAX_BESIDE && self.pipelined == 0,
            Mode::Pipelined => {
                !self.ordering && usize::from(self.pipelined) < MAX_BESIDE && self.beside == 0
            }
            Mode::Alone => self.beside == 0 && self.pipelined == 0,
        }
    }

    /// Work of `mode` starts (it was admitted).
    fn start(&mut self, mode: Mode) {
        match mode {
            Mode::Beside => self.beside += 1,
            Mode::Pipelined => {
                self.pipelined += 1;
                self.ordering = true;
            }
            Mode::Alone => self.alone = true,
        }
    }

    /// The last pipelined event has fixed its order: the next may start.
    fn order_fixed(&mut self) {
        self.ordering = false;
    }

    /// Work of `mode` is done.
    fn finish(&mut self, mode: Mode) {
        match mode {
            Mode::Beside => self.beside -= 1,
            Mode::Pipelined => self.pipelined -= 1,
            Mode::Alone => self.alone = false,
        }
    }
}

/// The sockets of a connection by namespace. A connection has one or two
/// (a handful at most: one per namespace), so a vector searched in order
/// beats a hash map, and holds a few hundred bytes less per connection.
#[derive(Default)]
struct Sockets(Vec<(Arc<str>, SocketState)>);

impl Sockets {
    fn get(&self, nsp: &str) -> Option<&SocketState> {
        self.0.iter().find(|(n, _)| &**n == nsp).map(|(_, s)| s)
    }
    fn get_mut(&mut self, nsp: &str) -> Option<&mut SocketState> {
        self.0.iter_mut().find(|(n, _)| &**n == nsp).map(|(_, s)| s)
    }
    fn contains_key(&self, nsp: &str) -> bool {
        self.get(nsp).is_some()
    }
    fn insert(&mut self, nsp: Arc<str>, state: SocketState) {
        match self.get_mut(&nsp) {
            Some(old) => *old = state,
            None => {
                // Room for exactly one more (a push would make room for 4).
                self.0.reserve_exact(1);
                self.0.push((nsp, state));
            }
        }
    }
    fn remove(&mut self, nsp: &str) -> Option<SocketState> {
        let i = self.0.iter().position(|(n, _)| &**n == nsp)?;
        Some(self.0.swap_remove(i).1)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn drain(&mut self) -> impl Iterator<Item = SocketState> + '_ {
        self.0.drain(..).map(|(_, s)| s)
    }
}

/// The connection actor.
pub struct Connection {
    id: ConnId,
    sid: String,
    engine: Engine,
    outbox: Arc<Outbox>,
    /// `?token=` from the handshake query (a boxed `str`: eight bytes less
    /// than a `String` in every connection puts the actor's task in
    /// jemalloc's 640-byte class instead of 768).
    query_token: Option<Box<str>>,
    /// Who the session authenticated as; its sockets share it.
    identity: Option<Arc<Identity>>,
    holds_user_slot: bool,
    sockets: Sockets,
    reassembler: Reassembler,
    pending: VecDeque<Work>,
    lanes: Lanes,
    /// The heartbeat's one timer: the next ping, or the wait for its pong.
    heartbeat_timer: Option<SpawnHandle>,
    /// A ping went out and its pong has not come.
    awaiting_pong: bool,
    rate: RateWindow,
    close_reason: Option<DisconnectReason>,
    /// The timer that closes a session joining no namespace in time; gone
    /// with the first socket (an idle connection keeps no timer it does not
    /// need).
    connect_timer: Option<SpawnHandle>,
}

// Every idle connection is this actor's task: with actix's context and
// tokio's header it fits jemalloc's 640-byte class while the struct is at
// most 200 bytes, and takes the 768-byte one past that (checked with
// `cargo +nightly rustc -p huddle-actors --release -- -Zprint-type-sizes`).
const _: () = assert!(std::mem::size_of::<Connection>() <= 200);

impl Connection {
    /// A connection for Engine.IO session `sid`.
    pub fn new(
        engine: Engine,
        id: ConnId,
        sid: String,
        outbox: Arc<Outbox>,
        query_token: Option<String>,
    ) -> Self {
        let query_token = query_token.map(String::into_boxed_str);
        Connection {
            id,
            sid,
            engine,
            outbox,
            query_token,
            identity: None,
            holds_user_slot: false,
            sockets: Sockets::default(),
            reassembler: Reassembler::default(),
            pending: VecDeque::new(),
            lanes: Lanes::default(),
            heartbeat_timer: None,
            awaiting_pong: false,
            rate: RateWindow::new(Instant::now()),
            close_reason: None,
            connect_timer: None,
        }
    }

    /// Ends the session: what is queued still goes out, then the transport
    /// closes with `code`.
    fn close(&mut self, ctx: &mut Context<Self>, reason: DisconnectReason, code: u16) {
        if self.close_reason.is_none() {
            self.close_reason = Some(reason);
        }
        self.outbox.close(code);
        ctx.stop();
    }

    fn send(&mut self, ctx: &mut Context<Self>, packet: Encoded) {
        self.engine.metrics().packet_out(packet.ws_len());
        if self.outbox.push(packet).is_err() {
            self.too_slow(ctx);
        }
    }

    fn too_slow(&mut self, ctx: &mut Context<Self>) {
        log::warn!(
            "closing connection {} (user {:?}): client too slow, {} packets queued",
            self.sid,
            self.identity.as_ref().map(|i| i.user_id.as_str()),
            self.outbox.len()
        );
        self.engine.metrics().slow_client();
        self.close_reason = Some(DisconnectReason::ServerDisconnect);
        self.outbox.abort(1008);
        ctx.stop();
    }

    /// The heartbeat, as the reference server runs it: a ping
    /// `ping_interval` after the last pong (or the start), then a wait of
    /// `ping_timeout` for its pong. One timer at a time, either way.
    fn schedule_ping(&mut self, ctx: &mut Context<Self>) {
        let interval = self.engine.config().ping_interval;
        let timer = ctx.run_later(interval, |act, ctx| {
            act.outbox
                .push_control(Encoded::engine(&engineio::Packet::Ping(Bytes::new())));
            act.awaiting_pong = true;
            let timeout = act.engine.config().ping_timeout;
            let timer = ctx.run_later(timeout, |act, ctx| {
                act.heartbeat_timer = None;
                if act.awaiting_pong {
                    log::debug!("connection {}: ping timeout", act.sid);
                    act.close(ctx, DisconnectReason::PingTimeout, 1000);
                }
            });
            act.heartbeat_timer = Some(timer);
        });
        self.heartbeat_timer = Some(timer);
    }

    /// The client answered the ping: the next one follows in `ping_interval`.
    /// A pong nobody asked for changes nothing.
    fn on_pong(&mut self, ctx: &mut Context<Self>) {
        if !std::mem::take(&mut self.awaiting_pong) {
            return;
        }
        if let Some(timer) = self.heartbeat_timer.take() {
            ctx.cancel_future(timer);
        }
        self.schedule_ping(ctx);
    }

    fn on_engine_packet(&mut self, ctx: &mut Context<Self>, packet: engineio::Packet) {
        if let (Some(raw), engineio::Packet::Message(_) | engineio::Packet::Binary(_)) =
            (self.engine.raw(), &packet)
        {
            for reply in raw.on_message(&packet) {
                let encoded = Encoded::engine(&reply);
                self.send(ctx, encoded);
            }
            return;
        }
        match packet {
            engineio::Packet::Pong(_) => self.on_pong(ctx),
            engineio::Packet::Ping(data) => self
                .outbox
                .push_control(Encoded::engine(&engineio::Packet::Pong(data))),
            engineio::Packet::Message(text) => {
                let decoded = std::str::from_utf8(&text)
                    .map_err(|_| crate::protocol::DecodeError::InvalidUtf8)
                    .and_then(socketio::Packet::decode)
                    .and_then(|p| self.reassembler.push_packet(p));
                self.on_decoded(ctx, decoded);
            }
            engineio::Packet::Binary(data) => {
                let decoded = self.reassembler.push_binary(data);
                self.on_decoded(ctx, decoded);
            }
            engineio::Packet::Close => {
                self.outbox.close_by_client(1000);
                self.close(ctx, DisconnectReason::TransportClose, 1000)
            }
            engineio::Packet::Noop | engineio::Packet::Upgrade => {}
            engineio::Packet::Open(_) => {
                log::debug!("connection {}: client sent OPEN", self.sid);
                self.close(ctx, DisconnectReason::ParseError, 1002);
            }
        }
    }

    fn on_decoded(
        &mut self,
        ctx: &mut Context<Self>,
        decoded: Result<Option<(socketio::Packet, Vec<Bytes>)>, crate::protocol::DecodeError>,
    ) {
        match decoded {
            Ok(Some((packet, attachments))) => {
                let total: usize = attachments.iter().map(|a| a.len()).sum();
                if total > self.engine.config().max_payload {
                    log::debug!("connection {}: attachments too large", self.sid);
                    return self.close(ctx, DisconnectReason::ParseError, 1009);
                }
                if self.pending.len() >= self.engine.config().max_events_pending {
                    self.refuse(
                        &packet,
                        EventError::new("rate_limited", "too many events waiting"),
                    );
                    return;
                }
                self.pending.push_back(Work {
                    packet,
                    attachments,
                });
                self.pump(ctx);
            }
            Ok(None) => {}
            Err(e) => {
                // Socket.IO closes the connection on a packet it cannot parse.
                log::debug!("connection {}: invalid packet: {e}", self.sid);
                self.close(ctx, DisconnectReason::ParseError, 1002);
            }
        }
    }

    /// Answers a packet that will not be handled: failed ack or `error` event.
    fn refuse(&mut self, packet: &socketio::Packet, err: EventError) {
        if !matches!(packet.kind, PacketKind::Event | PacketKind::BinaryEvent)
            || !self.sockets.contains_key(packet.nsp.as_str())
        {
            return;
        }
        let out = match packet.id {
            Some(id) => encode_packet(
                &socketio::Packet {
                    kind: PacketKind::Ack,
                    nsp: packet.nsp.clone(),
                    id: Some(id),
                    data: Some(Value::Array(vec![err.to_ack()])),
                    attachments: 0,
                },
                &[],
            ),
            None => encode_packet(
                &socketio::Packet {
                    kind: PacketKind::Event,
                    nsp: packet.nsp.clone(),
                    id: None,
                    data: Some(json!(["error", err.to_event()])),
                    attachments: 0,
                },
                &[],
            ),
        };
        // Control bypass: a refusal must not itself trip the bound.
        self.outbox.push_control(out);
    }

    fn rate_allows(&mut self) -> bool {
        let limit = self.engine.config().events_per_second;
        if limit == 0 {
            return true;
        }
        self.rate.hit(Instant::now(), limit)
    }

    /// How its namespace lets `work` run among the connection's events.
    fn mode(&self, work: &Work) -> Mode {
        if !matches!(
            work.packet.kind,
            PacketKind::Event | PacketKind::BinaryEvent
        ) {
            return Mode::Alone;
        }
        let Some(Value::Array(args)) = &work.packet.data else {
            return Mode::Alone;
        };
        let Some(Value::String(name)) = args.first() else {
            return Mode::Alone;
        };
        match self.sockets.get(work.packet.nsp.as_str()) {
            Some(s) if s.namespace.runs_beside(name) => Mode::Beside,
            Some(s) if s.namespace.pipelines(name) => Mode::Pipelined,
            _ => Mode::Alone,
        }
    }

    /// Starts the packets waiting in the pipeline, in order, as far as the
    /// lanes admit them.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.lanes.open() {
            let Some(next) = self.pending.front() else {
                if self.pending.capacity() > 0 {
                    // An idle connection holds no queue (a few hundred
                    // bytes each, at many thousands of connections).
                    self.pending = VecDeque::new();
                }
                return;
            };
            let mode = self.mode(next);
            if !self.lanes.admits(mode) {
                return;
            }
            let Some(work) = self.pending.pop_front() else {
                return;
            };
            if mode != Mode::Alone {
                self.start_event(ctx, work, mode);
                continue;
            }
            match work.packet.kind {
                PacketKind::Connect => {
                    self.lanes.start(Mode::Alone);
                    self.start_connect(ctx, work.packet);
                }
                PacketKind::Disconnect => {
                    if let Some(state) = self.sockets.remove(work.packet.nsp.as_str()) {
                        self.lanes.start(Mode::Alone);
                        self.drop_socket_rooms(&state);
                        let fut = async move {
                            state
                                .namespace
                                .on_disconnect(
                                    &state.socket,
                                    DisconnectReason::ClientNamespaceDisconnect,
                                )
                                .await;
                        };
                        ctx.spawn(fut.into_actor(self).map(|_, act, ctx| {
                            act.lanes.finish(Mode::Alone);
                            act.pump(ctx);
                        }));
                    }
                }
                PacketKind::Event | PacketKind::BinaryEvent => {
                    self.start_event(ctx, work, Mode::Alone);
                }
                PacketKind::Ack | PacketKind::BinaryAck => {
                    // The server never asks clients for acknowledgements.
                }
                PacketKind::ConnectError => {
                    log::debug!("connection {}: client sent CONNECT_ERROR", self.sid);
                    return self.close(ctx, DisconnectReason::ParseError, 1002);
                }
            }
        }
    }

    /// Starts handling an event: alone (the pipeline waits for it), or
    /// `beside` others of its kind.
    fn start_event(&mut self, ctx: &mut Context<Self>, work: Work, mode: Mode) {
        let Some(state) = self.sockets.get(work.packet.nsp.as_str()) else {
            // Not connected to that namespace: Socket.IO ignores it.
            return;
        };
        let socket = state.socket.clone();
        let namespace = state.namespace.clone();
        if !self.rate_allows() {
            return self.refuse(
                &work.packet,
                EventError::new("rate_limited", "too many events, slow down"),
            );
        }
        let mut args = match work.packet.data {
            Some(Value::Array(a)) => a,
            _ => return,
        };
        let name = match args.first() {
            Some(Value::String(_)) => match args.remove(0) {
                Value::String(s) => s,
                _ => unreachable!("checked to be a string"),
            },
            _ => return,
        };
        self.engine.metrics().event_in();
        let ack_id = work.packet.id;
        let nsp = work.packet.nsp;
        let (ordered, order_fixed) = match mode {
            Mode::Pipelined => {
                let (ordered, fixed) = Ordered::new();
                (Some(ordered), Some(fixed))
            }
            _ => (None, None),
        };
        let event = IncomingEvent {
            name,
            args,
            attachments: work.attachments,
            wants_ack: ack_id.is_some(),
            ordered,
        };
        self.lanes.start(mode);
        if let Some(fixed) = order_fixed {
            ctx.spawn(
                async move {
                    let _ = fixed.await;
                }
                .into_actor(self)
                .map(|(), act, ctx| {
                    act.lanes.order_fixed();
                    act.pump(ctx);
                }),
            );
        }
        let fut = async move { namespace.on_event(&socket, event).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.lanes.finish(mode);
            act.answer(ctx, &nsp, ack_id, res);
            act.pump(ctx);
        }));
    }

    fn answer(
        &mut self,
        ctx: &mut Context<Self>,
        nsp: &str,
        ack_id: Option<u64>,
        res: Result<Reply, EventError>,
    ) {
        let packet = match (ack_id, res) {
            (
                Some(id),
                Ok(Reply {
                    encoded: Some(json),
                    ..
                }),
            ) => encode_ack(nsp, id, &[&json]),
            (Some(id), Ok(reply)) => {
                let kind = if reply.attachments.is_empty() {
                    PacketKind::Ack
                } else {
                    PacketKind::BinaryAck
                };
                encode_packet(
                    &socketio::Packet {
                        kind,
                        nsp: nsp.to_owned(),
                        id: Some(id),
                        data: Some(Value::Array(reply.args)),
                        attachments: reply.attachments.len(),
                    },
                    &reply.attachments,
                )
            }
            (Some(id), Err(err)) => encode_packet(
                &socketio::Packet {
                    kind: PacketKind::Ack,
                    nsp: nsp.to_owned(),
                    id: Some(id),
                    data: Some(Value::Array(vec![err.to_ack()])),
                    attachments: 0,
                },
                &[],
            ),
            (None, Ok(_)) => return,
            (None, Err(err)) => encode_packet(
                &socketio::Packet {
                    kind: PacketKind::Event,
                    nsp: nsp.to_owned(),
                    id: None,
                    data: Some(json!(["error", err.to_event()])),
                    attachments: 0,
                },
                &[],
            ),
        };
        self.send(ctx, packet);
    }

    fn connect_error(&mut self, nsp: &str, message: &str, code: Option<&str>) {
        let data = match code {
            Some(code) => json!({ "message": message, "data": { "code": code } }),
            None => json!({ "message": message }),
        };
        self.outbox.push_control(encode_packet(
            &socketio::Packet {
                kind: PacketKind::ConnectError,
                nsp: nsp.to_owned(),
                id: None,
                data: Some(data),
                attachments: 0,
            },
            &[],
        ));
    }

    fn start_connect(&mut self, ctx: &mut Context<Self>, packet: socketio::Packet) {
        let nsp: Arc<str> = Arc::from(packet.nsp.as_str());
        let Some(namespace) = self.engine.namespace(&nsp) else {
            self.connect_error(&nsp, "Invalid namespace", None);
            self.lanes.finish(Mode::Alone);
            return;
        };
        if self.sockets.contains_key(&nsp) {
            // Already connected: answer again with the same socket id.
            let state = self.sockets.get(&nsp).expect("checked above");
            let answer = self.connect_answer(&nsp, state.socket.sid(), &state.pid);
            self.outbox.push_control(answer);
            self.lanes.finish(Mode::Alone);
            return;
        }
        let auth = packet.data.unwrap_or(Value::Null);
        let token = auth
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| self.query_token.as_deref().map(str::to_owned));
        let engine = self.engine.clone();
        let sid = self.sid.clone();
        // The first namespace of an authenticated session takes one of the
        // user's connection slots.
        let needs_slot = self.identity.is_none() && self.engine.authenticator().is_some();
        let auth_fut = async move {
            let res = match engine.authenticator() {
                None => Ok(Identity {
                    user_id: UserId(format!("anonymous:{sid}")),
                    name: "anonymous".into(),
                }),
                Some(a) => match token {
                    Some(t) => a.authenticate(&t).await,
                    None => Err(AuthFailure::Unauthorized),
                },
            };
            let slot = match (&res, needs_slot) {
                (Ok(identity), true) => {
                    Some(take_slot(engine, identity.user_id.clone(), sid).await)
                }
                _ => None,
            };
            (res, slot)
        };
        ctx.spawn(auth_fut.into_actor(self).map(move |(res, slot), act, ctx| {
            match act.admit(ctx, &nsp, res, slot) {
                Ok(identity) => act.finish_connect(ctx, nsp, namespace, identity, auth),
                Err((message, code)) => {
                    act.connect_error(&nsp, &message, Some(code));
                    act.lanes.finish(Mode::Alone);
                    act.pump(ctx);
                }
            }
        }));
    }

    /// Checks the verified identity against the session and the per-user
    /// connection limit.
    fn admit(
        &mut self,
        _ctx: &mut Context<Self>,
        nsp: &str,
        res: Result<Identity, AuthFailure>,
        slot: Option<bool>,
    ) -> Result<Arc<Identity>, (String, &'static str)> {
        let identity = match res {
            Ok(i) => i,
            Err(f) => {
                log::debug!("connection {}: CONNECT {nsp} refused: {f}", self.sid);
                return Err((f.to_string(), f.code()));
            }
        };
        if let Some(current) = &self.identity {
            if current.user_id != identity.user_id {
                return Err((
                    "token is for another user than this connection".into(),
                    "unauthorized",
                ));
            }
            // The sockets of one session share one record unless this
            // token names the user differently.
            if current.name == identity.name {
                return Ok(current.clone());
            }
            return Ok(Arc::new(identity));
        }
        match slot {
            Some(false) => {
                return Err((
                    "too many connections for this user".into(),
                    "too_many_connections",
                ))
            }
            Some(true) => self.holds_user_slot = true,
            None => {}
        }
        let identity = Arc::new(identity);
        self.identity = Some(identity.clone());
        Ok(identity)
    }

    fn connect_answer(&self, nsp: &str, sid: &str, pid: &str) -> Encoded {
        let data = if self.engine.config().recovery_window.is_some() {
            json!({ "sid": sid, "pid": pid })
        } else {
            json!({ "sid": sid })
        };
        encode_packet(
            &socketio::Packet {
                kind: PacketKind::Connect,
                nsp: nsp.to_owned(),
                id: None,
                data: Some(data),
                attachments: 0,
            },
            &[],
        )
    }

    fn finish_connect(
        &mut self,
        ctx: &mut Context<Self>,
        nsp: Arc<str>,
        namespace: Arc<dyn Namespace>,
        identity: Arc<Identity>,
        auth: Value,
    ) {
        let device_id = auth
            .get("deviceId")
            .and_then(Value::as_str)
            .map(|d| d.chars().take(128).collect());
        // Recovery: same pid and offset as a socket that dropped recently.
        let asked = match (
            auth.get("pid").and_then(Value::as_str),
            auth.get("offset")
                .and_then(Value::as_str)
                .and_then(|o| o.parse::<u64>().ok()),
        ) {
            (Some(pid), Some(offset)) => self
                .engine
                .recovery()
                .map(|log| (log, pid.to_owned(), offset)),
            _ => None,
        };
        let Some((log, pid, offset)) = asked else {
            return self.open_socket(ctx, nsp, namespace, identity, auth, device_id, None);
        };
        let user = identity.user_id.clone();
        let ns = nsp.clone();
        let restore = async move {
            log.restore(&pid, &user, &ns, offset)
                .await
                .map(|(snap, missed)| (pid, snap, missed, offset))
        };
        ctx.spawn(restore.into_actor(self).map(move |restored, act, ctx| {
            act.open_socket(ctx, nsp, namespace, identity, auth, device_id, restored)
        }));
    }

    /// Opens the socket of `nsp`, a recovered one when `restored` holds the
    /// remembered session and the packets it missed.
    #[allow(clippy::too_many_arguments)]
    fn open_socket(
        &mut self,
        ctx: &mut Context<Self>,
        nsp: Arc<str>,
        namespace: Arc<dyn Namespace>,
        identity: Arc<Identity>,
        auth: Value,
        device_id: Option<String>,
        restored: Option<Restored>,
    ) {
        let (sid, pid, mut rooms, missed, restored_from) = match restored {
            Some((pid, snap, missed, offset)) => {
                (snap.sid, pid, snap.rooms, Some(missed), Some(offset))
            }
            None => (
                crate::ids::new_id(),
                crate::ids::new_id(),
                Vec::new(),
                None,
                None,
            ),
        };
        if namespace.joins_user_room() {
            let user_room = RoomName(format!("user:{}", identity.user_id));
            if !rooms.contains(&user_room) {
                rooms.push(user_room);
            }
        }
        let socket = Socket::new(
            self.engine.clone(),
            ctx.address(),
            self.id,
            nsp.clone(),
            sid.clone(),
            identity,
            device_id,
        );
        // Broadcasts wait until the CONNECT (and what a recovery replays)
        // has gone out.
        self.outbox.hold();
        if let Some(timer) = self.connect_timer.take() {
            ctx.cancel_future(timer);
        }
        self.sockets.insert(
            nsp.clone(),
            SocketState {
                socket: socket.clone(),
                namespace: namespace.clone(),
                pid: pid.clone(),
                rooms: rooms.iter().cloned().collect(),
            },
        );
        let join = self.engine.registry().send(Join {
            conn: self.id,
            keys: rooms
                .iter()
                .map(|r| RoomKey {
                    nsp: nsp.to_string(),
                    room: r.clone(),
                })
                .collect(),
            member: self.member(),
        });
        let recovered = missed.is_some();
        let joined_rooms = rooms.clone();
        let log = restored_from.and_then(|_| self.engine.recovery());
        let log_nsp = nsp.clone();
        // As in Socket.IO, the application hears of a recovered socket too
        // (presence, workspace tracking), with its rooms already restored.
        let fut = async move {
            let _ = join.await;
            // Packets broadcast between taking the session and the rooms
            // having this connection were neither delivered live nor in the
            // first collection: collect again now that the join is done
            // (later ones arrive live, held).
            let late = match (log, restored_from) {
                (Some(log), Some(offset)) => log.missed(&log_nsp, &joined_rooms, offset).await,
                _ => Vec::new(),
            };
            (namespace.on_connect(&socket, &auth).await, late)
        };
        ctx.spawn(fut.into_actor(self).map(move |(res, late), act, ctx| {
            match res {
                Ok(()) => {
                    let answer = act.connect_answer(&nsp, &sid, &pid);
                    act.send(ctx, answer);
                    let mut missed = missed.unwrap_or_default();
                    if !late.is_empty() {
                        missed.extend(late);
                        missed.sort_by_key(|(o, _)| *o);
                        missed.dedup_by_key(|(o, _)| *o);
                    }
                    let mut replayed = HashSet::new();
                    for (offset, packet) in missed {
                        replayed.insert(offset);
                        act.send(ctx, packet);
                    }
                    if recovered {
                        log::debug!(
                            "connection {}: recovered {nsp} socket {sid} ({} packets)",
                            act.sid,
                            replayed.len()
                        );
                    }
                    let any_replayed = !replayed.is_empty();
                    act.release_held(ctx, replayed);
                    if any_replayed {
                        // In-flight copies arrive within moments; forget the
                        // set after a generous bound so it cannot grow.
                        ctx.run_later(Duration::from_secs(10), |act, _| {
                            act.outbox.forget_replayed()
                        });
                    }
                }
                Err(err) => {
                    if let Some(state) = act.sockets.remove(&nsp) {
                        act.drop_socket_rooms(&state);
                    }
                    act.connect_error(&nsp, &err.message, Some(err.code));
                    act.release_held(ctx, HashSet::new());
                }
            }
            act.lanes.finish(Mode::Alone);
            act.pump(ctx);
        }));
    }

    /// Lets the broadcasts held during a CONNECT go out, but those a
    /// recovery has just `replayed`.
    fn release_held(&mut self, ctx: &mut Context<Self>, replayed: HashSet<u64>) {
        match self.outbox.release_held(replayed) {
            Ok((count, bytes)) => self.engine.metrics().packets_out(count, bytes),
            Err(OutboxFull) => self.too_slow(ctx),
        }
    }

    /// How rooms reach this connection.
    fn member(&self) -> Member {
        Member {
            outbox: self.outbox.clone(),
        }
    }

    fn drop_socket_rooms(&self, state: &SocketState) {
        if state.rooms.is_empty() {
            return;
        }
        self.engine.registry().do_send(Leave {
            conn: self.id,
            keys: state
                .rooms
                .iter()
                .map(|r| RoomKey {
                    nsp: state.socket.nsp().to_owned(),
                    room: r.clone(),
                })
                .collect(),
        });
    }
}

/// A recovered session: its pid, what was remembered, the packets it
/// missed, and the offset the client presented.
type Restored = (String, Snapshot, Vec<(u64, Encoded)>, u64);

/// Takes one of `user`'s connection slots for session `sid`. The slot is
/// taken in a task of its own: if the connection stops while the answer is on
/// its way, the task gives the slot back instead of leaking it.
async fn take_slot(engine: Engine, user: UserId, sid: String) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Counted as a cleanup: a drain waits for a slot given back this way too.
    engine.clone().spawn_cleanup(async move {
        let ok = engine.acquire_user_slot(&user, &sid).await;
        if tx.send(ok).is_err() && ok {
            engine.release_user_slot(&user, &sid).await;
        }
    });
    rx.await.unwrap_or(false)
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.engine.config().outbound_queue_max.max(16));
        self.outbox.report_overflow_to(&ctx.address().recipient());
        self.schedule_ping(ctx);
        let timer = ctx.run_later(self.engine.config().connect_timeout, |act, ctx| {
            act.connect_timer = None;
            if act.sockets.is_empty() && act.engine.raw().is_none() {
                log::debug!("connection {}: no namespace joined in time", act.sid);
                act.close(ctx, DisconnectReason::TransportClose, 1000);
            }
        });
        self.connect_timer = Some(timer);
        self.engine.metrics().connection_opened();
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let reason = self
            .close_reason
            .unwrap_or(DisconnectReason::TransportClose);
        self.outbox.close(1000);
        self.engine.remove_session(&self.sid);
        let sockets: Vec<SocketState> = self.sockets.drain().collect();
        for state in sockets {
            self.drop_socket_rooms(&state);
            if reason.recoverable() {
                if let Some(recovery) = self.engine.recovery() {
                    let pid = state.pid.clone();
                    let snapshot = Snapshot {
                        user_id: state.socket.user_id().clone(),
                        nsp: state.socket.nsp().to_owned(),
                        sid: state.socket.sid().to_owned(),
                        rooms: state.rooms.iter().cloned().collect(),
                        at: Instant::now(),
                    };
                    self.engine
                        .spawn_cleanup(async move { recovery.save(pid, snapshot).await });
                }
            }
            let SocketState {
                socket, namespace, ..
            } = state;
            self.engine
                .spawn_cleanup(async move { namespace.on_disconnect(&socket, reason).await });
        }
        if self.holds_user_slot {
            if let Some(identity) = &self.identity {
                let engine = self.engine.clone();
                let user = identity.user_id.clone();
                let slot = self.sid.clone();
                self.engine
                    .spawn_cleanup(async move { engine.release_user_slot(&user, &slot).await });
            }
        }
        self.engine.metrics().connection_closed();
        log::debug!("connection {} closed: {}", self.sid, reason.as_str());
    }
}

impl Handler<Inbound> for Connection {
    type Result = ();
    fn handle(&mut self, msg: Inbound, ctx: &mut Self::Context) {
        for p in msg.packets {
            if self.close_reason.is_some() {
                return;
            }
            self.on_engine_packet(ctx, p);
        }
    }
}

impl Handler<TransportClosed> for Connection {
    type Result = ();
    fn handle(&mut self, msg: TransportClosed, ctx: &mut Self::Context) {
        self.close(ctx, msg.reason, msg.code);
    }
}

impl Handler<Close> for Connection {
    type Result = ();
    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) {
        self.close(ctx, msg.reason, 1001);
    }
}

impl Handler<SendPacket> for Connection {
    type Result = ();
    fn handle(&mut self, msg: SendPacket, ctx: &mut Self::Context) {
        self.send(ctx, msg.packet);
    }
}

impl Handler<TooSlow> for Connection {
    type Result = ();
    fn handle(&mut self, _: TooSlow, ctx: &mut Self::Context) {
        self.too_slow(ctx);
    }
}

impl Handler<JoinRooms> for Connection {
    type Result = ResponseActFuture<Self, Result<(), EventError>>;
    fn handle(&mut self, msg: JoinRooms, _: &mut Self::Context) -> Self::Result {
        let Some(state) = self.sockets.get_mut(&msg.nsp) else {
            return Box::pin(fut::ready(Err(EventError::new(
                "internal",
                "socket not connected",
            ))));
        };
        let new: Vec<RoomName> = msg
            .rooms
            .into_iter()
            .filter(|r| state.rooms.insert(r.clone()))
            .collect();
        if new.is_empty() {
            return Box::pin(fut::ready(Ok(())));
        }
        let join = self.engine.registry().send(Join {
            conn: self.id,
            keys: new
                .into_iter()
                .map(|r| RoomKey {
                    nsp: msg.nsp.to_string(),
                    room: r,
                })
                .collect(),
            member: self.member(),
        });
        Box::pin(
            async move {
                join.await
                    .map_err(|_| EventError::new("internal", "room registry unavailable"))
            }
            .into_actor(self),
        )
    }
}

impl Handler<LeaveRooms> for Connection {
    type Result = ();
    fn handle(&mut self, msg: LeaveRooms, _: &mut Self::Context) {
        let Some(state) = self.sockets.get_mut(&msg.nsp) else {
            return;
        };
        let gone: Vec<RoomKey> = msg
            .rooms
            .into_iter()
            .filter(|r| state.rooms.remove(r))
            .map(|r| RoomKey {
                nsp: msg.nsp.to_string(),
                room: r,
            })
            .collect();
        if !gone.is_empty() {
            self.engine.registry().do_send(Leave {
                conn: self.id,
                keys: gone,
            });
        }
    }
}

impl Handler<InRoom> for Connection {
    type Result = bool;
    fn handle(&mut self, msg: InRoom, _: &mut Self::Context) -> bool {
        self.sockets
            .get(&msg.nsp)
            .is_some_and(|s| s.rooms.contains(&msg.room))
    }
}

#[cfg(test)]
mod tests {
    use super::{Lanes, Mode, RateWindow, MAX_BESIDE};
    use std::time::{Duration, Instant};

    #[test]
    fn events_beside_each_other_share_their_places_and_keep_others_out() {
        let mut lanes = Lanes::default();
        for _ in 0..MAX_BESIDE {
            assert!(lanes.admits(Mode::Beside));
            lanes.start(Mode::Beside);
        }
        assert!(!lanes.admits(Mode::Beside), "no place left");
        assert!(!lanes.admits(Mode::Pipelined));
        assert!(!lanes.admits(Mode::Alone));
        lanes.finish(Mode::Beside);
        assert!(lanes.admits(Mode::Beside));
        for _ in 1..MAX_BESIDE {
            lanes.finish(Mode::Beside);
        }
        assert!(lanes.admits(Mode::Alone) && lanes.admits(Mode::Pipelined));
    }

    #[test]
    fn a_pipelined_event_starts_once_the_one_before_fixed_its_order() {
        let mut lanes = Lanes::default();
        lanes.start(Mode::Pipelined);
        assert!(
            !lanes.admits(Mode::Pipelined),
            "the first has not fixed its order"
        );
        lanes.order_fixed();
        assert!(lanes.admits(Mode::Pipelined));
        assert!(!lanes.admits(Mode::Beside) && !lanes.admits(Mode::Alone));
        for _ in 1..MAX_BESIDE {
            lanes.start(Mode::Pipelined);
            lanes.order_fixed();
        }
        assert!(
            !lanes.admits(Mode::Pipelined),
            "at most MAX_BESIDE in flight"
        );
        for _ in 0..MAX_BESIDE {
            lanes.finish(Mode::Pipelined);
        }
        assert!(lanes.admits(Mode::Alone));
    }

    #[test]
    fn work_alone_closes_the_pipeline_until_it_is_done() {
        let mut lanes = Lanes::default();
        assert!(lanes.open() && lanes.admits(Mode::Alone));
        lanes.start(Mode::Alone);
        assert!(!lanes.open());
        assert!(!lanes.admits(Mode::Beside) && !lanes.admits(Mode::Pipelined));
        assert!(!lanes.admits(Mode::Alone));
        lanes.finish(Mode::Alone);
        assert!(lanes.open() && lanes.admits(Mode::Beside));
    }

    #[test]
    fn sliding_window_allows_the_limit_then_refuses() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(t0);
        assert!((0..100).all(|_| w.hit(t0, 100)));
        assert!(!w.hit(t0, 100));
        // Half a second into the next window, half of the previous one counts.
        let t1 = t0 + Duration::from_millis(1500);
        assert!((0..50).all(|_| w.hit(t1, 100)));
        assert!(!w.hit(t1, 100));
        // Two windows later everything is forgotten.
        let t2 = t0 + Duration::from_secs(4);
        assert!((0..100).all(|_| w.hit(t2, 100)));
    }
}
