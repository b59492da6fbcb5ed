//! Blob-store behaviour every backend must show, as test cases shared by the
//! local and the S3 backends' tests (each runs them against a real store).

use bytes::Bytes;
use futures_util::TryStreamExt;
use huddle_actors::blob::{BlobError, BlobStore};
use sha2::{Digest, Sha256};

/// Reads `len` bytes of `key` from `start` into one buffer.
pub async fn read_all(store: &dyn BlobStore, key: &str, start: u64, len: u64) -> Vec<u8> {
    let pieces: Vec<Bytes> = store
        .read(key, start, len)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    pieces.concat()
}

/// Parts written out of order (one twice) assemble in index order, read back
/// whole and by range; assembling again gives the same blob; deleting parts
/// is idempotent; names are checked.
pub async fn parts_assemble_in_order_and_read_back_by_range(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    // Out of order, with one part written twice.
    for (i, chunk) in data.chunks(70_000).enumerate().rev() {
        store
            .put_part(
                "st1",
                i as u32,
                i as u64 * 70_000,
                Bytes::copy_from_slice(chunk),
            )
            .await
            .unwrap();
    }
    store
        .put_part("st1", 0, 0, Bytes::copy_from_slice(&data[..70_000]))
        .await
        .unwrap();
    let out = store.assemble("st1", 3, "key1").await.unwrap();
    assert_eq!(out.size, data.len() as u64);
    assert_eq!(out.sha256, hex::encode(Sha256::digest(&data)));
    assert_eq!(store.size("key1").await.unwrap(), data.len() as u64);
    assert_eq!(read_all(store, "key1", 0, data.len() as u64).await, data);
    assert_eq!(
        read_all(store, "key1", 65_000, 70_000).await,
        &data[65_000..135_000]
    );
    // A completion retried after a crash assembles again: same blob.
    assert_eq!(store.assemble("st1", 3, "key1").await.unwrap(), out);
    assert_eq!(read_all(store, "key1", 0, data.len() as u64).await, data);
    store.delete_parts("st1").await.unwrap();
    store.delete_parts("st1").await.unwrap();
    assert!(matches!(
        store.assemble("st1", 3, "key2").await,
        Err(BlobError::NotFound(_))
    ));
    store.delete("key1").await.unwrap();
    assert!(matches!(
        store.size("key1").await,
        Err(BlobError::NotFound(_))
    ));
    assert!(matches!(
        store.put_part("../x", 0, 0, Bytes::new()).await,
        Err(BlobError::InvalidName(_))
    ));
    store.ping().await.unwrap();
}
