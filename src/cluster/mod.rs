//! Everything that makes several nodes behave as one, through Redis: the
//! shared connection ([`conn`]), and the Redis implementations of the ports
//! the core defines: the bus between nodes ([`bridge`]), connection slots and
//! presence ([`presence`]), the recovery log ([`recovery`]).
//!
//! Without `REDIS_URL` none of this runs: the node is alone and uses the
//! in-process implementations.

pub mod bridge;
pub mod conn;
pub mod presence;
pub mod ratelimit;
pub mod recovery;
pub mod testing;
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
/// bridge and the liveness task, and hands the engine the shared slots and
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
    actix::spawn(slots.clone().run(liveness, engine.downgrade()));
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
