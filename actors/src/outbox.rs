//! The bounded queue between a connection actor and its transport.
//!
//! The connection actor pushes [`Encoded`] packets; the transport drains them:
//! the WebSocket response body yields frame after frame (so a burst is written
//! in one go by the HTTP layer), a long-polling `GET` takes everything queued as
//! one payload. The queue is bounded in packets: a client that does not drain
//! fast enough is reported as too slow, and the connection closes it rather
//! than buffering without limit. Control packets (pings, close) bypass the
//! bound, so a full queue never prevents a clean close.

use crate::encoded::{close_frame, Encoded};
use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

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
}

impl State {
    fn wakers(&mut self) -> Wakers {
        Wakers(self.poll_waker.take(), self.ws_waker.take())
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
                queue: VecDeque::with_capacity(4),
                drain,
                closed: false,
                close_code: 1000,
                noop: false,
                ws_direct: VecDeque::new(),
                poll_waker: None,
                poll_pending: false,
                ws_waker: None,
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
            if s.queue.len() >= self.capacity {
                return Err(OutboxFull);
            }
            s.queue.push_back(packet);
            s.wakers()
        };
        waker.wake();
        Ok(())
    }

    /// Queues a control packet (ping, noop, close) regardless of the bound.
    pub fn push_control(&self, packet: Encoded) {
        let waker = {
            let mut s = self.lock();
            if s.closed {
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
            if s.closed {
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
        s.poll_waker = Some(cx.waker().clone());
        s.poll_pending = true;
        Poll::Pending
    }

    /// Drains for a WebSocket body: a direct frame, the next packet, or the
    /// close code once closed and empty; pending otherwise.
    pub fn poll_websocket(&self, cx: &mut Context<'_>) -> Poll<WsItem> {
        let mut s = self.lock();
        if let Some(f) = s.ws_direct.pop_front() {
            return Poll::Ready(WsItem::Direct(f));
        }
        if s.drain == Drain::WebSocket {
            if let Some(p) = s.queue.pop_front() {
                return Poll::Ready(WsItem::Packet(p));
            }
        }
        if s.closed {
            return Poll::Ready(WsItem::Close(s.close_code));
        }
        s.ws_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// What a WebSocket body sends next.
#[derive(Debug)]
pub enum WsItem {
    /// A raw frame (pong, probe answer).
    Direct(Bytes),
    /// A packet's frames.
    Packet(Encoded),
    /// The close frame with this code, then the end.
    Close(u16),
}

/// Ends one WebSocket body without closing the session: the reader of an
/// upgrade's WebSocket uses it when the client gives the upgrade up, so the
/// client's close is answered and the session stays on long-polling.
#[derive(Debug, Default)]
pub struct WsEnd {
    code: Mutex<Option<u16>>,
    waker: AtomicWaker,
}

impl WsEnd {
    /// The body sends a close frame with `code`, then ends.
    pub fn end(&self, code: u16) {
        *self.code.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
        self.waker.wake();
    }

    fn take(&self) -> Option<u16> {
        self.code.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The WebSocket response body: frames from the outbox, then a close frame.
pub struct WsBody {
    outbox: std::sync::Arc<Outbox>,
    end: std::sync::Arc<WsEnd>,
    /// Frames of the current packet not yet yielded.
    rest: VecDeque<Bytes>,
    done: bool,
}

impl WsBody {
    /// A body draining `outbox`.
    pub fn new(outbox: std::sync::Arc<Outbox>) -> Self {
        WsBody {
            outbox,
            end: Default::default(),
            rest: VecDeque::new(),
            done: false,
        }
    }

    /// The handle that ends this body alone.
    pub fn end_handle(&self) -> std::sync::Arc<WsEnd> {
        self.end.clone()
    }
}

impl futures_util::Stream for WsBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        if let Some(f) = self.rest.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        self.end.waker.register(cx.waker());
        if let Some(code) = self.end.take() {
            self.done = true;
            return Poll::Ready(Some(Ok(close_frame(code))));
        }
        match self.outbox.poll_websocket(cx) {
            Poll::Ready(WsItem::Direct(frame)) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(WsItem::Packet(packet)) => {
                let mut frames = packet.frames().map(|f| f.ws_bytes().clone());
                let first = frames.next().expect("a packet has at least one frame");
                self.rest.extend(frames);
                Poll::Ready(Some(Ok(first)))
            }
            Poll::Ready(WsItem::Close(code)) => {
                self.done = true;
                Poll::Ready(Some(Ok(close_frame(code))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoded::Frame;
    use futures_util::task::noop_waker;

    fn pkt(s: &str) -> Encoded {
        Encoded::single(Frame::text(s.as_bytes()))
    }

    #[test]
    fn bound_is_enforced_but_control_bypasses_it() {
        let o = Outbox::new(2, Drain::Polling);
        o.push(pkt("4a")).unwrap();
        o.push(pkt("4b")).unwrap();
        assert_eq!(o.push(pkt("4c")), Err(OutboxFull));
        o.push_control(pkt("2"));
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn polling_drains_everything_as_one_payload() {
        let o = Outbox::new(8, Drain::Polling);
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        assert!(o.poll_polling(&mut cx).is_pending());
        o.push(pkt("4a")).unwrap();
        o.push(pkt("2")).unwrap();
        match o.poll_polling(&mut cx) {
            Poll::Ready(PollOutcome::Payload(b)) => assert_eq!(&b[..], b"4a\x1e2"),
            other => panic!("unexpected {other:?}"),
        }
        o.close(1000);
        assert!(matches!(
            o.poll_polling(&mut cx),
            Poll::Ready(PollOutcome::Closed)
        ));
    }

    #[test]
    fn upgrade_gives_the_pending_poll_a_noop_and_moves_packets_to_the_websocket() {
        let o = Outbox::new(8, Drain::Polling);
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        assert!(o.poll_websocket(&mut cx).is_pending());
        assert!(o.poll_polling(&mut cx).is_pending());
        o.push(pkt("4x")).unwrap();
        // The woken poll has not run again when the upgrade completes.
        o.switch_to_websocket();
        assert!(matches!(
            o.poll_polling(&mut cx),
            Poll::Ready(PollOutcome::Payload(ref b)) if &b[..] == b"6"
        ));
        match o.poll_websocket(&mut cx) {
            Poll::Ready(WsItem::Packet(p)) => {
                assert_eq!(&p.frames().next().unwrap().payload()[..], b"4x")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn upgrade_without_a_pending_poll_leaves_no_noop_behind() {
        let o = Outbox::new(8, Drain::Polling);
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        o.wake_poll_with_noop();
        // The probe's noop is taken by the next poll.
        assert!(matches!(
            o.poll_polling(&mut cx),
            Poll::Ready(PollOutcome::Payload(ref b)) if &b[..] == b"6"
        ));
        o.switch_to_websocket();
        assert!(matches!(
            o.poll_polling(&mut cx),
            Poll::Ready(PollOutcome::Closed)
        ));
    }

    #[test]
    fn client_close_ends_the_pending_poll_with_a_noop() {
        let o = Outbox::new(8, Drain::Polling);
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        assert!(o.poll_polling(&mut cx).is_pending());
        o.close_by_client(1000);
        assert!(matches!(
            o.poll_polling(&mut cx),
            Poll::Ready(PollOutcome::Payload(ref b)) if &b[..] == b"6"
        ));
        assert!(matches!(
            o.poll_polling(&mut cx),
            Poll::Ready(PollOutcome::Closed)
        ));
    }

    #[test]
    fn server_close_ends_the_pending_poll_with_a_close() {
        let o = Outbox::new(8, Drain::Polling);
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        assert!(o.poll_polling(&mut cx).is_pending());
        o.close(1000);
        assert!(matches!(
            o.poll_polling(&mut cx),
            Poll::Ready(PollOutcome::Closed)
        ));
    }

    #[test]
    fn an_ended_body_closes_while_the_session_goes_on() {
        use futures_util::Stream;
        let o = std::sync::Arc::new(Outbox::new(8, Drain::Polling));
        let mut body = WsBody::new(o.clone());
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        assert!(std::pin::Pin::new(&mut body)
            .poll_next(&mut cx)
            .is_pending());
        body.end_handle().end(1000);
        match std::pin::Pin::new(&mut body).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(f))) => assert_eq!(f, close_frame(1000)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            std::pin::Pin::new(&mut body).poll_next(&mut cx),
            Poll::Ready(None)
        ));
        assert!(!o.is_closed());
        o.push(pkt("4still")).unwrap();
        assert!(matches!(
            o.poll_polling(&mut cx),
            Poll::Ready(PollOutcome::Payload(ref b)) if &b[..] == b"4still"
        ));
    }

    #[test]
    fn abort_drops_queue_and_closes_with_code() {
        let o = Outbox::new(8, Drain::WebSocket);
        o.push(pkt("4x")).unwrap();
        o.abort(1008);
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        assert!(matches!(
            o.poll_websocket(&mut cx),
            Poll::Ready(WsItem::Close(1008))
        ));
    }
}
