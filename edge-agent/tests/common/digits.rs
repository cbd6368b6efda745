//! scikit-learn's digits for the training tests and benchmarks: the rows,
//! a drift, request bodies, the datasets a digits kit's `[training]` names.

use std::sync::Arc;

use algobay_runtime::{Runtime, RuntimeOptions};
use algobay_sdk::{Client, DatasetInfo};

use super::*;

/// scikit-learn's digits: (64 pixels, label) per row.
pub fn digits() -> Vec<(Vec<f32>, u32)> {
    let text =
        std::fs::read_to_string(root().join("examples/kits/digits/data/digits.csv")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<f32> = l.split(',').map(|c| c.trim().parse().unwrap()).collect();
            (v[..64].to_vec(), v[64] as u32)
        })
        .collect()
}

/// The image moved two pixels to the right (a camera mounted askew): a drift
/// the model never saw.
pub fn shifted(px: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; 64];
    for r in 0..8 {
        for c in 2..8 {
            out[r * 8 + c] = px[r * 8 + c - 2];
        }
    }
    out
}

pub fn body(px: &[f32]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"dtype": "f32", "shape": [1, 64], "data": px})).unwrap()
}

/// Publishes the base training set and the frozen holdout the Kitfile's `[training]` names.
pub async fn publish_datasets(team: &Client) {
    let text =
        std::fs::read_to_string(root().join("examples/kits/digits/data/digits.csv")).unwrap();
    let (mut train, mut test) = (String::new(), String::new());
    for (i, l) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let to = if i % 5 == 4 { &mut test } else { &mut train };
        to.push_str(l);
        to.push('\n');
    }
    for (name, data) in [
        ("algobay/digits-train", train),
        ("algobay/digits-test", test),
    ] {
        team.publish_dataset(
            data.as_bytes(),
            DatasetInfo {
                name: name.into(),
                version: "1.0.0".into(),
                license: "BSD-3-Clause".into(),
                source: "scikit-learn 1.7.2, sklearn/datasets/data/digits.csv.gz".into(),
                label_column: "64".into(),
                header: false,
                domain: "vision".into(),
                task: "classification".into(),
                ..Default::default()
            },
            algobay_sdk::no_progress(),
        )
        .await
        .unwrap();
    }
}

/// A runtime with ONNX Runtime, one thread.
pub fn runtime() -> Arc<Runtime> {
    Arc::new(
        Runtime::new(RuntimeOptions {
            cache_dir: None,
            ort_library: Some(ort_lib()),
            ort_threads: 1,
            stage_limits_cap: None,
            max_batch: 0,
        })
        .unwrap(),
    )
}
