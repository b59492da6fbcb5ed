//! HTTP handlers for tasks, comments and task search (`/api/v1/projects/{id}/tasks`,
//! `/tasks/...`, `/comments/...`, `/workspaces/{id}/search`).
//!
//! Every route checks the caller's role in the owning workspace: members
//! read, viewers never write, non-members get 404 like unknown ids. Every
//! write is published as the contract's `task:*` / `comment:*` event after
//! it is stored (a PATCH that changes the status is a `task:moved`, one
//! that changes other fields a `task:updated`, both when both), and makes
//! the notifications it causes: assignment, a comment on your task, an
//! @mention — never for your own actions.

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::workspaces::{
    check_id, long_text, name_text, parse_cursor, parse_limit, require_write, role_in,
    DEFAULT_LIMIT, MAX_DESCRIPTION_CHARS, MAX_LIMIT,
};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use huddle_actors::collab::{MentionScope, Mentioning};
use huddle_actors::events::{CommentChange, DomainEvent, TaskChange};
use huddle_actors::ids::{CommentId, ProjectId, TaskId, UserId, WorkspaceId};
use huddle_actors::model::{
    Comment, NewComment, NewNotification, NewTask, Priority, Project, Role, Task, TaskFilter,
    TaskPatch, TaskStatus,
};
use huddle_actors::wire;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

/// Longest task title, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// Most tags on a task.
const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
const MAX_TAG_CHARS: usize = 50;
/// Longest comment, in characters.
const MAX_COMMENT_CHARS: usize = 10_000;
/// Longest search query, in characters.
const MAX_QUERY_CHARS: usize = 200;
/// Default and largest search page size.
const SEARCH_DEFAULT_LIMIT: usize = 20;
const SEARCH_MAX_LIMIT: usize = 100;
/// Deepest search page.
const SEARCH_MAX_PAGE: usize = 1000;

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`)
/// or a value.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /projects/{id}/tasks` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTask {
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    status: Option<TaskStatus>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    assignee_id: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    due_date: Option<String>,
}

/// `PATCH /tasks/{id}` body; `null` clears the nullable fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchTask {
    #[serde(default)]
    title: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default)]
    status: Option<TaskStatus>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default, deserialize_with = "nullable")]
    assignee_id: Option<Option<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    due_date: Option<Option<String>>,
}

/// `GET /projects/{id}/tasks` query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    assignee_id: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// `?cursor=&limit=`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /workspaces/{id}/search` query.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// `POST /tasks/{id}/comments` and `PATCH /comments/{id}` body.
#[derive(Debug, Deserialize)]
pub struct CommentBody {
    body: String,
}

fn tags(raw: Vec<String>) -> Result<Vec<String>, ApiError> {
    if raw.len() > MAX_TAGS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_TAGS} tags a task"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for t in raw {
        let t = name_text("tag", &t, MAX_TAG_CHARS)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn due_date(raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        })
        .map_err(|_| ApiError::BadRequest("dueDate must be an ISO 8601 date".to_owned()))
}

fn parse_status(raw: &str) -> Result<TaskStatus, ApiError> {
    serde_json::from_value(json!(raw)).map_err(|_| {
        ApiError::BadRequest("status must be todo, in_progress, in_review or done".to_owned())
    })
}

/// The assignee, who must be a member of the workspace.
async fn assignee(state: &AppState, ws: &WorkspaceId, raw: &str) -> Result<UserId, ApiError> {
    check_id("assigneeId", raw)?;
    let user = UserId::from(raw);
    if state.store.member(ws, &user).await?.is_none() {
        return Err(ApiError::BadRequest(
            "assigneeId must be a member of the workspace".to_owned(),
        ));
    }
    Ok(user)
}

/// The project and the caller's role in its workspace; 404 for unknown
/// projects and non-members alike.
async fn project_for(
    state: &AppState,
    raw: &str,
    user: &UserId,
) -> Result<(Project, Role), ApiError> {
    check_id("project id", raw)?;
    let project = state
        .store
        .project(&ProjectId::from(raw))
        .await?
        .ok_or_else(|| ApiError::NotFound("project not found".to_owned()))?;
    let role = role_in(state, &project.workspace_id, user)
        .await
        .map_err(|_| ApiError::NotFound("project not found".to_owned()))?;
    Ok((project, role))
}

/// The live task and the caller's role in its workspace; 404 for unknown or
/// deleted tasks and for non-members alike.
async fn task_for(state: &AppState, raw: &str, user: &UserId) -> Result<(Task, Role), ApiError> {
    check_id("task id", raw)?;
    let not_found = || ApiError::NotFound("task not found".to_owned());
    let task = state
        .store
        .task(&TaskId::from(raw))
        .await?
        .filter(|t| t.deleted_at.is_none())
        .ok_or_else(not_found)?;
    let role = role_in(state, &task.workspace_id, user)
        .await
        .map_err(|_| not_found())?;
    Ok((task, role))
}

async fn notify_assigned(state: &AppState, task: &Task, actor: &AuthUser) {
    let Some(assignee) = task.assignee_id.as_ref().filter(|a| **a != actor.user_id) else {
        return;
    };
    notify(
        state,
        NewNotification {
            user_id: assignee.clone(),
            kind: "task_assigned".into(),
            title: format!("{} assigned you a task", actor.name),
            body: task.title.clone(),
            link: format!("/tasks/{}", task.id),
        },
    )
    .await;
}

/// Stores and pushes a notification; a failure is logged, never fails the
/// write that caused it.
async fn notify(state: &AppState, new: NewNotification) {
    if let Err(e) = state.collab.notify(new).await {
        log::error!(
            "notification failed: {e}: {:?}",
            std::error::Error::source(&e)
        );
    }
}

/// `POST /api/v1/projects/{id}/tasks` → 201 with the task; `task:created`.
pub async fn create(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    body: web::Json<CreateTask>,
) -> Result<HttpResponse, ApiError> {
    let (project, role) = project_for(&state, &path, &who.user_id).await?;
    require_write(role)?;
    let body = body.into_inner();
    let title = name_text("title", &body.title, MAX_TITLE_CHARS)?;
    let description = long_text(
        "description",
        body.description.as_deref(),
        MAX_DESCRIPTION_CHARS,
    )?;
    let tags = tags(body.tags.unwrap_or_default())?;
    let due = body.due_date.as_deref().map(due_date).transpose()?;
    let assignee_id = match &body.assignee_id {
        Some(a) => Some(assignee(&state, &project.workspace_id, a).await?),
        None => None,
    };
    let task = state
        .store
        .create_task(NewTask {
            project_id: project.id,
            title,
            description,
            status: body.status.unwrap_or(TaskStatus::Todo),
            priority: body.priority.unwrap_or(Priority::Medium),
            assignee_id,
            tags,
            due_date: due,
            created_by: who.user_id.clone(),
        })
        .await?;
    state
        .collab
        .publish(DomainEvent::Task {
            change: TaskChange::Created,
            task: Box::new(task.clone()),
            actor: who.user_id.clone(),
        })
        .await;
    notify_assigned(&state, &task, &who).await;
    Ok(HttpResponse::Created().json(wire::task(&task)))
}

/// `GET /api/v1/projects/{id}/tasks?status=&assigneeId=&cursor=&limit=` →
/// `{ items, nextCursor }`, oldest first, deleted tasks left out.
pub async fn list(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    query: web::Query<TaskQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = parse_cursor(query.cursor.as_deref(), true)?;
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_status(s)?),
        None => None,
    };
    let assignee_id = match query.assignee_id.as_deref().filter(|s| !s.is_empty()) {
        Some(a) => {
            check_id("assigneeId", a)?;
            Some(UserId::from(a))
        }
        None => None,
    };
    let (project, _) = project_for(&state, &path, &who.user_id).await?;
    let page = state
        .store
        .tasks(
            &project.id,
            &TaskFilter {
                status,
                assignee_id,
            },
            cursor,
            limit,
        )
        .await?;
    let items: Vec<Value> = page.items.iter().map(wire::task).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "nextCursor": page.next_cursor })))
}

/// `GET /api/v1/tasks/{id}` → the task.
pub async fn get(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (task, _) = task_for(&state, &path, &who.user_id).await?;
    Ok(HttpResponse::Ok().json(wire::task(&task)))
}

/// `PATCH /api/v1/tasks/{id}` → the task; `task:moved` when the status
/// changed, `task:updated` when other fields did (both when both).
pub async fn update(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    body: web::Json<PatchTask>,
) -> Result<HttpResponse, ApiError> {
    let (task, role) = task_for(&state, &path, &who.user_id).await?;
    require_write(role)?;
    let body = body.into_inner();
    let mut patch = TaskPatch {
        status: body.status,
        priority: body.priority,
        ..Default::default()
    };
    if let Some(t) = &body.title {
        patch.title = Some(name_text("title", t, MAX_TITLE_CHARS)?);
    }
    if let Some(d) = &body.description {
        patch.description = Some(long_text(
            "description",
            d.as_deref(),
            MAX_DESCRIPTION_CHARS,
        )?);
    }
    if let Some(t) = body.tags {
        patch.tags = Some(tags(t)?);
    }
    if let Some(d) = &body.due_date {
        patch.due_date = Some(d.as_deref().map(due_date).transpose()?);
    }
    if let Some(a) = &body.assignee_id {
        patch.assignee_id = Some(match a {
            Some(a) => Some(assignee(&state, &task.workspace_id, a).await?),
            None => None,
        });
    }
    let (before, after) = state.store.update_task(&task.id, patch).await?;
    let mut other_fields = before.clone();
    other_fields.status = after.status;
    other_fields.updated_at = after.updated_at;
    if other_fields != after {
        state
            .collab
            .publish(DomainEvent::Task {
                change: TaskChange::Updated,
                task: Box::new(after.clone()),
                actor: who.user_id.clone(),
            })
            .await;
    }
    if before.status != after.status {
        state
            .collab
            .publish(DomainEvent::Task {
                change: TaskChange::Moved {
                    from: before.status,
                    to: after.status,
                },
                task: Box::new(after.clone()),
                actor: who.user_id.clone(),
            })
            .await;
    }
    if after.assignee_id.is_some() && after.assignee_id != before.assignee_id {
        notify_assigned(&state, &after, &who).await;
    }
    Ok(HttpResponse::Ok().json(wire::task(&after)))
}

/// `POST /api/v1/tasks/{id}/attachments` (multipart, field `file`, the same
/// rules as `POST /uploads`) → 201 with the file object; the task lists it in
/// `attachments` and `task:updated` goes to its rooms. Writers only; at most
/// `uploads.max_task_attachments` files a task (409 beyond).
pub async fn attach(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (task, role) = task_for(&state, &path, &who.user_id).await?;
    require_write(role)?;
    let max = state.settings.uploads.max_task_attachments;
    let full = || ApiError::Conflict(format!("a task has at most {max} attachments"));
    // Checked before the body is read, so a full task costs no upload; the
    // store checks again atomically when attaching.
    if task.attachments.len() >= max {
        return Err(full());
    }
    let file = super::files::receive_file(&state, &who, &req, payload).await?;
    let (after, changed) = state
        .store
        .attach_file(&task.id, &file.id, wire::file(&file), max)
        .await?;
    if changed {
        state
            .collab
            .publish(DomainEvent::Task {
                change: TaskChange::Updated,
                task: Box::new(after),
                actor: who.user_id.clone(),
            })
            .await;
    }
    Ok(HttpResponse::Created().json(wire::file(&file)))
}

/// `DELETE /api/v1/tasks/{id}` → `{ ok: true }` (soft delete); `task:deleted`.
pub async fn delete(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (task, role) = task_for(&state, &path, &who.user_id).await?;
    require_write(role)?;
    let deleted = state.store.delete_task(&task.id).await?;
    state
        .collab
        .publish(DomainEvent::Task {
            change: TaskChange::Deleted,
            task: Box::new(deleted),
            actor: who.user_id,
        })
        .await;
    Ok(HttpResponse::Ok().json(json!({ "ok": true })))
}

/// `POST /api/v1/tasks/{id}/comments {body}` → 201; `comment:created`, and
/// notifications to the task's creator and assignee and to members
/// @mentioned (never to the author).
pub async fn create_comment(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    body: web::Json<CommentBody>,
) -> Result<HttpResponse, ApiError> {
    let (task, role) = task_for(&state, &path, &who.user_id).await?;
    require_write(role)?;
    let text = long_text("body", Some(&body.body), MAX_COMMENT_CHARS)?
        .ok_or_else(|| ApiError::BadRequest("body must not be empty".to_owned()))?;
    let comment = state
        .store
        .create_comment(NewComment {
            task_id: task.id.clone(),
            author_id: who.user_id.clone(),
            body: text,
        })
        .await?;
    state
        .collab
        .publish(DomainEvent::Comment {
            change: CommentChange::Created,
            comment: Box::new(comment.clone()),
            actor: who.user_id.clone(),
        })
        .await;

    let link = format!("/tasks/{}", task.id);
    let mentioned = state
        .collab
        .notify_mentions(Mentioning {
            text: &comment.body,
            author: &who.user_id,
            author_name: &who.name,
            scope: MentionScope::Workspace(&task.workspace_id),
            link: &link,
        })
        .await?;
    let mut involved: Vec<&UserId> = vec![&task.created_by];
    if let Some(a) = &task.assignee_id {
        if a != &task.created_by {
            involved.push(a);
        }
    }
    for user in involved {
        if *user == who.user_id || mentioned.contains(user) {
            continue;
        }
        notify(
            &state,
            NewNotification {
                user_id: user.clone(),
                kind: "task_comment".into(),
                title: format!("{} commented on {}", who.name, task.title),
                body: comment.body.chars().take(200).collect(),
                link: link.clone(),
            },
        )
        .await;
    }
    Ok(HttpResponse::Created().json(wire::comment(&comment)))
}

/// `GET /api/v1/tasks/{id}/comments` → `{ items, nextCursor }`, oldest first.
pub async fn comments(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = parse_cursor(query.cursor.as_deref(), true)?;
    let (task, _) = task_for(&state, &path, &who.user_id).await?;
    let page = state.store.comments(&task.id, cursor, limit).await?;
    let items: Vec<Value> = page.items.iter().map(wire::comment).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "nextCursor": page.next_cursor })))
}

/// The comment, if the caller may change it: its author (still able to
/// write), or an owner or admin of the workspace. 404 for non-members.
async fn editable_comment(state: &AppState, raw: &str, user: &UserId) -> Result<Comment, ApiError> {
    check_id("comment id", raw)?;
    let not_found = || ApiError::NotFound("comment not found".to_owned());
    let comment = state
        .store
        .comment(&CommentId::from(raw))
        .await?
        .ok_or_else(not_found)?;
    let role = role_in(state, &comment.workspace_id, user)
        .await
        .map_err(|_| not_found())?;
    require_write(role)?;
    if comment.author_id != *user && !role.can_manage() {
        return Err(ApiError::Forbidden(
            "only the author or an owner or admin may change a comment".to_owned(),
        ));
    }
    Ok(comment)
}

/// `PATCH /api/v1/comments/{id} {body}` → the comment; `comment:updated`.
pub async fn update_comment(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    body: web::Json<CommentBody>,
) -> Result<HttpResponse, ApiError> {
    let text = long_text("body", Some(&body.body), MAX_COMMENT_CHARS)?
        .ok_or_else(|| ApiError::BadRequest("body must not be empty".to_owned()))?;
    let comment = editable_comment(&state, &path, &who.user_id).await?;
    let updated = state.store.update_comment(&comment.id, text).await?;
    state
        .collab
        .publish(DomainEvent::Comment {
            change: CommentChange::Updated,
            comment: Box::new(updated.clone()),
            actor: who.user_id,
        })
        .await;
    Ok(HttpResponse::Ok().json(wire::comment(&updated)))
}

/// `DELETE /api/v1/comments/{id}` → `{ ok: true }`; `comment:deleted`.
pub async fn delete_comment(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let comment = editable_comment(&state, &path, &who.user_id).await?;
    let deleted = state.store.delete_comment(&comment.id).await?;
    state
        .collab
        .publish(DomainEvent::Comment {
            change: CommentChange::Deleted,
            comment: Box::new(deleted),
            actor: who.user_id,
        })
        .await;
    Ok(HttpResponse::Ok().json(json!({ "ok": true })))
}

/// `GET /api/v1/workspaces/{id}/search?q=&page=&limit=` → `{ items, total }`,
/// tasks ranked by relevance (page from 1).
pub async fn search(
    state: web::Data<AppState>,
    who: AuthUser,
    path: web::Path<String>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    check_id("workspace id", &path)?;
    let q = query.q.as_deref().map(str::trim).unwrap_or("");
    if q.is_empty() || q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::BadRequest(format!(
            "q must be 1 to {MAX_QUERY_CHARS} characters"
        )));
    }
    let limit = parse_limit(
        query.limit.as_deref(),
        SEARCH_DEFAULT_LIMIT,
        SEARCH_MAX_LIMIT,
    )?;
    let page = match query.page.as_deref() {
        None => 1,
        Some(p) => match p.trim().parse::<usize>() {
            Ok(n) if (1..=SEARCH_MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "page must be an integer from 1 to {SEARCH_MAX_PAGE}"
                )))
            }
        },
    };
    let ws = WorkspaceId::from(path.as_str());
    role_in(&state, &ws, &who.user_id).await?;
    let hits = state
        .store
        .search_tasks(&ws, q, (page - 1) * limit, limit)
        .await?;
    let items: Vec<Value> = hits.items.iter().map(wire::task).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "total": hits.total })))
}
