//! The local-directory blob store: `{DATA_DIR}/blobs/`.
//!
//! Parts of an upload live in `parts/{staging}/{index:010}`, finished blobs in
//! `files/{key[..2]}/{key}`. A finished blob is written to a temporary file
//! that is flushed to disk (`fsync`) and then renamed into place, and the
//! directory is synced too, so a reader never sees half a file. A part is
//! written in place and flushed (`fdatasync`, then the directory when the file
//! is new): nobody reads a part before the upload has recorded it, which it
//! does only once the part is on disk, so a part torn by a crash is one the
//! client sends again, and the write skips a rename and its journal commit per
//! chunk. Either way a part reported stored survives a crash. All file work
//! runs on the blocking thread pool; reads stream in pieces of [`READ_PIECE`]
//! bytes.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use huddle_actors::blob::{valid_name, Assembled, BlobError, BlobStore, ByteStream};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Size of the pieces reads and assembly move at a time.
pub const READ_PIECE: usize = 64 * 1024;

/// Blobs in a local directory.
#[derive(Clone, Debug)]
pub struct LocalBlobStore {
    root: PathBuf,
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

/// Writes `data` through a temporary file, synced, then renamed to `path`.
fn write_atomic(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let dir = path.parent().expect("blob paths have a parent");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        fill(&mut file)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `data` as the whole of `path` and flushes it; syncs the directory
/// too when the file (or the directory) is new, so its entry is durable.
fn write_in_place(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("blob paths have a parent");
    let mut new_dir = false;
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        new_dir = true;
    }
    let new_file = !path.exists();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(data)?;
    file.sync_data()?;
    if new_dir {
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    if new_file || new_dir {
        sync_dir(dir)?;
    }
    Ok(())
}

impl LocalBlobStore {
    /// A store rooted at `{data_dir}/blobs`, created when missing.
    pub fn open(data_dir: &Path) -> Result<Self, BlobError> {
        let root = data_dir.join("blobs");
        for sub in ["parts", "files"] {
            fs::create_dir_all(root.join(sub))
                .map_err(|e| BlobError::backend(format!("creating {}", root.display()), e))?;
        }
        Ok(LocalBlobStore { root })
    }

    fn parts_dir(&self, staging: &str) -> PathBuf {
        self.root.join("parts").join(staging)
    }

    fn part_path(&self, staging: &str, index: u32) -> PathBuf {
        self.parts_dir(staging).join(format!("{index:010}"))
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
    async fn put_part(&self, staging: &str, index: u32, data: Bytes) -> Result<(), BlobError> {
        check(staging)?;
        let path = self.part_path(staging, index);
        Self::blocking(move || {
            write_in_place(&path, &data)
                .map_err(|e| BlobError::backend(format!("writing part {index}"), e))
        })
        .await
    }

    async fn assemble(&self, staging: &str, parts: u32, key: &str) -> Result<Assembled, BlobError> {
        check(staging)?;
        check(key)?;
        let this = self.clone();
        let (staging, target) = (staging.to_owned(), self.blob_path(key));
        Self::blocking(move || {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut missing = None;
            let written = write_atomic(&target, |out| {
                let mut buf = vec![0u8; READ_PIECE];
                for index in 0..parts {
                    let path = this.part_path(&staging, index);
                    let mut part = match File::open(&path) {
                        Ok(f) => f,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            missing = Some(index);
                            return Err(e);
                        }
                        Err(e) => return Err(e),
                    };
                    loop {
                        let n = part.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                        out.write_all(&buf[..n])?;
                        size += n as u64;
                    }
                }
                Ok(())
            });
            match (written, missing) {
                (Ok(()), _) => Ok(Assembled {
                    size,
                    sha256: hex::encode(hasher.finalize()),
                }),
                (Err(_), Some(index)) => Err(BlobError::NotFound(format!("part {index}"))),
                (Err(e), None) => Err(BlobError::backend("assembling blob", e)),
            }
        })
        .await
    }

    async fn delete_parts(&self, staging: &str) -> Result<(), BlobError> {
        check(staging)?;
        let dir = self.parts_dir(staging);
        Self::blocking(move || match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::backend("deleting parts", e)),
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
}
