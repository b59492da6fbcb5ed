//! A small Socket.IO client over a WebSocket, built on the server's own codec,
//! for tests that need to see raw frames (the official `socket.io-client`
//! suite in `tests/node` covers the client's side of the contract).

use actix_codec::Framed;
use actix_http::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;

/// How a namespace appears in a packet: nothing for `/`, else `/nsp,`.
pub fn prefix(nsp: &str) -> String {
    if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    }
}

/// One WebSocket connection speaking Engine.IO / Socket.IO.
pub struct SioClient {
    pub framed: Framed<BoxedSocket, Codec>,
}

/// What the server sent.
#[derive(Debug)]
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
    Closed(Option<u16>),
}

impl SioClient {
    /// Opens a WebSocket session and reads the OPEN packet.
    pub async fn open(port: u16) -> Self {
        let (_, framed) = awc::Client::new()
            .ws(format!(
                "ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
            ))
            .max_frame_size(8 << 20)
            .connect()
            .await
            .expect("websocket connects");
        let mut c = SioClient { framed };
        match c.recv().await {
            Received::Text(t) => assert!(t.starts_with("0{"), "OPEN first, got {t}"),
            other => panic!("expected OPEN, got {other:?}"),
        }
        c
    }

    /// Opens a session and connects namespace `nsp` with `token`.
    pub async fn connect(port: u16, nsp: &str, token: &str) -> Self {
        let mut c = Self::open(port).await;
        let answer = c.join_nsp(nsp, token).await;
        assert!(
            answer.starts_with(&format!("40{}{{", prefix(nsp))) && answer.contains("\"sid\""),
            "CONNECT answer: {answer}"
        );
        c
    }

    /// Sends a CONNECT for `nsp` and returns the answer packet's text
    /// (CONNECT or CONNECT_ERROR).
    pub async fn join_nsp(&mut self, nsp: &str, token: &str) -> String {
        let p = prefix(nsp);
        self.send_text(&format!("40{p}{}", serde_json::json!({ "token": token })))
            .await;
        let (ok, err) = (format!("40{p}"), format!("44{p}"));
        self.next_text_where(|t| t.starts_with(&ok) || t.starts_with(&err))
            .await
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("frame sent");
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.framed
            .send(Message::Binary(data.into()))
            .await
            .expect("frame sent");
    }

    /// Next frame (answers pings), with a 5 s bound.
    pub async fn recv(&mut self) -> Received {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), self.framed.next())
                .await
                .expect("server answered within 5 s");
            match next {
                Some(Ok(Frame::Text(b))) => {
                    let t = String::from_utf8(b.to_vec()).expect("utf-8 text frame");
                    if t == "2" {
                        self.send_text("3").await;
                        continue;
                    }
                    return Received::Text(t);
                }
                Some(Ok(Frame::Binary(b))) => return Received::Binary(b.to_vec()),
                Some(Ok(Frame::Close(reason))) => {
                    return Received::Closed(reason.map(|r| u16::from(r.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    /// The next text packet satisfying `pred` (others are skipped).
    pub async fn next_text_where(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            match self.recv().await {
                Received::Text(t) if pred(&t) => return t,
                Received::Closed(code) => panic!("closed ({code:?}) while waiting"),
                _ => continue,
            }
        }
    }

    /// Emits `event` with `data` on `nsp` asking for ack `id`; returns the ack's first argument.
    pub async fn emit_ack(&mut self, nsp: &str, id: u64, event: &str, data: Value) -> Value {
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        self.send_text(&format!(
            "42{prefix}{id}{}",
            serde_json::json!([event, data])
        ))
        .await;
        let want = format!("43{prefix}{id}[");
        let text = self.next_text_where(|t| t.starts_with(&want)).await;
        let args: Value = serde_json::from_str(&text[want.len() - 1..]).expect("ack json");
        args[0].clone()
    }

    /// Joins `conversation` on this client's `/chat` socket (ack id 1),
    /// which must succeed; returns the ack.
    pub async fn join_conversation(&mut self, conversation: &str) -> Value {
        let ack = self
            .emit_ack(
                "/chat",
                1,
                "conversation:join",
                serde_json::json!({ "conversationId": conversation }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        ack
    }

    /// Emits `event` on `nsp` with one binary attachment (the data holds the
    /// placeholder) asking for ack `id`; returns the ack's first argument.
    pub async fn emit_binary_ack(
        &mut self,
        nsp: &str,
        id: u64,
        event: &str,
        data: Value,
        attachment: Vec<u8>,
    ) -> Value {
        let prefix = prefix(nsp);
        self.send_text(&format!(
            "451-{prefix}{id}{}",
            serde_json::json!([event, data])
        ))
        .await;
        // Over WebSocket an attachment is one raw binary frame.
        self.send_binary(attachment).await;
        let want = format!("43{prefix}{id}[");
        let text = self.next_text_where(|t| t.starts_with(&want)).await;
        let args: Value = serde_json::from_str(&text[want.len() - 1..]).expect("ack json");
        args[0].clone()
    }

    /// Emits `event` asking for ack `id` and waits for both the ack and the
    /// event `want` (whichever order they come in); returns both first arguments.
    pub async fn emit_ack_and_event(
        &mut self,
        nsp: &str,
        id: u64,
        event: &str,
        data: Value,
        want: &str,
    ) -> (Value, Value) {
        let prefix = prefix(nsp);
        self.send_text(&format!(
            "42{prefix}{id}{}",
            serde_json::json!([event, data])
        ))
        .await;
        let ack_head = format!("43{prefix}{id}[");
        let event_head = format!("42{prefix}[\"{want}\"");
        let (mut ack, mut ev) = (None, None);
        while ack.is_none() || ev.is_none() {
            let text = self
                .next_text_where(|t| t.starts_with(&ack_head) || t.starts_with(&event_head))
                .await;
            if text.starts_with(&ack_head) {
                let args: Value =
                    serde_json::from_str(&text[ack_head.len() - 1..]).expect("ack json");
                ack = Some(args[0].clone());
            } else {
                let args: Value =
                    serde_json::from_str(&text[2 + prefix.len()..]).expect("event json");
                ev = Some(args[1].clone());
            }
        }
        (ack.unwrap_or_default(), ev.unwrap_or_default())
    }

    /// The next event on `nsp`: its name and first argument.
    pub async fn next_event(&mut self, nsp: &str) -> (String, Value) {
        let want = format!("42{}[", prefix(nsp));
        let text = self.next_text_where(|t| t.starts_with(&want)).await;
        let args: Value = serde_json::from_str(&text[want.len() - 1..]).expect("event json");
        (
            args[0].as_str().unwrap_or_default().to_owned(),
            args[1].clone(),
        )
    }

    /// Waits for event `name` on `nsp`; returns its first argument.
    pub async fn expect_event(&mut self, nsp: &str, name: &str) -> Value {
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        let want = format!("42{prefix}[\"{name}\"");
        let text = self.next_text_where(|t| t.starts_with(&want)).await;
        let args: Value = serde_json::from_str(&text[2 + prefix.len()..]).expect("event json");
        args[1].clone()
    }

    /// Whether the server closes this connection within 5 s; the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(code) = self.recv().await {
                return code;
            }
        }
    }

    /// Reads everything for `window`; panics if event `name` of `nsp`
    /// arrives meanwhile.
    pub async fn expect_no_event(&mut self, nsp: &str, name: &str, window: Duration) {
        let want = format!("42{}[\"{name}\"", prefix(nsp));
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.framed.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Frame::Text(b)))) => {
                    let t = String::from_utf8_lossy(&b).to_string();
                    if t == "2" {
                        self.send_text("3").await;
                    }
                    assert!(!t.starts_with(&want), "unexpected {name}: {t}");
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => return,
            }
        }
    }
}
