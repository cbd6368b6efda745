//! The agent: restore the last good kit, then sync with the registry; pull
//! what a new desired kit lacks, verify it against the device's own trust
//! roots, run its golden samples here, activate it atomically (keeping the
//! previous kit as the fallback), report; fall back by itself when a kit fails.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use algobay_runtime::golden::run_golden;
use algobay_runtime::{Digest, KitArchive, LoadedKit, Manifest, Runtime, TrustRoots};
use algobay_sdk::fleet::{Desired, DeviceState};
use algobay_sdk::{Client, SdkError};

use crate::cache::BlobCache;
use crate::config::AgentConfig;
use crate::error::{AgentError, Result};
use crate::identity::Identity;
use crate::oip::{OipError, RawTensor};
use crate::state::{AgentState, Failure, Slot};
use crate::telemetry::RequestTrace;

mod lifecycle;
mod serving;

/// A kit loaded and serving.
#[derive(Debug)]
pub struct Active {
    pub slot: Slot,
    pub kit: LoadedKit,
    /// On a canary of a field-gated rollout: the kit this one replaces, run
    /// on the same requests so that the gate compares both on them.
    pub shadow: RwLock<Option<Arc<ShadowKit>>>,
}

/// A kit answering in the shadow of the active one.
#[derive(Debug)]
pub struct ShadowKit {
    pub digest: String,
    pub kit: LoadedKit,
}

impl Active {
    pub fn new(slot: Slot, kit: LoadedKit) -> Active {
        Active {
            slot,
            kit,
            shadow: RwLock::new(None),
        }
    }

    /// The kit in the shadow, if any.
    pub fn shadow(&self) -> Option<Arc<ShadowKit>> {
        self.shadow
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Requests served by the active kit: counts and recent latencies.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Requests turned away because too many were waiting (since start).
    pub rejected: AtomicU64,
    latencies_ms: Mutex<VecDeque<f64>>,
    /// Requests by latency bucket (upper bounds in [`LATENCY_BUCKETS_MS`]) since start.
    histogram: Mutex<Histogram>,
}

/// Upper bounds of the latency histogram's buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
];

/// Cumulative counts per bucket, plus the sum and count (Prometheus' form).
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    pub buckets: [u64; 12],
    pub sum_ms: f64,
    pub count: u64,
    pub errors: u64,
}

/// Longest message reported to the registry, in bytes.
const MAX_MESSAGE: usize = 2000;

/// Latencies kept for the p99.
const LATENCY_WINDOW: usize = 2048;

impl Stats {
    pub fn record(&self, ms: f64, ok: bool) {
        {
            let mut h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
            for (i, le) in LATENCY_BUCKETS_MS.iter().enumerate() {
                if ms <= *le {
                    h.buckets[i] += 1;
                }
            }
            h.sum_ms += ms;
            h.count += 1;
            if !ok {
                h.errors += 1;
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut l = self.latencies_ms.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == LATENCY_WINDOW {
            l.pop_front();
        }
        l.push_back(ms);
    }

    pub fn record_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The latency histogram since the agent started.
    pub fn histogram(&self) -> Histogram {
        self.histogram
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        self.latencies_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn p99(&self) -> f64 {
        let mut v: Vec<f64> = self
            .latencies_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * 0.99).round() as usize]
    }
}

/// What the agent is doing about its desired kit.
#[derive(Clone, Debug, Default, PartialEq)]
struct Progress {
    phase: String,
    message: String,
    deployment_id: String,
    target_digest: String,
}

/// The edge agent.
pub struct Agent {
    cfg: AgentConfig,
    identity: Identity,
    server_ca: Option<String>,
    runtime: Arc<Runtime>,
    roots: TrustRoots,
    cache: BlobCache,
    state: Mutex<AgentState>,
    serving: RwLock<Option<Arc<Active>>>,
    progress: Mutex<Progress>,
    pub stats: Stats,
    /// Blob bytes received from the registry since start.
    pub bytes_received: AtomicU64,
    /// Kit bytes taken from an OCI mirror instead of the registry.
    pub mirror_bytes: AtomicU64,
    /// Requests running at once.
    running: tokio::sync::Semaphore,
    /// Requests waiting for a turn.
    waiting: std::sync::atomic::AtomicUsize,
    /// Request bodies being read at once (before their turn): as many as may
    /// run and wait, so memory stays bounded while slow senders hold no turn.
    reading: tokio::sync::Semaphore,
    /// OpenTelemetry metrics, when exported.
    telemetry: Option<crate::telemetry::Telemetry>,
    /// Hard examples waiting to go to the registry.
    pub samples: crate::samples::SampleQueue,
    /// Recent requests' inputs, for the application's feedback.
    pub recent: crate::recent::RecentRequests,
    /// The active deployment keeps no hard examples.
    sampling_off: std::sync::atomic::AtomicBool,
    /// What one push of samples may carry, as the registry last said (0: not yet).
    push_count: AtomicU64,
    push_bytes: AtomicU64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("device", &self.identity.device_id)
            .finish_non_exhaustive()
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether an error is the link's (retry later) rather than the kit's (give up on it).
fn transient(e: &AgentError) -> bool {
    match e {
        AgentError::Registry(SdkError::Connect { .. }) | AgentError::Io { .. } => true,
        AgentError::Registry(SdkError::Status { code, .. }) => matches!(
            code,
            tonic_code::Unavailable
                | tonic_code::Unknown
                | tonic_code::Cancelled
                | tonic_code::DeadlineExceeded
                | tonic_code::Internal
                | tonic_code::Unauthenticated
                | tonic_code::ResourceExhausted
        ),
        _ => false,
    }
}

mod tonic_code {
    pub use algobay_sdk::client::Code::*;
}

impl Agent {
    /// Enrolls if needed, then restores the last good kit from disk.
    pub async fn start(cfg: AgentConfig, runtime: Arc<Runtime>) -> Result<Arc<Agent>> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| crate::error::io(&cfg.data_dir, e))?;
        let server_ca = match &cfg.ca_cert {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| crate::error::io(p, e))?),
            None => None,
        };
        let identity = match Identity::load(&cfg.data_dir)? {
            Some(id) => id,
            None => {
                let id = Identity::enroll(&cfg, server_ca.clone()).await?;
                tracing::info!(device = %id.device_id, enterprise = %id.enterprise, "enrolled");
                id
            }
        };
        let mut roots = TrustRoots::new();
        for p in &cfg.trust {
            roots.trust_file(p)?;
        }
        if cfg.trust_registry && !identity.registry_key.is_empty() {
            roots.trust(identity.registry_key.parse()?);
        }
        let cache = BlobCache::open(&cfg.data_dir)?;
        let state = AgentState::load(&cfg.data_dir)?;
        let samples = crate::samples::SampleQueue::open(&cfg.data_dir, cfg.sample_budget_mb << 20)?;
        let recent = crate::recent::RecentRequests::open(
            &cfg.data_dir,
            cfg.recent_requests,
            cfg.recent_budget_mb << 20,
        )?;
        let telemetry = if cfg.telemetry_seconds == 0 {
            None
        } else {
            let channel = Client::device_channel(
                &cfg.registry,
                server_ca.clone(),
                &identity.cert_pem,
                &identity.key_pem,
            )?;
            Some(crate::telemetry::Telemetry::new(
                channel,
                Duration::from_secs(cfg.telemetry_seconds),
                &identity.device_id,
                cfg.trace_sample_ratio,
                &cfg.data_dir,
                &crate::telemetry::CollectorConfig::resolve(
                    &cfg.otlp_endpoint,
                    cfg.otlp_ca_cert.clone(),
                    &cfg.otlp_headers,
                ),
            )?)
        };
        let running = if cfg.max_concurrent == 0 {
            4 * std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            cfg.max_concurrent
        };
        let agent = Arc::new(Agent {
            reading: tokio::sync::Semaphore::new(running + cfg.max_queue.max(1)),
            identity,
            server_ca,
            runtime,
            roots,
            cache,
            state: Mutex::new(state),
            serving: RwLock::new(None),
            progress: Mutex::new(Progress {
                phase: "idle".into(),
                ..Default::default()
            }),
            stats: Stats::default(),
            bytes_received: AtomicU64::new(0),
            mirror_bytes: AtomicU64::new(0),
            running: tokio::sync::Semaphore::new(running),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            telemetry,
            samples,
            recent,
            sampling_off: std::sync::atomic::AtomicBool::new(false),
            push_count: AtomicU64::new(0),
            push_bytes: AtomicU64::new(0),
            cfg,
        });
        let a = agent.clone();
        tokio::task::spawn_blocking(move || a.restore())
            .await
            .map_err(|e| AgentError::Config(format!("restore task: {e}")))??;
        Ok(agent)
    }

    pub fn device_id(&self) -> &str {
        &self.identity.device_id
    }

    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// Trace spans dropped while the link was down (0 without telemetry).
    pub fn telemetry_spans_dropped(&self) -> u64 {
        self.telemetry.as_ref().map_or(0, |t| t.spans_dropped())
    }

    /// The kit serving now.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.serving
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn state(&self) -> AgentState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_progress(&self, phase: &str, mut message: String, desired: Option<&Desired>) {
        // The registry takes messages of up to 4 KiB; a longer one would be refused.
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.phase = phase.into();
        p.message = message;
        if let Some(d) = desired {
            p.deployment_id = d.deployment_id.clone();
            p.target_digest = d.kit_digest.clone();
        }
    }

    /// The phase and message of the current work.
    pub fn phase(&self) -> (String, String) {
        let p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        (p.phase.clone(), p.message.clone())
    }

    /// What the device tells the registry.
    pub fn report(&self) -> DeviceState {
        let st = self.state();
        let p = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let requests = self.stats.requests.load(Ordering::Relaxed);
        let errors = self.stats.errors.load(Ordering::Relaxed);
        DeviceState {
            active_digest: st
                .active
                .as_ref()
                .map(|s| s.digest.clone())
                .unwrap_or_default(),
            active_reference: st
                .active
                .as_ref()
                .map(|s| s.reference.clone())
                .unwrap_or_default(),
            previous_digest: st
                .previous
                .as_ref()
                .map(|s| s.digest.clone())
                .unwrap_or_default(),
            deployment_id: p.deployment_id,
            phase: p.phase,
            message: p.message,
            requests,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p99_ms: self.stats.p99(),
            active_since_unix: st.active.as_ref().map(|s| s.activated_unix).unwrap_or(0),
            target_digest: p.target_digest,
            samples_queued: self.samples.len().0 as u64,
            samples_dropped: self.samples.dropped(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }
}

/// A request's turn on the active kit: it holds one of the running slots.
pub struct Turn<'a> {
    active: Arc<Active>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::fmt::Debug for Turn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("kit", &self.active.slot.reference)
            .finish_non_exhaustive()
    }
}

impl Turn<'_> {
    /// The kit the request runs on.
    pub fn active(&self) -> &Arc<Active> {
        &self.active
    }
}
