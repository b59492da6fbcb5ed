//! Blob store backends: the implementations of the core's
//! [`BlobStore`](huddle_actors::blob::BlobStore) port, each in its own file.
//! The local directory under `DATA_DIR` is the default (and, for now, the
//! only) backend.

pub mod local;

pub use local::LocalBlobStore;
