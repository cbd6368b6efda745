//! The training side of the client: policies, runs, and what a trainer calls
//! (claim with a lease, the run's data, the evaluation, the release). Runs and
//! policies are the wire types (`algobay_proto::v1::TrainingRun`, `TrainPolicy`).

use algobay_proto::v1 as pb;
use tonic::transport::Channel;

use crate::client::{Client, SdkError};

type Result<T, E = SdkError> = std::result::Result<T, E>;

pub use pb::{
    FieldAnswer, FieldSample, KitAliases, RunDataResponse, RunRelease, RunTransition,
    SubmitEvaluationRequest, TeacherLabel, TrainPolicy, TrainingRun,
};

impl Client {
    fn training(&self) -> pb::training_client::TrainingClient<Channel> {
        pb::training_client::TrainingClient::new(self.channel.clone())
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// An enterprise's training policy for a kit (the defaults until one is set).
    pub async fn train_policy(&self, enterprise: &str, kit: &str) -> Result<TrainPolicy> {
        Ok(self
            .training()
            .get_policy(self.req(pb::GetPolicyRequest {
                enterprise: enterprise.into(),
                kit: kit.into(),
            }))
            .await?
            .into_inner())
    }

    pub async fn set_train_policy(&self, policy: TrainPolicy) -> Result<TrainPolicy> {
        Ok(self
            .training()
            .set_policy(self.req(policy))
            .await?
            .into_inner())
    }

    /// Starts the next round of `kit` for `enterprise` now.
    pub async fn start_run(&self, enterprise: &str, kit: &str) -> Result<TrainingRun> {
        Ok(self
            .training()
            .start_run(self.req(pb::StartRunRequest {
                enterprise: enterprise.into(),
                kit: kit.into(),
            }))
            .await?
            .into_inner())
    }

    /// `champion` (the kit serving the enterprise) and `previous` (what it replaced).
    pub async fn kit_aliases(&self, enterprise: &str, kit: &str) -> Result<pb::KitAliases> {
        Ok(self
            .training()
            .get_aliases(self.req(pb::GetPolicyRequest {
                enterprise: enterprise.into(),
                kit: kit.into(),
            }))
            .await?
            .into_inner())
    }

    pub async fn list_runs(&self, enterprise: &str, kit: &str) -> Result<Vec<TrainingRun>> {
        Ok(self
            .training()
            .list_runs(self.req(pb::ListRunsRequest {
                enterprise: enterprise.into(),
                kit: kit.into(),
            }))
            .await?
            .into_inner()
            .runs)
    }

    pub async fn get_run(&self, id: &str) -> Result<TrainingRun> {
        Ok(self
            .training()
            .get_run(self.req(pb::GetRunRequest { run: id.into() }))
            .await?
            .into_inner())
    }

    /// Takes the oldest run this team may work on; `None` when there is none.
    pub async fn claim_run(
        &self,
        holder: &str,
        lease_seconds: u32,
    ) -> Result<Option<(TrainingRun, String)>> {
        let r = self
            .training()
            .claim_run(self.req(pb::ClaimRunRequest {
                holder: holder.into(),
                lease_seconds,
            }))
            .await?
            .into_inner();
        Ok(r.run.map(|run| (run, r.lease_token)))
    }

    pub async fn renew_lease(
        &self,
        run: &str,
        token: &str,
        lease_seconds: u32,
    ) -> Result<TrainingRun> {
        Ok(self
            .training()
            .renew_lease(self.req(pb::LeaseRequest {
                run: run.into(),
                lease_token: token.into(),
                lease_seconds,
            }))
            .await?
            .into_inner())
    }

    pub async fn run_data(&self, run: &str, token: &str) -> Result<RunDataResponse> {
        Ok(self
            .training()
            .run_data(self.req(pb::LeaseRequest {
                run: run.into(),
                lease_token: token.into(),
                lease_seconds: 0,
            }))
            .await?
            .into_inner())
    }

    pub async fn submit_evaluation(&self, req: pb::SubmitEvaluationRequest) -> Result<TrainingRun> {
        Ok(self
            .training()
            .submit_evaluation(self.req(req))
            .await?
            .into_inner())
    }

    pub async fn release_run(&self, run: &str, token: &str, kit: &str) -> Result<TrainingRun> {
        Ok(self
            .training()
            .release_run(self.req(pb::ReleaseRunRequest {
                run: run.into(),
                lease_token: token.into(),
                kit: kit.into(),
            }))
            .await?
            .into_inner())
    }

    /// Sends a teacher kit's labels for a round's unlabelled samples; (kept, below the threshold).
    pub async fn teach_labels(
        &self,
        run: &str,
        token: &str,
        labels: Vec<pb::TeacherLabel>,
    ) -> Result<(u32, u32)> {
        let r = self
            .training()
            .teach_labels(self.req(pb::TeachLabelsRequest {
                run: run.into(),
                lease_token: token.into(),
                labels,
            }))
            .await?
            .into_inner();
        Ok((r.kept, r.below_threshold))
    }

    pub async fn fail_run(&self, run: &str, token: &str, reason: &str) -> Result<TrainingRun> {
        Ok(self
            .training()
            .fail_run(self.req(pb::FailRunRequest {
                run: run.into(),
                lease_token: token.into(),
                reason: reason.into(),
            }))
            .await?
            .into_inner())
    }
}
