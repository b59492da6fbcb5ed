//! The huddle server: settings, startup, HTTP API and storage adapters around
//! the realtime core in `huddle-actors`.

pub mod accounts;
pub mod auth;
pub mod blob;
pub mod cluster;
pub mod error;
pub mod fdlimit;
pub mod http;
pub mod ratelimit;
pub mod settings;
pub mod startup;
pub mod state;
pub mod store;
