//! Conformance cases for files: file records, read grants, download tokens,
//! and upload-session state.

use super::created_user;
use chrono::{Duration, SubsecRound, TimeZone, Utc};
use futures_util::future::join_all;
use huddle_actors::ids::{new_id, UserId};
use huddle_actors::model::{
    DownloadPermission, DownloadToken, FileRecord, RefreshTokenRecord, SessionStart, TokenUse,
    UploadSession,
};
use huddle_actors::store::{DocumentStore, StoreError, UploadSessionStore};

fn file_of(owner: &UserId) -> FileRecord {
    let id = new_id();
    FileRecord {
        id: id.clone(),
        file_name: "report.pdf".into(),
        size: 1234,
        mime_type: "application/pdf".into(),
        sha256: "ab".repeat(32),
        blob_key: id,
        uploaded_by: owner.clone(),
        created_at: Utc::now().trunc_subsecs(3),
    }
}

fn token_of(file: &FileRecord, one_time: bool, expires_in: Duration) -> DownloadToken {
    DownloadToken {
        token_hash: new_id(),
        file_id: file.id.clone(),
        created_by: file.uploaded_by.clone(),
        permission: DownloadPermission::Download,
        one_time,
        expires_at: (Utc::now() + expires_in).trunc_subsecs(3),
        spent: false,
    }
}

/// A user for the upload-session cases, which need no user record: a store
/// that implements only [`UploadSessionStore`] runs them too.
struct AnyUser {
    id: UserId,
}

fn any_user() -> AnyUser {
    AnyUser {
        id: UserId(new_id()),
    }
}

/// A new session of `user`'s upload `upload_id` (a 200,000-byte text file in
/// chunks of 64 KiB), expiring in an hour.
pub fn session_of(user: &UserId, upload_id: &str) -> UploadSession {
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
        sha256: None,
        target: None,
        created_at: now,
        expires_at: now + Duration::hours(1),
        completed_file_id: None,
    }
}

/// Files are created once per id; uploaders read them, others once granted.
pub async fn case_file_create_read_and_grants(store: &dyn DocumentStore) {
    let a = created_user(store, "file").await;
    let b = created_user(store, "file").await;
    let file = file_of(&a.id);
    let (created, new) = store.create_file(file.clone()).await.unwrap();
    assert!(new);
    assert_eq!(created, file);
    let mut again = file.clone();
    again.file_name = "other.pdf".into();
    let (existing, new) = store.create_file(again).await.unwrap();
    assert!(!new, "same id twice makes one file");
    assert_eq!(existing, file);
    assert_eq!(store.file(&file.id).await.unwrap(), Some(file.clone()));
    assert_eq!(store.file(&new_id()).await.unwrap(), None);

    assert!(store.can_read_file(&file.id, &a.id).await.unwrap());
    assert!(!store.can_read_file(&file.id, &b.id).await.unwrap());
    store
        .grant_file_read(&file.id, &[b.id.clone(), a.id.clone()])
        .await
        .unwrap();
    store
        .grant_file_read(&file.id, std::slice::from_ref(&b.id))
        .await
        .unwrap();
    assert!(store.can_read_file(&file.id, &b.id).await.unwrap());
    assert!(!store.can_read_file(&new_id(), &a.id).await.unwrap());
    assert!(matches!(
        store
            .grant_file_read(&new_id(), std::slice::from_ref(&b.id))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// Purging deletes the refresh and download tokens that expired before the
/// cutoff and keeps the others. (The cutoff is in 2000, so cases running
/// beside this one on the same database lose nothing.)
pub async fn case_expired_tokens_are_purged(store: &dyn DocumentStore) {
    let cutoff = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    let long_ago = cutoff - Duration::days(1);

    let stale = RefreshTokenRecord {
        jti: new_id(),
        user_id: UserId(new_id()),
        expires_at: long_ago,
    };
    let live = RefreshTokenRecord {
        jti: new_id(),
        user_id: UserId(new_id()),
        expires_at: (Utc::now() + Duration::days(1)).trunc_subsecs(3),
    };
    store.put_refresh_token(stale.clone()).await.unwrap();
    store.put_refresh_token(live.clone()).await.unwrap();
    assert!(store.purge_refresh_tokens(cutoff).await.unwrap() >= 1);
    assert_eq!(store.take_refresh_token(&stale.jti).await.unwrap(), None);
    assert_eq!(
        store.take_refresh_token(&live.jti).await.unwrap(),
        Some(live),
        "a token not expired stays"
    );

    let a = created_user(store, "purge").await;
    let (file, _) = store.create_file(file_of(&a.id)).await.unwrap();
    let mut gone = token_of(&file, false, Duration::hours(1));
    gone.expires_at = long_ago;
    let stays = token_of(&file, false, Duration::hours(1));
    store.put_download_token(gone.clone()).await.unwrap();
    store.put_download_token(stays.clone()).await.unwrap();
    let now = Utc::now();
    assert!(
        matches!(
            store
                .use_download_token(&gone.token_hash, now)
                .await
                .unwrap(),
            TokenUse::Expired
        ),
        "expired, still known before the purge"
    );
    assert!(store.purge_download_tokens(cutoff).await.unwrap() >= 1);
    assert!(matches!(
        store
            .use_download_token(&gone.token_hash, now)
            .await
            .unwrap(),
        TokenUse::Unknown
    ));
    assert!(matches!(
        store
            .use_download_token(&stays.token_hash, now)
            .await
            .unwrap(),
        TokenUse::Valid(_)
    ));
}

/// One-time tokens work once, then say spent; expired and unknown ones say so.
pub async fn case_download_tokens(store: &dyn DocumentStore) {
    let a = created_user(store, "token").await;
    let (file, _) = store.create_file(file_of(&a.id)).await.unwrap();
    let now = Utc::now();

    let once = token_of(&file, true, Duration::hours(1));
    store.put_download_token(once.clone()).await.unwrap();
    assert!(matches!(
        store.put_download_token(once.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    match store
        .use_download_token(&once.token_hash, now)
        .await
        .unwrap()
    {
        TokenUse::Valid(t) => assert_eq!(t.file_id, file.id),
        other => panic!("first use: {other:?}"),
    }
    assert_eq!(
        store
            .use_download_token(&once.token_hash, now)
            .await
            .unwrap(),
        TokenUse::Spent
    );

    let many = token_of(&file, false, Duration::hours(1));
    store.put_download_token(many.clone()).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(
            store
                .use_download_token(&many.token_hash, now)
                .await
                .unwrap(),
            TokenUse::Valid(_)
        ));
    }
    assert_eq!(
        store
            .use_download_token(&many.token_hash, now + Duration::hours(2))
            .await
            .unwrap(),
        TokenUse::Expired
    );
    assert_eq!(
        store.use_download_token(&new_id(), now).await.unwrap(),
        TokenUse::Unknown
    );
}

/// Two concurrent uses of a one-time token: exactly one is valid.
pub async fn case_concurrent_one_time_token_used_once(store: &dyn DocumentStore) {
    let a = created_user(store, "token").await;
    let (file, _) = store.create_file(file_of(&a.id)).await.unwrap();
    let once = token_of(&file, true, Duration::hours(1));
    store.put_download_token(once.clone()).await.unwrap();
    let now = Utc::now();
    let uses = join_all((0..8).map(|_| store.use_download_token(&once.token_hash, now))).await;
    let valid = uses
        .into_iter()
        .filter(|u| matches!(u, Ok(TokenUse::Valid(_))))
        .count();
    assert_eq!(valid, 1);
}

/// An upload session: created once, chunks recorded idempotently with the
/// expiry moved, completed (chunks gone, record kept), then closed to chunks.
pub async fn case_upload_session_lifecycle(store: &dyn UploadSessionStore) {
    let a = any_user();
    let session = session_of(&a.id, "up-1");
    assert_eq!(
        store
            .create_upload_session(session.clone(), 5)
            .await
            .unwrap(),
        SessionStart::Created(session.clone())
    );
    let mut other = session_of(&a.id, "up-1");
    other.file_size = 1;
    assert_eq!(
        store.create_upload_session(other, 5).await.unwrap(),
        SessionStart::Existing(session.clone()),
        "the same upload id finds the first session unchanged"
    );
    let later = (Utc::now() + Duration::hours(2)).trunc_subsecs(3);
    for i in [2, 0, 2] {
        store.record_chunk(&a.id, "up-1", i, later).await.unwrap();
    }
    assert_eq!(
        store.received_chunks(&a.id, "up-1").await.unwrap(),
        vec![0, 2]
    );
    let stored = store.upload_session(&a.id, "up-1").await.unwrap().unwrap();
    assert_eq!(stored.expires_at, later);
    assert_eq!(
        store.received_chunks(&a.id, "other").await.unwrap(),
        Vec::<u32>::new()
    );

    store
        .complete_upload_session(&a.id, "up-1", "file-1")
        .await
        .unwrap();
    let done = store.upload_session(&a.id, "up-1").await.unwrap().unwrap();
    assert_eq!(done.completed_file_id.as_deref(), Some("file-1"));
    assert!(store
        .received_chunks(&a.id, "up-1")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.record_chunk(&a.id, "up-1", 1, later).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.create_upload_session(session_of(&a.id, "up-1"), 5).await.unwrap(),
        SessionStart::Existing(s) if s.completed_file_id.is_some()
    ));
    assert!(matches!(
        store.complete_upload_session(&a.id, "nope", "f").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.upload_session(&a.id, "nope").await.unwrap().is_none());
}

/// At most `max` sessions in progress per user; completing or deleting one
/// frees a place; other users are not counted.
pub async fn case_upload_sessions_in_progress_limit(store: &dyn UploadSessionStore) {
    let a = any_user();
    let b = any_user();
    for id in ["u1", "u2"] {
        assert!(matches!(
            store
                .create_upload_session(session_of(&a.id, id), 2)
                .await
                .unwrap(),
            SessionStart::Created(_)
        ));
    }
    assert_eq!(
        store
            .create_upload_session(session_of(&a.id, "u3"), 2)
            .await
            .unwrap(),
        SessionStart::TooMany
    );
    assert!(matches!(
        store
            .create_upload_session(session_of(&b.id, "u3"), 2)
            .await
            .unwrap(),
        SessionStart::Created(_)
    ));
    store
        .record_chunk(&a.id, "u1", 0, Utc::now())
        .await
        .unwrap();
    assert!(store.delete_upload_session(&a.id, "u1").await.unwrap());
    assert!(!store.delete_upload_session(&a.id, "u1").await.unwrap());
    assert!(store.received_chunks(&a.id, "u1").await.unwrap().is_empty());
    assert!(matches!(
        store
            .create_upload_session(session_of(&a.id, "u3"), 2)
            .await
            .unwrap(),
        SessionStart::Created(_)
    ));
    store
        .complete_upload_session(&a.id, "u2", "f")
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_upload_session(session_of(&a.id, "u4"), 2)
            .await
            .unwrap(),
        SessionStart::Created(_)
    ));
}

/// Expired sessions in progress are listed, all users' or one user's; a
/// chunk moves the expiry on.
pub async fn case_expired_upload_sessions(store: &dyn UploadSessionStore) {
    let a = any_user();
    let b = any_user();
    let expired_session = |user: &UserId, id: &str| {
        let mut s = session_of(user, id);
        s.expires_at = (Utc::now() - Duration::minutes(5)).trunc_subsecs(3);
        s
    };
    store
        .create_upload_session(expired_session(&a.id, "old"), 5)
        .await
        .unwrap();
    store
        .create_upload_session(session_of(&a.id, "fresh"), 5)
        .await
        .unwrap();
    store
        .create_upload_session(expired_session(&b.id, "old-b"), 5)
        .await
        .unwrap();
    // Upload ids of `a`'s and `b`'s expired sessions, sorted.
    let ours = [a.id.clone(), b.id.clone()];
    let listed = |user: Option<&UserId>| {
        let user = user.cloned();
        let ours = ours.clone();
        async move {
            let all = store
                .expired_upload_sessions(Utc::now(), user.as_ref(), 1000)
                .await
                .unwrap();
            let mut ids: Vec<String> = all
                .into_iter()
                .filter(|s| ours.contains(&s.user_id))
                .map(|s| s.upload_id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(listed(None).await, ["old", "old-b"]);
    assert_eq!(listed(Some(&a.id)).await, ["old"]);
    assert_eq!(listed(Some(&b.id)).await, ["old-b"]);
    assert!(listed(Some(&any_user().id)).await.is_empty());
    store
        .record_chunk(&a.id, "old", 0, Utc::now() + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(listed(None).await, ["old-b"]);
    assert!(listed(Some(&a.id)).await.is_empty());
}

/// Completed sessions whose expiry is before the cutoff are purged, and
/// with them the answer "completed": the same upload id starts afresh;
/// completed ones expiring later, and sessions in progress (even expired
/// ones, the sweeper's), stay. (The document stores' part: Redis expires
/// completed records by their TTL.)
pub async fn case_completed_upload_sessions_are_purged(store: &dyn DocumentStore) {
    let a = any_user();
    let at = |hours: i64| (Utc::now() + Duration::hours(hours)).trunc_subsecs(3);
    for (id, expires_at) in [
        ("done-old", at(-2)),
        ("done-new", at(1)),
        ("running", at(1)),
        ("expired", at(-3)),
    ] {
        let mut s = session_of(&a.id, id);
        s.expires_at = expires_at;
        store.create_upload_session(s, 5).await.unwrap();
    }
    for (id, file) in [("done-old", "f1"), ("done-new", "f2")] {
        store
            .complete_upload_session(&a.id, id, file)
            .await
            .unwrap();
    }
    assert!(store.purge_completed_upload_sessions(at(-1)).await.unwrap() >= 1);
    assert!(store
        .upload_session(&a.id, "done-old")
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store
            .create_upload_session(session_of(&a.id, "done-old"), 5)
            .await
            .unwrap(),
        SessionStart::Created(_)
    ));
    let kept = store
        .upload_session(&a.id, "done-new")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.completed_file_id.as_deref(), Some("f2"));
    for id in ["running", "expired"] {
        let s = store.upload_session(&a.id, id).await.unwrap().unwrap();
        assert!(s.completed_file_id.is_none(), "{id} stays, in progress");
    }
}

/// Concurrent creates never exceed the limit nor create one id twice.
pub async fn case_concurrent_upload_session_limit(store: &dyn UploadSessionStore) {
    let a = any_user();
    let results = join_all((0..10).map(|i| {
        let id = if i < 5 {
            format!("r{i}")
        } else {
            "same".to_owned()
        };
        store.create_upload_session(session_of(&a.id, &id), 3)
    }))
    .await;
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(SessionStart::Created(_))))
        .count();
    assert_eq!(created, 3);
    assert!(results.iter().all(|r| r.is_ok()));
}
