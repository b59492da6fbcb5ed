//! `huddle-actors`: the realtime core of huddle.
//!
//! It holds the Engine.IO v4 / Socket.IO v5 codec (pure code), the actors that
//! carry traffic (one per connection, one per room, a registry that starts and
//! stops rooms), the namespaces' event handling, and the ports (traits) that
//! the server in `src/` implements: the document store, authentication, and
//! later the blob store and the bus between nodes.

pub mod auth;
pub mod ids;
pub mod model;
pub mod protocol;
pub mod store;
pub mod wire;
