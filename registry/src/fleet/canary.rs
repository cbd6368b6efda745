//! Canaries: which devices take a rollout first, and the field part of its
//! health gate, judged paired on the canaries' own requests.
//!
//! A field-gated rollout (a retrained round's, whose `control` is the kit it
//! replaces) goes first to devices chosen at random among those serving the
//! control kit, so that each can keep answering with the control in the
//! shadow: every request a canary serves is answered by both kits, and the
//! application's feedback on it scores both. The two are compared on the same
//! requests with the gate's paired non-inferiority test (the base rule's:
//! [`crate::training::gate::non_inferiority`]) at the rollout's margin, never
//! against other devices' traffic, which may differ in kind.

use rand::seq::SliceRandom;

use crate::domain::*;
use crate::error::Result;
use crate::service::{parse, Registry};
use crate::store::Tree;
use crate::training::gate::{self, GateRules, Paired, Verdict};

/// Picks `n` canaries at random: first among the devices that serve the
/// control kit (they can run it in the shadow), then among the rest. Returns
/// their ids and how they were chosen.
pub(super) fn choose(
    targets: &[Device],
    n: usize,
    gate: Option<&FieldGate>,
) -> (Vec<String>, String) {
    let mut rng = rand::thread_rng();
    let control = gate.map(|g| g.control.to_string());
    let (mut eligible, mut rest): (Vec<&Device>, Vec<&Device>) = targets
        .iter()
        .partition(|d| control.as_ref().is_none_or(|c| d.state.active_digest == *c));
    eligible.shuffle(&mut rng);
    rest.shuffle(&mut rng);
    let why = match &control {
        Some(_) => format!(
            "chosen at random among {} device(s) serving the control kit",
            eligible.len()
        ),
        None => format!("chosen at random among {}", eligible.len()),
    };
    let mut chosen: Vec<String> = eligible
        .iter()
        .chain(rest.iter())
        .take(n)
        .map(|d| d.id.clone())
        .collect();
    chosen.sort();
    (chosen, why)
}

/// What the field gate says of a canary rollout now.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum FieldVerdict {
    Waiting(String),
    Fail(String),
    Pass(String),
}

impl Registry {
    /// The canaries' labelled requests since the rollout began, each scored
    /// for the control kit (the shadow) and the new kit: (champion right,
    /// challenger right), in one order.
    fn canary_pairs(&self, dep: &Deployment, g: &FieldGate) -> Result<(Vec<bool>, Vec<bool>)> {
        let (mut champion, mut challenger) = (Vec::new(), Vec::new());
        let prefix = format!("{}/{}/", dep.enterprise, dep.kit_digest);
        for (k, v) in self.kv.scan_prefix(Tree::Samples, prefix.as_bytes())? {
            let rec: SampleRecord = parse("sample", &v)?;
            if !dep.canary_devices.contains(&rec.device_id) || rec.shadow_digest != Some(g.control)
            {
                continue;
            }
            let key = format!("{}/feedback", String::from_utf8_lossy(&k));
            let Some(l) = self.kv.get(Tree::Labels, key.as_bytes())? else {
                continue;
            };
            let label: Label = parse("label", &l)?;
            if label.at_unix < dep.created_unix {
                continue;
            }
            let answer = |json: &str| -> Option<String> {
                let out: serde_json::Value = serde_json::from_str(json).ok()?;
                answer_label(&out).map(str::to_owned)
            };
            let truth = Some(label.value.clone());
            champion.push(answer(&rec.shadow_outputs_json) == truth);
            challenger.push(answer(&rec.outputs_json) == truth);
        }
        Ok((champion, challenger))
    }

    /// The field gate of a canary rollout: wait for `min_count` labelled
    /// requests answered by both kits, then the paired test at the margin.
    pub(super) fn field_gate(&self, dep: &Deployment, g: &FieldGate) -> Result<FieldVerdict> {
        let (champion, challenger) = self.canary_pairs(dep, g)?;
        let n = champion.len();
        if n < g.min_count as usize {
            return Ok(FieldVerdict::Waiting(format!(
                "waiting for feedback: {n}/{} labelled requests on the canaries, each answered by both kits",
                g.min_count
            )));
        }
        let rules = GateRules::default();
        let slice = gate::compare(
            Paired {
                champion: &champion,
                challenger: &challenger,
            },
            &rules,
        );
        let test = gate::non_inferiority(&slice, g.margin, rules.alpha);
        let figures = format!(
            "field accuracy on the canaries' {n} labelled requests: control {:.3}, new kit {:.3} (control alone right on {}, new kit alone on {}; McNemar p = {:.2e}; score z = {:.2}, p = {:.2e})",
            slice.champion_accuracy, slice.challenger_accuracy, slice.b, slice.c, slice.p, test.z, test.p
        );
        Ok(match test.verdict {
            Verdict::NonInferior => FieldVerdict::Pass(format!(
                "within {} of the control, paired: {figures}",
                g.margin
            )),
            Verdict::TooFewRows => FieldVerdict::Waiting(format!(
                "waiting for feedback: {n} labelled requests on the canaries, {} needed to judge a margin of {} ({figures})",
                test.rows_needed, g.margin
            )),
            Verdict::Inferior => FieldVerdict::Fail(format!(
                "the new kit loses more than {} to the control on the same requests: {figures}",
                g.margin
            )),
            Verdict::NotShown => FieldVerdict::Fail(format!(
                "the new kit is not shown within {} of the control on the same requests ({} were enough to): {figures}",
                g.margin, test.rows_needed
            )),
        })
    }
}
