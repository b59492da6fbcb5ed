//! Blob store backends: the implementations of the core's
//! [`BlobStore`](huddle_actors::blob::BlobStore) port, each in its own file.
//! The local directory under `DATA_DIR` is the default; S3 (any
//! S3-compatible server) is used when `s3.bucket` is set.

#[cfg(test)]
mod conformance;
pub mod local;
pub mod s3;

pub use local::LocalBlobStore;
pub use s3::{S3BlobStore, S3Config};
