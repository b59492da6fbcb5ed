//! Document store backends: the implementations of the core's
//! [`DocumentStore`](huddle_actors::store::DocumentStore) port.
//!
//! Each backend lives in its own file behind that one trait, so the rest of
//! the server never knows which one it talks to (house style 8). The embedded
//! store is the default: an on-disk file under `DATA_DIR`, no other process.
//! The MongoDB store is used when `MONGODB_URI` is set.
//! [`conformance`] is the behaviour suite every backend must pass; it is part
//! of the library so each backend's test file can run it. [`search_index`]
//! is the task search index both backends feed.

pub mod conformance;
pub mod embedded;
pub mod mongo;
pub mod search_index;

pub use embedded::EmbeddedStore;
pub use mongo::MongoStore;
