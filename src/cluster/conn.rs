//! The node's shared Redis connection: one multiplexed connection (a
//! `ConnectionManager`, which reconnects by itself with backoff) for every
//! command any part of the node sends, and the key prefix that keeps
//! deployments (and test runs) sharing one Redis apart.
//!
//! The connection is made lazily, so a node starts, and serves its own
//! clients, while Redis is down; commands fail fast (`response_timeout`)
//! instead of queueing without bound until it is back.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};
use std::sync::Arc;
use std::time::Duration;

/// How long one command may take before it fails.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait between two reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A handle to the shared connection; cheap to clone.
#[derive(Clone)]
pub struct RedisConn {
    client: Client,
    conn: ConnectionManager,
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

/// Reconnection settings shared by every connection the node opens.
pub fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(MAX_BACKOFF)
        .set_number_of_retries(2)
}

impl RedisConn {
    /// A connection to `url` whose keys all start with `{prefix}:`. Nothing
    /// is sent until the first command.
    pub fn open(url: &str, prefix: &str) -> RedisResult<Self> {
        let client = Client::open(url)?;
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())?;
        Ok(RedisConn {
            client,
            conn,
            prefix: Arc::from(prefix),
        })
    }

    /// The multiplexed connection (clones share it).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The client, for connections of their own (the bridge's subscriber).
    pub fn client(&self) -> &Client {
        &self.client
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
