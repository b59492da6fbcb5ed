//! The engine: the node-wide handle shared by transports, socket handles and
//! the HTTP API. It knows the namespaces, the authenticator, the room
//! registry, the Engine.IO sessions of this node, the per-user connection
//! counts and the recovery log, and it is the one place broadcasts are
//! encoded — once per broadcast, whatever the number of recipients.

use crate::auth::Authenticator;
use crate::cluster::{
    Bus, ConnectionSlots, LocalSlots, OutgoingBroadcast, RecoveryLog, Signal, SignalListener,
};
use crate::config::EngineConfig;
use crate::connection::{Close, Connection};
use crate::encoded::{Encoded, Frame};
use crate::ids::{RoomKey, RoomName, UserId};
use crate::metrics::Metrics;
use crate::namespace::{DisconnectReason, Namespace};
use crate::outbox::Outbox;
use crate::protocol::socketio;
use crate::recovery::Recovery;
use crate::registry::{Broadcast, ConnId, Registry};
use actix::prelude::*;
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Why the node opens no new session (both answer HTTP 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionRefusal {
    /// It is shutting down.
    Draining,
    /// It holds its most sessions (`EngineConfig::max_sessions`).
    Full,
}

impl SessionRefusal {
    /// The body of the 503: none while draining (as before), a JSON
    /// `{ code, message }` in the shape of Engine.IO's errors when full.
    pub(crate) fn body(self) -> Option<bytes::Bytes> {
        match self {
            SessionRefusal::Draining => None,
            SessionRefusal::Full => Some(bytes::Bytes::from_static(
                br#"{"code":4,"message":"Too many connections on this node"}"#,
            )),
        }
    }
}

/// One Engine.IO session as the transports see it.
pub(crate) struct SessionEntry {
    pub conn: Addr<Connection>,
    pub outbox: Arc<Outbox>,
    /// A long-polling `GET` is in progress.
    pub polling_get: AtomicBool,
    /// A long-polling `POST` is in progress.
    pub polling_post: AtomicBool,
    /// A WebSocket upgrade has started (or the session began on a WebSocket).
    pub websocket: AtomicBool,
}

/// Told when a user's first connection in the cluster opens and when the
/// last one closes (a connection is an Engine.IO session, whatever the
/// number of namespaces on it). The collaboration layer uses it for
/// `presence:user_online` / `presence:user_offline`, so per-user presence is
/// counted from the engine's own connection slots rather than a second set
/// of counters. Called synchronously from the connection actor, outside the
/// engine's locks: implementations spawn whatever async work they need.
pub trait UserPresence: Send + Sync + 'static {
    /// The user's connection count went from 0 to 1, on `device` (the
    /// CONNECT's `deviceId`, when it named one).
    fn first_connection(&self, engine: &Engine, user: &UserId, device: Option<&str>);
    /// The user's connection count went back to 0.
    fn last_connection_closed(&self, engine: &Engine, user: &UserId);
}

/// Admits new Engine.IO sessions by the client's address: the server's
/// per-address handshake limit. Asked before a handshake opens a session
/// (long-polling or WebSocket); a session's later requests are not asked.
#[async_trait::async_trait]
pub trait HandshakeGate: Send + Sync + 'static {
    /// Refuses, or lets through, the handshake of a client connected from
    /// `peer` whose request carried `forwarded_for` (its `X-Forwarded-For`,
    /// for a server behind a trusted proxy).
    async fn admit(
        &self,
        peer: Option<std::net::SocketAddr>,
        forwarded_for: Option<&str>,
    ) -> Result<(), HandshakeRefused>;
}

/// A handshake the [`HandshakeGate`] refused.
#[derive(Debug, Clone)]
pub struct HandshakeRefused {
    /// When one would be let through.
    pub retry_after: Duration,
    /// The client address the limit counted (for the log).
    pub client: String,
}

/// Handles Engine.IO messages directly, without Socket.IO on top (the
/// protocol echo example's `/engine.io/`).
pub trait RawMessages: Send + Sync + 'static {
    /// Packets to send back for one message or binary packet.
    fn on_message(
        &self,
        packet: &crate::protocol::engineio::Packet,
    ) -> Vec<crate::protocol::engineio::Packet>;
}

struct Inner {
    config: EngineConfig,
    raw: Option<Arc<dyn RawMessages>>,
    namespaces: HashMap<String, Arc<dyn Namespace>>,
    authenticator: Option<Arc<dyn Authenticator>>,
    presence: Option<Arc<dyn UserPresence>>,
    signals: Option<Arc<dyn SignalListener>>,
    handshake_gate: Option<Arc<dyn HandshakeGate>>,
    registry: Addr<Registry>,
    sessions: Mutex<HashMap<String, Arc<SessionEntry>>>,
    local_slots: Arc<LocalSlots>,
    recovery: Option<Arc<Recovery>>,
    /// The bus between nodes, once the node joined a cluster (shared with
    /// the registry, which tells it which rooms this node has).
    bus: BusSlot,
    cluster: OnceLock<ClusterState>,
    metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    next_broadcast: AtomicU64,
    draining: AtomicBool,
    /// Work closed connections left behind that is still running (see
    /// [`Engine::spawn_cleanup`]).
    cleanups: AtomicUsize,
}

/// Where the registry and the engine find the bus, once there is one.
pub type BusSlot = Arc<OnceLock<Arc<dyn Bus>>>;

/// The shared state of a cluster (see [`crate::cluster`]).
pub struct ClusterParts {
    /// Carries broadcasts and signals between nodes.
    pub bus: Arc<dyn Bus>,
    /// Per-user connection slots across nodes.
    pub slots: Arc<dyn ConnectionSlots>,
    /// Recovery across nodes.
    pub recovery: Arc<dyn RecoveryLog>,
}

struct ClusterState {
    slots: Arc<dyn ConnectionSlots>,
    recovery: Arc<dyn RecoveryLog>,
}

/// The node's engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// One running cleanup, counted while it lives.
struct Cleanup(Engine);

impl Cleanup {
    fn new(engine: Engine) -> Self {
        engine.inner.cleanups.fetch_add(1, Ordering::AcqRel);
        Cleanup(engine)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.0.inner.cleanups.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A handle to the engine that does not keep it alive, for parts the engine
/// itself owns (through its namespaces) that also need to broadcast.
#[derive(Clone)]
pub struct WeakEngine {
    inner: std::sync::Weak<Inner>,
}

impl WeakEngine {
    /// A handle that never upgrades (for parts used without an engine).
    pub fn dangling() -> Self {
        WeakEngine {
            inner: std::sync::Weak::new(),
        }
    }

    /// The engine, while it is alive.
    pub fn upgrade(&self) -> Option<Engine> {
        self.inner.upgrade().map(|inner| Engine { inner })
    }
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    config: EngineConfig,
    raw: Option<Arc<dyn RawMessages>>,
    namespaces: HashMap<String, Arc<dyn Namespace>>,
    authenticator: Option<Arc<dyn Authenticator>>,
    presence: Option<Arc<dyn UserPresence>>,
    signals: Option<Arc<dyn SignalListener>>,
    handshake_gate: Option<Arc<dyn HandshakeGate>>,
}

impl EngineBuilder {
    /// Asks `gate` before a handshake opens a session (see [`HandshakeGate`]).
    pub fn handshake_gate(mut self, gate: Arc<dyn HandshakeGate>) -> Self {
        self.handshake_gate = Some(gate);
        self
    }

    /// Tells `listener` of the [`Signal`]s other nodes send.
    pub fn signals(mut self, listener: Arc<dyn SignalListener>) -> Self {
        self.signals = Some(listener);
        self
    }

    /// Tells `presence` when users come and go (see [`UserPresence`]).
    pub fn presence(mut self, presence: Arc<dyn UserPresence>) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Serves `namespace` at `path` (e.g. `/chat`).
    pub fn namespace(mut self, path: &str, namespace: Arc<dyn Namespace>) -> Self {
        self.namespaces.insert(path.to_owned(), namespace);
        self
    }

    /// Serves plain Engine.IO: messages go to `raw` instead of Socket.IO.
    pub fn raw(mut self, raw: Arc<dyn RawMessages>) -> Self {
        self.raw = Some(raw);
        self
    }

    /// Verifies tokens on CONNECT with `authenticator`.
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// Starts the registry and the recovery sweeper; call inside an actix
    /// system.
    pub fn build(self) -> Engine {
        let recovery = self
            .config
            .recovery_window
            .map(|w| Arc::new(Recovery::new(w, self.config.recovery_packets_per_room)));
        // Offsets must keep increasing across restarts of the node, so a
        // client never presents an offset that a fresh node already used.
        let epoch = (chrono::Utc::now().timestamp_millis().max(0) as u64) << 10;
        let bus: BusSlot = Arc::default();
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::new(bus.clone(), metrics.clone());
        if self.config.write_through {
            registry = registry.batching();
        }
        let engine = Engine {
            inner: Arc::new(Inner {
                registry: registry.start(),
                bus,
                cluster: OnceLock::new(),
                signals: self.signals,
                handshake_gate: self.handshake_gate,
                local_slots: Arc::default(),
                config: self.config,
                raw: self.raw,
                namespaces: self.namespaces,
                authenticator: self.authenticator,
                presence: self.presence,
                sessions: Mutex::new(HashMap::new()),
                recovery,
                metrics,
                next_conn: AtomicU64::new(1),
                next_broadcast: AtomicU64::new(epoch),
                draining: AtomicBool::new(false),
                cleanups: AtomicUsize::new(0),
            }),
        };
        if engine.inner.recovery.is_some() {
            let weak = Arc::downgrade(&engine.inner);
            actix::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { break };
                    if let Some(r) = &inner.recovery {
                        r.sweep();
                    }
                }
            });
        }
        engine
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Starts building an engine with `config`.
    pub fn builder(config: EngineConfig) -> EngineBuilder {
        EngineBuilder {
            config,
            raw: None,
            namespaces: HashMap::new(),
            authenticator: None,
            presence: None,
            signals: None,
            handshake_gate: None,
        }
    }

    /// Joins a cluster: from now on broadcasts go through `parts.bus`, and
    /// connection slots and recovery use the shared state. Call once, at
    /// start-up, before the node serves clients; `false` if already joined.
    pub fn join_cluster(&self, parts: ClusterParts) -> bool {
        if self.inner.bus.set(parts.bus).is_err() {
            return false;
        }
        self.inner
            .cluster
            .set(ClusterState {
                slots: parts.slots,
                recovery: parts.recovery,
            })
            .is_ok()
    }

    /// Whether the node is part of a cluster.
    pub fn in_cluster(&self) -> bool {
        self.inner.bus.get().is_some()
    }

    /// Sends `signal` to the other nodes (nothing to do on a single node).
    pub fn signal(&self, signal: Signal) {
        if let Some(bus) = self.inner.bus.get() {
            bus.signal(signal);
        }
    }

    /// A signal from another node arrived (called by the bus).
    pub fn deliver_signal(&self, signal: Signal) {
        if let Some(l) = &self.inner.signals {
            l.on_signal(signal);
        }
    }

    /// The per-user connection slots (the cluster's when in one).
    pub fn slots(&self) -> Arc<dyn ConnectionSlots> {
        match self.inner.cluster.get() {
            Some(c) => c.slots.clone(),
            None => self.inner.local_slots.clone(),
        }
    }

    /// A handle that does not keep the engine alive.
    pub fn downgrade(&self) -> WeakEngine {
        WeakEngine {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The plain Engine.IO handler, when this engine serves no Socket.IO.
    pub fn raw(&self) -> Option<&Arc<dyn RawMessages>> {
        self.inner.raw.as_ref()
    }

    /// The namespace served at `path`.
    pub fn namespace(&self, path: &str) -> Option<Arc<dyn Namespace>> {
        self.inner.namespaces.get(path).cloned()
    }

    /// The authenticator, when CONNECTs need a token.
    pub fn authenticator(&self) -> Option<&Arc<dyn Authenticator>> {
        self.inner.authenticator.as_ref()
    }

    /// The room registry.
    pub fn registry(&self) -> &Addr<Registry> {
        &self.inner.registry
    }

    /// The recovery log, when recovery is on (the cluster's when in one).
    pub fn recovery(&self) -> Option<Arc<dyn RecoveryLog>> {
        let local = self.inner.recovery.as_ref()?;
        Some(match self.inner.cluster.get() {
            Some(c) => c.recovery.clone(),
            None => local.clone(),
        })
    }

    /// The engine's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Number of Engine.IO sessions on this node.
    pub fn session_count(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Whether the node is draining (no new sessions).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Whether a new session would be refused, and why: the node drains, or
    /// holds [`max_sessions`](EngineConfig::max_sessions) already (counted
    /// and logged: the first refusal and every thousandth after).
    pub(crate) fn session_refusal(&self) -> Option<SessionRefusal> {
        if self.is_draining() {
            return Some(SessionRefusal::Draining);
        }
        let max = self.inner.config.max_sessions;
        if max == 0 {
            return None;
        }
        let open = self.session_count();
        if open < max {
            return None;
        }
        let refused = self.inner.metrics.connection_refused();
        if refused == 1 || refused.is_multiple_of(1000) {
            log::warn!(
                "new connection refused: this node holds {open} of at most {max} \
                 (limits.max_connections; {refused} refused since start)"
            );
        }
        Some(SessionRefusal::Full)
    }

    /// `Some(retry_after)` when the handshake gate refuses a new session for
    /// a client at `peer` whose request carried `headers`.
    pub(crate) async fn handshake_refused(
        &self,
        peer: Option<std::net::SocketAddr>,
        headers: &actix_http::header::HeaderMap,
    ) -> Option<Duration> {
        let gate = self.inner.handshake_gate.as_ref()?;
        let forwarded_for = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let refusal = gate.admit(peer, forwarded_for).await.err()?;
        let refused = self.inner.metrics.handshake_limited();
        if refused == 1 || refused.is_multiple_of(1000) {
            log::warn!(
                "new connection refused: too many handshakes from {} \
                 (rate_limits.socket_handshakes_ip_per_minute; {refused} refused since start)",
                refusal.client
            );
        }
        Some(refusal.retry_after)
    }

    /// Runs, on the current arbiter, work a closed connection leaves behind
    /// (its recovery record, its namespaces' `on_disconnect`, its user
    /// slot), counted in [`cleanups_in_flight`](Self::cleanups_in_flight)
    /// until it ends or is dropped. A connection leaves the session map
    /// before this work is done, so a drain waits for both: otherwise the
    /// node would stop (and its Redis connection with it) while the records
    /// that let clients recover on another node are still being written.
    pub fn spawn_cleanup(&self, work: impl std::future::Future<Output = ()> + 'static) {
        let counted = Cleanup::new(self.clone());
        actix::spawn(async move {
            work.await;
            drop(counted);
        });
    }

    /// How many cleanups of closed connections are still running.
    pub fn cleanups_in_flight(&self) -> usize {
        self.inner.cleanups.load(Ordering::Acquire)
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        ConnId(self.inner.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn add_session(&self, sid: String, entry: Arc<SessionEntry>) {
        lock(&self.inner.sessions).insert(sid, entry);
    }

    pub(crate) fn session(&self, sid: &str) -> Option<Arc<SessionEntry>> {
        lock(&self.inner.sessions).get(sid).cloned()
    }

    pub(crate) fn remove_session(&self, sid: &str) {
        lock(&self.inner.sessions).remove(sid);
    }

    /// Takes one of the user's connection slots (named `slot`, unique in
    /// the cluster) for a connection on `device`; `false` at the limit. The
    /// user's first slot in the cluster tells the [`UserPresence`] hook.
    pub async fn acquire_user_slot(&self, user: &UserId, slot: &str, device: Option<&str>) -> bool {
        let max = self.inner.config.max_connections_per_user;
        match self.slots().acquire(user, slot, max).await {
            Ok(count) => {
                if count == 1 {
                    if let Some(p) = &self.inner.presence {
                        p.first_connection(self, user, device);
                    }
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Gives a slot back; the user's last one tells the [`UserPresence`] hook.
    pub async fn release_user_slot(&self, user: &UserId, slot: &str) {
        if self.slots().release(user, slot).await == Some(0) {
            if let Some(p) = &self.inner.presence {
                p.last_connection_closed(self, user);
            }
        }
    }

    /// Every connection `user` had on a node that stopped without closing
    /// them is gone (found by the cluster's reaper): same as the last one
    /// closing.
    pub fn connections_lost(&self, user: &UserId) {
        if let Some(p) = &self.inner.presence {
            p.last_connection_closed(self, user);
        }
    }

    /// Connections the user has in the cluster (`None`: unknown now).
    pub async fn user_connections(&self, user: &UserId) -> Option<usize> {
        self.slots().count(user).await
    }

    /// Broadcasts `event` with `data` to `rooms` of namespace `nsp`, every
    /// socket in them once, but the connection `except`.
    pub fn emit(
        &self,
        nsp: &str,
        rooms: &[RoomName],
        except: Option<ConnId>,
        event: &str,
        data: &impl Serialize,
    ) {
        match serde_json::to_vec(data) {
            Ok(json) => self.emit_raw(nsp, rooms, except, event, &[&json]),
            Err(e) => log::error!("cannot serialize {event}: {e}"),
        }
    }

    /// Broadcasts an event whose arguments are already JSON texts.
    pub fn emit_raw(
        &self,
        nsp: &str,
        rooms: &[RoomName],
        except: Option<ConnId>,
        event: &str,
        args: &[&[u8]],
    ) {
        if rooms.is_empty() {
            return;
        }
        if let Some(bus) = self.inner.bus.get() {
            let mut head = bytes::BytesMut::new();
            socketio::write_event(&mut head, true, nsp, None, event, args);
            head.truncate(head.len() - 1);
            self.inner.metrics.broadcast();
            bus.broadcast(OutgoingBroadcast {
                nsp: nsp.to_owned(),
                rooms: rooms.to_vec(),
                except,
                head: head.freeze(),
            });
            return;
        }
        let id = self.inner.next_broadcast.fetch_add(1, Ordering::Relaxed);
        let offset = self.inner.recovery.as_ref().map(|_| id);
        let packet = encode_event(nsp, event, args, offset);
        if let Some(r) = &self.inner.recovery {
            r.record(nsp, rooms, id, &packet);
        }
        self.inner.metrics.broadcast();
        self.inner.registry.do_send(Broadcast {
            keys: rooms
                .iter()
                .map(|r| RoomKey {
                    nsp: nsp.to_owned(),
                    room: r.clone(),
                })
                .collect(),
            packet,
            id,
            except,
        });
    }

    /// Drains the node: refuses new sessions and closes every connection
    /// (clients reconnect, through the load balancer, to another node).
    pub fn close_all(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
        let sessions: Vec<Arc<SessionEntry>> =
            lock(&self.inner.sessions).values().cloned().collect();
        for s in sessions {
            s.conn.do_send(Close {
                reason: DisconnectReason::ServerDisconnect,
            });
        }
    }
}

/// Encodes an event packet `[event, ...args, offset?]` of namespace `nsp`
/// (the offset is the recovery offset, sent as a string).
pub fn encode_event(nsp: &str, event: &str, args: &[&[u8]], offset: Option<u64>) -> Encoded {
    let size: usize =
        args.iter().map(|a| a.len() + 1).sum::<usize>() + nsp.len() + event.len() + 32;
    Encoded::single(Frame::build(false, size, |buf| match offset {
        Some(o) => {
            let o = format!("\"{o}\"");
            let mut all: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
            all.extend_from_slice(args);
            all.push(o.as_bytes());
            socketio::write_event(buf, true, nsp, None, event, &all);
        }
        None => socketio::write_event(buf, true, nsp, None, event, args),
    }))
}

/// Encodes an acknowledgement whose arguments are already JSON text.
pub fn encode_ack(nsp: &str, id: u64, args: &[&[u8]]) -> Encoded {
    let size: usize = args.iter().map(|a| a.len() + 1).sum::<usize>() + nsp.len() + 32;
    Encoded::single(Frame::build(false, size, |buf| {
        socketio::write_ack(buf, true, nsp, id, args)
    }))
}

/// Encodes any Socket.IO packet with its binary attachments.
pub fn encode_packet(packet: &socketio::Packet, attachments: &[Bytes]) -> Encoded {
    let head = Frame::build(false, 64, |buf| {
        buf.extend_from_slice(b"4");
        packet.encode_into(buf);
    });
    Encoded::with_attachments(head, attachments.iter().map(|a| Frame::binary(a)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `f` for up to a second.
    async fn eventually(f: impl Fn() -> bool) -> bool {
        for _ in 0..100 {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        f()
    }

    #[actix::test]
    async fn cleanups_are_counted_until_they_end_or_are_dropped() {
        let engine = Engine::builder(EngineConfig::default()).build();
        assert_eq!(engine.cleanups_in_flight(), 0);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        engine.spawn_cleanup(async move {
            let _ = rx.await;
        });
        assert_eq!(engine.cleanups_in_flight(), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(engine.cleanups_in_flight(), 1, "still running");
        tx.send(()).unwrap();
        assert!(eventually(|| engine.cleanups_in_flight() == 0).await);

        // A cleanup whose arbiter stops before it ends is not counted after.
        let arbiter = actix::Arbiter::new();
        let e = engine.clone();
        assert!(arbiter.spawn_fn(move || e.spawn_cleanup(std::future::pending())));
        assert!(eventually(|| engine.cleanups_in_flight() == 1).await);
        arbiter.stop();
        assert!(eventually(|| engine.cleanups_in_flight() == 0).await);
    }
}
