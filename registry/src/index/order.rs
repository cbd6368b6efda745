//! Orders other than relevance, and the counts of each facet's values among
//! a search's matches.

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

/// Each facet's values among the matches, most frequent first (then by name):
/// one pass adding up the entries' value codes.
pub(super) fn facets(
    entries: &[Entry],
    values: &[(u8, String)],
    matched: &[(u32, u32)],
) -> Vec<Facet> {
    let mut counts = vec![0u64; values.len()];
    for &(_, id) in matched {
        for &c in &entries[id as usize].codes {
            counts[c as usize] += 1;
        }
    }
    const SHOWN: [(u8, &str); 6] = [
        (super::KIND, "kind"),
        (super::DOMAIN, "domain"),
        (super::TASK, "task"),
        (super::INDUSTRY, "industry"),
        (super::TEAM, "team"),
        (super::LICENSE, "license"),
    ];
    SHOWN
        .iter()
        .map(|&(facet, name)| {
            let mut v: Vec<(String, u64)> = values
                .iter()
                .zip(&counts)
                .filter(|((f, value), n)| *f == facet && **n > 0 && !value.is_empty())
                .map(|((_, value), n)| (value.clone(), *n))
                .collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(FACET_VALUES);
            Facet { name, values: v }
        })
        .collect()
}
