//! What starts a round by itself, under an enterprise's automatic policy:
//! enough new labels since the last round began; the longest interval passed
//! (with something new to learn from); or drift, the share of requests the
//! devices kept as hard examples rising against the champion's first window.
//!
//! Drift starts label collection, not training: the labels that exist when it
//! is seen describe the world before it. The round it makes waits
//! (`collecting_labels`) until the policy's minimum of labels has arrived
//! since the drifted window began, then trains and is judged on samples of
//! that time alone. One round waits at a time; a label-count trigger while it
//! waits joins it rather than starting another.
//!
//! Drift is read from what the registry already has: each device's count of
//! requests served by its active kit (reported on every sync) and the hard
//! examples it sent for that kit. The watch over those counts (the window under
//! way, the baseline) is stored, so whichever replica ticks next goes on from
//! it; a new champion, or devices that restarted, start a new series.

use std::collections::BTreeMap;

use algobay_runtime::Digest;

use super::runs::*;
use crate::domain::*;
use crate::error::Result;
use crate::service::{parse, Registry};
use crate::store::{Batch, Tree};

/// The drift watch of one kit for one enterprise, stored (`Tree::Counters`,
/// `drift/<enterprise>/<kit>`) so the replica that holds the tick lease next,
/// or this one restarted, goes on from the same window and baseline.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Watch {
    champion: Option<Digest>,
    /// Requests and hard examples at the start of the window under way.
    mark: (u64, u64),
    /// The champion's first window's hard-example share.
    baseline: Option<f64>,
    /// A round was started for this champion's drift already.
    fired: bool,
    /// When the window under way began (unix seconds).
    #[serde(default)]
    mark_unix: i64,
}

impl Watch {
    /// Takes the champion's counts (requests served, hard examples kept since
    /// it became active) at `now`; returns the share of the window that just
    /// closed, the baseline and when the window began, when that window drifted.
    fn observe(
        &mut self,
        champion: Digest,
        requests: u64,
        hard: u64,
        window: u64,
        factor: f64,
        now: i64,
    ) -> Option<(f64, f64, i64)> {
        if self.champion != Some(champion) || requests < self.mark.0 || hard < self.mark.1 {
            // A new champion (or devices that restarted): a new series.
            *self = Watch {
                champion: Some(champion),
                mark: if self.champion == Some(champion) {
                    (requests, hard)
                } else {
                    (0, 0)
                },
                mark_unix: now,
                ..Watch::default()
            };
        }
        let served = requests - self.mark.0;
        if served < window.max(1) {
            return None;
        }
        let rate = (hard - self.mark.1) as f64 / served as f64;
        let began = self.mark_unix;
        self.mark = (requests, hard);
        self.mark_unix = now;
        match self.baseline {
            None => {
                self.baseline = Some(rate);
                None
            }
            Some(base) => {
                // A baseline of 0 counts as half an example per window.
                let floor = base.max(0.5 / served as f64);
                if !self.fired && rate >= floor * factor {
                    self.fired = true;
                    Some((rate, base, began))
                } else {
                    None
                }
            }
        }
    }
}

impl Registry {
    /// Starts a round when one of the policy's triggers holds; moves a round
    /// collecting post-drift labels on once enough have come.
    pub(super) fn auto_start(&self, policy: &TrainPolicy) -> Result<()> {
        let runs: Vec<Run> = self
            .runs_of(&policy.enterprise)?
            .into_iter()
            .filter(|r| r.kit == policy.kit)
            .collect();
        let drift = self.drift_signal(policy)?;
        if let Some(open) = runs.iter().find(|r| !r.state.finished()) {
            if open.state == RunState::Collecting {
                let post =
                    self.fresh_labels(&policy.enterprise, &policy.kit, open.field_since_unix - 1)?;
                if post >= policy.min_new_labels {
                    self.begin_collected(
                        open,
                        format!(
                            "{post} labels since the drift began (policy: {})",
                            policy.min_new_labels
                        ),
                    )?;
                }
            }
            return Ok(());
        }
        let last_round = runs.iter().map(|r| r.created_unix).max();
        let fresh = self.labels_since(policy, last_round.unwrap_or(i64::MIN))?;
        if let Some((rate, base, began)) = drift {
            // What is labelled now is of before the drift: wait for labels of after it.
            let trigger = format!(
                "drift: {:.1}% of the last {} requests were hard examples, {:.1}% in the champion's first window (policy: ×{}); waiting for {} labels of samples from the drifted window on",
                rate * 100.0,
                policy.drift_window,
                base * 100.0,
                policy.drift_factor,
                policy.min_new_labels
            );
            self.make_run(&policy.enterprise, &policy.kit, trigger, Some(began))?;
            return Ok(());
        }
        let trigger = if fresh >= policy.min_new_labels {
            Some(format!(
                "{fresh} new labels (policy: {})",
                policy.min_new_labels
            ))
        } else if policy.max_interval_seconds > 0 && fresh > 0 {
            let (since, what) = match last_round {
                Some(t) => (t, "the last round began"),
                None => (
                    self.champion_since(&policy.enterprise, &policy.kit)?,
                    "the champion was deployed",
                ),
            };
            let waited = self.clock.now_unix().saturating_sub(since);
            (waited >= policy.max_interval_seconds as i64).then(|| {
                format!(
                    "{waited} s since {what}, with {fresh} new labels (policy: at most {} s)",
                    policy.max_interval_seconds
                )
            })
        } else {
            None
        };
        if let Some(t) = trigger {
            self.start_run(&policy.enterprise, &policy.kit, t)?;
        }
        Ok(())
    }

    /// Labels of the kit's samples that came after `since`.
    fn labels_since(&self, policy: &TrainPolicy, since: i64) -> Result<u32> {
        self.fresh_labels(&policy.enterprise, &policy.kit, since)
    }

    /// Labels of `enterprise`'s samples of kit `kit` given after `after`.
    pub(super) fn fresh_labels(&self, enterprise: &str, kit: &str, after: i64) -> Result<u32> {
        let mut names: BTreeMap<String, bool> = BTreeMap::new();
        let mut fresh = 0u32;
        for (k, v) in self
            .kv
            .scan_prefix(Tree::Labels, format!("{enterprise}/").as_bytes())?
        {
            let label: Label = parse("label", &v)?;
            if label.at_unix <= after {
                continue;
            }
            let key = String::from_utf8_lossy(&k).into_owned();
            let digest = key.split('/').nth(1).unwrap_or_default().to_owned();
            let ours = match names.get(&digest) {
                Some(b) => *b,
                None => {
                    let b = self
                        .get(&digest, Some(Kind::Kit))
                        .is_ok_and(|a| a.name == kit);
                    names.insert(digest, b);
                    b
                }
            };
            if ours {
                fresh += 1;
            }
        }
        Ok(fresh)
    }

    /// When the deployment of the kit serving the enterprise was made.
    fn champion_since(&self, enterprise: &str, kit: &str) -> Result<i64> {
        let (_, digest) = self.champion(enterprise, kit)?;
        Ok(self
            .deployments_of(enterprise)?
            .iter()
            .filter(|d| d.kit_digest == digest && d.state != DeploymentState::RolledBack)
            .map(|d| d.created_unix)
            .max()
            .unwrap_or(i64::MIN))
    }

    /// Feeds the drift watch with the champion's counts; the closed window's
    /// share and the baseline when it drifted.
    fn drift_signal(&self, policy: &TrainPolicy) -> Result<Option<(f64, f64, i64)>> {
        if policy.drift_factor <= 1.0 {
            return Ok(None);
        }
        let Ok((_, champion)) = self.champion(&policy.enterprise, &policy.kit) else {
            return Ok(None);
        };
        let champion_hex = champion.to_string();
        let mut requests = 0u64;
        for (_, v) in self
            .kv
            .scan_prefix(Tree::Devices, format!("{}/", policy.enterprise).as_bytes())?
        {
            let d: Device = parse("device", &v)?;
            if !d.revoked && d.state.active_digest == champion_hex {
                requests += d.state.requests;
            }
        }
        let mut hard = 0u64;
        for (_, v) in self
            .kv
            .scan_prefix(Tree::Samples, format!("{}/", policy.enterprise).as_bytes())?
        {
            let rec: SampleRecord = parse("sample", &v)?;
            if rec.kit_digest == champion && rec.reason != "feedback" {
                hard += 1;
            }
        }
        let key = format!("drift/{}/{}", policy.enterprise, policy.kit);
        let old = self.kv.get(Tree::Counters, key.as_bytes())?;
        let mut w: Watch = old
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
            .unwrap_or_default();
        let before = w.clone();
        let signal = w.observe(
            champion,
            requests,
            hard,
            policy.drift_window as u64,
            policy.drift_factor,
            self.clock.now_unix(),
        );
        if w != before {
            let value = serde_json::to_vec(&w).unwrap_or_default();
            // Only the lease holder ticks; a lost race keeps the other's, which is as good.
            self.kv
                .commit(Batch::new().check(Tree::Counters, key.as_bytes(), old).put(
                    Tree::Counters,
                    key.as_bytes(),
                    value,
                ))?;
        }
        Ok(signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_whose_hard_share_rises_past_the_factor_drifts_once() {
        let c = Digest::of(b"champion");
        let mut w = Watch::default();
        // First window: 10 of 100 are hard, the baseline.
        assert_eq!(w.observe(c, 50, 5, 100, 2.0, 10), None);
        assert_eq!(w.observe(c, 100, 10, 100, 2.0, 20), None);
        assert_eq!(w.baseline, Some(0.1));
        // 15% is under 2x.
        assert_eq!(w.observe(c, 200, 25, 100, 2.0, 30), None);
        // 30% drifts, once; the drifted window began when the last closed.
        assert_eq!(w.observe(c, 300, 55, 100, 2.0, 40), Some((0.3, 0.1, 30)));
        assert_eq!(w.observe(c, 400, 95, 100, 2.0, 50), None);
        // A new champion starts over.
        let n = Digest::of(b"next");
        assert_eq!(w.observe(n, 100, 40, 100, 2.0, 60), None);
        assert_eq!(w.baseline, Some(0.4));
        // Counts that went back (devices restarted) start a new series.
        assert_eq!(w.observe(n, 10, 1, 100, 2.0, 70), None);
        assert_eq!(w.mark, (10, 1));
    }
}
