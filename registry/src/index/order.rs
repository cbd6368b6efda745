//! Orders other than relevance, and the counts of each facet's values among
//! a search's matches.

use std::collections::HashMap;

use super::Entry;
use crate::domain::{Facet, Sort};

/// Puts the first `need` matches in `sort`'s order (the rest stay unordered
/// after them): a selection, then a sort of the selected, so a page near the
/// top of 100,000 matches costs one pass, not a full sort.
pub(super) fn order(entries: &[Entry], matched: &mut [(u32, u32)], sort: Sort, need: usize) {
    let e = |id: u32| &entries[id as usize];
    let cmp = |a: &(u32, u32), b: &(u32, u32)| -> std::cmp::Ordering {
        let (x, y) = (e(a.1), e(b.1));
        match sort {
            Sort::Relevance => std::cmp::Ordering::Equal,
            Sort::Name => x
                .name
                .cmp(&y.name)
                .then_with(|| semver_desc(&x.artifact.version, &y.artifact.version)),
            Sort::Updated => y
                .artifact
                .published_unix
                .cmp(&x.artifact.published_unix)
                .then(b.1.cmp(&a.1)),
            Sort::Metric => {
                let m = |e: &Entry| e.artifact.headline_metric().map(|m| m.1);
                match (m(x), m(y)) {
                    (Some(p), Some(q)) => q.total_cmp(&p),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                }
            }
            Sort::Downloads => y.downloads.cmp(&x.downloads),
        }
        .then(a.1.cmp(&b.1))
    };
    if sort == Sort::Relevance || matched.is_empty() {
        return;
    }
    let need = need.min(matched.len());
    if need == 0 {
        return;
    }
    if need < matched.len() {
        matched.select_nth_unstable_by(need - 1, cmp);
    }
    matched[..need].sort_unstable_by(cmp);
}

fn semver_desc(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => y.cmp(&x),
        _ => b.cmp(a),
    }
}

/// The most values a facet lists.
const FACET_VALUES: usize = 20;

/// Each facet's values among the matches, most frequent first (then by name).
pub(super) fn facets(entries: &[Entry], matched: &[(u32, u32)]) -> Vec<Facet> {
    fn bump<'a>(c: &mut HashMap<&'a str, u64>, v: &'a str) {
        if !v.is_empty() {
            *c.entry(v).or_default() += 1;
        }
    }
    let mut counts: [HashMap<&str, u64>; 6] = Default::default();
    for &(_, id) in matched {
        let a = &entries[id as usize].artifact;
        bump(&mut counts[0], a.kind.as_str());
        bump(&mut counts[1], &a.domain);
        bump(&mut counts[2], &a.task);
        for i in &a.industries {
            bump(&mut counts[3], i);
        }
        bump(&mut counts[4], a.team());
        bump(&mut counts[5], &a.license);
    }
    const NAMES: [&str; 6] = ["kind", "domain", "task", "industry", "team", "license"];
    NAMES
        .iter()
        .zip(counts)
        .map(|(name, c)| {
            let mut values: Vec<(String, u64)> =
                c.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
            values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            values.truncate(FACET_VALUES);
            Facet { name, values }
        })
        .collect()
}
