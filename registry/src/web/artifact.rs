//! An artifact's page (its card, ports, files, lineage and what uses it)
//! and blobs shown in pages.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use algobay_runtime::Digest;

use super::catalog::{kind_of, size};
use super::session::Viewer;
use super::svg;
use super::views::{self, *};
use super::{blocking, Shared, WebError};
use crate::domain::{Artifact, Kind, Principal, Role};

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
