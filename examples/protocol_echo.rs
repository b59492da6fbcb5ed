//! The protocol echo server: the reference configuration of the official
//! Engine.IO and Socket.IO protocol compliance suites, built on the same
//! engine code as huddle.
//!
//! `cargo run --example protocol_echo` listens on port 3000 (or `PORT`) and
//! serves:
//! - Engine.IO alone at `/engine.io/`, echoing every message (text and binary);
//! - Socket.IO at `/socket.io/` with namespaces `/` and `/custom` that accept
//!   any connection, emit `auth` with the CONNECT's auth payload, answer
//!   `message` with `message-back` (same arguments, binary included) and
//!   acknowledge `message-with-ack` with the same arguments;
//!
//! with `pingInterval` 300 ms, `pingTimeout` 200 ms, `maxPayload` 1,000,000,
//! a 1000 ms connect timeout, and CORS open.

use actix_web::App;
use async_trait::async_trait;
use huddle_actors::engine::RawMessages;
use huddle_actors::protocol::engineio::Packet;
use huddle_actors::server::{serve, ServerOptions};
use huddle_actors::websocket::WsRoutes;
use huddle_actors::{Engine, EngineConfig, EventError, IncomingEvent, Namespace, Reply, Socket};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

struct Echo;

impl RawMessages for Echo {
    fn on_message(&self, packet: &Packet) -> Vec<Packet> {
        vec![packet.clone()]
    }
}

struct EchoNamespace;

#[async_trait(?Send)]
impl Namespace for EchoNamespace {
    async fn on_connect(&self, socket: &Socket, auth: &Value) -> Result<(), EventError> {
        let auth = if auth.is_null() {
            Value::Object(Default::default())
        } else {
            auth.clone()
        };
        socket.emit("auth", &auth);
        Ok(())
    }

    async fn on_event(&self, socket: &Socket, event: IncomingEvent) -> Result<Reply, EventError> {
        match event.name.as_str() {
            "message" => {
                socket.emit_binary("message-back", event.args, event.attachments);
                Ok(Reply::none())
            }
            "message-with-ack" => Ok(Reply {
                args: event.args,
                attachments: event.attachments,
                ..Reply::default()
            }),
            _ => Ok(Reply::none()),
        }
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        connect_timeout: Duration::from_millis(1000),
        recovery_window: None,
        require_auth: false,
        events_per_second: 0,
        max_connections_per_user: 0,
        ..EngineConfig::default()
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let raw = Engine::builder(config()).raw(Arc::new(Echo)).build();
    let ns: Arc<dyn Namespace> = Arc::new(EchoNamespace);
    let sio = Engine::builder(config())
        .namespace("/", ns.clone())
        .namespace("/custom", ns)
        .build();
    log::info!("protocol echo server listening on 0.0.0.0:{port}");
    let routes = WsRoutes::new()
        .at("/engine.io", raw.clone())
        .at("/socket.io", sio.clone());
    let app = move || {
        let raw = raw.clone();
        let sio = sio.clone();
        App::new()
            .wrap(actix_cors::Cors::permissive())
            .configure(move |cfg| {
                huddle_actors::transport::configure_at(cfg, "/engine.io", raw);
                huddle_actors::transport::configure(cfg, sio);
            })
    };
    let listener = std::net::TcpListener::bind(("0.0.0.0", port))?;
    serve(listener, app, routes, ServerOptions::default())?.await
}
