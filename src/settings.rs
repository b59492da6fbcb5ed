//! Layered, typed settings: `config/default.toml`, then `config/{HUDDLE_ENV}.toml`,
//! then environment variables (`HUDDLE__SECTION__KEY` and the conventional names of
//! the operator's contract, section 8).
//!
//! This module owns loading and validating them, and the secret policy: in
//! development and test a missing token secret is replaced by a random one per
//! start (with a warning); in production a missing, placeholder or short secret
//! stops the server. Secrets never appear in `Debug` output, so settings can be
//! logged whole.

use anyhow::{bail, Context};
use config::{Config, File, FileFormat};
use rand::RngCore;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded copy of `config/default.toml`, used when the config directory
/// has none, so the binary runs from any directory.
const EMBEDDED_DEFAULT: &str = include_str!("../config/default.toml");

/// Secrets that are never acceptable in production, whatever their length.
const KNOWN_PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "change-me-in-production",
    "changeme-in-production",
    "secret",
    "jwt-secret",
    "jwt_secret",
    "refresh-secret",
    "refresh_secret",
    "your-secret",
    "your-secret-key",
    "supersecret",
    "password",
    "development",
    "test",
];

/// Minimum length of a token secret in production (HS256 wants ≥ 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Settings keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "server.cors_origins",
    "service.keys",
    "uploads.allowed_mime_types",
];

/// The conventional environment variable names of the contract (section 8) and
/// the settings key each one sets.
const CONVENTIONAL_VARS: &[(&str, &str)] = &[
    ("HOST", "server.host"),
    ("PORT", "server.port"),
    ("DATA_DIR", "server.data_dir"),
    ("CORS_ORIGINS", "server.cors_origins"),
    ("JWT_SECRET", "auth.jwt_secret"),
    ("REFRESH_SECRET", "auth.refresh_secret"),
    ("SERVICE_KEYS", "service.keys"),
    ("REDIS_URL", "redis.url"),
    ("MONGODB_URI", "mongodb.uri"),
    ("MONGODB_DB", "mongodb.db"),
    ("S3_BUCKET", "s3.bucket"),
    ("S3_ENDPOINT", "s3.endpoint"),
    ("S3_REGION", "s3.region"),
    ("AWS_ACCESS_KEY_ID", "s3.access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "s3.secret_access_key"),
];

/// The deployment mode, from `HUDDLE_ENV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Local development: random secrets allowed, verbose defaults.
    Development,
    /// Production: secrets are checked strictly.
    Production,
    /// Automated tests.
    Test,
}

impl Environment {
    /// The name used in `HUDDLE_ENV` and for `config/{name}.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
            Environment::Test => "test",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "production" | "prod" => Ok(Environment::Production),
            "test" => Ok(Environment::Test),
            other => {
                bail!("HUDDLE_ENV must be one of development, production, test (got {other:?})")
            }
        }
    }
}

/// All settings of a node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub engine: EngineSettings,
    pub recovery: RecoverySettings,
    pub limits: LimitSettings,
    pub chat: ChatSettings,
    pub uploads: UploadSettings,
    pub collab: CollabSettings,
    pub rate_limits: RateLimitSettings,
    pub redis: RedisSettings,
    pub mongodb: MongoSettings,
    pub s3: S3Settings,
    pub service: ServiceSettings,
}

/// `[server]`: listening, storage location, process behaviour.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Listen address.
    pub host: String,
    /// Listen port (0 picks a free one).
    pub port: u16,
    /// Embedded store and local blobs live here.
    pub data_dir: PathBuf,
    /// Page cache of the embedded store's database file, in MiB.
    pub store_cache_mb: usize,
    /// The HTML test page served at `/`; resolve it with [`ServerSettings::static_root`].
    pub static_dir: PathBuf,
    /// Deployment mode; set through `HUDDLE_ENV`.
    pub env: Environment,
    /// Allowed CORS origins; empty means same origin only.
    pub cors_origins: Vec<String>,
    /// How long a graceful shutdown may take before connections are dropped.
    pub shutdown_timeout_secs: u64,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Take the client address for per-IP rate limits from `X-Forwarded-For` /
    /// `Forwarded` (only behind a trusted load balancer; clients can forge them).
    pub trust_proxy_headers: bool,
}

impl ServerSettings {
    /// The directory of the page served at `/`, located like the config
    /// directory: `static_dir` as given when it exists (absolute, or relative
    /// to the working directory), else relative to the crate's own checkout
    /// (so `cargo run` and tests work from any directory). `None` when neither
    /// exists: the page is then not served.
    pub fn static_root(&self) -> Option<PathBuf> {
        if self.static_dir.is_dir() {
            return Some(self.static_dir.clone());
        }
        if self.static_dir.is_relative() {
            let own = Path::new(env!("CARGO_MANIFEST_DIR")).join(&self.static_dir);
            if own.is_dir() {
                return Some(own);
            }
        }
        None
    }
}

/// `[auth]`: token secrets and lifetimes.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret of access tokens (`JWT_SECRET`). Never logged.
    pub jwt_secret: String,
    /// HS256 secret of refresh tokens (`REFRESH_SECRET`). Never logged.
    pub refresh_secret: String,
    /// Access token lifetime.
    pub access_ttl_secs: u64,
    /// Refresh token lifetime.
    pub refresh_ttl_secs: u64,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &redacted(&self.jwt_secret))
            .field("refresh_secret", &redacted(&self.refresh_secret))
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("refresh_ttl_secs", &self.refresh_ttl_secs)
            .finish()
    }
}

/// `[engine]`: Engine.IO transport parameters.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// `pingInterval` sent in the handshake.
    pub ping_interval_ms: u64,
    /// `pingTimeout` sent in the handshake.
    pub ping_timeout_ms: u64,
    /// `maxPayload`: the largest polling body or WebSocket message accepted.
    pub max_payload: usize,
    /// A handshake whose first namespace CONNECT does not arrive in time is closed.
    pub connect_timeout_ms: u64,
    /// Packets queued toward one client before it is disconnected as too slow.
    pub outbound_queue_max: usize,
    /// Whether deliveries are written straight to a sleeping WebSocket writer's
    /// socket (see the README's "How writes leave a connection").
    pub write_through: WriteThrough,
}

/// `engine.write_through`: when a delivery may write to the client's socket
/// itself instead of waking the connection's writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteThrough {
    /// When the process may run on one CPU only (affinity or cgroup quota):
    /// there the writer's thread and the rooms' share the core, and the
    /// wake-up between them is pure cost.
    Auto,
    /// Always.
    On,
    /// Never: the HTTP workers do every write, beside the rooms' thread.
    Off,
}

impl WriteThrough {
    /// Whether to write through on this machine.
    pub fn enabled(self) -> bool {
        match self {
            WriteThrough::Auto => std::thread::available_parallelism().is_ok_and(|n| n.get() == 1),
            WriteThrough::On => true,
            WriteThrough::Off => false,
        }
    }
}

/// `[recovery]`: connection state recovery.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySettings {
    /// How long after a disconnect a client may still recover missed packets.
    pub max_disconnect_ms: u64,
}

/// `[limits]`: per-user and per-connection caps.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Engine.IO sessions per user across all nodes.
    pub max_connections_per_user: u32,
    /// Engine.IO sessions this node holds at most; 0 picks it from the
    /// open-files limit ([`crate::fdlimit::connection_cap`]).
    pub max_connections: u64,
    /// Events of one connection being handled at once before it is throttled.
    pub max_events_pending_per_connection: u32,
    /// Rooms one socket may be in at once (0: no limit).
    pub max_rooms_per_socket: u32,
}

/// `[chat]`: conversations and messages.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    /// Typing stops by itself this long after the last `typing:start`.
    pub typing_timeout_ms: u64,
    /// Longest message text, in characters.
    pub max_message_chars: usize,
    /// Page size of history and lists when the client gives no `limit`.
    pub history_default_limit: usize,
    /// Largest `limit` a client may ask for.
    pub history_max_limit: usize,
}

/// `[uploads]`: chunked socket uploads and the HTTP fallback.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSettings {
    /// Chunk size when `initiate_upload` names none, in bytes.
    pub default_chunk_size: u32,
    /// Smallest `chunkSize` a client may ask for.
    pub min_chunk_size: u32,
    /// Largest `chunkSize` a client may ask for; its base64 must fit `maxPayload`.
    pub max_chunk_size: u32,
    /// Largest file uploaded over the socket, in bytes.
    pub max_file_size: u64,
    /// Uploads in progress per user (the next one gets `too_many_uploads`).
    pub max_in_progress: usize,
    /// A session expires this many seconds after its last chunk; its parts go.
    pub session_ttl_secs: u64,
    /// How often expired sessions are swept, in seconds.
    pub sweep_interval_secs: u64,
    /// At most one `upload_progress` per upload this often, in ms (plus the last).
    pub progress_interval_ms: u64,
    /// An upload actor with nothing to do stops after this many seconds.
    pub actor_idle_secs: u64,
    /// Allowed MIME types, checked against the file's first bytes.
    pub allowed_mime_types: Vec<String>,
    /// Largest file through `POST /api/v1/uploads`, in bytes.
    pub http_max_file_size: u64,
    /// Most files attached to one task.
    pub max_task_attachments: usize,
}

impl UploadSettings {
    /// The core's upload configuration.
    pub fn to_config(&self) -> huddle_actors::upload_rules::UploadConfig {
        huddle_actors::upload_rules::UploadConfig {
            default_chunk_size: self.default_chunk_size,
            min_chunk_size: self.min_chunk_size,
            max_chunk_size: self.max_chunk_size,
            max_file_size: self.max_file_size,
            max_in_progress: self.max_in_progress,
            session_ttl: Duration::from_secs(self.session_ttl_secs),
            sweep_interval: Duration::from_secs(self.sweep_interval_secs),
            actor_idle: Duration::from_secs(self.actor_idle_secs),
            progress_interval: Duration::from_millis(self.progress_interval_ms),
            allowed_mime_types: self
                .allowed_mime_types
                .iter()
                .map(|m| huddle_actors::upload_rules::normalize_mime(m))
                .collect(),
            http_max_file_size: self.http_max_file_size,
            max_task_attachments: self.max_task_attachments,
        }
    }
}

/// `[collab]`: workspaces, presence.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollabSettings {
    /// `presence:user_offline` goes out this long after a user's last
    /// connection closed (the contract allows at most 10 s).
    pub offline_grace_ms: u64,
    /// A workspace actor stops after this long without use.
    pub workspace_idle_ms: u64,
    /// Notifications kept per user; a new one past it deletes the user's
    /// oldest (0: no limit).
    pub notifications_kept_per_user: u64,
}

/// `[rate_limits]`: sliding-window limits; 0 turns one off.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// HTTP requests per minute per authenticated user.
    pub http_user_per_minute: u32,
    /// HTTP requests per minute per client IP.
    pub http_ip_per_minute: u32,
    /// `register` / `login` requests per minute per client IP.
    pub auth_ip_per_minute: u32,
    /// Socket events per second per connection.
    pub socket_events_per_second: u32,
    /// Engine.IO handshakes (new connections) per minute per client IP.
    pub socket_handshakes_ip_per_minute: u32,
}

/// `[redis]`: the cluster bus, presence, limits and upload state.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `REDIS_URL`; unset runs a single node.
    pub url: Option<String>,
    /// Prefix of every key and channel (`{key_prefix}:...`).
    pub key_prefix: String,
    /// How often a node refreshes its liveness and looks for stopped nodes.
    pub heartbeat_ms: u64,
    /// How long a node counts as alive without a refresh; a crashed node's
    /// users go offline within this + `heartbeat_ms` + the offline grace.
    pub node_ttl_ms: u64,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("key_prefix", &self.key_prefix)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("node_ttl_ms", &self.node_ttl_ms)
            .finish()
    }
}

/// `[mongodb]`: MongoDB document store instead of the embedded one.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    /// `MONGODB_URI`; unset uses the embedded store.
    pub uri: Option<String>,
    /// Database name (`MONGODB_DB`).
    pub db: String,
    /// About how many tasks a node's search index holds before it drops
    /// the least recently searched workspaces.
    pub search_max_indexed_tasks: usize,
    /// How far back (ms) a search catch-up re-reads task writes: more than
    /// the clock difference between nodes plus the longest task write.
    pub search_clock_margin_ms: u64,
}

impl MongoSettings {
    /// The search options of the MongoDB store.
    pub fn search_options(&self) -> crate::store::mongo::SearchOptions {
        crate::store::mongo::SearchOptions {
            max_indexed_tasks: self.search_max_indexed_tasks,
            clock_margin: Duration::from_millis(self.search_clock_margin_ms),
        }
    }
}

impl fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoSettings")
            .field("uri", &self.uri.as_deref().map(redact_url))
            .field("db", &self.db)
            .field("search_max_indexed_tasks", &self.search_max_indexed_tasks)
            .field("search_clock_margin_ms", &self.search_clock_margin_ms)
            .finish()
    }
}

/// `[s3]`: S3 blob store instead of `data_dir`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// `S3_BUCKET`; unset keeps blobs under `data_dir`.
    pub bucket: Option<String>,
    /// `S3_ENDPOINT`, for S3-compatible stores.
    pub endpoint: Option<String>,
    /// `S3_REGION`.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`. Never logged.
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_deref().map(redacted),
            )
            .finish()
    }
}

/// `[service]`: keys of other backends using the publish API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// `SERVICE_KEYS`; empty turns the publish API off. Never logged.
    pub keys: Vec<String>,
}

impl fmt::Debug for ServiceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSettings")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .finish()
    }
}

fn redacted(s: &str) -> &'static str {
    if s.is_empty() {
        "<unset>"
    } else {
        "<redacted>"
    }
}

/// Hides the credentials of a URL such as `redis://user:pass@host:6379`.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Settings {
    /// Loads settings from the config directory (`HUDDLE_CONFIG_DIR`, else
    /// `./config`, else this crate's `config/`) and the process environment.
    pub fn load() -> anyhow::Result<Settings> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let dir = config_dir(&env);
        Self::load_from(&dir, &env)
    }

    /// Loads settings from `config_dir` and the given environment variables,
    /// without touching the process environment (for tests).
    pub fn load_from(config_dir: &Path, env: &HashMap<String, String>) -> anyhow::Result<Settings> {
        let var = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mode = match var("HUDDLE_ENV").or_else(|| var("HUDDLE__SERVER__ENV")) {
            Some(name) => Environment::parse(name)?,
            None => Environment::Development,
        };

        let default_path = config_dir.join("default.toml");
        let default_source = if default_path.is_file() {
            std::fs::read_to_string(&default_path)
                .with_context(|| format!("reading {}", default_path.display()))?
        } else {
            log::warn!(
                "{} not found; using the built-in defaults",
                default_path.display()
            );
            EMBEDDED_DEFAULT.to_owned()
        };

        let mut builder = Config::builder()
            .add_source(File::from_str(&default_source, FileFormat::Toml))
            .add_source(
                File::from(config_dir.join(format!("{}.toml", mode.as_str())))
                    .format(FileFormat::Toml)
                    .required(false),
            );

        // Conventional names first, so the more specific HUDDLE__ form wins
        // when both are set.
        for (name, key) in CONVENTIONAL_VARS {
            if let Some(value) = var(name) {
                builder = set_key(builder, key, value)?;
            }
        }
        let mut prefixed: Vec<(String, &str)> = env
            .iter()
            .filter_map(|(name, value)| {
                let rest = name.strip_prefix("HUDDLE__")?;
                let key = rest.to_ascii_lowercase().replace("__", ".");
                Some((key, value.as_str()))
            })
            .collect();
        prefixed.sort();
        for (key, value) in prefixed {
            builder = set_key(builder, &key, value)?;
        }
        builder = builder.set_override("server.env", mode.as_str())?;

        let mut settings: Settings = builder
            .build()
            .context("reading settings")?
            .try_deserialize()
            .context("invalid settings")?;

        let default_secrets = embedded_secrets(&default_source);
        settings.check_and_fill_secrets(&default_secrets)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Whether this node runs in production mode.
    pub fn is_production(&self) -> bool {
        self.server.env == Environment::Production
    }

    /// Applies the secret policy: random secrets in development and test,
    /// strict checks in production.
    fn check_and_fill_secrets(&mut self, default_secrets: &[String]) -> anyhow::Result<()> {
        let production = self.is_production();
        for (name, secret) in [
            ("JWT_SECRET", &mut self.auth.jwt_secret),
            ("REFRESH_SECRET", &mut self.auth.refresh_secret),
        ] {
            match secret_problem(secret, default_secrets) {
                None => {}
                Some(problem) if production => {
                    bail!("{name} {problem}; production refuses to start without a strong secret")
                }
                Some(SecretProblem::Missing) => {
                    log::warn!(
                        "{name} is not set; using a random secret for this run \
                         (tokens stop working at restart; set it for real deployments)"
                    );
                    *secret = random_secret();
                }
                Some(problem) => {
                    log::warn!("{name} {problem}; acceptable only outside production");
                }
            }
        }
        if self.auth.jwt_secret == self.auth.refresh_secret {
            log::warn!("JWT_SECRET and REFRESH_SECRET are the same; use two different secrets");
        }
        Ok(())
    }

    /// Cross-field checks that serde cannot express.
    fn validate(&self) -> anyhow::Result<()> {
        let chat = &self.chat;
        if chat.history_max_limit == 0
            || chat.history_default_limit == 0
            || chat.history_default_limit > chat.history_max_limit
        {
            bail!("chat.history_default_limit must be between 1 and chat.history_max_limit");
        }
        if chat.max_message_chars == 0 {
            bail!("chat.max_message_chars must be at least 1");
        }
        if self.server.store_cache_mb == 0 || self.server.store_cache_mb > 1 << 20 {
            bail!("server.store_cache_mb must be between 1 and 1048576 (MiB)");
        }
        if self.collab.offline_grace_ms > 10_000 {
            bail!("collab.offline_grace_ms must be at most 10000 (the contract's bound)");
        }
        let events = self.rate_limits.socket_events_per_second;
        if events > 0 && self.limits.max_events_pending_per_connection < events {
            log::warn!(
                "limits.max_events_pending_per_connection ({}) is below \
                 rate_limits.socket_events_per_second ({events}): a burst of events within the rate \
                 limit is refused",
                self.limits.max_events_pending_per_connection
            );
        }
        let crash_bound = self.redis.node_ttl_ms.max(1_000)
            + self.redis.heartbeat_ms
            + self.collab.offline_grace_ms;
        if self.redis.url.is_some() && crash_bound > 10_000 {
            log::warn!(
                "redis.node_ttl_ms + redis.heartbeat_ms + collab.offline_grace_ms = {crash_bound} ms: \
                 the users of a node that stops without closing are announced offline later than \
                 the 10 s the client contract promises"
            );
        }
        if self.collab.workspace_idle_ms == 0 {
            bail!("collab.workspace_idle_ms must be positive");
        }
        if self.auth.access_ttl_secs == 0 || self.auth.refresh_ttl_secs == 0 {
            bail!("auth.access_ttl_secs and auth.refresh_ttl_secs must be positive");
        }
        if self.engine.ping_interval_ms == 0 || self.engine.ping_timeout_ms == 0 {
            bail!("engine.ping_interval_ms and engine.ping_timeout_ms must be positive");
        }
        if self.engine.max_payload == 0 || self.engine.outbound_queue_max == 0 {
            bail!("engine.max_payload and engine.outbound_queue_max must be positive");
        }
        let up = &self.uploads;
        if up.min_chunk_size == 0
            || up.min_chunk_size > up.default_chunk_size
            || up.default_chunk_size > up.max_chunk_size
        {
            bail!("uploads: need 0 < min_chunk_size <= default_chunk_size <= max_chunk_size");
        }
        // A base64 chunk plus the event's JSON must fit one Engine.IO message.
        let base64_len = (up.max_chunk_size as usize).div_ceil(3) * 4;
        if base64_len + 1024 > self.engine.max_payload {
            bail!(
                "uploads.max_chunk_size is too large: its base64 does not fit engine.max_payload"
            );
        }
        if up.max_file_size == 0
            || up.http_max_file_size == 0
            || up.max_in_progress == 0
            || up.max_task_attachments == 0
        {
            bail!(
                "uploads: max_file_size, http_max_file_size, max_in_progress and max_task_attachments must be positive"
            );
        }
        if up.max_file_size / u64::from(up.min_chunk_size) > u64::from(u32::MAX) {
            bail!("uploads: max_file_size / min_chunk_size must fit 32 bits");
        }
        if up.session_ttl_secs == 0 || up.sweep_interval_secs == 0 || up.actor_idle_secs == 0 {
            bail!("uploads: session_ttl_secs, sweep_interval_secs and actor_idle_secs must be positive");
        }
        Ok(())
    }
}

impl AuthSettings {
    /// Access token lifetime as a duration.
    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_ttl_secs)
    }

    /// Refresh token lifetime as a duration.
    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_ttl_secs)
    }
}

/// Why a secret is not acceptable in production.
#[derive(Debug, PartialEq, Eq)]
enum SecretProblem {
    Missing,
    Placeholder,
    TooShort,
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretProblem::Missing => "is not set",
            SecretProblem::Placeholder => "is a known placeholder",
            SecretProblem::TooShort => "is shorter than 32 bytes",
        })
    }
}

fn secret_problem(secret: &str, default_secrets: &[String]) -> Option<SecretProblem> {
    let trimmed = secret.trim();
    if trimmed.is_empty() {
        return Some(SecretProblem::Missing);
    }
    let lower = trimmed.to_ascii_lowercase();
    if KNOWN_PLACEHOLDERS.contains(&lower.as_str()) || default_secrets.iter().any(|d| d == trimmed)
    {
        return Some(SecretProblem::Placeholder);
    }
    if trimmed.len() < MIN_SECRET_BYTES {
        return Some(SecretProblem::TooShort);
    }
    None
}

/// The non-empty secrets written in the default config: whatever ships in the
/// repository is public, so production must not use it.
fn embedded_secrets(default_source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for source in [default_source, EMBEDDED_DEFAULT] {
        let Ok(cfg) = Config::builder()
            .add_source(File::from_str(source, FileFormat::Toml))
            .build()
        else {
            continue;
        };
        for key in ["auth.jwt_secret", "auth.refresh_secret"] {
            if let Ok(value) = cfg.get_string(key) {
                if !value.trim().is_empty() {
                    found.push(value.trim().to_owned());
                }
            }
        }
    }
    found
}

/// 48 random bytes as hex (384 bits).
fn random_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn set_key(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    key: &str,
    value: &str,
) -> anyhow::Result<config::ConfigBuilder<config::builder::DefaultState>> {
    let builder = if LIST_KEYS.contains(&key) {
        let items: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        builder.set_override(key, items)
    } else {
        builder.set_override(key, value)
    }
    .with_context(|| format!("setting {key} from the environment"))?;
    Ok(builder)
}

/// `HUDDLE_CONFIG_DIR`, else `./config` when it holds `default.toml`, else the
/// crate's own `config/` (so tests and examples work from any directory).
fn config_dir(env: &HashMap<String, String>) -> PathBuf {
    if let Some(dir) = env.get("HUDDLE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("config");
    if local.join("default.toml").is_file() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG_A: &str = "0123456789abcdef0123456789abcdef-access";
    const STRONG_B: &str = "0123456789abcdef0123456789abcdef-refresh";

    fn crate_config() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_in_development_with_random_secrets() {
        let s = Settings::load_from(&crate_config(), &env(&[])).unwrap();
        assert_eq!(s.server.env, Environment::Development);
        assert_eq!(s.server.port, 3000);
        assert_eq!(s.auth.access_ttl_secs, 900);
        assert_eq!(s.auth.refresh_ttl_secs, 30 * 24 * 3600);
        assert_eq!(s.limits.max_connections_per_user, 10);
        assert_eq!(s.rate_limits.auth_ip_per_minute, 30);
        assert_eq!(s.engine.max_payload, 1_000_000);
        assert!(s.auth.jwt_secret.len() >= MIN_SECRET_BYTES);
        assert_ne!(s.auth.jwt_secret, s.auth.refresh_secret);
        let again = Settings::load_from(&crate_config(), &env(&[])).unwrap();
        assert_ne!(s.auth.jwt_secret, again.auth.jwt_secret, "random per start");
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            crate_config().join("default.toml"),
            dir.path().join("default.toml"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("test.toml"),
            "[server]\nport = 4000\nhost = \"127.0.0.1\"\n[limits]\nmax_connections_per_user = 3\n",
        )
        .unwrap();
        let s = Settings::load_from(
            dir.path(),
            &env(&[
                ("HUDDLE_ENV", "test"),
                ("PORT", "5000"),
                ("HUDDLE__LIMITS__MAX_CONNECTIONS_PER_USER", "20"),
                ("CORS_ORIGINS", "https://a.example, https://b.example"),
                ("SERVICE_KEYS", "k1,k2,"),
                ("REDIS_URL", "redis://:pw@localhost:6379"),
                ("MONGODB_DB", "other"),
                ("HUDDLE__ENGINE__MAX_PAYLOAD", "4096"),
                // Chunks must fit the smaller payload.
                ("HUDDLE__UPLOADS__MAX_CHUNK_SIZE", "2048"),
                ("HUDDLE__UPLOADS__DEFAULT_CHUNK_SIZE", "2048"),
                ("HUDDLE__CHAT__HISTORY_DEFAULT_LIMIT", "20"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.env, Environment::Test);
        assert_eq!(s.server.host, "127.0.0.1", "environment file over default");
        assert_eq!(s.server.port, 5000, "variable over file");
        assert_eq!(s.limits.max_connections_per_user, 20);
        assert_eq!(
            s.server.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
        assert_eq!(s.service.keys, vec!["k1", "k2"]);
        assert_eq!(s.redis.url.as_deref(), Some("redis://:pw@localhost:6379"));
        assert_eq!(s.mongodb.db, "other");
        assert_eq!(s.engine.max_payload, 4096);
        assert_eq!(s.chat.history_default_limit, 20);
    }

    #[test]
    fn write_through_is_auto_by_default_and_can_be_forced() {
        let load = |v: &[(&str, &str)]| Settings::load_from(&crate_config(), &env(v));
        let s = load(&[]).unwrap();
        assert_eq!(s.engine.write_through, WriteThrough::Auto);
        let on = load(&[("HUDDLE__ENGINE__WRITE_THROUGH", "on")]).unwrap();
        assert!(on.engine.write_through.enabled());
        let off = load(&[("HUDDLE__ENGINE__WRITE_THROUGH", "off")]).unwrap();
        assert!(!off.engine.write_through.enabled());
        assert!(load(&[("HUDDLE__ENGINE__WRITE_THROUGH", "sometimes")]).is_err());
        // The tests' layer turns it on whatever the machine.
        let test = load(&[("HUDDLE_ENV", "test")]).unwrap();
        assert_eq!(test.engine.write_through, WriteThrough::On);
    }

    #[test]
    fn the_store_cache_is_a_gibibyte_by_default_and_bounded() {
        let load = |v: &[(&str, &str)]| Settings::load_from(&crate_config(), &env(v));
        assert_eq!(load(&[]).unwrap().server.store_cache_mb, 1024);
        let small = load(&[("HUDDLE__SERVER__STORE_CACHE_MB", "64")]).unwrap();
        assert_eq!(small.server.store_cache_mb, 64);
        for bad in ["0", "2000000", "-1", "lots"] {
            let err = load(&[("HUDDLE__SERVER__STORE_CACHE_MB", bad)]);
            assert!(err.is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn prefixed_variable_wins_over_conventional_name() {
        let s = Settings::load_from(
            &crate_config(),
            &env(&[("PORT", "5000"), ("HUDDLE__SERVER__PORT", "6000")]),
        )
        .unwrap();
        assert_eq!(s.server.port, 6000);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused() {
        assert!(Settings::load_from(&crate_config(), &env(&[("PORT", "http")])).is_err());
        assert!(Settings::load_from(&crate_config(), &env(&[("HUDDLE_ENV", "staging")])).is_err());
        assert!(
            Settings::load_from(&crate_config(), &env(&[("HUDDLE__LIMITS__TYPO", "1")])).is_err()
        );
        assert!(Settings::load_from(
            &crate_config(),
            &env(&[("HUDDLE__CHAT__HISTORY_DEFAULT_LIMIT", "500")])
        )
        .is_err());
    }

    #[test]
    fn production_refuses_missing_placeholder_and_short_secrets() {
        let dir = crate_config();
        let prod = |jwt: Option<&str>, refresh: Option<&str>| {
            let mut e = env(&[("HUDDLE_ENV", "production")]);
            if let Some(j) = jwt {
                e.insert("JWT_SECRET".into(), j.into());
            }
            if let Some(r) = refresh {
                e.insert("REFRESH_SECRET".into(), r.into());
            }
            Settings::load_from(&dir, &e)
        };
        let err = prod(None, Some(STRONG_B)).unwrap_err().to_string();
        assert!(err.contains("JWT_SECRET is not set"), "{err}");
        let err = prod(Some(STRONG_A), None).unwrap_err().to_string();
        assert!(err.contains("REFRESH_SECRET"), "{err}");
        assert!(prod(Some("changeme"), Some(STRONG_B)).is_err());
        assert!(prod(Some("change-me-in-production"), Some(STRONG_B)).is_err());
        assert!(prod(Some(STRONG_A), Some("short-secret")).is_err());
        let ok = prod(Some(STRONG_A), Some(STRONG_B)).unwrap();
        assert!(ok.is_production());
        assert_eq!(ok.auth.jwt_secret, STRONG_A);
    }

    #[test]
    fn production_refuses_a_secret_shipped_in_the_default_config() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = "this-long-secret-is-committed-to-the-repository!!";
        let default = std::fs::read_to_string(crate_config().join("default.toml"))
            .unwrap()
            .replace("jwt_secret = \"\"", &format!("jwt_secret = \"{shipped}\""));
        assert!(default.contains(shipped));
        std::fs::write(dir.path().join("default.toml"), default).unwrap();
        let e = env(&[("HUDDLE_ENV", "production"), ("REFRESH_SECRET", STRONG_B)]);
        let err = Settings::load_from(dir.path(), &e).unwrap_err().to_string();
        assert!(err.contains("placeholder"), "{err}");
        let mut e = e;
        e.insert("JWT_SECRET".into(), shipped.into());
        assert!(Settings::load_from(dir.path(), &e).is_err());
        e.insert("JWT_SECRET".into(), STRONG_A.into());
        assert!(Settings::load_from(dir.path(), &e).is_ok());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = Settings::load_from(
            &crate_config(),
            &env(&[
                ("JWT_SECRET", STRONG_A),
                ("SERVICE_KEYS", "service-key-1"),
                ("AWS_SECRET_ACCESS_KEY", "aws-very-secret"),
                ("MONGODB_URI", "mongodb://admin:hunter2@db:27017"),
            ]),
        )
        .unwrap();
        let shown = format!("{s:?}");
        for secret in [
            STRONG_A,
            s.auth.refresh_secret.as_str(),
            "service-key-1",
            "aws-very-secret",
            "hunter2",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("mongodb://<redacted>@db:27017"));
    }

    #[test]
    fn missing_default_file_falls_back_to_embedded_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load_from(dir.path(), &env(&[])).unwrap();
        assert_eq!(s.server.port, 3000);
    }
}
