//! The MongoDB document store, through the official `mongodb` driver; chosen
//! when `MONGODB_URI` is set.
//!
//! [`MongoStore::connect`] creates the collections and their indexes at
//! start-up (creating an index that exists is a no-op, so every node may do
//! it). One collection per record kind:
//!
//! | collection | `_id` | indexes |
//! |---|---|---|
//! | `users` | user id | unique `email` (partial: strings only), unique `username` |
//! | `refresh_tokens` | jti | `expiresAt` (the hourly purge) |
//! | `conversations` | conversation id | unique `directKey` (partial), `(memberIds, order desc)` for a user's list |
//! | `messages` | message id | unique `(conversationId, seq)` for history, unique `(senderId, clientId)` (partial) for idempotency |
//! | `read_markers` | driver-made | unique `(conversationId, userId)` |
//! | `counters` | counter name | — |
//! | `workspaces` | workspace id | — |
//! | `members` | driver-made | unique `(workspaceId, userId)`, `(userId, workspaceId)` |
//! | `projects` | project id | `(workspaceId, seq)` |
//! | `tasks` | task id | `(projectId, seq)`, `(workspaceId, updatedAtMs)` for the search catch-up |
//! | `comments` | comment id | `(taskId, seq)` |
//! | `notifications` | notification id | `(userId, seq desc)`, `(userId, read)` |
//! | `files` | file id | — |
//! | `download_tokens` | token hash | `expiresAtMs` (the hourly purge) |
//! | `upload_sessions` | driver-made | unique `(userId, uploadId)`, unique `(userId, slot)` (partial), `expiresAtMs` |
//!
//! The areas added later (workspaces, notifications, search, files, upload
//! sessions) each have their own file and module doc saying how their
//! concurrent rules hold; search in particular needs neither `$text` nor
//! Atlas `$search`: each node keeps a tantivy index fed from the `tasks`
//! collection (see `search.rs` for why and how it follows other nodes'
//! writes).
//!
//! Every rule that spans records holds **without multi-document
//! transactions** (a standalone `mongod` has none, and neither have some
//! wire-compatible servers): each rule is one unique index, and a duplicate-key
//! error is read as "someone else got there first".
//!
//! - unique email / username: the user is one insert; a duplicate key is
//!   `Conflict`, and nothing else was written.
//! - one conversation per `direct_key`: insert; on a duplicate key, return the
//!   one that won.
//! - take-once refresh tokens: `findOneAndDelete`, which only one caller can
//!   win.
//! - **gap-free `seq` with the idempotency check**: the message insert *is*
//!   the seq allocation. `append_message` reads the conversation's `lastSeq`
//!   (the highest seq known to be stored) and inserts the message with
//!   `seq = lastSeq + 1`. The unique `(conversationId, seq)` index lets exactly
//!   one writer own a seq; the unique `(senderId, clientId)` index lets
//!   exactly one message own a client id. On a duplicate key the writer looks
//!   the client id up: found means a retry (return it, `false`); otherwise
//!   another writer took that seq, so it reads the highest stored seq from the
//!   messages' index and tries the next one. After the insert (and the
//!   answer) the conversation's `lastSeq` is raised with `$max`; readers
//!   are told the higher of it and the newest message's seq (the same
//!   index), so a lagging `lastSeq` never hides a stored message. A seq is therefore taken only by a
//!   message that is stored, and only when the seq below it is stored: no
//!   seq is ever skipped, not by a losing retry, not by a failed insert, not
//!   by a crash. The alternative, reserving a seq with `$inc` and then
//!   inserting, loses the reserved seq whenever the insert fails (a duplicate
//!   client id, a dropped connection) and could only be made gap-free with a
//!   transaction. The price is a retry per lost race when many writers append
//!   to one conversation at once, and a `lastSeq` that may lag the messages
//!   by one after a crash between insert and `$max` — the next append repairs
//!   it, and no seq is reused because the insert is checked by the index.
//!   The appends themselves go in batches (`appender.rs`): one task per node
//!   remembers each conversation's last stored seq, numbers the queued
//!   messages from there, stores them with one ordered `insert` and raises
//!   the `lastSeq`s with one `update` command (after a lone append, up to
//!   100 ms later, for all that came alone meanwhile), so a batch costs two round
//!   trips whatever its size, and a node's appends to a conversation get
//!   seqs in the order they were queued.
//! - newest-first conversations: a `counters` document handed out with
//!   `findOneAndUpdate` + `$inc` gives each conversation a strict creation
//!   `order` (a gap there is harmless); the opaque cursor is the last order
//!   handed out.
//!
//! Records are stored as BSON documents with camelCase fields, times as BSON
//! dates (millisecond precision: the store truncates the times it makes, so
//! what it returns equals what it later reads back), seqs as 64-bit integers.
//! Which differences between MongoDB and the wire-compatible test servers the
//! code copes with is written in `the README, section "MongoDB document store"`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use huddle_actors::ids::{ConversationId, MessageId, UserId};
use huddle_actors::model::{Conversation, Message, MessageBody, RefreshTokenRecord, User};
use huddle_actors::store::{DocumentStore, StoreError, StoreResult};
use mongodb::bson::{self, doc, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

mod accounts;
mod appender;
mod chat;
mod files;
mod notifications;
mod search;
pub use search::SearchOptions;
mod uploads;
mod workspaces;

/// Users: `_id` is the user id.
pub(super) const USERS: &str = "users";
/// Refresh tokens: `_id` is the jti.
pub(super) const REFRESH_TOKENS: &str = "refresh_tokens";
/// Conversations: `_id` is the conversation id.
pub(super) const CONVERSATIONS: &str = "conversations";
/// Messages: `_id` is the message id.
pub(super) const MESSAGES: &str = "messages";
/// Read markers: one per (conversation, user).
pub(super) const READ_MARKERS: &str = "read_markers";
/// Named counters: `_id` is the counter name, `value` the last handed out.
pub(super) const COUNTERS: &str = "counters";
/// Workspaces: `_id` is the workspace id.
pub(super) const WORKSPACES: &str = "workspaces";
/// Memberships: one per (workspace, user).
pub(super) const MEMBERS: &str = "members";
/// Projects: `_id` is the project id.
pub(super) const PROJECTS: &str = "projects";
/// Tasks: `_id` is the task id; deleted ones stay (soft delete).
pub(super) const TASKS: &str = "tasks";
/// Comments: `_id` is the comment id.
pub(super) const COMMENTS: &str = "comments";
/// Notifications: `_id` is the notification id.
pub(super) const NOTIFICATIONS: &str = "notifications";
/// File records: `_id` is the file id.
pub(super) const FILES: &str = "files";
/// Download tokens: `_id` is the token's hash.
pub(super) const DOWNLOAD_TOKENS: &str = "download_tokens";
/// Upload sessions: one per (user, upload id).
pub(super) const UPLOAD_SESSIONS: &str = "upload_sessions";
/// Counter giving each conversation its creation order. A counter rather
/// than `createdAt`, so order is strict even within one millisecond and
/// across nodes.
pub(super) const CONVERSATION_ORDER: &str = "conversation_order";

/// How long start-up waits for a server before giving up.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The MongoDB document store. Cheap to clone; clones share the driver's
/// connection pool.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    pub(super) users: Collection<UserDoc>,
    pub(super) refresh_tokens: Collection<RefreshTokenDoc>,
    pub(super) conversations: Collection<ConversationDoc>,
    pub(super) messages: Collection<MessageDoc>,
    pub(super) read_markers: Collection<ReadMarkerDoc>,
    pub(super) counters: Collection<Document>,
    pub(super) workspaces: Collection<Document>,
    pub(super) members: Collection<Document>,
    pub(super) projects: Collection<Document>,
    pub(super) tasks: Collection<Document>,
    pub(super) comments: Collection<Document>,
    pub(super) notifications: Collection<Document>,
    pub(super) files: Collection<Document>,
    pub(super) download_tokens: Collection<Document>,
    pub(super) upload_sessions: Collection<Document>,
    /// This node's task search index, shared by the store's clones.
    search: std::sync::Arc<search::MongoSearch>,
    /// This node's message appends, in batches (shared by the clones).
    appender: appender::Appender,
}

impl std::fmt::Debug for MongoStore {
    // The URI may carry a password: only the database name is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("db", &self.db.name())
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Connects to the server(s) `uri` names, uses database `db`, and creates
    /// the collections' indexes and counters. Fails (rather than starting a
    /// node that cannot store anything) when no server answers within a few
    /// seconds or an index cannot be made. Search runs with the default
    /// [`SearchOptions`].
    pub async fn connect(uri: &str, db: &str) -> StoreResult<Self> {
        Self::connect_with(uri, db, SearchOptions::default()).await
    }

    /// [`MongoStore::connect`] with the given search options. Each call
    /// makes its own search index, as a node does; clones share it.
    pub async fn connect_with(uri: &str, db: &str, search: SearchOptions) -> StoreResult<Self> {
        let mut options = ClientOptions::parse(uri)
            .await
            .ctx("parsing the MongoDB URI")?;
        options.app_name.get_or_insert_with(|| "huddle".to_owned());
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        let client = Client::with_options(options).ctx("creating the MongoDB client")?;
        let search = std::sync::Arc::new(search::MongoSearch::new(search)?);
        let store = Self::with_database(client.database(db), search);
        store.ping().await?;
        store.create_indexes().await?;
        store.create_counters().await?;
        Ok(store)
    }

    fn with_database(db: Database, search: std::sync::Arc<search::MongoSearch>) -> Self {
        MongoStore {
            appender: appender::Appender::start(
                db.clone(),
                db.collection(MESSAGES),
                db.collection(CONVERSATIONS),
            ),
            search,
            users: db.collection(USERS),
            refresh_tokens: db.collection(REFRESH_TOKENS),
            conversations: db.collection(CONVERSATIONS),
            messages: db.collection(MESSAGES),
            read_markers: db.collection(READ_MARKERS),
            counters: db.collection(COUNTERS),
            workspaces: db.collection(WORKSPACES),
            members: db.collection(MEMBERS),
            projects: db.collection(PROJECTS),
            tasks: db.collection(TASKS),
            comments: db.collection(COMMENTS),
            notifications: db.collection(NOTIFICATIONS),
            files: db.collection(FILES),
            download_tokens: db.collection(DOWNLOAD_TOKENS),
            upload_sessions: db.collection(UPLOAD_SESSIONS),
            db,
        }
    }

    /// The database this store uses (tests reach past the store through it).
    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn create_indexes(&self) -> StoreResult<()> {
        let unique = |name: &str| IndexOptions::builder().unique(true).name(name.to_owned());
        // Partial, so that any number of records may lack the field (on
        // MongoDB a plain unique index treats every missing value as one null).
        let strings_only = |field: &str| doc! { field: { "$type": "string" } };

        self.users
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! { "email": 1 })
                    .options(
                        unique("email_unique")
                            .partial_filter_expression(strings_only("email"))
                            .build(),
                    )
                    .build(),
                IndexModel::builder()
                    .keys(doc! { "username": 1 })
                    .options(unique("username_unique").build())
                    .build(),
            ])
            .await
            .ctx("creating the users indexes")?;
        self.conversations
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! { "directKey": 1 })
                    .options(
                        unique("direct_key_unique")
                            .partial_filter_expression(strings_only("directKey"))
                            .build(),
                    )
                    .build(),
                IndexModel::builder()
                    .keys(doc! { "memberIds": 1, "order": -1 })
                    .options(
                        IndexOptions::builder()
                            .name("member_newest_first".to_owned())
                            .build(),
                    )
                    .build(),
            ])
            .await
            .ctx("creating the conversations indexes")?;
        self.messages
            .create_indexes([
                IndexModel::builder()
                    .keys(doc! { "conversationId": 1, "seq": 1 })
                    .options(unique("conversation_seq_unique").build())
                    .build(),
                IndexModel::builder()
                    .keys(doc! { "senderId": 1, "clientId": 1 })
                    .options(
                        unique("sender_client_id_unique")
                            .partial_filter_expression(strings_only("clientId"))
                            .build(),
                    )
                    .build(),
            ])
            .await
            .ctx("creating the messages indexes")?;
        self.read_markers
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "conversationId": 1, "userId": 1 })
                    .options(unique("conversation_user_unique").build())
                    .build(),
            )
            .await
            .ctx("creating the read_markers index")?;
        let plain = |name: &str| IndexOptions::builder().name(name.to_owned()).build();
        let index = |keys: Document, options: IndexOptions| {
            IndexModel::builder().keys(keys).options(options).build()
        };
        self.members
            .create_indexes([
                index(
                    doc! { "workspaceId": 1, "userId": 1 },
                    unique("workspace_user_unique").build(),
                ),
                index(
                    doc! { "userId": 1, "workspaceId": 1 },
                    plain("user_workspaces"),
                ),
            ])
            .await
            .ctx("creating the members indexes")?;
        self.projects
            .create_index(index(
                doc! { "workspaceId": 1, "seq": 1 },
                plain("workspace_projects"),
            ))
            .await
            .ctx("creating the projects index")?;
        self.tasks
            .create_indexes([
                index(doc! { "projectId": 1, "seq": 1 }, plain("project_tasks")),
                // What the search catch-up reads (see `search.rs`).
                index(
                    doc! { "workspaceId": 1, "updatedAtMs": 1 },
                    plain("workspace_updated"),
                ),
            ])
            .await
            .ctx("creating the tasks indexes")?;
        self.comments
            .create_index(index(
                doc! { "taskId": 1, "seq": 1 },
                plain("task_comments"),
            ))
            .await
            .ctx("creating the comments index")?;
        self.notifications
            .create_indexes([
                index(doc! { "userId": 1, "seq": -1 }, plain("user_newest_first")),
                index(doc! { "userId": 1, "read": 1 }, plain("user_unread")),
            ])
            .await
            .ctx("creating the notifications indexes")?;
        self.upload_sessions
            .create_indexes([
                index(
                    doc! { "userId": 1, "uploadId": 1 },
                    unique("user_upload_unique").build(),
                ),
                // A session in progress holds one of its user's numbered
                // slots; the index lets each slot be held once.
                index(
                    doc! { "userId": 1, "slot": 1 },
                    unique("user_slot_unique")
                        .partial_filter_expression(doc! { "slot": { "$type": "number" } })
                        .build(),
                ),
                index(doc! { "expiresAtMs": 1 }, plain("in_progress_expiry")),
            ])
            .await
            .ctx("creating the upload_sessions indexes")?;
        for name in [WORKSPACES, FILES] {
            self.db
                .create_collection(name)
                .await
                .or_else(ignore_namespace_exists)
                .ctx(format!("creating the {name} collection"))?;
        }
        // Tokens are found by `_id`; the expiry index serves the hourly purge.
        self.download_tokens
            .create_indexes([index(doc! { "expiresAtMs": 1 }, plain("token_expiry"))])
            .await
            .ctx("creating the download_tokens indexes")?;
        self.refresh_tokens
            .create_indexes([index(doc! { "expiresAt": 1 }, plain("token_expiry"))])
            .await
            .ctx("creating the refresh_tokens indexes")?;
        Ok(())
    }

    /// Makes the counter documents exist, so handing out a number is a plain
    /// `$inc` (an upsert racing another upsert can fail with a duplicate key
    /// on MongoDB; see [`MongoStore::next_counter`]).
    async fn create_counters(&self) -> StoreResult<()> {
        match self
            .counters
            .insert_one(doc! { "_id": CONVERSATION_ORDER, "value": 0_i64 })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(StoreError::backend("creating the counters", e)),
        }
    }

    /// Hands out the next value of counter `name` (1, 2, ...), atomically.
    pub(super) async fn next_counter(&self, name: &str) -> StoreResult<i64> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self
                .counters
                .find_one_and_update(doc! { "_id": name }, doc! { "$inc": { "value": 1_i64 } })
                .upsert(true)
                .return_document(mongodb::options::ReturnDocument::After)
                .await;
            match result {
                Ok(Some(counter)) => {
                    return counter
                        .get_i64("value")
                        .or_else(|_| counter.get_i32("value").map(i64::from))
                        .ctx(format!("reading counter {name}"));
                }
                Ok(None) => {
                    return Err(StoreError::Backend {
                        message: format!("counter {name}: the upsert returned no document"),
                        source: None,
                    })
                }
                // Two upserts of a missing counter: one inserted it, so the
                // next attempt is a plain update.
                Err(e) if is_duplicate_key(&e) && attempts < 3 => continue,
                Err(e) => return Err(StoreError::backend(format!("counter {name}"), e)),
            }
        }
    }
}

#[async_trait]
impl DocumentStore for MongoStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .ctx("pinging MongoDB")?;
        Ok(())
    }
}

// ---- documents ----

/// A user as stored. Absent email and password hash are left out rather
/// than stored as null, so the partial unique index skips them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserDoc {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub name: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub created_at: bson::DateTime,
}

impl From<&User> for UserDoc {
    fn from(user: &User) -> Self {
        UserDoc {
            id: user.id.0.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            username: user.username.clone(),
            password_hash: user.password_hash.clone(),
            created_at: to_bson_time(user.created_at),
        }
    }
}

impl From<UserDoc> for User {
    fn from(doc: UserDoc) -> Self {
        User {
            id: UserId(doc.id),
            email: doc.email,
            name: doc.name,
            username: doc.username,
            password_hash: doc.password_hash,
            created_at: from_bson_time(doc.created_at),
        }
    }
}

/// A refresh token's record as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RefreshTokenDoc {
    #[serde(rename = "_id")]
    pub jti: String,
    pub user_id: String,
    pub expires_at: bson::DateTime,
}

impl From<&RefreshTokenRecord> for RefreshTokenDoc {
    fn from(record: &RefreshTokenRecord) -> Self {
        RefreshTokenDoc {
            jti: record.jti.clone(),
            user_id: record.user_id.0.clone(),
            expires_at: to_bson_time(record.expires_at),
        }
    }
}

impl From<RefreshTokenDoc> for RefreshTokenRecord {
    fn from(doc: RefreshTokenDoc) -> Self {
        RefreshTokenRecord {
            jti: doc.jti,
            user_id: UserId(doc.user_id),
            expires_at: from_bson_time(doc.expires_at),
        }
    }
}

/// A conversation as stored, with its creation `order` for listing.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConversationDoc {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub member_ids: Vec<String>,
    pub created_by: String,
    pub created_at: bson::DateTime,
    /// Highest seq stored; raised with `$max` after each message insert.
    pub last_seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_key: Option<String>,
    /// Strict creation order, from the [`CONVERSATION_ORDER`] counter.
    pub order: i64,
}

impl TryFrom<ConversationDoc> for Conversation {
    type Error = StoreError;

    fn try_from(doc: ConversationDoc) -> StoreResult<Self> {
        Ok(Conversation {
            last_seq: from_stored_seq(doc.last_seq)?,
            id: ConversationId(doc.id),
            workspace_id: doc.workspace_id,
            title: doc.title,
            member_ids: doc.member_ids.into_iter().map(UserId).collect(),
            created_by: UserId(doc.created_by),
            created_at: from_bson_time(doc.created_at),
            direct_key: doc.direct_key,
        })
    }
}

/// A message as stored. The body keeps the model's own shape (`kind` plus
/// its fields), so stored messages read naturally in the shell.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MessageDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub body: MessageBody,
    pub created_at: bson::DateTime,
}

impl MessageDoc {
    pub(super) fn from_message(message: &Message) -> StoreResult<Self> {
        Ok(MessageDoc {
            id: message.id.0.clone(),
            conversation_id: message.conversation_id.0.clone(),
            seq: to_stored_seq(message.seq)?,
            sender_id: message.sender_id.0.clone(),
            client_id: message.client_id.clone(),
            body: message.body.clone(),
            created_at: to_bson_time(message.created_at),
        })
    }
}

impl TryFrom<MessageDoc> for Message {
    type Error = StoreError;

    fn try_from(doc: MessageDoc) -> StoreResult<Self> {
        Ok(Message {
            seq: from_stored_seq(doc.seq)?,
            id: MessageId(doc.id),
            conversation_id: ConversationId(doc.conversation_id),
            sender_id: UserId(doc.sender_id),
            client_id: doc.client_id,
            body: doc.body,
            created_at: from_bson_time(doc.created_at),
        })
    }
}

/// The highest seq a user has read in a conversation.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReadMarkerDoc {
    pub conversation_id: String,
    pub user_id: String,
    pub seq: i64,
}

// ---- helpers ----

/// Now, truncated to what a BSON date keeps (milliseconds), so a record the
/// store returns equals the same record read back later.
pub(super) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A time as a BSON date (milliseconds since the epoch).
pub(super) fn to_bson_time(time: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(time.timestamp_millis())
}

/// A BSON date back as a UTC time. Dates outside chrono's range (years past
/// ±262,000) cannot come from this store; they clamp rather than fail.
fn from_bson_time(time: bson::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(
        if time.timestamp_millis() < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        },
    )
}

/// A seq as BSON stores it (a signed 64-bit integer).
pub(super) fn to_stored_seq(seq: u64) -> StoreResult<i64> {
    i64::try_from(seq).map_err(|e| StoreError::backend(format!("seq {seq} is out of range"), e))
}

/// A stored seq back as the model's.
pub(super) fn from_stored_seq(seq: i64) -> StoreResult<u64> {
    u64::try_from(seq).map_err(|e| StoreError::backend(format!("stored seq {seq} is negative"), e))
}

/// A conversation document's `lastSeq` (0 when missing; servers may store
/// small numbers as 32-bit integers).
pub(super) fn stored_last_seq(doc: &Document) -> i64 {
    int_field(doc, "lastSeq").unwrap_or(0)
}

/// A message document's `seq`, when it has a valid one.
pub(super) fn stored_seq(doc: &Document) -> Option<u64> {
    int_field(doc, "seq").and_then(|n| u64::try_from(n).ok())
}

/// An integer field however the server stored it (64 or 32 bits).
fn int_field(doc: &Document, field: &str) -> Option<i64> {
    match doc.get(field) {
        Some(bson::Bson::Int64(n)) => Some(*n),
        Some(bson::Bson::Int32(n)) => Some(i64::from(*n)),
        _ => None,
    }
}

/// MongoDB's error code for a duplicate key in a unique index.
pub(super) const DUPLICATE_KEY: i32 = 11000;

/// Whether the driver error is a duplicate key (E11000) from a unique index,
/// however the command reported it (write error, command error, bulk write).
pub(super) fn is_duplicate_key(error: &MongoError) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .iter()
            .flatten()
            .any(|e| e.code == DUPLICATE_KEY),
        _ => false,
    }
}

/// `create_collection` fails when the collection exists (NamespaceExists,
/// code 48); at start-up that is the normal case.
fn ignore_namespace_exists(error: MongoError) -> Result<(), MongoError> {
    const NAMESPACE_EXISTS: i32 = 48;
    match error.kind.as_ref() {
        ErrorKind::Command(e) if e.code == NAMESPACE_EXISTS => Ok(()),
        _ => Err(error),
    }
}

/// A model record as a BSON document with `_id` set. Records of the newer
/// areas keep the model's own serde shape (camelCase; times as RFC 3339
/// strings, which round-trip exactly); a field the store must compare as a
/// time gets a BSON date beside it (`expiresAtMs`).
pub(super) fn to_doc<T: Serialize>(record: &T, id: &str) -> StoreResult<Document> {
    let mut document = bson::to_document(record).ctx("encoding a record")?;
    document.insert("_id", id);
    Ok(document)
}

/// A stored document back as its model record (extra fields are ignored).
pub(super) fn from_doc<T: serde::de::DeserializeOwned>(mut document: Document) -> StoreResult<T> {
    // nx-27017 stores a boolean written by `$set` as the integer 1 (see
    // the README, section "MongoDB document store"); the flags the store sets are read back as booleans.
    for flag in ["read", "spent"] {
        if let Some(v) = document.get(flag) {
            let fixed = match v {
                bson::Bson::Int32(i) => Some(*i != 0),
                bson::Bson::Int64(i) => Some(*i != 0),
                _ => None,
            };
            if let Some(b) = fixed {
                document.insert(flag, b);
            }
        }
    }
    bson::from_document(document).ctx("decoding a record")
}

/// Matches a task that is not deleted (`deletedAt` null or missing). Written
/// `{$in: [null]}` rather than `null`: nx-27017 matches nothing when a
/// `field: null` condition sits beside `$or` (see the README, section "MongoDB document store").
pub(super) fn not_deleted() -> Document {
    doc! { "$in": [bson::Bson::Null] }
}

/// Parses a `seq` cursor; an unparsable one is `NotFound`, as in the
/// embedded store.
pub(super) fn seq_cursor(cursor: Option<&str>) -> StoreResult<Option<i64>> {
    cursor
        .map(|c| {
            c.parse::<u64>()
                .ok()
                .and_then(|v| i64::try_from(v).ok())
                .ok_or_else(|| StoreError::NotFound(format!("cursor {c:?} is not valid")))
        })
        .transpose()
}

/// The stored `seq` of a document (64- or 32-bit integer).
pub(super) fn seq_of(document: &Document) -> StoreResult<i64> {
    document
        .get_i64("seq")
        .or_else(|_| document.get_i32("seq").map(i64::from))
        .ctx("reading a record's seq")
}

/// One page of records ordered by `seq` (oldest first, or newest first),
/// after the `seq` cursor; the next cursor is the last item's `seq` when
/// more follow.
pub(super) async fn seq_page<T: serde::de::DeserializeOwned>(
    collection: &Collection<Document>,
    mut filter: Document,
    cursor: Option<&str>,
    limit: usize,
    newest_first: bool,
) -> StoreResult<huddle_actors::model::Page<T>> {
    use futures_util::TryStreamExt;
    let cursor = seq_cursor(cursor)?;
    if limit == 0 {
        return Ok(huddle_actors::model::Page {
            items: Vec::new(),
            next_cursor: None,
        });
    }
    if let Some(c) = cursor {
        let op = if newest_first { "$lt" } else { "$gt" };
        filter.insert("seq", doc! { op: c });
    }
    let docs: Vec<Document> = collection
        .find(filter)
        .sort(doc! { "seq": if newest_first { -1 } else { 1 } })
        .limit(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1)
        .await
        .ctx("listing records")?
        .try_collect()
        .await
        .ctx("reading records")?;
    let more = docs.len() > limit;
    let mut items = Vec::with_capacity(limit.min(docs.len()));
    let mut last = None;
    for document in docs.into_iter().take(limit) {
        last = Some(seq_of(&document)?);
        items.push(from_doc(document)?);
    }
    Ok(huddle_actors::model::Page {
        items,
        next_cursor: if more {
            last.map(|s| s.to_string())
        } else {
            None
        },
    })
}

/// Attaches context to a driver (or BSON) error, keeping it as the source.
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
