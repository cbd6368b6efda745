//! The pages' templates (askama, escaping by default) and the values they show.

use askama::Template;
use axum::response::Html;

use super::Console;
use crate::domain::{Artifact, Role};
use crate::service::WebSession;

/// Renders a template; a failure is logged and shown as a short error.
pub(crate) fn html<T: Template>(t: &T) -> Html<String> {
    Html(t.render().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "a console template failed");
        "<!doctype html><title>error</title><p>This page could not be drawn.</p>".into()
    }))
}

/// Percent-encodes a query value.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What every page's frame shows.
#[derive(Debug, Default)]
pub(crate) struct Base {
    pub title: String,
    pub css: String,
    pub js: String,
    /// Who is signed in (`acme · enterprise`); empty for a visitor.
    pub who: String,
    pub csrf: String,
    pub operator: bool,
    pub enterprise: bool,
}

impl Base {
    pub fn new(c: &Console, title: &str, s: Option<&WebSession>) -> Base {
        let role = s.map(|s| s.principal.role);
        Base {
            title: title.to_owned(),
            css: c.assets.css.clone(),
            js: c.assets.js.clone(),
            who: s
                .map(|s| {
                    let r = match s.principal.role {
                        Role::Operator => "operator",
                        Role::Team => "team",
                        Role::Enterprise => "enterprise",
                        Role::Device => "device",
                        Role::Visitor => "visitor",
                    };
                    if s.principal.subject.is_empty() {
                        r.to_owned()
                    } else {
                        format!("{} · {r}", s.principal.subject)
                    }
                })
                .unwrap_or_default(),
            csrf: s.map(|s| s.csrf.clone()).unwrap_or_default(),
            operator: role == Some(Role::Operator),
            enterprise: matches!(role, Some(Role::Enterprise | Role::Operator)),
        }
    }

    /// For error pages drawn without the console's state.
    pub fn bare(title: &str) -> Base {
        Base {
            title: title.to_owned(),
            ..Base::default()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub base: Base,
    pub message: String,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub(crate) struct SignIn {
    pub base: Base,
    pub next: String,
    pub nonce: String,
    pub error: String,
}

/// One figure of an artifact, with its interval, sample size and baseline when published.
#[derive(Debug, Clone)]
pub(crate) struct MetricView {
    pub name: String,
    pub value: String,
    pub interval: String,
    pub n: String,
    pub baseline: String,
}

fn num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// An artifact's figures grouped: `m`, `m_low`/`m_high` (95% interval),
/// `m_n` or `n` (holdout size), `baseline_m`.
pub(crate) fn metric_views(a: &Artifact) -> Vec<MetricView> {
    let m = &a.metrics;
    m.iter()
        .filter(|(k, _)| {
            !k.ends_with("_low")
                && !k.ends_with("_high")
                && !k.ends_with("_n")
                && !k.starts_with("baseline_")
                && k.as_str() != "n"
        })
        .map(|(k, v)| {
            let interval = match (m.get(&format!("{k}_low")), m.get(&format!("{k}_high"))) {
                (Some(l), Some(h)) => format!("[{}, {}]", num(*l), num(*h)),
                _ => String::new(),
            };
            MetricView {
                name: k.clone(),
                value: num(*v),
                interval,
                n: m.get(&format!("{k}_n"))
                    .or_else(|| m.get("n"))
                    .map(|n| num(*n))
                    .unwrap_or_default(),
                baseline: m
                    .get(&format!("baseline_{k}"))
                    .map(|b| num(*b))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// An artifact in a list.
#[derive(Debug)]
pub(crate) struct Card {
    pub kind: String,
    pub name: String,
    pub version: String,
    pub href: String,
    pub description: String,
    pub team: String,
    pub domain: String,
    pub task: String,
    pub industries: String,
    pub license: String,
    pub metric: String,
    pub downloads: u64,
    pub updated: String,
}

pub(crate) fn href(a: &Artifact) -> String {
    format!(
        "/a/{}/{}/{}",
        a.kind.as_str(),
        a.name,
        query_escape(&a.version)
    )
}

pub(crate) fn day(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", if m <= 2 { y + 1 } else { y })
}

pub(crate) fn card(a: &Artifact, downloads: u64) -> Card {
    let metric = a
        .headline_metric()
        .map(|(k, _)| {
            metric_views(a)
                .into_iter()
                .find(|m| m.name == k)
                .map(|m| {
                    let mut s = format!("{} {}", m.name, m.value);
                    if !m.interval.is_empty() {
                        s.push_str(&format!(" {}", m.interval));
                    }
                    if !m.baseline.is_empty() {
                        s.push_str(&format!(" · baseline {}", m.baseline));
                    }
                    s
                })
                .unwrap_or_default()
        })
        .unwrap_or_default();
    Card {
        kind: a.kind.as_str().to_owned(),
        name: a.name.clone(),
        version: a.version.clone(),
        href: href(a),
        description: a.description.clone(),
        team: a.team().to_owned(),
        domain: a.domain.clone(),
        task: if a.task.is_empty() {
            a.tool_kind.clone()
        } else {
            a.task.clone()
        },
        industries: a.industries.join(", "),
        license: a.license.clone(),
        metric,
        downloads,
        updated: day(a.published_unix),
    }
}

/// A facet value as a link that adds (or, when on, removes) it.
#[derive(Debug)]
pub(crate) struct FacetValue {
    pub value: String,
    pub count: u64,
    pub href: String,
    pub on: bool,
}

#[derive(Debug)]
pub(crate) struct FacetView {
    pub name: String,
    pub values: Vec<FacetValue>,
}

#[derive(Debug)]
pub(crate) struct SortView {
    pub value: String,
    pub on: bool,
}

#[derive(Template)]
#[template(path = "market.html")]
pub(crate) struct Market {
    pub base: Base,
    pub text: String,
    pub hidden: Vec<(String, String)>,
    pub facets: Vec<FacetView>,
    pub sorts: Vec<SortView>,
    pub results: Vec<Card>,
    pub total: u64,
    pub first: usize,
    pub last: usize,
    pub prev: String,
    pub next: String,
    pub heading: String,
}

#[derive(Debug)]
pub(crate) struct VersionRow {
    pub version: String,
    pub href: String,
    pub published: String,
    pub yanked: bool,
    pub current: bool,
    pub metric: String,
}

/// A line of the lineage tree.
#[derive(Debug)]
pub(crate) struct LineageRow {
    pub indent: String,
    pub reference: String,
    pub href: String,
    pub note: String,
    pub current: bool,
}

#[derive(Debug)]
pub(crate) struct BlobRow {
    pub digest: String,
    pub size: String,
    pub what: String,
}

/// A golden sample: its inputs shown as what they are, and what is expected.
#[derive(Debug)]
pub(crate) struct GoldenView {
    pub inputs: Vec<SampleInputView>,
    pub expected: String,
    pub tolerance: String,
}

/// An input shown by its kind: an image, a sound to play, text, or a download.
#[derive(Debug)]
pub(crate) struct SampleInputView {
    pub name: String,
    /// `image`, `audio`, `text` or `file`.
    pub shown_as: String,
    pub src: String,
    pub text: String,
    pub size: String,
    /// A small square image drawn from a tensor's values (`shown_as` = `grid`).
    pub svg: String,
}

#[derive(Template)]
#[template(path = "artifact.html")]
pub(crate) struct ArtifactPage {
    pub base: Base,
    pub a: Card,
    pub reference: String,
    pub digest: String,
    pub size: String,
    pub format: String,
    pub architecture: String,
    pub scenario: String,
    pub parent: String,
    pub parent_href: String,
    pub yanked: bool,
    pub private_to: String,
    pub published_by: String,
    pub card_html: String,
    pub metrics: Vec<MetricView>,
    pub versions: Vec<VersionRow>,
    pub lineage: Vec<LineageRow>,
    pub blobs: Vec<BlobRow>,
    pub pipeline_svg: String,
    pub golden: Vec<GoldenView>,
    pub resources: Vec<(String, String)>,
    pub pull: String,
    pub used_by: Vec<(String, String)>,
    pub downloads_svg: String,
    pub downloads_total: u64,
    pub ports_in: Vec<String>,
    pub ports_out: Vec<String>,
    pub dataset: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "team.html")]
pub(crate) struct TeamPage {
    pub base: Base,
    pub team: String,
    pub display_name: String,
    pub counts: Vec<(String, u64)>,
    pub results: Vec<Card>,
}

#[derive(Debug)]
pub(crate) struct TargetRow {
    pub name: String,
    pub value: u64,
    pub target: u64,
    pub met: bool,
}

#[derive(Template)]
#[template(path = "coverage.html")]
pub(crate) struct CoveragePage {
    pub base: Base,
    pub targets: Vec<TargetRow>,
    pub industries_svg: String,
    pub domains_svg: String,
    pub tools_svg: String,
    pub growth_svg: String,
    pub devices: u64,
}

#[derive(Debug)]
pub(crate) struct DeviceRow {
    pub id: String,
    pub name: String,
    pub health: String,
    pub last_seen: String,
    pub active: String,
    pub fallback: String,
    pub phase: String,
    pub requests: u64,
    pub error_rate: String,
    pub p99: String,
    pub canary: bool,
    pub labels: String,
}

#[derive(Debug)]
pub(crate) struct DeploymentRow {
    pub id: String,
    pub kit: String,
    pub state: String,
    pub selector: String,
    pub reason: String,
    pub created: String,
    pub progress: String,
}

#[derive(Template)]
#[template(path = "fleet.html")]
pub(crate) struct FleetPage {
    pub base: Base,
    pub enterprise: String,
    pub devices: Vec<DeviceRow>,
    pub deployments: Vec<DeploymentRow>,
    pub kits: Vec<String>,
    pub operator_query: String,
}

#[derive(Template)]
#[template(path = "deployment.html")]
pub(crate) struct DeploymentPage {
    pub base: Base,
    pub d: DeploymentRow,
    pub policy: Vec<(String, String)>,
    pub devices: Vec<DeviceRow>,
    pub progress_svg: String,
    pub actions: Vec<String>,
    pub operator_query: String,
    pub refresh: bool,
}

#[derive(Debug)]
pub(crate) struct KitFigures {
    pub kit: String,
    pub requests: u64,
    pub errors: u64,
    pub p50: String,
    pub p99: String,
    pub steps_svg: String,
    pub latency_svg: String,
    pub traffic_svg: String,
    pub latency_time_svg: String,
}

#[derive(Debug)]
pub(crate) struct TraceRow {
    pub id: String,
    pub href: String,
    pub kit: String,
    pub ms: String,
    pub error: String,
    pub steps: usize,
}

#[derive(Template)]
#[template(path = "device.html")]
pub(crate) struct DevicePage {
    pub base: Base,
    pub device: DeviceRow,
    pub figures: Vec<KitFigures>,
    pub traces: Vec<TraceRow>,
    pub operator_query: String,
}

#[derive(Template)]
#[template(path = "trace.html")]
pub(crate) struct TracePage {
    pub base: Base,
    pub row: TraceRow,
    pub device: String,
    pub svg: String,
    pub operator_query: String,
}

/// A hard example to label.
#[derive(Debug)]
pub(crate) struct SampleView {
    pub id: String,
    pub kit: String,
    pub device: String,
    pub reason: String,
    pub inputs: Vec<SampleInputView>,
    pub answer: String,
    pub confidence: String,
    pub labels: String,
    pub received: String,
}

#[derive(Template)]
#[template(path = "labelling.html")]
pub(crate) struct LabelPage {
    pub base: Base,
    pub samples: Vec<SampleView>,
    pub kit: String,
    pub all: bool,
    pub next: String,
    pub notice: String,
    pub operator_query: String,
    pub enterprise: String,
}

#[derive(Debug)]
pub(crate) struct RunRow {
    pub id: String,
    pub round: u32,
    pub state: String,
    pub trigger: String,
    pub version: String,
    pub decision: String,
    pub field: String,
    pub base: String,
    pub release: String,
    pub updated: String,
    pub history: String,
}

#[derive(Template)]
#[template(path = "training.html")]
pub(crate) struct TrainingPage {
    pub base: Base,
    pub kit: String,
    pub kits: Vec<String>,
    pub runs: Vec<RunRow>,
    pub chart_svg: String,
    pub lineage: Vec<LineageRow>,
    pub operator_query: String,
    pub enterprise: String,
}
