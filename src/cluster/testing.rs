//! The test Redis: how unit and integration tests find the one
//! `redis-server` that `scripts/redis-test-server.sh` started
//! (`HUDDLE_TEST_REDIS_URL`), each under a key prefix of its own so tests
//! sharing it never see each other's keys.
//!
//! Like the MongoDB store tests, a Redis test whose server is not configured
//! passes without running and says so on stderr (once per test binary) — unless
//! `HUDDLE_TEST_REDIS_REQUIRED=1` (set by `scripts/test.sh`), where a missing
//! server fails the test, so CI never skips them silently. It lives in the
//! library, not under `tests/`, so the unit tests beside the Redis code and
//! the integration tests share it.

use super::RedisConn;
use std::io::Write as _;
use std::sync::Once;

/// The variable naming the test Redis.
pub const URL_VAR: &str = "HUDDLE_TEST_REDIS_URL";
/// Set to `1` where a missing test Redis is an error (CI).
pub const REQUIRED_VAR: &str = "HUDDLE_TEST_REDIS_REQUIRED";

static ANNOUNCED: Once = Once::new();

/// The test Redis URL, or `None` (announced on stderr) when there is none.
/// Panics when there is none and [`REQUIRED_VAR`] is `1`.
pub fn url() -> Option<String> {
    let url = std::env::var(URL_VAR).ok().filter(|v| !v.trim().is_empty());
    if url.is_none() {
        if std::env::var(REQUIRED_VAR).is_ok_and(|v| v == "1") {
            panic!("{URL_VAR} is not set but {REQUIRED_VAR}=1: the test Redis must be running");
        }
        ANNOUNCED.call_once(|| {
            // Straight to stderr: the harness captures the output of passing
            // tests, and this must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! Redis tests NOT RUN: {URL_VAR} is not set \
                 (scripts/redis-test-server.sh start && . target/redis-test-server/env) !!!\n"
            );
        });
    }
    url
}

/// A fresh key prefix for one test: `huddle-test:{tag}:{random}`.
pub fn unique_prefix(tag: &str) -> String {
    format!("huddle-test:{tag}:{}", uuid::Uuid::new_v4().simple())
}

/// A connection to the test Redis under a fresh prefix, or `None` when there
/// is no test Redis (see the module doc).
pub fn conn(tag: &str) -> Option<RedisConn> {
    let url = url()?;
    Some(RedisConn::open(&url, &unique_prefix(tag)).expect("the test Redis URL is valid"))
}

/// Every key under the connection's prefix (for assertions on what a test
/// left behind).
pub async fn keys(conn: &RedisConn) -> Vec<String> {
    let mut c = conn.conn();
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", conn.prefix()))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut c)
            .await
            .expect("SCAN on the test Redis");
        found.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    found
}
