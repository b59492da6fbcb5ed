//! The local-directory blob store: `{DATA_DIR}/blobs/`.
//!
//! The parts of an upload are written in place into one staging file,
//! `parts/{staging}`, each at its offset, and flushed (`fdatasync`; the
//! directory too, the first time this process writes to that file), so a part
//! reported stored survives a crash. Nobody reads a part before the upload has
//! recorded it, which it does only once the part is on disk, so a part torn by
//! a crash is one the client sends again. Assembling hashes the staging file
//! and renames it to `files/{key[..2]}/{key}` (then syncs that directory): the
//! bytes are written once, and a blob appears whole or not at all. All file
//! work runs on the blocking thread pool; reads stream in pieces of
//! [`READ_PIECE`] bytes.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use huddle_actors::blob::{valid_name, Assembled, BlobError, BlobStore, ByteStream};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Size of the pieces reads stream at a time.
pub const READ_PIECE: usize = 64 * 1024;
/// Size of the pieces assembling hashes at a time.
const HASH_PIECE: usize = 1024 * 1024;
/// How many staging files the store remembers as having a durable directory
/// entry; past it the set starts over (costing a directory sync each).
const SYNCED_STAGING_MAX: usize = 10_000;

/// Blobs in a local directory.
#[derive(Clone, Debug)]
pub struct LocalBlobStore {
    root: PathBuf,
    /// Staging files whose directory entry this process has synced: their
    /// later parts skip the directory sync. (A part written while another
    /// call creates the file syncs the directory itself, so no part is
    /// reported stored before the file's entry is durable.)
    synced: Arc<Mutex<HashSet<String>>>,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BlobError {
    let what = what.into();
    move |e| {
        if e.kind() == io::ErrorKind::NotFound {
            BlobError::NotFound(what)
        } else {
            BlobError::backend(what, e)
        }
    }
}

fn check(name: &str) -> Result<(), BlobError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(BlobError::InvalidName(name.chars().take(64).collect()))
    }
}

/// Syncs a directory so a rename inside it is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The set of synced staging files; a panic while it was held leaves a set
/// that is still valid, so the poison is ignored.
fn lock(set: &Mutex<HashSet<String>>) -> MutexGuard<'_, HashSet<String>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes `data` at `offset` of `path` (created when missing) and flushes it.
fn write_part(path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.write_all_at(data, offset)?;
    file.sync_data()
}

/// Size and SHA-256 of everything `file` holds.
fn hash_file(mut file: File) -> io::Result<Assembled> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; HASH_PIECE];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Assembled {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

impl LocalBlobStore {
    /// A store rooted at `{data_dir}/blobs`, created when missing.
    pub fn open(data_dir: &Path) -> Result<Self, BlobError> {
        let root = data_dir.join("blobs");
        for sub in ["parts", "files"] {
            fs::create_dir_all(root.join(sub))
                .map_err(|e| BlobError::backend(format!("creating {}", root.display()), e))?;
        }
        Ok(LocalBlobStore {
            root,
            synced: Arc::default(),
        })
    }

    fn parts_dir(&self) -> PathBuf {
        self.root.join("parts")
    }

    fn staging_path(&self, staging: &str) -> PathBuf {
        self.parts_dir().join(staging)
    }

    fn blob_path(&self, key: &str) -> PathBuf {
        self.root
            .join("files")
            .join(&key[..2.min(key.len())])
            .join(key)
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| BlobError::backend("blob task failed", e))?
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put_part(
        &self,
        staging: &str,
        index: u32,
        offset: u64,
        data: Bytes,
    ) -> Result<(), BlobError> {
        check(staging)?;
        let (path, dir) = (self.staging_path(staging), self.parts_dir());
        let (synced, staging) = (Arc::clone(&self.synced), staging.to_owned());
        Self::blocking(move || {
            let err = |e| BlobError::backend(format!("writing part {index}"), e);
            write_part(&path, offset, &data).map_err(err)?;
            if !lock(&synced).contains(&staging) {
                sync_dir(&dir).map_err(err)?;
                let mut synced = lock(&synced);
                if synced.len() >= SYNCED_STAGING_MAX {
                    synced.clear();
                }
                synced.insert(staging);
            }
            Ok(())
        })
        .await
    }

    async fn assemble(
        &self,
        staging: &str,
        _parts: u32, // every part is in the one staging file
        key: &str,
    ) -> Result<Assembled, BlobError> {
        check(staging)?;
        check(key)?;
        let (source, target) = (self.staging_path(staging), self.blob_path(key));
        let synced = Arc::clone(&self.synced);
        let staging = staging.to_owned();
        Self::blocking(move || {
            let err = |what: &'static str| move |e| BlobError::backend(what, e);
            // Assembled before (a completion tried again): the blob is whole,
            // whatever a late copy of a part may have left in staging since.
            match File::open(&target) {
                Ok(file) => return hash_file(file).map_err(err("hashing blob")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BlobError::backend("opening blob", e)),
            }
            let file = match File::open(&source) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(BlobError::NotFound(format!("parts of {staging}")));
                }
                Err(e) => return Err(BlobError::backend("opening parts", e)),
            };
            let assembled = hash_file(file).map_err(err("hashing parts"))?;
            // The parts are on disk already; the move needs only the
            // directory entry made durable.
            let dir = target.parent().expect("blob paths have a parent");
            fs::create_dir_all(dir).map_err(err("creating blob directory"))?;
            fs::rename(&source, &target).map_err(err("moving parts into place"))?;
            sync_dir(dir).map_err(err("syncing blob directory"))?;
            lock(&synced).remove(&staging);
            Ok(assembled)
        })
        .await
    }

    async fn delete_parts(&self, staging: &str) -> Result<(), BlobError> {
        check(staging)?;
        let path = self.staging_path(staging);
        lock(&self.synced).remove(staging);
        Self::blocking(move || {
            // A directory is the layout before parts shared one file.
            let removed = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
                Ok(_) => fs::remove_file(&path),
                Err(e) => Err(e),
            };
            match removed {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(BlobError::backend("deleting parts", e)),
            }
        })
        .await
    }

    async fn size(&self, key: &str) -> Result<u64, BlobError> {
        check(key)?;
        let path = self.blob_path(key);
        let key = key.to_owned();
        Self::blocking(move || Ok(fs::metadata(&path).map_err(io_err(key))?.len())).await
    }

    async fn read(&self, key: &str, start: u64, len: u64) -> Result<ByteStream, BlobError> {
        check(key)?;
        let path = self.blob_path(key);
        let name = key.to_owned();
        let file = Self::blocking(move || {
            let mut f = File::open(&path).map_err(io_err(name))?;
            f.seek(SeekFrom::Start(start))
                .map_err(|e| BlobError::backend("seeking blob", e))?;
            Ok(f)
        })
        .await?;
        // Each step reads one piece on the blocking pool; the state (file,
        // bytes left) moves through the stream, so memory stays one piece.
        let stream = futures_util::stream::try_unfold((file, len), |(mut file, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let want = left.min(READ_PIECE as u64) as usize;
            let (file, piece) = tokio::task::spawn_blocking(move || {
                let mut buf = BytesMut::zeroed(want);
                let mut filled = 0;
                while filled < want {
                    let n = file.read(&mut buf[filled..])?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                buf.truncate(filled);
                Ok::<_, io::Error>((file, buf.freeze()))
            })
            .await
            .map_err(|e| BlobError::backend("blob read task failed", e))?
            .map_err(|e| BlobError::backend("reading blob", e))?;
            if piece.is_empty() {
                return Err(BlobError::backend(
                    "reading blob",
                    io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than expected"),
                ));
            }
            let left = left - piece.len() as u64;
            Ok(Some((piece, (file, left))))
        });
        Ok(Box::pin(stream))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        check(key)?;
        let path = self.blob_path(key);
        Self::blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::backend("deleting blob", e)),
        })
        .await
    }

    async fn ping(&self) -> Result<(), BlobError> {
        let root = self.root.clone();
        Self::blocking(move || {
            fs::metadata(root.join("files"))
                .map(|_| ())
                .map_err(|e| BlobError::backend("blob directory", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_assemble_in_order_and_read_back_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        super::super::conformance::parts_assemble_in_order_and_read_back_by_range(&store).await;
    }

    #[tokio::test]
    async fn parts_written_side_by_side_make_one_file_moved_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let chunk = 65_536;
        let writes = data.chunks(chunk).enumerate().map(|(i, c)| {
            store.put_part(
                "st",
                i as u32,
                (i * chunk) as u64,
                Bytes::copy_from_slice(c),
            )
        });
        for result in futures_util::future::join_all(writes).await {
            result.unwrap();
        }
        let staging = dir.path().join("blobs/parts/st");
        assert_eq!(fs::metadata(&staging).unwrap().len(), data.len() as u64);
        let parts = data.len().div_ceil(chunk) as u32;
        let out = store.assemble("st", parts, "key").await.unwrap();
        assert_eq!(out.size, data.len() as u64);
        assert_eq!(out.sha256, hex::encode(Sha256::digest(&data)));
        // Moved, not copied: the staging file is gone, the blob is whole.
        assert!(!staging.exists());
        assert_eq!(
            fs::read(dir.path().join("blobs/files/ke/key")).unwrap(),
            data
        );
        assert!(lock(&store.synced).is_empty());
        // A late copy of a part, then the completion tried again: the blob
        // already made is the answer, not the stray part.
        store
            .put_part("st", 3, 3 * chunk as u64, Bytes::copy_from_slice(b"late"))
            .await
            .unwrap();
        assert_eq!(store.assemble("st", parts, "key").await.unwrap(), out);
        assert_eq!(
            fs::read(dir.path().join("blobs/files/ke/key")).unwrap(),
            data
        );
    }

    #[tokio::test]
    async fn delete_parts_removes_a_parts_directory_of_the_older_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        let old = dir.path().join("blobs/parts/old");
        fs::create_dir_all(&old).unwrap();
        fs::write(old.join("0000000000"), b"part").unwrap();
        store.delete_parts("old").await.unwrap();
        assert!(!old.exists());
        assert!(matches!(
            store.assemble("old", 1, "k").await,
            Err(BlobError::NotFound(_))
        ));
    }
}
