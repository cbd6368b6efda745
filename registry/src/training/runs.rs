//! Training runs: one immutable record per round of a kit for an enterprise,
//! claimed by trainers with a lease, judged by the gate in the registry,
//! released as a deployment to the enterprise's devices.
//!
//! States: `[collecting_labels →] pending → training → evaluating → rejected
//! | insufficient_evidence | promoted → deploying → serving | rolled_back`, or
//! `failed` from any unfinished one. A round that drift started collects
//! labels first: it becomes pending once the policy's minimum of labels from
//! after the drift began has arrived, and trains on those alone. Each change is kept with its time and reason. A run whose
//! trainer stops renewing its lease goes back to whoever claims next; the
//! version a round releases is fixed when the run is made, so a retry cannot
//! release a second one.

use std::collections::BTreeMap;

use algobay_runtime::manifest::Training;
use algobay_runtime::Digest;
use serde::{Deserialize, Serialize};

use super::gate::{GateReport, GateRules};
use crate::domain::*;
use crate::error::{RegistryError, Result};

/// The longest lease a trainer may ask for.
pub const MAX_LEASE_SECONDS: u32 = 3600;

/// What an enterprise says about retraining one kit on its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainPolicy {
    pub enterprise: String,
    /// `team/name` of the kit.
    pub kit: String,
    /// Start a round by itself once `min_new_labels` labels arrived since the last.
    pub auto: bool,
    pub min_new_labels: u32,
    /// The gate's thresholds.
    pub rules: GateRules,
    /// How a promoted model reaches the devices.
    pub canary_share: f64,
    pub soak_seconds: u32,
    /// Canaries' feedback accuracy may fall below the other devices' by at most
    /// this much (0.05 = 5 points) once each side has `min_field_count` labels.
    pub field_margin: f64,
    pub min_field_count: u32,
    /// Whether models trained on this enterprise's samples may be public.
    pub share: bool,
    /// A larger kit that labels unlabelled samples (`team/name@version`);
    /// its labels may train, never judge. Empty: none.
    #[serde(default)]
    pub teacher: String,
    /// The teacher's labels are kept only at or above this confidence.
    #[serde(default = "default_teacher_threshold")]
    pub teacher_threshold: f64,
    /// With `auto`: a round starts once this long passed since the last one
    /// began and at least one label came meanwhile (0: not by time).
    #[serde(default)]
    pub max_interval_seconds: u32,
    /// With `auto`: a round starts when the share of requests kept as hard
    /// examples over the last `drift_window` requests reaches `drift_factor`
    /// times the champion's first window's (0: no drift trigger).
    #[serde(default)]
    pub drift_factor: f64,
    #[serde(default = "default_drift_window")]
    pub drift_window: u32,
    pub updated_unix: i64,
    pub updated_by: String,
}

fn default_teacher_threshold() -> f64 {
    0.9
}

fn default_drift_window() -> u32 {
    500
}

impl TrainPolicy {
    /// The policy an enterprise has before it sets one.
    pub fn default_for(enterprise: &str, kit: &str) -> TrainPolicy {
        TrainPolicy {
            enterprise: enterprise.into(),
            kit: kit.into(),
            auto: false,
            min_new_labels: 200,
            rules: GateRules::default(),
            canary_share: 0.33,
            soak_seconds: 5,
            field_margin: 0.05,
            min_field_count: 30,
            share: false,
            teacher: String::new(),
            teacher_threshold: default_teacher_threshold(),
            max_interval_seconds: 0,
            drift_factor: 0.0,
            drift_window: default_drift_window(),
            updated_unix: 0,
            updated_by: String::new(),
        }
    }

    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.enterprise, self.kit)
    }

    pub(super) fn check(&self) -> Result<()> {
        let r = &self.rules;
        if !(r.alpha > 0.0 && r.alpha < 1.0) {
            return Err(RegistryError::invalid(
                "policy.alpha",
                format!("{} is not in (0, 1)", r.alpha),
            ));
        }
        if !(0.0..=1.0).contains(&r.base_margin) {
            return Err(RegistryError::invalid(
                "policy.base_margin",
                format!("{} is not in [0, 1]", r.base_margin),
            ));
        }
        if !(100..=100_000).contains(&r.bootstrap_reps) {
            return Err(RegistryError::invalid(
                "policy.bootstrap_reps",
                format!("{} is not within 100..=100000", r.bootstrap_reps),
            ));
        }
        if !(self.canary_share > 0.0 && self.canary_share <= 1.0) {
            return Err(RegistryError::invalid(
                "policy.canary_share",
                format!("{} is not in (0, 1]", self.canary_share),
            ));
        }
        if !(0.0..=1.0).contains(&self.field_margin) {
            return Err(RegistryError::invalid(
                "policy.field_margin",
                format!("{} is not in [0, 1]", self.field_margin),
            ));
        }
        if !(self.teacher_threshold > 0.0 && self.teacher_threshold <= 1.0) {
            return Err(RegistryError::invalid(
                "policy.teacher_threshold",
                format!("{} is not in (0, 1]", self.teacher_threshold),
            ));
        }
        if self.drift_factor != 0.0 && !(self.drift_factor > 1.0 && self.drift_factor <= 1000.0) {
            return Err(RegistryError::invalid(
                "policy.drift_factor",
                format!("{} is not 0 (off) or in (1, 1000]", self.drift_factor),
            ));
        }
        if !(20..=1_000_000).contains(&self.drift_window) {
            return Err(RegistryError::invalid(
                "policy.drift_window",
                format!("{} requests is not within 20..=1000000", self.drift_window),
            ));
        }
        if self.max_interval_seconds != 0 && self.max_interval_seconds < 60 {
            return Err(RegistryError::invalid(
                "policy.max_interval_seconds",
                format!(
                    "{} is under a minute (0 turns it off)",
                    self.max_interval_seconds
                ),
            ));
        }
        if self.auto && self.min_new_labels == 0 {
            return Err(RegistryError::invalid(
                "policy.min_new_labels",
                "must be at least 1 when rounds start by themselves",
            ));
        }
        Ok(())
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Drift was seen; waiting for labels from after it began.
    #[serde(rename = "collecting_labels")]
    Collecting,
    Pending,
    Training,
    Evaluating,
    Rejected,
    InsufficientEvidence,
    Promoted,
    Deploying,
    Serving,
    RolledBack,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Collecting => "collecting_labels",
            RunState::Pending => "pending",
            RunState::Training => "training",
            RunState::Evaluating => "evaluating",
            RunState::Rejected => "rejected",
            RunState::InsufficientEvidence => "insufficient_evidence",
            RunState::Promoted => "promoted",
            RunState::Deploying => "deploying",
            RunState::Serving => "serving",
            RunState::RolledBack => "rolled_back",
            RunState::Failed => "failed",
        }
    }

    /// Whether the round is over (the next may start).
    pub fn finished(self) -> bool {
        matches!(
            self,
            RunState::Rejected
                | RunState::InsufficientEvidence
                | RunState::Serving
                | RunState::RolledBack
                | RunState::Failed
        )
    }

    /// Whether a trainer works on it under a lease.
    pub(super) fn leased(self) -> bool {
        matches!(
            self,
            RunState::Training | RunState::Evaluating | RunState::Promoted
        )
    }
}

/// One change of state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub state: RunState,
    pub at_unix: i64,
    pub reason: String,
}

/// A trainer's hold on a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub token: String,
    pub until_unix: i64,
}

/// Where a model came from: what went in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub dataset: String,
    pub dataset_digest: String,
    pub holdout: String,
    pub holdout_digest: String,
    /// sha256 over the base dataset digest and the ids of the samples trained on.
    pub snapshot_digest: String,
    /// Sample ids trained on, by label source.
    pub samples: BTreeMap<String, Vec<String>>,
    pub base_rows: u64,
    pub seed: u64,
    pub epochs: u64,
    pub learning_rate: f64,
    /// The trainer's version.
    pub code_version: String,
    pub train_seconds: f64,
    /// The champion's weights and the challenger's.
    pub parent_weights: String,
    pub weights: String,
}

/// What a trainer sends after training: both models' answers on the holdout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub lineage: Lineage,
    /// Base holdout rows: (champion right, challenger right).
    pub base: Vec<(bool, bool)>,
    /// Field holdout samples: (sample id, champion's class, challenger's class);
    /// the registry scores them against the labels it holds.
    pub field: Vec<(String, String, String)>,
    /// Why the challenger's kit failed a golden sample; empty when all passed.
    pub golden_failure: String,
    /// Median ms per call of each whole kit, measured side by side.
    pub champion_latency_ms: f64,
    pub challenger_latency_ms: f64,
    pub challenger_kit_bytes: u64,
    /// When the recipe's metric is `auc`: per field answer (same order),
    /// each model's positive-class score; per base row, both scores and the truth.
    pub field_scores: Vec<(f64, f64)>,
    pub base_scores: Vec<(f64, f64)>,
    pub base_positive: Vec<bool>,
}

/// What a promoted round released.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub kit_reference: String,
    pub kit_digest: Digest,
    pub deployment_id: String,
    /// Bytes a device holding the champion fetches for it.
    pub new_bytes: u64,
    pub kit_bytes: u64,
}

/// A round of training for one kit and one enterprise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub seq: u64,
    pub enterprise: String,
    /// `team/name` of the kit.
    pub kit: String,
    /// The kit serving when the round began.
    pub champion: String,
    pub champion_digest: Digest,
    /// This round's number for (kit, enterprise), from 1.
    pub round: u32,
    /// The version it releases, fixed when it is made.
    pub version: String,
    /// Whom the released kit is for (empty: public, the enterprise shared).
    pub private_to: String,
    pub trigger: String,
    pub state: RunState,
    pub history: Vec<Transition>,
    #[serde(default)]
    pub lease: Option<Lease>,
    pub attempts: u32,
    #[serde(default)]
    pub lineage: Option<Lineage>,
    #[serde(default)]
    pub gate: Option<GateReport>,
    #[serde(default)]
    pub release: Option<Release>,
    /// The field holdout as its trainer was given it (sample ids): what the
    /// gate judges, however many labels arrive meanwhile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holdout: Vec<String>,
    /// Field samples received before this time neither train nor judge the
    /// round (a drift-started round: the drift's first window).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub field_since_unix: i64,
    pub created_unix: i64,
    pub updated_unix: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Run {
    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.enterprise, self.id)
    }

    pub(super) fn to(&mut self, state: RunState, at: i64, reason: impl Into<String>) {
        self.state = state;
        self.updated_unix = at;
        self.history.push(Transition {
            state,
            at_unix: at,
            reason: reason.into(),
        });
    }
}

/// One field sample a trainer gets: its features, its label, where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldRow {
    pub sample_id: String,
    pub device_id: String,
    pub source: LabelSource,
    pub label: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

/// What a run trains and is judged on.
#[derive(Clone, Debug, Default)]
pub struct RunData {
    pub recipe: Option<Training>,
    pub train: Vec<FieldRow>,
    pub holdout: Vec<FieldRow>,
    /// The policy's teacher kit, its digest and threshold.
    pub teacher: String,
    pub teacher_digest: String,
    pub teacher_threshold: f64,
    /// Samples with no label yet (listed when there is a teacher; at most 5,000).
    pub unlabelled: Vec<FieldRow>,
}

/// Unlabelled samples a round lists for its teacher.
pub(super) const MAX_UNLABELLED: usize = 5000;

/// The calls of the training service.
#[derive(Clone, Debug)]
pub enum TrainCall {
    SetPolicy(TrainPolicy),
    Policy {
        enterprise: String,
        kit: String,
    },
    Start {
        enterprise: String,
        kit: String,
    },
    Claim {
        holder: String,
        lease_seconds: u32,
    },
    Renew {
        run: String,
        token: String,
        lease_seconds: u32,
    },
    Data {
        run: String,
        token: String,
    },
    Evaluate {
        run: String,
        token: String,
        evaluation: Evaluation,
    },
    Release {
        run: String,
        token: String,
        kit: String,
    },
    Fail {
        run: String,
        token: String,
        reason: String,
    },
    /// The teacher's (sample id, label, confidence) for unlabelled samples.
    Teach {
        run: String,
        token: String,
        labels: Vec<(String, String, f64)>,
    },
    List {
        enterprise: String,
        kit: String,
    },
    Aliases {
        enterprise: String,
        kit: String,
    },
    Get {
        run: String,
    },
}

/// Their answers.
#[derive(Clone, Debug)]
pub enum TrainReply {
    Policy(TrainPolicy),
    Run(Box<Run>),
    Claimed(Option<(Box<Run>, String)>),
    Data(Box<RunData>),
    Runs(Vec<Run>),
    /// Teacher labels kept, and dropped under the threshold.
    Taught(u32, u32),
    Aliases(Aliases),
}

/// `champion` (serving) and `previous` (what it replaced): reference and digest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Aliases {
    pub champion: Option<(String, Digest)>,
    pub previous: Option<(String, Digest)>,
}

pub(super) fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The version a round releases: the champion's next patch, marked with the
/// enterprise and the round (`1.0.1-acme.r2`), so every round has its own.
pub fn round_version(champion: &str, enterprise: &str, round: u32) -> Result<String> {
    let v = semver::Version::parse(champion)
        .map_err(|e| RegistryError::invalid("champion version", e.to_string()))?;
    let tag: String = enterprise
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Ok(format!(
        "{}.{}.{}-{tag}.r{round}",
        v.major,
        v.minor,
        v.patch + 1
    ))
}

/// The label a sample trains or is judged on: a person's over the
/// application's over a teacher's.
pub(super) fn best_label(labels: &[Label]) -> Option<&Label> {
    [
        LabelSource::Human,
        LabelSource::Feedback,
        LabelSource::Teacher,
    ]
    .iter()
    .find_map(|s| labels.iter().find(|l| l.source == *s))
}

/// Whether a device's samples are held out: every third device in the order of
/// their ids' digests (when there is more than one device; else every third sample).
pub(super) fn held_out(devices: &[String], device: &str, sample_id: &str) -> bool {
    if devices.len() < 2 {
        return Digest::of(sample_id.as_bytes()).hex().as_bytes()[0] % 3 == 0;
    }
    let mut order: Vec<(String, &String)> = devices
        .iter()
        .map(|d| (Digest::of(d.as_bytes()).hex(), d))
        .collect();
    order.sort();
    order
        .iter()
        .position(|(_, d)| d.as_str() == device)
        .is_some_and(|i| i % 3 == 0)
}
