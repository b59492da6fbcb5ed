//! `huddle-actors`: the realtime core of huddle.
//!
//! It holds the Engine.IO v4 / Socket.IO v5 codec (pure code), the actors that
//! carry traffic (one per connection, one per room, a registry that starts and
//! stops rooms), the namespaces' event handling, and the ports (traits) that
//! the server in `src/` implements: the document store, authentication, the
//! blob store, and later the bus between nodes.

pub mod auth;
pub mod blob;
pub mod chat;
pub mod cluster;
pub mod collab;
pub mod config;
pub mod connection;
pub mod encoded;
pub mod engine;
pub mod events;
pub mod file_upload;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod namespace;
pub mod outbox;
pub mod protocol;
pub mod recovery;
pub mod registry;
pub mod room;
pub mod root;
pub mod server;
pub mod store;
pub mod transport;
pub mod upload;
pub mod upload_rules;
pub mod websocket;
pub mod wire;
pub mod workspace;

pub use config::EngineConfig;
pub use engine::Engine;
pub use namespace::{DisconnectReason, EventError, IncomingEvent, Namespace, Reply, Socket};
