//! The marketplace (anonymous reading, like a public hub), artifact and team
//! pages, blobs shown in pages, and the operator's coverage dashboard.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use algobay_runtime::Digest;

use super::session::Viewer;
use super::svg;
use super::views::{self, *};
use super::{blocking, Shared, WebError};
use crate::domain::{Artifact, Kind, Principal, Role, Sort};

/// Results on one page of the marketplace.
const PAGE: usize = 20;
/// The facets a search can be narrowed by, as query parameters.
const FACETS: [&str; 6] = ["kind", "domain", "task", "industry", "team", "license"];

fn kind_of(s: &str) -> Option<Kind> {
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

fn size(n: u64) -> String {
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

/// What a blob's first bytes say it is.
fn sniff(head: &[u8]) -> &'static str {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if head.starts_with(b"GIF8") {
        "image/gif"
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WAVE" {
        "audio/wav"
    } else if std::str::from_utf8(head).is_ok()
        || std::str::from_utf8(&head[..head.len().saturating_sub(3)]).is_ok()
    {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// Reads at most `limit` bytes of a blob the caller may see.
fn read_blob(
    api: &dyn crate::service::RegistryApi,
    p: &Principal,
    d: &Digest,
    enterprise: &str,
    limit: u64,
) -> crate::error::Result<(u64, Vec<u8>)> {
    use std::io::Read;
    let (size, reader) = api.open_blob(p, d, enterprise)?;
    let mut buf = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| crate::error::RegistryError::Storage(format!("blob {d}: {e}")))?;
    Ok((size, buf))
}

/// The largest blob a page shows (bigger ones are fetched with the command line).
const SHOWN_BLOB: u64 = 32 << 20;

pub(crate) async fn blob(
    State(c): Shared,
    viewer: Viewer,
    Path(digest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let d: Digest = digest
        .parse()
        .map_err(|_| WebError::Invalid(format!("`{digest}` is not a digest")))?;
    let p = viewer.principal();
    // A sample input lives in its enterprise's namespace; only its own people read it.
    let enterprise = match p.role {
        Role::Enterprise => p.subject.clone(),
        Role::Operator => q.get("enterprise").cloned().unwrap_or_default(),
        _ => String::new(),
    };
    // The size is known before a byte is read: a blob too big to show is
    // refused at once, and one shown is streamed a chunk at a time (verified
    // as it goes), never held whole.
    let api = c.api.clone();
    let (size, head, reader) = blocking(move || {
        use std::io::Read;
        let (size, reader) = api.open_blob(&p, &d, &enterprise)?;
        if size > SHOWN_BLOB {
            return Ok((size, Vec::new(), None));
        }
        let mut v = crate::blobs::VerifyingReader::new(d, size, reader);
        let mut head = vec![0u8; 512.min(size as usize)];
        v.read_exact(&mut head)
            .map_err(|e| crate::error::RegistryError::Storage(format!("blob {d}: {e}")))?;
        Ok((size, head, Some(v)))
    })
    .await?;
    let Some(mut reader) = reader.filter(|_| size <= SHOWN_BLOB) else {
        return Err(WebError::Invalid(format!(
            "{digest} is {} : too big to show here; fetch it with `algobay kit pull` or the API",
            self::size(size)
        )));
    };
    let kind = sniff(&head);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    let first = head;
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        if tx.blocking_send(Ok(first)).is_err() {
            return;
        }
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut res = body.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&size.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if kind == "application/octet-stream" {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
    // A digest names its bytes forever; who may read them is checked on every request.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    Ok(res)
}

/// How an input is shown, from its first bytes.
pub(crate) fn input_view(
    name: &str,
    d: &Digest,
    head: &[u8],
    size_n: u64,
    enterprise: &str,
) -> SampleInputView {
    let src = if enterprise.is_empty() {
        format!("/blobs/{d}")
    } else {
        format!("/blobs/{d}?enterprise={}", query_escape(enterprise))
    };
    let kind = sniff(head);
    let (shown_as, text) = if kind.starts_with("image/") {
        ("image", String::new())
    } else if kind.starts_with("audio/") {
        ("audio", String::new())
    } else if kind.starts_with("text/") {
        let t = String::from_utf8_lossy(head).into_owned();
        (
            "text",
            if size_n as usize > head.len() {
                format!("{t}…")
            } else {
                t
            },
        )
    } else {
        ("file", String::new())
    };
    SampleInputView {
        name: name.to_owned(),
        shown_as: shown_as.to_owned(),
        src,
        text,
        size: size(size_n),
        svg: String::new(),
    }
}

/// Everything an artifact page shows, read on a blocking thread.
fn artifact_page(
    api: &dyn crate::service::RegistryApi,
    p: &Principal,
    k: Kind,
    reference: &str,
) -> crate::error::Result<ArtifactData> {
    let a = api.get(p, reference, Some(k))?;
    let versions = api.versions(p, k, &a.name)?;
    let children = api.children(p, reference)?;
    let relations = api.relations(p, reference, Some(k))?;
    let downloads = api.downloads(p, reference, Some(k))?;
    let mut manifest = None;
    let mut golden = Vec::new();
    let mut manifest_len = a.size;
    if k == Kind::Kit {
        let (n, bytes) = read_blob(api, p, &a.digest, "", 1 << 20)?;
        manifest_len = n;
        manifest = algobay_runtime::manifest::Manifest::from_json(&bytes).ok();
        for g in relations.golden.iter().take(6) {
            let mut inputs = Vec::new();
            for (name, v) in &g.inputs {
                let Some(d) = v
                    .split_whitespace()
                    .next()
                    .and_then(|d| d.parse::<Digest>().ok())
                else {
                    continue;
                };
                let (n, head) = read_blob(api, p, &d, "", 600)?;
                inputs.push((name.clone(), d, head, n));
            }
            // The expected output, as text when it is (JSON, usually).
            let expected = match g
                .expected
                .split_whitespace()
                .next()
                .and_then(|d| d.parse::<Digest>().ok())
            {
                Some(d) => {
                    let (n, head) = read_blob(api, p, &d, "", 2048)?;
                    match std::str::from_utf8(&head) {
                        Ok(t) if n as usize == head.len() => t.to_owned(),
                        Ok(t) => format!("{t}…"),
                        Err(_) => g.expected.clone(),
                    }
                }
                None => g.expected.clone(),
            };
            golden.push((inputs, expected));
        }
    }
    Ok(ArtifactData {
        a,
        versions,
        children,
        relations,
        downloads,
        manifest,
        golden_heads: golden,
        manifest_len,
    })
}

/// What [`artifact_page`] read for one artifact page.
struct ArtifactData {
    a: Artifact,
    versions: Vec<Artifact>,
    children: Vec<Artifact>,
    relations: crate::domain::Relations,
    /// (day, downloads that day)
    downloads: Vec<(i64, u64)>,
    manifest: Option<algobay_runtime::manifest::Manifest>,
    golden_heads: Vec<GoldenHeads>,
    manifest_len: u64,
}

/// A golden sample's inputs (name, digest, first bytes, size) and its expected output as shown.
type GoldenHeads = (Vec<(String, Digest, Vec<u8>, u64)>, String);

pub(crate) async fn artifact(
    State(c): Shared,
    viewer: Viewer,
    Path((kind, team, name, version)): Path<(String, String, String, String)>,
) -> Result<Response, WebError> {
    let k = kind_of(&kind).ok_or(WebError::NotFound)?;
    let reference = format!("{team}/{name}@{version}");
    let p = viewer.principal();
    let api = c.api.clone();
    let r = reference.clone();
    let ArtifactData {
        a,
        versions,
        children,
        relations,
        downloads,
        manifest,
        golden_heads,
        manifest_len,
    } = blocking(move || artifact_page(&*api, &p, k, &r)).await?;
    let dl_total: u64 = downloads.iter().map(|d| d.1).sum();
    // Downloads over the last 30 days, a value per day.
    let spark = match downloads.last() {
        Some(&(last, _)) => {
            let first = last - 29;
            let mut v = vec![0.0; 30];
            for (day, n) in &downloads {
                if *day >= first {
                    v[(day - first) as usize] = *n as f64;
                }
            }
            v
        }
        None => Vec::new(),
    };
    let base_name = a.name.clone();
    let versions_rows = versions
        .iter()
        .map(|v| VersionRow {
            version: v.version.clone(),
            href: href(v),
            published: day(v.published_unix),
            yanked: v.yanked,
            current: v.version == a.version,
            metric: card(v, 0).metric,
        })
        .collect();
    let mut lineage = Vec::new();
    if !a.parent.is_empty() {
        lineage.push(LineageRow {
            indent: String::new(),
            reference: a.parent.clone(),
            href: parent_href(&a),
            note: "parent".into(),
            current: false,
        });
    }
    lineage.push(LineageRow {
        indent: if a.parent.is_empty() {
            String::new()
        } else {
            "└─ ".into()
        },
        reference: reference.clone(),
        href: href(&a),
        note: String::new(),
        current: true,
    });
    let depth = lineage.len();
    for ch in &children {
        let gate = ch
            .metrics
            .get("field_accuracy")
            .map(|f| format!("retrained · field accuracy {f:.3}"))
            .unwrap_or_else(|| "retrained".into());
        lineage.push(LineageRow {
            indent: format!("{}└─ ", "   ".repeat(depth - 1)),
            reference: format!("{}@{}", ch.name, ch.version),
            href: href(ch),
            note: if ch.private_to.is_empty() {
                gate
            } else {
                format!("{gate} · for {}", ch.private_to)
            },
            current: false,
        });
    }
    let mut blobs = vec![BlobRow {
        digest: a.digest.to_string(),
        size: size(manifest_len),
        what: match k {
            Kind::Kit => "manifest".into(),
            _ => a.format.clone(),
        },
    }];
    let mut pipeline_svg = String::new();
    let mut resources = Vec::new();
    let mut ports_in: Vec<String> = a
        .inputs
        .iter()
        .map(|p| format!("{}: {}", p.name, p.ty))
        .collect();
    let mut ports_out: Vec<String> = a
        .outputs
        .iter()
        .map(|p| format!("{}: {}", p.name, p.ty))
        .collect();
    if let Some(m) = &manifest {
        ports_in = m
            .inputs
            .iter()
            .map(|p| port(&p.name, &p.ty.to_string(), p.media.as_deref()))
            .collect();
        ports_out = m
            .outputs
            .iter()
            .map(|p| port(&p.name, &p.ty.to_string(), p.media.as_deref()))
            .collect();
        let steps: Vec<svg::StepBox> = relations
            .steps
            .iter()
            .map(|s| svg::StepBox {
                name: s.step.clone(),
                kind: s.kind.clone(),
                runs: s.artifacts.first().cloned().unwrap_or_else(|| size(s.size)),
                inputs: s.inputs.clone(),
                outputs: s.outputs.clone(),
            })
            .collect();
        pipeline_svg = svg::pipeline(&ports_in, &steps, &ports_out);
        for (d, n) in &m.blobs {
            if *d != a.digest {
                let what = relations
                    .steps
                    .iter()
                    .find(|s| s.digest == *d)
                    .map(|s| format!("{} ({})", s.step, s.kind))
                    .unwrap_or_else(|| "asset or sample".into());
                blobs.push(BlobRow {
                    digest: d.to_string(),
                    size: size(*n),
                    what,
                });
            }
        }
        let total: u64 = m.blobs.values().sum();
        resources.push(("download".to_owned(), size(total)));
        if m.resources.memory_mb > 0 {
            resources.push(("memory".into(), format!("{} MiB", m.resources.memory_mb)));
        }
        if m.resources.cpus > 0 {
            resources.push(("cpus".into(), m.resources.cpus.to_string()));
        }
        let stage_mem: u32 = m
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                algobay_runtime::manifest::StepKind::Stage { limits, .. } => Some(limits.memory_mb),
                _ => None,
            })
            .sum();
        if stage_mem > 0 {
            resources.push((
                "stage memory ceilings".into(),
                format!("{stage_mem} MiB in all"),
            ));
        }
    } else {
        for d in a.blobs.iter().filter(|d| **d != a.digest) {
            blobs.push(BlobRow {
                digest: d.to_string(),
                size: String::new(),
                what: "needed".into(),
            });
        }
    }
    let golden = relations
        .golden
        .iter()
        .zip(golden_heads)
        .map(|(g, (heads, expected))| GoldenView {
            inputs: heads
                .iter()
                .map(|(name, d, head, n)| input_view(name, d, head, *n, ""))
                .collect(),
            expected,
            tolerance: g.tolerance.clone(),
        })
        .collect();
    let used_by = relations
        .used_by
        .iter()
        .map(|r| {
            let h = r
                .split_once('@')
                .map(|(n, v)| format!("/a/kit/{n}/{}", query_escape(v)))
                .unwrap_or_default();
            (r.clone(), h)
        })
        .collect();
    let mut dataset = Vec::new();
    if let Some(dc) = &a.dataset {
        dataset.push(("source".to_owned(), dc.source.clone()));
        dataset.push(("rows".into(), dc.rows.to_string()));
        dataset.push(("columns".into(), dc.columns.join(", ")));
        if !dc.label_column.is_empty() {
            dataset.push(("label".into(), dc.label_column.clone()));
        }
        if !dc.label_counts.is_empty() {
            dataset.push((
                "classes".into(),
                dc.label_counts
                    .iter()
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        if !dc.label_range.is_empty() {
            dataset.push(("range".into(), dc.label_range.clone()));
        }
    }
    let pull = match k {
        Kind::Kit => format!(
            "algobay kit pull {reference} -o {}.kit",
            base_name.rsplit('/').next().unwrap_or("kit")
        ),
        Kind::Model | Kind::Tool | Kind::Dataset => {
            format!("algobay show {reference} --kind {}", k.as_str())
        }
    };
    let page = ArtifactPage {
        base: viewer.base(&c, &reference),
        reference: reference.clone(),
        digest: a.digest.to_string(),
        size: size(a.size),
        format: a.format.clone(),
        architecture: a.architecture.clone(),
        scenario: a.scenario.clone(),
        parent: a.parent.clone(),
        parent_href: parent_href(&a),
        yanked: a.yanked,
        private_to: a.private_to.clone(),
        published_by: a.published_by.clone(),
        card_html: super::markdown::render(&a.card),
        metrics: metric_views(&a),
        versions: versions_rows,
        lineage,
        blobs,
        pipeline_svg,
        golden,
        resources,
        pull,
        used_by,
        downloads_svg: svg::sparkline(&spark, "downloads per day, last 30 days"),
        downloads_total: dl_total,
        ports_in,
        ports_out,
        dataset,
        a: card(&a, dl_total),
    };
    Ok(views::html(&page).into_response())
}

fn port(name: &str, ty: &str, media: Option<&str>) -> String {
    match media {
        Some(m) => format!("{name}: {ty} ({m})"),
        None => format!("{name}: {ty}"),
    }
}

fn parent_href(a: &Artifact) -> String {
    a.parent
        .split_once('@')
        .map(|(n, v)| format!("/a/{}/{n}/{}", a.kind.as_str(), query_escape(v)))
        .unwrap_or_default()
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
