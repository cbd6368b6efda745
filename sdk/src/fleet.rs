//! The fleet side of the client: enrollment, devices, deployments and the
//! device's sync, over domain types.

use std::collections::BTreeMap;

use serde::Serialize;

use algobay_proto::v1 as pb;
use algobay_runtime::sign::Signature;

use crate::client::{Client, SdkError};

type Result<T, E = SdkError> = std::result::Result<T, E>;

/// What a device says about itself, and what the registry last heard.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceState {
    pub active_digest: String,
    pub active_reference: String,
    pub previous_digest: String,
    pub deployment_id: String,
    /// idle, pulling, verifying, testing, active, failed, rolled_back
    pub phase: String,
    pub message: String,
    pub requests: u64,
    pub error_rate: f64,
    pub p99_ms: f64,
    pub active_since_unix: i64,
    pub target_digest: String,
    /// Hard examples waiting on the device, and dropped to keep within its budget.
    pub samples_queued: u64,
    pub samples_dropped: u64,
}

impl DeviceState {
    fn from_pb(s: pb::DeviceState) -> Self {
        DeviceState {
            active_digest: s.active_digest,
            active_reference: s.active_reference,
            previous_digest: s.previous_digest,
            deployment_id: s.deployment_id,
            phase: s.phase,
            message: s.message,
            requests: s.requests,
            error_rate: s.error_rate,
            p99_ms: s.p99_ms,
            active_since_unix: s.active_since_unix,
            target_digest: s.target_digest,
            samples_queued: s.samples_queued,
            samples_dropped: s.samples_dropped,
        }
    }

    fn to_pb(&self) -> pb::DeviceState {
        pb::DeviceState {
            active_digest: self.active_digest.clone(),
            active_reference: self.active_reference.clone(),
            previous_digest: self.previous_digest.clone(),
            deployment_id: self.deployment_id.clone(),
            phase: self.phase.clone(),
            message: self.message.clone(),
            requests: self.requests,
            error_rate: self.error_rate,
            p99_ms: self.p99_ms,
            active_since_unix: self.active_since_unix,
            target_digest: self.target_digest.clone(),
            samples_queued: self.samples_queued,
            samples_dropped: self.samples_dropped,
        }
    }
}

/// An enrolled device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Device {
    pub id: String,
    pub enterprise: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub fingerprint: String,
    pub enrolled_unix: i64,
    pub last_seen_unix: i64,
    pub revoked: bool,
    pub state: DeviceState,
}

impl Device {
    fn from_pb(d: pb::Device) -> Self {
        Device {
            id: d.id,
            enterprise: d.enterprise,
            name: d.name,
            labels: d.labels.into_iter().collect(),
            fingerprint: d.fingerprint,
            enrolled_unix: d.enrolled_unix,
            last_seen_unix: d.last_seen_unix,
            revoked: d.revoked,
            state: d.state.map(DeviceState::from_pb).unwrap_or_default(),
        }
    }
}

/// How a deployment reaches its devices.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolloutPolicy {
    /// Share of the targeted devices that get it first (0 < share <= 1).
    pub canary_share: f64,
    /// How long the canaries must run it within bounds before the rest get it.
    pub soak_seconds: u32,
    /// Highest error rate on a device (0: no bound).
    pub max_error_rate: f64,
    /// Highest p99 latency on a device, ms (0: no bound).
    pub max_p99_ms: f64,
    /// Wait for a promote when the gate passes.
    pub manual_promote: bool,
    /// Keep no hard examples from the deployment's devices.
    pub sampling_off: bool,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        RolloutPolicy {
            canary_share: 0.1,
            soak_seconds: 60,
            max_error_rate: 0.0,
            max_p99_ms: 0.0,
            manual_promote: false,
            sampling_off: false,
        }
    }
}

/// A kit put on an enterprise's devices.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deployment {
    pub id: String,
    pub enterprise: String,
    pub kit_reference: String,
    pub kit_digest: String,
    pub selector: BTreeMap<String, String>,
    pub policy: RolloutPolicy,
    /// canary, paused, promoted, rolled_back
    pub state: String,
    pub reason: String,
    pub created_unix: i64,
    pub updated_unix: i64,
    pub canary_devices: Vec<String>,
}

impl Deployment {
    fn from_pb(d: pb::Deployment) -> Self {
        let p = d.policy.unwrap_or_default();
        Deployment {
            id: d.id,
            enterprise: d.enterprise,
            kit_reference: d.kit_reference,
            kit_digest: d.kit_digest,
            selector: d.selector.into_iter().collect(),
            policy: RolloutPolicy {
                canary_share: p.canary_share,
                soak_seconds: p.soak_seconds,
                max_error_rate: p.max_error_rate,
                max_p99_ms: p.max_p99_ms,
                manual_promote: p.manual_promote,
                sampling_off: p.sampling_off,
            },
            state: d.state,
            reason: d.reason,
            created_unix: d.created_unix,
            updated_unix: d.updated_unix,
            canary_devices: d.canary_devices,
        }
    }
}

/// A deployment and the devices it targets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentStatus {
    pub deployment: Deployment,
    pub devices: Vec<Device>,
}

/// Serving figures of one kit on one device, from its OpenTelemetry metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KitTelemetry {
    pub device_id: String,
    pub kit_reference: String,
    pub kit_digest: String,
    pub requests: u64,
    pub errors: u64,
    pub overloaded: u64,
    pub latency_count: u64,
    pub latency_sum_ms: f64,
    pub bucket_bounds_ms: Vec<f64>,
    pub bucket_counts: Vec<u64>,
    /// step → (count, total ms)
    pub stages: BTreeMap<String, (u64, f64)>,
    pub updated_unix: i64,
}

/// One sampled request as its device traced it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RequestTrace {
    /// 32 hex digits (W3C trace context).
    pub trace_id: String,
    pub device_id: String,
    pub kit_reference: String,
    pub kit_digest: String,
    pub name: String,
    pub start_unix_nano: u64,
    pub duration_ms: f64,
    /// Empty when the request was served.
    pub error: String,
    /// (step, ms), in the order they ran.
    pub steps: Vec<(String, f64)>,
}

/// Which traces to list; empty fields match all.
#[derive(Clone, Debug, Default)]
pub struct TraceQuery {
    pub enterprise: String,
    pub device: String,
    /// `team/name@version` or a kit digest.
    pub kit: String,
    pub trace_id: String,
    /// At most this many (0: 100).
    pub limit: u32,
}

impl KitTelemetry {
    /// The latency under which `q` (0..1) of the requests fell, from the histogram's bounds.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        let want = (self.latency_count as f64 * q).ceil() as u64;
        self.bucket_bounds_ms
            .iter()
            .zip(&self.bucket_counts)
            .find(|(_, c)| **c >= want)
            .map(|(b, _)| *b)
    }
}

/// What a device should run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// Empty: no kit.
    pub kit_digest: String,
    pub kit_reference: String,
    pub deployment_id: String,
    pub signatures: Vec<Signature>,
    /// The deployment keeps no hard examples.
    pub sampling_off: bool,
    /// A canary runs this kit (the one it replaces) too, in the shadow, on the
    /// same requests; its answers go with each sample. Empty: no shadow.
    pub shadow_digest: String,
    /// What one push of samples may carry (0: the registry did not say).
    pub max_samples_per_push: u32,
    pub max_push_bytes: u64,
}

/// One input of a hard example.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SampleInput {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub digest: String,
    pub size: u64,
    /// The bytes, when pushing; empty when listed (download them by digest).
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// A hard example a kit's sample filter kept on a device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub id: String,
    pub kit_digest: String,
    pub kit_reference: String,
    pub deployment_id: String,
    pub reason: String,
    pub trace_id: String,
    pub created_unix: i64,
    pub outputs_json: String,
    pub inputs: Vec<SampleInput>,
    pub device_id: String,
    pub enterprise: String,
    /// Its labels, one per source.
    pub labels: Vec<SampleLabel>,
    /// A canary's shadow: the replaced kit's outputs on the same inputs and its digest.
    pub shadow_outputs_json: String,
    pub shadow_digest: String,
}

/// A sample's label from one source (feedback, human, teacher).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SampleLabel {
    pub value: String,
    pub source: String,
    pub by: String,
    pub at_unix: i64,
}

impl Sample {
    fn to_pb(&self) -> pb::Sample {
        pb::Sample {
            id: self.id.clone(),
            kit_digest: self.kit_digest.clone(),
            kit_reference: self.kit_reference.clone(),
            deployment_id: self.deployment_id.clone(),
            reason: self.reason.clone(),
            trace_id: self.trace_id.clone(),
            created_unix: self.created_unix,
            outputs_json: self.outputs_json.clone(),
            shadow_outputs_json: self.shadow_outputs_json.clone(),
            shadow_kit_digest: self.shadow_digest.clone(),
            inputs: self
                .inputs
                .iter()
                .map(|i| pb::SampleInput {
                    name: i.name.clone(),
                    datatype: i.datatype.clone(),
                    shape: i.shape.clone(),
                    data: i.data.clone(),
                    digest: i.digest.clone(),
                    size: i.size,
                })
                .collect(),
            device_id: String::new(),
            enterprise: String::new(),
            labels: self
                .labels
                .iter()
                .map(|l| pb::SampleLabel {
                    value: l.value.clone(),
                    source: l.source.clone(),
                    by: l.by.clone(),
                    at_unix: l.at_unix,
                })
                .collect(),
        }
    }

    fn from_pb(s: pb::Sample) -> Sample {
        Sample {
            id: s.id,
            kit_digest: s.kit_digest,
            kit_reference: s.kit_reference,
            deployment_id: s.deployment_id,
            reason: s.reason,
            trace_id: s.trace_id,
            created_unix: s.created_unix,
            outputs_json: s.outputs_json,
            shadow_outputs_json: s.shadow_outputs_json,
            shadow_digest: s.shadow_kit_digest,
            inputs: s
                .inputs
                .into_iter()
                .map(|i| SampleInput {
                    name: i.name,
                    datatype: i.datatype,
                    shape: i.shape,
                    digest: i.digest,
                    size: i.size,
                    data: i.data,
                })
                .collect(),
            device_id: s.device_id,
            enterprise: s.enterprise,
            labels: s
                .labels
                .into_iter()
                .map(|l| SampleLabel {
                    value: l.value,
                    source: l.source,
                    by: l.by,
                    at_unix: l.at_unix,
                })
                .collect(),
        }
    }
}

/// What enrollment gives a device.
#[derive(Clone, Debug)]
pub struct Enrolled {
    pub device_id: String,
    pub enterprise: String,
    pub certificate_pem: String,
    pub ca_pem: String,
    /// The key the registry countersigns accepted kits with (may be empty).
    pub registry_key: String,
}

/// Manual steps of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Promote,
    Pause,
    Rollback,
}

impl Client {
    /// Enterprise or operator: a one-time enrollment token; returns (id, token).
    pub async fn create_enrollment_token(
        &self,
        enterprise: &str,
        labels: BTreeMap<String, String>,
        ttl_seconds: i64,
    ) -> Result<(String, String)> {
        let r = self
            .fleet()
            .create_enrollment_token(self.req(pb::CreateEnrollmentTokenRequest {
                enterprise: enterprise.into(),
                labels: labels.into_iter().collect(),
                ttl_seconds,
            }))
            .await?
            .into_inner();
        Ok((r.id, r.token))
    }

    /// Device: trades the enrollment token and a CSR for a client certificate.
    pub async fn enroll(
        &self,
        token: &str,
        csr_pem: &str,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Enrolled> {
        let r = self
            .fleet()
            .enroll(pb::EnrollRequest {
                token: token.into(),
                csr_pem: csr_pem.into(),
                name: name.into(),
                labels: labels.into_iter().collect(),
            })
            .await?
            .into_inner();
        Ok(Enrolled {
            device_id: r.device_id,
            enterprise: r.enterprise,
            certificate_pem: r.certificate_pem,
            ca_pem: r.ca_pem,
            registry_key: r.registry_key,
        })
    }

    pub async fn list_devices(&self, enterprise: &str) -> Result<Vec<Device>> {
        let r = self
            .fleet()
            .list_devices(self.req(pb::ListDevicesRequest {
                enterprise: enterprise.into(),
            }))
            .await?
            .into_inner();
        Ok(r.devices.into_iter().map(Device::from_pb).collect())
    }

    pub async fn revoke_device(&self, id: &str) -> Result<Device> {
        let d = self
            .fleet()
            .revoke_device(self.req(pb::RevokeDeviceRequest { id: id.into() }))
            .await?
            .into_inner();
        Ok(Device::from_pb(d))
    }

    pub async fn create_deployment(
        &self,
        enterprise: &str,
        kit: &str,
        selector: BTreeMap<String, String>,
        policy: RolloutPolicy,
    ) -> Result<Deployment> {
        let d = self
            .fleet()
            .create_deployment(self.req(pb::CreateDeploymentRequest {
                enterprise: enterprise.into(),
                kit: kit.into(),
                selector: selector.into_iter().collect(),
                policy: Some(pb::RolloutPolicy {
                    canary_share: policy.canary_share,
                    soak_seconds: policy.soak_seconds,
                    max_error_rate: policy.max_error_rate,
                    max_p99_ms: policy.max_p99_ms,
                    manual_promote: policy.manual_promote,
                    sampling_off: policy.sampling_off,
                }),
            }))
            .await?
            .into_inner();
        Ok(Deployment::from_pb(d))
    }

    pub async fn deployment_status(&self, id: &str) -> Result<DeploymentStatus> {
        let r = self
            .fleet()
            .get_deployment(self.req(pb::GetDeploymentRequest { id: id.into() }))
            .await?
            .into_inner();
        Ok(DeploymentStatus {
            deployment: Deployment::from_pb(r.deployment.unwrap_or_default()),
            devices: r.devices.into_iter().map(Device::from_pb).collect(),
        })
    }

    pub async fn list_deployments(&self, enterprise: &str) -> Result<Vec<Deployment>> {
        let r = self
            .fleet()
            .list_deployments(self.req(pb::ListDeploymentsRequest {
                enterprise: enterprise.into(),
            }))
            .await?
            .into_inner();
        Ok(r.deployments.into_iter().map(Deployment::from_pb).collect())
    }

    pub async fn deployment_action(
        &self,
        id: &str,
        action: Action,
        reason: &str,
    ) -> Result<Deployment> {
        let req = self.req(pb::DeploymentAction {
            id: id.into(),
            reason: reason.into(),
        });
        let mut f = self.fleet();
        let d = match action {
            Action::Promote => f.promote(req).await,
            Action::Pause => f.pause(req).await,
            Action::Rollback => f.rollback(req).await,
        }?
        .into_inner();
        Ok(Deployment::from_pb(d))
    }

    /// Device: sends hard examples; returns (stored, already there).
    pub async fn push_samples(&self, samples: &[Sample]) -> Result<(u32, u32)> {
        let r = self
            .fleet()
            .push_samples(self.req(pb::PushSamplesRequest {
                samples: samples.iter().map(Sample::to_pb).collect(),
            }))
            .await?
            .into_inner();
        Ok((r.stored, r.duplicates))
    }

    /// Hard examples (an enterprise's own; an operator's choice), a page at a time;
    /// returns the page and the token of the next ("" at the end).
    pub async fn list_samples(
        &self,
        enterprise: &str,
        kit: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<Sample>, String)> {
        self.list_samples_where(enterprise, kit, page_size, page_token, false)
            .await
    }

    /// [`Self::list_samples`], only those with no label yet when `unlabelled`.
    pub async fn list_samples_where(
        &self,
        enterprise: &str,
        kit: &str,
        page_size: u32,
        page_token: &str,
        unlabelled: bool,
    ) -> Result<(Vec<Sample>, String)> {
        let r = self
            .fleet()
            .list_samples(self.req(pb::ListSamplesRequest {
                enterprise: enterprise.into(),
                kit: kit.into(),
                page_size,
                page_token: page_token.into(),
                unlabelled,
            }))
            .await?
            .into_inner();
        Ok((
            r.samples.into_iter().map(Sample::from_pb).collect(),
            r.next_page_token,
        ))
    }

    /// Labels samples as a labeller of the enterprise; returns how many were
    /// labelled and the ids it has no sample for.
    pub async fn label_samples(
        &self,
        enterprise: &str,
        labels: Vec<(String, String)>,
    ) -> Result<(u32, Vec<String>)> {
        let r = self
            .fleet()
            .label_samples(
                self.req(pb::LabelSamplesRequest {
                    enterprise: enterprise.into(),
                    labels: labels
                        .into_iter()
                        .map(|(sample_id, value)| pb::SampleLabelling { sample_id, value })
                        .collect(),
                }),
            )
            .await?
            .into_inner();
        Ok((r.labelled, r.unknown))
    }

    /// Serving figures per device and kit (an enterprise's own; an operator's choice).
    pub async fn telemetry(&self, enterprise: &str, device: &str) -> Result<Vec<KitTelemetry>> {
        let r = self
            .fleet()
            .telemetry(self.req(pb::TelemetryRequest {
                enterprise: enterprise.into(),
                device_id: device.into(),
            }))
            .await?
            .into_inner();
        Ok(r.kits
            .into_iter()
            .map(|k| KitTelemetry {
                device_id: k.device_id,
                kit_reference: k.kit_reference,
                kit_digest: k.kit_digest,
                requests: k.requests,
                errors: k.errors,
                overloaded: k.overloaded,
                latency_count: k.latency_count,
                latency_sum_ms: k.latency_sum_ms,
                bucket_bounds_ms: k.bucket_bounds_ms,
                bucket_counts: k.bucket_counts,
                stages: k
                    .stages
                    .into_iter()
                    .map(|s| (s.step, (s.count, s.sum_ms)))
                    .collect(),
                updated_unix: k.updated_unix,
            })
            .collect())
    }

    /// Recent sampled request traces, newest first (an enterprise's own; an operator's choice).
    pub async fn traces(&self, q: &TraceQuery) -> Result<Vec<RequestTrace>> {
        let r = self
            .fleet()
            .list_traces(self.req(pb::ListTracesRequest {
                enterprise: q.enterprise.clone(),
                device_id: q.device.clone(),
                kit: q.kit.clone(),
                trace_id: q.trace_id.clone(),
                limit: q.limit,
            }))
            .await?
            .into_inner();
        Ok(r.traces
            .into_iter()
            .map(|t| RequestTrace {
                trace_id: t.trace_id,
                device_id: t.device_id,
                kit_reference: t.kit_reference,
                kit_digest: t.kit_digest,
                name: t.name,
                start_unix_nano: t.start_unix_nano,
                duration_ms: t.duration_ms,
                error: t.error,
                steps: t
                    .steps
                    .into_iter()
                    .map(|s| (s.name, s.duration_ms))
                    .collect(),
            })
            .collect())
    }

    /// Device: reports its state and waits up to `wait_seconds` for its desired
    /// state to differ from `known` (digest, deployment id).
    pub async fn sync(
        &self,
        state: Option<&DeviceState>,
        known: (&str, &str),
        wait_seconds: u32,
    ) -> Result<Desired> {
        let r = self
            .fleet()
            .sync(self.req(pb::SyncRequest {
                state: state.map(DeviceState::to_pb),
                known_desired: known.0.into(),
                known_deployment: known.1.into(),
                wait_seconds,
            }))
            .await?
            .into_inner();
        let d = r.desired.unwrap_or_default();
        Ok(Desired {
            max_samples_per_push: r.max_samples_per_push,
            max_push_bytes: r.max_push_bytes,
            kit_digest: d.kit_digest,
            kit_reference: d.kit_reference,
            deployment_id: d.deployment_id,
            sampling_off: d.sampling_off,
            shadow_digest: d.shadow_kit_digest,
            signatures: d
                .signatures
                .into_iter()
                .map(|s| Signature {
                    key: s.key,
                    signature: s.signature,
                })
                .collect(),
        })
    }
}
