//! HTTP handlers for workspaces, members and projects
//! (`/api/v1/workspaces/...`), and the helpers the other collaboration
//! routes share: id and text checks, limits, and the membership check.
//!
//! Permissions: any member reads; members and above write projects; owners
//! and admins manage members; the owner is never removed nor demoted (409).
//! A non-member gets the same 404 as for an unknown id, so ids leak
//! nothing. Every member change is published (`member:*` to
//! `workspace:{id}`) and drops the workspace actor's cached membership; a
//! removal also takes the member's sockets out of the workspace's rooms
//! before the answer goes out.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use huddle_actors::events::{DomainEvent, MemberChange};
use huddle_actors::ids::{UserId, WorkspaceId};
use huddle_actors::model::{Member, NewProject, Role, Workspace};
use huddle_actors::wire;
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest id accepted in a path, query or body.
pub const MAX_ID_LEN: usize = 128;
/// Longest name (workspace, project), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Default page size of lists.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size of lists.
pub const MAX_LIMIT: usize = 200;
/// Longest list cursor accepted.
const MAX_CURSOR_LEN: usize = 256;

/// Checks an id from the client.
pub fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{what} must be a non-empty id of at most {MAX_ID_LEN} characters"
        )));
    }
    Ok(())
}

/// A trimmed, required, single-line text of at most `max` characters.
pub fn name_text(what: &str, raw: &str, max: usize) -> Result<String, ApiError> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(ApiError::BadRequest(format!(
            "{what} must be 1 to {max} characters"
        )));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(t.to_owned())
}

/// An optional long text (newlines allowed) of at most `max` characters;
/// empty becomes `None`.
pub fn long_text(what: &str, raw: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(t) if t.trim().is_empty() => Ok(None),
        Some(t) if t.chars().count() > max => Err(ApiError::BadRequest(format!(
            "{what} must be at most {max} characters"
        ))),
        Some(t) => Ok(Some(t.to_owned())),
    }
}

/// Parses `limit`: default when absent, else 1..=max.
pub fn parse_limit(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
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

/// Checks a list cursor: `numeric` ones are creation orders.
pub fn parse_cursor(raw: Option<&str>, numeric: bool) -> Result<Option<&str>, ApiError> {
    match raw.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c)
            if c.len() > MAX_CURSOR_LEN
                || (numeric && c.parse::<u64>().is_err())
                || c.chars().any(char::is_control) =>
        {
            Err(ApiError::BadRequest("cursor is not valid".to_owned()))
        }
        Some(c) => Ok(Some(c)),
    }
}

/// `?cursor=&limit=`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// The caller's role in the workspace; 404 when the workspace does not
/// exist or the caller is not a member (the same answer).
pub async fn role_in(state: &AppState, ws: &WorkspaceId, user: &UserId) -> Result<Role, ApiError> {
    match state.store.member(ws, user).await? {
        Some(m) => Ok(m.role),
        None => Err(ApiError::NotFound("workspace not found".to_owned())),
    }
}

/// 403 unless the role writes.
pub fn require_write(role: Role) -> Result<(), ApiError> {
    if role.can_write() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "viewers cannot make changes".to_owned(),
        ))
    }
}

fn require_manage(role: Role) -> Result<(), ApiError> {
    if role.can_manage() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only owners and admins manage members".to_owned(),
        ))
    }
}

async fn member_view(state: &AppState, m: &Member) -> Result<Value, ApiError> {
    let name = state
        .store
        .user_by_id(&m.user_id)
        .await?
        .map_or_else(|| m.user_id.to_string(), |u| u.name);
    Ok(wire::member(m, &name))
}

fn member_event(view: &Value) -> Value {
    json!({ "userId": view["userId"], "name": view["name"], "role": view["role"] })
}

fn parse_role(raw: &str) -> Result<Role, ApiError> {
    match raw {
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        "viewer" => Ok(Role::Viewer),
        "owner" => Err(ApiError::Conflict(
            "a workspace has exactly one owner".to_owned(),
        )),
        _ => Err(ApiError::BadRequest(
            "role must be one of admin, member, viewer".to_owned(),
        )),
    }
}

fn ws_path(raw: &str) -> Result<WorkspaceId, ApiError> {
    check_id("workspace id", raw)?;
    Ok(WorkspaceId::from(raw))
}

/// `POST /workspaces {name}` body.
#[derive(Debug, Deserialize)]
pub struct CreateWorkspace {
    name: String,
}

/// `POST /api/v1/workspaces {name}` → 201 with the workspace; the caller is
/// its owner.
pub async fn create(
    state: web::Data<AppState>,
    who: AuthUser,
    body: web::Json<CreateWorkspace>,
) -> Result<HttpResponse, ApiError> {
    let name = name_text("name", &body.name, MAX_NAME_CHARS)?;
    let ws = state.store.create_workspace(name, who.user_id).await?;
    Ok(HttpResponse::Created().json(wire::workspace(&ws, Some(Role::Owner.as_str()))))
}

/// `GET /api/v1/workspaces` → `{ items, nextCursor }`, the caller's
/// workspaces with their `role`.
pub async fn list(
    state: web::Data<AppState>,
    who: AuthUser,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = parse_cursor(query.cursor.as_deref(), false)?;
    let page = state
        .store
        .workspaces_for_user(&who.user_id, cursor, limit)
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for ws in &page.items {
        let role = state.store.member(&ws.id, &who.user_id).await?;
        items.push(wire::workspace(ws, role.map(|m| m.role.as_str())));
    }
    Ok(HttpResponse::Ok().json(json!({ "items": items, "nextCursor": page.next_cursor })))
}

async fn workspace_of(state: &AppState, id: &WorkspaceId) -> Result<Workspace, ApiError> {
    state
        .store
        .workspace(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("workspace not found".to_owned()))
}

/// `GET /api/v1/workspaces/{id}` → the workspace with the caller's `role`.
pub async fn get(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ws_path(&path)?;
    let role = role_in(&state, &id, &who.user_id).await?;
    let ws = workspace_of(&state, &id).await?;
    Ok(HttpResponse::Ok().json(wire::workspace(&ws, Some(role.as_str()))))
}

/// `GET /api/v1/workspaces/{id}/members` → `{ items, nextCursor }`.
pub async fn members(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = ws_path(&path)?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = parse_cursor(query.cursor.as_deref(), false)?;
    role_in(&state, &id, &who.user_id).await?;
    let page = state.store.members(&id, cursor, limit).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for m in &page.items {
        items.push(member_view(&state, m).await?);
    }
    Ok(HttpResponse::Ok().json(json!({ "items": items, "nextCursor": page.next_cursor })))
}

/// `POST /workspaces/{id}/members` body: `userId` or `email`, and `role`
/// (`member` when absent).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddMember {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

/// `POST /api/v1/workspaces/{id}/members {userId | email, role}` → 201 with
/// the member; `member:joined` to the workspace room. Unknown user or email
/// → 404; already a member → 409.
pub async fn add_member(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    body: web::Json<AddMember>,
) -> Result<HttpResponse, ApiError> {
    let id = ws_path(&path)?;
    let body = body.into_inner();
    let role = parse_role(body.role.as_deref().unwrap_or("member"))?;
    let user = match (&body.user_id, &body.email) {
        (Some(u), _) => {
            check_id("userId", u)?;
            state.store.user_by_id(&UserId::from(u.as_str())).await?
        }
        (None, Some(e)) => {
            if e.is_empty() || e.len() > 254 {
                return Err(ApiError::BadRequest("email is not valid".to_owned()));
            }
            state.store.user_by_email(&e.trim().to_lowercase()).await?
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "name the user with userId or email".to_owned(),
            ))
        }
    };
    let my_role = role_in(&state, &id, &who.user_id).await?;
    require_manage(my_role)?;
    let user = user.ok_or_else(|| ApiError::NotFound("user not found".to_owned()))?;
    let member = state.store.add_member(&id, &user.id, role).await?;
    state.collab.member_changed(&id, &user.id).await;
    let view = wire::member(&member, &user.name);
    state
        .collab
        .publish(DomainEvent::Member {
            change: MemberChange::Joined,
            workspace: id,
            member: member_event(&view),
            actor: who.user_id,
        })
        .await;
    Ok(HttpResponse::Created().json(view))
}

/// `PATCH /workspaces/{id}/members/{userId}` body.
#[derive(Debug, Deserialize)]
pub struct ChangeRole {
    role: String,
}

/// `PATCH /api/v1/workspaces/{id}/members/{userId} {role}` → the member;
/// `member:role_changed`. The owner cannot be demoted (409).
pub async fn change_role(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<ChangeRole>,
) -> Result<HttpResponse, ApiError> {
    let (ws, user) = path.into_inner();
    let id = ws_path(&ws)?;
    check_id("user id", &user)?;
    let role = parse_role(&body.role)?;
    let my_role = role_in(&state, &id, &who.user_id).await?;
    require_manage(my_role)?;
    let user = UserId::from(user);
    let (before, after) = state.store.set_member_role(&id, &user, role).await?;
    state.collab.member_changed(&id, &user).await;
    let view = member_view(&state, &after).await?;
    if before.role != after.role {
        state
            .collab
            .publish(DomainEvent::Member {
                change: MemberChange::RoleChanged,
                workspace: id,
                member: member_event(&view),
                actor: who.user_id,
            })
            .await;
    }
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /api/v1/workspaces/{id}/members/{userId}` → `{ ok: true }`;
/// `member:left`, then the member's sockets leave the workspace's rooms.
/// Owners and admins remove others; anyone but the owner may leave.
pub async fn remove_member(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (ws, user) = path.into_inner();
    let id = ws_path(&ws)?;
    check_id("user id", &user)?;
    let user = UserId::from(user);
    let my_role = role_in(&state, &id, &who.user_id).await?;
    if user != who.user_id {
        require_manage(my_role)?;
    }
    let removed = state.store.remove_member(&id, &user).await?;
    let view = member_view(&state, &removed).await?;
    state
        .collab
        .publish(DomainEvent::Member {
            change: MemberChange::Left,
            workspace: id.clone(),
            member: member_event(&view),
            actor: who.user_id,
        })
        .await;
    state.collab.member_removed(&id, &user).await;
    Ok(HttpResponse::Ok().json(json!({ "ok": true })))
}

/// `POST /workspaces/{id}/projects` body.
#[derive(Debug, Deserialize)]
pub struct CreateProject {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

/// `POST /api/v1/workspaces/{id}/projects {name, description?}` → 201.
pub async fn create_project(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    body: web::Json<CreateProject>,
) -> Result<HttpResponse, ApiError> {
    let id = ws_path(&path)?;
    let name = name_text("name", &body.name, MAX_NAME_CHARS)?;
    let description = long_text(
        "description",
        body.description.as_deref(),
        MAX_DESCRIPTION_CHARS,
    )?;
    require_write(role_in(&state, &id, &who.user_id).await?)?;
    let project = state
        .store
        .create_project(NewProject {
            workspace_id: id,
            name,
            description,
            created_by: who.user_id,
        })
        .await?;
    Ok(HttpResponse::Created().json(wire::project(&project)))
}

/// `GET /api/v1/workspaces/{id}/projects` → `{ items, nextCursor }`,
/// oldest first.
pub async fn projects(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = ws_path(&path)?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = parse_cursor(query.cursor.as_deref(), true)?;
    role_in(&state, &id, &who.user_id).await?;
    let page = state.store.projects(&id, cursor, limit).await?;
    let items: Vec<Value> = page.items.iter().map(wire::project).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "nextCursor": page.next_cursor })))
}
