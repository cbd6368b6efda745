//! The registry service over domain types: authentication, role and tenant
//! checks, validated publishing, reads, search and coverage. Every method
//! blocks (storage, model checks): call them from a blocking thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use rand::RngCore;
use sha2::Digest as _;

use algobay_runtime::archive::KitArchive;
use algobay_runtime::golden::run_golden_checked;
use algobay_runtime::manifest::{validate_name, Limits, Manifest};
use algobay_runtime::sign::{PublicKey, Signature, TrustRoots};
use algobay_runtime::{Digest, Runtime};

use crate::blobs::{BlobReader, BlobStat, BlobStore};
use crate::domain::*;
use crate::error::{RegistryError, Result};
use crate::index::SearchIndex;
use crate::limits::{check_len, check_list, shown, text, Ceilings};
use crate::store::{Batch, KvStore, Tree};

/// What a publisher says about a model it publishes.
#[derive(Clone, Debug, Default)]
pub struct ModelSpec {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub domain: String,
    pub task: String,
    pub architecture: String,
    pub config_digest: String,
    pub description: String,
    pub license: String,
    pub industries: Vec<String>,
    pub tags: Vec<String>,
    pub card: String,
    pub metrics: BTreeMap<String, f64>,
    pub parent: String,
    /// (digest, bytes) of small blobs sent with the publish instead of uploaded
    /// before it; stored with the artifact, atomically.
    pub inline: Vec<(String, Vec<u8>)>,
}

/// What a publisher says about a tool it publishes.
#[derive(Clone, Debug, Default)]
pub struct ToolSpec {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub tool_kind: String,
    pub description: String,
    pub license: String,
    pub industries: Vec<String>,
    pub tags: Vec<String>,
    pub card: String,
}

/// Tool kinds the registry knows.
pub const TOOL_KINDS: &[&str] = &[
    "preprocess",
    "postprocess",
    "annotation",
    "training",
    "evaluation",
    "conversion",
    "deployment",
];

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
    /// Hides a version from search (or shows it again); it stays downloadable.
    fn yank(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
        undo: bool,
    ) -> Result<Artifact>;
    /// The operator's counts.
    fn coverage(&self) -> Result<Coverage>;

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
    fn tick(&self) -> Result<()>;
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
    ) -> Result<(Vec<SampleRecord>, String)>;
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
    fn yank(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
        undo: bool,
    ) -> Result<Artifact> {
        Registry::yank(self, p, reference, kind, undo)
    }
    fn coverage(&self) -> Result<Coverage> {
        Registry::coverage(self)
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
    fn tick(&self) -> Result<()> {
        Registry::tick(self)
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
    ) -> Result<(Vec<SampleRecord>, String)> {
        Registry::list_samples(self, p, enterprise, kit, page_size, page_token)
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

/// The registry over a metadata store and a blob store.
pub struct Registry {
    pub(crate) kv: Arc<dyn KvStore>,
    blobs: Arc<dyn BlobStore>,
    runtime: Arc<Runtime>,
    pub(crate) clock: Arc<dyn Clock>,
    index: RwLock<SearchIndex>,
    /// Signs enrolled devices' certificates (none when serving without TLS).
    pub(crate) device_ca: Option<crate::tls::DeviceCa>,
    /// The last deployment sequence number given out.
    pub(crate) seq: std::sync::atomic::AtomicU64,
    /// When each device last synced (kept in memory; stored only on a change of state).
    pub(crate) seen: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Bumped on every change of what some device should run.
    changes: tokio::sync::watch::Sender<u64>,
    /// Devices' serving figures (rebuilt from their next exports after a restart).
    pub(crate) telemetry: std::sync::Mutex<crate::telemetry::TelemetryMap>,
    /// Devices' recent sampled request traces.
    pub(crate) traces: std::sync::Mutex<crate::traces::TraceMap>,
    /// Countersigns every kit it accepts (devices may trust it as a root).
    signing_key: Option<algobay_runtime::SecretKey>,
    /// What a kit may ask of the registry, and upload limits.
    ceilings: Ceilings,
    /// Golden runs under way (at most `ceilings.golden_slots`).
    golden_busy: (std::sync::Mutex<usize>, std::sync::Condvar),
}

/// Set when the caller of a long call has gone away, so the work stops.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A guard that cancels when dropped: hold it in the request's future, which
    /// the server drops when the caller goes away.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Cancels its [`Cancel`] when dropped.
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("domain types serialise")
}

pub fn parse<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Storage(format!("stored {what} is unreadable: {e}")))
}

fn digest(field: &str, s: &str) -> Result<Digest> {
    if s.is_empty() {
        return Err(RegistryError::invalid(field, "is required"));
    }
    s.parse()
        .map_err(|e: algobay_runtime::Error| RegistryError::invalid(field, e.to_string()))
}

fn check_version(v: &str) -> Result<()> {
    if v.len() > text::WORD {
        return Err(RegistryError::invalid(
            "version",
            format!("`{}` is not a semantic version", shown(v)),
        ));
    }
    semver::Version::parse(v).map(|_| ()).map_err(|e| {
        RegistryError::invalid("version", format!("`{v}` is not a semantic version: {e}"))
    })
}

fn check_simple_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !ok {
        return Err(RegistryError::invalid(
            field,
            format!(
                "`{}` must be 1-64 of a-z 0-9 - _ . not starting with . or -",
                shown(name)
            ),
        ));
    }
    Ok(())
}

/// Checks the descriptive text of a published artifact.
fn check_text(
    description: &str,
    card: &str,
    license: &str,
    industries: &[String],
    tags: &[String],
) -> Result<()> {
    check_len("description", description, text::DESCRIPTION)?;
    check_len("card", card, text::CARD)?;
    check_len("license", license, text::WORD)?;
    check_list("industries", industries)?;
    check_list("tags", tags)
}

pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

impl Registry {
    /// A registry over the given stores; the search index is rebuilt from the metadata.
    pub fn open(
        kv: Arc<dyn KvStore>,
        blobs: Arc<dyn BlobStore>,
        runtime: Arc<Runtime>,
        clock: Arc<dyn Clock>,
    ) -> Result<Registry> {
        let mut index = SearchIndex::default();
        for (_, v) in kv.scan_prefix(Tree::Artifacts, b"")? {
            index.upsert(parse::<Artifact>("artifact", &v)?);
        }
        let mut seq = 0;
        for (_, v) in kv.scan_prefix(Tree::Deployments, b"")? {
            seq = seq.max(parse::<Deployment>("deployment", &v)?.seq);
        }
        // Small blobs published inline live in the metadata store; reads find them there.
        let blobs: Arc<dyn BlobStore> =
            Arc::new(crate::blobs::WithInlineBlobs::new(kv.clone(), blobs));
        Ok(Registry {
            kv,
            blobs,
            runtime,
            clock,
            index: RwLock::new(index),
            device_ca: None,
            seq: std::sync::atomic::AtomicU64::new(seq),
            seen: Default::default(),
            changes: tokio::sync::watch::Sender::new(0),
            telemetry: Default::default(),
            traces: Default::default(),
            signing_key: None,
            ceilings: Ceilings::default(),
            golden_busy: Default::default(),
        })
    }

    /// Sets the ceilings on kits and uploads.
    pub fn with_ceilings(mut self, ceilings: Ceilings) -> Registry {
        self.ceilings = ceilings;
        self
    }

    /// Enrolls devices with certificates signed by this CA.
    pub fn with_device_ca(mut self, ca: crate::tls::DeviceCa) -> Registry {
        self.device_ca = Some(ca);
        self
    }

    /// Countersigns accepted kits with this key.
    pub fn with_signing_key(mut self, key: algobay_runtime::SecretKey) -> Registry {
        self.signing_key = Some(key);
        self
    }

    /// The public key kits are countersigned with.
    pub fn registry_key(&self) -> Option<PublicKey> {
        self.signing_key.as_ref().map(|k| k.public())
    }

    /// Stores a record under a freshly drawn random id; a collision (the key
    /// is taken) is refused rather than overwriting.
    pub(crate) fn insert_new(
        &self,
        tree: Tree,
        key: &str,
        value: Vec<u8>,
        what: &str,
    ) -> Result<()> {
        if !self
            .kv
            .commit(Batch::new().check(tree, key.as_bytes(), None).put(
                tree,
                key.as_bytes(),
                value,
            ))?
        {
            return Err(RegistryError::Storage(format!(
                "{what} id collision; try again"
            )));
        }
        Ok(())
    }

    /// Wakes every device waiting for its desired state to change.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// A receiver that sees every change of desired state.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, SearchIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    // ------------------------------------------------------------ tokens

    fn mint(
        &self,
        role: Role,
        subject: &str,
        ttl_seconds: i64,
        description: &str,
    ) -> Result<(TokenRecord, String)> {
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = B64.encode(secret);
        let now = self.clock.now_unix();
        let rec = TokenRecord {
            id: id.clone(),
            hash: hash_secret(&secret),
            role,
            subject: subject.to_owned(),
            expires_unix: if ttl_seconds > 0 {
                now.saturating_add(ttl_seconds)
            } else {
                0
            },
            revoked: false,
            description: description.to_owned(),
            created_unix: now,
        };
        self.insert_new(Tree::Tokens, &id, json(&rec), "token")?;
        Ok((rec, format!("abt_{id}_{secret}")))
    }

    /// Creates the first operator token if there is no operator yet; returns it, once.
    pub fn bootstrap_operator(&self) -> Result<Option<String>> {
        let any_operator = self
            .kv
            .scan_prefix(Tree::Tokens, b"")?
            .iter()
            .any(|(_, v)| {
                parse::<TokenRecord>("token", v)
                    .is_ok_and(|t| t.role == Role::Operator && !t.revoked)
            });
        if any_operator {
            return Ok(None);
        }
        self.mint(Role::Operator, "", 0, "created at first start")
            .map(|(_, t)| Some(t))
    }

    /// Resolves a bearer token to its principal.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal> {
        let token = token.ok_or_else(|| {
            RegistryError::Unauthenticated("no token: send `authorization: Bearer <token>`".into())
        })?;
        let rest = token.strip_prefix("abt_").ok_or_else(|| {
            RegistryError::Unauthenticated("malformed token: it must start with `abt_`".into())
        })?;
        let (id, secret) = rest
            .split_once('_')
            .ok_or_else(|| RegistryError::Unauthenticated("malformed token".into()))?;
        let rec: TokenRecord = match self.kv.get(Tree::Tokens, id.as_bytes())? {
            Some(v) => parse("token", &v)?,
            None => return Err(RegistryError::Unauthenticated("unknown token".into())),
        };
        let given = hash_secret(secret);
        let same = given.len() == rec.hash.len()
            && given
                .bytes()
                .zip(rec.hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(RegistryError::Unauthenticated("unknown token".into()));
        }
        if rec.revoked {
            return Err(RegistryError::Unauthenticated(format!(
                "token {id} was revoked"
            )));
        }
        if rec.expires_unix != 0 && self.clock.now_unix() >= rec.expires_unix {
            return Err(RegistryError::Unauthenticated(format!(
                "token {id} expired"
            )));
        }
        Ok(Principal {
            role: rec.role,
            subject: rec.subject,
            token_id: rec.id,
        })
    }

    fn operator(p: &Principal) -> Result<()> {
        if p.role != Role::Operator {
            return Err(RegistryError::PermissionDenied(
                "only an operator may do this".into(),
            ));
        }
        Ok(())
    }

    /// Operator only: a token for a team, an enterprise or an operator.
    pub fn create_token(
        &self,
        p: &Principal,
        role: Role,
        subject: &str,
        ttl_seconds: i64,
        description: &str,
    ) -> Result<(TokenRecord, String)> {
        Self::operator(p)?;
        if !(0..=text::MAX_TTL_SECONDS).contains(&ttl_seconds) {
            return Err(RegistryError::invalid(
                "ttl_seconds",
                format!(
                    "{ttl_seconds} is not between 0 (no expiry) and {} (ten years)",
                    text::MAX_TTL_SECONDS
                ),
            ));
        }
        check_len("description", description, text::DESCRIPTION)?;
        match role {
            Role::Operator if !subject.is_empty() => {
                return Err(RegistryError::invalid(
                    "subject",
                    "operator tokens have no subject",
                ))
            }
            Role::Team if self.team(subject)?.is_none() => {
                return Err(RegistryError::NotFound(format!(
                    "team `{}`",
                    shown(subject)
                )))
            }
            Role::Enterprise
                if self
                    .kv
                    .get(Tree::Enterprises, subject.as_bytes())?
                    .is_none() =>
            {
                return Err(RegistryError::NotFound(format!(
                    "enterprise `{}`",
                    shown(subject)
                )))
            }
            _ => {}
        }
        self.mint(role, subject, ttl_seconds, description)
    }

    /// Operator only.
    pub fn revoke_token(&self, p: &Principal, id: &str) -> Result<()> {
        Self::operator(p)?;
        let old = self
            .kv
            .get(Tree::Tokens, id.as_bytes())?
            .ok_or_else(|| RegistryError::NotFound(format!("token {id}")))?;
        let mut rec: TokenRecord = parse("token", &old)?;
        rec.revoked = true;
        if !self.kv.commit(
            Batch::new()
                .check(Tree::Tokens, id.as_bytes(), Some(old))
                .put(Tree::Tokens, id.as_bytes(), json(&rec)),
        )? {
            return Err(RegistryError::FailedPrecondition(format!(
                "token {id} changed meanwhile; try again"
            )));
        }
        Ok(())
    }

    // ------------------------------------------------------------ tenants

    /// Operator only: registers a team and the key it signs kits with.
    pub fn create_team(
        &self,
        p: &Principal,
        name: &str,
        display_name: &str,
        signing_key: &str,
    ) -> Result<Team> {
        Self::operator(p)?;
        check_simple_name("name", name)?;
        check_len("display_name", display_name, text::DISPLAY_NAME)?;
        signing_key
            .parse::<PublicKey>()
            .map_err(|e| RegistryError::invalid("signing_key", e.to_string()))?;
        let team = Team {
            name: name.into(),
            display_name: display_name.into(),
            signing_key: signing_key.into(),
            created_unix: self.clock.now_unix(),
        };
        if !self
            .kv
            .commit(Batch::new().check(Tree::Teams, name.as_bytes(), None).put(
                Tree::Teams,
                name.as_bytes(),
                json(&team),
            ))?
        {
            let existing = self
                .team(name)?
                .ok_or_else(|| RegistryError::Storage("team vanished".into()))?;
            if existing.signing_key == team.signing_key
                && existing.display_name == team.display_name
            {
                return Ok(existing);
            }
            return Err(RegistryError::AlreadyExists(format!("team `{name}`")));
        }
        Ok(team)
    }

    pub fn team(&self, name: &str) -> Result<Option<Team>> {
        self.kv
            .get(Tree::Teams, name.as_bytes())?
            .map(|v| parse("team", &v))
            .transpose()
    }

    /// Operator only.
    pub fn create_enterprise(
        &self,
        p: &Principal,
        name: &str,
        display_name: &str,
        industries: Vec<String>,
    ) -> Result<Enterprise> {
        Self::operator(p)?;
        check_simple_name("name", name)?;
        check_len("display_name", display_name, text::DISPLAY_NAME)?;
        check_list("industries", &industries)?;
        let e = Enterprise {
            name: name.into(),
            display_name: display_name.into(),
            industries,
            created_unix: self.clock.now_unix(),
        };
        if !self.kv.commit(
            Batch::new()
                .check(Tree::Enterprises, name.as_bytes(), None)
                .put(Tree::Enterprises, name.as_bytes(), json(&e)),
        )? {
            return Err(RegistryError::AlreadyExists(format!("enterprise `{name}`")));
        }
        Ok(e)
    }

    // ------------------------------------------------------------ publishing

    fn owner_check(&self, p: &Principal, name: &str) -> Result<Team> {
        validate_name("name", name).map_err(|e| RegistryError::invalid("name", e.to_string()))?;
        let team = name.split('/').next().unwrap_or_default();
        if !p.may_publish_for(team) {
            return Err(RegistryError::PermissionDenied(format!(
                "`{name}` belongs to team `{team}`, which this token does not act for"
            )));
        }
        self.team(team)?
            .ok_or_else(|| RegistryError::NotFound(format!("team `{team}`")))
    }

    /// A blob the publisher may use: one it may read (what another team uploaded
    /// and never published is as absent to it as what nobody uploaded).
    fn blob(&self, p: &Principal, field: &str, d: &Digest) -> Result<Vec<u8>> {
        if !self.sees_in_catalog(p, d)? {
            return Err(RegistryError::FailedPrecondition(format!(
                "{field} {d} has not been uploaded"
            )));
        }
        self.blobs.read_all(d)
    }

    /// Checks the blobs sent inline with a publish: each named by the request,
    /// small, and hashing to its digest. Returns them by digest.
    fn inline_blobs(&self, spec: &ModelSpec) -> Result<BTreeMap<Digest, Vec<u8>>> {
        use crate::blobs::{MAX_INLINE_BLOB, MAX_INLINE_TOTAL};
        let total: usize = spec.inline.iter().map(|(_, b)| b.len()).sum();
        if total > MAX_INLINE_TOTAL {
            return Err(RegistryError::TooLarge(format!(
                "blobs: {total} bytes inline, over the limit of {MAX_INLINE_TOTAL}; upload larger blobs first"
            )));
        }
        let mut out = BTreeMap::new();
        if spec.inline.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut named = vec![digest("digest", &spec.digest)?];
        if !spec.config_digest.is_empty() {
            named.push(digest("config_digest", &spec.config_digest)?);
        }
        for (i, (d, b)) in spec.inline.iter().enumerate() {
            let field = format!("blobs[{i}]");
            let d = digest(&format!("{field}.digest"), d)?;
            if !named.contains(&d) {
                return Err(RegistryError::invalid(
                    field,
                    format!("{d} is neither the model's digest nor its config's"),
                ));
            }
            if b.len() > MAX_INLINE_BLOB {
                return Err(RegistryError::TooLarge(format!(
                    "{field}: {} bytes, over the inline limit of {MAX_INLINE_BLOB}; upload it first",
                    b.len()
                )));
            }
            if Digest::of(b) != d {
                return Err(RegistryError::invalid(
                    field,
                    format!("the bytes hash to {}, not {d}", Digest::of(b)),
                ));
            }
            out.insert(d, b.clone());
        }
        Ok(out)
    }

    /// Stores a new version; the same content again is a no-op, other content is refused.
    fn insert(&self, a: Artifact) -> Result<Artifact> {
        self.insert_with(Vec::new(), a)
    }

    /// [`Self::insert`], writing `extra` records in the same atomic batch.
    fn insert_with(&self, extra: Vec<(Tree, Vec<u8>, Vec<u8>)>, a: Artifact) -> Result<Artifact> {
        let key = a.key();
        let mut batch = Batch::new()
            .check(Tree::Artifacts, key.as_bytes(), None)
            .put(Tree::Artifacts, key.as_bytes(), json(&a));
        for (tree, k, v) in extra {
            batch = batch.put(tree, k, v);
        }
        for d in a
            .blobs
            .iter()
            .chain(std::iter::once(&a.digest))
            .collect::<BTreeSet<_>>()
        {
            batch = batch.put(Tree::Digests, format!("{d}/{key}"), Vec::new());
        }
        if self.kv.commit(batch)? {
            self.index
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .upsert(a.clone());
            return Ok(a);
        }
        let existing: Artifact = parse(
            "artifact",
            &self
                .kv
                .get(Tree::Artifacts, key.as_bytes())?
                .ok_or_else(|| RegistryError::Storage("artifact vanished".into()))?,
        )?;
        if existing.digest == a.digest {
            return Ok(existing);
        }
        Err(RegistryError::AlreadyExists(format!(
            "{} {} is already published with other content ({}); versions are immutable, publish a new version",
            a.kind.as_str(),
            a.reference(),
            existing.digest
        )))
    }

    /// Publishes a model: the registry reads the model file itself for its signature.
    pub fn publish_model(&self, p: &Principal, spec: ModelSpec) -> Result<Artifact> {
        self.owner_check(p, &spec.name)?;
        check_version(&spec.version)?;
        check_text(
            &spec.description,
            &spec.card,
            &spec.license,
            &spec.industries,
            &spec.tags,
        )?;
        for (field, v) in [
            ("domain", &spec.domain),
            ("task", &spec.task),
            ("architecture", &spec.architecture),
            ("parent", &spec.parent),
        ] {
            check_len(field, v, text::WORD)?;
        }
        if spec.metrics.len() > text::LIST {
            return Err(RegistryError::TooLarge(format!(
                "metrics: {} entries, over the limit of {}",
                spec.metrics.len(),
                text::LIST
            )));
        }
        for (k, v) in &spec.metrics {
            check_len("metrics key", k, text::ITEM)?;
            if !v.is_finite() {
                return Err(RegistryError::invalid(
                    format!("metrics[{k}]"),
                    "must be a finite number",
                ));
            }
        }
        let d = digest("digest", &spec.digest)?;
        if spec.domain.is_empty() {
            return Err(RegistryError::invalid(
                "domain",
                "is required (vision, speech, nlp, tabular, ...)",
            ));
        }
        if spec.task.is_empty() {
            return Err(RegistryError::invalid(
                "task",
                "is required (classification, detection, ocr, vad, embedding, ...)",
            ));
        }
        let inline = self.inline_blobs(&spec)?;
        let blob = |field: &str, d: &Digest| match inline.get(d) {
            Some(b) => Ok(b.clone()),
            None => self.blob(p, field, d),
        };
        let bytes = blob("model", &d)?;
        if bytes.is_empty() {
            return Err(RegistryError::invalid("digest", "the model file is empty"));
        }
        let step = spec.name.rsplit('/').next().unwrap_or("model").to_owned();
        let (format, signature, mut blobs) = if spec.architecture.is_empty() {
            let m = self
                .runtime
                .ort()
                .map_err(|e| RegistryError::Storage(e.to_string()))?
                .model(&step, &bytes)?;
            ("onnx", m.signature().clone(), vec![d])
        } else {
            let mut assets = BTreeMap::new();
            let mut blobs = vec![d];
            if !spec.config_digest.is_empty() {
                let c = digest("config_digest", &spec.config_digest)?;
                assets.insert("config".to_string(), blob("config", &c)?);
                blobs.push(c);
            }
            let lookup = |n: &str| assets.get(n).cloned();
            let m = algobay_runtime::candle::CandleModel::load(
                &step,
                &spec.architecture,
                &bytes,
                &serde_json::Value::Null,
                &lookup,
            )?;
            ("safetensors", m.signature().clone(), blobs)
        };
        blobs.dedup();
        let mut extra = Vec::new();
        for (d, b) in inline {
            if self.blobs.stat(&d)?.size.is_none() {
                extra.push((Tree::InlineBlobs, d.to_string().into_bytes(), b));
            }
        }
        self.insert_with(
            extra,
            Artifact {
                description: spec.description,
                license: spec.license,
                industries: spec.industries,
                tags: spec.tags,
                domain: spec.domain,
                task: spec.task,
                architecture: spec.architecture,
                inputs: signature.inputs,
                outputs: signature.outputs,
                card: spec.card,
                metrics: spec.metrics,
                parent: spec.parent,
                blobs,
                published_unix: self.clock.now_unix(),
                published_by: p.token_id.clone(),
                ..Artifact::new(
                    Kind::Model,
                    spec.name,
                    spec.version,
                    d,
                    bytes.len() as u64,
                    format,
                )
            },
        )
    }

    /// Publishes a tool: its WASM must compile and implement the stage interface.
    pub fn publish_tool(&self, p: &Principal, spec: ToolSpec) -> Result<Artifact> {
        self.owner_check(p, &spec.name)?;
        check_version(&spec.version)?;
        check_text(
            &spec.description,
            &spec.card,
            &spec.license,
            &spec.industries,
            &spec.tags,
        )?;
        if !TOOL_KINDS.contains(&spec.tool_kind.as_str()) {
            return Err(RegistryError::invalid(
                "tool_kind",
                format!(
                    "`{}` must be one of {}",
                    shown(&spec.tool_kind),
                    TOOL_KINDS.join(", ")
                ),
            ));
        }
        let d = digest("digest", &spec.digest)?;
        let bytes = self.blob(p, "tool", &d)?;
        let runner = self.runtime.stages().prepare(
            &spec.name,
            &bytes,
            &serde_json::json!({}),
            Vec::new(),
            Limits::default(),
        )?;
        let contract = runner.contract().clone();
        self.insert(Artifact {
            description: spec.description,
            license: spec.license,
            industries: spec.industries,
            tags: spec.tags,
            tool_kind: spec.tool_kind,
            inputs: contract.inputs,
            outputs: contract.outputs,
            card: spec.card,
            blobs: vec![d],
            published_unix: self.clock.now_unix(),
            published_by: p.token_id.clone(),
            ..Artifact::new(
                Kind::Tool,
                spec.name,
                spec.version,
                d,
                bytes.len() as u64,
                "wasm",
            )
        })
    }

    /// Publishes a kit: signed by its team, every blob uploaded, golden samples passing.
    pub fn publish_kit(
        &self,
        p: &Principal,
        manifest_bytes: Vec<u8>,
        signatures: Vec<Signature>,
        private_to: &str,
        cancel: &Cancel,
    ) -> Result<Artifact> {
        if manifest_bytes.len() > self.ceilings.max_manifest_bytes {
            return Err(RegistryError::TooLarge(format!(
                "manifest: {} bytes, over the registry's limit of {}",
                manifest_bytes.len(),
                self.ceilings.max_manifest_bytes
            )));
        }
        if signatures.len() > 16 {
            return Err(RegistryError::TooLarge(format!(
                "signatures: {}, over the limit of 16",
                signatures.len()
            )));
        }
        let manifest = Manifest::from_json(&manifest_bytes)?;
        self.ceilings.check_kit(&manifest, manifest_bytes.len())?;
        check_text(
            &manifest.description,
            "",
            &manifest.license,
            &manifest.industries,
            &[],
        )?;
        if !private_to.is_empty()
            && self
                .kv
                .get(Tree::Enterprises, private_to.as_bytes())?
                .is_none()
        {
            return Err(RegistryError::NotFound(format!(
                "enterprise `{}` (private_to)",
                shown(private_to)
            )));
        }
        if manifest.canonical_json() != manifest_bytes {
            return Err(RegistryError::invalid(
                "manifest",
                "is not in canonical form (sorted keys, no white space)",
            ));
        }
        let team = self.owner_check(p, &manifest.name)?;
        let mut roots = TrustRoots::new();
        roots.trust(
            team.signing_key
                .parse()
                .map_err(|e: algobay_runtime::Error| RegistryError::Storage(e.to_string()))?,
        );
        roots.verify(&manifest_bytes, &signatures).map_err(|e| {
            RegistryError::Rejected(format!(
                "{e} (kits must be signed with team `{}`'s key)",
                team.name
            ))
        })?;
        let mut blobs = BTreeMap::new();
        for (d, size) in &manifest.blobs {
            let stat = self.blobs.stat(d)?;
            match stat
                .size
                .filter(|_| self.sees_in_catalog(p, d).unwrap_or(false))
            {
                None => {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "blob {d} named by the kit has not been uploaded"
                    )))
                }
                Some(s) if s != *size => {
                    return Err(RegistryError::invalid(
                        "manifest",
                        format!("blob {d} is {s} bytes, the manifest says {size}"),
                    ))
                }
                Some(_) => {}
            }
            blobs.insert(*d, Arc::new(self.blobs.read_all(d)?));
        }
        let archive = KitArchive {
            manifest: manifest.clone(),
            manifest_bytes: manifest_bytes.clone(),
            signatures: signatures.clone(),
            blobs,
        };
        let kit_digest = archive.digest();
        let verified = archive.clone().verify(&roots)?;
        self.check_golden(&verified, &archive, cancel)?;
        // The registry's countersignature: it checked the team's signature, the
        // blobs and the golden samples. Devices may hold its key as a trust root.
        let mut signatures = signatures;
        if let Some(k) = &self.signing_key {
            let own = k.sign(&manifest_bytes);
            signatures.retain(|s| s.key != own.key);
            signatures.push(own);
        }
        self.blobs.put(&kit_digest, &manifest_bytes)?;
        let port = |k: &algobay_runtime::manifest::KitPort| algobay_runtime::manifest::Port {
            name: k.name.clone(),
            ty: k.ty.clone(),
        };
        let size = manifest_bytes.len() as u64 + manifest.blobs.values().sum::<u64>();
        self.insert(Artifact {
            description: manifest.description.clone(),
            license: manifest.license.clone(),
            industries: manifest.industries.clone(),
            scenario: manifest.scenario.clone(),
            inputs: manifest.inputs.iter().map(port).collect(),
            outputs: manifest.outputs.iter().map(port).collect(),
            blobs: manifest.blobs.keys().copied().collect(),
            signatures,
            published_unix: self.clock.now_unix(),
            published_by: p.token_id.clone(),
            private_to: private_to.to_owned(),
            ..Artifact::new(
                Kind::Kit,
                manifest.name.clone(),
                manifest.version.clone(),
                kit_digest,
                size,
                "kit",
            )
        })
    }

    /// Runs a kit's golden samples in a bounded pool of slots, within the
    /// ceilings' time budget, stopping when the caller goes away.
    fn check_golden(
        &self,
        verified: &algobay_runtime::archive::VerifiedKit,
        archive: &KitArchive,
        cancel: &Cancel,
    ) -> Result<()> {
        let c = &self.ceilings;
        let (lock, cv) = &self.golden_busy;
        {
            let busy = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (mut busy, waited) = cv
                .wait_timeout_while(busy, c.golden_wait, |n| {
                    *n >= c.golden_slots.max(1) && !cancel.is_cancelled()
                })
                .unwrap_or_else(|e| e.into_inner());
            if waited.timed_out() && *busy >= c.golden_slots.max(1) {
                return Err(RegistryError::Unavailable(format!(
                    "the registry is busy checking {} other kits; try again shortly",
                    *busy
                )));
            }
            *busy += 1;
        }
        struct Slot<'a>(&'a (std::sync::Mutex<usize>, std::sync::Condvar));
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                let mut n = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
                *n = n.saturating_sub(1);
                self.0 .1.notify_one();
            }
        }
        let _slot = Slot(&self.golden_busy);
        if cancel.is_cancelled() {
            return Err(RegistryError::Cancelled("the caller went away".into()));
        }
        let stop = algobay_runtime::wasm::StopSignal {
            cancelled: Some(cancel.0.clone()),
            deadline: Some((
                std::time::Instant::now() + c.golden_budget,
                format!(
                    "the golden samples took over the registry's budget of {} s",
                    c.golden_budget.as_secs()
                ),
            )),
        };
        let loaded = self.runtime.load(verified)?;
        for outcome in run_golden_checked(&loaded, archive, &stop)? {
            if let Some(f) = outcome.failure {
                return Err(RegistryError::Rejected(format!(
                    "golden sample {} failed: {f}",
                    outcome.index
                )));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ reading

    /// [`Self::get`] for a caller: what it may not see is not found.
    pub fn get_for(&self, p: &Principal, reference: &str, kind: Option<Kind>) -> Result<Artifact> {
        match self.get(reference, kind) {
            Ok(a) if p.may_see(&a) => Ok(a),
            Ok(_) => Err(RegistryError::NotFound(shown(reference))),
            Err(e) => Err(e),
        }
    }

    /// By `team/name@version` (with a kind, or the only artifact of that reference) or by digest.
    pub fn get(&self, reference: &str, kind: Option<Kind>) -> Result<Artifact> {
        check_len("reference", reference, 256)?;
        if reference.starts_with("sha256:") {
            let d = digest("reference", reference)?;
            let prefix = format!("{d}/");
            let keys = self.kv.scan_prefix(Tree::Digests, prefix.as_bytes())?;
            for (k, _) in keys {
                let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                if let Some(v) = self.kv.get(Tree::Artifacts, key.as_bytes())? {
                    let a: Artifact = parse("artifact", &v)?;
                    if a.digest == d && kind.is_none_or(|k| k == a.kind) {
                        return Ok(a);
                    }
                }
            }
            return Err(RegistryError::NotFound(format!(
                "no artifact has digest {d}"
            )));
        }
        let (name, version) = reference.split_once('@').ok_or_else(|| {
            RegistryError::invalid(
                "reference",
                format!(
                    "`{}` must be `team/name@version` or a digest",
                    shown(reference)
                ),
            )
        })?;
        validate_name("reference", name)
            .map_err(|e| RegistryError::invalid("reference", e.to_string()))?;
        let kinds = match kind {
            Some(k) => vec![k],
            None => vec![Kind::Model, Kind::Tool, Kind::Kit],
        };
        let mut found = Vec::new();
        for k in kinds {
            if let Some(v) = self
                .kv
                .get(Tree::Artifacts, artifact_key(k, name, version).as_bytes())?
            {
                found.push(parse::<Artifact>("artifact", &v)?);
            }
        }
        match found.len() {
            0 => Err(RegistryError::NotFound(shown(reference))),
            1 => Ok(found.remove(0)),
            _ => Err(RegistryError::invalid(
                "kind",
                format!("`{}` names several kinds of artifact; give the kind (model, tool or kit; `--kind` on the command line)", shown(reference)),
            )),
        }
    }

    pub fn search(&self, q: &Query) -> Result<Page> {
        if !q.page_token.is_empty() && q.page_token.parse::<u32>().is_err() {
            return Err(RegistryError::invalid(
                "page_token",
                format!("`{}` is not one this registry issued", shown(&q.page_token)),
            ));
        }
        if q.text.len() > 256 {
            return Err(RegistryError::TooLarge(format!(
                "text: {} bytes, over the limit of 256",
                q.text.len()
            )));
        }
        Ok(self.index().search(q))
    }

    /// Hides a version from search (or shows it again); it stays downloadable.
    pub fn yank(
        &self,
        p: &Principal,
        reference: &str,
        kind: Option<Kind>,
        undo: bool,
    ) -> Result<Artifact> {
        let a = self.get_for(p, reference, kind)?;
        if !p.may_publish_for(a.team()) {
            return Err(RegistryError::PermissionDenied(format!(
                "`{}` belongs to team `{}`",
                a.name,
                a.team()
            )));
        }
        let key = a.key();
        let old = json(&a);
        let mut b = a.clone();
        b.yanked = !undo;
        if !self.kv.commit(
            Batch::new()
                .check(Tree::Artifacts, key.as_bytes(), Some(old))
                .put(Tree::Artifacts, key.as_bytes(), json(&b)),
        )? {
            return Err(RegistryError::FailedPrecondition(format!(
                "{reference} changed meanwhile; try again"
            )));
        }
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .upsert(b.clone());
        Ok(b)
    }

    /// The operator's counts (published, not yanked).
    pub fn coverage(&self) -> Result<Coverage> {
        let mut c = Coverage::default();
        let mut publishing = BTreeSet::new();
        let mut industries = BTreeSet::new();
        for a in self.index().all().filter(|a| !a.yanked) {
            publishing.insert(a.team().to_owned());
            industries.extend(a.industries.iter().cloned());
            match a.kind {
                Kind::Model => {
                    c.models += 1;
                    *c.models_by_domain.entry(a.domain.clone()).or_default() += 1;
                    *c.models_by_task.entry(a.task.clone()).or_default() += 1;
                }
                Kind::Tool => {
                    c.tools += 1;
                    *c.tools_by_kind.entry(a.tool_kind.clone()).or_default() += 1;
                }
                Kind::Kit => {
                    c.kits += 1;
                    *c.kits_by_scenario.entry(a.scenario.clone()).or_default() += 1;
                    for i in &a.industries {
                        *c.kits_by_industry.entry(i.clone()).or_default() += 1;
                    }
                }
            }
        }
        c.publishing_teams = publishing.len() as u64;
        c.industries = industries.len() as u64;
        c.teams = self.kv.scan_prefix(Tree::Teams, b"")?.len() as u64;
        c.enterprises = self.kv.scan_prefix(Tree::Enterprises, b"")?.len() as u64;
        Ok(c)
    }
}
