//! Cluster-wide state through the test Redis, with real nodes: two nodes on
//! one key prefix share the HTTP rate limits and the upload-session state (an
//! upload initiated on node 1 resumes on node 2, which sees the chunks node 1
//! stored); a restarted node keeps upload state it finds in Redis. Each test
//! has its own key prefix; without a test Redis they say so and pass (see
//! `huddle::cluster::testing`).

mod support;

use base64::Engine as _;
use huddle::cluster::testing;
use serde_json::json;
use support::app::spawn_app_on_redis;
use support::sio::SioClient;

const NSP: &str = "/file-upload";

/// Login attempts (limited per IP) alternate between two nodes: the limit is
/// the cluster's, not each node's.
#[actix_web::test]
async fn http_rate_limits_count_across_nodes() {
    let prefix = testing::unique_prefix("rl-nodes");
    let limits = [("HUDDLE__RATE_LIMITS__AUTH_IP_PER_MINUTE", "4")];
    let Some(node1) = spawn_app_on_redis(&prefix, &limits).await else {
        return;
    };
    let node2 = spawn_app_on_redis(&prefix, &limits)
        .await
        .expect("second node");
    let login = json!({ "email": "nobody@example.test", "password": "wrong password" });
    for i in 0..4 {
        let node = if i % 2 == 0 { &node1 } else { &node2 };
        let (status, body) = node.post("/api/v1/auth/login", None, login.clone()).await;
        assert_eq!(status, 401, "attempt {i} is counted, not limited: {body}");
    }
    for node in [&node1, &node2] {
        let (status, body) = node.post("/api/v1/auth/login", None, login.clone()).await;
        assert_eq!(status, 429, "the fifth attempt, on either node: {body}");
        assert_eq!(body["error"]["code"], "rate_limited");
    }
}

/// An upload initiated on node 1 resumes on node 2: same session, and the
/// chunks node 1 stored are listed there. (Completing it on node 2 needs a
/// blob store both share, such as S3; each test node here has its own
/// directory.)
#[actix_web::test]
async fn upload_state_is_shared_between_nodes() {
    let prefix = testing::unique_prefix("uploads-nodes");
    let Some(node1) = spawn_app_on_redis(&prefix, &[]).await else {
        return;
    };
    let node2 = spawn_app_on_redis(&prefix, &[]).await.expect("second node");
    let user = node1.register("Ada").await;
    let data = vec![b'x'; 3 * 1024];
    let req = json!({ "uploadId": "cross-1", "fileName": "notes.txt", "fileSize": data.len(),
        "mimeType": "text/plain", "chunkSize": 1024 });

    let mut c1 = SioClient::connect(node1.port, NSP, &user.token).await;
    let up = c1.emit_ack(NSP, 1, "initiate_upload", req.clone()).await;
    assert_eq!(up["ok"], true, "{up}");
    for i in 0..2usize {
        let chunk = &data[i * 1024..(i + 1) * 1024];
        let ack = c1
            .emit_ack(
                NSP,
                2 + i as u64,
                "upload_chunk",
                json!({ "sessionId": up["sessionId"], "uploadId": "cross-1", "chunkIndex": i,
                    "chunkData": base64::engine::general_purpose::STANDARD.encode(chunk) }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    // Node 1 counted the chunk bytes it stored.
    let mut res = awc::Client::default()
        .get(node1.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    let text = String::from_utf8(res.body().await.expect("body").to_vec()).expect("utf-8");
    assert!(
        text.lines().any(|l| l == "huddle_upload_bytes_total 2048"),
        "{text}"
    );

    let mut c2 = SioClient::connect(node2.port, NSP, &user.token).await;
    let resumed = c2.emit_ack(NSP, 1, "initiate_upload", req.clone()).await;
    assert_eq!(resumed["ok"], true, "{resumed}");
    assert_eq!(resumed["sessionId"], up["sessionId"], "the same session");
    assert_eq!(resumed["receivedChunks"], json!([0, 1]));
    assert!(resumed["expiresAt"].is_string());

    // A restart of node 2 (a fresh process on the same Redis) still knows it.
    let data_dir = node2.stop().await;
    let node2 = support::app::spawn_app_in(
        data_dir,
        &support::app::redis_env(&prefix)
            .expect("test Redis")
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await;
    let mut c3 = SioClient::connect(node2.port, NSP, &user.token).await;
    let again = c3.emit_ack(NSP, 1, "initiate_upload", req).await;
    assert_eq!(again["sessionId"], up["sessionId"], "{again}");
    assert_eq!(again["receivedChunks"], json!([0, 1]));
}

/// `/ready` checks Redis when it is configured.
#[actix_web::test]
async fn ready_reports_redis() {
    let prefix = testing::unique_prefix("ready");
    let Some(node) = spawn_app_on_redis(&prefix, &[]).await else {
        return;
    };
    let (status, body) = node.get("/ready", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
}

/// A node whose Redis is unreachable stays in the load balancer: `/ready`
/// answers 200 `degraded` naming Redis, and it keeps serving HTTP (the
/// rate limiter answers from the node's own counts).
#[actix_web::test]
async fn ready_is_degraded_without_redis() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let node = support::app::spawn_app(&[
        ("REDIS_URL", url.as_str()),
        ("HUDDLE__RATE_LIMITS__HTTP_IP_PER_MINUTE", "1000"),
    ])
    .await;
    let started = std::time::Instant::now();
    let (status, body) = node.get("/ready", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_ne!(body["checks"]["redis"], "ok");
    assert_eq!(body["checks"]["store"], "ok");
    assert_eq!(body["degraded"], json!(["redis"]));
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    let user = node.register("Grace").await;
    let (status, me) = node.get("/api/v1/auth/me", Some(&user.token)).await;
    assert_eq!(status, 200, "{me}");
}

/// What the probe thread of
/// `redis_work_goes_on_while_the_main_thread_is_blocked` saw, and when.
struct Probe {
    /// The broadcast appeared on its room's Redis channel.
    published: Option<std::time::Instant>,
    /// The bridge read the answer to its publish (its counter moved).
    acknowledged: Option<std::time::Instant>,
    /// A command on the node's shared connection got its answer.
    answered: Option<std::time::Instant>,
}

/// The node's Redis work runs on a thread of its own: while the main thread
/// (the System arbiter, where the registry and the rooms live) is blocked
/// for longer than a Redis command may take (2 s), a broadcast handed to the
/// bridge from another thread still reaches Redis and the bridge reads the
/// answer, and a command on the shared connection is answered. (Before,
/// the bridge and the connection's driver lived on the main thread: nothing
/// was published until it was free again, and replies arrived after the
/// response timeout: "publishing failed, delivering on this node only".)
#[actix_web::test]
async fn redis_work_goes_on_while_the_main_thread_is_blocked() {
    use futures_util::StreamExt as _;
    use huddle_actors::ids::{RoomName, UserId};
    use std::time::{Duration, Instant};

    let prefix = testing::unique_prefix("redis-thread");
    let Some(node) = spawn_app_on_redis(&prefix, &[]).await else {
        return;
    };
    let url = testing::url().expect("the test Redis");
    let engine = node.engine.clone();
    let channel = format!("{prefix}:r:/,probe");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let probe = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the probe's runtime");
        rt.block_on(async move {
            let client = redis::Client::open(url).expect("the test Redis URL");
            let mut pubsub = client.get_async_pubsub().await.expect("a subscriber");
            pubsub.subscribe(&channel).await.expect("SUBSCRIBE");
            let mut messages = pubsub.into_on_message();
            let before = engine.metrics().snapshot().bridge_published;
            ready_tx.send(()).expect("the test waits");
            // Well inside the main thread's block.
            tokio::time::sleep(Duration::from_millis(200)).await;
            engine.emit_raw("/", &[RoomName("probe".into())], None, "probe", &[b"1"]);
            let published = tokio::time::timeout(Duration::from_millis(1200), messages.next())
                .await
                .ok()
                .flatten()
                .map(|_| Instant::now());
            let acknowledged = tokio::time::timeout(Duration::from_millis(500), async {
                while engine.metrics().snapshot().bridge_published == before {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Instant::now()
            })
            .await
            .ok();
            let answered = tokio::time::timeout(
                Duration::from_millis(800),
                engine.user_connections(&UserId("nobody".into())),
            )
            .await
            .ok()
            .flatten()
            .map(|_| Instant::now());
            Probe {
                published,
                acknowledged,
                answered,
            }
        })
    });
    ready_rx.recv().expect("the probe is ready");
    // Blocks the System arbiter (this test runs on it), as a saturated core
    // would, for longer than `RESPONSE_TIMEOUT`.
    std::thread::sleep(Duration::from_secs(3));
    let unblocked = Instant::now();
    let probe = probe.join().expect("the probe finishes");
    assert!(
        probe.published.is_some_and(|t| t < unblocked),
        "the broadcast reached Redis while the main thread was blocked"
    );
    assert!(
        probe.acknowledged.is_some_and(|t| t < unblocked),
        "the bridge read Redis's answer while the main thread was blocked"
    );
    assert!(
        probe.answered.is_some_and(|t| t < unblocked),
        "a command on the shared connection was answered while the main thread was blocked"
    );
}
