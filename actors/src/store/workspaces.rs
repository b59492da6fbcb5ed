//! Workspaces: members and roles, projects, tasks (soft delete, filters),
//! comments. Permission rules that need the stored state to hold under
//! concurrency (the owner is never removed nor demoted, a member is added
//! once) are enforced here, inside one write.

use super::StoreResult;
use crate::ids::{CommentId, ProjectId, TaskId, UserId, WorkspaceId};
use crate::model::{
    Comment, Member, NewComment, NewProject, NewTask, Page, Project, Role, Task, TaskFilter,
    TaskPatch, Workspace,
};
use async_trait::async_trait;

/// Workspaces and everything inside them.
#[async_trait]
pub trait WorkspaceStore: Send + Sync + 'static {
    /// Creates a workspace with `owner` as its `Owner` member.
    async fn create_workspace(&self, name: String, owner: UserId) -> StoreResult<Workspace>;
    /// The workspace with this id.
    async fn workspace(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>>;
    /// Workspaces the user is a member of, `limit` per page, in a stable
    /// order; `cursor` is the previous page's `next_cursor`.
    async fn workspaces_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Workspace>>;

    /// Adds a member. `NotFound` when the workspace does not exist,
    /// `Conflict` when the user is already a member.
    async fn add_member(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
        role: Role,
    ) -> StoreResult<Member>;
    /// The user's membership, if any.
    async fn member(&self, workspace: &WorkspaceId, user: &UserId) -> StoreResult<Option<Member>>;
    /// Members of a workspace, `limit` per page, ordered by user id.
    async fn members(
        &self,
        workspace: &WorkspaceId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Member>>;
    /// Changes a member's role; returns the member before and after.
    /// `NotFound` when not a member; `Conflict` when the member is the owner
    /// (an owner is never demoted) or when `role` is `Owner`.
    async fn set_member_role(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
        role: Role,
    ) -> StoreResult<(Member, Member)>;
    /// Removes a member and returns the removed membership. `NotFound` when
    /// not a member; `Conflict` for the owner.
    async fn remove_member(&self, workspace: &WorkspaceId, user: &UserId) -> StoreResult<Member>;

    /// Creates a project. `NotFound` when the workspace does not exist.
    async fn create_project(&self, new: NewProject) -> StoreResult<Project>;
    /// The project with this id.
    async fn project(&self, id: &ProjectId) -> StoreResult<Option<Project>>;
    /// Projects of a workspace, oldest first.
    async fn projects(
        &self,
        workspace: &WorkspaceId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Project>>;

    /// Creates a task in a project (status, priority as given). `NotFound`
    /// when the project does not exist. The task is searchable once this
    /// returns (or within a second for backends that index asynchronously).
    async fn create_task(&self, new: NewTask) -> StoreResult<Task>;
    /// The task with this id, deleted ones included (`deleted_at` set).
    async fn task(&self, id: &TaskId) -> StoreResult<Option<Task>>;
    /// Applies `patch` and sets `updated_at`; returns the task before and
    /// after. `NotFound` when missing or deleted.
    async fn update_task(&self, id: &TaskId, patch: TaskPatch) -> StoreResult<(Task, Task)>;
    /// Soft-deletes a task and returns it. `NotFound` when missing or
    /// already deleted.
    async fn delete_task(&self, id: &TaskId) -> StoreResult<Task>;
    /// Tasks of a project that are not deleted and match `filter`, oldest
    /// first.
    async fn tasks(
        &self,
        project: &ProjectId,
        filter: &TaskFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Task>>;

    /// Attaches file `file_id` to a live task: appends `attachment` (the file
    /// object, in the contract's shape, with `id` = `file_id`) to the task's
    /// `attachments` and sets `updated_at`. From then on every member of the
    /// task's workspace may read the file (see
    /// [`FileStore::can_read_file`](super::FileStore::can_read_file)), for as
    /// long as the task is not deleted. Returns the task and whether it
    /// changed: a file already attached leaves the task as it is (`false`),
    /// so finishing an upload twice attaches it once. `NotFound` when the
    /// task is missing or deleted or the file does not exist; `Conflict` when
    /// the task already has `max` attachments. Atomic: concurrent calls never
    /// exceed `max`.
    async fn attach_file(
        &self,
        task: &TaskId,
        file_id: &str,
        attachment: serde_json::Value,
        max: usize,
    ) -> StoreResult<(Task, bool)>;

    /// Creates a comment. `NotFound` when the task is missing or deleted.
    async fn create_comment(&self, new: NewComment) -> StoreResult<Comment>;
    /// The comment with this id.
    async fn comment(&self, id: &CommentId) -> StoreResult<Option<Comment>>;
    /// Comments of a task, oldest first.
    async fn comments(
        &self,
        task: &TaskId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Comment>>;
    /// Replaces a comment's body and sets `updated_at`. `NotFound` when
    /// missing.
    async fn update_comment(&self, id: &CommentId, body: String) -> StoreResult<Comment>;
    /// Deletes a comment and returns it. `NotFound` when missing.
    async fn delete_comment(&self, id: &CommentId) -> StoreResult<Comment>;
}
