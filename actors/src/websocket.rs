//! The Engine.IO WebSocket transport, on the TCP socket itself.
//!
//! actix-http hands every `Connection: Upgrade` request to [`upgrade`]
//! together with the socket (see [`crate::server`]). It routes the request to
//! the engine mounted at its path, runs the Engine.IO checks the reference
//! server runs (answering its JSON errors), answers `101 Switching
//! Protocols`, and from then on one future per connection reads frames and
//! writes the outbox's frames on the bare `TcpStream`:
//!
//! - **Reading** holds no buffer while the client is quiet: it waits for the
//!   socket to be readable and only then takes memory for what arrived
//!   (whole frames are handed on, a partial one waits for the rest).
//! - **Writing** takes every frame that is waiting in the outbox (at most
//!   [`MAX_GATHER`]) and sends them with one `sendmsg`, straight from
//!   the shared bytes of each broadcast: a burst that arrives faster than the
//!   socket drains goes out in one system call, and no frame is copied.
//!
//! Going around actix-http's dispatcher for the life of the socket is what
//! keeps an idle connection small: the dispatcher keeps an 8 KiB read and an
//! 8 KiB write buffer per connection for as long as it lives.

use crate::connection::{Inbound, TransportClosed};
use crate::encoded::{pong_frame, Encoded, Frame};
use crate::engine::{Engine, SessionEntry};
use crate::namespace::DisconnectReason;
use crate::outbox::{Drain, Outbox, WsBody, WsEnd};
use crate::protocol::engineio;
use crate::transport::{self, Refusal};
use actix_codec::Framed;
use actix_http::body::BodySize;
use actix_http::h1;
use actix_http::ws::{Codec, Frame as WsFrame, Item, ProtocolError};
use actix_http::{Request, Response, StatusCode};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::SinkExt;
use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Most frames gathered into one `sendmsg`.
pub const MAX_GATHER: usize = 64;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;
/// How long the queued frames and the close frame may take to go out after
/// the client has gone quiet or closed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Which engine serves WebSocket upgrades at which path.
#[derive(Clone, Default)]
pub struct WsRoutes {
    routes: Vec<(String, Engine)>,
}

impl WsRoutes {
    /// No routes: every upgrade request is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `engine`'s WebSocket transport at `path` (with or without a
    /// trailing slash), as [`transport::configure_at`] serves its polling.
    pub fn at(mut self, path: &str, engine: Engine) -> Self {
        self.routes
            .push((path.trim_end_matches('/').to_owned(), engine));
        self
    }

    fn engine(&self, path: &str) -> Option<&Engine> {
        let path = path.trim_end_matches('/');
        self.routes
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, engine)| engine)
    }
}

/// Serves one upgrade request: an Engine.IO WebSocket at a mounted path, or
/// an error response. Returns once the WebSocket runs as a task of its own
/// (or the refusal is written).
pub async fn upgrade(
    routes: WsRoutes,
    req: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> std::io::Result<()> {
    let Some(engine) = routes.engine(req.path()).cloned() else {
        return respond(&mut framed, StatusCode::NOT_FOUND, None).await;
    };
    let q = match transport::parse_query(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(refusal) => return refuse(&mut framed, refusal).await,
    };
    match transport::check_query(&q) {
        Ok("websocket") => {}
        Ok(_) => return refuse(&mut framed, Refusal(3, "Bad request")).await,
        Err(refusal) => return refuse(&mut framed, refusal).await,
    }
    // Checked before any session is touched: a refused handshake leaves
    // nothing to undo.
    let accept = match actix_http::ws::handshake(req.head()) {
        Ok(mut res) => res.finish().drop_body(),
        Err(e) => {
            log::debug!("websocket handshake refused: {e}");
            return refuse(&mut framed, Refusal(3, "Bad request")).await;
        }
    };
    let (sid, session, upgrading) = match &q.sid {
        Some(sid) => {
            let Some(session) = engine.session(sid) else {
                return refuse(&mut framed, Refusal(1, "Session ID unknown")).await;
            };
            if session.websocket.swap(true, Ordering::SeqCst) {
                return refuse(&mut framed, Refusal(3, "Bad request")).await;
            }
            (sid.clone(), session, true)
        }
        None => {
            if let Some(refusal) = engine.session_refusal() {
                return respond(&mut framed, StatusCode::SERVICE_UNAVAILABLE, refusal.body()).await;
            }
            if let Some(retry) = engine
                .handshake_refused(req.peer_addr(), &req.head().headers)
                .await
            {
                return respond_with(
                    &mut framed,
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(Bytes::from_static(transport::HANDSHAKE_LIMITED.as_bytes())),
                    Some(transport::retry_after_secs(retry)),
                )
                .await;
            }
            let (sid, session) = transport::open_session(&engine, Drain::WebSocket, q.token);
            (sid, session, false)
        }
    };
    if let Err(e) = framed.send((accept, BodySize::None).into()).await {
        log::debug!("websocket: sending 101 failed: {e}");
        abandon(&session, upgrading, 1006);
        return Ok(());
    }
    if !upgrading {
        // The OPEN packet is the first frame of a WebSocket-only session.
        let open = transport::handshake_packet(&engine, &sid, &[]);
        session.outbox.push_control(Encoded::engine(&open));
    }
    // The request's headers share the dispatcher's read buffer: let both go.
    drop(req);
    let parts = framed.into_parts();
    // Bytes the client sent right behind its request are its first frames.
    let leftover = parts.read_buf;
    drop(parts.write_buf);
    // The connection runs as a task of its own, sized to what it needs: the
    // HTTP dispatcher that called us (and its task) ends here.
    actix_web::rt::spawn(serve(parts.io, leftover, session, upgrading, engine));
    Ok(())
}

/// Answers an Engine.IO refusal (`400`/`403` with `{ code, message }`).
async fn refuse(
    framed: &mut Framed<TcpStream, h1::Codec>,
    refusal: Refusal,
) -> std::io::Result<()> {
    let (status, body) = refusal.parts();
    respond(framed, status, Some(body)).await
}

/// Answers `status` with an optional JSON body and closes.
async fn respond(
    framed: &mut Framed<TcpStream, h1::Codec>,
    status: StatusCode,
    body: Option<Bytes>,
) -> std::io::Result<()> {
    respond_with(framed, status, body, None).await
}

/// [`respond`], with a `Retry-After` of `retry_after` seconds when given.
async fn respond_with(
    framed: &mut Framed<TcpStream, h1::Codec>,
    status: StatusCode,
    body: Option<Bytes>,
    retry_after: Option<u64>,
) -> std::io::Result<()> {
    let mut res = Response::build(status);
    res.insert_header((actix_http::header::CONNECTION, "close"));
    if let Some(secs) = retry_after {
        res.insert_header((actix_http::header::RETRY_AFTER, secs));
    }
    let size = match &body {
        Some(b) => {
            res.insert_header((actix_http::header::CONTENT_TYPE, "application/json"));
            BodySize::Sized(b.len() as u64)
        }
        None => BodySize::Sized(0),
    };
    let head = res.finish().drop_body();
    framed.send((head, size).into()).await?;
    if let Some(body) = body {
        framed.send(h1::Message::Chunk(Some(body))).await?;
    }
    framed.send(h1::Message::Chunk(None)).await?;
    framed.close().await
}

/// Runs an accepted WebSocket until it ends: reading and writing side by
/// side in one future. While it runs, the outbox may write to the socket
/// itself when the writer has nothing in hand (see `Outbox::deliver`).
///
/// Not an `async fn`: every idle connection is this future, and an `async`
/// body keeps the slots of what it captured beside the pinned reader and
/// writer; [`Both`] holds only them.
fn serve(
    io: TcpStream,
    leftover: BytesMut,
    session: Arc<SessionEntry>,
    upgrading: bool,
    engine: Engine,
) -> impl Future<Output = ()> {
    let io = Arc::new(io);
    let attached = engine
        .config()
        .write_through
        .then(|| Attached::new(&session.outbox, &io));
    let body = WsBody::new(session.outbox.clone());
    let end = body.end_handle();
    let reading = read_frames(
        io.clone(),
        leftover,
        session.clone(),
        upgrading,
        end,
        engine,
    );
    Both {
        reading,
        writing: write_frames(io, body),
        session,
        _attached: attached,
        reading_done: false,
        grace: None,
    }
}

pin_project_lite::pin_project! {
    /// The reader and the writer of one WebSocket. When the reader ends
    /// (the session has been told, or the upgrade given up) what is queued
    /// and the close frame still go out, within [`CLOSE_GRACE`]; when the
    /// writer ends first (after the close frame, or failing) it is over.
    struct Both<R, W> {
        #[pin]
        reading: R,
        #[pin]
        writing: W,
        session: Arc<SessionEntry>,
        _attached: Option<Attached>,
        reading_done: bool,
        // Boxed and made only at the end: every idle connection is sized
        // for its largest state.
        grace: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<R, W> Future for Both<R, W>
where
    R: Future<Output = ()>,
    W: Future<Output = std::io::Result<()>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if !*this.reading_done && this.reading.poll(cx).is_ready() {
            *this.reading_done = true;
            *this.grace = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
        }
        if let Poll::Ready(written) = this.writing.poll(cx) {
            if let (Err(e), false) = (written, *this.reading_done) {
                log::debug!("websocket write failed: {e}");
                let upgrading = this.session.outbox.drain() != Drain::WebSocket;
                abandon(this.session, upgrading, 1006);
            }
            return Poll::Ready(());
        }
        match this.grace.as_mut() {
            Some(grace) => grace.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// The socket as the outbox's to write through, for as long as this lives
/// (however `serve` ends, the outbox lets the socket go).
struct Attached(Arc<Outbox>);

impl Attached {
    fn new(outbox: &Arc<Outbox>, io: &Arc<TcpStream>) -> Self {
        outbox.attach_socket(io.clone());
        Attached(outbox.clone())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.detach_socket();
    }
}

/// This WebSocket is gone: the session closes with `code`, or, when the
/// WebSocket was only an upgrade in progress, stays on long-polling.
fn abandon(session: &SessionEntry, upgrading: bool, code: u16) {
    if upgrading {
        session.websocket.store(false, Ordering::SeqCst);
    } else {
        session.conn.do_send(TransportClosed {
            reason: DisconnectReason::TransportClose,
            code,
        });
    }
}

/// Writes the body's frames, gathering what is waiting into one
/// `sendmsg`, until the body ends (after its close frame) or the socket fails;
/// then ends the socket's sending side.
///
/// (A function returning an `async` block rather than an `async fn`, here
/// and in [`read_frames`]: an `async fn` keeps a second slot for each of its
/// arguments, and every idle connection carries this future.)
#[allow(clippy::manual_async_fn)]
fn write_frames(io: Arc<TcpStream>, mut body: WsBody) -> impl Future<Output = std::io::Result<()>> {
    async move {
        let mut queued: VecDeque<Bytes> = VecDeque::new();
        let mut next = |cx: &mut Context<'_>, queued: &mut VecDeque<Bytes>| {
            let polled = body.poll_frames(cx, queued, MAX_GATHER);
            if polled.is_pending() {
                // Asleep with nothing in hand: the last burst's room is
                // given back (an idle connection keeps none).
                *queued = VecDeque::new();
            }
            polled
        };
        while std::future::poll_fn(|cx| next(cx, &mut queued)).await {
            write_all(&io, &mut queued).await?;
        }
        socket2::SockRef::from(&*io).shutdown(std::net::Shutdown::Write)
    }
}

/// Writes every queued frame, as few system calls as the socket allows.
async fn write_all(io: &TcpStream, queued: &mut VecDeque<Bytes>) -> std::io::Result<()> {
    while !queued.is_empty() {
        // The slices live on the stack of one poll, not in the future.
        let mut written = std::future::poll_fn(|cx| loop {
            std::task::ready!(io.poll_write_ready(cx))?;
            let mut slices = [IoSlice::new(&[]); MAX_GATHER];
            let n = queued.len().min(MAX_GATHER);
            for (slice, frame) in slices.iter_mut().zip(queued.iter()) {
                *slice = IoSlice::new(frame);
            }
            let sent = io.try_io(tokio::io::Interest::WRITABLE, || {
                crate::outbox::send_frames(io, &slices[..n])
            });
            match sent {
                // Not writable after all: readiness is cleared, wait again.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return std::task::Poll::Ready(other),
            }
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let front = queued.front_mut().expect("written bytes came from a frame");
            if written >= front.len() {
                written -= front.len();
                queued.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
    Ok(())
}

/// Reads WebSocket frames and hands Engine.IO packets to the connection.
// Not an `async fn` on purpose (its arguments would take a second slot each).
#[allow(clippy::manual_async_fn)]
fn read_frames(
    rh: Arc<TcpStream>,
    mut buf: BytesMut,
    session: Arc<SessionEntry>,
    mut upgrading: bool,
    end: Arc<WsEnd>,
    engine: Engine,
) -> impl Future<Output = ()> {
    async move {
        let max = engine.config().max_payload;
        let mut codec = Codec::new().max_size(max);
        // A message split over continuation frames: (is_binary, bytes so far).
        let mut partial: Option<(bool, BytesMut)> = None;
        let close = |reason, code| {
            session.conn.do_send(TransportClosed { reason, code });
        };
        // Whether the buffer holds no whole frame: read before decoding.
        let mut starved = false;
        loop {
            if starved {
                // Waited for here, with nothing of the last decode kept in
                // the task (it is sized for its largest state).
                match read_some(&rh, &mut buf).await {
                    Ok(true) => starved = false,
                    Ok(false) | Err(_) => {
                        gone(&end, &session, upgrading, 1006);
                        return;
                    }
                }
            }
            // Decoded in a block of its own, so that only the packet is kept in
            // the task while the connection takes it.
            let packet = {
                let frame = match actix_codec::Decoder::decode(&mut codec, &mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        if buf.is_empty() {
                            // Hold no memory while the client is quiet.
                            buf = BytesMut::new();
                        }
                        starved = true;
                        continue;
                    }
                    Err(ProtocolError::Overflow) => {
                        close(DisconnectReason::ParseError, 1009);
                        return;
                    }
                    Err(e) => {
                        log::debug!("websocket protocol error: {e}");
                        close(DisconnectReason::ParseError, 1002);
                        return;
                    }
                };
                match on_frame(frame, &mut partial, max, &session, &engine) {
                    Step::Packet(p) => p,
                    Step::Nothing => continue,
                    Step::Closed => {
                        gone(&end, &session, upgrading, 1000);
                        return;
                    }
                    Step::Fail(code) => {
                        close(DisconnectReason::ParseError, code);
                        return;
                    }
                }
            };
            if upgrading {
                match &packet {
                    engineio::Packet::Ping(d) if &d[..] == b"probe" => {
                        let probe = Frame::text(b"3probe");
                        session.outbox.push_ws_direct(probe.ws_bytes().clone());
                        session.outbox.wake_poll_with_noop();
                        continue;
                    }
                    engineio::Packet::Upgrade => {
                        session.outbox.switch_to_websocket();
                        upgrading = false;
                        continue;
                    }
                    _ => {}
                }
            }
            // The request lives on the heap while the connection takes the
            // packet: inline it would size every idle connection's task for
            // this one state (176 bytes of it).
            let handing = Box::pin(session.conn.send(Inbound {
                packets: vec![packet],
            }));
            if handing.await.is_err() {
                return;
            }
        }
    }
}

/// The client went away or closed: the session closes with `code`; an
/// upgrade in progress is given up instead (its close is answered, the
/// session stays on polling).
fn gone(end: &WsEnd, session: &SessionEntry, upgrading: bool, code: u16) {
    if upgrading {
        end.end(1000);
    }
    abandon(session, upgrading, code);
}

/// What one WebSocket frame means for the reader.
enum Step {
    /// An Engine.IO packet for the connection.
    Packet(engineio::Packet),
    /// Nothing to hand on: a control frame, or part of a message.
    Nothing,
    /// The client sent a close frame.
    Closed,
    /// The client broke the protocol: the session closes with this code.
    Fail(u16),
}

/// Interprets one frame: data frames (whole, or reassembled from
/// continuations in `partial` within `max` bytes) become Engine.IO
/// packets; a ping is answered at once.
fn on_frame(
    frame: WsFrame,
    partial: &mut Option<(bool, BytesMut)>,
    max: usize,
    session: &SessionEntry,
    engine: &Engine,
) -> Step {
    let (binary, data) = match frame {
        WsFrame::Text(b) => (false, own_small(b)),
        WsFrame::Binary(b) => (true, own_small(b)),
        WsFrame::Continuation(item) => {
            let (first, b, last) = match item {
                Item::FirstText(b) => (Some(false), b, false),
                Item::FirstBinary(b) => (Some(true), b, false),
                Item::Continue(b) => (None, b, false),
                Item::Last(b) => (None, b, true),
            };
            match (first, partial.as_mut()) {
                (Some(binary), _) => *partial = Some((binary, BytesMut::from(&b[..]))),
                (None, Some((_, acc))) if acc.len() + b.len() <= max => acc.extend_from_slice(&b),
                (None, Some(_)) => return Step::Fail(1009),
                (None, None) => return Step::Fail(1002),
            }
            if !last {
                return Step::Nothing;
            }
            match partial.take() {
                Some((binary, acc)) => (binary, acc.freeze()),
                None => return Step::Nothing,
            }
        }
        WsFrame::Ping(data) => {
            session.outbox.push_ws_direct(pong_frame(&data));
            return Step::Nothing;
        }
        WsFrame::Pong(_) => return Step::Nothing,
        WsFrame::Close(_) => return Step::Closed,
    };
    engine.metrics().bytes_in(data.len());
    if binary {
        return Step::Packet(engineio::Packet::decode_binary(data));
    }
    match engineio::Packet::decode_text(data) {
        Ok(p) => Step::Packet(p),
        Err(e) => {
            log::debug!("websocket: bad engine.io packet: {e}");
            Step::Fail(1002)
        }
    }
}

/// A small message gets its own allocation: as a slice of the read buffer
/// it would keep the whole buffer alive for as long as anything holds it.
fn own_small(payload: Bytes) -> Bytes {
    if payload.len() < READ_CHUNK / 4 {
        Bytes::copy_from_slice(&payload)
    } else {
        payload
    }
}

/// Waits until the socket has bytes, then appends what it has to `buf`.
/// `Ok(false)` at the end of the stream. Memory is taken only for bytes that
/// are there: a readiness that turns out stale gives back what it took.
async fn read_some(rh: &TcpStream, buf: &mut BytesMut) -> std::io::Result<bool> {
    loop {
        // Registers the waker directly: no readiness future in the task.
        std::future::poll_fn(|cx| rh.poll_read_ready(cx)).await?;
        let was_empty = buf.is_empty();
        buf.reserve(READ_CHUNK);
        match rh.try_read_buf(buf) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if was_empty {
                    *buf = BytesMut::new();
                }
            }
            Err(e) => return Err(e),
        }
    }
}
