//! The loop that learns from the edge, unattended, with the policy's
//! defaults: a real registry, three real agents of one enterprise and the
//! trainer. scikit-learn's digits drift in steps (turned 15°, 30°, 45°, 60°);
//! the application returns the true label for 60% of each step's images,
//! 30% are never labelled (the enterprise's own measure: the devices'
//! accuracy on them), 10% are unlabelled traffic. Rounds start by themselves
//! once the step's labels arrived; a promoted round goes to a canary that
//! answers with the kit it replaces in the shadow, then to every device.
//! Each step prints the never-labelled accuracy before and after, scikit-
//! learn's MLP of the same shape retrained on the same labels (same images),
//! the gate's figures (field n, b, c, p; base accuracies and the base test)
//! and the time from the trigger to every device serving. A last round
//! trains on labels the application got wrong on the training devices and
//! must be rejected. Then candle's training time against scikit-learn's
//! `MLPClassifier` with the same layers, epochs and batch, side by side.
//!
//! `cargo bench -p algobay-agent --bench training [-- --steps 4 --min-labels 200]`;
//! `-- --speed-only` runs only the side-by-side training times.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use algobay_sdk::{Client, DatasetInfo};

use common::digits::{body, digits};
use common::*;

type Row = (Vec<f32>, u32);

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

/// One step's outcome.
struct Step {
    angle: f64,
    /// Promoted and serving on every device.
    promoted: bool,
    decision: String,
    after: f64,
    sklearn: f64,
}

/// The enterprise's side of the loop: its devices, its application, its
/// images, and what it labelled.
struct Loop<'a> {
    rt: &'a tokio::runtime::Runtime,
    acme: &'a Client,
    agents: &'a [AgentProc],
    trainer: &'a algobay_sdk::trainer::Trainer,
    /// The device whose samples the registry holds out to judge.
    judging_device: usize,
    base: Vec<Row>,
    labelled: Vec<Row>,
    judged: Vec<Row>,
    unlabelled: Vec<Row>,
    /// Labels given on the devices whose samples train.
    trained: Vec<Row>,
    seq: usize,
    given: usize,
    rounds: usize,
    dir: PathBuf,
    epochs: usize,
    lr: f64,
}

impl Loop<'_> {
    /// Sends one request (to the devices in turn); with `label`, the
    /// application's answer for it. Returns the label the device answered.
    fn send(&mut self, px: &[f32], label: Option<u32>) -> String {
        let i = self.seq % self.agents.len();
        let a = &self.agents[i];
        self.seq += 1;
        let (code, ans, rid) = infer_id(&a.http, &body(px));
        assert_eq!(code, 200);
        let out: serde_json::Value = serde_json::from_slice(&ans.body).unwrap();
        if let Some(l) = label {
            let fb = serde_json::json!({"request_id": rid, "label": l.to_string()});
            let (code, text) = http(&a.http, "POST", "/v1/feedback", fb.to_string().as_bytes());
            assert!((200..300).contains(&code), "{code} {text}");
            self.given += 1;
            if i != self.judging_device {
                self.trained.push((px.to_vec(), l));
            }
        }
        out["result"][0][0]["label"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Share of the never-labelled images, turned `deg`, the devices answer right.
    fn never_labelled(&mut self, deg: f64) -> f64 {
        let judged = self.judged.clone();
        let right = judged
            .iter()
            .filter(|(px, y)| self.send(&rotate(px, deg), None) == y.to_string())
            .count();
        right as f64 / judged.len() as f64
    }

    /// scikit-learn's MLP of the same shape, retrained from scratch on the
    /// base rows and the same field labels: its accuracy on the same
    /// never-labelled images.
    fn sklearn(&self, deg: f64) -> f64 {
        let write = |path: &std::path::Path, rows: &mut dyn Iterator<Item = Row>| {
            let mut text = String::new();
            for (px, y) in rows {
                for v in &px {
                    text.push_str(&format!("{v},"));
                }
                text.push_str(&format!("{y}\n"));
            }
            std::fs::write(path, text).unwrap();
        };
        let fit = self.dir.join("sk-fit.csv");
        let test = self.dir.join("sk-test.csv");
        write(&fit, &mut self.base.iter().chain(&self.trained).cloned());
        write(
            &test,
            &mut self.judged.iter().map(|(px, y)| (rotate(px, deg), *y)),
        );
        let script = format!(
            "import numpy as np\n\
from sklearn.neural_network import MLPClassifier\n\
a = np.loadtxt(r'{}', delimiter=','); b = np.loadtxt(r'{}', delimiter=',')\n\
m = MLPClassifier(hidden_layer_sizes=(32,), solver='adam', batch_size=len(a), max_iter={}, learning_rate_init={}, alpha=0.0, tol=0.0, n_iter_no_change={}, shuffle=False, random_state=7)\n\
m.fit(a[:, :64], a[:, 64].astype(int))\n\
print(m.score(b[:, :64], b[:, 64].astype(int)))\n",
            fit.display(),
            test.display(),
            self.epochs,
            self.lr,
            self.epochs
        );
        let out = std::process::Command::new(root().join("build/pytools/bin/python"))
            .args(["-W", "ignore", "-c", &script])
            .env("OMP_NUM_THREADS", "1")
            .env("OPENBLAS_NUM_THREADS", "1")
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or(f64::NAN),
            _ => f64::NAN,
        }
    }

    /// One drift step: its traffic, the round the policy starts, the rollout.
    /// With `wrong`, the application labels the training devices' requests
    /// wrongly (the judging device's rightly).
    fn step(&mut self, name: &str, deg: f64, wrong: bool) -> Step {
        let before = self.never_labelled(deg);
        for (k, (px, y)) in self.labelled.clone().iter().enumerate() {
            let on = self.seq % self.agents.len();
            let label = if wrong && on != self.judging_device {
                (y + 1 + (k as u32 % 9)) % 10
            } else {
                *y
            };
            self.send(&rotate(px, deg), Some(label));
        }
        for (px, _) in self.unlabelled.clone() {
            self.send(&rotate(&px, deg), None);
        }
        let want = self.given;
        let (rt, acme) = (self.rt, self.acme);
        wait_for(180, "the step's feedback at the registry", || {
            (feedback_labels(rt, acme) >= want).then_some(())
        });
        // The policy starts the round by itself; the trainer takes it.
        let started = Instant::now();
        let trainer = self.trainer;
        let outcome = wait_for(300, "a round the policy started", || {
            rt.block_on(trainer.run_once()).unwrap()
        });
        self.rounds += 1;
        let run = outcome.run;
        let gate: serde_json::Value = serde_json::from_str(&run.gate_json).unwrap_or_default();
        let mut to_all = f64::NAN;
        if let Some(rel) = &run.release {
            // Traffic goes on, labelled as before, while the canary is judged.
            let mut j = 0usize;
            let labelled = self.labelled.clone();
            let end = loop {
                for _ in 0..30 {
                    // A quarter of a degree more each pass: new inputs, not
                    // repeats of the step's (a repeat is the same sample).
                    let (px, y) = &labelled[j % labelled.len()];
                    let turn = deg + 0.25 * (1 + j / labelled.len()) as f64;
                    j += 1;
                    self.send(&rotate(px, turn), Some(*y));
                }
                let r = rt.block_on(acme.get_run(&run.id)).unwrap();
                if matches!(r.state.as_str(), "serving" | "rolled_back") {
                    break r.state;
                }
                assert!(
                    started.elapsed().as_secs() < 600,
                    "the rollout did not end: {r:?}"
                );
            };
            if end == "serving" {
                wait_for(120, "every device serves the new version", || {
                    self.agents
                        .iter()
                        .all(|a| a.active().as_deref() == Some(rel.kit_reference.as_str()))
                        .then_some(())
                });
                to_all = started.elapsed().as_secs_f64();
            }
        }
        let after = self.never_labelled(deg);
        let sklearn = self.sklearn(deg);
        let decision = gate["decision"]["decision"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let count = |k: &str| gate["field"][k].as_u64().unwrap_or(0);
        println!(
            "{:<9} {:>4}° {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>5} {:>4} {:>4} {:>9.2e} {:>24} {:>7.1} {:>8}",
            name,
            deg,
            before,
            after,
            sklearn,
            gate["base"]["champion_accuracy"].as_f64().unwrap_or(f64::NAN),
            gate["base"]["challenger_accuracy"].as_f64().unwrap_or(f64::NAN),
            count("n"),
            count("b"),
            count("c"),
            gate["field"]["p"].as_f64().unwrap_or(f64::NAN),
            if decision == "promote" {
                format!("promote → {}", run.version)
            } else {
                format!(
                    "{decision} ({})",
                    gate["decided_by"].as_str().unwrap_or("?")
                )
            },
            outcome.train_seconds,
            if to_all.is_nan() {
                "-".to_owned()
            } else {
                format!("{to_all:.1}")
            },
        );
        let t = &gate["base_test"];
        println!(
            "          trigger: {}; base test: {} rows, b {}, c {}, z {:.2}, p {:.2e}, {} rows needed for a margin of {}",
            run.trigger,
            t["n"],
            t["b"],
            t["c"],
            t["z"].as_f64().unwrap_or(f64::NAN),
            t["p"].as_f64().unwrap_or(f64::NAN),
            t["rows_needed"],
            t["margin"]
        );
        if decision != "promote" {
            println!(
                "          why: {}",
                run.history.last().map(|h| h.reason.as_str()).unwrap_or("")
            );
        }
        Step {
            angle: deg,
            promoted: decision == "promote" && !to_all.is_nan(),
            decision,
            after,
            sklearn,
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--speed-only") {
        let text = std::fs::read_to_string(root().join("examples/kits/digits/Kitfile")).unwrap();
        let recipe: toml::Value = toml::from_str(&text).unwrap();
        let epochs = recipe["training"]["epochs"].as_integer().unwrap() as usize;
        let lr = recipe["training"]["learning_rate"].as_float().unwrap();
        let dir = tempfile::tempdir().unwrap();
        speed(&digits(), epochs, lr, dir.path());
        return;
    }
    let steps = arg("--steps", 4) as usize;
    let min_labels = arg("--min-labels", 200);
    println!(
        "algobay continuous training ({} cores): {steps} drift steps of 15°, then a round on wrong labels\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let rt = two_threads();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let op = rt.block_on(reg.client(&reg.operator));
    let (_, team_token) = rt.block_on(op.create_token("team", "algobay", 0)).unwrap();
    let team = rt.block_on(reg.client(&team_token));
    let text = std::fs::read_to_string(root().join("examples/kits/digits/Kitfile")).unwrap();
    let recipe: toml::Value = toml::from_str(&text).unwrap();
    let epochs = recipe["training"]["epochs"].as_integer().unwrap() as usize;
    let lr = recipe["training"]["learning_rate"].as_float().unwrap();

    // The base training set and the frozen holdout: every fifth row held out.
    let rows = digits();
    let (mut train, mut test) = (String::new(), String::new());
    let mut base = Vec::new();
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
        } else {
            train.push_str(&line);
            base.push((px.clone(), *y));
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
    let first = "algobay/digits-mlp@1.0.0".to_owned();
    serve(&rt, &acme, &agents[0], &first, 120);
    for a in &agents {
        wait_for(120, "every device serves 1.0.0", || {
            a.active().filter(|r| *r == first)
        });
    }
    // The policy as an enterprise gets it, but for running by itself and the
    // number of new labels a round waits for.
    let mut policy = rt
        .block_on(acme.train_policy("", "algobay/digits-mlp"))
        .unwrap();
    policy.auto = true;
    policy.min_new_labels = min_labels as u32;
    let policy = rt.block_on(acme.set_train_policy(policy)).unwrap();
    println!(
        "policy: the defaults, with auto and min_new_labels {}: alpha {}, base margin {}, min field {}, min discordant {}, canary share {}, field margin {}, field labels {}\n",
        policy.min_new_labels,
        policy.alpha,
        policy.base_margin,
        policy.min_field,
        policy.min_discordant,
        policy.canary_share,
        policy.field_margin,
        policy.min_field_count
    );
    let trainer = trainer(&team, &dir.path().join("trainer"), "bench-trainer", 60);

    // Which device's samples the registry holds out (every third in the order
    // of the digests of their ids): its feedback judges, the others' trains.
    let mut order: Vec<(String, usize)> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let id = a.status()["device_id"].as_str().unwrap().to_owned();
            (algobay_runtime::Digest::of(id.as_bytes()).hex(), i)
        })
        .collect();
    order.sort();

    // The drift's images: the base training rows (the holdout stays the
    // gate's base slice), shuffled once: 60% answered by the application,
    // 30% never labelled, 10% unlabelled traffic.
    let mut pool = base.clone();
    let mut state = 0x5eed_u64;
    for i in (1..pool.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        pool.swap(i, (state >> 33) as usize % (i + 1));
    }
    let (n_lab, n_judge) = (pool.len() * 6 / 10, pool.len() * 3 / 10);
    let mut lp = Loop {
        rt: &rt,
        acme: &acme,
        agents: &agents,
        trainer: &trainer,
        judging_device: order[0].1,
        base: base.clone(),
        labelled: pool[..n_lab].to_vec(),
        judged: pool[n_lab..n_lab + n_judge].to_vec(),
        unlabelled: pool[n_lab + n_judge..].to_vec(),
        trained: Vec::new(),
        seq: 0,
        given: 0,
        rounds: 0,
        dir: dir.path().to_path_buf(),
        epochs,
        lr,
    };
    println!(
        "{:<9} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>4} {:>4} {:>9} {:>24} {:>7} {:>8}",
        "step",
        "angle",
        "never bf",
        "never af",
        "sklearn",
        "base bf",
        "base af",
        "n",
        "b",
        "c",
        "p",
        "decision",
        "train s",
        "to all s"
    );
    let mut done = Vec::new();
    for k in 1..=steps {
        done.push(lp.step(&format!("drift {k}"), 15.0 * k as f64, false));
    }
    let wrong = lp.step("wrong", 15.0 * steps as f64, true);
    println!("\n{} rounds", lp.rounds);
    let met = |ok: bool| if ok { "met" } else { "NOT MET" };
    let big: Vec<&Step> = done.iter().filter(|s| s.angle >= 30.0).collect();
    let promoted = big.iter().filter(|s| s.promoted).count();
    println!(
        "goal: every drift step of at least 30° promoted with the policy's defaults: {promoted} of {} ({}) — {}",
        big.len(),
        big.iter()
            .map(|s| format!("{}°: {}", s.angle, s.decision))
            .collect::<Vec<_>>()
            .join(", "),
        met(promoted == big.len())
    );
    let worst = big
        .iter()
        .map(|s| s.sklearn - s.after)
        .fold(f64::NEG_INFINITY, f64::max);
    println!(
        "goal: never-labelled accuracy within 5 points of scikit-learn's MLP retrained on the same labels ({}) — worst gap {:+.1} points — {}",
        big.iter()
            .map(|s| format!("{}°: {:.3} vs {:.3}", s.angle, s.after, s.sklearn))
            .collect::<Vec<_>>()
            .join(", "),
        worst * 100.0,
        met(worst <= 0.05)
    );
    println!(
        "goal: the round on wrong labels rejected: {} — {}",
        wrong.decision,
        met(wrong.decision == "reject")
    );
    speed(&rows, epochs, lr, dir.path());
}

/// candle against scikit-learn on the same rows, layers, epochs and batch
/// (full), each the best of three fits, one after the other.
fn speed(rows: &[Row], epochs: usize, lr: f64, dir: &std::path::Path) {
    // The same training rows as CSV for scikit-learn and as arrays for us.
    let (mut train, mut x, mut y) = (String::new(), Vec::new(), Vec::new());
    for (i, (px, l)) in rows.iter().enumerate() {
        if i % 5 != 4 {
            let cells: Vec<String> = px.iter().map(|v| v.to_string()).collect();
            train.push_str(&format!("{},{l}\n", cells.join(",")));
            x.extend_from_slice(px);
            y.push(*l);
        }
    }
    let cfg = algobay_runtime::candle::MlpConfig::dense(vec![64, 32, 10]);
    let mut candle_s = f64::INFINITY;
    let mut accuracy = f32::NAN;
    for _ in 0..3 {
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
        candle_s = candle_s.min(started.elapsed().as_secs_f64());
        accuracy = report.train_accuracy;
    }
    let csv = dir.join("train.csv");
    std::fs::write(&csv, &train).unwrap();
    let python = root().join("build/pytools/bin/python");
    let script = format!(
        "import time, numpy as np\n\
from sklearn.neural_network import MLPClassifier\n\
d = np.loadtxt(r'{}', delimiter=',')\n\
X, y = d[:, :64].astype(np.float32), d[:, 64].astype(int)\n\
best = 1e9\n\
for _ in range(3): m = MLPClassifier(hidden_layer_sizes=(32,), solver='adam', batch_size=len(y), max_iter={epochs}, learning_rate_init={lr}, alpha=0.0, tol=0.0, n_iter_no_change={epochs}, shuffle=False, random_state=7); t = time.perf_counter(); m.fit(X, y); best = min(best, time.perf_counter() - t)\n\
print(best, m.score(X, y))\n",
        csv.display()
    );
    println!(
        "\ntraining the 64-32-10 MLP, {} rows, {epochs} full-batch epochs of Adam(W), best of 3, one after the other:",
        y.len()
    );
    println!(
        "  algobay (dense trainer)          {candle_s:>7.3} s  (train accuracy {accuracy:.3})"
    );
    let mut best_sk = f64::INFINITY;
    for (what, threads) in [("one thread", Some("1")), ("all cores", None)] {
        let mut cmd = std::process::Command::new(&python);
        cmd.args(["-W", "ignore", "-c", &script]);
        if let Some(n) = threads {
            cmd.env("OMP_NUM_THREADS", n).env("OPENBLAS_NUM_THREADS", n);
        }
        match cmd.output() {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let mut it = text.split_whitespace();
                let sk: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                let acc: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                println!(
                    "  scikit-learn ({what:<10})        {sk:>7.3} s  (train accuracy {acc:.3})"
                );
                best_sk = best_sk.min(sk);
            }
            Ok(o) => println!(
                "  scikit-learn ({what}): not run ({}); `pip install -r scripts/pytools.txt` into build/pytools",
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
            ),
            Err(e) => println!("  scikit-learn ({what}): not run ({e})"),
        }
    }
    let ratio = candle_s / best_sk;
    println!(
        "goal: candle's time at most scikit-learn's best (ratio <= 1.0): {ratio:.2} — {}",
        if ratio <= 1.0 {
            "met"
        } else {
            "NOT MET (or scikit-learn not run)"
        }
    );
}
