//! Message appends for the MongoDB store, in batches: one task per store
//! handle (per node) takes the appends queued since its last batch and
//! stores them with a few commands whatever their number, instead of three
//! round trips each.
//!
//! A batch is:
//!
//! 1. For conversations this node has not appended to yet, one `find` of
//!    their `lastSeq` (which also proves they exist). After that the node
//!    remembers the last seq it stored in each conversation and takes the
//!    next ones from there.
//! 2. One ordered `insert` of every message with its seq. The insert is
//!    still the seq allocation (see the module above): the unique
//!    `(conversationId, seq)` index lets one writer own a seq. Ordered means
//!    the server stops at the first failure, so the messages before it are
//!    stored and none after it. A duplicate key there is either a retry (the
//!    `(senderId, clientId)` index: answered with the stored message) or
//!    another node took that seq: this node reads the conversation's highest
//!    stored seq from the index and the rest of the batch goes again, seqs
//!    given out afresh in the same order. So a conversation's appends from
//!    one node get seqs in the order they were queued — what
//!    [`ChatStore::orders_appends`](huddle_actors::store::ChatStore::orders_appends)
//!    promises — and no seq is skipped.
//! 3. The answers. A message is answered once it is stored, before the
//!    update below (at 2000 messages a second on two nodes over nx-27017,
//!    a round trip sooner: p50 4.6–5.3 → 3.1–3.3 ms, p99 9.2–16.6 →
//!    6.1–9.8 ms).
//! 4. One `update` command with a `$max` of `lastSeq` per conversation
//!    stored into since the last one: at once after a batch of several
//!    appends (under load its round trip is what lets the next batch
//!    gather: without it batches halved and the extra inserts cost 10 %
//!    more CPU than the updates saved), and after a batch of one append
//!    at most [`RAISE_EVERY`] later, covering whatever else came alone
//!    meanwhile (big rooms on two nodes, one message per batch: 15 % less
//!    CPU per delivery). So `lastSeq` lags the messages by a round trip or
//!    up to [`RAISE_EVERY`] (after a crash, until the conversation's next
//!    append), and what tells a client a conversation's last seq reads the
//!    newest message's seq too (`ChatStore::last_seq`, and the
//!    conversations the store returns): never lower than a message already
//!    answered. Another node that starts appending to the conversation
//!    from a lagging `lastSeq` finds the taken seqs through the index, as
//!    in step 2.
//!
//! One batch runs at a time; what arrives meanwhile waits for the next, so
//! the batches grow with the load (group commit). The queue is bounded
//! ([`QUEUE`] appends).

use std::collections::{HashMap, VecDeque};

use huddle_actors::ids::MessageId;
use huddle_actors::model::NewMessage;
use mongodb::error::InsertManyError;
use tokio::sync::{mpsc, oneshot};

use super::*;
use futures_util::TryStreamExt;
use huddle_actors::ids::new_id;

/// Most appends waiting for the batch task.
pub(super) const QUEUE: usize = 4096;
/// Most appends one batch takes.
const MAX_BATCH: usize = 256;
/// Most conversations whose last seq the task remembers; past that it
/// forgets them all and reads them again as they come.
const SEQ_CACHE_MAX: usize = 100_000;
/// How many times one batch may lose the race for a seq before the append
/// that lost is reported as too contended. Every lost race means another
/// message was stored, so this is never reached by correct servers under
/// sane load; it turns a misbehaving server into an error instead of a spin.
const MAX_SEQ_ATTEMPTS: usize = 1_000;
/// How long after a message is answered its conversation's `lastSeq` is
/// raised at the latest: one `update` command covers every conversation
/// this node stored into meanwhile, instead of one per batch.
const RAISE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// Conversations waiting for their `lastSeq` update that make it due at
/// once.
const MAX_UNRAISED: usize = 1_000;
/// A batch slower than this is logged (with where its time went).
const SLOW_BATCH: std::time::Duration = std::time::Duration::from_millis(500);

type Reply = oneshot::Sender<StoreResult<(Message, bool)>>;

/// One queued append.
struct Job {
    message: Message,
    reply: Reply,
}

impl Job {
    fn answer(self, result: StoreResult<(Message, bool)>) {
        // The caller may have gone (its event cancelled); the message is
        // stored all the same.
        let _ = self.reply.send(result);
    }

    fn conversation(&self) -> &str {
        self.message.conversation_id.as_str()
    }
}

/// The handle that queues appends; cheap to clone. The task ends when the
/// last handle is dropped.
#[derive(Clone)]
pub(super) struct Appender {
    jobs: mpsc::Sender<Job>,
}

fn stopped() -> StoreError {
    StoreError::Backend {
        message: "appending a message: the append task has stopped".into(),
        source: None,
    }
}

impl Appender {
    /// Starts the batch task on the current Tokio runtime.
    pub(super) fn start(
        db: Database,
        messages: Collection<MessageDoc>,
        conversations: Collection<Document>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let task = Batches {
            db,
            messages,
            conversations,
            last_seqs: HashMap::new(),
            unraised: HashMap::new(),
            raise_due: None,
        };
        tokio::spawn(task.run(rx));
        Appender { jobs }
    }

    /// Stores `new`, waiting for room in the queue when it is full.
    pub(super) async fn append(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        let (job, answer) = job(new);
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues `new` without waiting: when this returns its place among this
    /// node's appends is fixed, or a full queue is an error.
    pub(super) fn start_append(
        &self,
        new: NewMessage,
    ) -> StoreResult<impl std::future::Future<Output = StoreResult<(Message, bool)>> + Send + 'static>
    {
        let (job, answer) = job(new);
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Backend {
                message: format!("appending a message: the append queue is full ({QUEUE} appends)"),
                source: None,
            },
            mpsc::error::TrySendError::Closed(_) => stopped(),
        })?;
        Ok(async move { answer.await.map_err(|_| stopped())? })
    }
}

fn job(new: NewMessage) -> (Job, oneshot::Receiver<StoreResult<(Message, bool)>>) {
    let (reply, answer) = oneshot::channel();
    let message = Message {
        id: MessageId(new_id()),
        conversation_id: new.conversation_id,
        seq: 0,
        sender_id: new.sender_id,
        client_id: new.client_id,
        body: new.body,
        created_at: now(),
    };
    (Job { message, reply }, answer)
}

/// The batch task's state.
struct Batches {
    db: Database,
    messages: Collection<MessageDoc>,
    /// Only `_id` and `lastSeq` are read: a conversation's member list may
    /// be long.
    conversations: Collection<Document>,
    /// Per conversation, the highest seq known to be stored (by this node,
    /// or read from the database). Another node may have stored more: the
    /// insert finds out.
    last_seqs: HashMap<String, i64>,
    /// Per conversation, the highest seq this node stored and answered
    /// whose `lastSeq` update is still to come.
    unraised: HashMap<String, i64>,
    /// When the `lastSeq` update of `unraised` is due.
    raise_due: Option<tokio::time::Instant>,
}

impl Batches {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let received = match self.raise_due {
                Some(due) => tokio::select! {
                    // (`recv_many` is cancel-safe: nothing is lost when the
                    // timer wins.)
                    n = rx.recv_many(&mut batch, MAX_BATCH) => n,
                    () = tokio::time::sleep_until(due) => {
                        self.raise_last_seqs().await;
                        continue;
                    }
                },
                None => rx.recv_many(&mut batch, MAX_BATCH).await,
            };
            if received == 0 {
                break;
            }
            // Under load (appends came together) the update goes at once,
            // and the next batch gathers meanwhile: its round trip is the
            // wait that keeps batches large (without it they halve, and
            // the inserts cost more than the updates saved: +10 % CPU in
            // small rooms on two nodes). Alone, an append's update waits
            // for others (up to RAISE_EVERY): one command for many.
            let busy = batch.len() > 1;
            self.append(batch.drain(..)).await;
            let due = self
                .raise_due
                .is_some_and(|due| tokio::time::Instant::now() >= due);
            if busy || due || self.unraised.len() >= MAX_UNRAISED {
                self.raise_last_seqs().await;
            }
        }
        if !self.unraised.is_empty() {
            self.raise_last_seqs().await;
        }
    }

    /// Stores the batch and answers every job in it.
    async fn append(&mut self, jobs: impl Iterator<Item = Job>) {
        let started = std::time::Instant::now();
        let jobs: Vec<Job> = jobs.collect();
        let size = jobs.len();
        let jobs = self.known_conversations(jobs).await;
        let looked_up = started.elapsed();
        let stored = self.insert(jobs).await;
        let inserted = started.elapsed();
        let count = stored.len();
        // Answered once stored: what reads a conversation's last seq for a
        // client reads it from the messages too, so a lagging `lastSeq`
        // never hides an answered message.
        for Job { message, reply } in stored {
            let seq = i64::try_from(message.seq).unwrap_or(i64::MAX);
            let highest = self
                .unraised
                .entry(message.conversation_id.as_str().to_owned())
                .or_insert(seq);
            *highest = (*highest).max(seq);
            // The caller may have gone; the message is stored all the same.
            let _ = reply.send(Ok((message, true)));
        }
        if !self.unraised.is_empty() && self.raise_due.is_none() {
            self.raise_due = Some(tokio::time::Instant::now() + RAISE_EVERY);
        }
        let took = started.elapsed();
        if took >= SLOW_BATCH {
            log::warn!(
                target: "huddle::store",
                "a batch of {size} message append(s) took {took:?} (conversations looked up \
                 after {looked_up:?}, {count} stored after {inserted:?}); every message sent \
                 meanwhile waited for it"
            );
        }
    }

    /// Reads the `lastSeq` of the batch's conversations this task does not
    /// know yet; answers the jobs whose conversation does not exist (or
    /// could not be read) and returns the others.
    async fn known_conversations(&mut self, jobs: Vec<Job>) -> VecDeque<Job> {
        if self.last_seqs.len() + jobs.len() > SEQ_CACHE_MAX {
            // Forget them all before listing what to read, so every
            // conversation of this batch is read again.
            self.last_seqs.clear();
        }
        let mut unknown: Vec<&str> = jobs
            .iter()
            .map(Job::conversation)
            .filter(|id| !self.last_seqs.contains_key(*id))
            .collect();
        if unknown.is_empty() {
            return jobs.into();
        }
        unknown.sort_unstable();
        unknown.dedup();
        let found: Result<Vec<Document>, _> = match self
            .conversations
            .find(doc! { "_id": { "$in": unknown } })
            .projection(doc! { "_id": 1, "lastSeq": 1 })
            .await
        {
            Ok(cursor) => cursor.try_collect().await,
            Err(e) => Err(e),
        };
        let failed = match found {
            Ok(docs) => {
                for doc in docs {
                    if let Ok(id) = doc.get_str("_id") {
                        self.last_seqs.insert(id.to_owned(), stored_last_seq(&doc));
                    }
                }
                None
            }
            Err(e) => Some(e),
        };
        let mut known = VecDeque::with_capacity(jobs.len());
        for job in jobs {
            if self.last_seqs.contains_key(job.conversation()) {
                known.push_back(job);
                continue;
            }
            let error = match &failed {
                Some(e) => StoreError::backend("finding a conversation", e.clone()),
                None => StoreError::NotFound(format!("conversation {}", job.conversation())),
            };
            job.answer(Err(error));
        }
        known
    }

    /// Inserts the jobs' messages in order, giving each the next seq of its
    /// conversation; answers the retries and failures, returns the jobs
    /// whose message it stored (in order).
    async fn insert(&mut self, mut todo: VecDeque<Job>) -> Vec<Job> {
        let mut stored = Vec::with_capacity(todo.len());
        let mut lost_races = 0;
        while !todo.is_empty() {
            let docs = match self.number(&mut todo) {
                Ok(docs) => docs,
                Err(e) => {
                    let message = e.to_string();
                    for job in todo.drain(..) {
                        job.answer(Err(StoreError::Backend {
                            message: message.clone(),
                            source: None,
                        }));
                    }
                    break;
                }
            };
            let inserted = self.messages.insert_many(docs).ordered(true).await;
            let Err(error) = inserted else {
                for job in todo.drain(..) {
                    self.stored(&job);
                    stored.push(job);
                }
                break;
            };
            let Some((index, code)) = first_write_error(&error) else {
                // The outcome is unknown (connection lost, write concern
                // not met): fail the rest and read their conversations
                // again next time. A retry with the same client id finds
                // what was stored.
                for job in todo.drain(..) {
                    self.last_seqs.remove(job.conversation());
                    job.answer(Err(StoreError::backend(
                        "inserting a message",
                        error.clone(),
                    )));
                }
                break;
            };
            // Everything before `index` is stored, nothing after it.
            for job in todo.drain(..index.min(todo.len())) {
                self.stored(&job);
                stored.push(job);
            }
            let Some(failed) = todo.pop_front() else {
                break;
            };
            if code != DUPLICATE_KEY {
                failed.answer(Err(StoreError::backend("inserting a message", error)));
                continue;
            }
            if let Some(client_id) = failed.message.client_id.clone() {
                match self
                    .message_by_client_id(failed.message.sender_id.as_str(), &client_id)
                    .await
                {
                    Ok(Some(original)) => {
                        failed.answer(Ok((original, false)));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failed.answer(Err(e));
                        continue;
                    }
                }
            }
            // Another writer stored this seq: go on above the highest
            // stored one.
            lost_races += 1;
            if lost_races > MAX_SEQ_ATTEMPTS {
                let conversation = failed.conversation().to_owned();
                failed.answer(Err(StoreError::Backend {
                    message: format!(
                        "appending to conversation {conversation}: lost the race for a seq {MAX_SEQ_ATTEMPTS} times"
                    ),
                    source: None,
                }));
                continue;
            }
            match self.highest_stored_seq(failed.conversation()).await {
                Ok(highest) => {
                    let last = self
                        .last_seqs
                        .entry(failed.conversation().to_owned())
                        .or_insert(0);
                    *last = (*last).max(highest);
                    todo.push_front(failed);
                }
                Err(e) => failed.answer(Err(e)),
            }
        }
        stored
    }

    /// Gives the jobs their seqs, in order, above the last stored seq of
    /// their conversation; their documents.
    fn number(&self, todo: &mut VecDeque<Job>) -> StoreResult<Vec<MessageDoc>> {
        let mut next: HashMap<&str, i64> = HashMap::new();
        let mut docs = Vec::with_capacity(todo.len());
        for job in todo.iter_mut() {
            let id = job.message.conversation_id.as_str();
            let seq = next
                .entry(id)
                .or_insert_with(|| self.last_seqs.get(id).copied().unwrap_or(0));
            *seq += 1;
            job.message.seq = from_stored_seq(*seq)?;
            docs.push(MessageDoc::from_message(&job.message)?);
        }
        Ok(docs)
    }

    /// Notes that the job's message is stored.
    fn stored(&mut self, job: &Job) {
        let seq = i64::try_from(job.message.seq).unwrap_or(i64::MAX);
        let last = self
            .last_seqs
            .entry(job.conversation().to_owned())
            .or_insert(0);
        *last = (*last).max(seq);
    }

    /// Raises each conversation's `lastSeq` to the highest seq the batch
    /// stored in it, in one command. A failure is logged, not reported: the
    /// messages are stored, and `lastSeq` lags as after a crash between the
    /// insert and the update (the module above), until the conversation's
    /// next append raises it.
    async fn raise_last_seqs(&mut self) {
        self.raise_due = None;
        let highest = std::mem::take(&mut self.unraised);
        let updates: Vec<Document> = highest
            .into_iter()
            .map(|(id, seq)| doc! { "q": { "_id": id }, "u": { "$max": { "lastSeq": seq } } })
            .collect();
        let count = updates.len();
        let command = doc! { "update": CONVERSATIONS, "updates": updates, "ordered": false };
        match self.db.run_command(command).await {
            Ok(reply) => {
                if let Ok(errors) = reply.get_array("writeErrors") {
                    log::warn!(
                        target: "huddle::store",
                        "raising lastSeq of {count} conversation(s): {} failed: {errors:?}",
                        errors.len()
                    );
                }
            }
            Err(e) => log::warn!(
                target: "huddle::store",
                "raising lastSeq of {count} conversation(s) failed (it lags until their next message): {e}"
            ),
        }
    }

    async fn message_by_client_id(
        &self,
        sender: &str,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        self.messages
            .find_one(doc! { "senderId": sender, "clientId": client_id })
            .await
            .ctx("finding a message by client id")?
            .map(Message::try_from)
            .transpose()
    }

    /// The highest seq stored in the conversation (0 when empty), through
    /// the `(conversationId, seq)` index.
    async fn highest_stored_seq(&self, conversation: &str) -> StoreResult<i64> {
        let last = self
            .messages
            .find_one(doc! { "conversationId": conversation })
            .sort(doc! { "seq": -1 })
            .await
            .ctx("reading the highest seq")?;
        Ok(last.map_or(0, |m| m.seq))
    }
}

/// The first failed insert of an ordered `insert` (its index in the batch
/// and error code), when the server reported one.
fn first_write_error(error: &MongoError) -> Option<(usize, i32)> {
    match error.kind.as_ref() {
        ErrorKind::InsertMany(InsertManyError {
            write_errors: Some(errors),
            write_concern_error: None,
            ..
        }) => errors.iter().map(|e| (e.index, e.code)).min_by_key(|e| e.0),
        _ => None,
    }
}
