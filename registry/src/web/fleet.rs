//! An enterprise's fleet: devices with their health, deployments and their
//! rollout (with promote, pause and roll back), serving figures per kit and
//! request traces. Only the enterprise's own (or an operator naming it).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::session::Viewer;
use super::svg;
use super::views::{self, *};
use super::{blocking, Shared, WebError};
use crate::domain::{Deployment, DeploymentState, Device, Labels, RolloutPolicy};
use crate::fleet::DeploymentAction;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `HH:MM` (UTC) of a time.
fn clock(unix: i64) -> String {
    let s = unix.rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, s / 60 % 60)
}

fn ago(unix: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    match now() - unix {
        s if s < 90 => format!("{}s ago", s.max(0)),
        s if s < 5400 => format!("{} min ago", s / 60),
        s if s < 48 * 3600 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

fn labels(l: &Labels) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `?enterprise=NAME` for an operator's links, nothing for an enterprise's.
fn operator_query(viewer: &Viewer, enterprise: &str) -> String {
    match viewer.session.as_ref().map(|s| s.principal.role) {
        Some(crate::domain::Role::Operator) => format!("?enterprise={}", query_escape(enterprise)),
        _ => String::new(),
    }
}

pub(crate) fn device_row(d: &Device, canary: bool) -> DeviceRow {
    let s = &d.state;
    let health = if d.revoked {
        "revoked"
    } else if now() - d.last_seen_unix > 120 {
        "stale"
    } else if s.phase == "failed" || s.error_rate > 0.05 {
        "failing"
    } else {
        "ok"
    };
    DeviceRow {
        id: d.id.clone(),
        name: if d.name.is_empty() {
            d.id.clone()
        } else {
            d.name.clone()
        },
        health: health.into(),
        last_seen: ago(d.last_seen_unix),
        active: if s.active_reference.is_empty() {
            short(&s.active_digest)
        } else {
            s.active_reference.clone()
        },
        fallback: short(&s.previous_digest),
        phase: s.phase.clone(),
        requests: s.requests,
        error_rate: format!("{:.1}%", s.error_rate * 100.0),
        p99: if s.p99_ms > 0.0 {
            format!("{:.1} ms", s.p99_ms)
        } else {
            String::new()
        },
        canary,
        labels: labels(&d.labels),
    }
}

fn short(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() > 12 => format!("sha256:{}…", &h[..12]),
        _ => digest.to_owned(),
    }
}

fn deployment_row(d: &Deployment, devices: Option<&[Device]>) -> DeploymentRow {
    let progress = match devices {
        Some(devs) => {
            let on = devs
                .iter()
                .filter(|v| v.state.active_digest == d.kit_digest.to_string())
                .count();
            format!(
                "{on} of {} devices run it ({} canaries)",
                devs.len(),
                d.canary_devices.len()
            )
        }
        None => format!("{} canaries", d.canary_devices.len()),
    };
    DeploymentRow {
        id: d.id.clone(),
        kit: d.kit_reference.clone(),
        state: d.state.as_str().to_owned(),
        selector: if d.selector.is_empty() {
            "every device".into()
        } else {
            labels(&d.selector)
        },
        reason: d.reason.clone(),
        created: ago(d.created_unix),
        progress,
    }
}

type Params = Query<HashMap<String, String>>;

pub(crate) async fn overview(
    State(c): Shared,
    viewer: Viewer,
    Query(q): Params,
) -> Result<Response, WebError> {
    let e = viewer.enterprise(q.get("enterprise").map(String::as_str))?;
    let p = viewer.principal();
    let api = c.api.clone();
    let en = e.clone();
    let (devices, deployments, kits) = blocking(move || {
        let devices = api.list_devices(&p, &en)?;
        let deployments = api.list_deployments(&p, &en)?;
        let kits = api.search(&crate::domain::Query {
            kind: Some(crate::domain::Kind::Kit),
            page_size: 200,
            viewer: Some(p.clone()),
            sort: crate::domain::Sort::Name,
            ..Default::default()
        })?;
        Ok((devices, deployments, kits))
    })
    .await?;
    let page = FleetPage {
        base: viewer.base(&c, &format!("Fleet of {e}")),
        operator_query: operator_query(&viewer, &e),
        enterprise: e,
        devices: devices.iter().map(|d| device_row(d, false)).collect(),
        deployments: deployments
            .iter()
            .map(|d| deployment_row(d, None))
            .collect(),
        kits: kits
            .artifacts
            .iter()
            .map(|a| format!("{}@{}", a.name, a.version))
            .collect(),
    };
    Ok(views::html(&page).into_response())
}

fn field<'a>(form: &'a HashMap<String, String>, k: &str) -> &'a str {
    form.get(k).map_or("", |v| v.trim())
}

fn number(form: &HashMap<String, String>, k: &str, default: f64) -> Result<f64, WebError> {
    match field(form, k) {
        "" => Ok(default),
        v => v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| WebError::Invalid(format!("{k}: `{v}` is not a number"))),
    }
}

pub(crate) async fn create_deployment(
    State(c): Shared,
    viewer: Viewer,
    Query(q): Params,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    viewer.check_form(&form)?;
    let e = viewer.enterprise(q.get("enterprise").map(String::as_str))?;
    let mut selector = Labels::new();
    for pair in field(&form, "selector")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| WebError::Invalid(format!("selector: `{pair}` is not key=value")))?;
        selector.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let policy = RolloutPolicy {
        canary_share: number(&form, "canary_share", 0.1)?,
        soak_seconds: number(&form, "soak_seconds", 300.0)? as u32,
        max_error_rate: number(&form, "max_error_rate", 0.05)?,
        max_p99_ms: number(&form, "max_p99_ms", 1000.0)?,
        manual_promote: field(&form, "manual_promote") == "1",
        sampling_off: false,
        field_gate: None,
    };
    let kit = field(&form, "kit").to_owned();
    let p = viewer.principal();
    let api = c.api.clone();
    let en = e.clone();
    let d = blocking(move || api.create_deployment(&p, &en, &kit, selector, policy)).await?;
    Ok(Redirect::to(&format!(
        "/fleet/deployments/{}{}",
        d.id,
        operator_query(&viewer, &e)
    ))
    .into_response())
}

pub(crate) async fn deployment(
    State(c): Shared,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, WebError> {
    let e = viewer.enterprise(q.get("enterprise").map(String::as_str))?;
    let p = viewer.principal();
    let api = c.api.clone();
    let (d, devices) = blocking(move || api.deployment_status(&p, &id)).await?;
    if d.enterprise != e {
        return Err(WebError::NotFound);
    }
    let row = deployment_row(&d, Some(&devices));
    let canaries: std::collections::HashSet<&str> =
        d.canary_devices.iter().map(String::as_str).collect();
    let on = devices
        .iter()
        .filter(|v| v.state.active_digest == d.kit_digest.to_string())
        .count();
    let progress_svg = svg::bars(
        &[
            svg::Bar {
                label: "canaries".into(),
                value: canaries.len() as f64,
                target: None,
            },
            svg::Bar {
                label: "running it".into(),
                value: on as f64,
                target: Some(devices.len() as f64),
            },
        ],
        "rollout progress",
    );
    let actions = match d.state {
        DeploymentState::Canary => vec!["promote", "pause", "rollback"],
        DeploymentState::Paused => vec!["promote", "rollback"],
        DeploymentState::Promoted => vec!["rollback"],
        DeploymentState::RolledBack => vec![],
    };
    let pol = &d.policy;
    let mut policy = vec![
        (
            "canary share".to_owned(),
            format!("{:.0}%", pol.canary_share * 100.0),
        ),
        ("soak".into(), format!("{} s", pol.soak_seconds)),
        (
            "largest error rate".into(),
            format!("{:.1}%", pol.max_error_rate * 100.0),
        ),
        ("largest p99".into(), format!("{} ms", pol.max_p99_ms)),
        (
            "promotion".into(),
            if pol.manual_promote {
                "by hand".into()
            } else {
                "by the gate".into()
            },
        ),
    ];
    if let Some(f) = &pol.field_gate {
        policy.push((
            "field gate".into(),
            format!(
                "canary accuracy within {:.1} points of the others', after {} labels each",
                f.margin * 100.0,
                f.min_count
            ),
        ));
    }
    let page = DeploymentPage {
        base: viewer.base(&c, &format!("Deployment {}", d.id)),
        refresh: matches!(d.state, DeploymentState::Canary),
        d: row,
        policy,
        devices: devices
            .iter()
            .map(|v| device_row(v, canaries.contains(v.id.as_str())))
            .collect(),
        progress_svg,
        actions: actions.into_iter().map(str::to_owned).collect(),
        operator_query: operator_query(&viewer, &e),
    };
    Ok(views::html(&page).into_response())
}

pub(crate) async fn act(
    State(c): Shared,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    Query(q): Params,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    viewer.check_form(&form)?;
    let e = viewer.enterprise(q.get("enterprise").map(String::as_str))?;
    let action = match action.as_str() {
        "promote" => DeploymentAction::Promote,
        "pause" => DeploymentAction::Pause,
        "rollback" => DeploymentAction::Rollback,
        _ => return Err(WebError::NotFound),
    };
    let reason = field(&form, "reason").to_owned();
    let p = viewer.principal();
    let api = c.api.clone();
    let i = id.clone();
    let en = e.clone();
    blocking(move || {
        // Another enterprise's deployment is not found, whatever its id.
        let (d, _) = api.deployment_status(&p, &i)?;
        if d.enterprise != en {
            return Err(crate::error::RegistryError::NotFound(format!(
                "deployment `{i}`"
            )));
        }
        api.act_on_deployment(&p, &i, action, &reason)
    })
    .await?;
    Ok(Redirect::to(&format!(
        "/fleet/deployments/{id}{}",
        operator_query(&viewer, &e)
    ))
    .into_response())
}

pub(crate) async fn device(
    State(c): Shared,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, WebError> {
    let e = viewer.enterprise(q.get("enterprise").map(String::as_str))?;
    let p = viewer.principal();
    let api = c.api.clone();
    let en = e.clone();
    let (dev, tel, traces) = blocking(move || {
        let dev = api
            .list_devices(&p, &en)?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| crate::error::RegistryError::NotFound(format!("device `{id}`")))?;
        let tel = api.telemetry(&p, &en, &id)?;
        let traces = api.traces(
            &p,
            &en,
            &crate::traces::TraceFilter {
                device: id.clone(),
                limit: 20,
                ..Default::default()
            },
        )?;
        Ok((dev, tel, traces))
    })
    .await?;
    let oq = operator_query(&viewer, &e);
    let figures = tel
        .iter()
        .map(|t| {
            let q = |x| {
                crate::telemetry::quantile(&t.bucket_bounds_ms, &t.bucket_counts, x)
                    .map(|v| format!("≤ {v} ms"))
                    .unwrap_or_default()
            };
            let over = |f: &dyn Fn(&crate::telemetry::Window) -> f64| -> Vec<(f64, f64)> {
                t.history.iter().map(|h| (h.0 as f64, f(h))).collect()
            };
            let labels: Vec<(f64, String)> = match (t.history.first(), t.history.last()) {
                (Some(a), Some(b)) => vec![(a.0 as f64, clock(a.0)), (b.0 as f64, clock(b.0))],
                _ => Vec::new(),
            };
            let traffic_svg = svg::lines(
                &[
                    svg::Series {
                        name: "requests".into(),
                        colour: "#2563eb",
                        points: over(&|h| h.1 as f64),
                    },
                    svg::Series {
                        name: "errors".into(),
                        colour: "#b91c1c",
                        points: over(&|h| h.2 as f64),
                    },
                ],
                "requests and errors per export window",
                &labels,
                "",
            );
            let latency_time_svg = svg::lines(
                &[
                    svg::Series {
                        name: "p50".into(),
                        colour: "#16a34a",
                        points: over(&|h| h.3),
                    },
                    svg::Series {
                        name: "p99".into(),
                        colour: "#d97706",
                        points: over(&|h| h.4),
                    },
                ],
                "latency per export window",
                &labels,
                " ms",
            );
            let steps: Vec<svg::Bar> = t
                .stages
                .iter()
                .map(|(s, (n, sum))| svg::Bar {
                    label: s.clone(),
                    value: if *n > 0 { sum / *n as f64 } else { 0.0 },
                    target: None,
                })
                .collect();
            // The share of requests under each bound: the latency distribution.
            let mut prev = 0;
            let latency: Vec<svg::Bar> = t
                .bucket_bounds_ms
                .iter()
                .zip(&t.bucket_counts)
                .filter_map(|(b, c)| {
                    let n = c.saturating_sub(prev);
                    prev = *c;
                    (n > 0).then(|| svg::Bar {
                        label: format!("≤ {b} ms"),
                        value: n as f64,
                        target: None,
                    })
                })
                .collect();
            KitFigures {
                kit: if t.kit_reference.is_empty() {
                    t.kit_digest.clone()
                } else {
                    t.kit_reference.clone()
                },
                requests: t.requests,
                errors: t.errors,
                p50: q(0.5),
                p99: q(0.99),
                steps_svg: svg::bars(&steps, "mean ms per step"),
                traffic_svg,
                latency_time_svg,
                latency_svg: svg::bars(&latency, "requests per latency bucket"),
            }
        })
        .collect();
    let traces = traces
        .iter()
        .map(|t| TraceRow {
            id: t.trace_id.clone(),
            href: format!("/fleet/traces/{}{}", t.trace_id, oq),
            kit: t.kit_reference.clone(),
            ms: format!("{:.2}", t.duration_ms),
            error: t.error.clone(),
            steps: t.steps.len(),
        })
        .collect();
    let page = DevicePage {
        base: viewer.base(&c, &format!("Device {}", dev.name)),
        device: device_row(&dev, false),
        figures,
        traces,
        operator_query: oq,
    };
    Ok(views::html(&page).into_response())
}

pub(crate) async fn trace(
    State(c): Shared,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, WebError> {
    let e = viewer.enterprise(q.get("enterprise").map(String::as_str))?;
    let p = viewer.principal();
    let api = c.api.clone();
    let en = e.clone();
    let t = blocking(move || {
        api.traces(
            &p,
            &en,
            &crate::traces::TraceFilter {
                trace_id: id.clone(),
                limit: 1,
                ..Default::default()
            },
        )?
        .into_iter()
        .next()
        .ok_or_else(|| crate::error::RegistryError::NotFound(format!("trace `{id}`")))
    })
    .await?;
    let start = t.start_unix_nano;
    let steps: Vec<(f64, String, f64)> = t
        .steps
        .iter()
        .map(|(at, name, ms)| (at.saturating_sub(start) as f64 / 1e6, name.clone(), *ms))
        .collect();
    let oq = operator_query(&viewer, &e);
    let page = TracePage {
        base: viewer.base(&c, &format!("Trace {}", t.trace_id)),
        svg: svg::waterfall(t.duration_ms, &steps),
        device: t.device_id.clone(),
        row: TraceRow {
            id: t.trace_id.clone(),
            href: String::new(),
            kit: t.kit_reference.clone(),
            ms: format!("{:.2}", t.duration_ms),
            error: t.error.clone(),
            steps: t.steps.len(),
        },
        operator_query: oq,
    };
    Ok(views::html(&page).into_response())
}
