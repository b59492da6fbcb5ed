//! `GET /metrics`: the node's counters in the Prometheus text exposition
//! format (version 0.0.4), and the middleware that times every HTTP request.
//!
//! The engine's counters (connections, events, bytes, broadcasts, uploads,
//! the bridge between nodes) live as atomics in `huddle_actors::metrics` and
//! are only read here. HTTP requests are counted per method, matched route
//! pattern (`/api/v1/tasks/{id}`, never the raw path, so the label set stays
//! bounded; `unmatched` for paths no route knows, `static` for the test
//! page's files) and status class (`2xx`
//! ...), with a latency histogram each. See the README for every name.

use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use huddle_actors::metrics::{Histogram, HistogramSnapshot};
use huddle_actors::registry::RoomCount;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds (seconds) of the HTTP latency histogram.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The labels of one HTTP series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Labels {
    method: &'static str,
    route: String,
    status: &'static str,
}

/// HTTP request counts and latencies, per `Labels`.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    series: Mutex<HashMap<Labels, Histogram>>,
}

/// A method as a label: the standard ones by name, anything else `OTHER`
/// (a client must not be able to grow the label set).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_label(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

impl HttpMetrics {
    /// Records one request.
    pub fn observe(
        &self,
        method: &Method,
        route: Option<String>,
        status: u16,
        took: std::time::Duration,
    ) {
        let labels = Labels {
            method: method_label(method),
            route: route.unwrap_or_else(|| "unmatched".to_owned()),
            status: status_label(status),
        };
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .entry(labels)
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(took);
    }

    fn snapshot(&self) -> Vec<(Labels, HistogramSnapshot)> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = series
            .iter()
            .map(|(l, h)| (l.clone(), h.snapshot()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Middleware for the whole app: times each request and records it under
/// its route pattern.
pub async fn record<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().clone();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let status = res.status().as_u16();
        // The test page is mounted at `/` and catches every path the routes
        // before it do not: its files are `static`, and what it does not
        // hold (404) is `unmatched` like any unknown path.
        let route = match res.request().match_pattern() {
            Some(p) if p.is_empty() && status != 404 => Some("static".to_owned()),
            Some(p) if p.is_empty() => None,
            other => other,
        };
        state
            .http_metrics
            .observe(&method, route, status, started.elapsed());
    }
    Ok(res)
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes text in the exposition format.
struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.header(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// One histogram series; `labels` is `k="v",...` or empty.
    fn histogram(&mut self, name: &str, labels: &str, h: &HistogramSnapshot) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in &h.buckets {
            let _ = writeln!(
                self.0,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            self.0,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            h.count
        );
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(self.0, "{name}_sum{} {}", braces(labels), h.sum);
        let _ = writeln!(self.0, "{name}_count{} {}", braces(labels), h.count);
    }
}

/// jemalloc's figures when it is the allocator (the `huddle` binary; a test
/// process allocates with the system's, and jemalloc then reports nothing):
/// bytes allocated and not freed, bytes in the pages it keeps resident.
fn heap() -> Option<(u64, u64)> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    let allocated = tikv_jemalloc_ctl::stats::allocated::read().ok()?;
    let resident = tikv_jemalloc_ctl::stats::resident::read().ok()?;
    (allocated > 0).then_some((allocated as u64, resident as u64))
}

/// `GET /metrics`: every counter, as `text/plain; version=0.0.4`.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let engine = &state.engine;
    let m = engine.metrics().snapshot();
    let rooms = engine.registry().send(RoomCount).await.unwrap_or(0);
    let mut out = Exposition(String::with_capacity(8 * 1024));

    out.single(
        "huddle_connections",
        "gauge",
        "Connections (Engine.IO sessions with their connection actor) open now.",
        m.connections_open,
    );
    out.single(
        "huddle_connections_total",
        "counter",
        "Connections opened since the node started.",
        m.connections_total,
    );
    if let Some((allocated, resident)) = heap() {
        out.single(
            "huddle_heap_allocated_bytes",
            "gauge",
            "Bytes the node has allocated and not freed (jemalloc's stats.allocated).",
            allocated,
        );
        out.single(
            "huddle_heap_resident_bytes",
            "gauge",
            "Bytes in pages the allocator keeps resident (jemalloc's stats.resident).",
            resident,
        );
    }
    if let Some(open) = crate::fdlimit::open() {
        out.single(
            "process_open_fds",
            "gauge",
            "Open file descriptors (each connection is one).",
            open,
        );
    }
    if let Some(max) = crate::fdlimit::current() {
        out.single(
            "process_max_fds",
            "gauge",
            "The open-files limit (raised to the hard limit at start).",
            max,
        );
    }
    out.single(
        "huddle_engineio_sessions",
        "gauge",
        "Engine.IO sessions known to the transports now.",
        engine.session_count() as u64,
    );
    out.single(
        "huddle_rooms",
        "gauge",
        "Room actors running on this node.",
        rooms as u64,
    );
    out.single(
        "huddle_workspace_actors",
        "gauge",
        "Workspace actors (membership cache, event routing) running on this node.",
        state.collab.active_workspaces() as u64,
    );
    out.single(
        "huddle_socketio_events_in_total",
        "counter",
        "Socket.IO events received from clients.",
        m.events_in,
    );
    out.single(
        "huddle_socketio_packets_out_total",
        "counter",
        "Socket.IO packets queued toward clients (events, acks, CONNECTs).",
        m.packets_out,
    );
    out.single(
        "huddle_bytes_in_total",
        "counter",
        "Bytes of Engine.IO messages received (WebSocket messages, polling bodies).",
        m.bytes_in,
    );
    out.single(
        "huddle_bytes_out_total",
        "counter",
        "Bytes of packets queued toward clients, as WebSocket frames.",
        m.bytes_out,
    );
    out.single(
        "huddle_broadcasts_total",
        "counter",
        "Broadcasts encoded (once each, whatever the number of recipients).",
        m.broadcasts,
    );
    out.single(
        "huddle_slow_clients_total",
        "counter",
        "Clients closed for not keeping up with their queue.",
        m.slow_clients,
    );
    out.single(
        "huddle_connections_refused_total",
        "counter",
        "New connections refused with HTTP 503: the node held limits.max_connections already.",
        m.connections_refused,
    );
    out.single(
        "huddle_handshakes_limited_total",
        "counter",
        "New connections refused with HTTP 429: too many handshakes from one address \
         (rate_limits.socket_handshakes_ip_per_minute).",
        m.handshakes_limited,
    );
    out.single(
        "huddle_deliveries_held_total",
        "counter",
        "Deliveries held back for a batched write because more broadcasts waited behind theirs.",
        m.deliveries_held,
    );
    out.single(
        "huddle_upload_bytes_total",
        "counter",
        "Bytes of upload chunks stored.",
        m.upload_bytes,
    );

    out.single(
        "huddle_bridge_published_total",
        "counter",
        "Broadcasts published to the other nodes.",
        m.bridge_published,
    );
    out.single(
        "huddle_bridge_received_total",
        "counter",
        "Messages received from other nodes.",
        m.bridge_received,
    );
    out.single(
        "huddle_bridge_echoes_total",
        "counter",
        "Own messages received back and ignored.",
        m.bridge_echoes,
    );
    out.single(
        "huddle_bridge_reconnects_total",
        "counter",
        "Reconnections of the bridge's subscriber.",
        m.bridge_reconnects,
    );
    out.single(
        "huddle_bridge_channels",
        "gauge",
        "Channels the bridge is subscribed to now.",
        m.bridge_channels,
    );
    out.header(
        "huddle_bridge_lag_seconds",
        "histogram",
        "Delay from publish on another node to receipt here.",
    );
    out.histogram("huddle_bridge_lag_seconds", "", &m.bridge_lag);
    out.header(
        "huddle_message_store_seconds",
        "histogram",
        "Time a chat message took to be durable in the document store.",
    );
    out.histogram("huddle_message_store_seconds", "", &m.message_store);

    let http = state.http_metrics.snapshot();
    out.header(
        "huddle_http_requests_total",
        "counter",
        "HTTP requests by method, route pattern and status class.",
    );
    for (l, h) in &http {
        let _ = writeln!(
            out.0,
            "huddle_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{}\"}} {}",
            l.method,
            escape(&l.route),
            l.status,
            h.count
        );
    }
    out.header(
        "huddle_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by method, route pattern and status class.",
    );
    for (l, h) in &http {
        let labels = format!(
            "method=\"{}\",route=\"{}\",status=\"{}\"",
            l.method,
            escape(&l.route),
            l.status
        );
        out.histogram("huddle_http_request_duration_seconds", &labels, h);
    }

    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn labels_are_bounded() {
        let m = HttpMetrics::default();
        let weird = Method::from_bytes(b"BREW").unwrap();
        m.observe(&weird, None, 418, Duration::from_millis(1));
        m.observe(
            &Method::GET,
            Some("/api/v1/tasks/{id}".into()),
            200,
            Duration::from_millis(3),
        );
        m.observe(
            &Method::GET,
            Some("/api/v1/tasks/{id}".into()),
            204,
            Duration::from_millis(30),
        );
        let s = m.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0.method, "GET");
        assert_eq!(s[0].1.count, 2);
        assert_eq!(
            (s[1].0.method, s[1].0.route.as_str(), s[1].0.status),
            ("OTHER", "unmatched", "4xx")
        );
    }

    #[test]
    fn histogram_lines() {
        let h = Histogram::new(&LATENCY_BUCKETS);
        h.observe(Duration::from_millis(2));
        let mut out = Exposition(String::new());
        out.histogram("x", "a=\"b\"", &h.snapshot());
        assert!(
            out.0.contains("x_bucket{a=\"b\",le=\"0.001\"} 0\n"),
            "{}",
            out.0
        );
        assert!(out.0.contains("x_bucket{a=\"b\",le=\"0.0025\"} 1\n"));
        assert!(out.0.contains("x_bucket{a=\"b\",le=\"+Inf\"} 1\n"));
        assert!(out.0.contains("x_count{a=\"b\"} 1\n"));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
