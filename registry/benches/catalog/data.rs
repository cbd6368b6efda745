//! The generated catalog: models named and described from a few word lists,
//! their tiny weights, and publish requests.

use rand::{Rng, SeedableRng};

use algobay_proto::v1 as pb;
use algobay_registry::domain::{Artifact, Kind};
use algobay_runtime::Digest;

pub const DOMAINS: [(&str, &[&str]); 4] = [
    (
        "vision",
        &["classification", "detection", "ocr", "segmentation"],
    ),
    ("speech", &["vad", "asr", "keyword-spotting"]),
    ("nlp", &["embedding", "ner", "sentiment"]),
    ("tabular", &["regression", "forecasting"]),
];
pub const INDUSTRIES: [&str; 8] = [
    "finance",
    "retail",
    "logistics",
    "manufacturing",
    "energy",
    "healthcare",
    "telecom",
    "agriculture",
];
pub const WORDS: [&str; 16] = [
    "fast",
    "robust",
    "tiny",
    "quantized",
    "edge",
    "multilingual",
    "accurate",
    "distilled",
    "industrial",
    "realtime",
    "compact",
    "pruned",
    "streaming",
    "calibrated",
    "lowlight",
    "noisy",
];

pub fn tiny_mlp(seed: u64) -> Vec<u8> {
    mlp(seed, 4, 3)
}

/// Safetensors weights of one dense layer `inputs → outputs`.
pub fn mlp(seed: u64, inputs: usize, outputs: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let w: Vec<f32> = (0..inputs * outputs)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let b: Vec<f32> = (0..outputs).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let (bb, wb) = (outputs * 4, inputs * outputs * 4);
    let header = format!(
        r#"{{"layers.0.bias":{{"dtype":"F32","shape":[{outputs}],"data_offsets":[0,{bb}]}},"layers.0.weight":{{"dtype":"F32","shape":[{outputs},{inputs}],"data_offsets":[{bb},{}]}}}}"#,
        bb + wb
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for v in b.iter().chain(&w) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn generated(i: usize, rng: &mut rand::rngs::StdRng) -> Artifact {
    let (domain, tasks) = DOMAINS[i % DOMAINS.len()];
    let task = tasks[(i / DOMAINS.len()) % tasks.len()];
    let words: Vec<&str> = (0..3)
        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
        .collect();
    let name = format!("team-{:02}/{}-{}-{i}", i % 60, domain, task);
    Artifact {
        description: format!("A {} {} {} model for {task}", words[0], words[1], words[2]),
        license: "Apache-2.0".into(),
        industries: vec![INDUSTRIES[i % 8].into(), INDUSTRIES[(i / 8) % 8].into()],
        tags: vec![words[0].into()],
        domain: domain.into(),
        task: task.into(),
        architecture: "mlp".into(),
        published_unix: 1_800_000_000,
        published_by: "seed".into(),
        ..Artifact::new(
            Kind::Model,
            name,
            "1.0.0".into(),
            Digest::of(format!("model {i}").as_bytes()),
            60,
            "safetensors",
        )
    }
}

/// Publishing `bench/mlp-<i>` with the shared config blob, and its weights
/// either inline or uploaded before.
pub fn publish_request(
    i: usize,
    blob: &[u8],
    config: &[u8],
    inline: bool,
) -> pb::PublishModelRequest {
    pb::PublishModelRequest {
        blobs: if inline {
            vec![pb::InlineBlob {
                digest: Digest::of(blob).to_string(),
                data: blob.to_vec(),
            }]
        } else {
            Vec::new()
        },
        name: format!("bench/mlp-{i}"),
        version: "1.0.0".into(),
        digest: Digest::of(blob).to_string(),
        domain: "tabular".into(),
        task: "classification".into(),
        architecture: "mlp".into(),
        config_digest: Digest::of(config).to_string(),
        description: "a tiny benchmark classifier".into(),
        ..Default::default()
    }
}
