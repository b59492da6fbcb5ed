//! The server publish API for other backends (PROTOCOL §7):
//! `POST /api/v1/publish { namespace?, rooms, event, data }` with
//! `Authorization: Bearer <service key>` broadcasts `event` with `data` to
//! those rooms, through the same path as the node's own broadcasts
//! (`Engine::emit_raw`: encoded once, recorded for recovery, and relayed to
//! every other node by the bridge), and answers 202 `{ ok: true }`.
//!
//! - With no `service.keys` (`SERVICE_KEYS`) the API is off and answers 404
//!   `not_found`, as a route that does not exist would: a node without keys
//!   does not advertise that it could publish.
//! - The key is checked before the body is read; every configured key is
//!   compared, each through its SHA-256 in constant time, so neither the
//!   length nor the content of a key leaks through timing. A missing or
//!   wrong key is 401 `unauthorized`.
//! - Everything is validated and refused with 400 `bad_request` naming the
//!   field: the namespace must be served here; 1 to [`MAX_ROOMS`] rooms of 1
//!   to [`MAX_ROOM_LEN`] bytes without control characters; an event name of
//!   1 to [`MAX_EVENT_LEN`] bytes without control characters that is not
//!   reserved ([`reserved_event`]: Socket.IO's own, and `error`, which
//!   clients read as the server's answer to a bad event); `data` present (any
//!   JSON, `null` included); no other fields. The body is JSON of at most
//!   64 KiB (413 above), so a packet always fits clients' `maxPayload`.

use crate::error::{ApiError, JSON_BODY_LIMIT};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use huddle_actors::ids::RoomName;
use huddle_actors::protocol::socketio;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Most rooms one publish may name.
pub const MAX_ROOMS: usize = 100;
/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 256;
/// Longest event name, in bytes.
pub const MAX_EVENT_LEN: usize = 128;
/// Whether a publish may not use `event`: the names the client library
/// reserves ([`socketio::RESERVED_EVENTS`]), and `error`, which means the
/// server refused what a client sent.
pub fn reserved_event(event: &str) -> bool {
    event == "error" || socketio::RESERVED_EVENTS.contains(&event)
}

/// Whether `presented` is one of `keys`. Every key is compared (no early
/// exit), each by its SHA-256 and without branching on bytes, so the time
/// taken says nothing about which bytes matched.
fn key_matches(keys: &[String], presented: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let mut found = 0u8;
    for key in keys {
        let key = Sha256::digest(key.as_bytes());
        let diff = key
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found |= u8::from(diff == 0);
    }
    found == 1
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

fn check_name(what: &str, name: &str, max: usize) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > max {
        return Err(bad(format!("{what} must have 1 to {max} bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(bad(format!("{what} must not contain control characters")));
    }
    Ok(())
}

/// A validated publish request.
#[derive(Debug, PartialEq)]
struct Publish {
    namespace: String,
    rooms: Vec<RoomName>,
    event: String,
    data: Vec<u8>,
}

/// Checks the body against every rule of the module doc (all but the
/// namespace being served, which needs the engine).
fn parse(body: &[u8]) -> Result<Publish, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad("the body must be a JSON object"));
    };
    let namespace = match obj.remove("namespace") {
        None | Some(Value::Null) => "/".to_owned(),
        Some(Value::String(s)) if s.starts_with('/') && s.len() <= MAX_EVENT_LEN => s,
        Some(_) => return Err(bad("namespace must be a string such as \"/chat\"")),
    };
    let rooms = match obj.remove("rooms") {
        Some(Value::Array(rooms)) => rooms,
        Some(_) => return Err(bad("rooms must be an array of room names")),
        None => return Err(bad("rooms is required")),
    };
    if rooms.is_empty() || rooms.len() > MAX_ROOMS {
        return Err(bad(format!("rooms must name 1 to {MAX_ROOMS} rooms")));
    }
    let mut names: Vec<RoomName> = Vec::with_capacity(rooms.len());
    for room in rooms {
        let Value::String(room) = room else {
            return Err(bad("rooms must be strings"));
        };
        check_name("a room name", &room, MAX_ROOM_LEN)?;
        let room = RoomName(room);
        // A room named twice still gets the event once.
        if !names.contains(&room) {
            names.push(room);
        }
    }
    let event = match obj.remove("event") {
        Some(Value::String(e)) => e,
        Some(_) => return Err(bad("event must be a string")),
        None => return Err(bad("event is required")),
    };
    check_name("event", &event, MAX_EVENT_LEN)?;
    if reserved_event(&event) {
        return Err(bad(format!("event \"{event}\" is reserved")));
    }
    let data = obj.remove("data").ok_or_else(|| bad("data is required"))?;
    if let Some(unknown) = first_key(&obj) {
        return Err(bad(format!("unknown field {unknown}")));
    }
    let data = serde_json::to_vec(&data)
        .map_err(|e| ApiError::internal("encoding publish data", e.to_string()))?;
    Ok(Publish {
        namespace,
        rooms: names,
        event,
        data,
    })
}

fn first_key(obj: &Map<String, Value>) -> Option<&str> {
    obj.keys().next().map(String::as_str)
}

/// `POST /api/v1/publish`. The body is read only once the key is known good,
/// and no further than the JSON limit.
pub async fn publish(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let keys = &state.settings.service.keys;
    if keys.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no route for POST {}",
            req.path()
        )));
    }
    let presented = crate::auth::bearer_token(&req).ok_or_else(|| {
        ApiError::Unauthorized("a service key is required (Authorization: Bearer <key>)".into())
    })?;
    if !key_matches(keys, presented) {
        return Err(ApiError::Unauthorized("unknown service key".into()));
    }
    let body = match payload.to_bytes_limited(JSON_BODY_LIMIT).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return Err(bad(format!("reading the body: {e}"))),
        Err(_) => {
            return Err(ApiError::PayloadTooLarge(format!(
                "JSON body larger than {JSON_BODY_LIMIT} bytes"
            )))
        }
    };
    let json_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_type {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json".into(),
        ));
    }
    let p = parse(&body)?;
    if state.engine.namespace(&p.namespace).is_none() {
        return Err(bad(format!("unknown namespace {}", p.namespace)));
    }
    state
        .engine
        .emit_raw(&p.namespace, &p.rooms, None, &p.event, &[&p.data]);
    log::debug!(
        "publish: {} to {} room(s) of {}",
        p.event,
        p.rooms.len(),
        p.namespace
    );
    Ok(HttpResponse::Accepted().json(json!({ "ok": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_whole() {
        let keys = vec!["first-key".to_owned(), "second-key".to_owned()];
        assert!(key_matches(&keys, "first-key"));
        assert!(key_matches(&keys, "second-key"));
        assert!(!key_matches(&keys, "second-ke"));
        assert!(!key_matches(&keys, "second-key2"));
        assert!(!key_matches(&keys, ""));
        assert!(!key_matches(&[], "first-key"));
    }

    #[test]
    fn parses_and_defaults() {
        let p = parse(br#"{"rooms":["a","b","a"],"event":"news","data":null}"#).unwrap();
        assert_eq!(p.namespace, "/");
        assert_eq!(p.rooms, vec![RoomName("a".into()), RoomName("b".into())]);
        assert_eq!(p.data, b"null");
    }

    #[test]
    fn refuses_bad_input() {
        let long_room = format!(
            r#"{{"rooms":["{}"],"event":"e","data":1}}"#,
            "r".repeat(MAX_ROOM_LEN + 1)
        );
        let many: Vec<String> = (0..=MAX_ROOMS).map(|i| format!("r{i}")).collect();
        let many = json!({ "rooms": many, "event": "e", "data": 1 }).to_string();
        for body in [
            "[1]",
            "{",
            r#"{"event":"e","data":1}"#,
            r#"{"rooms":"a","event":"e","data":1}"#,
            r#"{"rooms":[],"event":"e","data":1}"#,
            r#"{"rooms":[1],"event":"e","data":1}"#,
            r#"{"rooms":[""],"event":"e","data":1}"#,
            r#"{"rooms":["a\nb"],"event":"e","data":1}"#,
            r#"{"rooms":["a"],"data":1}"#,
            r#"{"rooms":["a"],"event":"","data":1}"#,
            r#"{"rooms":["a"],"event":7,"data":1}"#,
            r#"{"rooms":["a"],"event":"connect","data":1}"#,
            r#"{"rooms":["a"],"event":"error","data":1}"#,
            r#"{"rooms":["a"],"event":"e"}"#,
            r#"{"rooms":["a"],"event":"e","data":1,"extra":2}"#,
            r#"{"namespace":"chat","rooms":["a"],"event":"e","data":1}"#,
            r#"{"namespace":5,"rooms":["a"],"event":"e","data":1}"#,
            long_room.as_str(),
            many.as_str(),
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(ApiError::BadRequest(_))),
                "{body}"
            );
        }
    }
}
