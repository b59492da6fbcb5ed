//! The shared state of a node: settings, the document store, the blob store,
//! the token keys,
//! the rate limiter and the realtime engine (with its namespaces), built once
//! at startup and cloned (cheaply, all `Arc`s) into every worker as
//! `web::Data<AppState>`. HTTP handlers reach the engine through it to emit
//! the events their writes cause.

use crate::auth::{JwtAuth, JwtAuthenticator};
use crate::cluster::RedisConn;
use crate::ratelimit::{MemoryRateLimiter, RateLimiter};
use crate::settings::Settings;
use huddle_actors::auth::Authenticator;
use huddle_actors::blob::BlobStore;
use huddle_actors::collab::Collab;
use huddle_actors::store::DocumentStore;
use huddle_actors::Engine;
use std::sync::Arc;

/// Everything a request handler may need.
#[derive(Clone)]
pub struct AppState {
    /// The node's settings.
    pub settings: Arc<Settings>,
    /// The document store (embedded or MongoDB).
    pub store: Arc<dyn DocumentStore>,
    /// Where file bytes live (local directory, or S3 when configured).
    pub blobs: Arc<dyn BlobStore>,
    /// Token keys, built once.
    pub jwt: Arc<JwtAuth>,
    /// Token verification plus user records, shared with the socket handshake.
    pub authenticator: Arc<JwtAuthenticator>,
    /// Counts requests for the HTTP limits (and socket events, if the engine
    /// wishes): in memory, or shared through Redis when it is configured.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// The node's shared Redis connection, when `redis.url` is set.
    pub redis: Option<RedisConn>,
    /// HTTP request counts and latencies for `/metrics`.
    pub http_metrics: Arc<crate::http::metrics::HttpMetrics>,
    /// The realtime engine: namespaces, rooms, broadcasts.
    pub engine: Engine,
    /// The collaboration layer: workspace actors (membership cache, event
    /// routing), room eviction, presence and notifications.
    pub collab: Arc<Collab>,
}

impl AppState {
    /// Builds the state of a node alone (no Redis) with an in-memory rate
    /// limiter. Starts the engine's actors, so it must run inside an actix
    /// system.
    pub fn new(
        settings: Settings,
        store: Arc<dyn DocumentStore>,
        blobs: Arc<dyn BlobStore>,
    ) -> Self {
        Self::with_rate_limiter(settings, store, blobs, Arc::new(MemoryRateLimiter::new()))
    }

    /// Builds the state of a node alone with the given rate limiter (one on a
    /// test clock, for example).
    pub fn with_rate_limiter(
        settings: Settings,
        store: Arc<dyn DocumentStore>,
        blobs: Arc<dyn BlobStore>,
        rate_limiter: Arc<dyn RateLimiter>,
    ) -> Self {
        Self::build(settings, store, blobs, rate_limiter, None)
    }

    /// Builds the state with `redis` when it is given: rate limits and
    /// upload-session state are then shared through it
    /// ([`crate::startup::rate_limiter`], [`crate::startup::build_engine`]).
    pub fn with_redis(
        settings: Settings,
        store: Arc<dyn DocumentStore>,
        blobs: Arc<dyn BlobStore>,
        redis: Option<RedisConn>,
    ) -> Self {
        let rate_limiter = crate::startup::rate_limiter(redis.as_ref());
        Self::build(settings, store, blobs, rate_limiter, redis)
    }

    fn build(
        settings: Settings,
        store: Arc<dyn DocumentStore>,
        blobs: Arc<dyn BlobStore>,
        rate_limiter: Arc<dyn RateLimiter>,
        redis: Option<RedisConn>,
    ) -> Self {
        let jwt = Arc::new(JwtAuth::new(&settings.auth));
        let authenticator = Arc::new(JwtAuthenticator::new(jwt.clone(), store.clone()));
        let (engine, collab) = crate::startup::build_engine(
            &settings,
            store.clone(),
            blobs.clone(),
            authenticator.clone(),
            redis.as_ref(),
            rate_limiter.clone(),
        );
        AppState {
            settings: Arc::new(settings),
            store,
            blobs,
            jwt,
            authenticator,
            rate_limiter,
            redis,
            http_metrics: Arc::default(),
            engine,
            collab,
        }
    }

    /// The authenticator as the core's port, for the socket handshake.
    pub fn authenticator(&self) -> Arc<dyn Authenticator> {
        self.authenticator.clone()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
