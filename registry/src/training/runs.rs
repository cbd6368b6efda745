//! Training runs: one immutable record per round of a kit for an enterprise,
//! claimed by trainers with a lease, judged by the gate in the registry,
//! released as a deployment to the enterprise's devices.
//!
//! States: `pending → training → evaluating → rejected | insufficient_evidence
//! | promoted → deploying → serving | rolled_back`, or `failed` from any
//! unfinished one. Each change is kept with its time and reason. A run whose
//! trainer stops renewing its lease goes back to whoever claims next; the
//! version a round releases is fixed when the run is made, so a retry cannot
//! release a second one.

use std::collections::{BTreeMap, BTreeSet};

use algobay_runtime::manifest::Training;
use algobay_runtime::{Digest, Manifest};
use serde::{Deserialize, Serialize};

use super::gate::{self, Decision, GateReport, GateRules, Paired};
use crate::domain::*;
use crate::error::{RegistryError, Result};
use crate::service::{json, parse, Registry};
use crate::store::{Batch, Tree};

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
    pub updated_unix: i64,
    pub updated_by: String,
}

fn default_teacher_threshold() -> f64 {
    0.9
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
            updated_unix: 0,
            updated_by: String::new(),
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.enterprise, self.kit)
    }

    fn check(&self) -> Result<()> {
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
    fn leased(self) -> bool {
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
    pub created_unix: i64,
    pub updated_unix: i64,
}

impl Run {
    fn key(&self) -> String {
        format!("{}/{}", self.enterprise, self.id)
    }

    fn to(&mut self, state: RunState, at: i64, reason: impl Into<String>) {
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
const MAX_UNLABELLED: usize = 5000;

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
}

fn random_token() -> String {
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
fn best_label(labels: &[Label]) -> Option<&Label> {
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
fn held_out(devices: &[String], device: &str, sample_id: &str) -> bool {
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

impl Registry {
    /// The training service's one entry.
    pub fn train(&self, p: &Principal, call: TrainCall) -> Result<TrainReply> {
        match call {
            TrainCall::SetPolicy(policy) => self.set_policy(p, policy).map(TrainReply::Policy),
            TrainCall::Policy { enterprise, kit } => {
                let e = self.tenant(p, &enterprise)?;
                self.policy(&e, &kit).map(TrainReply::Policy)
            }
            TrainCall::Start { enterprise, kit } => {
                let e = self.tenant(p, &enterprise)?;
                self.start_run(&e, &kit, format!("started by {}", p.token_id))
                    .map(|r| TrainReply::Run(Box::new(r)))
            }
            TrainCall::Claim {
                holder,
                lease_seconds,
            } => self
                .claim_run(p, &holder, lease_seconds)
                .map(|c| TrainReply::Claimed(c.map(|(r, t)| (Box::new(r), t)))),
            TrainCall::Renew {
                run,
                token,
                lease_seconds,
            } => self
                .leased(p, &run, &token, |r, now| {
                    if let Some(l) = &mut r.lease {
                        l.until_unix = now + lease_seconds.clamp(1, MAX_LEASE_SECONDS) as i64;
                    }
                    Ok(())
                })
                .map(|r| TrainReply::Run(Box::new(r))),
            TrainCall::Data { run, token } => {
                let r = self.leased(p, &run, &token, |_, _| Ok(()))?;
                let data = self.run_data(&r)?;
                // The holdout the trainer is given is the one it is judged on.
                let ids: Vec<String> = data.holdout.iter().map(|s| s.sample_id.clone()).collect();
                self.leased(p, &run, &token, move |r, _| {
                    r.holdout = ids;
                    Ok(())
                })?;
                Ok(TrainReply::Data(Box::new(data)))
            }
            TrainCall::Evaluate {
                run,
                token,
                evaluation,
            } => self
                .evaluate_run(p, &run, &token, evaluation)
                .map(|r| TrainReply::Run(Box::new(r))),
            TrainCall::Release { run, token, kit } => self
                .release_run(p, &run, &token, &kit)
                .map(|r| TrainReply::Run(Box::new(r))),
            TrainCall::Fail { run, token, reason } => self
                .leased(p, &run, &token, |r, now| {
                    let reason = crate::limits::shown(&reason);
                    r.to(
                        RunState::Failed,
                        now,
                        format!("the trainer failed: {reason}"),
                    );
                    r.lease = None;
                    Ok(())
                })
                .map(|r| TrainReply::Run(Box::new(r))),
            TrainCall::Teach { run, token, labels } => {
                let r = self.leased(p, &run, &token, |_, _| Ok(()))?;
                self.teach(&r, labels)
                    .map(|(kept, low)| TrainReply::Taught(kept, low))
            }
            TrainCall::List { enterprise, kit } => {
                self.list_runs(p, &enterprise, &kit).map(TrainReply::Runs)
            }
            TrainCall::Get { run } => self.get_run(p, &run).map(|r| TrainReply::Run(Box::new(r))),
        }
    }

    fn set_policy(&self, p: &Principal, mut policy: TrainPolicy) -> Result<TrainPolicy> {
        policy.enterprise = self.tenant(p, &policy.enterprise)?;
        self.trainable(&policy.kit)?;
        policy.check()?;
        if !policy.teacher.is_empty() {
            let t = self
                .get_for(p, &policy.teacher, Some(Kind::Kit))
                .map_err(|_| {
                    RegistryError::invalid(
                        "policy.teacher",
                        format!(
                            "kit `{}` is not found",
                            crate::limits::shown(&policy.teacher)
                        ),
                    )
                })?;
            policy.teacher = t.reference();
        }
        policy.updated_unix = self.clock.now_unix();
        policy.updated_by = p.token_id.clone();
        self.kv
            .commit(Batch::new().put(Tree::TrainPolicies, policy.key(), json(&policy)))?;
        Ok(policy)
    }

    fn policy(&self, enterprise: &str, kit: &str) -> Result<TrainPolicy> {
        let key = format!("{enterprise}/{kit}");
        Ok(match self.kv.get(Tree::TrainPolicies, key.as_bytes())? {
            Some(v) => parse("training policy", &v)?,
            None => TrainPolicy::default_for(enterprise, kit),
        })
    }

    /// The newest published version of a kit name that has a training recipe, and its manifest.
    fn trainable(&self, kit: &str) -> Result<(Artifact, Manifest)> {
        algobay_runtime::manifest::validate_name("kit", kit)
            .map_err(|e| RegistryError::invalid("kit", e.to_string()))?;
        let prefix = format!("{}/{kit}/", Kind::Kit.as_str());
        let newest = self
            .kv
            .scan_prefix(Tree::Artifacts, prefix.as_bytes())?
            .into_iter()
            .filter_map(|(_, v)| parse::<Artifact>("artifact", &v).ok())
            .filter(|a| a.private_to.is_empty())
            .max_by(|a, b| {
                let va = semver::Version::parse(&a.version).ok();
                let vb = semver::Version::parse(&b.version).ok();
                va.cmp(&vb)
            })
            .ok_or_else(|| {
                RegistryError::NotFound(format!("kit `{}`", crate::limits::shown(kit)))
            })?;
        let m = Manifest::from_json(&self.blobs().read_all(&newest.digest)?)?;
        if m.training.is_none() {
            return Err(RegistryError::FailedPrecondition(format!(
                "kit {} has no [training] section; it cannot be retrained",
                newest.reference()
            )));
        }
        Ok((newest, m))
    }

    /// The kit of this name serving the enterprise: the newest deployment of it
    /// that was not rolled back.
    fn champion(&self, enterprise: &str, kit: &str) -> Result<(String, Digest)> {
        let mut best: Option<Deployment> = None;
        for d in self.deployments_of(enterprise)? {
            let name = d.kit_reference.split('@').next().unwrap_or_default();
            if name == kit
                && d.state != DeploymentState::RolledBack
                && best.as_ref().is_none_or(|b| d.seq > b.seq)
            {
                best = Some(d);
            }
        }
        best.map(|d| (d.kit_reference, d.kit_digest)).ok_or_else(|| {
            RegistryError::FailedPrecondition(format!(
                "kit `{}` is not deployed to enterprise `{enterprise}`; deploy it before training it",
                crate::limits::shown(kit)
            ))
        })
    }

    fn runs_of(&self, enterprise: &str) -> Result<Vec<Run>> {
        self.kv
            .scan_prefix(Tree::Runs, format!("{enterprise}/").as_bytes())?
            .into_iter()
            .map(|(_, v)| parse("run", &v))
            .collect()
    }

    /// Makes the next round of `kit` for `enterprise` (one unfinished round at a time).
    pub(crate) fn start_run(&self, enterprise: &str, kit: &str, trigger: String) -> Result<Run> {
        let (_, manifest) = self.trainable(kit)?;
        let (champion, champion_digest) = self.champion(enterprise, kit)?;
        let runs: Vec<Run> = self
            .runs_of(enterprise)?
            .into_iter()
            .filter(|r| r.kit == kit)
            .collect();
        if let Some(open) = runs.iter().find(|r| !r.state.finished()) {
            return Err(RegistryError::FailedPrecondition(format!(
                "run {} of kit `{kit}` is still {}; one round at a time",
                open.id,
                open.state.as_str()
            )));
        }
        let policy = self.policy(enterprise, kit)?;
        let round = runs.len() as u32 + 1;
        let champion_version = champion
            .split('@')
            .nth(1)
            .unwrap_or(&manifest.version)
            .to_owned();
        let now = self.clock.now_unix();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let mut run = Run {
            id: format!("run-{seq:06}"),
            seq,
            enterprise: enterprise.into(),
            kit: kit.into(),
            champion,
            champion_digest,
            round,
            version: round_version(&champion_version, enterprise, round)?,
            private_to: if policy.share {
                String::new()
            } else {
                enterprise.into()
            },
            trigger: trigger.clone(),
            state: RunState::Pending,
            history: Vec::new(),
            lease: None,
            attempts: 0,
            lineage: None,
            gate: None,
            release: None,
            holdout: Vec::new(),
            created_unix: now,
            updated_unix: now,
        };
        run.to(RunState::Pending, now, trigger);
        self.insert_new(Tree::Runs, &run.key(), json(&run), "run")?;
        tracing::info!(run = %run.id, enterprise, kit, round, "training run made");
        Ok(run)
    }

    fn find_run(&self, id: &str) -> Result<(String, Run)> {
        for (k, v) in self.kv.scan_prefix(Tree::Runs, b"")? {
            let r: Run = parse("run", &v)?;
            if r.id == id {
                return Ok((String::from_utf8_lossy(&k).into_owned(), r));
            }
        }
        Err(RegistryError::NotFound(format!(
            "run `{}`",
            crate::limits::shown(id)
        )))
    }

    /// Replaces a run if nobody changed it meanwhile; false if somebody did.
    fn swap_run(&self, key: &str, old: &Run, new: &Run) -> Result<bool> {
        self.kv.commit(
            Batch::new()
                .check(Tree::Runs, key.as_bytes(), Some(json(old)))
                .put(Tree::Runs, key.as_bytes(), json(new)),
        )
    }

    fn team_of_kit(kit: &str) -> &str {
        kit.split('/').next().unwrap_or_default()
    }

    /// Gives the oldest claimable run of the caller's team's kits: pending, or
    /// held under a lease that ran out.
    fn claim_run(
        &self,
        p: &Principal,
        holder: &str,
        lease_seconds: u32,
    ) -> Result<Option<(Run, String)>> {
        if p.role != Role::Team && p.role != Role::Operator {
            return Err(RegistryError::PermissionDenied(
                "only a team's token (or an operator's) claims training runs".into(),
            ));
        }
        crate::limits::check_len("holder", holder, 128)?;
        let now = self.clock.now_unix();
        let mut all: Vec<(Vec<u8>, Run)> = self
            .kv
            .scan_prefix(Tree::Runs, b"")?
            .into_iter()
            .map(|(k, v)| Ok((k, parse::<Run>("run", &v)?)))
            .collect::<Result<_>>()?;
        all.sort_by_key(|(_, r)| r.seq);
        for (k, r) in all {
            if !p.may_publish_for(Self::team_of_kit(&r.kit)) {
                continue;
            }
            let expired = r.state.leased() && r.lease.as_ref().is_none_or(|l| l.until_unix < now);
            if r.state != RunState::Pending && !expired {
                continue;
            }
            let mut n = r.clone();
            let token = random_token();
            let reason = if expired {
                let who = r.lease.as_ref().map(|l| l.holder.as_str()).unwrap_or("?");
                format!("the lease of `{who}` ran out; claimed again by `{holder}`")
            } else {
                format!("claimed by `{holder}`")
            };
            n.attempts += 1;
            n.lease = Some(Lease {
                holder: holder.into(),
                token: token.clone(),
                until_unix: now + lease_seconds.clamp(1, MAX_LEASE_SECONDS) as i64,
            });
            // A run already judged goes on from where it was; one that was
            // training starts its training again.
            let state = if r.state == RunState::Promoted {
                RunState::Promoted
            } else {
                RunState::Training
            };
            n.to(state, now, format!("{reason} (attempt {})", n.attempts));
            let key = String::from_utf8_lossy(&k).into_owned();
            if self.swap_run(&key, &r, &n)? {
                return Ok(Some((n, token)));
            }
        }
        Ok(None)
    }

    /// Changes a run the caller holds the lease of.
    fn leased(
        &self,
        p: &Principal,
        id: &str,
        token: &str,
        change: impl FnOnce(&mut Run, i64) -> Result<()>,
    ) -> Result<Run> {
        let (key, r) = self.find_run(id)?;
        if !p.may_publish_for(Self::team_of_kit(&r.kit)) {
            return Err(RegistryError::NotFound(format!("run `{id}`")));
        }
        let now = self.clock.now_unix();
        match &r.lease {
            Some(l) if l.token == token && l.until_unix >= now && r.state.leased() => {}
            Some(l) if l.token == token && r.state.leased() => {
                return Err(RegistryError::FailedPrecondition(format!(
                    "the lease on run {id} ran out; claim it again"
                )))
            }
            _ => {
                return Err(RegistryError::FailedPrecondition(format!(
                    "run {id} is {} and this lease is not the one it is under",
                    r.state.as_str()
                )))
            }
        }
        let mut n = r.clone();
        change(&mut n, now)?;
        n.updated_unix = now;
        if !self.swap_run(&key, &r, &n)? {
            return Err(RegistryError::FailedPrecondition(format!(
                "run {id} changed meanwhile; try again"
            )));
        }
        Ok(n)
    }

    /// The labelled field samples of a run's enterprise for its kit, split into
    /// what trains and what is held out. Teacher labels never enter the holdout.
    fn run_data(&self, run: &Run) -> Result<RunData> {
        let (_, manifest) = self.trainable(&run.kit)?;
        let policy = self.policy(&run.enterprise, &run.kit)?;
        let mut rows = Vec::new();
        let mut unlabelled = Vec::new();
        let mut devices = BTreeSet::new();
        for (k, v) in self
            .kv
            .scan_prefix(Tree::Samples, format!("{}/", run.enterprise).as_bytes())?
        {
            let rec: SampleRecord = parse("sample", &v)?;
            if rec.kit_reference.split('@').next() != Some(run.kit.as_str()) {
                continue;
            }
            devices.insert(rec.device_id.clone());
            let key = String::from_utf8_lossy(&k).into_owned();
            let labels: Vec<Label> = self
                .kv
                .scan_prefix(Tree::Labels, format!("{key}/").as_bytes())?
                .into_iter()
                .map(|(_, v)| parse("label", &v))
                .collect::<Result<_>>()?;
            // The model reads one input; the sample's first is it.
            let Some(input) = rec.inputs.first() else {
                continue;
            };
            let Some(label) = best_label(&labels).cloned() else {
                if !policy.teacher.is_empty() && unlabelled.len() < MAX_UNLABELLED {
                    unlabelled.push(FieldRow {
                        sample_id: rec.id.clone(),
                        device_id: rec.device_id.clone(),
                        source: LabelSource::Teacher,
                        label: String::new(),
                        datatype: input.datatype.clone(),
                        shape: input.shape.clone(),
                        data: self
                            .kv
                            .get(
                                Tree::SampleInputs,
                                crate::access::sample_key(&run.enterprise, &input.digest)
                                    .as_bytes(),
                            )?
                            .unwrap_or_default(),
                    });
                }
                continue;
            };
            let data = self
                .kv
                .get(
                    Tree::SampleInputs,
                    crate::access::sample_key(&run.enterprise, &input.digest).as_bytes(),
                )?
                .unwrap_or_default();
            rows.push(FieldRow {
                sample_id: rec.id,
                device_id: rec.device_id,
                source: label.source,
                label: label.value,
                datatype: input.datatype.clone(),
                shape: input.shape.clone(),
                data,
            });
        }
        let devices: Vec<String> = devices.into_iter().collect();
        let teacher_digest = if policy.teacher.is_empty() {
            String::new()
        } else {
            self.get(&policy.teacher, Some(Kind::Kit))?
                .digest
                .to_string()
        };
        let mut out = RunData {
            recipe: manifest.training,
            teacher: policy.teacher.clone(),
            teacher_digest,
            teacher_threshold: policy.teacher_threshold,
            unlabelled,
            ..RunData::default()
        };
        rows.sort_by(|a, b| a.sample_id.cmp(&b.sample_id));
        for r in rows {
            if held_out(&devices, &r.device_id, &r.sample_id) {
                if r.source != LabelSource::Teacher {
                    out.holdout.push(r);
                }
            } else {
                out.train.push(r);
            }
        }
        Ok(out)
    }

    /// Keeps the teacher's labels at or above the policy's threshold, on
    /// samples of the round. (kept, below the threshold)
    fn teach(&self, run: &Run, labels: Vec<(String, String, f64)>) -> Result<(u32, u32)> {
        let policy = self.policy(&run.enterprise, &run.kit)?;
        if policy.teacher.is_empty() {
            return Err(RegistryError::FailedPrecondition(format!(
                "enterprise `{}` names no teacher for kit `{}`",
                run.enterprise, run.kit
            )));
        }
        if labels.len() > MAX_UNLABELLED {
            return Err(RegistryError::TooLarge(format!(
                "{} teacher labels in one call, over the limit of {MAX_UNLABELLED}",
                labels.len()
            )));
        }
        let teacher = self.get(&policy.teacher, Some(Kind::Kit))?;
        let mut open: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in self
            .kv
            .scan_prefix(Tree::Samples, format!("{}/", run.enterprise).as_bytes())?
        {
            let rec: SampleRecord = parse("sample", &v)?;
            if rec.kit_reference.split('@').next() == Some(run.kit.as_str()) {
                open.insert(rec.id, String::from_utf8_lossy(&k).into_owned());
            }
        }
        let now = self.clock.now_unix();
        let (mut kept, mut low) = (0u32, 0u32);
        let mut batch = Batch::new();
        for (i, (id, value, confidence)) in labels.into_iter().enumerate() {
            let key = open.get(&id).ok_or_else(|| {
                RegistryError::invalid(
                    format!("labels[{i}].sample_id"),
                    format!(
                        "`{}` is not a sample of this round",
                        crate::limits::shown(&id)
                    ),
                )
            })?;
            if !(0.0..=1.0).contains(&confidence) {
                return Err(RegistryError::invalid(
                    format!("labels[{i}].confidence"),
                    format!("{confidence} is not in [0, 1]"),
                ));
            }
            crate::limits::check_len(
                &format!("labels[{i}].value"),
                &value,
                crate::limits::text::ITEM,
            )?;
            if confidence < policy.teacher_threshold || value.trim().is_empty() {
                low += 1;
                continue;
            }
            let label = Label {
                value: value.trim().to_owned(),
                source: LabelSource::Teacher,
                by: format!("{} {}", teacher.reference(), teacher.digest),
                at_unix: now,
            };
            batch = batch.put(Tree::Labels, format!("{key}/teacher"), json(&label));
            kept += 1;
        }
        if kept > 0 && !self.kv.commit(batch)? {
            return Err(RegistryError::Storage(
                "teacher labels were not written".into(),
            ));
        }
        Ok((kept, low))
    }

    /// Judges a trained challenger: the gate on the trainer's answers, scored
    /// against the labels the registry holds.
    fn evaluate_run(&self, p: &Principal, id: &str, token: &str, ev: Evaluation) -> Result<Run> {
        let (_, current) = self.find_run(id)?;
        if current.state != RunState::Training {
            return Err(RegistryError::FailedPrecondition(format!(
                "run {id} is {}, not training",
                current.state.as_str()
            )));
        }
        let data = self.run_data(&current)?;
        let given: BTreeSet<&str> = current.holdout.iter().map(String::as_str).collect();
        let truth: BTreeMap<&str, &str> = data
            .holdout
            .iter()
            .filter(|r| given.contains(r.sample_id.as_str()))
            .map(|r| (r.sample_id.as_str(), r.label.as_str()))
            .collect();
        let answered: BTreeSet<&str> = ev.field.iter().map(|(s, _, _)| s.as_str()).collect();
        if answered.len() != ev.field.len() {
            return Err(RegistryError::invalid(
                "evaluation.field",
                "a sample is answered twice",
            ));
        }
        if let Some(missing) = truth.keys().find(|s| !answered.contains(*s)) {
            return Err(RegistryError::invalid(
                "evaluation.field",
                format!("field holdout sample {missing} is not answered"),
            ));
        }
        if let Some(extra) = answered.iter().find(|s| !truth.contains_key(*s)) {
            return Err(RegistryError::invalid(
                "evaluation.field",
                format!(
                    "sample {} is not in the run's field holdout",
                    crate::limits::shown(extra)
                ),
            ));
        }
        if ev.base.is_empty() {
            return Err(RegistryError::invalid(
                "evaluation.base",
                "the base holdout has no rows",
            ));
        }
        let (fc, fh): (Vec<bool>, Vec<bool>) = ev
            .field
            .iter()
            .map(|(s, champ, chal)| {
                let t = truth[s.as_str()];
                (champ == t, chal == t)
            })
            .unzip();
        let (bc, bh): (Vec<bool>, Vec<bool>) = ev.base.iter().copied().unzip();
        let rules = self.policy(&current.enterprise, &current.kit)?.rules;
        let report = gate::evaluate(
            Paired {
                champion: &fc,
                challenger: &fh,
            },
            Paired {
                champion: &bc,
                challenger: &bh,
            },
            rules,
        );
        self.leased(p, id, token, move |r, now| {
            r.to(
                RunState::Evaluating,
                now,
                format!(
                    "trained in {:.1}s on {} base rows and {} field samples",
                    ev.lineage.train_seconds,
                    ev.lineage.base_rows,
                    ev.lineage.samples.values().map(Vec::len).sum::<usize>()
                ),
            );
            let golden = (!ev.golden_failure.is_empty()).then(|| {
                format!(
                    "the challenger fails a golden sample: {}",
                    crate::limits::shown(&ev.golden_failure)
                )
            });
            let (state, why) = match &report.decision {
                _ if golden.is_some() => (RunState::Rejected, golden.unwrap_or_default()),
                Decision::Promote => (
                    RunState::Promoted,
                    format!(
                        "field accuracy {:.3} → {:.3} (p = {:.2e}), base {:.3} → {:.3}",
                        report.field.champion_accuracy,
                        report.field.challenger_accuracy,
                        report.field.p,
                        report.base.champion_accuracy,
                        report.base.challenger_accuracy
                    ),
                ),
                Decision::Reject(why) => (RunState::Rejected, why.clone()),
                Decision::InsufficientEvidence(why) => {
                    (RunState::InsufficientEvidence, why.clone())
                }
            };
            r.to(state, now, why);
            if state != RunState::Promoted {
                r.lease = None;
            }
            r.lineage = Some(ev.lineage);
            r.gate = Some(report);
            Ok(())
        })
    }

    /// Takes the kit a promoted round built and deploys it to the enterprise's
    /// devices with a canary.
    fn release_run(&self, p: &Principal, id: &str, token: &str, kit: &str) -> Result<Run> {
        let (_, current) = self.find_run(id)?;
        if current.state != RunState::Promoted {
            return Err(RegistryError::FailedPrecondition(format!(
                "run {id} is {}; only a promoted round is released",
                current.state.as_str()
            )));
        }
        let a = self.get(kit, Some(Kind::Kit))?;
        if a.name != current.kit || a.version != current.version {
            return Err(RegistryError::invalid(
                "kit",
                format!(
                    "{} is not this round's version {}@{}",
                    a.reference(),
                    current.kit,
                    current.version
                ),
            ));
        }
        if a.private_to != current.private_to {
            return Err(RegistryError::invalid(
                "kit",
                format!(
                    "{} is private to `{}`, the round's data allows `{}`",
                    a.reference(),
                    a.private_to,
                    if current.private_to.is_empty() {
                        "everyone"
                    } else {
                        &current.private_to
                    }
                ),
            ));
        }
        let m = Manifest::from_json(&self.blobs().read_all(&a.digest)?)?;
        let lineage = current.lineage.clone().unwrap_or_default();
        let step = m
            .training
            .as_ref()
            .map(|t| t.step.clone())
            .unwrap_or_default();
        let weights = m.steps.iter().find_map(|s| match &s.kind {
            algobay_runtime::manifest::StepKind::Candle { weights, .. } if s.name == step => {
                Some(weights.to_string())
            }
            _ => None,
        });
        if weights.as_deref() != Some(lineage.weights.as_str()) {
            return Err(RegistryError::invalid(
                "kit",
                format!(
                    "the weights of step `{step}` in {} are not the ones the gate judged ({})",
                    a.reference(),
                    lineage.weights
                ),
            ));
        }
        let champion = Manifest::from_json(&self.blobs().read_all(&current.champion_digest)?)?;
        let new_bytes: u64 = m
            .blobs
            .iter()
            .filter(|(d, _)| !champion.blobs.contains_key(d))
            .map(|(_, s)| *s)
            .sum();
        let kit_bytes: u64 = m.blobs.values().sum();
        let policy = self.policy(&current.enterprise, &current.kit)?;
        let acting = Principal {
            role: Role::Enterprise,
            subject: current.enterprise.clone(),
            token_id: format!("training {id}"),
        };
        let dep = self.create_deployment(
            &acting,
            &current.enterprise,
            &a.reference(),
            Labels::new(),
            RolloutPolicy {
                canary_share: policy.canary_share,
                soak_seconds: policy.soak_seconds,
                max_error_rate: 0.05,
                max_p99_ms: 0.0,
                manual_promote: false,
                sampling_off: false,
                field_gate: Some(FieldGate {
                    margin: policy.field_margin,
                    min_count: policy.min_field_count,
                    control: current.champion_digest,
                }),
            },
        )?;
        self.leased(p, id, token, move |r, now| {
            r.to(
                RunState::Deploying,
                now,
                format!(
                    "{} deployed as {} ({} new bytes of {})",
                    a.reference(),
                    dep.id,
                    new_bytes,
                    kit_bytes
                ),
            );
            r.lease = None;
            r.release = Some(Release {
                kit_reference: a.reference(),
                kit_digest: a.digest,
                deployment_id: dep.id.clone(),
                new_bytes,
                kit_bytes,
            });
            Ok(())
        })
    }

    fn list_runs(&self, p: &Principal, enterprise: &str, kit: &str) -> Result<Vec<Run>> {
        let runs = match p.role {
            Role::Team => {
                let mut all = Vec::new();
                for (_, v) in self.kv.scan_prefix(Tree::Runs, b"")? {
                    let r: Run = parse("run", &v)?;
                    if p.may_publish_for(Self::team_of_kit(&r.kit))
                        && (enterprise.is_empty() || r.enterprise == enterprise)
                    {
                        all.push(r);
                    }
                }
                all
            }
            _ => self.runs_of(&self.tenant(p, enterprise)?)?,
        };
        let mut runs: Vec<Run> = runs
            .into_iter()
            .filter(|r| kit.is_empty() || r.kit == kit)
            .collect();
        runs.sort_by_key(|r| r.seq);
        Ok(runs)
    }

    fn get_run(&self, p: &Principal, id: &str) -> Result<Run> {
        let (_, r) = self.find_run(id)?;
        let visible = match p.role {
            Role::Operator => true,
            Role::Team => p.may_publish_for(Self::team_of_kit(&r.kit)),
            _ => p.enterprise() == Some(r.enterprise.as_str()),
        };
        if !visible {
            return Err(RegistryError::NotFound(format!("run `{id}`")));
        }
        Ok(r)
    }

    /// Moves rounds on with time: a released round follows its deployment; an
    /// enterprise's automatic policy starts a round once enough new labels came.
    pub(crate) fn tick_training(&self) -> Result<()> {
        for (k, v) in self.kv.scan_prefix(Tree::Runs, b"")? {
            let r: Run = parse("run", &v)?;
            if r.state != RunState::Deploying {
                continue;
            }
            let Some(rel) = &r.release else { continue };
            let dep = self
                .deployments_of(&r.enterprise)?
                .into_iter()
                .find(|d| d.id == rel.deployment_id);
            let next = match dep.as_ref().map(|d| d.state) {
                Some(DeploymentState::Promoted) => Some((
                    RunState::Serving,
                    format!("{} serves every device", rel.kit_reference),
                )),
                Some(DeploymentState::RolledBack) => Some((
                    RunState::RolledBack,
                    dep.map(|d| d.reason).unwrap_or_default(),
                )),
                None => Some((
                    RunState::RolledBack,
                    format!("deployment {} is gone", rel.deployment_id),
                )),
                _ => None,
            };
            if let Some((state, why)) = next {
                let mut n = r.clone();
                n.to(state, self.clock.now_unix(), why);
                let key = String::from_utf8_lossy(&k).into_owned();
                let _ = self.swap_run(&key, &r, &n);
            }
        }
        for (_, v) in self.kv.scan_prefix(Tree::TrainPolicies, b"")? {
            let policy: TrainPolicy = parse("training policy", &v)?;
            if policy.auto {
                if let Err(e) = self.auto_start(&policy) {
                    tracing::debug!(error = %e, kit = %policy.kit, enterprise = %policy.enterprise, "no round started");
                }
            }
        }
        Ok(())
    }

    /// Starts a round when `min_new_labels` labels came since the last round began.
    fn auto_start(&self, policy: &TrainPolicy) -> Result<()> {
        let runs: Vec<Run> = self
            .runs_of(&policy.enterprise)?
            .into_iter()
            .filter(|r| r.kit == policy.kit)
            .collect();
        if runs.iter().any(|r| !r.state.finished()) {
            return Ok(());
        }
        let since = runs
            .iter()
            .map(|r| r.created_unix)
            .max()
            .unwrap_or(i64::MIN);
        let mut names: BTreeMap<String, bool> = BTreeMap::new();
        let mut fresh = 0u32;
        for (k, v) in self
            .kv
            .scan_prefix(Tree::Labels, format!("{}/", policy.enterprise).as_bytes())?
        {
            let label: Label = parse("label", &v)?;
            if label.at_unix <= since {
                continue;
            }
            let key = String::from_utf8_lossy(&k).into_owned();
            let digest = key.split('/').nth(1).unwrap_or_default().to_owned();
            let ours = match names.get(&digest) {
                Some(b) => *b,
                None => {
                    let b = self
                        .get(&digest, Some(Kind::Kit))
                        .is_ok_and(|a| a.name == policy.kit);
                    names.insert(digest, b);
                    b
                }
            };
            if ours {
                fresh += 1;
            }
        }
        if fresh >= policy.min_new_labels {
            self.start_run(
                &policy.enterprise,
                &policy.kit,
                format!("{fresh} new labels (policy: {})", policy.min_new_labels),
            )?;
        }
        Ok(())
    }
}
