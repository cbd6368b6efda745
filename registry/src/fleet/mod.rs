//! Fleets: enrollment of devices, deployments with canary rollouts and health
//! gates, and the desired state each device syncs. Tenant checks happen here:
//! an enterprise sees and changes only its own devices and deployments.

use std::collections::BTreeSet;

use rand::RngCore;

use algobay_runtime::Digest;

use crate::domain::*;
use crate::error::{RegistryError, Result};
use crate::service::{hash_secret, json, parse, Registry};
use crate::store::{Batch, Tree};

mod canary;
mod devices;

/// What can be done to a deployment by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentAction {
    Promote,
    Pause,
    Rollback,
}

/// Enrollment tokens live a day unless asked otherwise.
const ENROLLMENT_TTL: i64 = 24 * 3600;

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn check_labels(field: &str, labels: &Labels) -> Result<()> {
    if labels.len() > crate::limits::text::LIST {
        return Err(RegistryError::TooLarge(format!(
            "{field}: {} entries, over the limit of {}",
            labels.len(),
            crate::limits::text::LIST
        )));
    }
    for (k, v) in labels {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !ok(k) || !ok(v) {
            return Err(RegistryError::invalid(
                field,
                format!(
                    "`{}={}`: keys and values are 1-63 letters, digits, `-`, `_` or `.`",
                    crate::limits::shown(k),
                    crate::limits::shown(v)
                ),
            ));
        }
    }
    Ok(())
}

impl Registry {
    /// The enterprise a caller acts for: its own, or (operator) the one named.
    pub(crate) fn tenant(&self, p: &Principal, named: &str) -> Result<String> {
        let e = match p.role {
            Role::Enterprise if named.is_empty() || named == p.subject => p.subject.clone(),
            Role::Enterprise => {
                return Err(RegistryError::PermissionDenied(format!(
                    "this token acts for enterprise `{}`, not `{named}`",
                    p.subject
                )))
            }
            Role::Operator if !named.is_empty() => named.to_owned(),
            Role::Operator => {
                return Err(RegistryError::invalid(
                    "enterprise",
                    "is required for an operator",
                ))
            }
            _ => {
                return Err(RegistryError::PermissionDenied(
                    "only an enterprise or an operator may manage a fleet".into(),
                ))
            }
        };
        if self.kv.get(Tree::Enterprises, e.as_bytes())?.is_none() {
            return Err(RegistryError::NotFound(format!("enterprise `{e}`")));
        }
        Ok(e)
    }

    // ------------------------------------------------------------ deployments

    pub(crate) fn deployments_of(&self, enterprise: &str) -> Result<Vec<Deployment>> {
        let mut v: Vec<Deployment> = self
            .kv
            .scan_prefix(Tree::Deployments, format!("{enterprise}/").as_bytes())?
            .iter()
            .map(|(_, v)| parse("deployment", v))
            .collect::<Result<_>>()?;
        v.sort_by_key(|d| std::cmp::Reverse(d.seq));
        Ok(v)
    }

    /// Puts a kit on the enterprise's devices that match the selector.
    pub fn create_deployment(
        &self,
        p: &Principal,
        enterprise: &str,
        kit: &str,
        selector: Labels,
        policy: RolloutPolicy,
    ) -> Result<Deployment> {
        let enterprise = self.tenant(p, enterprise)?;
        check_labels("selector", &selector)?;
        if !(policy.canary_share > 0.0 && policy.canary_share <= 1.0) {
            return Err(RegistryError::invalid(
                "policy.canary_share",
                format!("{} is not in (0, 1]", policy.canary_share),
            ));
        }
        if policy.max_error_rate < 0.0 || policy.max_error_rate > 1.0 {
            return Err(RegistryError::invalid(
                "policy.max_error_rate",
                format!("{} is not in [0, 1]", policy.max_error_rate),
            ));
        }
        if policy.max_p99_ms < 0.0 || !policy.max_p99_ms.is_finite() {
            return Err(RegistryError::invalid(
                "policy.max_p99_ms",
                "must be a finite number of milliseconds, 0 for no bound",
            ));
        }
        if kit.is_empty() {
            return Err(RegistryError::invalid("kit", "is required"));
        }
        let a = self.get_for(p, kit, Some(Kind::Kit))?;
        if !a.private_to.is_empty() && a.private_to != enterprise {
            return Err(RegistryError::NotFound(crate::limits::shown(kit)));
        }
        if a.yanked {
            return Err(RegistryError::FailedPrecondition(format!(
                "kit {} is yanked; deploy another version",
                a.reference()
            )));
        }
        let mut targets: Vec<Device> = self
            .list_devices(p, &enterprise)?
            .into_iter()
            .filter(|d| !d.revoked)
            .collect();
        let now = self.clock.now_unix();
        let seq = self.next_seq()?;
        let mut dep = Deployment {
            id: format!("dep-{seq:06}-{}", random_hex(3)),
            enterprise,
            kit_reference: a.reference(),
            kit_digest: a.digest,
            selector,
            policy,
            state: DeploymentState::Canary,
            reason: String::new(),
            created_unix: now,
            updated_unix: now,
            canary_devices: Vec::new(),
            seq,
        };
        targets.retain(|d| dep.selects(d));
        let n = (dep.policy.canary_share * targets.len() as f64).ceil() as usize;
        let (chosen, why) = canary::choose(&targets, n, dep.policy.field_gate.as_ref());
        dep.canary_devices = chosen;
        if n >= targets.len() {
            // Nobody is left after the canaries: the gate still decides when it is done.
            dep.reason = format!("{} device(s) targeted, all canaries", targets.len());
        } else {
            dep.reason = format!(
                "{} of {} targeted device(s) first ({}): {why}",
                n,
                targets.len(),
                dep.canary_devices.join(", ")
            );
        }
        if !self.kv.commit(
            Batch::new()
                .check(Tree::Deployments, dep.key(), None)
                .put(Tree::Deployments, dep.key(), json(&dep))
                .note(self.note_desired()),
        )? {
            return Err(RegistryError::Storage(
                "deployment id collision; try again".into(),
            ));
        }
        self.wake();
        Ok(dep)
    }

    fn find_deployment(&self, p: &Principal, id: &str) -> Result<Deployment> {
        let prefix = match p.role {
            Role::Operator => String::new(),
            _ => format!("{}/", self.tenant(p, "")?),
        };
        for (_, v) in self.kv.scan_prefix(Tree::Deployments, prefix.as_bytes())? {
            let d: Deployment = parse("deployment", &v)?;
            if d.id == id {
                return Ok(d);
            }
        }
        Err(RegistryError::NotFound(format!("deployment `{id}`")))
    }

    /// The deployments of an enterprise, newest first.
    pub fn list_deployments(&self, p: &Principal, enterprise: &str) -> Result<Vec<Deployment>> {
        let e = self.tenant(p, enterprise)?;
        self.deployments_of(&e)
    }

    /// A deployment and the devices it targets, with their states.
    pub fn deployment_status(&self, p: &Principal, id: &str) -> Result<(Deployment, Vec<Device>)> {
        let d = self.find_deployment(p, id)?;
        let d = self.evaluate(d, None)?;
        let devices = self
            .kv
            .scan_prefix(Tree::Devices, format!("{}/", d.enterprise).as_bytes())?
            .iter()
            .map(|(_, v)| parse::<Device>("device", v))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|dev| d.selects(dev))
            .collect();
        Ok((d, devices))
    }

    fn save_deployment(&self, old: &Deployment, new: &Deployment) -> Result<bool> {
        let ok = self.kv.commit(
            Batch::new()
                .check(Tree::Deployments, old.key(), Some(json(old)))
                .put(Tree::Deployments, new.key(), json(new))
                .note(self.note_desired()),
        )?;
        if ok {
            tracing::info!(
                deployment = %new.id,
                enterprise = %new.enterprise,
                state = new.state.as_str(),
                reason = %new.reason,
                "deployment changed"
            );
            self.wake();
        }
        Ok(ok)
    }

    /// Promote, pause or roll back by hand.
    pub fn act_on_deployment(
        &self,
        p: &Principal,
        id: &str,
        action: DeploymentAction,
        reason: &str,
    ) -> Result<Deployment> {
        if p.role == Role::Device {
            return Err(RegistryError::PermissionDenied(
                "devices do not manage deployments".into(),
            ));
        }
        for _ in 0..8 {
            let old = self.find_deployment(p, id)?;
            let mut new = old.clone();
            let by = if reason.is_empty() {
                "by hand".to_owned()
            } else {
                reason.to_owned()
            };
            match (action, old.state) {
                (_, DeploymentState::RolledBack) => {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "deployment {id} was rolled back ({}); create a new one",
                        old.reason
                    )))
                }
                (DeploymentAction::Promote, _) => {
                    new.state = DeploymentState::Promoted;
                    new.reason = format!("promoted {by}");
                }
                (DeploymentAction::Pause, DeploymentState::Promoted) => {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "deployment {id} is already on every targeted device; roll it back instead"
                    )))
                }
                (DeploymentAction::Pause, _) => {
                    new.state = DeploymentState::Paused;
                    new.reason = format!("paused {by}");
                }
                (DeploymentAction::Rollback, _) => {
                    new.state = DeploymentState::RolledBack;
                    new.reason = format!("rolled back {by}");
                }
            }
            new.updated_unix = self.clock.now_unix();
            if self.save_deployment(&old, &new)? {
                return Ok(new);
            }
        }
        Err(RegistryError::FailedPrecondition(format!(
            "deployment {id} keeps changing; try again"
        )))
    }

    /// Applies the health gate: rolls back on a failed or out-of-bounds device,
    /// promotes when every canary has run the kit for the soak time. With a
    /// `reporter`, a promoted deployment looks only at that device's news (so a
    /// report costs the same with ten devices or ten thousand).
    fn evaluate(&self, dep: Deployment, reporter: Option<&Device>) -> Result<Deployment> {
        if !matches!(
            dep.state,
            DeploymentState::Canary | DeploymentState::Promoted
        ) {
            return Ok(dep);
        }
        let now = self.clock.now_unix();
        let watched: Vec<Device> =
            if let (DeploymentState::Promoted, Some(r)) = (dep.state, reporter) {
                if dep.selects(r) {
                    vec![r.clone()]
                } else {
                    Vec::new()
                }
            } else if dep.state == DeploymentState::Canary {
                if reporter.is_some_and(|r| !dep.canary_devices.contains(&r.id)) {
                    return Ok(dep);
                }
                dep.canary_devices
                    .iter()
                    .map(|id| self.device_by_key(format!("{}/{id}", dep.enterprise).as_bytes()))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .collect()
            } else {
                self.kv
                    .scan_prefix(Tree::Devices, format!("{}/", dep.enterprise).as_bytes())?
                    .iter()
                    .map(|(_, v)| parse::<Device>("device", v))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .filter(|d| dep.selects(d))
                    .collect()
            };
        let want = dep.kit_digest.to_string();
        let mut failure = None;
        let mut ready = 0;
        for d in &watched {
            let s = &d.state;
            if s.target_digest == want && s.deployment_id == dep.id && s.phase == "failed" {
                failure = Some(format!("device {}: {}", d.id, s.message));
                break;
            }
            if s.active_digest != want {
                continue;
            }
            let p = &dep.policy;
            if p.max_error_rate > 0.0 && s.requests > 0 && s.error_rate > p.max_error_rate {
                failure = Some(format!(
                    "device {}: error rate {:.3} above the bound {:.3}",
                    d.id, s.error_rate, p.max_error_rate
                ));
                break;
            }
            if p.max_p99_ms > 0.0 && s.requests > 0 && s.p99_ms > p.max_p99_ms {
                failure = Some(format!(
                    "device {}: p99 latency {:.1} ms above the bound {:.1} ms",
                    d.id, s.p99_ms, p.max_p99_ms
                ));
                break;
            }
            if now - s.active_since_unix >= i64::from(p.soak_seconds) {
                ready += 1;
            }
        }
        // The canaries' answers and their shadow's on the same requests,
        // against their application's feedback.
        let mut waiting_for_field = None;
        let mut field_passed = None;
        if let (None, DeploymentState::Canary, Some(g)) =
            (&failure, dep.state, &dep.policy.field_gate)
        {
            match self.field_gate(&dep, g)? {
                canary::FieldVerdict::Waiting(why) => waiting_for_field = Some(why),
                canary::FieldVerdict::Fail(why) => failure = Some(why),
                canary::FieldVerdict::Pass(why) => field_passed = Some(why),
            }
        }
        let mut new = dep.clone();
        if let Some(why) = waiting_for_field.filter(|_| failure.is_none()) {
            if dep.reason == why {
                return Ok(dep);
            }
            new.reason = why;
        } else if let Some(why) = failure {
            new.state = DeploymentState::RolledBack;
            new.reason = format!("health gate failed: {why}");
        } else if dep.state == DeploymentState::Canary
            && ready == dep.canary_devices.len()
            && !dep.policy.manual_promote
        {
            new.state = DeploymentState::Promoted;
            new.reason = format!(
                "gate passed: {ready} canary device(s) ran it {} s within bounds",
                dep.policy.soak_seconds
            );
            if let Some(f) = &field_passed {
                new.reason.push_str("; ");
                new.reason.push_str(f);
            }
        } else if dep.state == DeploymentState::Canary
            && ready == dep.canary_devices.len()
            && !dep.reason.starts_with("gate passed")
        {
            new.reason = "gate passed; waiting for promote".into();
        } else {
            return Ok(dep);
        }
        new.updated_unix = now;
        if self.save_deployment(&dep, &new)? {
            Ok(new)
        } else {
            // Changed meanwhile (by hand, or another evaluation): take what is stored.
            self.find_deployment(
                &Principal {
                    role: Role::Operator,
                    subject: String::new(),
                    token_id: String::new(),
                },
                &dep.id,
            )
        }
    }

    /// Evaluates every rollout that waits on time (the soak of its canaries)
    /// and moves training rounds on. With several replicas on one store, one
    /// does it at a time: the holder of the `tick` lease, which another takes
    /// over once it lapses. Returns whether this replica did the work.
    pub fn tick(&self) -> Result<bool> {
        if !self.hold_lease("tick", crate::leases::TICK_LEASE_SECONDS)? {
            return Ok(false);
        }
        for (_, v) in self.kv.scan_prefix(Tree::Deployments, b"")? {
            let d: Deployment = parse("deployment", &v)?;
            if d.state == DeploymentState::Canary {
                self.evaluate(d, None)?;
            }
        }
        self.tick_training()?;
        Ok(true)
    }

    /// What a device should run: the newest deployment that reaches it.
    pub fn desired(&self, p: &Principal) -> Result<Desired> {
        let dev = self.device_for(p)?;
        for d in self.deployments_of(&dev.enterprise)? {
            if !d.selects(&dev) {
                continue;
            }
            let reaches = match d.state {
                DeploymentState::RolledBack => false,
                DeploymentState::Canary | DeploymentState::Paused => {
                    d.canary_devices.contains(&dev.id)
                }
                DeploymentState::Promoted => true,
            };
            if reaches {
                let a = self.get(&d.kit_digest.to_string(), Some(Kind::Kit))?;
                // A canary of a field-gated rollout answers with the control
                // kit too, in the shadow, so both are judged on its requests.
                let shadow_digest = match (&d.state, &d.policy.field_gate) {
                    (DeploymentState::Canary | DeploymentState::Paused, Some(g))
                        if g.control != d.kit_digest =>
                    {
                        Some(g.control)
                    }
                    _ => None,
                };
                return Ok(Desired {
                    shadow_digest,
                    kit_digest: Some(d.kit_digest),
                    kit_reference: d.kit_reference,
                    deployment_id: d.id,
                    signatures: a.signatures,
                    sampling_off: d.policy.sampling_off,
                });
            }
        }
        Ok(Desired::default())
    }

    /// Records what a device reports; a change of state is stored and applied
    /// to the gates of the deployments it concerns.
    pub fn report(&self, p: &Principal, state: DeviceState) -> Result<()> {
        let now = self.clock.now_unix();
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.token_id.clone(), now);
        if p.role != Role::Device {
            return Err(RegistryError::PermissionDenied(
                "only an enrolled device syncs (over mTLS with its certificate)".into(),
            ));
        }
        let key = format!("{}/{}", p.subject, p.token_id);
        // Compared with the stored bytes themselves, never a re-serialization.
        let old = self
            .kv
            .get(Tree::Devices, key.as_bytes())?
            .ok_or_else(|| RegistryError::NotFound(format!("device `{}`", p.token_id)))?;
        let dev: Device = parse("device", &old)?;
        if dev.state == state {
            return Ok(());
        }
        if !state.error_rate.is_finite() || !state.p99_ms.is_finite() {
            return Err(RegistryError::invalid(
                "state",
                "error_rate and p99_ms must be finite numbers",
            ));
        }
        for (field, v) in [
            ("state.active_digest", &state.active_digest),
            ("state.previous_digest", &state.previous_digest),
            ("state.target_digest", &state.target_digest),
        ] {
            if !v.is_empty() {
                v.parse::<Digest>()
                    .map_err(|e| RegistryError::invalid(field, e.to_string()))?;
            }
        }
        if state.message.len() > 4096 || state.phase.len() > 32 {
            return Err(RegistryError::invalid(
                "state",
                "phase or message is too long",
            ));
        }
        let mut new = dev.clone();
        new.state = state;
        new.last_seen_unix = now;
        if !self
            .kv
            .commit(Batch::new().check(Tree::Devices, dev.key(), Some(old)).put(
                Tree::Devices,
                dev.key(),
                json(&new),
            ))?
        {
            return Err(RegistryError::FailedPrecondition(format!(
                "device {} changed meanwhile; report again",
                dev.id
            )));
        }
        let mut concerned = BTreeSet::new();
        concerned.insert(new.state.deployment_id.clone());
        for d in self.deployments_of(&dev.enterprise)? {
            if concerned.contains(&d.id) || d.kit_digest.to_string() == new.state.active_digest {
                self.evaluate(d, Some(&new))?;
            }
        }
        Ok(())
    }

    /// Whether `d` is the manifest or a blob of a kit deployed to `enterprise`.
    pub(crate) fn deployed_to(&self, enterprise: &str, d: &Digest) -> Result<bool> {
        for dep in self.deployments_of(enterprise)? {
            if dep.kit_digest == *d {
                return Ok(true);
            }
            let a = self.get(&dep.kit_digest.to_string(), Some(Kind::Kit))?;
            if a.blobs.contains(d) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
