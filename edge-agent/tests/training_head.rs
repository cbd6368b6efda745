//! A head on frozen features: a kit whose MLP head reads what a frozen
//! encoder before it makes of the kit's input. The trainer replays the encoder
//! on every row and sample once (cached by the encoder's and the input's
//! digests), retrains the head alone, and the devices fetch only the head.
//! Real registry, agents and candle.
#![allow(clippy::unwrap_used)]

mod common;
use common::digits::*;
use common::*;

/// A frozen encoder (a fixed projection of the 64 pixels to 32 features):
/// the weights and its features of one image.
fn encoder() -> (Vec<f32>, Vec<f32>) {
    let mut s = 0x5eedu64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32
    };
    let w: Vec<f32> = (0..32 * 64).map(|_| next() / 16.0).collect();
    let b: Vec<f32> = (0..32).map(|_| next() / 4.0).collect();
    (w, b)
}

fn encode(px: &[f32]) -> Vec<f32> {
    let (w, b) = encoder();
    (0..32)
        .map(|o| b[o] + (0..64).map(|i| w[o * 64 + i] * px[i]).sum::<f32>())
        .collect()
}

/// `algobay/digits-head@1.0.0`: the encoder, then an MLP head trained on its
/// features of the base rows, then the label; `[training]` retrains the head.
fn head_kit() -> algobay_runtime::KitArchive {
    use algobay_runtime::candle::{safetensors_f32, train_mlp_bytes, MlpConfig, TrainSpec};
    let d = kits().builder.scratch().join("digits-head");
    std::fs::create_dir_all(d.join("samples")).unwrap();
    let (w, b) = encoder();
    std::fs::write(
        d.join("encoder.safetensors"),
        safetensors_f32(vec![
            ("layers.0.weight".into(), vec![32, 64], w),
            ("layers.0.bias".into(), vec![32], b),
        ]),
    )
    .unwrap();
    let rows = digits();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, (px, l)) in rows.iter().enumerate() {
        if i % 5 != 4 {
            x.extend(encode(px));
            y.push(*l);
        }
    }
    let cfg = MlpConfig::dense(vec![32, 32, 10]);
    let (head, report) = train_mlp_bytes(&TrainSpec {
        cfg: &cfg,
        x: &x,
        y: &y,
        holdout: (&[], &[]),
        epochs: 300,
        lr: 0.01,
        seed: 7,
        init: None,
    })
    .unwrap();
    assert!(report.train_accuracy > 0.9, "{}", report.train_accuracy);
    std::fs::write(d.join("head.safetensors"), &head).unwrap();
    // Golden samples from the holdout's labels, where the head is right.
    let mut golden = String::new();
    let mut n = 0;
    for (i, (px, l)) in rows.iter().enumerate() {
        if i % 5 != 4 || n == 3 {
            continue;
        }
        let p = algobay_runtime::candle::mlp_predict(&cfg, &head, &encode(px)).unwrap();
        if p[0] != *l {
            continue;
        }
        std::fs::write(d.join(format!("samples/{n}.json")), body(px)).unwrap();
        std::fs::write(
            d.join(format!("samples/{n}.expected.json")),
            serde_json::json!({"result": [[{"label": l.to_string()}]]}).to_string(),
        )
        .unwrap();
        golden.push_str(&format!(
            "[[golden]]\ninputs = {{ pixels = \"samples/{n}.json\" }}\nexpected = \"samples/{n}.expected.json\"\n\n"
        ));
        n += 1;
    }
    let kitfile = format!(
        r#"[kit]
name = "algobay/digits-head"
version = "1.0.0"
scenario = "handwritten digit classification"

[[input]]
name = "pixels"
type = "f32[1,64]"

[[output]]
name = "result"
type = "json"

[[step]]
name = "encoder"
model = "encoder.safetensors"
architecture = "mlp"
config = {{ layers = [64, 32] }}
inputs = {{ x = "pixels" }}
outputs = {{ logits = "features" }}

[[step]]
name = "head"
model = "head.safetensors"
architecture = "mlp"
config = {{ layers = [32, 32, 10] }}
inputs = {{ x = "features" }}

[[step]]
name = "post"
stage = "{post}"
config = {{ labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], top_k = 1 }}

{golden}
[training]
step = "head"
dataset = "algobay/digits-train@1.0.0"
holdout = "algobay/digits-test@1.0.0"
label_column = "64"
classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
epochs = 300
learning_rate = 0.01
seed = 7
"#,
        post = root().join("examples/stages/classify-post").display()
    );
    std::fs::write(d.join("Kitfile"), kitfile).unwrap();
    package(&d, &kits().key)
}

/// The cached features: file name → (length, modified time).
fn cached_features(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = std::collections::BTreeMap::new();
    for enc in std::fs::read_dir(dir.join("features")).unwrap() {
        for f in std::fs::read_dir(enc.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let m = f.metadata().unwrap();
            out.insert(
                f.path().display().to_string(),
                (m.len(), m.modified().unwrap()),
            );
        }
    }
    out
}

#[test]
fn a_head_on_frozen_features_is_retrained_alone_and_the_encoder_runs_once_per_input() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let op = rt.block_on(reg.client(&reg.operator));
    let (_, team_token) = rt.block_on(op.create_token("team", "algobay", 0)).unwrap();
    let team = rt.block_on(reg.client(&team_token));
    rt.block_on(publish_datasets(&team));
    let kit = head_kit();
    rt.block_on(team.push_kit(&kit, algobay_sdk::no_progress()))
        .unwrap();
    let agents: Vec<AgentProc> = ["a", "b"]
        .iter()
        .map(|n| device(&rt, &reg, &acme, &dir.path().join(n), n, ""))
        .collect();
    serve(&rt, &acme, &agents[0], "algobay/digits-head@1.0.0", 120);
    for a in &agents {
        wait_for(120, "every device serves 1.0.0", || {
            a.active().filter(|r| r == "algobay/digits-head@1.0.0")
        });
    }
    let rows = digits();
    let n = 300;
    for (i, (px, label)) in rows.iter().take(n).enumerate() {
        let a = &agents[i % agents.len()];
        let (code, _, rid) = infer_id(&a.http, &body(&shifted(px)));
        assert_eq!(code, 200);
        let fb = serde_json::json!({"request_id": rid, "label": label.to_string()});
        let (code, text) = http(&a.http, "POST", "/v1/feedback", fb.to_string().as_bytes());
        assert_eq!(code, 202, "{text}");
    }
    wait_for(120, "every feedback label at the registry", || {
        (feedback_labels(&rt, &acme) == n).then_some(())
    });
    let trainer = trainer(&team, &dir.path().join("trainer"), "head-trainer", 60);

    // Round 1 cannot pass (the gate asks for more evidence than there is),
    // but its trainer replays the encoder on every distinct input once.
    let mut policy = rt
        .block_on(acme.train_policy("", "algobay/digits-head"))
        .unwrap();
    policy.base_margin = 0.1;
    policy.min_field = 10_000;
    rt.block_on(acme.set_train_policy(policy.clone())).unwrap();
    rt.block_on(acme.start_run("", "algobay/digits-head"))
        .unwrap();
    let first = rt.block_on(trainer.run_once()).unwrap().unwrap();
    assert_eq!(first.run.state, "insufficient_evidence");
    let cache = cached_features(&dir.path().join("trainer"));
    let mut inputs = std::collections::BTreeSet::new();
    for (px, _) in &rows {
        inputs.insert(algobay_runtime::Digest::of(&body_bytes(px)).hex());
    }
    for (px, _) in rows.iter().take(n) {
        inputs.insert(algobay_runtime::Digest::of(&body_bytes(&shifted(px))).hex());
    }
    assert_eq!(cache.len(), inputs.len(), "one file per distinct input");
    // What is kept is the encoder's output for that input.
    let px = &rows[7].0;
    let file = cache
        .keys()
        .find(|k| k.ends_with(&algobay_runtime::Digest::of(&body_bytes(px)).hex()))
        .unwrap();
    let kept: Vec<f32> = std::fs::read(file)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let want = encode(px);
    assert!(
        kept.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4),
        "{kept:?} vs {want:?}"
    );

    // Round 2 passes; the encoder is not run again for anything it saw.
    policy.min_field = 50;
    rt.block_on(acme.set_train_policy(policy)).unwrap();
    rt.block_on(acme.start_run("", "algobay/digits-head"))
        .unwrap();
    let second = rt.block_on(trainer.run_once()).unwrap().unwrap();
    assert_eq!(second.run.state, "deploying", "{:?}", second.run.history);
    assert_eq!(cached_features(&dir.path().join("trainer")), cache);
    // Only the head's weights changed: a device fetches them alone.
    let rel = second.run.release.clone().unwrap();
    let path = dir.path().join("r2.kit");
    rt.block_on(team.pull_kit(&rel.kit_reference, &path, algobay_sdk::no_progress()))
        .unwrap();
    let next = algobay_runtime::KitArchive::read_file(&path).unwrap();
    let weights = |k: &algobay_runtime::KitArchive, step: &str| {
        k.manifest
            .steps
            .iter()
            .find(|s| s.name == step)
            .and_then(|s| s.blobs().into_iter().next())
            .map(|(d, _)| d)
            .unwrap()
    };
    assert_eq!(weights(&next, "encoder"), weights(&kit, "encoder"));
    assert_ne!(weights(&next, "head"), weights(&kit, "head"));
    assert_eq!(
        rel.new_bytes,
        next.blobs[&weights(&next, "head")].len() as u64
    );
    assert!(
        rel.new_bytes * 20 <= rel.kit_bytes,
        "{} of {} bytes",
        rel.new_bytes,
        rel.kit_bytes
    );
}

/// A row's bytes as the kit's input tensor holds them (little-endian f32).
fn body_bytes(px: &[f32]) -> Vec<u8> {
    px.iter().flat_map(|v| v.to_le_bytes()).collect()
}
