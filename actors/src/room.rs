//! A room: the set of connections that receive what is broadcast to one room
//! name in one namespace. Started by the [`Registry`](crate::registry) on the
//! first join; it stops when the registry drops its address after the last
//! member left (the registry is the only holder of a room's address, so the
//! room stops once its mailbox is drained).

use crate::encoded::Encoded;
use crate::metrics::Metrics;
use crate::outbox::{Delivery, Outbox};
use crate::registry::ConnId;
use actix::prelude::*;
use rustc_hash::FxBuildHasher;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Sent to a connection whose outbound queue overflowed while a room
/// delivered to it: the client is too slow and the connection closes it.
/// The outbox sends it (see [`Outbox::report_overflow_to`]).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct TooSlow;

/// How a room reaches one member: broadcasts go straight into the
/// connection's outbox (no hop through its actor's mailbox, so a delivery is
/// one lock and at most one wake of the transport, or a write of its own);
/// the actor hears only of an overflow, from the outbox. A membership is
/// one reference, however many rooms the connection is in.
#[derive(Clone)]
pub struct Member {
    pub outbox: Arc<Outbox>,
}

/// A connection joins.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enter {
    pub conn: ConnId,
    pub member: Member,
}

/// A connection leaves.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Exit {
    pub conn: ConnId,
}

/// A broadcast to every member (but `except`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub packet: Encoded,
    pub id: u64,
    pub except: Option<ConnId>,
    /// Its place in the node's [`Batch`], when deliveries are batched.
    pub pending: Option<Pending>,
}

/// Deliveries held back while more broadcasts wait for the rooms of this
/// node, then written out together: one system call per connection for a
/// burst, instead of one per delivery.
///
/// When deliveries write through to the sockets (`EngineConfig::write_through`,
/// a node on one CPU) every delivery is a `send` of its own on the rooms'
/// thread, however fast broadcasts come. Under a load that thread cannot
/// keep up with, broadcasts queue up in the rooms' mailboxes; a room that
/// knows others wait behind its broadcast only queues it
/// ([`Outbox::deliver_deferred`]) and the last broadcast of the burst
/// flushes every outbox it touched ([`Outbox::flush`]): a connection that
/// got five broadcasts meanwhile gets them in one `sendmsg`. A broadcast
/// with nothing waiting behind it is written through as before, so a node
/// under a load it keeps up with is unchanged. A burst that does not end is
/// flushed every [`FLUSH_EVERY`] held deliveries.
#[derive(Default)]
pub struct Batch {
    /// Publishes handed to rooms and not yet handled (or dropped).
    pending: AtomicUsize,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Outboxes owed a flush, each once.
    outboxes: Vec<Arc<Outbox>>,
    /// Deliveries held since the last flush.
    deliveries: usize,
}

/// Most deliveries held before a flush, however long the burst: at about a
/// microsecond each, a few milliseconds of work at the most.
pub const FLUSH_EVERY: usize = 4096;

impl Batch {
    /// A publish is on its way to a room; its token ends its place in the
    /// batch when dropped.
    pub fn enter(self: &Arc<Self>) -> Pending {
        self.pending.fetch_add(1, Ordering::AcqRel);
        Pending(self.clone())
    }

    /// Whether a broadcast should hold its deliveries back: others wait
    /// behind it, or earlier ones were held and are not yet flushed.
    fn defer(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 1 || lock(&self.held).deliveries > 0
    }

    /// Records what a room held back; flushes when that makes too many.
    fn held(&self, outboxes: impl IntoIterator<Item = Arc<Outbox>>, deliveries: usize) {
        let flush = {
            let mut held = lock(&self.held);
            held.outboxes.extend(outboxes);
            held.deliveries += deliveries;
            held.deliveries >= FLUSH_EVERY
        };
        if flush {
            self.flush();
        }
    }

    /// Writes out (or wakes the writers of) every outbox owed a flush.
    fn flush(&self) {
        let outboxes = {
            let mut held = lock(&self.held);
            held.deliveries = 0;
            std::mem::take(&mut held.outboxes)
        };
        for outbox in outboxes {
            outbox.flush();
        }
    }
}

fn lock(m: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A publish's place in the [`Batch`]: the last one to go flushes.
pub struct Pending(Arc<Batch>);

impl Drop for Pending {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.flush();
        }
    }
}

/// The room actor. Every room on a node is one (a user's own room too), so
/// it is kept small: its key lives in the registry alone, and its members'
/// map hashes with FxHash, which has no per-map state (the ids are the
/// node's own counter, not a client's). See the assertion below.
pub struct Room {
    members: HashMap<ConnId, Member, FxBuildHasher>,
    metrics: Arc<Metrics>,
}

impl Room {
    /// An empty room counting what it delivers in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Room {
            members: HashMap::default(),
            metrics,
        }
    }
}

// Every room is this actor's task: with actix's context (384 bytes of
// `ContextFut` at most, the room included) and tokio's header it fits
// jemalloc's 512-byte class, and takes the 640-byte one past that; the
// room was 104 bytes (its key and a `RandomState` map) and its task 640
// (checked with `RUSTC_BOOTSTRAP=1 cargo rustc -p huddle-actors --lib --
// -Zprint-type-sizes`).
const _: () = assert!(std::mem::size_of::<Room>() <= 48);

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
    }
}

impl Handler<Enter> for Room {
    type Result = ();
    fn handle(&mut self, msg: Enter, _: &mut Self::Context) {
        self.members.insert(msg.conn, msg.member);
    }
}

impl Handler<Exit> for Room {
    type Result = ();
    fn handle(&mut self, msg: Exit, _: &mut Self::Context) {
        self.members.remove(&msg.conn);
    }
}

impl Handler<Publish> for Room {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Self::Context) {
        let mut queued = 0;
        let batch = msg.pending.as_ref().map(|p| &p.0).filter(|b| b.defer());
        let mut owed = Vec::new();
        for (conn, member) in &self.members {
            if Some(*conn) == msg.except {
                continue;
            }
            // An overflow is reported to the connection by the outbox.
            let delivery = if batch.is_some() {
                let (delivery, newly_owed) = member.outbox.deliver_deferred(&msg.packet, msg.id);
                if newly_owed {
                    owed.push(member.outbox.clone());
                }
                delivery
            } else {
                member.outbox.deliver(&msg.packet, msg.id)
            };
            if delivery == Delivery::Queued {
                queued += 1;
            }
        }
        if let Some(batch) = batch {
            batch.held(owed, queued as usize);
            self.metrics.deliveries_held(queued);
        }
        if queued > 0 {
            self.metrics
                .packets_out(queued, queued as usize * msg.packet.ws_len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoded::Frame;
    use crate::outbox::tests::{read_exactly, sleeping_writer};

    fn packet(i: usize) -> Encoded {
        Encoded::single(Frame::text(format!("4{i:04}").as_bytes()))
    }

    /// What `packet(from..to)` look like on the wire, in order.
    fn wire(range: std::ops::Range<usize>) -> Vec<u8> {
        range
            .flat_map(|i| packet(i).frames().next().unwrap().ws_bytes().to_vec())
            .collect()
    }

    #[actix::test]
    async fn a_burst_is_held_back_until_its_last_broadcast_then_written_together() {
        // A member whose WebSocket writer sleeps with nothing in hand.
        let (outbox, _server, mut client, _waker, _woken) = sleeping_writer(2 * FLUSH_EVERY).await;
        let outbox = Arc::new(outbox);
        let room = Room::new(Arc::default()).start();
        let member = Member {
            outbox: outbox.clone(),
        };
        room.send(Enter {
            conn: ConnId(1),
            member,
        })
        .await
        .unwrap();
        let batch = Arc::new(Batch::default());
        let publish = |i: usize| Publish {
            packet: packet(i),
            id: i as u64,
            except: None,
            pending: Some(batch.enter()),
        };

        // Three broadcasts with another still on its way: held back.
        let last = batch.enter();
        for i in 0..3 {
            room.send(publish(i)).await.unwrap();
        }
        assert_eq!(outbox.len(), 3);
        // The last one of the burst is done: all three leave.
        drop(last);
        assert_eq!(outbox.len(), 0);
        assert_eq!(
            read_exactly(&mut client, wire(0..3).len()).await,
            wire(0..3)
        );

        // Nothing behind a broadcast: written through at once.
        room.send(publish(3)).await.unwrap();
        assert_eq!(outbox.len(), 0);
        assert_eq!(
            read_exactly(&mut client, wire(3..4).len()).await,
            wire(3..4)
        );

        // A burst that does not end is flushed every FLUSH_EVERY deliveries.
        let endless = batch.enter();
        for i in 4..4 + FLUSH_EVERY - 1 {
            room.send(publish(i)).await.unwrap();
        }
        assert_eq!(outbox.len(), FLUSH_EVERY - 1);
        room.send(publish(4 + FLUSH_EVERY - 1)).await.unwrap();
        assert_eq!(outbox.len(), 0);
        let all = wire(4..4 + FLUSH_EVERY);
        assert!(read_exactly(&mut client, all.len()).await == all);
        drop(endless);
    }
}
