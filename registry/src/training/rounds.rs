//! The rounds' life in the registry: the service's one entry, policies,
//! making a round, claims under leases, listing, and the tick that follows a
//! released round's deployment and starts automatic rounds.

use algobay_runtime::{Digest, Manifest};

use super::runs::*;
use crate::domain::*;
use crate::error::{RegistryError, Result};
use crate::service::{json, parse, Registry};
use crate::store::{Batch, Tree};

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
            TrainCall::Aliases { enterprise, kit } => {
                let e = self.tenant(p, &enterprise)?;
                self.aliases(&e, &kit).map(TrainReply::Aliases)
            }
        }
    }

    pub(super) fn set_policy(&self, p: &Principal, mut policy: TrainPolicy) -> Result<TrainPolicy> {
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

    pub(super) fn policy(&self, enterprise: &str, kit: &str) -> Result<TrainPolicy> {
        let key = format!("{enterprise}/{kit}");
        Ok(match self.kv.get(Tree::TrainPolicies, key.as_bytes())? {
            Some(v) => parse("training policy", &v)?,
            None => TrainPolicy::default_for(enterprise, kit),
        })
    }

    /// The newest published version of a kit name that has a training recipe, and its manifest.
    pub(super) fn trainable(&self, kit: &str) -> Result<(Artifact, Manifest)> {
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
    pub(super) fn champion(&self, enterprise: &str, kit: &str) -> Result<(String, Digest)> {
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

    /// The aliases of a kit for an enterprise: `champion`, the kit serving
    /// (its newest deployment not rolled back), and `previous`, the one it
    /// replaced. They move with the deployments; nothing is overwritten.
    pub(super) fn aliases(&self, enterprise: &str, kit: &str) -> Result<Aliases> {
        let mut live: Vec<Deployment> = self
            .deployments_of(enterprise)?
            .into_iter()
            .filter(|d| {
                d.state != DeploymentState::RolledBack
                    && d.kit_reference.split('@').next() == Some(kit)
            })
            .collect();
        live.sort_by(|a, b| b.seq.cmp(&a.seq));
        let champion = live
            .first()
            .map(|d| (d.kit_reference.clone(), d.kit_digest));
        let previous = live
            .iter()
            .find(|d| Some(d.kit_digest) != champion.as_ref().map(|c| c.1))
            .map(|d| (d.kit_reference.clone(), d.kit_digest));
        Ok(Aliases { champion, previous })
    }

    pub(super) fn runs_of(&self, enterprise: &str) -> Result<Vec<Run>> {
        self.kv
            .scan_prefix(Tree::Runs, format!("{enterprise}/").as_bytes())?
            .into_iter()
            .map(|(_, v)| parse("run", &v))
            .collect()
    }

    /// Makes the next round of `kit` for `enterprise` (one unfinished round at
    /// a time). A round collecting post-drift labels is started as it is.
    pub(crate) fn start_run(&self, enterprise: &str, kit: &str, trigger: String) -> Result<Run> {
        self.make_run(enterprise, kit, trigger, None)
    }

    /// [`Self::start_run`]; with `drift_since`, the round waits for labels of
    /// samples received from then on, and trains and is judged on those alone.
    pub(super) fn make_run(
        &self,
        enterprise: &str,
        kit: &str,
        trigger: String,
        drift_since: Option<i64>,
    ) -> Result<Run> {
        let (_, manifest) = self.trainable(kit)?;
        let (champion, champion_digest) = self.champion(enterprise, kit)?;
        let runs: Vec<Run> = self
            .runs_of(enterprise)?
            .into_iter()
            .filter(|r| r.kit == kit)
            .collect();
        if let Some(open) = runs.iter().find(|r| !r.state.finished()) {
            if open.state == RunState::Collecting && drift_since.is_none() {
                let fresh = self.fresh_labels(enterprise, kit, open.field_since_unix - 1)?;
                return self.begin_collected(
                    open,
                    format!("{trigger}, with {fresh} labels since the drift began"),
                );
            }
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
        let seq = self.next_seq()?;
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
            field_since_unix: drift_since.unwrap_or(0),
            created_unix: now,
            updated_unix: now,
        };
        let state = if drift_since.is_some() {
            RunState::Collecting
        } else {
            RunState::Pending
        };
        run.to(state, now, trigger);
        self.insert_new(Tree::Runs, &run.key(), json(&run), "run")?;
        tracing::info!(run = %run.id, enterprise, kit, round, "training run made");
        Ok(run)
    }

    /// Moves a round that collected post-drift labels on to training.
    pub(super) fn begin_collected(&self, open: &Run, why: String) -> Result<Run> {
        let key = open.key();
        let mut n = open.clone();
        n.to(RunState::Pending, self.clock.now_unix(), why);
        if !self.swap_run(&key, open, &n)? {
            return Err(RegistryError::FailedPrecondition(format!(
                "run {} changed meanwhile; try again",
                open.id
            )));
        }
        tracing::info!(run = %n.id, "post-drift labels arrived; the round may train");
        Ok(n)
    }

    pub(super) fn find_run(&self, id: &str) -> Result<(String, Run)> {
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
    pub(super) fn swap_run(&self, key: &str, old: &Run, new: &Run) -> Result<bool> {
        self.kv.commit(
            Batch::new()
                .check(Tree::Runs, key.as_bytes(), Some(json(old)))
                .put(Tree::Runs, key.as_bytes(), json(new)),
        )
    }

    pub(super) fn team_of_kit(kit: &str) -> &str {
        kit.split('/').next().unwrap_or_default()
    }

    /// Gives the oldest claimable run of the caller's team's kits: pending, or
    /// held under a lease that ran out.
    pub(super) fn claim_run(
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
    pub(super) fn leased(
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

    pub(super) fn list_runs(&self, p: &Principal, enterprise: &str, kit: &str) -> Result<Vec<Run>> {
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

    pub(super) fn get_run(&self, p: &Principal, id: &str) -> Result<Run> {
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
}
