//! The Engine.IO transports over actix-web, at `/socket.io/`: HTTP
//! long-polling (`GET` drains the outbox, `POST` carries client packets) and
//! WebSocket (a response body draining the outbox, and a reader task feeding
//! decoded frames to the connection actor), plus the upgrade from the first
//! to the second (`2probe` / `3probe` / `5`).
//!
//! Every failure answers as the reference Engine.IO server does: HTTP 400
//! with `{ code, message }` (0 unknown transport, 1 unknown session, 2 bad
//! handshake method, 3 bad request, 5 unsupported protocol version), 413
//! for a polling body over `maxPayload`, WebSocket close 1009 for a frame
//! over it.

use crate::connection::{Connection, Inbound, TransportClosed};
use crate::encoded::{pong_frame, Encoded, Frame};
use crate::engine::{Engine, SessionEntry};
use crate::namespace::DisconnectReason;
use crate::outbox::{Drain, Outbox, PollOutcome, WsBody, WsEnd};
use crate::protocol::engineio::{self, Handshake};
use actix::prelude::*;
use actix_http::ws::{Codec, Frame as WsFrame, Item, ProtocolError};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use rand::RngCore;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Mounts `engine`'s transports at `/socket.io/`.
pub fn configure(cfg: &mut web::ServiceConfig, engine: Engine) {
    configure_at(cfg, "/socket.io", engine);
}

/// Mounts `engine`'s transports at `path` (the protocol echo example also
/// serves Engine.IO alone at `/engine.io`).
pub fn configure_at(cfg: &mut web::ServiceConfig, path: &str, engine: Engine) {
    cfg.service(
        web::resource([path.to_owned(), format!("{path}/")])
            .app_data(web::Data::new(engine))
            .route(web::get().to(handle_get))
            .route(web::post().to(handle_post))
            .route(web::route().to(bad_method)),
    );
}

/// Connection hook for `HttpServer::on_connect`: turns Nagle's algorithm off
/// on every accepted TCP connection. A server push often takes several small
/// writes in a row (a CONNECT answer and the first event, a binary packet's
/// attachments, a burst of broadcasts); with Nagle on, every write after the
/// first waits for the client's delayed ACK, about 40 ms each time.
pub fn on_connect(conn: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Err(e) = tcp.set_nodelay(true) {
            log::debug!("cannot set TCP_NODELAY: {e}");
        }
    }
}

/// Handshake query parameters.
#[derive(Debug, Deserialize)]
pub struct EioQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
    token: Option<String>,
}

fn eio_error(code: u8, message: &str) -> HttpResponse {
    let status = if code == 4 {
        actix_web::http::StatusCode::FORBIDDEN
    } else {
        actix_web::http::StatusCode::BAD_REQUEST
    };
    HttpResponse::build(status).json(serde_json::json!({ "code": code, "message": message }))
}

/// A handshake-level refusal: the Engine.IO error code and message.
struct Refusal(u8, &'static str);

impl Refusal {
    fn response(&self) -> HttpResponse {
        eio_error(self.0, self.1)
    }
}

fn check_query(q: &EioQuery) -> Result<&str, Refusal> {
    if q.eio.as_deref() != Some("4") {
        return Err(Refusal(5, "Unsupported protocol version"));
    }
    match q.transport.as_deref() {
        Some(t @ ("polling" | "websocket")) => Ok(t),
        _ => Err(Refusal(0, "Transport unknown")),
    }
}

fn parse_query(req: &HttpRequest) -> Result<EioQuery, Refusal> {
    web::Query::<EioQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .map_err(|_| Refusal(3, "Bad request"))
}

fn new_sid() -> String {
    let mut raw = [0u8; 15];
    rand::thread_rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

async fn bad_method() -> HttpResponse {
    eio_error(2, "Bad handshake method")
}

/// Opens a session: starts its connection actor and registers it.
fn open_session(
    engine: &Engine,
    drain: Drain,
    token: Option<String>,
) -> (String, Arc<SessionEntry>) {
    let sid = new_sid();
    let outbox = Arc::new(Outbox::new(engine.config().outbound_queue_max, drain));
    let conn = Connection::new(
        engine.clone(),
        engine.next_conn_id(),
        sid.clone(),
        outbox.clone(),
        token,
    )
    .start();
    let entry = Arc::new(SessionEntry {
        conn,
        outbox,
        polling_get: Default::default(),
        polling_post: Default::default(),
        websocket: (drain == Drain::WebSocket).into(),
    });
    engine.add_session(sid.clone(), entry.clone());
    (sid, entry)
}

fn handshake_packet(engine: &Engine, sid: &str, upgrades: &[&str]) -> engineio::Packet {
    let cfg = engine.config();
    Handshake {
        sid: sid.to_owned(),
        upgrades: upgrades.iter().map(|s| s.to_string()).collect(),
        ping_interval: cfg.ping_interval.as_millis() as u64,
        ping_timeout: cfg.ping_timeout.as_millis() as u64,
        max_payload: cfg.max_payload as u64,
    }
    .to_packet()
}

fn polling_response(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=UTF-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

async fn handle_get(
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
) -> HttpResponse {
    let q = match parse_query(&req) {
        Ok(q) => q,
        Err(r) => return r.response(),
    };
    let transport = match check_query(&q) {
        Ok(t) => t,
        Err(r) => return r.response(),
    };
    if transport == "websocket" {
        return websocket(req, payload, engine.get_ref().clone(), q).await;
    }
    match &q.sid {
        None => {
            if engine.is_draining() {
                return HttpResponse::ServiceUnavailable().finish();
            }
            let (sid, _) = open_session(&engine, Drain::Polling, q.token.clone());
            let mut body = BytesMut::new();
            handshake_packet(&engine, &sid, &["websocket"]).encode_text(&mut body);
            polling_response(body.freeze())
        }
        Some(sid) => {
            let Some(session) = engine.session(sid) else {
                return eio_error(1, "Session ID unknown");
            };
            if session.outbox.drain() != Drain::Polling {
                // A WebSocket session, or one that has upgraded: polling
                // requests with its sid are refused, as the reference does.
                return eio_error(3, "Bad request");
            }
            if session.polling_get.swap(true, Ordering::SeqCst) {
                // Two GETs at once break the protocol: close the session.
                session.conn.do_send(TransportClosed {
                    reason: DisconnectReason::ParseError,
                    code: 1002,
                });
                return eio_error(3, "Bad request");
            }
            let outbox = session.outbox.clone();
            let outcome = futures_util::future::poll_fn(|cx| outbox.poll_polling(cx)).await;
            session.polling_get.store(false, Ordering::SeqCst);
            match outcome {
                PollOutcome::Payload(body) => polling_response(body),
                PollOutcome::Closed => polling_response(Bytes::from_static(b"1")),
            }
        }
    }
}

async fn handle_post(
    req: HttpRequest,
    mut payload: web::Payload,
    engine: web::Data<Engine>,
) -> HttpResponse {
    let q = match parse_query(&req) {
        Ok(q) => q,
        Err(r) => return r.response(),
    };
    if let Err(r) = check_query(&q) {
        return r.response();
    }
    if q.transport.as_deref() != Some("polling") {
        return eio_error(3, "Bad request");
    }
    let Some(sid) = &q.sid else {
        return eio_error(2, "Bad handshake method");
    };
    let Some(session) = engine.session(sid) else {
        return eio_error(1, "Session ID unknown");
    };
    if session.outbox.drain() != Drain::Polling {
        return eio_error(3, "Bad request");
    }
    if session.polling_post.swap(true, Ordering::SeqCst) {
        session.conn.do_send(TransportClosed {
            reason: DisconnectReason::ParseError,
            code: 1002,
        });
        return eio_error(3, "Bad request");
    }
    let max = engine.config().max_payload;
    let mut body = BytesMut::new();
    let mut too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > max);
    while !too_large {
        match payload.next().await {
            Some(Ok(chunk)) => {
                if body.len() + chunk.len() > max {
                    too_large = true;
                } else {
                    body.extend_from_slice(&chunk);
                }
            }
            Some(Err(_)) => {
                session.polling_post.store(false, Ordering::SeqCst);
                return eio_error(3, "Bad request");
            }
            None => break,
        }
    }
    let result = if too_large {
        session.conn.do_send(TransportClosed {
            reason: DisconnectReason::ParseError,
            code: 1009,
        });
        HttpResponse::PayloadTooLarge().json(serde_json::json!({
            "error": { "code": "payload_too_large", "message": format!("polling body over maxPayload ({max} bytes)") }
        }))
    } else {
        engine.metrics().bytes_in(body.len());
        match engineio::decode_payload(body.freeze()) {
            Ok(packets) => {
                if session.conn.send(Inbound { packets }).await.is_err() {
                    eio_error(1, "Session ID unknown")
                } else {
                    HttpResponse::Ok()
                        .insert_header((header::CONTENT_TYPE, "text/html"))
                        .body("ok")
                }
            }
            Err(e) => {
                log::debug!("session {sid}: bad polling payload: {e}");
                session.conn.do_send(TransportClosed {
                    reason: DisconnectReason::ParseError,
                    code: 1002,
                });
                eio_error(3, "Bad request")
            }
        }
    };
    session.polling_post.store(false, Ordering::SeqCst);
    result
}

async fn websocket(
    req: HttpRequest,
    payload: web::Payload,
    engine: Engine,
    q: EioQuery,
) -> HttpResponse {
    let (sid, entry, upgrading) = match &q.sid {
        Some(sid) => {
            let Some(session) = engine.session(sid) else {
                return eio_error(1, "Session ID unknown");
            };
            if session.websocket.swap(true, Ordering::SeqCst) {
                return eio_error(3, "Bad request");
            }
            (sid.clone(), session, true)
        }
        None => {
            if engine.is_draining() {
                return HttpResponse::ServiceUnavailable().finish();
            }
            let (sid, entry) = open_session(&engine, Drain::WebSocket, q.token.clone());
            (sid, entry, false)
        }
    };
    let mut response = match actix_web_actors::ws::handshake(&req) {
        Ok(r) => r,
        Err(e) => {
            log::debug!("websocket handshake refused: {e}");
            if upgrading {
                entry.websocket.store(false, Ordering::SeqCst);
            } else {
                entry.conn.do_send(TransportClosed {
                    reason: DisconnectReason::TransportClose,
                    code: 1002,
                });
            }
            return eio_error(3, "Bad request");
        }
    };
    if !upgrading {
        // The OPEN packet is the first frame of a WebSocket-only session.
        let open = handshake_packet(&engine, &sid, &[]);
        entry.outbox.push_control(Encoded::engine(&open));
    }
    let max = engine.config().max_payload;
    let body = WsBody::new(entry.outbox.clone());
    let end = body.end_handle();
    let reader = read_websocket(payload, entry.clone(), upgrading, max, end, engine.clone());
    actix_web::rt::spawn(reader);
    response.streaming(body)
}

/// Reads WebSocket frames and hands Engine.IO packets to the connection.
async fn read_websocket(
    mut payload: web::Payload,
    session: Arc<SessionEntry>,
    mut upgrading: bool,
    max: usize,
    end: Arc<WsEnd>,
    engine: Engine,
) {
    let mut codec = Codec::new().max_size(max);
    let mut buf = BytesMut::new();
    // A message split over continuation frames: (is_binary, bytes so far).
    let mut partial: Option<(bool, BytesMut)> = None;
    let close = |reason, code| {
        session.conn.do_send(TransportClosed { reason, code });
    };
    loop {
        let frame = match actix_codec::Decoder::decode(&mut codec, &mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => match payload.next().await {
                Some(Ok(chunk)) => {
                    buf.extend_from_slice(&chunk);
                    continue;
                }
                Some(Err(_)) | None => {
                    if !upgrading {
                        close(DisconnectReason::TransportClose, 1006);
                    } else {
                        // A failed upgrade leaves the session on polling.
                        end.end(1000);
                        session.websocket.store(false, Ordering::SeqCst);
                    }
                    return;
                }
            },
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
        let message = match frame {
            WsFrame::Text(b) => Some((false, b)),
            WsFrame::Binary(b) => Some((true, b)),
            WsFrame::Continuation(item) => {
                let (first, b, last) = match item {
                    Item::FirstText(b) => (Some(false), b, false),
                    Item::FirstBinary(b) => (Some(true), b, false),
                    Item::Continue(b) => (None, b, false),
                    Item::Last(b) => (None, b, true),
                };
                if let Some(binary) = first {
                    partial = Some((binary, BytesMut::from(&b[..])));
                } else {
                    match partial.as_mut() {
                        Some((_, acc)) if acc.len() + b.len() <= max => acc.extend_from_slice(&b),
                        Some(_) => {
                            close(DisconnectReason::ParseError, 1009);
                            return;
                        }
                        None => {
                            close(DisconnectReason::ParseError, 1002);
                            return;
                        }
                    }
                }
                if last {
                    partial.take().map(|(bin, acc)| (bin, acc.freeze()))
                } else {
                    None
                }
            }
            WsFrame::Ping(data) => {
                session.outbox.push_ws_direct(pong_frame(&data));
                None
            }
            WsFrame::Pong(_) => None,
            WsFrame::Close(_) => {
                if !upgrading {
                    close(DisconnectReason::TransportClose, 1000);
                } else {
                    // The client gave the upgrade up: answer its close, and
                    // leave the session on polling.
                    end.end(1000);
                    session.websocket.store(false, Ordering::SeqCst);
                }
                return;
            }
        };
        let Some((binary, data)) = message else {
            continue;
        };
        engine.metrics().bytes_in(data.len());
        let packet = if binary {
            engineio::Packet::decode_binary(data)
        } else {
            match engineio::Packet::decode_text(data) {
                Ok(p) => p,
                Err(e) => {
                    log::debug!("websocket: bad engine.io packet: {e}");
                    close(DisconnectReason::ParseError, 1002);
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
        if session
            .conn
            .send(Inbound {
                packets: vec![packet],
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn on_connect_turns_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap());
        on_connect(&accepted, &mut actix_web::dev::Extensions::new());
        assert!(accepted.nodelay().unwrap());
        drop(client);
    }
}
