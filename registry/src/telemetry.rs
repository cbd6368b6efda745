//! Serving figures sent by devices as OpenTelemetry metrics, kept per device
//! and kit. Devices send cumulative totals (since the agent started), so a lost
//! export costs nothing: the next one carries everything. A restart of the
//! agent starts a new series (a new start time); the figures add up all series.
//!
//! The series are stored ([`Tree::Telemetry`]), one record per device and kit,
//! so a restart of the registry loses none and every replica sees the same
//! totals; an export rewrites the latest value of each series it carries, so
//! the same export taken twice (a retry, or through two replicas) counts once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Principal, Role};
use crate::error::{RegistryError, Result};
use crate::service::Registry;
use crate::store::{Batch, Tree};

/// Metric names the agent sends.
pub const REQUESTS: &str = "algobay.kit.requests";
pub const DURATION: &str = "algobay.kit.duration";
pub const STAGE_DURATION: &str = "algobay.stage.duration";

/// One data point of a device's metrics, off the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    pub start_unix_nano: u64,
    pub value: PointValue,
}

/// A cumulative sum, or a cumulative histogram.
#[derive(Clone, Debug, PartialEq)]
pub enum PointValue {
    Sum(f64),
    Histogram {
        count: u64,
        sum: f64,
        bounds: Vec<f64>,
        counts: Vec<u64>,
    },
}

/// Serving figures of one kit on one device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KitTelemetry {
    pub device_id: String,
    pub enterprise: String,
    pub kit_reference: String,
    pub kit_digest: String,
    /// Requests answered (served well or not).
    pub requests: u64,
    /// Requests served well.
    pub ok: u64,
    pub errors: u64,
    pub overloaded: u64,
    pub latency_count: u64,
    pub latency_sum_ms: f64,
    pub bucket_bounds_ms: Vec<f64>,
    /// Cumulative counts at each bound.
    pub bucket_counts: Vec<u64>,
    /// step → (count, sum ms)
    pub stages: BTreeMap<String, (u64, f64)>,
    pub updated_unix: i64,
    /// Over time, a window between two exports each: (end, requests, errors,
    /// p50 ms, p99 ms of the window; 0 when it had none).
    pub history: Vec<Window>,
}

/// One window of [`KitTelemetry::history`]: (end unix, requests, errors, p50 ms, p99 ms).
pub type Window = (i64, u64, u64, f64, f64);

/// Everything a device sent about one kit: the latest cumulative value of
/// each series, keyed by what names it and when it started.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct KitSeries {
    kit_reference: String,
    updated_unix: i64,
    /// (outcome, start) → count
    requests: BTreeMap<(String, u64), u64>,
    /// start → (count, sum, bounds, per-bucket counts)
    latency: BTreeMap<u64, (u64, f64, Vec<f64>, Vec<u64>)>,
    /// (step, start) → (count, sum ms)
    stages: BTreeMap<(String, u64), (u64, f64)>,
    /// The totals after exports, at most one each [`HISTORY_STEP`] (the newest
    /// replaces a younger point): (when, requests, errors, cumulative
    /// latency bucket counts).
    history: Vec<(i64, u64, u64, Vec<u64>)>,
}

/// Points of history kept per device and kit (six hours, one each 30 s).
const HISTORY: usize = 720;
/// Seconds between two points of history.
const HISTORY_STEP: i64 = 30;

impl KitSeries {
    /// Requests, errors, latency bounds and cumulative counts over every series.
    fn totals(&self) -> (u64, u64, Vec<f64>, Vec<u64>) {
        let (mut ok, mut errors) = (0, 0);
        for ((outcome, _), n) in &self.requests {
            match outcome.as_str() {
                "ok" => ok += n,
                "overloaded" => {}
                _ => errors += n,
            }
        }
        let mut bounds = Vec::new();
        let mut cumulative = Vec::new();
        // Series with the newest bounds (normally all of them) add up.
        if let Some((_, (_, _, b, _))) = self.latency.iter().next_back() {
            bounds = b.clone();
            let mut per_bucket = vec![0u64; b.len()];
            for (_, _, bb, counts) in self.latency.values() {
                if bb == b {
                    for (acc, c) in per_bucket.iter_mut().zip(counts) {
                        *acc += c;
                    }
                }
            }
            let mut acc = 0;
            cumulative = per_bucket
                .into_iter()
                .map(|c| {
                    acc += c;
                    acc
                })
                .collect();
        }
        (ok + errors, errors, bounds, cumulative)
    }

    /// Notes the totals now.
    fn remember(&mut self, now: i64) {
        let (requests, errors, _, counts) = self.totals();
        if self
            .history
            .last()
            .is_some_and(|p| now - p.0 < HISTORY_STEP)
        {
            self.history.pop();
        }
        self.history.push((now, requests, errors, counts));
        if self.history.len() > HISTORY {
            let extra = self.history.len() - HISTORY;
            self.history.drain(..extra);
        }
    }
}

/// The latency at quantile `q` of a distribution given as cumulative bucket
/// counts: the bound of the bucket it falls in.
pub fn quantile(bounds: &[f64], cumulative: &[u64], q: f64) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let want = ((q * total as f64).ceil() as u64).max(1);
    bounds
        .iter()
        .zip(cumulative)
        .find(|(_, c)| **c >= want)
        .map(|(b, _)| *b)
        .or(bounds.last().copied())
}

/// A latency entry as stored: (series start, count, sum ms, bounds, cumulative counts).
type StoredLatency = (u64, u64, f64, Vec<f64>, Vec<u64>);

/// [`KitSeries`] as stored (JSON maps want string keys: lists of entries).
#[derive(Serialize, Deserialize)]
struct StoredSeries {
    kit_reference: String,
    updated_unix: i64,
    requests: Vec<(String, u64, u64)>,
    latency: Vec<StoredLatency>,
    stages: Vec<(String, u64, u64, f64)>,
    #[serde(default)]
    history: Vec<(i64, u64, u64, Vec<u64>)>,
}

impl KitSeries {
    fn to_json(&self) -> Vec<u8> {
        let s = StoredSeries {
            kit_reference: self.kit_reference.clone(),
            updated_unix: self.updated_unix,
            requests: self
                .requests
                .iter()
                .map(|((o, t), n)| (o.clone(), *t, *n))
                .collect(),
            latency: self
                .latency
                .iter()
                .map(|(t, (c, s, b, k))| (*t, *c, *s, b.clone(), k.clone()))
                .collect(),
            stages: self
                .stages
                .iter()
                .map(|((st, t), (c, s))| (st.clone(), *t, *c, *s))
                .collect(),
            history: self.history.clone(),
        };
        serde_json::to_vec(&s).unwrap_or_default()
    }

    fn from_json(v: &[u8]) -> Result<KitSeries> {
        let s: StoredSeries = serde_json::from_slice(v)
            .map_err(|e| RegistryError::Storage(format!("stored telemetry is corrupt: {e}")))?;
        Ok(KitSeries {
            kit_reference: s.kit_reference,
            updated_unix: s.updated_unix,
            requests: s
                .requests
                .into_iter()
                .map(|(o, t, n)| ((o, t), n))
                .collect(),
            latency: s
                .latency
                .into_iter()
                .map(|(t, c, s, b, k)| (t, (c, s, b, k)))
                .collect(),
            stages: s
                .stages
                .into_iter()
                .map(|(st, t, c, s)| ((st, t), (c, s)))
                .collect(),
            history: s.history,
        })
    }
}

/// How often an export is tried again when another wrote the same records meanwhile.
const MAX_RETRIES: usize = 20;

const MAX_POINTS: usize = 10_000;
/// Series kept per metric of a kit on a device (one per agent start).
const MAX_SERIES: usize = 64;

fn cap<K: Ord + Clone, V>(m: &mut BTreeMap<K, V>) {
    while m.len() > MAX_SERIES {
        let first = m.keys().next().cloned();
        if let Some(k) = first {
            m.remove(&k);
        }
    }
}

/// An OTLP export comes from an enrolled device and within its size limit.
pub(crate) fn check_export(
    p: &Principal,
    what: &str,
    items: &str,
    n: usize,
    max: usize,
) -> Result<()> {
    if p.role != Role::Device {
        return Err(RegistryError::PermissionDenied(format!(
            "only an enrolled device sends {what} here (over mTLS)"
        )));
    }
    if n > max {
        return Err(RegistryError::TooLarge(format!(
            "{n} {items} in one export, over the limit of {max}"
        )));
    }
    Ok(())
}

/// Takes one data point into a device's series of a kit.
fn merge(t: &mut KitSeries, pt: MetricPoint, now: i64) {
    if let Some(kit) = pt.attributes.get("kit") {
        t.kit_reference = kit.clone();
    }
    t.updated_unix = now;
    let start = pt.start_unix_nano;
    match (pt.name.as_str(), pt.value) {
        (REQUESTS, PointValue::Sum(v)) => {
            let outcome = pt.attributes.get("outcome").cloned().unwrap_or_default();
            t.requests.insert((outcome, start), v.max(0.0) as u64);
            cap(&mut t.requests);
        }
        (
            DURATION,
            PointValue::Histogram {
                count,
                sum,
                bounds,
                counts,
            },
        ) => {
            t.latency.insert(start, (count, sum, bounds, counts));
            cap(&mut t.latency);
        }
        (STAGE_DURATION, PointValue::Histogram { count, sum, .. }) => {
            if let Some(step) = pt.attributes.get("step") {
                t.stages.insert((step.clone(), start), (count, sum));
                cap(&mut t.stages);
            }
        }
        _ => {}
    }
}

impl Registry {
    /// Takes a device's metrics export.
    pub fn ingest_metrics(&self, p: &Principal, points: Vec<MetricPoint>) -> Result<()> {
        check_export(p, "metrics", "data points", points.len(), MAX_POINTS)?;
        let mut by_kit: BTreeMap<String, Vec<MetricPoint>> = BTreeMap::new();
        for pt in points {
            if pt.attributes.contains_key("kit") {
                if let Some(d) = pt.attributes.get("kit_digest") {
                    by_kit.entry(d.clone()).or_default().push(pt);
                }
            }
        }
        if by_kit.is_empty() {
            return Ok(());
        }
        for _ in 0..MAX_RETRIES {
            let now = self.clock.now_unix();
            let mut batch = Batch::new();
            for (digest, pts) in &by_kit {
                let key = format!("{}/{}/{digest}", p.subject, p.token_id);
                let old = self.kv.get(Tree::Telemetry, key.as_bytes())?;
                let mut t = match &old {
                    Some(v) => KitSeries::from_json(v)?,
                    None => KitSeries::default(),
                };
                for pt in pts {
                    merge(&mut t, pt.clone(), now);
                }
                t.remember(now);
                batch = batch.check(Tree::Telemetry, key.as_bytes(), old).put(
                    Tree::Telemetry,
                    key.as_bytes(),
                    t.to_json(),
                );
            }
            if self.kv.commit(batch)? {
                return Ok(());
            }
        }
        Err(RegistryError::Unavailable(
            "the device's figures kept changing under this export; send it again".into(),
        ))
    }

    /// Figures per device and kit: an enterprise's own, or (operator) any one's.
    pub fn telemetry(
        &self,
        p: &Principal,
        enterprise: &str,
        device: &str,
    ) -> Result<Vec<KitTelemetry>> {
        let e = match p.role {
            Role::Operator if enterprise.is_empty() => String::new(),
            _ => self.tenant(p, enterprise)?,
        };
        if !e.is_empty() && self.kv.get(Tree::Enterprises, e.as_bytes())?.is_none() {
            return Err(RegistryError::NotFound(format!("enterprise `{e}`")));
        }
        let prefix = match (e.is_empty(), device.is_empty()) {
            (true, _) => String::new(),
            (false, true) => format!("{e}/"),
            (false, false) => format!("{e}/{device}/"),
        };
        let mut stored = Vec::new();
        for (k, v) in self.kv.scan_prefix(Tree::Telemetry, prefix.as_bytes())? {
            let key = String::from_utf8_lossy(&k).into_owned();
            let mut parts = key.splitn(3, '/');
            let (Some(ent), Some(dev), Some(digest)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !device.is_empty() && dev != device {
                continue;
            }
            stored.push((
                (ent.to_owned(), dev.to_owned(), digest.to_owned()),
                KitSeries::from_json(&v)?,
            ));
        }
        let mut out: Vec<KitTelemetry> = stored
            .iter()
            .map(|((ent, dev, digest), s)| {
                let mut t = KitTelemetry {
                    device_id: dev.clone(),
                    enterprise: ent.clone(),
                    kit_reference: s.kit_reference.clone(),
                    kit_digest: digest.clone(),
                    updated_unix: s.updated_unix,
                    ..Default::default()
                };
                for ((outcome, _), n) in &s.requests {
                    match outcome.as_str() {
                        "ok" => t.ok += n,
                        "overloaded" => t.overloaded += n,
                        _ => t.errors += n,
                    }
                }
                t.requests = t.ok + t.errors;
                for (count, sum, _, _) in s.latency.values() {
                    t.latency_count += count;
                    t.latency_sum_ms += sum;
                }
                (_, _, t.bucket_bounds_ms, t.bucket_counts) = s.totals();
                let bounds = t.bucket_bounds_ms.clone();
                // The first window runs from nothing (the series' starts) to the first point.
                let zero = s.history.first().map(|f| (f.0, 0, 0, Vec::new()));
                t.history = zero
                    .iter()
                    .chain(&s.history)
                    .collect::<Vec<_>>()
                    .windows(2)
                    .map(|w| {
                        let (a, b) = (w[0], w[1]);
                        let delta: Vec<u64> = if a.3.len() == b.3.len() {
                            b.3.iter()
                                .zip(&a.3)
                                .map(|(x, y)| x.saturating_sub(*y))
                                .collect()
                        } else {
                            b.3.clone()
                        };
                        let q = |x| quantile(&bounds, &delta, x).unwrap_or(0.0);
                        (
                            b.0,
                            b.1.saturating_sub(a.1),
                            b.2.saturating_sub(a.2),
                            q(0.5),
                            q(0.99),
                        )
                    })
                    .collect();
                for ((step, _), (count, sum)) in &s.stages {
                    let e = t.stages.entry(step.clone()).or_default();
                    e.0 += count;
                    e.1 += sum;
                }
                t
            })
            .collect();
        out.sort_by(|a, b| (&a.device_id, &a.kit_digest).cmp(&(&b.device_id, &b.kit_digest)));
        Ok(out)
    }
}
