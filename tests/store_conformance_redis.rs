//! Runs the upload-session cases of the store conformance suite
//! (`for_each_upload_session_case!`) against the Redis upload-session store,
//! one test per case, each under a key prefix of its own on the test Redis
//! (`HUDDLE_TEST_REDIS_URL`, started by `scripts/redis-test-server.sh`; without
//! it the tests say so and pass, unless `HUDDLE_TEST_REDIS_REQUIRED=1`). Then
//! the checks only this backend needs: two nodes see one state, keys carry
//! expiries and nothing is left behind.

use chrono::{Duration, SubsecRound, Utc};
use huddle::cluster::{testing, RedisConn, RedisUploadSessionStore};
use huddle::store::conformance;
use huddle_actors::ids::{new_id, UserId};
use huddle_actors::model::{SessionStart, UploadSession};
use huddle_actors::store::UploadSessionStore;
use huddle_actors::upload_rules::COMPLETED_KEPT;

macro_rules! redis_cases {
    (; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(conn) = testing::conn("uploads") else { return };
                conformance::$case(&RedisUploadSessionStore::new(conn.clone())).await;
            }
        )*
    };
}

huddle::for_each_upload_session_case!(redis_cases);

/// All cases share one store without seeing each other's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_cases_share_one_store() {
    let Some(conn) = testing::conn("uploads-all") else {
        return;
    };
    conformance::run_upload_session_cases(&RedisUploadSessionStore::new(conn)).await;
}

fn session(user: &UserId, upload_id: &str) -> UploadSession {
    let now = Utc::now().trunc_subsecs(3);
    UploadSession {
        session_id: new_id(),
        upload_id: upload_id.to_owned(),
        user_id: user.clone(),
        file_name: "a.txt".into(),
        file_size: 200_000,
        mime_type: "text/plain".into(),
        chunk_size: 65_536,
        total_chunks: 4,
        sha256: Some("ab".repeat(32)),
        target: None,
        created_at: now,
        expires_at: now + Duration::hours(1),
        completed_file_id: None,
    }
}

async fn pttl(conn: &RedisConn, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn.conn())
        .await
        .expect("PTTL")
}

/// An upload started through one node resumes and completes through another;
/// ids with `:` in them do not collide.
#[tokio::test]
async fn two_nodes_share_sessions() {
    let Some(conn) = testing::conn("uploads-nodes") else {
        return;
    };
    let node1 = RedisUploadSessionStore::new(conn.clone());
    let node2 = RedisUploadSessionStore::new(conn.clone());
    let user = UserId(format!("svc:{}", new_id()));
    let s = session(&user, "a:b");
    assert_eq!(
        node1.create_upload_session(s.clone(), 5).await.unwrap(),
        SessionStart::Created(s.clone())
    );
    // A different user whose id ends where this upload id begins.
    let other = UserId(format!("{}:a", user.as_str()));
    assert!(node2.upload_session(&other, "b").await.unwrap().is_none());
    let later = (Utc::now() + Duration::hours(2)).trunc_subsecs(3);
    node1.record_chunk(&user, "a:b", 0, later).await.unwrap();
    node2.record_chunk(&user, "a:b", 3, later).await.unwrap();
    assert_eq!(
        node2.received_chunks(&user, "a:b").await.unwrap(),
        vec![0, 3]
    );
    match node2
        .create_upload_session(session(&user, "a:b"), 5)
        .await
        .unwrap()
    {
        SessionStart::Existing(found) => {
            assert_eq!(found.session_id, s.session_id, "resumes the same session");
            assert_eq!(found.expires_at, later);
        }
        other => panic!("expected Existing, got {other:?}"),
    }
    node2
        .complete_upload_session(&user, "a:b", &s.session_id)
        .await
        .unwrap();
    let done = node1.upload_session(&user, "a:b").await.unwrap().unwrap();
    assert_eq!(
        done.completed_file_id.as_deref(),
        Some(s.session_id.as_str())
    );
}

/// Every key has an expiry: an in-progress session outlives its contract
/// expiry (the sweeper must still find it), a completed one is kept for
/// re-initiation; deleting leaves nothing behind.
#[tokio::test]
async fn keys_expire_and_delete_cleans_up() {
    let Some(conn) = testing::conn("uploads-ttl") else {
        return;
    };
    let store = RedisUploadSessionStore::new(conn.clone());
    let user = UserId(new_id());
    let mut s = session(&user, "u1");
    s.expires_at = (Utc::now() - Duration::minutes(1)).trunc_subsecs(3);
    store.create_upload_session(s.clone(), 5).await.unwrap();
    store
        .record_chunk(&user, "u1", 1, s.expires_at)
        .await
        .unwrap();
    let keys = testing::keys(&conn).await;
    assert_eq!(keys.len(), 4, "session, chunks, active, expiring: {keys:?}");
    let grace = huddle::cluster::uploads::IN_PROGRESS_GRACE.as_millis() as i64;
    for key in keys.iter().filter(|k| !k.ends_with(":up-expiring")) {
        let ttl = pttl(&conn, key).await;
        assert!(
            ttl > grace - 60_000 && ttl <= grace,
            "{key}: an expired session is kept for the sweeper, PTTL {ttl}"
        );
    }
    // The sweeper finds it, deletes it, and nothing of it remains.
    let expired = store
        .expired_upload_sessions(Utc::now(), None, 10)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert!(store.delete_upload_session(&user, "u1").await.unwrap());
    assert!(testing::keys(&conn).await.is_empty(), "nothing left");

    // A completed session keeps only its record, with the completed TTL.
    let s2 = session(&user, "u2");
    store.create_upload_session(s2, 5).await.unwrap();
    store
        .record_chunk(&user, "u2", 0, Utc::now())
        .await
        .unwrap();
    store
        .complete_upload_session(&user, "u2", "f")
        .await
        .unwrap();
    let keys = testing::keys(&conn).await;
    assert_eq!(keys.len(), 1, "only the record: {keys:?}");
    let completed = COMPLETED_KEPT.as_millis() as i64;
    let ttl = pttl(&conn, &keys[0]).await;
    assert!(ttl > completed - 60_000 && ttl <= completed, "PTTL {ttl}");
}

/// An index entry whose session went by its safety-net TTL is dropped by
/// the listing instead of being returned forever.
#[tokio::test]
async fn dangling_expiry_entries_are_dropped() {
    let Some(conn) = testing::conn("uploads-dangling") else {
        return;
    };
    let store = RedisUploadSessionStore::new(conn.clone());
    let user = UserId(new_id());
    let mut s = session(&user, "gone");
    s.expires_at = (Utc::now() - Duration::minutes(1)).trunc_subsecs(3);
    store.create_upload_session(s, 5).await.unwrap();
    let session_key = conn.key(&format!("up:{}:gone", hex::encode(user.as_str())));
    let _: i64 = redis::cmd("DEL")
        .arg(&session_key)
        .query_async(&mut conn.conn())
        .await
        .unwrap();
    assert!(store
        .expired_upload_sessions(Utc::now(), None, 10)
        .await
        .unwrap()
        .is_empty());
    let left: i64 = redis::cmd("ZCARD")
        .arg(conn.key("up-expiring"))
        .query_async(&mut conn.conn())
        .await
        .unwrap();
    assert_eq!(left, 0);
}
