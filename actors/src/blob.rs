//! The blob store port: where file bytes live. The core defines it; `src/blob/`
//! implements it (a local directory under `DATA_DIR` by default, S3 when
//! `s3.bucket` is set).
//!
//! An upload writes its chunks as numbered *parts* under a staging name as
//! they arrive (each part durable before it is reported stored), then
//! [`BlobStore::assemble`] streams the parts, in order, into the final blob,
//! hashing as it goes, so no step ever holds a whole file in memory.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

/// What can go wrong in the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The part or blob does not exist.
    #[error("blob not found: {0}")]
    NotFound(String),
    /// A name the store refuses (not one the server made).
    #[error("invalid blob name: {0}")]
    InvalidName(String),
    /// The backend failed (disk, network).
    #[error("blob store error: {message}")]
    Backend {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl BlobError {
    /// Wraps a backend failure, keeping it as the source.
    pub fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BlobError::Backend {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// What assembling produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembled {
    /// Total bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
}

/// A stream of a blob's bytes, in pieces of bounded size.
pub type ByteStream = BoxStream<'static, Result<Bytes, BlobError>>;

/// Stores upload parts and finished blobs. Names (staging names and keys) are
/// chosen by the server: ASCII letters, digits, `-` and `_`.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores part `index` of staging area `staging`, the bytes at `offset`
    /// of the finished blob, replacing any earlier copy; durable when it
    /// returns `Ok`. Every part but the last has the same length, so `offset`
    /// is `index` times that length.
    async fn put_part(
        &self,
        staging: &str,
        index: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<(), BlobError>;
    /// Makes parts `0..parts` of `staging`, in order, blob `key`, and reports
    /// its size and SHA-256. Call it only once every part is stored. The
    /// parts may become the blob (the local store moves its staging file);
    /// assembling again after a success, before
    /// [`delete_parts`](Self::delete_parts), reports the same blob.
    /// `NotFound` when the parts are missing.
    async fn assemble(&self, staging: &str, parts: u32, key: &str) -> Result<Assembled, BlobError>;
    /// Deletes every part of `staging` (fine when there are none).
    async fn delete_parts(&self, staging: &str) -> Result<(), BlobError>;
    /// Size of blob `key` in bytes.
    async fn size(&self, key: &str) -> Result<u64, BlobError>;
    /// `len` bytes of blob `key` from byte `start`.
    async fn read(&self, key: &str, start: u64, len: u64) -> Result<ByteStream, BlobError>;
    /// Deletes blob `key` (fine when absent).
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// Cheap reachability check for `/ready`.
    async fn ping(&self) -> Result<(), BlobError>;
}

/// Whether `name` is a valid staging name or key.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
