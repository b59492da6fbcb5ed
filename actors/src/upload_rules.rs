//! The rules of uploads, as pure functions: limits ([`UploadConfig`]), file
//! name sanitizing, the MIME allow-list and the check of a file's first bytes
//! against its declared type, hex SHA-256 checks, and the set of received
//! chunks. Shared by the socket namespace, the upload actor and the HTTP
//! fallback, and unit-tested here without any I/O.

use sha2::{Digest, Sha256};
use std::time::Duration;

/// Limits and timers of uploads (the `[uploads]` settings).
#[derive(Clone, Debug)]
pub struct UploadConfig {
    /// Chunk size when the client names none.
    pub default_chunk_size: u32,
    /// Smallest chunk size a client may ask for.
    pub min_chunk_size: u32,
    /// Largest chunk size a client may ask for.
    pub max_chunk_size: u32,
    /// Largest file over the socket.
    pub max_file_size: u64,
    /// Sessions in progress per user.
    pub max_in_progress: usize,
    /// A session expires this long after its last chunk.
    pub session_ttl: Duration,
    /// How often expired sessions are swept.
    pub sweep_interval: Duration,
    /// An idle upload actor stops after this long (its state is durable).
    pub actor_idle: Duration,
    /// At most one `upload_progress` per upload this often (plus the last).
    pub progress_interval: Duration,
    /// Allowed MIME types (lower case).
    pub allowed_mime_types: Vec<String>,
    /// Largest file through `POST /uploads`.
    pub http_max_file_size: u64,
    /// Most files attached to one task.
    pub max_task_attachments: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            default_chunk_size: 64 * 1024,
            min_chunk_size: 1024,
            max_chunk_size: 512 * 1024,
            max_file_size: 100 * 1024 * 1024,
            max_in_progress: 5,
            session_ttl: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(60),
            actor_idle: Duration::from_secs(120),
            progress_interval: Duration::from_millis(100),
            allowed_mime_types: DEFAULT_ALLOWED.iter().map(|s| (*s).to_owned()).collect(),
            http_max_file_size: 10 * 1024 * 1024,
            max_task_attachments: 10,
        }
    }
}

/// The contract's default MIME allow-list.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/zip",
];

/// Longest sanitized file name, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest client-chosen upload id.
pub const MAX_UPLOAD_ID_LEN: usize = 128;
/// How long a completed upload session is kept, so that initiating its
/// upload id again answers the file (Redis: from the completion; the
/// document stores: from the session's expiry, at most a session's lifetime
/// later); then it is deleted, and the same id starts a new upload.
pub const COMPLETED_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// The contract's sanitizing: the part after the last `/` or `\`, control
/// characters removed, at most 255 bytes (cut on a character boundary),
/// `file` when nothing is left. `.` and `..` are nothing too.
pub fn sanitize_file_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out = String::with_capacity(base.len().min(MAX_FILE_NAME_BYTES));
    for c in base.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_FILE_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim();
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        "file".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// `image/PNG; charset=x` → `image/png`.
pub fn normalize_mime(raw: &str) -> String {
    raw.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a (normalized) MIME type is a text type: checked for NUL bytes
/// rather than by magic numbers.
pub fn is_text(mime: &str) -> bool {
    mime.starts_with("text/")
}

/// Whether `first_bytes` (the start of the file) agree with the declared
/// type: text types hold no NUL byte; other types must be what `infer`
/// detects from the magic numbers (a ZIP-based format such as `.docx` counts
/// as `application/zip`).
pub fn content_agrees(mime: &str, first_bytes: &[u8]) -> bool {
    if is_text(mime) {
        return !first_bytes.contains(&0);
    }
    if mime == "application/zip" && infer::archive::is_zip(first_bytes) {
        return true;
    }
    infer::get(first_bytes).is_some_and(|t| t.mime_type() == mime)
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Normalizes a client's hex SHA-256 (64 hex digits, any case); `None` when
/// it is not one.
pub fn parse_sha256(raw: &str) -> Option<String> {
    (raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| raw.to_ascii_lowercase())
}

/// Whether a client-chosen upload id is acceptable: 1 to 128 printable
/// ASCII characters.
pub fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_UPLOAD_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The chunks of one upload that are stored: a bitset, 1 bit per chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkSet {
    bits: Vec<u64>,
    total: u32,
    count: u32,
}

impl ChunkSet {
    /// An empty set for `total` chunks.
    pub fn new(total: u32) -> Self {
        ChunkSet {
            bits: vec![0; (total as usize).div_ceil(64)],
            total,
            count: 0,
        }
    }
    /// Adds `index`; `false` when it was there already or is out of range.
    pub fn insert(&mut self, index: u32) -> bool {
        if index >= self.total {
            return false;
        }
        let (word, bit) = ((index / 64) as usize, index % 64);
        let had = self.bits[word] & (1 << bit) != 0;
        self.bits[word] |= 1 << bit;
        if !had {
            self.count += 1;
        }
        !had
    }
    /// Whether `index` is stored.
    pub fn contains(&self, index: u32) -> bool {
        index < self.total && self.bits[(index / 64) as usize] & (1 << (index % 64)) != 0
    }
    /// How many are stored.
    pub fn count(&self) -> u32 {
        self.count
    }
    /// Whether every chunk is stored.
    pub fn is_complete(&self) -> bool {
        self.count == self.total
    }
    /// The missing indexes, ascending, at most `limit` of them.
    pub fn missing(&self, limit: usize) -> Vec<u32> {
        (0..self.total)
            .filter(|i| !self.contains(*i))
            .take(limit)
            .collect()
    }
    /// The stored indexes, ascending.
    pub fn present(&self) -> Vec<u32> {
        (0..self.total).filter(|i| self.contains(*i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_sanitized() {
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(sanitize_file_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(sanitize_file_name("dir/"), "file");
        assert_eq!(sanitize_file_name(".."), "file");
        assert_eq!(sanitize_file_name(""), "file");
        let long = "é".repeat(200);
        let s = sanitize_file_name(&long);
        assert!(s.len() <= 255 && s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn content_checks_follow_magic_numbers() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0];
        assert!(content_agrees("image/png", &png));
        assert!(!content_agrees("image/jpeg", &png));
        assert!(!content_agrees("text/plain", &png), "NUL in text");
        assert!(content_agrees("text/plain", b"hello"));
        assert!(!content_agrees("application/pdf", b"hello"));
        assert!(content_agrees("application/pdf", b"%PDF-1.7\n"));
        assert!(content_agrees("application/zip", b"PK\x03\x04rest"));
    }

    #[test]
    fn sha_and_ids() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(parse_sha256(&"A".repeat(64)).is_some());
        assert!(parse_sha256("abc").is_none());
        assert!(valid_upload_id("up-1"));
        assert!(!valid_upload_id("has space"));
        assert_eq!(normalize_mime("Text/Plain; charset=utf-8"), "text/plain");
    }

    #[test]
    fn chunk_set_counts_once() {
        let mut s = ChunkSet::new(130);
        assert!(s.insert(0));
        assert!(!s.insert(0));
        assert!(s.insert(129));
        assert!(!s.insert(130));
        assert_eq!(s.count(), 2);
        assert_eq!(s.missing(3), vec![1, 2, 3]);
        assert_eq!(s.present(), vec![0, 129]);
        assert!(!s.is_complete());
    }
}
