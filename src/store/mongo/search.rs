//! Task search in the MongoDB store, on any server: no text index, no Atlas.
//!
//! Why not `$text`: the contract lets a query word of 4 or more letters
//! match with one typo (insertion, deletion, substitution or transposition),
//! and `$text` has no typo tolerance at all; `$search` with `fuzzy` has it
//! but exists only on Atlas (and neither test server, nor a plain `mongod`,
//! offers it; secantusdb has no text indexes either). Choosing between them
//! at run time would give different answers on different deployments.
//! Instead every task document carries its own small term list, kept in step
//! by the same write that stores the task (insert, or the revision-checked
//! replace of `update_task`), so a write is searchable as soon as it returns:
//!
//! - `searchTerms`: the distinct words of title, description and tags,
//!   lower-cased, split on anything that is not a letter or digit (as the
//!   embedded store's tokenizer does);
//! - `searchKeys`: each term of 3+ letters together with its one-deletion
//!   variants (`payment` → `payment`, `ayment`, `pyment`, ...).
//!
//! Two words are one edit apart (a transposition counting as one) only if
//! they share a one-deletion variant (the "symmetric delete" idea of
//! SymSpell), so a query word of 4+ letters is looked up with its own
//! variants against the multikey index `(workspaceId, searchKeys)`, and a
//! shorter word with an exact match on `searchTerms`. Sharing a variant does
//! not prove distance 1 (`abcd`/`bcde` share `bcd`), so each candidate is
//! checked with the optimal-string-alignment distance before it counts.
//!
//! Ranking mirrors the embedded store's weights: per query word and field,
//! title 3, tags 2, description 1, doubled for an exact match; ties go to
//! the older task. Candidates (live tasks of the workspace sharing a key) are
//! scored in the store process, so `total` is exact; the cost grows with the
//! number of tasks that match, not with the size of the workspace.

use super::*;
use futures_util::TryStreamExt;
use huddle_actors::ids::WorkspaceId;
use huddle_actors::model::{SearchHits, Task};
use huddle_actors::store::SearchStore;
use std::collections::BTreeSet;

/// Words of a query used at most (the rest are ignored), as embedded.
const MAX_QUERY_WORDS: usize = 16;
/// Words longer than this are not indexed (tantivy's default drops them too).
const MAX_WORD_CHARS: usize = 40;
/// The shortest query word that may match with one typo.
const FUZZY_MIN_CHARS: usize = 4;

/// The words of a text: lower-cased runs of letters and digits.
pub(super) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.chars().count() <= MAX_WORD_CHARS)
        .map(str::to_lowercase)
}

/// The word and each of its one-deletion variants.
fn deletion_variants(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = vec![word.to_owned()];
    for skip in 0..chars.len() {
        out.push(
            chars
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, c)| *c)
                .collect(),
        );
    }
    out
}

/// Optimal string alignment distance, stopping early: whether `a` and `b`
/// are at most one edit (insertion, deletion, substitution, transposition
/// of neighbours) apart.
fn within_one_edit(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m] <= 1
}

/// The task as stored: the model's fields, `_id`, its revision and its
/// search terms and keys.
pub(super) fn task_doc(task: &Task, rev: i64) -> StoreResult<Document> {
    let mut terms = BTreeSet::new();
    terms.extend(words(&task.title));
    if let Some(d) = &task.description {
        terms.extend(words(d));
    }
    for tag in &task.tags {
        terms.extend(words(tag));
    }
    let mut keys = BTreeSet::new();
    for term in &terms {
        if term.chars().count() >= FUZZY_MIN_CHARS - 1 {
            keys.extend(deletion_variants(term));
        }
    }
    let mut document = to_doc(task, task.id.as_str())?;
    document.insert("rev", rev);
    document.insert("searchTerms", terms.into_iter().collect::<Vec<_>>());
    document.insert("searchKeys", keys.into_iter().collect::<Vec<_>>());
    Ok(document)
}

/// How well one query word matches a field's words: 2 exact, 1 fuzzy, 0.
fn word_match(word: &str, field_words: &[String]) -> u32 {
    if field_words.iter().any(|w| w == word) {
        2
    } else if word.chars().count() >= FUZZY_MIN_CHARS
        && field_words.iter().any(|w| within_one_edit(word, w))
    {
        1
    } else {
        0
    }
}

/// The task's score for the query words (0: not a hit).
fn score(task: &Task, query: &[String]) -> u32 {
    let title: Vec<String> = words(&task.title).collect();
    let tags: Vec<String> = task.tags.iter().flat_map(|t| words(t)).collect();
    let description: Vec<String> = task
        .description
        .as_deref()
        .map(|d| words(d).collect())
        .unwrap_or_default();
    query
        .iter()
        .map(|w| 3 * word_match(w, &title) + 2 * word_match(w, &tags) + word_match(w, &description))
        .sum()
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
        let mut query_words: Vec<String> = Vec::new();
        for w in words(query) {
            if !query_words.contains(&w) && query_words.len() < MAX_QUERY_WORDS {
                query_words.push(w);
            }
        }
        if query_words.is_empty() || limit == 0 {
            return Ok(SearchHits {
                items: Vec::new(),
                total: 0,
            });
        }
        let mut exact = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for w in &query_words {
            if w.chars().count() >= FUZZY_MIN_CHARS {
                keys.extend(deletion_variants(w));
            } else {
                exact.insert(w.clone());
            }
        }
        let mut any = Vec::new();
        if !keys.is_empty() {
            any.push(doc! { "searchKeys": { "$in": keys.into_iter().collect::<Vec<_>>() } });
        }
        if !exact.is_empty() {
            any.push(doc! { "searchTerms": { "$in": exact.into_iter().collect::<Vec<_>>() } });
        }
        let candidates: Vec<Document> = self
            .tasks
            .find(doc! {
                "workspaceId": workspace.as_str(),
                "deletedAt": not_deleted(),
                "$or": any,
            })
            .projection(doc! { "searchKeys": 0 })
            .await
            .ctx("searching tasks")?
            .try_collect()
            .await
            .ctx("reading search candidates")?;
        let mut hits: Vec<(u32, Task)> = Vec::new();
        for document in candidates {
            let task: Task = from_doc(document)?;
            let s = score(&task, &query_words);
            if s > 0 {
                hits.push((s, task));
            }
        }
        hits.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.seq.cmp(&b.1.seq)));
        let total = hits.len() as u64;
        Ok(SearchHits {
            items: hits
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(_, t)| t)
                .collect(),
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_edit_covers_every_kind_and_nothing_more() {
        for typo in ["paymant", "paymnet", "paymet", "paymennt", "payment"] {
            assert!(within_one_edit(typo, "payment"), "{typo}");
        }
        assert!(!within_one_edit("abcd", "bcde"));
        assert!(!within_one_edit("paymnt", "paiment"));
    }

    #[test]
    fn typos_share_a_deletion_variant() {
        let stored = deletion_variants("payment");
        for typo in ["paymant", "paymnet", "paymet", "paymennt"] {
            assert!(
                deletion_variants(typo).iter().any(|k| stored.contains(k)),
                "{typo}"
            );
        }
    }
}
