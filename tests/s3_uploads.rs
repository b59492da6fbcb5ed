//! The S3 blob store end to end: a node configured with `S3_*` settings
//! against the loopback S3 server of `scripts/s3-test-server.sh`
//! (`HUDDLE_TEST_S3_ENDPOINT`), a 12 MiB chunked socket upload (larger than
//! two S3 parts) lands in the bucket byte for byte, read back through the
//! download route (whole and by range) and straight through the S3 API, with
//! no chunk objects left behind.

mod support;

use base64::Engine as _;
use futures_util::TryStreamExt;
use huddle::blob::{S3BlobStore, S3Config};
use rusoto_s3::S3;
use serde_json::json;
use sha2::{Digest, Sha256};
use support::app::spawn_app;
use support::sio::SioClient;

const NSP: &str = "/file-upload";
const CHUNK: usize = 512 * 1024;

#[actix_web::test]
async fn a_chunked_upload_larger_than_an_s3_part_lands_in_s3_intact() {
    let Ok(endpoint) = std::env::var("HUDDLE_TEST_S3_ENDPOINT") else {
        eprintln!("HUDDLE_TEST_S3_ENDPOINT unset: run scripts/test.sh for the S3 tests");
        return;
    };
    let bucket = format!("huddle-e2e-{}", uuid::Uuid::new_v4().simple());
    let s3 = S3BlobStore::new(&S3Config {
        bucket: bucket.clone(),
        endpoint: Some(endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
    })
    .unwrap();
    s3.create_bucket().await.unwrap();
    let app = spawn_app(&[
        ("S3_BUCKET", &bucket),
        ("S3_ENDPOINT", &endpoint),
        ("S3_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ])
    .await;
    let (status, ready) = app.get("/ready", None).await;
    assert_eq!(status, 200, "{ready}");
    let user = app.register("Sam").await;

    let mut data: Vec<u8> = (0..12 * 1024 * 1024 + 4321u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    data[..9].copy_from_slice(b"%PDF-1.7\n");
    let sha = hex::encode(Sha256::digest(&data));
    let mut c = SioClient::connect(app.port, NSP, &user.token).await;
    let up = c
        .emit_ack(
            NSP,
            1,
            "initiate_upload",
            json!({
                "uploadId": "big-s3", "fileName": "big.pdf", "fileSize": data.len(),
                "mimeType": "application/pdf", "chunkSize": CHUNK, "sha256": sha,
            }),
        )
        .await;
    assert_eq!(up["ok"], true, "{up}");
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    assert_eq!(up["totalChunks"], chunks.len());
    // Half, then a resume from a new connection reports exactly those.
    let half = chunks.len() / 2;
    for (i, chunk) in chunks.iter().enumerate().take(half) {
        let ack = c
            .emit_ack(
                NSP,
                10 + i as u64,
                "upload_chunk",
                json!({
                    "sessionId": up["sessionId"], "uploadId": "big-s3", "chunkIndex": i,
                    "chunkData": base64::engine::general_purpose::STANDARD.encode(chunk),
                }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    drop(c);
    let mut c = SioClient::connect(app.port, NSP, &user.token).await;
    let resumed = c
        .emit_ack(
            NSP,
            1,
            "initiate_upload",
            json!({
                "uploadId": "big-s3", "fileName": "big.pdf", "fileSize": data.len(),
                "mimeType": "application/pdf", "chunkSize": CHUNK,
            }),
        )
        .await;
    assert_eq!(
        resumed["receivedChunks"],
        json!((0..half).collect::<Vec<_>>())
    );
    for (i, chunk) in chunks.iter().enumerate().skip(half) {
        let ack = c
            .emit_ack(
                NSP,
                10 + i as u64,
                "upload_chunk",
                json!({
                    "sessionId": up["sessionId"], "uploadId": "big-s3", "chunkIndex": i,
                    "chunkData": base64::engine::general_purpose::STANDARD.encode(chunk),
                }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let done = c
        .emit_ack(
            NSP,
            100,
            "complete_upload",
            json!({ "sessionId": up["sessionId"], "uploadId": "big-s3" }),
        )
        .await;
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(done["file"]["sha256"], sha.as_str());
    let id = done["file"]["id"].as_str().unwrap().to_owned();

    // Through the download route, whole and by range.
    let client = awc::Client::default();
    let mut res = client
        .get(app.url(&format!("/api/v1/files/{id}/content")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body = res.body().limit(64 << 20).await.unwrap();
    assert!(body == data, "downloaded bytes differ");
    let mut res = client
        .get(app.url(&format!("/api/v1/files/{id}/content")))
        .bearer_auth(&user.token)
        .insert_header(("Range", "bytes=5242870-5242899"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 206);
    assert_eq!(res.body().await.unwrap(), &data[5_242_870..5_242_900]);

    // Straight from S3: one object, the same bytes; no chunk objects left.
    let object = s3
        .client()
        .get_object(rusoto_s3::GetObjectRequest {
            bucket: bucket.clone(),
            key: S3BlobStore::object_key(&id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(object.content_length, Some(data.len() as i64));
    let stored: Vec<u8> = object
        .body
        .unwrap()
        .map_ok(|b| b.to_vec())
        .try_concat()
        .await
        .unwrap();
    assert!(stored == data, "the S3 object differs");
    let listed = s3
        .client()
        .list_objects_v2(rusoto_s3::ListObjectsV2Request {
            bucket,
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.key)
        .collect();
    assert_eq!(keys, vec![S3BlobStore::object_key(&id)]);
}
