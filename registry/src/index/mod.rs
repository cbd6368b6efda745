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
//!
//! Names are also found by what they contain (`ocr` finds `captcha-ddddocr`,
//! through trigrams of each name) and despite a typo (`captha`: one edit for
//! words of 4-7 letters, two from 8, against the words of names and tags).
//! Results of a text query are ranked: a whole word of the name first, then a
//! word of the name it begins, a part of the name, a word elsewhere, a typo.

use std::collections::{BTreeMap, HashMap};

mod order;

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
    /// Lowercased name.
    name: String,
    /// How often its file was downloaded.
    downloads: u64,
    /// Its facet values, by their codes in [`SearchIndex::facet_values`].
    codes: Vec<u32>,
}

/// What a query checks of every candidate, kept apart from the entries in a
/// dense array: a search over tens of thousands of candidates then reads
/// memory in order instead of chasing each entry's strings.
#[derive(Clone, Copy, Debug, Default)]
struct Slim {
    yanked: bool,
    /// Private to an enterprise (visibility then needs the full check).
    private: bool,
}

/// A word of names and tags, for typo-tolerant matching.
struct Word {
    chars: Vec<char>,
    /// Which letters and digits occur (an edit changes at most two of these bits).
    mask: u64,
    ids: Ids,
}

fn char_mask(chars: &[char]) -> u64 {
    chars.iter().fold(0u64, |m, &c| {
        m | match c {
            'a'..='z' => 1 << (c as u32 - 'a' as u32),
            '0'..='9' => 1 << (26 + c as u32 - '0' as u32),
            _ => 1 << (36 + (c as u32 % 28)),
        }
    })
}

/// The words (runs of letters and digits) of a name and its tags.
fn name_words(a: &Artifact) -> Vec<String> {
    let mut out: Vec<String> = std::iter::once(a.name.as_str())
        .chain(a.tags.iter().map(String::as_str))
        .flat_map(|t| t.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Trigrams of a name's bytes.
fn trigrams(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.as_bytes()
        .windows(3)
        .map(|w| (w[0] as u32) << 16 | (w[1] as u32) << 8 | w[2] as u32)
}

/// Edits allowed for a query word of `len` letters.
fn typo_budget(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Optimal string alignment distance (insertions, deletions, substitutions,
/// swaps of neighbours), or `None` once it must exceed `max`.
fn distance_within(a: &[char], b: &[char], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let w = b.len() + 1;
    let mut rows = vec![0usize; 3 * w];
    for (j, r) in rows.iter_mut().take(w).enumerate() {
        *r = j;
    }
    for i in 1..=a.len() {
        let (cur, prev, prev2) = ((i % 3) * w, ((i - 1) % 3) * w, ((i + 1) % 3) * w);
        rows[cur] = i;
        let mut best = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[prev + j] + 1)
                .min(rows[cur + j - 1] + 1)
                .min(rows[prev + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[prev2 + j - 2] + 1);
            }
            rows[cur + j] = d;
            best = best.min(d);
        }
        if best > max {
            return None;
        }
    }
    let d = rows[(a.len() % 3) * w + b.len()];
    (d <= max).then_some(d)
}

/// Artifacts with inverted indexes over their facets and words.
#[derive(Default)]
pub struct SearchIndex {
    entries: Vec<Entry>,
    /// Per id, what filtering a candidate needs.
    slim: Vec<Slim>,
    ids: HashMap<String, u32>,
    postings: HashMap<(u8, String), Ids>,
    words: BTreeMap<String, Ids>,
    /// Trigram of a name → ids.
    grams: HashMap<u32, Ids>,
    /// Words of names and tags, by length; `vocab` says where each is.
    vocab: HashMap<String, (usize, usize)>,
    vocab_by_len: BTreeMap<usize, Vec<Word>>,
    /// Every facet value seen, by code (counting facets is then adding in an array).
    facet_values: Vec<(u8, String)>,
    facet_codes: HashMap<(u8, String), u32>,
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
const LICENSE: u8 = 6;

/// A query word narrows the candidates only when the indexed words it begins
/// name few enough artifacts (a union this big costs less than checking all).
const MAX_PREFIX_IDS: usize = 30_000;
/// A query word matching more artifacts than this by its words is not also
/// looked for inside names and as a typo.
const WIDE: usize = 5000;
/// A query word whose trigrams all occur in more names than this is looked
/// for in each candidate's name instead of through them.
const NAME_CHECKS: usize = 5000;

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
        (LICENSE, a.license.clone()),
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
                for g in trigrams(&old.name) {
                    if let Some(set) = self.grams.get_mut(&g) {
                        remove_id(set, id);
                    }
                }
                for w in name_words(&old.artifact) {
                    if let Some(&(len, at)) = self.vocab.get(&w) {
                        if let Some(word) =
                            self.vocab_by_len.get_mut(&len).and_then(|v| v.get_mut(at))
                        {
                            remove_id(&mut word.ids, id);
                        }
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
                    name: String::new(),
                    downloads: 0,
                    codes: Vec::new(),
                });
                id
            }
        };
        let mut codes = Vec::new();
        for k in keys(&a) {
            let next = self.facet_values.len() as u32;
            let code = *self.facet_codes.entry(k.clone()).or_insert(next);
            if code == next {
                self.facet_values.push(k.clone());
            }
            codes.push(code);
            insert_id(self.postings.entry(k).or_default(), id);
        }
        for w in keys_of(&text) {
            insert_id(self.words.entry(w.to_owned()).or_default(), id);
        }
        let name = a.name.to_lowercase();
        for g in trigrams(&name) {
            insert_id(self.grams.entry(g).or_default(), id);
        }
        for w in name_words(&a) {
            let (len, at) = *self.vocab.entry(w.clone()).or_insert_with(|| {
                let chars: Vec<char> = w.chars().collect();
                let words = self.vocab_by_len.entry(chars.len()).or_default();
                words.push(Word {
                    mask: char_mask(&chars),
                    chars,
                    ids: Ids::new(),
                });
                (words[0].chars.len(), words.len() - 1)
            });
            if let Some(word) = self.vocab_by_len.get_mut(&len).and_then(|v| v.get_mut(at)) {
                insert_id(&mut word.ids, id);
            }
        }
        let downloads = self.entries[id as usize].downloads;
        let slim = Slim {
            yanked: a.yanked,
            private: !a.private_to.is_empty(),
        };
        match self.slim.get_mut(id as usize) {
            Some(s) => *s = slim,
            None => self.slim.push(slim),
        }
        self.entries[id as usize] = Entry {
            artifact: a,
            text,
            name,
            downloads,
            codes,
        };
    }

    /// Sets how often an artifact (by its key) was downloaded.
    pub fn set_downloads(&mut self, key: &str, n: u64) {
        if let Some(&id) = self.ids.get(key) {
            self.entries[id as usize].downloads = n;
        }
    }

    /// How often an artifact (by its key) was downloaded.
    pub fn downloads(&self, key: &str) -> u64 {
        self.ids
            .get(key)
            .map_or(0, |&id| self.entries[id as usize].downloads)
    }

    /// Ids whose name has every trigram of `w`: a superset of the names that
    /// contain it. `None` for words under three bytes.
    fn gram_candidates(&self, w: &str) -> Option<Ids> {
        if w.len() < 3 {
            return None;
        }
        let mut sets: Vec<&Ids> = Vec::new();
        for g in trigrams(w) {
            match self.grams.get(&g) {
                Some(ids) => sets.push(ids),
                // A trigram no name has: no name contains the word.
                None => return Some(Ids::new()),
            }
        }
        sets.sort_by_key(|s| s.len());
        let (first, rest) = sets.split_first()?;
        Some(
            first
                .iter()
                .copied()
                .filter(|id| rest.iter().all(|s| s.binary_search(id).is_ok()))
                .collect(),
        )
    }

    /// Ids whose name contains `w` (three bytes or more), checked in full.
    fn substring_ids(&self, w: &str) -> Option<Ids> {
        self.substring_ids_among(self.gram_candidates(w)?, w)
    }

    /// Like [`Self::substring_ids`], but `None` when more than `NAME_CHECKS`
    /// names have all the trigrams: each candidate's name is then looked at
    /// instead.
    fn name_ids(&self, w: &str) -> Option<Ids> {
        let ids = self.gram_candidates(w)?;
        if ids.len() > NAME_CHECKS {
            return None;
        }
        self.substring_ids_among(ids, w)
    }

    fn substring_ids_among(&self, mut ids: Ids, w: &str) -> Option<Ids> {
        ids.retain(|&id| self.entries[id as usize].name.contains(w));
        Some(ids)
    }

    /// Ids with a name or tag word within the typo budget of `w`, with the distance.
    fn typo_ids(&self, w: &str) -> Vec<(u32, usize)> {
        let chars: Vec<char> = w.chars().collect();
        let max = typo_budget(chars.len());
        if max == 0 {
            return Vec::new();
        }
        let mask = char_mask(&chars);
        let mut out: Vec<(u32, usize)> = Vec::new();
        let lens = chars.len().saturating_sub(max)..=chars.len() + max;
        for (_, words) in self.vocab_by_len.range(lens) {
            for word in words {
                if (word.mask ^ mask).count_ones() as usize > 2 * max || word.ids.is_empty() {
                    continue;
                }
                if let Some(d) = distance_within(&chars, &word.chars, max) {
                    out.extend(word.ids.iter().map(|&id| (id, d)));
                }
            }
        }
        out.sort_unstable();
        out.dedup_by_key(|(id, _)| *id);
        out
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

    /// Whether a candidate is one the query shows and the caller may see.
    /// Its facets are not checked here: every facet filter is one of the id
    /// sets the candidates come from.
    fn visible(&self, id: u32, q: &Query) -> bool {
        let s = self.slim[id as usize];
        (q.include_yanked || !s.yanked)
            && (!s.private
                || q.viewer
                    .as_ref()
                    .is_none_or(|p| p.may_see(&self.entries[id as usize].artifact)))
    }

    /// How well an entry matches one query word; 0 when it does not.
    fn word_score(id: u32, e: &Entry, w: &QueryWord) -> u32 {
        let name = &e.name;
        // Most candidates match outside the name: the names holding the word
        // were listed (through trigrams) when few enough do, or one scan decides.
        let in_name = match &w.in_name {
            Some(ids) => ids.binary_search(&id).is_ok(),
            None => name.contains(w.text.as_str()),
        };
        if in_name {
            if name == &w.text || name.rsplit('/').next() == Some(w.text.as_str()) {
                return 10;
            }
            if name
                .split(|c: char| !c.is_alphanumeric())
                .any(|t| t == w.text)
            {
                return 8;
            }
            if starts_a_word(name, &w.text) {
                return 6;
            }
            if w.text.len() >= 3 {
                return 4;
            }
        }
        // A word of the text it begins: known from the keys when they were
        // looked up (the same test: a key is the text from a word's start).
        let begins = match &w.begins {
            Some(ids) => ids.binary_search(&id).is_ok(),
            None => starts_a_word(&e.text, &w.text),
        };
        if begins {
            return 3;
        }
        match w.typos.binary_search_by_key(&id, |t| t.0) {
            Ok(i) if w.typos[i].1 <= 1 => 2,
            Ok(_) => 1,
            Err(_) => 0,
        }
    }

    /// Ids of entries with a word beginning with `prefix`, if few enough words do.
    fn prefix_ids(&self, prefix: &str) -> Option<Ids> {
        let mut parts: Vec<&Ids> = Vec::new();
        let mut total = 0;
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
            total += ids.len();
            // Each key names at least one artifact: this bounds the walk too.
            if total > MAX_PREFIX_IDS || n >= MAX_PREFIX_IDS {
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

    /// The words of a query. A token joined by punctuation (`basc-pitch`,
    /// `nudenet-detectr`) that matches nothing whole, neither as the start of
    /// a word nor inside a name, stands for its parts: each is then matched on
    /// its own, typos included, and all must match.
    fn query_tokens<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        for w in text.split_whitespace() {
            let core = w.trim_start_matches(|c: char| !c.is_alphanumeric());
            let joined = core.contains(|c: char| !c.is_alphanumeric())
                && core
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|p| !p.is_empty())
                    .count()
                    > 1;
            let unmatched = || {
                self.prefix_ids(core).is_some_and(|ids| ids.is_empty())
                    && self.substring_ids(w).is_none_or(|ids| ids.is_empty())
            };
            if joined && unmatched() {
                out.extend(
                    core.split(|c: char| !c.is_alphanumeric())
                        .filter(|p| !p.is_empty()),
                );
            } else {
                out.push(w);
            }
        }
        out
    }

    /// A page of matches. Without text, in publishing order after `page_token`
    /// (the id of the previous page's last match); with text, ranked, after
    /// `page_token` results (the number already given).
    pub fn search(&self, q: &Query) -> Page {
        let text = q.text.to_lowercase();
        let words: Vec<QueryWord> = self
            .query_tokens(&text)
            .into_iter()
            .map(|w| {
                let core = w.trim_start_matches(|c: char| !c.is_alphanumeric());
                // A word narrows the candidates to what it could match in any
                // way; one that begins too many indexed words narrows nothing.
                // Parts of names and typos are looked for only when the word
                // itself is rare: past WIDE word matches they only add noise.
                let exact = if core.is_empty() {
                    None
                } else {
                    self.prefix_ids(core)
                };
                let rare = exact.as_ref().is_some_and(|ids| ids.len() <= WIDE);
                let typos = if rare {
                    self.typo_ids(core)
                } else {
                    Vec::new()
                };
                // The keys' answer stands for a scan of the text only when
                // the word is its own core (no leading punctuation).
                let begins = exact.as_ref().filter(|_| core == w).cloned();
                let candidates = exact.map(|mut ids| {
                    if rare {
                        ids.extend(self.substring_ids(w).unwrap_or_default());
                        ids.extend(typos.iter().map(|t| t.0));
                        ids.sort_unstable();
                        ids.dedup();
                    }
                    ids
                });
                QueryWord {
                    text: w.to_owned(),
                    typos,
                    candidates,
                    begins,
                    in_name: self.name_ids(w),
                }
            })
            .collect();
        let mut sets: Vec<&Ids> = Vec::new();
        let empty = Ids::new();
        let mut need = |facet: u8, v: &str| {
            sets.push(self.postings.get(&(facet, v.to_owned())).unwrap_or(&empty))
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
            (LICENSE, &q.license),
        ] {
            if !v.is_empty() {
                need(facet, v);
            }
        }
        sets.extend(words.iter().filter_map(|w| w.candidates.as_ref()));
        sets.sort_by_key(|s| s.len());
        let size = q.page_size.clamp(1, 1000);
        let mut matched: Vec<(u32, u32)> = Vec::new();
        let mut consider = |id: u32| {
            if !self.visible(id, q) {
                return;
            }
            let e = &self.entries[id as usize];
            let mut score = 0;
            for w in &words {
                match Self::word_score(id, e, w) {
                    0 => return,
                    s => score += s,
                }
            }
            matched.push((score, id));
        };
        match sets.split_first() {
            Some((smallest, rest)) => {
                for &id in smallest.iter() {
                    if rest.iter().all(|s| s.binary_search(&id).is_ok()) {
                        consider(id);
                    }
                }
            }
            None => (0..self.entries.len() as u32).for_each(&mut consider),
        }
        let total = matched.len() as u64;
        let facets = if q.facets {
            order::facets(&self.entries, &self.facet_values, &matched)
        } else {
            Vec::new()
        };
        let sorted = q.sort != crate::domain::Sort::Relevance;
        let start = if sorted {
            let start = q
                .page_token
                .parse::<usize>()
                .unwrap_or(0)
                .min(matched.len());
            order::order(&self.entries, &mut matched, q.sort, start + size);
            start
        } else if words.is_empty() {
            let after: Option<u32> = q.page_token.parse().ok();
            matched.partition_point(|&(_, id)| after.is_some_and(|a| id <= a))
        } else {
            // Best score first, publishing order within a score: a counting
            // sort, as scores are few and the ids come in order.
            let top = matched.iter().map(|m| m.0).max().unwrap_or(0) as usize;
            let mut at = vec![0usize; top + 2];
            for m in &matched {
                at[top - m.0 as usize + 1] += 1;
            }
            for i in 1..at.len() {
                at[i] += at[i - 1];
            }
            let mut ranked = vec![(0u32, 0u32); matched.len()];
            for m in &matched {
                let slot = &mut at[top - m.0 as usize];
                ranked[*slot] = *m;
                *slot += 1;
            }
            matched = ranked;
            q.page_token
                .parse::<usize>()
                .unwrap_or(0)
                .min(matched.len())
        };
        // A page also stops short of MAX_PAGE_BYTES, so that an answer always
        // fits the clients' message limit, however large the cards.
        let mut out = Vec::with_capacity(size.min(matched.len() - start));
        let mut downloads = Vec::with_capacity(out.capacity());
        let mut bytes = 0usize;
        for &(_, id) in &matched[start..] {
            let e = &self.entries[id as usize];
            let weight = e.artifact.approx_size();
            if out.len() == size || (!out.is_empty() && bytes + weight > MAX_PAGE_BYTES) {
                break;
            }
            bytes += weight;
            out.push(e.artifact.clone());
            downloads.push(e.downloads);
        }
        let end = start + out.len();
        let next_page_token = if end >= matched.len() {
            String::new()
        } else if words.is_empty() && !sorted {
            matched[end - 1].1.to_string()
        } else {
            end.to_string()
        };
        Page {
            artifacts: out,
            next_page_token,
            total,
            facets,
            downloads,
        }
    }
}

/// A word of a text query, with what it could match.
struct QueryWord {
    text: String,
    /// Ids with a name or tag word a typo away, and how far (sorted by id).
    typos: Vec<(u32, usize)>,
    /// Every id it could match, or `None` when that is too many to list.
    candidates: Option<Ids>,
    /// Ids whose text has a word it begins, when the keys were looked up.
    begins: Option<Ids>,
    /// Ids whose name contains it, when few enough names might.
    in_name: Option<Ids>,
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
mod tests;
