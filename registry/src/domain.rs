//! Domain types of the registry: what it stores and who may do what.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use algobay_runtime::manifest::Port;
use algobay_runtime::sign::Signature;
use algobay_runtime::Digest;

/// What an artifact is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Model,
    Tool,
    Kit,
    Dataset,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Tool => "tool",
            Kind::Kit => "kit",
            Kind::Dataset => "dataset",
        }
    }
}

/// A published model, tool or kit version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub kind: Kind,
    /// `team/name`
    pub name: String,
    pub version: String,
    /// The model or tool file, or the kit's manifest.
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub license: String,
    #[serde(default)]
    pub industries: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub task: String,
    /// `onnx`, `safetensors`, `wasm` or `kit`.
    pub format: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub tool_kind: String,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub inputs: Vec<Port>,
    #[serde(default)]
    pub outputs: Vec<Port>,
    #[serde(default)]
    pub card: String,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub parent: String,
    /// Every blob the artifact needs (a kit's blobs; a model's file and config).
    #[serde(default)]
    pub blobs: Vec<Digest>,
    /// A kit's signatures.
    #[serde(default)]
    pub signatures: Vec<Signature>,
    #[serde(default)]
    pub yanked: bool,
    pub published_unix: i64,
    pub published_by: String,
    /// The one enterprise this artifact was made for (with its owning team,
    /// the only ones who see it); empty for the public catalog.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_to: String,
    /// A dataset's profile, read from its data by the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetCard>,
}

/// What a dataset holds, as the registry read it from the file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetCard {
    /// `csv`.
    pub format: String,
    /// Where the data comes from.
    pub source: String,
    pub rows: u64,
    pub columns: Vec<String>,
    /// The label or target column; empty for none.
    pub label_column: String,
    /// Rows per label value, for labels with at most [`MAX_LABELS`] values.
    pub label_counts: BTreeMap<String, u64>,
    /// What a row's features are: `f32[64]` when all are numbers, else `mixed`.
    pub input_type: String,
    /// For a label with more values: `min..max` when numeric.
    pub label_range: String,
}

/// Label values counted one by one; a label with more is a target with a range.
pub const MAX_LABELS: usize = 256;

impl Artifact {
    /// An artifact with its identity set and every descriptive field empty.
    pub fn new(
        kind: Kind,
        name: String,
        version: String,
        digest: Digest,
        size: u64,
        format: &str,
    ) -> Artifact {
        Artifact {
            kind,
            name,
            version,
            digest,
            size,
            description: String::new(),
            license: String::new(),
            industries: Vec::new(),
            tags: Vec::new(),
            domain: String::new(),
            task: String::new(),
            format: format.to_owned(),
            architecture: String::new(),
            tool_kind: String::new(),
            scenario: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            card: String::new(),
            metrics: BTreeMap::new(),
            parent: String::new(),
            blobs: Vec::new(),
            signatures: Vec::new(),
            yanked: false,
            published_unix: 0,
            published_by: String::new(),
            private_to: String::new(),
            dataset: None,
        }
    }

    /// About how many bytes the artifact takes on the wire.
    pub fn approx_size(&self) -> usize {
        let strings = |v: &[String]| v.iter().map(|s| s.len() + 2).sum::<usize>();
        256 + self.name.len()
            + self.description.len()
            + self.card.len()
            + self.license.len()
            + self.scenario.len()
            + strings(&self.industries)
            + strings(&self.tags)
            + (self.inputs.len() + self.outputs.len()) * 64
            + self.metrics.keys().map(|k| k.len() + 12).sum::<usize>()
            + self.blobs.len() * 74
            + self
                .signatures
                .iter()
                .map(|s| s.key.len() + s.signature.len() + 4)
                .sum::<usize>()
    }

    /// `team/name@version`
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The team that owns it.
    pub fn team(&self) -> &str {
        self.name.split('/').next().unwrap_or_default()
    }

    /// The metric an artifact is ranked by: the first of the usual
    /// higher-is-better figures it carries (accuracy, F1, AUC, R², mAP).
    pub fn headline_metric(&self) -> Option<(&str, f64)> {
        const ORDER: [&str; 7] = [
            "accuracy",
            "f1",
            "macro_f1",
            "auc",
            "r2",
            "map",
            "precision",
        ];
        ORDER.iter().find_map(|k| {
            self.metrics
                .get_key_value(*k)
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| (k.as_str(), *v))
        })
    }

    /// The key it is stored under: `kind/team/name/version`.
    pub fn key(&self) -> String {
        artifact_key(self.kind, &self.name, &self.version)
    }
}

pub(crate) fn artifact_key(kind: Kind, name: &str, version: &str) -> String {
    format!("{}/{}/{}", kind.as_str(), name, version)
}

/// An outside developer team.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub name: String,
    pub display_name: String,
    /// `ed25519:<base64>`
    pub signing_key: String,
    pub created_unix: i64,
}

/// A tenant that deploys kits to its devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enterprise {
    pub name: String,
    pub display_name: String,
    pub industries: Vec<String>,
    pub created_unix: i64,
}

/// What a token lets its holder be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Team,
    Enterprise,
    /// An enrolled device, known by its client certificate (never by a token).
    Device,
    /// Someone not signed in (the web console's anonymous reader): sees the
    /// public catalog only.
    Visitor,
}

/// A token as stored: only the hash of its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    /// Hex sha256 of the secret part.
    pub hash: String,
    pub role: Role,
    /// The team or enterprise it acts for; empty for operators.
    pub subject: String,
    /// 0: never.
    pub expires_unix: i64,
    pub revoked: bool,
    pub description: String,
    pub created_unix: i64,
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    pub subject: String,
    pub token_id: String,
}

impl Principal {
    /// Someone not signed in: the public catalog only.
    pub fn visitor() -> Principal {
        Principal {
            role: Role::Visitor,
            subject: String::new(),
            token_id: String::new(),
        }
    }

    /// Whether the caller may publish under `team`.
    pub fn may_publish_for(&self, team: &str) -> bool {
        self.role == Role::Operator || (self.role == Role::Team && self.subject == team)
    }

    /// The enterprise the caller acts for (an enterprise's token or one of its devices).
    pub fn enterprise(&self) -> Option<&str> {
        matches!(self.role, Role::Enterprise | Role::Device).then_some(self.subject.as_str())
    }

    /// Whether the caller may see an artifact: the public catalog, or one made
    /// for its enterprise, or one of its own team's.
    pub fn may_see(&self, a: &Artifact) -> bool {
        a.private_to.is_empty()
            || self.may_publish_for(a.team())
            || self.enterprise() == Some(a.private_to.as_str())
    }
}

// ---------------------------------------------------------------- fleet

/// Labels of a device, and the selector of a deployment.
pub type Labels = BTreeMap<String, String>;

/// A one-time token a device enrolls with, as stored (its secret only hashed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    pub id: String,
    pub hash: String,
    pub enterprise: String,
    pub labels: Labels,
    pub expires_unix: i64,
    /// The device that used it; empty while unused.
    pub used_by: String,
    pub created_unix: i64,
}

/// What a device last said about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    pub active_digest: String,
    pub active_reference: String,
    pub previous_digest: String,
    pub deployment_id: String,
    pub phase: String,
    pub message: String,
    pub requests: u64,
    pub error_rate: f64,
    pub p99_ms: f64,
    pub active_since_unix: i64,
    pub target_digest: String,
    #[serde(default)]
    pub samples_queued: u64,
    #[serde(default)]
    pub samples_dropped: u64,
}

/// An enrolled device of an enterprise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub enterprise: String,
    pub name: String,
    pub labels: Labels,
    /// sha256 of its client certificate.
    pub fingerprint: String,
    pub enrolled_unix: i64,
    pub last_seen_unix: i64,
    pub revoked: bool,
    pub state: DeviceState,
}

impl Device {
    pub fn key(&self) -> String {
        format!("{}/{}", self.enterprise, self.id)
    }
}

/// How a deployment reaches its devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    pub canary_share: f64,
    pub soak_seconds: u32,
    pub max_error_rate: f64,
    pub max_p99_ms: f64,
    pub manual_promote: bool,
    /// Keep no hard examples from this deployment's devices.
    #[serde(default)]
    pub sampling_off: bool,
    /// Compare the canaries' accuracy on their application's feedback with the
    /// other devices' (still on the kit before) before promoting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_gate: Option<FieldGate>,
}

/// The field-accuracy part of a rollout's health gate.
///
/// A sample's answer is the first `label` in its outputs; it is right when it
/// equals the sample's feedback label. The canaries run `control` in the
/// shadow on the same requests; once `min_count` of their requests since the
/// deployment began have feedback, the new kit must be shown within `margin`
/// of the control on those same requests (the gate's paired non-inferiority
/// test), else the deployment rolls back. Until then it waits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldGate {
    pub margin: f64,
    pub min_count: u32,
    /// The kit the other devices run.
    pub control: Digest,
}

/// The first `label` string in a kit's outputs (depth first): what a
/// classifier answered.
pub fn answer_label(outputs: &serde_json::Value) -> Option<&str> {
    match outputs {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(s)) = m.get("label") {
                return Some(s);
            }
            m.values().find_map(answer_label)
        }
        serde_json::Value::Array(a) => a.iter().find_map(answer_label),
        _ => None,
    }
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Only the canary devices have it; the gate decides what comes next.
    Canary,
    /// Stopped where it was; nothing happens until promote or rollback.
    Paused,
    /// Every targeted device has it.
    Promoted,
    /// Taken back: its devices return to what they ran before.
    RolledBack,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Canary => "canary",
            DeploymentState::Paused => "paused",
            DeploymentState::Promoted => "promoted",
            DeploymentState::RolledBack => "rolled_back",
        }
    }
}

/// A kit version put on the devices whose labels match a selector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub enterprise: String,
    pub kit_reference: String,
    pub kit_digest: Digest,
    pub selector: Labels,
    pub policy: RolloutPolicy,
    pub state: DeploymentState,
    pub reason: String,
    pub created_unix: i64,
    pub updated_unix: i64,
    /// The devices that get it first (chosen when it is created).
    pub canary_devices: Vec<String>,
    /// Creation order within the registry, newest highest.
    pub seq: u64,
}

impl Deployment {
    pub fn key(&self) -> String {
        format!("{}/{}", self.enterprise, self.id)
    }

    /// Whether a device's labels include every pair of the selector.
    pub fn selects(&self, d: &Device) -> bool {
        self.selector
            .iter()
            .all(|(k, v)| d.labels.get(k) == Some(v))
    }
}

/// What a device should run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// `None`: no kit.
    pub kit_digest: Option<Digest>,
    pub kit_reference: String,
    pub deployment_id: String,
    pub signatures: Vec<Signature>,
    pub sampling_off: bool,
    /// A canary of a field-gated rollout runs this kit (the control) in the
    /// shadow on the same requests.
    pub shadow_digest: Option<Digest>,
}

/// One input of a hard example; its bytes are a blob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleInput {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub digest: Digest,
    pub size: u64,
}

/// A hard example a device's sample filter kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub id: String,
    pub enterprise: String,
    pub device_id: String,
    pub kit_reference: String,
    pub kit_digest: Digest,
    pub deployment_id: String,
    pub reason: String,
    pub trace_id: String,
    pub created_unix: i64,
    pub received_unix: i64,
    pub outputs_json: String,
    pub inputs: Vec<SampleInput>,
    /// Its labels, one per source; read from their own records when listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
    /// A canary's shadow: the control kit's outputs on the same inputs, and
    /// that kit's digest (empty when there was no shadow).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub shadow_outputs_json: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_digest: Option<Digest>,
}

/// Where a label comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// Ground truth from the enterprise's own application, through the device.
    Feedback,
    /// A labeller of the enterprise.
    Human,
    /// A larger model run over unlabelled samples.
    Teacher,
}

impl LabelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelSource::Feedback => "feedback",
            LabelSource::Human => "human",
            LabelSource::Teacher => "teacher",
        }
    }
}

/// A sample's label from one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub value: String,
    pub source: LabelSource,
    /// The token or device that gave it.
    pub by: String,
    pub at_unix: i64,
}

/// Filters of a search.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub text: String,
    pub kind: Option<Kind>,
    pub domain: String,
    pub task: String,
    pub industry: String,
    pub team: String,
    pub tool_kind: String,
    pub page_size: usize,
    pub page_token: String,
    pub include_yanked: bool,
    /// Only what this caller may see; `None` for every artifact (internal use).
    pub viewer: Option<Principal>,
    /// Only artifacts under this license (its identifier, as published).
    pub license: String,
    /// The order of the results; the page token of an order other than
    /// relevance is an offset.
    pub sort: Sort,
    /// Count the matches' values of each facet too ([`Page::facets`]).
    pub facets: bool,
}

/// How search results are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    /// Best match first for a text query; publishing order without one.
    #[default]
    Relevance,
    /// By name, then newest version first.
    Name,
    /// Newest first.
    Updated,
    /// Best headline metric first (see [`Artifact::headline_metric`]); none last.
    Metric,
    /// Most downloaded first.
    Downloads,
}

impl Sort {
    pub const ALL: [Sort; 5] = [
        Sort::Relevance,
        Sort::Name,
        Sort::Updated,
        Sort::Metric,
        Sort::Downloads,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Relevance => "relevance",
            Sort::Name => "name",
            Sort::Updated => "updated",
            Sort::Metric => "metric",
            Sort::Downloads => "downloads",
        }
    }

    pub fn parse(s: &str) -> Option<Sort> {
        Sort::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// The values of one facet among a search's matches, most frequent first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facet {
    /// `kind`, `domain`, `task`, `industry`, `team` or `license`.
    pub name: &'static str,
    pub values: Vec<(String, u64)>,
}

/// One page of search results.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub artifacts: Vec<Artifact>,
    pub next_page_token: String,
    pub total: u64,
    /// When asked for: each facet's values among all the matches.
    pub facets: Vec<Facet>,
    /// Each artifact's downloads, in the order of `artifacts`.
    pub downloads: Vec<u64>,
}

/// A kit's step and what it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct StepUse {
    pub step: String,
    /// `stage`, `onnx` or `candle`.
    pub kind: String,
    /// The stage's code or the model's file.
    pub digest: Digest,
    pub size: u64,
    /// Published models or tools with that file (`team/name@version`), as the caller sees them.
    pub artifacts: Vec<String>,
    /// `port: type`.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// A kit's golden sample, by its blobs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoldenUse {
    /// Kit input → `digest (n bytes)`.
    pub inputs: BTreeMap<String, String>,
    pub expected: String,
    pub tolerance: String,
}

/// What an artifact is made of and what uses it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Relations {
    pub steps: Vec<StepUse>,
    pub golden: Vec<GoldenUse>,
    /// Kits using a model's or tool's file (`team/name@version`).
    pub used_by: Vec<String>,
}

/// The operator's counts of the ecosystem.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Coverage {
    pub models_by_domain: BTreeMap<String, u64>,
    pub models_by_task: BTreeMap<String, u64>,
    pub tools_by_kind: BTreeMap<String, u64>,
    pub kits_by_industry: BTreeMap<String, u64>,
    pub kits_by_scenario: BTreeMap<String, u64>,
    pub models: u64,
    pub tools: u64,
    pub kits: u64,
    pub teams: u64,
    pub publishing_teams: u64,
    pub industries: u64,
    pub enterprises: u64,
    pub datasets: u64,
    /// Enterprises with a device that answered requests on a kit.
    pub enterprises_served: u64,
    /// Industries of the served enterprises.
    pub industries_served: u64,
    /// Enrolled devices.
    pub devices: u64,
    /// (unix day, models, tools, kits) published up to that day, public and not yanked.
    pub growth: Vec<(i64, u64, u64, u64)>,
    /// Per industry: what was made for it and whom it serves.
    pub by_industry: BTreeMap<String, CoverageSlice>,
    /// Per domain (vision, speech, language, tabular, …).
    pub by_domain: BTreeMap<String, CoverageSlice>,
}

/// The counts of one industry or domain. A kit's domains are those of the
/// models it runs; a tool's, those of the kits that use it; an enterprise is
/// served in a slice when its serving kit belongs to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageSlice {
    pub models: u64,
    pub tools: u64,
    pub kits: u64,
    /// Teams that published anything in the slice.
    pub teams: u64,
    pub datasets: u64,
    /// Registered enterprises (industries only).
    pub enterprises: u64,
    pub enterprises_served: u64,
    /// Enrolled devices of the slice's enterprises (industries) or running its kits (domains).
    pub devices: u64,
}

impl Coverage {
    /// What a team or enterprise sees: the catalog's counts, but no device
    /// or enterprise counts, in all or per industry or domain (they would tell
    /// one tenant how many others there are and the size of their fleets).
    pub fn for_tenants(mut self) -> Coverage {
        self.devices = 0;
        self.enterprises = 0;
        self.enterprises_served = 0;
        for s in self
            .by_industry
            .values_mut()
            .chain(self.by_domain.values_mut())
        {
            s.devices = 0;
            s.enterprises = 0;
            s.enterprises_served = 0;
        }
        self
    }
}

/// The current time, passed in so tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now_unix(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}
