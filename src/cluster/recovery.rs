//! Connection state recovery across nodes: the Redis implementation of the
//! core's [`RecoveryLog`] port.
//!
//! The packets are logged by the bridge's publish script, in one stream per
//! room (`{prefix}:log:{nsp},{room}`), with the cluster-wide offset as the
//! entry id (`<offset>-1`), trimmed to about `packets_per_room` entries
//! (`MAXLEN ~`) and expiring a recovery window after the room's last packet.
//! A socket that dropped is remembered under `{prefix}:pid:{pid}` for the
//! window. Whichever node the client reconnects to reads them back:
//! recovery succeeds when the session is known, belongs to the same user and
//! namespace, and no room's stream has trimmed an entry above the client's
//! offset (Redis 7 reports the highest trimmed id as `max-deleted-entry-id`).

use crate::cluster::bridge::{packet_from_log, Names};
use crate::cluster::conn::RedisConn;
use async_trait::async_trait;
use bytes::Bytes;
use huddle_actors::cluster::RecoveryLog;
use huddle_actors::encoded::Encoded;
use huddle_actors::ids::{RoomKey, RoomName, UserId};
use huddle_actors::recovery::Snapshot;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What is stored of a dropped socket.
#[derive(Serialize, Deserialize)]
struct Stored {
    user: String,
    nsp: String,
    sid: String,
    rooms: Vec<String>,
}

/// The recovery log in Redis.
pub struct RedisRecovery {
    conn: RedisConn,
    names: Names,
    window: Duration,
    packets_per_room: usize,
}

impl RedisRecovery {
    /// A log keeping sessions for `window` and reading at most
    /// `packets_per_room` packets per room.
    pub fn new(conn: RedisConn, window: Duration, packets_per_room: usize) -> Self {
        RedisRecovery {
            names: Names::new(conn.prefix()),
            conn,
            window,
            packets_per_room: packets_per_room.max(1),
        }
    }

    fn pid_key(&self, pid: &str) -> String {
        self.conn.key(&format!("pid:{pid}"))
    }

    fn stream(&self, nsp: &str, room: &RoomName) -> String {
        self.names.stream(&RoomKey {
            nsp: nsp.to_owned(),
            room: room.clone(),
        })
    }

    /// Whether every room's log still holds everything above `offset`: one
    /// pipeline of `XINFO STREAM`, one round trip however many rooms.
    async fn complete(
        &self,
        nsp: &str,
        rooms: &[RoomName],
        offset: u64,
    ) -> redis::RedisResult<bool> {
        if rooms.is_empty() {
            return Ok(true);
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for room in rooms {
            pipe.cmd("XINFO").arg("STREAM").arg(self.stream(nsp, room));
        }
        let infos: Vec<redis::RedisResult<redis::Value>> =
            pipe.query_async(&mut self.conn.conn()).await?;
        for info in infos {
            let info = match info {
                Ok(v) => v,
                // No stream: nothing was broadcast there within the window.
                Err(e)
                    if e.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            if max_deleted(&info).is_some_and(|d| d > offset) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every logged packet of `rooms` above `offset`, in offset order, once
    /// each: one pipeline of `XRANGE`, one round trip however many rooms.
    async fn read_missed(
        &self,
        nsp: &str,
        rooms: &[RoomName],
        offset: u64,
    ) -> redis::RedisResult<Vec<(u64, Encoded)>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let start = format!("{}-0", offset.saturating_add(1));
        let mut pipe = redis::pipe();
        for room in rooms {
            pipe.cmd("XRANGE")
                .arg(self.stream(nsp, room))
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(self.packets_per_room);
        }
        let replies: Vec<StreamRangeReply> = pipe.query_async(&mut self.conn.conn()).await?;
        let mut missed = Vec::new();
        for reply in replies {
            for entry in reply.ids {
                let Some(o) = entry
                    .id
                    .split('-')
                    .next()
                    .and_then(|o| o.parse::<u64>().ok())
                else {
                    continue;
                };
                if let Some(redis::Value::BulkString(p)) = entry.map.get("p") {
                    missed.push((o, packet_from_log(Bytes::copy_from_slice(p))));
                }
            }
        }
        missed.sort_by_key(|(o, _)| *o);
        missed.dedup_by_key(|(o, _)| *o);
        Ok(missed)
    }
}

/// `max-deleted-entry-id` of an `XINFO STREAM` answer, as an offset.
fn max_deleted(info: &redis::Value) -> Option<u64> {
    let pairs: Vec<(&redis::Value, &redis::Value)> = match info {
        redis::Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        redis::Value::Array(a) => a
            .chunks(2)
            .filter_map(|c| Some((c.first()?, c.get(1)?)))
            .collect(),
        _ => return None,
    };
    pairs.into_iter().find_map(|(k, v)| {
        let k = match k {
            redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?,
            redis::Value::SimpleString(s) => s.as_str(),
            _ => return None,
        };
        if k != "max-deleted-entry-id" {
            return None;
        }
        let v = match v {
            redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.to_owned(),
            redis::Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        v.split('-').next()?.parse().ok()
    })
}

#[async_trait]
impl RecoveryLog for RedisRecovery {
    async fn save(&self, pid: String, snapshot: Snapshot) {
        let stored = Stored {
            user: snapshot.user_id.0,
            nsp: snapshot.nsp,
            sid: snapshot.sid,
            rooms: snapshot.rooms.into_iter().map(|r| r.0).collect(),
        };
        let Ok(json) = serde_json::to_string(&stored) else {
            return;
        };
        let mut c = self.conn.conn();
        let res: redis::RedisResult<()> = c
            .pset_ex(self.pid_key(&pid), json, self.window.as_millis() as u64)
            .await;
        if let Err(e) = res {
            log::warn!("recovery: cannot remember a dropped socket: {e}");
        }
    }

    async fn restore(
        &self,
        pid: &str,
        user: &UserId,
        nsp: &str,
        offset: u64,
    ) -> Option<(Snapshot, Vec<(u64, Encoded)>)> {
        let key = self.pid_key(pid);
        let mut c = self.conn.conn();
        let json: Option<String> = match c.get(&key).await {
            Ok(j) => j,
            Err(e) => {
                log::warn!("recovery: cannot read a dropped socket: {e}");
                return None;
            }
        };
        let stored: Stored = serde_json::from_str(&json?).ok()?;
        if stored.user != user.0 || stored.nsp != nsp {
            return None;
        }
        let rooms: Vec<RoomName> = stored.rooms.into_iter().map(RoomName).collect();
        match self.complete(nsp, &rooms, offset).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                log::warn!("recovery: cannot check the room logs: {e}");
                return None;
            }
        }
        // Taken once: of two reconnections with the same pid, one recovers.
        let taken: i64 = c.del(&key).await.ok()?;
        if taken != 1 {
            return None;
        }
        let missed = match self.read_missed(nsp, &rooms, offset).await {
            Ok(m) => m,
            Err(e) => {
                log::warn!("recovery: cannot read the room logs: {e}");
                return None;
            }
        };
        Some((
            Snapshot {
                user_id: user.clone(),
                nsp: stored.nsp,
                sid: stored.sid,
                rooms,
                at: Instant::now(),
            },
            missed,
        ))
    }

    async fn missed(&self, nsp: &str, rooms: &[RoomName], offset: u64) -> Vec<(u64, Encoded)> {
        self.read_missed(nsp, rooms, offset)
            .await
            .unwrap_or_else(|e| {
                log::warn!("recovery: cannot read the room logs: {e}");
                Vec::new()
            })
    }
}
