//! The `conns` and `fanout` scenarios: many `/chat` connections, each in one
//! conversation, driven through phases by one `watch` channel.
//!
//! Every connection is one task on the bench's single thread (so counters
//! are `Cell`s and the histograms are shared without locks). A task
//! connects, waits for the JOIN phase (answering pings), joins its
//! conversation, and from then on reads frames: pings are answered, a
//! `new_message` is recognised by its first bytes and its send timestamp is
//! found by byte search, acks are matched by id. Publishers also send
//! `send_message` on their own timer during RUN. Counts use the send
//! timestamp: a delivery belongs to the measured window when the message
//! was *sent* inside it, so loss compares like with like; the CPU figures
//! use the deliveries *received* inside the window.

use crate::client::{self, Target};
use crate::proto::{self, Engine};
use crate::{http, procstat, scrape, Common};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

/// Phases every connection task goes through, in order.
const CONNECT: u8 = 0;
const JOIN: u8 = 1;
const RUN: u8 = 2;
const PROBE: u8 = 3;
const DRAIN: u8 = 4;
const STOP: u8 = 5;

/// Ack ids: the join, the liveness probe, then `send_message`s.
const JOIN_ACK: u64 = 1;
const PROBE_ACK: u64 = 2;
const FIRST_SEND_ACK: u64 = 3;
/// Send times kept per publisher for ack round trips (a ring by ack id).
const ACK_RING: usize = 4096;
/// Longest a connection's handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Errors kept verbatim (the rest are only counted).
const MAX_ERRORS_KEPT: usize = 10;

/// Counters and histograms shared by the tasks of one run.
pub struct Stats {
    epoch: Instant,
    connected: Cell<u64>,
    failed: Cell<u64>,
    joined: Cell<u64>,
    join_failed: Cell<u64>,
    probed: Cell<u64>,
    closed: Cell<u64>,
    pongs: Cell<u64>,
    is_connected: RefCell<Vec<bool>>,
    room_joined: RefCell<Vec<u64>>,
    rooms: RefCell<Vec<String>>,
    /// Measured window, nanoseconds since `epoch`: [start, end).
    window: Cell<(u64, u64)>,
    sent: Cell<u64>,
    sent_in_window: Cell<u64>,
    expected: Cell<u64>,
    delivered: Cell<u64>,
    received_in_window: Cell<u64>,
    received: Cell<u64>,
    unstamped: Cell<u64>,
    acks_failed: Cell<u64>,
    latency_us: RefCell<Histogram<u64>>,
    ack_rtt_us: RefCell<Histogram<u64>>,
    errors: RefCell<Vec<String>>,
    error_count: Cell<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes, 3 significant digits: a fixed few hundred KiB.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl Stats {
    fn new(connections: usize, rooms: usize) -> Stats {
        Stats {
            epoch: Instant::now(),
            connected: Cell::new(0),
            failed: Cell::new(0),
            joined: Cell::new(0),
            join_failed: Cell::new(0),
            probed: Cell::new(0),
            closed: Cell::new(0),
            pongs: Cell::new(0),
            is_connected: RefCell::new(vec![false; connections]),
            room_joined: RefCell::new(vec![0; rooms]),
            rooms: RefCell::new(Vec::new()),
            window: Cell::new((u64::MAX, u64::MAX)),
            sent: Cell::new(0),
            sent_in_window: Cell::new(0),
            expected: Cell::new(0),
            delivered: Cell::new(0),
            received_in_window: Cell::new(0),
            received: Cell::new(0),
            unstamped: Cell::new(0),
            acks_failed: Cell::new(0),
            latency_us: RefCell::new(histogram()),
            ack_rtt_us: RefCell::new(histogram()),
            errors: RefCell::new(Vec::new()),
            error_count: Cell::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn in_window(&self, ns: u64) -> bool {
        let (start, end) = self.window.get();
        ns >= start && ns < end
    }

    fn error(&self, what: String) {
        bump(&self.error_count);
        let mut kept = self.errors.borrow_mut();
        if kept.len() < MAX_ERRORS_KEPT {
            eprintln!("huddle-bench: {what}");
            kept.push(what);
        }
    }
}

/// What one publisher does during RUN.
pub struct Publish {
    period: Duration,
    offset: Duration,
    text_bytes: usize,
    id: usize,
    /// Send at the start of each period instead of a random point of it.
    even: bool,
}

/// One connection of the run.
pub struct Member {
    idx: usize,
    target: Target,
    source: Option<Ipv4Addr>,
    user: String,
    token: String,
    room: usize,
    publish: Option<Publish>,
}

/// Per-task state after connecting.
struct Conn {
    ws: client::Ws,
    stats: Rc<Stats>,
    room: usize,
    conversation: String,
    publish: Option<Publish>,
    ticker: Option<Pacer>,
    next_ack: u64,
    sent_at: Vec<u64>,
    text: String,
    frame: String,
    seq: u64,
}

impl Conn {
    async fn send(&mut self, frame: String) -> bool {
        match self.ws.send(Message::text(frame)).await {
            Ok(()) => true,
            Err(e) => {
                self.stats.error(format!("send: {e}"));
                false
            }
        }
    }

    /// Acts on entering `phase`; false when the task should end.
    async fn enter(&mut self, phase: u8) -> bool {
        match phase {
            JOIN => {
                self.conversation = self.stats.rooms.borrow()[self.room].clone();
                let f = format!(
                    "42/chat,{JOIN_ACK}[\"conversation:join\",{{\"conversationId\":\"{}\"}}]",
                    self.conversation
                );
                self.send(f).await
            }
            RUN => {
                if let Some(p) = &self.publish {
                    self.ticker = Some(Pacer::new(
                        tokio::time::Instant::now() + p.offset,
                        p.period,
                        (!p.even).then(StdRng::from_entropy),
                    ));
                }
                true
            }
            PROBE => {
                let f = format!(
                    "42/chat,{PROBE_ACK}[\"conversation:join\",{{\"conversationId\":\"{}\"}}]",
                    self.conversation
                );
                self.send(f).await
            }
            DRAIN => {
                self.ticker = None;
                true
            }
            _ => {
                let _ = self.ws.close(None).await;
                false
            }
        }
    }

    async fn publish(&mut self) -> bool {
        let Some(p) = &self.publish else { return true };
        let now = self.stats.now_ns();
        proto::message_text(&mut self.text, now, p.text_bytes);
        let id = self.next_ack;
        self.next_ack += 1;
        self.seq += 1;
        self.frame.clear();
        let _ = write!(
            self.frame,
            "42/chat,{id}[\"send_message\",{{\"conversationId\":\"{}\",\"text\":\"{}\",\"clientId\":\"p{}-{}\"}}]",
            self.conversation, self.text, p.id, self.seq
        );
        self.sent_at[id as usize % ACK_RING] = now;
        let s = &self.stats;
        bump(&s.sent);
        if s.in_window(now) {
            bump(&s.sent_in_window);
            let members = s.room_joined.borrow()[self.room];
            s.expected.set(s.expected.get() + members);
        }
        let frame = self.frame.clone();
        self.send(frame).await
    }

    /// Handles one incoming WebSocket message; false when the connection ended.
    async fn on_message(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> bool {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                self.stats
                    .error(format!("server closed a connection: {c:?}"));
                return false;
            }
            Some(Ok(_)) => return true,
            Some(Err(e)) => {
                self.stats.error(format!("connection error: {e}"));
                return false;
            }
            None => {
                self.stats.error("connection ended".into());
                return false;
            }
        };
        match proto::engine(text.as_bytes()) {
            Engine::Ping => {
                bump(&self.stats.pongs);
                self.send("3".to_owned()).await
            }
            Engine::Close => {
                self.stats.error("server sent Engine.IO close".into());
                false
            }
            Engine::Message(m) => {
                let Some(p) = proto::packet(m) else {
                    return true;
                };
                match p.kind {
                    proto::EVENT if proto::is_event(p.data, "new_message") => {
                        self.deliver(p.data);
                        true
                    }
                    proto::ACK => {
                        self.ack(p.id, p.data);
                        true
                    }
                    proto::DISCONNECT => {
                        self.stats
                            .error("server disconnected the /chat socket".into());
                        false
                    }
                    _ => true,
                }
            }
            _ => true,
        }
    }

    fn deliver(&self, data: &[u8]) {
        let s = &self.stats;
        let now = s.now_ns();
        bump(&s.received);
        if s.in_window(now) {
            bump(&s.received_in_window);
        }
        match proto::text_timestamp(data) {
            Some(sent) if s.in_window(sent) => {
                bump(&s.delivered);
                let us = now.saturating_sub(sent) / 1000;
                s.latency_us.borrow_mut().saturating_record(us.max(1));
            }
            Some(_) => {}
            None => bump(&s.unstamped),
        }
    }

    fn ack(&mut self, id: Option<u64>, data: &[u8]) {
        let s = &self.stats;
        let ok = proto::is_ok(data);
        match id {
            Some(JOIN_ACK) if ok => {
                bump(&s.joined);
                s.room_joined.borrow_mut()[self.room] += 1;
            }
            Some(JOIN_ACK) => {
                bump(&s.join_failed);
                s.error(format!("join failed: {}", String::from_utf8_lossy(data)));
            }
            Some(PROBE_ACK) if ok => bump(&s.probed),
            Some(PROBE_ACK) => s.error(format!("probe failed: {}", String::from_utf8_lossy(data))),
            Some(id) => {
                let rtt = s
                    .now_ns()
                    .saturating_sub(self.sent_at[id as usize % ACK_RING]);
                s.ack_rtt_us
                    .borrow_mut()
                    .saturating_record((rtt / 1000).max(1));
                if !ok {
                    bump(&s.acks_failed);
                    s.error(format!(
                        "send_message failed: {}",
                        String::from_utf8_lossy(data)
                    ));
                }
            }
            None => {}
        }
    }
}

async fn tick(t: &mut Option<Pacer>) {
    match t {
        Some(p) => p.wait().await,
        None => std::future::pending().await,
    }
}

/// When a publisher sends: once in each of its periods, at a random point
/// of it (uniform), so the load has no fixed phase (`--even-pacing`: at its
/// start); a publisher that fell behind catches up at once. The send times
/// used to be a fixed grid, and at 250 messages a second all publishers
/// together sent every 4 ms —
/// exactly the kernel's tick at `HZ=250`, which is when it samples whether
/// a process runs in user or kernel mode: every tick then caught the
/// server at the same point of its work, and the user/system split of its
/// CPU time swung from run to run with that point (huddle, big rooms: user
/// 1.2–3.1 µs per delivery over seven runs at 250 messages a second,
/// 1.3–1.8 at 257; the total, which the kernel keeps exactly, did not).
struct Pacer {
    start: tokio::time::Instant,
    period: Duration,
    slot: u64,
    /// Where in each period to send; none for even pacing.
    rng: Option<StdRng>,
    next: tokio::time::Instant,
}

impl Pacer {
    fn new(start: tokio::time::Instant, period: Duration, rng: Option<StdRng>) -> Self {
        let mut p = Pacer {
            start,
            period,
            slot: 0,
            rng,
            next: start,
        };
        p.next = p.send_time();
        p
    }

    /// A uniform point of the current slot (its start for even pacing).
    fn send_time(&mut self) -> tokio::time::Instant {
        let within = self.rng.as_mut().map_or(0.0, |r| r.gen::<f64>());
        self.start + self.period.mul_f64(self.slot as f64 + within)
    }

    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.slot += 1;
        self.next = self.send_time();
    }
}

/// One connection's task, from connect to STOP.
async fn member(stats: Rc<Stats>, m: Member, mut phase: watch::Receiver<u8>, gate: Rc<Semaphore>) {
    let permit = gate.acquire().await;
    let ws = timeout(
        CONNECT_TIMEOUT,
        client::session(&m.target, m.source, "/chat", &m.token),
    )
    .await;
    drop(permit);
    let ws = match ws {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            bump(&stats.failed);
            stats.error(format!("connection {}: {e}", m.idx));
            return;
        }
        Err(_) => {
            bump(&stats.failed);
            stats.error(format!("connection {}: handshake timed out", m.idx));
            return;
        }
    };
    bump(&stats.connected);
    stats.is_connected.borrow_mut()[m.idx] = true;
    let publishing = m.publish.is_some();
    let mut c = Conn {
        ws,
        stats: stats.clone(),
        room: m.room,
        conversation: String::new(),
        publish: m.publish,
        ticker: None,
        next_ack: FIRST_SEND_ACK,
        sent_at: if publishing {
            vec![0; ACK_RING]
        } else {
            Vec::new()
        },
        text: String::new(),
        frame: String::new(),
        seq: 0,
    };
    let mut seen = CONNECT;
    loop {
        let current = *phase.borrow_and_update();
        while seen < current {
            seen += 1;
            if !c.enter(seen).await {
                if seen < STOP {
                    bump(&stats.closed);
                }
                return;
            }
        }
        let alive = tokio::select! {
            msg = c.ws.next() => c.on_message(msg).await,
            _ = tick(&mut c.ticker) => c.publish().await,
            r = phase.changed() => r.is_ok(),
        };
        if !alive {
            bump(&stats.closed);
            return;
        }
    }
}

/// Who is where: connections and the rooms they form.
pub struct Plan {
    members: Vec<Member>,
    /// Member indices per room; the first creates the conversation.
    rooms: Vec<Vec<usize>>,
}

impl Plan {
    /// `subscribers` connections spread over `rooms`, plus `publishers`
    /// (publisher `j` in room `j % rooms`) sending `rate` messages/s in all.
    pub fn new(
        common: &Common,
        subscribers: usize,
        rooms: usize,
        publishers: usize,
        rate: f64,
        text_bytes: usize,
        even_pacing: bool,
    ) -> Result<Plan, String> {
        if rooms == 0 {
            return Err("--rooms must be at least 1".into());
        }
        let targets = common.targets()?;
        let run = crate::run_id();
        let total = subscribers + publishers;
        let mut members = Vec::with_capacity(total);
        let mut room_lists = vec![Vec::new(); rooms];
        for idx in 0..total {
            let (room, publish) = if idx < subscribers {
                (idx % rooms, None)
            } else {
                let j = idx - subscribers;
                let period = Duration::from_secs_f64(publishers as f64 / rate.max(1e-3));
                let publish = Publish {
                    period,
                    offset: period.mul_f64(j as f64 / publishers as f64),
                    text_bytes,
                    id: j,
                    even: even_pacing,
                };
                (j % rooms, Some(publish))
            };
            let user = format!("bench-{run}-{idx}");
            // The k-th member of room r is on node (r + k) % nodes: every
            // room spans the nodes, so with several of them each broadcast
            // crosses between nodes (with `idx % nodes` and an even number
            // of rooms, a room's members all landed on one node and no
            // broadcast ever needed the other).
            let rank = room_lists[room].len();
            members.push(Member {
                idx,
                target: targets[(room + rank) % targets.len()].clone(),
                source: client::source_ip(idx, common.source_ips),
                token: client::token(&common.jwt_secret, &user),
                user,
                room,
                publish,
            });
            room_lists[room].push(idx);
        }
        if let Some(big) = room_lists.iter().map(Vec::len).max() {
            if big > 257 && !common.peer {
                return Err(format!(
                    "{big} members in one conversation: huddle takes the creator plus at most 256"
                ));
            }
        }
        Ok(Plan {
            members,
            rooms: room_lists,
        })
    }
}

/// A run in progress: the tasks are spawned and connecting.
struct Running {
    stats: Rc<Stats>,
    phase: watch::Sender<u8>,
    total: usize,
}

/// Polls `done` every 20 ms until it holds or `limit` passes; logs progress.
async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> (bool, String)) -> bool {
    let start = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let (ok, progress) = done();
        if ok {
            eprintln!(
                "huddle-bench: {what}: {progress} ({:.1} s)",
                start.elapsed().as_secs_f64()
            );
            return true;
        }
        if start.elapsed() >= limit {
            eprintln!("huddle-bench: {what}: gave up after {limit:?}: {progress}");
            return false;
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            eprintln!("huddle-bench: {what}: {progress}");
            last_log = Instant::now();
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Spawns the tasks, connects, creates (or names) the conversations, joins.
async fn start(common: &Common, plan: Plan) -> Result<Running, String> {
    let total = plan.members.len();
    let stats = Rc::new(Stats::new(total, plan.rooms.len()));
    let (phase, rx) = watch::channel(CONNECT);
    let gate = Rc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let users: Vec<(String, String)> = plan
        .members
        .iter()
        .map(|m| (m.user.clone(), m.token.clone()))
        .collect();
    let target = plan.members.first().map(|m| m.target.clone());
    for m in plan.members {
        tokio::task::spawn_local(member(stats.clone(), m, rx.clone(), gate.clone()));
    }
    let connect_limit = Duration::from_secs(60 + total as u64 / 100);
    wait_for("connecting", connect_limit, || {
        let (c, f) = (stats.connected.get(), stats.failed.get());
        (
            c + f >= total as u64,
            format!("{c} connected, {f} failed of {total}"),
        )
    })
    .await;

    let rooms = if common.peer {
        let run = crate::run_id();
        (0..plan.rooms.len())
            .map(|r| format!("bench-{run}-room-{r}"))
            .collect()
    } else {
        let target = target.ok_or("no connections planned")?;
        let connected = stats.is_connected.borrow().clone();
        let mut ids = Vec::with_capacity(plan.rooms.len());
        for (r, list) in plan.rooms.iter().enumerate() {
            let present: Vec<usize> = list.iter().copied().filter(|&i| connected[i]).collect();
            let Some((&creator, rest)) = present.split_first() else {
                ids.push(String::new());
                continue;
            };
            let member_ids: Vec<&str> = rest.iter().map(|&i| users[i].0.as_str()).collect();
            let body = json!({ "memberIds": member_ids, "title": format!("bench room {r}") });
            ids.push(create_conversation(&target, &users[creator].1, &body).await?);
        }
        ids
    };
    *stats.rooms.borrow_mut() = rooms;
    let _ = phase.send(JOIN);
    let connected = stats.connected.get();
    wait_for(
        "joining",
        Duration::from_secs(60 + total as u64 / 100),
        || {
            let (j, f) = (stats.joined.get(), stats.join_failed.get());
            (
                j + f + stats.closed.get() >= connected,
                format!("{j} joined, {f} failed of {connected}"),
            )
        },
    )
    .await;
    Ok(Running {
        stats,
        phase,
        total,
    })
}

/// `POST /api/v1/conversations`; returns the new conversation's id.
pub async fn create_conversation(
    target: &Target,
    token: &str,
    body: &Value,
) -> Result<String, String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let r = http::request(
        target.addr,
        "POST",
        "/api/v1/conversations",
        Some(token),
        Some("application/json"),
        &body,
    )
    .await
    .map_err(|e| format!("POST /api/v1/conversations: {e}"))?;
    if r.status != 201 && r.status != 200 {
        return Err(format!(
            "POST /api/v1/conversations: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("conversation without id: {v}"))
}

/// Percentiles of a microsecond histogram, in milliseconds.
pub fn percentiles_ms(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p99_9": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// `conns`: idle connections, memory, liveness after `hold`.
pub async fn conns(common: &Common, connections: usize, hold: f64) -> Result<Value, String> {
    let pids = &common.server_pids;
    let rss_before = procstat::rss_kb(pids);
    let by_pid_before: Vec<u64> = pids.iter().map(|p| procstat::rss_kb(&[*p])).collect();
    let rooms = connections.div_ceil(256).max(1);
    let plan = Plan::new(common, connections, rooms, 0, 1.0, 0, false)?;
    let run = start(common, plan).await?;
    let s = run.stats.clone();
    eprintln!(
        "huddle-bench: holding {} connections idle for {hold} s",
        s.connected.get()
    );
    sleep(Duration::from_secs_f64(hold)).await;
    let rss_after = procstat::rss_kb(pids);
    // Each process apart: [pid, before, after] (which node, or Redis, grew).
    let by_pid: Vec<[u64; 3]> = pids
        .iter()
        .zip(by_pid_before)
        .map(|(p, before)| [u64::from(*p), before, procstat::rss_kb(&[*p])])
        .collect();
    let _ = run.phase.send(PROBE);
    let expect = s.joined.get();
    wait_for(
        "probing",
        Duration::from_secs(30 + connections as u64 / 200),
        || {
            let p = s.probed.get();
            (
                p + s.closed.get() >= expect,
                format!("{p} of {expect} answered"),
            )
        },
    )
    .await;
    let alive = s.probed.get();
    let _ = run.phase.send(STOP);
    sleep(Duration::from_millis(200)).await;
    let per_conn = if alive > 0 && !pids.is_empty() {
        Some(round(
            rss_after.saturating_sub(rss_before) as f64 / alive as f64,
            2,
        ))
    } else {
        None
    };
    Ok(json!({
        "scenario": "conns",
        "target": common.target_name(),
        "nodes": common.urls().len(),
        "connections": run.total,
        "connected": s.connected.get(),
        "connect_failed": s.failed.get(),
        "joined": s.joined.get(),
        "alive_after_hold": alive,
        "closed": s.closed.get(),
        "pings_answered": s.pongs.get(),
        "hold_s": hold,
        "server_rss_before_kb": rss_before,
        "server_rss_after_kb": rss_after,
        "server_rss_kb_by_pid": by_pid,
        "rss_per_connection_kb": per_conn,
        "bench_rss_kb": procstat::rss_kb(&[std::process::id()]),
        "errors": s.error_count.get(),
        "first_errors": *s.errors.borrow(),
    }))
}

/// Parameters of `fanout`.
pub struct FanoutArgs {
    /// Subscriber connections.
    pub subscribers: usize,
    /// Conversations.
    pub rooms: usize,
    /// Publisher connections (0 = one per room).
    pub publishers: usize,
    /// Messages per second, all publishers together.
    pub rate: f64,
    /// Bytes of each message text.
    pub text_bytes: usize,
    /// Publishers send at the start of each period (a fixed grid) instead
    /// of a random point of it.
    pub even_pacing: bool,
}

/// `fanout`: publishers at a paced rate, latency and CPU per delivery.
pub async fn fanout(common: &Common, a: &FanoutArgs) -> Result<Value, String> {
    let publishers = if a.publishers == 0 {
        a.rooms
    } else {
        a.publishers
    };
    let plan = Plan::new(
        common,
        a.subscribers,
        a.rooms,
        publishers,
        a.rate,
        a.text_bytes,
        a.even_pacing,
    )?;
    let run = start(common, plan).await?;
    let s = run.stats.clone();
    let pids = &common.server_pids;
    let warmup = Duration::from_secs_f64(common.warmup);
    let duration = Duration::from_secs_f64(common.duration);
    let t0 = s.now_ns();
    let w_start = t0 + warmup.as_nanos() as u64;
    let w_end = w_start + duration.as_nanos() as u64;
    s.window.set((w_start, w_end));
    let _ = run.phase.send(RUN);
    eprintln!(
        "huddle-bench: sending {} msg/s from {publishers} publishers to {} rooms; warmup {warmup:?}, measuring {duration:?}",
        a.rate, a.rooms
    );
    let at = |ns: u64| tokio::time::Instant::from_std(s.epoch + Duration::from_nanos(ns));
    // Whose /metrics give huddle's store times (resolved before the window).
    let targets = if common.peer {
        Vec::new()
    } else {
        common.targets()?
    };
    tokio::time::sleep_until(at(w_start)).await;
    // Read before the CPU, so the scrape's own work stays out of the figure.
    let store0 = if targets.is_empty() {
        None
    } else {
        scrape::store_times(&targets).await
    };
    let db_pids = &common.db_pids;
    let (cpu0, db0, own0) = (
        procstat::cpu_of(pids),
        procstat::cpu_of(db_pids),
        procstat::own_cpu(),
    );
    tokio::time::sleep_until(at(w_end)).await;
    let (cpu1, db1, own1) = (
        procstat::cpu_of(pids),
        procstat::cpu_of(db_pids),
        procstat::own_cpu(),
    );
    let received_in_window = s.received_in_window.get();
    let store = match store0 {
        Some(before) => scrape::store_times(&targets)
            .await
            .and_then(|after| after.since(&before)),
        None => None,
    };
    let _ = run.phase.send(DRAIN);
    // Deliveries still in flight get a bounded time to arrive.
    wait_for("draining", Duration::from_secs(10), || {
        let (d, e) = (s.delivered.get(), s.expected.get());
        (d >= e, format!("{d} of {e} delivered"))
    })
    .await;
    let _ = run.phase.send(STOP);
    sleep(Duration::from_millis(200)).await;

    let secs = duration.as_secs_f64();
    let cpu = cpu0.until(cpu1);
    let db = db0.until(db1);
    let own = own0.until(own1);
    let (expected, delivered) = (s.expected.get(), s.delivered.get());
    let loss = if expected > 0 {
        round(
            expected.saturating_sub(delivered) as f64 * 100.0 / expected as f64,
            3,
        )
    } else {
        0.0
    };
    let per = |us: f64| {
        if received_in_window > 0 {
            Some(round(us / received_in_window as f64, 3))
        } else {
            None
        }
    };
    Ok(json!({
        "scenario": "fanout",
        "target": common.target_name(),
        "nodes": common.urls().len(),
        "subscribers": a.subscribers,
        "rooms": a.rooms,
        "publishers": publishers,
        "rate": a.rate,
        "text_bytes": a.text_bytes,
        "pacing": if a.even_pacing { "even" } else { "jittered" },
        "warmup_s": common.warmup,
        "duration_s": common.duration,
        "connections": run.total,
        "connected": s.connected.get(),
        "connect_failed": s.failed.get(),
        "joined": s.joined.get(),
        "closed": s.closed.get(),
        "sent": s.sent_in_window.get(),
        "sent_per_s": round(s.sent_in_window.get() as f64 / secs, 1),
        "expected": expected,
        "delivered": delivered,
        "loss_pct": loss,
        "deliveries_per_s": round(received_in_window as f64 / secs, 1),
        "unstamped": s.unstamped.get(),
        "acks_failed": s.acks_failed.get(),
        "latency_ms": percentiles_ms(&s.latency_us.borrow()),
        "ack_rtt_ms": percentiles_ms(&s.ack_rtt_us.borrow()),
        "store_ms": store.as_ref().map(scrape::store_summary),
        "server_cpu": {
            "pids": pids,
            "user_s": round(cpu.user_us() / 1e6, 3),
            "system_s": round(cpu.system_us() / 1e6, 3),
            "busy_pct": round((cpu.user_us() + cpu.system_us()) / 1e4 / secs, 1),
            "user_us_per_delivery": per(cpu.user_us()),
            "system_us_per_delivery": per(cpu.system_us()),
            "total_us_per_delivery": per(cpu.user_us() + cpu.system_us()),
        },
        "db_cpu": (!db_pids.is_empty()).then(|| json!({
            "pids": db_pids,
            "busy_pct": round((db.user_us() + db.system_us()) / 1e4 / secs, 1),
            "total_us_per_delivery": per(db.user_us() + db.system_us()),
        })),
        "bench_cpu": {
            "user_s": round(own.user_us() / 1e6, 3),
            "system_s": round(own.system_us() / 1e6, 3),
            "busy_pct": round((own.user_us() + own.system_us()) / 1e4 / secs, 1),
        },
        "clk_tck": procstat::clk_tck(),
        "errors": s.error_count.get(),
        "first_errors": *s.errors.borrow(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(seed: Option<u64>, n: u64) -> Vec<f64> {
        let start = tokio::time::Instant::now();
        let period = Duration::from_millis(4);
        let mut p = Pacer::new(start, period, seed.map(StdRng::seed_from_u64));
        (0..n)
            .map(|slot| {
                let at = p.next.duration_since(start).as_secs_f64() / period.as_secs_f64();
                // Durations round to nanoseconds.
                let eps = 1e-6;
                assert!(
                    at > slot as f64 - eps && at < (slot + 1) as f64,
                    "send {slot} at {at} periods: outside its period"
                );
                p.slot += 1;
                p.next = p.send_time();
                (at - slot as f64).max(0.0)
            })
            .collect()
    }

    #[test]
    fn even_pacing_sends_at_the_start_of_each_period() {
        assert!(offsets(None, 100).iter().all(|&w| w < 1e-6));
    }

    #[test]
    fn jittered_pacing_sends_once_per_period_at_a_uniform_point_of_it() {
        let within = offsets(Some(7), 10_000);
        // Spread over the whole period: each tenth of it gets its share.
        let mut tenths = [0usize; 10];
        for w in &within {
            tenths[(w * 10.0) as usize] += 1;
        }
        assert!(
            tenths.iter().all(|&n| (800..1200).contains(&n)),
            "{tenths:?}"
        );
    }
}
