//! HTTP handlers for conversations and chat history (`/api/v1/conversations`).
//!
//! Creating one adds the creator and checks every member exists; with a
//! `workspaceId`, the creator must be a member of that workspace (else 404,
//! the answer for a workspace that does not exist, so a non-member learns
//! nothing about it) and so must everyone named (else 403: the creator may
//! see the workspace's members anyway, and an id outside it gets the same
//! 403 whether or not such a user exists). An untitled
//! two-person conversation is unique per pair (`direct_key` = sorted `"a|b"`)
//! and asking for it again answers the existing one with 200. History is for
//! members only: anyone else gets the same 404 as for a conversation that
//! does not exist, so ids leak nothing. JSON shapes come from
//! `huddle_actors::wire`, so HTTP and sockets show the same objects.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::workspaces::role_in;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use huddle_actors::ids::{ConversationId, UserId, WorkspaceId};
use huddle_actors::model::{Conversation, NewConversation};
use huddle_actors::wire;
use serde::Deserialize;
use serde_json::json;

/// Longest id accepted in a path or a body.
const MAX_ID_LEN: usize = 128;
/// Most members named in one create request.
const MAX_MEMBERS: usize = 256;
/// Longest conversation title, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// Longest list cursor accepted.
const MAX_CURSOR_LEN: usize = 512;

/// `POST /conversations` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    /// The workspace the conversation belongs to: the creator and every
    /// member must be members of it (contract section 7).
    #[serde(default)]
    workspace_id: Option<String>,
    member_ids: Vec<String>,
    #[serde(default)]
    title: Option<String>,
}

/// `GET /conversations` query.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /conversations/{id}/messages` query.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{what} must be a non-empty id of at most {MAX_ID_LEN} characters"
        )));
    }
    Ok(())
}

/// Parses `limit`: default when absent, else 1..=max.
fn parse_limit(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match raw {
        None => Ok(default),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "limit must be an integer from 1 to {max}"
            ))),
        },
    }
}

/// `POST /api/v1/conversations {workspaceId?, memberIds, title?}` → 201 with
/// the conversation, or 200 with the existing untitled one of the same pair.
pub async fn create(
    state: web::Data<AppState>,
    who: AuthUser,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.member_ids.len() > MAX_MEMBERS {
        return Err(ApiError::BadRequest(format!(
            "memberIds may name at most {MAX_MEMBERS} users"
        )));
    }
    if let Some(ws) = &body.workspace_id {
        check_id("workspaceId", ws)?;
    }
    let title = match body.title.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if t.chars().count() > MAX_TITLE_CHARS => {
            return Err(ApiError::BadRequest(format!(
                "title must be at most {MAX_TITLE_CHARS} characters"
            )))
        }
        Some(t) if t.chars().any(char::is_control) => {
            return Err(ApiError::BadRequest(
                "title must not contain control characters".to_owned(),
            ))
        }
        Some(t) => Some(t.to_owned()),
    };

    let mut members: Vec<UserId> = vec![who.user_id.clone()];
    for id in &body.member_ids {
        check_id("memberIds entry", id)?;
        let id = UserId::from(id.as_str());
        if !members.contains(&id) {
            members.push(id);
        }
    }
    match &body.workspace_id {
        Some(ws) => {
            let ws = WorkspaceId::from(ws.as_str());
            role_in(&state, &ws, &who.user_id).await?;
            for id in members.iter().skip(1) {
                if state.store.member(&ws, id).await?.is_none() {
                    return Err(ApiError::Forbidden(format!(
                        "user {id} is not a member of this workspace"
                    )));
                }
            }
        }
        None => {
            for id in members.iter().skip(1) {
                if state.store.user_by_id(id).await?.is_none() {
                    return Err(ApiError::NotFound(format!("user {id} not found")));
                }
            }
        }
    }

    // One untitled conversation per pair of people, whatever the workspace.
    let direct_key = (members.len() == 2 && title.is_none()).then(|| {
        let mut pair = [members[0].as_str(), members[1].as_str()];
        pair.sort_unstable();
        format!("{}|{}", pair[0], pair[1])
    });
    let (conversation, created) = state
        .store
        .create_conversation(NewConversation {
            workspace_id: body.workspace_id,
            title,
            member_ids: members,
            created_by: who.user_id,
            direct_key,
        })
        .await?;
    let body = wire::conversation(&conversation);
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// `GET /api/v1/conversations?cursor=&limit=` → `{ items, nextCursor }`, the
/// caller's conversations, newest first.
pub async fn list(
    state: web::Data<AppState>,
    who: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let chat = &state.settings.chat;
    let limit = parse_limit(
        query.limit.as_deref(),
        chat.history_default_limit,
        chat.history_max_limit,
    )?;
    let cursor = query.cursor.as_deref().filter(|c| !c.is_empty());
    if cursor.is_some_and(|c| c.len() > MAX_CURSOR_LEN) {
        return Err(ApiError::BadRequest("cursor is not valid".to_owned()));
    }
    let page = state
        .store
        .conversations_for_user(&who.user_id, cursor, limit)
        .await?;
    let items: Vec<_> = page.items.iter().map(wire::conversation).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "nextCursor": page.next_cursor })))
}

/// The conversation if `user` is a member; `NotFound` otherwise, the same
/// answer as for an unknown id.
async fn member_conversation(
    state: &AppState,
    id: &ConversationId,
    user: &UserId,
) -> Result<Conversation, ApiError> {
    match state.store.conversation(id).await? {
        Some(c) if c.member_ids.contains(user) => Ok(c),
        _ => Err(ApiError::NotFound("conversation not found".to_owned())),
    }
}

/// `GET /api/v1/conversations/{id}/messages?before=&limit=` →
/// `{ items, nextCursor }`: messages with `seq < before`, the newest `limit`
/// of them, oldest first; `nextCursor` is the oldest item's `seq` (pass it as
/// `before`) while older messages exist, `null` at the start.
pub async fn history(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    check_id("conversation id", &id)?;
    let chat = &state.settings.chat;
    let limit = parse_limit(
        query.limit.as_deref(),
        chat.history_default_limit,
        chat.history_max_limit,
    )?;
    let before = match query.before.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(ApiError::BadRequest(
                    "before must be a positive integer seq".to_owned(),
                ))
            }
        },
    };
    let conversation_id = ConversationId(id);
    member_conversation(&state, &conversation_id, &who.user_id).await?;
    let messages = state
        .store
        .messages_before(&conversation_id, before, limit)
        .await?;
    // seq is gap-free from 1, so older messages exist exactly when the oldest
    // one here is not seq 1.
    let next_cursor = messages
        .first()
        .filter(|m| m.seq > 1)
        .map(|m| m.seq.to_string());
    let items: Vec<_> = messages.iter().map(wire::message).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "nextCursor": next_cursor })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_strictly() {
        assert_eq!(parse_limit(None, 50, 200).unwrap(), 50);
        assert_eq!(parse_limit(Some("200"), 50, 200).unwrap(), 200);
        for bad in ["0", "201", "-1", "ten", "", "1.5"] {
            assert!(parse_limit(Some(bad), 50, 200).is_err(), "{bad}");
        }
    }
}
