//! The catalog's values as the client returns them: artifacts, their kinds,
//! dataset cards, relations, search pages, what a publish says.

use algobay_proto::v1 as pb;
use algobay_runtime::sign::Signature;

/// What kind of artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Model,
    Tool,
    Kit,
    Dataset,
}

impl Kind {
    pub(super) fn to_pb(k: Option<Kind>) -> i32 {
        match k {
            None => pb::Kind::Unspecified as i32,
            Some(Kind::Model) => pb::Kind::Model as i32,
            Some(Kind::Tool) => pb::Kind::Tool as i32,
            Some(Kind::Kit) => pb::Kind::Kit as i32,
            Some(Kind::Dataset) => pb::Kind::Dataset as i32,
        }
    }
}

/// What a dataset holds, as the registry read it from the file.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DatasetCard {
    pub format: String,
    pub source: String,
    pub rows: u64,
    pub columns: Vec<String>,
    pub label_column: String,
    pub label_counts: std::collections::BTreeMap<String, u64>,
    pub input_type: String,
    pub label_range: String,
}

/// What a publisher says about a dataset.
#[derive(Clone, Debug, Default)]
pub struct DatasetInfo {
    pub name: String,
    pub version: String,
    pub license: String,
    pub source: String,
    pub label_column: String,
    pub header: bool,
    pub domain: String,
    pub task: String,
    pub description: String,
    pub industries: Vec<String>,
    pub tags: Vec<String>,
    pub card: String,
}

/// A kit's step and what it runs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepUse {
    pub step: String,
    pub kind: String,
    pub digest: String,
    pub size: u64,
    /// Published models or tools with the step's file.
    pub artifacts: Vec<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// A kit's golden sample, by its blobs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GoldenUse {
    pub inputs: std::collections::BTreeMap<String, String>,
    pub expected: String,
    pub tolerance: String,
}

/// What an artifact is made of and what uses it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Relations {
    pub steps: Vec<StepUse>,
    pub golden: Vec<GoldenUse>,
    pub used_by: Vec<String>,
}

/// A published model, tool or kit version, as the registry describes it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Artifact {
    pub kind: Option<Kind>,
    pub name: String,
    pub version: String,
    pub digest: String,
    pub size: u64,
    pub description: String,
    pub license: String,
    pub industries: Vec<String>,
    pub tags: Vec<String>,
    pub domain: String,
    pub task: String,
    pub format: String,
    pub architecture: String,
    pub tool_kind: String,
    pub scenario: String,
    pub inputs: Vec<(String, String)>,
    pub outputs: Vec<(String, String)>,
    pub card: String,
    /// A model's measured figures (`name: value`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// What it was derived from (a model's parent), if anything.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parent: String,
    pub yanked: bool,
    /// The one enterprise it was made for; empty for the public catalog.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub private_to: String,
    /// A dataset's card, as the registry read it from the data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetCard>,
    pub blobs: Vec<String>,
    pub signers: Vec<String>,
    #[serde(skip)]
    pub(super) signatures: Vec<Signature>,
}

impl Artifact {
    pub(super) fn from_pb(a: pb::Artifact) -> Artifact {
        let kind = match pb::Kind::try_from(a.kind) {
            Ok(pb::Kind::Model) => Some(Kind::Model),
            Ok(pb::Kind::Tool) => Some(Kind::Tool),
            Ok(pb::Kind::Kit) => Some(Kind::Kit),
            Ok(pb::Kind::Dataset) => Some(Kind::Dataset),
            _ => None,
        };
        let signatures: Vec<Signature> = a
            .signatures
            .into_iter()
            .map(|s| Signature {
                key: s.key,
                signature: s.signature,
            })
            .collect();
        Artifact {
            kind,
            name: a.name,
            version: a.version,
            digest: a.digest,
            size: a.size,
            description: a.description,
            license: a.license,
            industries: a.industries,
            tags: a.tags,
            domain: a.domain,
            task: a.task,
            format: a.format,
            architecture: a.architecture,
            tool_kind: a.tool_kind,
            scenario: a.scenario,
            inputs: a.inputs.into_iter().map(|p| (p.name, p.r#type)).collect(),
            outputs: a.outputs.into_iter().map(|p| (p.name, p.r#type)).collect(),
            card: a.card,
            metrics: a.metrics.into_iter().collect(),
            parent: a.parent,
            yanked: a.yanked,
            private_to: a.private_to,
            dataset: a.dataset.map(|d| DatasetCard {
                format: d.format,
                source: d.source,
                rows: d.rows,
                columns: d.columns,
                label_column: d.label_column,
                label_counts: d.label_counts.into_iter().collect(),
                input_type: d.input_type,
                label_range: d.label_range,
            }),
            blobs: a.blobs,
            signers: signatures
                .iter()
                .filter_map(|s| s.public_key().ok())
                .map(|k| k.id())
                .collect(),
            signatures,
        }
    }

    /// `team/name@version`
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Filters of a search.
#[derive(Clone, Debug, Default)]
pub struct Search {
    pub text: String,
    pub kind: Option<Kind>,
    pub domain: String,
    pub task: String,
    pub industry: String,
    pub team: String,
    pub page_size: u32,
    pub page_token: String,
}

/// A page of search results.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Page {
    pub artifacts: Vec<Artifact>,
    pub next_page_token: String,
    pub total: u64,
}

/// What a model publish says about the model.
#[derive(Clone, Debug, Default)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub domain: String,
    pub task: String,
    pub architecture: String,
    pub description: String,
    pub license: String,
    pub industries: Vec<String>,
    pub tags: Vec<String>,
    pub card: String,
}

/// How an upload went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes sent over the wire this time.
    pub sent: u64,
    /// The registry had the blob already.
    pub existed: bool,
}
