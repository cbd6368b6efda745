//! The web console's figures, on a real registry process holding a large
//! catalog (100,000 generated models written straight into its store, plus
//! the example kits pushed through the API):
//!
//! 1. the marketplace's server time (its `Server-Timing`, which leaves out
//!    compression and the network) p50 / p99 over a mix of searches, facets,
//!    sorts and deep pages, and the round trip seen by a client;
//! 2. bytes transferred per page (compressed, with the style sheet and script)
//!    for the marketplace and a kit page;
//! 3. time to first paint and first contentful paint in Debian's chromium.
//!
//! `cargo bench -p algobay-agent --bench console [-- --models 100000 --rounds 40]`
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use algobay_registry::domain::{Artifact, Kind};
use algobay_registry::store::{Batch, Tree};
use algobay_runtime::Digest;

use common::*;

const DOMAINS: [(&str, &[&str]); 4] = [
    (
        "vision",
        &["classification", "detection", "ocr", "segmentation"],
    ),
    ("speech", &["vad", "asr", "keyword-spotting"]),
    ("nlp", &["embedding", "ner", "sentiment"]),
    ("tabular", &["regression", "forecasting"]),
];
const INDUSTRIES: [&str; 8] = [
    "finance",
    "retail",
    "logistics",
    "manufacturing",
    "energy",
    "healthcare",
    "telecom",
    "agriculture",
];
const WORDS: [&str; 12] = [
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
];
const LICENSES: [&str; 3] = ["Apache-2.0", "MIT", "CC-BY-4.0"];

/// A model of the generated catalog: named, described, with a holdout metric.
fn generated(i: usize) -> Artifact {
    let (domain, tasks) = DOMAINS[i % DOMAINS.len()];
    let task = tasks[(i / DOMAINS.len()) % tasks.len()];
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let w = |k: u64| WORDS[((h >> (k * 8)) % WORDS.len() as u64) as usize];
    let acc = 0.5 + ((h >> 20) % 4900) as f64 / 10_000.0;
    let mut a = Artifact {
        description: format!("A {} {} {} model for {task}", w(1), w(2), w(3)),
        license: LICENSES[i % 3].into(),
        industries: vec![INDUSTRIES[i % 8].into(), INDUSTRIES[(i / 8) % 8].into()],
        tags: vec![w(4).into()],
        domain: domain.into(),
        task: task.into(),
        architecture: "mlp".into(),
        published_unix: 1_790_000_000 + (i as i64) * 97,
        published_by: "seed".into(),
        card: format!("# {task}\n\nTrained on a holdout of 1,000 rows.\n"),
        ..Artifact::new(
            Kind::Model,
            format!("team-{:02}/{domain}-{task}-{i}", i % 60),
            "1.0.0".into(),
            Digest::of(format!("model {i}").as_bytes()),
            60,
            "safetensors",
        )
    };
    for (k, v) in [
        ("accuracy", acc),
        ("accuracy_low", acc - 0.03),
        ("accuracy_high", acc + 0.03),
        ("accuracy_n", 1000.0),
        ("baseline_accuracy", 0.25),
    ] {
        a.metrics.insert(k.into(), v);
    }
    a
}

fn main() {
    let models = arg("models", 100_000) as usize;
    let rounds = arg("rounds", 40);
    let py = root().join("build/browser/bin/python");
    assert!(py.exists(), "Playwright is missing: run scripts/setup.sh");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry");
    std::fs::create_dir_all(&data).unwrap();
    let t = Instant::now();
    {
        let kv = algobay_registry::store::open_meta(None, &data.join("meta")).unwrap();
        for start in (0..models).step_by(1000) {
            let mut b = Batch::new();
            for i in start..(start + 1000).min(models) {
                let a = generated(i);
                b = b
                    .put(Tree::Artifacts, a.key(), serde_json::to_vec(&a).unwrap())
                    .put(
                        Tree::Digests,
                        format!("{}/{}", a.digest, a.key()),
                        Vec::new(),
                    );
            }
            assert!(kv.commit(b).unwrap());
        }
    }
    println!(
        "catalog: {models} models written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let reg = RegistryProc::start(&data, 0);
    println!(
        "registry open (index rebuilt) in {:.1} s; console at {}",
        t.elapsed().as_secs_f64(),
        reg.web
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(seed(&reg, true));
    let out = std::process::Command::new(&py)
        .arg(root().join("edge-agent/benches/console_bench.py"))
        .env("WEB", &reg.web)
        .env("ROUNDS", rounds.to_string())
        .status()
        .unwrap();
    assert!(out.success(), "the browser part failed");
}
