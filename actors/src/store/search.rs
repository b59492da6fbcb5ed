//! The task search port. The embedded backend answers it with a full-text
//! index (tantivy) kept beside its database; a MongoDB backend answers it
//! with `$search` or `$text`. Either way the store keeps the index in step
//! with task writes, so callers never index by hand.

use super::StoreResult;
use crate::ids::WorkspaceId;
use crate::model::SearchHits;
use async_trait::async_trait;

/// Full-text search over tasks.
#[async_trait]
pub trait SearchStore: Send + Sync + 'static {
    /// Tasks of `workspace` that are not deleted, ranked by relevance of
    /// `query` over title, description and tags; a word of 4 or more letters
    /// also matches with one typo (insertion, deletion, substitution or
    /// transposition). Skips `offset` hits, returns at most `limit`, and the
    /// number of all hits.
    async fn search_tasks(
        &self,
        workspace: &WorkspaceId,
        query: &str,
        offset: usize,
        limit: usize,
    ) -> StoreResult<SearchHits>;
}
