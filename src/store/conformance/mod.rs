//! The document store conformance suite: the behaviour every
//! [`DocumentStore`] backend must show, written once against the trait.
//!
//! It lives in the library (not under `tests/`) so each backend's test file
//! can run it: `tests/store_conformance.rs` runs it against the embedded
//! store, and a MongoDB backend's tests will run the very same cases. Each
//! case is a public `case_*` function, so a test file can give every case its
//! own `#[test]`; [`run_all`] runs them all in turn. Every case makes its own
//! random ids, emails and usernames, so cases can share one store (and one
//! database) without seeing each other's records. Cases panic with a message
//! on the first broken expectation, as test assertions do.

mod files;
pub use files::*;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use futures_util::future::join_all;
use huddle_actors::ids::{new_id, ConversationId, UserId};
use huddle_actors::model::{
    Conversation, Message, MessageBody, NewConversation, NewMessage, RefreshTokenRecord, User,
};
use huddle_actors::store::{DocumentStore, StoreError};

mod workspaces;
pub use workspaces::*;

/// Every case of the suite, in one list: `for_each_conformance_case!(m, args)`
/// expands to `m!(args; case_ping, case_create_user_and_lookups, ...)`, so
/// each backend's test file (and [`run_all`]) covers a new case by itself.
/// The upload-session cases come from [`for_each_upload_session_case!`](crate::for_each_upload_session_case), the
/// one list of them, spliced in at the end.
#[macro_export]
macro_rules! for_each_conformance_case {
    ($m:ident $(, $($args:tt)*)?) => {
        $crate::for_each_upload_session_case!(@after $m [$($($args)*)?];
            case_ping,
            case_create_user_and_lookups,
            case_create_user_duplicate_email_conflicts,
            case_create_user_duplicate_username_conflicts,
            case_users_without_email_do_not_conflict,
            case_ensure_user_creates_once_and_never_overwrites,
            case_ensure_user_picks_free_username,
            case_refresh_token_is_taken_once,
            case_refresh_token_unknown_jti,
            case_create_conversation,
            case_direct_key_returns_existing_conversation,
            case_conversation_unknown,
            case_conversations_for_user_pages_newest_first,
            case_conversations_for_user_only_members,
            case_append_message_gap_free_seq,
            case_append_message_idempotent_retry,
            case_append_message_client_id_is_per_sender,
            case_append_message_unknown_conversation,
            case_messages_before_semantics,
            case_file_message_round_trip,
            case_mark_read_keeps_maximum,
            case_read_marker_defaults_to_zero,
            case_concurrent_appends_are_gap_free,
            case_concurrent_idempotent_retries_create_once,
            case_concurrent_take_refresh_token_once,
            case_concurrent_direct_key_creates_once,
            case_concurrent_ensure_user_creates_once,
            case_file_create_read_and_grants,
            case_download_tokens,
            case_expired_tokens_are_purged,
            case_concurrent_one_time_token_used_once,
            case_create_workspace_makes_owner,
            case_workspaces_for_user_pages,
            case_add_member_and_list,
            case_member_roles_and_owner_rules,
            case_remove_member,
            case_projects,
            case_create_and_read_task,
            case_update_task_patch,
            case_delete_task_is_soft,
            case_task_filters_and_pages,
            case_comments,
            case_notifications,
            case_mark_all_read_marks_many,
            case_notifications_beyond_kept_go,
            case_completed_upload_sessions_are_purged,
            case_search_tasks,
            case_search_short_words_are_exact,
            case_search_pages,
            case_attach_file_to_task,
            case_concurrent_attachments_respect_max,
        );
    };
}

/// The cases that take two handles on one database, `(writer, reader)`:
/// what one node writes, another must see. Expands like
/// [`for_each_conformance_case!`]. A backend with one handle per database
/// (the embedded store) passes the same handle twice.
#[macro_export]
macro_rules! for_each_shared_database_case {
    ($m:ident $(, $($args:tt)*)?) => {
        $m!($($($args)*)?;
            case_search_sees_writes_of_another_handle,
            case_two_handles_append_in_order_without_gaps,
        );
    };
}

/// The cases of the [`UploadSessionStore`](huddle_actors::store::UploadSessionStore)
/// port alone: they take `&dyn UploadSessionStore` and need no user records,
/// so a store that implements only that port (the Redis one) runs them with
/// `for_each_upload_session_case!(m, args)`, which expands to
/// `m!(args; case_upload_session_lifecycle, ...)`. A document store runs them
/// as part of [`for_each_conformance_case!`].
#[macro_export]
macro_rules! for_each_upload_session_case {
    (@after $m:ident [$($args:tt)*]; $($before:ident),* $(,)?) => {
        $m!($($args)*; $($before,)*
            case_upload_session_lifecycle,
            case_upload_sessions_in_progress_limit,
            case_expired_upload_sessions,
            case_concurrent_upload_session_limit,
        );
    };
    ($m:ident $(, $($args:tt)*)?) => {
        $crate::for_each_upload_session_case!(@after $m [$($($args)*)?];);
    };
}

macro_rules! run_cases {
    ($s:ident; $($case:ident),* $(,)?) => {
        $( $case($s).await; )*
    };
}

macro_rules! run_shared_database_cases {
    ($s:ident; $($case:ident),* $(,)?) => {
        $( $case($s, $s).await; )*
    };
}

/// Runs every case, one after the other, against one shared store (the
/// two-handle cases with that store as both handles).
pub async fn run_all(store: Arc<dyn DocumentStore>) {
    let s = &*store;
    for_each_conformance_case!(run_cases, s);
    for_each_shared_database_case!(run_shared_database_cases, s);
}

/// Runs every upload-session case, one after the other, against one store
/// of that port alone.
pub async fn run_upload_session_cases(store: &dyn huddle_actors::store::UploadSessionStore) {
    let s = store;
    for_each_upload_session_case!(run_cases, s);
}

// ---- fixtures ----

/// A fresh user with unique id, email and username. Times are whole
/// milliseconds so backends that store millisecond precision round-trip.
fn new_user(tag: &str) -> User {
    let id = new_id();
    User {
        id: UserId(id.clone()),
        email: Some(format!("{tag}-{id}@example.test")),
        name: format!("{tag} {}", &id[..6]),
        username: format!("{tag}{id}"),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        created_at: Utc::now().trunc_subsecs(3),
    }
}

pub(crate) async fn created_user(store: &dyn DocumentStore, tag: &str) -> User {
    store
        .create_user(new_user(tag))
        .await
        .expect("create_user failed")
}

fn group(members: &[&User], title: &str) -> NewConversation {
    NewConversation {
        workspace_id: None,
        title: Some(title.to_owned()),
        member_ids: members.iter().map(|u| u.id.clone()).collect(),
        created_by: members[0].id.clone(),
        direct_key: None,
    }
}

fn direct(a: &User, b: &User) -> NewConversation {
    let mut ids = [a.id.as_str(), b.id.as_str()];
    ids.sort_unstable();
    NewConversation {
        workspace_id: None,
        title: None,
        member_ids: vec![a.id.clone(), b.id.clone()],
        created_by: a.id.clone(),
        direct_key: Some(ids.join("|")),
    }
}

async fn new_conversation(store: &dyn DocumentStore, members: &[&User]) -> Conversation {
    let (conversation, created) = store
        .create_conversation(group(members, "test"))
        .await
        .expect("create_conversation failed");
    assert!(
        created,
        "a conversation without direct_key is always created"
    );
    conversation
}

fn text(s: &str) -> MessageBody {
    MessageBody::Text { text: s.to_owned() }
}

fn new_message(
    conversation: &Conversation,
    sender: &User,
    client_id: Option<&str>,
    body: MessageBody,
) -> NewMessage {
    NewMessage {
        conversation_id: conversation.id.clone(),
        sender_id: sender.id.clone(),
        client_id: client_id.map(str::to_owned),
        body,
    }
}

async fn append(
    store: &dyn DocumentStore,
    conversation: &Conversation,
    sender: &User,
    body: &str,
) -> Message {
    let (message, created) = store
        .append_message(new_message(conversation, sender, None, text(body)))
        .await
        .expect("append_message failed");
    assert!(created, "a message without client_id is always created");
    message
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// The conversation's last seq, read both ways (they must agree).
async fn last_seq(store: &dyn DocumentStore, id: &ConversationId) -> u64 {
    let whole = store
        .conversation(id)
        .await
        .expect("conversation failed")
        .expect("conversation missing")
        .last_seq;
    let alone = store.last_seq(id).await.expect("last_seq failed");
    assert_eq!(alone, Some(whole), "last_seq agrees with conversation");
    whole
}

// ---- health ----

/// `ping` succeeds on a working store.
pub async fn case_ping(store: &dyn DocumentStore) {
    store.ping().await.expect("ping failed");
}

// ---- users ----

/// A created user is returned as given and found by id, email and username;
/// unknown keys find nothing.
pub async fn case_create_user_and_lookups(store: &dyn DocumentStore) {
    let user = new_user("lookup");
    let created = store.create_user(user.clone()).await.expect("create_user");
    assert_eq!(created, user);

    let by_id = store.user_by_id(&user.id).await.expect("user_by_id");
    assert_eq!(by_id.as_ref(), Some(&user));
    let email = user.email.as_deref().unwrap();
    let by_email = store.user_by_email(email).await.expect("user_by_email");
    assert_eq!(by_email.as_ref(), Some(&user));
    let by_username = store
        .user_by_username(&user.username)
        .await
        .expect("user_by_username");
    assert_eq!(by_username.as_ref(), Some(&user));

    let unknown = new_id();
    assert_eq!(
        store.user_by_id(&UserId(unknown.clone())).await.unwrap(),
        None
    );
    let unknown_email = format!("{unknown}@example.test");
    assert_eq!(store.user_by_email(&unknown_email).await.unwrap(), None);
    assert_eq!(store.user_by_username(&unknown).await.unwrap(), None);
}

/// A second user with a taken email is `Conflict`, and nothing of it is
/// stored.
pub async fn case_create_user_duplicate_email_conflicts(store: &dyn DocumentStore) {
    let first = created_user(store, "dupemail").await;
    let mut second = new_user("dupemail");
    second.email = first.email.clone();
    let err = store.create_user(second.clone()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "duplicate email must be Conflict, got {err:?}"
    );
    assert_eq!(store.user_by_id(&second.id).await.unwrap(), None);
    assert_eq!(
        store.user_by_username(&second.username).await.unwrap(),
        None,
        "a rejected user must leave no username behind"
    );
    let email = first.email.as_deref().unwrap();
    assert_eq!(store.user_by_email(email).await.unwrap(), Some(first));
}

/// A second user with a taken username is `Conflict`, and nothing of it is
/// stored.
pub async fn case_create_user_duplicate_username_conflicts(store: &dyn DocumentStore) {
    let first = created_user(store, "dupname").await;
    let mut second = new_user("dupname");
    second.username = first.username.clone();
    let err = store.create_user(second.clone()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "duplicate username must be Conflict, got {err:?}"
    );
    assert_eq!(store.user_by_id(&second.id).await.unwrap(), None);
    let email = second.email.as_deref().unwrap();
    assert_eq!(
        store.user_by_email(email).await.unwrap(),
        None,
        "a rejected user must leave no email behind"
    );
    assert_eq!(
        store.user_by_username(&first.username).await.unwrap(),
        Some(first)
    );
}

/// Users known only from a token have no email; any number of them exist.
pub async fn case_users_without_email_do_not_conflict(store: &dyn DocumentStore) {
    for _ in 0..2 {
        let mut user = new_user("noemail");
        user.email = None;
        user.password_hash = None;
        let created = store.create_user(user.clone()).await.expect("create_user");
        assert_eq!(created, user);
        assert_eq!(store.user_by_id(&user.id).await.unwrap(), Some(user));
    }
}

/// `ensure_user` creates an absent user, and afterwards returns the stored
/// record unchanged whatever it is given.
pub async fn case_ensure_user_creates_once_and_never_overwrites(store: &dyn DocumentStore) {
    let mut user = new_user("ensure");
    user.email = None;
    user.password_hash = None;
    let first = store.ensure_user(user.clone()).await.expect("ensure_user");
    assert_eq!(first, user);
    assert_eq!(
        store.user_by_id(&user.id).await.unwrap(),
        Some(user.clone())
    );

    let mut changed = user.clone();
    changed.name = "Someone Else".into();
    changed.username = format!("other{}", new_id());
    let again = store
        .ensure_user(changed.clone())
        .await
        .expect("ensure_user");
    assert_eq!(again, user, "ensure_user must return the existing user");
    assert_eq!(store.user_by_id(&user.id).await.unwrap(), Some(user));
    assert_eq!(
        store.user_by_username(&changed.username).await.unwrap(),
        None,
        "ensure_user must not index a username it did not store"
    );
}

/// When the wanted username belongs to someone else, `ensure_user` stores
/// the first free variant (`name-2`, `name-3`, ...).
pub async fn case_ensure_user_picks_free_username(store: &dyn DocumentStore) {
    let owner = created_user(store, "taken").await;
    let wanted = owner.username.clone();

    let mut second = new_user("taken");
    second.email = None;
    second.username = wanted.clone();
    let second = store.ensure_user(second).await.expect("ensure_user");
    assert_eq!(second.username, format!("{wanted}-2"));

    let mut third = new_user("taken");
    third.email = None;
    third.username = wanted.clone();
    let third = store.ensure_user(third).await.expect("ensure_user");
    assert_eq!(third.username, format!("{wanted}-3"));

    assert_eq!(store.user_by_username(&wanted).await.unwrap(), Some(owner));
    assert_eq!(
        store.user_by_username(&second.username).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(store.user_by_id(&third.id).await.unwrap(), Some(third));
}

// ---- refresh tokens ----

/// A stored refresh token is taken once; the second take finds nothing.
pub async fn case_refresh_token_is_taken_once(store: &dyn DocumentStore) {
    let record = RefreshTokenRecord {
        jti: new_id(),
        user_id: UserId(new_id()),
        expires_at: Utc::now().trunc_subsecs(3) + chrono::Duration::days(30),
    };
    store
        .put_refresh_token(record.clone())
        .await
        .expect("put_refresh_token");
    let taken = store.take_refresh_token(&record.jti).await.expect("take");
    assert_eq!(taken, Some(record.clone()));
    let again = store.take_refresh_token(&record.jti).await.expect("take");
    assert_eq!(again, None, "a refresh token works once");
}

/// Taking an unknown jti finds nothing.
pub async fn case_refresh_token_unknown_jti(store: &dyn DocumentStore) {
    let taken = store.take_refresh_token(&new_id()).await.expect("take");
    assert_eq!(taken, None);
}

// ---- conversations ----

/// A new conversation is created with the given fields and `last_seq` 0,
/// and is found by id.
pub async fn case_create_conversation(store: &dyn DocumentStore) {
    let a = created_user(store, "conv").await;
    let b = created_user(store, "conv").await;
    let new = NewConversation {
        workspace_id: Some(new_id()),
        ..group(&[&a, &b], "Launch plan")
    };
    let (conversation, created) = store
        .create_conversation(new.clone())
        .await
        .expect("create_conversation");
    assert!(created);
    assert!(!conversation.id.as_str().is_empty());
    assert_eq!(conversation.workspace_id, new.workspace_id);
    assert_eq!(conversation.title.as_deref(), Some("Launch plan"));
    assert_eq!(conversation.member_ids, new.member_ids);
    assert_eq!(conversation.created_by, a.id);
    assert_eq!(conversation.last_seq, 0);
    assert_eq!(conversation.direct_key, None);

    let found = store.conversation(&conversation.id).await.expect("get");
    assert_eq!(found, Some(conversation));
}

/// A second conversation with an existing `direct_key` returns the first
/// (with `false`); another key makes a new one.
pub async fn case_direct_key_returns_existing_conversation(store: &dyn DocumentStore) {
    let a = created_user(store, "direct").await;
    let b = created_user(store, "direct").await;
    let c = created_user(store, "direct").await;

    let (first, created) = store.create_conversation(direct(&a, &b)).await.unwrap();
    assert!(created);
    assert_eq!(first.direct_key, direct(&a, &b).direct_key);

    let (again, created) = store.create_conversation(direct(&b, &a)).await.unwrap();
    assert!(!created, "the pair already has a conversation");
    assert_eq!(again, first);

    let (other, created) = store.create_conversation(direct(&a, &c)).await.unwrap();
    assert!(created);
    assert_ne!(other.id, first.id);

    // The existing one is returned with its current state.
    append(store, &first, &a, "hi").await;
    let (again, created) = store.create_conversation(direct(&a, &b)).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    assert_eq!(again.last_seq, 1);
}

/// An unknown conversation id finds nothing.
pub async fn case_conversation_unknown(store: &dyn DocumentStore) {
    let id = ConversationId(new_id());
    let found = store.conversation(&id).await.expect("conversation");
    assert_eq!(found, None);
    assert_eq!(store.last_seq(&id).await.expect("last_seq"), None);
}

/// Paging through a user's conversations visits each exactly once, newest
/// first, and the last page has no cursor.
pub async fn case_conversations_for_user_pages_newest_first(store: &dyn DocumentStore) {
    let a = created_user(store, "paging").await;
    let b = created_user(store, "paging").await;
    let mut created = Vec::new();
    for i in 0..5 {
        let members: &[&User] = if i % 2 == 0 { &[&a, &b] } else { &[&b, &a] };
        created.push(new_conversation(store, members).await.id);
    }
    let newest_first: Vec<ConversationId> = created.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .conversations_for_user(&a.id, cursor.as_deref(), 2)
            .await
            .expect("conversations_for_user");
        assert!(page.items.len() <= 2, "limit must be respected");
        sizes.push(page.items.len());
        seen.extend(page.items.iter().map(|c| c.id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(sizes.len() <= 5, "paging does not terminate");
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen, newest_first, "every conversation once, newest first");

    // The other member sees the same list.
    let page = store.conversations_for_user(&b.id, None, 10).await.unwrap();
    let ids: Vec<_> = page.items.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, newest_first);
    assert_eq!(page.next_cursor, None);

    // A page that ends exactly at the end has no cursor.
    let page = store.conversations_for_user(&a.id, None, 5).await.unwrap();
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.next_cursor, None, "nothing follows the last page");

    // Listed conversations carry their current last_seq.
    append(store, &page.items[0], &a, "hello").await;
    let page = store.conversations_for_user(&a.id, None, 1).await.unwrap();
    assert_eq!(page.items[0].last_seq, 1);
    assert!(page.next_cursor.is_some());
}

/// Users see only conversations they are members of.
pub async fn case_conversations_for_user_only_members(store: &dyn DocumentStore) {
    let a = created_user(store, "members").await;
    let b = created_user(store, "members").await;
    let outsider = created_user(store, "members").await;
    let conversation = new_conversation(store, &[&a, &b]).await;

    let page = store
        .conversations_for_user(&outsider.id, None, 50)
        .await
        .unwrap();
    assert!(page.items.is_empty(), "non-members must not see it");
    assert_eq!(page.next_cursor, None);

    let page = store
        .conversations_for_user(&UserId(new_id()), None, 50)
        .await
        .unwrap();
    assert!(page.items.is_empty());

    let page = store.conversations_for_user(&b.id, None, 50).await.unwrap();
    assert_eq!(page.items, vec![conversation]);
}

// ---- messages ----

/// Appended messages get seq 1, 2, 3 and the conversation's `last_seq`
/// follows.
pub async fn case_append_message_gap_free_seq(store: &dyn DocumentStore) {
    let a = created_user(store, "seq").await;
    let b = created_user(store, "seq").await;
    let conversation = new_conversation(store, &[&a, &b]).await;

    let first = append(store, &conversation, &a, "one").await;
    assert_eq!(first.seq, 1);
    assert_eq!(first.conversation_id, conversation.id);
    assert_eq!(first.sender_id, a.id);
    assert_eq!(first.client_id, None);
    assert_eq!(first.body, text("one"));
    assert_eq!(last_seq(store, &conversation.id).await, 1);

    let second = append(store, &conversation, &b, "two").await;
    let third = append(store, &conversation, &a, "three").await;
    assert_eq!((second.seq, third.seq), (2, 3));
    let ids: HashSet<_> = [&first.id, &second.id, &third.id].into_iter().collect();
    assert_eq!(ids.len(), 3, "message ids are unique");
    assert_eq!(last_seq(store, &conversation.id).await, 3);

    let stored = store
        .messages_before(&conversation.id, None, 50)
        .await
        .unwrap();
    assert_eq!(stored, vec![first, second, third]);
}

/// A retry with the same (sender, client id) returns the original message
/// unchanged with `false`, even with other text, and uses no seq.
pub async fn case_append_message_idempotent_retry(store: &dyn DocumentStore) {
    let a = created_user(store, "idem").await;
    let b = created_user(store, "idem").await;
    let conversation = new_conversation(store, &[&a, &b]).await;
    let client_id = new_id();

    let (original, created) = store
        .append_message(new_message(
            &conversation,
            &a,
            Some(&client_id),
            text("hello"),
        ))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(original.seq, 1);
    assert_eq!(original.client_id.as_deref(), Some(client_id.as_str()));

    let (retry, created) = store
        .append_message(new_message(
            &conversation,
            &a,
            Some(&client_id),
            text("hello, edited"),
        ))
        .await
        .unwrap();
    assert!(!created, "a retry is not a new message");
    assert_eq!(retry, original, "a retry returns the original unchanged");
    assert_eq!(last_seq(store, &conversation.id).await, 1);

    let next = append(store, &conversation, &a, "next").await;
    assert_eq!(next.seq, 2, "the retry must not consume a seq");
    let stored = store
        .messages_before(&conversation.id, None, 50)
        .await
        .unwrap();
    assert_eq!(stored, vec![original, next]);
}

/// The same client id from another sender is a different message.
pub async fn case_append_message_client_id_is_per_sender(store: &dyn DocumentStore) {
    let a = created_user(store, "percli").await;
    let b = created_user(store, "percli").await;
    let conversation = new_conversation(store, &[&a, &b]).await;
    let client_id = new_id();

    let (from_a, created_a) = store
        .append_message(new_message(&conversation, &a, Some(&client_id), text("a")))
        .await
        .unwrap();
    let (from_b, created_b) = store
        .append_message(new_message(&conversation, &b, Some(&client_id), text("b")))
        .await
        .unwrap();
    assert!(created_a && created_b);
    assert_eq!((from_a.seq, from_b.seq), (1, 2));
    assert_ne!(from_a.id, from_b.id);
    assert_eq!(from_b.body, text("b"));
}

/// Appending to an unknown conversation is `NotFound`.
pub async fn case_append_message_unknown_conversation(store: &dyn DocumentStore) {
    let a = created_user(store, "nowhere").await;
    let err = store
        .append_message(NewMessage {
            conversation_id: ConversationId(new_id()),
            sender_id: a.id.clone(),
            client_id: Some(new_id()),
            body: text("lost"),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "unknown conversation must be NotFound, got {err:?}"
    );
}

/// `messages_before`: the newest `limit` with `seq < before` (all when
/// `None`), oldest first, and only this conversation's messages.
pub async fn case_messages_before_semantics(store: &dyn DocumentStore) {
    let a = created_user(store, "history").await;
    let b = created_user(store, "history").await;
    let conversation = new_conversation(store, &[&a, &b]).await;
    let neighbour = new_conversation(store, &[&a, &b]).await;

    let empty = store
        .messages_before(&conversation.id, None, 50)
        .await
        .unwrap();
    assert!(empty.is_empty(), "no messages yet");

    for i in 1..=10 {
        append(store, &conversation, &a, &format!("m{i}")).await;
        append(store, &neighbour, &b, &format!("n{i}")).await;
    }
    let id = &conversation.id;
    let page = |before: Option<u64>, limit: usize| async move {
        store
            .messages_before(id, before, limit)
            .await
            .expect("messages_before")
    };

    let all = page(None, 50).await;
    assert_eq!(seqs(&all), (1..=10).collect::<Vec<_>>());
    assert!(all.iter().all(|m| m.conversation_id == conversation.id));
    assert_eq!(all[0].body, text("m1"));
    assert_eq!(
        seqs(&page(None, 3).await),
        vec![8, 9, 10],
        "newest, oldest first"
    );
    assert_eq!(
        seqs(&page(Some(5), 50).await),
        vec![1, 2, 3, 4],
        "exclusive"
    );
    assert_eq!(seqs(&page(Some(5), 2).await), vec![3, 4]);
    assert_eq!(
        seqs(&page(Some(11), 100).await),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(seqs(&page(Some(2), 50).await), vec![1]);
    assert!(page(Some(1), 50).await.is_empty(), "nothing below seq 1");
    assert_eq!(page(None, 10).await, all);

    // Walking back page by page covers everything exactly once.
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let chunk = page(before, 4).await;
        let Some(first) = chunk.first() else { break };
        before = Some(first.seq);
        let newer = std::mem::replace(&mut walked, chunk);
        walked.extend(newer);
    }
    assert_eq!(walked, all);
}

/// File messages round-trip with their file info and optional text.
pub async fn case_file_message_round_trip(store: &dyn DocumentStore) {
    let a = created_user(store, "files").await;
    let b = created_user(store, "files").await;
    let conversation = new_conversation(store, &[&a, &b]).await;
    let file_id = new_id();
    let file_info = serde_json::json!({
        "id": file_id,
        "fileName": "plan (final).pdf",
        "size": 123_456,
        "mimeType": "application/pdf",
        "downloadUrl": format!("/api/v1/files/{file_id}/content"),
    });
    let with_text = MessageBody::File {
        file_info: file_info.clone(),
        message: Some("see page 2".into()),
    };
    let bare = MessageBody::File {
        file_info,
        message: None,
    };

    let (first, _) = store
        .append_message(new_message(&conversation, &a, None, with_text.clone()))
        .await
        .unwrap();
    let (second, _) = store
        .append_message(new_message(
            &conversation,
            &b,
            Some(&new_id()),
            bare.clone(),
        ))
        .await
        .unwrap();
    let third = append(store, &conversation, &a, "thanks").await;
    assert_eq!(first.body, with_text);
    assert_eq!(second.body, bare);

    let stored = store
        .messages_before(&conversation.id, None, 50)
        .await
        .unwrap();
    assert_eq!(stored, vec![first, second, third]);
}

/// `mark_read` keeps the highest seq, per user and conversation.
pub async fn case_mark_read_keeps_maximum(store: &dyn DocumentStore) {
    let a = created_user(store, "read").await;
    let b = created_user(store, "read").await;
    let conversation = new_conversation(store, &[&a, &b]).await;
    let other = new_conversation(store, &[&a, &b]).await;
    let id = &conversation.id;

    store.mark_read(id, &a.id, 5).await.unwrap();
    assert_eq!(store.read_marker(id, &a.id).await.unwrap(), 5);
    store.mark_read(id, &a.id, 3).await.unwrap();
    assert_eq!(
        store.read_marker(id, &a.id).await.unwrap(),
        5,
        "never goes back"
    );
    store.mark_read(id, &a.id, 7).await.unwrap();
    assert_eq!(store.read_marker(id, &a.id).await.unwrap(), 7);

    assert_eq!(store.read_marker(id, &b.id).await.unwrap(), 0, "per user");
    assert_eq!(
        store.read_marker(&other.id, &a.id).await.unwrap(),
        0,
        "per conversation"
    );
}

/// Without any `mark_read`, the marker is 0.
pub async fn case_read_marker_defaults_to_zero(store: &dyn DocumentStore) {
    let marker = store
        .read_marker(&ConversationId(new_id()), &UserId(new_id()))
        .await
        .expect("read_marker");
    assert_eq!(marker, 0);
}

// ---- concurrency ----

/// Concurrent appends to one conversation get exactly the seqs 1..=n.
pub async fn case_concurrent_appends_are_gap_free(store: &dyn DocumentStore) {
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let a = created_user(store, "race").await;
    let b = created_user(store, "race").await;
    let conversation = new_conversation(store, &[&a, &b]).await;

    let writers = (0..WRITERS).map(|w| {
        let conversation = &conversation;
        let sender = if w % 2 == 0 { &a } else { &b };
        async move {
            let mut got = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let client_id = format!("{w}-{i}-{}", new_id());
                let (message, created) = store
                    .append_message(new_message(
                        conversation,
                        sender,
                        Some(&client_id),
                        text(&format!("w{w} #{i}")),
                    ))
                    .await
                    .expect("append_message");
                assert!(created);
                got.push(message.seq);
            }
            got
        }
    });
    let mut all: Vec<u64> = join_all(writers).await.into_iter().flatten().collect();
    all.sort_unstable();
    let n = (WRITERS * EACH) as u64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>(), "gap-free, no duplicates");
    assert_eq!(last_seq(store, &conversation.id).await, n);
    let stored = store
        .messages_before(&conversation.id, None, WRITERS * EACH + 10)
        .await
        .unwrap();
    assert_eq!(seqs(&stored), (1..=n).collect::<Vec<_>>());
}

/// Two nodes append to one conversation at once, each many messages in
/// flight, retries among them: every seq is taken exactly once, and each
/// node's messages get seqs in the order it started them when the store
/// orders its appends (else in the order they finish).
pub async fn case_two_handles_append_in_order_without_gaps(
    first: &dyn DocumentStore,
    second: &dyn DocumentStore,
) {
    const ROUNDS: usize = 6;
    const EACH: usize = 20;
    let a = created_user(first, "two").await;
    let b = created_user(first, "two").await;
    let conversation = new_conversation(first, &[&a, &b]).await;
    let node = |store: &'static str| if store == "first" { first } else { second };
    let mut created_total = 0u64;
    for round in 0..ROUNDS {
        let starts = ["first", "second"].map(|name| {
            let store = node(name);
            let sender = if name == "first" { &a } else { &b };
            let conversation = &conversation;
            async move {
                let mut pending = Vec::with_capacity(EACH);
                for i in 0..EACH {
                    // Every fifth repeats the client id of the one before.
                    let client_id = format!("{name}-{round}-{}", i - usize::from(i % 5 == 4));
                    let new = new_message(conversation, sender, Some(&client_id), text(&client_id));
                    if store.orders_appends() {
                        pending.push(store.start_append(new).expect("start_append"));
                    } else {
                        pending.push(Box::pin(async move { store.append_message(new).await }));
                    }
                }
                let mut got = Vec::with_capacity(EACH);
                for p in pending {
                    got.push(p.await.expect("append"));
                }
                (store.orders_appends(), got)
            }
        });
        for (ordered, got) in join_all(starts).await {
            let fresh: Vec<u64> = got
                .iter()
                .filter(|(_, created)| *created)
                .map(|(m, _)| m.seq)
                .collect();
            assert_eq!(fresh.len(), EACH - EACH / 5, "retries create nothing");
            if ordered {
                assert!(
                    fresh.windows(2).all(|w| w[0] < w[1]),
                    "a node's appends take seqs in the order it started them: {fresh:?}"
                );
            }
            for (i, (message, created)) in got.iter().enumerate() {
                if !created {
                    assert_eq!(message, &got[i - 1].0, "a retry answers the stored message");
                }
            }
            created_total += fresh.len() as u64;
        }
    }
    for store in [first, second] {
        assert_eq!(last_seq(store, &conversation.id).await, created_total);
        let stored = store
            .messages_before(&conversation.id, None, ROUNDS * EACH * 2)
            .await
            .unwrap();
        assert_eq!(
            seqs(&stored),
            (1..=created_total).collect::<Vec<_>>(),
            "gap-free, no duplicates"
        );
    }
}

/// Concurrent retries of one (sender, client id) create one message.
pub async fn case_concurrent_idempotent_retries_create_once(store: &dyn DocumentStore) {
    let a = created_user(store, "retry").await;
    let b = created_user(store, "retry").await;
    let conversation = new_conversation(store, &[&a, &b]).await;
    let client_id = new_id();
    let attempts = (0..8).map(|i| {
        store.append_message(new_message(
            &conversation,
            &a,
            Some(&client_id),
            text(&format!("attempt {i}")),
        ))
    });
    let results: Vec<(Message, bool)> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("append_message"))
        .collect();
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let ids: HashSet<_> = results.iter().map(|(m, _)| m.id.clone()).collect();
    assert_eq!(ids.len(), 1, "every attempt returns the same message");
    assert_eq!(last_seq(store, &conversation.id).await, 1);
}

/// Concurrent takes of one refresh token: exactly one gets it.
pub async fn case_concurrent_take_refresh_token_once(store: &dyn DocumentStore) {
    let record = RefreshTokenRecord {
        jti: new_id(),
        user_id: UserId(new_id()),
        expires_at: Utc::now().trunc_subsecs(3) + chrono::Duration::days(1),
    };
    store.put_refresh_token(record.clone()).await.unwrap();
    let takes = (0..8).map(|_| store.take_refresh_token(&record.jti));
    let winners: Vec<RefreshTokenRecord> = join_all(takes)
        .await
        .into_iter()
        .filter_map(|r| r.expect("take_refresh_token"))
        .collect();
    assert_eq!(winners, vec![record], "exactly one take succeeds");
}

/// Concurrent creates with one `direct_key` make one conversation.
pub async fn case_concurrent_direct_key_creates_once(store: &dyn DocumentStore) {
    let a = created_user(store, "dkrace").await;
    let b = created_user(store, "dkrace").await;
    let creates = (0..8).map(|i| {
        let new = if i % 2 == 0 {
            direct(&a, &b)
        } else {
            direct(&b, &a)
        };
        store.create_conversation(new)
    });
    let results: Vec<(Conversation, bool)> = join_all(creates)
        .await
        .into_iter()
        .map(|r| r.expect("create_conversation"))
        .collect();
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let ids: HashSet<_> = results.iter().map(|(c, _)| c.id.clone()).collect();
    assert_eq!(ids.len(), 1, "one conversation per pair");
    let page = store.conversations_for_user(&a.id, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1, "listed once");
}

/// Concurrent `ensure_user` calls for one new id create it once.
pub async fn case_concurrent_ensure_user_creates_once(store: &dyn DocumentStore) {
    let mut user = new_user("ensrace");
    user.email = None;
    let calls = (0..8).map(|_| store.ensure_user(user.clone()));
    for result in join_all(calls).await {
        assert_eq!(result.expect("ensure_user"), user);
    }
    assert_eq!(
        store.user_by_username(&user.username).await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(
        store
            .user_by_username(&format!("{}-2", user.username))
            .await
            .unwrap(),
        None,
        "no second record under a variant username"
    );
}
