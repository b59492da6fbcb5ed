//! Group commit for the embedded store: one writer thread runs every write
//! transaction, and the writes that queued up while the disk was busy share
//! one transaction and one `fsync`.
//!
//! redb runs one write transaction at a time and, by default, makes each one
//! durable on its own: at a few thousand chat messages a second the server
//! spent about a fifth of its CPU in `fdatasync`, and, once commits were
//! grouped, most of the rest in committing one transaction per message. Here
//! the writer takes everything queued at once (at most [`MAX_BATCH`]) and
//! runs it in one transaction with one durable commit. Only then does any
//! caller get its answer, so an acknowledged write is on disk exactly as
//! before. Each write still succeeds or fails alone: when one of them fails,
//! the shared transaction is aborted and the batch is run again with one
//! transaction per write (a write is a re-runnable `Fn` for that reason; its
//! first run left nothing behind), all but the last committed with
//! [`Durability::None`] and the last one's durable commit covering them. A
//! write also sees the ones before it in the batch, as if each had committed
//! on its own. At low rates every batch holds one write and nothing changes;
//! under load (the last batch held several writes) a batch waits
//! [`LINGER`] for more before it commits: each commit costs the kernel a
//! flush and a journal commit, far more than a write (at 2000 messages a
//! second a 2 ms wait halved the commits and cut about a tenth of the
//! server's CPU per delivery; 1 ms costs the same CPU, median of three runs,
//! with p50 5.1 → 3.7 ms, and 0.5 ms begins to cost CPU). Chat messages are
//! the exception: they go to the message journal (`journal`), whose
//! sequential write and flush are cheap enough that a batch of them never
//! waits (p50 1.7 → 0.6 ms at 2000 messages a second, the same CPU). A
//! batch of chat messages alone changes nothing in redb, so it begins no
//! write transaction either: it reads a [`Snapshot`] of redb kept from one
//! change of redb to the next (beginning and aborting a write transaction
//! and opening the tables for each batch was about a tenth of the server's
//! user-space CPU at 2000 messages a second).
//!
//! A write may also be *lazy* ([`Writer::write_lazy`]): it is answered once
//! committed (every later read sees it) but without waiting for the disk; a
//! batch of lazy writes only commits with [`Durability::None`], and the next
//! durable commit, at the latest [`FLUSH_AFTER`] later when nothing else
//! comes (or when the store closes), makes it durable. Only a write whose
//! loss in a crash costs nothing but a retry may be lazy (an upload chunk's
//! record: the client is told the chunk is missing and sends it again).
//!
//! The queue is bounded ([`QUEUE`] writes): callers wait for room rather than
//! piling up. The thread ends when the last handle to the store is dropped,
//! and dropping joins it, so the database file is closed by the time the
//! store is gone (tests and restarts open the same file again).

use std::sync::Arc;
use std::thread::JoinHandle;

use huddle_actors::store::{StoreError, StoreResult};
use redb::{Database, Durability, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::journal::{Journal, Redb, Snapshot};
use super::Ctx;

/// Most writes one batch (one transaction, one `fsync`) takes.
pub const MAX_BATCH: usize = 256;
/// Most writes waiting for the writer thread.
pub const QUEUE: usize = 4096;
/// How long a batch waits for more writes when the last batch had several
/// (under load); a lone write never waits.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
/// Longest a lazy write stays non-durable while the writer is idle.
pub const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// The commit that should have made a write durable failed.
#[derive(Debug, thiserror::Error)]
#[error("the batch's durable commit failed: {0}")]
struct BatchCommitFailed(String);

/// One queued write: run (perhaps twice), then answered once.
trait Job: Send {
    /// Runs the write in `redb` (a write transaction, or for a batch of
    /// journaled writes alone a snapshot) and the journal; whether it
    /// succeeded (an `Err` result is kept for the answer). A run after a
    /// failed one starts from scratch.
    fn run(&mut self, redb: &Redb<'_>, journal: &mut Journal) -> bool;
    /// Answers the caller with the last run's result, or with the batch's
    /// error when the commit that was to make it durable failed.
    fn answer(self: Box<Self>, batch: Result<(), &str>);
    /// Whether the answer waits for the write to be on disk.
    fn durable(&self) -> bool;
    /// Whether the write goes to the message journal, not to redb (it only
    /// reads redb).
    fn journaled(&self) -> bool;
}

struct Write<T, F> {
    what: &'static str,
    durable: bool,
    journaled: bool,
    f: F,
    result: Option<StoreResult<T>>,
    tx: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send + 'static,
    F: Fn(&Redb<'_>, &mut Journal) -> StoreResult<T> + Send + 'static,
{
    fn run(&mut self, redb: &Redb<'_>, journal: &mut Journal) -> bool {
        let result = (self.f)(redb, journal);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, batch: Result<(), &str>) {
        let what = self.what;
        let result = match (self.result, batch) {
            (None, Err(e)) | (Some(Ok(_)), Err(e)) => Err(StoreError::backend(
                format!("{what}: commit"),
                BatchCommitFailed(e.to_owned()),
            )),
            (Some(result), _) => result,
            (None, Ok(())) => Err(StoreError::Backend {
                message: format!("{what}: never ran"),
                source: None,
            }),
        };
        let _ = self.tx.send(result);
    }

    fn durable(&self) -> bool {
        self.durable
    }

    fn journaled(&self) -> bool {
        self.journaled
    }
}

/// Handle to the writer thread. Dropping the last one ends the thread and
/// waits for it.
pub struct Writer {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread for `db` and its message journal.
    pub fn start(db: Arc<Database>, journal: Journal) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("huddle-store-writer".into())
            .spawn(move || run(&db, journal, rx))
            .ctx("starting the store writer thread")?;
        Ok(Writer {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` in a write transaction on the writer thread (shared with the
    /// writes queued beside it, or its own when one of them fails); answers
    /// once its changes are durable, or with `f`'s error (nothing written).
    /// `f` may run twice: only the last run's changes and result count.
    pub async fn write<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.queue(what, true, false, in_txn(what, f)).await
    }

    /// Runs `f` on the writer thread with the message journal: `f` reads
    /// redb (which it must not change) and appends to the journal; answers
    /// once the journal's records are durable.
    pub async fn append<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Redb<'_>, &mut Journal) -> StoreResult<T> + Send + 'static,
    {
        self.queue(what, true, true, f).await
    }

    /// Queues `f` like [`append`](Self::append) without waiting: when this
    /// returns, the write has its place in the queue (writes run in queue
    /// order), or a full queue is an error. The future answers it.
    pub fn start_append<T, F>(
        &self,
        what: &'static str,
        f: F,
    ) -> StoreResult<impl std::future::Future<Output = StoreResult<T>> + Send + 'static>
    where
        T: Send + 'static,
        F: Fn(&Redb<'_>, &mut Journal) -> StoreResult<T> + Send + 'static,
    {
        let (job, rx) = job(what, true, true, f);
        let jobs = self.jobs.as_ref().ok_or_else(|| closed(what))?;
        jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Backend {
                message: format!("{what}: the store writer's queue is full ({QUEUE} writes)"),
                source: None,
            },
            mpsc::error::TrySendError::Closed(_) => closed(what),
        })?;
        Ok(async move { rx.await.map_err(|_| closed(what))? })
    }

    /// Answers once the writes queued before this call are answered and
    /// the message journal's checkpoint running beside the writer then (if
    /// any) has ended.
    pub async fn settle(&self) -> StoreResult<()> {
        self.append("settle", |_, journal| {
            journal.wait_checkpoint();
            Ok(())
        })
        .await
    }

    /// Like [`write`](Self::write), but answers once the write is committed,
    /// not yet durable: a crash within [`FLUSH_AFTER`] may undo it.
    pub async fn write_lazy<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.queue(what, false, false, in_txn(what, f)).await
    }

    async fn queue<T, F>(
        &self,
        what: &'static str,
        durable: bool,
        journaled: bool,
        f: F,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Redb<'_>, &mut Journal) -> StoreResult<T> + Send + 'static,
    {
        let (job, rx) = job(what, durable, journaled, f);
        let jobs = self.jobs.as_ref().ok_or_else(|| closed(what))?;
        jobs.send(job).await.map_err(|_| closed(what))?;
        rx.await.map_err(|_| closed(what))?
    }
}

/// A redb write as a job: `f` runs in the batch's write transaction (the
/// writer gives a snapshot only to batches of journaled writes alone).
fn in_txn<T, F>(
    what: &'static str,
    f: F,
) -> impl Fn(&Redb<'_>, &mut Journal) -> StoreResult<T> + Send + 'static
where
    F: Fn(&WriteTransaction) -> StoreResult<T> + Send + 'static,
{
    move |redb, _| match redb {
        Redb::Write(txn) => f(txn),
        Redb::Read(_) => Err(StoreError::Backend {
            message: format!("{what}: run outside a write transaction"),
            source: None,
        }),
    }
}

/// A queued write and the receiver of its answer.
fn job<T, F>(
    what: &'static str,
    durable: bool,
    journaled: bool,
    f: F,
) -> (Box<dyn Job>, oneshot::Receiver<StoreResult<T>>)
where
    T: Send + 'static,
    F: Fn(&Redb<'_>, &mut Journal) -> StoreResult<T> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job = Box::new(Write {
        what,
        durable,
        journaled,
        f,
        result: None,
        tx,
    });
    (job, rx)
}

fn closed(what: &str) -> StoreError {
    StoreError::Backend {
        message: format!("{what}: the store writer has stopped"),
        source: None,
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has answered what was
        // queued.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            // A job holding the last handle would drop it on the thread itself.
            if thread.thread().id() != std::thread::current().id() && thread.join().is_err() {
                log::error!("the store writer thread panicked");
            }
        }
    }
}

/// The writer thread: batch, run, make durable, answer; until every handle
/// is gone.
fn run(db: &Arc<Database>, mut journal: Journal, mut jobs: mpsc::Receiver<Box<dyn Job>>) {
    // Only for waiting on the queue with a timeout.
    let waiter = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            log::error!("store writer: no timer ({e}); lazy writes become durable with the next durable one");
            None
        }
    };
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut busy = false;
    // Lazy writes committed since the last durable commit.
    let mut undurable = false;
    // redb as of its last commit, for batches of journaled writes alone;
    // dropped whenever redb changes.
    let mut snapshot: Option<Snapshot> = None;
    loop {
        let first = match (&waiter, undurable) {
            (Some(rt), true) => {
                match rt.block_on(async { tokio::time::timeout(FLUSH_AFTER, jobs.recv()).await }) {
                    Ok(job) => job,
                    Err(_) => {
                        // Idle: make the lazy writes durable now.
                        if let Err(e) = make_durable(db) {
                            log::error!(
                                "embedded store: durable commit of lazy writes failed: {e}"
                            );
                        }
                        undurable = false;
                        continue;
                    }
                }
            }
            _ => jobs.blocking_recv(),
        };
        let Some(first) = first else { break };
        batch.push(first);
        take_queued(&mut jobs, &mut batch);
        // A durable redb commit is worth waiting for company; the journal's
        // sequential write is not (at 2000 messages a second, waiting 1 ms
        // tripled p50 for no CPU saved).
        if busy && redb_durable(&batch) && batch.len() < MAX_BATCH {
            // Writes keep coming: let a few more join this commit (each
            // commit costs the kernel a flush and a journal commit, far more
            // than a write).
            std::thread::sleep(LINGER);
            take_queued(&mut jobs, &mut batch);
        }
        busy = batch.len() > 1;
        // Journaled writes leave redb unchanged: a batch of them alone reads
        // the snapshot and commits nothing there.
        let in_redb = batch.iter().any(|job| !job.journaled());
        let outcome = if in_redb {
            // (What the snapshot shows is about to change.)
            snapshot = None;
            writes(db, &mut journal, &mut batch, &mut undurable)
        } else {
            appends(db, &mut snapshot, &mut journal, &mut batch)
        };
        // The journal's records are written once redb's part is done, and
        // only when it succeeded.
        let journaled = match &outcome {
            Ok(()) => journal.commit(),
            Err(e) => {
                journal.discard();
                Err(e.clone())
            }
        };
        for job in batch.drain(..) {
            let outcome = if job.journaled() {
                &journaled
            } else {
                &outcome
            };
            job.answer(outcome.as_ref().map(|_| ()).map_err(String::as_str));
        }
        // A checkpoint that has committed: its messages are only in redb
        // once the journal drops its frozen part, so the snapshot, older
        // than that commit, goes first.
        if journal.checkpoint_ended() {
            snapshot = None;
        }
        journal.start_checkpoint(db);
    }
    // redb does not promise that non-durable commits survive a close, and
    // the journal is left empty.
    if !journal.is_empty() {
        match journal.checkpoint_all(db) {
            Ok(()) => undurable = false,
            Err(e) => log::error!(
                "embedded store: checkpointing the message journal at close failed (it is replayed at the next open): {e}"
            ),
        }
    }
    if undurable {
        if let Err(e) = make_durable(db) {
            log::error!("embedded store: durable commit of lazy writes at close failed: {e}");
        }
    }
}

/// Moves what is queued into `batch`, up to [`MAX_BATCH`].
fn take_queued(jobs: &mut mpsc::Receiver<Box<dyn Job>>, batch: &mut Vec<Box<dyn Job>>) {
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

enum Together {
    /// Every write ran and the transaction is durable.
    Committed,
    /// A write failed; the transaction was aborted.
    WriteFailed,
    /// The transaction could not be begun or committed.
    Failed(String),
}

/// Runs the whole batch in one transaction, committed with `durability`.
fn together(
    db: &Database,
    journal: &mut Journal,
    batch: &mut [Box<dyn Job>],
    durability: Durability,
) -> Together {
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return Together::Failed(e.to_string()),
    };
    if let Err(e) = txn.set_durability(durability) {
        return Together::Failed(e.to_string());
    }
    for job in batch.iter_mut() {
        if !job.run(&Redb::Write(&txn), journal) {
            if let Err(e) = txn.abort() {
                log::warn!("embedded store: aborting a batch failed: {e}");
            }
            return Together::WriteFailed;
        }
    }
    match txn.commit().map_err(|e| e.to_string()) {
        Ok(()) => Together::Committed,
        Err(e) => Together::Failed(e),
    }
}

/// Runs every write of the batch in a transaction of its own (so one that
/// fails is aborted alone), all but the last non-durable; the last commit,
/// with `durability` (an empty one when the last write failed), covers them
/// all. The outcome of that last commit.
fn apart(
    db: &Database,
    journal: &mut Journal,
    batch: &mut [Box<dyn Job>],
    durability: Durability,
) -> Result<(), String> {
    let last = batch.len() - 1;
    let mut last_committed = false;
    let mut any_committed = false;
    for (i, job) in batch.iter_mut().enumerate() {
        let durability = if i == last {
            durability
        } else {
            Durability::None
        };
        let committed = super::write_txn(db, "batched write", durability, |txn| {
            if job.run(&Redb::Write(txn), journal) {
                Ok(())
            } else {
                Err(StoreError::NotFound(String::new()))
            }
        })
        .is_ok();
        any_committed |= committed;
        last_committed = i == last && committed;
    }
    let lazy = matches!(durability, Durability::None);
    if lazy || last_committed || !any_committed {
        return Ok(());
    }
    make_durable(db).inspect_err(|e| {
        log::error!("embedded store: durable commit of a batch failed: {e}");
    })
}

/// Whether a write of `batch` waits for a durable redb commit.
fn redb_durable(batch: &[Box<dyn Job>]) -> bool {
    batch.iter().any(|job| job.durable() && !job.journaled())
}

/// Runs a batch that changes redb: in one transaction, durable when a
/// write in it must be (else `undurable` notes a commit to make durable
/// later); when a write fails there, again one transaction per write. The
/// batch's outcome; each write keeps its own result.
fn writes(
    db: &Database,
    journal: &mut Journal,
    batch: &mut [Box<dyn Job>],
    undurable: &mut bool,
) -> Result<(), String> {
    let durable = redb_durable(batch);
    let durability = if durable {
        Durability::Immediate
    } else {
        // (At worst nothing commits, and the flush is an empty commit.)
        *undurable = true;
        Durability::None
    };
    match together(db, journal, batch, durability) {
        Together::Committed => {
            // A durable commit persists every commit before it.
            *undurable &= !durable;
            Ok(())
        }
        Together::Failed(e) => {
            log::error!("embedded store: committing a batch failed: {e}");
            Err(e)
        }
        // One write alone: its own error is its answer (nothing was
        // committed, so lazy writes before it are still not durable).
        Together::WriteFailed if batch.len() == 1 => Ok(()),
        Together::WriteFailed => {
            journal.discard();
            apart(db, journal, batch, durability)
        }
    }
}

/// Runs a batch of journaled writes alone against `snapshot` (opened when
/// there is none). They change only the journal, and a failed one appended
/// nothing, so each succeeds or fails on its own and none runs twice; an
/// error here is the snapshot's.
fn appends(
    db: &Database,
    snapshot: &mut Option<Snapshot>,
    journal: &mut Journal,
    batch: &mut [Box<dyn Job>],
) -> Result<(), String> {
    let snapshot = match snapshot {
        Some(s) => s,
        None => snapshot.insert(Snapshot::open(db).map_err(|e| {
            let e = e.to_string();
            log::error!("embedded store: {e}");
            e
        })?),
    };
    let redb = Redb::Read(snapshot);
    for job in batch.iter_mut() {
        job.run(&redb, journal);
    }
    Ok(())
}

/// Commits an empty transaction durably, which persists every non-durable
/// commit before it.
fn make_durable(db: &Database) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");
    /// Key of a counter every test write increments.
    const COUNT: u64 = u64::MAX;

    /// A write of `key`, which fails after writing when `fail`; answers the
    /// counter it saw.
    fn job(key: u64, fail: bool, tx: oneshot::Sender<StoreResult<u64>>) -> Box<dyn Job> {
        job_with(key, fail, true, tx)
    }

    fn job_with(
        key: u64,
        fail: bool,
        durable: bool,
        tx: oneshot::Sender<StoreResult<u64>>,
    ) -> Box<dyn Job> {
        Box::new(Write {
            what: "test",
            durable,
            journaled: false,
            f: in_txn("test", move |txn: &WriteTransaction| {
                let mut table = txn.open_table(T).ctx("open")?;
                table.insert(key, key).ctx("insert")?;
                let seen = table.get(COUNT).ctx("get")?.map_or(0, |v| v.value());
                table.insert(COUNT, seen + 1).ctx("count")?;
                if fail {
                    return Err(StoreError::NotFound("refused".into()));
                }
                Ok(seen)
            }),
            result: None,
            tx,
        })
    }

    /// Writes queued together run as one batch: each succeeds or fails on
    /// its own, each sees those before it, and what succeeded is on disk
    /// after a reopen, whichever of them (none, one in the middle, the last)
    /// failed.
    #[test]
    fn a_batch_keeps_each_write_apart_and_makes_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        for (round, failing) in [vec![], vec![3], vec![3, 9]].into_iter().enumerate() {
            let base = 100 * round as u64;
            let db = Arc::new(Database::create(&path).unwrap());
            let start = {
                let read = db.begin_read().unwrap();
                match read.open_table(T) {
                    Ok(t) => t.get(COUNT).unwrap().map_or(0, |v| v.value()),
                    Err(_) => 0,
                }
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            let mut answers = Vec::new();
            for key in 0..10u64 {
                let fail = failing.contains(&key);
                let (atx, arx) = oneshot::channel();
                tx.try_send(job(base + key, fail, atx))
                    .unwrap_or_else(|_| panic!("queue full"));
                answers.push((key, fail, arx));
            }
            drop(tx);
            // Everything is queued before the writer looks: one batch.
            run(&db, Journal::open(dir.path(), &db).unwrap(), rx);
            let mut expected = start;
            for (key, fail, mut arx) in answers {
                let answer = arx.try_recv().expect("answered");
                if fail {
                    assert!(answer.is_err(), "write {key} of round {round}");
                } else {
                    assert_eq!(answer.unwrap(), expected, "write {key} of round {round}");
                    expected += 1;
                }
            }
            drop(db);
            let db = Database::create(&path).unwrap();
            let read = db.begin_read().unwrap();
            let table = read.open_table(T).unwrap();
            for key in 0..10u64 {
                let fail = failing.contains(&key);
                assert_eq!(
                    table.get(base + key).unwrap().is_some(),
                    !fail,
                    "key {key} of round {round}"
                );
            }
            assert_eq!(table.get(COUNT).unwrap().unwrap().value(), expected);
        }
    }

    /// Lazy writes (one failing among them) are answered like durable ones,
    /// each alone, and a reopened file holds exactly the successful ones.
    #[test]
    fn lazy_writes_are_made_durable_when_the_writer_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let db = Arc::new(Database::create(&path).unwrap());
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut answers = Vec::new();
        for key in 0..5u64 {
            let (atx, arx) = oneshot::channel();
            tx.try_send(job_with(key, key == 2, false, atx))
                .unwrap_or_else(|_| panic!("queue full"));
            answers.push(arx);
        }
        drop(tx);
        run(&db, Journal::open(dir.path(), &db).unwrap(), rx);
        let ok: Vec<bool> = answers
            .into_iter()
            .map(|mut a| a.try_recv().expect("answered").is_ok())
            .collect();
        assert_eq!(ok, [true, true, false, true, true]);
        drop(db);
        let db = Database::create(&path).unwrap();
        let read = db.begin_read().unwrap();
        let table = read.open_table(T).unwrap();
        for key in 0..5u64 {
            assert_eq!(table.get(key).unwrap().is_some(), key != 2, "key {key}");
        }
    }
}
