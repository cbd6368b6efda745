//! Serving figures sent by devices as OpenTelemetry metrics, kept per device
//! and kit. Devices send cumulative totals (since the agent started), so a lost
//! export costs nothing: the next one carries everything. A restart of the
//! agent starts a new series (a new start time); the figures add up all series.

use std::collections::{BTreeMap, HashMap};

use crate::domain::{Principal, Role};
use crate::error::{RegistryError, Result};
use crate::service::Registry;
use crate::store::Tree;

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
}

/// Everything a device sent about one kit: the latest cumulative value of
/// each series, keyed by what names it and when it started.
#[derive(Clone, Debug, Default)]
pub(crate) struct KitSeries {
    kit_reference: String,
    updated_unix: i64,
    /// (outcome, start) → count
    requests: BTreeMap<(String, u64), u64>,
    /// start → (count, sum, bounds, per-bucket counts)
    latency: BTreeMap<u64, (u64, f64, Vec<f64>, Vec<u64>)>,
    /// (step, start) → (count, sum ms)
    stages: BTreeMap<(String, u64), (u64, f64)>,
}

/// (enterprise, device, kit digest) → what it sent.
pub(crate) type TelemetryMap = HashMap<(String, String, String), KitSeries>;

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

impl Registry {
    /// Takes a device's metrics export.
    pub fn ingest_metrics(&self, p: &Principal, points: Vec<MetricPoint>) -> Result<()> {
        check_export(p, "metrics", "data points", points.len(), MAX_POINTS)?;
        let now = self.clock.now_unix();
        let mut map = self.telemetry.lock().unwrap_or_else(|e| e.into_inner());
        for pt in points {
            let (Some(kit), Some(digest)) =
                (pt.attributes.get("kit"), pt.attributes.get("kit_digest"))
            else {
                continue;
            };
            let t = map
                .entry((p.subject.clone(), p.token_id.clone(), digest.clone()))
                .or_default();
            t.kit_reference = kit.clone();
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
        Ok(())
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
        let map = self.telemetry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<KitTelemetry> = map
            .iter()
            .filter(|((ent, dev, _), _)| {
                (e.is_empty() || *ent == e) && (device.is_empty() || dev == device)
            })
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
                // Series with the newest bounds (normally all of them) add up.
                if let Some((_, (_, _, bounds, _))) = s.latency.iter().next_back() {
                    t.bucket_bounds_ms = bounds.clone();
                    let mut per_bucket = vec![0u64; bounds.len()];
                    for (count, sum, b, counts) in s.latency.values() {
                        t.latency_count += count;
                        t.latency_sum_ms += sum;
                        if b == bounds {
                            for (acc, c) in per_bucket.iter_mut().zip(counts) {
                                *acc += c;
                            }
                        }
                    }
                    let mut acc = 0;
                    t.bucket_counts = per_bucket
                        .into_iter()
                        .map(|c| {
                            acc += c;
                            acc
                        })
                        .collect();
                }
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
