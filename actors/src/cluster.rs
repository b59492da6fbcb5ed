//! The ports that make several nodes one cluster, and their single-node
//! implementations.
//!
//! The engine works the same on one node and on many; what differs is behind
//! these traits, which `src/cluster/` implements with Redis:
//!
//! - [`Bus`]: carries broadcasts between nodes. The engine hands it every
//!   broadcast; the bus gives it its recovery offset, logs it, delivers it to
//!   this node's rooms (in order) and to the nodes that have members in its
//!   rooms. The registry tells it which rooms this node has, so it listens
//!   only to those. It also carries [`Signal`]s to every node.
//! - [`ConnectionSlots`]: per-user connection counts, for the connection
//!   limit and for presence (online on the first connection anywhere,
//!   offline after the last one).
//! - [`RecoveryLog`]: remembered sockets and the packets they missed, so a
//!   client recovers on whichever node it reconnects to.
//!
//! Without a bus the engine delivers to its own registry, and the local
//! [`LocalSlots`] and [`Recovery`](crate::recovery::Recovery) keep the state.

use crate::encoded::Encoded;
use crate::ids::{RoomKey, RoomName, UserId, WorkspaceId};
use crate::recovery::Snapshot;
use crate::registry::ConnId;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// A broadcast leaving the engine, not yet given its offset.
#[derive(Clone, Debug)]
pub struct OutgoingBroadcast {
    /// Namespace of the rooms.
    pub nsp: String,
    /// Rooms it goes to (a socket in several gets it once).
    pub rooms: Vec<RoomName>,
    /// A connection of this node that must not receive it.
    pub except: Option<ConnId>,
    /// The Engine.IO text of the event packet without its closing `]`
    /// (`42/chat,["new_message",{...}`), so the offset can be appended as
    /// the last argument once it is known: `head + ,"<offset>"]`.
    pub head: Bytes,
}

impl OutgoingBroadcast {
    /// The packet text with `offset` as its last argument (or none).
    pub fn packet_text(&self, offset: Option<u64>) -> Vec<u8> {
        let mut text = Vec::with_capacity(self.head.len() + 24);
        text.extend_from_slice(&self.head);
        if let Some(o) = offset {
            text.extend_from_slice(b",\"");
            text.extend_from_slice(o.to_string().as_bytes());
            text.push(b'"');
        }
        text.push(b']');
        text
    }

    /// The room keys this broadcast names.
    pub fn keys(&self) -> Vec<RoomKey> {
        self.rooms
            .iter()
            .map(|r| RoomKey {
                nsp: self.nsp.clone(),
                room: r.clone(),
            })
            .collect()
    }
}

/// Something every node must hear of, whichever node it happened on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    /// A member's role changed (or they were added): cached memberships of
    /// the workspace must forget them.
    MemberChanged {
        workspace: WorkspaceId,
        user: UserId,
    },
    /// A member was removed: their sockets leave the workspace's rooms.
    MemberRemoved {
        workspace: WorkspaceId,
        user: UserId,
    },
}

/// Told of [`Signal`]s that other nodes sent.
pub trait SignalListener: Send + Sync + 'static {
    /// A signal from another node arrived.
    fn on_signal(&self, signal: Signal);
}

/// Carries broadcasts and signals between nodes.
pub trait Bus: Send + Sync + 'static {
    /// Takes a broadcast: gives it its offset, logs it for recovery, and
    /// delivers it to this node's registry (keeping the order in which
    /// broadcasts were handed over) and to every other node with members in
    /// its rooms. When the other nodes cannot be reached it still delivers
    /// here, without an offset.
    fn broadcast(&self, broadcast: OutgoingBroadcast);

    /// This node now has a member in `key`: listen to the room's traffic
    /// from other nodes. Resolves once listening (or once it is known that
    /// it cannot listen now; it will when the bus is back).
    fn room_started(&self, key: &RoomKey) -> BoxFuture<'static, ()>;

    /// This node no longer has members in `key`.
    fn room_stopped(&self, key: &RoomKey);

    /// Sends `signal` to every other node.
    fn signal(&self, signal: Signal);
}

/// Why a connection slot was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefused {
    /// The user is at the limit.
    Full,
}

/// Per-user connection slots, counted across every node.
#[async_trait]
pub trait ConnectionSlots: Send + Sync + 'static {
    /// Takes a slot named `slot` (unique in the cluster) for `user` unless
    /// they hold `max` already (`max` 0: no limit). Returns the user's count
    /// with it, or 0 when the count is unknown (the shared state cannot be
    /// reached: the slot is given, presence is not announced).
    async fn acquire(&self, user: &UserId, slot: &str, max: usize) -> Result<usize, SlotRefused>;

    /// Gives a slot back; returns how many the user still holds, or `None`
    /// when unknown.
    async fn release(&self, user: &UserId, slot: &str) -> Option<usize>;

    /// Slots the user holds now (`None`: unknown).
    async fn count(&self, user: &UserId) -> Option<usize>;

    /// Marks the user online; `true` when they were not (announce it).
    async fn mark_online(&self, user: &UserId) -> bool;

    /// Marks the user offline if they hold no slot; `true` when they were
    /// online and are now offline (announce it). Exactly one caller in the
    /// cluster gets `true` for one going-offline.
    async fn mark_offline_if_gone(&self, user: &UserId) -> bool;
}

/// The remembered sockets and missed packets, for connection state recovery.
#[async_trait]
pub trait RecoveryLog: Send + Sync + 'static {
    /// Remembers a socket that dropped, under its private id.
    async fn save(&self, pid: String, snapshot: Snapshot);

    /// Takes the socket remembered under `pid` when it belongs to `user` in
    /// `nsp` and is still within the window, with every packet of its rooms
    /// above `offset`, in offset order. `None` when recovery is impossible.
    async fn restore(
        &self,
        pid: &str,
        user: &UserId,
        nsp: &str,
        offset: u64,
    ) -> Option<(Snapshot, Vec<(u64, Encoded)>)>;

    /// Every logged packet of `rooms` above `offset`, in offset order.
    async fn missed(&self, nsp: &str, rooms: &[RoomName], offset: u64) -> Vec<(u64, Encoded)>;
}

/// Connection slots of a single node.
#[derive(Default)]
pub struct LocalSlots {
    state: Mutex<LocalSlotState>,
}

#[derive(Default)]
struct LocalSlotState {
    slots: HashMap<UserId, usize>,
    online: std::collections::HashSet<UserId>,
}

impl LocalSlots {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalSlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ConnectionSlots for LocalSlots {
    async fn acquire(&self, user: &UserId, _slot: &str, max: usize) -> Result<usize, SlotRefused> {
        let mut s = self.lock();
        let n = s.slots.entry(user.clone()).or_insert(0);
        if max != 0 && *n >= max {
            return Err(SlotRefused::Full);
        }
        *n += 1;
        Ok(*n)
    }

    async fn release(&self, user: &UserId, _slot: &str) -> Option<usize> {
        let mut s = self.lock();
        let n = s.slots.get_mut(user)?;
        *n = n.saturating_sub(1);
        let left = *n;
        if left == 0 {
            s.slots.remove(user);
        }
        Some(left)
    }

    async fn count(&self, user: &UserId) -> Option<usize> {
        Some(self.lock().slots.get(user).copied().unwrap_or(0))
    }

    async fn mark_online(&self, user: &UserId) -> bool {
        self.lock().online.insert(user.clone())
    }

    async fn mark_offline_if_gone(&self, user: &UserId) -> bool {
        let mut s = self.lock();
        if s.slots.get(user).copied().unwrap_or(0) > 0 {
            return false;
        }
        s.online.remove(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn local_slots_count_limit_and_presence_transitions() {
        let s = LocalSlots::default();
        let u = UserId::from("u1");
        assert_eq!(s.acquire(&u, "a", 2).await, Ok(1));
        assert_eq!(s.acquire(&u, "b", 2).await, Ok(2));
        assert_eq!(s.acquire(&u, "c", 2).await, Err(SlotRefused::Full));
        assert!(s.mark_online(&u).await);
        assert!(!s.mark_online(&u).await);
        assert_eq!(s.release(&u, "a").await, Some(1));
        assert!(!s.mark_offline_if_gone(&u).await, "still one connection");
        assert_eq!(s.release(&u, "b").await, Some(0));
        assert!(s.mark_offline_if_gone(&u).await);
        assert!(!s.mark_offline_if_gone(&u).await, "announced once");
    }

    #[test]
    fn packet_text_appends_the_offset_as_last_argument() {
        let b = OutgoingBroadcast {
            nsp: "/chat".into(),
            rooms: vec![],
            except: None,
            head: Bytes::from_static(b"42/chat,[\"e\",{\"a\":1}"),
        };
        assert_eq!(b.packet_text(Some(7)), b"42/chat,[\"e\",{\"a\":1},\"7\"]");
        assert_eq!(b.packet_text(None), b"42/chat,[\"e\",{\"a\":1}]");
    }
}
