//! Per-user connection slots and presence across nodes: the Redis
//! implementation of the core's [`ConnectionSlots`] port.
//!
//! Keys (under the prefix):
//! - `slots:{user}`: a set of `{node}|{slot}`, one per open connection of the
//!   user anywhere (a slot is an Engine.IO session id);
//! - `node:{node}`: this node is alive (refreshed every `beat`, expiring
//!   after `node_ttl`); `nodes`: the set of nodes that registered;
//! - `nodeslots:{node}`: a set of `{user}|{slot}`, the node's connections,
//!   so the slots of a node that died can be found;
//! - `online:{user}`: the user was announced online.
//!
//! Counting skips (and removes) slots of nodes that are no longer alive, so
//! the connection limit never counts a dead node's connections. Every node
//! runs a reaper each `beat`: a node in `nodes` whose `node:` key expired is
//! reaped by exactly one of them (an atomic `SREM` decides), which removes its
//! slots and reports the users left with none, who then go offline after the
//! usual grace. A user of a node that crashed is therefore announced offline
//! within `node_ttl + beat + offline grace` (4 s + 1 s + 5 s by default).
//!
//! When Redis cannot be reached, a connection is let in (the limit is not
//! enforced) and presence is not announced; the node keeps its own slots and
//! registers them again when its `node:` key has to be recreated.

use crate::cluster::conn::RedisConn;
use actix::ArbiterHandle;
use async_trait::async_trait;
use huddle_actors::cluster::{ConnectionSlots, SlotRefused};
use huddle_actors::engine::WeakEngine;
use huddle_actors::ids::UserId;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts the user's live slots (removing dead ones) and, when `ARGV[2]` is
/// not empty, adds one unless at the limit (`-1`).
/// KEYS: user slots, node slots. ARGV: node-key prefix, member to add (or
/// ''), max (0: none), node-index entry.
const ACQUIRE_LUA: &str = r#"
local live = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local node = string.match(m, '^([^|]*)|')
  if node and redis.call('EXISTS', ARGV[1] .. node) == 1 then
    live = live + 1
  else
    redis.call('SREM', KEYS[1], m)
  end
end
if ARGV[2] == '' then return live end
local max = tonumber(ARGV[3])
if max > 0 and live >= max then return -1 end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
return live + 1
"#;

/// Removes one slot; returns the user's remaining slots.
/// KEYS: user slots, node slots. ARGV: member, node-index entry.
const RELEASE_LUA: &str = r#"
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
return redis.call('SCARD', KEYS[1])
"#;

/// Marks the user offline when they hold no live slot.
/// KEYS: user slots, online flag. ARGV: node-key prefix.
const OFFLINE_LUA: &str = r#"
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local node = string.match(m, '^([^|]*)|')
  if node and redis.call('EXISTS', ARGV[1] .. node) == 1 then return 0 end
end
return redis.call('DEL', KEYS[2])
"#;

/// Reaps a dead node: returns the users left without slots, or nothing when
/// another node reaped it first.
/// KEYS: nodes set, node slots. ARGV: node, user-slots key prefix.
const REAP_LUA: &str = r#"
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return {} end
local gone = {}
for _, e in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local user, slot = string.match(e, '^(.*)|([^|]*)$')
  if user then
    local key = ARGV[2] .. user
    if redis.call('SREM', key, ARGV[1] .. '|' .. slot) == 1 and redis.call('SCARD', key) == 0 then
      table.insert(gone, user)
    end
  end
end
redis.call('DEL', KEYS[2])
return gone
"#;

/// Timing of the liveness of nodes.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// How often a node refreshes its key and looks for dead nodes.
    pub beat: Duration,
    /// How long a node's key lives without a refresh.
    pub node_ttl: Duration,
}

/// Connection slots in Redis.
pub struct RedisSlots {
    conn: RedisConn,
    node: String,
    acquire: redis::Script,
    release: redis::Script,
    offline: redis::Script,
    /// This node's slots (slot → user), registered again if Redis lost them.
    mine: Mutex<HashMap<String, UserId>>,
    /// Warned about Redis being unreachable at (rate-limits the warning).
    warned: Mutex<Option<Instant>>,
}

impl RedisSlots {
    /// Slots of node `node`; call [`RedisSlots::run`] to keep it alive.
    pub fn new(conn: RedisConn, node: &str) -> Arc<Self> {
        Arc::new(RedisSlots {
            conn,
            node: node.to_owned(),
            acquire: redis::Script::new(ACQUIRE_LUA),
            release: redis::Script::new(RELEASE_LUA),
            offline: redis::Script::new(OFFLINE_LUA),
            mine: Mutex::new(HashMap::new()),
            warned: Mutex::new(None),
        })
    }

    fn mine(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserId>> {
        self.mine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn user_key(&self, user: &UserId) -> String {
        self.conn.key(&format!("slots:{}", user.0))
    }

    fn node_key_prefix(&self) -> String {
        self.conn.key("node:")
    }

    fn node_slots(&self, node: &str) -> String {
        self.conn.key(&format!("nodeslots:{node}"))
    }

    fn warn(&self, what: &str, e: &redis::RedisError) {
        let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            log::warn!("presence: {what}: {e} (connection limits and presence are per node until Redis is back)");
            *w = Some(Instant::now());
        }
    }

    /// Refreshes this node's key; registers the node (and its slots, if the
    /// key had expired) when needed. Start-up calls it once before the node
    /// serves anyone, so its first slots count.
    pub async fn beat(&self, ttl: Duration) -> redis::RedisResult<()> {
        let mut c = self.conn.conn();
        let key = format!("{}{}", self.node_key_prefix(), self.node);
        // `SET ... GET` answers the old value: none means the key was gone
        // (first beat, Redis restarted, or this node stalled past its TTL).
        let old: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg("1")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .arg("GET")
            .query_async(&mut c)
            .await?;
        if old.is_none() {
            let mine: Vec<(String, UserId)> = self
                .mine()
                .iter()
                .map(|(s, u)| (s.clone(), u.clone()))
                .collect();
            let mut pipe = redis::pipe();
            pipe.sadd(self.conn.key("nodes"), &self.node).ignore();
            for (slot, user) in &mine {
                pipe.sadd(self.user_key(user), format!("{}|{slot}", self.node))
                    .ignore();
                pipe.sadd(self.node_slots(&self.node), format!("{}|{slot}", user.0))
                    .ignore();
            }
            pipe.query_async::<()>(&mut c).await?;
            if !mine.is_empty() {
                log::info!(
                    "presence: registered this node's {} connections again",
                    mine.len()
                );
            }
        }
        Ok(())
    }

    /// Reaps nodes whose key expired; returns users left with no slot.
    async fn reap(&self) -> redis::RedisResult<Vec<UserId>> {
        let mut c = self.conn.conn();
        let nodes: Vec<String> = c.smembers(self.conn.key("nodes")).await?;
        let mut gone = Vec::new();
        for node in nodes {
            if node == self.node {
                continue;
            }
            let alive: bool = c
                .exists(format!("{}{node}", self.node_key_prefix()))
                .await?;
            if alive {
                continue;
            }
            let users: Vec<String> = redis::Script::new(REAP_LUA)
                .key(self.conn.key("nodes"))
                .key(self.node_slots(&node))
                .arg(&node)
                .arg(self.conn.key("slots:"))
                .invoke_async(&mut c)
                .await?;
            log::info!(
                "presence: node {node} stopped answering; {} users lost their last connection",
                users.len()
            );
            gone.extend(users.into_iter().map(UserId));
        }
        Ok(gone)
    }

    /// Keeps this node alive in Redis and reaps dead nodes, every
    /// `liveness.beat`, until the engine is gone. Runs on the node's Redis
    /// thread, so a busy main thread does not make the node look dead; users
    /// of reaped nodes go through the engine's presence hook on `home` (the
    /// node's main arbiter).
    pub async fn run(self: Arc<Self>, liveness: Liveness, engine: WeakEngine, home: ArbiterHandle) {
        let mut tick = tokio::time::interval(liveness.beat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            if let Err(e) = self.beat(liveness.node_ttl).await {
                self.warn("cannot refresh this node's liveness", &e);
                continue;
            }
            match self.reap().await {
                Ok(users) if !users.is_empty() => {
                    home.spawn_fn(move || {
                        for u in users {
                            engine.connections_lost(&u);
                        }
                    });
                }
                Ok(_) => {}
                Err(e) => self.warn("cannot look for stopped nodes", &e),
            }
        }
    }
}

#[async_trait]
impl ConnectionSlots for RedisSlots {
    async fn acquire(&self, user: &UserId, slot: &str, max: usize) -> Result<usize, SlotRefused> {
        let mut c = self.conn.conn();
        let res: redis::RedisResult<i64> = self
            .acquire
            .key(self.user_key(user))
            .key(self.node_slots(&self.node))
            .arg(self.node_key_prefix())
            .arg(format!("{}|{slot}", self.node))
            .arg(max)
            .arg(format!("{}|{slot}", user.0))
            .invoke_async(&mut c)
            .await;
        match res {
            Ok(-1) => Err(SlotRefused::Full),
            Ok(n) => {
                self.mine().insert(slot.to_owned(), user.clone());
                Ok(n.max(0) as usize)
            }
            Err(e) => {
                self.warn("cannot count connections", &e);
                self.mine().insert(slot.to_owned(), user.clone());
                Ok(0)
            }
        }
    }

    async fn release(&self, user: &UserId, slot: &str) -> Option<usize> {
        self.mine().remove(slot);
        let mut c = self.conn.conn();
        let res: redis::RedisResult<i64> = self
            .release
            .key(self.user_key(user))
            .key(self.node_slots(&self.node))
            .arg(format!("{}|{slot}", self.node))
            .arg(format!("{}|{slot}", user.0))
            .invoke_async(&mut c)
            .await;
        match res {
            Ok(n) => Some(n.max(0) as usize),
            Err(e) => {
                self.warn("cannot release a connection", &e);
                None
            }
        }
    }

    async fn count(&self, user: &UserId) -> Option<usize> {
        let mut c = self.conn.conn();
        let res: redis::RedisResult<i64> = self
            .acquire
            .key(self.user_key(user))
            .key(self.node_slots(&self.node))
            .arg(self.node_key_prefix())
            .arg("")
            .arg(0)
            .arg("")
            .invoke_async(&mut c)
            .await;
        res.ok().map(|n| n.max(0) as usize)
    }

    async fn mark_online(&self, user: &UserId) -> bool {
        let mut c = self.conn.conn();
        let res: redis::RedisResult<bool> = c
            .set_nx(self.conn.key(&format!("online:{}", user.0)), 1)
            .await;
        res.unwrap_or(false)
    }

    async fn mark_offline_if_gone(&self, user: &UserId) -> bool {
        let mut c = self.conn.conn();
        let res: redis::RedisResult<i64> = self
            .offline
            .key(self.user_key(user))
            .key(self.conn.key(&format!("online:{}", user.0)))
            .arg(self.node_key_prefix())
            .invoke_async(&mut c)
            .await;
        res.is_ok_and(|n| n == 1)
    }
}
