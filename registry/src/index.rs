//! The in-memory search index over artifact metadata, rebuilt from the store
//! on start and updated on every change.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::domain::{Artifact, Page, Query};

struct Entry {
    artifact: Artifact,
    /// Lowercased name, description, tags, domain, task, scenario.
    text: String,
}

/// Artifacts in key order with a lowercased text field.
#[derive(Default)]
pub struct SearchIndex {
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl SearchIndex {
    pub fn upsert(&mut self, a: Artifact) {
        let text = format!(
            "{} {} {} {} {} {} {}",
            a.name,
            a.description,
            a.tags.join(" "),
            a.domain,
            a.task,
            a.scenario,
            a.tool_kind
        )
        .to_lowercase();
        self.entries.insert(a.key(), Entry { artifact: a, text });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every artifact, in key order.
    pub fn all(&self) -> impl Iterator<Item = &Artifact> {
        self.entries.values().map(|e| &e.artifact)
    }

    fn matches(e: &Entry, q: &Query, words: &[String]) -> bool {
        let a = &e.artifact;
        (q.include_yanked || !a.yanked)
            && q.kind.is_none_or(|k| k == a.kind)
            && (q.domain.is_empty() || a.domain == q.domain)
            && (q.task.is_empty() || a.task == q.task)
            && (q.tool_kind.is_empty() || a.tool_kind == q.tool_kind)
            && (q.team.is_empty() || a.team() == q.team)
            && (q.industry.is_empty() || a.industries.contains(&q.industry))
            && words.iter().all(|w| e.text.contains(w.as_str()))
    }

    /// A page of matches after `page_token` (the last key of the previous page).
    pub fn search(&self, q: &Query) -> Page {
        let words: Vec<String> = q
            .text
            .to_lowercase()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let size = q.page_size.clamp(1, 1000);
        let mut total = 0u64;
        let mut out = Vec::with_capacity(size);
        let mut last_key = String::new();
        let start = if q.page_token.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(q.page_token.clone())
        };
        // Count matches before the page too, so `total` is the whole result's size.
        if !q.page_token.is_empty() {
            total += self
                .entries
                .range::<String, _>((Bound::Unbounded, Bound::Included(q.page_token.clone())))
                .filter(|(_, e)| Self::matches(e, q, &words))
                .count() as u64;
        }
        let mut more = false;
        for (k, e) in self.entries.range::<String, _>((start, Bound::Unbounded)) {
            if !Self::matches(e, q, &words) {
                continue;
            }
            total += 1;
            if out.len() < size {
                out.push(e.artifact.clone());
                last_key = k.clone();
            } else {
                more = true;
            }
        }
        Page {
            artifacts: out,
            next_page_token: if more { last_key } else { String::new() },
            total,
        }
    }
}
