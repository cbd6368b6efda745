//! Sampled request traces sent by devices over OTLP: per enterprise, the most
//! recent ones, each the request span with its step spans. Kept in memory (a
//! bounded ring per enterprise): they are for looking at what is happening now;
//! the figures that add up over time are the metrics of [`crate::telemetry`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::domain::{Principal, Role};
use crate::error::{RegistryError, Result};
use crate::service::Registry;
use crate::store::Tree;

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
#[derive(Clone, Debug, Default, PartialEq)]
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

#[derive(Debug, Default)]
pub(crate) struct EnterpriseTraces {
    order: VecDeque<String>,
    by_id: HashMap<String, TraceSummary>,
}

/// enterprise → its recent traces.
pub(crate) type TraceMap = HashMap<String, EnterpriseTraces>;

fn ms(start: u64, end: u64) -> f64 {
    end.saturating_sub(start) as f64 / 1e6
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
        let mut map = self.traces.lock().unwrap_or_else(|e| e.into_inner());
        let mine = map.entry(p.subject.clone()).or_default();
        for s in spans {
            if !mine.by_id.contains_key(&s.trace_id) {
                mine.order.push_back(s.trace_id.clone());
                while mine.order.len() > TRACES_PER_ENTERPRISE {
                    if let Some(old) = mine.order.pop_front() {
                        mine.by_id.remove(&old);
                    }
                }
            }
            let t = mine
                .by_id
                .entry(s.trace_id.clone())
                .or_insert_with(|| TraceSummary {
                    trace_id: s.trace_id.clone(),
                    device_id: p.token_id.clone(),
                    enterprise: p.subject.clone(),
                    ..Default::default()
                });
            if t.device_id != p.token_id {
                // One trace id from two devices: keep the first device's spans only.
                continue;
            }
            match s.attributes.get("step") {
                Some(step) => {
                    t.steps.push((
                        s.start_unix_nano,
                        step.clone(),
                        ms(s.start_unix_nano, s.end_unix_nano),
                    ));
                    t.steps.sort_by_key(|s| s.0);
                    t.steps.truncate(256);
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
        Ok(())
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
        let map = self.traces.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<TraceSummary> = map
            .iter()
            .filter(|(ent, _)| e.is_empty() || **ent == e)
            .flat_map(|(_, t)| t.by_id.values())
            .filter(|t| {
                // A request span not here yet (still in the device's batch): not shown until it is.
                !t.name.is_empty()
                    && (filter.device.is_empty() || t.device_id == filter.device)
                    && (filter.kit.is_empty()
                        || t.kit_reference == filter.kit
                        || t.kit_digest == filter.kit)
                    && (filter.trace_id.is_empty() || t.trace_id == filter.trace_id)
            })
            .cloned()
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
