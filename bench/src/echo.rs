//! `echo`: one client sends `send_message` and waits for its ack before the
//! next one; the ack round trip is the figure.

use crate::client;
use crate::rooms::{create_conversation, percentiles_ms};
use crate::{proto, Common};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// Longest wait for one ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `count` sequential sends; fails on the first failed or missing ack.
pub async fn echo(common: &Common, count: u64, text_bytes: usize) -> Result<Value, String> {
    let target = common.targets()?.remove(0);
    let user = format!("bench-{}-echo", crate::run_id());
    let token = client::token(&common.jwt_secret, &user);
    let mut ws = client::session(
        &target,
        client::source_ip(0, common.source_ips),
        "/chat",
        &token,
    )
    .await?;
    let conversation = if common.peer {
        format!("bench-{}-echo", crate::run_id())
    } else {
        create_conversation(
            &target,
            &token,
            &json!({ "memberIds": [], "title": "bench echo" }),
        )
        .await?
    };
    let join =
        format!("42/chat,1[\"conversation:join\",{{\"conversationId\":\"{conversation}\"}}]");
    let ack = timeout(ACK_TIMEOUT, client::call(&mut ws, Some(join), "/chat", 1))
        .await
        .map_err(|_| "join: no ack".to_string())??;
    if !proto::is_ok(&ack) {
        return Err(format!("join failed: {}", String::from_utf8_lossy(&ack)));
    }
    let mut rtt = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
    let (mut text, mut frame) = (String::new(), String::new());
    let epoch = Instant::now();
    let started = Instant::now();
    for i in 0..count {
        let id = i + 2;
        proto::message_text(&mut text, epoch.elapsed().as_nanos() as u64, text_bytes);
        frame.clear();
        let _ = write!(
            frame,
            "42/chat,{id}[\"send_message\",{{\"conversationId\":\"{conversation}\",\"text\":\"{text}\",\"clientId\":\"e{i}\"}}]"
        );
        let sent = Instant::now();
        let ack = timeout(
            ACK_TIMEOUT,
            client::call(&mut ws, Some(frame.clone()), "/chat", id),
        )
        .await
        .map_err(|_| format!("send_message {i}: no ack within {ACK_TIMEOUT:?}"))??;
        rtt.saturating_record((sent.elapsed().as_micros() as u64).max(1));
        if !proto::is_ok(&ack) {
            return Err(format!(
                "send_message {i} failed: {}",
                String::from_utf8_lossy(&ack)
            ));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "scenario": "echo",
        "target": common.target_name(),
        "nodes": 1,
        "count": count,
        "text_bytes": text_bytes,
        "acked": rtt.len(),
        "per_s": (count as f64 / secs * 10.0).round() / 10.0,
        "rtt_ms": percentiles_ms(&rtt),
    }))
}
