//! Uploads through the real server: chunked socket uploads (base64 and
//! binary), progress on every device, resume from a new connection and after
//! a restart, every bad input of the contract, the HTTP multipart fallback,
//! file reads, download tokens with Range, and sharing into a chat.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::app::{spawn_app, spawn_app_in, TestApp};
use support::sio::SioClient;

const NSP: &str = "/file-upload";
const CHUNK: usize = 64 * 1024;

/// A PDF-looking file of `len` bytes (so the type check passes).
fn pdf_bytes(len: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len)
        .map(|i| ((i * 7919 + i / 13) % 251) as u8)
        .collect();
    data[..9].copy_from_slice(b"%PDF-1.7\n");
    data
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

async fn initiate(c: &mut SioClient, ack: u64, req: Value) -> Value {
    c.emit_ack(NSP, ack, "initiate_upload", req).await
}

async fn send_chunk(c: &mut SioClient, ack: u64, up: &Value, index: usize, data: &[u8]) -> Value {
    let chunk = &data[index * CHUNK..((index + 1) * CHUNK).min(data.len())];
    c.emit_ack(
        NSP,
        ack,
        "upload_chunk",
        json!({
            "sessionId": up["sessionId"], "uploadId": up["uploadId"], "chunkIndex": index,
            "chunkData": b64(chunk), "checksum": sha(chunk),
        }),
    )
    .await
}

async fn complete(c: &mut SioClient, ack: u64, up: &Value) -> Value {
    c.emit_ack(
        NSP,
        ack,
        "complete_upload",
        json!({ "sessionId": up["sessionId"], "uploadId": up["uploadId"] }),
    )
    .await
}

async fn download(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> (u16, awc::http::header::HeaderMap, Vec<u8>) {
    let client = awc::Client::default();
    let mut req = client.get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(r) = range {
        req = req.insert_header(("Range", r));
    }
    let mut res = req.send().await.expect("request sent");
    let body = res.body().limit(200 << 20).await.expect("body").to_vec();
    (res.status().as_u16(), res.headers().clone(), body)
}

#[actix_web::test]
async fn a_chunked_upload_reaches_every_device_and_downloads_intact() {
    let app = spawn_app(&[]).await;
    let alice = app.register("Alice").await;
    let mut phone = SioClient::connect(app.port, NSP, &alice.token).await;
    let mut laptop = SioClient::connect(app.port, NSP, &alice.token).await;
    let data = pdf_bytes(1 << 20);

    let up = initiate(
        &mut phone,
        1,
        json!({ "uploadId": "big-1", "fileName": "plan.pdf", "fileSize": data.len(),
                "mimeType": "application/pdf", "sha256": sha(&data) }),
    )
    .await;
    assert_eq!(up["ok"], true, "{up}");
    assert_eq!(up["chunkSize"], CHUNK);
    assert_eq!(up["totalChunks"], 16);
    assert_eq!(up["receivedChunks"], json!([]));
    for i in 0..16 {
        let ack = send_chunk(&mut phone, 10 + i as u64, &up, i, &data).await;
        assert_eq!(ack["ok"], true, "chunk {i}: {ack}");
        assert_eq!(ack["chunkIndex"], i);
    }
    let done = complete(&mut phone, 99, &up).await;
    assert_eq!(done["ok"], true, "{done}");
    let file = done["file"].clone();
    assert_eq!(file["size"], data.len());
    assert_eq!(file["sha256"], sha(&data));
    assert_eq!(file["fileName"], "plan.pdf");
    // The parts became the file: nothing is left in the staging directory.
    let staged: Vec<_> = std::fs::read_dir(app.data_dir.path().join("blobs/parts"))
        .unwrap()
        .collect();
    assert!(staged.is_empty(), "left behind: {staged:?}");

    // The laptop saw monotonic progress ending at 100, then the completion.
    let mut last = -1i64;
    let completed = loop {
        let (name, ev) = laptop.next_event(NSP).await;
        match name.as_str() {
            "upload_progress" => {
                let p = ev["progress"].as_i64().unwrap();
                assert!(p >= last, "progress went back: {last} → {p}");
                last = p;
            }
            "upload_completed" => break ev,
            other => panic!("unexpected {other}: {ev}"),
        }
    };
    assert_eq!(last, 100);
    assert_eq!(completed["uploadId"], "big-1");
    assert_eq!(completed["file"]["id"], file["id"]);

    let url = file["downloadUrl"].as_str().unwrap();
    let (status, _, body) = download(&app, url, Some(&alice.token), None).await;
    assert_eq!(status, 200);
    assert_eq!(sha(&body), sha(&data));
    let (status, meta) = app
        .get(
            &format!("/api/v1/files/{}", file["id"].as_str().unwrap()),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(meta["mimeType"], "application/pdf");

    // Initiating the same upload id again answers the completed file.
    let again = initiate(
        &mut laptop,
        2,
        json!({ "uploadId": "big-1", "fileName": "plan.pdf", "fileSize": data.len(), "mimeType": "application/pdf" }),
    )
    .await;
    assert_eq!(again["completed"], true, "{again}");
    assert_eq!(again["file"]["id"], file["id"]);
}

#[actix_web::test]
async fn binary_chunks_work_too() {
    let app = spawn_app(&[]).await;
    let bob = app.register("Bob").await;
    let mut c = SioClient::connect(app.port, NSP, &bob.token).await;
    let data: Vec<u8> = (0..10_000).map(|i| b'a' + (i % 26) as u8).collect();
    let up = initiate(
        &mut c,
        1,
        json!({ "uploadId": "bin", "fileName": "notes.txt", "fileSize": data.len(),
                "mimeType": "text/plain", "chunkSize": 4096 }),
    )
    .await;
    assert_eq!(up["totalChunks"], 3, "{up}");
    for (i, chunk) in data.chunks(4096).enumerate() {
        let ack = c
            .emit_binary_ack(
                NSP,
                10 + i as u64,
                "upload_chunk",
                json!({ "sessionId": up["sessionId"], "uploadId": "bin", "chunkIndex": i,
                        "chunkData": { "_placeholder": true, "num": 0 } }),
                chunk.to_vec(),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let done = complete(&mut c, 50, &up).await;
    assert_eq!(done["file"]["sha256"], sha(&data), "{done}");
}

#[actix_web::test]
async fn an_abandoned_upload_resumes_from_a_new_connection() {
    let app = spawn_app(&[]).await;
    let carol = app.register("Carol").await;
    let data = pdf_bytes(16 * CHUNK - 1000);
    let req = json!({ "uploadId": "resume-1", "fileName": "r.pdf", "fileSize": data.len(),
                      "mimeType": "application/pdf", "sha256": sha(&data) });
    let mut first = SioClient::connect(app.port, NSP, &carol.token).await;
    let up = initiate(&mut first, 1, req.clone()).await;
    for i in (0..16).step_by(2) {
        assert_eq!(
            send_chunk(&mut first, 10 + i as u64, &up, i, &data).await["ok"],
            true
        );
    }
    drop(first);

    let mut second = SioClient::connect(app.port, NSP, &carol.token).await;
    let resumed = initiate(&mut second, 1, req.clone()).await;
    assert_eq!(resumed["sessionId"], up["sessionId"], "{resumed}");
    let have: Vec<usize> = resumed["receivedChunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(have, (0..16).step_by(2).collect::<Vec<_>>());
    // Different parameters for a known upload id conflict.
    let mut other = req.clone();
    other["fileSize"] = json!(5);
    assert_eq!(
        initiate(&mut second, 2, other).await["error"]["code"],
        "conflict"
    );
    for i in (0..16).filter(|i| !have.contains(i)) {
        assert_eq!(
            send_chunk(&mut second, 20 + i as u64, &resumed, i, &data).await["ok"],
            true
        );
    }
    let done = complete(&mut second, 90, &resumed).await;
    assert_eq!(done["ok"], true, "{done}");
    let (_, _, body) = download(
        &app,
        done["file"]["downloadUrl"].as_str().unwrap(),
        Some(&carol.token),
        None,
    )
    .await;
    assert_eq!(body, data);
}

#[actix_web::test]
async fn an_upload_survives_a_restart_of_the_node() {
    let extra = [("HUDDLE__UPLOADS__ACTOR_IDLE_SECS", "1")];
    let app = spawn_app(&extra).await;
    let dave = app.register("Dave").await;
    let data = pdf_bytes(8 * CHUNK);
    let req = json!({ "uploadId": "restart-1", "fileName": "x.pdf", "fileSize": data.len(),
                      "mimeType": "application/pdf", "sha256": sha(&data) });
    let mut c = SioClient::connect(app.port, NSP, &dave.token).await;
    let up = initiate(&mut c, 1, req.clone()).await;
    for i in 0..4 {
        assert_eq!(
            send_chunk(&mut c, 10 + i as u64, &up, i, &data).await["ok"],
            true
        );
    }
    drop(c);
    let dir = app.stop().await;

    let app = spawn_app_in(dir, &extra).await;
    let mut c = SioClient::connect(app.port, NSP, &dave.token).await;
    let resumed = initiate(&mut c, 1, req).await;
    assert_eq!(resumed["sessionId"], up["sessionId"], "{resumed}");
    assert_eq!(resumed["receivedChunks"], json!([0, 1, 2, 3]));
    for i in 4..8 {
        assert_eq!(
            send_chunk(&mut c, 10 + i as u64, &resumed, i, &data).await["ok"],
            true
        );
    }
    let done = complete(&mut c, 90, &resumed).await;
    assert_eq!(done["file"]["sha256"], sha(&data), "{done}");
}

#[actix_web::test]
async fn bad_chunks_get_chunk_errors_and_leave_the_session_usable() {
    let app = spawn_app(&[]).await;
    let erin = app.register("Erin").await;
    let mut c = SioClient::connect(app.port, NSP, &erin.token).await;
    let data = pdf_bytes(2 * CHUNK + 10);
    let up = initiate(
        &mut c,
        1,
        json!({ "uploadId": "bad-1", "fileName": "../../etc/passwd", "fileSize": data.len(),
                "mimeType": "application/pdf" }),
    )
    .await;
    let chunk0 = &data[..CHUNK];
    let base = json!({ "sessionId": up["sessionId"], "uploadId": "bad-1" });
    let with = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let cases = [
        (
            json!({ "chunkIndex": 0, "chunkData": "%%% not base64 %%%" }),
            "bad_request",
        ),
        (
            json!({ "chunkIndex": 7, "chunkData": b64(chunk0) }),
            "bad_request",
        ),
        (
            json!({ "chunkIndex": 0, "chunkData": b64(&chunk0[..100]) }),
            "bad_request",
        ),
        (
            json!({ "chunkIndex": 0, "chunkData": b64(chunk0), "checksum": sha(b"other") }),
            "checksum_mismatch",
        ),
    ];
    for (n, (extra, code)) in cases.into_iter().enumerate() {
        let index = extra["chunkIndex"].clone();
        let ack = c
            .emit_ack(NSP, 10 + n as u64, "upload_chunk", with(extra))
            .await;
        assert_eq!(ack["ok"], false, "{ack}");
        assert_eq!(ack["error"]["code"], code, "{ack}");
        let ev = c.expect_event(NSP, "chunk_error").await;
        assert_eq!(ev["uploadId"], "bad-1");
        assert_eq!(ev["chunkIndex"], index);
        assert_eq!(ev["error"]["code"], code);
    }
    // Completing with chunks missing: failed ack and upload_error with the list.
    let (ack, ev) = c
        .emit_ack_and_event(
            NSP,
            30,
            "complete_upload",
            json!({ "sessionId": up["sessionId"], "uploadId": "bad-1" }),
            "upload_error",
        )
        .await;
    assert_eq!(ack["error"]["code"], "incomplete", "{ack}");
    assert_eq!(ev["error"]["missingChunks"], json!([0, 1, 2]));
    // The session is still usable.
    for i in 0..3 {
        assert_eq!(
            send_chunk(&mut c, 40 + i as u64, &up, i, &data).await["ok"],
            true
        );
    }
    assert_eq!(
        send_chunk(&mut c, 50, &up, 0, &data).await["ok"],
        true,
        "a repeated chunk is fine"
    );
    let done = complete(&mut c, 60, &up).await;
    assert_eq!(done["file"]["fileName"], "passwd", "{done}");
}

#[actix_web::test]
async fn bad_initiations_are_refused() {
    let app = spawn_app(&[]).await;
    let fay = app.register("Fay").await;
    let mut c = SioClient::connect(app.port, NSP, &fay.token).await;
    let too_big = initiate(
        &mut c,
        1,
        json!({ "uploadId": "a", "fileName": "a.pdf", "fileSize": 200u64 << 20, "mimeType": "application/pdf" }),
    )
    .await;
    assert_eq!(too_big["error"]["code"], "payload_too_large", "{too_big}");
    let exe = initiate(
        &mut c,
        2,
        json!({ "uploadId": "b", "fileName": "a.exe", "fileSize": 10, "mimeType": "application/x-msdownload" }),
    )
    .await;
    assert_eq!(exe["error"]["code"], "unsupported_media_type", "{exe}");
    let chunky = initiate(
        &mut c,
        3,
        json!({ "uploadId": "c", "fileName": "a.pdf", "fileSize": 10, "mimeType": "application/pdf", "chunkSize": 1 << 20 }),
    )
    .await;
    assert_eq!(chunky["error"]["code"], "bad_request", "{chunky}");

    // A PNG that is really text: chunk_error, and the session is gone.
    let liar = initiate(
        &mut c,
        4,
        json!({ "uploadId": "liar", "fileName": "a.png", "fileSize": 11, "mimeType": "image/png" }),
    )
    .await;
    let (ack, ev) = c
        .emit_ack_and_event(
            NSP,
            5,
            "upload_chunk",
            json!({ "sessionId": liar["sessionId"], "uploadId": "liar",
            "chunkIndex": 0, "chunkData": b64(b"hello world") }),
            "chunk_error",
        )
        .await;
    assert_eq!(ack["error"]["code"], "unsupported_media_type", "{ack}");
    assert_eq!(ev["error"]["code"], "unsupported_media_type");
    let again = c
        .emit_ack(
            NSP,
            6,
            "upload_chunk",
            json!({ "sessionId": liar["sessionId"], "uploadId": "liar",
            "chunkIndex": 0, "chunkData": b64(b"hello world") }),
        )
        .await;
    assert_eq!(again["error"]["code"], "not_found", "{again}");

    // Five in progress; the sixth is refused until one is cancelled.
    let mut sessions = Vec::new();
    for i in 0..5 {
        let up = initiate(
            &mut c,
            10 + i,
            json!({ "uploadId": format!("p{i}"), "fileName": "a.txt", "fileSize": 10, "mimeType": "text/plain" }),
        )
        .await;
        assert_eq!(up["ok"], true, "{up}");
        sessions.push(up);
    }
    let sixth =
        json!({ "uploadId": "p5", "fileName": "a.txt", "fileSize": 10, "mimeType": "text/plain" });
    assert_eq!(
        initiate(&mut c, 20, sixth.clone()).await["error"]["code"],
        "too_many_uploads"
    );
    let (ack, ev) = c
        .emit_ack_and_event(
            NSP,
            21,
            "cancel_upload",
            json!({ "sessionId": sessions[0]["sessionId"], "uploadId": "p0", "reason": "changed my mind" }),
            "upload_cancelled",
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ev, json!({ "uploadId": "p0", "reason": "changed my mind" }));
    assert_eq!(initiate(&mut c, 22, sixth).await["ok"], true);
}

/// A multipart body with one `file` field.
const BOUNDARY: &str = "----huddle-test-boundary";

fn multipart(name: &str, mime: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = BOUNDARY;
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_multipart(
    app: &TestApp,
    token: &str,
    name: &str,
    mime: &str,
    data: &[u8],
) -> (u16, Value) {
    let (_, body) = multipart(name, mime, data);
    app.post_form("/api/v1/uploads", token, BOUNDARY, body)
        .await
}

#[actix_web::test]
async fn http_uploads_download_tokens_ranges_and_sharing() {
    let app = spawn_app(&[]).await;
    let gus = app.register("Gus").await;
    let hal = app.register("Hal").await;
    let data = pdf_bytes(300_000);

    let (status, file) =
        post_multipart(&app, &gus.token, "dir/../doc.pdf", "application/pdf", &data).await;
    assert_eq!(status, 201, "{file}");
    assert_eq!(file["fileName"], "doc.pdf");
    assert_eq!(file["sha256"], sha(&data));
    let id = file["id"].as_str().unwrap().to_owned();
    let (status, lie) = post_multipart(&app, &gus.token, "a.png", "image/png", b"not a png").await;
    assert_eq!(
        (status, lie["error"]["code"].clone()),
        (415, json!("unsupported_media_type"))
    );
    let big = vec![b'a'; (10 << 20) + 10];
    let (status, _) = post_multipart(&app, &gus.token, "big.txt", "text/plain", &big).await;
    assert_eq!(status, 413);

    // Others cannot read it until it is shared with them.
    let (status, _) = app
        .get(&format!("/api/v1/files/{id}"), Some(&hal.token))
        .await;
    assert_eq!(status, 404);

    // Tokens: a one-time token works once, then 410; Range gives 206 / 416.
    let (status, tok) = app
        .post(
            &format!("/api/v1/files/{id}/download-token"),
            Some(&gus.token),
            json!({ "permission": "preview", "oneTime": true }),
        )
        .await;
    assert_eq!(status, 201, "{tok}");
    let url = tok["url"].as_str().unwrap().to_owned();
    let (status, headers, body) = download(&app, &url, None, Some("bytes=100-199")).await;
    assert_eq!(status, 206);
    assert_eq!(body, &data[100..200]);
    assert_eq!(
        headers.get("content-range").unwrap(),
        "bytes 100-199/300000"
    );
    assert!(headers
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("inline"));
    let (status, _, _) = download(&app, &url, None, None).await;
    assert_eq!(status, 410);

    let (_, tok) = app
        .post(
            &format!("/api/v1/files/{id}/download-token"),
            Some(&gus.token),
            json!({ "permission": "download" }),
        )
        .await;
    let url = tok["url"].as_str().unwrap().to_owned();
    let (status, headers, body) = download(&app, &url, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body, data);
    assert!(headers
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let (status, headers, _) = download(&app, &url, None, Some("bytes=400000-")).await;
    assert_eq!(status, 416);
    assert_eq!(headers.get("content-range").unwrap(), "bytes */300000");
    let (status, _, _) = download(&app, "/api/v1/dl/00ff", None, None).await;
    assert_eq!(status, 404);

    // Sharing into a conversation: the other member gets the message and can read.
    let conversation = app.conversation(&gus, &[&hal]).await;
    let mut g = SioClient::connect(app.port, "/chat", &gus.token).await;
    let mut h = SioClient::connect(app.port, "/chat", &hal.token).await;
    assert_eq!(
        h.emit_ack(
            "/chat",
            1,
            "conversation:join",
            json!({ "conversationId": conversation })
        )
        .await["ok"],
        true
    );
    let ack = g
        .emit_ack(
            "/chat",
            1,
            "share_file",
            json!({ "fileId": id, "conversationId": conversation, "message": "here" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ev = h.expect_event("/chat", "new_file_message").await;
    assert_eq!(ev["fileInfo"]["id"], id.as_str());
    assert_eq!(ev["message"], "here");
    let (status, _) = app
        .get(&format!("/api/v1/files/{id}"), Some(&hal.token))
        .await;
    assert_eq!(status, 200);
    let not_mine = h
        .emit_ack(
            "/chat",
            2,
            "share_file",
            json!({ "fileId": "nope", "conversationId": conversation }),
        )
        .await;
    assert_eq!(not_mine["error"]["code"], "not_found");
}

#[actix_web::test]
async fn an_upload_targeting_a_conversation_is_shared_there_on_completion() {
    let app = spawn_app(&[]).await;
    let ivy = app.register("Ivy").await;
    let jon = app.register("Jon").await;
    let kim = app.register("Kim").await;
    let conversation = app.conversation(&ivy, &[&jon]).await;
    let data = pdf_bytes(2 * CHUNK + 500);
    let req = json!({ "uploadId": "conv-1", "fileName": "minutes.pdf", "fileSize": data.len(),
                      "mimeType": "application/pdf", "sha256": sha(&data),
                      "target": { "conversationId": conversation } });

    // Someone outside the conversation cannot target it.
    let mut k = SioClient::connect(app.port, NSP, &kim.token).await;
    let refused = initiate(&mut k, 1, req.clone()).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "not_found", "{refused}");

    // Both members have a /chat socket in the conversation's room.
    let mut ivy_chat = SioClient::connect(app.port, "/chat", &ivy.token).await;
    let mut jon_chat = SioClient::connect(app.port, "/chat", &jon.token).await;
    let mut last_seq = Value::Null;
    for c in [&mut ivy_chat, &mut jon_chat] {
        last_seq = c.join_conversation(&conversation).await["lastSeq"].clone();
    }

    let mut up_client = SioClient::connect(app.port, NSP, &ivy.token).await;
    let up = initiate(&mut up_client, 1, req).await;
    assert_eq!(up["ok"], true, "{up}");
    assert_eq!(up["totalChunks"], 3);
    for i in 0..3 {
        assert_eq!(
            send_chunk(&mut up_client, 10 + i as u64, &up, i, &data).await["ok"],
            true
        );
    }
    let done = complete(&mut up_client, 20, &up).await;
    assert_eq!(done["ok"], true, "{done}");
    let file = done["file"].clone();
    let file_id = file["id"].as_str().unwrap().to_owned();

    let mut seen = Vec::new();
    for (who, c) in [("Ivy", &mut ivy_chat), ("Jon", &mut jon_chat)] {
        let ev = c.expect_event("/chat", "new_file_message").await;
        assert!(ev["id"].is_string(), "{who}: {ev}");
        assert_eq!(
            ev["seq"].as_u64(),
            last_seq.as_u64().map(|s| s + 1),
            "{who}: {ev}"
        );
        assert_eq!(ev["conversationId"], conversation.as_str(), "{who}: {ev}");
        assert_eq!(ev["senderId"], ivy.id.as_str(), "{who}: {ev}");
        let want = json!({ "id": file_id, "fileName": "minutes.pdf", "size": data.len(),
                           "mimeType": "application/pdf", "downloadUrl": file["downloadUrl"] });
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&ev["fileInfo"][k], v, "{who}: fileInfo.{k} in {ev}");
        }
        let message = ev.as_object().unwrap().get("message");
        assert_eq!(message, Some(&Value::Null), "{who}: no message given: {ev}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(ev["createdAt"].as_str().unwrap_or("")).is_ok(),
            "{who}: createdAt: {ev}"
        );
        seen.push(ev);
    }
    assert_eq!(seen[0], seen[1], "both sockets got the same message");

    // Jon can read the file now; Kim still cannot.
    let url = file["downloadUrl"].as_str().unwrap();
    let (status, _, body) = download(&app, url, Some(&jon.token), None).await;
    assert_eq!(status, 200);
    assert_eq!(body, data);
    let (status, _, _) = download(&app, url, Some(&kim.token), None).await;
    assert_eq!(status, 404);
    // It is in the conversation's history.
    let (status, history) = app
        .get(
            &format!("/api/v1/conversations/{conversation}/messages"),
            Some(&jon.token),
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{history}");
    assert_eq!(items[0]["id"], seen[0]["id"]);
    assert_eq!(items[0]["fileInfo"]["id"], file_id.as_str());
}

#[actix_web::test]
async fn download_tokens_refuse_out_of_range_lifetimes_and_expire() {
    let app = spawn_app(&[]).await;
    let lea = app.register("Lea").await;
    let data = pdf_bytes(5_000);
    let (status, file) = post_multipart(&app, &lea.token, "t.pdf", "application/pdf", &data).await;
    assert_eq!(status, 201, "{file}");
    let path = format!(
        "/api/v1/files/{}/download-token",
        file["id"].as_str().unwrap()
    );

    for bad in [json!(0), json!(86_401), json!("60"), json!(-1)] {
        let (status, body) = app
            .post(
                &path,
                Some(&lea.token),
                json!({ "permission": "download", "expiresIn": bad }),
            )
            .await;
        assert_eq!(status, 400, "expiresIn {bad}: {body}");
        assert_eq!(
            body["error"]["code"], "bad_request",
            "expiresIn {bad}: {body}"
        );
    }

    // The bounds themselves are accepted, and expiresAt is that far away.
    for secs in [86_400i64, 1] {
        let before = chrono::Utc::now();
        let (status, tok) = app
            .post(
                &path,
                Some(&lea.token),
                json!({ "permission": "download", "expiresIn": secs }),
            )
            .await;
        let after = chrono::Utc::now();
        assert_eq!(status, 201, "expiresIn {secs}: {tok}");
        let at = chrono::DateTime::parse_from_rfc3339(tok["expiresAt"].as_str().unwrap())
            .expect("expiresAt is ISO 8601");
        let ttl = chrono::Duration::seconds(secs);
        let ms = chrono::Duration::milliseconds(1);
        assert!(
            at >= before + ttl - ms && at <= after + ttl + ms,
            "expiresIn {secs}: expiresAt {at} not within [{before}, {after}] + {secs} s"
        );
        if secs == 1 {
            // Once its second has passed, the token is gone.
            tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
            let (status, _, body) = download(&app, tok["url"].as_str().unwrap(), None, None).await;
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!(status, 410, "{body}");
            assert_eq!(body["error"]["code"], "gone", "{body}");
        }
    }
}

#[actix_web::test]
async fn a_multipart_body_cannot_go_on_with_small_fields() {
    let app = spawn_app(&[]).await;
    let ann = app.register("Ann").await;
    // Before the file: 200 fields of 1 KiB (each small, together past the
    // 64 KiB the other fields may take), or 300 empty ones (each counts its
    // headers).
    for (fields, size) in [(200, 1024), (300, 0)] {
        let boundary = BOUNDARY;
        let mut body = Vec::new();
        for i in 0..fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n")
                    .as_bytes(),
            );
            body.extend(std::iter::repeat_n(b'x', size));
            body.extend_from_slice(b"\r\n");
        }
        let (_, file) = multipart("a.pdf", "application/pdf", &pdf_bytes(1000));
        body.extend_from_slice(&file);
        let (status, answer) = app
            .post_form("/api/v1/uploads", &ann.token, boundary, body)
            .await;
        assert_eq!(status, 400, "{fields} fields of {size} bytes: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("only the file field"),
            "{answer}"
        );
    }
}

/// One sweep clears a backlog of expired sessions however many rounds of its
/// batch (100) it takes, and their parts with them: the sweeper used to take
/// 100 an interval and leave the rest, so abandoned uploads arriving faster
/// than that were never all cleared.
#[actix_web::test]
async fn one_sweep_clears_a_backlog_of_expired_uploads() {
    use huddle::store::conformance::session_of;
    use huddle::store::embedded::EmbeddedStore;
    use huddle_actors::blob::BlobError;
    use huddle_actors::file_upload::FileUploadNamespace;
    use huddle_actors::ids::UserId;
    use huddle_actors::store::UploadSessionStore;
    use huddle_actors::upload::UploadDeps;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let settings = support::app::settings(dir.path(), &[]);
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let blobs = huddle::startup::open_blobs(&settings).unwrap();
    let backlog = 250;
    for i in 0..backlog {
        let mut s = session_of(&UserId(format!("user-{i}")), "abandoned");
        s.expires_at = chrono::Utc::now() - chrono::Duration::minutes(1);
        store.create_upload_session(s.clone(), 5).await.unwrap();
        blobs
            .put_part(&s.session_id, 0, 0, bytes::Bytes::from_static(b"part"))
            .await
            .unwrap();
    }
    let expired = || async {
        store
            .expired_upload_sessions(chrono::Utc::now(), None, 1000)
            .await
            .unwrap()
    };
    let sessions = expired().await;
    assert_eq!(sessions.len(), backlog);
    let ns = FileUploadNamespace::new(UploadDeps {
        store: store.clone(),
        sessions: store.clone(),
        blobs: blobs.clone(),
        config: Arc::new(settings.uploads.to_config()),
    });
    ns.sweep().await;
    assert!(expired().await.is_empty(), "every expired session is gone");
    for s in &sessions {
        let assembled = blobs.assemble(&s.session_id, 1, &s.session_id).await;
        assert!(
            matches!(assembled, Err(BlobError::NotFound(_))),
            "the parts of {} are gone: {assembled:?}",
            s.session_id
        );
    }
}
