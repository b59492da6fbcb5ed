//! `upload`: K clients each upload one file at the same time, over
//! `/file-upload` (chunks as base64 text or binary attachments, F in
//! flight) or as one HTTP multipart `POST /api/v1/uploads`.
//!
//! The file is a ZIP as far as the server's type check looks (it starts
//! with `PK\x03\x04`), followed by pseudo-random bytes; it is made once and
//! shared by every client, and so are its chunks' base64 texts.

use crate::client::{self, Target, Ws};
use crate::{http, procstat, proto, Common};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// How chunks travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `chunkData` as base64 text inside the event.
    Base64,
    /// `chunkData` as a binary attachment (a second WebSocket frame).
    Binary,
    /// `POST /api/v1/uploads`, multipart.
    Http,
}

/// Parameters of `upload`.
#[derive(Clone, Copy, Debug)]
pub struct UploadArgs {
    /// Concurrent clients, one file each.
    pub clients: usize,
    /// Chunk size in bytes.
    pub chunk_size: usize,
    /// Chunks in flight per client.
    pub in_flight: usize,
    /// File size in bytes.
    pub file_size: usize,
    /// Transport.
    pub mode: Mode,
}

/// Ack ids: initiate, complete, then chunk `i` is `FIRST_CHUNK_ACK + i`.
const INITIATE_ACK: u64 = 1;
const COMPLETE_ACK: u64 = 2;
const FIRST_CHUNK_ACK: u64 = 3;
/// Longest one upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
const NSP: &str = "/file-upload";

/// The shared file: bytes, and the base64 text of each chunk.
struct File {
    bytes: Bytes,
    b64_chunks: Vec<String>,
}

fn make_file(size: usize, chunk: usize, base64: bool) -> File {
    let mut data = Vec::with_capacity(size);
    data.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x08\x00");
    // xorshift: cheap bytes that do not compress.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    let b64_chunks = if base64 {
        data.chunks(chunk)
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
            .collect()
    } else {
        Vec::new()
    };
    File {
        bytes: Bytes::from(data),
        b64_chunks,
    }
}

/// Time spent sending chunks (initiate included) and in `complete_upload`.
type Phases = (Duration, Duration);

async fn socket_upload(
    ws: &mut Ws,
    file: &File,
    a: UploadArgs,
    upload_id: &str,
) -> Result<Phases, String> {
    let started = Instant::now();
    let initiate = format!(
        "42{NSP},{INITIATE_ACK}[\"initiate_upload\",{{\"uploadId\":\"{upload_id}\",\"fileName\":\"bench.zip\",\"fileSize\":{},\"mimeType\":\"application/zip\",\"chunkSize\":{}}}]",
        a.file_size, a.chunk_size
    );
    let ack = client::call(ws, Some(initiate), NSP, INITIATE_ACK).await?;
    let session = proto::string_field(&ack, "sessionId")
        .filter(|_| proto::is_ok(&ack))
        .ok_or_else(|| format!("initiate_upload: {}", String::from_utf8_lossy(&ack)))?;
    let session = String::from_utf8_lossy(session).into_owned();
    let total = a.file_size.div_ceil(a.chunk_size);
    let (mut next, mut in_flight, mut done) = (0usize, 0usize, 0usize);
    while done < total {
        while in_flight < a.in_flight.max(1) && next < total {
            let id = FIRST_CHUNK_ACK + next as u64;
            let head = format!("{NSP},{id}[\"upload_chunk\",{{\"sessionId\":\"{session}\",\"uploadId\":\"{upload_id}\",\"chunkIndex\":{next},\"chunkData\":");
            let sent = match a.mode {
                Mode::Base64 => {
                    ws.send(Message::text(format!(
                        "42{head}\"{}\"}}]",
                        file.b64_chunks[next]
                    )))
                    .await
                }
                _ => {
                    let start = next * a.chunk_size;
                    let end = (start + a.chunk_size).min(a.file_size);
                    let text = format!("451-{head}{{\"_placeholder\":true,\"num\":0}}}}]");
                    match ws.feed(Message::text(text)).await {
                        Ok(()) => ws.send(Message::Binary(file.bytes.slice(start..end))).await,
                        Err(e) => Err(e),
                    }
                }
            };
            sent.map_err(|e| format!("upload_chunk: {e}"))?;
            next += 1;
            in_flight += 1;
        }
        let frame = client::next_text(ws).await?;
        match proto::engine(frame.as_bytes()) {
            proto::Engine::Ping => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| e.to_string())?,
            proto::Engine::Message(m) => {
                let Some(p) = proto::packet(m) else { continue };
                if p.kind == proto::ACK && p.id.is_some_and(|id| id >= FIRST_CHUNK_ACK) {
                    if !proto::is_ok(p.data) {
                        return Err(format!("upload_chunk: {}", String::from_utf8_lossy(p.data)));
                    }
                    in_flight -= 1;
                    done += 1;
                }
            }
            proto::Engine::Close => return Err("Engine.IO close during upload".into()),
            _ => {}
        }
    }
    let complete = format!(
        "42{NSP},{COMPLETE_ACK}[\"complete_upload\",{{\"sessionId\":\"{session}\",\"uploadId\":\"{upload_id}\"}}]"
    );
    let chunks_done = Instant::now();
    let ack = client::call(ws, Some(complete), NSP, COMPLETE_ACK).await?;
    if !proto::is_ok(&ack) {
        return Err(format!(
            "complete_upload: {}",
            String::from_utf8_lossy(&ack)
        ));
    }
    Ok((chunks_done - started, chunks_done.elapsed()))
}

async fn http_upload(
    target: &Target,
    token: &str,
    body: &(String, Vec<u8>),
) -> Result<Phases, String> {
    let started = Instant::now();
    let r = http::request(
        target.addr,
        "POST",
        "/api/v1/uploads",
        Some(token),
        Some(&body.0),
        &body.1,
    )
    .await
    .map_err(|e| format!("POST /api/v1/uploads: {e}"))?;
    if r.status != 201 {
        return Err(format!(
            "POST /api/v1/uploads: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
        ));
    }
    Ok((started.elapsed(), Duration::ZERO))
}

/// Runs the uploads; fails only on setup errors, counts failed uploads.
pub async fn upload(common: &Common, a: UploadArgs) -> Result<Value, String> {
    if a.chunk_size == 0 || a.file_size == 0 || a.clients == 0 {
        return Err("--clients, --chunk-size and --file-size must be positive".into());
    }
    let targets = common.targets()?;
    let file = Rc::new(make_file(a.file_size, a.chunk_size, a.mode == Mode::Base64));
    let multipart = Rc::new(if a.mode == Mode::Http {
        http::multipart_file("file", "bench.zip", "application/zip", &file.bytes)
    } else {
        (String::new(), Vec::new())
    });
    let run = crate::run_id();
    let (go, go_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(a.clients);
    let mut tasks = Vec::with_capacity(a.clients);
    for k in 0..a.clients {
        let target = targets[k % targets.len()].clone();
        let user = format!("bench-{run}-up{k}");
        let token = client::token(&common.jwt_secret, &user);
        let source = client::source_ip(k, common.source_ips);
        let (file, multipart, ready, mut go) = (
            file.clone(),
            multipart.clone(),
            ready_tx.clone(),
            go_rx.clone(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let mut ws = if a.mode == Mode::Http {
                None
            } else {
                match client::session(&target, source, NSP, &token).await {
                    Ok(ws) => Some(ws),
                    Err(e) => {
                        let _ = ready.send(Err(e.clone())).await;
                        return Err(e);
                    }
                }
            };
            let _ = ready.send(Ok(())).await;
            let _ = go.wait_for(|&g| g).await;
            let work = async {
                match ws.as_mut() {
                    Some(ws) => socket_upload(ws, &file, a, &format!("{user}-file")).await,
                    None => http_upload(&target, &token, &multipart).await,
                }
            };
            let result = match timeout(UPLOAD_TIMEOUT, work).await {
                Ok(r) => r,
                Err(_) => Err(format!("upload timed out after {UPLOAD_TIMEOUT:?}")),
            };
            if let Some(mut ws) = ws {
                let _ = ws.close(None).await;
            }
            result
        }));
    }
    drop(ready_tx);
    let mut errors = Vec::new();
    for _ in 0..a.clients {
        if let Some(Err(e)) = ready_rx.recv().await {
            errors.push(e);
        }
    }
    let pids = &common.server_pids;
    let cpu0 = procstat::cpu_of(pids);
    let started = Instant::now();
    let _ = go.send(true);
    let mut completed = 0u64;
    let (mut chunks_max, mut complete_max) = (Duration::ZERO, Duration::ZERO);
    for t in tasks {
        match t.await {
            Ok(Ok((chunks, complete))) => {
                completed += 1;
                chunks_max = chunks_max.max(chunks);
                complete_max = complete_max.max(complete);
            }
            Ok(Err(e)) => {
                eprintln!("huddle-bench: upload failed: {e}");
                errors.push(e);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu0.until(procstat::cpu_of(pids));
    let mb = completed as f64 * a.file_size as f64 / 1e6;
    let per_mb = |us: f64| {
        if mb > 0.0 {
            Some((us / 1e3 / mb * 1000.0).round() / 1000.0)
        } else {
            None
        }
    };
    errors.truncate(10);
    Ok(json!({
        "scenario": "upload",
        "target": common.target_name(),
        "nodes": common.urls().len(),
        "mode": format!("{:?}", a.mode).to_lowercase(),
        "clients": a.clients,
        "chunk_size": a.chunk_size,
        "in_flight": a.in_flight,
        "file_size": a.file_size,
        "completed": completed,
        "failed": a.clients as u64 - completed,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "mb": mb,
        "mb_per_s": ((mb / secs) * 10.0).round() / 10.0,
        // Slowest client's time sending chunks (or the whole HTTP request)
        // and waiting for complete_upload (assembly), apart.
        "chunks_s_max": (chunks_max.as_secs_f64() * 1000.0).round() / 1000.0,
        "complete_s_max": (complete_max.as_secs_f64() * 1000.0).round() / 1000.0,
        "server_cpu": {
            "pids": pids,
            "user_ms_per_mb": per_mb(cpu.user_us()),
            "system_ms_per_mb": per_mb(cpu.system_us()),
            "total_ms_per_mb": per_mb(cpu.user_us() + cpu.system_us()),
        },
        "errors": errors,
    }))
}
