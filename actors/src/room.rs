//! A room: the set of connections that receive what is broadcast to one room
//! name in one namespace. Started by the [`Registry`](crate::registry) on the
//! first join; it stops when the registry drops its address after the last
//! member left (the registry is the only holder of a room's address, so the
//! room stops once its mailbox is drained).

use crate::encoded::Encoded;
use crate::ids::RoomKey;
use crate::registry::ConnId;
use actix::prelude::*;
use std::collections::HashMap;

/// Delivered to each member connection: the shared bytes of one broadcast.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    pub packet: Encoded,
    /// Broadcast id, for de-duplication across rooms.
    pub id: u64,
}

/// A connection joins.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enter {
    pub conn: ConnId,
    pub recipient: Recipient<Deliver>,
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
    members: HashMap<ConnId, Recipient<Deliver>>,
}

impl Room {
    /// An empty room.
    pub fn new(key: RoomKey) -> Self {
        Room {
            key,
            members: HashMap::new(),
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
        self.members.insert(msg.conn, msg.recipient);
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
        for (conn, recipient) in &self.members {
            if Some(*conn) == msg.except {
                continue;
            }
            // The connection's mailbox only moves the packet into its bounded
            // outbox, where a client that falls behind is caught.
            recipient.do_send(Deliver {
                packet: msg.packet.clone(),
                id: msg.id,
            });
        }
    }
}
