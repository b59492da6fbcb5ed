//! The room registry: one per node. It starts a [`Room`] actor on the first
//! join and stops it when its last member leaves, and routes broadcasts to the
//! rooms named. Joins, leaves and broadcasts all pass through it, so for any
//! room they keep the order in which they were sent: a socket that has joined
//! receives every broadcast sent after its join returned.
//!
//! Senders: connection actors (join, leave, leave-all on stop), the engine
//! (broadcasts from handlers and the HTTP API, on a single node) and the bus
//! between nodes (every broadcast, once it has its offset, in a cluster).
//!
//! In a cluster it tells the [`Bus`](crate::cluster::Bus) when the node gets
//! its first member in a room and when its last one leaves, so the node
//! listens only to the rooms it has members in; a join that starts a room
//! answers once the bus listens to it, so a client that joined receives what
//! any node broadcasts after its join returned.

use crate::encoded::Encoded;
use crate::engine::BusSlot;
use crate::ids::RoomKey;
use crate::metrics::Metrics;
use crate::room::{Batch, Enter, Exit, Member, Publish, Room};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// A connection's id on this node (room membership is per connection: a
/// connection has at most one socket per namespace, and room keys carry the
/// namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

struct RoomEntry {
    addr: Addr<Room>,
    members: usize,
}

/// How long a join waits for the bus to listen to a new room before it
/// answers anyway (the bus keeps trying; delivery from other nodes starts
/// when it succeeds).
const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The registry actor.
pub struct Registry {
    rooms: HashMap<RoomKey, RoomEntry>,
    bus: BusSlot,
    metrics: Arc<Metrics>,
    /// Batches the rooms' deliveries under load (when they write through).
    batch: Option<Arc<Batch>>,
}

impl Registry {
    /// An empty registry that tells the bus in `bus` (once there is one)
    /// which rooms this node has; its rooms count deliveries in `metrics`.
    pub fn new(bus: BusSlot, metrics: Arc<Metrics>) -> Self {
        Registry {
            rooms: HashMap::new(),
            bus,
            metrics,
            batch: None,
        }
    }

    /// Lets the rooms hold deliveries back while more broadcasts wait for
    /// them and write them out together (see [`Batch`]); for a node whose
    /// deliveries write through to the sockets.
    pub fn batching(mut self) -> Self {
        self.batch = Some(Arc::default());
        self
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Broadcast bursts from many connections land here; do not make
        // senders wait on a small default mailbox.
        ctx.set_mailbox_capacity(65_536);
    }
}

/// Adds a connection to rooms, starting the rooms that do not exist yet.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub conn: ConnId,
    pub keys: Vec<RoomKey>,
    pub member: Member,
}

/// Removes a connection from rooms; empty rooms stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub conn: ConnId,
    pub keys: Vec<RoomKey>,
}

/// Sends an encoded packet to every member of the rooms named.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast {
    pub keys: Vec<RoomKey>,
    pub packet: Encoded,
    /// Broadcast id: a connection in several of the rooms keeps one copy.
    pub id: u64,
    /// A connection that must not receive it (the sender of a typing event).
    pub except: Option<crate::registry::ConnId>,
}

/// How many rooms are running (for `/metrics` and tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RoomCount;

/// Members of one room (for tests and diagnostics).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct MemberCount(pub RoomKey);

impl Handler<Join> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Join, _: &mut Self::Context) -> Self::Result {
        let bus = self.bus.get();
        let mut listening = Vec::new();
        for key in msg.keys {
            let enter = Enter {
                conn: msg.conn,
                member: msg.member.clone(),
            };
            // Most joins are to a room that exists: one lookup, no copy of
            // the key.
            if let Some(entry) = self.rooms.get_mut(&key) {
                entry.members += 1;
                entry.addr.do_send(enter);
                continue;
            }
            if let Some(bus) = bus {
                listening.push(bus.room_started(&key));
            }
            log::trace!("room {key} started");
            let addr = Room::new(self.metrics.clone()).start();
            addr.do_send(enter);
            self.rooms.insert(key, RoomEntry { addr, members: 1 });
        }
        Box::pin(async move {
            if !listening.is_empty() {
                let all = futures_util::future::join_all(listening);
                if tokio::time::timeout(SUBSCRIBE_WAIT, all).await.is_err() {
                    log::warn!("the bus did not confirm listening to new rooms in time");
                }
            }
        })
    }
}

impl Handler<Leave> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Self::Context) {
        for key in msg.keys {
            if let Some(entry) = self.rooms.get_mut(&key) {
                entry.addr.do_send(Exit { conn: msg.conn });
                entry.members = entry.members.saturating_sub(1);
                if entry.members == 0 {
                    // The room's mailbox gets Exit first, then the end of its
                    // sender: it stops once drained. A later join starts a
                    // fresh room.
                    self.rooms.remove(&key);
                    log::trace!("room {key} stops once its mailbox is drained");
                    if let Some(bus) = self.bus.get() {
                        bus.room_stopped(&key);
                    }
                }
            }
        }
    }
}

impl Handler<Broadcast> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Broadcast, _: &mut Self::Context) {
        let last = msg.keys.len().saturating_sub(1);
        let mut packet = Some(msg.packet);
        for (i, key) in msg.keys.iter().enumerate() {
            if let Some(entry) = self.rooms.get(key) {
                let p = if i == last {
                    packet.take()
                } else {
                    packet.clone()
                };
                if let Some(p) = p {
                    entry.addr.do_send(Publish {
                        packet: p,
                        id: msg.id,
                        except: msg.except,
                        pending: self.batch.as_ref().map(Batch::enter),
                    });
                }
            }
        }
    }
}

impl Handler<RoomCount> for Registry {
    type Result = usize;

    fn handle(&mut self, _: RoomCount, _: &mut Self::Context) -> usize {
        self.rooms.len()
    }
}

impl Handler<MemberCount> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: MemberCount, _: &mut Self::Context) -> usize {
        self.rooms.get(&msg.0).map_or(0, |e| e.members)
    }
}
