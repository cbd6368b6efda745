//! A registry in memory with a clock the test moves, the digits kit at two
//! versions (with its training recipe) and enrolled devices of acme.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use algobay_registry::domain::*;
use algobay_registry::service::Registry;
use algobay_registry::store::MemoryStore;
use algobay_registry::tls::DeviceCa;
use algobay_runtime::{Digest, Runtime, RuntimeOptions, SecretKey};

use super::*;

pub struct FakeClock(pub AtomicI64);

impl Clock for FakeClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct Fleet {
    pub reg: Registry,
    /// The stores and runtime `reg` runs on, for another replica on them.
    pub kv: Arc<MemoryStore>,
    pub blobs: Arc<algobay_registry::blobs::MemoryBlobStore>,
    pub runtime: Arc<Runtime>,
    pub clock: Arc<FakeClock>,
    pub acme: Principal,
    pub devices: Vec<Principal>,
    pub v1: String,
    pub v2: String,
    /// The team key the kits are signed with.
    pub key: SecretKey,
    _dir: tempfile::TempDir,
}

pub fn principal(role: Role, subject: &str) -> Principal {
    Principal {
        role,
        subject: subject.into(),
        token_id: String::new(),
    }
}

/// A registry in memory with the digits kit at two versions and `n` devices of acme.
pub fn fleet(n: usize) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(
        Runtime::new(RuntimeOptions {
            cache_dir: None,
            ort_library: Some(ort_lib()),
            ort_threads: 1,
            stage_limits_cap: None,
            max_batch: 0,
        })
        .unwrap(),
    );
    let clock = Arc::new(FakeClock(AtomicI64::new(1_800_000_000)));
    let kv = Arc::new(MemoryStore::new());
    let blobs = Arc::new(algobay_registry::blobs::MemoryBlobStore::new(1 << 30));
    let reg = Registry::open(kv.clone(), blobs.clone(), runtime.clone(), clock.clone())
        .unwrap()
        .with_device_ca(DeviceCa::open_or_create(&dir.path().join("ca")).unwrap());
    let op = principal(Role::Operator, "");
    let team_key = SecretKey::generate();
    reg.create_team(&op, "algobay", "", &team_key.public().to_string())
        .unwrap();
    let team = principal(Role::Team, "algobay");
    let mut refs = Vec::new();
    for name in ["algobay/digits-a", "algobay/digits-b"] {
        let kit = build_digits(&team_key, name);
        for (d, b) in &kit.blobs {
            reg.blobs().put(d, b).unwrap();
            reg.note_upload(&team, d, true).unwrap();
        }
        reg.blobs()
            .put(&Digest::of(&kit.manifest_bytes), &kit.manifest_bytes)
            .unwrap();
        let a = reg
            .publish_kit(
                &team,
                kit.manifest_bytes.clone(),
                kit.signatures.clone(),
                "",
                &algobay_registry::service::Cancel::new(),
            )
            .unwrap();
        refs.push(a.reference());
    }
    reg.create_enterprise(&op, "acme", "", vec![]).unwrap();
    let acme = principal(Role::Enterprise, "acme");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut devices = Vec::new();
    for i in 0..n {
        let (_, token) = reg
            .create_enrollment(&acme, "", [("site".into(), "hz".into())].into(), 0)
            .unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let (d, _, _) = reg
            .enroll(&token, &csr, &format!("d{i}"), BTreeMap::new())
            .unwrap();
        devices.push(reg.authenticate_device(&d.fingerprint).unwrap());
    }
    devices.sort_by(|a, b| a.token_id.cmp(&b.token_id));
    Fleet {
        reg,
        kv,
        blobs,
        runtime,
        clock,
        acme,
        devices,
        v1: refs[0].clone(),
        v2: refs[1].clone(),
        key: team_key,
        _dir: dir,
    }
}

impl Fleet {
    pub fn policy(&self, canary: f64, soak: u32) -> RolloutPolicy {
        RolloutPolicy {
            canary_share: canary,
            soak_seconds: soak,
            max_error_rate: 0.05,
            max_p99_ms: 200.0,
            manual_promote: false,
            sampling_off: false,
            field_gate: None,
        }
    }

    pub fn deploy(&self, kit: &str, policy: RolloutPolicy) -> Deployment {
        self.reg
            .create_deployment(&self.acme, "", kit, BTreeMap::new(), policy)
            .unwrap()
    }

    pub fn wants(&self, i: usize) -> String {
        let d = self.reg.desired(&self.devices[i]).unwrap();
        d.kit_reference
    }

    /// Device `i` reports it runs what it was told to (since now), with figures.
    pub fn runs(&self, i: usize, requests: u64, error_rate: f64, p99_ms: f64) {
        let d = self.reg.desired(&self.devices[i]).unwrap();
        self.reg
            .report(
                &self.devices[i],
                DeviceState {
                    active_digest: d.kit_digest.map(|d| d.to_string()).unwrap_or_default(),
                    active_reference: d.kit_reference,
                    deployment_id: d.deployment_id,
                    phase: "active".into(),
                    requests,
                    error_rate,
                    p99_ms,
                    active_since_unix: self.now(),
                    ..Default::default()
                },
            )
            .unwrap();
    }

    /// Another replica on the same stores and clock.
    pub fn replica(&self) -> Registry {
        Registry::open(
            self.kv.clone(),
            self.blobs.clone(),
            self.runtime.clone(),
            self.clock.clone(),
        )
        .unwrap()
    }

    pub fn now(&self) -> i64 {
        self.clock.0.load(Ordering::SeqCst)
    }

    pub fn advance(&self, secs: i64) {
        self.clock.0.fetch_add(secs, Ordering::SeqCst);
        self.reg.tick().unwrap();
    }

    pub fn state(&self, id: &str) -> (DeploymentState, String) {
        let (d, _) = self.reg.deployment_status(&self.acme, id).unwrap();
        (d.state, d.reason)
    }
}

/// A sample record on `kit` for the input `data`, with its outputs, its
/// feedback label if any, and a shadow's outputs if any.
fn record(
    kit: &Digest,
    data: &[u8],
    reason: &str,
    outputs: String,
    truth: Option<&str>,
    shadow: Option<(&Digest, String)>,
) -> SampleRecord {
    SampleRecord {
        id: Digest::of(data).hex(),
        enterprise: String::new(),
        device_id: String::new(),
        kit_reference: String::new(),
        kit_digest: *kit,
        deployment_id: String::new(),
        reason: reason.into(),
        trace_id: String::new(),
        created_unix: 0,
        received_unix: 0,
        outputs_json: outputs,
        inputs: vec![SampleInput {
            name: "pixels".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            digest: Digest::of(data),
            size: data.len() as u64,
        }],
        labels: truth
            .map(|t| Label {
                value: t.into(),
                source: LabelSource::Feedback,
                by: String::new(),
                at_unix: 0,
            })
            .into_iter()
            .collect(),
        shadow_outputs_json: shadow.as_ref().map(|s| s.1.clone()).unwrap_or_default(),
        shadow_digest: shadow.map(|s| *s.0),
    }
}

/// Device `i` pushes `rec`, with `data` its one input's bytes.
fn push(f: &Fleet, i: usize, rec: SampleRecord, data: Vec<u8>) {
    f.reg
        .push_samples(&f.devices[i], vec![(rec, vec![data])])
        .unwrap();
}

/// What a classifier kit answers: `label` with a score.
fn answered(label: &str, score: f64) -> String {
    serde_json::json!({"result": [[{"label": label, "score": score}]]}).to_string()
}

/// A sample device `i` pushes: the kit answered `answer`, the application says `truth`.
pub fn feedback(f: &Fleet, i: usize, kit: &Digest, n: u32, answer: &str, truth: &str) {
    let data = format!("{i}/{kit}/{n}").into_bytes();
    let rec = record(
        kit,
        &data,
        "feedback",
        answered(answer, 0.9),
        Some(truth),
        None,
    );
    push(f, i, rec, data);
}

/// A sample device `i` pushes with no label: the kit answered "1".
pub fn feedback_free(f: &Fleet, i: usize, kit: &Digest, n: u32) {
    let data = format!("free/{i}/{kit}/{n}").into_bytes();
    let rec = record(
        kit,
        &data,
        "score 0.4 below 0.9",
        answered("1", 0.4),
        None,
        None,
    );
    push(f, i, rec, data);
}

/// A request on canary `i`: the kit (`kit`) answered `answer`, the control kit
/// in the shadow answered `shadow`, the application says `truth`.
#[allow(clippy::too_many_arguments)]
pub fn feedback_paired(
    f: &Fleet,
    i: usize,
    kit: &Digest,
    control: &Digest,
    n: u32,
    answer: &str,
    shadow: &str,
    truth: &str,
) {
    let data = format!("paired/{i}/{kit}/{n}").into_bytes();
    let rec = record(
        kit,
        &data,
        "feedback",
        answered(answer, 0.9),
        Some(truth),
        Some((control, answered(shadow, 0.9))),
    );
    push(f, i, rec, data);
}

/// The index of the device with id `id`.
pub fn index_of(f: &Fleet, id: &str) -> usize {
    f.devices.iter().position(|d| d.token_id == id).unwrap()
}
