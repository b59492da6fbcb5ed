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
