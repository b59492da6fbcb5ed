//! Group commit for the embedded store: one writer thread runs every write
//! transaction, and the writes that queued up while the disk was busy share
//! one `fsync`.
//!
//! redb runs one write transaction at a time and, by default, makes each one
//! durable on its own: at a few thousand chat messages a second the server
//! spent about a fifth of its CPU in `fdatasync`. Here each write still runs
//! in its own transaction (one that fails is aborted alone and the others
//! keep their changes), but the writer takes everything queued at once (at
//! most [`MAX_BATCH`]) and commits all but the last of them with
//! [`Durability::None`]; the last one's durable commit makes the whole batch
//! durable. Only then does any caller get its answer, so an acknowledged
//! write is on disk exactly as before. The price: a reader may see a write a
//! moment (one `fsync`) before its writer is told, and a crash in that moment
//! loses a write nobody was told about. At low rates every batch holds one
//! write and nothing changes.
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

use super::Ctx;

/// Most writes one batch (one `fsync`) takes.
pub const MAX_BATCH: usize = 256;
/// Most writes waiting for the writer thread.
pub const QUEUE: usize = 4096;

/// The durable commit that should have covered a write failed.
#[derive(Debug, thiserror::Error)]
#[error("the batch's durable commit failed: {0}")]
struct BatchCommitFailed(String);

/// Answers a job's caller with the batch's outcome (`Err` with the reason
/// when the batch's durable commit failed).
type Answer = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// What running a job left: whether its transaction committed, and how to
/// answer its caller once the batch is durable (or failed to become so).
struct Ran {
    committed: bool,
    answer: Answer,
}

type Job = Box<dyn FnOnce(&Database, Durability) -> Ran + Send>;

/// Handle to the writer thread. Dropping the last one ends the thread and
/// waits for it.
pub struct Writer {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread for `db`.
    pub fn start(db: Arc<Database>) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("huddle-store-writer".into())
            .spawn(move || run(&db, rx))
            .ctx("starting the store writer thread")?;
        Ok(Writer {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` in its own write transaction on the writer thread; answers
    /// once the transaction is durable (or aborted because `f` failed).
    pub async fn write<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |db, durability| {
            let result = super::write_txn(db, what, durability, f);
            Ran {
                committed: result.is_ok(),
                answer: Box::new(move |batch| {
                    let result = match (result, batch) {
                        (Ok(_), Err(e)) => Err(StoreError::backend(
                            format!("{what}: commit"),
                            BatchCommitFailed(e.to_owned()),
                        )),
                        (result, _) => result,
                    };
                    let _ = tx.send(result);
                }),
            }
        });
        let jobs = self.jobs.as_ref().ok_or_else(|| closed(what))?;
        jobs.send(job).await.map_err(|_| closed(what))?;
        rx.await.map_err(|_| closed(what))?
    }
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
fn run(db: &Database, mut jobs: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let last = batch.len() - 1;
        let ran: Vec<Ran> = batch
            .drain(..)
            .enumerate()
            .map(|(i, job)| {
                let durability = if i == last {
                    Durability::Immediate
                } else {
                    Durability::None
                };
                job(db, durability)
            })
            .collect();
        // The last write's durable commit covered the others; when it did
        // not commit, an empty durable commit does.
        let covered = ran[last].committed || !ran[..last].iter().any(|r| r.committed);
        let outcome = if covered { Ok(()) } else { make_durable(db) };
        if let Err(e) = &outcome {
            log::error!("embedded store: durable commit of a batch failed: {e}");
        }
        for r in ran {
            (r.answer)(outcome.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
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
    use redb::{ReadableDatabase, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    fn job(key: u64, fail: bool, tx: oneshot::Sender<StoreResult<()>>) -> Job {
        Box::new(move |db, durability| {
            let result = crate::store::embedded::write_txn(db, "test", durability, |txn| {
                txn.open_table(T)
                    .ctx("open")?
                    .insert(key, key)
                    .ctx("insert")?;
                if fail {
                    return Err(StoreError::NotFound("refused".into()));
                }
                Ok(())
            });
            Ran {
                committed: result.is_ok(),
                answer: Box::new(move |batch| {
                    let _ = tx.send(
                        batch
                            .map_err(|e| StoreError::NotFound(e.into()))
                            .and(result),
                    );
                }),
            }
        })
    }

    /// Writes queued together run as one batch: each commits or aborts on its
    /// own, and what committed is on disk after a reopen, whichever of them
    /// (the last one included) failed.
    #[test]
    fn a_batch_keeps_each_write_apart_and_makes_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        for last_fails in [false, true] {
            let db = Database::create(&path).unwrap();
            let (tx, rx) = mpsc::channel(QUEUE);
            let mut answers = Vec::new();
            for key in 0..10u64 {
                let fail = key == 3 || (last_fails && key == 9);
                let (atx, arx) = oneshot::channel();
                tx.try_send(job(key + 100 * u64::from(last_fails), fail, atx))
                    .unwrap_or_else(|_| panic!("queue full"));
                answers.push((key, fail, arx));
            }
            drop(tx);
            // Everything is queued before the writer looks: one batch.
            run(&db, rx);
            for (key, fail, mut arx) in answers {
                let answer = arx.try_recv().expect("answered");
                assert_eq!(answer.is_err(), fail, "write {key}");
            }
            drop(db);
            let db = Database::create(&path).unwrap();
            let read = db.begin_read().unwrap();
            let table = read.open_table(T).unwrap();
            for key in 0..10u64 {
                let key = key + 100 * u64::from(last_fails);
                let fail = key % 100 == 3 || (last_fails && key % 100 == 9);
                assert_eq!(table.get(key).unwrap().is_some(), !fail, "key {key}");
            }
        }
    }
}
