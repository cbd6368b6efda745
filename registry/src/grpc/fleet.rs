//! The Fleet service's gRPC adapter: wire types in, domain types to the service.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use algobay_proto::v1 as pb;
use algobay_runtime::Digest;

use super::{blocking, principal};
use crate::domain::*;
use crate::error::RegistryError;
use crate::fleet::DeploymentAction;
use crate::service::RegistryApi;

/// The longest a sync waits for a change.
const MAX_WAIT: u32 = 60;

/// The Fleet service.
#[derive(Clone)]
pub struct FleetApi(pub Arc<dyn RegistryApi>);

fn state_to_pb(s: DeviceState) -> pb::DeviceState {
    pb::DeviceState {
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

fn state_from_pb(s: pb::DeviceState) -> DeviceState {
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

fn device_to_pb(d: Device) -> pb::Device {
    pb::Device {
        id: d.id,
        enterprise: d.enterprise,
        name: d.name,
        labels: d.labels.into_iter().collect(),
        fingerprint: d.fingerprint,
        enrolled_unix: d.enrolled_unix,
        last_seen_unix: d.last_seen_unix,
        revoked: d.revoked,
        state: Some(state_to_pb(d.state)),
    }
}

fn policy_to_pb(p: RolloutPolicy) -> pb::RolloutPolicy {
    pb::RolloutPolicy {
        canary_share: p.canary_share,
        soak_seconds: p.soak_seconds,
        max_error_rate: p.max_error_rate,
        max_p99_ms: p.max_p99_ms,
        manual_promote: p.manual_promote,
        sampling_off: p.sampling_off,
    }
}

fn deployment_to_pb(d: Deployment) -> pb::Deployment {
    pb::Deployment {
        id: d.id,
        enterprise: d.enterprise,
        kit_reference: d.kit_reference,
        kit_digest: d.kit_digest.to_string(),
        selector: d.selector.into_iter().collect(),
        policy: Some(policy_to_pb(d.policy)),
        state: d.state.as_str().into(),
        reason: d.reason,
        created_unix: d.created_unix,
        updated_unix: d.updated_unix,
        canary_devices: d.canary_devices,
    }
}

fn desired_to_pb(d: Desired) -> pb::Desired {
    pb::Desired {
        kit_digest: d.kit_digest.map(|d| d.to_string()).unwrap_or_default(),
        kit_reference: d.kit_reference,
        deployment_id: d.deployment_id,
        sampling_off: d.sampling_off,
        shadow_kit_digest: d.shadow_digest.map(|d| d.to_string()).unwrap_or_default(),
        signatures: d
            .signatures
            .into_iter()
            .map(|s| pb::KitSignature {
                key: s.key,
                signature: s.signature,
            })
            .collect(),
    }
}

fn same(d: &Desired, known_digest: &str, known_deployment: &str) -> bool {
    d.kit_digest.map(|x| x.to_string()).unwrap_or_default() == known_digest
        && d.deployment_id == known_deployment
}

#[tonic::async_trait]
impl pb::fleet_server::Fleet for FleetApi {
    async fn create_enrollment_token(
        &self,
        req: Request<pb::CreateEnrollmentTokenRequest>,
    ) -> Result<Response<pb::CreateEnrollmentTokenResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let (e, token) = blocking(move || {
            reg.create_enrollment(
                &p,
                &r.enterprise,
                r.labels.into_iter().collect(),
                r.ttl_seconds,
            )
        })
        .await?;
        Ok(Response::new(pb::CreateEnrollmentTokenResponse {
            token,
            id: e.id,
            expires_unix: e.expires_unix,
        }))
    }

    async fn list_devices(
        &self,
        req: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let devices = blocking(move || reg.list_devices(&p, &r.enterprise)).await?;
        Ok(Response::new(pb::ListDevicesResponse {
            devices: devices.into_iter().map(device_to_pb).collect(),
        }))
    }

    async fn revoke_device(
        &self,
        req: Request<pb::RevokeDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let d = blocking(move || reg.revoke_device(&p, &r.id)).await?;
        Ok(Response::new(device_to_pb(d)))
    }

    async fn create_deployment(
        &self,
        req: Request<pb::CreateDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let policy = r.policy.ok_or_else(|| {
            Status::from(RegistryError::invalid(
                "policy",
                "is required (canary_share at least)",
            ))
        })?;
        let policy = RolloutPolicy {
            canary_share: policy.canary_share,
            soak_seconds: policy.soak_seconds,
            max_error_rate: policy.max_error_rate,
            max_p99_ms: policy.max_p99_ms,
            manual_promote: policy.manual_promote,
            sampling_off: policy.sampling_off,
            field_gate: None,
        };
        let reg = self.0.clone();
        let d = blocking(move || {
            reg.create_deployment(
                &p,
                &r.enterprise,
                &r.kit,
                r.selector.into_iter().collect(),
                policy,
            )
        })
        .await?;
        Ok(Response::new(deployment_to_pb(d)))
    }

    async fn get_deployment(
        &self,
        req: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::DeploymentStatus>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let (d, devices) = blocking(move || reg.deployment_status(&p, &r.id)).await?;
        Ok(Response::new(pb::DeploymentStatus {
            deployment: Some(deployment_to_pb(d)),
            devices: devices.into_iter().map(device_to_pb).collect(),
        }))
    }

    async fn list_deployments(
        &self,
        req: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let v = blocking(move || reg.list_deployments(&p, &r.enterprise)).await?;
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: v.into_iter().map(deployment_to_pb).collect(),
        }))
    }

    async fn promote(
        &self,
        req: Request<pb::DeploymentAction>,
    ) -> Result<Response<pb::Deployment>, Status> {
        self.act(req, DeploymentAction::Promote).await
    }

    async fn pause(
        &self,
        req: Request<pb::DeploymentAction>,
    ) -> Result<Response<pb::Deployment>, Status> {
        self.act(req, DeploymentAction::Pause).await
    }

    async fn rollback(
        &self,
        req: Request<pb::DeploymentAction>,
    ) -> Result<Response<pb::Deployment>, Status> {
        self.act(req, DeploymentAction::Rollback).await
    }

    async fn telemetry(
        &self,
        req: Request<pb::TelemetryRequest>,
    ) -> Result<Response<pb::TelemetryResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let kits = blocking(move || reg.telemetry(&p, &r.enterprise, &r.device_id)).await?;
        Ok(Response::new(pb::TelemetryResponse {
            kits: kits
                .into_iter()
                .map(|t| pb::KitTelemetry {
                    device_id: t.device_id,
                    kit_reference: t.kit_reference,
                    kit_digest: t.kit_digest,
                    requests: t.requests,
                    errors: t.errors,
                    overloaded: t.overloaded,
                    latency_count: t.latency_count,
                    latency_sum_ms: t.latency_sum_ms,
                    bucket_bounds_ms: t.bucket_bounds_ms,
                    bucket_counts: t.bucket_counts,
                    stages: t
                        .stages
                        .into_iter()
                        .map(|(step, (count, sum_ms))| pb::StageTelemetry {
                            step,
                            count,
                            sum_ms,
                        })
                        .collect(),
                    updated_unix: t.updated_unix,
                })
                .collect(),
        }))
    }

    async fn list_traces(
        &self,
        req: Request<pb::ListTracesRequest>,
    ) -> Result<Response<pb::ListTracesResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let filter = crate::traces::TraceFilter {
            device: r.device_id,
            kit: r.kit,
            trace_id: r.trace_id,
            limit: r.limit as usize,
        };
        let traces = blocking(move || reg.traces(&p, &r.enterprise, &filter)).await?;
        Ok(Response::new(pb::ListTracesResponse {
            traces: traces
                .into_iter()
                .map(|t| pb::Trace {
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
                        .map(|(_, name, duration_ms)| pb::TraceStep { name, duration_ms })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn push_samples(
        &self,
        req: Request<pb::PushSamplesRequest>,
    ) -> Result<Response<pb::PushSamplesResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let mut samples = Vec::new();
        for s in req.into_inner().samples {
            let field = |f: &str| format!("sample.{f}");
            let kit_digest = s.kit_digest.parse().map_err(|e: algobay_runtime::Error| {
                Status::from(RegistryError::invalid(field("kit_digest"), e.to_string()))
            })?;
            let shadow_digest = if s.shadow_kit_digest.is_empty() {
                None
            } else {
                Some(
                    s.shadow_kit_digest
                        .parse()
                        .map_err(|e: algobay_runtime::Error| {
                            Status::from(RegistryError::invalid(
                                field("shadow_kit_digest"),
                                e.to_string(),
                            ))
                        })?,
                )
            };
            let mut inputs = Vec::new();
            let mut data = Vec::new();
            for i in s.inputs {
                inputs.push(SampleInput {
                    digest: i.digest.parse().map_err(|e: algobay_runtime::Error| {
                        Status::from(RegistryError::invalid(
                            field("inputs.digest"),
                            e.to_string(),
                        ))
                    })?,
                    size: if i.data.is_empty() {
                        i.size
                    } else {
                        i.data.len() as u64
                    },
                    name: i.name,
                    datatype: i.datatype,
                    shape: i.shape,
                });
                data.push(i.data);
            }
            samples.push((
                SampleRecord {
                    id: s.id,
                    enterprise: String::new(),
                    device_id: String::new(),
                    kit_reference: s.kit_reference,
                    kit_digest,
                    deployment_id: s.deployment_id,
                    reason: s.reason,
                    trace_id: s.trace_id,
                    created_unix: s.created_unix,
                    received_unix: 0,
                    outputs_json: s.outputs_json,
                    inputs,
                    labels: s
                        .labels
                        .into_iter()
                        .enumerate()
                        .map(|(i, l)| {
                            Ok(Label {
                                value: l.value,
                                source: match l.source.as_str() {
                                    "feedback" | "" => LabelSource::Feedback,
                                    "human" => LabelSource::Human,
                                    "teacher" => LabelSource::Teacher,
                                    other => {
                                        return Err(Status::from(RegistryError::invalid(
                                            field(&format!("labels[{i}].source")),
                                            format!(
                                                "`{}` is not feedback, human or teacher",
                                                crate::limits::shown(other)
                                            ),
                                        )))
                                    }
                                },
                                by: String::new(),
                                at_unix: 0,
                            })
                        })
                        .collect::<Result<_, Status>>()?,
                    shadow_outputs_json: s.shadow_outputs_json,
                    shadow_digest,
                },
                data,
            ));
        }
        let reg = self.0.clone();
        let (stored, duplicates) = blocking(move || reg.push_samples(&p, samples)).await?;
        Ok(Response::new(pb::PushSamplesResponse {
            stored,
            duplicates,
        }))
    }

    async fn label_samples(
        &self,
        req: Request<pb::LabelSamplesRequest>,
    ) -> Result<Response<pb::LabelSamplesResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let labels = r
            .labels
            .into_iter()
            .map(|l| (l.sample_id, l.value))
            .collect();
        let (labelled, unknown) =
            blocking(move || reg.label_samples(&p, &r.enterprise, LabelSource::Human, labels))
                .await?;
        Ok(Response::new(pb::LabelSamplesResponse {
            labelled,
            unknown,
        }))
    }

    async fn list_samples(
        &self,
        req: Request<pb::ListSamplesRequest>,
    ) -> Result<Response<pb::ListSamplesResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let (v, next) = blocking(move || {
            reg.list_samples(
                &p,
                &r.enterprise,
                &r.kit,
                r.page_size as usize,
                &r.page_token,
                r.unlabelled,
            )
        })
        .await?;
        Ok(Response::new(pb::ListSamplesResponse {
            samples: v
                .into_iter()
                .map(|s| pb::Sample {
                    id: s.id,
                    kit_digest: s.kit_digest.to_string(),
                    kit_reference: s.kit_reference,
                    deployment_id: s.deployment_id,
                    reason: s.reason,
                    trace_id: s.trace_id,
                    created_unix: s.created_unix,
                    outputs_json: s.outputs_json,
                    inputs: s
                        .inputs
                        .into_iter()
                        .map(|i| pb::SampleInput {
                            name: i.name,
                            datatype: i.datatype,
                            shape: i.shape,
                            data: Vec::new(),
                            digest: i.digest.to_string(),
                            size: i.size,
                        })
                        .collect(),
                    device_id: s.device_id,
                    enterprise: s.enterprise,
                    labels: s
                        .labels
                        .into_iter()
                        .map(|l| pb::SampleLabel {
                            value: l.value,
                            source: l.source.as_str().to_owned(),
                            by: l.by,
                            at_unix: l.at_unix,
                        })
                        .collect(),
                    shadow_outputs_json: s.shadow_outputs_json,
                    shadow_kit_digest: s.shadow_digest.map(|d| d.to_string()).unwrap_or_default(),
                })
                .collect(),
            next_page_token: next,
        }))
    }

    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let r = req.into_inner();
        let reg = self.0.clone();
        let (d, cert, ca) = blocking(move || {
            reg.enroll(
                &r.token,
                &r.csr_pem,
                &r.name,
                r.labels.into_iter().collect(),
            )
        })
        .await?;
        tracing::info!(device = %d.id, enterprise = %d.enterprise, "device enrolled");
        let registry_key = self.0.registry_key();
        Ok(Response::new(pb::EnrollResponse {
            device_id: d.id,
            enterprise: d.enterprise,
            certificate_pem: cert,
            ca_pem: ca,
            registry_key: registry_key.map(|k| k.to_string()).unwrap_or_default(),
        }))
    }

    async fn sync(
        &self,
        req: Request<pb::SyncRequest>,
    ) -> Result<Response<pb::SyncResponse>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        if r.wait_seconds > MAX_WAIT {
            return Err(RegistryError::invalid(
                "wait_seconds",
                format!("{} is above the limit of {MAX_WAIT}", r.wait_seconds),
            )
            .into());
        }
        if !r.known_desired.is_empty() {
            r.known_desired.parse::<Digest>().map_err(|e| {
                Status::from(RegistryError::invalid("known_desired", e.to_string()))
            })?;
        }
        // Subscribe before reading, so no change between the read and the wait is missed.
        let mut changes = self.0.subscribe();
        let reg = self.0.clone();
        let state = r.state.map(state_from_pb);
        let who = p.clone();
        let mut desired = blocking(move || {
            if let Some(s) = state {
                reg.report(&who, s)?;
            }
            reg.desired(&who)
        })
        .await?;
        if r.wait_seconds > 0 && same(&desired, &r.known_desired, &r.known_deployment) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(r.wait_seconds.into());
            loop {
                match tokio::time::timeout_at(deadline, changes.changed()).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
                let reg = self.0.clone();
                let who = p.clone();
                desired = blocking(move || reg.desired(&who)).await?;
                if !same(&desired, &r.known_desired, &r.known_deployment) {
                    break;
                }
            }
        }
        Ok(Response::new(pb::SyncResponse {
            desired: Some(desired_to_pb(desired)),
            max_samples_per_push: crate::samples::MAX_SAMPLES as u32,
            max_push_bytes: crate::samples::MAX_PUSH_BYTES,
        }))
    }
}

impl FleetApi {
    async fn act(
        &self,
        req: Request<pb::DeploymentAction>,
        action: DeploymentAction,
    ) -> Result<Response<pb::Deployment>, Status> {
        let p = principal(&self.0, &req).await?;
        let r = req.into_inner();
        let reg = self.0.clone();
        let d = blocking(move || reg.act_on_deployment(&p, &r.id, action, &r.reason)).await?;
        Ok(Response::new(deployment_to_pb(d)))
    }
}
