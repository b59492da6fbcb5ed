//! The embedded document store: one `redb` database file, `{dir}/huddle.redb`.
//!
//! It is the default backend, so `cargo run` keeps users, conversations,
//! messages, file records and upload sessions across restarts with no other
//! process running. Records are stored as JSON bytes in a table keyed by id;
//! separate index tables make every lookup a point read or a bounded range scan
//! (history is a range over `(conversation, seq)`, never a scan of all
//! messages). Every rule that spans several records — unique email and
//! username, gap-free `seq` together with the idempotency check, one
//! conversation per `direct_key`, take-once refresh tokens — is checked and
//! written inside a single redb write transaction, and redb runs one writer at
//! a time, so they hold under concurrency. redb is blocking, so reads run on
//! the blocking thread pool and writes on one writer thread that commits them
//! in groups (`writer`); async callers never stall the reactor.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use huddle_actors::ids::{new_id, ConversationId, MessageId, UserId};
use huddle_actors::model::{
    Conversation, Message, NewConversation, NewMessage, Page, RefreshTokenRecord, User,
};
use huddle_actors::store::{DocumentStore, StoreError, StoreResult};

mod accounts;
mod chat;
mod files;
mod journal;
mod notifications;
mod search;
mod workspaces;
mod writer;
pub use journal::{CHECKPOINT_MESSAGES, FILE_NAMES as JOURNAL_FILE_NAMES};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// File name of the database inside the data directory.
pub const FILE_NAME: &str = "huddle.redb";

/// user id → `User` (JSON).
pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// lower-cased email → user id (unique index).
pub(super) const USERS_BY_EMAIL: TableDefinition<&str, &str> =
    TableDefinition::new("users_by_email");
/// lower-cased username → user id (unique index).
pub(super) const USERS_BY_USERNAME: TableDefinition<&str, &str> =
    TableDefinition::new("users_by_username");
/// jti → `RefreshTokenRecord` (JSON).
pub(super) const REFRESH_TOKENS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("refresh_tokens");
/// conversation id → `Conversation` (JSON). Its `last_seq` field is not
/// maintained here but in [`CONVERSATION_LAST_SEQ`], so appending a message
/// does not rewrite the whole record (member list included).
pub(super) const CONVERSATIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("conversations");
/// conversation id → highest `seq` given out.
pub(super) const CONVERSATION_LAST_SEQ: TableDefinition<&str, u64> =
    TableDefinition::new("conversation_last_seq");
/// direct key (`"a|b"`) → conversation id (unique index).
pub(super) const CONVERSATIONS_BY_DIRECT_KEY: TableDefinition<&str, &str> =
    TableDefinition::new("conversations_by_direct_key");
/// (user id, creation order) → conversation id: a user's conversations,
/// oldest to newest, so a page is a reverse range scan.
pub(super) const USER_CONVERSATIONS: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("user_conversations");
/// (conversation id, seq) → `Message` (JSON).
pub(super) const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// (sender id, client id) → (conversation id, seq): the idempotency index.
pub(super) const MESSAGES_BY_CLIENT_ID: TableDefinition<(&str, &str), (&str, u64)> =
    TableDefinition::new("messages_by_client_id");
/// (conversation id, user id) → highest seq read.
pub(super) const READ_MARKERS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("read_markers");
/// file id → `FileRecord` (JSON).
pub(super) const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");
/// (file id, user id) → 1: who was granted read access.
pub(super) const FILE_GRANTS: TableDefinition<(&str, &str), u8> =
    TableDefinition::new("file_grants");
/// token hash → `DownloadToken` (JSON).
pub(super) const DOWNLOAD_TOKENS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("download_tokens");
/// (user id, upload id) → `UploadSession` (JSON); its `expires_at` is kept
/// in [`UPLOADS_IN_PROGRESS`] while in progress, so a chunk never rewrites it.
pub(super) const UPLOAD_SESSIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("upload_sessions");
/// (user id, upload id) → expiry (Unix ms) of each session in progress.
pub(super) const UPLOADS_IN_PROGRESS: TableDefinition<(&str, &str), i64> =
    TableDefinition::new("uploads_in_progress");
/// (user id, upload id, chunk index) → 1: the chunks durably stored.
pub(super) const UPLOAD_CHUNKS: TableDefinition<(&str, &str, u32), u8> =
    TableDefinition::new("upload_chunks");
/// Named counters; see [`CONVERSATION_ORDER`].
pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Counter giving each conversation its creation order. A counter rather
/// than `created_at`, so order is strict even within one clock tick.
pub(super) const CONVERSATION_ORDER: &str = "conversation_order";

/// The embedded, on-disk document store. Cheap to clone; clones share the
/// database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// Runs every write transaction, with group commit (see `writer`).
    writer: Arc<writer::Writer>,
    /// Chat messages not yet checkpointed into redb (see `journal`).
    tail: journal::SharedTail,
    /// The task search index, derived from the database (see `search`).
    search: Arc<crate::store::search_index::TaskIndex>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

/// Page cache of the database file when none is given (redb's default).
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, creating the directory and
    /// every table, with a page cache of [`DEFAULT_CACHE_BYTES`]. Blocking:
    /// call it at startup or on a blocking thread. Only one `EmbeddedStore`
    /// per file may be open at a time.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Like [`open`](Self::open), with a page cache of `cache_bytes` (redb's
    /// own cache of the database file, which the process's memory grows up
    /// to as pages are read and written; `server.store_cache_mb`).
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).ctx(format!("creating data directory {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(&path)
            .ctx(format!("opening {}", path.display()))?;
        write_txn(&db, "creating tables", Durability::Immediate, |txn| {
            txn.open_table(USERS).ctx("open users")?;
            txn.open_table(USERS_BY_EMAIL).ctx("open users_by_email")?;
            txn.open_table(USERS_BY_USERNAME)
                .ctx("open users_by_username")?;
            txn.open_table(REFRESH_TOKENS).ctx("open refresh_tokens")?;
            txn.open_table(CONVERSATIONS).ctx("open conversations")?;
            txn.open_table(CONVERSATION_LAST_SEQ)
                .ctx("open conversation_last_seq")?;
            txn.open_table(CONVERSATIONS_BY_DIRECT_KEY)
                .ctx("open conversations_by_direct_key")?;
            txn.open_table(USER_CONVERSATIONS)
                .ctx("open user_conversations")?;
            txn.open_table(MESSAGES).ctx("open messages")?;
            txn.open_table(MESSAGES_BY_CLIENT_ID)
                .ctx("open messages_by_client_id")?;
            txn.open_table(READ_MARKERS).ctx("open read_markers")?;
            txn.open_table(COUNTERS).ctx("open counters")?;
            txn.open_table(FILES).ctx("open files")?;
            txn.open_table(FILE_GRANTS).ctx("open file_grants")?;
            txn.open_table(DOWNLOAD_TOKENS)
                .ctx("open download_tokens")?;
            txn.open_table(UPLOAD_SESSIONS)
                .ctx("open upload_sessions")?;
            txn.open_table(UPLOADS_IN_PROGRESS)
                .ctx("open uploads_in_progress")?;
            txn.open_table(UPLOAD_CHUNKS).ctx("open upload_chunks")?;
            workspaces::create_tables(txn)?;
            notifications::create_tables(txn)?;
            Ok(())
        })?;
        let search = search::build_index(&db)?;
        let journal = journal::Journal::open(dir, &db)?;
        let tail = journal.tail();
        let db = Arc::new(db);
        Ok(Self {
            writer: Arc::new(writer::Writer::start(Arc::clone(&db), journal)?),
            tail,
            db,
            search: Arc::new(search),
        })
    }

    /// Waits until the writes queued so far are answered and the message
    /// journal's checkpoint running then (if any) has ended. With nothing
    /// else writing and less than a checkpoint's worth of messages since
    /// the last one, the data directory's files then stay as they are: for
    /// copying a running store's files (as the crash tests do).
    pub async fn settle(&self) -> StoreResult<()> {
        self.writer.settle().await
    }

    /// Runs `f` against the database on the blocking thread pool.
    pub(super) async fn blocking<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .ctx(format!("{what}: blocking task failed"))?
    }

    /// Runs `f` in a read transaction on the blocking thread pool.
    pub(super) async fn read<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.blocking(what, move |db| {
            let txn = db.begin_read().ctx(what)?;
            f(&txn)
        })
        .await
    }

    /// Runs `f` in a read transaction on the blocking thread pool, with what
    /// `snap` takes from the journal's tail at the moment the transaction
    /// opens (so no message is in neither).
    async fn read_chat<S, T, F>(
        &self,
        what: &'static str,
        snap: impl FnOnce(&journal::Tail) -> S + Send + 'static,
        f: F,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction, S) -> StoreResult<T> + Send + 'static,
    {
        let tail = Arc::clone(&self.tail);
        self.blocking(what, move |db| {
            let (txn, snapshot) = {
                let tail = journal::read(&tail);
                (db.begin_read().ctx(what)?, snap(&tail))
            };
            f(&txn, snapshot)
        })
        .await
    }

    /// Runs `f` in one write transaction on the writer thread; commits when
    /// `f` succeeds, aborts when it fails, and answers once the commit is
    /// durable (writes that queue up together share one `fsync`).
    pub(super) async fn write<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(what, f).await
    }

    /// Runs `f` like [`write`](Self::write), answering once it is committed
    /// but before it is durable (see [`writer::Writer::write_lazy`]).
    pub(super) async fn write_lazy<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write_lazy(what, f).await
    }
}

/// Runs `f` in one write transaction: committed with `durability` when `f`
/// succeeds, aborted (nothing written) when it fails.
pub(super) fn write_txn<T>(
    db: &Database,
    what: &str,
    durability: Durability,
    f: impl FnOnce(&WriteTransaction) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut txn = db.begin_write().ctx(what)?;
    txn.set_durability(durability)
        .ctx(format!("{what}: durability"))?;
    match f(&txn) {
        Ok(out) => {
            txn.commit().ctx(format!("{what}: commit"))?;
            Ok(out)
        }
        Err(err) => {
            if let Err(abort) = txn.abort() {
                log::warn!("{what}: aborting write transaction failed: {abort}");
            }
            Err(err)
        }
    }
}

/// Attaches context to a backend error, keeping it as the source.
pub(super) trait Ctx<T> {
    fn ctx(self, what: impl Into<String>) -> StoreResult<T>;
}

impl<T, E> Ctx<T> for Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn ctx(self, what: impl Into<String>) -> StoreResult<T> {
        self.map_err(|e| StoreError::backend(what, e))
    }
}

pub(super) fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).ctx("encoding record")
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).ctx("decoding stored record")
}

/// Reads a JSON record by string key from any readable table.
pub(super) fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> StoreResult<Option<T>> {
    match table.get(key).ctx("reading record")? {
        Some(guard) => decode(guard.value()).map(Some),
        None => Ok(None),
    }
}

/// Keys deleted in one write at most when purging, so a backlog never
/// holds the writer (and every other write) long.
const PURGE_BATCH: usize = 1000;

impl EmbeddedStore {
    /// Deletes the JSON records of `table` that `expired` picks: found in a
    /// read transaction (a full scan, for the token tables an hourly sweep
    /// goes over; a record that cannot be read is logged and left), then
    /// removed in writes of at most [`PURGE_BATCH`]. How many went.
    pub(super) async fn purge_json<T, E>(
        &self,
        what: &'static str,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        expired: E,
    ) -> StoreResult<u64>
    where
        T: DeserializeOwned + 'static,
        E: Fn(&T) -> bool + Send + 'static,
    {
        let keys = self
            .read(what, move |txn| {
                let t = txn.open_table(table).ctx(what)?;
                let mut keys = Vec::new();
                for row in t.iter().ctx(what)? {
                    let (key, value) = row.ctx(what)?;
                    match decode::<T>(value.value()) {
                        Ok(record) if expired(&record) => keys.push(key.value().to_owned()),
                        Ok(_) => {}
                        Err(e) => {
                            log::warn!("{what}: left record {} it cannot read: {e}", key.value())
                        }
                    }
                }
                Ok(keys)
            })
            .await?;
        self.remove_in_batches(what, keys, move |txn, key| {
            let mut t = txn.open_table(table).ctx(what)?;
            let removed = t.remove(key.as_str()).ctx(what)?.is_some();
            Ok(removed)
        })
        .await
    }

    /// Calls `remove` for each of `items` in writes of at most
    /// [`PURGE_BATCH`]; how many it said it removed.
    pub(super) async fn remove_in_batches<T, F>(
        &self,
        what: &'static str,
        items: Vec<T>,
        remove: F,
    ) -> StoreResult<u64>
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(&WriteTransaction, &T) -> StoreResult<bool> + Clone + Send + 'static,
    {
        let mut removed = 0;
        for batch in items.chunks(PURGE_BATCH) {
            let (batch, remove) = (batch.to_vec(), remove.clone());
            removed += self
                .write(what, move |txn| {
                    let mut n = 0u64;
                    for item in &batch {
                        if remove(txn, item)? {
                            n += 1;
                        }
                    }
                    Ok(n)
                })
                .await?;
        }
        Ok(removed)
    }
}

/// Reads the id stored under `key` in a string → string index table.
pub(super) fn get_id(
    table: &impl ReadableTable<&'static str, &'static str>,
    key: &str,
) -> StoreResult<Option<String>> {
    Ok(table
        .get(key)
        .ctx("reading index")?
        .map(|guard| guard.value().to_owned()))
}

/// Loads a conversation with its current `last_seq` filled in.
pub(super) fn load_conversation(
    conversations: &impl ReadableTable<&'static str, &'static [u8]>,
    last_seqs: &impl ReadableTable<&'static str, u64>,
    id: &str,
) -> StoreResult<Option<Conversation>> {
    let Some(mut conversation) = get_json::<Conversation>(conversations, id)? else {
        return Ok(None);
    };
    conversation.last_seq = last_seqs
        .get(id)
        .ctx("reading last seq")?
        .map_or(0, |guard| guard.value());
    Ok(Some(conversation))
}

/// Looks a user up through a unique index (email or username).
pub(super) fn user_by_index(
    txn: &ReadTransaction,
    index: TableDefinition<&'static str, &'static str>,
    key: &str,
) -> StoreResult<Option<User>> {
    let index = txn.open_table(index).ctx("open user index")?;
    let Some(id) = get_id(&index, key)? else {
        return Ok(None);
    };
    let users = txn.open_table(USERS).ctx("open users")?;
    get_json(&users, &id)
}

/// Inserts `user` and its index entries, enforcing uniqueness of id, email
/// and username. Must run inside the caller's write transaction.
pub(super) fn insert_user(txn: &WriteTransaction, user: &User) -> StoreResult<()> {
    let mut users = txn.open_table(USERS).ctx("open users")?;
    let mut by_email = txn.open_table(USERS_BY_EMAIL).ctx("open users_by_email")?;
    let mut by_username = txn
        .open_table(USERS_BY_USERNAME)
        .ctx("open users_by_username")?;
    let id = user.id.as_str();
    if users.get(id).ctx("reading user")?.is_some() {
        return Err(StoreError::Conflict(format!("user id {id} already exists")));
    }
    if let Some(email) = &user.email {
        if by_email.get(email.as_str()).ctx("reading email")?.is_some() {
            return Err(StoreError::Conflict("email already registered".into()));
        }
        by_email.insert(email.as_str(), id).ctx("writing email")?;
    }
    if by_username
        .get(user.username.as_str())
        .ctx("reading username")?
        .is_some()
    {
        return Err(StoreError::Conflict("username already taken".into()));
    }
    by_username
        .insert(user.username.as_str(), id)
        .ctx("writing username")?;
    users
        .insert(id, encode(user)?.as_slice())
        .ctx("writing user")?;
    Ok(())
}

#[async_trait]
impl DocumentStore for EmbeddedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read("ping", |txn| {
            txn.open_table(COUNTERS).ctx("open counters")?;
            txn.open_table(FILES).ctx("open files")?;
            txn.open_table(FILE_GRANTS).ctx("open file_grants")?;
            txn.open_table(DOWNLOAD_TOKENS)
                .ctx("open download_tokens")?;
            txn.open_table(UPLOAD_SESSIONS)
                .ctx("open upload_sessions")?;
            txn.open_table(UPLOADS_IN_PROGRESS)
                .ctx("open uploads_in_progress")?;
            txn.open_table(UPLOAD_CHUNKS).ctx("open upload_chunks")?;
            Ok(())
        })
        .await
    }
}
