//! The pipeline of a connection's events: which of them may run now (in
//! order, beside each other, or alone), the per-connection event rate, and
//! the answer (ack or `error` event) each one gets.

use super::Connection;
use crate::engine::{encode_ack, encode_packet};
use crate::namespace::{DisconnectReason, EventError, IncomingEvent, Ordered, Reply};
use crate::protocol::socketio::{self, PacketKind};
use actix::prelude::*;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One complete Socket.IO packet waiting for the pipeline.
pub(super) struct Work {
    pub(super) packet: socketio::Packet,
    pub(super) attachments: Vec<Bytes>,
}

/// Sliding one-second window for the per-connection event rate: the count of
/// the current window plus the previous window's, weighted by how much of it
/// still overlaps the last second (constant memory, no burst at the edge of
/// a fixed window).
pub(super) struct RateWindow {
    started: Instant,
    current: u32,
    previous: u32,
}

impl RateWindow {
    pub(super) fn new(now: Instant) -> Self {
        RateWindow {
            started: now,
            current: 0,
            previous: 0,
        }
    }

    /// Counts one event at `now`; whether it is within `limit` per second.
    fn hit(&mut self, now: Instant, limit: u32) -> bool {
        let window = Duration::from_secs(1);
        let elapsed = now.duration_since(self.started);
        if elapsed >= window * 2 {
            self.previous = 0;
            self.current = 0;
            self.started = now;
        } else if elapsed >= window {
            self.previous = self.current;
            self.current = 0;
            self.started += window;
        }
        let into = now.duration_since(self.started).as_secs_f64();
        let estimate = f64::from(self.previous) * (1.0 - into) + f64::from(self.current);
        if estimate >= f64::from(limit) {
            return false;
        }
        self.current += 1;
        true
    }
}

/// Most events of one connection running beside each other (see
/// [`Namespace::runs_beside`](crate::namespace::Namespace::runs_beside)).
pub const MAX_BESIDE: usize = 8;

/// How an event runs among its connection's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// After everything before it, and before anything after it.
    Alone,
    /// Beside other such events, in no order (`Namespace::runs_beside`).
    Beside,
    /// Started in order, each once the one before has fixed its order
    /// (`Namespace::pipelines`).
    Pipelined,
}

/// What of a connection's events runs now, and whether the next may start:
/// events that run beside each other share at most [`MAX_BESIDE`] places,
/// a pipelined one also waits for the one before it to fix its order, and
/// anything else (CONNECT, DISCONNECT, an event of its own) runs alone,
/// after all of them.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    /// Something runs alone.
    alone: bool,
    /// Events running beside each other (see `Namespace::runs_beside`; at
    /// most [`MAX_BESIDE`], hence the small type).
    beside: u8,
    /// Pipelined events running (see `Namespace::pipelines`).
    pipelined: u8,
    /// The last pipelined event has not fixed its order yet.
    ordering: bool,
}

impl Lanes {
    /// Whether nothing runs alone (the pipeline may look at its next packet).
    pub(super) fn open(&self) -> bool {
        !self.alone
    }

    /// Whether work of `mode` may start now.
    fn admits(&self, mode: Mode) -> bool {
        if self.alone {
            return false;
        }
        match mode {
            Mode::Beside => usize::from(self.beside) < MAX_BESIDE && self.pipelined == 0,
            Mode::Pipelined => {
                !self.ordering && usize::from(self.pipelined) < MAX_BESIDE && self.beside == 0
            }
            Mode::Alone => self.beside == 0 && self.pipelined == 0,
        }
    }

    /// Work of `mode` starts (it was admitted).
    fn start(&mut self, mode: Mode) {
        match mode {
            Mode::Beside => self.beside += 1,
            Mode::Pipelined => {
                self.pipelined += 1;
                self.ordering = true;
            }
            Mode::Alone => self.alone = true,
        }
    }

    /// The last pipelined event has fixed its order: the next may start.
    fn order_fixed(&mut self) {
        self.ordering = false;
    }

    /// Work of `mode` is done.
    pub(super) fn finish(&mut self, mode: Mode) {
        match mode {
            Mode::Beside => self.beside -= 1,
            Mode::Pipelined => self.pipelined -= 1,
            Mode::Alone => self.alone = false,
        }
    }
}

impl Connection {
    /// Answers a packet that will not be handled: failed ack or `error` event.
    pub(super) fn refuse(&mut self, packet: &socketio::Packet, err: EventError) {
        if !matches!(packet.kind, PacketKind::Event | PacketKind::BinaryEvent)
            || !self.sockets.contains_key(packet.nsp.as_str())
        {
            return;
        }
        let out = match packet.id {
            Some(id) => encode_packet(
                &socketio::Packet {
                    kind: PacketKind::Ack,
                    nsp: packet.nsp.clone(),
                    id: Some(id),
                    data: Some(Value::Array(vec![err.to_ack()])),
                    attachments: 0,
                },
                &[],
            ),
            None => encode_packet(
                &socketio::Packet {
                    kind: PacketKind::Event,
                    nsp: packet.nsp.clone(),
                    id: None,
                    data: Some(json!(["error", err.to_event()])),
                    attachments: 0,
                },
                &[],
            ),
        };
        // A control packet: a refusal still goes out when the queue is at its
        // bound (up to the outbox's headroom; past it the client is closed).
        self.outbox.push_control(out);
    }

    fn rate_allows(&mut self) -> bool {
        let limit = self.engine.config().events_per_second;
        if limit == 0 {
            return true;
        }
        self.rate.hit(Instant::now(), limit)
    }

    /// How its namespace lets `work` run among the connection's events.
    fn mode(&self, work: &Work) -> Mode {
        if !matches!(
            work.packet.kind,
            PacketKind::Event | PacketKind::BinaryEvent
        ) {
            return Mode::Alone;
        }
        let Some(Value::Array(args)) = &work.packet.data else {
            return Mode::Alone;
        };
        let Some(Value::String(name)) = args.first() else {
            return Mode::Alone;
        };
        match self.sockets.get(work.packet.nsp.as_str()) {
            Some(s) if s.namespace.runs_beside(name) => Mode::Beside,
            Some(s) if s.namespace.pipelines(name) => Mode::Pipelined,
            _ => Mode::Alone,
        }
    }

    /// Starts the packets waiting in the pipeline, in order, as far as the
    /// lanes admit them.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.lanes.open() {
            let Some(next) = self.pending.front() else {
                if self.pending.capacity() > 0 {
                    // An idle connection holds no queue (a few hundred
                    // bytes each, at many thousands of connections).
                    self.pending = VecDeque::new();
                }
                return;
            };
            let mode = self.mode(next);
            if !self.lanes.admits(mode) {
                return;
            }
            let Some(work) = self.pending.pop_front() else {
                return;
            };
            if mode != Mode::Alone {
                self.start_event(ctx, work, mode);
                continue;
            }
            match work.packet.kind {
                PacketKind::Connect => {
                    self.lanes.start(Mode::Alone);
                    self.start_connect(ctx, work.packet);
                }
                PacketKind::Disconnect => {
                    if let Some(state) = self.sockets.remove(work.packet.nsp.as_str()) {
                        self.lanes.start(Mode::Alone);
                        self.drop_socket_rooms(&state);
                        let fut = async move {
                            state
                                .namespace
                                .on_disconnect(
                                    &state.socket,
                                    DisconnectReason::ClientNamespaceDisconnect,
                                )
                                .await;
                        };
                        ctx.spawn(fut.into_actor(self).map(|_, act, ctx| {
                            act.lanes.finish(Mode::Alone);
                            act.pump(ctx);
                        }));
                    }
                }
                PacketKind::Event | PacketKind::BinaryEvent => {
                    self.start_event(ctx, work, Mode::Alone);
                }
                PacketKind::Ack | PacketKind::BinaryAck => {
                    // The server never asks clients for acknowledgements.
                }
                PacketKind::ConnectError => {
                    log::debug!("connection {}: client sent CONNECT_ERROR", self.sid);
                    return self.close(ctx, DisconnectReason::ParseError, 1002);
                }
            }
        }
    }

    /// Starts handling an event: alone (the pipeline waits for it), or
    /// `beside` others of its kind.
    fn start_event(&mut self, ctx: &mut Context<Self>, work: Work, mode: Mode) {
        let Some(state) = self.sockets.get(work.packet.nsp.as_str()) else {
            // Not connected to that namespace: Socket.IO ignores it.
            return;
        };
        let socket = state.socket.clone();
        let namespace = state.namespace.clone();
        if !self.rate_allows() {
            return self.refuse(
                &work.packet,
                EventError::new("rate_limited", "too many events, slow down"),
            );
        }
        let mut args = match work.packet.data {
            Some(Value::Array(a)) => a,
            _ => return,
        };
        let name = match args.first() {
            Some(Value::String(_)) => match args.remove(0) {
                Value::String(s) => s,
                _ => unreachable!("checked to be a string"),
            },
            _ => return,
        };
        self.engine.metrics().event_in();
        let ack_id = work.packet.id;
        let nsp = work.packet.nsp;
        let (ordered, order_fixed) = match mode {
            Mode::Pipelined => {
                let (ordered, fixed) = Ordered::new();
                (Some(ordered), Some(fixed))
            }
            _ => (None, None),
        };
        let event = IncomingEvent {
            name,
            args,
            attachments: work.attachments,
            wants_ack: ack_id.is_some(),
            ordered,
        };
        self.lanes.start(mode);
        if let Some(fixed) = order_fixed {
            ctx.spawn(
                async move {
                    let _ = fixed.await;
                }
                .into_actor(self)
                .map(|(), act, ctx| {
                    act.lanes.order_fixed();
                    act.pump(ctx);
                }),
            );
        }
        let fut = async move { namespace.on_event(&socket, event).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.lanes.finish(mode);
            act.answer(ctx, &nsp, ack_id, res);
            act.pump(ctx);
        }));
    }

    fn answer(
        &mut self,
        ctx: &mut Context<Self>,
        nsp: &str,
        ack_id: Option<u64>,
        res: Result<Reply, EventError>,
    ) {
        let packet = match (ack_id, res) {
            (
                Some(id),
                Ok(Reply {
                    encoded: Some(json),
                    ..
                }),
            ) => encode_ack(nsp, id, &[&json]),
            (Some(id), Ok(reply)) => {
                let kind = if reply.attachments.is_empty() {
                    PacketKind::Ack
                } else {
                    PacketKind::BinaryAck
                };
                encode_packet(
                    &socketio::Packet {
                        kind,
                        nsp: nsp.to_owned(),
                        id: Some(id),
                        data: Some(Value::Array(reply.args)),
                        attachments: reply.attachments.len(),
                    },
                    &reply.attachments,
                )
            }
            (Some(id), Err(err)) => encode_packet(
                &socketio::Packet {
                    kind: PacketKind::Ack,
                    nsp: nsp.to_owned(),
                    id: Some(id),
                    data: Some(Value::Array(vec![err.to_ack()])),
                    attachments: 0,
                },
                &[],
            ),
            (None, Ok(_)) => return,
            (None, Err(err)) => encode_packet(
                &socketio::Packet {
                    kind: PacketKind::Event,
                    nsp: nsp.to_owned(),
                    id: None,
                    data: Some(json!(["error", err.to_event()])),
                    attachments: 0,
                },
                &[],
            ),
        };
        self.send(ctx, packet);
    }
}

#[cfg(test)]
mod tests {
    use super::{Lanes, Mode, RateWindow, MAX_BESIDE};
    use std::time::{Duration, Instant};

    #[test]
    fn events_beside_each_other_share_their_places_and_keep_others_out() {
        let mut lanes = Lanes::default();
        for _ in 0..MAX_BESIDE {
            assert!(lanes.admits(Mode::Beside));
            lanes.start(Mode::Beside);
        }
        assert!(!lanes.admits(Mode::Beside), "no place left");
        assert!(!lanes.admits(Mode::Pipelined));
        assert!(!lanes.admits(Mode::Alone));
        lanes.finish(Mode::Beside);
        assert!(lanes.admits(Mode::Beside));
        for _ in 1..MAX_BESIDE {
            lanes.finish(Mode::Beside);
        }
        assert!(lanes.admits(Mode::Alone) && lanes.admits(Mode::Pipelined));
    }

    #[test]
    fn a_pipelined_event_starts_once_the_one_before_fixed_its_order() {
        let mut lanes = Lanes::default();
        lanes.start(Mode::Pipelined);
        assert!(
            !lanes.admits(Mode::Pipelined),
            "the first has not fixed its order"
        );
        lanes.order_fixed();
        assert!(lanes.admits(Mode::Pipelined));
        assert!(!lanes.admits(Mode::Beside) && !lanes.admits(Mode::Alone));
        for _ in 1..MAX_BESIDE {
            lanes.start(Mode::Pipelined);
            lanes.order_fixed();
        }
        assert!(
            !lanes.admits(Mode::Pipelined),
            "at most MAX_BESIDE in flight"
        );
        for _ in 0..MAX_BESIDE {
            lanes.finish(Mode::Pipelined);
        }
        assert!(lanes.admits(Mode::Alone));
    }

    #[test]
    fn work_alone_closes_the_pipeline_until_it_is_done() {
        let mut lanes = Lanes::default();
        assert!(lanes.open() && lanes.admits(Mode::Alone));
        lanes.start(Mode::Alone);
        assert!(!lanes.open());
        assert!(!lanes.admits(Mode::Beside) && !lanes.admits(Mode::Pipelined));
        assert!(!lanes.admits(Mode::Alone));
        lanes.finish(Mode::Alone);
        assert!(lanes.open() && lanes.admits(Mode::Beside));
    }

    #[test]
    fn sliding_window_allows_the_limit_then_refuses() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(t0);
        assert!((0..100).all(|_| w.hit(t0, 100)));
        assert!(!w.hit(t0, 100));
        // Half a second into the next window, half of the previous one counts.
        let t1 = t0 + Duration::from_millis(1500);
        assert!((0..50).all(|_| w.hit(t1, 100)));
        assert!(!w.hit(t1, 100));
        // Two windows later everything is forgotten.
        let t2 = t0 + Duration::from_secs(4);
        assert!((0..100).all(|_| w.hit(t2, 100)));
    }
}
