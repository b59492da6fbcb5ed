//! The S3 blob store, through `rusoto_s3`: any S3-compatible server (AWS,
//! MinIO, moto...) at a custom endpoint, path-style addressing, static
//! credentials from the settings, plain `http://` endpoints as well as TLS.
//!
//! How an upload maps onto S3: socket chunks are far smaller than the 5 MiB
//! S3 demands of every multipart part but the last, so each chunk is stored
//! as its own small object, `parts/{staging}/{index:010}`, the moment it
//! arrives (a chunk is listed in `receivedChunks` once that `PutObject`
//! succeeded, so `receivedChunks` means exactly "objects under the upload's
//! prefix"). [`BlobStore::assemble`] then streams those objects, in order,
//! into one S3 multipart upload of `files/{key}` in parts of
//! [`S3_PART_SIZE`] bytes (the last one shorter), hashing as it goes; a file
//! smaller than one part is written with a single `PutObject`. Memory per
//! assembly is one part buffer plus one network piece, whatever the file
//! size. A failure while assembling aborts the multipart upload, so no
//! half-written object and no orphaned parts stay behind; cancel and expiry
//! delete the chunk objects ([`BlobStore::delete_parts`]). (A node killed in
//! the middle of an assembly leaves an incomplete multipart upload: give
//! the bucket an `AbortIncompleteMultipartUpload` lifecycle rule.)
//!
//! Downloads are ranged `GetObject` requests, streamed as S3 sends them.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use huddle_actors::blob::{valid_name, Assembled, BlobError, BlobStore, ByteStream};
use rusoto_core::{HttpClient, Region, RusotoError};
use rusoto_credential::StaticProvider;
use rusoto_s3::{
    AbortMultipartUploadRequest, CompleteMultipartUploadRequest, CompletedMultipartUpload,
    CompletedPart, CreateBucketRequest, CreateMultipartUploadRequest, Delete, DeleteObjectRequest,
    DeleteObjectsRequest, GetObjectRequest, HeadBucketRequest, HeadObjectRequest,
    ListObjectsV2Request, ObjectIdentifier, PutObjectRequest, S3Client, UploadPartRequest, S3,
};
use sha2::{Digest, Sha256};

/// Size of the multipart parts assembly writes: the S3 minimum.
pub const S3_PART_SIZE: usize = 5 * 1024 * 1024;

/// Where and as whom to reach the bucket.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// `http://host:port` or `https://...`; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Blobs in an S3 bucket.
#[derive(Clone)]
pub struct S3BlobStore {
    client: S3Client,
    bucket: String,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

fn check(name: &str) -> Result<(), BlobError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(BlobError::InvalidName(name.chars().take(64).collect()))
    }
}

fn parts_prefix(staging: &str) -> String {
    format!("parts/{staging}/")
}

fn part_key(staging: &str, index: u32) -> String {
    format!("parts/{staging}/{index:010}")
}

fn blob_key(key: &str) -> String {
    format!("files/{key}")
}

/// Whether a rusoto error is the server's "no such key / bucket" (HEAD
/// requests have no body, so only the status tells).
fn is_not_found<E>(e: &RusotoError<E>) -> bool {
    matches!(e, RusotoError::Unknown(resp) if resp.status.as_u16() == 404)
}

/// A request body that shares `data` rather than copying it, so a part in
/// flight is held once.
fn body(data: Bytes) -> rusoto_core::ByteStream {
    let len = data.len();
    rusoto_core::ByteStream::new_with_size(
        futures_util::stream::once(futures_util::future::ready(Ok(data))),
        len,
    )
}

fn s3_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(RusotoError<E>) -> BlobError {
    let what = what.into();
    move |e| BlobError::backend(what, e)
}

impl S3BlobStore {
    /// A client for `config`. Accepts `http://` and `https://` endpoints
    /// (rustls, the platform's root certificates); no request is made yet.
    pub fn new(config: &S3Config) -> Result<Self, BlobError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let http = HttpClient::from_connector(connector);
        let credentials = StaticProvider::new_minimal(
            config.access_key_id.clone(),
            config.secret_access_key.clone(),
        );
        let region = match &config.endpoint {
            // A custom region makes rusoto address `{endpoint}/{bucket}/{key}`
            // (path-style), which every S3-compatible server understands.
            Some(endpoint) => Region::Custom {
                name: config.region.clone(),
                endpoint: endpoint.trim_end_matches('/').to_owned(),
            },
            None => config.region.parse().map_err(|e| {
                BlobError::backend(format!("unknown S3 region {:?}", config.region), e)
            })?,
        };
        Ok(S3BlobStore {
            client: S3Client::new_with(http, credentials, region),
            bucket: config.bucket.clone(),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying client (tests read objects through it directly).
    pub fn client(&self) -> &S3Client {
        &self.client
    }

    /// The S3 key of blob `key` (tests look objects up with it).
    pub fn object_key(key: &str) -> String {
        blob_key(key)
    }

    /// Creates the bucket (tests and first-time setups; production buckets
    /// are made by the operator).
    pub async fn create_bucket(&self) -> Result<(), BlobError> {
        self.client
            .create_bucket(CreateBucketRequest {
                bucket: self.bucket.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(s3_err("creating bucket"))
    }

    async fn put_object(&self, key: String, data: Bytes) -> Result<(), BlobError> {
        self.client
            .put_object(PutObjectRequest {
                bucket: self.bucket.clone(),
                key,
                content_length: Some(data.len() as i64),
                body: Some(body(data)),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(s3_err("writing object"))
    }

    /// The object's bytes, as S3 streams them; `NotFound` when absent.
    async fn get_stream(
        &self,
        key: String,
        range: Option<String>,
    ) -> Result<ByteStream, BlobError> {
        let out = self
            .client
            .get_object(GetObjectRequest {
                bucket: self.bucket.clone(),
                key: key.clone(),
                range,
                ..Default::default()
            })
            .await
            .map_err(|e| match e {
                RusotoError::Service(rusoto_s3::GetObjectError::NoSuchKey(_)) => {
                    BlobError::NotFound(key)
                }
                e if is_not_found(&e) => BlobError::NotFound(key),
                e => BlobError::backend("reading object", e),
            })?;
        let body = out.body.ok_or_else(|| {
            BlobError::backend("reading object", std::io::Error::other("no body"))
        })?;
        Ok(Box::pin(
            body.map_err(|e| BlobError::backend("reading object", e)),
        ))
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        let res = self
            .client
            .abort_multipart_upload(AbortMultipartUploadRequest {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                upload_id: upload_id.to_owned(),
                ..Default::default()
            })
            .await;
        if let Err(e) = res {
            log::warn!("aborting multipart upload of {key}: {e}");
        }
    }
}

/// An S3 multipart upload being filled, part by part.
struct Multipart {
    upload_id: String,
    parts: Vec<CompletedPart>,
}

impl S3BlobStore {
    async fn upload_part(
        &self,
        key: &str,
        multipart: &mut Option<Multipart>,
        data: Bytes,
    ) -> Result<(), BlobError> {
        if multipart.is_none() {
            let created = self
                .client
                .create_multipart_upload(CreateMultipartUploadRequest {
                    bucket: self.bucket.clone(),
                    key: key.to_owned(),
                    ..Default::default()
                })
                .await
                .map_err(s3_err("starting multipart upload"))?;
            let upload_id = created.upload_id.ok_or_else(|| {
                BlobError::backend("starting multipart upload", std::io::Error::other("no id"))
            })?;
            *multipart = Some(Multipart {
                upload_id,
                parts: Vec::new(),
            });
        }
        let mp = multipart.as_mut().expect("just set");
        let number = mp.parts.len() as i64 + 1;
        let out = self
            .client
            .upload_part(UploadPartRequest {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                upload_id: mp.upload_id.clone(),
                part_number: number,
                content_length: Some(data.len() as i64),
                body: Some(body(data)),
                ..Default::default()
            })
            .await
            .map_err(s3_err(format!("uploading part {number}")))?;
        mp.parts.push(CompletedPart {
            e_tag: out.e_tag,
            part_number: Some(number),
        });
        Ok(())
    }

    /// The body of `assemble`; the caller aborts `multipart` on failure.
    async fn assemble_into(
        &self,
        staging: &str,
        parts: u32,
        key: &str,
        multipart: &mut Option<Multipart>,
    ) -> Result<Assembled, BlobError> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = BytesMut::with_capacity(S3_PART_SIZE);
        for index in 0..parts {
            let mut part = self
                .get_stream(part_key(staging, index), None)
                .await
                .map_err(|e| match e {
                    BlobError::NotFound(_) => BlobError::NotFound(format!("part {index}")),
                    e => e,
                })?;
            while let Some(piece) = part.next().await {
                let piece = piece?;
                hasher.update(&piece);
                size += piece.len() as u64;
                let mut rest = &piece[..];
                while !rest.is_empty() {
                    let take = rest.len().min(S3_PART_SIZE - buf.len());
                    buf.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if buf.len() == S3_PART_SIZE {
                        self.upload_part(key, multipart, buf.split().freeze())
                            .await?;
                    }
                }
            }
        }
        match multipart {
            // Smaller than one part: a plain object.
            None => self.put_object(key.to_owned(), buf.freeze()).await?,
            Some(_) => {
                if !buf.is_empty() {
                    self.upload_part(key, multipart, buf.split().freeze())
                        .await?;
                }
                let mp = multipart.as_ref().expect("started");
                self.client
                    .complete_multipart_upload(CompleteMultipartUploadRequest {
                        bucket: self.bucket.clone(),
                        key: key.to_owned(),
                        upload_id: mp.upload_id.clone(),
                        multipart_upload: Some(CompletedMultipartUpload {
                            parts: Some(mp.parts.clone()),
                        }),
                        ..Default::default()
                    })
                    .await
                    .map_err(s3_err("completing multipart upload"))?;
            }
        }
        Ok(Assembled {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put_part(
        &self,
        staging: &str,
        index: u32,
        _offset: u64,
        data: Bytes,
    ) -> Result<(), BlobError> {
        // Parts are objects of their own, named by index.
        check(staging)?;
        self.put_object(part_key(staging, index), data).await
    }

    async fn assemble(&self, staging: &str, parts: u32, key: &str) -> Result<Assembled, BlobError> {
        check(staging)?;
        check(key)?;
        let object = blob_key(key);
        let mut multipart = None;
        let result = self
            .assemble_into(staging, parts, &object, &mut multipart)
            .await;
        if result.is_err() {
            if let Some(mp) = &multipart {
                self.abort(&object, &mp.upload_id).await;
            }
        }
        result
    }

    async fn delete_parts(&self, staging: &str) -> Result<(), BlobError> {
        check(staging)?;
        let prefix = parts_prefix(staging);
        loop {
            // Each round lists and deletes at most 1000 keys (the S3 batch
            // limit), so memory stays bounded however many parts there are.
            let listed = self
                .client
                .list_objects_v2(ListObjectsV2Request {
                    bucket: self.bucket.clone(),
                    prefix: Some(prefix.clone()),
                    max_keys: Some(1000),
                    ..Default::default()
                })
                .await
                .map_err(s3_err("listing parts"))?;
            let keys: Vec<ObjectIdentifier> = listed
                .contents
                .unwrap_or_default()
                .into_iter()
                .filter_map(|o| o.key)
                .map(|key| ObjectIdentifier {
                    key,
                    version_id: None,
                })
                .collect();
            if keys.is_empty() {
                return Ok(());
            }
            self.client
                .delete_objects(DeleteObjectsRequest {
                    bucket: self.bucket.clone(),
                    delete: Delete {
                        objects: keys,
                        quiet: Some(true),
                    },
                    ..Default::default()
                })
                .await
                .map_err(s3_err("deleting parts"))?;
        }
    }

    async fn size(&self, key: &str) -> Result<u64, BlobError> {
        check(key)?;
        let out = self
            .client
            .head_object(HeadObjectRequest {
                bucket: self.bucket.clone(),
                key: blob_key(key),
                ..Default::default()
            })
            .await
            .map_err(|e| match e {
                e if is_not_found(&e) => BlobError::NotFound(key.to_owned()),
                RusotoError::Service(rusoto_s3::HeadObjectError::NoSuchKey(_)) => {
                    BlobError::NotFound(key.to_owned())
                }
                e => BlobError::backend("reading object size", e),
            })?;
        Ok(out.content_length.unwrap_or(0).max(0) as u64)
    }

    async fn read(&self, key: &str, start: u64, len: u64) -> Result<ByteStream, BlobError> {
        check(key)?;
        if len == 0 {
            // A zero-length range cannot be expressed; check the blob exists.
            self.size(key).await?;
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let range = format!("bytes={}-{}", start, start + len - 1);
        self.get_stream(blob_key(key), Some(range)).await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        check(key)?;
        self.client
            .delete_object(DeleteObjectRequest {
                bucket: self.bucket.clone(),
                key: blob_key(key),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(s3_err("deleting object"))
    }

    async fn ping(&self) -> Result<(), BlobError> {
        self.client
            .head_bucket(HeadBucketRequest {
                bucket: self.bucket.clone(),
                ..Default::default()
            })
            .await
            .map_err(s3_err("reaching the bucket"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a fresh bucket of the test S3 server named by
    /// `HUDDLE_TEST_S3_ENDPOINT` (scripts/s3-test-server.sh starts one).
    async fn test_store() -> Option<S3BlobStore> {
        let Ok(endpoint) = std::env::var("HUDDLE_TEST_S3_ENDPOINT") else {
            eprintln!("HUDDLE_TEST_S3_ENDPOINT unset: run scripts/test.sh for the S3 tests");
            return None;
        };
        let store = S3BlobStore::new(&S3Config {
            bucket: format!("huddle-test-{}", uuid::Uuid::new_v4().simple()),
            endpoint: Some(endpoint),
            region: "us-east-1".into(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        })
        .unwrap();
        store.create_bucket().await.unwrap();
        Some(store)
    }

    #[tokio::test]
    async fn parts_assemble_in_order_and_read_back_by_range() {
        let Some(store) = test_store().await else {
            return;
        };
        super::super::conformance::parts_assemble_in_order_and_read_back_by_range(&store).await;
    }

    /// Larger than one S3 part: assembled through a multipart upload; a
    /// missing part aborts it and leaves no object.
    #[tokio::test]
    async fn large_files_go_through_multipart_and_failures_abort() {
        let Some(store) = test_store().await else {
            return;
        };
        let chunk = 512 * 1024;
        let data: Vec<u8> = (0..(12 * 1024 * 1024 + 1000) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let parts = data.len().div_ceil(chunk) as u32;
        for (i, c) in data.chunks(chunk).enumerate() {
            store
                .put_part(
                    "big",
                    i as u32,
                    (i * chunk) as u64,
                    Bytes::copy_from_slice(c),
                )
                .await
                .unwrap();
        }
        let out = store.assemble("big", parts, "bigkey").await.unwrap();
        assert_eq!(out.size, data.len() as u64);
        assert_eq!(out.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(
            super::super::conformance::read_all(&store, "bigkey", 0, out.size).await,
            data
        );
        let mid = 5 * 1024 * 1024 - 10;
        assert_eq!(
            super::super::conformance::read_all(&store, "bigkey", mid as u64, 100).await,
            &data[mid..mid + 100]
        );
        // One part too many: part `parts` is missing.
        assert!(matches!(
            store.assemble("big", parts + 1, "broken").await,
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            store.size("broken").await,
            Err(BlobError::NotFound(_))
        ));
        let pending = store
            .client()
            .list_multipart_uploads(rusoto_s3::ListMultipartUploadsRequest {
                bucket: store.bucket().to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(pending.uploads.unwrap_or_default().is_empty());
        store.delete_parts("big").await.unwrap();
        let left = store
            .client()
            .list_objects_v2(ListObjectsV2Request {
                bucket: store.bucket().to_owned(),
                prefix: Some(parts_prefix("big")),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(left.contents.unwrap_or_default().is_empty());
    }
}
