//! Everything that makes several nodes behave as one, through Redis: the
//! shared connection ([`conn`]), and the Redis implementations of the ports
//! the core defines (the bus between nodes, presence and connection slots,
//! the recovery log, rate limits, upload-session state).
//!
//! Without `REDIS_URL` none of this runs: the node is alone and uses the
//! in-process implementations.

pub mod conn;
pub mod ratelimit;
pub mod testing;
pub mod uploads;

pub use conn::RedisConn;
pub use ratelimit::RedisRateLimiter;
pub use uploads::RedisUploadSessionStore;
