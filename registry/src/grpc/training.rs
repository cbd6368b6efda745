//! The Training service's gRPC adapter: wire types in, one call on the
//! registry's training service, wire types out.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use algobay_proto::v1 as pb;

use super::{blocking, principal};
use crate::error::RegistryError;
use crate::service::RegistryApi;
use crate::training::gate::GateRules;
use crate::training::{Evaluation, Lineage, Run, RunData, TrainCall, TrainPolicy, TrainReply};

/// Largest lineage a trainer may send (its sample ids by source included).
const MAX_LINEAGE: usize = 8 << 20;

/// The Training service.
#[derive(Clone)]
pub struct TrainingApi(pub Arc<dyn RegistryApi>);

fn policy_to_pb(p: TrainPolicy) -> pb::TrainPolicy {
    pb::TrainPolicy {
        enterprise: p.enterprise,
        kit: p.kit,
        auto: p.auto,
        min_new_labels: p.min_new_labels,
        alpha: p.rules.alpha,
        base_margin: p.rules.base_margin,
        min_field: p.rules.min_field as u32,
        min_discordant: p.rules.min_discordant,
        bootstrap_reps: p.rules.bootstrap_reps as u32,
        canary_share: p.canary_share,
        soak_seconds: p.soak_seconds,
        field_margin: p.field_margin,
        min_field_count: p.min_field_count,
        share: p.share,
        updated_unix: p.updated_unix,
        updated_by: p.updated_by,
        seed: p.rules.seed,
        teacher: p.teacher,
        teacher_threshold: p.teacher_threshold,
        max_interval_seconds: p.max_interval_seconds,
        drift_factor: p.drift_factor,
        drift_window: p.drift_window,
    }
}

fn policy_from_pb(p: pb::TrainPolicy) -> TrainPolicy {
    TrainPolicy {
        enterprise: p.enterprise,
        kit: p.kit,
        auto: p.auto,
        min_new_labels: p.min_new_labels,
        rules: GateRules {
            alpha: p.alpha,
            base_margin: p.base_margin,
            min_field: p.min_field as usize,
            min_discordant: p.min_discordant,
            bootstrap_reps: p.bootstrap_reps as usize,
            seed: p.seed,
        },
        canary_share: p.canary_share,
        soak_seconds: p.soak_seconds,
        field_margin: p.field_margin,
        min_field_count: p.min_field_count,
        share: p.share,
        teacher: p.teacher,
        teacher_threshold: p.teacher_threshold,
        max_interval_seconds: p.max_interval_seconds,
        drift_factor: p.drift_factor,
        // Unset on the wire: the default window.
        drift_window: if p.drift_window == 0 {
            TrainPolicy::default_for("", "").drift_window
        } else {
            p.drift_window
        },
        updated_unix: 0,
        updated_by: String::new(),
    }
}

/// A run on the wire.
pub fn run_to_pb(r: Run) -> pb::TrainingRun {
    pb::TrainingRun {
        id: r.id,
        enterprise: r.enterprise,
        kit: r.kit,
        champion: r.champion,
        champion_digest: r.champion_digest.to_string(),
        round: r.round,
        version: r.version,
        private_to: r.private_to,
        trigger: r.trigger,
        state: r.state.as_str().into(),
        history: r
            .history
            .into_iter()
            .map(|t| pb::RunTransition {
                state: t.state.as_str().into(),
                at_unix: t.at_unix,
                reason: t.reason,
            })
            .collect(),
        lease_holder: r
            .lease
            .as_ref()
            .map(|l| l.holder.clone())
            .unwrap_or_default(),
        lease_until_unix: r.lease.as_ref().map(|l| l.until_unix).unwrap_or_default(),
        attempts: r.attempts,
        lineage_json: r
            .lineage
            .map(|l| serde_json::to_string(&l).unwrap_or_default())
            .unwrap_or_default(),
        gate_json: r
            .gate
            .map(|g| serde_json::to_string(&g).unwrap_or_default())
            .unwrap_or_default(),
        release: r.release.map(|x| pb::RunRelease {
            kit_reference: x.kit_reference,
            kit_digest: x.kit_digest.to_string(),
            deployment_id: x.deployment_id,
            new_bytes: x.new_bytes,
            kit_bytes: x.kit_bytes,
        }),
        created_unix: r.created_unix,
        updated_unix: r.updated_unix,
    }
}

fn data_to_pb(d: RunData) -> pb::RunDataResponse {
    let rows = |rs: Vec<crate::training::FieldRow>| {
        rs.into_iter()
            .map(|r| pb::FieldSample {
                sample_id: r.sample_id,
                device_id: r.device_id,
                source: r.source.as_str().into(),
                label: r.label,
                datatype: r.datatype,
                shape: r.shape,
                data: r.data,
            })
            .collect()
    };
    pb::RunDataResponse {
        recipe_json: d
            .recipe
            .map(|t| serde_json::to_string(&t).unwrap_or_default())
            .unwrap_or_default(),
        train: rows(d.train),
        holdout: rows(d.holdout),
        teacher: d.teacher,
        teacher_digest: d.teacher_digest,
        teacher_threshold: d.teacher_threshold,
        unlabelled: rows(d.unlabelled),
    }
}

impl TrainingApi {
    async fn call<T>(&self, req: &Request<T>, call: TrainCall) -> Result<TrainReply, Status> {
        let p = principal(&self.0, req).await?;
        let reg = self.0.clone();
        blocking(move || reg.train(&p, call)).await
    }

    async fn run<T>(
        &self,
        req: &Request<T>,
        call: TrainCall,
    ) -> Result<Response<pb::TrainingRun>, Status> {
        match self.call(req, call).await? {
            TrainReply::Run(r) => Ok(Response::new(run_to_pb(*r))),
            _ => Err(Status::internal(
                "the training service answered another call",
            )),
        }
    }

    async fn policy<T>(
        &self,
        req: &Request<T>,
        call: TrainCall,
    ) -> Result<Response<pb::TrainPolicy>, Status> {
        match self.call(req, call).await? {
            TrainReply::Policy(p) => Ok(Response::new(policy_to_pb(p))),
            _ => Err(Status::internal(
                "the training service answered another call",
            )),
        }
    }
}

#[tonic::async_trait]
impl pb::training_server::Training for TrainingApi {
    async fn set_policy(
        &self,
        req: Request<pb::TrainPolicy>,
    ) -> Result<Response<pb::TrainPolicy>, Status> {
        let call = TrainCall::SetPolicy(policy_from_pb(req.get_ref().clone()));
        self.policy(&req, call).await
    }

    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::TrainPolicy>, Status> {
        let r = req.get_ref().clone();
        self.policy(
            &req,
            TrainCall::Policy {
                enterprise: r.enterprise,
                kit: r.kit,
            },
        )
        .await
    }

    async fn start_run(
        &self,
        req: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::TrainingRun>, Status> {
        let r = req.get_ref().clone();
        self.run(
            &req,
            TrainCall::Start {
                enterprise: r.enterprise,
                kit: r.kit,
            },
        )
        .await
    }

    async fn claim_run(
        &self,
        req: Request<pb::ClaimRunRequest>,
    ) -> Result<Response<pb::ClaimRunResponse>, Status> {
        let r = req.get_ref().clone();
        match self
            .call(
                &req,
                TrainCall::Claim {
                    holder: r.holder,
                    lease_seconds: r.lease_seconds,
                },
            )
            .await?
        {
            TrainReply::Claimed(c) => Ok(Response::new(match c {
                Some((run, token)) => pb::ClaimRunResponse {
                    run: Some(run_to_pb(*run)),
                    lease_token: token,
                },
                None => pb::ClaimRunResponse::default(),
            })),
            _ => Err(Status::internal(
                "the training service answered another call",
            )),
        }
    }

    async fn renew_lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::TrainingRun>, Status> {
        let r = req.get_ref().clone();
        self.run(
            &req,
            TrainCall::Renew {
                run: r.run,
                token: r.lease_token,
                lease_seconds: r.lease_seconds,
            },
        )
        .await
    }

    async fn run_data(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::RunDataResponse>, Status> {
        let r = req.get_ref().clone();
        match self
            .call(
                &req,
                TrainCall::Data {
                    run: r.run,
                    token: r.lease_token,
                },
            )
            .await?
        {
            TrainReply::Data(d) => Ok(Response::new(data_to_pb(*d))),
            _ => Err(Status::internal(
                "the training service answered another call",
            )),
        }
    }

    async fn submit_evaluation(
        &self,
        req: Request<pb::SubmitEvaluationRequest>,
    ) -> Result<Response<pb::TrainingRun>, Status> {
        let r = req.get_ref().clone();
        if r.lineage_json.len() > MAX_LINEAGE {
            return Err(RegistryError::TooLarge(format!(
                "lineage_json: {} bytes, over the limit of {MAX_LINEAGE}",
                r.lineage_json.len()
            ))
            .into());
        }
        let lineage: Lineage = serde_json::from_str(&r.lineage_json)
            .map_err(|e| Status::from(RegistryError::invalid("lineage_json", e.to_string())))?;
        if r.base_champion.len() != r.base_challenger.len() {
            return Err(RegistryError::invalid(
                "base_challenger",
                format!(
                    "{} answers for {} rows of the champion's",
                    r.base_challenger.len(),
                    r.base_champion.len()
                ),
            )
            .into());
        }
        if r.base_champion_scores.len() != r.base_challenger_scores.len() {
            return Err(RegistryError::invalid(
                "base_challenger_scores",
                format!(
                    "{} scores for {} of the champion's",
                    r.base_challenger_scores.len(),
                    r.base_champion_scores.len()
                ),
            )
            .into());
        }
        let evaluation = Evaluation {
            lineage,
            base: r.base_champion.into_iter().zip(r.base_challenger).collect(),
            field_scores: r
                .field
                .iter()
                .map(|f| (f.champion_score, f.challenger_score))
                .collect(),
            base_scores: r
                .base_champion_scores
                .into_iter()
                .zip(r.base_challenger_scores)
                .collect(),
            base_positive: r.base_positive,
            field: r
                .field
                .into_iter()
                .map(|f| (f.sample_id, f.champion, f.challenger))
                .collect(),
            golden_failure: r.golden_failure,
            champion_latency_ms: r.champion_latency_ms,
            challenger_latency_ms: r.challenger_latency_ms,
            challenger_kit_bytes: r.challenger_kit_bytes,
        };
        self.run(
            &req,
            TrainCall::Evaluate {
                run: r.run,
                token: r.lease_token,
                evaluation,
            },
        )
        .await
    }

    async fn release_run(
        &self,
        req: Request<pb::ReleaseRunRequest>,
    ) -> Result<Response<pb::TrainingRun>, Status> {
        let r = req.get_ref().clone();
        self.run(
            &req,
            TrainCall::Release {
                run: r.run,
                token: r.lease_token,
                kit: r.kit,
            },
        )
        .await
    }

    async fn fail_run(
        &self,
        req: Request<pb::FailRunRequest>,
    ) -> Result<Response<pb::TrainingRun>, Status> {
        let r = req.get_ref().clone();
        self.run(
            &req,
            TrainCall::Fail {
                run: r.run,
                token: r.lease_token,
                reason: r.reason,
            },
        )
        .await
    }

    async fn list_runs(
        &self,
        req: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let r = req.get_ref().clone();
        match self
            .call(
                &req,
                TrainCall::List {
                    enterprise: r.enterprise,
                    kit: r.kit,
                },
            )
            .await?
        {
            TrainReply::Runs(runs) => Ok(Response::new(pb::ListRunsResponse {
                runs: runs.into_iter().map(run_to_pb).collect(),
            })),
            _ => Err(Status::internal(
                "the training service answered another call",
            )),
        }
    }

    async fn teach_labels(
        &self,
        req: Request<pb::TeachLabelsRequest>,
    ) -> Result<Response<pb::TeachLabelsResponse>, Status> {
        let r = req.get_ref().clone();
        let call = TrainCall::Teach {
            run: r.run,
            token: r.lease_token,
            labels: r
                .labels
                .into_iter()
                .map(|l| (l.sample_id, l.value, l.confidence))
                .collect(),
        };
        match self.call(&req, call).await? {
            TrainReply::Taught(kept, below_threshold) => {
                Ok(Response::new(pb::TeachLabelsResponse {
                    kept,
                    below_threshold,
                }))
            }
            _ => Err(Status::internal(
                "the training service answered another call",
            )),
        }
    }

    async fn get_aliases(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::KitAliases>, Status> {
        let r = req.get_ref().clone();
        let call = TrainCall::Aliases {
            enterprise: r.enterprise,
            kit: r.kit,
        };
        match self.call(&req, call).await? {
            TrainReply::Aliases(a) => {
                let (champion, champion_digest) = a
                    .champion
                    .map(|(r, d)| (r, d.to_string()))
                    .unwrap_or_default();
                let (previous, previous_digest) = a
                    .previous
                    .map(|(r, d)| (r, d.to_string()))
                    .unwrap_or_default();
                Ok(Response::new(pb::KitAliases {
                    champion,
                    champion_digest,
                    previous,
                    previous_digest,
                }))
            }
            _ => Err(Status::internal(
                "the training service answered another call",
            )),
        }
    }

    async fn get_run(
        &self,
        req: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::TrainingRun>, Status> {
        let r = req.get_ref().clone();
        self.run(&req, TrainCall::Get { run: r.run }).await
    }
}
