//! Connection state recovery on this node.
//!
//! Every broadcast carries an offset (a node-wide increasing number, sent as
//! the packet's last argument, as Socket.IO does) and is kept per room for
//! the recovery window. When a socket goes away without meaning to (transport
//! closed, ping timeout), its rooms are remembered under its private id
//! (`pid`). A client that reconnects within the window with `{ pid, offset }`
//! gets its old socket id, its rooms, and every packet of those rooms with an
//! offset above the one it last saw, in order.
//!
//! Memory is bounded: at most `packets_per_room` packets per room, and
//! everything older than the window is swept.

use crate::encoded::Encoded;
use crate::ids::{RoomKey, RoomName, UserId};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is remembered of a socket that dropped.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub user_id: UserId,
    pub nsp: String,
    pub sid: String,
    pub rooms: Vec<RoomName>,
    pub at: Instant,
}

#[derive(Default)]
struct RoomLog {
    packets: VecDeque<(u64, Instant, Encoded)>,
    /// Highest offset dropped for lack of space (recovery from below it is
    /// impossible).
    dropped_upto: u64,
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomKey, RoomLog>,
    sessions: HashMap<String, Snapshot>,
}

/// Every logged packet of `rooms` above `offset`, in offset order, once each.
fn collect(s: &State, nsp: &str, rooms: &[RoomName], offset: u64) -> Vec<(u64, Encoded)> {
    let mut missed = Vec::new();
    for room in rooms {
        let key = RoomKey {
            nsp: nsp.to_owned(),
            room: room.clone(),
        };
        if let Some(log) = s.rooms.get(&key) {
            missed.extend(
                log.packets
                    .iter()
                    .filter(|(o, _, _)| *o > offset)
                    .map(|(o, _, p)| (*o, p.clone())),
            );
        }
    }
    missed.sort_by_key(|(o, _)| *o);
    missed.dedup_by_key(|(o, _)| *o);
    missed
}

/// The node's recovery log.
pub struct Recovery {
    window: Duration,
    packets_per_room: usize,
    state: Mutex<State>,
}

impl Recovery {
    /// A log keeping packets for `window`, at most `packets_per_room` per room.
    pub fn new(window: Duration, packets_per_room: usize) -> Self {
        Recovery {
            window,
            packets_per_room: packets_per_room.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a broadcast with `offset` to `rooms` of `nsp`.
    pub fn record(&self, nsp: &str, rooms: &[RoomName], offset: u64, packet: &Encoded) {
        let now = Instant::now();
        let mut s = self.lock();
        for room in rooms {
            let key = RoomKey {
                nsp: nsp.to_owned(),
                room: room.clone(),
            };
            let log = s.rooms.entry(key).or_default();
            log.packets.push_back((offset, now, packet.clone()));
            while log.packets.len() > self.packets_per_room {
                if let Some((o, _, _)) = log.packets.pop_front() {
                    log.dropped_upto = log.dropped_upto.max(o);
                }
            }
        }
    }

    /// Remembers a socket that dropped.
    pub fn save(&self, pid: String, snapshot: Snapshot) {
        self.lock().sessions.insert(pid, snapshot);
    }

    /// Takes the session for `pid` when it belongs to `user` in `nsp` and is
    /// still within the window, with every packet of its rooms above `offset`,
    /// in offset order. `None` when recovery is not possible (unknown or
    /// expired session, or packets already dropped).
    pub fn restore(
        &self,
        pid: &str,
        user: &UserId,
        nsp: &str,
        offset: u64,
    ) -> Option<(Snapshot, Vec<(u64, Encoded)>)> {
        let now = Instant::now();
        let mut s = self.lock();
        let snap = s.sessions.get(pid)?;
        if &snap.user_id != user || snap.nsp != nsp || now.duration_since(snap.at) > self.window {
            return None;
        }
        let complete = snap.rooms.iter().all(|room| {
            s.rooms
                .get(&RoomKey {
                    nsp: nsp.to_owned(),
                    room: room.clone(),
                })
                .is_none_or(|log| log.dropped_upto <= offset)
        });
        if !complete {
            return None;
        }
        let snap = s.sessions.remove(pid)?;
        let missed = collect(&s, nsp, &snap.rooms, offset);
        Some((snap, missed))
    }

    /// Every packet of `rooms` in `nsp` with an offset above `offset`, in
    /// offset order (no session check: the caller already restored one).
    pub fn missed(&self, nsp: &str, rooms: &[RoomName], offset: u64) -> Vec<(u64, Encoded)> {
        collect(&self.lock(), nsp, rooms, offset)
    }

    /// Drops expired packets and sessions; called periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let window = self.window;
        let mut s = self.lock();
        s.sessions
            .retain(|_, snap| now.duration_since(snap.at) <= window);
        s.rooms.retain(|_, log| {
            while let Some((o, t, _)) = log.packets.front() {
                if now.duration_since(*t) > window {
                    log.dropped_upto = log.dropped_upto.max(*o);
                    log.packets.pop_front();
                } else {
                    break;
                }
            }
            // An empty log with nothing dropped recently can go; one that
            // dropped packets must stay to refuse recovery from below them
            // until every session that could ask has expired.
            !log.packets.is_empty()
        });
    }

    /// Rooms with a log and sessions remembered (for metrics and tests).
    pub fn sizes(&self) -> (usize, usize) {
        let s = self.lock();
        (s.rooms.len(), s.sessions.len())
    }
}

#[async_trait::async_trait]
impl crate::cluster::RecoveryLog for Recovery {
    async fn save(&self, pid: String, snapshot: Snapshot) {
        Recovery::save(self, pid, snapshot)
    }

    async fn restore(
        &self,
        pid: &str,
        user: &UserId,
        nsp: &str,
        offset: u64,
    ) -> Option<(Snapshot, Vec<(u64, Encoded)>)> {
        Recovery::restore(self, pid, user, nsp, offset)
    }

    async fn missed(&self, nsp: &str, rooms: &[RoomName], offset: u64) -> Vec<(u64, Encoded)> {
        Recovery::missed(self, nsp, rooms, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoded::Frame;

    fn p(s: &str) -> Encoded {
        Encoded::single(Frame::text(s.as_bytes()))
    }

    fn snap(rooms: &[&str]) -> Snapshot {
        Snapshot {
            user_id: UserId::from("u1"),
            nsp: "/chat".into(),
            sid: "s1".into(),
            rooms: rooms.iter().map(|r| RoomName::from(*r)).collect(),
            at: Instant::now(),
        }
    }

    #[test]
    fn restores_missed_packets_of_the_sessions_rooms_in_order() {
        let r = Recovery::new(Duration::from_secs(60), 10);
        r.record("/chat", &["a".into()], 1, &p("1"));
        r.record("/chat", &["b".into()], 2, &p("2"));
        r.record("/chat", &["c".into()], 3, &p("3"));
        r.record("/chat", &["a".into(), "b".into()], 4, &p("4"));
        r.save("pid".into(), snap(&["a", "b"]));
        let (s, missed) = r.restore("pid", &"u1".into(), "/chat", 1).unwrap();
        assert_eq!(s.sid, "s1");
        let offsets: Vec<u64> = missed.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, vec![2, 4]);
        // A session is restored once.
        assert!(r.restore("pid", &"u1".into(), "/chat", 1).is_none());
    }

    #[test]
    fn refuses_another_user_namespace_or_dropped_packets() {
        let r = Recovery::new(Duration::from_secs(60), 2);
        r.save("pid".into(), snap(&["a"]));
        assert!(r.restore("pid", &"u2".into(), "/chat", 0).is_none());
        assert!(r.restore("pid", &"u1".into(), "/", 0).is_none());
        for i in 1..=3 {
            r.record("/chat", &["a".into()], i, &p("x"));
        }
        // Packet 1 was dropped (2 per room): recovery from 0 is impossible.
        assert!(r.restore("pid", &"u1".into(), "/chat", 0).is_none());
        r.save("pid".into(), snap(&["a"]));
        assert_eq!(
            r.restore("pid", &"u1".into(), "/chat", 1).unwrap().1.len(),
            2
        );
    }

    #[test]
    fn expired_sessions_are_refused_and_swept() {
        let r = Recovery::new(Duration::from_millis(0), 2);
        let mut s = snap(&["a"]);
        s.at = Instant::now() - Duration::from_millis(5);
        r.save("pid".into(), s.clone());
        assert!(r.restore("pid", &"u1".into(), "/chat", 0).is_none());
        r.save("pid".into(), s);
        r.sweep();
        assert_eq!(r.sizes(), (0, 0));
    }
}
