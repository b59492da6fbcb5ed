//! The node's shared Redis connection: one multiplexed connection for every
//! command any part of the node sends, kept (and made again when it is
//! lost) on the node's Redis thread ([`super::thread`]), and the key prefix
//! that keeps deployments (and test runs) sharing one Redis apart.
//!
//! **Where it runs.** A `MultiplexedConnection` is a handle on a channel
//! into a driver task that writes commands to the socket and reads the
//! replies; the redis crate spawns that task on whatever Tokio runtime is
//! current when the connection is made. (Its `ConnectionManager` makes the
//! first connection in whichever task first awaits it and reconnects on the
//! thread of the command that saw the error, so the driver ended up on the
//! main thread, or on an HTTP worker.) Here one task on the Redis thread,
//! the keeper, makes every connection, so the driver always runs there.
//! [`RedisConn::conn`] hands out a [`Connection`]: it takes the current
//! multiplexed connection and sends into its channel from any thread, and
//! reports a connection that broke (an error after which the redis crate
//! says to reconnect) back to the keeper, which reconnects.
//!
//! **Without Redis.** The keeper starts connecting at once, in the
//! background, so a node starts, and serves its own clients, while Redis is
//! down. While it cannot connect, commands fail at once with the last
//! error (and ask the keeper to try again, at most every
//! [`MIN_RETRY_DELAY`]; left alone it retries with backoff up to
//! [`MAX_BACKOFF`]); a command that finds it connecting waits at most
//! [`CONNECT_TIMEOUT`]. Every command fails after [`RESPONSE_TIMEOUT`]
//! rather than queueing without bound.

use crate::cluster::thread::RedisThread;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture};
use redis::{RedisResult, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// How long one command may take before it fails.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The shortest wait between two connection attempts.
pub const MIN_RETRY_DELAY: Duration = Duration::from_millis(50);

/// A handle to the shared connection; cheap to clone.
#[derive(Clone)]
pub struct RedisConn {
    link: Arc<Link>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the URL, and the URL may hold a password.
        f.debug_struct("RedisConn")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// What every handle shares: the keeper's state and requests, and the
/// thread (stopped when the last handle goes).
struct Link {
    client: Client,
    state: watch::Receiver<State>,
    requests: Arc<Requests>,
    thread: RedisThread,
}

impl Drop for Link {
    fn drop(&mut self) {
        // The last handle is gone: the keeper ends.
        self.requests.close();
    }
}

/// The connection as the keeper last published it.
#[derive(Clone)]
enum State {
    /// An attempt is under way (the first one, or again).
    Connecting,
    /// Connected; `generation` counts connections made.
    Up {
        conn: MultiplexedConnection,
        generation: u64,
    },
    /// The last attempt failed; the keeper waits before the next one.
    Down(RedisError),
}

/// What handles ask the keeper: flags and one wake-up, not a queue, so a
/// storm of failing commands costs nothing but wake-ups.
#[derive(Default)]
struct Requests {
    /// The highest connection generation a handle saw break.
    broken: AtomicU64,
    /// A command found no connection: try again now.
    wanted: AtomicBool,
    /// Every handle is gone.
    closed: AtomicBool,
    wake: Notify,
}

impl Requests {
    /// Connection `generation` broke: make another.
    fn broken(&self, generation: u64) {
        self.broken.fetch_max(generation, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn want(&self) {
        self.wanted.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Settings of every connection the keeper makes.
fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

impl RedisConn {
    /// A connection to `url` whose keys all start with `{prefix}:`: starts
    /// the node's Redis thread and, on it, the keeper, which connects in the
    /// background. Fails only for a URL that cannot be parsed, or when the
    /// thread cannot be started.
    pub fn open(url: &str, prefix: &str) -> RedisResult<Self> {
        let client = Client::open(url)?;
        let thread = RedisThread::start()?;
        let (state_tx, state) = watch::channel(State::Connecting);
        let requests = Arc::new(Requests::default());
        let (keeper_client, keeper_requests) = (client.clone(), requests.clone());
        thread.spawn(move || keep_connected(keeper_client, state_tx, keeper_requests));
        Ok(RedisConn {
            link: Arc::new(Link {
                client,
                state,
                requests,
                thread,
            }),
            prefix: Arc::from(prefix),
        })
    }

    /// A handle on the shared connection, for commands from any thread.
    pub fn conn(&self) -> Connection {
        Connection {
            link: self.link.clone(),
        }
    }

    /// The client, for connections of their own (the bridge's subscriber).
    pub fn client(&self) -> &Client {
        &self.link.client
    }

    /// The node's Redis thread, where the bridge, its subscriber and the
    /// heartbeats run.
    pub fn thread(&self) -> &RedisThread {
        &self.link.thread
    }

    /// Stops the Redis thread (the node's shutdown): the connection, the
    /// bridge and everything else running there stop; commands fail after.
    pub fn shutdown(&self) {
        self.link.thread.stop();
    }

    /// The key prefix, without the trailing `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{suffix}`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// Whether Redis answers a `PING` now.
    pub async fn ping(&self) -> RedisResult<()> {
        let mut conn = self.conn();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}

/// The shared connection as a `redis::aio::ConnectionLike`: every command
/// takes the keeper's current connection (waiting for one being made, at
/// most [`CONNECT_TIMEOUT`]) and sends through it.
#[derive(Clone)]
pub struct Connection {
    link: Arc<Link>,
}

impl Link {
    /// The current connection and its generation, or why there is none.
    async fn current(&self) -> RedisResult<(MultiplexedConnection, u64)> {
        let mut state = self.state.clone();
        let wait = async {
            loop {
                let now = state.borrow_and_update().clone();
                match now {
                    State::Up { conn, generation } => return Ok((conn, generation)),
                    State::Down(e) => {
                        self.requests.want();
                        return Err(e);
                    }
                    State::Connecting => {}
                }
                if state.changed().await.is_err() {
                    return Err(stopped());
                }
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, wait).await {
            Ok(res) => res,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to Redis timed out",
            )
            .into()),
        }
    }

    /// Tells the keeper when `res` says connection `generation` is broken.
    fn check<T>(&self, res: &RedisResult<T>, generation: u64) {
        if let Err(e) = res {
            if e.is_unrecoverable_error() {
                self.requests.broken(generation);
            }
        }
    }
}

fn stopped() -> RedisError {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the node's Redis thread has stopped",
    )
    .into()
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (mut conn, generation) = self.link.current().await?;
            let res = conn.req_packed_command(cmd).await;
            self.link.check(&res, generation);
            res
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (mut conn, generation) = self.link.current().await?;
            let res = conn.req_packed_commands(pipeline, offset, count).await;
            self.link.check(&res, generation);
            res
        })
    }

    fn get_db(&self) -> i64 {
        self.link.client.get_connection_info().redis_settings().db()
    }
}

/// The keeper, on the Redis thread: connects (so the connection's driver
/// is spawned here), publishes the connection, and makes another when a
/// handle reports it broken; while Redis cannot be reached, retries with
/// backoff, sooner when a command asks. Ends when every handle is gone.
async fn keep_connected(client: Client, state: watch::Sender<State>, requests: Arc<Requests>) {
    let config = connection_config();
    let mut generation = 0u64;
    let mut backoff = MIN_RETRY_DELAY;
    loop {
        state.send_replace(State::Connecting);
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => {
                generation += 1;
                if generation > 1 {
                    log::info!("redis: connected again");
                }
                backoff = MIN_RETRY_DELAY;
                // Asked while down; answered now.
                requests.wanted.store(false, Ordering::SeqCst);
                state.send_replace(State::Up { conn, generation });
                // A wake-up that comes between a check and the wait is kept
                // (`notify_one` stores it), so none is missed.
                loop {
                    if requests.closed() {
                        return;
                    }
                    if requests.broken.load(Ordering::SeqCst) >= generation {
                        break;
                    }
                    requests.wake.notified().await;
                }
                log::warn!("redis: the connection was lost; reconnecting");
            }
            Err(e) => {
                log::debug!("redis: cannot connect: {e}");
                state.send_replace(State::Down(e));
                let failed = Instant::now();
                let retry = tokio::time::sleep(backoff);
                tokio::pin!(retry);
                loop {
                    if requests.closed() {
                        return;
                    }
                    if requests.wanted.swap(false, Ordering::SeqCst) {
                        tokio::time::sleep_until(failed + MIN_RETRY_DELAY).await;
                        break;
                    }
                    tokio::select! {
                        _ = &mut retry => break,
                        _ = requests.wake.notified() => {}
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing;

    /// The driver of the shared connection runs on the Redis thread, however
    /// the connection is first used: a command from a thread that then
    /// blocks still gets its answer on another, and a command from another
    /// thread is answered while the first one is blocked.
    #[test]
    fn commands_are_answered_while_the_first_caller_is_blocked() {
        let Some(conn) = testing::conn("conn-thread") else {
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(conn.ping()).expect("PING from this thread");
        let other = conn.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let probe = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let _ = tx.send(rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(1_500), other.ping()).await
            }));
        });
        // This thread (where the connection was first used) stays blocked
        // until the probe has its answer or gave up.
        let answer = rx.recv().expect("the probe answers");
        probe.join().expect("the probe ends");
        assert!(
            matches!(answer, Ok(Ok(()))),
            "PING from another thread while the first caller's thread is blocked"
        );
        conn.shutdown();
    }

    #[tokio::test]
    async fn without_redis_commands_fail_fast_and_the_thread_stops() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let conn = RedisConn::open(&format!("redis://127.0.0.1:{port}/"), "down").unwrap();
        let started = std::time::Instant::now();
        for _ in 0..3 {
            assert!(conn.ping().await.is_err());
        }
        assert!(
            started.elapsed() < CONNECT_TIMEOUT,
            "refused connections fail at once: {:?}",
            started.elapsed()
        );
        conn.shutdown();
        assert!(!conn.thread().arbiter().spawn(async {}));
        assert!(conn.ping().await.is_err(), "no connection after shutdown");
    }
}
