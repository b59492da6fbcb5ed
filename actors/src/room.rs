//! A room: the set of connections that receive what is broadcast to one room
//! name in one namespace. Started by the [`Registry`](crate::registry) on the
//! first join; it stops when the registry drops its address after the last
//! member left (the registry is the only holder of a room's address, so the
//! room stops once its mailbox is drained).

use crate::encoded::Encoded;
use crate::ids::RoomKey;
use crate::metrics::Metrics;
use crate::outbox::{Delivery, Outbox};
use crate::registry::ConnId;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

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
}

/// The room actor.
pub struct Room {
    key: RoomKey,
    members: HashMap<ConnId, Member>,
    metrics: Arc<Metrics>,
}

impl Room {
    /// An empty room counting what it delivers in `metrics`.
    pub fn new(key: RoomKey, metrics: Arc<Metrics>) -> Self {
        Room {
            key,
            members: HashMap::new(),
            metrics,
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
        log::trace!("room {} started", self.key);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        log::trace!("room {} stopped", self.key);
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
        for (conn, member) in &self.members {
            if Some(*conn) == msg.except {
                continue;
            }
            // An overflow is reported to the connection by the outbox.
            if member.outbox.deliver(&msg.packet, msg.id) == Delivery::Queued {
                queued += 1;
            }
        }
        if queued > 0 {
            self.metrics
                .packets_out(queued, queued as usize * msg.packet.ws_len());
        }
    }
}
