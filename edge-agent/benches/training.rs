//! The loop that learns from the edge, unattended, round after round, with a
//! real registry, three real agents of one enterprise and the trainer:
//! scikit-learn's digits, the held-out images turned a little more each round
//! (0° → 15° → 30° → 45°), the application returning the true label for a
//! share of the requests. Per round: field accuracy of the kit serving before
//! and after, the gate's figures, base-holdout accuracy, time from the
//! trigger to the new kit serving on every device, bytes each device fetched.
//! Then candle's training time against scikit-learn's `MLPClassifier` with the
//! same layers, epochs and batch, side by side.
//!
//! `cargo bench -p algobay-agent --bench training [-- --rounds 3 --requests 300 --feedback 80]`
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use algobay_sdk::DatasetInfo;

use common::digits::{body, digits};
use common::*;

/// The 8×8 image turned by `deg` degrees about its centre, bilinear, zero outside.
fn rotate(px: &[f32], deg: f64) -> Vec<f32> {
    let (s, c) = deg.to_radians().sin_cos();
    let mut out = vec![0.0f32; 64];
    let at = |x: i64, y: i64| -> f64 {
        if (0..8).contains(&x) && (0..8).contains(&y) {
            px[(y * 8 + x) as usize] as f64
        } else {
            0.0
        }
    };
    for y in 0..8 {
        for x in 0..8 {
            // Where this output pixel comes from in the upright image.
            let (dx, dy) = (x as f64 - 3.5, y as f64 - 3.5);
            let sx = c * dx + s * dy + 3.5;
            let sy = -s * dx + c * dy + 3.5;
            let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
            let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
            let v = at(x0, y0) * (1.0 - fx) * (1.0 - fy)
                + at(x0 + 1, y0) * fx * (1.0 - fy)
                + at(x0, y0 + 1) * (1.0 - fx) * fy
                + at(x0 + 1, y0 + 1) * fx * fy;
            out[y * 8 + x] = v as f32;
        }
    }
    out
}

fn main() {
    let rounds = arg("--rounds", 3) as usize;
    let requests = arg("--requests", 300) as usize;
    let feedback_pct = arg("--feedback", 80) as usize;
    let base_margin = arg("--base-margin-pct", 2) as f64 / 100.0;
    println!(
        "algobay continuous training ({} cores): {rounds} rounds, {requests} requests a round, feedback on {feedback_pct}%\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let op = rt.block_on(reg.client(&reg.operator));
    let (_, team_token) = rt.block_on(op.create_token("team", "algobay", 0)).unwrap();
    let team = rt.block_on(reg.client(&team_token));

    // The base training set and the frozen holdout: every fifth row held out.
    let rows = digits();
    let (mut train, mut test) = (String::new(), String::new());
    let mut held = Vec::new();
    for (i, (px, y)) in rows.iter().enumerate() {
        let line = format!(
            "{},{y}\n",
            px.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        if i % 5 == 4 {
            test.push_str(&line);
            held.push((px.clone(), *y));
        } else {
            train.push_str(&line);
        }
    }
    for (name, data) in [
        ("algobay/digits-train", &train),
        ("algobay/digits-test", &test),
    ] {
        rt.block_on(team.publish_dataset(
            data.as_bytes(),
            DatasetInfo {
                name: name.into(),
                version: "1.0.0".into(),
                license: "BSD-3-Clause".into(),
                source: "scikit-learn 1.7.2, sklearn/datasets/data/digits.csv.gz".into(),
                label_column: "64".into(),
                domain: "vision".into(),
                task: "classification".into(),
                ..Default::default()
            },
            algobay_sdk::no_progress(),
        ))
        .unwrap();
    }
    let agents: Vec<AgentProc> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            device(
                &rt,
                &reg,
                &acme,
                &dir.path().join(n),
                n,
                "telemetry_seconds = 0\n",
            )
        })
        .collect();
    let mut serving = "algobay/digits-mlp@1.0.0".to_owned();
    serve(&rt, &acme, &agents[0], &serving, 120);
    for a in &agents {
        wait_for(120, "every device serves 1.0.0", || {
            a.active().filter(|r| *r == serving)
        });
    }
    let mut policy = rt
        .block_on(acme.train_policy("", "algobay/digits-mlp"))
        .unwrap();
    policy.base_margin = base_margin;
    policy.min_field_count = 20;
    rt.block_on(acme.set_train_policy(policy)).unwrap();
    let trainer = trainer(&team, &dir.path().join("trainer"), "bench-trainer", 60);

    // Sends `n` turned images (from `from` on), feedback on the set share;
    // returns the share answered right.
    let mut seq = 0usize;
    let mut send = |n: usize, deg: f64, from: usize, with_feedback: bool| -> f64 {
        let mut right = 0;
        for k in 0..n {
            let (px, label) = &held[(from + k) % held.len()];
            let a = &agents[seq % agents.len()];
            let rid = format!("r{seq}");
            seq += 1;
            let (code, ans) = http_with(
                &a.http,
                "POST",
                "/v1/infer",
                &[("x-request-id", &rid)],
                &body(&rotate(px, deg)),
            );
            assert_eq!(code, 200);
            let out: serde_json::Value = serde_json::from_slice(&ans.body).unwrap();
            if out["result"][0][0]["label"] == label.to_string() {
                right += 1;
            }
            if with_feedback && (k * 100 / n.max(1)) % 100 < feedback_pct {
                let fb = serde_json::json!({"request_id": rid, "label": label.to_string()});
                http(&a.http, "POST", "/v1/feedback", fb.to_string().as_bytes());
            }
        }
        right as f64 / n.max(1) as f64
    };

    println!(
        "{:<5} {:>5} {:>10} {:>10} {:>9} {:>9} {:>6} {:>4} {:>4} {:>9} {:>26} {:>9} {:>9} {:>14}",
        "round",
        "angle",
        "field bef",
        "field aft",
        "base bef",
        "base aft",
        "n",
        "b",
        "c",
        "p",
        "decision",
        "train s",
        "to all s",
        "bytes/device"
    );
    let mut train_seconds = Vec::new();
    for round in 1..=rounds {
        let deg = 15.0 * round as f64;
        // The drift arrives; the application answers most of it.
        let before = send(requests, deg, round * 97, true);
        wait_for(120, "feedback at the registry", || {
            let n = feedback_labels(&rt, &acme);
            (n * 100 >= round * requests * feedback_pct * 95 / 100).then_some(n)
        });
        let trigger = Instant::now();
        let run = rt
            .block_on(acme.start_run("", "algobay/digits-mlp"))
            .unwrap();
        let outcome = rt.block_on(trainer.run_once()).unwrap().unwrap();
        train_seconds.push(outcome.train_seconds);
        let judged = outcome.run;
        let gate: serde_json::Value = serde_json::from_str(&judged.gate_json).unwrap_or_default();
        let mut to_all = f64::NAN;
        let mut bytes = 0;
        if let Some(rel) = &judged.release {
            // Traffic goes on while the canary is judged on its feedback.
            let mut from = round * 131;
            wait_for(300, "every device serves the new version", || {
                send(30, deg, from, true);
                from += 30;
                agents
                    .iter()
                    .all(|a| a.active().as_deref() == Some(rel.kit_reference.as_str()))
                    .then_some(())
            });
            to_all = trigger.elapsed().as_secs_f64();
            bytes = rel.new_bytes;
            serving = rel.kit_reference.clone();
        }
        let after = send(150, deg, round * 53, false);
        let decision = gate["decision"]["decision"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let count = |k: &str| gate["field"][k].as_u64().unwrap_or(0);
        println!(
            "{:<5} {:>4}° {:>10.3} {:>10.3} {:>9.3} {:>9.3} {:>6} {:>4} {:>4} {:>9.2e} {:>26} {:>9.1} {:>9} {:>14}",
            round,
            deg,
            before,
            after,
            gate["base"]["champion_accuracy"].as_f64().unwrap_or(f64::NAN),
            gate["base"]["challenger_accuracy"].as_f64().unwrap_or(f64::NAN),
            count("n"),
            count("b"),
            count("c"),
            gate["field"]["p"].as_f64().unwrap_or(f64::NAN),
            if decision == "promote" {
                format!("promote → {}", judged.version)
            } else {
                decision
            },
            outcome.train_seconds,
            if to_all.is_nan() {
                "-".to_owned()
            } else {
                format!("{to_all:.1}")
            },
            bytes,
        );
        let _ = run;
    }
    println!("\nserving at the end: {serving}");

    // candle against scikit-learn on the same rows, layers, epochs, batch (full).
    let text = std::fs::read_to_string(root().join("examples/kits/digits/Kitfile")).unwrap();
    let recipe: toml::Value = toml::from_str(&text).unwrap();
    let epochs = recipe["training"]["epochs"].as_integer().unwrap() as usize;
    let lr = recipe["training"]["learning_rate"].as_float().unwrap();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, (px, l)) in rows.iter().enumerate() {
        if i % 5 != 4 {
            x.extend_from_slice(px);
            y.push(*l);
        }
    }
    let cfg = algobay_runtime::candle::MlpConfig::dense(vec![64, 32, 10]);
    let started = Instant::now();
    let (_, report) =
        algobay_runtime::candle::train_mlp_bytes(&algobay_runtime::candle::TrainSpec {
            cfg: &cfg,
            x: &x,
            y: &y,
            holdout: (&[], &[]),
            epochs,
            lr,
            seed: 7,
            init: None,
        })
        .unwrap();
    let candle_s = started.elapsed().as_secs_f64();
    let csv = dir.path().join("train.csv");
    std::fs::write(&csv, &train).unwrap();
    let python = root().join("build/pytools/bin/python");
    let script = format!(
        "import time, numpy as np\n\
from sklearn.neural_network import MLPClassifier\n\
d = np.loadtxt(r'{}', delimiter=',')\n\
X, y = d[:, :64].astype(np.float32), d[:, 64].astype(int)\n\
m = MLPClassifier(hidden_layer_sizes=(32,), solver='adam', batch_size=len(y), max_iter={epochs}, learning_rate_init={lr}, alpha=0.0, tol=0.0, n_iter_no_change={epochs}, shuffle=False, random_state=7)\n\
t = time.perf_counter(); m.fit(X, y); s = time.perf_counter() - t\n\
print(s, m.score(X, y))\n",
        csv.display()
    );
    let out = std::process::Command::new(&python)
        .args(["-W", "ignore", "-c", &script])
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .output();
    println!(
        "\ntraining the 64-32-10 MLP, {} rows, {epochs} full-batch epochs of Adam(W), one after the other:",
        y.len()
    );
    println!(
        "  candle         {candle_s:>7.2} s  (train accuracy {:.3})",
        report.train_accuracy
    );
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let mut it = text.split_whitespace();
            let sk: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            let acc: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            println!("  scikit-learn   {sk:>7.2} s  (train accuracy {acc:.3})");
            println!("  candle / scikit-learn time: {:.2}", candle_s / sk);
        }
        Ok(o) => {
            println!(
            "  scikit-learn: not run ({}); `pip install -r scripts/pytools.txt` into build/pytools",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
        )
        }
        Err(e) => println!("  scikit-learn: not run ({e})"),
    }
    let mean = train_seconds.iter().sum::<f64>() / train_seconds.len().max(1) as f64;
    println!(
        "  a round's training in the loop (base + field rows, warm start): {mean:.2} s on average"
    );
}
