//! Task attachments through the real server: a socket upload with
//! `target: { taskId }` and `POST /api/v1/tasks/{id}/attachments` attach the
//! file to the task (`task:updated` to its rooms, listed in `attachments`),
//! members of the workspace can read it, viewers cannot attach, outsiders
//! cannot read, and the eleventh attachment is a conflict.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::app::{spawn_app, TestApp, TestUser};
use support::sio::SioClient;

const NSP: &str = "/file-upload";

fn pdf_bytes(len: usize, seed: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect();
    data[..9].copy_from_slice(b"%PDF-1.7\n");
    data
}

async fn created(app: &TestApp, path: &str, by: &TestUser, body: Value) -> Value {
    let (s, b) = app.post(path, Some(&by.token), body).await;
    assert_eq!(s, 201, "{path}: {b}");
    b
}

async fn attach_http(app: &TestApp, task: &str, token: &str, data: &[u8]) -> (u16, Value) {
    let boundary = "----huddle-attach-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"spec.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    app.post_form(
        &format!("/api/v1/tasks/{task}/attachments"),
        token,
        boundary,
        body,
    )
    .await
}

#[actix_web::test]
async fn uploads_attach_files_to_tasks() {
    let app = spawn_app(&[]).await;
    let owner = app.register("Olga").await;
    let member = app.register("Max").await;
    let viewer = app.register("Vera").await;
    let outsider = app.register("Otto").await;
    let ws = created(
        &app,
        "/api/v1/workspaces",
        &owner,
        json!({ "name": "Acme" }),
    )
    .await;
    let ws = ws["id"].as_str().unwrap().to_owned();
    for (user, role) in [(&member, "member"), (&viewer, "viewer")] {
        created(
            &app,
            &format!("/api/v1/workspaces/{ws}/members"),
            &owner,
            json!({ "userId": user.id, "role": role }),
        )
        .await;
    }
    let p = created(
        &app,
        &format!("/api/v1/workspaces/{ws}/projects"),
        &owner,
        json!({ "name": "Launch" }),
    )
    .await;
    let p = p["id"].as_str().unwrap().to_owned();
    let t = created(
        &app,
        &format!("/api/v1/projects/{p}/tasks"),
        &owner,
        json!({ "title": "Spec" }),
    )
    .await;
    let t = t["id"].as_str().unwrap().to_owned();
    let mut watcher = SioClient::connect(app.port, "/", &viewer.token).await;
    let ack = watcher
        .emit_ack("/", 1, "room:join", json!({ "taskId": t }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    // Over the socket, in two chunks, by a member.
    let data = pdf_bytes(100_000, 1);
    let mut c = SioClient::connect(app.port, NSP, &member.token).await;
    let up = c
        .emit_ack(
            NSP,
            1,
            "initiate_upload",
            json!({
                "uploadId": "att-1", "fileName": "spec.pdf", "fileSize": data.len(),
                "mimeType": "application/pdf", "chunkSize": 65536, "target": { "taskId": t },
            }),
        )
        .await;
    assert_eq!(up["ok"], true, "{up}");
    for (i, chunk) in data.chunks(65536).enumerate() {
        let ack = c
            .emit_ack(
                NSP,
                2 + i as u64,
                "upload_chunk",
                json!({
                    "sessionId": up["sessionId"], "uploadId": "att-1", "chunkIndex": i,
                    "chunkData": base64::engine::general_purpose::STANDARD.encode(chunk),
                }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let done = c
        .emit_ack(
            NSP,
            10,
            "complete_upload",
            json!({ "sessionId": up["sessionId"], "uploadId": "att-1" }),
        )
        .await;
    assert_eq!(done["ok"], true, "{done}");
    let file_id = done["file"]["id"].as_str().unwrap().to_owned();
    let ev = watcher.expect_event("/", "task:updated").await;
    assert_eq!(ev["task"]["attachments"][0]["id"], file_id.as_str());
    assert_eq!(ev["actorId"], member.id.as_str());
    let (s, task) = app
        .get(&format!("/api/v1/tasks/{t}"), Some(&owner.token))
        .await;
    assert_eq!(s, 200);
    assert_eq!(task["attachments"][0]["id"], file_id.as_str());
    assert_eq!(
        task["attachments"][0]["sha256"],
        hex::encode(Sha256::digest(&data))
    );

    // Every member of the workspace reads it; an outsider does not.
    for who in [&owner, &viewer] {
        let (s, f) = app
            .get(&format!("/api/v1/files/{file_id}"), Some(&who.token))
            .await;
        assert_eq!(s, 200, "{f}");
    }
    let (s, _) = app
        .get(&format!("/api/v1/files/{file_id}"), Some(&outsider.token))
        .await;
    assert_eq!(s, 404);

    // Viewers cannot attach, over the socket or HTTP; outsiders see no task.
    let mut v = SioClient::connect(app.port, NSP, &viewer.token).await;
    let denied = v
        .emit_ack(
            NSP,
            1,
            "initiate_upload",
            json!({
                "uploadId": "v-1", "fileName": "x.pdf", "fileSize": 10,
                "mimeType": "application/pdf", "target": { "taskId": t },
            }),
        )
        .await;
    assert_eq!(denied["error"]["code"], "forbidden", "{denied}");
    let (s, _) = attach_http(&app, &t, &viewer.token, &pdf_bytes(2000, 2)).await;
    assert_eq!(s, 403);
    let (s, _) = attach_http(&app, &t, &outsider.token, &pdf_bytes(2000, 2)).await;
    assert_eq!(s, 404);
    let mut o = SioClient::connect(app.port, NSP, &outsider.token).await;
    let denied = o
        .emit_ack(
            NSP,
            1,
            "initiate_upload",
            json!({
                "uploadId": "o-1", "fileName": "x.pdf", "fileSize": 10,
                "mimeType": "application/pdf", "target": { "taskId": t },
            }),
        )
        .await;
    assert_eq!(denied["error"]["code"], "not_found", "{denied}");

    // HTTP attachments up to ten, each announced; the eleventh is 409, over
    // HTTP and over the socket.
    for n in 2..=10 {
        let (s, f) = attach_http(&app, &t, &member.token, &pdf_bytes(3000, n)).await;
        assert_eq!(s, 201, "{f}");
        assert_eq!(f["fileName"], "spec.pdf");
        let ev = watcher.expect_event("/", "task:updated").await;
        assert_eq!(ev["task"]["attachments"].as_array().unwrap().len(), n);
        assert_eq!(ev["task"]["attachments"][n - 1]["id"], f["id"]);
    }
    let (s, e) = attach_http(&app, &t, &owner.token, &pdf_bytes(3000, 11)).await;
    assert_eq!((s, e["error"]["code"].clone()), (409, json!("conflict")));
    let full = c
        .emit_ack(
            NSP,
            11,
            "initiate_upload",
            json!({
                "uploadId": "att-11", "fileName": "x.pdf", "fileSize": 10,
                "mimeType": "application/pdf", "target": { "taskId": t },
            }),
        )
        .await;
    assert_eq!(full["error"]["code"], "conflict", "{full}");
    let (_, task) = app
        .get(&format!("/api/v1/tasks/{t}"), Some(&owner.token))
        .await;
    assert_eq!(task["attachments"].as_array().unwrap().len(), 10);
}
