//! The chat message journal: how a message becomes durable without a B-tree
//! commit of its own.
//!
//! Committing messages to redb one group at a time cost more than half of
//! the server's CPU at 2000 messages a second (each commit rewrote about 54
//! scattered pages and flushed them, for about a dozen messages). Here a
//! message is instead appended to the journal — one sequential write and
//! one `fdatasync` per batch of the writer thread — and kept in memory, in
//! the **tail**, until a **checkpoint** moves it into redb in one durable
//! transaction (every [`CHECKPOINT_MESSAGES`] messages or
//! [`CHECKPOINT_BYTES`] bytes, and when the store closes).
//!
//! A checkpoint runs on a thread of its own, beside the writer: it took 5–7
//! ms at 2000 messages a second, and every message sent meanwhile waited
//! for it (most of the p99 latency). The journal is two files,
//! [`FILE_NAMES`], written in turn. A checkpoint **freezes** the tail (the
//! frozen part is what it moves into redb) and the writer goes on in the
//! other file, from its beginning, under a new epoch, with a new, empty
//! active part. Once the checkpoint has committed, the writer drops its
//! redb snapshot and then the frozen part (in that order: an append never
//! reads a snapshot older than the checkpoint without the frozen part
//! beside it). The next checkpoint waits for the frozen part to be gone, so
//! a file is written again only after what it held is in redb. A
//! checkpoint that fails keeps its part frozen and is tried again a second
//! later; the tail's size is bounded meanwhile
//! ([`MAX_TAIL_MESSAGES`], [`MAX_TAIL_BYTES`]).
//!
//! Readers see redb and the tail together: the tail holds, per
//! conversation, the newest messages (every seq above what redb holds; the
//! frozen part's below the active part's), so a history page is the
//! tail's part plus redb's part below it, and a conversation's last seq is
//! the tail's when it has one. A message becomes visible to readers only
//! once its journal write is durable, exactly when its sender gets the
//! answer, as with a redb commit. A reader takes the tail's lock before it
//! opens its redb snapshot and the frozen part is dropped only after the
//! checkpoint's commit, so a reader never falls between them (it may see a
//! message in both, and takes it once).
//!
//! A record is `magic, epoch, length, CRC-32 (of epoch, length and
//! payload)` followed by the message as stored in redb (JSON). On open,
//! each file's records from its start that carry its first record's epoch
//! and a valid CRC are applied to redb, the older epoch's file first (a
//! message whose seq redb already has is skipped, so applying twice, or a
//! file checkpointed long ago, is harmless), and the journal starts over: a
//! crash loses nothing that was acknowledged, and a record torn by the
//! crash (never acknowledged) ends its file's replay.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use huddle_actors::model::Message;
use huddle_actors::store::{StoreError, StoreResult};
use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, WriteTransaction,
};

use super::{decode, Ctx, CONVERSATION_LAST_SEQ, MESSAGES, MESSAGES_BY_CLIENT_ID};

/// File names of the journal inside the data directory, written in turn
/// (the first is the one earlier versions wrote alone).
pub const FILE_NAMES: [&str; 2] = ["messages.journal", "messages.journal.2"];
/// Messages in the active part of the tail that start a checkpoint.
pub const CHECKPOINT_MESSAGES: usize = 512;
/// Bytes of messages in the active part of the tail that start a checkpoint.
pub const CHECKPOINT_BYTES: usize = 1 << 20;
/// Messages the tail may hold while checkpoints fail; appends are refused
/// beyond it.
pub const MAX_TAIL_MESSAGES: usize = 64 * CHECKPOINT_MESSAGES;
/// Bytes the tail may hold while checkpoints fail.
pub const MAX_TAIL_BYTES: usize = 64 * CHECKPOINT_BYTES;
/// How long after a failed checkpoint it is tried again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// First four bytes of every record.
const MAGIC: u32 = 0x314a_5548; // "HUJ1" read as little-endian bytes
/// Bytes before a record's payload.
const HEADER: usize = 16;
/// Largest payload replay accepts (a message is far smaller).
const MAX_RECORD: usize = 1 << 20;

/// One message in the tail: its seq and its stored form.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub seq: u64,
    pub bytes: Arc<[u8]>,
    /// (sender, client id) when the message has a client id.
    client: Option<Arc<(String, String)>>,
}

#[derive(Default)]
struct ConvTail {
    /// In seq order, consecutive, all above redb's last seq.
    entries: Vec<Entry>,
    /// How many of `entries` are durable (and visible to readers); the rest
    /// belong to the batch being written.
    visible: usize,
}

impl ConvTail {
    fn visible(&self) -> &[Entry] {
        &self.entries[..self.visible]
    }
}

/// Messages of the tail: the active part, or the frozen one a checkpoint
/// moves into redb.
#[derive(Default)]
struct Part {
    convs: HashMap<String, ConvTail>,
    /// (sender, client id) → (conversation, seq), pending ones included.
    by_client: HashMap<(String, String), (String, u64)>,
    messages: usize,
    bytes: usize,
}

impl Part {
    /// The part's entry for `key`, (sender, client id) (pending ones
    /// included).
    fn by_client(&self, key: &(String, String)) -> Option<StoreResult<&Entry>> {
        let (conversation, seq) = self.by_client.get(key)?;
        let found = self
            .convs
            .get(conversation)
            .and_then(|c| c.entries.iter().find(|e| e.seq == *seq));
        Some(found.ok_or_else(|| {
            StoreError::NotFound(format!(
                "indexed message {conversation}#{seq} is missing from the journal tail"
            ))
        }))
    }
}

/// The messages not yet checkpointed into redb, shared by the writer thread
/// (which alone changes it) and the readers.
#[derive(Default)]
pub(super) struct Tail {
    /// What the writer appends to.
    active: Part,
    /// What a checkpoint is moving into redb, until the writer drops it;
    /// every entry of it is durable, and each conversation's are below the
    /// active part's.
    frozen: Option<Arc<Part>>,
}

/// The tail behind its lock.
pub(super) type SharedTail = Arc<RwLock<Tail>>;

pub(super) fn read(tail: &RwLock<Tail>) -> RwLockReadGuard<'_, Tail> {
    tail.read().unwrap_or_else(|e| e.into_inner())
}

fn write(tail: &RwLock<Tail>) -> RwLockWriteGuard<'_, Tail> {
    tail.write().unwrap_or_else(|e| e.into_inner())
}

impl Tail {
    /// The parts, newest first.
    fn parts(&self) -> impl Iterator<Item = &Part> {
        std::iter::once(&self.active).chain(self.frozen.as_deref())
    }

    /// The last durable seq of `conversation` in the tail, if it has any.
    pub fn last_seq(&self, conversation: &str) -> Option<u64> {
        self.parts()
            .find_map(|part| part.convs.get(conversation)?.visible().last())
            .map(|e| e.seq)
    }

    /// The last durable seq of every conversation in the tail.
    pub fn last_seqs(&self) -> HashMap<String, u64> {
        let mut last = HashMap::new();
        for part in self.parts() {
            for (conversation, conv) in &part.convs {
                if let Some(e) = conv.visible().last() {
                    last.entry(conversation.clone()).or_insert(e.seq);
                }
            }
        }
        last
    }

    /// The newest `limit` durable messages of `conversation` below `before`
    /// (all when `None`), oldest first.
    pub fn before(&self, conversation: &str, before: Option<u64>, limit: usize) -> Vec<Entry> {
        // Newest part first; each part's entries are below the one before.
        let mut slices: Vec<&[Entry]> = Vec::new();
        let mut left = limit;
        for part in self.parts() {
            if left == 0 {
                break;
            }
            let Some(conv) = part.convs.get(conversation) else {
                continue;
            };
            let visible = conv.visible();
            let end = match before {
                Some(b) => visible.partition_point(|e| e.seq < b),
                None => visible.len(),
            };
            let start = end.saturating_sub(left);
            left -= end - start;
            slices.push(&visible[start..end]);
        }
        slices
            .iter()
            .rev()
            .flat_map(|s| s.iter().cloned())
            .collect()
    }

    fn messages(&self) -> usize {
        self.parts().map(|p| p.messages).sum()
    }

    fn bytes(&self) -> usize {
        self.parts().map(|p| p.bytes).sum()
    }
}

/// One of the journal's files.
struct JournalFile {
    file: File,
    path: PathBuf,
}

impl JournalFile {
    fn open(path: PathBuf) -> StoreResult<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(format!("opening {}", path.display()))?;
        Ok(JournalFile { file, path })
    }
}

/// The journal's files and the writer's side of the tail. Owned by the
/// writer thread.
pub(super) struct Journal {
    files: [JournalFile; 2],
    /// The file the next batch's records go to.
    active: usize,
    epoch: u32,
    /// Where the next batch's records go.
    offset: u64,
    /// Records of the batch in progress.
    buf: Vec<u8>,
    tail: SharedTail,
    /// Conversations with entries of the batch in progress.
    pending_convs: Vec<String>,
    /// Client keys added by the batch in progress.
    pending_clients: Vec<(String, String)>,
    /// The checkpoint running beside the writer.
    checkpointing: Option<JoinHandle<StoreResult<()>>>,
    /// How the last checkpoint ended, when it was waited for but its end
    /// not yet taken by [`checkpoint_ended`](Self::checkpoint_ended).
    ended: Option<StoreResult<()>>,
    /// After a failed checkpoint, when it is tried again.
    retry_at: Option<std::time::Instant>,
}

/// Whether epoch `a` was begun after epoch `b` (epochs wrap).
fn later(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Journal {
    /// Opens the journal in `dir`, applies what an earlier run left in it to
    /// `db` (durably) and starts it over.
    pub fn open(dir: &Path, db: &Database) -> StoreResult<Self> {
        let files = FILE_NAMES.map(|name| JournalFile::open(dir.join(name)));
        let [a, b] = files;
        let files = [a?, b?];
        let mut contents = Vec::new();
        for f in &files {
            let data = std::fs::read(&f.path).ctx(format!("reading {}", f.path.display()))?;
            contents.push(data);
        }
        let mut parsed: Vec<(usize, u32, Vec<&[u8]>)> = contents
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let (epoch, records) = parse(data);
                (i, epoch, records)
            })
            .filter(|(_, _, records)| !records.is_empty())
            .collect();
        // The older epoch's messages first: a conversation's seqs go on in
        // the newer file.
        if parsed.len() == 2 && later(parsed[0].1, parsed[1].1) {
            parsed.swap(0, 1);
        }
        let mut messages = Vec::new();
        for (i, _, records) in &parsed {
            for payload in records {
                match decode::<Message>(payload) {
                    Ok(m) => messages.push((m, *payload)),
                    Err(e) => {
                        // A valid CRC over a bad payload: stop, as at a torn record.
                        log::error!(
                            "message journal {}: undecodable record: {e}",
                            files[*i].path.display()
                        );
                        break;
                    }
                }
            }
        }
        if !messages.is_empty() {
            let applied = super::write_txn(
                db,
                "replaying the message journal",
                Durability::Immediate,
                |txn| {
                    let mut tables = Tables::open(txn)?;
                    let mut applied = 0;
                    for (m, payload) in &messages {
                        let client = m.client_id.as_deref().map(|c| (m.sender_id.as_str(), c));
                        applied += usize::from(tables.apply(
                            m.conversation_id.as_str(),
                            m.seq,
                            client,
                            payload,
                        )?);
                    }
                    tables.finish()?;
                    Ok(applied)
                },
            )?;
            log::info!(
                "message journal in {}: {} records, {applied} applied",
                dir.display(),
                messages.len()
            );
        }
        // Above every epoch either file holds, so neither file's leftovers
        // are ever taken for current records.
        let epoch = parsed
            .iter()
            .map(|(_, e, _)| *e)
            .reduce(|a, b| if later(a, b) { a } else { b })
            .unwrap_or(0)
            .wrapping_add(1);
        Ok(Journal {
            files,
            active: 0,
            epoch,
            offset: 0,
            buf: Vec::new(),
            tail: SharedTail::default(),
            pending_convs: Vec::new(),
            pending_clients: Vec::new(),
            checkpointing: None,
            ended: None,
            retry_at: None,
        })
    }

    /// The tail, for readers.
    pub fn tail(&self) -> SharedTail {
        Arc::clone(&self.tail)
    }

    /// The last seq of `conversation` (pending ones included), from the tail
    /// or else from redb; `None` when the conversation does not exist.
    pub fn last_seq(&self, redb: &Redb<'_>, conversation: &str) -> StoreResult<Option<u64>> {
        let last = read(&self.tail)
            .parts()
            .find_map(|part| part.convs.get(conversation)?.entries.last())
            .map(|e| e.seq);
        match last {
            Some(last) => Ok(Some(last)),
            None => redb.last_seq(conversation),
        }
    }

    /// The stored form of the message `sender` sent with `client_id`, if any
    /// (the idempotency check).
    pub fn original(
        &self,
        redb: &Redb<'_>,
        sender: &str,
        client_id: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        {
            // (The key is made once for both parts.)
            let key = (sender.to_owned(), client_id.to_owned());
            let tail = read(&self.tail);
            let found = tail
                .parts()
                .find_map(|part| part.by_client(&key))
                .map(|found| found.map(|e| e.bytes.to_vec()));
            if let Some(found) = found {
                return found.map(Some);
            }
        }
        redb.original(sender, client_id)
    }

    /// Adds a message to the batch in progress: its record to the journal
    /// buffer, its entry to the tail (not visible until [`commit`](Self::commit)).
    /// `seq` must follow the conversation's [`last_seq`](Self::last_seq).
    pub fn append(
        &mut self,
        conversation: &str,
        seq: u64,
        client: Option<(&str, &str)>,
        bytes: Vec<u8>,
    ) -> StoreResult<()> {
        let mut tail = write(&self.tail);
        let held = tail.messages();
        if held >= MAX_TAIL_MESSAGES || tail.bytes() >= MAX_TAIL_BYTES {
            return Err(StoreError::Backend {
                message: format!(
                    "append_message: {held} messages wait for a checkpoint that keeps failing"
                ),
                source: None,
            });
        }
        encode_record(&mut self.buf, self.epoch, &bytes);
        let client = client.map(|(s, c)| Arc::new((s.to_owned(), c.to_owned())));
        let active = &mut tail.active;
        if let Some(key) = &client {
            active
                .by_client
                .insert((**key).clone(), (conversation.to_owned(), seq));
            self.pending_clients.push((**key).clone());
        }
        active.messages += 1;
        active.bytes += bytes.len();
        let conv = active.convs.entry(conversation.to_owned()).or_default();
        if conv.visible == conv.entries.len() {
            self.pending_convs.push(conversation.to_owned());
        }
        conv.entries.push(Entry {
            seq,
            bytes: bytes.into(),
            client,
        });
        Ok(())
    }

    /// Writes the batch's records and makes them durable; then its messages
    /// are visible. On failure the batch is dropped from the tail.
    pub fn commit(&mut self) -> Result<(), String> {
        if self.pending_convs.is_empty() && self.buf.is_empty() {
            return Ok(());
        }
        let file = &self.files[self.active];
        let written = file
            .file
            .write_all_at(&self.buf, self.offset)
            .and_then(|()| file.file.sync_data());
        if let Err(e) = written {
            let e = format!("writing the message journal {}: {e}", file.path.display());
            log::error!("{e}");
            self.discard();
            return Err(e);
        }
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        let mut tail = write(&self.tail);
        for conversation in self.pending_convs.drain(..) {
            if let Some(conv) = tail.active.convs.get_mut(&conversation) {
                conv.visible = conv.entries.len();
            }
        }
        self.pending_clients.clear();
        Ok(())
    }

    /// Drops the batch in progress (its writes failed or are run again).
    pub fn discard(&mut self) {
        self.buf.clear();
        let mut tail = write(&self.tail);
        let active = &mut tail.active;
        for key in self.pending_clients.drain(..) {
            active.by_client.remove(&key);
        }
        for conversation in self.pending_convs.drain(..) {
            let Some(conv) = active.convs.get_mut(&conversation) else {
                continue;
            };
            for e in conv.entries.drain(conv.visible..) {
                active.messages -= 1;
                active.bytes -= e.bytes.len();
            }
            if conv.entries.is_empty() {
                active.convs.remove(&conversation);
            }
        }
    }

    /// Whether the tail holds nothing.
    pub fn is_empty(&self) -> bool {
        read(&self.tail).messages() == 0
    }

    /// Starts a checkpoint beside the writer when one is due (between
    /// batches: nothing pending) and none is running: of the frozen part
    /// when an earlier checkpoint of it failed (at most once every
    /// [`RETRY_AFTER`]), else of the active part when it is big enough,
    /// which is frozen then while the journal goes on in its other file.
    pub fn start_checkpoint(&mut self, db: &Arc<Database>) {
        debug_assert!(self.pending_convs.is_empty(), "checkpoint inside a batch");
        if self.checkpointing.is_some() || self.ended.is_some() {
            return;
        }
        if self
            .retry_at
            .is_some_and(|at| std::time::Instant::now() < at)
        {
            return;
        }
        self.retry_at = None;
        let part = {
            let mut tail = write(&self.tail);
            if tail.frozen.is_none() {
                let active = &tail.active;
                if active.messages < CHECKPOINT_MESSAGES && active.bytes < CHECKPOINT_BYTES {
                    return;
                }
                let part = Arc::new(std::mem::take(&mut tail.active));
                tail.frozen = Some(part);
                self.active = 1 - self.active;
                self.epoch = self.epoch.wrapping_add(1);
                self.offset = 0;
            }
            tail.frozen.clone().expect("frozen above")
        };
        let db = Arc::clone(db);
        let started = std::thread::Builder::new()
            .name("huddle-checkpoint".into())
            .spawn(move || checkpoint(&db, &[&part]));
        match started {
            Ok(thread) => self.checkpointing = Some(thread),
            Err(e) => log::error!(
                "message journal: starting a checkpoint failed (tried again after the next batch): {e}"
            ),
        }
    }

    /// Waits for the checkpoint running beside the writer, if any, to end;
    /// its end is taken by the next [`checkpoint_ended`](Self::checkpoint_ended).
    pub fn wait_checkpoint(&mut self) {
        if let Some(thread) = self.checkpointing.take() {
            self.ended = Some(thread.join().unwrap_or_else(|_| {
                Err(StoreError::Backend {
                    message: "the checkpoint thread panicked".into(),
                    source: None,
                })
            }));
        }
    }

    /// Takes the end of a checkpoint that has ended since the last call:
    /// when it committed, drops the frozen part and returns `true` — the
    /// caller must drop any redb snapshot it keeps *before* reading the
    /// tail again, since the frozen part's messages are now only in redb.
    pub fn checkpoint_ended(&mut self) -> bool {
        if self
            .checkpointing
            .as_ref()
            .is_some_and(|thread| thread.is_finished())
        {
            self.wait_checkpoint();
        }
        match self.ended.take() {
            None => false,
            Some(Ok(())) => {
                write(&self.tail).frozen = None;
                true
            }
            Some(Err(e)) => {
                log::error!(
                    "embedded store: checkpointing the message journal failed (tried again in {RETRY_AFTER:?}; appends go on up to {MAX_TAIL_MESSAGES} messages held): {e}"
                );
                self.retry_at = Some(std::time::Instant::now() + RETRY_AFTER);
                false
            }
        }
    }

    /// Moves the whole tail into redb in one durable transaction, after the
    /// checkpoint beside the writer (if any) has ended, and starts the
    /// journal over. Only between batches (nothing pending); for closing.
    pub fn checkpoint_all(&mut self, db: &Database) -> StoreResult<()> {
        debug_assert!(self.pending_convs.is_empty(), "checkpoint inside a batch");
        self.wait_checkpoint();
        self.checkpoint_ended();
        let mut tail = write(&self.tail);
        let frozen = tail.frozen.clone();
        let parts: Vec<&Part> = frozen
            .as_deref()
            .into_iter()
            .chain([&tail.active])
            .collect();
        checkpoint(db, &parts)?;
        *tail = Tail::default();
        self.epoch = self.epoch.wrapping_add(1);
        self.offset = 0;
        Ok(())
    }
}

/// Moves `parts` (oldest first) into redb in one durable transaction.
fn checkpoint(db: &Database, parts: &[&Part]) -> StoreResult<()> {
    let moved: usize = parts.iter().map(|p| p.messages).sum();
    if moved == 0 {
        return Ok(());
    }
    let started = std::time::Instant::now();
    super::write_txn(
        db,
        "checkpointing the message journal",
        Durability::Immediate,
        |txn| {
            let mut tables = Tables::open(txn)?;
            for part in parts {
                for (conversation, conv) in &part.convs {
                    for e in conv.visible() {
                        let client = e.client.as_deref().map(|(s, c)| (s.as_str(), c.as_str()));
                        tables.apply(conversation, e.seq, client, &e.bytes)?;
                    }
                }
            }
            tables.finish()
        },
    )?;
    log::debug!(
        "message journal: checkpoint of {moved} messages in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Where an append reads redb. A batch that also changes redb runs in its
/// write transaction, and an append there sees the writes before it (a
/// conversation created just before its first message). An append changes
/// only the journal, so a batch of appends alone needs no write transaction:
/// it reads a [`Snapshot`] of redb as of its last commit, which the writer
/// keeps until redb changes (a write transaction and its commit cost more
/// than the append itself).
pub(super) enum Redb<'a> {
    Write(&'a WriteTransaction),
    Read(&'a Snapshot),
}

impl Redb<'_> {
    /// The conversation's last seq in redb.
    fn last_seq(&self, conversation: &str) -> StoreResult<Option<u64>> {
        match self {
            Redb::Write(txn) => last_seq_in(
                &txn.open_table(CONVERSATION_LAST_SEQ)
                    .ctx("open conversation_last_seq")?,
                conversation,
            ),
            Redb::Read(snapshot) => last_seq_in(&snapshot.last_seqs, conversation),
        }
    }

    /// The stored form of the message `sender` sent with `client_id`, from
    /// the idempotency index and the messages table.
    fn original(&self, sender: &str, client_id: &str) -> StoreResult<Option<Vec<u8>>> {
        match self {
            Redb::Write(txn) => {
                let by_client = txn
                    .open_table(MESSAGES_BY_CLIENT_ID)
                    .ctx("open messages_by_client_id")?;
                let Some((conversation, seq)) = indexed(&by_client, sender, client_id)? else {
                    return Ok(None);
                };
                let messages = txn.open_table(MESSAGES).ctx("open messages")?;
                stored(&messages, &conversation, seq).map(Some)
            }
            Redb::Read(snapshot) => {
                let Some((conversation, seq)) = indexed(&snapshot.by_client, sender, client_id)?
                else {
                    return Ok(None);
                };
                stored(&snapshot.messages, &conversation, seq).map(Some)
            }
        }
    }
}

/// redb as of one commit, with the tables an append reads opened once.
pub(super) struct Snapshot {
    last_seqs: ReadOnlyTable<&'static str, u64>,
    by_client: ReadOnlyTable<(&'static str, &'static str), (&'static str, u64)>,
    messages: ReadOnlyTable<(&'static str, u64), &'static [u8]>,
}

impl Snapshot {
    /// redb as of its latest commit.
    pub fn open(db: &Database) -> StoreResult<Self> {
        let txn = db.begin_read().ctx("beginning a snapshot for appends")?;
        Ok(Snapshot {
            last_seqs: txn
                .open_table(CONVERSATION_LAST_SEQ)
                .ctx("open conversation_last_seq")?,
            by_client: txn
                .open_table(MESSAGES_BY_CLIENT_ID)
                .ctx("open messages_by_client_id")?,
            messages: txn.open_table(MESSAGES).ctx("open messages")?,
        })
    }
}

fn last_seq_in(
    last_seqs: &impl ReadableTable<&'static str, u64>,
    conversation: &str,
) -> StoreResult<Option<u64>> {
    Ok(last_seqs
        .get(conversation)
        .ctx("reading last seq")?
        .map(|guard| guard.value()))
}

/// Where the idempotency index puts the message `sender` sent with
/// `client_id`: (conversation, seq).
fn indexed(
    by_client: &impl ReadableTable<(&'static str, &'static str), (&'static str, u64)>,
    sender: &str,
    client_id: &str,
) -> StoreResult<Option<(String, u64)>> {
    Ok(by_client
        .get((sender, client_id))
        .ctx("reading idempotency index")?
        .map(|guard| {
            let (conversation, seq) = guard.value();
            (conversation.to_owned(), seq)
        }))
}

/// The stored form of message `seq` of `conversation`, which the index
/// names.
fn stored(
    messages: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    conversation: &str,
    seq: u64,
) -> StoreResult<Vec<u8>> {
    Ok(messages
        .get((conversation, seq))
        .ctx("reading message")?
        .ok_or_else(|| {
            StoreError::NotFound(format!("indexed message {conversation}#{seq} is missing"))
        })?
        .value()
        .to_vec())
}

/// The tables a message is written to. A conversation's last seq is read
/// once and written once per transaction ([`finish`](Self::finish)), not
/// once per message.
struct Tables<'t> {
    last_seqs: Table<'t, &'static str, u64>,
    messages: Table<'t, (&'static str, u64), &'static [u8]>,
    by_client: Table<'t, (&'static str, &'static str), (&'static str, u64)>,
    /// Conversation → (its last seq so far, whether this transaction moved it).
    last: HashMap<String, (u64, bool)>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> StoreResult<Self> {
        Ok(Tables {
            last_seqs: txn
                .open_table(CONVERSATION_LAST_SEQ)
                .ctx("open conversation_last_seq")?,
            messages: txn.open_table(MESSAGES).ctx("open messages")?,
            by_client: txn
                .open_table(MESSAGES_BY_CLIENT_ID)
                .ctx("open messages_by_client_id")?,
            last: HashMap::new(),
        })
    }

    /// Writes one message unless redb has its seq already; whether it did.
    fn apply(
        &mut self,
        conversation: &str,
        seq: u64,
        client: Option<(&str, &str)>,
        bytes: &[u8],
    ) -> StoreResult<bool> {
        let last = match self.last.get(conversation) {
            Some(&(last, _)) => Some(last),
            None => {
                let last = last_seq_in(&self.last_seqs, conversation)?;
                if let Some(last) = last {
                    self.last.insert(conversation.to_owned(), (last, false));
                }
                last
            }
        };
        match last {
            Some(last) if seq == last + 1 => {}
            Some(last) if seq <= last => return Ok(false),
            last => {
                log::error!(
                    "message journal: {conversation}#{seq} skipped: the conversation's last seq is {last:?}"
                );
                return Ok(false);
            }
        }
        self.messages
            .insert((conversation, seq), bytes)
            .ctx("writing message")?;
        if let Some((sender, client_id)) = client {
            self.by_client
                .insert((sender, client_id), (conversation, seq))
                .ctx("writing idempotency index")?;
        }
        if let Some(entry) = self.last.get_mut(conversation) {
            *entry = (seq, true);
        }
        Ok(true)
    }

    /// Writes the last seq of every conversation a message went to; before
    /// the transaction commits.
    fn finish(mut self) -> StoreResult<()> {
        for (conversation, (seq, moved)) in &self.last {
            if *moved {
                self.last_seqs
                    .insert(conversation.as_str(), *seq)
                    .ctx("writing last seq")?;
            }
        }
        Ok(())
    }
}

/// Appends one record to `buf`.
fn encode_record(buf: &mut Vec<u8>, epoch: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&epoch.to_le_bytes());
    crc.update(&len.to_le_bytes());
    crc.update(payload);
    buf.extend_from_slice(&MAGIC.to_le_bytes());
    buf.extend_from_slice(&epoch.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The records of the journal's current epoch: those from the start that
/// carry the first record's epoch and a valid CRC. Returns that epoch (0 for
/// an empty journal) and their payloads.
fn parse(data: &[u8]) -> (u32, Vec<&[u8]>) {
    let mut records = Vec::new();
    let mut epoch = None;
    let mut at = 0;
    while data.len() - at >= HEADER {
        let word =
            |i: usize| u32::from_le_bytes(data[at + i..at + i + 4].try_into().expect("4 bytes"));
        let (magic, e, len, crc) = (word(0), word(4), word(8), word(12));
        let len = len as usize;
        if magic != MAGIC || epoch.is_some_and(|first| first != e) || len > MAX_RECORD {
            break;
        }
        let Some(payload) = data.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        let mut check = crc32fast::Hasher::new();
        check.update(&data[at + 4..at + 12]);
        check.update(payload);
        if check.finalize() != crc {
            break;
        }
        epoch = Some(e);
        records.push(payload);
        at += HEADER + len;
    }
    (epoch.unwrap_or(0), records)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part holding `seqs` of conversation `c`, the last `pending` of
    /// them not yet durable.
    fn part(c: &str, seqs: std::ops::RangeInclusive<u64>, pending: usize) -> Part {
        let entries: Vec<Entry> = seqs
            .map(|seq| Entry {
                seq,
                bytes: Arc::from(seq.to_string().into_bytes()),
                client: None,
            })
            .collect();
        let visible = entries.len() - pending;
        let mut part = Part {
            messages: entries.len(),
            ..Part::default()
        };
        part.convs
            .insert(c.to_owned(), ConvTail { entries, visible });
        part
    }

    fn seqs(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_tail_reads_its_frozen_part_below_its_active_one() {
        let tail = Tail {
            active: part("c", 11..=14, 1),
            frozen: Some(Arc::new(part("c", 5..=10, 0))),
        };
        assert_eq!(tail.last_seq("c"), Some(13));
        assert_eq!(seqs(&tail.before("c", None, 2)), [12, 13]);
        assert_eq!(seqs(&tail.before("c", None, 5)), [9, 10, 11, 12, 13]);
        assert_eq!(seqs(&tail.before("c", Some(12), 3)), [9, 10, 11]);
        assert_eq!(seqs(&tail.before("c", Some(8), 10)), [5, 6, 7]);
        assert_eq!(
            seqs(&tail.before("c", None, 100)),
            (5..=13).collect::<Vec<_>>()
        );
        assert_eq!(tail.messages(), 10);

        // A conversation only in the frozen part, and one only in the
        // active part with nothing durable yet.
        let tail = Tail {
            active: part("new", 1..=1, 1),
            frozen: Some(Arc::new(part("old", 1..=3, 0))),
        };
        assert_eq!(tail.last_seq("old"), Some(3));
        assert_eq!(tail.last_seq("new"), None);
        assert_eq!(seqs(&tail.before("old", None, 2)), [2, 3]);
        assert!(tail.before("new", None, 2).is_empty());
        assert_eq!(tail.last_seqs(), HashMap::from([("old".to_owned(), 3)]));
    }

    #[test]
    fn epochs_compare_across_the_wrap() {
        assert!(later(5, 3));
        assert!(!later(3, 5));
        assert!(!later(3, 3));
        assert!(later(0, u32::MAX));
        assert!(later(2, u32::MAX - 1));
    }

    #[test]
    fn records_of_the_first_epoch_are_read_up_to_a_torn_or_stale_one() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, b"one");
        encode_record(&mut buf, 7, b"two");
        let whole = buf.len();
        encode_record(&mut buf, 6, b"stale");
        assert_eq!(parse(&buf), (7, vec![&b"one"[..], &b"two"[..]]));

        // A torn last record (cut short, or a flipped byte) ends the replay.
        let mut torn = buf[..whole].to_vec();
        encode_record(&mut torn, 7, b"three");
        assert_eq!(parse(&torn[..torn.len() - 1]).1.len(), 2);
        let last = torn.len() - 1;
        torn[last] ^= 1;
        assert_eq!(parse(&torn).1.len(), 2);

        assert_eq!(parse(&[]), (0, vec![]));
        assert_eq!(parse(&[0u8; 64]), (0, vec![]));
    }
}
