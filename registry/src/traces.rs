//! Sampled request traces sent by devices over OTLP: per enterprise, the most
//! recent ones, each the request span with its step spans. They are stored
//! ([`Tree::Traces`], one record per trace, its spans merged in as they come,
//! in any order and through any replica), and the oldest beyond
//! [`TRACES_PER_ENTERPRISE`] are dropped now and then ([`Registry::trim_traces`]):
//! they are for looking at what is happening now; the figures that add up over
//! time are the metrics of [`crate::telemetry`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Principal, Role};
use crate::error::{RegistryError, Result};
use crate::service::Registry;
use crate::store::{Batch, Tree};

/// Traces kept per enterprise; the oldest goes first.
pub const TRACES_PER_ENTERPRISE: usize = 2_000;
const MAX_SPANS: usize = 10_000;

/// One span off the wire.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanRecord {
    /// 32 hex digits.
    pub trace_id: String,
    /// Empty for the request span.
    pub parent_span_id: String,
    pub name: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, String>,
    /// The status message when the span ended in error.
    pub error: Option<String>,
}

/// One traced request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub device_id: String,
    pub enterprise: String,
    pub kit_reference: String,
    pub kit_digest: String,
    pub name: String,
    pub start_unix_nano: u64,
    pub duration_ms: f64,
    pub error: String,
    /// (start, step, ms), in the order they ran.
    pub steps: Vec<(u64, String, f64)>,
}

fn ms(start: u64, end: u64) -> f64 {
    end.saturating_sub(start) as f64 / 1e6
}

/// Takes one span into its trace.
fn add_span(t: &mut TraceSummary, s: &SpanRecord) {
    match s.attributes.get("step") {
        Some(step) => {
            let entry = (
                s.start_unix_nano,
                step.clone(),
                ms(s.start_unix_nano, s.end_unix_nano),
            );
            if !t.steps.contains(&entry) {
                t.steps.push(entry);
                t.steps
                    .sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
                t.steps.truncate(256);
            }
        }
        None => {
            t.name = s.name.clone();
            t.start_unix_nano = s.start_unix_nano;
            t.duration_ms = ms(s.start_unix_nano, s.end_unix_nano);
            t.kit_reference = s.attributes.get("kit").cloned().unwrap_or_default();
            t.kit_digest = s.attributes.get("kit_digest").cloned().unwrap_or_default();
            t.error = s.error.clone().unwrap_or_default();
        }
    }
}

impl Registry {
    /// Takes a device's trace export.
    pub fn ingest_spans(&self, p: &Principal, spans: Vec<SpanRecord>) -> Result<()> {
        crate::telemetry::check_export(p, "traces", "spans", spans.len(), MAX_SPANS)?;
        if let Some(bad) = spans
            .iter()
            .find(|s| s.trace_id.len() != 32 || !s.trace_id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(RegistryError::invalid(
                format!("span `{}`", bad.name),
                format!("trace id `{}` is not 32 hex digits", bad.trace_id),
            ));
        }
        let mut by_trace: BTreeMap<String, Vec<SpanRecord>> = BTreeMap::new();
        for sp in spans {
            by_trace.entry(sp.trace_id.clone()).or_default().push(sp);
        }
        for _ in 0..20 {
            let mut batch = Batch::new();
            for (id, spans) in &by_trace {
                let key = format!("{}/{id}", p.subject);
                let old = self.kv.get(Tree::Traces, key.as_bytes())?;
                let mut t = match &old {
                    Some(v) => serde_json::from_slice(v).map_err(|e| {
                        RegistryError::Storage(format!("stored trace {id} is corrupt: {e}"))
                    })?,
                    None => TraceSummary {
                        trace_id: id.clone(),
                        device_id: p.token_id.clone(),
                        enterprise: p.subject.clone(),
                        ..Default::default()
                    },
                };
                if t.device_id != p.token_id {
                    // One trace id from two devices: keep the first device's spans only.
                    continue;
                }
                for s in spans {
                    add_span(&mut t, s);
                }
                let new = serde_json::to_vec(&t).unwrap_or_default();
                batch = batch.check(Tree::Traces, key.as_bytes(), old).put(
                    Tree::Traces,
                    key.as_bytes(),
                    new,
                );
            }
            if self.kv.commit(batch)? {
                return Ok(());
            }
        }
        Err(RegistryError::Unavailable(
            "the traces kept changing under this export; send it again".into(),
        ))
    }

    /// Drops each enterprise's oldest traces beyond [`TRACES_PER_ENTERPRISE`];
    /// returns how many.
    pub fn trim_traces(&self) -> Result<usize> {
        let mut per: BTreeMap<String, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
        for (k, v) in self.kv.scan_prefix(Tree::Traces, b"")? {
            let ent = String::from_utf8_lossy(&k)
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let start = serde_json::from_slice::<TraceSummary>(&v)
                .map(|t| t.start_unix_nano)
                .unwrap_or(0);
            per.entry(ent).or_default().push((start, k));
        }
        let mut dropped = 0;
        for (_, mut list) in per {
            if list.len() <= TRACES_PER_ENTERPRISE {
                continue;
            }
            list.sort();
            let excess = list.len() - TRACES_PER_ENTERPRISE;
            let mut batch = Batch::new();
            for (_, k) in list.into_iter().take(excess) {
                batch = batch.delete(Tree::Traces, k);
            }
            if self.kv.commit(batch)? {
                dropped += excess;
            }
        }
        Ok(dropped)
    }

    /// Recent traces, newest first: an enterprise's own, or (operator) any one's.
    pub fn traces(
        &self,
        p: &Principal,
        enterprise: &str,
        filter: &TraceFilter,
    ) -> Result<Vec<TraceSummary>> {
        let e = match p.role {
            Role::Operator if enterprise.is_empty() => String::new(),
            _ => self.tenant(p, enterprise)?,
        };
        if !e.is_empty() && self.kv.get(Tree::Enterprises, e.as_bytes())?.is_none() {
            return Err(RegistryError::NotFound(format!("enterprise `{e}`")));
        }
        let limit = match filter.limit {
            0 => 100,
            n => n.min(TRACES_PER_ENTERPRISE),
        };
        let prefix = if e.is_empty() {
            String::new()
        } else {
            format!("{e}/")
        };
        let stored = self.kv.scan_prefix(Tree::Traces, prefix.as_bytes())?;
        let mut out: Vec<TraceSummary> = stored
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice::<TraceSummary>(v).ok())
            .filter(|t| {
                // A request span not here yet (still in the device's batch): not shown until it is.
                !t.name.is_empty()
                    && (filter.device.is_empty() || t.device_id == filter.device)
                    && (filter.kit.is_empty()
                        || t.kit_reference == filter.kit
                        || t.kit_digest == filter.kit)
                    && (filter.trace_id.is_empty() || t.trace_id == filter.trace_id)
            })
            .collect();
        out.sort_by_key(|t| std::cmp::Reverse(t.start_unix_nano));
        out.truncate(limit);
        Ok(out)
    }
}

/// Which traces to list.
#[derive(Clone, Debug, Default)]
pub struct TraceFilter {
    pub device: String,
    /// `team/name@version` or a kit digest.
    pub kit: String,
    pub trace_id: String,
    pub limit: usize,
}
