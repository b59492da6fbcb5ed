//! HTTP handlers for the caller's notifications (`/api/v1/notifications`):
//! the list (newest first, optionally unread only) with the unread count,
//! and marking one or all read. Notifications are made by the task and
//! comment handlers through `Collab::notify`, which also pushes them.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::workspaces::{check_id, parse_cursor, parse_limit, DEFAULT_LIMIT, MAX_LIMIT};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use huddle_actors::ids::NotificationId;
use huddle_actors::wire;
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /notifications` query.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    unread: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /api/v1/notifications?unread=true&cursor=&limit=` →
/// `{ items, nextCursor, unreadCount }`.
pub async fn list(
    state: web::Data<AppState>,
    who: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let unread = match query.unread.as_deref() {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "unread must be true or false".to_owned(),
            ))
        }
    };
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = parse_cursor(query.cursor.as_deref(), true)?;
    let page = state
        .store
        .notifications(&who.user_id, unread, cursor, limit)
        .await?;
    let count = state.store.unread_count(&who.user_id).await?;
    let items: Vec<Value> = page.items.iter().map(wire::notification).collect();
    Ok(HttpResponse::Ok()
        .json(json!({ "items": items, "nextCursor": page.next_cursor, "unreadCount": count })))
}

/// `POST /api/v1/notifications/{id}/read` → `{ ok: true, unreadCount }`;
/// 404 for someone else's.
pub async fn read(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_id("notification id", &path)?;
    let count = state
        .store
        .mark_notification_read(&who.user_id, &NotificationId::from(path.as_str()))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "ok": true, "unreadCount": count })))
}

/// `POST /api/v1/notifications/read-all` → `{ ok: true, updated, unreadCount: 0 }`.
pub async fn read_all(state: web::Data<AppState>, who: AuthUser) -> Result<HttpResponse, ApiError> {
    let updated = state
        .store
        .mark_all_notifications_read(&who.user_id)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "ok": true, "updated": updated, "unreadCount": 0 })))
}
