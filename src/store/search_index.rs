//! The task search index both document stores use: an in-memory tantivy
//! index of live tasks (id, workspace, title, description, tags) and the one
//! query that serves `GET /workspaces/{id}/search`.
//!
//! Each store decides what feeds it: the embedded store re-indexes a task
//! after every committed write (`embedded/search.rs`), the MongoDB store
//! catches the index up from the database before answering
//! (`mongo/search.rs`). The schema, the analyzer and the ranking live here
//! once, so both backends answer a query the same way.
//!
//! Ranking is tantivy's BM25 over the three fields (title weighs most, then
//! tags, then description). Each query word matches exactly, and a word of 4
//! or more letters also matches with one edit (Levenshtein distance 1, a
//! transposition counting as one) through `FuzzyTermQuery`; exact matches
//! score higher than fuzzy ones. Words shorter than 4 letters match exactly
//! only, so `bug` does not find `big`.

use std::sync::{Mutex, MutexGuard};

use huddle_actors::ids::{TaskId, WorkspaceId};
use huddle_actors::model::Task;
use huddle_actors::store::{StoreError, StoreResult};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// Words of a query used at most (the rest are ignored).
const MAX_QUERY_WORDS: usize = 16;
/// The shortest query word that may match with one typo.
const FUZZY_MIN_CHARS: usize = 4;
/// Memory budget of the index writer (tantivy's minimum per thread).
const WRITER_HEAP_BYTES: usize = 15_000_000;

/// The searchable text of one task, borrowed from wherever the store keeps
/// it (a [`Task`], or a MongoDB document read with a projection).
#[derive(Clone, Copy, Debug)]
pub struct TaskText<'a> {
    /// The task id.
    pub id: &'a str,
    /// Its workspace: every search is within one.
    pub workspace: &'a str,
    /// The title (weighs most).
    pub title: &'a str,
    /// The description, empty when there is none.
    pub description: &'a str,
    /// The tags.
    pub tags: &'a [String],
}

impl<'a> From<&'a Task> for TaskText<'a> {
    fn from(task: &'a Task) -> Self {
        TaskText {
            id: task.id.as_str(),
            workspace: task.workspace_id.as_str(),
            title: &task.title,
            description: task.description.as_deref().unwrap_or(""),
            tags: &task.tags,
        }
    }
}

struct Fields {
    id: Field,
    workspace: Field,
    title: Field,
    description: Field,
    tags: Field,
}

/// The full-text index of live tasks. Writes go through one [`IndexWrite`]
/// at a time; searches read the last committed state and never wait for a
/// writer.
pub struct TaskIndex {
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
}

fn ctx<T, E>(result: Result<T, E>, what: &str) -> StoreResult<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    result.map_err(|e| StoreError::backend(what, e))
}

impl TaskIndex {
    /// An empty index, in memory.
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
        let writer = ctx(
            index.writer_with_num_threads(1, WRITER_HEAP_BYTES),
            "creating search index writer",
        )?;
        let reader = ctx(
            index
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into(),
            "creating search index reader",
        )?;
        Ok(TaskIndex {
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
        })
    }

    /// Starts a batch of changes; it holds the writer until
    /// [`IndexWrite::commit`] (or until dropped, which discards it), so
    /// batches never interleave.
    pub fn write(&self) -> IndexWrite<'_> {
        IndexWrite {
            index: self,
            // A panic while writing leaves at worst uncommitted changes,
            // which the next batch's rollback discards.
            writer: self.writer.lock().unwrap_or_else(|e| e.into_inner()),
            committed: false,
        }
    }

    /// Ids of the matching tasks of `workspace`, best first, from `offset`,
    /// at most `limit`, and the total number of matches.
    pub fn search(
        &self,
        workspace: &WorkspaceId,
        query: &str,
        offset: usize,
        limit: usize,
    ) -> StoreResult<(Vec<TaskId>, u64)> {
        let f = &self.fields;
        let mut analyzer = ctx(self.index.tokenizer_for_field(f.title), "search tokenizer")?;
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
                if word.chars().count() >= FUZZY_MIN_CHARS {
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
        let (top, total) = ctx(
            searcher.search(
                &query,
                &(
                    TopDocs::with_limit(limit)
                        .and_offset(offset)
                        .order_by_score(),
                    Count,
                ),
            ),
            "searching tasks",
        )?;
        let mut ids = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = ctx(searcher.doc(address), "reading search hit")?;
            if let Some(id) = doc.get_first(f.id).and_then(|v| v.as_str()) {
                ids.push(TaskId::from(id));
            }
        }
        Ok((ids, total as u64))
    }
}

/// A batch of index changes, holding the index's writer. Nothing is
/// visible to searches until [`IndexWrite::commit`]; dropping the batch
/// without committing discards it.
pub struct IndexWrite<'a> {
    index: &'a TaskIndex,
    writer: MutexGuard<'a, IndexWriter>,
    committed: bool,
}

impl IndexWrite<'_> {
    /// Indexes `task`, replacing any entry with its id.
    pub fn put(&mut self, task: TaskText<'_>) -> StoreResult<()> {
        let f = &self.index.fields;
        self.remove(task.id);
        ctx(
            self.writer.add_document(doc!(
                f.id => task.id,
                f.workspace => task.workspace,
                f.title => task.title,
                f.description => task.description,
                f.tags => task.tags.join(" "),
            )),
            "indexing task",
        )?;
        Ok(())
    }

    /// Removes the entry of task `id`, if any.
    pub fn remove(&mut self, id: &str) {
        self.writer
            .delete_term(Term::from_field_text(self.index.fields.id, id));
    }

    /// Removes every entry of `workspace`.
    pub fn remove_workspace(&mut self, workspace: &str) {
        self.writer.delete_term(Term::from_field_text(
            self.index.fields.workspace,
            workspace,
        ));
    }

    /// Removes every entry.
    pub fn clear(&mut self) -> StoreResult<()> {
        ctx(self.writer.delete_all_documents(), "clearing search index")?;
        Ok(())
    }

    /// Makes the batch visible to searches.
    pub fn commit(mut self) -> StoreResult<()> {
        ctx(self.writer.commit(), "committing search index")?;
        self.committed = true;
        ctx(self.index.reader.reload(), "reloading search index")?;
        Ok(())
    }
}

impl Drop for IndexWrite<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // Discard the half-made batch so the next one does not commit it.
            if let Err(e) = self.writer.rollback() {
                log::error!("search index rollback failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(id: &'a str, workspace: &'a str, title: &'a str) -> TaskText<'a> {
        TaskText {
            id,
            workspace,
            title,
            description: "",
            tags: &[],
        }
    }

    fn ids(index: &TaskIndex, workspace: &str, query: &str) -> Vec<String> {
        let (ids, _) = index
            .search(&WorkspaceId::from(workspace), query, 0, 10)
            .unwrap();
        ids.into_iter().map(|id| id.0).collect()
    }

    #[test]
    fn a_dropped_batch_is_discarded_and_a_put_replaces() {
        let index = TaskIndex::new().unwrap();
        let mut w = index.write();
        w.put(text("t1", "w", "payment service")).unwrap();
        w.commit().unwrap();
        {
            let mut w = index.write();
            w.remove("t1");
            // dropped without commit
        }
        let mut w = index.write();
        w.put(text("t2", "w", "other")).unwrap();
        w.commit().unwrap();
        assert_eq!(ids(&index, "w", "payment"), ["t1"]);

        let mut w = index.write();
        w.put(text("t1", "w", "kubernetes")).unwrap();
        w.commit().unwrap();
        assert!(ids(&index, "w", "payment").is_empty());
        assert_eq!(ids(&index, "w", "kubernetes"), ["t1"]);
    }

    #[test]
    fn removing_a_workspace_leaves_the_others() {
        let index = TaskIndex::new().unwrap();
        let mut w = index.write();
        w.put(text("a", "w1", "payment")).unwrap();
        w.put(text("b", "w2", "payment")).unwrap();
        w.commit().unwrap();
        let mut w = index.write();
        w.remove_workspace("w1");
        w.commit().unwrap();
        assert!(ids(&index, "w1", "payment").is_empty());
        assert_eq!(ids(&index, "w2", "payment"), ["b"]);
    }
}
