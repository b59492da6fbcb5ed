//! The huddle server: settings, startup, HTTP API and storage adapters around
//! the realtime core in `huddle-actors`.

pub mod store;
