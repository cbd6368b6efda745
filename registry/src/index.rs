//! The in-memory search index over artifact metadata, rebuilt from the store
//! on start and updated on every change.
//!
//! Each artifact gets a dense id in publishing order. Facets (kind, domain,
//! task, team, tool kind, industry) map to sorted id sets, and so does every
//! key of its text (each token from every place a word starts in it). A query
//! word matches where it starts at a word boundary of the text (`inv` finds
//! "invoice", `mlp-1` finds "mlp-12", `team/mlp-1` finds "team/mlp-12"); a
//! query intersects the sets of its filters and of the keys its words begin,
//! then checks the candidates left in full.

use std::collections::{BTreeMap, HashMap};

/// Ids in increasing order (ids are handed out in increasing order, so appends keep it sorted).
type Ids = Vec<u32>;

fn insert_id(v: &mut Ids, id: u32) {
    if let Err(at) = v.binary_search(&id) {
        v.insert(at, id);
    }
}

fn remove_id(v: &mut Ids, id: u32) {
    if let Ok(at) = v.binary_search(&id) {
        v.remove(at);
    }
}

use crate::domain::{Artifact, Page, Query};

struct Entry {
    artifact: Artifact,
    /// Lowercased name, description, tags, domain, task, scenario, tool kind.
    text: String,
}

/// Artifacts with inverted indexes over their facets and words.
#[derive(Default)]
pub struct SearchIndex {
    entries: Vec<Entry>,
    ids: HashMap<String, u32>,
    postings: HashMap<(u8, String), Ids>,
    words: BTreeMap<String, Ids>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("entries", &self.entries.len())
            .finish()
    }
}

const KIND: u8 = 0;
const DOMAIN: u8 = 1;
const TASK: u8 = 2;
const TEAM: u8 = 3;
const TOOL_KIND: u8 = 4;
const INDUSTRY: u8 = 5;

/// A query word narrows the candidates only when it begins few enough indexed words.
const MAX_PREFIX_WORDS: usize = 256;

/// The indexed keys of a text: for each whitespace-separated token, the rest
/// of it from every place a word begins (`bench/mlp-12` gives `bench/mlp-12`,
/// `mlp-12`, `12`). A query word found at a word boundary of the text is then
/// the prefix of one of its keys, whatever punctuation it spans.
fn keys_of(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace().flat_map(|token| {
        let mut prev_alnum = false;
        token.char_indices().filter_map(move |(i, c)| {
            let starts = c.is_alphanumeric() && !prev_alnum;
            prev_alnum = c.is_alphanumeric();
            starts.then(|| &token[i..])
        })
    })
}

fn keys(a: &Artifact) -> Vec<(u8, String)> {
    let mut k = vec![
        (KIND, a.kind.as_str().to_owned()),
        (DOMAIN, a.domain.clone()),
        (TASK, a.task.clone()),
        (TEAM, a.team().to_owned()),
        (TOOL_KIND, a.tool_kind.clone()),
    ];
    k.extend(a.industries.iter().map(|i| (INDUSTRY, i.clone())));
    k.sort();
    k.dedup();
    k
}

impl SearchIndex {
    /// Adds an artifact or replaces the one with the same key.
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
        let key = a.key();
        let id = match self.ids.get(&key) {
            Some(&id) => {
                let old = &self.entries[id as usize];
                for k in keys(&old.artifact) {
                    if let Some(set) = self.postings.get_mut(&k) {
                        remove_id(set, id);
                    }
                }
                for w in keys_of(&old.text) {
                    if let Some(set) = self.words.get_mut(w) {
                        remove_id(set, id);
                    }
                }
                id
            }
            None => {
                let id = self.entries.len() as u32;
                self.ids.insert(key, id);
                self.entries.push(Entry {
                    artifact: a.clone(),
                    text: String::new(),
                });
                id
            }
        };
        for k in keys(&a) {
            insert_id(self.postings.entry(k).or_default(), id);
        }
        for w in keys_of(&text) {
            insert_id(self.words.entry(w.to_owned()).or_default(), id);
        }
        self.entries[id as usize] = Entry { artifact: a, text };
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every artifact, in publishing order.
    pub fn all(&self) -> impl Iterator<Item = &Artifact> {
        self.entries.iter().map(|e| &e.artifact)
    }

    fn matches(e: &Entry, q: &Query, text_words: &[String]) -> bool {
        let a = &e.artifact;
        (q.include_yanked || !a.yanked)
            && q.viewer.as_ref().is_none_or(|p| p.may_see(a))
            && q.kind.is_none_or(|k| k == a.kind)
            && (q.domain.is_empty() || a.domain == q.domain)
            && (q.task.is_empty() || a.task == q.task)
            && (q.tool_kind.is_empty() || a.tool_kind == q.tool_kind)
            && (q.team.is_empty() || a.team() == q.team)
            && (q.industry.is_empty() || a.industries.contains(&q.industry))
            && text_words.iter().all(|w| starts_a_word(&e.text, w))
    }

    /// Ids of entries with a word beginning with `prefix`, if few enough words do.
    fn prefix_ids(&self, prefix: &str) -> Option<Ids> {
        let mut parts: Vec<&Ids> = Vec::new();
        for (n, (w, ids)) in self
            .words
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .enumerate()
        {
            if !w.starts_with(prefix) {
                break;
            }
            if n >= MAX_PREFIX_WORDS {
                return None;
            }
            parts.push(ids);
        }
        Some(match parts.as_slice() {
            [one] => (*one).clone(),
            _ => {
                let mut out: Ids = parts.iter().flat_map(|p| p.iter().copied()).collect();
                out.sort_unstable();
                out.dedup();
                out
            }
        })
    }

    /// A page of matches after `page_token` (the id of the previous page's last match).
    pub fn search(&self, q: &Query) -> Page {
        let text = q.text.to_lowercase();
        let text_words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        // Exact facet filters and whole query words narrow the candidates; a query
        // word only part of an indexed word (`mlp-1` in `mlp-12`) is checked in full below.
        let mut sets: Vec<Option<&Ids>> = Vec::new();
        let empty = Ids::new();
        let mut need = |facet: u8, v: &str| {
            sets.push(Some(
                self.postings.get(&(facet, v.to_owned())).unwrap_or(&empty),
            ))
        };
        if let Some(k) = q.kind {
            need(KIND, k.as_str());
        }
        for (facet, v) in [
            (DOMAIN, &q.domain),
            (TASK, &q.task),
            (TEAM, &q.team),
            (TOOL_KIND, &q.tool_kind),
            (INDUSTRY, &q.industry),
        ] {
            if !v.is_empty() {
                need(facet, v);
            }
        }
        // Each query word (from its first letter or digit) must begin an indexed key.
        let owned: Vec<Ids> = text_words
            .iter()
            .map(|w| w.trim_start_matches(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty())
            .filter_map(|w| self.prefix_ids(w))
            .collect();
        let mut all: Vec<&Ids> = sets.into_iter().flatten().collect();
        all.extend(owned.iter());
        all.sort_by_key(|s| s.len());
        let after: Option<u32> = q.page_token.parse().ok();
        let size = q.page_size.clamp(1, 1000);
        let mut out = Vec::with_capacity(size);
        let mut total = 0u64;
        let mut last = None;
        let mut more = false;
        let mut bytes = 0usize;
        let mut consider = |id: u32| {
            let e = &self.entries[id as usize];
            if !Self::matches(e, q, &text_words) {
                return;
            }
            total += 1;
            if after.is_some_and(|a| id <= a) {
                return;
            }
            // A page also stops short of MAX_PAGE_BYTES, so that an answer
            // always fits the clients' message limit, however large the cards.
            let weight = e.artifact.approx_size();
            if out.len() < size && (out.is_empty() || bytes + weight <= MAX_PAGE_BYTES) && !more {
                bytes += weight;
                out.push(e.artifact.clone());
                last = Some(id);
            } else {
                more = true;
            }
        };
        match all.split_first() {
            Some((smallest, rest)) => {
                for &id in smallest.iter() {
                    if rest.iter().all(|s| s.binary_search(&id).is_ok()) {
                        consider(id);
                    }
                }
            }
            None => (0..self.entries.len() as u32).for_each(&mut consider),
        }
        Page {
            artifacts: out,
            next_page_token: if more {
                last.map(|l| l.to_string()).unwrap_or_default()
            } else {
                String::new()
            },
            total,
        }
    }
}

/// About the most a page of search results carries (clients accept 4 MiB messages).
pub const MAX_PAGE_BYTES: usize = 2 << 20;

/// Whether `w` occurs in `text` starting at a word boundary.
fn starts_a_word(text: &str, w: &str) -> bool {
    text.match_indices(w).any(|(i, _)| {
        i == 0
            || !text[..i]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Kind;

    fn art(name: &str, domain: &str, desc: &str, industries: &[&str]) -> Artifact {
        Artifact {
            description: desc.into(),
            industries: industries.iter().map(|s| s.to_string()).collect(),
            domain: domain.into(),
            task: "t".into(),
            ..Artifact::new(
                Kind::Model,
                name.into(),
                "1.0.0".into(),
                algobay_runtime::Digest::of(name.as_bytes()),
                1,
                "onnx",
            )
        }
    }

    fn q() -> Query {
        Query {
            page_size: 10,
            ..Default::default()
        }
    }

    #[test]
    fn a_name_with_punctuation_finds_what_it_begins_wherever_it_starts_a_word() {
        let mut ix = SearchIndex::default();
        ix.upsert(art("bench/mlp-1", "tabular", "first", &[]));
        ix.upsert(art("bench/mlp-12", "tabular", "second", &[]));
        ix.upsert(art("bench/mlp-2", "tabular", "a fork of bench/mlp-1.", &[]));
        ix.upsert(art("other/mlp-1x", "tabular", "not xbench/mlp-1", &[]));
        let names = |text: &str| {
            let mut v: Vec<String> = ix
                .search(&Query {
                    text: text.into(),
                    ..q()
                })
                .artifacts
                .into_iter()
                .map(|a| a.name)
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names("bench/mlp-1"),
            ["bench/mlp-1", "bench/mlp-12", "bench/mlp-2"]
        );
        assert_eq!(names("BENCH/MLP-12"), ["bench/mlp-12"]);
        assert_eq!(
            names("mlp-1"),
            ["bench/mlp-1", "bench/mlp-12", "bench/mlp-2", "other/mlp-1x"]
        );
        assert_eq!(names("fork bench/mlp"), ["bench/mlp-2"]);
        assert!(names("ench/mlp-1").is_empty());
    }

    #[test]
    fn filters_words_and_substrings_all_apply() {
        let mut ix = SearchIndex::default();
        ix.upsert(art(
            "a/ocr",
            "vision",
            "Fast OCR for invoices",
            &["finance"],
        ));
        ix.upsert(art("a/vad", "speech", "Voice activity", &["telecom"]));
        ix.upsert(art("b/mlp-12", "tabular", "tiny classifier", &["finance"]));
        let names = |p: Page| p.artifacts.into_iter().map(|a| a.name).collect::<Vec<_>>();
        assert_eq!(
            names(ix.search(&Query {
                text: "ocr".into(),
                ..q()
            })),
            ["a/ocr"]
        );
        assert_eq!(
            names(ix.search(&Query {
                industry: "finance".into(),
                ..q()
            })),
            ["a/ocr", "b/mlp-12"]
        );
        assert_eq!(
            names(ix.search(&Query {
                industry: "finance".into(),
                domain: "tabular".into(),
                ..q()
            })),
            ["b/mlp-12"]
        );
        assert_eq!(
            names(ix.search(&Query {
                text: "mlp-1".into(),
                ..q()
            })),
            ["b/mlp-12"],
            "substrings of words match"
        );
        assert_eq!(
            names(ix.search(&Query {
                text: "voice nothing".into(),
                ..q()
            })),
            Vec::<String>::new()
        );
        assert_eq!(
            names(ix.search(&Query {
                team: "a".into(),
                ..q()
            })),
            ["a/ocr", "a/vad"]
        );
        assert_eq!(
            names(ix.search(&Query {
                text: "invoi".into(),
                ..q()
            })),
            ["a/ocr"],
            "word prefixes match"
        );
        assert_eq!(
            names(ix.search(&Query {
                text: "nvoice".into(),
                ..q()
            })),
            Vec::<String>::new(),
            "mid-word does not"
        );
    }

    #[test]
    fn pages_follow_on_and_total_counts_everything() {
        let mut ix = SearchIndex::default();
        for i in 0..25 {
            ix.upsert(art(&format!("t/m{i}"), "vision", "x", &[]));
        }
        let first = ix.search(&Query {
            page_size: 10,
            domain: "vision".into(),
            ..q()
        });
        assert_eq!((first.artifacts.len(), first.total), (10, 25));
        let second = ix.search(&Query {
            page_size: 10,
            domain: "vision".into(),
            page_token: first.next_page_token.clone(),
            ..q()
        });
        assert_eq!(second.artifacts[0].name, "t/m10");
        let third = ix.search(&Query {
            page_size: 10,
            domain: "vision".into(),
            page_token: second.next_page_token.clone(),
            ..q()
        });
        assert_eq!(
            (third.artifacts.len(), third.next_page_token.as_str()),
            (5, "")
        );
    }

    #[test]
    fn updating_an_artifact_moves_it_between_facets() {
        let mut ix = SearchIndex::default();
        let mut a = art("t/m", "vision", "x", &[]);
        ix.upsert(a.clone());
        a.domain = "speech".into();
        ix.upsert(a);
        assert_eq!(
            ix.search(&Query {
                domain: "vision".into(),
                ..q()
            })
            .total,
            0
        );
        assert_eq!(
            ix.search(&Query {
                domain: "speech".into(),
                ..q()
            })
            .total,
            1
        );
        assert_eq!(ix.len(), 1);
    }
}
