//! HTTP handlers for files (contract section 7): the multipart upload
//! fallback `POST /api/v1/uploads`, file metadata and content, download
//! tokens, and `GET /api/v1/dl/{token}`.
//!
//! Uploads stream: the body is cut into parts of [`PART_SIZE`] bytes written
//! to the blob store as they arrive and assembled at the end, so memory per
//! request stays one part whatever the file. The same rules as socket uploads
//! apply (allow-list, first bytes against the declared type, no NUL in text,
//! sanitized names). Downloads stream from the blob store with single-range
//! `Range` support (206, or 416 with `Content-Range: bytes */size`).
//!
//! Download URLs live under `/api/v1` like the rest of the API (`/api/v1/dl/{token}`);
//! the token endpoint returns the URL, so clients never build it.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures_util::TryStreamExt;
use huddle_actors::blob::BlobError;
use huddle_actors::ids::new_id;
use huddle_actors::model::{DownloadPermission, DownloadToken, FileRecord, TokenUse};
use huddle_actors::upload_rules::{content_agrees, is_text, normalize_mime, sanitize_file_name};
use huddle_actors::wire;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

/// Size of the parts an HTTP upload is written in.
pub const PART_SIZE: usize = 64 * 1024;
/// Room for the multipart framing around the file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// What a field other than the file counts toward [`MULTIPART_OVERHEAD`]
/// besides its bytes (its part headers).
const FIELD_COST: u64 = 256;
/// Longest a download token may live, in seconds.
pub const MAX_TOKEN_TTL_SECS: u64 = 86_400;
/// Token lifetime when the client names none, in seconds.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// Longest file id accepted in a path.
const MAX_ID_LEN: usize = 128;

impl From<BlobError> for ApiError {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::NotFound(what) => ApiError::internal(
                "blob store",
                BlobError::NotFound(format!("{what} is missing from the blob store")),
            ),
            other => ApiError::internal("blob store", other),
        }
    }
}

fn check_file_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ApiError::NotFound("file not found".to_owned()));
    }
    Ok(())
}

/// The file if `user` may read it; `NotFound` otherwise (ids leak nothing).
async fn readable_file(
    state: &AppState,
    id: &str,
    user: &huddle_actors::ids::UserId,
) -> Result<FileRecord, ApiError> {
    check_file_id(id)?;
    let file = state.store.file(id).await?;
    match file {
        Some(f) if state.store.can_read_file(&f.id, user).await? => Ok(f),
        _ => Err(ApiError::NotFound("file not found".to_owned())),
    }
}

/// Writes one part, checking the first part's bytes against the type.
async fn put_checked_part(
    state: &AppState,
    staging: &str,
    index: u32,
    part: Bytes,
    mime: &str,
) -> Result<(), ApiError> {
    if (index == 0 || is_text(mime)) && !content_agrees(mime, &part) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the file's content is not {mime}"
        )));
    }
    let offset = u64::from(index) * PART_SIZE as u64;
    state.blobs.put_part(staging, index, offset, part).await?;
    Ok(())
}

/// `POST /api/v1/uploads` (multipart/form-data, field `file`) → 201 with the
/// file object.
pub async fn upload(
    state: web::Data<AppState>,
    who: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let file = receive_file(&state, &who, &req, payload).await?;
    Ok(HttpResponse::Created().json(wire::file(&file)))
}

/// Streams the multipart field `file` of the request into the blob store
/// (checked like every upload) and records the file, uploaded by `who`.
/// Shared by `POST /uploads` and `POST /tasks/{id}/attachments`.
pub async fn receive_file(
    state: &AppState,
    who: &AuthUser,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<FileRecord, ApiError> {
    let max = state.settings.uploads.http_max_file_size;
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > max + MULTIPART_OVERHEAD) {
        return Err(ApiError::PayloadTooLarge(format!(
            "files are at most {max} bytes"
        )));
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::BadRequest(
            "the body must be multipart/form-data with a field named file".to_owned(),
        ));
    }
    let mut form = Multipart::new(req.headers(), payload);
    let bad = |e: actix_multipart::MultipartError| {
        ApiError::BadRequest(format!("malformed multipart body: {e}"))
    };
    // Bytes of the fields other than the file, all of them together: a body
    // sent without Content-Length cannot go on with small fields forever.
    let mut others = 0u64;
    while let Some(mut field) = form.try_next().await.map_err(bad)? {
        if field.name() != Some("file") {
            // Each field counts its headers too, so empty ones add up.
            others += FIELD_COST;
            if others > MULTIPART_OVERHEAD {
                return Err(ApiError::BadRequest(
                    "only the file field may be large".to_owned(),
                ));
            }
            while let Some(piece) = field.try_next().await.map_err(bad)? {
                others += piece.len() as u64;
                if others > MULTIPART_OVERHEAD {
                    return Err(ApiError::BadRequest(
                        "only the file field may be large".to_owned(),
                    ));
                }
            }
            continue;
        }
        let file_name = sanitize_file_name(
            field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .unwrap_or("file"),
        );
        let mime = normalize_mime(
            &field
                .content_type()
                .map(|m| m.essence_str().to_owned())
                .unwrap_or_default(),
        );
        if !state
            .settings
            .uploads
            .to_config()
            .allowed_mime_types
            .contains(&mime)
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "{:?} is not an allowed type",
                mime.chars().take(100).collect::<String>()
            )));
        }
        let id = new_id();
        let staging = format!("http-{id}");
        let result = async {
            let mut buf = BytesMut::with_capacity(PART_SIZE);
            let mut size = 0u64;
            let mut index = 0u32;
            while let Some(piece) = field.try_next().await.map_err(bad)? {
                size += piece.len() as u64;
                if size > max {
                    return Err(ApiError::PayloadTooLarge(format!(
                        "files are at most {max} bytes"
                    )));
                }
                let mut rest = &piece[..];
                while !rest.is_empty() {
                    let take = rest.len().min(PART_SIZE - buf.len());
                    buf.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if buf.len() == PART_SIZE {
                        put_checked_part(state, &staging, index, buf.split().freeze(), &mime)
                            .await?;
                        index += 1;
                    }
                }
            }
            if !buf.is_empty() {
                put_checked_part(state, &staging, index, buf.split().freeze(), &mime).await?;
                index += 1;
            }
            if size == 0 {
                return Err(ApiError::BadRequest("the file is empty".to_owned()));
            }
            let assembled = state.blobs.assemble(&staging, index, &id).await?;
            let (file, _) = state
                .store
                .create_file(FileRecord {
                    id: id.clone(),
                    file_name,
                    size: assembled.size,
                    mime_type: mime.clone(),
                    sha256: assembled.sha256,
                    blob_key: id.clone(),
                    uploaded_by: who.user_id.clone(),
                    created_at: Utc::now(),
                })
                .await?;
            Ok(file)
        }
        .await;
        if let Err(e) = state.blobs.delete_parts(&staging).await {
            log::warn!("deleting parts of {staging}: {e}");
        }
        return result;
    }
    Err(ApiError::BadRequest(
        "the multipart body has no field named file".to_owned(),
    ))
}

/// `GET /api/v1/files/{id}` → the file object.
pub async fn metadata(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let file = readable_file(&state, &path, &who.user_id).await?;
    Ok(HttpResponse::Ok().json(wire::file(&file)))
}

/// `GET /api/v1/files/{id}/content` → the bytes (Range supported).
pub async fn content(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let file = readable_file(&state, &path, &who.user_id).await?;
    serve(&state, &file, &req, DownloadPermission::Download).await
}

/// `POST /api/v1/files/{id}/download-token` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenBody {
    permission: DownloadPermission,
    #[serde(default)]
    one_time: bool,
    expires_in: Option<u64>,
}

/// `POST /api/v1/files/{id}/download-token {permission, oneTime?, expiresIn?}`
/// → 201 `{ url, expiresAt }`.
pub async fn download_token(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    body: web::Json<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let file = readable_file(&state, &path, &who.user_id).await?;
    let body = body.into_inner();
    let ttl = body.expires_in.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if ttl == 0 || ttl > MAX_TOKEN_TTL_SECS {
        return Err(ApiError::BadRequest(format!(
            "expiresIn must be 1 to {MAX_TOKEN_TTL_SECS} seconds"
        )));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let expires_at = Utc::now() + chrono::Duration::seconds(ttl as i64);
    state
        .store
        .put_download_token(DownloadToken {
            token_hash: huddle_actors::upload_rules::sha256_hex(token.as_bytes()),
            file_id: file.id,
            created_by: who.user_id,
            permission: body.permission,
            one_time: body.one_time,
            expires_at,
            spent: false,
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({
        "url": format!("/api/v1/dl/{token}"),
        "expiresAt": wire::iso(&expires_at),
    })))
}

/// `GET /api/v1/dl/{token}`: the bytes, with no other auth; 410 once a
/// one-time token is spent or a token has expired.
pub async fn by_token(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = path.into_inner();
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::NotFound("download link not found".to_owned()));
    }
    let hash = huddle_actors::upload_rules::sha256_hex(token.as_bytes());
    let grant = match state.store.use_download_token(&hash, Utc::now()).await? {
        TokenUse::Valid(t) => t,
        TokenUse::Spent => {
            return Err(ApiError::Gone(
                "this one-time download link was used already".to_owned(),
            ))
        }
        TokenUse::Expired => {
            return Err(ApiError::Gone("this download link has expired".to_owned()))
        }
        TokenUse::Unknown => return Err(ApiError::NotFound("download link not found".to_owned())),
    };
    let file = state
        .store
        .file(&grant.file_id)
        .await?
        .ok_or_else(|| ApiError::Gone("the file no longer exists".to_owned()))?;
    serve(&state, &file, &req, grant.permission).await
}

/// A byte range asked for, inclusive.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No (usable) `Range` header: the whole file.
    Whole,
    /// `start..=end`.
    Part(u64, u64),
    /// A range that cannot be served: 416.
    Unsatisfiable,
}

/// Parses one `bytes=` range against `size`. Several ranges, or other units,
/// are ignored (the whole file is served), as RFC 9110 allows.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, true) => None,
        (true, false) => b
            .parse::<u64>()
            .ok()
            .and_then(|n| (n > 0 && size > 0).then(|| (size.saturating_sub(n), size - 1))),
        (false, _) => a.parse::<u64>().ok().and_then(|start| {
            let end = if b.is_empty() {
                Some(size.saturating_sub(1))
            } else {
                b.parse::<u64>().ok().map(|e| e.min(size.saturating_sub(1)))
            }?;
            (start < size && start <= end).then_some((start, end))
        }),
    };
    match parsed {
        Some((s, e)) => RangeAsk::Part(s, e),
        None => RangeAsk::Unsatisfiable,
    }
}

/// `inline; filename="..."; filename*=UTF-8''...` (or `attachment`).
fn disposition(kind: DownloadPermission, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let kind = match kind {
        DownloadPermission::Preview => "inline",
        DownloadPermission::Download => "attachment",
    };
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Streams a file, whole or one range.
async fn serve(
    state: &AppState,
    file: &FileRecord,
    req: &HttpRequest,
    kind: DownloadPermission,
) -> Result<HttpResponse, ApiError> {
    let size = file.size;
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, start, len) = match parse_range(range, size) {
        RangeAsk::Whole => (actix_web::http::StatusCode::OK, 0, size),
        RangeAsk::Part(s, e) => (actix_web::http::StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        RangeAsk::Unsatisfiable => {
            let err = ApiError::RangeNotSatisfiable(format!(
                "the range is outside the file's {size} bytes"
            ));
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .json(err.body()));
        }
    };
    let stream = state.blobs.read(&file.blob_key, start, len).await?;
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, file.mime_type.clone()))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            disposition(kind, &file.file_name),
        ))
        .insert_header((header::ETAG, format!("\"{}\"", file.sha256)))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    if status == actix_web::http::StatusCode::PARTIAL_CONTENT {
        res.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        ));
    }
    Ok(res.no_chunking(len).streaming(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_per_rfc() {
        assert_eq!(parse_range(None, 100), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), RangeAsk::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeAsk::Part(90, 99));
        assert_eq!(
            parse_range(Some("bytes=50-1000"), 100),
            RangeAsk::Part(50, 99)
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeAsk::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=9-3"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=x-"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeAsk::Whole);
    }

    #[test]
    fn disposition_is_safe() {
        let d = disposition(DownloadPermission::Preview, "ré\"port.pdf");
        assert!(d.starts_with("inline; filename=\"r__port.pdf\""), "{d}");
        assert!(d.ends_with("filename*=UTF-8''r%C3%A9%22port.pdf"), "{d}");
    }
}
