//! Task search for the embedded store: the shared in-memory tantivy index
//! ([`crate::store::search_index`]) of the live tasks, rebuilt from the
//! database when the store opens and updated after every committed task
//! write, so a write is searchable as soon as the write returns.
//!
//! Why in memory: the index is derived data, and rebuilding it at start-up
//! keeps it consistent with the database whatever happened before (a crash
//! between the database commit and the index commit cannot leave them
//! apart).

use super::*;
use crate::store::search_index::{TaskIndex, TaskText};
use huddle_actors::ids::{TaskId, WorkspaceId};
use huddle_actors::model::{SearchHits, Task};
use huddle_actors::store::SearchStore;

/// Replaces the whole index with the live ones of `tasks`.
fn rebuild(index: &TaskIndex, tasks: impl Iterator<Item = Task>) -> StoreResult<()> {
    let mut batch = index.write();
    batch.clear()?;
    for task in tasks.filter(|t| t.deleted_at.is_none()) {
        batch.put(TaskText::from(&task))?;
    }
    batch.commit()
}

/// Re-indexes task `id` from the database. The read happens while the
/// batch holds the index writer, so concurrent writes of one task always
/// leave the index with the state committed last.
fn sync(index: &TaskIndex, db: &Database, id: &TaskId) -> StoreResult<()> {
    let mut batch = index.write();
    let txn = db.begin_read().ctx("search sync")?;
    let tasks = txn.open_table(super::workspaces::TASKS).ctx("open tasks")?;
    let current: Option<Task> = get_json(&tasks, id.as_str())?;
    match current.filter(|t| t.deleted_at.is_none()) {
        Some(task) => batch.put(TaskText::from(&task))?,
        None => batch.remove(id.as_str()),
    }
    batch.commit()
}

impl EmbeddedStore {
    /// Re-indexes one task after a committed write. A failure is logged,
    /// not returned: the write itself succeeded, and the index is rebuilt
    /// at the next start.
    pub(super) async fn reindex(&self, id: TaskId) {
        let search = Arc::clone(&self.search);
        let res = self
            .blocking("reindex task", move |db| sync(&search, db, &id))
            .await;
        if let Err(e) = res {
            log::error!(
                "search index update failed: {e}: {:?}",
                std::error::Error::source(&e)
            );
        }
    }
}

/// Builds the index from every live task in the database.
pub(super) fn build_index(db: &Database) -> StoreResult<TaskIndex> {
    let index = TaskIndex::new()?;
    let txn = db.begin_read().ctx("reading tasks for the search index")?;
    let tasks = txn.open_table(super::workspaces::TASKS).ctx("open tasks")?;
    let mut all = Vec::new();
    for entry in tasks.iter().ctx("scanning tasks")? {
        let (_, v) = entry.ctx("reading task")?;
        all.push(decode::<Task>(v.value())?);
    }
    rebuild(&index, all.into_iter())?;
    Ok(index)
}

#[async_trait]
impl SearchStore for EmbeddedStore {
    async fn search_tasks(
        &self,
        workspace: &WorkspaceId,
        query: &str,
        offset: usize,
        limit: usize,
    ) -> StoreResult<SearchHits> {
        let (workspace, query) = (workspace.clone(), query.to_owned());
        let search = Arc::clone(&self.search);
        self.blocking("search_tasks", move |db| {
            let (ids, total) = search.search(&workspace, &query, offset, limit)?;
            let txn = db.begin_read().ctx("search_tasks")?;
            let tasks = txn.open_table(super::workspaces::TASKS).ctx("open tasks")?;
            let mut items = Vec::with_capacity(ids.len());
            for id in ids {
                // A task deleted between the search and this read is skipped.
                if let Some(t) = get_json::<Task>(&tasks, id.as_str())? {
                    if t.deleted_at.is_none() {
                        items.push(t);
                    }
                }
            }
            Ok(SearchHits { items, total })
        })
        .await
    }
}
