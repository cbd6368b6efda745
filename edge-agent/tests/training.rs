//! The loop that learns from the edge: devices serve digits their model was
//! not trained for, the application returns the true labels as feedback, a
//! trainer retrains on them, the registry's gate judges, the new version goes
//! to every device. A challenger trained on shuffled labels is rejected and
//! nothing is deployed; another enterprise sees none of it. Real registry,
//! agents and candle.
#![allow(clippy::unwrap_used)]

mod common;
use common::digits::*;
use common::*;

#[test]
fn field_feedback_trains_a_kit_the_gate_promotes_and_every_device_then_serves() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, globex_token) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let globex = rt.block_on(reg.client(&globex_token));
    let op = rt.block_on(reg.client(&reg.operator));
    let (_, team_token) = rt.block_on(op.create_token("team", "algobay", 0)).unwrap();
    let team = rt.block_on(reg.client(&team_token));
    rt.block_on(publish_datasets(&team));

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
    serve(&rt, &acme, &agents[0], "algobay/digits-mlp@1.0.0", 120);
    for a in &agents {
        wait_for(120, "every device serves 1.0.0", || {
            a.active().filter(|r| r == "algobay/digits-mlp@1.0.0")
        });
    }

    // The application sends shifted digits and returns each true label as feedback.
    let rows = digits();
    let mut right = 0;
    let per_device = 200;
    for (i, (px, label)) in rows.iter().take(per_device * agents.len()).enumerate() {
        let a = &agents[i % agents.len()];
        let mine = format!("req-{i}");
        let (code, ans) = http_with(
            &a.http,
            "POST",
            "/v1/infer",
            &[("x-request-id", &mine)],
            &body(&shifted(px)),
        );
        assert_eq!(code, 200);
        // The caller's id comes back as a correlation id; the request's own
        // id, which feedback names, is the agent's (unguessable).
        assert_eq!(ans.header("x-correlation-id"), Some(mine.as_str()));
        let rid = ans.header("x-request-id").unwrap().to_owned();
        assert!(rid.len() == 32 && rid != mine, "{rid}");
        let out: serde_json::Value = serde_json::from_slice(&ans.body).unwrap();
        if out["result"][0][0]["label"] == label.to_string() {
            right += 1;
        }
        let fb = serde_json::json!({"request_id": rid, "label": label.to_string()});
        let (code, text) = http(&a.http, "POST", "/v1/feedback", fb.to_string().as_bytes());
        assert_eq!(code, 202, "{text}");
    }
    let n = per_device * agents.len();
    let before = right as f64 / n as f64;
    assert!(
        before < 0.6,
        "the champion reads shifted digits badly ({before})"
    );
    // Feedback on a request the device no longer (or never) had is a clear 404.
    let (code, text) = http(
        &agents[0].http,
        "POST",
        "/v1/feedback",
        br#"{"request_id": "never-sent", "label": "3"}"#,
    );
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("never-sent"), "{text}");

    wait_for(120, "every feedback label at the registry", || {
        (feedback_labels(&rt, &acme) == n).then_some(())
    });

    // The enterprise may loosen its gate (here: up to 5 points on the base set,
    // for a drift that 32 hidden units must learn besides upright digits).
    let mut policy = rt
        .block_on(acme.train_policy("", "algobay/digits-mlp"))
        .unwrap();
    assert_eq!(policy.enterprise, "acme");
    assert_eq!((policy.alpha, policy.min_field), (0.05, 50), "the defaults");
    policy.base_margin = 0.05;
    let set = rt.block_on(acme.set_train_policy(policy.clone())).unwrap();
    assert_eq!(set.base_margin, 0.05);
    policy.canary_share = 2.0;
    let bad = rt.block_on(acme.set_train_policy(policy)).unwrap_err();
    assert!(bad.to_string().contains("canary_share"), "{bad}");

    // Round 1, by hand; another enterprise cannot start or see it.
    let run = rt
        .block_on(acme.start_run("", "algobay/digits-mlp"))
        .unwrap();
    assert_eq!(run.state, "pending");
    assert_eq!(run.version, "1.0.1-acme.r1");
    assert_eq!(run.private_to, "acme");
    let again = rt.block_on(acme.start_run("", "algobay/digits-mlp"));
    assert!(
        again
            .unwrap_err()
            .to_string()
            .contains("one round at a time"),
        "a second round waits for the first"
    );
    assert!(rt.block_on(globex.get_run(&run.id)).is_err());
    assert!(rt.block_on(globex.list_runs("", "")).unwrap().is_empty());

    let trainer = trainer(&team, &dir.path().join("trainer"), "test-trainer", 30);
    let outcome = rt.block_on(trainer.run_once()).unwrap().unwrap();
    let judged = outcome.run;
    assert_eq!(judged.state, "deploying", "{:?}", judged.history);
    let gate: serde_json::Value = serde_json::from_str(&judged.gate_json).unwrap();
    assert_eq!(gate["decision"]["decision"], "promote", "{gate}");
    assert!(gate["field"]["n"].as_u64().unwrap() >= 50, "{gate}");
    assert!(
        gate["field"]["challenger_accuracy"].as_f64().unwrap()
            > gate["field"]["champion_accuracy"].as_f64().unwrap() + 0.2,
        "{gate}"
    );
    assert!(gate["field"]["p"].as_f64().unwrap() < 0.05, "{gate}");
    assert!(
        gate["base"]["delta_low"].as_f64().unwrap() > -0.05,
        "{gate}"
    );
    let lineage: serde_json::Value = serde_json::from_str(&judged.lineage_json).unwrap();
    let trained = lineage["samples"]["feedback"].as_array().unwrap().len();
    assert_eq!(
        trained + outcome.field_holdout,
        n,
        "every labelled sample trains or judges"
    );
    let release = judged.release.clone().unwrap();
    assert_eq!(release.kit_reference, "algobay/digits-mlp@1.0.1-acme.r1");
    assert!(
        release.new_bytes * 20 <= release.kit_bytes,
        "a head-only update sends at most 5% of the kit: {} of {}",
        release.new_bytes,
        release.kit_bytes
    );

    // One canary gets it first; the application keeps sending and answering,
    // and once the canary's feedback accuracy holds up against the others' it
    // goes to every device; the round ends serving.
    let mut i = n;
    wait_for(180, "every device serves round 1", || {
        for _ in 0..30 {
            let (px, label) = &rows[i % rows.len()];
            let a = &agents[i % agents.len()];
            let (code, _, rid) = infer_id(&a.http, &body(&shifted(px)));
            assert_eq!(code, 200);
            let fb = serde_json::json!({"request_id": rid, "label": label.to_string()});
            http(&a.http, "POST", "/v1/feedback", fb.to_string().as_bytes());
            i += 1;
        }
        agents
            .iter()
            .all(|a| a.active().as_deref() == Some("algobay/digits-mlp@1.0.1-acme.r1"))
            .then_some(())
    });
    let status = rt
        .block_on(acme.deployment_status(&release.deployment_id))
        .unwrap();
    eprintln!("round 1 rollout: {}", status.deployment.reason);
    assert!(
        status.deployment.reason.starts_with("gate passed")
            && status
                .deployment
                .reason
                .contains("within 0.05 of the control, paired"),
        "the canary answered with the kit it replaced in the shadow and was judged on the same requests: {}",
        status.deployment.reason
    );
    let aliases = rt
        .block_on(acme.kit_aliases("", "algobay/digits-mlp"))
        .unwrap();
    assert_eq!(
        (aliases.champion.as_str(), aliases.previous.as_str()),
        (
            "algobay/digits-mlp@1.0.1-acme.r1",
            "algobay/digits-mlp@1.0.0"
        ),
        "the aliases moved"
    );
    wait_for(60, "the run is serving", || {
        let r = rt.block_on(acme.get_run(&run.id)).unwrap();
        (r.state == "serving").then_some(r)
    });
    let mut right = 0;
    for (i, (px, label)) in rows.iter().skip(n).take(150).enumerate() {
        let (_, out) = agents[i % 3].infer(&body(&shifted(px)));
        if out["result"][0][0]["label"] == label.to_string() {
            right += 1;
        }
    }
    let after = right as f64 / 150.0;
    eprintln!("shifted digits: {before:.3} before, {after:.3} after round 1");
    assert!(
        after > before + 0.2,
        "shifted digits read better: {before} -> {after}"
    );
    // The gate measured both kits' cost and held the challenger to its budget.
    let judged = rt.block_on(acme.get_run(&run.id)).unwrap();
    let gate: serde_json::Value = serde_json::from_str(&judged.gate_json).unwrap();
    let cost = &gate["budget"];
    assert!(
        cost["challenger_latency_ms"].as_f64().unwrap() > 0.0
            && cost["challenger_latency_ms"].as_f64() <= cost["latency_budget_ms"].as_f64()
            && cost["challenger_bytes"].as_u64() <= cost["size_budget_bytes"].as_u64(),
        "{cost}"
    );
    // The round's weights are a model version of their own: parent the
    // champion, its card the lineage, its metrics the gate's, acme's alone.
    let model = rt
        .block_on(acme.get(
            "algobay/digits-mlp.mlp@1.0.1-acme.r1",
            Some(algobay_sdk::Kind::Model),
        ))
        .unwrap();
    assert_eq!(model.parent, "algobay/digits-mlp@1.0.0");
    assert!(model.card.contains("snapshot sha256:"), "{}", model.card);
    assert!(model.metrics["field_accuracy"] > model.metrics["field_accuracy_parent"]);
    // The variant is acme's: another enterprise neither sees nor gets it.
    assert!(rt
        .block_on(globex.get(
            "algobay/digits-mlp@1.0.1-acme.r1",
            Some(algobay_sdk::Kind::Kit)
        ))
        .is_err());
    assert!(rt
        .block_on(globex.get(
            "algobay/digits-mlp.mlp@1.0.1-acme.r1",
            Some(algobay_sdk::Kind::Model)
        ))
        .is_err());

    // Round 2: a challenger trained on shuffled labels is rejected; nothing is deployed.
    let deployments = rt.block_on(acme.list_deployments("")).unwrap().len();
    let run2 = rt
        .block_on(acme.start_run("", "algobay/digits-mlp"))
        .unwrap();
    assert_eq!(run2.champion, "algobay/digits-mlp@1.0.1-acme.r1");
    let (claimed, token) = rt
        .block_on(team.claim_run("shuffler", 30))
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, run2.id);
    let data = rt.block_on(team.run_data(&claimed.id, &token)).unwrap();
    // A trainer gone wrong: the base rows and the field samples with their
    // labels shuffled, trained like any round; both models then answer the holdout.
    let cfg = algobay_runtime::candle::MlpConfig::dense(vec![64, 32, 10]);
    let features = |s: &algobay_sdk::training::FieldSample| -> Vec<f32> {
        s.data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let (mut hx, mut hy) = (Vec::new(), Vec::new());
    for (i, (px, label)) in rows.iter().enumerate() {
        if i % 5 == 4 {
            hx.extend_from_slice(px);
            hy.push(*label);
        } else {
            x.extend_from_slice(px);
            y.push(*label);
        }
    }
    for s in &data.train {
        x.extend(features(s));
        y.push(s.label.parse::<u32>().unwrap());
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..y.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        y.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let (noise, _) =
        algobay_runtime::candle::train_mlp_bytes(&algobay_runtime::candle::TrainSpec {
            cfg: &cfg,
            x: &x,
            y: &y,
            holdout: (&[], &[]),
            epochs: 150,
            lr: 0.01,
            seed: 1,
            init: None,
        })
        .unwrap();
    let champion_kit = rt
        .block_on(team.pull_kit(
            &run2.champion,
            &dir.path().join("champion.kit"),
            algobay_sdk::no_progress(),
        ))
        .unwrap();
    let weights = champion_kit
        .manifest
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            algobay_runtime::manifest::StepKind::Candle { weights, .. } => Some(*weights),
            _ => None,
        })
        .unwrap();
    let champion = champion_kit.blobs[&weights].to_vec();
    let predict =
        |w: &[u8], rows: &[f32]| algobay_runtime::candle::mlp_predict(&cfg, w, rows).unwrap();
    let right = |p: Vec<u32>| {
        p.iter()
            .zip(&hy)
            .map(|(p, t)| p == t)
            .collect::<Vec<bool>>()
    };
    let field_x: Vec<f32> = data.holdout.iter().flat_map(features).collect();
    let (champ_field, noise_field) = (predict(&champion, &field_x), predict(&noise, &field_x));
    let field = data
        .holdout
        .iter()
        .enumerate()
        .map(|(i, s)| algobay_sdk::training::FieldAnswer {
            sample_id: s.sample_id.clone(),
            champion: champ_field[i].to_string(),
            challenger: noise_field[i].to_string(),
            ..Default::default()
        })
        .collect();
    let lineage = serde_json::json!({
        "dataset": "algobay/digits-train@1.0.0", "dataset_digest": "", "holdout": "algobay/digits-test@1.0.0",
        "holdout_digest": "", "snapshot_digest": "", "samples": {}, "base_rows": 1438, "seed": 1,
        "epochs": 150, "learning_rate": 0.01, "code_version": "test", "train_seconds": 0.0,
        "parent_weights": weights.to_string(), "weights": algobay_runtime::Digest::of(&noise).to_string()
    });
    let rejected = rt
        .block_on(
            team.submit_evaluation(algobay_sdk::training::SubmitEvaluationRequest {
                run: claimed.id.clone(),
                lease_token: token.clone(),
                lineage_json: lineage.to_string(),
                base_champion: right(predict(&champion, &hx)),
                base_challenger: right(predict(&noise, &hx)),
                field,
                golden_failure: String::new(),
                champion_latency_ms: 1.0,
                challenger_latency_ms: 1.0,
                challenger_kit_bytes: 1,
                ..Default::default()
            }),
        )
        .unwrap();
    let gate: serde_json::Value = serde_json::from_str(&rejected.gate_json).unwrap();
    assert!(
        gate["base"]["challenger_accuracy"].as_f64().unwrap() < 0.3,
        "a model of shuffled labels guesses: {gate}"
    );
    assert_eq!(rejected.state, "rejected", "{:?}", rejected.history);
    assert!(rt
        .block_on(team.release_run(&claimed.id, &token, "algobay/digits-mlp@1.0.1-acme.r1"))
        .is_err());
    assert_eq!(
        rt.block_on(acme.list_deployments("")).unwrap().len(),
        deployments,
        "nothing deployed"
    );

    // The registry restarts mid-loop: rounds, labels and leases are where they
    // were, and the loop goes on.
    let port = reg.port;
    reg.kill();
    reg = RegistryProc::start(&dir.path().join("registry"), port);
    let runs = wait_for(60, "the registry back", || {
        rt.block_on(acme.list_runs("", "algobay/digits-mlp")).ok()
    });
    assert_eq!(
        runs.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(),
        ["serving", "rejected"]
    );
    // Requests nobody answers for: the unsure ones are kept as hard examples,
    // unlabelled; round 3 has the round-1 kit label them as a teacher.
    for k in 0..90 {
        let (px, _) = &rows[(i + k) % rows.len()];
        let (code, _) = http_with(
            &agents[k % agents.len()].http,
            "POST",
            "/v1/infer",
            &[],
            &body(&shifted(px)),
        );
        assert_eq!(code, 200);
    }
    let unlabelled = wait_for(60, "unlabelled hard examples at the registry", || {
        let n = rt
            .block_on(acme.list_samples_where("", "", 500, "", true))
            .unwrap()
            .0
            .len();
        (n > 0).then_some(n)
    });
    let mut policy = rt
        .block_on(acme.train_policy("", "algobay/digits-mlp"))
        .unwrap();
    policy.teacher = "algobay/digits-mlp@1.0.1-acme.r1".into();
    policy.teacher_threshold = 0.5;
    rt.block_on(acme.set_train_policy(policy)).unwrap();

    // A rejected round does not block the next.
    let run3 = rt
        .block_on(acme.start_run("", "algobay/digits-mlp"))
        .unwrap();
    assert_eq!(run3.round, 3);
    assert_eq!(run3.version, "1.0.2-acme.r3");

    // Round 3 by the trainer program, killed (-9) once it holds the run: its
    // lease lapses, the next claim works the round to its end, and there is
    // one round 3 whatever the outcome.
    let ca = dir.path().join("registry-ca.pem");
    std::fs::write(&ca, &reg.ca_pem).unwrap();
    let mut child = std::process::Command::new(registry_bin().with_file_name("algobay-trainer"))
        .args([
            "run",
            "--once",
            "--registry",
            &reg.url(),
            "--token",
            &team_token,
            "--ca",
        ])
        .arg(&ca)
        .arg("--key")
        .arg(&kits().key)
        .args(["--lease-seconds", "3", "--holder", "doomed", "--work-dir"])
        .arg(dir.path().join("doomed"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(120, "the program claims round 3", || {
        let r = rt.block_on(acme.get_run(&run3.id)).unwrap();
        (r.state != "pending").then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = rt.block_on(acme.get_run(&run3.id)).unwrap();
    let outcome = wait_for(60, "another trainer takes round 3 over", || {
        rt.block_on(trainer.run_once()).unwrap()
    });
    let done = outcome.run;
    assert_eq!(done.id, run3.id);
    assert!(
        ["rejected", "insufficient_evidence", "deploying"].contains(&done.state.as_str()),
        "{:?}",
        done.history
    );
    if killed.state == "training" {
        assert_eq!(done.attempts, 2, "{:?}", done.history);
        assert!(
            done.history
                .iter()
                .any(|t| t.reason.contains("lease of `doomed` ran out")),
            "{:?}",
            done.history
        );
    }
    let samples = all_samples(&rt, &acme);
    let taught: Vec<_> = samples
        .iter()
        .filter(|s| s.labels.iter().any(|l| l.source == "teacher"))
        .collect();
    let unsure = samples
        .iter()
        .filter(|s| s.labels.iter().all(|l| l.source == "teacher"))
        .count();
    eprintln!(
        "round 3's teacher labelled {} of {unsure} unlabelled hard examples ({unlabelled} when the policy was set)",
        taught.len()
    );
    assert!(
        !taught.is_empty(),
        "the teacher labelled some hard examples"
    );
    assert!(
        taught.iter().all(|s| s.labels.len() == 1),
        "only samples nobody else labelled"
    );
    let taught: Vec<_> = taught
        .iter()
        .flat_map(|s| s.labels.iter().cloned())
        .collect();
    assert!(taught
        .iter()
        .all(|l| l.by.starts_with("algobay/digits-mlp@1.0.1-acme.r1 sha256:")));
    let rounds = rt
        .block_on(acme.list_runs("", "algobay/digits-mlp"))
        .unwrap();
    assert_eq!(rounds.iter().filter(|r| r.round == 3).count(), 1);
    eprintln!(
        "round 3: {} ({})",
        done.state,
        done.history.last().unwrap().reason
    );
}

#[test]
fn feedback_given_while_the_registry_is_down_arrives_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let agent = device(
        &rt,
        &reg,
        &acme,
        dir.path(),
        "lonely",
        "telemetry_seconds = 0\n",
    );
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 120);
    let port = reg.port;
    reg.kill();

    // The device serves on; the application answers for a request, tries to
    // answer it again (refused: a request takes feedback once), and answers
    // once more for the same image sent again.
    let rows = digits();
    let (px, label) = &rows[3];
    let mut ids = Vec::new();
    for mine in ["once", "again"] {
        let (code, ans) = http_with(
            &agent.http,
            "POST",
            "/v1/infer",
            &[("x-request-id", mine)],
            &body(px),
        );
        assert_eq!(code, 200);
        ids.push(ans.header("x-request-id").unwrap().to_owned());
    }
    let fb = |rid: &str, label: &str| {
        let fb = serde_json::json!({"request_id": rid, "label": label});
        http(
            &agent.http,
            "POST",
            "/v1/feedback",
            fb.to_string().as_bytes(),
        )
    };
    // A client's own id names nothing: only the agent's does.
    let (code, text) = fb("once", &label.to_string());
    assert_eq!(code, 404, "{text}");
    let (code, text) = fb(&ids[0], &label.to_string());
    assert_eq!(code, 202, "{text}");
    let other = ((label + 1) % 10).to_string();
    let (code, text) = fb(&ids[0], &other);
    assert_eq!(code, 409, "relabelled: {text}");
    assert!(text.contains("has its feedback already"), "{text}");
    // Not one of the kit's classes, or a terminal escape: refused by name.
    let (code, text) = fb(&ids[1], "eleven");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("not one of the kit's classes"), "{text}");
    let (code, text) = fb(&ids[1], "7\u{1b}[2J");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("control characters"), "{text}");
    let (code, text) = fb(&ids[1], &label.to_string());
    assert_eq!(code, 202, "{text}");
    let reg = RegistryProc::start(&dir.path().join("registry"), port);
    let acme = rt.block_on(reg.client(&acme_token));
    let samples = wait_for(120, "the feedback at the registry", || {
        let (page, _) = rt.block_on(acme.list_samples("", "", 100, "")).ok()?;
        let status = agent.status();
        (status["samples"]["queued"] == 0 && !page.is_empty()).then_some(page)
    });
    assert_eq!(
        samples.len(),
        1,
        "one image on one kit is one sample: {samples:?}"
    );
    let labels = &samples[0].labels;
    assert_eq!(labels.len(), 1, "{labels:?}");
    assert_eq!(
        (labels[0].source.as_str(), labels[0].value.clone()),
        ("feedback", label.to_string())
    );
    assert_eq!(labels[0].by, samples[0].device_id, "given by the device");
}
