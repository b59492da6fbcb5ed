//! Counters the engine keeps for `/metrics`: plain atomics (relaxed: each is
//! a tally on its own, nothing is ordered by them), updated on the paths they
//! count and read when scraped. Nothing here allocates or locks, so counting
//! costs an atomic add per event, never anything per recipient beyond that.
//!
//! The bridge between nodes (Redis pub/sub) reports through the `bridge_*`
//! recorders; the server renders everything in the Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms: the bridge's lag
/// (publish on one node to receipt on another) and a chat message's store
/// time (durable in the document store).
pub const SUB_SECOND_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A histogram of durations with fixed bucket bounds, in atomics. Each
/// observation adds to its bucket, the count and the sum; buckets are
/// rendered cumulatively, as Prometheus wants.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One more than `bounds`: the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A copy of a histogram at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, cumulative count)`, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Reads it (cumulative buckets).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(self.buckets.iter())
            .map(|(b, c)| {
                running += c.load(Ordering::Relaxed);
                (*b, running)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// The engine's counters.
#[derive(Debug)]
pub struct Metrics {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    events_in: AtomicU64,
    bytes_in: AtomicU64,
    broadcasts: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    slow_clients: AtomicU64,
    connections_refused: AtomicU64,
    handshakes_limited: AtomicU64,
    deliveries_held: AtomicU64,
    upload_bytes: AtomicU64,
    bridge_published: AtomicU64,
    bridge_received: AtomicU64,
    bridge_echoes: AtomicU64,
    bridge_reconnects: AtomicU64,
    bridge_channels: AtomicU64,
    bridge_lag: Histogram,
    message_store: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            events_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            broadcasts: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            slow_clients: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            handshakes_limited: AtomicU64::new(0),
            deliveries_held: AtomicU64::new(0),
            upload_bytes: AtomicU64::new(0),
            bridge_published: AtomicU64::new(0),
            bridge_received: AtomicU64::new(0),
            bridge_echoes: AtomicU64::new(0),
            bridge_reconnects: AtomicU64::new(0),
            bridge_channels: AtomicU64::new(0),
            bridge_lag: Histogram::new(&SUB_SECOND_BUCKETS),
            message_store: Histogram::new(&SUB_SECOND_BUCKETS),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Connection actors (Engine.IO sessions) running now.
    pub connections_open: u64,
    /// Connection actors started since the node started.
    pub connections_total: u64,
    /// Socket.IO events received from clients (dispatched to a namespace).
    pub events_in: u64,
    /// Bytes of Engine.IO packets received (WebSocket messages, polling
    /// bodies).
    pub bytes_in: u64,
    /// Broadcasts encoded (each once, whatever the number of recipients).
    pub broadcasts: u64,
    /// Socket.IO packets queued toward clients (events, acks, CONNECTs).
    pub packets_out: u64,
    /// Bytes of those packets, as WebSocket frames.
    pub bytes_out: u64,
    /// Clients closed for not keeping up.
    pub slow_clients: u64,
    /// New connections refused because the node held its most
    /// (`EngineConfig::max_sessions`).
    pub connections_refused: u64,
    /// Handshakes refused by the per-address limit (HTTP 429).
    pub handshakes_limited: u64,
    /// Deliveries the rooms held back for a batched write because more
    /// broadcasts waited behind theirs (see [`Batch`](crate::room::Batch)).
    pub deliveries_held: u64,
    /// Bytes of upload chunks stored.
    pub upload_bytes: u64,
    /// Broadcasts published to the other nodes.
    pub bridge_published: u64,
    /// Messages received from other nodes (own echoes not included).
    pub bridge_received: u64,
    /// Own messages that came back and were ignored.
    pub bridge_echoes: u64,
    /// Times the bridge's subscriber reconnected.
    pub bridge_reconnects: u64,
    /// Channels the bridge is subscribed to now.
    pub bridge_channels: u64,
    /// Publish (other node) → receipt (this node) delay.
    pub bridge_lag: HistogramSnapshot,
    /// How long chat messages took to be durable in the document store
    /// (from the append's start to its answer, retries included).
    pub message_store: HistogramSnapshot,
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn event_in(&self) {
        self.events_in.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn bytes_in(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn broadcast(&self) {
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn packet_out(&self, bytes: usize) {
        self.packets_out(1, bytes);
    }
    /// `count` packets of `bytes` in all went out.
    pub(crate) fn packets_out(&self, count: u64, bytes: usize) {
        self.packets_out.fetch_add(count, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn slow_client(&self) {
        self.slow_clients.fetch_add(1, Ordering::Relaxed);
    }
    /// A new connection was refused: the node holds its most already. The
    /// count so far, this one included.
    pub(crate) fn connection_refused(&self) -> u64 {
        self.connections_refused.fetch_add(1, Ordering::Relaxed) + 1
    }
    /// A handshake was refused by the per-address limit. The count so far,
    /// this one included.
    pub(crate) fn handshake_limited(&self) -> u64 {
        self.handshakes_limited.fetch_add(1, Ordering::Relaxed) + 1
    }
    pub(crate) fn deliveries_held(&self, count: u64) {
        self.deliveries_held.fetch_add(count, Ordering::Relaxed);
    }
    pub(crate) fn upload_bytes(&self, bytes: usize) {
        self.upload_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The bridge published `n` broadcasts to the other nodes.
    pub fn bridge_published(&self, n: u64) {
        self.bridge_published.fetch_add(n, Ordering::Relaxed);
    }
    /// The bridge received a message from another node, `lag` after it was
    /// published there.
    pub fn bridge_received(&self, lag: Duration) {
        self.bridge_received.fetch_add(1, Ordering::Relaxed);
        self.bridge_lag.observe(lag);
    }
    /// A chat message's append took `d` to be durable (or to fail).
    pub fn message_stored(&self, d: Duration) {
        self.message_store.observe(d);
    }
    /// The bridge received its own message back and ignored it.
    pub fn bridge_echo(&self) {
        self.bridge_echoes.fetch_add(1, Ordering::Relaxed);
    }
    /// The bridge's subscriber reconnected to Redis.
    pub fn bridge_reconnected(&self) {
        self.bridge_reconnects.fetch_add(1, Ordering::Relaxed);
    }
    /// The bridge is now subscribed to `n` channels.
    pub fn set_bridge_channels(&self, n: usize) {
        self.bridge_channels.store(n as u64, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            connections_open: get(&self.connections_open),
            connections_total: get(&self.connections_total),
            events_in: get(&self.events_in),
            bytes_in: get(&self.bytes_in),
            broadcasts: get(&self.broadcasts),
            packets_out: get(&self.packets_out),
            bytes_out: get(&self.bytes_out),
            slow_clients: get(&self.slow_clients),
            connections_refused: get(&self.connections_refused),
            handshakes_limited: get(&self.handshakes_limited),
            deliveries_held: get(&self.deliveries_held),
            upload_bytes: get(&self.upload_bytes),
            bridge_published: get(&self.bridge_published),
            bridge_received: get(&self.bridge_received),
            bridge_echoes: get(&self.bridge_echoes),
            bridge_reconnects: get(&self.bridge_reconnects),
            bridge_channels: get(&self.bridge_channels),
            bridge_lag: self.bridge_lag.snapshot(),
            message_store: self.message_store.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&SUB_SECOND_BUCKETS);
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[3], (0.005, 2));
        assert_eq!(s.buckets.last(), Some(&(1.0, 2)), "5 s only in +Inf");
        assert!((s.sum - 5.0033).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn bridge_recorders_count() {
        let m = Metrics::default();
        m.bridge_published(1);
        m.bridge_received(Duration::from_millis(2));
        m.bridge_echo();
        m.bridge_reconnected();
        m.set_bridge_channels(7);
        let s = m.snapshot();
        assert_eq!(
            (
                s.bridge_published,
                s.bridge_received,
                s.bridge_echoes,
                s.bridge_reconnects,
                s.bridge_channels
            ),
            (1, 1, 1, 1, 7)
        );
        assert_eq!(s.bridge_lag.count, 1);
    }
}
