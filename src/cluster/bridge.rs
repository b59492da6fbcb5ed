//! The Redis bridge: the actor that carries this node's room traffic to the
//! other nodes and theirs to this one (the Redis implementation of the core's
//! [`Bus`] port).
//!
//! **Publishing.** Every broadcast the engine makes is handed to the
//! [`RedisBridge`] actor, which queues it (bounded) and sends the queue in
//! batches, one pipeline of `EVALSHA` per batch and one batch in flight at a
//! time. The script, atomically: takes the next cluster-wide offset (`INCR`,
//! never below the time in milliseconds), appends the packet to each room's
//! stream (the recovery log, `XADD ... MAXLEN ~`, key expiring a recovery
//! window after its last write), and `PUBLISH`es it once on each room's
//! channel. When the batch's answers come back, the actor delivers the packets,
//! with their offsets, to this node's registry in the order they were handed
//! over. So a broadcast costs one script call however many nodes and recipients
//! there are, and a burst of broadcasts costs one round trip.
//!
//! **Channels.** One channel per room: `{prefix}:r:{nsp},{room}` (a
//! namespace never contains a comma). The registry tells the bus when this
//! node gets its first member in a room and when the last one leaves; the
//! subscriber task then `SUBSCRIBE`s or `UNSUBSCRIBE`s, so a node receives
//! exactly the traffic of the rooms it has members in. The cost: one
//! subscription per room with local members (Redis keeps a dictionary entry
//! per channel and subscriber), and a broadcast to `n` rooms is published `n`
//! times (a node in several of them delivers it once: connections drop
//! repeated offsets). A node drops its own echo by the node id in the
//! message. Signals (membership changes) go to `{prefix}:control`, which
//! every node subscribes to.
//!
//! **Threads.** The actor and the subscriber run on the node's Redis thread
//! ([`crate::cluster::thread`]), with the shared connection's driver; the
//! registry they deliver to and the engine's signal listener (handed each
//! signal on the main arbiter) do not.
//!
//! **Without Redis.** When a batch fails, the bridge delivers it locally
//! (without offsets: those packets cannot be recovered) and for a second
//! after delivers everything locally before trying Redis again, so local
//! delivery never waits on a dead Redis. The subscriber task reconnects with
//! exponential backoff (at most 2 s) and resubscribes to every room this node
//! has; traffic between nodes resumes by itself.

use crate::cluster::conn::RedisConn;
use actix::prelude::*;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use huddle_actors::cluster::{Bus, OutgoingBroadcast, Signal};
use huddle_actors::encoded::{Encoded, Frame};
use huddle_actors::engine::WeakEngine;
use huddle_actors::ids::{RoomKey, RoomName};
use huddle_actors::registry::{Broadcast, Registry};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Broadcasts waiting for Redis at most; past it, new ones are delivered
/// locally at once (and cannot be recovered or reach other nodes).
pub const MAX_PENDING: usize = 65_536;
/// Broadcasts sent in one pipeline at most.
const MAX_BATCH: usize = 512;
/// After a failed batch, how long everything is delivered locally before
/// Redis is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Channels named in one `SUBSCRIBE` at most.
const SUBSCRIBE_CHUNK: usize = 1_000;
/// Longest wait between two reconnection attempts of the subscriber.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Ids of broadcasts delivered without Redis have this bit set, so they never
/// collide with offsets.
const LOCAL_ID_BIT: u64 = 1 << 63;

/// The publish script; see the module documentation. Offsets never go below
/// the current time in milliseconds, so they keep increasing even after
/// Redis lost its data (13 digits today: Lua prints them exactly).
const PUBLISH_LUA: &str = r#"
local id = redis.call('INCR', KEYS[1])
if id < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[2])
  id = tonumber(ARGV[2])
end
local packet
if ARGV[4] == '1' then
  packet = ARGV[3] .. ',"' .. id .. '"]'
else
  packet = ARGV[3] .. ']'
end
local msg = ARGV[1] .. '\n' .. id .. '\n' .. ARGV[2] .. '\n' .. packet
local rooms = (#ARGV - 6)
for i = 1, rooms do
  if ARGV[4] == '1' then
    local stream = KEYS[i + 1]
    redis.pcall('XADD', stream, 'MAXLEN', '~', ARGV[5], id .. '-1', 'p', packet)
    redis.call('PEXPIRE', stream, ARGV[6])
  end
  redis.call('PUBLISH', ARGV[6 + i], msg)
end
return id
"#;

/// Recovery settings the bridge needs to log packets.
#[derive(Clone, Copy, Debug)]
pub struct LogSettings {
    /// How long a room's stream lives after its last packet.
    pub window: Duration,
    /// Packets kept per room (approximately: `MAXLEN ~`).
    pub packets_per_room: usize,
}

/// Names of the keys and channels the cluster uses.
#[derive(Clone, Debug)]
pub struct Names {
    prefix: Arc<str>,
}

impl Names {
    /// Names under `{prefix}:`.
    pub fn new(prefix: &str) -> Self {
        Names {
            prefix: Arc::from(prefix),
        }
    }

    /// The channel of a room.
    pub fn channel(&self, key: &RoomKey) -> String {
        format!("{}:r:{},{}", self.prefix, key.nsp, key.room)
    }

    /// The room of a channel (`None` for another channel).
    pub fn room_of(&self, channel: &str) -> Option<RoomKey> {
        let rest = channel.strip_prefix(&*self.prefix)?.strip_prefix(":r:")?;
        let (nsp, room) = rest.split_once(',')?;
        Some(RoomKey {
            nsp: nsp.to_owned(),
            room: RoomName(room.to_owned()),
        })
    }

    /// The recovery stream of a room.
    pub fn stream(&self, key: &RoomKey) -> String {
        format!("{}:log:{},{}", self.prefix, key.nsp, key.room)
    }

    /// The cluster-wide offset counter.
    pub fn offsets(&self) -> String {
        format!("{}:offset", self.prefix)
    }

    /// The channel every node listens to for signals.
    pub fn control(&self) -> String {
        format!("{}:control", self.prefix)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The publishing half: an actor per node.
pub struct RedisBridge {
    node: Arc<str>,
    conn: RedisConn,
    names: Names,
    registry: Addr<Registry>,
    engine: WeakEngine,
    log: Option<LogSettings>,
    script: redis::Script,
    script_loaded: Arc<AtomicBool>,
    pending: VecDeque<OutgoingBroadcast>,
    in_flight: bool,
    down_until: Option<Instant>,
    next_local: u64,
}

/// A broadcast to send (from the engine, through [`RedisBus`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub OutgoingBroadcast);

/// A signal for every other node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendSignal(pub Signal);

impl Actor for RedisBridge {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        log::info!("redis bridge started (node {})", self.node);
    }
}

impl RedisBridge {
    fn deliver(&self, b: &OutgoingBroadcast, id: u64, offset: Option<u64>) {
        let packet = Encoded::single(Frame::text(&b.packet_text(offset)));
        self.registry.do_send(Broadcast {
            keys: b.keys(),
            packet,
            id,
            except: b.except,
        });
    }

    fn deliver_locally(&mut self, batch: impl IntoIterator<Item = OutgoingBroadcast>) {
        for b in batch {
            self.next_local += 1;
            self.deliver(&b, LOCAL_ID_BIT | self.next_local, None);
        }
    }

    /// Sends the next batch unless one is in flight.
    fn kick(&mut self, ctx: &mut Context<Self>) {
        while !self.in_flight && !self.pending.is_empty() {
            let n = self.pending.len().min(MAX_BATCH);
            let batch: Vec<OutgoingBroadcast> = self.pending.drain(..n).collect();
            if self.down_until.is_some_and(|t| Instant::now() < t) {
                self.deliver_locally(batch);
                continue;
            }
            self.in_flight = true;
            let fut = send_batch(
                self.conn.clone(),
                self.names.clone(),
                self.node.clone(),
                self.log,
                self.script.clone(),
                self.script_loaded.clone(),
                batch,
            );
            ctx.spawn(fut.into_actor(self).map(|(batch, res), act, ctx| {
                act.in_flight = false;
                match res {
                    Ok(ids) => {
                        act.down_until = None;
                        let recoverable = act.log.is_some();
                        for (b, id) in batch.iter().zip(ids) {
                            act.deliver(b, id, recoverable.then_some(id));
                        }
                        if let Some(e) = act.engine.upgrade() {
                            e.metrics().bridge_published(batch.len() as u64);
                        }
                    }
                    Err(e) => {
                        if act.down_until.is_none() {
                            log::warn!(
                                "redis bridge: publishing failed, delivering on this node only: {e}"
                            );
                        }
                        act.down_until = Some(Instant::now() + RETRY_AFTER);
                        act.deliver_locally(batch);
                    }
                }
                act.kick(ctx);
            }));
        }
    }
}

/// Runs one batch through the publish script; returns the batch with the
/// offsets (in order) or the error.
async fn send_batch(
    conn: RedisConn,
    names: Names,
    node: Arc<str>,
    log: Option<LogSettings>,
    script: redis::Script,
    loaded: Arc<AtomicBool>,
    batch: Vec<OutgoingBroadcast>,
) -> (Vec<OutgoingBroadcast>, redis::RedisResult<Vec<u64>>) {
    let mut c = conn.conn();
    let mut attempt = 0;
    let res = loop {
        attempt += 1;
        if !loaded.load(Ordering::Relaxed) {
            let load: redis::RedisResult<String> = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(PUBLISH_LUA)
                .query_async(&mut c)
                .await;
            if let Err(e) = load {
                break Err(e);
            }
            loaded.store(true, Ordering::Relaxed);
        }
        let ms = now_ms().to_string();
        let mut pipe = redis::pipe();
        for b in &batch {
            let keys = b.keys();
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1 + keys.len());
            cmd.arg(names.offsets());
            for k in &keys {
                cmd.arg(names.stream(k));
            }
            cmd.arg(&*node).arg(&ms).arg(&b.head[..]);
            match log {
                Some(l) => cmd
                    .arg("1")
                    .arg(l.packets_per_room)
                    .arg(l.window.as_millis() as u64),
                None => cmd.arg("0").arg(0).arg(0),
            };
            for k in &keys {
                cmd.arg(names.channel(k));
            }
        }
        match pipe.query_async::<Vec<u64>>(&mut c).await {
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                    && attempt == 1 =>
            {
                // Redis restarted and forgot the script: load it again.
                loaded.store(false, Ordering::Relaxed);
            }
            other => break other,
        }
    };
    (batch, res)
}

impl Handler<Publish> for RedisBridge {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        if self.pending.len() >= MAX_PENDING {
            // Redis is too slow for the traffic: keep local delivery going
            // rather than growing the queue.
            self.deliver_locally([msg.0]);
            return;
        }
        self.pending.push_back(msg.0);
        self.kick(ctx);
    }
}

impl Handler<SendSignal> for RedisBridge {
    type Result = ();

    fn handle(&mut self, msg: SendSignal, ctx: &mut Self::Context) {
        let Ok(json) = serde_json::to_string(&msg.0) else {
            return;
        };
        let payload = format!("{}\n{json}", self.node);
        let channel = self.names.control();
        let mut c = self.conn.conn();
        ctx.spawn(
            async move {
                let res: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(&mut c)
                    .await;
                if let Err(e) = res {
                    log::warn!("redis bridge: a signal could not be sent: {e}");
                }
            }
            .into_actor(self),
        );
    }
}

/// What the subscriber task is asked to do, in order.
enum SubCmd {
    Listen(String, oneshot::Sender<()>),
    StopListening(String),
}

/// The [`Bus`] the engine uses: publishes through the bridge actor, and
/// tells the subscriber task which rooms to listen to.
pub struct RedisBus {
    bridge: Addr<RedisBridge>,
    names: Names,
    commands: mpsc::UnboundedSender<SubCmd>,
}

impl Bus for RedisBus {
    fn broadcast(&self, broadcast: OutgoingBroadcast) {
        self.bridge.do_send(Publish(broadcast));
    }

    fn room_started(&self, key: &RoomKey) -> BoxFuture<'static, ()> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(SubCmd::Listen(self.names.channel(key), tx))
            .is_err()
        {
            return Box::pin(async {});
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }

    fn room_stopped(&self, key: &RoomKey) {
        let _ = self
            .commands
            .send(SubCmd::StopListening(self.names.channel(key)));
    }

    fn signal(&self, signal: Signal) {
        self.bridge.do_send(SendSignal(signal));
    }
}

/// Starts the bridge of this node on its Redis thread (see
/// [`crate::cluster::thread`]): the publishing actor and the subscriber task.
/// `node` must be unique in the cluster. Signals from other nodes are handed
/// to the engine on `home` (the node's main arbiter), so what they set off
/// runs there, not on the Redis thread.
pub fn start(
    conn: RedisConn,
    node: &str,
    registry: Addr<Registry>,
    engine: WeakEngine,
    log: Option<LogSettings>,
    home: ArbiterHandle,
) -> Arc<RedisBus> {
    let names = Names::new(conn.prefix());
    let node: Arc<str> = Arc::from(node);
    let bridge = RedisBridge {
        node: node.clone(),
        conn: conn.clone(),
        names: names.clone(),
        registry: registry.clone(),
        engine: engine.clone(),
        log,
        script: redis::Script::new(PUBLISH_LUA),
        script_loaded: Arc::new(AtomicBool::new(false)),
        pending: VecDeque::new(),
        in_flight: false,
        down_until: None,
        next_local: 0,
    };
    let bridge = RedisBridge::start_in_arbiter(conn.thread().arbiter(), move |_| bridge);
    let (tx, rx) = mpsc::unbounded_channel();
    let thread_conn = conn.clone();
    let sub_names = names.clone();
    conn.thread()
        .spawn(move || subscriber(thread_conn, sub_names, node, registry, engine, home, rx));
    Arc::new(RedisBus {
        bridge,
        names,
        commands: tx,
    })
}

/// The subscriber: one connection of its own, reconnected with backoff. It
/// keeps the set of channels this node wants, applies listen/stop requests
/// in order, resubscribes everything after a reconnection, and hands every
/// message to the registry (room traffic) or the engine (signals).
async fn subscriber(
    conn: RedisConn,
    names: Names,
    node: Arc<str>,
    registry: Addr<Registry>,
    engine: WeakEngine,
    home: ArbiterHandle,
    mut commands: mpsc::UnboundedReceiver<SubCmd>,
) {
    let mut wanted: HashSet<String> = HashSet::new();
    let control = names.control();
    let mut backoff = Duration::from_millis(100);
    let mut connected_once = false;
    loop {
        if engine.upgrade().is_none() {
            return;
        }
        let connect = tokio::time::timeout(
            crate::cluster::conn::CONNECT_TIMEOUT,
            conn.client().get_async_pubsub(),
        )
        .await;
        let pubsub = match connect {
            Ok(Ok(p)) => p,
            other => {
                let e = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                log::debug!("redis bridge: subscriber cannot connect: {e}");
                // Requests keep being applied to the wanted set meanwhile;
                // listeners are answered at once (they are subscribed on
                // reconnection).
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        cmd = commands.recv() => match cmd {
                            Some(cmd) => apply_offline(&mut wanted, cmd),
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut all: Vec<&str> = vec![control.as_str()];
        all.extend(wanted.iter().map(String::as_str));
        let mut ok = true;
        for chunk in all.chunks(SUBSCRIBE_CHUNK) {
            if let Err(e) = sink.subscribe(chunk).await {
                log::warn!("redis bridge: resubscribing failed: {e}");
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        backoff = Duration::from_millis(100);
        if connected_once {
            log::info!(
                "redis bridge: subscriber reconnected, {} rooms resubscribed",
                wanted.len()
            );
            if let Some(e) = engine.upgrade() {
                e.metrics().bridge_reconnected();
            }
        }
        connected_once = true;
        if let Some(e) = engine.upgrade() {
            e.metrics().set_bridge_channels(wanted.len());
        }
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => on_message(&names, &node, &control, &registry, &engine, &home, &msg),
                    None => {
                        log::warn!("redis bridge: subscriber connection lost; reconnecting");
                        break;
                    }
                },
                cmd = commands.recv() => {
                    let Some(first) = cmd else { return };
                    let mut batch = vec![first];
                    while batch.len() < SUBSCRIBE_CHUNK {
                        match commands.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = apply(&mut sink, &mut wanted, batch).await {
                        log::warn!("redis bridge: subscription change failed: {e}");
                        break;
                    }
                    if let Some(e) = engine.upgrade() {
                        e.metrics().set_bridge_channels(wanted.len());
                    }
                }
            }
        }
    }
}

fn apply_offline(wanted: &mut HashSet<String>, cmd: SubCmd) {
    match cmd {
        SubCmd::Listen(ch, done) => {
            wanted.insert(ch);
            let _ = done.send(());
        }
        SubCmd::StopListening(ch) => {
            wanted.remove(&ch);
        }
    }
}

/// Applies requests in order, coalescing runs of the same kind into one
/// command; listeners are answered once their `SUBSCRIBE` is acknowledged.
/// On error the wanted set is still up to date (the caller reconnects and
/// resubscribes), and every listener is answered.
async fn apply(
    sink: &mut redis::aio::PubSubSink,
    wanted: &mut HashSet<String>,
    batch: Vec<SubCmd>,
) -> redis::RedisResult<()> {
    let mut result = Ok(());
    let mut subs: Vec<String> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut unsubs: Vec<String> = Vec::new();
    for cmd in batch {
        match cmd {
            SubCmd::Listen(ch, done) => {
                if !unsubs.is_empty() && result.is_ok() {
                    result = sink.unsubscribe(&unsubs).await;
                }
                unsubs.clear();
                if wanted.insert(ch.clone()) {
                    subs.push(ch);
                }
                waiters.push(done);
            }
            SubCmd::StopListening(ch) => {
                if !subs.is_empty() && result.is_ok() {
                    result = sink.subscribe(&subs).await;
                }
                subs.clear();
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                if wanted.remove(&ch) {
                    unsubs.push(ch);
                }
            }
        }
    }
    if !subs.is_empty() && result.is_ok() {
        result = sink.subscribe(&subs).await;
    }
    if !unsubs.is_empty() && result.is_ok() {
        result = sink.unsubscribe(&unsubs).await;
    }
    for w in waiters {
        let _ = w.send(());
    }
    result
}

/// One message from Redis: `node \n offset \n sent-ms \n packet` on a room
/// channel, `node \n json` on the control channel.
fn on_message(
    names: &Names,
    node: &str,
    control: &str,
    registry: &Addr<Registry>,
    engine: &WeakEngine,
    home: &ArbiterHandle,
    msg: &redis::Msg,
) {
    let channel = msg.get_channel_name();
    let payload = msg.get_payload_bytes();
    let engine = engine.upgrade();
    if channel == control {
        let Some((from, json)) = split_field(payload) else {
            return;
        };
        if from == node.as_bytes() {
            return;
        }
        match (serde_json::from_slice::<Signal>(json), &engine) {
            (Ok(signal), Some(e)) => {
                let e = e.clone();
                home.spawn_fn(move || e.deliver_signal(signal));
            }
            (Err(err), _) => log::warn!("redis bridge: unreadable signal: {err}"),
            _ => {}
        }
        return;
    }
    let Some(key) = names.room_of(channel) else {
        return;
    };
    let Some((from, rest)) = split_field(payload) else {
        return;
    };
    if from == node.as_bytes() {
        if let Some(e) = &engine {
            e.metrics().bridge_echo();
        }
        return;
    }
    let parsed = split_field(rest).and_then(|(id, rest)| {
        let (ms, packet) = split_field(rest)?;
        let id: u64 = std::str::from_utf8(id).ok()?.parse().ok()?;
        let ms: u64 = std::str::from_utf8(ms).ok()?.parse().ok()?;
        Some((id, ms, packet))
    });
    let Some((id, ms, packet)) = parsed else {
        log::warn!("redis bridge: unreadable message on {channel}");
        return;
    };
    if let Some(e) = &engine {
        let lag = Duration::from_millis(now_ms().saturating_sub(ms));
        e.metrics().bridge_received(lag);
    }
    registry.do_send(Broadcast {
        keys: vec![key],
        packet: Encoded::single(Frame::text(packet)),
        id,
        except: None,
    });
}

fn split_field(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b'\n')?;
    Some((&b[..i], &b[i + 1..]))
}

/// A packet read back from a room's stream, as connections send it.
pub fn packet_from_log(text: Bytes) -> Encoded {
    Encoded::single(Frame::text(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip_and_reject_others() {
        let n = Names::new("t1");
        let key = RoomKey {
            nsp: "/chat".into(),
            room: RoomName("conversation:a,b".into()),
        };
        let ch = n.channel(&key);
        assert_eq!(ch, "t1:r:/chat,conversation:a,b");
        assert_eq!(n.room_of(&ch), Some(key));
        assert_eq!(n.room_of("t1:control"), None);
        assert_eq!(n.room_of("t2:r:/,x"), None);
    }

    #[test]
    fn fields_split_at_the_first_newline() {
        assert_eq!(
            split_field(b"node\n12\nrest"),
            Some((&b"node"[..], &b"12\nrest"[..]))
        );
        assert_eq!(split_field(b"none"), None);
    }
}
