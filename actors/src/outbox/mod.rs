//! The bounded queue between a connection and its transport.
//!
//! Two kinds of writers push [`Encoded`] packets: the connection actor (its own
//! answers, acks, pings) and the rooms the connection is in
//! ([`Outbox::deliver`]: broadcasts go straight into the queue, with no hop
//! through the connection actor's mailbox; the duplicate filter and the hold
//! during a namespace CONNECT live here for that reason). The transport drains
//! them: the WebSocket writer takes everything waiting (up to a bound) under
//! one lock and writes it in one vectored write, a long-polling `GET` takes
//! everything queued as one payload. When the WebSocket's writer sleeps with
//! nothing in hand and nothing is queued, a packet is written to the socket
//! by whoever pushes it (when the engine writes through: see
//! `EngineConfig::write_through`), so the writer is neither woken nor polled.
//! The queue is bounded in packets: a client that does not drain fast enough
//! is reported as too slow (to the connection, by the outbox itself), and
//! the connection closes it rather than buffering without limit. Control
//! packets (pongs, refusals, CONNECT answers) may go [`CONTROL_HEADROOM`]
//! past the bound, so a full queue still answers; the close is a flag, not a
//! packet, so a full queue never prevents a clean close.
//!
//! The queue and its API are here; writing through to the socket is in
//! `write_through`, the WebSocket writer's side of the queue in `ws_body`.

mod write_through;
mod ws_body;

pub(crate) use write_through::send_frames;
use write_through::AttachedSocket;
pub use ws_body::{WsBatch, WsBody, WsEnd};

use crate::encoded::Encoded;
use crate::room::TooSlow;
use actix::{Recipient, WeakRecipient};
use bytes::{Bytes, BytesMut};
use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::net::TcpStream;

/// The queue is full: the client is not keeping up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbound queue full")]
pub struct OutboxFull;

/// Which transport drains the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// HTTP long-polling `GET`s.
    Polling,
    /// A WebSocket response body.
    WebSocket,
}

/// What became of a broadcast handed to [`Outbox::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued (or held until the namespace CONNECT is answered).
    Queued,
    /// Not queued, and nothing to do: a copy already came through another
    /// room, was replayed by a recovery, or the queue is closed.
    Dropped,
    /// The queue is full: the client is too slow. Reported once; the queue
    /// takes nothing more until the connection has closed it.
    TooSlow,
}

/// Control packets and raw frames a queue takes past its bound, so a full
/// queue still answers pings and refuses events; a client that keeps sending
/// them without reading is closed rather than given memory without limit.
pub const CONTROL_HEADROOM: usize = 64;

/// How many recent broadcast ids are remembered to drop duplicates when a
/// broadcast names several rooms the connection is in.
const RECENT_IDS: usize = 16;
const _: () = assert!(RECENT_IDS <= 256, "recent_pos is a u8");

/// What a long-polling `GET` gets.
#[derive(Debug)]
pub enum PollOutcome {
    /// A payload of one or more packets.
    Payload(Bytes),
    /// The session is closed.
    Closed,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Encoded>,
    drain: Drain,
    closed: bool,
    /// WebSocket close code to send when the session closes.
    close_code: u16,
    /// Raw WebSocket frames that go out on the WebSocket whatever drains the
    /// packets (pong frames, the `3probe` of an upgrade).
    ws_direct: VecDeque<Bytes>,
    /// A noop must be given to the pending poll (the transport is upgrading).
    noop: bool,
    /// The pending long-polling `GET`'s waker.
    poll_waker: Option<Waker>,
    /// A long-polling `GET` is waiting for packets (it may have been woken
    /// and not yet polled again, so its waker is no evidence).
    poll_pending: bool,
    /// The WebSocket body's waker (both exist during an upgrade).
    ws_waker: Option<Waker>,
    /// Ids of the last broadcasts delivered (a ring).
    recent: [u64; RECENT_IDS],
    /// Where the next id goes (below [`RECENT_IDS`]; small, so the
    /// outbox fits a smaller allocation).
    recent_pos: u8,
    /// While a namespace CONNECT is being answered, broadcasts wait here so
    /// they reach the client after the CONNECT (and after recovered packets).
    held: Option<Vec<(u64, Encoded)>>,
    /// Offsets just replayed by a recovery: a live copy of one may still be
    /// on its way, so it is dropped once when it comes.
    /// Boxed: every connection has an outbox, few have just recovered, and
    /// an empty set still takes 48 bytes inline (the extra allocation is
    /// made only after a recovery).
    #[allow(clippy::box_collection)]
    replayed: Option<Box<HashSet<u64>>>,
    /// The queue overflowed and the connection was told.
    too_slow: bool,
    /// Deliveries were queued without waking the writer (held back by a
    /// [`Batch`](crate::room::Batch)); [`Outbox::flush`] owes them a write.
    flush_owed: bool,
    /// The WebSocket's socket while its writer runs, for writing through
    /// (see [`Outbox::deliver`]).
    socket: Option<AttachedSocket>,
    /// Who hears of an overflow of a delivery (the connection actor; weak,
    /// as the actor holds this outbox).
    overflow_to: Option<WeakRecipient<TooSlow>>,
}

impl State {
    /// Whether broadcast `id` was delivered recently; remembers it if not.
    fn seen_recently(&mut self, id: u64) -> bool {
        if self.recent.contains(&id) {
            return true;
        }
        let pos = usize::from(self.recent_pos);
        self.recent[pos] = id;
        self.recent_pos = ((pos + 1) % RECENT_IDS) as u8;
        false
    }

    /// Reports an overflow once, to `overflow_to` too.
    fn overflow(&mut self) -> Delivery {
        if std::mem::replace(&mut self.too_slow, true) {
            Delivery::Dropped
        } else {
            if let Some(to) = self.overflow_to.as_ref().and_then(WeakRecipient::upgrade) {
                to.do_send(TooSlow);
            }
            Delivery::TooSlow
        }
    }

    fn wakers(&mut self) -> Wakers {
        Wakers(self.poll_waker.take(), self.ws_waker.take())
    }

    /// A transport goes to sleep: the queues it drained give back what they
    /// grew to (the OPEN and CONNECT of a handshake, a burst), so an idle
    /// connection keeps no capacity it does not use (224 bytes for the
    /// handshake's four packets); the next burst allocates again.
    fn release_idle(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
        if self.ws_direct.is_empty() && self.ws_direct.capacity() > 0 {
            self.ws_direct = VecDeque::new();
        }
    }
}

/// Wakers taken under the lock, woken after it is released.
struct Wakers(Option<Waker>, Option<Waker>);

impl Wakers {
    fn wake(self) {
        if let Some(w) = self.0 {
            w.wake();
        }
        if let Some(w) = self.1 {
            w.wake();
        }
    }
}

/// The queue itself, shared (`Arc`) by the connection actor and the transport.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    capacity: usize,
}

impl Outbox {
    /// An empty queue holding at most `capacity` regular packets.
    pub fn new(capacity: usize, drain: Drain) -> Self {
        Outbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                drain,
                closed: false,
                close_code: 1000,
                noop: false,
                ws_direct: VecDeque::new(),
                poll_waker: None,
                poll_pending: false,
                ws_waker: None,
                recent: [u64::MAX; RECENT_IDS],
                recent_pos: 0,
                held: None,
                replayed: None,
                too_slow: false,
                flush_owed: false,
                socket: None,
                overflow_to: None,
            }),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every mutation is a single push or pop), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a packet; `Err(OutboxFull)` when the client is too far behind.
    /// Packets pushed after close are dropped.
    pub fn push(&self, packet: Encoded) -> Result<(), OutboxFull> {
        let waker = {
            let mut s = self.lock();
            if s.closed {
                return Ok(());
            }
            match s.send_or_queue(Cow::Owned(packet), self.capacity)? {
                Some(wakers) => wakers,
                None => return Ok(()),
            }
        };
        waker.wake();
        Ok(())
    }

    /// Queues broadcast `id` for this connection (called by the rooms it is
    /// in): dropped when a copy already came through another room or was
    /// replayed by a recovery, held while a namespace CONNECT is answered,
    /// written to the socket at once when the WebSocket's writer sleeps with
    /// nothing queued and a socket is attached ([`attach_socket`](Self::attach_socket)).
    pub fn deliver(&self, packet: &Encoded, id: u64) -> Delivery {
        let waker = {
            let mut s = self.lock();
            if let Some(done) = self.admit(&mut s, packet, id) {
                return done;
            }
            match s.send_or_queue(Cow::Borrowed(packet), self.capacity) {
                Ok(Some(wakers)) => wakers,
                Ok(None) => return Delivery::Queued,
                Err(OutboxFull) => return s.overflow(),
            }
        };
        waker.wake();
        Delivery::Queued
    }

    /// Like [`deliver`](Self::deliver), but the packet only joins the queue:
    /// the writer is neither woken nor written for until
    /// [`flush`](Self::flush), so the broadcasts of a burst leave together.
    /// Answers whether a flush is owed that was not before (the caller then
    /// keeps this outbox for it).
    pub fn deliver_deferred(&self, packet: &Encoded, id: u64) -> (Delivery, bool) {
        let mut s = self.lock();
        if let Some(done) = self.admit(&mut s, packet, id) {
            return (done, false);
        }
        if s.queue.len() >= self.capacity {
            return (s.overflow(), false);
        }
        s.queue.push_back(packet.clone());
        (
            Delivery::Queued,
            !std::mem::replace(&mut s.flush_owed, true),
        )
    }

    /// What becomes of broadcast `id` before it reaches the queue: `None`
    /// when it goes on to the queue.
    fn admit(&self, s: &mut State, packet: &Encoded, id: u64) -> Option<Delivery> {
        if s.closed || s.too_slow || s.seen_recently(id) {
            return Some(Delivery::Dropped);
        }
        if s.replayed.as_mut().is_some_and(|r| r.remove(&id)) {
            return Some(Delivery::Dropped);
        }
        if let Some(held) = &mut s.held {
            if held.len() >= self.capacity {
                return Some(s.overflow());
            }
            held.push((id, packet.clone()));
            return Some(Delivery::Queued);
        }
        None
    }

    /// Sends what [`deliver_deferred`](Self::deliver_deferred) queued: written
    /// to the socket in one system call when the writer sleeps with nothing
    /// in hand (as a single delivery is written through), else the writer
    /// (or the pending poll) is woken for it.
    pub fn flush(&self) {
        let waker = {
            let mut s = self.lock();
            s.flush_owed = false;
            if s.queue.is_empty() || s.write_queued() {
                return;
            }
            s.wakers()
        };
        waker.wake();
    }

    /// Tells `to` (once) when a delivery finds the queue full.
    pub fn report_overflow_to(&self, to: &Recipient<TooSlow>) {
        self.lock().overflow_to = Some(to.downgrade());
    }

    /// Lets deliveries write to the WebSocket's `socket` directly while its
    /// writer sleeps (the transport calls it when the writer starts).
    pub fn attach_socket(&self, socket: Arc<TcpStream>) {
        let fd = socket.as_raw_fd();
        self.lock().socket = Some(AttachedSocket { fd, _open: socket });
    }

    /// Ends writing through (the WebSocket's writer has stopped): from now
    /// on the outbox does not hold the socket open.
    pub fn detach_socket(&self) {
        let socket = self.lock().socket.take();
        drop(socket);
    }

    /// Holds broadcasts back (a namespace CONNECT is being answered) until
    /// [`release_held`](Self::release_held).
    pub fn hold(&self) {
        self.lock().held.get_or_insert_with(Vec::new);
    }

    /// Queues the broadcasts held back, but those whose ids are in
    /// `replayed` (a recovery already sent them); copies of those still on
    /// their way are dropped when they come (until
    /// [`forget_replayed`](Self::forget_replayed)). Answers how many packets
    /// and bytes (as WebSocket frames) it queued.
    pub fn release_held(&self, replayed: HashSet<u64>) -> Result<(u64, usize), OutboxFull> {
        let (waker, result) = {
            let mut s = self.lock();
            let held = s.held.take().unwrap_or_default();
            let (mut count, mut bytes) = (0, 0);
            let mut result = Ok(());
            // A closed queue takes nothing more.
            let held = if s.closed { Vec::new() } else { held };
            for (_, packet) in held.into_iter().filter(|(id, _)| !replayed.contains(id)) {
                if s.queue.len() >= self.capacity {
                    // Told here, so later deliveries do not report it again.
                    s.too_slow = true;
                    result = Err(OutboxFull);
                    break;
                }
                count += 1;
                bytes += packet.ws_len();
                s.queue.push_back(packet);
            }
            if !replayed.is_empty() {
                s.replayed
                    .get_or_insert_with(Default::default)
                    .extend(replayed);
            }
            (s.wakers(), result.map(|()| (count, bytes)))
        };
        waker.wake();
        result
    }

    /// Forgets the replayed offsets (their live copies have come by now).
    pub fn forget_replayed(&self) {
        self.lock().replayed = None;
    }

    /// Whether a control packet or raw frame still fits: up to
    /// [`CONTROL_HEADROOM`] past the bound. Past it the client sends without
    /// reading (pings, refused events, bad CONNECTs), and is reported as
    /// too slow, like a delivery that overflows.
    fn control_fits(&self, s: &mut State) -> bool {
        if s.queue.len() + s.ws_direct.len() < self.capacity + CONTROL_HEADROOM {
            return true;
        }
        s.overflow();
        false
    }

    /// Queues a control packet (pong, refusal, CONNECT answer) even when the
    /// queue is at its bound, up to [`CONTROL_HEADROOM`] past it.
    pub fn push_control(&self, packet: Encoded) {
        let waker = {
            let mut s = self.lock();
            if s.closed || !self.control_fits(&mut s) {
                return;
            }
            s.queue.push_back(packet);
            s.wakers()
        };
        waker.wake();
    }

    /// Queues a raw WebSocket frame that bypasses the packet queue and the
    /// drain mode (it is only ever read by a WebSocket body).
    pub fn push_ws_direct(&self, frame: Bytes) {
        let waker = {
            let mut s = self.lock();
            if s.closed || !self.control_fits(&mut s) {
                return;
            }
            s.ws_direct.push_back(frame);
            s.wakers()
        };
        waker.wake();
    }

    /// Number of packets waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the queue: what is queued is still delivered, then the transport
    /// ends (a WebSocket with close `code`).
    pub fn close(&self, code: u16) {
        let waker = {
            let mut s = self.lock();
            if !s.closed {
                s.closed = true;
                s.close_code = code;
            }
            s.wakers()
        };
        waker.wake();
    }

    /// Closes because the client sent CLOSE: it already knows, so a poll
    /// still pending ends with a noop rather than a CLOSE packet (as the
    /// reference server's polling transport does); what is queued still goes
    /// out first.
    pub fn close_by_client(&self, code: u16) {
        let waker = {
            let mut s = self.lock();
            if !s.closed {
                s.closed = true;
                s.close_code = code;
                s.noop = s.drain == Drain::Polling;
            }
            s.wakers()
        };
        waker.wake();
    }

    /// Closes at once, dropping what is queued (the client is gone or too slow).
    pub fn abort(&self, code: u16) {
        let waker = {
            let mut s = self.lock();
            s.queue.clear();
            s.closed = true;
            s.close_code = code;
            s.wakers()
        };
        waker.wake();
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The transport currently draining.
    pub fn drain(&self) -> Drain {
        self.lock().drain
    }

    /// Switches draining to the WebSocket (end of an upgrade); a poll still
    /// pending is answered with a noop so the client can let it go. Later
    /// polls are refused by the transport.
    pub fn switch_to_websocket(&self) {
        let waker = {
            let mut s = self.lock();
            s.drain = Drain::WebSocket;
            s.noop = s.poll_pending;
            s.wakers()
        };
        waker.wake();
    }

    /// Asks for a noop to be given to the pending poll (used when an upgrade
    /// probe arrives, so the client's poll cycle moves on).
    pub fn wake_poll_with_noop(&self) {
        let waker = {
            let mut s = self.lock();
            if s.drain != Drain::Polling {
                return;
            }
            s.noop = true;
            s.wakers()
        };
        waker.wake();
    }

    /// Drains for a long-polling `GET`: everything queued as one payload, or
    /// pending until something arrives.
    pub fn poll_polling(&self, cx: &mut Context<'_>) -> Poll<PollOutcome> {
        let mut s = self.lock();
        s.poll_pending = false;
        if s.drain == Drain::WebSocket {
            // Upgraded: a last poll gets a noop, later ones a close.
            if s.noop {
                s.noop = false;
                return Poll::Ready(PollOutcome::Payload(Bytes::from_static(b"6")));
            }
            return Poll::Ready(PollOutcome::Closed);
        }
        if !s.queue.is_empty() {
            let mut out = BytesMut::new();
            while let Some(p) = s.queue.pop_front() {
                p.write_polling(&mut out);
            }
            return Poll::Ready(PollOutcome::Payload(out.freeze()));
        }
        if s.noop {
            s.noop = false;
            return Poll::Ready(PollOutcome::Payload(Bytes::from_static(b"6")));
        }
        if s.closed {
            return Poll::Ready(PollOutcome::Closed);
        }
        s.release_idle();
        s.poll_waker = Some(cx.waker().clone());
        s.poll_pending = true;
        Poll::Pending
    }

    /// Drains for a WebSocket: appends the direct frames, then (when the
    /// WebSocket is the one draining) the frames of whole packets to `out`
    /// until it holds at least `max` frames, all under one lock. Ready with
    /// [`WsBatch::Close`] once closed and drained; pending when there is
    /// nothing.
    pub fn poll_websocket(
        &self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Bytes>,
        max: usize,
    ) -> Poll<WsBatch> {
        let mut s = self.lock();
        while out.len() < max {
            match s.ws_direct.pop_front() {
                Some(f) => out.push_back(f),
                None => break,
            }
        }
        if s.drain == Drain::WebSocket {
            while out.len() < max {
                match s.queue.pop_front() {
                    Some(p) => out.extend(p.frames().map(|f| f.ws_bytes().clone())),
                    None => break,
                }
            }
        }
        if !out.is_empty() {
            return Poll::Ready(WsBatch::Frames);
        }
        if s.closed {
            return Poll::Ready(WsBatch::Close(s.close_code));
        }
        s.release_idle();
        s.ws_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
pub(crate) mod tests;
