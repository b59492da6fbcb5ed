//! Workspaces in the MongoDB store: workspaces, memberships (one document
//! per (workspace, user), unique), projects, tasks (soft delete, listed by
//! creation `seq`) and comments.
//!
//! The rules that must hold under concurrency are each one write:
//!
//! - a member is added once: the insert is checked by the unique
//!   `(workspaceId, userId)` index; a duplicate key is `Conflict`.
//! - the owner is never demoted nor removed: `findOneAndUpdate` /
//!   `findOneAndDelete` filter on `role != owner`, so the check and the
//!   write are one operation; only when it matches nothing does the store
//!   look the member up to tell `NotFound` from `Conflict`.
//! - task updates never lose a concurrent update: the task carries a
//!   revision `rev`; an update replaces the document only if `rev` (and
//!   `deletedAt: null`) still hold, and retries from a fresh read
//!   otherwise. Every task write (update, attachment, delete) raises `rev`
//!   and `updatedAtMs`, which the search catch-up reads (see `search.rs`).
//! - soft delete: `findOneAndUpdate` on `deletedAt: null`, so a task is
//!   deleted once and a deleted task is never updated.
//!
//! Creation order (`seq`) comes from one counter per kind, like the
//! conversations' order; a gap there is harmless. Without transactions a
//! workspace and its owner's membership are two inserts (workspace first);
//! a crash between them leaves a workspace nobody is a member of, which no
//! list shows. Likewise a comment checks that its task is live and is then
//! inserted: a comment racing the task's soft delete may land on the just
//! deleted task (the embedded store, with transactions, orders the two).

use super::*;
use futures_util::TryStreamExt;
use huddle_actors::ids::{new_id, CommentId, ProjectId, TaskId, WorkspaceId};
use huddle_actors::model::{
    Comment, Member, NewComment, NewProject, NewTask, Page, Project, Role, Task, TaskFilter,
    TaskPatch, Workspace,
};
use huddle_actors::store::WorkspaceStore;
use mongodb::options::ReturnDocument;

/// Counters of creation order.
const PROJECT_SEQ: &str = "project_seq";
const TASK_SEQ: &str = "task_seq";
const COMMENT_SEQ: &str = "comment_seq";

/// How many times an update may lose the race to a concurrent one before it
/// gives up (each loss means another update was stored).
const MAX_UPDATE_ATTEMPTS: usize = 100;

fn member_filter(workspace: &WorkspaceId, user: &UserId) -> Document {
    doc! { "workspaceId": workspace.as_str(), "userId": user.as_str() }
}

fn bson_of<T: Serialize>(value: &T) -> StoreResult<bson::Bson> {
    bson::to_bson(value).ctx("encoding a value")
}

impl MongoStore {
    async fn find_record<T: serde::de::DeserializeOwned>(
        &self,
        collection: &Collection<Document>,
        filter: Document,
        what: &str,
    ) -> StoreResult<Option<T>> {
        collection
            .find_one(filter)
            .await
            .ctx(format!("finding {what}"))?
            .map(from_doc)
            .transpose()
    }

    /// The task document (with its `rev`), deleted ones included.
    async fn task_with_rev(&self, id: &TaskId) -> StoreResult<Option<(Task, i64)>> {
        let Some(document) = self
            .tasks
            .find_one(doc! { "_id": id.as_str() })
            .await
            .ctx("finding a task")?
        else {
            return Ok(None);
        };
        let rev = document
            .get_i64("rev")
            .or_else(|_| document.get_i32("rev").map(i64::from))
            .unwrap_or(0);
        Ok(Some((from_doc(document)?, rev)))
    }

    /// Tells `NotFound` from `Conflict` after an owner-guarded write matched
    /// nothing.
    async fn owner_guard_miss(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
        conflict: &str,
    ) -> StoreError {
        match self.member(workspace, user).await {
            Ok(Some(_)) => StoreError::Conflict(conflict.to_owned()),
            Ok(None) => StoreError::NotFound(format!("member {user}")),
            Err(e) => e,
        }
    }
}

#[async_trait]
impl WorkspaceStore for MongoStore {
    async fn create_workspace(&self, name: String, owner: UserId) -> StoreResult<Workspace> {
        let now = now();
        let ws = Workspace {
            id: WorkspaceId(new_id()),
            name,
            owner_id: owner.clone(),
            created_at: now,
        };
        let member = Member {
            workspace_id: ws.id.clone(),
            user_id: owner,
            role: Role::Owner,
            joined_at: now,
        };
        self.workspaces
            .insert_one(to_doc(&ws, ws.id.as_str())?)
            .await
            .ctx("inserting a workspace")?;
        self.members
            .insert_one(bson::to_document(&member).ctx("encoding a member")?)
            .await
            .ctx("inserting the owner")?;
        Ok(ws)
    }

    async fn workspace(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        self.find_record(&self.workspaces, doc! { "_id": id.as_str() }, "a workspace")
            .await
    }

    async fn workspaces_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Workspace>> {
        let members = self
            .member_page(
                doc! { "userId": user.as_str() },
                "workspaceId",
                cursor,
                limit,
            )
            .await?;
        let ids: Vec<&str> = members
            .items
            .iter()
            .map(|m| m.workspace_id.as_str())
            .collect();
        let found: Vec<Document> = self
            .workspaces
            .find(doc! { "_id": { "$in": &ids } })
            .await
            .ctx("listing workspaces")?
            .try_collect()
            .await
            .ctx("reading workspaces")?;
        let mut by_id = std::collections::HashMap::new();
        for document in found {
            let ws: Workspace = from_doc(document)?;
            by_id.insert(ws.id.0.clone(), ws);
        }
        Ok(Page {
            items: ids.iter().filter_map(|id| by_id.remove(*id)).collect(),
            next_cursor: members.next_cursor,
        })
    }

    async fn add_member(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
        role: Role,
    ) -> StoreResult<Member> {
        if self.workspace(workspace).await?.is_none() {
            return Err(StoreError::NotFound(format!("workspace {workspace}")));
        }
        let member = Member {
            workspace_id: workspace.clone(),
            user_id: user.clone(),
            role,
            joined_at: now(),
        };
        match self
            .members
            .insert_one(bson::to_document(&member).ctx("encoding a member")?)
            .await
        {
            Ok(_) => Ok(member),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict("already a member".into())),
            Err(e) => Err(StoreError::backend("inserting a member", e)),
        }
    }

    async fn member(&self, workspace: &WorkspaceId, user: &UserId) -> StoreResult<Option<Member>> {
        self.find_record(&self.members, member_filter(workspace, user), "a member")
            .await
    }

    async fn members(
        &self,
        workspace: &WorkspaceId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Member>> {
        self.member_page(
            doc! { "workspaceId": workspace.as_str() },
            "userId",
            cursor,
            limit,
        )
        .await
    }

    async fn set_member_role(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
        role: Role,
    ) -> StoreResult<(Member, Member)> {
        if role == Role::Owner {
            return Err(match self.member(workspace, user).await? {
                Some(_) => StoreError::Conflict("a workspace has exactly one owner".into()),
                None => StoreError::NotFound(format!("member {user}")),
            });
        }
        let mut filter = member_filter(workspace, user);
        filter.insert("role", doc! { "$ne": Role::Owner.as_str() });
        let before = self
            .members
            .find_one_and_update(filter, doc! { "$set": { "role": role.as_str() } })
            .return_document(ReturnDocument::Before)
            .await
            .ctx("changing a member's role")?;
        let Some(before) = before else {
            return Err(self
                .owner_guard_miss(workspace, user, "the owner cannot be demoted")
                .await);
        };
        let before: Member = from_doc(before)?;
        let mut after = before.clone();
        after.role = role;
        Ok((before, after))
    }

    async fn remove_member(&self, workspace: &WorkspaceId, user: &UserId) -> StoreResult<Member> {
        let mut filter = member_filter(workspace, user);
        filter.insert("role", doc! { "$ne": Role::Owner.as_str() });
        match self
            .members
            .find_one_and_delete(filter)
            .await
            .ctx("removing a member")?
        {
            Some(document) => from_doc(document),
            None => Err(self
                .owner_guard_miss(workspace, user, "the owner cannot be removed")
                .await),
        }
    }

    async fn create_project(&self, new: NewProject) -> StoreResult<Project> {
        if self.workspace(&new.workspace_id).await?.is_none() {
            return Err(StoreError::NotFound(format!(
                "workspace {}",
                new.workspace_id
            )));
        }
        let seq = self.next_counter(PROJECT_SEQ).await?;
        let project = Project {
            id: ProjectId(new_id()),
            workspace_id: new.workspace_id,
            name: new.name,
            description: new.description,
            created_by: new.created_by,
            created_at: now(),
            seq: from_stored_seq(seq)?,
        };
        self.projects
            .insert_one(to_doc(&project, project.id.as_str())?)
            .await
            .ctx("inserting a project")?;
        Ok(project)
    }

    async fn project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        self.find_record(&self.projects, doc! { "_id": id.as_str() }, "a project")
            .await
    }

    async fn projects(
        &self,
        workspace: &WorkspaceId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Project>> {
        seq_page(
            &self.projects,
            doc! { "workspaceId": workspace.as_str() },
            cursor,
            limit,
            false,
        )
        .await
    }

    async fn create_task(&self, new: NewTask) -> StoreResult<Task> {
        let project = self
            .project(&new.project_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {}", new.project_id)))?;
        let seq = self.next_counter(TASK_SEQ).await?;
        let now = now();
        let task = Task {
            id: TaskId(new_id()),
            workspace_id: project.workspace_id,
            project_id: project.id,
            title: new.title,
            description: new.description,
            status: new.status,
            priority: new.priority,
            assignee_id: new.assignee_id,
            tags: new.tags,
            due_date: new.due_date,
            attachments: Vec::new(),
            created_by: new.created_by,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            seq: from_stored_seq(seq)?,
        };
        self.tasks
            .insert_one(search::task_doc(&task, 0)?)
            .await
            .ctx("inserting a task")?;
        Ok(task)
    }

    async fn task(&self, id: &TaskId) -> StoreResult<Option<Task>> {
        Ok(self.task_with_rev(id).await?.map(|(task, _)| task))
    }

    async fn update_task(&self, id: &TaskId, patch: TaskPatch) -> StoreResult<(Task, Task)> {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some((before, rev)) = self.task_with_rev(id).await? else {
                return Err(StoreError::NotFound(format!("task {id}")));
            };
            if before.deleted_at.is_some() {
                return Err(StoreError::NotFound(format!("task {id}")));
            }
            let mut after = before.clone();
            patch.apply(&mut after);
            after.updated_at = now();
            let result = self
                .tasks
                .replace_one(
                    doc! { "_id": id.as_str(), "rev": rev, "deletedAt": not_deleted() },
                    search::task_doc(&after, rev + 1)?,
                )
                .await
                .ctx("updating a task")?;
            if result.matched_count == 1 {
                return Ok((before, after));
            }
            // Another update (or the delete) got there first: read again.
        }
        Err(StoreError::Backend {
            message: format!("task {id}: too many concurrent updates"),
            source: None,
        })
    }

    async fn delete_task(&self, id: &TaskId) -> StoreResult<Task> {
        let now = now();
        let before = self
            .tasks
            .find_one_and_update(
                doc! { "_id": id.as_str(), "deletedAt": not_deleted() },
                doc! {
                    "$set": {
                        "deletedAt": bson_of(&now)?,
                        "updatedAt": bson_of(&now)?,
                        "updatedAtMs": to_bson_time(now),
                    },
                    "$inc": { "rev": 1_i64 },
                },
            )
            .return_document(ReturnDocument::Before)
            .await
            .ctx("deleting a task")?
            .ok_or_else(|| StoreError::NotFound(format!("task {id}")))?;
        let mut task: Task = from_doc(before)?;
        task.deleted_at = Some(now);
        task.updated_at = now;
        Ok(task)
    }

    async fn tasks(
        &self,
        project: &ProjectId,
        filter: &TaskFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Task>> {
        let mut query = doc! { "projectId": project.as_str(), "deletedAt": not_deleted() };
        if let Some(status) = filter.status {
            query.insert("status", status.as_str());
        }
        if let Some(assignee) = &filter.assignee_id {
            query.insert("assigneeId", assignee.as_str());
        }
        seq_page(&self.tasks, query, cursor, limit, false).await
    }

    async fn attach_file(
        &self,
        task: &TaskId,
        file_id: &str,
        attachment: serde_json::Value,
        max: usize,
    ) -> StoreResult<(Task, bool)> {
        let file_exists = self
            .files
            .count_documents(doc! { "_id": file_id })
            .await
            .ctx("checking a file")?
            > 0;
        if !file_exists {
            return Err(StoreError::NotFound(format!("file {file_id}")));
        }
        // Same optimistic scheme as update_task: the replace only lands on
        // the revision that was checked, so two attachments racing for the
        // last slot cannot both get it.
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some((mut current, rev)) = self.task_with_rev(task).await? else {
                return Err(StoreError::NotFound(format!("task {task}")));
            };
            if current.deleted_at.is_some() {
                return Err(StoreError::NotFound(format!("task {task}")));
            }
            let attached = current
                .attachments
                .iter()
                .any(|a| a.get("id").and_then(serde_json::Value::as_str) == Some(file_id));
            if attached {
                return Ok((current, false));
            }
            if current.attachments.len() >= max {
                return Err(StoreError::Conflict(format!(
                    "a task has at most {max} attachments"
                )));
            }
            current.attachments.push(attachment.clone());
            current.updated_at = now();
            let result = self
                .tasks
                .replace_one(
                    doc! { "_id": task.as_str(), "rev": rev, "deletedAt": not_deleted() },
                    search::task_doc(&current, rev + 1)?,
                )
                .await
                .ctx("attaching a file to a task")?;
            if result.matched_count == 1 {
                return Ok((current, true));
            }
        }
        Err(StoreError::Backend {
            message: format!("task {task}: too many concurrent updates"),
            source: None,
        })
    }

    async fn create_comment(&self, new: NewComment) -> StoreResult<Comment> {
        let task = match self.task(&new.task_id).await? {
            Some(t) if t.deleted_at.is_none() => t,
            _ => return Err(StoreError::NotFound(format!("task {}", new.task_id))),
        };
        let seq = self.next_counter(COMMENT_SEQ).await?;
        let comment = Comment {
            id: CommentId(new_id()),
            workspace_id: task.workspace_id,
            project_id: task.project_id,
            task_id: task.id,
            author_id: new.author_id,
            body: new.body,
            created_at: now(),
            updated_at: None,
            seq: from_stored_seq(seq)?,
        };
        self.comments
            .insert_one(to_doc(&comment, comment.id.as_str())?)
            .await
            .ctx("inserting a comment")?;
        Ok(comment)
    }

    async fn comment(&self, id: &CommentId) -> StoreResult<Option<Comment>> {
        self.find_record(&self.comments, doc! { "_id": id.as_str() }, "a comment")
            .await
    }

    async fn comments(
        &self,
        task: &TaskId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Comment>> {
        seq_page(
            &self.comments,
            doc! { "taskId": task.as_str() },
            cursor,
            limit,
            false,
        )
        .await
    }

    async fn update_comment(&self, id: &CommentId, body: String) -> StoreResult<Comment> {
        let now = now();
        let after = self
            .comments
            .find_one_and_update(
                doc! { "_id": id.as_str() },
                doc! { "$set": { "body": body, "updatedAt": bson_of(&now)? } },
            )
            .return_document(ReturnDocument::After)
            .await
            .ctx("updating a comment")?
            .ok_or_else(|| StoreError::NotFound(format!("comment {id}")))?;
        from_doc(after)
    }

    async fn delete_comment(&self, id: &CommentId) -> StoreResult<Comment> {
        let before = self
            .comments
            .find_one_and_delete(doc! { "_id": id.as_str() })
            .await
            .ctx("deleting a comment")?
            .ok_or_else(|| StoreError::NotFound(format!("comment {id}")))?;
        from_doc(before)
    }
}

impl MongoStore {
    /// One page of memberships matching `filter`, ordered by `key` (a user
    /// or workspace id), strictly after the cursor (the last key of the
    /// previous page).
    async fn member_page(
        &self,
        mut filter: Document,
        key: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Member>> {
        if limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        if let Some(c) = cursor {
            filter.insert(key, doc! { "$gt": c });
        }
        let docs: Vec<Document> = self
            .members
            .find(filter)
            .sort(doc! { key: 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1)
            .await
            .ctx("listing members")?
            .try_collect()
            .await
            .ctx("reading members")?;
        let more = docs.len() > limit;
        let items: Vec<Member> = docs
            .into_iter()
            .take(limit)
            .map(from_doc)
            .collect::<StoreResult<_>>()?;
        let next_cursor = if more {
            items.last().map(|m| {
                if key == "userId" {
                    m.user_id.0.clone()
                } else {
                    m.workspace_id.0.clone()
                }
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}
