//! Bad input at the transport level: garbage, truncated and oversized frames,
//! malformed packets, bad polling bodies and event floods, thrown at a real
//! node over raw WebSockets and TCP. Each bad client gets a clear error or a
//! clean close; afterwards the node and its other clients work as before.

mod support;

use serde_json::json;
use std::time::Duration;
use support::app::spawn_app;
use support::sio::SioClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw WebSocket upgrade over TCP, to send bytes no client library would.
async fn raw_websocket(port: u16) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("tcp connects");
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("handshake answered")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"), "upgrade accepted");
    tcp
}

/// Reads until the server closes the TCP connection (bounded).
async fn read_until_closed(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("server did not close the connection within 5 s"),
        }
    }
}

#[actix_web::test]
async fn garbage_truncated_and_oversized_frames_hurt_no_one_else() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let bob = app.register("Bob").await;
    let conversation = app.conversation(&alice, &[&bob]).await;

    let mut a = SioClient::connect(app.port, "/chat", &alice.token).await;
    let mut b = SioClient::connect(app.port, "/chat", &bob.token).await;
    for (c, id) in [(&mut a, 1), (&mut b, 1)] {
        let ack = c
            .emit_ack(
                "/chat",
                id,
                "conversation:join",
                json!({ "conversationId": conversation }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    // Not an Engine.IO packet: closed.
    let mut c = SioClient::open(app.port).await;
    c.send_text("hello there").await;
    assert!(c.closed().await.is_some());

    // An Engine.IO message that is not a Socket.IO packet: closed.
    let mut c = SioClient::open(app.port).await;
    c.send_text("4{{{not a packet").await;
    c.closed().await;

    // A binary frame nobody announced: closed.
    let mut c = SioClient::open(app.port).await;
    c.send_binary(vec![0xde, 0xad, 0xbe, 0xef]).await;
    c.closed().await;

    // An announced attachment that never comes, then a second packet: closed.
    let mut c = SioClient::connect(app.port, "/chat", &alice.token).await;
    c.send_text("451-/chat,[\"send_message\",{\"_placeholder\":true,\"num\":0}]")
        .await;
    c.send_text("42/chat,[\"typing:stop\",{}]").await;
    c.closed().await;

    // Attachments adding up to more than maxPayload, each within it: closed
    // with 1009 at the frame that passes the total (not after the last one
    // announced, which never needs to come).
    let mut c = SioClient::open(app.port).await;
    c.send_text("453-[\"x\",{\"_placeholder\":true,\"num\":0}]")
        .await;
    c.send_binary(vec![1; 600_000]).await;
    c.send_binary(vec![2; 600_000]).await;
    assert_eq!(c.closed().await, Some(1009));

    // A frame over maxPayload: close code 1009.
    let mut c = SioClient::open(app.port).await;
    let mut big = String::from("4");
    big.push_str(&"x".repeat(1_000_001));
    c.send_text(&big).await;
    assert_eq!(c.closed().await, Some(1009));

    // Truncated frame: a header announcing 1000 bytes, 3 sent, then gone.
    let mut tcp = raw_websocket(app.port).await;
    tcp.write_all(&[0x81, 0xfe, 0x03, 0xe8, 1, 2, 3, 4, b'4', b'2'])
        .await
        .unwrap();
    drop(tcp);

    // An unmasked client frame (a protocol violation): the server closes.
    let mut tcp = raw_websocket(app.port).await;
    tcp.write_all(&[0x81, 0x02, b'4', b'2']).await.unwrap();
    read_until_closed(&mut tcp).await;

    // Not HTTP at all.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    tcp.write_all(&[0u8, 159, 146, 150, 255, 13, 10, 13, 10])
        .await
        .unwrap();
    read_until_closed(&mut tcp).await;

    // Polling: a garbage body is refused, an oversized one gets 413.
    let client = awc::Client::default();
    let sid = polling_session(&client, &app).await;
    let res = client
        .post(app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .send_body("\u{1e}\u{1e}zz")
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let sid = polling_session(&client, &app).await;
    let res = client
        .post(app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .send_body(vec![b'4'; 1_000_001])
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);

    // Pings sent without ever polling for the pongs: past the outbound bound
    // (1024) and its headroom for control packets the session is closed as
    // too slow, instead of queueing a pong for every ping.
    let sid = polling_session(&client, &app).await;
    let pings = vec!["2"; 1024 + 200].join("\u{1e}");
    let res = client
        .post(app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .send_body(pings)
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut res = client
        .get(app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.body().await.unwrap();
    assert!(
        status == 400 || &body[..] == b"1",
        "the session should be closed, got {status} with {} bytes",
        body.len()
    );

    // Wrong field types and unknown events: an error, and the socket stays.
    let ack = a
        .emit_ack(
            "/chat",
            2,
            "send_message",
            json!({ "conversationId": 7, "text": [] }),
        )
        .await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "bad_request");
    a.send_text("42/chat,[\"no_such_event\",{}]").await;
    let err = a.expect_event("/chat", "error").await;
    assert_eq!(err["code"], "bad_request");

    // A flood over the per-connection event rate: refused with rate_limited,
    // and the connection stays up.
    let mut flood = SioClient::connect(app.port, "/chat", &bob.token).await;
    for i in 0..150u64 {
        flood
            .send_text(&format!(
                "42/chat,{}[\"typing:stop\",{{\"conversationId\":\"{conversation}\"}}]",
                1000 + i
            ))
            .await;
    }
    let limited = flood.next_text_where(|t| t.contains("rate_limited")).await;
    assert!(limited.starts_with("43/chat,"), "failed ack: {limited}");

    // Everyone else carries on.
    let ack = a
        .emit_ack(
            "/chat",
            3,
            "send_message",
            json!({ "conversationId": conversation, "text": "still here?", "clientId": "r1" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let message = b.expect_event("/chat", "new_message").await;
    assert_eq!(message["text"], "still here?");
    assert_eq!(message["seq"], 1);
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, 200);
    let ack = b
        .emit_ack(
            "/chat",
            2,
            "message:read",
            json!({ "conversationId": conversation, "seq": 1 }),
        )
        .await;
    assert_eq!(ack["ok"], true, "bob's connection still works: {ack}");
}

/// Opens an Engine.IO session over long-polling; its id.
async fn polling_session(client: &awc::Client, app: &support::app::TestApp) -> String {
    let open = client
        .get(app.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    let open: serde_json::Value = serde_json::from_slice(&open[1..]).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}
