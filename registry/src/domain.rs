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
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Tool => "tool",
            Kind::Kit => "kit",
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
}

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
        }
    }

    /// `team/name@version`
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The team that owns it.
    pub fn team(&self) -> &str {
        self.name.split('/').next().unwrap_or_default()
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
    /// Whether the caller may publish under `team`.
    pub fn may_publish_for(&self, team: &str) -> bool {
        self.role == Role::Operator || (self.role == Role::Team && self.subject == team)
    }
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
}

/// One page of search results.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub artifacts: Vec<Artifact>,
    pub next_page_token: String,
    pub total: u64,
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
