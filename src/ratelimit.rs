//! Rate limiting: a sliding-window limiter behind the [`RateLimiter`] trait,
//! and the actix middleware that applies the HTTP limits of the contract
//! (per user, per IP, and `register`/`login` per IP), answering 429
//! `rate_limited` with `Retry-After`.
//!
//! The in-memory limiter uses the sliding-window *counter* (the previous fixed
//! window's count, weighted by how much of it still overlaps the sliding
//! window, plus the current window's count): O(1) memory per key whatever the
//! limit, and the same two counters a Redis backend will keep with `INCR`, so
//! the shared limiter can slot in behind the same trait. Keys whose windows
//! have both passed are swept, so memory holds only recently active clients.
//! Time comes from an injectable [`Clock`] so the window logic is tested
//! without sleeping.

use crate::auth::{bearer_token, VerifiedClaims};
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use async_trait::async_trait;
use huddle_actors::engine::{HandshakeGate, HandshakeRefused};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One minute, the window of the HTTP limits.
pub const MINUTE: Duration = Duration::from_secs(60);

/// How often stale keys are swept, at most.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Above this many keys a sweep runs as soon as one is allowed (every second),
/// not just every [`SWEEP_INTERVAL`].
const EAGER_SWEEP_KEYS: usize = 50_000;

/// Counts hits per key and refuses those over a limit.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Records a hit on `key` if at most `limit` hits fall within the sliding
    /// `window` counting this one; otherwise refuses it (it is not counted)
    /// and says how long until one would be accepted. `limit` 0 means no limit.
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<(), Duration>;
}

/// Where a limiter gets the time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at an arbitrary instant.
    pub fn new() -> Self {
        ManualClock {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// The counters of one key.
#[derive(Clone, Copy, Debug)]
struct Window {
    length: Duration,
    /// Index of the current fixed window since the limiter's epoch.
    index: u64,
    previous: u32,
    current: u32,
}

#[derive(Debug)]
struct Inner {
    keys: HashMap<String, Window>,
    last_sweep: Instant,
}

/// The in-process sliding-window limiter (one node; Redis shares limits
/// between nodes later, behind the same trait).
pub struct MemoryRateLimiter<C: Clock = SystemClock> {
    clock: C,
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl MemoryRateLimiter<SystemClock> {
    /// A limiter on the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }
}

impl Default for MemoryRateLimiter<SystemClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> MemoryRateLimiter<C> {
    /// A limiter on the given clock.
    pub fn with_clock(clock: C) -> Self {
        let epoch = clock.now();
        MemoryRateLimiter {
            clock,
            epoch,
            inner: Mutex::new(Inner {
                keys: HashMap::new(),
                last_sweep: epoch,
            }),
        }
    }

    /// How many keys are tracked (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.lock().keys.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked: every update is
        // a few integer writes.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fixed window `now` falls in, and how far into it `now` is (0..1).
    fn position(&self, now: Instant, length: Duration) -> (u64, f64) {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let len = length.as_nanos().max(1);
        let index = u64::try_from(since / len).unwrap_or(u64::MAX);
        let into = (since % len) as f64 / len as f64;
        (index, into)
    }

    /// The synchronous core of [`RateLimiter::hit`].
    pub fn check(&self, key: &str, limit: u32, length: Duration) -> Result<(), Duration> {
        if limit == 0 || length.is_zero() {
            return Ok(());
        }
        let now = self.clock.now();
        let (index, into) = self.position(now, length);
        let mut inner = self.lock();
        self.maybe_sweep(&mut inner, now);

        let w = inner.keys.entry(key.to_owned()).or_insert(Window {
            length,
            index,
            previous: 0,
            current: 0,
        });
        if w.length != length {
            *w = Window {
                length,
                index,
                previous: 0,
                current: 0,
            };
        }
        if index == w.index + 1 {
            w.previous = w.current;
            w.current = 0;
            w.index = index;
        } else if index > w.index {
            w.previous = 0;
            w.current = 0;
            w.index = index;
        }

        let weight = 1.0 - into;
        let estimate = f64::from(w.previous) * weight + f64::from(w.current);
        // Allowed when the estimate stays within the limit counting this hit.
        let allowance = f64::from(limit) - 1.0;
        if estimate <= allowance {
            w.current = w.current.saturating_add(1);
            return Ok(());
        }

        let len = length.as_secs_f64();
        let wait = if f64::from(w.current) <= allowance {
            // Later in this window the previous window's share decays enough.
            let needed_fraction = 1.0 - (allowance - f64::from(w.current)) / f64::from(w.previous);
            (needed_fraction - into) * len
        } else {
            // Only in the next window, once this window's share decays enough.
            let current = f64::from(w.current);
            (1.0 - into) * len + (1.0 - allowance / current) * len
        };
        // A millisecond of slack absorbs floating-point rounding.
        Err(Duration::from_secs_f64(wait.max(0.0)) + Duration::from_millis(1))
    }

    fn maybe_sweep(&self, inner: &mut Inner, now: Instant) {
        let since = now.saturating_duration_since(inner.last_sweep);
        let due = since >= SWEEP_INTERVAL
            || (inner.keys.len() > EAGER_SWEEP_KEYS && since >= Duration::from_secs(1));
        if !due {
            return;
        }
        inner.last_sweep = now;
        let epoch = self.epoch;
        inner.keys.retain(|_, w| {
            let since = now.saturating_duration_since(epoch).as_nanos();
            let index = u64::try_from(since / w.length.as_nanos().max(1)).unwrap_or(u64::MAX);
            // Once two windows have passed, both counters weigh nothing.
            index <= w.index + 1
        });
    }
}

#[async_trait]
impl<C: Clock> RateLimiter for MemoryRateLimiter<C> {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<(), Duration> {
        self.check(key, limit, window)
    }
}

/// The client address used for per-IP limits.
fn client_key(req: &ServiceRequest, trust_proxy_headers: bool) -> String {
    let ip: Option<IpAddr> = if trust_proxy_headers {
        req.connection_info()
            .realip_remote_addr()
            .and_then(parse_ip)
    } else {
        req.peer_addr().map(|a| a.ip())
    };
    ip_key(ip)
}

/// An address as a limit's key. IPv6 clients are grouped by their /64
/// prefix, which one subscriber usually holds whole.
fn ip_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        Some(ip) => ip.to_string(),
        None => "unknown".to_owned(),
    }
}

/// The per-IP limit on socket handshakes, as the core's [`HandshakeGate`]:
/// new Engine.IO sessions a minute per client address, counted in the
/// node's limiter (shared through Redis when configured).
pub struct HandshakeLimit {
    limiter: Arc<dyn RateLimiter>,
    per_minute: u32,
    trust_proxy_headers: bool,
}

impl HandshakeLimit {
    /// `per_minute` handshakes per client address (0: no limit), counted in
    /// `limiter`; the address from `X-Forwarded-For` when
    /// `trust_proxy_headers`.
    pub fn new(limiter: Arc<dyn RateLimiter>, per_minute: u32, trust_proxy_headers: bool) -> Self {
        HandshakeLimit {
            limiter,
            per_minute,
            trust_proxy_headers,
        }
    }
}

#[async_trait]
impl HandshakeGate for HandshakeLimit {
    async fn admit(
        &self,
        peer: Option<SocketAddr>,
        forwarded_for: Option<&str>,
    ) -> Result<(), HandshakeRefused> {
        if self.per_minute == 0 {
            return Ok(());
        }
        // The client is the first address a trusted proxy lists.
        let forwarded = forwarded_for
            .filter(|_| self.trust_proxy_headers)
            .and_then(|f| f.split(',').next())
            .and_then(parse_ip);
        let client = ip_key(forwarded.or_else(|| peer.map(|p| p.ip())));
        self.limiter
            .hit(&format!("hs:ip:{client}"), self.per_minute, MINUTE)
            .await
            .map_err(|retry_after| HandshakeRefused {
                retry_after,
                client,
            })
    }
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.trim_start_matches('[')
                .split(']')
                .next()
                .and_then(|h| h.parse().ok())
        })
}

fn limited<B>(req: ServiceRequest, retry_after: Duration) -> ServiceResponse<EitherBody<B>> {
    let resp = ApiError::RateLimited { retry_after }.error_response();
    req.into_response(resp).map_into_right_body()
}

/// Middleware for the API scope: per-IP limit, then per-user limit when a
/// valid Bearer token is present (the verified claims are kept for
/// [`crate::auth::AuthUser`], so the token is checked once).
pub async fn http_limits<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let limits = &state.settings.rate_limits;
    let ip = client_key(&req, state.settings.server.trust_proxy_headers);
    if let Err(retry) = state
        .rate_limiter
        .hit(&format!("http:ip:{ip}"), limits.http_ip_per_minute, MINUTE)
        .await
    {
        return Ok(limited(req, retry));
    }

    let verified = bearer_token(req.request()).map(|t| state.jwt.verify_access(t));
    if let Some(result) = verified {
        if let Ok(claims) = &result {
            if let Err(retry) = state
                .rate_limiter
                .hit(
                    &format!("http:user:{}", claims.sub),
                    limits.http_user_per_minute,
                    MINUTE,
                )
                .await
            {
                return Ok(limited(req, retry));
            }
        }
        req.extensions_mut().insert(VerifiedClaims(result));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Middleware for `register` and `login`: the per-IP limit on attempts.
pub async fn auth_limits<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let ip = client_key(&req, state.settings.server.trust_proxy_headers);
    if let Err(retry) = state
        .rate_limiter
        .hit(
            &format!("auth:ip:{ip}"),
            state.settings.rate_limits.auth_ip_per_minute,
            MINUTE,
        )
        .await
    {
        return Ok(limited(req, retry));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limiter() -> (Arc<ManualClock>, MemoryRateLimiter<Arc<ManualClock>>) {
        let clock = Arc::new(ManualClock::new());
        (clock.clone(), MemoryRateLimiter::with_clock(clock))
    }

    const W: Duration = Duration::from_secs(60);

    #[test]
    fn allows_up_to_the_limit_then_refuses() {
        let (_clock, rl) = limiter();
        for _ in 0..5 {
            rl.check("k", 5, W).unwrap();
        }
        let retry = rl.check("k", 5, W).unwrap_err();
        // Nothing from a previous window: only the next window frees a slot,
        // and then the five hits still weigh fully at its start.
        assert!(
            retry > Duration::from_secs(60) && retry <= Duration::from_secs(73),
            "{retry:?}"
        );
        // Other keys are independent.
        rl.check("other", 5, W).unwrap();
    }

    #[test]
    fn refused_hits_are_not_counted_and_retry_after_is_exact() {
        let (clock, rl) = limiter();
        for _ in 0..10 {
            rl.check("k", 10, W).unwrap();
        }
        clock.advance(Duration::from_secs(30));
        let retry = rl.check("k", 10, W).unwrap_err();
        // Waiting a little less than advised is still refused; waiting the
        // advice is accepted.
        clock.advance(retry - Duration::from_millis(50));
        assert!(rl.check("k", 10, W).is_err());
        clock.advance(Duration::from_millis(50));
        rl.check("k", 10, W).unwrap();
    }

    #[test]
    fn previous_window_weighs_by_overlap() {
        let (clock, rl) = limiter();
        for _ in 0..10 {
            rl.check("k", 10, W).unwrap();
        }
        // 15 s into the next window, 75% of the previous window still counts:
        // 7.5 of 10 used, so two more hits fit (8.5, 9.5 ≤ 10) and a third
        // does not.
        clock.advance(Duration::from_secs(75));
        rl.check("k", 10, W).unwrap();
        rl.check("k", 10, W).unwrap();
        let retry = rl.check("k", 10, W).unwrap_err();
        // 7.5·(1 - t/60·…) must drop by 0.5: 3 more seconds.
        assert!(
            retry >= Duration::from_secs(3) && retry < Duration::from_millis(3100),
            "{retry:?}"
        );
        clock.advance(retry);
        rl.check("k", 10, W).unwrap();
    }

    #[test]
    fn a_long_pause_resets_the_key() {
        let (clock, rl) = limiter();
        for _ in 0..3 {
            rl.check("k", 3, W).unwrap();
        }
        assert!(rl.check("k", 3, W).is_err());
        clock.advance(Duration::from_secs(121));
        for _ in 0..3 {
            rl.check("k", 3, W).unwrap();
        }
    }

    #[test]
    fn zero_limit_means_unlimited() {
        let (_clock, rl) = limiter();
        for _ in 0..1000 {
            rl.check("k", 0, W).unwrap();
        }
        assert_eq!(rl.tracked_keys(), 0);
    }

    #[test]
    fn stale_keys_are_swept() {
        let (clock, rl) = limiter();
        for i in 0..100 {
            rl.check(&format!("k{i}"), 10, W).unwrap();
        }
        assert_eq!(rl.tracked_keys(), 100);
        clock.advance(Duration::from_secs(60));
        rl.check("fresh", 10, W).unwrap();
        // One window later the old keys still weigh on the sliding window.
        assert_eq!(rl.tracked_keys(), 101);
        clock.advance(Duration::from_secs(61));
        rl.check("fresh", 10, W).unwrap();
        assert_eq!(rl.tracked_keys(), 1);
    }

    #[actix_web::test]
    async fn trait_object_works() {
        let rl: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new());
        rl.hit("k", 1, W).await.unwrap();
        assert!(rl.hit("k", 1, W).await.is_err());
    }
}
