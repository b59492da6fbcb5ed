//! Runs the document store conformance suite against the embedded store,
//! one test per case, each on a fresh database in its own temporary
//! directory; then the checks only an on-disk backend needs: data survives a
//! restart, and real parallel writers (tasks on a multi-threaded runtime)
//! keep the invariants.

use std::sync::Arc;

use huddle::store::{conformance, EmbeddedStore};
use huddle_actors::ids::{new_id, ConversationId, UserId};
use huddle_actors::model::{MessageBody, NewConversation, NewMessage, RefreshTokenRecord, User};
use huddle_actors::store::prelude::*;
use huddle_actors::store::{DocumentStore, StoreError};
use tempfile::TempDir;

/// A fresh store in its own directory; keep the `TempDir` alive as long as
/// the store.
fn fresh() -> (TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open store");
    (dir, store)
}

macro_rules! conformance_cases {
    (; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_dir, store) = fresh();
                conformance::$case(&store).await;
            }
        )*
    };
}

huddle::for_each_conformance_case!(conformance_cases);

/// The two-handle cases: one embedded store per file, so both handles are
/// the same store.
macro_rules! shared_database_cases {
    (; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_dir, store) = fresh();
                conformance::$case(&store, &store).await;
            }
        )*
    };
}

huddle::for_each_shared_database_case!(shared_database_cases);

/// All cases share one store without seeing each other's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_cases_share_one_store() {
    let (_dir, store) = fresh();
    conformance::run_all(Arc::new(store)).await;
}

fn user(tag: &str) -> User {
    let id = new_id();
    User {
        id: UserId(id.clone()),
        email: Some(format!("{tag}-{id}@example.test")),
        name: tag.to_owned(),
        username: format!("{tag}{id}"),
        password_hash: None,
        created_at: chrono::Utc::now(),
    }
}

fn text(s: &str) -> MessageBody {
    MessageBody::Text { text: s.to_owned() }
}

#[test]
fn open_creates_the_directory_and_one_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("data").join("node-a");
    let _store = EmbeddedStore::open(&nested).expect("open");
    assert!(nested.join(huddle::store::embedded::FILE_NAME).is_file());
}

#[test]
fn a_second_open_of_the_same_file_is_a_backend_error() {
    let (dir, _store) = fresh();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::Backend { .. }),
        "expected Backend, got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let alice = user("alice");
    let bob = user("bob");
    let token = RefreshTokenRecord {
        jti: new_id(),
        user_id: alice.id.clone(),
        expires_at: chrono::Utc::now(),
    };
    let direct_key = {
        let mut ids = [alice.id.as_str(), bob.id.as_str()];
        ids.sort_unstable();
        ids.join("|")
    };
    let direct = NewConversation {
        workspace_id: None,
        title: None,
        member_ids: vec![alice.id.clone(), bob.id.clone()],
        created_by: alice.id.clone(),
        direct_key: Some(direct_key),
    };

    let (conversation, messages) = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.create_user(alice.clone()).await.unwrap();
        store.create_user(bob.clone()).await.unwrap();
        store.put_refresh_token(token.clone()).await.unwrap();
        let (conversation, _) = store.create_conversation(direct.clone()).await.unwrap();
        let mut messages = Vec::new();
        for i in 0..3 {
            let (m, _) = store
                .append_message(NewMessage {
                    conversation_id: conversation.id.clone(),
                    sender_id: alice.id.clone(),
                    client_id: Some(format!("c{i}")),
                    body: text(&format!("m{i}")),
                })
                .await
                .unwrap();
            messages.push(m);
        }
        store.mark_read(&conversation.id, &bob.id, 2).await.unwrap();
        (conversation, messages)
        // the store is dropped here: the file is closed
    };

    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(
        store.user_by_id(&alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .user_by_email(bob.email.as_deref().unwrap())
            .await
            .unwrap(),
        Some(bob.clone())
    );
    assert_eq!(
        store.user_by_username(&bob.username).await.unwrap(),
        Some(bob.clone())
    );
    assert!(matches!(
        store.create_user(alice.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.take_refresh_token(&token.jti).await.unwrap(),
        Some(token)
    );

    let reopened = store.conversation(&conversation.id).await.unwrap().unwrap();
    assert_eq!(reopened.last_seq, 3);
    assert_eq!(
        store
            .messages_before(&conversation.id, None, 50)
            .await
            .unwrap(),
        messages
    );
    assert_eq!(
        store.read_marker(&conversation.id, &bob.id).await.unwrap(),
        2
    );

    // Idempotency, direct keys and seq allocation continue where they were.
    let (retry, created) = store
        .append_message(NewMessage {
            conversation_id: conversation.id.clone(),
            sender_id: alice.id.clone(),
            client_id: Some("c0".into()),
            body: text("again"),
        })
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(retry, messages[0]);
    let (next, _) = store
        .append_message(NewMessage {
            conversation_id: conversation.id.clone(),
            sender_id: bob.id.clone(),
            client_id: None,
            body: text("after restart"),
        })
        .await
        .unwrap();
    assert_eq!(next.seq, 4);
    let (same, created) = store.create_conversation(direct).await.unwrap();
    assert!(!created);
    assert_eq!(same.id, conversation.id);

    // Conversations made after the restart still list first.
    let (newer, _) = store
        .create_conversation(NewConversation {
            workspace_id: None,
            title: Some("after".into()),
            member_ids: vec![alice.id.clone()],
            created_by: alice.id.clone(),
            direct_key: None,
        })
        .await
        .unwrap();
    let page = store
        .conversations_for_user(&alice.id, None, 10)
        .await
        .unwrap();
    let ids: Vec<_> = page.items.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, vec![newer.id, conversation.id]);
}

/// 8 tasks on 4 worker threads × 50 appends: seqs are exactly 1..=400.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_tasks_append_gap_free() {
    let (_dir, store) = fresh();
    let store: Arc<dyn DocumentStore> = Arc::new(store);
    let alice = store.create_user(user("alice")).await.unwrap();
    let (conversation, _) = store
        .create_conversation(NewConversation {
            workspace_id: None,
            title: Some("busy".into()),
            member_ids: vec![alice.id.clone()],
            created_by: alice.id.clone(),
            direct_key: None,
        })
        .await
        .unwrap();

    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            let conversation = conversation.id.clone();
            let sender = alice.id.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    let (m, created) = store
                        .append_message(NewMessage {
                            conversation_id: conversation.clone(),
                            sender_id: sender.clone(),
                            client_id: Some(format!("t{t}-{i}")),
                            body: text("x"),
                        })
                        .await
                        .unwrap();
                    assert!(created);
                    seqs.push(m.seq);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<u64>>());
    let stored = store
        .messages_before(&conversation.id, None, 1000)
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=400).collect::<Vec<u64>>()
    );
    assert_eq!(
        store
            .conversation(&conversation.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        400
    );
}

/// Parallel tasks taking one refresh token: exactly one gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_tasks_take_a_refresh_token_once() {
    let (_dir, store) = fresh();
    let store: Arc<dyn DocumentStore> = Arc::new(store);
    for _ in 0..20 {
        let jti = new_id();
        store
            .put_refresh_token(RefreshTokenRecord {
                jti: jti.clone(),
                user_id: UserId(new_id()),
                expires_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                let jti = jti.clone();
                tokio::spawn(async move { store.take_refresh_token(&jti).await.unwrap() })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            if task.await.unwrap().is_some() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "exactly one take of {jti} succeeds");
    }
}

/// A cursor the store did not hand out is an error, not a silent restart.
#[tokio::test]
async fn a_malformed_cursor_is_rejected() {
    let (_dir, store) = fresh();
    let result = store
        .conversations_for_user(&UserId(new_id()), Some("not-a-cursor"), 10)
        .await;
    assert!(result.is_err());
}

/// History reads stay a bounded range scan: a page from a long history
/// returns just the page, from the right place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_history_pages_from_the_end() {
    let (_dir, store) = fresh();
    let alice = store.create_user(user("alice")).await.unwrap();
    let (conversation, _) = store
        .create_conversation(NewConversation {
            workspace_id: None,
            title: Some("long".into()),
            member_ids: vec![alice.id.clone()],
            created_by: alice.id.clone(),
            direct_key: None,
        })
        .await
        .unwrap();
    for _ in 0..300 {
        store
            .append_message(NewMessage {
                conversation_id: conversation.id.clone(),
                sender_id: alice.id.clone(),
                client_id: None,
                body: text("x"),
            })
            .await
            .unwrap();
    }
    let page = store
        .messages_before(&conversation.id, Some(151), 50)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (101..=150).collect::<Vec<u64>>()
    );
}

/// Appends message `seq` of conversation number `c` (text and client id
/// name both); whether it was new, and its seq.
async fn append_numbered(
    store: &EmbeddedStore,
    conversation: &ConversationId,
    sender: &UserId,
    c: usize,
    seq: u64,
) -> (u64, bool) {
    let (m, created) = store
        .append_message(numbered(conversation, sender, c, seq))
        .await
        .unwrap();
    (m.seq, created)
}

/// Messages `seqs` of every conversation of `ids`, round by round.
async fn append_rounds(
    store: &EmbeddedStore,
    sender: &UserId,
    ids: &[ConversationId],
    seqs: std::ops::RangeInclusive<u64>,
) {
    for seq in seqs {
        for (c, id) in ids.iter().enumerate() {
            append_numbered(store, id, sender, c, seq).await;
        }
    }
}

/// Message `seq` of conversation number `c`: text `m{seq}`, client id
/// `c{c}-{seq}`.
fn numbered(conversation: &ConversationId, sender: &UserId, c: usize, seq: u64) -> NewMessage {
    NewMessage {
        conversation_id: conversation.clone(),
        sender_id: sender.clone(),
        client_id: Some(format!("c{c}-{seq}")),
        body: text(&format!("m{seq}")),
    }
}

/// Each conversation holds messages 1..=`per`, each once, in order, with
/// its text, whichever of redb and the journal's tail they are in; retries
/// of old and new ones answer the original.
async fn check_history(
    store: &EmbeddedStore,
    conversations: &[ConversationId],
    sender: &UserId,
    per: u64,
) {
    for (c, id) in conversations.iter().enumerate() {
        assert_eq!(store.last_seq(id).await.unwrap(), Some(per));
        assert_eq!(store.conversation(id).await.unwrap().unwrap().last_seq, per);
        let listed = store
            .conversations_for_user(sender, None, 10)
            .await
            .unwrap();
        let mine = listed.items.iter().find(|x| &x.id == id).expect("listed");
        assert_eq!(mine.last_seq, per);
        let mut seqs = Vec::new();
        let mut before = None;
        loop {
            let page = store.messages_before(id, before, 37).await.unwrap();
            let Some(first) = page.first() else { break };
            before = Some(first.seq);
            for m in page.iter().rev() {
                assert_eq!(m.body, text(&format!("m{}", m.seq)));
                seqs.push(m.seq);
            }
        }
        assert_eq!(
            seqs,
            (1..=per).rev().collect::<Vec<_>>(),
            "conversation {c}"
        );
        for seq in [1, per / 2, per] {
            assert_eq!(
                append_numbered(store, id, sender, c, seq).await,
                (seq, false),
                "retry of {seq}"
            );
        }
    }
}

async fn two_conversations(store: &EmbeddedStore) -> (UserId, Vec<ConversationId>) {
    let alice = store.create_user(user("alice")).await.unwrap();
    let mut ids = Vec::new();
    for title in ["one", "two"] {
        ids.push(conversation_of(store, &alice.id, title).await);
    }
    (alice.id, ids)
}

/// A new conversation titled `title` with `member` alone.
async fn conversation_of(store: &EmbeddedStore, member: &UserId, title: &str) -> ConversationId {
    let (c, _) = store
        .create_conversation(NewConversation {
            workspace_id: None,
            title: Some(title.into()),
            member_ids: vec![member.clone()],
            created_by: member.clone(),
            direct_key: None,
        })
        .await
        .unwrap();
    c.id
}

/// Messages go through the journal and are checkpointed into the database
/// every `CHECKPOINT_MESSAGES`: across several checkpoints (and a tail
/// left over), history, last seqs and the idempotency check stay whole, and
/// all of it survives a restart — here with a page cache far smaller than
/// the data (`server.store_cache_mb`'s floor is 1 MiB; 64 KiB here), so the
/// pages are read back from the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_journal_checkpoints_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let per = (huddle::store::embedded::CHECKPOINT_MESSAGES as u64) * 5 / 4 + 17;
    let (alice, ids) = {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let (alice, ids) = two_conversations(&store).await;
        for seq in 1..=per {
            for (c, id) in ids.iter().enumerate() {
                assert_eq!(
                    append_numbered(&store, id, &alice, c, seq).await,
                    (seq, true)
                );
            }
        }
        check_history(&store, &ids, &alice, per).await;
        (alice, ids)
    };
    let data = std::fs::metadata(dir.path().join(huddle::store::embedded::FILE_NAME)).unwrap();
    assert!(data.len() > 4 * 64 * 1024, "{} bytes", data.len());
    let store = EmbeddedStore::open_with_cache(dir.path(), 64 * 1024).unwrap();
    check_history(&store, &ids, &alice, per).await;
}

/// Copies `names` from the data directory `from` into `to`.
fn copy_files(from: &std::path::Path, to: &std::path::Path, names: &[&str]) {
    for name in names {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

/// A crash (the files as they are while the store runs, plus a record torn
/// by the crash) loses no acknowledged message: opening the store applies
/// the journal, a second open applies nothing twice, and seqs go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_acknowledged_message() {
    use huddle::store::embedded::{FILE_NAME, JOURNAL_FILE_NAMES};
    let (dir, store) = fresh();
    let (alice, ids) = two_conversations(&store).await;
    let per = (huddle::store::embedded::CHECKPOINT_MESSAGES as u64) / 2 + 100;
    append_rounds(&store, &alice, &ids, 1..=per).await;
    // Every append is answered, nothing else is writing (no checkpoint
    // either): copy the files as a crash would leave them (the store is
    // still open).
    store.settle().await.unwrap();
    let crashed = tempfile::tempdir().unwrap();
    copy_files(dir.path(), crashed.path(), &[FILE_NAME]);
    copy_files(dir.path(), crashed.path(), &JOURNAL_FILE_NAMES);
    drop(store);
    let mut written = 0;
    for name in JOURNAL_FILE_NAMES {
        let journal = crashed.path().join(name);
        let mut torn = std::fs::read(&journal).unwrap();
        written += torn.len();
        torn.extend_from_within(..40);
        std::fs::write(&journal, torn).unwrap();
    }
    assert!(written > 1000, "the tail is in the journal");

    for _ in 0..2 {
        let store = EmbeddedStore::open(crashed.path()).unwrap();
        check_history(&store, &ids, &alice, per).await;
    }
    let store = EmbeddedStore::open(crashed.path()).unwrap();
    assert_eq!(
        append_numbered(&store, &ids[0], &alice, 0, per + 1).await,
        (per + 1, true)
    );
}

/// A crash while a checkpoint runs beside the writer (its transaction never
/// committed) leaves the frozen part in one journal file and what came
/// after it in the other: opening applies both, the older first, and loses
/// nothing acknowledged. Here the database is copied before the checkpoint
/// and the journal files after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_checkpoint_loses_nothing() {
    use huddle::store::embedded::{CHECKPOINT_MESSAGES, FILE_NAME, JOURNAL_FILE_NAMES};
    let (dir, store) = fresh();
    let (alice, ids) = two_conversations(&store).await;
    let early = CHECKPOINT_MESSAGES as u64 / 8;
    append_rounds(&store, &alice, &ids, 1..=early).await;
    store.settle().await.unwrap();
    let crashed = tempfile::tempdir().unwrap();
    copy_files(dir.path(), crashed.path(), &[FILE_NAME]);
    // Past one checkpoint (two conversations: 2 × per > CHECKPOINT_MESSAGES).
    let per = CHECKPOINT_MESSAGES as u64 / 2 + 100;
    append_rounds(&store, &alice, &ids, early + 1..=per).await;
    store.settle().await.unwrap();
    copy_files(dir.path(), crashed.path(), &JOURNAL_FILE_NAMES);
    drop(store);

    for _ in 0..2 {
        let store = EmbeddedStore::open(crashed.path()).unwrap();
        check_history(&store, &ids, &alice, per).await;
        // A retry of a message from the frozen file is answered with it.
        assert_eq!(
            append_numbered(&store, &ids[1], &alice, 1, 2).await,
            (2, false)
        );
    }
}

/// Appends alone read a snapshot of the database instead of a write
/// transaction; every other write replaces it, so an append sees what was
/// written just before it: a conversation created after the snapshot was
/// taken (its first message), a checkpoint's messages (the idempotency
/// check of a retry), and seqs that go on across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_sees_every_write_before_it() {
    let (_dir, store) = fresh();
    let (alice, ids) = two_conversations(&store).await;
    let rounds = huddle::store::embedded::CHECKPOINT_MESSAGES as u64 + 3;
    for seq in 1..=rounds {
        assert_eq!(
            append_numbered(&store, &ids[0], &alice, 0, seq).await,
            (seq, true)
        );
        if seq % 128 == 0 {
            // Created between two appends, written to at once.
            let c = conversation_of(&store, &alice, &format!("late {seq}")).await;
            let n = seq as usize;
            assert_eq!(append_numbered(&store, &c, &alice, n, 1).await, (1, true));
            assert_eq!(append_numbered(&store, &c, &alice, n, 1).await, (1, false));
        }
    }
    // Message 1 was checkpointed into the database: its retry finds it there.
    assert_eq!(
        append_numbered(&store, &ids[0], &alice, 0, 1).await,
        (1, false)
    );
    assert_eq!(
        append_numbered(&store, &ids[0], &alice, 0, rounds + 1).await,
        (rounds + 1, true)
    );
}

/// Appends queued together share a batch; one that fails there (a
/// conversation that does not exist) fails alone: the others are stored,
/// their seqs consecutive, and nothing of the failed one is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_in_a_batch_costs_the_others_nothing() {
    let (_dir, store) = fresh();
    let (alice, ids) = two_conversations(&store).await;
    let new = |conversation: &ConversationId, n: usize| numbered(conversation, &alice, n, n as u64);
    let missing = ConversationId("no-such-conversation".into());
    let mut pending = Vec::new();
    for n in 0..12 {
        let conversation = if n % 4 == 1 { &missing } else { &ids[n % 2] };
        pending.push((n, store.start_append(new(conversation, n)).unwrap()));
    }
    let mut seqs = [Vec::new(), Vec::new()];
    for (n, answer) in pending {
        match answer.await {
            Ok((m, created)) => {
                assert!(n % 4 != 1 && created, "append {n}");
                seqs[n % 2].push(m.seq);
            }
            Err(e) => assert!(
                n % 4 == 1 && matches!(e, StoreError::NotFound(_)),
                "append {n}: {e}"
            ),
        }
    }
    assert_eq!(seqs[0], (1..=6).collect::<Vec<u64>>());
    assert_eq!(seqs[1], (1..=3).collect::<Vec<u64>>());
    for (c, id) in ids.iter().enumerate() {
        let history = store.messages_before(id, None, 100).await.unwrap();
        assert_eq!(
            history.iter().map(|m| m.seq).collect::<Vec<_>>(),
            seqs[c],
            "conversation {c}"
        );
    }
    // A retry of a failed one is a new attempt, not an idempotent answer.
    let err = store.append_message(new(&missing, 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}
