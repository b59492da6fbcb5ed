//! The operations surface through a real node: `/metrics` scraped after some
//! traffic and parsed as Prometheus text, the publish API delivering to a
//! socket client, with every bad input refused in the contract's shape, and
//! CORS (`CORS_ORIGINS`) for browsers on other origins.

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use support::app::{spawn_app, TestApp};
use support::sio::SioClient;

const KEY: &str = "publish-test-key-0123456789";

/// `name{labels}` → value, for every sample line; panics on a line that is
/// not a comment nor `series value`.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        assert!(
            series
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic()),
            "bad series {series}"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(app: &TestApp) -> (String, HashMap<String, f64>) {
    let mut res = awc::Client::default()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(res.status().as_u16(), 200);
    let ctype = res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    let samples = parse_metrics(&text);
    (text, samples)
}

#[actix_web::test]
async fn metrics_count_traffic() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&alice, &[&bob]).await;
    let mut a = SioClient::connect(app.port, "/chat", &alice.token).await;
    a.join_conversation(&conversation).await;
    let ack = a
        .emit_ack(
            "/chat",
            2,
            "send_message",
            json!({ "conversationId": conversation, "text": "hello", "clientId": "c1" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, _) = app.get("/no/such/path", None).await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, 200);

    let (text, m) = scrape(&app).await;
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("{k} missing from\n{text}"))
    };
    assert!(get("huddle_connections") >= 1.0);
    assert!(get("huddle_connections_total") >= 1.0);
    assert!(get("huddle_engineio_sessions") >= 1.0);
    // The conversation's room (a /chat socket joins no room of its user).
    assert!(get("huddle_rooms") >= 1.0);
    assert!(get("huddle_socketio_events_in_total") >= 2.0);
    assert!(get("huddle_socketio_packets_out_total") >= 3.0);
    assert!(get("huddle_bytes_in_total") > 0.0);
    assert!(get("huddle_bytes_out_total") > 0.0);
    assert!(get("huddle_broadcasts_total") >= 1.0);
    assert_eq!(get("huddle_upload_bytes_total"), 0.0);
    assert_eq!(get("huddle_bridge_published_total"), 0.0);
    assert_eq!(get("huddle_bridge_lag_seconds_count"), 0.0);
    // The one message sent, durable in the store before its ack.
    assert_eq!(get("huddle_message_store_seconds_count"), 1.0);
    assert!(get("huddle_message_store_seconds_sum") > 0.0);
    assert_eq!(
        get(r#"huddle_message_store_seconds_bucket{le="+Inf"}"#),
        1.0
    );
    // HTTP: route patterns, never raw paths; unknown paths as `unmatched`.
    assert_eq!(
        get(
            r#"huddle_http_requests_total{method="POST",route="/api/v1/auth/register",status="2xx"}"#
        ),
        2.0
    );
    assert_eq!(
        get(
            r#"huddle_http_requests_total{method="GET",route="/api/v1/conversations/{id}/messages",status="2xx"}"#
        ),
        1.0
    );
    assert!(
        get(r#"huddle_http_requests_total{method="GET",route="unmatched",status="4xx"}"#) >= 1.0
    );
    assert!(!text.contains(&conversation), "no raw path in a label");
    let inf = get(
        r#"huddle_http_request_duration_seconds_bucket{method="POST",route="/api/v1/auth/register",status="2xx",le="+Inf"}"#,
    );
    assert_eq!(inf, 2.0);
    // Buckets are cumulative.
    let mut last = 0.0;
    for line in text.lines().filter(|l| l.starts_with(r#"huddle_http_request_duration_seconds_bucket{method="POST",route="/api/v1/auth/register""#)) {
        let v: f64 = line.rsplit_once(' ').unwrap().1.parse().unwrap();
        assert!(v >= last, "{line}");
        last = v;
    }
}

async fn publish(app: &TestApp, key: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = awc::Client::default()
        .post(app.url("/api/v1/publish"))
        .insert_header(("content-type", "application/json"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let mut res = req.send_body(body.to_owned()).await.expect("publish sent");
    let status = res.status().as_u16();
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[actix_web::test]
async fn publish_reaches_sockets_in_the_rooms() {
    let app = spawn_app(&[("SERVICE_KEYS", &format!("other-key,{KEY}"))]).await;
    let alice = app.register("Alice").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&alice, &[&bob]).await;
    let mut chat = SioClient::connect(app.port, "/chat", &alice.token).await;
    let mut root = SioClient::connect(app.port, "/", &alice.token).await;
    chat.join_conversation(&conversation).await;

    let chat_room = format!("conversation:{conversation}");
    let body = json!({ "namespace": "/chat", "rooms": [chat_room, "nobody-here"], "event": "announcement",
        "data": { "text": "maintenance at noon", "n": [1, 2] } });
    let (status, answer) = publish(&app, Some(KEY), &body.to_string()).await;
    assert_eq!((status, answer), (202, json!({ "ok": true })));
    let got = chat.expect_event("/chat", "announcement").await;
    assert_eq!(got, json!({ "text": "maintenance at noon", "n": [1, 2] }));
    // The default namespace is "/"; only its sockets get it (there, every
    // socket is in its user's room).
    let room = format!("user:{}", alice.id);
    let body = json!({ "rooms": [room], "event": "ping-all", "data": "hi" });
    assert_eq!(
        publish(&app, Some("other-key"), &body.to_string()).await.0,
        202
    );
    assert_eq!(root.expect_event("/", "ping-all").await, json!("hi"));
    chat.expect_no_event("/chat", "ping-all", std::time::Duration::from_millis(300))
        .await;
}

/// A broadcast naming several rooms reaches each socket in them once; its
/// rooms hold their deliveries back until the last of them is done (the test
/// node writes through, so it batches) and then write them out together.
#[actix_web::test]
async fn a_broadcast_to_several_rooms_is_batched_and_reaches_each_socket_once() {
    let app = spawn_app(&[("SERVICE_KEYS", KEY)]).await;
    let alice = app.register("Alice").await;
    let bob = app.register("Bob").await;
    let mut a = SioClient::connect(app.port, "/chat", &alice.token).await;
    let mut b = SioClient::connect(app.port, "/chat", &bob.token).await;
    let mut conversations = Vec::new();
    for _ in 0..3 {
        let conversation = app.conversation(&alice, &[&bob]).await;
        a.join_conversation(&conversation).await;
        conversations.push(conversation);
    }
    // Bob is in the first room only.
    b.join_conversation(&conversations[0]).await;
    let rooms: Vec<String> = conversations
        .iter()
        .map(|c| format!("conversation:{c}"))
        .collect();
    let held = |m: &HashMap<String, f64>| m["huddle_deliveries_held_total"];
    assert_eq!(held(&scrape(&app).await.1), 0.0);

    let body = json!({ "namespace": "/chat", "rooms": rooms, "event": "notice", "data": 1 });
    assert_eq!(publish(&app, Some(KEY), &body.to_string()).await.0, 202);
    assert_eq!(a.expect_event("/chat", "notice").await, json!(1));
    assert_eq!(b.expect_event("/chat", "notice").await, json!(1));
    let quiet = std::time::Duration::from_millis(300);
    a.expect_no_event("/chat", "notice", quiet).await;
    // Alice's one delivery and Bob's, both held until the third room.
    assert_eq!(held(&scrape(&app).await.1), 2.0);
}

#[actix_web::test]
async fn publish_refuses_bad_requests() {
    let app = spawn_app(&[("SERVICE_KEYS", KEY)]).await;
    let ok = json!({ "rooms": ["r"], "event": "e", "data": 1 }).to_string();
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (None, ok.clone(), 401, "unauthorized"),
        (Some("wrong"), ok.clone(), 401, "unauthorized"),
        (Some(&KEY[..KEY.len() - 1]), ok.clone(), 401, "unauthorized"),
        (Some(KEY), "{".into(), 400, "bad_request"),
        (Some(KEY), json!({ "namespace": "/nope", "rooms": ["r"], "event": "e", "data": 1 }).to_string(), 400, "bad_request"),
        (Some(KEY), json!({ "rooms": [], "event": "e", "data": 1 }).to_string(), 400, "bad_request"),
        (Some(KEY), json!({ "rooms": (0..101).map(|i| format!("r{i}")).collect::<Vec<_>>(), "event": "e", "data": 1 }).to_string(), 400, "bad_request"),
        (Some(KEY), json!({ "rooms": ["x".repeat(257)], "event": "e", "data": 1 }).to_string(), 400, "bad_request"),
        (Some(KEY), json!({ "rooms": ["r"], "event": "disconnect", "data": 1 }).to_string(), 400, "bad_request"),
        (Some(KEY), json!({ "rooms": ["r"], "event": "", "data": 1 }).to_string(), 400, "bad_request"),
        (Some(KEY), json!({ "rooms": ["r"], "event": "e" }).to_string(), 400, "bad_request"),
        (Some(KEY), json!({ "rooms": ["r"], "event": "e", "data": 1, "x": 1 }).to_string(), 400, "bad_request"),
        (Some(KEY), json!({ "rooms": ["r"], "event": "e", "data": "x".repeat(70_000) }).to_string(), 413, "payload_too_large"),
        // Past actix's own default body limit (256 KiB): still the key first,
        // then the contract's JSON error.
        (None, "x".repeat(300_000), 401, "unauthorized"),
        (Some("wrong"), "x".repeat(300_000), 401, "unauthorized"),
        (Some(KEY), json!({ "rooms": ["r"], "event": "e", "data": "x".repeat(300_000) }).to_string(), 413, "payload_too_large"),
    ];
    for (key, body, status, code) in cases {
        let (got, answer) = publish(&app, key, &body).await;
        assert_eq!(got, status, "{}: {answer}", &body[..body.len().min(80)]);
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    // Not JSON.
    let mut res = awc::Client::default()
        .post(app.url("/api/v1/publish"))
        .bearer_auth(KEY)
        .insert_header(("content-type", "text/plain"))
        .send_body(ok.clone())
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "unsupported_media_type"
    );
    // GET is not the API.
    let (status, _) = app.get("/api/v1/publish", None).await;
    assert_eq!(status, 405);

    // Without service keys the API does not exist.
    let off = spawn_app(&[]).await;
    let (status, answer) = publish(&off, Some(KEY), &ok).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "not_found");
}

/// Sends `method path` with an `Origin` (and, for a preflight, the
/// requested method); the answer's status and its CORS allow-origin header.
async fn with_origin(
    app: &TestApp,
    method: &str,
    path: &str,
    origin: &str,
    preflight: bool,
) -> (u16, Option<String>) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = awc::Client::default()
        .request(method, app.url(path))
        .insert_header(("Origin", origin));
    if preflight {
        req = req
            .insert_header(("Access-Control-Request-Method", "POST"))
            .insert_header((
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ));
    }
    let res = req.send().await.expect("request sent");
    let allowed = res
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), allowed)
}

#[actix_web::test]
async fn cors_lets_the_listed_origins_call_the_api_and_the_polling_transport_and_no_others() {
    let app = spawn_app(&[("CORS_ORIGINS", "https://app.example,https://admin.example")]).await;
    for origin in ["https://app.example", "https://admin.example"] {
        // A preflight for an authenticated JSON POST, and the calls themselves.
        let (status, allowed) =
            with_origin(&app, "OPTIONS", "/api/v1/workspaces", origin, true).await;
        assert_eq!(status, 200, "preflight from {origin}");
        assert_eq!(allowed.as_deref(), Some(origin));
        let (status, allowed) = with_origin(&app, "GET", "/health", origin, false).await;
        assert_eq!((status, allowed.as_deref()), (200, Some(origin)));
        // The long-polling handshake of a browser client on another origin.
        let (status, allowed) = with_origin(
            &app,
            "GET",
            "/socket.io/?EIO=4&transport=polling",
            origin,
            false,
        )
        .await;
        assert_eq!((status, allowed.as_deref()), (200, Some(origin)));
    }
    // Another origin gets no allow-origin: the browser keeps the answer from it.
    let (status, allowed) = with_origin(
        &app,
        "OPTIONS",
        "/api/v1/workspaces",
        "https://evil.example",
        true,
    )
    .await;
    assert_ne!(status, 200, "preflight from an unlisted origin");
    assert_eq!(allowed, None);
    let (_, allowed) = with_origin(&app, "GET", "/health", "https://evil.example", false).await;
    assert_eq!(allowed, None);

    // Without CORS_ORIGINS, no origin but the server's own is let in.
    let same_only = spawn_app(&[]).await;
    let (_, allowed) =
        with_origin(&same_only, "GET", "/health", "https://app.example", false).await;
    assert_eq!(allowed, None);
}

/// `huddle_workspace_actors` once it has settled at `want` (within 2 s).
async fn workspace_actors_settle_at(app: &TestApp, want: f64) {
    let mut last = f64::NAN;
    for _ in 0..40 {
        last = scrape(app).await.1["huddle_workspace_actors"];
        if last == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("huddle_workspace_actors is {last}, expected {want}");
}

#[actix_web::test]
async fn made_up_workspace_ids_leave_no_workspace_actors_behind() {
    let app = spawn_app(&[]).await;
    let ann = app.register("Ann").await;
    let (status, ws) = app
        .post(
            "/api/v1/workspaces",
            Some(&ann.token),
            json!({ "name": "Acme" }),
        )
        .await;
    assert_eq!(status, 201, "{ws}");
    let mut c = SioClient::connect(app.port, "/", &ann.token).await;
    // Thirty ids nobody owns: each is refused, and no actor stays for them.
    for i in 0..30u64 {
        let res = c
            .emit_ack(
                "/",
                10 + i,
                "room:join",
                json!({ "workspaceId": format!("made-up-{i}") }),
            )
            .await;
        assert_eq!(res["ok"], false, "{res}");
        assert_eq!(res["error"]["code"], "forbidden", "{res}");
    }
    workspace_actors_settle_at(&app, 0.0).await;
    // A workspace in use keeps its actor (its membership cache).
    let res = c
        .emit_ack("/", 100, "room:join", json!({ "workspaceId": ws["id"] }))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    workspace_actors_settle_at(&app, 1.0).await;
}

/// A long-polling handshake: status, `Retry-After`, body.
async fn polling_handshake(
    app: &TestApp,
    forwarded_for: Option<&str>,
) -> (u16, Option<String>, Vec<u8>) {
    let mut req = awc::Client::default().get(app.url("/socket.io/?EIO=4&transport=polling"));
    if let Some(f) = forwarded_for {
        req = req.insert_header(("X-Forwarded-For", f));
    }
    let mut res = req.send().await.expect("handshake sent");
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        res.status().as_u16(),
        retry,
        res.body().await.unwrap().to_vec(),
    )
}

#[actix_web::test]
async fn new_connections_are_limited_per_client_address() {
    let app = spawn_app(&[("HUDDLE__RATE_LIMITS__SOCKET_HANDSHAKES_IP_PER_MINUTE", "3")]).await;
    let mut sids = Vec::new();
    for _ in 0..3 {
        let (status, _, body) = polling_handshake(&app, None).await;
        assert_eq!(status, 200);
        let open: Value = serde_json::from_slice(&body[1..]).unwrap();
        sids.push(open["sid"].as_str().unwrap().to_owned());
    }
    // The fourth in the minute: 429 with Retry-After and an Engine.IO-shaped
    // error; an X-Forwarded-For from an untrusted client changes nothing.
    for forwarded in [None, Some("203.0.113.9")] {
        let (status, retry, body) = polling_handshake(&app, forwarded).await;
        assert_eq!(status, 429);
        let secs: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=120).contains(&secs), "Retry-After {secs}");
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["code"], 4, "{err}");
    }
    // A WebSocket handshake is a new connection too.
    let ws = awc::Client::default()
        .ws(app
            .url("/socket.io/?EIO=4&transport=websocket")
            .replace("http", "ws"))
        .connect()
        .await;
    match ws {
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 429),
        Err(e) => panic!("expected 429, got {e}"),
        Ok(_) => panic!("the WebSocket handshake was let in"),
    }
    // The sessions already open go on: each takes a CONNECT to `/` (without
    // a token) and its poll brings the answer.
    for sid in &sids {
        let url = app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"));
        let res = awc::Client::default()
            .post(&url)
            .send_body("40")
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let mut res = awc::Client::default().get(&url).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let body = res.body().await.unwrap();
        assert!(
            body.starts_with(b"44{"),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }
    let (_, samples) = scrape(&app).await;
    assert_eq!(samples["huddle_handshakes_limited_total"], 3.0);

    // Behind a trusted proxy each client address counts apart: the first
    // one X-Forwarded-For lists.
    let proxied = spawn_app(&[
        ("HUDDLE__RATE_LIMITS__SOCKET_HANDSHAKES_IP_PER_MINUTE", "1"),
        ("HUDDLE__SERVER__TRUST_PROXY_HEADERS", "true"),
    ])
    .await;
    let a = Some("198.51.100.7, 10.0.0.1");
    assert_eq!(polling_handshake(&proxied, a).await.0, 200);
    assert_eq!(polling_handshake(&proxied, a).await.0, 429);
    assert_eq!(
        polling_handshake(&proxied, Some("198.51.100.8")).await.0,
        200
    );
}
