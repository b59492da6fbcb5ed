//! The engine's settings: heartbeat, limits and recovery, as named durations
//! and counts. The server fills them from its layered settings; the protocol
//! echo example uses the reference configuration of the compliance suites.

use std::time::Duration;

/// Everything the engine needs to know about its limits and timers.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How often the server pings each client (`pingInterval`).
    pub ping_interval: Duration,
    /// How long the server waits for the pong (`pingTimeout`).
    pub ping_timeout: Duration,
    /// Largest Engine.IO message or polling body accepted (`maxPayload`).
    pub max_payload: usize,
    /// How long a new Engine.IO session may wait before its first namespace
    /// CONNECT.
    pub connect_timeout: Duration,
    /// Packets queued toward one client before it is disconnected as too slow.
    pub outbound_queue_max: usize,
    /// Whether a delivery writes to the WebSocket itself when the
    /// connection's writer sleeps with nothing queued (see
    /// [`Outbox::deliver`](crate::outbox::Outbox::deliver)).
    pub write_through: bool,
    /// Incoming events waiting for their handler before new ones are refused.
    pub max_events_pending: usize,
    /// Rooms one socket may be in at once (0: no limit); a join past it is
    /// refused with `conflict`.
    pub max_rooms_per_socket: usize,
    /// Incoming events per second per connection (0: unlimited).
    pub events_per_second: u32,
    /// Connections (Engine.IO sessions) per user (0: unlimited).
    pub max_connections_per_user: usize,
    /// Connections (Engine.IO sessions) this node holds at most; past it a
    /// new one is refused with HTTP 503 (0: unlimited).
    pub max_sessions: usize,
    /// Connection state recovery window; `None` turns recovery off.
    pub recovery_window: Option<Duration>,
    /// Packets kept per room for recovery.
    pub recovery_packets_per_room: usize,
    /// Whether a namespace CONNECT needs a verified token.
    pub require_auth: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_millis(45_000),
            outbound_queue_max: 1024,
            write_through: true,
            max_events_pending: 100,
            max_rooms_per_socket: 1000,
            events_per_second: 100,
            max_connections_per_user: 10,
            max_sessions: 0,
            recovery_window: Some(Duration::from_millis(120_000)),
            recovery_packets_per_room: 1000,
            require_auth: true,
        }
    }
}
