//! Everything that makes several nodes behave as one, through Redis: the
//! shared connection ([`conn`]), and the Redis implementations of the ports
//! the core defines: the bus between nodes ([`bridge`]), connection slots and
//! presence ([`presence`]), the recovery log ([`recovery`]).
//!
//! Threads: the node's Redis work has a thread of its own, `huddle-redis`
//! ([`thread`]), started with the shared connection. The connection's driver
//! (the task reading Redis's replies), the bridge actor and its subscriber,
//! and the liveness heartbeats run there, so Redis is answered and read on
//! time even when the main thread (the registry and the rooms) is saturated.
//! Handlers on other threads (HTTP workers: rate limits, upload state,
//! recovery; connections: slots and presence) send their commands into the
//! driver's channel from where they are. What Redis brings that sets off
//! work in the engine (signals from other nodes, users of a dead node) is
//! handed back to the main thread. The thread stops at the node's shutdown
//! ([`RedisConn::shutdown`]).
//!
//! Without `REDIS_URL` none of this runs: the node is alone and uses the
//! in-process implementations.

pub mod bridge;
pub mod conn;
pub mod presence;
pub mod ratelimit;
pub mod recovery;
pub mod testing;
pub mod thread;
pub mod uploads;

pub use conn::RedisConn;
pub use ratelimit::RedisRateLimiter;
pub use uploads::RedisUploadSessionStore;

use crate::settings::Settings;
use huddle_actors::engine::ClusterParts;
use huddle_actors::Engine;
use std::sync::Arc;
use std::time::Duration;

/// Makes `engine` one node of the cluster that shares `conn`: starts the
/// bridge and the liveness task on the Redis thread, and hands the engine the shared slots and
/// recovery log. Call before the node serves clients. Redis need not be up:
/// the node starts alone and joins the traffic when Redis answers.
pub async fn join(settings: &Settings, engine: &Engine, conn: &RedisConn) {
    let node = huddle_actors::ids::new_id();
    let liveness = presence::Liveness {
        beat: Duration::from_millis(settings.redis.heartbeat_ms.max(100)),
        node_ttl: Duration::from_millis(settings.redis.node_ttl_ms.max(1_000)),
    };
    let slots = presence::RedisSlots::new(conn.clone(), &node);
    if let Err(e) = slots.beat(liveness.node_ttl).await {
        log::warn!(
            "redis is not answering yet ({e}); this node serves its own clients until it does"
        );
    }
    // What the Redis thread hands back to the engine (signals, users of dead
    // nodes) runs here, on the main arbiter.
    let home = actix::Arbiter::current();
    let (heart, weak, back) = (slots.clone(), engine.downgrade(), home.clone());
    conn.thread().spawn(move || heart.run(liveness, weak, back));
    let config = engine.config();
    let log = config.recovery_window.map(|window| bridge::LogSettings {
        window,
        packets_per_room: config.recovery_packets_per_room,
    });
    let bus = bridge::start(
        conn.clone(),
        &node,
        engine.registry().clone(),
        engine.downgrade(),
        log,
        home,
    );
    let recovery = recovery::RedisRecovery::new(
        conn.clone(),
        config.recovery_window.unwrap_or_default(),
        config.recovery_packets_per_room,
    );
    engine.join_cluster(ClusterParts {
        bus,
        slots,
        recovery: Arc::new(recovery),
    });
    log::info!(
        "cluster: node {node} joined through redis (keys under {}:)",
        conn.prefix()
    );
}
