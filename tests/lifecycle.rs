//! The node's lifecycle as clients see it: a drain (what `SIGTERM` does)
//! closes every connection with "going away" so clients reconnect elsewhere,
//! and the node then stops accepting.

mod support;

use support::app::spawn_app;
use support::sio::SioClient;

#[actix_web::test]
async fn drain_closes_connections_and_stops_accepting() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let mut chat = SioClient::connect(app.port, "/chat", &alice.token).await;
    let mut root = SioClient::connect(app.port, "/", &alice.token).await;
    assert_eq!(app.engine.session_count(), 2);

    let (engine, handle) = (app.engine.clone(), app.handle.clone());
    let drain = actix_web::rt::spawn(async move { huddle::startup::drain(&engine, handle).await });
    assert_eq!(chat.closed().await, Some(1001));
    assert_eq!(root.closed().await, Some(1001));
    drain.await.expect("drain finishes");
    assert_eq!(app.engine.session_count(), 0);

    let refused = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await;
    assert!(refused.is_err(), "the listener is closed after a drain");
}

/// The test page is served at `/` next to the API, whose JSON answers (404
/// included) are unchanged; an unknown page path is a JSON 404 too.
#[actix_web::test]
async fn the_test_page_is_served_beside_the_api() {
    let app = spawn_app(&[]).await;
    let client = awc::Client::default();
    let mut page = client.get(app.url("/")).send().await.expect("GET /");
    assert_eq!(page.status().as_u16(), 200);
    let content_type = page
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = page.body().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("js/app.js"));
    let script = client.get(app.url("/js/sio.js")).send().await.unwrap();
    assert_eq!(script.status().as_u16(), 200);

    for path in ["/no-such-page", "/api/v1/no-such-route", "/js/missing.js"] {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let (status, body) = app.get("/health", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}

/// Without its directory the page is simply not served; the API still is.
#[actix_web::test]
async fn a_missing_static_dir_leaves_the_api_alone() {
    let app = spawn_app(&[("HUDDLE__SERVER__STATIC_DIR", "/nonexistent/huddle-static")]).await;
    let (status, body) = app.get("/", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, 200);
}
