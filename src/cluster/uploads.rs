//! Upload-session state in Redis: [`RedisUploadSessionStore`] implements the
//! core's [`UploadSessionStore`] port, so an upload initiated on one node
//! resumes and completes on any other, and survives a restart of every node
//! (PROTOCOL §6). The document store keeps serving file records; only the
//! resumable state lives here.
//!
//! Keys (under the node's prefix; `{u}` is the user id in hex, so ids holding
//! `:` cannot collide, `{id}` the client's upload id):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `up:{u}:{id}` | hash | `s`: the session as created (JSON); `e`: its current expiry (RFC 3339); `f`: the file id once completed |
//! | `upc:{u}:{id}` | set | indexes of the chunks stored |
//! | `upa:{u}` | sorted set | the user's upload ids in progress (the per-user maximum counts them) |
//! | `up-expiring` | sorted set | `{u}:{id}` of every session in progress, scored by expiry (ms), for the sweeper |
//!
//! Every operation that reads and writes several keys is one Lua script, so
//! concurrent calls from any number of nodes never exceed the per-user maximum,
//! never create one upload id twice, and never leave an index pointing at a
//! session that is gone.
//!
//! Expiry. The sweeper (`FileUploadNamespace::sweep`, on every node) finds
//! expired sessions through `up-expiring`, deletes their parts from the blob
//! store, then the session. So an in-progress session must outlive its
//! contract expiry until the sweeper has seen it: its keys get a Redis TTL of
//! its expiry plus [`IN_PROGRESS_GRACE`] (a week), moved on with every chunk.
//! The TTL is only a safety net for a cluster that stays down past that
//! grace (then the session and the `up-expiring` entry the listing finds
//! dangling are dropped, and its parts would have to be cleaned by hand); in
//! normal running the sweeper deletes everything within
//! `uploads.sweep_interval_secs` of expiry. A completed session is kept
//! [`COMPLETED_KEPT`] (30 days, the core's) so that initiating its upload id
//! again answers the file; then it goes by itself, and the same id would
//! start a new upload.

use super::RedisConn;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use huddle_actors::ids::UserId;
use huddle_actors::model::{SessionStart, UploadSession};
use huddle_actors::store::{StoreError, StoreResult, UploadSessionStore};
use huddle_actors::upload_rules::COMPLETED_KEPT;
use redis::Script;
use std::time::Duration;

/// How long past its expiry an in-progress session is kept for the sweeper.
pub const IN_PROGRESS_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// KEYS: session, active, expiring. ARGV: session JSON, expiry RFC 3339,
/// max in progress, expiry ms, upload id, expiring member, TTL ms.
/// Returns `{"existing", s, e, f|false}`, `{"too_many"}` or `{"created"}`.
const CREATE_LUA: &str = r"
local s = redis.call('HMGET', KEYS[1], 's', 'e', 'f')
if s[1] then
  return {'existing', s[1], s[2], s[3]}
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return {'too_many'}
end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[7]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
return {'created'}
";

/// KEYS: session, chunks, active, expiring. ARGV: chunk index, expiry
/// RFC 3339, expiry ms, upload id, expiring member, TTL ms.
/// Returns 1, or 0 when the session is not in progress.
const RECORD_CHUNK_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'f') == 1 then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[6]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
end
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
return 1
";

/// KEYS: session, chunks, active, expiring. ARGV: file id, upload id,
/// expiring member, completed TTL ms. Returns 1, or 0 when there is no
/// session.
const COMPLETE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'f', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[3])
return 1
";

/// KEYS: session, chunks, active, expiring. ARGV: upload id, expiring
/// member. Returns whether the session existed.
const DELETE_LUA: &str = r"
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[2])
return existed
";

/// KEYS: session, active, expiring. ARGV: upload id, expiring member.
/// Drops the index entries of a session that is gone or completed; leaves
/// them (returns 0) when the id was initiated afresh meanwhile.
const DROP_DANGLING_LUA: &str = r"
if redis.call('HEXISTS', KEYS[1], 's') == 1 and redis.call('HEXISTS', KEYS[1], 'f') == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
";

/// The Redis implementation of the upload-session port.
pub struct RedisUploadSessionStore {
    redis: RedisConn,
    create: Script,
    record_chunk: Script,
    complete: Script,
    delete: Script,
    drop_dangling: Script,
}

impl std::fmt::Debug for RedisUploadSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisUploadSessionStore")
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

/// The keys of one session.
struct Keys {
    session: String,
    chunks: String,
    active: String,
    expiring: String,
    /// The session's member of `up-expiring`.
    member: String,
}

fn backend(what: &str, e: redis::RedisError) -> StoreError {
    StoreError::backend(format!("redis: {what}"), e)
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        message: format!("redis: {what}: {detail}"),
        source: None,
    }
}

fn millis(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    // Full precision, so the expiry read back equals the one written.
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Milliseconds from now until `until` plus `grace` (at least 1).
fn ttl_ms(until: &DateTime<Utc>, grace: Duration) -> u64 {
    let left = (*until - Utc::now()).num_milliseconds().max(0) as u64;
    left.saturating_add(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX))
        .max(1)
}

/// The session from its stored fields: the JSON as created, the current
/// expiry, the file id once completed.
fn session_from(
    json: &str,
    expires: Option<&str>,
    file: Option<String>,
) -> StoreResult<UploadSession> {
    let mut session: UploadSession =
        serde_json::from_str(json).map_err(|e| corrupt("upload session record", e))?;
    if let Some(e) = expires {
        session.expires_at = DateTime::parse_from_rfc3339(e)
            .map_err(|err| corrupt("upload session expiry", err))?
            .with_timezone(&Utc);
    }
    session.completed_file_id = file;
    Ok(session)
}

impl RedisUploadSessionStore {
    /// A store keeping upload sessions in `redis` under its prefix.
    pub fn new(redis: RedisConn) -> Self {
        RedisUploadSessionStore {
            redis,
            create: Script::new(CREATE_LUA),
            record_chunk: Script::new(RECORD_CHUNK_LUA),
            complete: Script::new(COMPLETE_LUA),
            delete: Script::new(DELETE_LUA),
            drop_dangling: Script::new(DROP_DANGLING_LUA),
        }
    }

    fn keys(&self, user: &UserId, upload_id: &str) -> Keys {
        let u = hex::encode(user.as_str());
        Keys {
            session: self.redis.key(&format!("up:{u}:{upload_id}")),
            chunks: self.redis.key(&format!("upc:{u}:{upload_id}")),
            active: self.redis.key(&format!("upa:{u}")),
            expiring: self.expiring_key(),
            member: format!("{u}:{upload_id}"),
        }
    }

    fn expiring_key(&self) -> String {
        self.redis.key("up-expiring")
    }

    /// `(user, upload id)` from a member of `up-expiring`.
    fn parse_member(member: &str) -> Option<(UserId, String)> {
        let (u, id) = member.split_once(':')?;
        let user = String::from_utf8(hex::decode(u).ok()?).ok()?;
        Some((UserId(user), id.to_owned()))
    }
}

#[async_trait]
impl UploadSessionStore for RedisUploadSessionStore {
    async fn create_upload_session(
        &self,
        session: UploadSession,
        max_in_progress: usize,
    ) -> StoreResult<SessionStart> {
        let k = self.keys(&session.user_id, &session.upload_id);
        let mut stored = session.clone();
        // The expiry and the file id live in their own fields.
        stored.completed_file_id = None;
        let json =
            serde_json::to_string(&stored).map_err(|e| corrupt("encoding an upload session", e))?;
        let mut conn = self.redis.conn();
        let reply: Vec<redis::Value> = self
            .create
            .key(&k.session)
            .key(&k.active)
            .key(&k.expiring)
            .arg(json)
            .arg(rfc3339(&session.expires_at))
            .arg(max_in_progress)
            .arg(millis(&session.expires_at))
            .arg(&session.upload_id)
            .arg(&k.member)
            .arg(ttl_ms(&session.expires_at, IN_PROGRESS_GRACE))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| backend("create_upload_session", e))?;
        let text = |v: Option<&redis::Value>| -> StoreResult<Option<String>> {
            match v {
                None | Some(redis::Value::Nil) => Ok(None),
                Some(v) => redis::from_redis_value_ref::<Option<String>>(v)
                    .map_err(|e| corrupt("create_upload_session reply", e)),
            }
        };
        match text(reply.first())?.as_deref() {
            Some("created") => Ok(SessionStart::Created(session)),
            Some("too_many") => Ok(SessionStart::TooMany),
            Some("existing") => {
                let json = text(reply.get(1))?
                    .ok_or_else(|| corrupt("create_upload_session", "no record"))?;
                let expires = text(reply.get(2))?;
                let file = text(reply.get(3))?;
                Ok(SessionStart::Existing(session_from(
                    &json,
                    expires.as_deref(),
                    file,
                )?))
            }
            other => Err(corrupt("create_upload_session reply", format!("{other:?}"))),
        }
    }

    async fn upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
    ) -> StoreResult<Option<UploadSession>> {
        let k = self.keys(user, upload_id);
        let mut conn = self.redis.conn();
        let (json, expires, file): (Option<String>, Option<String>, Option<String>) =
            redis::cmd("HMGET")
                .arg(&k.session)
                .arg("s")
                .arg("e")
                .arg("f")
                .query_async(&mut conn)
                .await
                .map_err(|e| backend("upload_session", e))?;
        json.map(|j| session_from(&j, expires.as_deref(), file))
            .transpose()
    }

    async fn received_chunks(&self, user: &UserId, upload_id: &str) -> StoreResult<Vec<u32>> {
        let k = self.keys(user, upload_id);
        let mut conn = self.redis.conn();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&k.chunks)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend("received_chunks", e))?;
        let mut chunks = members
            .iter()
            .map(|m| m.parse::<u32>().map_err(|e| corrupt("chunk index", e)))
            .collect::<StoreResult<Vec<u32>>>()?;
        chunks.sort_unstable();
        Ok(chunks)
    }

    async fn record_chunk(
        &self,
        user: &UserId,
        upload_id: &str,
        index: u32,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let k = self.keys(user, upload_id);
        let mut conn = self.redis.conn();
        let recorded: i64 = self
            .record_chunk
            .key(&k.session)
            .key(&k.chunks)
            .key(&k.active)
            .key(&k.expiring)
            .arg(index)
            .arg(rfc3339(&expires_at))
            .arg(millis(&expires_at))
            .arg(upload_id)
            .arg(&k.member)
            .arg(ttl_ms(&expires_at, IN_PROGRESS_GRACE))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| backend("record_chunk", e))?;
        if recorded == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!(
                "upload {upload_id} is not in progress"
            )))
        }
    }

    async fn complete_upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
        file_id: &str,
    ) -> StoreResult<()> {
        let k = self.keys(user, upload_id);
        let mut conn = self.redis.conn();
        let done: i64 = self
            .complete
            .key(&k.session)
            .key(&k.chunks)
            .key(&k.active)
            .key(&k.expiring)
            .arg(file_id)
            .arg(upload_id)
            .arg(&k.member)
            .arg(u64::try_from(COMPLETED_KEPT.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| backend("complete_upload_session", e))?;
        if done == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("upload {upload_id}")))
        }
    }

    /// Nothing to do: a completed session's record expires by its TTL, set
    /// when it was completed.
    async fn purge_completed_upload_sessions(
        &self,
        _expired_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        Ok(0)
    }

    async fn delete_upload_session(&self, user: &UserId, upload_id: &str) -> StoreResult<bool> {
        let k = self.keys(user, upload_id);
        let mut conn = self.redis.conn();
        let existed: i64 = self
            .delete
            .key(&k.session)
            .key(&k.chunks)
            .key(&k.active)
            .key(&k.expiring)
            .arg(upload_id)
            .arg(&k.member)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| backend("delete_upload_session", e))?;
        Ok(existed == 1)
    }

    async fn expired_upload_sessions(
        &self,
        now: DateTime<Utc>,
        user: Option<&UserId>,
        limit: usize,
    ) -> StoreResult<Vec<UploadSession>> {
        let mut conn = self.redis.conn();
        let expiring = self.expiring_key();
        // Members of `up-expiring`: all users' from it, or one user's from
        // their in-progress set (scored by expiry too, holding upload ids).
        let (index, member_prefix) = match user {
            None => (expiring.clone(), String::new()),
            Some(user) => {
                let k = self.keys(user, "");
                (k.active, k.member)
            }
        };
        let found: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(format!("({}", millis(&now)))
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend("expired_upload_sessions", e))?;
        let members = found.into_iter().map(|m| format!("{member_prefix}{m}"));
        let mut expired = Vec::with_capacity(limit.min(64));
        for member in members {
            let found = match Self::parse_member(&member) {
                Some((user, id)) => self.upload_session(&user, &id).await?,
                None => None,
            };
            match found {
                Some(s) if s.completed_file_id.is_none() => expired.push(s),
                _ => {
                    // Dangling: the session went by its safety-net TTL (or the
                    // member is not ours). Nothing is left to sweep.
                    let mut drop = self.drop_dangling.prepare_invoke();
                    match Self::parse_member(&member) {
                        Some((user, id)) => {
                            let k = self.keys(&user, &id);
                            drop.key(&k.session).key(&k.active).arg(&id);
                        }
                        // Not ours: no session, no in-progress set.
                        None => {
                            drop.key(self.redis.key("up:-"))
                                .key(self.redis.key("upa:-"))
                                .arg("");
                        }
                    }
                    let dropped: i64 = drop
                        .key(&expiring)
                        .arg(&member)
                        .invoke_async(&mut conn)
                        .await
                        .map_err(|e| backend("expired_upload_sessions", e))?;
                    if dropped == 1 {
                        log::warn!("upload sweep: dropped dangling index entry {member}");
                    }
                }
            }
        }
        Ok(expired)
    }
}
