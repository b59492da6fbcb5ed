//! The Engine.IO long-polling transport over actix-web, at `/socket.io/`
//! (`GET` drains the outbox, `POST` carries client packets), and what it
//! shares with the WebSocket transport of [`crate::websocket`] (the
//! handshake checks, opening a session). WebSocket requests, the upgrade
//! from polling included (`2probe` / `3probe` / `5`), never reach actix-web:
//! the server hands them to `websocket::upgrade` with the socket.
//!
//! Every failure answers as the reference Engine.IO server does: HTTP 400
//! with `{ code, message }` (0 unknown transport, 1 unknown session, 2 bad
//! handshake method, 3 bad request, 5 unsupported protocol version), 413
//! for a polling body over `maxPayload`, WebSocket close 1009 for a frame
//! over it.

use crate::connection::{Connection, Inbound, TransportClosed};
use crate::engine::{Engine, SessionEntry};
use crate::namespace::DisconnectReason;
use crate::outbox::{Drain, Outbox, PollOutcome};
use crate::protocol::engineio::{self, Handshake};
use actix::prelude::*;
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

/// Handshake query parameters.
#[derive(Debug, Deserialize)]
pub struct EioQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    pub(crate) sid: Option<String>,
    pub(crate) token: Option<String>,
}

fn eio_error(code: u8, message: &'static str) -> HttpResponse {
    Refusal(code, message).response()
}

/// A handshake-level refusal: the Engine.IO error code and message.
pub(crate) struct Refusal(pub(crate) u8, pub(crate) &'static str);

impl Refusal {
    /// The status (403 for code 4, else 400) and the JSON body.
    pub(crate) fn parts(&self) -> (actix_web::http::StatusCode, Bytes) {
        let status = if self.0 == 4 {
            actix_web::http::StatusCode::FORBIDDEN
        } else {
            actix_web::http::StatusCode::BAD_REQUEST
        };
        let body = serde_json::json!({ "code": self.0, "message": self.1 }).to_string();
        (status, Bytes::from(body))
    }

    fn response(&self) -> HttpResponse {
        let (status, body) = self.parts();
        HttpResponse::build(status)
            .content_type("application/json")
            .body(body)
    }
}

pub(crate) fn check_query(q: &EioQuery) -> Result<&str, Refusal> {
    if q.eio.as_deref() != Some("4") {
        return Err(Refusal(5, "Unsupported protocol version"));
    }
    match q.transport.as_deref() {
        Some(t @ ("polling" | "websocket")) => Ok(t),
        _ => Err(Refusal(0, "Transport unknown")),
    }
}

pub(crate) fn parse_query(query: &str) -> Result<EioQuery, Refusal> {
    web::Query::<EioQuery>::from_query(query)
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
pub(crate) fn open_session(
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

pub(crate) fn handshake_packet(engine: &Engine, sid: &str, upgrades: &[&str]) -> engineio::Packet {
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

/// The body of a handshake refused by the per-address limit (HTTP 429), in
/// the shape of Engine.IO's errors.
pub(crate) const HANDSHAKE_LIMITED: &str =
    r#"{"code":4,"message":"Too many new connections from this address; retry later"}"#;

/// Whole seconds for `Retry-After`, at least 1.
pub(crate) fn retry_after_secs(retry: std::time::Duration) -> u64 {
    (retry.as_secs() + u64::from(retry.subsec_nanos() > 0)).max(1)
}

async fn handle_get(req: HttpRequest, engine: web::Data<Engine>) -> HttpResponse {
    let q = match parse_query(req.query_string()) {
        Ok(q) => q,
        Err(r) => return r.response(),
    };
    let transport = match check_query(&q) {
        Ok(t) => t,
        Err(r) => return r.response(),
    };
    if transport == "websocket" {
        // WebSocket requests carry `Connection: Upgrade` and are served by
        // `websocket::upgrade`; one without it is no WebSocket.
        return eio_error(3, "Bad request");
    }
    match &q.sid {
        None => {
            if let Some(refusal) = engine.session_refusal() {
                let mut res = HttpResponse::ServiceUnavailable();
                return match refusal.body() {
                    Some(body) => res.content_type("application/json").body(body),
                    None => res.finish(),
                };
            }
            if let Some(retry) = engine
                .handshake_refused(req.peer_addr(), req.headers())
                .await
            {
                return HttpResponse::TooManyRequests()
                    .insert_header((header::RETRY_AFTER, retry_after_secs(retry)))
                    .content_type("application/json")
                    .body(HANDSHAKE_LIMITED);
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
                close_for_protocol_error(&engine, sid, &session, 1002);
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

/// Closes a polling session the client broke the protocol on. The session
/// leaves the node's table at once, so the client's next request with its
/// sid is refused (`Session ID unknown`) as by the reference server, even
/// before the connection actor has stopped.
fn close_for_protocol_error(engine: &Engine, sid: &str, session: &SessionEntry, code: u16) {
    engine.remove_session(sid);
    session.conn.do_send(TransportClosed {
        reason: DisconnectReason::ParseError,
        code,
    });
}

async fn handle_post(
    req: HttpRequest,
    mut payload: web::Payload,
    engine: web::Data<Engine>,
) -> HttpResponse {
    let q = match parse_query(req.query_string()) {
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
        close_for_protocol_error(&engine, sid, &session, 1002);
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
        close_for_protocol_error(&engine, sid, &session, 1009);
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
                close_for_protocol_error(&engine, sid, &session, 1002);
                eio_error(3, "Bad request")
            }
        }
    };
    session.polling_post.store(false, Ordering::SeqCst);
    result
}
