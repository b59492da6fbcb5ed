//! Runs the document store conformance suite against the MongoDB store, one
//! test per case, on every server whose URI is in the environment:
//!
//! | variable | server |
//! |---|---|
//! | `MONGO_SECANTUS_URI` | secantusdb (wire-compatible, from pip) |
//! | `MONGO_NX_URI` | nx-27017 (wire-compatible, from pip) |
//! | `HUDDLE_TEST_MONGODB_URI` | a real MongoDB, when you have one |
//!
//! `scripts/test.sh` starts the two pip servers (`scripts/mongo-test-servers.sh`)
//! and sets the first two. Every test uses a fresh database (dropped when the
//! test passes), so tests never see each other's records. A test whose server
//! is not configured passes without running, and says so on stderr past the
//! test harness's capture, once per server. Then come the checks only this
//! backend needs: idempotent start-up, a lagging `lastSeq` after a crash,
//! parallel writers on several threads, and `open_store` choosing MongoDB.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Once};

use huddle::settings::Settings;
use std::time::Duration;

use huddle::store::mongo::SearchOptions;
use huddle::store::{conformance, MongoStore};
use huddle_actors::ids::{new_id, ProjectId, UserId, WorkspaceId};
use huddle_actors::model::{
    MessageBody, NewConversation, NewMessage, NewProject, NewTask, Priority, Task, TaskStatus, User,
};
use huddle_actors::store::prelude::*;
use mongodb::bson::{doc, Document};

/// A server the suite can run against, named by an environment variable.
struct Server {
    /// The variable holding its URI.
    env: &'static str,
    /// How the notice names it.
    name: &'static str,
    /// Where the URI comes from, for the notice.
    hint: &'static str,
    /// Printed once when the variable is unset.
    announced: Once,
}

static SECANTUS: Server = Server {
    env: "MONGO_SECANTUS_URI",
    name: "secantusdb",
    hint: "scripts/test.sh starts it and sets it",
    announced: Once::new(),
};
static NX: Server = Server {
    env: "MONGO_NX_URI",
    name: "nx-27017",
    hint: "scripts/test.sh starts it and sets it",
    announced: Once::new(),
};
static REAL: Server = Server {
    env: "HUDDLE_TEST_MONGODB_URI",
    name: "a real MongoDB",
    hint: "set it to a MongoDB URI to run the suite there",
    announced: Once::new(),
};

impl Server {
    fn uri(&self) -> Option<String> {
        let uri = std::env::var(self.env)
            .ok()
            .filter(|v| !v.trim().is_empty());
        if uri.is_none() {
            self.announced.call_once(|| {
                // Straight to stderr: the harness captures `eprintln!` of
                // passing tests, and this must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!! MongoDB store tests NOT RUN against {}: {} is not set \
                     ({}; see the README, section MongoDB document store) !!!\n",
                    self.name,
                    self.env,
                    self.hint
                );
            });
        }
        uri
    }
}

/// A store on a fresh database of one server.
struct TestDb {
    store: MongoStore,
    uri: String,
    name: String,
}

impl TestDb {
    /// `None` (after the notice) when the server is not configured.
    async fn open(server: &Server) -> Option<TestDb> {
        let uri = server.uri()?;
        let name = fresh_db_name();
        let store = MongoStore::connect(&uri, &name)
            .await
            .unwrap_or_else(|e| panic!("connecting to {} ({}): {e:?}", server.name, server.env));
        Some(TestDb { store, uri, name })
    }

    /// Drops the database (only reached when the test passed, so a failed
    /// test leaves its data to look at).
    async fn finish(self) {
        self.store
            .database()
            .drop()
            .await
            .expect("dropping the test database");
    }
}

fn fresh_db_name() -> String {
    format!("huddle_test_{}", &new_id()[..16])
}

/// One `#[tokio::test]` per conformance case, against `$server`.
macro_rules! case_tests {
    ($server:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(db) = TestDb::open($server).await else { return };
                conformance::$case(&db.store).await;
                db.finish().await;
            }
        )*
    };
}

/// One test per two-handle case, against `$server`: the second handle is a
/// second `connect` to the same database, as another node would make (with
/// its own search index).
macro_rules! shared_database_tests {
    ($server:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(db) = TestDb::open($server).await else { return };
                let other = MongoStore::connect(&db.uri, &db.name)
                    .await
                    .expect("a second node on the same database");
                conformance::$case(&db.store, &other).await;
                db.finish().await;
            }
        )*
    };
}

/// The conformance cases plus the backend's own checks, against `$server`.
macro_rules! server_tests {
    ($module:ident, $server:expr) => {
        mod $module {
            use super::*;

            huddle::for_each_conformance_case!(case_tests, $server);
            huddle::for_each_shared_database_case!(shared_database_tests, $server);

            /// All cases share one database without seeing each other's
            /// records.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn all_cases_share_one_store() {
                let Some(db) = TestDb::open($server).await else {
                    return;
                };
                conformance::run_all(Arc::new(db.store.clone())).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn start_up_twice_on_one_database() {
                let Some(db) = TestDb::open($server).await else {
                    return;
                };
                check_start_up_twice(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_lagging_last_seq_is_repaired_without_a_gap() {
                let Some(db) = TestDb::open($server).await else {
                    return;
                };
                check_lagging_last_seq(&db.store).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn parallel_tasks_append_gap_free() {
                let Some(db) = TestDb::open($server).await else {
                    return;
                };
                check_parallel_appends(Arc::new(db.store.clone())).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_malformed_cursor_is_rejected() {
                let Some(db) = TestDb::open($server).await else {
                    return;
                };
                let result = db
                    .store
                    .conversations_for_user(&UserId(new_id()), Some("not-a-cursor"), 10)
                    .await;
                assert!(result.is_err());
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn search_rereads_writes_stamped_within_the_clock_margin() {
                let Some(db) = TestDb::open($server).await else {
                    return;
                };
                check_search_clock_margin(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn search_drops_and_reloads_workspaces_past_its_budget() {
                let Some(db) = TestDb::open($server).await else {
                    return;
                };
                check_search_budget(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_searches_see_every_write_that_returned() {
                let Some(db) = TestDb::open($server).await else {
                    return;
                };
                check_concurrent_searches(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn open_store_chooses_mongodb_when_the_uri_is_set() {
                let Some(db) = TestDb::open($server).await else {
                    return;
                };
                check_open_store(&db).await;
                db.finish().await;
            }
        }
    };
}

server_tests!(secantus, &SECANTUS);
server_tests!(nx, &NX);
server_tests!(real_mongodb, &REAL);

// ---- the backend's own checks ----

fn user(tag: &str) -> User {
    let id = new_id();
    User {
        id: UserId(id.clone()),
        email: Some(format!("{tag}-{id}@example.test")),
        name: tag.to_owned(),
        username: format!("{tag}{id}"),
        password_hash: None,
        created_at: chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis())
            .unwrap(),
    }
}

fn text(s: &str) -> MessageBody {
    MessageBody::Text { text: s.to_owned() }
}

fn group(owner: &User) -> NewConversation {
    NewConversation {
        workspace_id: None,
        title: Some("busy".into()),
        member_ids: vec![owner.id.clone()],
        created_by: owner.id.clone(),
        direct_key: None,
    }
}

fn message(conversation: &huddle_actors::ids::ConversationId, sender: &User) -> NewMessage {
    NewMessage {
        conversation_id: conversation.clone(),
        sender_id: sender.id.clone(),
        client_id: Some(new_id()),
        body: text("x"),
    }
}

/// A second node starting on the same database finds its indexes and
/// counters in place, and sees (and keeps enforcing) the first one's data.
async fn check_start_up_twice(db: &TestDb) {
    let alice = db.store.create_user(user("alice")).await.unwrap();
    let (first, _) = db.store.create_conversation(group(&alice)).await.unwrap();

    let second = MongoStore::connect(&db.uri, &db.name)
        .await
        .expect("a second start-up on the same database");
    assert_eq!(
        second.user_by_id(&alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert!(matches!(
        second.create_user(alice.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    // The creation order carries on rather than starting again.
    let (newer, _) = second.create_conversation(group(&alice)).await.unwrap();
    let page = second
        .conversations_for_user(&alice.id, None, 10)
        .await
        .unwrap();
    let ids: Vec<_> = page.items.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, vec![newer.id, first.id]);
}

/// A node that stored a message and died before raising `lastSeq` leaves
/// the conversation's `lastSeq` one behind. Readers are told the last seq
/// of the stored messages all the same; the next append must neither reuse
/// the stored seq nor skip one, and must repair `lastSeq` (after its
/// answer: a message is answered once inserted).
async fn check_lagging_last_seq(store: &MongoStore) {
    let alice = store.create_user(user("alice")).await.unwrap();
    let (conversation, _) = store.create_conversation(group(&alice)).await.unwrap();
    let (first, _) = store
        .append_message(message(&conversation.id, &alice))
        .await
        .unwrap();
    assert_eq!(first.seq, 1);

    // What the crashed node left: message 2 stored, lastSeq still 1.
    let conversations = store
        .database()
        .collection::<mongodb::bson::Document>("conversations");
    let stored_last_seq = || async {
        conversations
            .find_one(doc! { "_id": conversation.id.as_str() })
            .await
            .unwrap()
            .unwrap()
            .get("lastSeq")
            .and_then(|n| n.as_i64().or(n.as_i32().map(i64::from)))
            .expect("lastSeq is an integer (nx-27017 stores small ones as int32)")
    };
    wait_for_last_seq(&stored_last_seq, 1).await;
    store
        .database()
        .collection::<mongodb::bson::Document>("messages")
        .insert_one(doc! {
            "_id": new_id(),
            "conversationId": conversation.id.as_str(),
            "seq": 2_i64,
            "senderId": alice.id.as_str(),
            "body": { "kind": "text", "text": "orphan" },
            "createdAt": mongodb::bson::DateTime::now(),
        })
        .await
        .unwrap();
    assert_eq!(stored_last_seq().await, 1);
    let current = |store: &MongoStore| {
        let id = conversation.id.clone();
        let store = store.clone();
        async move {
            let whole = store.conversation(&id).await.unwrap().unwrap().last_seq;
            let alone = store.last_seq(&id).await.unwrap();
            (whole, alone)
        }
    };
    assert_eq!(
        current(store).await,
        (2, Some(2)),
        "readers see what is stored"
    );

    let (next, created) = store
        .append_message(message(&conversation.id, &alice))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(next.seq, 3, "neither reused nor skipped");
    assert_eq!(current(store).await, (3, Some(3)));
    wait_for_last_seq(&stored_last_seq, 3).await;
    let seqs: Vec<u64> = store
        .messages_before(&conversation.id, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
}

/// Waits (at most 5 s) for the stored `lastSeq` to be `want`: the appender
/// raises it right after answering.
async fn wait_for_last_seq<F, Fut>(stored_last_seq: &F, want: i64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    for _ in 0..250 {
        if stored_last_seq().await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stored_last_seq().await, want, "lastSeq raised");
}

/// 8 tasks on 4 worker threads × 25 appends: seqs are exactly 1..=200.
async fn check_parallel_appends(store: Arc<dyn DocumentStore>) {
    let alice = store.create_user(user("alice")).await.unwrap();
    let (conversation, _) = store.create_conversation(group(&alice)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            let conversation = conversation.id.clone();
            let alice = alice.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for _ in 0..25 {
                    let (m, created) = store
                        .append_message(message(&conversation, &alice))
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
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
    let stored = store
        .messages_before(&conversation.id, None, 1000)
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<u64>>()
    );
    assert_eq!(
        store
            .conversation(&conversation.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        200
    );
}

/// With `MONGODB_URI` and `MONGODB_DB` set, `open_store` returns a store on
/// that database (what it writes, this test's own store reads).
async fn check_open_store(db: &TestDb) {
    let data_dir = tempfile::tempdir().unwrap();
    let env: HashMap<String, String> = [
        ("HUDDLE_ENV", "test"),
        ("MONGODB_URI", db.uri.as_str()),
        ("MONGODB_DB", db.name.as_str()),
        ("DATA_DIR", &data_dir.path().display().to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let settings = Settings::load_from(&config, &env).expect("settings");
    let store = huddle::startup::open_store(&settings)
        .await
        .expect("open_store");
    store.ping().await.unwrap();
    let alice = store.create_user(user("alice")).await.unwrap();
    assert_eq!(db.store.user_by_id(&alice.id).await.unwrap(), Some(alice));
    assert!(
        !data_dir
            .path()
            .join(huddle::store::embedded::FILE_NAME)
            .exists(),
        "the embedded store must not be opened as well"
    );
}

/// Start-up fails, with the driver's error kept as the source, when no
/// server answers — rather than starting a node that cannot store anything.
#[tokio::test]
async fn connect_fails_when_no_server_answers() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
        // closed again here: nothing listens on it
    };
    let uri =
        format!("mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=300");
    let err = MongoStore::connect(&uri, "huddle_unreachable")
        .await
        .expect_err("nothing listens there");
    match err {
        StoreError::Backend { source, .. } => assert!(source.is_some(), "the cause is kept"),
        other => panic!("expected Backend, got {other:?}"),
    }
}

// ---- search: the node's index fed from MongoDB ----

async fn search_fixture(
    store: &MongoStore,
) -> (
    huddle_actors::model::Workspace,
    huddle_actors::model::Project,
    UserId,
) {
    let owner = store.create_user(user("se")).await.unwrap();
    let ws = store
        .create_workspace("search".into(), owner.id.clone())
        .await
        .unwrap();
    let project = store
        .create_project(NewProject {
            workspace_id: ws.id.clone(),
            name: "p".into(),
            description: None,
            created_by: owner.id.clone(),
        })
        .await
        .unwrap();
    (ws, project, owner.id)
}

async fn new_task(store: &MongoStore, project: &ProjectId, owner: &UserId, title: &str) -> Task {
    store
        .create_task(NewTask {
            project_id: project.clone(),
            title: title.to_owned(),
            description: None,
            status: TaskStatus::Todo,
            priority: Priority::Medium,
            assignee_id: None,
            tags: Vec::new(),
            due_date: None,
            created_by: owner.clone(),
        })
        .await
        .unwrap()
}

async fn found(store: &MongoStore, ws: &WorkspaceId, query: &str) -> Vec<String> {
    let mut ids: Vec<String> = store
        .search_tasks(ws, query, 0, 50)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|t| t.id.0)
        .collect();
    ids.sort();
    ids
}

/// A node whose clock runs behind stamps its writes in the past. A search
/// on another node still finds such a write as long as the stamp is within
/// `search_clock_margin_ms` of that node's previous catch-up.
async fn check_search_clock_margin(db: &TestDb) {
    let options = SearchOptions {
        clock_margin: Duration::from_secs(5),
        ..SearchOptions::default()
    };
    let reader = MongoStore::connect_with(&db.uri, &db.name, options)
        .await
        .unwrap();
    let (ws, project, owner) = search_fixture(&db.store).await;
    let t = new_task(&db.store, &project.id, &owner, "Quarterly roadmap").await;
    assert_eq!(
        found(&reader, &ws.id, "roadmap").await,
        vec![t.id.0.clone()]
    );

    // What a node 3 s behind would store for an edit of the title.
    let tasks = db.store.database().collection::<Document>("tasks");
    let stamp = mongodb::bson::DateTime::from_millis(chrono::Utc::now().timestamp_millis() - 3_000);
    let result = tasks
        .update_one(
            doc! { "_id": t.id.as_str() },
            doc! {
                "$set": { "title": "Hiring plan", "updatedAtMs": stamp },
                "$inc": { "rev": 1_i64 },
            },
        )
        .await
        .unwrap();
    assert_eq!(result.modified_count, 1);
    assert_eq!(found(&reader, &ws.id, "hiring").await, vec![t.id.0.clone()]);
    assert!(found(&reader, &ws.id, "roadmap").await.is_empty());
}

/// Past `search_max_indexed_tasks` the least recently searched workspace
/// is dropped, and loaded again (with the writes made meanwhile) when it is
/// searched; answers never change.
async fn check_search_budget(db: &TestDb) {
    let options = SearchOptions {
        max_indexed_tasks: 3,
        ..SearchOptions::default()
    };
    let reader = MongoStore::connect_with(&db.uri, &db.name, options)
        .await
        .unwrap();
    let (a, pa, owner) = search_fixture(&db.store).await;
    let (b, pb, _) = search_fixture(&db.store).await;
    let mut in_a = Vec::new();
    let mut in_b = Vec::new();
    for i in 0..2 {
        in_a.push(
            new_task(&db.store, &pa.id, &owner, &format!("alpha {i}"))
                .await
                .id
                .0,
        );
        in_b.push(
            new_task(&db.store, &pb.id, &owner, &format!("alpha {i}"))
                .await
                .id
                .0,
        );
    }
    in_a.sort();
    in_b.sort();
    for round in 0..3 {
        assert_eq!(found(&reader, &a.id, "alpha").await, in_a, "round {round}");
        assert_eq!(found(&reader, &b.id, "alpha").await, in_b, "round {round}");
        // Written while `a` is (probably) not held by the reader.
        in_a.push(
            new_task(&db.store, &pa.id, &owner, "alpha again")
                .await
                .id
                .0,
        );
        in_a.sort();
    }
    // A workspace larger than the whole budget is still searched whole.
    assert_eq!(found(&reader, &a.id, "alpha").await.len(), 5);
}

/// 16 searches at once on one node, each started after a write on another
/// node returned, each find it; then the other node is fine too.
async fn check_concurrent_searches(db: &TestDb) {
    let reader = MongoStore::connect(&db.uri, &db.name).await.unwrap();
    let (ws, project, owner) = search_fixture(&db.store).await;
    assert!(found(&reader, &ws.id, "gamma").await.is_empty());
    let mut expected = Vec::new();
    for round in 0..4 {
        expected.push(
            new_task(&db.store, &project.id, &owner, &format!("gamma {round}"))
                .await
                .id
                .0,
        );
        expected.sort();
        let searches: Vec<_> = (0..16)
            .map(|_| {
                let reader = reader.clone();
                let ws = ws.id.clone();
                tokio::spawn(async move { found(&reader, &ws, "gamma").await })
            })
            .collect();
        for search in searches {
            assert_eq!(search.await.unwrap(), expected, "round {round}");
        }
    }
    assert_eq!(found(&db.store, &ws.id, "gamma").await, expected);
}
