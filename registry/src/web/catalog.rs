//! The marketplace (anonymous reading, like a public hub), team pages and the
//! operator's coverage dashboard; artifact pages are in `artifact.rs`.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::session::Viewer;
use super::svg;
use super::views::{self, *};
use super::{blocking, Shared, WebError};
use crate::domain::{Kind, Role, Sort};

/// Results on one page of the marketplace.
const PAGE: usize = 20;
/// The facets a search can be narrowed by, as query parameters.
const FACETS: [&str; 6] = ["kind", "domain", "task", "industry", "team", "license"];

pub(super) fn kind_of(s: &str) -> Option<Kind> {
    [Kind::Model, Kind::Tool, Kind::Kit, Kind::Dataset]
        .into_iter()
        .find(|k| k.as_str() == s)
}

/// A marketplace URL with `params`, one changed (or removed when `value` is empty).
fn with_param(params: &[(String, String)], key: &str, value: &str) -> String {
    let mut parts: Vec<String> = params
        .iter()
        .filter(|(k, v)| k != key && k != "start" && !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect();
    if !value.is_empty() {
        parts.push(format!("{key}={}", query_escape(value)));
    }
    if parts.is_empty() {
        "/".into()
    } else {
        format!("/?{}", parts.join("&"))
    }
}

pub(crate) async fn marketplace(
    State(c): Shared,
    viewer: Viewer,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let get = |k: &str| {
        q.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let text = get("q");
    let kind = match get("kind").as_str() {
        "" => None,
        k => Some(kind_of(k).ok_or_else(|| {
            WebError::Invalid(format!(
                "kind `{k}` is not one of model, tool, kit, dataset"
            ))
        })?),
    };
    // Without words, newest first; with words, best match first.
    let sort = match get("sort").as_str() {
        "" if text.is_empty() => Sort::Updated,
        "" => Sort::Relevance,
        s => Sort::parse(s).ok_or_else(|| {
            WebError::Invalid(format!(
                "sort `{s}` is not one of relevance, name, updated, metric, downloads"
            ))
        })?,
    };
    let sort = if sort == Sort::Relevance && text.is_empty() {
        Sort::Updated
    } else {
        sort
    };
    let start: usize = match get("start").as_str() {
        "" => 0,
        s => s
            .parse()
            .map_err(|_| WebError::Invalid(format!("start `{s}` is not a number")))?,
    };
    let query = crate::domain::Query {
        text: text.clone(),
        kind,
        domain: get("domain"),
        task: get("task"),
        industry: get("industry"),
        team: get("team"),
        license: get("license"),
        page_size: PAGE,
        page_token: start.to_string(),
        viewer: Some(viewer.principal()),
        sort,
        facets: true,
        ..Default::default()
    };
    let api = c.api.clone();
    let page = blocking(move || api.search(&query)).await?;
    let mut params: Vec<(String, String)> = Vec::new();
    for k in ["q", "sort"].into_iter().chain(FACETS) {
        let v = get(k);
        if !v.is_empty() {
            params.push((k.to_owned(), v));
        }
    }
    let facets = page
        .facets
        .iter()
        .map(|f| {
            let current = get(f.name);
            FacetView {
                name: f.name.to_owned(),
                values: f
                    .values
                    .iter()
                    .map(|(v, n)| {
                        let on = *v == current;
                        FacetValue {
                            value: v.clone(),
                            count: *n,
                            href: with_param(&params, f.name, if on { "" } else { v }),
                            on,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let sorts = Sort::ALL
        .iter()
        .filter(|s| !text.is_empty() || **s != Sort::Relevance)
        .map(|s| SortView {
            value: s.as_str().to_owned(),
            on: *s == sort,
        })
        .collect();
    let shown = page.artifacts.len();
    let page_href = |at: usize| {
        let mut h = with_param(&params, "", "");
        if at > 0 {
            h.push(if h.contains('?') { '&' } else { '?' });
            h.push_str(&format!("start={at}"));
        }
        h
    };
    let results = page
        .artifacts
        .iter()
        .zip(page.downloads.iter().chain(std::iter::repeat(&0)))
        .map(|(a, d)| card(a, *d))
        .collect();
    let hidden = params
        .iter()
        .filter(|(k, _)| k != "q" && k != "sort")
        .cloned()
        .collect();
    let m = Market {
        base: viewer.base(&c, "Marketplace"),
        heading: "Marketplace".into(),
        text,
        hidden,
        facets,
        sorts,
        results,
        total: page.total,
        first: start + 1,
        last: start + shown,
        prev: if start > 0 {
            page_href(start.saturating_sub(PAGE))
        } else {
            String::new()
        },
        next: if !page.next_page_token.is_empty() {
            page_href(start + shown)
        } else {
            String::new()
        },
    };
    Ok(views::html(&m).into_response())
}

pub(super) fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub(crate) async fn latest(
    State(c): Shared,
    viewer: Viewer,
    Path((kind, team, name)): Path<(String, String, String)>,
) -> Result<Response, WebError> {
    let k = kind_of(&kind).ok_or(WebError::NotFound)?;
    let p = viewer.principal();
    let api = c.api.clone();
    let full = format!("{team}/{name}");
    let versions = blocking(move || api.versions(&p, k, &full)).await?;
    let newest = versions
        .iter()
        .find(|a| !a.yanked)
        .or(versions.first())
        .ok_or(WebError::NotFound)?;
    Ok(axum::response::Redirect::to(&href(newest)).into_response())
}

pub(crate) async fn team(
    State(c): Shared,
    viewer: Viewer,
    Path(team): Path<String>,
) -> Result<Response, WebError> {
    let query = crate::domain::Query {
        team: team.clone(),
        page_size: 200,
        viewer: Some(viewer.principal()),
        sort: Sort::Name,
        facets: true,
        ..Default::default()
    };
    let api = c.api.clone();
    let page = blocking(move || api.search(&query)).await?;
    if page.total == 0 {
        return Err(WebError::NotFound);
    }
    let counts = page
        .facets
        .iter()
        .find(|f| f.name == "kind")
        .map(|f| f.values.clone())
        .unwrap_or_default();
    let results = page
        .artifacts
        .iter()
        .zip(page.downloads.iter().chain(std::iter::repeat(&0)))
        .map(|(a, d)| card(a, *d))
        .collect();
    let t = TeamPage {
        base: viewer.base(&c, &format!("Team {team}")),
        display_name: team.clone(),
        team,
        counts,
        results,
    };
    Ok(views::html(&t).into_response())
}

/// The programme's targets.
const TARGETS: [(&str, u64); 6] = [
    ("models", 200),
    ("tools", 50),
    ("kits", 300),
    ("publishing teams", 30),
    ("industries with a served enterprise", 5),
    ("enterprises served", 100),
];

pub(crate) async fn coverage(State(c): Shared, viewer: Viewer) -> Result<Response, WebError> {
    let s = viewer.signed_in()?;
    if s.principal.role != Role::Operator {
        return Err(WebError::NotFound);
    }
    let api = c.api.clone();
    let p = s.principal.clone();
    let cov = blocking(move || api.coverage(&p)).await?;
    let value = |name: &str| match name {
        "models" => cov.models,
        "tools" => cov.tools,
        "kits" => cov.kits,
        "publishing teams" => cov.publishing_teams,
        "industries with a served enterprise" => cov.industries_served,
        "enterprises served" => cov.enterprises_served,
        _ => 0,
    };
    let targets = TARGETS
        .iter()
        .map(|(name, target)| TargetRow {
            name: (*name).to_owned(),
            value: value(name),
            target: *target,
            met: value(name) >= *target,
        })
        .collect();
    let bars_of = |m: &std::collections::BTreeMap<String, u64>| -> Vec<svg::Bar> {
        m.iter()
            .map(|(k, v)| svg::Bar {
                label: if k.is_empty() {
                    "(none)".into()
                } else {
                    k.clone()
                },
                value: *v as f64,
                target: None,
            })
            .collect()
    };
    let growth = {
        let pick = |i: usize| -> Vec<(f64, f64)> {
            cov.growth
                .iter()
                .map(|g| (g.0 as f64, [g.1, g.2, g.3][i] as f64))
                .collect()
        };
        let labels: Vec<(f64, String)> = match (cov.growth.first(), cov.growth.last()) {
            (Some(a), Some(b)) => vec![
                (a.0 as f64, day(a.0 * 86_400)),
                (b.0 as f64, day(b.0 * 86_400)),
            ],
            _ => Vec::new(),
        };
        svg::lines(
            &[
                svg::Series {
                    name: "models".into(),
                    colour: "#2563eb",
                    points: pick(0),
                },
                svg::Series {
                    name: "tools".into(),
                    colour: "#16a34a",
                    points: pick(1),
                },
                svg::Series {
                    name: "kits".into(),
                    colour: "#d97706",
                    points: pick(2),
                },
            ],
            "published over time",
            &labels,
            "",
        )
    };
    let page = CoveragePage {
        base: viewer.base(&c, "Coverage"),
        targets,
        industries_svg: svg::bars(&bars_of(&cov.kits_by_industry), "kits per industry"),
        domains_svg: svg::bars(&bars_of(&cov.models_by_domain), "models per domain"),
        tools_svg: svg::bars(&bars_of(&cov.tools_by_kind), "tools per kind"),
        growth_svg: growth,
        devices: cov.devices,
    };
    Ok(views::html(&page).into_response())
}
