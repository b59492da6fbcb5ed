//! Counters the engine keeps for `/metrics`: plain atomics, updated on the
//! paths they count and read when scraped.

use std::sync::atomic::{AtomicU64, Ordering};

/// The engine's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    events_in: AtomicU64,
    broadcasts: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    slow_clients: AtomicU64,
    bridge_published: AtomicU64,
    bridge_received: AtomicU64,
    bridge_echoes: AtomicU64,
    bridge_reconnects: AtomicU64,
    bridge_channels: AtomicU64,
    bridge_lag_ms_total: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub connections_open: u64,
    pub connections_total: u64,
    pub events_in: u64,
    pub broadcasts: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub slow_clients: u64,
    pub bridge_published: u64,
    pub bridge_received: u64,
    pub bridge_echoes: u64,
    pub bridge_reconnects: u64,
    pub bridge_channels: u64,
    pub bridge_lag_ms_total: u64,
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
    pub(crate) fn broadcast(&self) {
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn packet_out(&self, bytes: usize) {
        self.packets_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn slow_client(&self) {
        self.slow_clients.fetch_add(1, Ordering::Relaxed);
    }

    /// Broadcasts published to the other nodes.
    pub fn bridge_published(&self, n: u64) {
        self.bridge_published.fetch_add(n, Ordering::Relaxed);
    }
    /// A broadcast from another node arrived, `lag` after it was sent.
    pub fn bridge_received(&self, lag: std::time::Duration) {
        self.bridge_received.fetch_add(1, Ordering::Relaxed);
        self.bridge_lag_ms_total
            .fetch_add(lag.as_millis() as u64, Ordering::Relaxed);
    }
    /// This node's own broadcast came back from Redis (and was dropped).
    pub fn bridge_echo(&self) {
        self.bridge_echoes.fetch_add(1, Ordering::Relaxed);
    }
    /// The bridge reconnected to Redis.
    pub fn bridge_reconnected(&self) {
        self.bridge_reconnects.fetch_add(1, Ordering::Relaxed);
    }
    /// Room channels the bridge listens to now.
    pub fn set_bridge_channels(&self, n: u64) {
        self.bridge_channels.store(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            connections_open: self.connections_open.load(Ordering::Relaxed),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            events_in: self.events_in.load(Ordering::Relaxed),
            broadcasts: self.broadcasts.load(Ordering::Relaxed),
            packets_out: self.packets_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            slow_clients: self.slow_clients.load(Ordering::Relaxed),
            bridge_published: self.bridge_published.load(Ordering::Relaxed),
            bridge_received: self.bridge_received.load(Ordering::Relaxed),
            bridge_echoes: self.bridge_echoes.load(Ordering::Relaxed),
            bridge_reconnects: self.bridge_reconnects.load(Ordering::Relaxed),
            bridge_channels: self.bridge_channels.load(Ordering::Relaxed),
            bridge_lag_ms_total: self.bridge_lag_ms_total.load(Ordering::Relaxed),
        }
    }
}
