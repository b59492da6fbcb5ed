//! The real embedded store, in a temporary directory, behind an outage
//! switch: while it is on, every operation fails as a backend would when its
//! disk or database goes away. Tests use it to check that failures reach
//! clients as `internal` / `unavailable` without leaking details.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use huddle::store::EmbeddedStore;
use huddle_actors::ids::{
    CommentId, ConversationId, NotificationId, ProjectId, TaskId, UserId, WorkspaceId,
};
use huddle_actors::model::{
    Comment, Conversation, Member, Message, NewComment, NewConversation, NewMessage,
    NewNotification, NewProject, NewTask, Notification, Page, Project, RefreshTokenRecord, Role,
    SearchHits, Task, TaskFilter, TaskPatch, User, Workspace,
};
use huddle_actors::model::{DownloadToken, FileRecord, SessionStart, TokenUse, UploadSession};
use huddle_actors::store::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// An embedded store with an outage switch.
pub struct FaultyStore {
    inner: EmbeddedStore,
    /// Local blobs beside the store, in the same temporary directory.
    pub blobs: std::sync::Arc<huddle::blob::LocalBlobStore>,
    down: AtomicBool,
    _dir: tempfile::TempDir,
}

impl FaultyStore {
    /// A fresh embedded store in its own temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let inner = EmbeddedStore::open(dir.path()).expect("embedded store opens");
        let blobs = std::sync::Arc::new(
            huddle::blob::LocalBlobStore::open(dir.path()).expect("blob directory opens"),
        );
        FaultyStore {
            inner,
            blobs,
            down: AtomicBool::new(false),
            _dir: dir,
        }
    }

    /// While `true`, every operation fails with a backend error.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> StoreResult<&EmbeddedStore> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::backend(
                "test store is down",
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "outage switch on"),
            ));
        }
        Ok(&self.inner)
    }
}

#[async_trait]
impl DocumentStore for FaultyStore {
    async fn ping(&self) -> StoreResult<()> {
        self.check()?.ping().await
    }
}

#[async_trait]
impl AccountStore for FaultyStore {
    async fn create_user(&self, user: User) -> StoreResult<User> {
        self.check()?.create_user(user).await
    }
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
        self.check()?.user_by_id(id).await
    }
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.check()?.user_by_email(email).await
    }
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        self.check()?.user_by_username(username).await
    }
    async fn ensure_user(&self, user: User) -> StoreResult<User> {
        self.check()?.ensure_user(user).await
    }
    async fn put_refresh_token(&self, record: RefreshTokenRecord) -> StoreResult<()> {
        self.check()?.put_refresh_token(record).await
    }
    async fn take_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        self.check()?.take_refresh_token(jti).await
    }
    async fn purge_refresh_tokens(&self, expired_before: DateTime<Utc>) -> StoreResult<u64> {
        self.check()?.purge_refresh_tokens(expired_before).await
    }
}

#[async_trait]
impl ChatStore for FaultyStore {
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<(Conversation, bool)> {
        self.check()?.create_conversation(new).await
    }
    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<Conversation>> {
        self.check()?.conversation(id).await
    }
    async fn last_seq(&self, id: &ConversationId) -> StoreResult<Option<u64>> {
        self.check()?.last_seq(id).await
    }
    async fn conversations_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Conversation>> {
        self.check()?
            .conversations_for_user(user, cursor, limit)
            .await
    }
    async fn append_message(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        self.check()?.append_message(new).await
    }
    async fn messages_before(
        &self,
        conversation: &ConversationId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        self.check()?
            .messages_before(conversation, before, limit)
            .await
    }
    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        seq: u64,
    ) -> StoreResult<()> {
        self.check()?.mark_read(conversation, user, seq).await
    }
    async fn read_marker(&self, conversation: &ConversationId, user: &UserId) -> StoreResult<u64> {
        self.check()?.read_marker(conversation, user).await
    }
}

#[async_trait]
impl FileStore for FaultyStore {
    async fn create_file(&self, file: FileRecord) -> StoreResult<(FileRecord, bool)> {
        self.check()?.create_file(file).await
    }
    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        self.check()?.file(id).await
    }
    async fn grant_file_read(&self, file_id: &str, users: &[UserId]) -> StoreResult<()> {
        self.check()?.grant_file_read(file_id, users).await
    }
    async fn can_read_file(&self, file_id: &str, user: &UserId) -> StoreResult<bool> {
        self.check()?.can_read_file(file_id, user).await
    }
    async fn put_download_token(&self, token: DownloadToken) -> StoreResult<()> {
        self.check()?.put_download_token(token).await
    }
    async fn use_download_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<TokenUse> {
        self.check()?.use_download_token(token_hash, now).await
    }
    async fn purge_download_tokens(&self, expired_before: DateTime<Utc>) -> StoreResult<u64> {
        self.check()?.purge_download_tokens(expired_before).await
    }
}

#[async_trait]
impl UploadSessionStore for FaultyStore {
    async fn create_upload_session(
        &self,
        session: UploadSession,
        max_in_progress: usize,
    ) -> StoreResult<SessionStart> {
        self.check()?
            .create_upload_session(session, max_in_progress)
            .await
    }
    async fn upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
    ) -> StoreResult<Option<UploadSession>> {
        self.check()?.upload_session(user, upload_id).await
    }
    async fn received_chunks(&self, user: &UserId, upload_id: &str) -> StoreResult<Vec<u32>> {
        self.check()?.received_chunks(user, upload_id).await
    }
    async fn record_chunk(
        &self,
        user: &UserId,
        upload_id: &str,
        index: u32,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.check()?
            .record_chunk(user, upload_id, index, expires_at)
            .await
    }
    async fn complete_upload_session(
        &self,
        user: &UserId,
        upload_id: &str,
        file_id: &str,
    ) -> StoreResult<()> {
        self.check()?
            .complete_upload_session(user, upload_id, file_id)
            .await
    }
    async fn purge_completed_upload_sessions(
        &self,
        expired_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.check()?
            .purge_completed_upload_sessions(expired_before)
            .await
    }
    async fn delete_upload_session(&self, user: &UserId, upload_id: &str) -> StoreResult<bool> {
        self.check()?.delete_upload_session(user, upload_id).await
    }
    async fn expired_upload_sessions(
        &self,
        now: DateTime<Utc>,
        user: Option<&UserId>,
        limit: usize,
    ) -> StoreResult<Vec<UploadSession>> {
        self.check()?
            .expired_upload_sessions(now, user, limit)
            .await
    }
}

#[async_trait]
impl WorkspaceStore for FaultyStore {
    async fn create_workspace(&self, name: String, owner: UserId) -> StoreResult<Workspace> {
        self.check()?.create_workspace(name, owner).await
    }
    async fn workspace(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        self.check()?.workspace(id).await
    }
    async fn workspaces_for_user(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Workspace>> {
        self.check()?.workspaces_for_user(user, cursor, limit).await
    }
    async fn add_member(&self, ws: &WorkspaceId, user: &UserId, role: Role) -> StoreResult<Member> {
        self.check()?.add_member(ws, user, role).await
    }
    async fn member(&self, ws: &WorkspaceId, user: &UserId) -> StoreResult<Option<Member>> {
        self.check()?.member(ws, user).await
    }
    async fn members(
        &self,
        ws: &WorkspaceId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Member>> {
        self.check()?.members(ws, cursor, limit).await
    }
    async fn set_member_role(
        &self,
        ws: &WorkspaceId,
        user: &UserId,
        role: Role,
    ) -> StoreResult<(Member, Member)> {
        self.check()?.set_member_role(ws, user, role).await
    }
    async fn remove_member(&self, ws: &WorkspaceId, user: &UserId) -> StoreResult<Member> {
        self.check()?.remove_member(ws, user).await
    }
    async fn create_project(&self, new: NewProject) -> StoreResult<Project> {
        self.check()?.create_project(new).await
    }
    async fn project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        self.check()?.project(id).await
    }
    async fn projects(
        &self,
        ws: &WorkspaceId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Project>> {
        self.check()?.projects(ws, cursor, limit).await
    }
    async fn create_task(&self, new: NewTask) -> StoreResult<Task> {
        self.check()?.create_task(new).await
    }
    async fn task(&self, id: &TaskId) -> StoreResult<Option<Task>> {
        self.check()?.task(id).await
    }
    async fn update_task(&self, id: &TaskId, patch: TaskPatch) -> StoreResult<(Task, Task)> {
        self.check()?.update_task(id, patch).await
    }
    async fn attach_file(
        &self,
        task: &TaskId,
        file_id: &str,
        attachment: serde_json::Value,
        max: usize,
    ) -> StoreResult<(Task, bool)> {
        self.check()?
            .attach_file(task, file_id, attachment, max)
            .await
    }
    async fn delete_task(&self, id: &TaskId) -> StoreResult<Task> {
        self.check()?.delete_task(id).await
    }
    async fn tasks(
        &self,
        project: &ProjectId,
        filter: &TaskFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Task>> {
        self.check()?.tasks(project, filter, cursor, limit).await
    }
    async fn create_comment(&self, new: NewComment) -> StoreResult<Comment> {
        self.check()?.create_comment(new).await
    }
    async fn comment(&self, id: &CommentId) -> StoreResult<Option<Comment>> {
        self.check()?.comment(id).await
    }
    async fn comments(
        &self,
        task: &TaskId,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Comment>> {
        self.check()?.comments(task, cursor, limit).await
    }
    async fn update_comment(&self, id: &CommentId, body: String) -> StoreResult<Comment> {
        self.check()?.update_comment(id, body).await
    }
    async fn delete_comment(&self, id: &CommentId) -> StoreResult<Comment> {
        self.check()?.delete_comment(id).await
    }
}

#[async_trait]
impl NotificationStore for FaultyStore {
    async fn create_notification(
        &self,
        new: NewNotification,
        keep: usize,
    ) -> StoreResult<(Notification, u64)> {
        self.check()?.create_notification(new, keep).await
    }
    async fn notifications(
        &self,
        user: &UserId,
        unread_only: bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Notification>> {
        self.check()?
            .notifications(user, unread_only, cursor, limit)
            .await
    }
    async fn mark_notification_read(&self, user: &UserId, id: &NotificationId) -> StoreResult<u64> {
        self.check()?.mark_notification_read(user, id).await
    }
    async fn mark_all_notifications_read(&self, user: &UserId) -> StoreResult<u64> {
        self.check()?.mark_all_notifications_read(user).await
    }
    async fn unread_count(&self, user: &UserId) -> StoreResult<u64> {
        self.check()?.unread_count(user).await
    }
}

#[async_trait]
impl SearchStore for FaultyStore {
    async fn search_tasks(
        &self,
        ws: &WorkspaceId,
        query: &str,
        offset: usize,
        limit: usize,
    ) -> StoreResult<SearchHits> {
        self.check()?.search_tasks(ws, query, offset, limit).await
    }
}
