//! Startup: builds a node from its settings — document store, blob store, engine with its
//! namespaces, HTTP server — binds the listener it is given (port 0 in tests)
//! and reports its port; on `SIGTERM` or `SIGINT` it drains. With Redis, the
//! node's Redis thread (`crate::cluster::thread`) starts with the connection
//! and stops after the HTTP server.

use crate::blob::{LocalBlobStore, S3BlobStore, S3Config};
use crate::cluster::{RedisConn, RedisRateLimiter, RedisUploadSessionStore};
use crate::ratelimit::{MemoryRateLimiter, RateLimiter};
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::{EmbeddedStore, MongoStore};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App};
use anyhow::Context as _;
use huddle_actors::auth::Authenticator;
use huddle_actors::blob::BlobStore;
use huddle_actors::chat::{ChatConfig, ChatNamespace};
use huddle_actors::collab::{Collab, CollabConfig};
use huddle_actors::file_upload::FileUploadNamespace;
use huddle_actors::root::RootNamespace;
use huddle_actors::store::{DocumentStore, StoreResult, UploadSessionStore};
use huddle_actors::upload::UploadDeps;
use huddle_actors::upload_rules::COMPLETED_KEPT;
use huddle_actors::{Engine, EngineConfig};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// A node, built and bound, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    engine: Engine,
    state: AppState,
}

/// The engine's settings, from the node's.
pub fn engine_config(settings: &Settings) -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_millis(settings.engine.ping_interval_ms),
        ping_timeout: Duration::from_millis(settings.engine.ping_timeout_ms),
        max_payload: settings.engine.max_payload,
        connect_timeout: Duration::from_millis(settings.engine.connect_timeout_ms),
        outbound_queue_max: settings.engine.outbound_queue_max,
        write_through: settings.engine.write_through.enabled(),
        max_events_pending: settings.limits.max_events_pending_per_connection as usize,
        max_rooms_per_socket: settings.limits.max_rooms_per_socket as usize,
        events_per_second: settings.rate_limits.socket_events_per_second,
        max_connections_per_user: settings.limits.max_connections_per_user as usize,
        max_sessions: match settings.limits.max_connections {
            0 => crate::fdlimit::current().map_or(0, crate::fdlimit::connection_cap),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        },
        recovery_window: (settings.recovery.max_disconnect_ms > 0)
            .then(|| Duration::from_millis(settings.recovery.max_disconnect_ms)),
        recovery_packets_per_room: EngineConfig::default().recovery_packets_per_room,
        require_auth: true,
    }
}

/// The collaboration layer's settings, from the node's.
pub fn collab_config(settings: &Settings) -> CollabConfig {
    CollabConfig {
        typing_timeout: Duration::from_millis(settings.chat.typing_timeout_ms),
        offline_grace: Duration::from_millis(settings.collab.offline_grace_ms),
        workspace_idle: Duration::from_millis(settings.collab.workspace_idle_ms),
        notifications_kept: usize::try_from(settings.collab.notifications_kept_per_user)
            .unwrap_or(usize::MAX),
    }
}

/// Builds the engine with every namespace of the contract, and the
/// collaboration layer that serves `/` (HTTP handlers publish through it).
/// With `redis`, upload-session state lives there (so an upload resumes on
/// any node); without, in the document store.
/// New connections are limited per client address through `rate_limiter`
/// (`rate_limits.socket_handshakes_ip_per_minute`).
pub fn build_engine(
    settings: &Settings,
    store: Arc<dyn DocumentStore>,
    blobs: Arc<dyn BlobStore>,
    authenticator: Arc<dyn Authenticator>,
    redis: Option<&RedisConn>,
    rate_limiter: Arc<dyn crate::ratelimit::RateLimiter>,
) -> (Engine, Arc<Collab>) {
    let collab = Collab::new(store.clone(), collab_config(settings));
    let chat = ChatNamespace::new(
        store.clone(),
        collab.clone(),
        ChatConfig {
            typing_timeout: Duration::from_millis(settings.chat.typing_timeout_ms),
            max_message_chars: settings.chat.max_message_chars,
        },
    );
    let sessions: Arc<dyn UploadSessionStore> = match redis {
        Some(redis) => Arc::new(RedisUploadSessionStore::new(redis.clone())),
        None => store.clone(),
    };
    let uploads = FileUploadNamespace::new(UploadDeps {
        sessions,
        store,
        blobs,
        config: Arc::new(settings.uploads.to_config()),
    });
    let handshakes = crate::ratelimit::HandshakeLimit::new(
        rate_limiter,
        settings.rate_limits.socket_handshakes_ip_per_minute,
        settings.server.trust_proxy_headers,
    );
    let engine = Engine::builder(engine_config(settings))
        .handshake_gate(Arc::new(handshakes))
        .authenticator(authenticator)
        .presence(collab.clone())
        .signals(collab.clone())
        .namespace("/", Arc::new(RootNamespace::new(collab.clone())))
        .namespace("/chat", Arc::new(chat))
        .namespace(huddle_actors::upload::NSP, uploads)
        .build();
    collab.attach(&engine);
    (engine, collab)
}

/// The node's shared Redis connection when `redis.url` (`REDIS_URL`) is set,
/// and with it the node's Redis thread. The connection is made in the
/// background, so a node starts, and serves its own clients, while Redis is
/// down; only a URL that cannot be parsed stops the start.
pub fn open_redis(settings: &Settings) -> anyhow::Result<Option<RedisConn>> {
    let Some(url) = settings.redis.url.as_deref() else {
        log::info!("Redis: not configured, a single node with in-process state");
        return Ok(None);
    };
    let shown = crate::settings::redact_url(url);
    let conn = RedisConn::open(url, &settings.redis.key_prefix)
        .with_context(|| format!("configuring Redis at {shown}"))?;
    log::info!(
        "Redis: {shown}, key prefix {:?} (the cluster bus, presence, recovery, rate limits and upload state)",
        settings.redis.key_prefix
    );
    Ok(Some(conn))
}

/// The rate limiter: shared through Redis when it is configured (falling
/// back to this node's own counts while Redis is unreachable), else in
/// memory.
pub fn rate_limiter(redis: Option<&RedisConn>) -> Arc<dyn RateLimiter> {
    match redis {
        Some(redis) => Arc::new(RedisRateLimiter::new(redis.clone())),
        None => Arc::new(MemoryRateLimiter::new()),
    }
}

/// Opens the blob store the settings choose: S3 when `s3.bucket` is set
/// (static credentials required), else the local directory under `DATA_DIR`.
pub fn open_blobs(settings: &Settings) -> anyhow::Result<Arc<dyn BlobStore>> {
    let s3 = &settings.s3;
    if let Some(bucket) = &s3.bucket {
        let (Some(access_key_id), Some(secret_access_key)) =
            (&s3.access_key_id, &s3.secret_access_key)
        else {
            anyhow::bail!(
                "S3_BUCKET is set: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are required too"
            );
        };
        let config = S3Config {
            bucket: bucket.clone(),
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
        };
        let blobs = S3BlobStore::new(&config).context("configuring the S3 blob store")?;
        log::info!(
            "blob store: S3, bucket {bucket} at {}",
            s3.endpoint.as_deref().unwrap_or("AWS")
        );
        return Ok(Arc::new(blobs));
    }
    let dir = &settings.server.data_dir;
    let blobs = LocalBlobStore::open(dir)
        .with_context(|| format!("opening the blob directory in {}", dir.display()))?;
    log::info!("blob store: local, in {}/blobs", dir.display());
    Ok(Arc::new(blobs))
}

/// Opens the document store the settings choose: MongoDB when
/// `mongodb.uri` (`MONGODB_URI`) is set, else the embedded store in the data
/// directory. The log names the backend, never the URI's credentials.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn DocumentStore>> {
    if let Some(uri) = settings.mongodb.uri.as_deref() {
        let shown = crate::settings::redact_url(uri);
        let db = &settings.mongodb.db;
        let store = MongoStore::connect_with(uri, db, settings.mongodb.search_options())
            .await
            .with_context(|| format!("opening the MongoDB store at {shown}, database {db}"))?;
        log::info!("document store: MongoDB at {shown}, database {db}");
        return Ok(Arc::new(store));
    }
    let dir = &settings.server.data_dir;
    let cache_mb = settings.server.store_cache_mb;
    let store = EmbeddedStore::open_with_cache(dir, cache_mb << 20)
        .with_context(|| format!("opening the embedded store in {}", dir.display()))?;
    log::info!(
        "document store: embedded, in {} (page cache up to {cache_mb} MiB)",
        dir.display()
    );
    Ok(Arc::new(store))
}

/// How often the document store's expired records are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// How long an expired download token is kept, so presenting it answers 410
/// (afterwards it is unknown: 404).
const EXPIRED_DOWNLOAD_TOKENS_KEPT: chrono::Duration = chrono::Duration::days(30);

/// Purges, every [`PURGE_INTERVAL`] for as long as the node runs, the
/// refresh-token records past their expiry, the download tokens expired for
/// [`EXPIRED_DOWNLOAD_TOKENS_KEPT`] and the completed upload sessions
/// [`COMPLETED_KEPT`] past their expiry (Redis expires its own): none of
/// these tables grows for ever with every sign-in, shared link and upload.
/// Every node purges; the deletes are idempotent. The purger holds the store
/// only while it purges: once the node is gone, so is it (and the store
/// closes, so a restarted node can open it again).
fn spawn_purger(store: std::sync::Weak<dyn DocumentStore>) {
    /// Logs what one purge did.
    fn report(what: &str, purged: StoreResult<u64>) {
        match purged {
            Ok(0) => {}
            Ok(n) => log::info!("purged {n} {what}"),
            Err(e) => log::warn!("purging {what}: {e}"),
        }
    }
    let kept = chrono::Duration::from_std(COMPLETED_KEPT).unwrap_or(chrono::Duration::MAX);
    actix_web::rt::spawn(async move {
        // The first purge a minute after start, not during it.
        let first = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut tick = tokio::time::interval_at(first, PURGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else {
                return;
            };
            let now = chrono::Utc::now();
            report(
                "expired refresh-token records",
                store.purge_refresh_tokens(now).await,
            );
            report(
                "download tokens expired 30 days or more",
                store
                    .purge_download_tokens(now - EXPIRED_DOWNLOAD_TOKENS_KEPT)
                    .await,
            );
            report(
                "completed upload sessions 30 days past their expiry",
                store.purge_completed_upload_sessions(now - kept).await,
            );
        }
    });
}

impl Application {
    /// Binds `host:port` from the settings and builds the node.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).with_context(|| format!("binding {address}"))?;
        Self::build_with_listener(settings, listener).await
    }

    /// Builds the node on a listener that is already bound.
    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let store = open_store(&settings).await?;
        let blobs = open_blobs(&settings)?;
        let redis = open_redis(&settings)?;
        let state = AppState::with_redis(settings.clone(), store, blobs, redis);
        spawn_purger(Arc::downgrade(&state.store));
        let engine = state.engine.clone();
        if let Some(conn) = &state.redis {
            crate::cluster::join(&settings, &engine, conn).await;
        }
        let server = {
            let state = state.clone();
            let engine = engine.clone();
            let cors_origins = settings.server.cors_origins.clone();
            let static_root = settings.server.static_root();
            match &static_root {
                Some(dir) => log::info!("test page: serving {} at /", dir.display()),
                None => log::warn!(
                    "test page: {} not found, / is not served",
                    settings.server.static_dir.display()
                ),
            }
            let routes = huddle_actors::websocket::WsRoutes::new().at("/socket.io", engine.clone());
            let app = move || {
                let engine = engine.clone();
                App::new()
                    .wrap(crate::http::cors(&cors_origins))
                    // Outside CORS: every request is timed, preflights and
                    // the polling transport included (WebSocket upgrades
                    // never reach the application).
                    .wrap(actix_web::middleware::from_fn(crate::http::metrics::record))
                    .wrap(
                        actix_web::middleware::Logger::new("%a \"%r\" %s %b %Dms")
                            .exclude("/health"),
                    )
                    .app_data(web::Data::new(state.clone()))
                    .configure(move |cfg| huddle_actors::transport::configure(cfg, engine))
                    .configure(crate::http::configure)
                    .configure(|cfg| {
                        if let Some(dir) = &static_root {
                            cfg.service(crate::http::static_files(dir));
                        }
                    })
            };
            let options = huddle_actors::server::ServerOptions {
                workers: settings.server.workers,
                shutdown_timeout_secs: settings.server.shutdown_timeout_secs,
            };
            huddle_actors::server::serve(listener, app, routes, options)?
        };
        let most = match engine.config().max_sessions {
            0 => "no connection limit".to_owned(),
            n => format!("at most {n} connections"),
        };
        log::info!(
            "huddle listening on http://{}:{port} ({} mode, {most})",
            settings.server.host,
            settings.server.env.as_str()
        );
        Ok(Application {
            port,
            server,
            engine,
            state,
        })
    }

    /// The port the node listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node's engine (for tests and the publish API).
    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// The node's shared state.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// A handle that stops the server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Runs until the server stops; `SIGTERM` or `SIGINT` drains first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let engine = self.engine.clone();
        let signals = actix_web::rt::spawn(async move {
            wait_for_signal().await;
            drain(&engine, handle).await;
        });
        let result = self.server.await;
        // However the server stopped, the signal task (and the engine and
        // stores it holds) goes too, so the data directory can be reopened.
        signals.abort();
        // The Redis thread last: queued broadcasts went out while draining.
        if let Some(redis) = &self.state.redis {
            redis.shutdown();
            log::info!("redis thread stopped");
        }
        result
    }
}

/// How long a drain waits for connections to close and their cleanups to
/// finish.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Stops accepting sessions, tells every client to reconnect elsewhere, lets
/// queued packets go out and closed connections finish their cleanups, then
/// stops the HTTP server gracefully.
pub async fn drain(engine: &Engine, handle: ServerHandle) {
    log::info!(
        "draining: closing {} connections so clients reconnect elsewhere",
        engine.session_count()
    );
    engine.close_all();
    // A closed connection leaves the session map before its cleanup (the
    // recovery record that lets its client recover on another node, the
    // presence and slot releases) is done: wait for both.
    let busy = || engine.session_count() > 0 || engine.cleanups_in_flight() > 0;
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    while busy() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if busy() {
        log::warn!(
            "draining: {} connections still open and {} closed connections still writing their \
             recovery records and presence after {DRAIN_WAIT:?}; stopping anyway",
            engine.session_count(),
            engine.cleanups_in_flight()
        );
    }
    handle.stop(true).await;
    log::info!("drained, stopped");
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
        tokio::select! {
            _ = term.recv() => log::info!("SIGTERM received"),
            _ = int.recv() => log::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
