//! Opening a Socket.IO session over WebSocket: TCP from a chosen loopback
//! source address, the WebSocket handshake, Engine.IO's open packet, and the
//! CONNECT of a namespace with a token. Also the JWTs the bench signs itself.

use crate::proto::{self, Engine};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// One WebSocket connection.
pub type Ws = WebSocketStream<TcpStream>;

/// Errors while connecting, with what went wrong in words.
pub type Error = String;

/// A server to talk to: `http://host:port`.
#[derive(Clone, Debug)]
pub struct Target {
    /// Resolved address.
    pub addr: SocketAddr,
    /// `host:port` as given (the `Host` header).
    pub host: String,
}

impl Target {
    /// Parses `http://host:port` (a trailing `/` is ignored).
    pub fn parse(url: &str) -> Result<Target, Error> {
        let host = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?
            .trim_end_matches('/')
            .to_owned();
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e}"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| format!("{url}: no IPv4 address"))?;
        Ok(Target { addr, host })
    }
}

/// Claims of the tokens the bench signs (HS256).
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    name: &'a str,
    exp: u64,
}

/// Signs an access token for `user`, valid for a day.
pub fn token(secret: &str, user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 86_400;
    let claims = Claims {
        sub: user,
        name: user,
        exp,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing of plain claims cannot fail")
}

/// The `i`-th loopback source address of `n` (127.0.0.1 … 127.0.0.n).
pub fn source_ip(i: usize, n: u8) -> Option<Ipv4Addr> {
    (n > 1).then(|| Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(n)) as u8))
}

/// Opens an Engine.IO session over WebSocket and reads its open packet.
pub async fn open(target: &Target, source: Option<Ipv4Addr>) -> Result<Ws, Error> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::from((ip, 0)))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", target.addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    // Small buffers: ten thousand idle connections must not cost the bench
    // gigabytes (tungstenite reserves 128 KiB per read buffer by default).
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", target.host);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| format!("websocket handshake: {e}"))?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if matches!(proto::engine(t.as_bytes()), Engine::Open(_)) => {
            Ok(ws)
        }
        other => Err(format!("expected the Engine.IO open packet, got {other:?}")),
    }
}

/// CONNECTs namespace `nsp` with `token`, answering pings meanwhile.
pub async fn connect_nsp(ws: &mut Ws, nsp: &str, token: &str) -> Result<(), Error> {
    ws.send(Message::text(format!("40{nsp},{{\"token\":\"{token}\"}}")))
        .await
        .map_err(|e| e.to_string())?;
    wait_packet(ws, |p| {
        if p.nsp != nsp.as_bytes() {
            None
        } else if p.kind == proto::CONNECT {
            Some(Ok(()))
        } else if p.kind == proto::CONNECT_ERROR {
            Some(Err(format!(
                "CONNECT_ERROR {}",
                String::from_utf8_lossy(p.data)
            )))
        } else {
            None
        }
    })
    .await
}

/// The next text frame; binary frames are skipped, a close is an error.
pub async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes, Error> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Close(c))) => return Err(format!("closed by the server: {c:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection ended".into()),
        }
    }
}

/// `open` then `connect_nsp`.
pub async fn session(
    target: &Target,
    source: Option<Ipv4Addr>,
    nsp: &str,
    token: &str,
) -> Result<Ws, Error> {
    let mut ws = open(target, source).await?;
    connect_nsp(&mut ws, nsp, token).await?;
    Ok(ws)
}

/// Sends `frame` (when given) and reads until the ack `id` of `nsp` comes,
/// answering pings; returns the ack's data. Other packets are skipped.
pub async fn call(
    ws: &mut Ws,
    frame: Option<String>,
    nsp: &str,
    id: u64,
) -> Result<Vec<u8>, Error> {
    if let Some(f) = frame {
        ws.send(Message::text(f)).await.map_err(|e| e.to_string())?;
    }
    wait_packet(ws, |p| {
        (p.kind == proto::ACK && p.id == Some(id) && p.nsp == nsp.as_bytes())
            .then(|| Ok(p.data.to_vec()))
    })
    .await
}

/// Reads frames, answering pings, until `pick` returns an answer for a
/// Socket.IO packet; other packets are skipped.
pub async fn wait_packet<T>(
    ws: &mut Ws,
    mut pick: impl FnMut(&proto::Packet<'_>) -> Option<Result<T, Error>>,
) -> Result<T, Error> {
    loop {
        let frame = next_text(ws).await?;
        match proto::engine(frame.as_bytes()) {
            Engine::Ping => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| e.to_string())?,
            Engine::Message(m) => {
                if let Some(answer) = proto::packet(m).as_ref().and_then(&mut pick) {
                    return answer;
                }
            }
            Engine::Close => return Err("Engine.IO close".into()),
            _ => {}
        }
    }
}
