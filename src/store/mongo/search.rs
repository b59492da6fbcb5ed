//! Task search in the MongoDB store: the same tantivy index and query as the
//! embedded store ([`crate::store::search_index`]), held in each node's
//! memory and fed from MongoDB, so it needs neither a text index nor Atlas.
//!
//! Why not the database's own search: `$text` has no typo tolerance (the
//! contract lets a word of 4+ letters match with one insertion, deletion,
//! substitution or transposition), and `$search` with `fuzzy` exists only on
//! Atlas, which neither test server nor a plain `mongod` offers. Why not
//! change streams to feed the index: one of the test servers (nx-27017) does
//! not offer them to the driver, and a standalone `mongod` has none.
//!
//! **How the index follows the database.** Every task write stores, beside
//! the task, `rev` (its revision, +1 on every write: update, status move,
//! attachment, delete) and `updatedAtMs` (the writing node's clock, a BSON
//! date), indexed with `(workspaceId, updatedAtMs)`. Before answering a
//! search in a workspace, the node catches its index up:
//!
//! - first search in the workspace (or after it was evicted): load its live
//!   tasks, one query;
//! - then: read the workspace's tasks with `updatedAtMs` at or after the
//!   time the previous catch-up was issued, minus [`SearchOptions::clock_margin`].
//!   The margin covers the clock difference between nodes and the time a
//!   write takes from stamping to commit; a write whose stamp is older than
//!   that when it commits would be missed until the workspace is reloaded.
//!   Re-reading the margin is harmless: a task is re-indexed only when its
//!   `rev` is newer than the one indexed, and a deleted one is removed.
//!
//! A catch-up is issued after the search arrived, and a write that returned
//! before is committed, so a search sees every write that returned before
//! it started — whichever node made it. Catch-ups are exclusive (a write
//! lock over the node's index state); a search that waited while another
//! search's catch-up of the same workspace was issued after it arrived uses
//! that one instead of issuing its own. Searches themselves run
//! concurrently under the read lock.
//!
//! **Memory.** The index holds the workspaces searched on this node, at most
//! about [`SearchOptions::max_indexed_tasks`] tasks: past that, the least
//! recently searched workspaces are dropped (never the one being searched)
//! and loaded again on their next search.
//!
//! In memory rather than on disk under `data_dir`: it is derived data that a
//! node rebuilds per workspace with one query on first use, a disk copy
//! would have to be reconciled with writes made while the node was down
//! (the watermark alone cannot tell), and memory keeps the node stateless.

use super::*;
use crate::store::search_index::{TaskIndex, TaskText};
use futures_util::TryStreamExt;
use huddle_actors::ids::{TaskId, WorkspaceId};
use huddle_actors::model::{SearchHits, Task};
use huddle_actors::store::SearchStore;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::RwLock;
use tokio::time::Instant;

/// How a node runs its MongoDB-fed search index (settings `[mongodb]`
/// `search_max_indexed_tasks`, `search_clock_margin_ms`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchOptions {
    /// About how many tasks the index holds before it drops the least
    /// recently searched workspaces.
    pub max_indexed_tasks: usize,
    /// How far back a catch-up re-reads: more than the clock difference
    /// between nodes plus the longest time a task write takes.
    pub clock_margin: Duration,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            max_indexed_tasks: 100_000,
            clock_margin: Duration::from_secs(10),
        }
    }
}

/// The task as stored: the model's fields, `_id`, its revision and the BSON
/// date the search catch-up reads from.
pub(super) fn task_doc(task: &Task, rev: i64) -> StoreResult<Document> {
    let mut document = to_doc(task, task.id.as_str())?;
    document.insert("rev", rev);
    document.insert("updatedAtMs", to_bson_time(task.updated_at));
    Ok(document)
}

/// What a catch-up reads of a task.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchDoc {
    #[serde(rename = "_id")]
    id: String,
    workspace_id: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// Absent on tasks written before revisions existed: 0.
    #[serde(default)]
    rev: i64,
    #[serde(default)]
    deleted_at: Option<bson::Bson>,
}

impl SearchDoc {
    fn text(&self) -> TaskText<'_> {
        TaskText {
            id: &self.id,
            workspace: &self.workspace_id,
            title: &self.title,
            description: self.description.as_deref().unwrap_or(""),
            tags: &self.tags,
        }
    }
}

/// One workspace held in the index.
struct Held {
    /// The next catch-up reads tasks stamped at or after this (Unix ms).
    read_from_ms: i64,
    /// When the last catch-up was issued.
    caught_up_at: Instant,
    /// Task id → `rev` of the live tasks indexed.
    revs: HashMap<String, i64>,
    /// Search order, for eviction.
    last_used: u64,
}

/// The workspaces the index holds.
#[derive(Default)]
struct Loaded {
    workspaces: HashMap<String, Held>,
    /// Tasks indexed over all workspaces.
    tasks: usize,
    /// Counts searches, for [`Held::last_used`].
    tick: u64,
}

/// A change the catch-up makes to the index.
enum Change {
    Put(Box<SearchDoc>),
    Remove(String),
    RemoveWorkspace(String),
}

/// The node's MongoDB-fed search index and what it holds.
pub(super) struct MongoSearch {
    index: Arc<TaskIndex>,
    options: SearchOptions,
    loaded: RwLock<Loaded>,
}

impl MongoSearch {
    pub(super) fn new(options: SearchOptions) -> StoreResult<Self> {
        Ok(MongoSearch {
            index: Arc::new(TaskIndex::new()?),
            options,
            loaded: RwLock::new(Loaded::default()),
        })
    }
}

fn margin_ms(options: &SearchOptions) -> i64 {
    i64::try_from(options.clock_margin.as_millis()).unwrap_or(i64::MAX / 2)
}

impl MongoStore {
    /// Brings `workspace` in the index up to date with the database (see the
    /// module doc) and records the changes in `loaded`; returns the index
    /// changes to apply.
    async fn catch_up(&self, loaded: &mut Loaded, workspace: &str) -> StoreResult<Vec<Change>> {
        let search = &self.search;
        let issued = Instant::now();
        let issued_ms = Utc::now().timestamp_millis();
        let held = loaded.workspaces.get(workspace);
        let filter = match held {
            None => doc! { "workspaceId": workspace, "deletedAt": not_deleted() },
            Some(h) => doc! {
                "workspaceId": workspace,
                "updatedAtMs": { "$gte": bson::DateTime::from_millis(h.read_from_ms) },
            },
        };
        let docs: Vec<SearchDoc> = self
            .tasks
            .clone_with_type::<SearchDoc>()
            .find(filter)
            .projection(doc! {
                "workspaceId": 1, "title": 1, "description": 1, "tags": 1,
                "rev": 1, "deletedAt": 1,
            })
            .await
            .ctx("reading tasks for the search index")?
            .try_collect()
            .await
            .ctx("reading tasks for the search index")?;

        let mut changes = Vec::new();
        let mut held = match loaded.workspaces.remove(workspace) {
            Some(h) => h,
            None => {
                // Whatever a failed earlier load left behind goes first.
                changes.push(Change::RemoveWorkspace(workspace.to_owned()));
                Held {
                    read_from_ms: i64::MIN,
                    caught_up_at: issued,
                    revs: HashMap::new(),
                    last_used: 0,
                }
            }
        };
        loaded.tasks -= held.revs.len();
        for d in docs {
            let live = matches!(d.deleted_at, None | Some(bson::Bson::Null));
            if !live {
                // Deleted for good: an update never matches a deleted task.
                if held.revs.remove(&d.id).is_some() {
                    changes.push(Change::Remove(d.id));
                }
            } else if held.revs.get(&d.id).is_none_or(|&rev| rev < d.rev) {
                held.revs.insert(d.id.clone(), d.rev);
                changes.push(Change::Put(Box::new(d)));
            }
        }
        held.read_from_ms = held
            .read_from_ms
            .max(issued_ms.saturating_sub(margin_ms(&search.options)));
        held.caught_up_at = issued;
        loaded.tasks += held.revs.len();
        loaded.workspaces.insert(workspace.to_owned(), held);

        // Keep within the budget, least recently searched first.
        while loaded.tasks > search.options.max_indexed_tasks {
            let Some(oldest) = loaded
                .workspaces
                .iter()
                .filter(|(id, _)| id.as_str() != workspace)
                .min_by_key(|(_, h)| h.last_used)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            if let Some(h) = loaded.workspaces.remove(&oldest) {
                loaded.tasks -= h.revs.len();
            }
            changes.push(Change::RemoveWorkspace(oldest));
        }
        Ok(changes)
    }

    /// Applies `changes` to the index and commits them, off the reactor.
    async fn apply(&self, changes: Vec<Change>) -> StoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let index = Arc::clone(&self.search.index);
        tokio::task::spawn_blocking(move || {
            let mut batch = index.write();
            for change in &changes {
                match change {
                    Change::Put(d) => batch.put(d.text())?,
                    Change::Remove(id) => batch.remove(id),
                    Change::RemoveWorkspace(ws) => batch.remove_workspace(ws),
                }
            }
            batch.commit()
        })
        .await
        .ctx("search index task")?
    }
}

#[async_trait]
impl SearchStore for MongoStore {
    async fn search_tasks(
        &self,
        workspace: &WorkspaceId,
        query: &str,
        offset: usize,
        limit: usize,
    ) -> StoreResult<SearchHits> {
        let arrived = Instant::now();
        let mut loaded = self.search.loaded.write().await;
        let current = loaded
            .workspaces
            .get(workspace.as_str())
            .is_some_and(|h| h.caught_up_at >= arrived);
        if !current {
            let caught_up = match self.catch_up(&mut loaded, workspace.as_str()).await {
                Ok(changes) => self.apply(changes).await,
                Err(e) => Err(e),
            };
            if let Err(e) = caught_up {
                // What the index holds of this workspace is unknown now:
                // forget it, so the next search loads it afresh.
                if let Some(h) = loaded.workspaces.remove(workspace.as_str()) {
                    loaded.tasks -= h.revs.len();
                }
                return Err(e);
            }
        }
        loaded.tick += 1;
        let tick = loaded.tick;
        if let Some(h) = loaded.workspaces.get_mut(workspace.as_str()) {
            h.last_used = tick;
        }
        // Searches share the index; the next catch-up waits for them.
        let loaded = loaded.downgrade();
        let index = Arc::clone(&self.search.index);
        let (ws, q) = (workspace.clone(), query.to_owned());
        let (ids, total) =
            tokio::task::spawn_blocking(move || index.search(&ws, &q, offset, limit))
                .await
                .ctx("search task")??;
        drop(loaded);
        if ids.is_empty() {
            return Ok(SearchHits {
                items: Vec::new(),
                total,
            });
        }
        let found: Vec<Document> = self
            .tasks
            .find(doc! {
                "_id": { "$in": ids.iter().map(TaskId::as_str).collect::<Vec<_>>() },
                "deletedAt": not_deleted(),
            })
            .await
            .ctx("reading search hits")?
            .try_collect()
            .await
            .ctx("reading search hits")?;
        let mut by_id: HashMap<String, Task> = HashMap::with_capacity(found.len());
        for document in found {
            let task: Task = from_doc(document)?;
            by_id.insert(task.id.0.clone(), task);
        }
        // In the index's order; a task deleted since the catch-up is skipped.
        let items = ids
            .iter()
            .filter_map(|id| by_id.remove(id.as_str()))
            .collect();
        Ok(SearchHits { items, total })
    }
}
