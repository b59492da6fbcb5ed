//! Workspaces in the embedded store: workspaces and members (with the
//! owner rules checked inside the write), projects, tasks with their list
//! indexes by project, status and assignee, and comments. Every list is a
//! bounded range scan over an index keyed by `(parent, seq)`; task writes
//! re-index the task in the search index once committed.

use super::*;
use async_trait::async_trait;
use huddle_actors::ids::{CommentId, ProjectId, TaskId, WorkspaceId};
use huddle_actors::model::{
    Comment, Member, NewComment, NewProject, NewTask, Project, Role, Task, TaskFilter, TaskPatch,
    Workspace,
};
use huddle_actors::store::WorkspaceStore;
use redb::Table;

/// workspace id → `Workspace` (JSON).
pub(super) const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspaces");
/// (workspace id, user id) → `Member` (JSON).
pub(super) const MEMBERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("members");
/// (user id, workspace id) → (): the workspaces of a user.
pub(super) const USER_WORKSPACES: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("user_workspaces");
/// project id → `Project` (JSON).
pub(super) const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("projects");
/// (workspace id, seq) → project id.
pub(super) const WORKSPACE_PROJECTS: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("workspace_projects");
/// task id → `Task` (JSON), deleted ones included.
pub(super) const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// (project id, seq) → task id, live tasks only.
pub(super) const PROJECT_TASKS: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("project_tasks");
/// (project id, status, seq) → task id, live tasks only.
pub(super) const TASKS_BY_STATUS: TableDefinition<(&str, &str, u64), &str> =
    TableDefinition::new("tasks_by_status");
/// (project id, assignee id, seq) → task id, live assigned tasks only.
pub(super) const TASKS_BY_ASSIGNEE: TableDefinition<(&str, &str, u64), &str> =
    TableDefinition::new("tasks_by_assignee");
/// comment id → `Comment` (JSON).
pub(super) const COMMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("comments");
/// (task id, seq) → comment id.
pub(super) const TASK_COMMENTS: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("task_comments");

/// (file id, task id) → workspace id: the tasks a file is attached to, so
/// `can_read_file` finds them with a short range scan.
pub(super) const FILE_TASKS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("file_tasks");

/// Opens every table of this area, so read transactions find them.
pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(WORKSPACES).ctx("open workspaces")?;
    txn.open_table(MEMBERS).ctx("open members")?;
    txn.open_table(USER_WORKSPACES)
        .ctx("open user_workspaces")?;
    txn.open_table(PROJECTS).ctx("open projects")?;
    txn.open_table(WORKSPACE_PROJECTS)
        .ctx("open workspace_projects")?;
    txn.open_table(TASKS).ctx("open tasks")?;
    txn.open_table(PROJECT_TASKS).ctx("open project_tasks")?;
    txn.open_table(TASKS_BY_STATUS)
        .ctx("open tasks_by_status")?;
    txn.open_table(TASKS_BY_ASSIGNEE)
        .ctx("open tasks_by_assignee")?;
    txn.open_table(COMMENTS).ctx("open comments")?;
    txn.open_table(TASK_COMMENTS).ctx("open task_comments")?;
    txn.open_table(FILE_TASKS).ctx("open file_tasks")?;
    Ok(())
}

/// Takes the next value of the named counter (from 1).
pub(super) fn next_seq(txn: &WriteTransaction, name: &str) -> StoreResult<u64> {
    let mut counters = txn.open_table(COUNTERS).ctx("open counters")?;
    let next = counters
        .get(name)
        .ctx("reading counter")?
        .map_or(0, |guard| guard.value())
        + 1;
    counters.insert(name, next).ctx("writing counter")?;
    Ok(next)
}

/// Parses a `seq` cursor; an unparsable one is `NotFound`, as for
/// conversations.
pub(super) fn seq_cursor(cursor: Option<&str>) -> StoreResult<Option<u64>> {
    cursor
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| StoreError::NotFound(format!("cursor {c:?} is not valid")))
        })
        .transpose()
}

/// One page of ids from a `(parent, seq) → id` index: ascending after the
/// cursor, or descending below it.
pub(super) fn page_of_ids(
    index: &impl ReadableTable<(&'static str, u64), &'static str>,
    parent: &str,
    cursor: Option<u64>,
    limit: usize,
    newest_first: bool,
) -> StoreResult<(Vec<String>, Option<String>)> {
    let mut ids = Vec::new();
    if limit == 0 {
        return Ok((ids, None));
    }
    let range = if newest_first {
        match cursor {
            Some(c) => index.range((parent, 0u64)..(parent, c)),
            None => index.range((parent, 0u64)..=(parent, u64::MAX)),
        }
    } else {
        let from = cursor.map_or(0, |c| c.saturating_add(1));
        index.range((parent, from)..=(parent, u64::MAX))
    }
    .ctx("scanning index")?;
    let mut last = 0;
    let mut next = None;
    let mut visit = |entry: Result<_, redb::StorageError>| -> StoreResult<bool> {
        let (key, id): (redb::AccessGuard<(&str, u64)>, redb::AccessGuard<&str>) =
            entry.ctx("reading index")?;
        if ids.len() == limit {
            next = Some(last.to_string());
            return Ok(false);
        }
        last = key.value().1;
        ids.push(id.value().to_owned());
        Ok(true)
    };
    if newest_first {
        for entry in range.rev() {
            if !visit(entry)? {
                break;
            }
        }
    } else {
        for entry in range {
            if !visit(entry)? {
                break;
            }
        }
    }
    Ok((ids, next))
}

/// Loads the records named by `ids` from a JSON table.
pub(super) fn load_all<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    ids: &[String],
) -> StoreResult<Vec<T>> {
    ids.iter()
        .map(|id| {
            get_json(table, id)?
                .ok_or_else(|| StoreError::NotFound(format!("indexed record {id} is missing")))
        })
        .collect()
}

fn member_of(
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    workspace: &str,
    user: &str,
) -> StoreResult<Option<Member>> {
    match members.get((workspace, user)).ctx("reading member")? {
        Some(guard) => decode(guard.value()).map(Some),
        None => Ok(None),
    }
}

/// Adds or removes a live task's list index entries.
fn index_task(txn: &WriteTransaction, task: &Task, add: bool) -> StoreResult<()> {
    let mut by_project: Table<(&str, u64), &str> =
        txn.open_table(PROJECT_TASKS).ctx("open project_tasks")?;
    let mut by_status = txn
        .open_table(TASKS_BY_STATUS)
        .ctx("open tasks_by_status")?;
    let mut by_assignee = txn
        .open_table(TASKS_BY_ASSIGNEE)
        .ctx("open tasks_by_assignee")?;
    let (project, id, seq) = (task.project_id.as_str(), task.id.as_str(), task.seq);
    let status = task.status.as_str();
    if add {
        by_project
            .insert((project, seq), id)
            .ctx("writing task index")?;
        by_status
            .insert((project, status, seq), id)
            .ctx("writing status index")?;
        if let Some(a) = &task.assignee_id {
            by_assignee
                .insert((project, a.as_str(), seq), id)
                .ctx("writing assignee index")?;
        }
    } else {
        by_project
            .remove((project, seq))
            .ctx("removing task index")?;
        by_status
            .remove((project, status, seq))
            .ctx("removing status index")?;
        if let Some(a) = &task.assignee_id {
            by_assignee
                .remove((project, a.as_str(), seq))
                .ctx("removing assignee index")?;
        }
    }
    Ok(())
}

/// Whether `user` is a member of the workspace of a live task that `file_id`
/// is attached to.
pub(super) fn reads_through_task(
    txn: &ReadTransaction,
    file_id: &str,
    user: &str,
) -> StoreResult<bool> {
    let file_tasks = txn.open_table(FILE_TASKS).ctx("open file_tasks")?;
    let tasks = txn.open_table(TASKS).ctx("open tasks")?;
    let members = txn.open_table(MEMBERS).ctx("open members")?;
    // Bounded: a file is attached to a task at most once per task, and
    // attaching needs an upload per task.
    for row in file_tasks
        .range((file_id, "")..)
        .ctx("scanning file_tasks")?
    {
        let (key, ws) = row.ctx("reading file_tasks")?;
        let (file, task) = key.value();
        if file != file_id {
            break;
        }
        if live_task(&tasks, task).is_ok() && member_of(&members, ws.value(), user)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn live_task(
    tasks: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> StoreResult<Task> {
    match get_json::<Task>(tasks, id)? {
        Some(t) if t.deleted_at.is_none() => Ok(t),
        _ => Err(StoreError::NotFound(format!("task {id}"))),
    }
}

/// Pages through a `(a, b) → ...` table whose keys share `a`, ordered by
/// `b`, starting strictly after `cursor`.
fn page_by_second<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    first: &str,
    cursor: Option<&str>,
    limit: usize,
) -> StoreResult<(Vec<String>, Option<String>)> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok((out, None));
    }
    let start = cursor.unwrap_or("");
    let range = table.range((first, start)..).ctx("scanning index")?;
    let mut next = None;
    for entry in range {
        let (key, _) = entry.ctx("reading index")?;
        let (a, b) = key.value();
        if a != first {
            break;
        }
        if cursor == Some(b) {
            continue;
        }
        if out.len() == limit {
            next = out.last().cloned();
            break;
        }
        out.push(b.to_owned());
    }
    Ok((out, next))
}

#[async_trait]
impl WorkspaceStore for EmbeddedStore {
    async fn create_workspace(&self, name: String, owner: UserId) -> StoreResult<Workspace> {
        self.write("create_workspace", move |txn| {
            let now = Utc::now();
            let ws = Workspace {
                id: WorkspaceId(new_id()),
                name: name.clone(),
                owner_id: owner.clone(),
                created_at: now,
            };
            let member = Member {
                workspace_id: ws.id.clone(),
                user_id: owner.clone(),
                role: Role::Owner,
                joined_at: now,
            };
            let mut workspaces = txn.open_table(WORKSPACES).ctx("open workspaces")?;
            workspaces
                .insert(ws.id.as_str(), encode(&ws)?.as_slice())
                .ctx("writing workspace")?;
            let mut members = txn.open_table(MEMBERS).ctx("open members")?;
            members
                .insert(
                    (ws.id.as_str(), member.user_id.as_str()),
                    encode(&member)?.as_slice(),
                )
                .ctx("writing member")?;
            let mut by_user = txn
                .open_table(USER_WORKSPACES)
                .ctx("open user_workspaces")?;
            by_user
                .insert((member.user_id.as_str(), ws.id.as_str()), ())
                .ctx("writing user workspace")?;
            Ok(ws)
        })
        .await
    }

    async fn workspace(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        let id = id.clone();
        self.read("workspace", move |txn| {
            let t = txn.open_table(WORKSPACES).ctx("open workspaces")?;
            get_json(&t, id.as_str())
        })
        .await
    }

    async fn workspaces_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Workspace>> {
        let user = user.clone();
        let cursor = cursor.map(str::to_owned);
        self.read("workspaces_for_user", move |txn| {
            let by_user = txn
                .open_table(USER_WORKSPACES)
                .ctx("open user_workspaces")?;
            let (ids, next_cursor) =
                page_by_second(&by_user, user.as_str(), cursor.as_deref(), limit)?;
            let t = txn.open_table(WORKSPACES).ctx("open workspaces")?;
            Ok(Page {
                items: load_all(&t, &ids)?,
                next_cursor,
            })
        })
        .await
    }

    async fn add_member(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
        role: Role,
    ) -> StoreResult<Member> {
        let (workspace, user) = (workspace.clone(), user.clone());
        self.write("add_member", move |txn| {
            let workspaces = txn.open_table(WORKSPACES).ctx("open workspaces")?;
            if get_json::<Workspace>(&workspaces, workspace.as_str())?.is_none() {
                return Err(StoreError::NotFound(format!("workspace {workspace}")));
            }
            let mut members = txn.open_table(MEMBERS).ctx("open members")?;
            if member_of(&members, workspace.as_str(), user.as_str())?.is_some() {
                return Err(StoreError::Conflict("already a member".into()));
            }
            let member = Member {
                workspace_id: workspace.clone(),
                user_id: user.clone(),
                role,
                joined_at: Utc::now(),
            };
            members
                .insert(
                    (workspace.as_str(), user.as_str()),
                    encode(&member)?.as_slice(),
                )
                .ctx("writing member")?;
            let mut by_user = txn
                .open_table(USER_WORKSPACES)
                .ctx("open user_workspaces")?;
            by_user
                .insert((user.as_str(), workspace.as_str()), ())
                .ctx("writing user workspace")?;
            Ok(member)
        })
        .await
    }

    async fn member(&self, workspace: &WorkspaceId, user: &UserId) -> StoreResult<Option<Member>> {
        let (workspace, user) = (workspace.clone(), user.clone());
        self.read("member", move |txn| {
            let members = txn.open_table(MEMBERS).ctx("open members")?;
            member_of(&members, workspace.as_str(), user.as_str())
        })
        .await
    }

    async fn members(
        &self,
        workspace: &WorkspaceId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Member>> {
        let workspace = workspace.clone();
        let cursor = cursor.map(str::to_owned);
        self.read("members", move |txn| {
            let members = txn.open_table(MEMBERS).ctx("open members")?;
            let (users, next_cursor) =
                page_by_second(&members, workspace.as_str(), cursor.as_deref(), limit)?;
            let mut items = Vec::with_capacity(users.len());
            for u in &users {
                if let Some(m) = member_of(&members, workspace.as_str(), u)? {
                    items.push(m);
                }
            }
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn set_member_role(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
        role: Role,
    ) -> StoreResult<(Member, Member)> {
        let (workspace, user) = (workspace.clone(), user.clone());
        self.write("set_member_role", move |txn| {
            let mut members = txn.open_table(MEMBERS).ctx("open members")?;
            let before = member_of(&members, workspace.as_str(), user.as_str())?
                .ok_or_else(|| StoreError::NotFound(format!("member {user}")))?;
            if before.role == Role::Owner {
                return Err(StoreError::Conflict("the owner cannot be demoted".into()));
            }
            if role == Role::Owner {
                return Err(StoreError::Conflict(
                    "a workspace has exactly one owner".into(),
                ));
            }
            let mut after = before.clone();
            after.role = role;
            members
                .insert(
                    (workspace.as_str(), user.as_str()),
                    encode(&after)?.as_slice(),
                )
                .ctx("writing member")?;
            Ok((before, after))
        })
        .await
    }

    async fn remove_member(&self, workspace: &WorkspaceId, user: &UserId) -> StoreResult<Member> {
        let (workspace, user) = (workspace.clone(), user.clone());
        self.write("remove_member", move |txn| {
            let mut members = txn.open_table(MEMBERS).ctx("open members")?;
            let member = member_of(&members, workspace.as_str(), user.as_str())?
                .ok_or_else(|| StoreError::NotFound(format!("member {user}")))?;
            if member.role == Role::Owner {
                return Err(StoreError::Conflict("the owner cannot be removed".into()));
            }
            members
                .remove((workspace.as_str(), user.as_str()))
                .ctx("removing member")?;
            let mut by_user = txn
                .open_table(USER_WORKSPACES)
                .ctx("open user_workspaces")?;
            by_user
                .remove((user.as_str(), workspace.as_str()))
                .ctx("removing user workspace")?;
            Ok(member)
        })
        .await
    }

    async fn create_project(&self, new: NewProject) -> StoreResult<Project> {
        self.write("create_project", move |txn| {
            let workspaces = txn.open_table(WORKSPACES).ctx("open workspaces")?;
            if get_json::<Workspace>(&workspaces, new.workspace_id.as_str())?.is_none() {
                return Err(StoreError::NotFound(format!(
                    "workspace {}",
                    new.workspace_id
                )));
            }
            let seq = next_seq(txn, "project_seq")?;
            let project = Project {
                id: ProjectId(new_id()),
                workspace_id: new.workspace_id.clone(),
                name: new.name.clone(),
                description: new.description.clone(),
                created_by: new.created_by.clone(),
                created_at: Utc::now(),
                seq,
            };
            let mut projects = txn.open_table(PROJECTS).ctx("open projects")?;
            projects
                .insert(project.id.as_str(), encode(&project)?.as_slice())
                .ctx("writing project")?;
            let mut by_ws = txn
                .open_table(WORKSPACE_PROJECTS)
                .ctx("open workspace_projects")?;
            by_ws
                .insert((project.workspace_id.as_str(), seq), project.id.as_str())
                .ctx("writing project index")?;
            Ok(project)
        })
        .await
    }

    async fn project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        let id = id.clone();
        self.read("project", move |txn| {
            let t = txn.open_table(PROJECTS).ctx("open projects")?;
            get_json(&t, id.as_str())
        })
        .await
    }

    async fn projects(
        &self,
        workspace: &WorkspaceId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Project>> {
        let cursor = seq_cursor(cursor)?;
        let workspace = workspace.clone();
        self.read("projects", move |txn| {
            let index = txn
                .open_table(WORKSPACE_PROJECTS)
                .ctx("open workspace_projects")?;
            let (ids, next_cursor) = page_of_ids(&index, workspace.as_str(), cursor, limit, false)?;
            let t = txn.open_table(PROJECTS).ctx("open projects")?;
            Ok(Page {
                items: load_all(&t, &ids)?,
                next_cursor,
            })
        })
        .await
    }

    async fn create_task(&self, new: NewTask) -> StoreResult<Task> {
        let task = self
            .write("create_task", move |txn| {
                let projects = txn.open_table(PROJECTS).ctx("open projects")?;
                let project: Project = get_json(&projects, new.project_id.as_str())?
                    .ok_or_else(|| StoreError::NotFound(format!("project {}", new.project_id)))?;
                let seq = next_seq(txn, "task_seq")?;
                let now = Utc::now();
                let task = Task {
                    id: TaskId(new_id()),
                    workspace_id: project.workspace_id,
                    project_id: project.id,
                    title: new.title.clone(),
                    description: new.description.clone(),
                    status: new.status,
                    priority: new.priority,
                    assignee_id: new.assignee_id.clone(),
                    tags: new.tags.clone(),
                    due_date: new.due_date,
                    attachments: Vec::new(),
                    created_by: new.created_by.clone(),
                    created_at: now,
                    updated_at: now,
                    deleted_at: None,
                    seq,
                };
                let mut tasks = txn.open_table(TASKS).ctx("open tasks")?;
                tasks
                    .insert(task.id.as_str(), encode(&task)?.as_slice())
                    .ctx("writing task")?;
                drop(tasks);
                index_task(txn, &task, true)?;
                Ok(task)
            })
            .await?;
        self.reindex(task.id.clone()).await;
        Ok(task)
    }

    async fn task(&self, id: &TaskId) -> StoreResult<Option<Task>> {
        let id = id.clone();
        self.read("task", move |txn| {
            let t = txn.open_table(TASKS).ctx("open tasks")?;
            get_json(&t, id.as_str())
        })
        .await
    }

    async fn update_task(&self, id: &TaskId, patch: TaskPatch) -> StoreResult<(Task, Task)> {
        let id = id.clone();
        let out = self
            .write("update_task", move |txn| {
                let mut tasks = txn.open_table(TASKS).ctx("open tasks")?;
                let before = live_task(&tasks, id.as_str())?;
                let mut after = before.clone();
                patch.apply(&mut after);
                after.updated_at = Utc::now();
                tasks
                    .insert(id.as_str(), encode(&after)?.as_slice())
                    .ctx("writing task")?;
                drop(tasks);
                index_task(txn, &before, false)?;
                index_task(txn, &after, true)?;
                Ok((before, after))
            })
            .await?;
        self.reindex(out.1.id.clone()).await;
        Ok(out)
    }

    async fn delete_task(&self, id: &TaskId) -> StoreResult<Task> {
        let id = id.clone();
        let task = self
            .write("delete_task", move |txn| {
                let mut tasks = txn.open_table(TASKS).ctx("open tasks")?;
                let mut task = live_task(&tasks, id.as_str())?;
                let now = Utc::now();
                task.deleted_at = Some(now);
                task.updated_at = now;
                tasks
                    .insert(id.as_str(), encode(&task)?.as_slice())
                    .ctx("writing task")?;
                drop(tasks);
                index_task(txn, &task, false)?;
                Ok(task)
            })
            .await?;
        self.reindex(task.id.clone()).await;
        Ok(task)
    }

    async fn tasks(
        &self,
        project: &ProjectId,
        filter: &TaskFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Task>> {
        let cursor = seq_cursor(cursor)?;
        let (project, filter) = (project.clone(), filter.clone());
        self.read("tasks", move |txn| {
            let tasks_t = txn.open_table(TASKS).ctx("open tasks")?;
            let p = project.as_str();
            let from = cursor.map_or(0, |c| c.saturating_add(1));
            // The most selective index available; the other filter, if
            // any, is checked on the records the index yields.
            let mut items: Vec<Task> = Vec::new();
            let mut next_cursor = None;
            let mut push = |seq: u64, id: &str| -> StoreResult<bool> {
                let task: Task = get_json(&tasks_t, id)?
                    .ok_or_else(|| StoreError::NotFound(format!("indexed task {id} missing")))?;
                if filter.status.is_some_and(|s| s != task.status)
                    || filter
                        .assignee_id
                        .as_ref()
                        .is_some_and(|a| task.assignee_id.as_ref() != Some(a))
                {
                    return Ok(true);
                }
                if items.len() == limit {
                    next_cursor = items.last().map(|t| t.seq.to_string());
                    return Ok(false);
                }
                let _ = seq;
                items.push(task);
                Ok(true)
            };
            if limit == 0 {
                return Ok(Page {
                    items: Vec::new(),
                    next_cursor: None,
                });
            }
            if let Some(a) = &filter.assignee_id {
                let index = txn
                    .open_table(TASKS_BY_ASSIGNEE)
                    .ctx("open tasks_by_assignee")?;
                for entry in index
                    .range((p, a.as_str(), from)..=(p, a.as_str(), u64::MAX))
                    .ctx("scanning tasks")?
                {
                    let (k, v) = entry.ctx("reading tasks")?;
                    if !push(k.value().2, v.value())? {
                        break;
                    }
                }
            } else if let Some(s) = filter.status {
                let index = txn
                    .open_table(TASKS_BY_STATUS)
                    .ctx("open tasks_by_status")?;
                for entry in index
                    .range((p, s.as_str(), from)..=(p, s.as_str(), u64::MAX))
                    .ctx("scanning tasks")?
                {
                    let (k, v) = entry.ctx("reading tasks")?;
                    if !push(k.value().2, v.value())? {
                        break;
                    }
                }
            } else {
                let index = txn.open_table(PROJECT_TASKS).ctx("open project_tasks")?;
                for entry in index
                    .range((p, from)..=(p, u64::MAX))
                    .ctx("scanning tasks")?
                {
                    let (k, v) = entry.ctx("reading tasks")?;
                    if !push(k.value().1, v.value())? {
                        break;
                    }
                }
            }
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn attach_file(
        &self,
        task: &TaskId,
        file_id: &str,
        attachment: serde_json::Value,
        max: usize,
    ) -> StoreResult<(Task, bool)> {
        let (id, file_id) = (task.clone(), file_id.to_owned());
        let out = self
            .write("attach_file", move |txn| {
                let files = txn.open_table(super::FILES).ctx("open files")?;
                if files.get(file_id.as_str()).ctx("reading file")?.is_none() {
                    return Err(StoreError::NotFound(format!("file {file_id}")));
                }
                drop(files);
                let mut tasks = txn.open_table(TASKS).ctx("open tasks")?;
                let mut task = live_task(&tasks, id.as_str())?;
                let attached = task
                    .attachments
                    .iter()
                    .any(|a| a.get("id").and_then(serde_json::Value::as_str) == Some(&file_id));
                if attached {
                    return Ok((task, false));
                }
                if task.attachments.len() >= max {
                    return Err(StoreError::Conflict(format!(
                        "a task has at most {max} attachments"
                    )));
                }
                task.attachments.push(attachment.clone());
                task.updated_at = Utc::now();
                tasks
                    .insert(id.as_str(), encode(&task)?.as_slice())
                    .ctx("writing task")?;
                let mut file_tasks = txn.open_table(FILE_TASKS).ctx("open file_tasks")?;
                file_tasks
                    .insert((file_id.as_str(), id.as_str()), task.workspace_id.as_str())
                    .ctx("writing file_tasks")?;
                Ok((task, true))
            })
            .await?;
        Ok(out)
    }

    async fn create_comment(&self, new: NewComment) -> StoreResult<Comment> {
        self.write("create_comment", move |txn| {
            let tasks = txn.open_table(TASKS).ctx("open tasks")?;
            let task = live_task(&tasks, new.task_id.as_str())?;
            let seq = next_seq(txn, "comment_seq")?;
            let comment = Comment {
                id: CommentId(new_id()),
                workspace_id: task.workspace_id,
                project_id: task.project_id,
                task_id: task.id,
                author_id: new.author_id.clone(),
                body: new.body.clone(),
                created_at: Utc::now(),
                updated_at: None,
                seq,
            };
            let mut comments = txn.open_table(COMMENTS).ctx("open comments")?;
            comments
                .insert(comment.id.as_str(), encode(&comment)?.as_slice())
                .ctx("writing comment")?;
            let mut by_task = txn.open_table(TASK_COMMENTS).ctx("open task_comments")?;
            by_task
                .insert((comment.task_id.as_str(), seq), comment.id.as_str())
                .ctx("writing comment index")?;
            Ok(comment)
        })
        .await
    }

    async fn comment(&self, id: &CommentId) -> StoreResult<Option<Comment>> {
        let id = id.clone();
        self.read("comment", move |txn| {
            let t = txn.open_table(COMMENTS).ctx("open comments")?;
            get_json(&t, id.as_str())
        })
        .await
    }

    async fn comments(
        &self,
        task: &TaskId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Comment>> {
        let cursor = seq_cursor(cursor)?;
        let task = task.clone();
        self.read("comments", move |txn| {
            let index = txn.open_table(TASK_COMMENTS).ctx("open task_comments")?;
            let (ids, next_cursor) = page_of_ids(&index, task.as_str(), cursor, limit, false)?;
            let t = txn.open_table(COMMENTS).ctx("open comments")?;
            Ok(Page {
                items: load_all(&t, &ids)?,
                next_cursor,
            })
        })
        .await
    }

    async fn update_comment(&self, id: &CommentId, body: String) -> StoreResult<Comment> {
        let id = id.clone();
        self.write("update_comment", move |txn| {
            let mut comments = txn.open_table(COMMENTS).ctx("open comments")?;
            let mut comment: Comment = get_json(&comments, id.as_str())?
                .ok_or_else(|| StoreError::NotFound(format!("comment {id}")))?;
            comment.body = body.clone();
            comment.updated_at = Some(Utc::now());
            comments
                .insert(id.as_str(), encode(&comment)?.as_slice())
                .ctx("writing comment")?;
            Ok(comment)
        })
        .await
    }

    async fn delete_comment(&self, id: &CommentId) -> StoreResult<Comment> {
        let id = id.clone();
        self.write("delete_comment", move |txn| {
            let mut comments = txn.open_table(COMMENTS).ctx("open comments")?;
            let comment: Comment = get_json(&comments, id.as_str())?
                .ok_or_else(|| StoreError::NotFound(format!("comment {id}")))?;
            comments.remove(id.as_str()).ctx("removing comment")?;
            let mut by_task = txn.open_table(TASK_COMMENTS).ctx("open task_comments")?;
            by_task
                .remove((comment.task_id.as_str(), comment.seq))
                .ctx("removing comment index")?;
            Ok(comment)
        })
        .await
    }
}
