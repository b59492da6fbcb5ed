//! Unit tests of the outbox, and helpers the rooms' tests share.

use super::*;
use crate::encoded::{close_frame, Frame};
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
fn control_packets_go_past_the_bound_only_so_far() {
    let o = Outbox::new(2, Drain::WebSocket);
    o.push(pkt("4a")).unwrap();
    o.push(pkt("4b")).unwrap();
    for _ in 0..CONTROL_HEADROOM - 1 {
        o.push_control(pkt("3"));
    }
    o.push_ws_direct(Frame::text(b"3").ws_bytes().clone());
    assert_eq!(o.len(), 2 + CONTROL_HEADROOM - 1);
    // Full: no more, and the client is reported too slow (once: a
    // broadcast now is dropped without a second report).
    o.push_control(pkt("3"));
    o.push_ws_direct(Frame::text(b"3").ws_bytes().clone());
    assert_eq!(o.len(), 2 + CONTROL_HEADROOM - 1);
    assert_eq!(o.deliver(&pkt("4c"), 1), Delivery::Dropped);
}

#[test]
fn a_drained_queue_gives_its_memory_back_when_the_transport_sleeps() {
    let o = Outbox::new(8, Drain::WebSocket);
    let w = noop_waker();
    let mut cx = Context::from_waker(&w);
    let mut out = VecDeque::new();
    for p in ["0{}", "40{}", "2", "3"] {
        o.push_control(pkt(p));
    }
    o.push_ws_direct(Frame::text(b"3probe").ws_bytes().clone());
    assert!(o.lock().queue.capacity() >= 4);
    assert_eq!(
        o.poll_websocket(&mut cx, &mut out, 64),
        Poll::Ready(WsBatch::Frames)
    );
    assert_eq!(out.len(), 5);
    // Drained, but the writer has not slept yet: nothing is given back.
    assert!(o.lock().queue.capacity() >= 4);
    out.clear();
    assert!(o.poll_websocket(&mut cx, &mut out, 64).is_pending());
    assert_eq!(o.lock().queue.capacity(), 0);
    assert_eq!(o.lock().ws_direct.capacity(), 0);
    // Long-polling likewise.
    let o = Outbox::new(8, Drain::Polling);
    o.push(pkt("4a")).unwrap();
    assert!(o.poll_polling(&mut cx).is_ready());
    assert!(o.lock().queue.capacity() > 0);
    assert!(o.poll_polling(&mut cx).is_pending());
    assert_eq!(o.lock().queue.capacity(), 0);
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
    let mut out = VecDeque::new();
    assert!(o.poll_websocket(&mut cx, &mut out, 64).is_pending());
    assert!(o.poll_polling(&mut cx).is_pending());
    o.push(pkt("4x")).unwrap();
    // The woken poll has not run again when the upgrade completes.
    o.switch_to_websocket();
    assert!(matches!(
        o.poll_polling(&mut cx),
        Poll::Ready(PollOutcome::Payload(ref b)) if &b[..] == b"6"
    ));
    assert_eq!(
        o.poll_websocket(&mut cx, &mut out, 64),
        Poll::Ready(WsBatch::Frames)
    );
    assert_eq!(out, [Frame::text(&b"4x"[..]).ws_bytes().clone()]);
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
    let o = std::sync::Arc::new(Outbox::new(8, Drain::Polling));
    let mut body = WsBody::new(o.clone());
    let w = noop_waker();
    let mut cx = Context::from_waker(&w);
    let mut out = VecDeque::new();
    assert!(body.poll_frames(&mut cx, &mut out, 64).is_pending());
    body.end_handle().end(1000);
    assert_eq!(body.poll_frames(&mut cx, &mut out, 64), Poll::Ready(true));
    assert_eq!(out, [close_frame(1000)]);
    assert_eq!(body.poll_frames(&mut cx, &mut out, 64), Poll::Ready(false));
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
    let mut out = VecDeque::new();
    assert_eq!(
        o.poll_websocket(&mut cx, &mut out, 64),
        Poll::Ready(WsBatch::Close(1008))
    );
}

fn payload(o: &Outbox) -> Vec<u8> {
    let w = noop_waker();
    let mut cx = Context::from_waker(&w);
    match o.poll_polling(&mut cx) {
        Poll::Ready(PollOutcome::Payload(b)) => b.to_vec(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_broadcast_through_several_rooms_is_delivered_once() {
    let o = Outbox::new(8, Drain::Polling);
    assert_eq!(o.deliver(&pkt("4a"), 7), Delivery::Queued);
    assert_eq!(o.deliver(&pkt("4a"), 7), Delivery::Dropped);
    assert_eq!(o.deliver(&pkt("4b"), 8), Delivery::Queued);
    assert_eq!(payload(&o), b"4a\x1e4b");
}

#[test]
fn held_broadcasts_follow_the_connect_and_skip_what_was_replayed() {
    let o = Outbox::new(8, Drain::Polling);
    o.hold();
    assert_eq!(o.deliver(&pkt("4live1"), 1), Delivery::Queued);
    assert_eq!(o.deliver(&pkt("4live2"), 2), Delivery::Queued);
    o.push(pkt("40")).unwrap();
    o.push(pkt("4replayed2")).unwrap();
    o.push(pkt("4replayed3")).unwrap();
    assert_eq!(o.release_held([2, 3].into()), Ok((1, 8)));
    // Offset 3's live copy was still on its way: dropped once.
    assert_eq!(o.deliver(&pkt("4replayed3"), 3), Delivery::Dropped);
    assert_eq!(payload(&o), b"40\x1e4replayed2\x1e4replayed3\x1e4live1");
    o.forget_replayed();
    assert_eq!(o.deliver(&pkt("4x"), 4), Delivery::Queued);
}

#[test]
fn an_overflow_is_reported_once() {
    let o = Outbox::new(2, Drain::Polling);
    assert_eq!(o.deliver(&pkt("4a"), 1), Delivery::Queued);
    assert_eq!(o.deliver(&pkt("4b"), 2), Delivery::Queued);
    assert_eq!(o.deliver(&pkt("4c"), 3), Delivery::TooSlow);
    assert_eq!(o.deliver(&pkt("4d"), 4), Delivery::Dropped);
    // Held broadcasts count against the same bound.
    let o = Outbox::new(1, Drain::Polling);
    o.hold();
    assert_eq!(o.deliver(&pkt("4a"), 1), Delivery::Queued);
    assert_eq!(o.deliver(&pkt("4b"), 2), Delivery::TooSlow);
}

#[test]
fn the_websocket_takes_what_is_waiting_at_once() {
    let o = Outbox::new(8, Drain::WebSocket);
    let w = noop_waker();
    let mut cx = Context::from_waker(&w);
    for i in 0..5 {
        o.push(pkt(&format!("4{i}"))).unwrap();
    }
    let mut out = VecDeque::new();
    assert_eq!(
        o.poll_websocket(&mut cx, &mut out, 3),
        Poll::Ready(WsBatch::Frames)
    );
    assert_eq!(out.len(), 3);
    out.clear();
    assert_eq!(
        o.poll_websocket(&mut cx, &mut out, 64),
        Poll::Ready(WsBatch::Frames)
    );
    assert_eq!(out.len(), 2);
    out.clear();
    assert!(o.poll_websocket(&mut cx, &mut out, 64).is_pending());
}

/// A waker that counts its wakes.
pub(crate) struct Count(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Count {
    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn counting_waker() -> (Waker, Arc<Count>) {
    let count = Arc::new(Count(Default::default()));
    (Waker::from(count.clone()), count)
}

/// A connected pair on loopback: the server's end (for the outbox) and
/// the client's.
async fn socket_pair() -> (Arc<TcpStream>, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (Arc::new(accepted.unwrap().0), client.unwrap())
}

/// Reads exactly `n` bytes (what the outbox wrote through).
pub(crate) async fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = vec![0; n];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.read_exact(&mut got),
    )
    .await
    .expect("the bytes arrive")
    .unwrap();
    got
}

#[tokio::test]
async fn a_sleeping_writer_is_written_through_and_a_busy_one_is_queued() {
    let (server, mut client) = socket_pair().await;
    let o = Outbox::new(8, Drain::WebSocket);
    o.attach_socket(server);
    let (waker, woken) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut out = VecDeque::new();

    // The writer is busy (it has not gone to sleep yet): queued.
    o.push(pkt("4a")).unwrap();
    assert_eq!(o.len(), 1);
    assert_eq!(
        o.poll_websocket(&mut cx, &mut out, 64),
        Poll::Ready(WsBatch::Frames)
    );
    assert_eq!(out.len(), 1);
    out.clear();

    // The writer sleeps with nothing in hand: straight to the socket,
    // in order, with no wake and nothing queued.
    assert!(o.poll_websocket(&mut cx, &mut out, 64).is_pending());
    o.push(pkt("4b")).unwrap();
    assert_eq!(o.deliver(&pkt("4c"), 1), Delivery::Queued);
    assert_eq!(o.deliver(&pkt("4c"), 1), Delivery::Dropped);
    assert_eq!(o.len(), 0);
    assert_eq!(woken.get(), 0);
    let b = pkt("4b").ws_len();
    let mut expected = pkt("4b").frames().next().unwrap().ws_bytes().to_vec();
    expected.extend_from_slice(pkt("4c").frames().next().unwrap().ws_bytes());
    assert_eq!(read_exactly(&mut client, b * 2).await, expected);

    // Held broadcasts (a namespace CONNECT in progress) are not written.
    o.hold();
    assert_eq!(o.deliver(&pkt("4d"), 2), Delivery::Queued);
    o.release_held(HashSet::new()).unwrap();
    assert_eq!(o.len(), 1);

    // Nor after the writer stopped.
    let o = Outbox::new(8, Drain::WebSocket);
    let (server, _client) = socket_pair().await;
    o.attach_socket(server);
    assert!(o.poll_websocket(&mut cx, &mut out, 64).is_pending());
    o.detach_socket();
    o.push(pkt("4e")).unwrap();
    assert_eq!(o.len(), 1);
}

#[tokio::test]
async fn deferred_deliveries_wait_for_the_flush_and_leave_in_one_write() {
    let (o, _server, mut client, waker, woken) = sleeping_writer(8).await;
    let mut cx = Context::from_waker(&waker);
    let mut out = VecDeque::new();

    // Queued, the writer left asleep; only the first asks for a flush.
    assert_eq!(o.deliver_deferred(&pkt("4a"), 1), (Delivery::Queued, true));
    assert_eq!(o.deliver_deferred(&pkt("4b"), 2), (Delivery::Queued, false));
    assert_eq!(
        o.deliver_deferred(&pkt("4b"), 2),
        (Delivery::Dropped, false)
    );
    assert_eq!((o.len(), woken.get()), (2, 0));

    // The flush writes both (and owes nothing more); a later deferral
    // asks again.
    o.flush();
    assert_eq!((o.len(), woken.get()), (0, 0));
    let frame = |s: &str| pkt(s).frames().next().unwrap().ws_bytes().to_vec();
    let n = pkt("4a").ws_len() * 2;
    assert_eq!(
        read_exactly(&mut client, n).await,
        [frame("4a"), frame("4b")].concat()
    );
    assert_eq!(o.deliver_deferred(&pkt("4c"), 3), (Delivery::Queued, true));

    // The connection's own packet queues behind a deferred one and wakes
    // the writer, which takes both; the flush then has nothing to do.
    o.push(pkt("4d")).unwrap();
    assert_eq!((o.len(), woken.get()), (2, 1));
    assert_eq!(
        o.poll_websocket(&mut cx, &mut out, 64),
        Poll::Ready(WsBatch::Frames)
    );
    assert_eq!(out.len(), 2);
    o.flush();
    assert_eq!(woken.get(), 1);

    // A busy writer (not asleep) is neither written for nor woken: it
    // comes back for the queue itself.
    assert_eq!(o.deliver_deferred(&pkt("4e"), 4), (Delivery::Queued, true));
    o.flush();
    assert_eq!((o.len(), woken.get()), (1, 1));

    // The bound holds for deferred deliveries too.
    let small = Outbox::new(1, Drain::Polling);
    assert_eq!(
        small.deliver_deferred(&pkt("4f"), 5),
        (Delivery::Queued, true)
    );
    assert_eq!(
        small.deliver_deferred(&pkt("4g"), 6),
        (Delivery::TooSlow, false)
    );

    // Long-polling: the flush wakes the pending poll, which gets both.
    let p = Outbox::new(8, Drain::Polling);
    assert!(p.poll_polling(&mut cx).is_pending());
    p.deliver_deferred(&pkt("4h"), 7);
    p.deliver_deferred(&pkt("4i"), 8);
    assert_eq!(woken.get(), 1);
    p.flush();
    assert_eq!(woken.get(), 2);
    match p.poll_polling(&mut cx) {
        Poll::Ready(PollOutcome::Payload(b)) => assert_eq!(&b[..], b"4h\x1e4i"),
        other => panic!("{other:?}"),
    }
}

/// An outbox of `capacity` on a loopback socket whose writer sleeps
/// with nothing in hand, and what sees the writer woken.
pub(crate) async fn sleeping_writer(
    capacity: usize,
) -> (Outbox, Arc<TcpStream>, TcpStream, Waker, Arc<Count>) {
    let (server, client) = socket_pair().await;
    let o = Outbox::new(capacity, Drain::WebSocket);
    o.attach_socket(server.clone());
    let (waker, woken) = counting_waker();
    let mut out = VecDeque::new();
    let asleep = o.poll_websocket(&mut Context::from_waker(&waker), &mut out, 64);
    assert!(asleep.is_pending());
    (o, server, client, waker, woken)
}

/// A packet far bigger than a loopback socket buffers while nobody reads.
fn big_packet() -> Encoded {
    let big: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
    Encoded::single(Frame::binary(&big))
}

fn wire_of(packets: &[&Encoded]) -> Vec<u8> {
    packets
        .iter()
        .flat_map(|p| p.frames().flat_map(|f| f.ws_bytes().to_vec()))
        .collect()
}

/// Does what the woken writer does: writes everything the outbox hands
/// it to `server`; the bytes it wrote.
async fn write_as_the_writer(o: &Outbox, waker: &Waker, server: &TcpStream) -> usize {
    let mut cx = Context::from_waker(waker);
    let mut out = VecDeque::new();
    let mut sent = 0;
    while let Poll::Ready(WsBatch::Frames) = o.poll_websocket(&mut cx, &mut out, 64) {
        for f in out.drain(..) {
            let mut at = 0;
            while at < f.len() {
                server.writable().await.unwrap();
                match server.try_write(&f[at..]) {
                    Ok(n) => at += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            sent += f.len();
        }
    }
    sent
}

#[tokio::test]
async fn a_flush_the_socket_does_not_take_whole_goes_on_with_the_writer() {
    let (o, server, mut client, waker, woken) = sleeping_writer(8).await;
    let (big, x, y) = (big_packet(), pkt("4x"), pkt("4y"));
    let expected = wire_of(&[&big, &x, &y]);
    o.deliver_deferred(&big, 1);
    o.deliver_deferred(&x, 2);
    o.deliver_deferred(&y, 3);
    o.flush();
    assert_eq!(woken.get(), 1, "the writer is woken for the rest");

    let total = expected.len();
    let reading = tokio::spawn(async move { read_exactly(&mut client, total).await });
    let sent = write_as_the_writer(&o, &waker, &server).await;
    assert!(sent < total, "part went out with the flush");
    let got = reading.await.unwrap();
    assert!(got == expected, "bytes arrive whole and in order");
}

#[tokio::test]
async fn what_the_socket_does_not_take_goes_first_to_the_writer() {
    let (o, server, mut client, waker, woken) = sleeping_writer(8).await;
    let (big, z) = (big_packet(), pkt("4z"));
    let expected = wire_of(&[&big, &z]);
    o.push(big).unwrap();
    assert_eq!(woken.get(), 1, "the writer is woken for the rest");
    // The next packet waits behind the rest.
    o.push(z).unwrap();
    assert_eq!(o.len(), 1);

    // The writer sends the rest, then the next packet.
    let total = expected.len();
    let reading = tokio::spawn(async move { read_exactly(&mut client, total).await });
    let sent = write_as_the_writer(&o, &waker, &server).await;
    assert!(sent < total - pkt("4z").ws_len(), "part went through");
    let got = reading.await.unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes arrive whole and in order");
}
