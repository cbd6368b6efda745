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

/// A kit loaded and serving.
#[derive(Debug)]
pub struct Active {
    pub slot: Slot,
    pub kit: LoadedKit,
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
    /// Requests running at once.
    running: tokio::sync::Semaphore,
    /// Requests waiting for a turn.
    waiting: std::sync::atomic::AtomicUsize,
    /// OpenTelemetry metrics, when exported.
    telemetry: Option<crate::telemetry::Telemetry>,
    /// Hard examples waiting to go to the registry.
    pub samples: crate::samples::SampleQueue,
    /// The active deployment keeps no hard examples.
    sampling_off: std::sync::atomic::AtomicBool,
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
            )?)
        };
        let agent = Arc::new(Agent {
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
            running: tokio::sync::Semaphore::new(if cfg.max_concurrent == 0 {
                4 * std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            } else {
                cfg.max_concurrent
            }),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            telemetry,
            samples,
            sampling_off: std::sync::atomic::AtomicBool::new(false),
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

    /// Reads a kit of a slot from the cache and verifies it against the device's trust roots.
    fn archive(&self, slot: &Slot) -> Result<KitArchive> {
        let d: Digest = slot.digest.parse()?;
        let manifest_bytes = self.cache.read(&d)?;
        let manifest = Manifest::from_json(&manifest_bytes)?;
        let mut blobs = BTreeMap::new();
        for b in manifest.blobs.keys() {
            blobs.insert(*b, Arc::new(self.cache.read(b)?));
        }
        Ok(KitArchive {
            manifest,
            manifest_bytes,
            signatures: slot.signatures.clone(),
            blobs,
        })
    }

    fn load(&self, slot: &Slot) -> Result<LoadedKit> {
        let verified = self.archive(slot)?.verify(&self.roots)?;
        Ok(self.runtime.load(&verified)?)
    }

    /// At start: serve the active kit, or the previous one if the active one
    /// no longer loads.
    fn restore(&self) -> Result<()> {
        let mut st = self.state();
        let mut changed = false;
        if let Some(slot) = st.active.clone() {
            match self.load(&slot) {
                Ok(kit) => {
                    tracing::info!(kit = %slot.reference, digest = %slot.digest, "serving the active kit");
                    *self.serving.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(Active { slot, kit }));
                    self.set_progress("active", String::new(), None);
                }
                Err(e) => {
                    tracing::error!(kit = %slot.reference, error = %e, "the active kit does not load; falling back");
                    st.active = None;
                    changed = true;
                }
            }
        }
        if st.active.is_none() {
            if let Some(slot) = st.previous.clone() {
                if let Ok(kit) = self.load(&slot) {
                    tracing::info!(kit = %slot.reference, "serving the previous kit");
                    *self.serving.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(Active {
                            slot: slot.clone(),
                            kit,
                        }));
                    st.active = Some(slot);
                    st.previous = None;
                    changed = true;
                }
            }
        }
        if changed {
            st.save(&self.cfg.data_dir)?;
            *self.state.lock().unwrap_or_else(|e| e.into_inner()) = st;
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Client> {
        Ok(Client::connect_device(
            &self.cfg.registry,
            self.server_ca.clone(),
            &self.identity.cert_pem,
            &self.identity.key_pem,
        )
        .await?)
    }

    /// Syncs until `shutdown` resolves: long-polls the desired state, applies
    /// it, reports. The registry being away only delays this; serving goes on.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::select! {
            _ = self.clone().sync_loop() => {}
            _ = shutdown => {}
        }
        if self.telemetry.is_some() {
            let a = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(t) = &a.telemetry {
                    t.flush();
                }
            })
            .await;
        }
    }

    async fn sync_loop(self: Arc<Self>) {
        let max = Duration::from_secs(self.cfg.retry_max_seconds.max(1));
        let mut backoff = Duration::from_millis(500);
        let mut known = (String::new(), String::new());
        let mut last_sent: Option<DeviceState> = None;
        loop {
            let client = match self.connect().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "registry unreachable; serving on");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(max);
                    continue;
                }
            };
            loop {
                let report = self.report();
                // A change of phase or kit is sent at once; figures every report_seconds.
                let news = last_sent.as_ref().is_none_or(|l| {
                    l.phase != report.phase
                        || l.active_digest != report.active_digest
                        || l.target_digest != report.target_digest
                        || l.deployment_id != report.deployment_id
                });
                let wait = if news {
                    0
                } else {
                    self.cfg.sync_wait_seconds.min(self.cfg.report_seconds)
                };
                match client.sync(Some(&report), (&known.0, &known.1), wait).await {
                    Ok(desired) => {
                        backoff = Duration::from_millis(500);
                        last_sent = Some(report);
                        known = (desired.kit_digest.clone(), desired.deployment_id.clone());
                        if let Err(e) = self.apply(&client, &desired).await {
                            tracing::warn!(error = %e, "update interrupted; it resumes on the next sync");
                            self.set_progress("pulling", format!("interrupted: {e}"), None);
                            break;
                        }
                        if !self.samples.is_empty() {
                            self.upload_samples(&client).await;
                        }
                        if let Some(t) = &self.telemetry {
                            // Spans held back while the link was down go now, traffic or not.
                            t.resend_held().await;
                        }
                    }
                    Err(e) => {
                        if matches!(&e, SdkError::Status { code, .. } if *code == tonic_code::Unauthenticated)
                        {
                            tracing::error!(error = %e, "the registry refuses this device");
                        } else {
                            tracing::warn!(error = %e, retry_in = ?backoff, "sync failed; serving on");
                        }
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max);
        }
    }

    /// Moves the device towards the desired state. Errors returned are the
    /// link's; a kit that fails is recorded, reported and not retried.
    pub async fn apply(self: &Arc<Self>, client: &Client, desired: &Desired) -> Result<()> {
        self.sampling_off
            .store(desired.sampling_off, Ordering::Relaxed);
        let st = self.state();
        if desired.kit_digest.is_empty() {
            if st.active.is_some() {
                let a = self.clone();
                tokio::task::spawn_blocking(move || a.deactivate())
                    .await
                    .map_err(|e| AgentError::Config(format!("task: {e}")))??;
            }
            self.set_progress("idle", String::new(), Some(desired));
            return Ok(());
        }
        if st
            .active
            .as_ref()
            .is_some_and(|s| s.digest == desired.kit_digest)
        {
            self.set_progress("active", String::new(), Some(desired));
            return Ok(());
        }
        if let Some(f) = st.failed(&desired.deployment_id, &desired.kit_digest) {
            self.set_progress("failed", f.reason.clone(), Some(desired));
            return Ok(());
        }
        match self.install(client, desired).await {
            Ok(()) => Ok(()),
            Err(e) if transient(&e) => Err(e),
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(kit = %desired.kit_reference, reason = %reason, "kit failed on this device; keeping the current kit");
                let mut st = self.state();
                st.record_failure(Failure {
                    deployment_id: desired.deployment_id.clone(),
                    digest: desired.kit_digest.clone(),
                    reason: reason.clone(),
                });
                let data = self.cfg.data_dir.clone();
                let saved = st.clone();
                tokio::task::spawn_blocking(move || saved.save(&data))
                    .await
                    .map_err(|e| AgentError::Config(format!("task: {e}")))??;
                *self.state.lock().unwrap_or_else(|e| e.into_inner()) = st;
                self.set_progress("failed", reason, Some(desired));
                Ok(())
            }
        }
    }

    async fn install(self: &Arc<Self>, client: &Client, desired: &Desired) -> Result<()> {
        let started = Instant::now();
        self.set_progress("pulling", String::new(), Some(desired));
        let d: Digest = desired.kit_digest.parse()?;
        let got = self.cache.fetch(client, &d).await?;
        self.bytes_received.fetch_add(got, Ordering::Relaxed);
        let manifest = Manifest::from_json(&self.cache.read(&d)?)?;
        let mut sent = got;
        for b in manifest.blobs.keys() {
            let n = self.cache.fetch(client, b).await?;
            self.bytes_received.fetch_add(n, Ordering::Relaxed);
            sent += n;
        }
        tracing::info!(kit = %desired.kit_reference, bytes = sent, "kit pulled");
        self.set_progress("testing", String::new(), None);
        let slot = Slot {
            digest: desired.kit_digest.clone(),
            reference: desired.kit_reference.clone(),
            deployment_id: desired.deployment_id.clone(),
            signatures: desired.signatures.clone(),
            activated_unix: 0,
        };
        let a = self.clone();
        let kit = tokio::task::spawn_blocking(move || a.test(&slot).map(|k| (slot, k)))
            .await
            .map_err(|e| AgentError::Config(format!("task: {e}")))??;
        // Testing takes a while: if the registry meanwhile wants something else
        // (the deployment was rolled back), do not activate a kit nobody wants.
        // When the registry cannot be asked, the last word it gave holds.
        if let Ok(now) = client
            .sync(
                Some(&self.report()),
                (&desired.kit_digest, &desired.deployment_id),
                0,
            )
            .await
        {
            if now.kit_digest != desired.kit_digest {
                tracing::info!(kit = %desired.kit_reference, "no longer desired; not activated");
                self.set_progress("idle", String::new(), None);
                return Ok(());
            }
        }
        let a = self.clone();
        tokio::task::spawn_blocking(move || a.activate(kit.0, kit.1))
            .await
            .map_err(|e| AgentError::Config(format!("task: {e}")))??;
        tracing::info!(kit = %desired.kit_reference, seconds = started.elapsed().as_secs_f64(), "kit active");
        self.set_progress("active", String::new(), None);
        Ok(())
    }

    /// Verifies the kit against the device's trust roots, loads it and runs its golden samples.
    fn test(&self, slot: &Slot) -> Result<LoadedKit> {
        let archive = self.archive(slot)?;
        let verified = archive.clone().verify(&self.roots)?;
        let kit = self.runtime.load(&verified)?;
        for o in run_golden(&kit, &archive)? {
            if let Some(f) = o.failure {
                return Err(algobay_runtime::Error::Golden {
                    index: o.index,
                    message: f,
                }
                .into());
            }
        }
        Ok(kit)
    }

    /// The commit point: before the state file is replaced the old kit is
    /// active, after it the new one; the old one becomes the fallback.
    fn activate(&self, mut slot: Slot, kit: LoadedKit) -> Result<()> {
        slot.activated_unix = now_unix();
        let mut st = self.state();
        let old = st.active.take();
        if old.as_ref().is_some_and(|o| o.digest != slot.digest) {
            st.previous = old;
        }
        st.active = Some(slot.clone());
        st.save(&self.cfg.data_dir)?;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = st;
        *self.serving.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(Active { slot, kit }));
        self.stats.reset();
        self.collect_garbage()?;
        Ok(())
    }

    fn deactivate(&self) -> Result<()> {
        let mut st = self.state();
        if let Some(a) = st.active.take() {
            st.previous = Some(a);
        }
        st.save(&self.cfg.data_dir)?;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = st;
        *self.serving.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.stats.reset();
        tracing::info!("no kit is desired; stopped serving");
        Ok(())
    }

    /// Deletes cached blobs that neither the active nor the previous kit uses,
    /// once older than the grace period.
    pub fn collect_garbage(&self) -> Result<u64> {
        let st = self.state();
        let mut keep = BTreeSet::new();
        for slot in st.active.iter().chain(st.previous.iter()) {
            let d: Digest = slot.digest.parse()?;
            keep.insert(d);
            if let Ok(bytes) = self.cache.read(&d) {
                if let Ok(m) = Manifest::from_json(&bytes) {
                    keep.extend(m.blobs.keys().copied());
                }
            }
        }
        // A download in progress is younger than the grace period, so it stays.
        self.cache
            .gc(&keep, Duration::from_secs(self.cfg.gc_grace_seconds))
    }

    /// Runs `job` on the active kit: waits for a turn (or answers overloaded
    /// when too many wait), runs off the async threads, records the figures.
    /// `model` must name the active kit (its name without the team, or the full
    /// name; empty: whatever is active); `version`, if given, its version.
    pub async fn run_on_active<T: Send + 'static>(
        self: &Arc<Self>,
        model: &str,
        version: &str,
        traceparent: Option<&str>,
        job: impl FnOnce(&Active, &RequestTrace) -> Result<T, OipError> + Send + 'static,
    ) -> Result<(Arc<Active>, T), OipError> {
        let turn = self.admit(model, version).await?;
        self.run_admitted(turn, traceparent, job).await
    }

    /// Waits for a turn to run a request on the active kit (the bounded queue,
    /// then one of the running slots). Reading and parsing a request's body
    /// happen after this, so that memory is bounded by the running slots.
    pub async fn admit(&self, model: &str, version: &str) -> Result<Turn<'_>, OipError> {
        let active = self.model(model, version)?;
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.cfg.max_queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.stats.record_rejected();
            if let Some(t) = &self.telemetry {
                t.request(
                    &active.slot.reference,
                    &active.slot.digest,
                    "overloaded",
                    None,
                );
            }
            return Err(OipError::Overloaded(format!(
                "overloaded: {} requests are already waiting; retry later",
                self.cfg.max_queue
            )));
        }
        let permit = self.running.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.map_err(|_| OipError::Unavailable("the agent is stopping".into()))?;
        Ok(Turn {
            active,
            _permit: permit,
        })
    }

    /// Runs a job on a blocking thread in a turn [`Self::admit`] gave.
    pub async fn run_admitted<T: Send + 'static>(
        self: &Arc<Self>,
        turn: Turn<'_>,
        traceparent: Option<&str>,
        job: impl FnOnce(&Active, &RequestTrace) -> Result<T, OipError> + Send + 'static,
    ) -> Result<(Arc<Active>, T), OipError> {
        let active = turn.active.clone();
        let started = Instant::now();
        let trace = match &self.telemetry {
            Some(t) => {
                let m = active.kit.manifest();
                t.start_request(
                    traceparent,
                    &format!("infer {}", m.name),
                    &active.slot.reference,
                    &active.slot.digest,
                    &m.version,
                )
            }
            None => RequestTrace::from_traceparent(traceparent),
        };
        let kit = active.clone();
        let job_trace = trace.clone();
        let result = tokio::task::spawn_blocking(move || job(&kit, &job_trace))
            .await
            .unwrap_or_else(|e| Err(OipError::Failed(format!("request task: {e}"))));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.stats.record(ms, result.is_ok());
        if let Some(t) = &self.telemetry {
            t.end_request(
                &trace,
                result.as_ref().err().map(|e| e.to_string()).as_deref(),
            );
            let outcome = match &result {
                Ok(_) => "ok",
                Err(OipError::BadRequest(_)) => "bad_request",
                Err(_) => "failed",
            };
            t.request(
                &active.slot.reference,
                &active.slot.digest,
                outcome,
                Some(ms),
            );
        }
        result.map(|out| (active, out))
    }

    /// Runs the kit, timing each step for the stage metrics.
    pub fn run_kit(
        &self,
        active: &Active,
        trace: &RequestTrace,
        values: algobay_runtime::Values,
    ) -> Result<algobay_runtime::Values, OipError> {
        let sampling = active
            .kit
            .manifest()
            .sampling
            .clone()
            .filter(|_| !self.sampling_off.load(Ordering::Relaxed));
        let kept = sampling.as_ref().map(|_| values.clone());
        let started = std::time::SystemTime::now();
        let (out, timings) = active
            .kit
            .run_timed(values)
            .map_err(|e| OipError::Failed(e.to_string()))?;
        if let (Some(rule), Some(inputs)) = (sampling, kept) {
            if let Some(reason) = rule.matches(&out) {
                if let Err(e) = self.keep_sample(active, trace, &inputs, &out, reason) {
                    tracing::warn!(error = %e, "could not keep a hard example");
                }
            }
        }
        if let Some(t) = &self.telemetry {
            t.steps(trace, started, &timings);
            for s in &timings {
                t.stage(
                    &active.slot.reference,
                    &active.slot.digest,
                    &s.step,
                    s.elapsed.as_secs_f64() * 1000.0,
                );
            }
        }
        Ok(out)
    }

    /// Runs the active kit on the protocol's tensors; returns the outputs asked
    /// for (all when `wanted` is empty).
    pub async fn infer(
        self: &Arc<Self>,
        model: &str,
        version: &str,
        inputs: Vec<RawTensor>,
        wanted: Vec<String>,
        traceparent: Option<&str>,
    ) -> Result<(Arc<Active>, Vec<RawTensor>), OipError> {
        let turn = self.admit(model, version).await?;
        self.infer_in(turn, inputs, wanted, traceparent).await
    }

    /// [`Self::infer`] in a turn already given.
    pub async fn infer_in(
        self: &Arc<Self>,
        turn: Turn<'_>,
        inputs: Vec<RawTensor>,
        wanted: Vec<String>,
        traceparent: Option<&str>,
    ) -> Result<(Arc<Active>, Vec<RawTensor>), OipError> {
        crate::oip::check_request(&inputs, &wanted)?;
        let agent = self.clone();
        self.run_admitted(turn, traceparent, move |active, trace| {
            let manifest = active.kit.manifest();
            let mut values = algobay_runtime::Values::new();
            for t in &inputs {
                let port = manifest
                    .inputs
                    .iter()
                    .find(|p| p.name == t.name)
                    .ok_or_else(|| {
                        OipError::BadRequest(format!(
                            "input `{}` is not one of the kit's inputs ({})",
                            crate::oip::shown(&t.name),
                            manifest
                                .inputs
                                .iter()
                                .map(|p| p.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                values.insert(t.name.clone(), crate::oip::to_value(&port.ty, t)?);
            }
            if let Some(missing) = manifest
                .inputs
                .iter()
                .find(|p| !values.contains_key(&p.name))
            {
                return Err(OipError::BadRequest(format!(
                    "input `{}` is missing",
                    missing.name
                )));
            }
            for w in &wanted {
                if !manifest.outputs.iter().any(|p| &p.name == w) {
                    return Err(OipError::BadRequest(format!(
                        "output `{}` is not one of the kit's outputs",
                        crate::oip::shown(w)
                    )));
                }
            }
            let out = agent.run_kit(active, trace, values)?;
            Ok(out
                .iter()
                .filter(|(k, _)| wanted.is_empty() || wanted.contains(k))
                .map(|(k, v)| crate::oip::from_value(k, v))
                .collect::<Vec<_>>())
        })
        .await
    }

    /// Queues a hard example: its inputs' bytes, the outputs, why it was kept.
    fn keep_sample(
        &self,
        active: &Active,
        trace: &RequestTrace,
        inputs: &algobay_runtime::Values,
        outputs: &algobay_runtime::Values,
        reason: String,
    ) -> Result<()> {
        use algobay_runtime::Value;
        let mut metas = Vec::new();
        let mut data = Vec::new();
        let mut id = active.slot.digest.clone();
        for (name, v) in inputs {
            let (datatype, shape, bytes): (String, Vec<i64>, &[u8]) = match v {
                Value::Tensor(t) => (
                    crate::oip::datatype(t.dtype).into(),
                    t.shape.iter().map(|d| *d as i64).collect(),
                    &t.data,
                ),
                Value::Bytes(b) => ("BYTES".into(), vec![1], b),
                Value::Text(s) | Value::Json(s) => ("BYTES".into(), vec![1], s.as_bytes()),
            };
            let d = Digest::of(bytes);
            id.push_str(&d.to_string());
            metas.push(crate::samples::SampleInput {
                name: name.clone(),
                datatype,
                shape,
                digest: d.to_string(),
                size: bytes.len() as u64,
            });
            data.extend_from_slice(bytes);
        }
        let meta = crate::samples::SampleMeta {
            id: Digest::of(id.as_bytes()).hex(),
            kit_reference: active.slot.reference.clone(),
            kit_digest: active.slot.digest.clone(),
            deployment_id: active.slot.deployment_id.clone(),
            reason,
            trace_id: trace.trace_id.clone(),
            created_unix: now_unix(),
            outputs: serde_json::Value::Object(
                outputs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            inputs: metas,
        };
        self.samples.push(&meta, &data)
    }

    /// Sends queued hard examples, oldest first, until the queue is empty or the
    /// link fails (they stay queued then).
    async fn upload_samples(self: &Arc<Self>, client: &Client) {
        for _ in 0..64 {
            let a = self.clone();
            let batch = match tokio::task::spawn_blocking(move || a.samples.peek(4 << 20)).await {
                Ok(Ok(b)) if !b.is_empty() => b,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "sample queue unreadable");
                    return;
                }
                _ => return,
            };
            let mut seqs = Vec::new();
            let mut samples = Vec::new();
            for (seq, meta, data) in batch {
                let mut at = 0usize;
                let inputs = meta
                    .inputs
                    .iter()
                    .map(|i| {
                        let end = (at + i.size as usize).min(data.len());
                        let bytes = data[at.min(end)..end].to_vec();
                        at = end;
                        algobay_sdk::fleet::SampleInput {
                            name: i.name.clone(),
                            datatype: i.datatype.clone(),
                            shape: i.shape.clone(),
                            digest: i.digest.clone(),
                            size: i.size,
                            data: bytes,
                        }
                    })
                    .collect();
                seqs.push(seq);
                samples.push(algobay_sdk::fleet::Sample {
                    id: meta.id,
                    kit_digest: meta.kit_digest,
                    kit_reference: meta.kit_reference,
                    deployment_id: meta.deployment_id,
                    reason: meta.reason,
                    trace_id: meta.trace_id,
                    created_unix: meta.created_unix,
                    outputs_json: meta.outputs.to_string(),
                    inputs,
                    device_id: String::new(),
                    enterprise: String::new(),
                    labels: Vec::new(),
                });
            }
            match client.push_samples(&samples).await {
                Ok((stored, dup)) => {
                    tracing::info!(stored, duplicates = dup, "hard examples sent");
                    let a = self.clone();
                    if let Ok(Err(e)) =
                        tokio::task::spawn_blocking(move || a.samples.ack(&seqs)).await
                    {
                        tracing::warn!(error = %e, "sample queue");
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hard examples stay queued");
                    return;
                }
            }
        }
    }

    /// The active kit, if `model` (and `version`) name it.
    pub fn model(&self, model: &str, version: &str) -> Result<Arc<Active>, OipError> {
        let active = self
            .active()
            .ok_or_else(|| OipError::Unavailable("no kit is active on this device".into()))?;
        let m = active.kit.manifest();
        let short = m.name.rsplit('/').next().unwrap_or(&m.name);
        if !model.is_empty() && model != short && model != m.name {
            return Err(OipError::NotFound(format!(
                "model `{}` is not served here; the active kit is `{short}`",
                crate::oip::shown(model)
            )));
        }
        if !version.is_empty() && version != m.version {
            return Err(OipError::NotFound(format!(
                "model `{short}` version `{}` is not served here; version {} is",
                crate::oip::shown(version),
                m.version
            )));
        }
        Ok(active)
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
