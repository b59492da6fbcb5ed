//! The embedded document store: one `redb` database file, `{dir}/huddle.redb`.
//!
//! It is the default backend, so `cargo run` keeps users, conversations and
//! messages across restarts with no other process running. Records are stored
//! as JSON bytes in a table keyed by id; separate index tables make every
//! lookup a point read or a bounded range scan (history is a range over
//! `(conversation, seq)`, never a scan of all messages). Every rule that spans
//! several records — unique email and username, gap-free `seq` together with
//! the idempotency check, one conversation per `direct_key`, take-once
//! refresh tokens — is checked and written inside a single redb write
//! transaction, and redb runs one writer at a time, so they hold under
//! concurrency. redb is blocking, so every call runs on the blocking thread
//! pool and async callers never stall the reactor.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use huddle_actors::ids::{new_id, ConversationId, MessageId, UserId};
use huddle_actors::model::{
    Conversation, Message, NewConversation, NewMessage, Page, RefreshTokenRecord, User,
};
use huddle_actors::store::{DocumentStore, StoreError, StoreResult};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// File name of the database inside the data directory.
pub const FILE_NAME: &str = "huddle.redb";

/// user id → `User` (JSON).
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// lower-cased email → user id (unique index).
const USERS_BY_EMAIL: TableDefinition<&str, &str> = TableDefinition::new("users_by_email");
/// lower-cased username → user id (unique index).
const USERS_BY_USERNAME: TableDefinition<&str, &str> = TableDefinition::new("users_by_username");
/// jti → `RefreshTokenRecord` (JSON).
const REFRESH_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("refresh_tokens");
/// conversation id → `Conversation` (JSON). Its `last_seq` field is not
/// maintained here but in [`CONVERSATION_LAST_SEQ`], so appending a message
/// does not rewrite the whole record (member list included).
const CONVERSATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("conversations");
/// conversation id → highest `seq` given out.
const CONVERSATION_LAST_SEQ: TableDefinition<&str, u64> =
    TableDefinition::new("conversation_last_seq");
/// direct key (`"a|b"`) → conversation id (unique index).
const CONVERSATIONS_BY_DIRECT_KEY: TableDefinition<&str, &str> =
    TableDefinition::new("conversations_by_direct_key");
/// (user id, creation order) → conversation id: a user's conversations,
/// oldest to newest, so a page is a reverse range scan.
const USER_CONVERSATIONS: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("user_conversations");
/// (conversation id, seq) → `Message` (JSON).
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// (sender id, client id) → (conversation id, seq): the idempotency index.
const MESSAGES_BY_CLIENT_ID: TableDefinition<(&str, &str), (&str, u64)> =
    TableDefinition::new("messages_by_client_id");
/// (conversation id, user id) → highest seq read.
const READ_MARKERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("read_markers");
/// Named counters; see [`CONVERSATION_ORDER`].
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Counter giving each conversation its creation order. A counter rather
/// than `created_at`, so order is strict even within one clock tick.
const CONVERSATION_ORDER: &str = "conversation_order";

/// The embedded, on-disk document store. Cheap to clone; clones share the
/// database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, creating the directory and
    /// every table. Blocking: call it at startup or on a blocking thread.
    /// Only one `EmbeddedStore` per file may be open at a time.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).ctx(format!("creating data directory {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).ctx(format!("opening {}", path.display()))?;
        write_txn(&db, "creating tables", |txn| {
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
            Ok(())
        })?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` against the database on the blocking thread pool.
    async fn blocking<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
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
    async fn read<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
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

    /// Runs `f` in one write transaction on the blocking thread pool;
    /// commits when `f` succeeds, aborts when it fails.
    async fn write<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.blocking(what, move |db| write_txn(db, what, f)).await
    }
}

/// Runs `f` in one write transaction: committed when `f` succeeds, aborted
/// (nothing written) when it fails.
fn write_txn<T>(
    db: &Database,
    what: &str,
    f: impl FnOnce(&WriteTransaction) -> StoreResult<T>,
) -> StoreResult<T> {
    let txn = db.begin_write().ctx(what)?;
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
trait Ctx<T> {
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

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).ctx("encoding record")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).ctx("decoding stored record")
}

/// Reads a JSON record by string key from any readable table.
fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> StoreResult<Option<T>> {
    match table.get(key).ctx("reading record")? {
        Some(guard) => decode(guard.value()).map(Some),
        None => Ok(None),
    }
}

/// Reads the id stored under `key` in a string → string index table.
fn get_id(
    table: &impl ReadableTable<&'static str, &'static str>,
    key: &str,
) -> StoreResult<Option<String>> {
    Ok(table
        .get(key)
        .ctx("reading index")?
        .map(|guard| guard.value().to_owned()))
}

/// Loads a conversation with its current `last_seq` filled in.
fn load_conversation(
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
fn user_by_index(
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
fn insert_user(txn: &WriteTransaction, user: &User) -> StoreResult<()> {
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
            Ok(())
        })
        .await
    }

    async fn create_user(&self, user: User) -> StoreResult<User> {
        self.write("create_user", move |txn| {
            insert_user(txn, &user)?;
            Ok(user)
        })
        .await
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
        let id = id.clone();
        self.read("user_by_id", move |txn| {
            let users = txn.open_table(USERS).ctx("open users")?;
            get_json(&users, id.as_str())
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_owned();
        self.read("user_by_email", move |txn| {
            user_by_index(txn, USERS_BY_EMAIL, &email)
        })
        .await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let username = username.to_owned();
        self.read("user_by_username", move |txn| {
            user_by_index(txn, USERS_BY_USERNAME, &username)
        })
        .await
    }

    async fn ensure_user(&self, user: User) -> StoreResult<User> {
        // Fast path: nearly every call is for a user we already know, and a
        // read needs no writer lock and no fsync.
        if let Some(existing) = self.user_by_id(&user.id).await? {
            return Ok(existing);
        }
        self.write("ensure_user", move |txn| {
            let mut user = user;
            {
                let users = txn.open_table(USERS).ctx("open users")?;
                // Someone may have created it since the read above.
                if let Some(existing) = get_json::<User>(&users, user.id.as_str())? {
                    return Ok(existing);
                }
                let by_username = txn
                    .open_table(USERS_BY_USERNAME)
                    .ctx("open users_by_username")?;
                let base = user.username.clone();
                let mut n = 1u64;
                while by_username
                    .get(user.username.as_str())
                    .ctx("reading username")?
                    .is_some()
                {
                    n += 1;
                    user.username = format!("{base}-{n}");
                }
            }
            insert_user(txn, &user)?;
            Ok(user)
        })
        .await
    }

    async fn put_refresh_token(&self, record: RefreshTokenRecord) -> StoreResult<()> {
        self.write("put_refresh_token", move |txn| {
            let mut tokens = txn.open_table(REFRESH_TOKENS).ctx("open refresh_tokens")?;
            tokens
                .insert(record.jti.as_str(), encode(&record)?.as_slice())
                .ctx("writing refresh token")?;
            Ok(())
        })
        .await
    }

    async fn take_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let jti = jti.to_owned();
        self.write("take_refresh_token", move |txn| {
            let mut tokens = txn.open_table(REFRESH_TOKENS).ctx("open refresh_tokens")?;
            let removed = tokens.remove(jti.as_str()).ctx("removing refresh token")?;
            removed.map(|guard| decode(guard.value())).transpose()
        })
        .await
    }

    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)> {
        self.write("create_conversation", move |txn| {
            let mut conversations = txn.open_table(CONVERSATIONS).ctx("open conversations")?;
            let mut last_seqs = txn
                .open_table(CONVERSATION_LAST_SEQ)
                .ctx("open conversation_last_seq")?;
            let mut by_direct_key = txn
                .open_table(CONVERSATIONS_BY_DIRECT_KEY)
                .ctx("open conversations_by_direct_key")?;
            if let Some(key) = &new.direct_key {
                if let Some(id) = get_id(&by_direct_key, key)? {
                    let existing =
                        load_conversation(&conversations, &last_seqs, &id)?.ok_or_else(|| {
                            StoreError::NotFound(format!(
                                "conversation {id} named by direct key {key} is missing"
                            ))
                        })?;
                    return Ok((existing, false));
                }
            }

            let mut counters = txn.open_table(COUNTERS).ctx("open counters")?;
            let order = counters
                .get(CONVERSATION_ORDER)
                .ctx("reading counter")?
                .map_or(0, |guard| guard.value())
                + 1;
            counters
                .insert(CONVERSATION_ORDER, order)
                .ctx("writing counter")?;

            let mut member_ids = new.member_ids;
            let mut seen = std::collections::HashSet::new();
            member_ids.retain(|id| seen.insert(id.clone()));
            let conversation = Conversation {
                id: ConversationId(new_id()),
                workspace_id: new.workspace_id,
                title: new.title,
                member_ids,
                created_by: new.created_by,
                created_at: Utc::now(),
                last_seq: 0,
                direct_key: new.direct_key,
            };
            let id = conversation.id.as_str();
            conversations
                .insert(id, encode(&conversation)?.as_slice())
                .ctx("writing conversation")?;
            // The seq row also marks the conversation as existing for appends.
            last_seqs.insert(id, 0).ctx("writing last seq")?;
            if let Some(key) = &conversation.direct_key {
                by_direct_key
                    .insert(key.as_str(), id)
                    .ctx("writing direct key")?;
            }
            let mut by_user = txn
                .open_table(USER_CONVERSATIONS)
                .ctx("open user_conversations")?;
            for member in &conversation.member_ids {
                by_user
                    .insert((member.as_str(), order), id)
                    .ctx("writing membership")?;
            }
            Ok((conversation, true))
        })
        .await
    }

    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<Conversation>> {
        let id = id.clone();
        self.read("conversation", move |txn| {
            let conversations = txn.open_table(CONVERSATIONS).ctx("open conversations")?;
            let last_seqs = txn
                .open_table(CONVERSATION_LAST_SEQ)
                .ctx("open conversation_last_seq")?;
            load_conversation(&conversations, &last_seqs, id.as_str())
        })
        .await
    }

    async fn conversations_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Conversation>> {
        // The cursor is the creation order of the last conversation handed
        // out; the next page starts strictly below it.
        let below = match cursor {
            None => None,
            Some(c) => Some(c.parse::<u64>().map_err(|_| {
                StoreError::NotFound(format!("conversation cursor {c:?} is not valid"))
            })?),
        };
        let user = user.clone();
        self.read("conversations_for_user", move |txn| {
            let mut page = Page {
                items: Vec::new(),
                next_cursor: None,
            };
            if limit == 0 {
                return Ok(page);
            }
            let by_user = txn
                .open_table(USER_CONVERSATIONS)
                .ctx("open user_conversations")?;
            let conversations = txn.open_table(CONVERSATIONS).ctx("open conversations")?;
            let last_seqs = txn
                .open_table(CONVERSATION_LAST_SEQ)
                .ctx("open conversation_last_seq")?;
            let user = user.as_str();
            let range = match below {
                Some(below) => by_user.range((user, 0u64)..(user, below)),
                None => by_user.range((user, 0u64)..=(user, u64::MAX)),
            }
            .ctx("scanning user_conversations")?;
            let mut last_order = 0;
            // One more than asked, to know whether another page exists.
            for entry in range.rev().take(limit + 1) {
                let (key, id) = entry.ctx("reading user_conversations")?;
                if page.items.len() == limit {
                    page.next_cursor = Some(last_order.to_string());
                    break;
                }
                last_order = key.value().1;
                let id = id.value();
                let conversation =
                    load_conversation(&conversations, &last_seqs, id)?.ok_or_else(|| {
                        StoreError::NotFound(format!("indexed conversation {id} is missing"))
                    })?;
                page.items.push(conversation);
            }
            Ok(page)
        })
        .await
    }

    async fn append_message(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        self.write("append_message", move |txn| {
            let conversation = new.conversation_id.as_str();
            let mut last_seqs = txn
                .open_table(CONVERSATION_LAST_SEQ)
                .ctx("open conversation_last_seq")?;
            let last_seq = last_seqs
                .get(conversation)
                .ctx("reading last seq")?
                .map(|guard| guard.value());
            let Some(last_seq) = last_seq else {
                return Err(StoreError::NotFound(format!("conversation {conversation}")));
            };
            let mut messages = txn.open_table(MESSAGES).ctx("open messages")?;
            let mut by_client_id = txn
                .open_table(MESSAGES_BY_CLIENT_ID)
                .ctx("open messages_by_client_id")?;
            let sender = new.sender_id.as_str();

            if let Some(client_id) = &new.client_id {
                let original = by_client_id
                    .get((sender, client_id.as_str()))
                    .ctx("reading idempotency index")?
                    .map(|guard| {
                        let (conversation, seq) = guard.value();
                        (conversation.to_owned(), seq)
                    });
                if let Some((conversation, seq)) = original {
                    let guard = messages
                        .get((conversation.as_str(), seq))
                        .ctx("reading message")?
                        .ok_or_else(|| {
                            StoreError::NotFound(format!(
                                "indexed message {conversation}#{seq} is missing"
                            ))
                        })?;
                    return Ok((decode(guard.value())?, false));
                }
            }

            let seq = last_seq + 1;
            let message = Message {
                id: MessageId(new_id()),
                conversation_id: new.conversation_id.clone(),
                seq,
                sender_id: new.sender_id.clone(),
                client_id: new.client_id.clone(),
                body: new.body,
                created_at: Utc::now(),
            };
            messages
                .insert((conversation, seq), encode(&message)?.as_slice())
                .ctx("writing message")?;
            last_seqs
                .insert(conversation, seq)
                .ctx("writing last seq")?;
            if let Some(client_id) = &new.client_id {
                by_client_id
                    .insert((sender, client_id.as_str()), (conversation, seq))
                    .ctx("writing idempotency index")?;
            }
            Ok((message, true))
        })
        .await
    }

    async fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let conversation = conversation.clone();
        self.read("messages_before", move |txn| {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let messages = txn.open_table(MESSAGES).ctx("open messages")?;
            let conversation = conversation.as_str();
            let range = match before {
                Some(before) => messages.range((conversation, 0u64)..(conversation, before)),
                None => messages.range((conversation, 0u64)..=(conversation, u64::MAX)),
            }
            .ctx("scanning messages")?;
            // Walk back from the bound and stop after `limit`: the cost is
            // the page, not the history.
            let mut page = Vec::with_capacity(limit.min(256));
            for entry in range.rev().take(limit) {
                let (_, value) = entry.ctx("reading message")?;
                page.push(decode::<Message>(value.value())?);
            }
            page.reverse();
            Ok(page)
        })
        .await
    }

    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        seq: u64,
    ) -> StoreResult<()> {
        let conversation = conversation.clone();
        let user = user.clone();
        self.write("mark_read", move |txn| {
            let mut markers = txn.open_table(READ_MARKERS).ctx("open read_markers")?;
            let key = (conversation.as_str(), user.as_str());
            let current = markers
                .get(key)
                .ctx("reading read marker")?
                .map_or(0, |guard| guard.value());
            if seq > current {
                markers.insert(key, seq).ctx("writing read marker")?;
            }
            Ok(())
        })
        .await
    }

    async fn read_marker(&self, conversation: &ConversationId, user: &UserId) -> StoreResult<u64> {
        let conversation = conversation.clone();
        let user = user.clone();
        self.read("read_marker", move |txn| {
            let markers = txn.open_table(READ_MARKERS).ctx("open read_markers")?;
            Ok(markers
                .get((conversation.as_str(), user.as_str()))
                .ctx("reading read marker")?
                .map_or(0, |guard| guard.value()))
        })
        .await
    }
}
