//! `agent.toml`: where the registry is, what the device trusts, where it keeps its state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{AgentError, Result};

/// The agent's settings (file, then environment, then flags).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `https://host:port` of the registry.
    pub registry: String,
    /// PEM certificate (or CA) the registry's TLS certificate must chain to.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Used once, at the first start (or `ALGOBAY_ENROLLMENT_TOKEN`).
    #[serde(default)]
    pub enrollment_token: Option<String>,
    /// Where the identity, the blob cache and the state live.
    pub data_dir: PathBuf,
    #[serde(default)]
    pub name: String,
    /// Labels deployments select devices by (the enrollment token may add more).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Team public keys (files) whose signatures make a kit trusted; held on the
    /// device, so verification works offline.
    #[serde(default)]
    pub trust: Vec<PathBuf>,
    /// Also trust the registry's countersignature (its key comes with enrollment):
    /// then any kit the registry accepted runs, not only those of the teams in `trust`.
    #[serde(default = "default_true")]
    pub trust_registry: bool,
    /// ONNX Runtime shared library (else the `ORT_DYLIB_PATH` environment variable).
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// The most linear memory (MiB) a stage may use on this device, whatever
    /// its kit asks for; a kit that needs more fails its golden samples here.
    #[serde(default)]
    pub stage_memory_mb: Option<u32>,
    /// The most time (ms) one stage call may take on this device.
    #[serde(default)]
    pub stage_time_ms: Option<u32>,
    /// Local serving address: HTTP (status, the Open Inference Protocol's REST form, `/metrics`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The Open Inference Protocol's gRPC form (`inference.GRPCInferenceService`); empty: off.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: String,
    /// ONNX Runtime threads per session (0: its own choice, all cores). With
    /// several requests at once, 1 often serves more: each model keeps up to one
    /// session per core.
    #[serde(default)]
    pub ort_threads: usize,
    /// Requests run at once (0: four per core, so that overlapping calls of a
    /// model with a batch axis can be joined into batches).
    #[serde(default)]
    pub max_concurrent: usize,
    /// The most overlapping calls of a model with a batch axis (declared by the
    /// kit) run as one batch; 1 turns dynamic batching off.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Requests that may wait for a turn; past that, callers are told the device is overloaded.
    #[serde(default = "default_queue")]
    pub max_queue: usize,
    /// Largest JSON request body (the protocol's JSON form, or JSON sent to
    /// `/v1/infer`); bigger ones are refused with 413. JSON tensors take many
    /// times their size once parsed: send large tensors in binary.
    #[serde(default = "default_json_body")]
    pub max_json_body_bytes: usize,
    /// Largest other request body (a file sent to `/v1/infer`, binary tensors,
    /// a gRPC message); bigger ones are refused with 413 (RESOURCE_EXHAUSTED).
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Connections open at once on each listener (HTTP and gRPC); past it the
    /// one idle the longest is shed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one address; past it that address's
    /// longest idle is shed.
    #[serde(default = "default_max_per_peer")]
    pub max_connections_per_peer: usize,
    /// Time a client has to send a request's headers (also the longest idle
    /// time of a kept-alive connection), in seconds.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: u64,
    /// Time a client has to send a request's body, in seconds. Bodies are read
    /// before a request takes a turn on the kit.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_seconds: u64,
    /// How long one sync waits for a change at the registry.
    #[serde(default = "default_wait")]
    pub sync_wait_seconds: u32,
    /// How often the device reports its serving figures while nothing changes.
    #[serde(default = "default_report")]
    pub report_seconds: u32,
    /// Longest pause between reconnection attempts.
    #[serde(default = "default_retry")]
    pub retry_max_seconds: u64,
    /// How often serving metrics and sampled traces go to the registry's OTLP receiver (0: never).
    #[serde(default = "default_telemetry")]
    pub telemetry_seconds: u64,
    /// Share of requests traced (0 to 1) when the caller's `traceparent` does
    /// not decide; a caller's sampled `traceparent` is always followed.
    #[serde(default = "default_trace_ratio")]
    pub trace_sample_ratio: f64,
    /// Disk the hard-example queue may use, in MiB; past it the oldest are dropped.
    #[serde(default = "default_sample_budget")]
    pub sample_budget_mb: u64,
    /// Recent requests whose inputs are kept so that the application's ground
    /// truth (`POST /v1/feedback`) can name them; 0 keeps none.
    #[serde(default = "default_recent")]
    pub recent_requests: usize,
    /// Disk the recent requests may use, in MiB; past it the oldest go.
    #[serde(default = "default_recent_budget")]
    pub recent_budget_mb: u64,
    /// The application's key: when set, `POST /v1/feedback` is taken only
    /// with `Authorization: Bearer <key>` (any other caller gets 401). Unset,
    /// any caller that reaches the listener may give feedback.
    #[serde(default)]
    pub feedback_key: Option<String>,
    /// OCI repositories the enterprise mirrors kits into (`host[:port]/path`):
    /// a kit `team/name@version` is looked for first at
    /// `<mirror>/team/name:version` and taken from there when its digest is
    /// the one the registry wants; else it comes from the registry.
    #[serde(default)]
    pub kit_mirrors: Vec<String>,
    /// Blobs no kit uses are deleted once they are this old.
    #[serde(default = "default_grace")]
    pub gc_grace_seconds: u64,
    /// The enterprise's own OpenTelemetry collector (OTLP/gRPC, `http://` or
    /// `https://`), which gets the same metrics and traces as the registry;
    /// empty: `OTEL_EXPORTER_OTLP_ENDPOINT`, if set.
    #[serde(default)]
    pub otlp_endpoint: String,
    /// PEM CA certificates of an `https://` collector (else `OTEL_EXPORTER_OTLP_CERTIFICATE`).
    #[serde(default)]
    pub otlp_ca_cert: Option<PathBuf>,
    /// `key=value,…` headers for the collector (else `OTEL_EXPORTER_OTLP_HEADERS`).
    #[serde(default)]
    pub otlp_headers: String,
}

fn default_true() -> bool {
    true
}
fn default_listen() -> String {
    "127.0.0.1:8470".into()
}
fn default_grpc_listen() -> String {
    "127.0.0.1:8471".into()
}
fn default_trace_ratio() -> f64 {
    0.01
}

fn default_max_batch() -> usize {
    8
}

fn default_queue() -> usize {
    64
}
fn default_max_connections() -> usize {
    algobay_net::Limits::default().max_connections
}
fn default_max_per_peer() -> usize {
    algobay_net::Limits::default().max_per_peer
}
fn default_header_timeout() -> u64 {
    algobay_net::Limits::default().header_timeout.as_secs()
}
fn default_body_timeout() -> u64 {
    algobay_net::Limits::default().body_timeout.as_secs()
}
fn default_wait() -> u32 {
    20
}
fn default_report() -> u32 {
    10
}
fn default_retry() -> u64 {
    30
}
fn default_sample_budget() -> u64 {
    256
}
fn default_recent() -> usize {
    4096
}
fn default_recent_budget() -> u64 {
    64
}
fn default_telemetry() -> u64 {
    10
}
fn default_grace() -> u64 {
    3600
}

impl AgentConfig {
    /// The bounds of the agent's listeners.
    pub fn listener_limits(&self) -> algobay_net::Limits {
        algobay_net::Limits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            header_timeout: std::time::Duration::from_secs(self.header_timeout_seconds),
            body_timeout: std::time::Duration::from_secs(self.body_timeout_seconds),
            ..algobay_net::Limits::default()
        }
    }

    /// The device's ceiling on stage limits, if it sets one.
    pub fn stage_limits_cap(&self) -> Option<algobay_runtime::manifest::Limits> {
        if self.stage_memory_mb.is_none() && self.stage_time_ms.is_none() {
            return None;
        }
        Some(algobay_runtime::manifest::Limits {
            memory_mb: self.stage_memory_mb.unwrap_or(u32::MAX),
            time_ms: self.stage_time_ms.unwrap_or(u32::MAX),
        })
    }

    /// Reads and checks a config file.
    pub fn read(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::error::io(path, e))?;
        let mut c: AgentConfig = toml::from_str(&text)
            .map_err(|e| AgentError::Config(format!("{}: {e}", path.display())))?;
        // Relative paths are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut c.data_dir);
        if let Some(p) = c.ca_cert.as_mut() {
            fix(p);
        }
        if let Some(p) = c.otlp_ca_cert.as_mut() {
            fix(p);
        }
        c.trust.iter_mut().for_each(fix);
        c.check()?;
        Ok(c)
    }

    /// Checks values the file format cannot.
    pub fn check(&self) -> Result<()> {
        if !(self.registry.starts_with("https://") || self.registry.starts_with("http://")) {
            return Err(AgentError::Config(format!(
                "registry: `{}` must start with https://",
                self.registry
            )));
        }
        if self.trust.is_empty() && !self.trust_registry {
            return Err(AgentError::Config(
                "trust: name at least one team public key, or set trust_registry; no kit runs unverified"
                    .into(),
            ));
        }
        if self.sync_wait_seconds > 60 {
            return Err(AgentError::Config(format!(
                "sync_wait_seconds: {} is above 60",
                self.sync_wait_seconds
            )));
        }
        if self.report_seconds == 0 {
            return Err(AgentError::Config(
                "report_seconds: must be at least 1".into(),
            ));
        }
        self.listener_limits().check().map_err(AgentError::Config)?;
        Ok(())
    }
}

fn default_json_body() -> usize {
    4 << 20
}

fn default_body() -> usize {
    64 << 20
}

#[cfg(test)]
mod reference {
    //! `docs/agent.md` documents exactly the keys the parser takes, with the
    //! defaults it applies: a key added to one and not the other fails here.
    use std::collections::BTreeSet;

    use super::AgentConfig;

    const DOC: &str = include_str!("../../docs/agent.md");
    const REQUIRED: &str = "registry = \"https://r:1\"\ndata_dir = \"d\"\n";

    /// (key, default) of every table row.
    fn rows() -> Vec<(String, String)> {
        DOC.lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .map(|rest| {
                let key = rest.split('`').next().unwrap().to_owned();
                let default = rest.split('|').nth(1).unwrap().trim().to_owned();
                (key, default)
            })
            .collect()
    }

    fn parse(text: &str) -> Result<AgentConfig, String> {
        toml::from_str::<AgentConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_reference_lists_every_key_the_parser_takes_and_no_other() {
        let err = parse(&format!("{REQUIRED}__probe__ = 1\n")).unwrap_err();
        let at = err.find("expected").unwrap();
        let code: BTreeSet<String> = err[at..]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let documented: BTreeSet<String> = rows().into_iter().map(|r| r.0).collect();
        assert_eq!(
            code.difference(&documented).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "parsed but not in docs/agent.md"
        );
        assert_eq!(
            documented.difference(&code).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "in docs/agent.md but not parsed"
        );
    }

    #[test]
    fn every_documented_default_is_the_one_the_parser_applies() {
        let bare = format!("{:?}", parse(REQUIRED).unwrap());
        for (key, default) in rows() {
            match default.as_str() {
                "required" => {
                    let without: String = REQUIRED
                        .lines()
                        .filter(|l| !l.starts_with(&format!("{key} =")))
                        .map(|l| format!("{l}\n"))
                        .collect();
                    let err = parse(&without).unwrap_err();
                    assert!(err.contains(&key), "{key} is documented as required: {err}");
                }
                "none" => {}
                d => {
                    let value = d.trim_matches('`');
                    let set = parse(&format!("{REQUIRED}{key} = {value}\n"))
                        .unwrap_or_else(|e| panic!("{key} = {value}: {e}"));
                    assert_eq!(
                        format!("{set:?}"),
                        bare,
                        "{key}: documented default {value}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_reference_example_is_a_config_the_agent_takes() {
        let start = DOC.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + DOC[start..].find("```").unwrap();
        let c = parse(&DOC[start..end]).unwrap();
        c.check().unwrap();
        assert_eq!(c.grpc_listen, "127.0.0.1:8471");
        assert_eq!(c.feedback_key.as_deref(), Some("change-me"));
    }
}
