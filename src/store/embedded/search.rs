//! Task search for the embedded store: an in-memory tantivy index of the
//! live tasks (id, workspace, title, description, tags), rebuilt from the
//! database when the store opens and updated after every committed task
//! write, so a write is searchable as soon as the write returns.
//!
//! Ranking is tantivy's BM25 over the three fields (title weighs most, then
//! tags, then description). Each query word matches exactly, and a word of 4
//! or more letters also matches with one edit (Levenshtein distance 1, a
//! transposition counting as one) through `FuzzyTermQuery`; exact matches
//! score higher than fuzzy ones.
//!
//! Why in memory: the index is derived data, and rebuilding it at start-up
//! keeps it consistent with the database whatever happened before (a crash
//! between the database commit and the index commit cannot leave them
//! apart).

use super::*;
use huddle_actors::ids::{TaskId, WorkspaceId};
use huddle_actors::model::{SearchHits, Task};
use huddle_actors::store::SearchStore;
use std::sync::Mutex;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// Words of a query used at most (the rest are ignored).
const MAX_QUERY_WORDS: usize = 16;
/// Memory budget of the index writer.
const WRITER_HEAP_BYTES: usize = 15_000_000;

struct Fields {
    id: Field,
    workspace: Field,
    title: Field,
    description: Field,
    tags: Field,
}

/// The full-text index of live tasks.
pub struct TaskIndex {
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
}

impl TaskIndex {
    /// An empty index.
    pub fn new() -> StoreResult<Self> {
        let mut b = Schema::builder();
        let fields = Fields {
            id: b.add_text_field("id", STRING | STORED),
            workspace: b.add_text_field("workspace", STRING),
            title: b.add_text_field("title", TEXT),
            description: b.add_text_field("description", TEXT),
            tags: b.add_text_field("tags", TEXT),
        };
        let index = Index::create_in_ram(b.build());
        let writer = index
            .writer_with_num_threads(1, WRITER_HEAP_BYTES)
            .ctx("creating search index writer")?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .ctx("creating search index reader")?;
        Ok(TaskIndex {
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, writer: &IndexWriter, task: &Task) -> StoreResult<()> {
        let f = &self.fields;
        writer
            .add_document(doc!(
                f.id => task.id.as_str(),
                f.workspace => task.workspace_id.as_str(),
                f.title => task.title.as_str(),
                f.description => task.description.as_deref().unwrap_or(""),
                f.tags => task.tags.join(" "),
            ))
            .ctx("indexing task")?;
        Ok(())
    }

    fn commit(&self, writer: &mut IndexWriter) -> StoreResult<()> {
        writer.commit().ctx("committing search index")?;
        self.reader.reload().ctx("reloading search index")?;
        Ok(())
    }

    /// Replaces the whole index with `tasks` (the live ones).
    pub fn rebuild(&self, tasks: impl Iterator<Item = Task>) -> StoreResult<()> {
        let mut writer = self.writer();
        writer.delete_all_documents().ctx("clearing search index")?;
        for task in tasks.filter(|t| t.deleted_at.is_none()) {
            self.add(&writer, &task)?;
        }
        self.commit(&mut writer)
    }

    /// Puts the index entry of task `id` in step with `current`, its state
    /// as committed now (`None` or deleted: no entry). Callers read
    /// `current` while holding nothing; the writer lock serializes updates,
    /// and callers re-read under [`TaskIndex::sync`] so the last one wins.
    fn sync_locked(
        &self,
        writer: &mut IndexWriter,
        id: &TaskId,
        current: Option<&Task>,
    ) -> StoreResult<()> {
        writer.delete_term(Term::from_field_text(self.fields.id, id.as_str()));
        if let Some(task) = current.filter(|t| t.deleted_at.is_none()) {
            self.add(writer, task)?;
        }
        self.commit(writer)
    }

    /// Re-indexes task `id` from the database: the read happens under the
    /// writer lock, so concurrent writes of one task always leave the index
    /// with the state committed last.
    pub fn sync(&self, db: &Database, id: &TaskId) -> StoreResult<()> {
        let mut writer = self.writer();
        let txn = db.begin_read().ctx("search sync")?;
        let tasks = txn.open_table(super::workspaces::TASKS).ctx("open tasks")?;
        let current: Option<Task> = get_json(&tasks, id.as_str())?;
        self.sync_locked(&mut writer, id, current.as_ref())
    }

    /// Ids of the matching tasks of `workspace`, best first, and the total.
    pub fn search(
        &self,
        workspace: &WorkspaceId,
        query: &str,
        offset: usize,
        limit: usize,
    ) -> StoreResult<(Vec<TaskId>, u64)> {
        let f = &self.fields;
        let mut analyzer = self
            .index
            .tokenizer_for_field(f.title)
            .ctx("search tokenizer")?;
        let mut words: Vec<String> = Vec::new();
        let mut stream = analyzer.token_stream(query);
        while stream.advance() {
            let w = stream.token().text.clone();
            if !words.contains(&w) && words.len() < MAX_QUERY_WORDS {
                words.push(w);
            }
        }
        if words.is_empty() || limit == 0 {
            return Ok((Vec::new(), 0));
        }
        let mut any_word: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for word in &words {
            for (field, weight) in [(f.title, 3.0), (f.tags, 2.0), (f.description, 1.0)] {
                let term = Term::from_field_text(field, word);
                any_word.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
                        weight * 2.0,
                    )),
                ));
                if word.chars().count() >= 4 {
                    any_word.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(
                            Box::new(FuzzyTermQuery::new(term, 1, true)),
                            weight,
                        )),
                    ));
                }
            }
        }
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.workspace, workspace.as_str()),
                    IndexRecordOption::Basic,
                )),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(any_word))),
        ]);
        let searcher = self.reader.searcher();
        let (top, total) = searcher
            .search(
                &query,
                &(
                    TopDocs::with_limit(limit)
                        .and_offset(offset)
                        .order_by_score(),
                    Count,
                ),
            )
            .ctx("searching tasks")?;
        let mut ids = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address).ctx("reading search hit")?;
            if let Some(id) = doc.get_first(f.id).and_then(|v| v.as_str()) {
                ids.push(TaskId::from(id));
            }
        }
        Ok((ids, total as u64))
    }
}

impl EmbeddedStore {
    /// Re-indexes one task after a committed write. A failure is logged,
    /// not returned: the write itself succeeded, and the index is rebuilt
    /// at the next start.
    pub(super) async fn reindex(&self, id: TaskId) {
        let search = Arc::clone(&self.search);
        let res = self
            .blocking("reindex task", move |db| search.sync(db, &id))
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
    index.rebuild(all.into_iter())?;
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
