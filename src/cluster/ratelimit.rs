//! Rate limits shared by every node through Redis: [`RedisRateLimiter`]
//! implements [`RateLimiter`] with the same sliding-window counter as the
//! in-process [`MemoryRateLimiter`] (the previous fixed window's count,
//! weighted by how much of it still overlaps the sliding window, plus the
//! current window's count), so a client gets the same limit whichever node
//! it reaches.
//!
//! One Lua script does a whole hit atomically (read both counters, roll the
//! window, decide, count), sent with `EVALSHA` (`redis::Script` loads it on
//! `NOSCRIPT`). Each key is one small hash `{prefix}:rl:{window_ms}:{key}`
//! with fields `i` (fixed-window index), `p` and `c` (previous and current
//! counts), expiring two windows after its last accepted hit, when both
//! counters weigh nothing any more. Time is the Redis server's (`TIME`), so
//! nodes whose clocks disagree still share one window.
//!
//! When Redis fails or is slow the limiter does not fail requests, nor let
//! everything through: it answers from its own in-process limiter (the node's
//! share of the traffic is then limited per node, which is the best it can
//! know), logs at warn at most every [`WARN_EVERY`], and leaves Redis alone
//! for [`RETRY_AFTER`] before trying again, so an outage does not add a
//! timeout to every request.

use super::RedisConn;
use crate::ratelimit::{MemoryRateLimiter, RateLimiter};
use async_trait::async_trait;
use redis::Script;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one hit may wait for Redis before the local limiter answers.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failure, hits go to the local limiter this long before Redis is
/// tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// At most one warning per this interval while Redis fails.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// The sliding-window counter of `MemoryRateLimiter::check`, in Lua.
/// KEYS[1]: the key's hash. ARGV[1]: limit (≥ 1). ARGV[2]: window in ms.
/// Returns `{1, 0}` when the hit is accepted (and counted), `{0, wait_ms}`
/// when refused (not counted).
const HIT_LUA: &str = r"
local limit = tonumber(ARGV[1])
local len = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local index = math.floor(now / len)
local into = (now - index * len) / len
local h = redis.call('HMGET', KEYS[1], 'i', 'p', 'c')
local i = tonumber(h[1])
local p = tonumber(h[2]) or 0
local c = tonumber(h[3]) or 0
if i == nil or index > i + 1 then
  p = 0
  c = 0
elseif index == i + 1 then
  p = c
  c = 0
end
if i == nil or index > i then
  i = index
end
local allowance = limit - 1
if p * (1 - into) + c <= allowance then
  redis.call('HSET', KEYS[1], 'i', i, 'p', p, 'c', c + 1)
  redis.call('PEXPIRE', KEYS[1], len * 2)
  return {1, 0}
end
local wait
if c <= allowance then
  wait = ((1 - (allowance - c) / p) - into) * len
else
  wait = (1 - into) * len + (1 - allowance / c) * len
end
if wait < 0 then
  wait = 0
end
return {0, math.ceil(wait)}
";

/// The cluster-wide limiter, with the in-process one as its fallback.
pub struct RedisRateLimiter {
    redis: RedisConn,
    script: Script,
    fallback: MemoryRateLimiter,
    /// Reference for the two times below (ms since `start`).
    start: Instant,
    /// Until when (ms since `start`) Redis is left alone after a failure.
    down_until_ms: AtomicU64,
    /// When (ms since `start`, plus one; 0 = never) the last warning was logged.
    warned_at_ms: AtomicU64,
}

impl RedisRateLimiter {
    /// A limiter keeping its counters in `redis` under `{prefix}:rl:`.
    pub fn new(redis: RedisConn) -> Self {
        RedisRateLimiter {
            redis,
            script: Script::new(HIT_LUA),
            fallback: MemoryRateLimiter::new(),
            start: Instant::now(),
            down_until_ms: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// One hit counted in Redis: the verdict, or the Redis error.
    async fn hit_redis(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> redis::RedisResult<Result<(), Duration>> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.redis.conn();
        let (accepted, wait_ms): (i64, i64) = self
            .script
            .key(self.redis.key(&format!("rl:{window_ms}:{key}")))
            .arg(limit)
            .arg(window_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(if accepted == 1 {
            Ok(())
        } else {
            // A millisecond of slack, as the in-process limiter gives.
            let wait = u64::try_from(wait_ms).unwrap_or(0);
            Err(Duration::from_millis(wait) + Duration::from_millis(1))
        })
    }

    /// Records a Redis failure: local answers for a while, a rate-limited
    /// warning.
    fn failed(&self, why: &str) {
        let now = self.now_ms();
        self.down_until_ms
            .store(now + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        let last = self.warned_at_ms.load(Ordering::Relaxed);
        let due = last == 0 || now + 1 >= last + WARN_EVERY.as_millis() as u64;
        if due
            && self
                .warned_at_ms
                .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "rate limits: Redis unavailable ({why}); counting in this node only until it is back"
            );
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<(), Duration> {
        if limit == 0 || window.is_zero() {
            return Ok(());
        }
        if self.now_ms() >= self.down_until_ms.load(Ordering::Relaxed) {
            match tokio::time::timeout(REDIS_TIMEOUT, self.hit_redis(key, limit, window)).await {
                Ok(Ok(verdict)) => return verdict,
                Ok(Err(e)) => self.failed(&e.to_string()),
                Err(_) => self.failed(&format!("no answer within {REDIS_TIMEOUT:?}")),
            }
        }
        self.fallback.check(key, limit, window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing;

    /// Two limiters on one prefix: two nodes of one cluster.
    fn two_nodes(tag: &str) -> Option<(RedisConn, RedisRateLimiter, RedisRateLimiter)> {
        let conn = testing::conn(tag)?;
        let a = RedisRateLimiter::new(conn.clone());
        let b = RedisRateLimiter::new(conn.clone());
        Some((conn, a, b))
    }

    #[tokio::test]
    async fn nodes_share_one_count() {
        let Some((_conn, a, b)) = two_nodes("rl-share") else {
            return;
        };
        let w = Duration::from_secs(60);
        for i in 0..10 {
            let node = if i % 2 == 0 { &a } else { &b };
            node.hit("k", 10, w).await.expect("within the limit");
        }
        // The eleventh is refused on either node, with the same advice the
        // in-process limiter gives: only the next window frees a slot.
        for node in [&a, &b] {
            let retry = node.hit("k", 10, w).await.unwrap_err();
            assert!(
                retry > Duration::ZERO && retry <= Duration::from_secs(120),
                "{retry:?}"
            );
        }
        // Other keys and other windows are counted apart.
        a.hit("other", 10, w).await.unwrap();
        b.hit("k", 10, Duration::from_secs(30)).await.unwrap();
        // Nothing went to the fallback.
        assert_eq!(a.fallback.tracked_keys() + b.fallback.tracked_keys(), 0);
    }

    #[tokio::test]
    async fn window_slides_and_keys_expire() {
        let Some((conn, a, b)) = two_nodes("rl-window") else {
            return;
        };
        let w = Duration::from_millis(400);
        for _ in 0..3 {
            a.hit("k", 3, w).await.unwrap();
        }
        let retry = b.hit("k", 3, w).await.unwrap_err();
        assert!(retry <= Duration::from_millis(801), "{retry:?}");
        // The key expires by itself: two windows after its last hit.
        let key = conn.key("rl:400:k");
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn.conn())
            .await
            .unwrap();
        assert!(pttl > 0 && pttl <= 800, "PTTL {pttl}");
        // Waiting the advice (plus scheduling slack) is enough.
        tokio::time::sleep(retry + Duration::from_millis(30)).await;
        b.hit("k", 3, w)
            .await
            .expect("accepted after the advised wait");
        // Two whole windows later both counters weigh nothing.
        tokio::time::sleep(2 * w + Duration::from_millis(50)).await;
        for _ in 0..3 {
            a.hit("k", 3, w).await.unwrap();
        }
        assert!(a.hit("k", 3, w).await.is_err());
        tokio::time::sleep(2 * w + Duration::from_millis(100)).await;
        assert!(testing::keys(&conn).await.is_empty(), "every key expired");
    }

    #[tokio::test]
    async fn without_redis_the_node_limits_alone() {
        // A port nobody listens on: the limiter neither fails requests nor
        // lets everything through, and answers quickly.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let conn = RedisConn::open(&format!("redis://127.0.0.1:{port}/"), "down").unwrap();
        let rl = RedisRateLimiter::new(conn);
        let started = Instant::now();
        let w = Duration::from_secs(60);
        for _ in 0..5 {
            rl.hit("k", 5, w).await.expect("counted locally");
        }
        assert!(rl.hit("k", 5, w).await.is_err(), "the local limit holds");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "one failed attempt, then local answers: {:?}",
            started.elapsed()
        );
        assert_eq!(rl.fallback.tracked_keys(), 1);
    }
}
