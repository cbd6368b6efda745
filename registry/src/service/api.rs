//! The registry's API as a trait over domain types, which the gRPC adapter
//! wraps, and its implementation by [`Registry`].

use super::*;

/// The registry's API over domain types. The gRPC adapter wraps any
/// implementation; [`Registry`] is the one over the store traits. Every method
/// may block (storage, model checks): call them from a blocking thread.
pub trait RegistryApi: Send + Sync + 'static {
    /// The blob store uploads and downloads go to.
    fn blobs(&self) -> &Arc<dyn BlobStore>;
    /// Resolves a bearer token to its principal.
    fn authenticate(&self, token: Option<&str>) -> Result<Principal>;
    /// Operator only: a token for a team, an enterprise or an operator; returns it once.
    fn create_token(
        &self,
        p: &Principal,
        role: Role,
        subject: &str,
        ttl_seconds: i64,
        description: &str,
    ) -> Result<(TokenRecord, String)>;
    /// Operator only.
    fn revoke_token(&self, p: &Principal, id: &str) -> Result<()>;
    /// Operator only: registers a team and the key it signs kits with.
    fn create_team(
        &self,
        p: &Principal,
        name: &str,
        display_name: &str,
        signing_key: &str,
    ) -> Result<Team>;
    /// Operator only.
    fn create_enterprise(
        &self,
        p: &Principal,
        name: &str,
        display_name: &str,
        industries: Vec<String>,
    ) -> Result<Enterprise>;
    /// Publishes a model version (the model is read for its signature).
    fn publish_model(&self, p: &Principal, spec: ModelSpec) -> Result<Artifact>;
    /// Publishes a tool version (it must implement the stage interface).
    fn publish_tool(&self, p: &Principal, spec: ToolSpec) -> Result<Artifact>;
    /// Publishes a dataset (the registry reads the data for its card).
    fn publish_dataset(&self, p: &Principal, spec: DatasetSpec) -> Result<Artifact>;
    /// Publishes a kit (team signature, blobs present, golden samples pass);
    /// `private_to` names the one enterprise it is made for, if any.
    fn publish_kit(
        &self,
        p: &Principal,
        manifest_bytes: Vec<u8>,
        signatures: Vec<Signature>,
        private_to: &str,
        cancel: &Cancel,
    ) -> Result<Artifact>;
    /// By `team/name@version` or by digest, if the caller may see it.
    fn get(&self, p: &Principal, reference: &str, kind: Option<Kind>) -> Result<Artifact>;
    fn search(&self, q: &Query) -> Result<Page>;
    /// What an artifact the caller may see is made of, and what uses it.
    fn relations(&self, p: &Principal, reference: &str, kind: Option<Kind>) -> Result<Relations>;
    /// Hides a version from search (or shows it again); it stays downloadable.
    fn yank(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
        undo: bool,
    ) -> Result<Artifact>;
    /// The programme's counts: all of them for an operator, without the
    /// fleet's detail for a team or enterprise ([`Coverage::for_tenants`]).
    fn coverage(&self, p: &Principal) -> Result<Coverage>;
    /// Every count, for the operator's own metrics listener.
    fn coverage_all(&self) -> Result<Coverage>;
    /// Every version of an artifact the caller may see, newest first.
    fn versions(&self, p: &Principal, kind: Kind, name: &str) -> Result<Vec<Artifact>>;
    /// The artifacts retrained from `reference`, as the caller sees them.
    fn children(&self, p: &Principal, reference: &str) -> Result<Vec<Artifact>>;
    /// Counts a whole download of a blob for the artifacts whose file it is.
    fn note_download(&self, digest: &Digest) -> Result<()>;
    /// An artifact's downloads per day (unix days, oldest first).
    fn downloads(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
    ) -> Result<Vec<(i64, u64)>>;
    /// Exchanges an API token for a web session: (secret, session).
    fn sign_in(&self, token: &str) -> Result<(String, super::WebSession)>;
    /// The session of a secret, while it and its token are good.
    fn session(&self, secret: &str) -> Result<super::WebSession>;
    /// Ends a session.
    fn sign_out(&self, secret: &str) -> Result<()>;

    // ---------------------------------------------------------------- fleet
    /// Resolves a client certificate's sha256 to its enrolled, unrevoked device.
    fn authenticate_device(&self, fingerprint: &str) -> Result<Principal>;
    /// What the caller may know of a blob (see [`crate::access`]).
    fn stat_blob(&self, p: &Principal, digest: &Digest, enterprise: &str) -> Result<BlobStat>;
    /// Opens a blob the caller may read; "not found" for any other.
    fn open_blob(
        &self,
        p: &Principal,
        digest: &Digest,
        enterprise: &str,
    ) -> Result<(u64, BlobReader)>;
    /// Whether the caller may upload blobs at all.
    fn may_upload(&self, p: &Principal) -> Result<()>;
    /// Whether the caller already may read `digest` from the catalog.
    fn sees_in_catalog(&self, p: &Principal, digest: &Digest) -> Result<bool>;
    /// Records an upload the caller started or completed.
    fn note_upload(&self, p: &Principal, digest: &Digest, done: bool) -> Result<()>;
    /// Whether the caller opened the unfinished upload of `digest`.
    fn opened_upload(&self, p: &Principal, digest: &Digest) -> Result<bool>;
    /// The ceilings on kits and uploads.
    fn ceilings(&self) -> &Ceilings;
    /// Removes abandoned partial uploads; returns how many.
    fn sweep_uploads(&self) -> Result<usize>;
    /// A one-time enrollment token; returned once.
    fn create_enrollment(
        &self,
        p: &Principal,
        enterprise: &str,
        labels: Labels,
        ttl_seconds: i64,
    ) -> Result<(Enrollment, String)>;
    /// Enrolls a device: its certificate (PEM) and the device CA (PEM).
    fn enroll(
        &self,
        token: &str,
        csr_pem: &str,
        name: &str,
        labels: Labels,
    ) -> Result<(Device, String, String)>;
    fn list_devices(&self, p: &Principal, enterprise: &str) -> Result<Vec<Device>>;
    fn revoke_device(&self, p: &Principal, id: &str) -> Result<Device>;
    fn create_deployment(
        &self,
        p: &Principal,
        enterprise: &str,
        kit: &str,
        selector: Labels,
        policy: RolloutPolicy,
    ) -> Result<Deployment>;
    fn deployment_status(&self, p: &Principal, id: &str) -> Result<(Deployment, Vec<Device>)>;
    fn list_deployments(&self, p: &Principal, enterprise: &str) -> Result<Vec<Deployment>>;
    fn act_on_deployment(
        &self,
        p: &Principal,
        id: &str,
        action: crate::fleet::DeploymentAction,
        reason: &str,
    ) -> Result<Deployment>;
    /// Stores what a device reports and applies it to the health gates.
    fn report(&self, p: &Principal, state: DeviceState) -> Result<()>;
    /// What a device should run now.
    fn desired(&self, p: &Principal) -> Result<Desired>;
    /// Sees every change of what some device should run.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Applies the time-driven gates (canary soak); called every second.
    /// Whether this replica did the work (one holds the lease at a time).
    fn tick(&self) -> Result<bool>;
    /// Drops the oldest stored traces beyond each enterprise's share.
    fn trim_traces(&self) -> Result<usize>;
    /// Hears the store's notes of other replicas' changes.
    fn subscribe_store(&self) -> Result<crate::store::Subscription>;
    /// Applies one of them.
    fn follow(&self, n: crate::store::Notice) -> Result<()>;
    /// The training service: policies, runs, their data, judgement and release.
    fn train(
        &self,
        p: &Principal,
        call: crate::training::TrainCall,
    ) -> Result<crate::training::TrainReply>;
    /// The key accepted kits are countersigned with, if any.
    fn registry_key(&self) -> Option<PublicKey>;
    /// Stores a device's hard examples; returns (stored, already there).
    fn push_samples(
        &self,
        p: &Principal,
        samples: Vec<(SampleRecord, Vec<Vec<u8>>)>,
    ) -> Result<(u32, u32)>;
    /// A page of hard examples and the token of the next.
    fn list_samples(
        &self,
        p: &Principal,
        enterprise: &str,
        kit: &str,
        page_size: usize,
        page_token: &str,
        unlabelled: bool,
    ) -> Result<(Vec<SampleRecord>, String)>;
    /// Labels an enterprise's samples from one source; (labelled, unknown ids).
    fn label_samples(
        &self,
        p: &Principal,
        enterprise: &str,
        source: LabelSource,
        labels: Vec<(String, String)>,
    ) -> Result<(u32, Vec<String>)>;
    /// Takes a device's metrics export (cumulative OpenTelemetry points).
    fn ingest_metrics(
        &self,
        p: &Principal,
        points: Vec<crate::telemetry::MetricPoint>,
    ) -> Result<()>;
    /// Serving figures per device and kit.
    fn telemetry(
        &self,
        p: &Principal,
        enterprise: &str,
        device: &str,
    ) -> Result<Vec<crate::telemetry::KitTelemetry>>;
    /// Takes a device's trace export.
    fn ingest_spans(&self, p: &Principal, spans: Vec<crate::traces::SpanRecord>) -> Result<()>;
    /// Recent sampled request traces, newest first.
    fn traces(
        &self,
        p: &Principal,
        enterprise: &str,
        filter: &crate::traces::TraceFilter,
    ) -> Result<Vec<crate::traces::TraceSummary>>;
}

impl RegistryApi for Registry {
    fn blobs(&self) -> &Arc<dyn BlobStore> {
        Registry::blobs(self)
    }
    fn authenticate(&self, token: Option<&str>) -> Result<Principal> {
        Registry::authenticate(self, token)
    }
    fn create_token(
        &self,
        p: &Principal,
        role: Role,
        subject: &str,
        ttl_seconds: i64,
        description: &str,
    ) -> Result<(TokenRecord, String)> {
        Registry::create_token(self, p, role, subject, ttl_seconds, description)
    }
    fn revoke_token(&self, p: &Principal, id: &str) -> Result<()> {
        Registry::revoke_token(self, p, id)
    }
    fn create_team(
        &self,
        p: &Principal,
        name: &str,
        display_name: &str,
        signing_key: &str,
    ) -> Result<Team> {
        Registry::create_team(self, p, name, display_name, signing_key)
    }
    fn create_enterprise(
        &self,
        p: &Principal,
        name: &str,
        display_name: &str,
        industries: Vec<String>,
    ) -> Result<Enterprise> {
        Registry::create_enterprise(self, p, name, display_name, industries)
    }
    fn publish_model(&self, p: &Principal, spec: ModelSpec) -> Result<Artifact> {
        Registry::publish_model(self, p, spec)
    }
    fn publish_tool(&self, p: &Principal, spec: ToolSpec) -> Result<Artifact> {
        Registry::publish_tool(self, p, spec)
    }
    fn publish_kit(
        &self,
        p: &Principal,
        manifest_bytes: Vec<u8>,
        signatures: Vec<Signature>,
        private_to: &str,
        cancel: &Cancel,
    ) -> Result<Artifact> {
        Registry::publish_kit(self, p, manifest_bytes, signatures, private_to, cancel)
    }
    fn get(&self, p: &Principal, reference: &str, kind: Option<Kind>) -> Result<Artifact> {
        Registry::get_for(self, p, reference, kind)
    }
    fn search(&self, q: &Query) -> Result<Page> {
        Registry::search(self, q)
    }
    fn publish_dataset(&self, p: &Principal, spec: DatasetSpec) -> Result<Artifact> {
        Registry::publish_dataset(self, p, spec)
    }
    fn relations(&self, p: &Principal, reference: &str, kind: Option<Kind>) -> Result<Relations> {
        Registry::relations(self, p, reference, kind)
    }
    fn yank(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
        undo: bool,
    ) -> Result<Artifact> {
        Registry::yank(self, p, reference, kind, undo)
    }
    fn coverage_all(&self) -> Result<Coverage> {
        Registry::coverage(self)
    }
    fn coverage(&self, p: &Principal) -> Result<Coverage> {
        if p.role == crate::domain::Role::Operator {
            Registry::coverage(self)
        } else {
            Registry::coverage_public(self)
        }
    }
    fn versions(&self, p: &Principal, kind: Kind, name: &str) -> Result<Vec<Artifact>> {
        Registry::versions(self, p, kind, name)
    }
    fn children(&self, p: &Principal, reference: &str) -> Result<Vec<Artifact>> {
        Registry::children(self, p, reference)
    }
    fn note_download(&self, digest: &Digest) -> Result<()> {
        Registry::note_download(self, digest)
    }
    fn downloads(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
    ) -> Result<Vec<(i64, u64)>> {
        Registry::downloads(self, p, reference, kind)
    }
    fn sign_in(&self, token: &str) -> Result<(String, super::WebSession)> {
        Registry::sign_in(self, token)
    }
    fn session(&self, secret: &str) -> Result<super::WebSession> {
        Registry::session(self, secret)
    }
    fn sign_out(&self, secret: &str) -> Result<()> {
        Registry::sign_out(self, secret)
    }
    fn authenticate_device(&self, fingerprint: &str) -> Result<Principal> {
        Registry::authenticate_device(self, fingerprint)
    }
    fn stat_blob(&self, p: &Principal, digest: &Digest, enterprise: &str) -> Result<BlobStat> {
        Registry::stat_blob(self, p, digest, enterprise)
    }
    fn open_blob(
        &self,
        p: &Principal,
        digest: &Digest,
        enterprise: &str,
    ) -> Result<(u64, BlobReader)> {
        Registry::open_blob(self, p, digest, enterprise)
    }
    fn may_upload(&self, p: &Principal) -> Result<()> {
        Registry::may_upload(self, p)
    }
    fn sees_in_catalog(&self, p: &Principal, digest: &Digest) -> Result<bool> {
        Registry::sees_in_catalog(self, p, digest)
    }
    fn note_upload(&self, p: &Principal, digest: &Digest, done: bool) -> Result<()> {
        Registry::note_upload(self, p, digest, done)
    }
    fn opened_upload(&self, p: &Principal, digest: &Digest) -> Result<bool> {
        Registry::opened_upload(self, p, digest)
    }
    fn ceilings(&self) -> &Ceilings {
        &self.ceilings
    }
    fn sweep_uploads(&self) -> Result<usize> {
        self.blobs.sweep_partials(self.ceilings.partial_max_age)
    }
    fn create_enrollment(
        &self,
        p: &Principal,
        enterprise: &str,
        labels: Labels,
        ttl_seconds: i64,
    ) -> Result<(Enrollment, String)> {
        Registry::create_enrollment(self, p, enterprise, labels, ttl_seconds)
    }
    fn enroll(
        &self,
        token: &str,
        csr_pem: &str,
        name: &str,
        labels: Labels,
    ) -> Result<(Device, String, String)> {
        Registry::enroll(self, token, csr_pem, name, labels)
    }
    fn list_devices(&self, p: &Principal, enterprise: &str) -> Result<Vec<Device>> {
        Registry::list_devices(self, p, enterprise)
    }
    fn revoke_device(&self, p: &Principal, id: &str) -> Result<Device> {
        Registry::revoke_device(self, p, id)
    }
    fn create_deployment(
        &self,
        p: &Principal,
        enterprise: &str,
        kit: &str,
        selector: Labels,
        policy: RolloutPolicy,
    ) -> Result<Deployment> {
        Registry::create_deployment(self, p, enterprise, kit, selector, policy)
    }
    fn deployment_status(&self, p: &Principal, id: &str) -> Result<(Deployment, Vec<Device>)> {
        Registry::deployment_status(self, p, id)
    }
    fn list_deployments(&self, p: &Principal, enterprise: &str) -> Result<Vec<Deployment>> {
        Registry::list_deployments(self, p, enterprise)
    }
    fn act_on_deployment(
        &self,
        p: &Principal,
        id: &str,
        action: crate::fleet::DeploymentAction,
        reason: &str,
    ) -> Result<Deployment> {
        Registry::act_on_deployment(self, p, id, action, reason)
    }
    fn report(&self, p: &Principal, state: DeviceState) -> Result<()> {
        Registry::report(self, p, state)
    }
    fn desired(&self, p: &Principal) -> Result<Desired> {
        Registry::desired(self, p)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        Registry::subscribe(self)
    }
    fn tick(&self) -> Result<bool> {
        Registry::tick(self)
    }
    fn trim_traces(&self) -> Result<usize> {
        Registry::trim_traces(self)
    }
    fn subscribe_store(&self) -> Result<crate::store::Subscription> {
        Registry::subscribe_store(self)
    }
    fn follow(&self, n: crate::store::Notice) -> Result<()> {
        Registry::follow(self, n)
    }
    fn train(
        &self,
        p: &Principal,
        call: crate::training::TrainCall,
    ) -> Result<crate::training::TrainReply> {
        Registry::train(self, p, call)
    }
    fn registry_key(&self) -> Option<PublicKey> {
        Registry::registry_key(self)
    }
    fn push_samples(
        &self,
        p: &Principal,
        samples: Vec<(SampleRecord, Vec<Vec<u8>>)>,
    ) -> Result<(u32, u32)> {
        Registry::push_samples(self, p, samples)
    }
    fn list_samples(
        &self,
        p: &Principal,
        enterprise: &str,
        kit: &str,
        page_size: usize,
        page_token: &str,
        unlabelled: bool,
    ) -> Result<(Vec<SampleRecord>, String)> {
        Registry::list_samples(self, p, enterprise, kit, page_size, page_token, unlabelled)
    }
    fn label_samples(
        &self,
        p: &Principal,
        enterprise: &str,
        source: LabelSource,
        labels: Vec<(String, String)>,
    ) -> Result<(u32, Vec<String>)> {
        Registry::label_samples(self, p, enterprise, source, labels)
    }
    fn ingest_metrics(
        &self,
        p: &Principal,
        points: Vec<crate::telemetry::MetricPoint>,
    ) -> Result<()> {
        Registry::ingest_metrics(self, p, points)
    }
    fn telemetry(
        &self,
        p: &Principal,
        enterprise: &str,
        device: &str,
    ) -> Result<Vec<crate::telemetry::KitTelemetry>> {
        Registry::telemetry(self, p, enterprise, device)
    }
    fn ingest_spans(&self, p: &Principal, spans: Vec<crate::traces::SpanRecord>) -> Result<()> {
        Registry::ingest_spans(self, p, spans)
    }
    fn traces(
        &self,
        p: &Principal,
        enterprise: &str,
        filter: &crate::traces::TraceFilter,
    ) -> Result<Vec<crate::traces::TraceSummary>> {
        Registry::traces(self, p, enterprise, filter)
    }
}
