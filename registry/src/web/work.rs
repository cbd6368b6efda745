//! The work people do in the console: labelling an enterprise's hard
//! examples (the annotation tool, writing through the same service as
//! `algobay samples label`) and following its training rounds.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use algobay_runtime::Digest;

use super::artifact::input_view;
use super::session::Viewer;
use super::svg;
use super::views::{self, *};
use super::{blocking, Shared, WebError};
use crate::domain::{LabelSource, Role, SampleRecord};
use crate::training::gate::{Decision, GateReport, SliceReport};
use crate::training::{Run, TrainCall, TrainReply};

/// Samples on one page of the queue.
const QUEUE: usize = 20;

fn operator_query(viewer: &Viewer, enterprise: &str) -> String {
    match viewer.session.as_ref().map(|s| s.principal.role) {
        Some(Role::Operator) => format!("?enterprise={}", query_escape(enterprise)),
        _ => String::new(),
    }
}

/// The model's answer and its confidence, from a sample's outputs: the first
/// `label` and the first `score`, `confidence` or `probability` in them.
fn answer(outputs_json: &str) -> (String, String) {
    fn walk(v: &serde_json::Value, label: &mut Option<String>, score: &mut Option<f64>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("label", serde_json::Value::String(s)) if label.is_none() => {
                            *label = Some(s.clone())
                        }
                        ("label", n @ serde_json::Value::Number(_)) if label.is_none() => {
                            *label = Some(n.to_string())
                        }
                        ("score" | "confidence" | "probability", serde_json::Value::Number(n))
                            if score.is_none() =>
                        {
                            *score = n.as_f64()
                        }
                        _ => walk(x, label, score),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, label, score)),
            _ => {}
        }
    }
    let (mut label, mut score) = (None, None);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(outputs_json) {
        walk(&v, &mut label, &mut score);
    }
    (
        label.unwrap_or_default(),
        score
            .map(|s| format!("{:.0}% sure", s * 100.0))
            .unwrap_or_default(),
    )
}

/// A tensor input's first values as text (a table row); other bytes as they are.
fn tensor_text(datatype: &str, head: &[u8]) -> Option<String> {
    let vals: Vec<String> = match datatype {
        "FP32" => head
            .chunks_exact(4)
            .map(|c| format!("{}", f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        "INT64" => head
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])).to_string())
            .collect(),
        "INT32" => head
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
            .collect(),
        "UINT8" => head.iter().map(|b| b.to_string()).collect(),
        _ => return None,
    };
    Some(vals.join(", "))
}

fn sample_view(
    s: &SampleRecord,
    heads: &[(Digest, Vec<u8>)],
    enterprise: &str,
    operator: bool,
) -> SampleView {
    let (answer, confidence) = answer(&s.outputs_json);
    let shown_for = if operator { enterprise } else { "" };
    SampleView {
        id: s.id.clone(),
        kit: s.kit_reference.clone(),
        device: s.device_id.clone(),
        reason: s.reason.clone(),
        inputs: s
            .inputs
            .iter()
            .map(|i| {
                let head = heads
                    .iter()
                    .find(|h| h.0 == i.digest)
                    .map(|h| h.1.as_slice())
                    .unwrap_or_default();
                let mut v = input_view(&i.name, &i.digest, head, i.size, shown_for);
                // A square of values, whole in what was read (a digit's 8×8), is also an image.
                if i.datatype == "FP32" && i.size as usize == head.len() {
                    let vals: Vec<f32> = head
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    let side = (vals.len() as f64).sqrt() as usize;
                    if side >= 4 && side * side == vals.len() {
                        v.svg = svg::grid(&vals, side);
                    }
                }
                if let Some(t) = tensor_text(&i.datatype, head) {
                    v.shown_as = "text".into();
                    v.text = format!(
                        "{} {:?}: {t}{}",
                        i.datatype,
                        i.shape,
                        if (head.len() as u64) < i.size {
                            " …"
                        } else {
                            ""
                        }
                    );
                }
                v
            })
            .collect(),
        answer,
        confidence,
        labels: s
            .labels
            .iter()
            .map(|l| format!("{} ({:?})", l.value, l.source).to_lowercase())
            .collect::<Vec<_>>()
            .join(", "),
        received: super::views::day(s.received_unix),
    }
}

pub(crate) async fn queue(
    State(c): Shared,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let e = viewer.enterprise(q.get("enterprise").map(String::as_str))?;
    let kit = q.get("kit").map_or("", |k| k.trim()).to_owned();
    let all = q.get("all").is_some_and(|v| v == "1");
    let token = q.get("start").cloned().unwrap_or_default();
    let p = viewer.principal();
    let api = c.api.clone();
    let (en, k) = (e.clone(), kit.clone());
    let (samples, next, heads) = blocking(move || {
        let (samples, next) = api.list_samples(&p, &en, &k, QUEUE, &token, !all)?;
        let mut heads = Vec::new();
        for s in &samples {
            for i in &s.inputs {
                use std::io::Read;
                let (_, r) = api.open_blob(&p, &i.digest, &en)?;
                let mut head = Vec::new();
                r.take(600)
                    .read_to_end(&mut head)
                    .map_err(|err| crate::error::RegistryError::Storage(err.to_string()))?;
                heads.push((i.digest, head));
            }
        }
        Ok((samples, next, heads))
    })
    .await?;
    let oq = operator_query(&viewer, &e);
    let operator = !oq.is_empty();
    let notice = match q.get("labelled").and_then(|n| n.parse::<u32>().ok()) {
        Some(n) => format!("{n} label{} saved.", if n == 1 { "" } else { "s" }),
        None => String::new(),
    };
    let next_href = if next.is_empty() {
        String::new()
    } else {
        let mut h = format!("/labelling?start={}", query_escape(&next));
        if !kit.is_empty() {
            h.push_str(&format!("&kit={}", query_escape(&kit)));
        }
        if all {
            h.push_str("&all=1");
        }
        if operator {
            h.push_str(&format!("&enterprise={}", query_escape(&e)));
        }
        h
    };
    let page = LabelPage {
        base: viewer.base(&c, "Labelling"),
        samples: samples
            .iter()
            .map(|s| sample_view(s, &heads, &e, operator))
            .collect(),
        kit,
        all,
        next: next_href,
        notice,
        operator_query: oq,
        enterprise: e,
    };
    Ok(views::html(&page).into_response())
}

pub(crate) async fn label(
    State(c): Shared,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    viewer.check_form(&form)?;
    let e = viewer.enterprise(q.get("enterprise").map(String::as_str))?;
    let mut labels: Vec<(String, String)> = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("label.")?.to_owned(), v.trim().to_owned())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if form.get("do").map(String::as_str) == Some("accept") {
        // The selected samples take the model's answer (read again from the registry).
        let picked: Vec<String> = form
            .keys()
            .filter_map(|k| k.strip_prefix("pick.").map(str::to_owned))
            .filter(|id| !labels.iter().any(|(l, _)| l == id))
            .collect();
        if !picked.is_empty() {
            let p = viewer.principal();
            let api = c.api.clone();
            let en = e.clone();
            let kit = form.get("kit").cloned().unwrap_or_default();
            let answers = blocking(move || {
                let mut out = Vec::new();
                let mut token = String::new();
                loop {
                    let (page, next) = api.list_samples(&p, &en, &kit, 500, &token, false)?;
                    for s in page.iter().filter(|s| picked.contains(&s.id)) {
                        let (a, _) = answer(&s.outputs_json);
                        if !a.is_empty() {
                            out.push((s.id.clone(), a));
                        }
                    }
                    if next.is_empty() || out.len() == picked.len() {
                        return Ok(out);
                    }
                    token = next;
                }
            })
            .await?;
            labels.extend(answers);
        }
    }
    labels.sort();
    if labels.is_empty() {
        return Err(WebError::Invalid(
            "no label given: type one, or select samples to accept".into(),
        ));
    }
    let p = viewer.principal();
    let api = c.api.clone();
    let en = e.clone();
    let (n, unknown) =
        blocking(move || api.label_samples(&p, &en, LabelSource::Human, labels)).await?;
    if !unknown.is_empty() {
        return Err(WebError::Invalid(format!(
            "no such samples: {}",
            unknown.join(", ")
        )));
    }
    let mut to = format!("/labelling?labelled={n}");
    if let Some(k) = form.get("kit").filter(|k| !k.is_empty()) {
        to.push_str(&format!("&kit={}", query_escape(k)));
    }
    if viewer
        .session
        .as_ref()
        .is_some_and(|s| s.principal.role == Role::Operator)
    {
        to.push_str(&format!("&enterprise={}", query_escape(&e)));
    }
    Ok(Redirect::to(&to).into_response())
}

fn slice(s: &SliceReport) -> String {
    format!(
        "n={} · {:.3} → {:.3} · Δ [{:+.3}, {:+.3}] · p={:.3}",
        s.n, s.champion_accuracy, s.challenger_accuracy, s.delta_low, s.delta_high, s.p
    )
}

fn run_row(r: &Run) -> RunRow {
    let decision = match r.gate.as_ref().map(|g| &g.decision) {
        Some(Decision::Promote) => "promote".to_owned(),
        Some(Decision::Reject(why)) => format!("reject: {why}"),
        Some(Decision::InsufficientEvidence(why)) => format!("insufficient evidence: {why}"),
        None => String::new(),
    };
    RunRow {
        id: r.id.clone(),
        round: r.round,
        state: r.state.as_str().to_owned(),
        trigger: r.trigger.clone(),
        version: r.version.clone(),
        decision,
        field: r.gate.as_ref().map(|g| slice(&g.field)).unwrap_or_default(),
        base: r.gate.as_ref().map(|g| slice(&g.base)).unwrap_or_default(),
        release: r
            .release
            .as_ref()
            .map(|x| x.kit_reference.clone())
            .unwrap_or_default(),
        updated: super::views::day(r.updated_unix),
        history: r
            .history
            .iter()
            .map(|t| format!("{} {}", t.state.as_str(), t.reason))
            .collect::<Vec<_>>()
            .join(" → "),
    }
}

pub(crate) async fn rounds(
    State(c): Shared,
    viewer: Viewer,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let e = viewer.enterprise(q.get("enterprise").map(String::as_str))?;
    let kit = q.get("kit").map_or("", |k| k.trim()).to_owned();
    let p = viewer.principal();
    let api = c.api.clone();
    let en = e.clone();
    let all = blocking(move || {
        match api.train(
            &p,
            TrainCall::List {
                enterprise: en,
                kit: String::new(),
            },
        )? {
            TrainReply::Runs(r) => Ok(r),
            _ => Ok(Vec::new()),
        }
    })
    .await?;
    let mut kits: Vec<String> = all.iter().map(|r| r.kit.clone()).collect();
    kits.sort();
    kits.dedup();
    // One kit only: its rounds make one story.
    let kit = if kit.is_empty() && kits.len() == 1 {
        kits[0].clone()
    } else {
        kit
    };
    let runs: Vec<&Run> = all.iter().filter(|r| r.kit == kit).collect();
    let points = |f: &dyn Fn(&GateReport) -> f64| -> Vec<(f64, f64)> {
        runs.iter()
            .filter_map(|r| r.gate.as_ref().map(|g| (r.round as f64, f(g))))
            .collect()
    };
    let chart_svg = svg::lines(
        &[
            svg::Series {
                name: "champion (field)".into(),
                colour: "#64748b",
                points: points(&|g| g.field.champion_accuracy),
            },
            svg::Series {
                name: "challenger (field)".into(),
                colour: "#2563eb",
                points: points(&|g| g.field.challenger_accuracy),
            },
            svg::Series {
                name: "challenger (base)".into(),
                colour: "#16a34a",
                points: points(&|g| g.base.challenger_accuracy),
            },
        ],
        "accuracy per round",
        &runs
            .iter()
            .map(|r| (r.round as f64, format!("round {}", r.round)))
            .collect::<Vec<_>>(),
        "",
    );
    let mut lineage = Vec::new();
    if let Some(first) = runs.first() {
        lineage.push(LineageRow {
            indent: String::new(),
            reference: first.champion.clone(),
            href: kit_href(&first.champion),
            note: "champion when round 1 began".into(),
            current: false,
        });
    }
    for (i, r) in runs.iter().filter(|r| r.release.is_some()).enumerate() {
        let rel = r
            .release
            .as_ref()
            .map(|x| x.kit_reference.clone())
            .unwrap_or_default();
        lineage.push(LineageRow {
            indent: format!("{}└─ ", "   ".repeat(i)),
            href: kit_href(&rel),
            reference: rel,
            note: format!("round {} · {}", r.round, r.state.as_str()),
            current: false,
        });
    }
    let page = TrainingPage {
        base: viewer.base(&c, "Training rounds"),
        runs: runs.iter().rev().map(|r| run_row(r)).collect(),
        chart_svg,
        lineage,
        kits,
        kit,
        operator_query: operator_query(&viewer, &e),
        enterprise: e,
    };
    Ok(views::html(&page).into_response())
}

fn kit_href(reference: &str) -> String {
    reference
        .split_once('@')
        .map(|(n, v)| format!("/a/kit/{n}/{}", query_escape(v)))
        .unwrap_or_default()
}
