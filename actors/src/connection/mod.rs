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
//!
//! The actor's code is in three parts: this module (the messages, the
//! session's state, the heartbeat, decoding what the transport hands over,
//! and stopping), `pipeline` (the order in which a connection's events run,
//! its event rate, and their answers) and `connect` (a namespace CONNECT:
//! authentication, the user's connection slot, and recovery).

mod connect;
mod pipeline;

pub use pipeline::MAX_BESIDE;
use pipeline::{Lanes, RateWindow, Work};

use crate::auth::Identity;
use crate::encoded::Encoded;
use crate::engine::Engine;
use crate::ids::{RoomKey, RoomName};
use crate::namespace::{DisconnectReason, EventError, Namespace, Socket};
use crate::outbox::Outbox;
use crate::protocol::engineio;
use crate::protocol::socketio::{self, Reassembler};
use crate::recovery::Snapshot;
use crate::registry::{ConnId, Join, Leave};
use crate::room::{Member, TooSlow};
use actix::prelude::*;
use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

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

/// The rooms the socket of `nsp` is in.
#[derive(Message)]
#[rtype(result = "Vec<RoomName>")]
pub struct SocketRooms {
    pub nsp: Arc<str>,
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
                let decoded = self
                    .reassembler
                    .push_binary(data, self.engine.config().max_payload);
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
            Err(crate::protocol::DecodeError::AttachmentsTooLarge) => {
                // Checked as each attachment arrives: no more than the
                // limit is ever held for one packet.
                log::debug!("connection {}: attachments too large", self.sid);
                self.close(ctx, DisconnectReason::ParseError, 1009);
            }
            Err(e) => {
                // Socket.IO closes the connection on a packet it cannot parse.
                log::debug!("connection {}: invalid packet: {e}", self.sid);
                self.close(ctx, DisconnectReason::ParseError, 1002);
            }
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
        let max = self.engine.config().max_rooms_per_socket;
        if max > 0 {
            let adding = msg
                .rooms
                .iter()
                .filter(|r| !state.rooms.contains(*r))
                .collect::<HashSet<_>>()
                .len();
            if state.rooms.len() + adding > max {
                return Box::pin(fut::ready(Err(EventError::new(
                    "conflict",
                    format!("a socket may be in at most {max} rooms; leave some first"),
                ))));
            }
        }
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

impl Handler<SocketRooms> for Connection {
    type Result = MessageResult<SocketRooms>;
    fn handle(&mut self, msg: SocketRooms, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.sockets
                .get(&msg.nsp)
                .map(|s| s.rooms.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }
}
