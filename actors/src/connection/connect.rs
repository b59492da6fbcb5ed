//! A namespace CONNECT: the token checked (in the handshake's `auth` or the
//! `?token=` query), the user's connection slot taken, a remembered session
//! restored with the packets it missed (connection state recovery), the
//! socket's rooms joined, and the answer sent once the namespace accepted it.

use super::pipeline::Mode;
use super::{Connection, SocketState};
use crate::auth::{AuthFailure, Identity};
use crate::encoded::Encoded;
use crate::engine::{encode_packet, Engine};
use crate::ids::{RoomKey, RoomName, UserId};
use crate::namespace::{Namespace, Socket};
use crate::outbox::OutboxFull;
use crate::protocol::socketio::{self, PacketKind};
use crate::recovery::Snapshot;
use crate::registry::Join;
use actix::prelude::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

impl Connection {
    fn connect_error(&mut self, nsp: &str, message: &str, code: Option<&str>) {
        let data = match code {
            Some(code) => json!({ "message": message, "data": { "code": code } }),
            None => json!({ "message": message }),
        };
        self.outbox.push_control(encode_packet(
            &socketio::Packet {
                kind: PacketKind::ConnectError,
                nsp: nsp.to_owned(),
                id: None,
                data: Some(data),
                attachments: 0,
            },
            &[],
        ));
    }

    pub(super) fn start_connect(&mut self, ctx: &mut Context<Self>, packet: socketio::Packet) {
        let nsp: Arc<str> = Arc::from(packet.nsp.as_str());
        let Some(namespace) = self.engine.namespace(&nsp) else {
            self.connect_error(&nsp, "Invalid namespace", None);
            self.lanes.finish(Mode::Alone);
            return;
        };
        if self.sockets.contains_key(&nsp) {
            // Already connected: answer again with the same socket id.
            let state = self.sockets.get(&nsp).expect("checked above");
            let answer = self.connect_answer(&nsp, state.socket.sid(), &state.pid);
            self.outbox.push_control(answer);
            self.lanes.finish(Mode::Alone);
            return;
        }
        let auth = packet.data.unwrap_or(Value::Null);
        let token = auth
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| self.query_token.as_deref().map(str::to_owned));
        let engine = self.engine.clone();
        let sid = self.sid.clone();
        let device = device_id(&auth);
        // The first namespace of an authenticated session takes one of the
        // user's connection slots.
        let needs_slot = self.identity.is_none() && self.engine.authenticator().is_some();
        let auth_fut = async move {
            let res = match engine.authenticator() {
                None => Ok(Identity {
                    user_id: UserId(format!("anonymous:{sid}")),
                    name: "anonymous".into(),
                }),
                Some(a) => match token {
                    Some(t) => a.authenticate(&t).await,
                    None => Err(AuthFailure::Unauthorized),
                },
            };
            let slot = match (&res, needs_slot) {
                (Ok(identity), true) => {
                    Some(take_slot(engine, identity.user_id.clone(), sid, device).await)
                }
                _ => None,
            };
            (res, slot)
        };
        ctx.spawn(auth_fut.into_actor(self).map(move |(res, slot), act, ctx| {
            match act.admit(&nsp, res, slot) {
                Ok(identity) => act.finish_connect(
                    ctx,
                    Admitted {
                        nsp,
                        namespace,
                        identity,
                        auth,
                    },
                ),
                Err((message, code)) => {
                    act.connect_error(&nsp, &message, Some(code));
                    act.lanes.finish(Mode::Alone);
                    act.pump(ctx);
                }
            }
        }));
    }

    /// Checks the verified identity against the session and the per-user
    /// connection limit (`slot`: whether one was taken).
    fn admit(
        &mut self,
        nsp: &str,
        res: Result<Identity, AuthFailure>,
        slot: Option<bool>,
    ) -> Result<Arc<Identity>, (String, &'static str)> {
        let identity = match res {
            Ok(i) => i,
            Err(f) => {
                log::debug!("connection {}: CONNECT {nsp} refused: {f}", self.sid);
                return Err((f.to_string(), f.code()));
            }
        };
        if let Some(current) = &self.identity {
            if current.user_id != identity.user_id {
                return Err((
                    "token is for another user than this connection".into(),
                    "unauthorized",
                ));
            }
            // The sockets of one session share one record unless this
            // token names the user differently.
            if current.name == identity.name {
                return Ok(current.clone());
            }
            return Ok(Arc::new(identity));
        }
        match slot {
            Some(false) => {
                return Err((
                    "too many connections for this user".into(),
                    "too_many_connections",
                ))
            }
            Some(true) => self.holds_user_slot = true,
            None => {}
        }
        let identity = Arc::new(identity);
        self.identity = Some(identity.clone());
        Ok(identity)
    }

    fn connect_answer(&self, nsp: &str, sid: &str, pid: &str) -> Encoded {
        let data = if self.engine.config().recovery_window.is_some() {
            json!({ "sid": sid, "pid": pid })
        } else {
            json!({ "sid": sid })
        };
        encode_packet(
            &socketio::Packet {
                kind: PacketKind::Connect,
                nsp: nsp.to_owned(),
                id: None,
                data: Some(data),
                attachments: 0,
            },
            &[],
        )
    }

    /// Opens the admitted socket, after restoring the session it names
    /// (`pid` and `offset` in its `auth`) when there is one to restore.
    fn finish_connect(&mut self, ctx: &mut Context<Self>, admitted: Admitted) {
        let auth = &admitted.auth;
        // Recovery: same pid and offset as a socket that dropped recently.
        let asked = match (
            auth.get("pid").and_then(Value::as_str),
            auth.get("offset")
                .and_then(Value::as_str)
                .and_then(|o| o.parse::<u64>().ok()),
        ) {
            (Some(pid), Some(offset)) => self
                .engine
                .recovery()
                .map(|log| (log, pid.to_owned(), offset)),
            _ => None,
        };
        let Some((log, pid, offset)) = asked else {
            return self.open_socket(ctx, admitted, None);
        };
        let user = admitted.identity.user_id.clone();
        let ns = admitted.nsp.clone();
        let namespace = admitted.namespace.clone();
        let restore = async move {
            let (mut snap, mut missed) = log.restore(&pid, &user, &ns, offset).await?;
            // Only the rooms the user may still be in are joined again. When
            // some are not, what was collected from all of them is not
            // replayed: the collection made once the socket is in its rooms
            // covers the rest from the same offset.
            let remembered = snap.rooms.len();
            snap.rooms = namespace.restorable_rooms(&user, snap.rooms).await;
            if snap.rooms.len() < remembered {
                missed.clear();
            }
            Some((pid, snap, missed, offset))
        };
        ctx.spawn(
            restore
                .into_actor(self)
                .map(move |restored, act, ctx| act.open_socket(ctx, admitted, restored)),
        );
    }

    /// Opens the socket of `nsp`, a recovered one when `restored` holds the
    /// remembered session and the packets it missed.
    fn open_socket(
        &mut self,
        ctx: &mut Context<Self>,
        admitted: Admitted,
        restored: Option<Restored>,
    ) {
        let Admitted {
            nsp,
            namespace,
            identity,
            auth,
        } = admitted;
        let device_id = device_id(&auth);
        let (sid, pid, mut rooms, missed, restored_from) = match restored {
            Some((pid, snap, missed, offset)) => {
                (snap.sid, pid, snap.rooms, Some(missed), Some(offset))
            }
            None => (
                crate::ids::new_id(),
                crate::ids::new_id(),
                Vec::new(),
                None,
                None,
            ),
        };
        if namespace.joins_user_room() {
            let user_room = RoomName(format!("user:{}", identity.user_id));
            if !rooms.contains(&user_room) {
                rooms.push(user_room);
            }
        }
        let socket = Socket::new(
            self.engine.clone(),
            ctx.address(),
            self.id,
            nsp.clone(),
            sid.clone(),
            identity,
            device_id,
        );
        // Broadcasts wait until the CONNECT (and what a recovery replays)
        // has gone out.
        self.outbox.hold();
        if let Some(timer) = self.connect_timer.take() {
            ctx.cancel_future(timer);
        }
        self.sockets.insert(
            nsp.clone(),
            SocketState {
                socket: socket.clone(),
                namespace: namespace.clone(),
                pid: pid.clone(),
                rooms: rooms.iter().cloned().collect(),
            },
        );
        let join = self.engine.registry().send(Join {
            conn: self.id,
            keys: rooms
                .iter()
                .map(|r| RoomKey {
                    nsp: nsp.to_string(),
                    room: r.clone(),
                })
                .collect(),
            member: self.member(),
        });
        let recovered = missed.is_some();
        let joined_rooms = rooms.clone();
        let log = restored_from.and_then(|_| self.engine.recovery());
        let log_nsp = nsp.clone();
        // As in Socket.IO, the application hears of a recovered socket too
        // (presence, workspace tracking), with its rooms already restored;
        // it may take the socket out of rooms it may no longer be in (a
        // workspace the user was removed from while away).
        let fut = async move {
            let _ = join.await;
            let res = namespace.on_connect(&socket, &auth).await;
            // Packets broadcast between taking the session and the rooms
            // having this connection were neither delivered live nor in the
            // first collection: collect again now that the join is done
            // (later ones arrive live, held), from the rooms the namespace
            // left the socket in. When it took the socket out of one, the
            // first collection (from every remembered room) is not replayed:
            // this one covers the rest from the same offset.
            let (late, kept_all) = match (log, restored_from, &res) {
                (Some(log), Some(offset), Ok(())) => {
                    let rooms = socket.rooms().await;
                    let kept_all = joined_rooms.iter().all(|r| rooms.contains(r));
                    (log.missed(&log_nsp, &rooms, offset).await, kept_all)
                }
                _ => (Vec::new(), true),
            };
            (res, late, kept_all)
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |(res, late, kept_all), act, ctx| {
                    match res {
                        Ok(()) => {
                            let answer = act.connect_answer(&nsp, &sid, &pid);
                            act.send(ctx, answer);
                            let mut missed = missed.filter(|_| kept_all).unwrap_or_default();
                            if !late.is_empty() {
                                missed.extend(late);
                                missed.sort_by_key(|(o, _)| *o);
                                missed.dedup_by_key(|(o, _)| *o);
                            }
                            let mut replayed = HashSet::new();
                            for (offset, packet) in missed {
                                replayed.insert(offset);
                                act.send(ctx, packet);
                            }
                            if recovered {
                                log::debug!(
                                    "connection {}: recovered {nsp} socket {sid} ({} packets)",
                                    act.sid,
                                    replayed.len()
                                );
                            }
                            let any_replayed = !replayed.is_empty();
                            act.release_held(ctx, replayed);
                            if any_replayed {
                                // In-flight copies arrive within moments; forget the
                                // set after a generous bound so it cannot grow.
                                ctx.run_later(Duration::from_secs(10), |act, _| {
                                    act.outbox.forget_replayed()
                                });
                            }
                        }
                        Err(err) => {
                            if let Some(state) = act.sockets.remove(&nsp) {
                                act.drop_socket_rooms(&state);
                            }
                            act.connect_error(&nsp, &err.message, Some(err.code));
                            act.release_held(ctx, HashSet::new());
                        }
                    }
                    act.lanes.finish(Mode::Alone);
                    act.pump(ctx);
                }),
        );
    }

    /// Lets the broadcasts held during a CONNECT go out, but those a
    /// recovery has just `replayed`.
    fn release_held(&mut self, ctx: &mut Context<Self>, replayed: HashSet<u64>) {
        match self.outbox.release_held(replayed) {
            Ok((count, bytes)) => self.engine.metrics().packets_out(count, bytes),
            Err(OutboxFull) => self.too_slow(ctx),
        }
    }
}

/// A socket the namespace's CONNECT admitted (its token and the user's
/// connection slot checked), on its way to being opened.
struct Admitted {
    nsp: Arc<str>,
    namespace: Arc<dyn Namespace>,
    identity: Arc<Identity>,
    /// The CONNECT packet's `auth` payload.
    auth: Value,
}

/// A recovered session: its pid, what was remembered, the packets it
/// missed, and the offset the client presented.
type Restored = (String, Snapshot, Vec<(u64, Encoded)>, u64);

/// The device a CONNECT's `auth` names (`deviceId`, at most 128 characters).
fn device_id(auth: &Value) -> Option<String> {
    auth.get("deviceId")
        .and_then(Value::as_str)
        .map(|d| d.chars().take(128).collect())
}

/// Takes one of `user`'s connection slots for session `sid` on `device`. The
/// slot is taken in a task of its own: if the connection stops while the
/// answer is on its way, the task gives the slot back instead of leaking it.
async fn take_slot(engine: Engine, user: UserId, sid: String, device: Option<String>) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Counted as a cleanup: a drain waits for a slot given back this way too.
    engine.clone().spawn_cleanup(async move {
        let ok = engine
            .acquire_user_slot(&user, &sid, device.as_deref())
            .await;
        if tx.send(ok).is_err() && ok {
            engine.release_user_slot(&user, &sid).await;
        }
    });
    rx.await.unwrap_or(false)
}
