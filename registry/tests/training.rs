//! Training rounds over the service API, with a clock the test moves: one
//! round at a time, leases that lapse, the split of field samples, the gate
//! judged on the registry's own labels, and tenants kept apart.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "training/triggers.rs"]
mod triggers;
use common::fleet::*;

use algobay_registry::domain::*;
use algobay_registry::training::{
    Evaluation, Lineage, Run, RunData, RunState, TrainCall, TrainPolicy, TrainReply,
};
use algobay_registry::RegistryError;
use algobay_runtime::Digest;

const KIT: &str = "algobay/digits-a";

fn run(r: TrainReply) -> Run {
    match r {
        TrainReply::Run(r) => *r,
        other => panic!("not a run: {other:?}"),
    }
}

fn team() -> Principal {
    principal(Role::Team, "algobay")
}

/// acme's devices run v1 (promoted), and each sent `per_device` samples with feedback.
fn serving_with_feedback(f: &Fleet, per_device: u32) -> Digest {
    let dep = f.deploy(&f.v1, f.policy(1.0, 0));
    for i in 0..f.devices.len() {
        f.runs(i, 10, 0.0, 10.0);
    }
    f.advance(1);
    assert_eq!(f.state(&dep.id).0, DeploymentState::Promoted);
    let v1 = f.reg.get(&f.v1, Some(Kind::Kit)).unwrap().digest;
    for i in 0..f.devices.len() {
        for n in 0..per_device {
            feedback(f, i, &v1, n, "1", &((n % 10).to_string()));
        }
    }
    v1
}

fn claim(f: &Fleet, holder: &str, lease: u32) -> Option<(Run, String)> {
    match f
        .reg
        .train(
            &team(),
            TrainCall::Claim {
                holder: holder.into(),
                lease_seconds: lease,
            },
        )
        .unwrap()
    {
        TrainReply::Claimed(c) => c.map(|(r, t)| (*r, t)),
        other => panic!("{other:?}"),
    }
}

fn data(f: &Fleet, run: &str, token: &str) -> RunData {
    match f
        .reg
        .train(
            &team(),
            TrainCall::Data {
                run: run.into(),
                token: token.into(),
            },
        )
        .unwrap()
    {
        TrainReply::Data(d) => *d,
        other => panic!("{other:?}"),
    }
}

fn start(f: &Fleet, who: &Principal) -> Result<Run, RegistryError> {
    f.reg
        .train(
            who,
            TrainCall::Start {
                enterprise: String::new(),
                kit: KIT.into(),
            },
        )
        .map(run)
}

#[test]
fn too_few_field_labels_give_insufficient_evidence_and_nothing_is_released() {
    let f = fleet(3);
    serving_with_feedback(&f, 6);
    let r = start(&f, &f.acme).unwrap();
    assert_eq!(r.state, RunState::Pending);
    assert_eq!((r.round, r.version.as_str()), (1, "1.0.1-acme.r1"));
    assert_eq!(r.private_to, "acme", "trained on acme's data, for acme");
    let err = start(&f, &f.acme).unwrap_err().to_string();
    assert!(err.contains("one round at a time"), "{err}");

    let (claimed, token) = claim(&f, "t1", 60).unwrap();
    assert_eq!(
        (claimed.id.as_str(), claimed.state),
        (r.id.as_str(), RunState::Training)
    );
    let d = data(&f, &r.id, &token);
    assert!(d.recipe.is_some());
    // One device of three is the field holdout: its samples never train.
    assert_eq!((d.train.len(), d.holdout.len()), (12, 6));
    let held: std::collections::BTreeSet<&str> =
        d.holdout.iter().map(|s| s.device_id.as_str()).collect();
    assert_eq!(held.len(), 1);
    assert!(d.train.iter().all(|s| !held.contains(s.device_id.as_str())));

    // A label arriving meanwhile on the holdout's device does not change what
    // this round is judged on.
    let held_at = (0..3)
        .find(|i| held.contains(f.devices[*i].token_id.as_str()))
        .unwrap();
    let v1 = f.reg.get(&f.v1, Some(Kind::Kit)).unwrap().digest;
    feedback(&f, held_at, &v1, 99, "1", "1");

    // Every field answer must be there, and only those.
    let answers: Vec<(String, String, String)> = d
        .holdout
        .iter()
        .map(|s| (s.sample_id.clone(), "1".into(), s.label.clone()))
        .collect();
    let evaluate = |field: Vec<(String, String, String)>| {
        f.reg.train(
            &team(),
            TrainCall::Evaluate {
                run: r.id.clone(),
                token: token.clone(),
                evaluation: Evaluation {
                    lineage: Lineage::default(),
                    base: vec![(true, true); 300],
                    field,
                    golden_failure: String::new(),
                    champion_latency_ms: 2.0,
                    challenger_latency_ms: 2.0,
                    challenger_kit_bytes: 1000,
                    ..Default::default()
                },
            },
        )
    };
    let err = evaluate(answers[1..].to_vec()).unwrap_err().to_string();
    assert!(err.contains("is not answered"), "{err}");
    let mut extra = answers.clone();
    extra.push(("ab".repeat(32), "1".into(), "1".into()));
    let err = evaluate(extra).unwrap_err().to_string();
    assert!(err.contains("not in the run's field holdout"), "{err}");

    let judged = run(evaluate(answers).unwrap());
    assert_eq!(
        judged.state,
        RunState::InsufficientEvidence,
        "{:?}",
        judged.history
    );
    let gate = judged.gate.clone().unwrap();
    assert_eq!(gate.field.n, 6);
    assert!(
        judged.history.last().unwrap().reason.contains("50"),
        "{:?}",
        judged.history
    );
    // Nothing to release, and the next round may start.
    let err = f
        .reg
        .train(
            &team(),
            TrainCall::Release {
                run: r.id.clone(),
                token: token.clone(),
                kit: f.v2.clone(),
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("only a promoted round is released"), "{err}");
    assert_eq!(start(&f, &f.acme).unwrap().round, 2);
}

#[test]
fn a_trainer_that_stops_renewing_its_lease_loses_the_run_to_the_next_claim() {
    let f = fleet(2);
    serving_with_feedback(&f, 2);
    let r = start(&f, &f.acme).unwrap();
    let (_, first) = claim(&f, "first", 10).unwrap();
    assert!(claim(&f, "second", 10).is_none(), "held under a lease");
    f.advance(11);
    let (again, second) = claim(&f, "second", 10).unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (r.id.as_str(), 2));
    assert!(
        again
            .history
            .last()
            .unwrap()
            .reason
            .contains("the lease of `first` ran out"),
        "{:?}",
        again.history
    );
    // The first trainer's lease is no longer the run's.
    let err = f
        .reg
        .train(
            &team(),
            TrainCall::Renew {
                run: r.id.clone(),
                token: first,
                lease_seconds: 10,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("this lease is not the one it is under"),
        "{err}"
    );
    // A failure ends the round with its reason; the next may start.
    let failed = run(f
        .reg
        .train(
            &team(),
            TrainCall::Fail {
                run: r.id.clone(),
                token: second,
                reason: "out of memory".into(),
            },
        )
        .unwrap());
    assert_eq!(failed.state, RunState::Failed);
    assert!(failed
        .history
        .last()
        .unwrap()
        .reason
        .contains("out of memory"));
    assert_eq!(start(&f, &f.acme).unwrap().round, 2);
}

#[test]
fn another_enterprise_sees_no_run_and_no_team_but_the_kits_claims_them() {
    let f = fleet(2);
    serving_with_feedback(&f, 2);
    let r = start(&f, &f.acme).unwrap();
    let op = principal(Role::Operator, "");
    f.reg.create_enterprise(&op, "globex", "", vec![]).unwrap();
    let globex = principal(Role::Enterprise, "globex");
    match f
        .reg
        .train(
            &globex,
            TrainCall::List {
                enterprise: String::new(),
                kit: String::new(),
            },
        )
        .unwrap()
    {
        TrainReply::Runs(runs) => assert!(runs.is_empty()),
        other => panic!("{other:?}"),
    }
    let err = f
        .reg
        .train(&globex, TrainCall::Get { run: r.id.clone() })
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound(_)), "{err}");
    // It cannot name acme, and its own fleet does not run the kit.
    let err = f
        .reg
        .train(
            &globex,
            TrainCall::Start {
                enterprise: "acme".into(),
                kit: KIT.into(),
            },
        )
        .unwrap_err();
    assert!(matches!(err, RegistryError::PermissionDenied(_)), "{err}");
    let err = start(&f, &globex).unwrap_err().to_string();
    assert!(err.contains("not deployed to enterprise `globex`"), "{err}");
    // Another team cannot claim the kit's runs.
    f.reg
        .create_team(
            &op,
            "other",
            "",
            &algobay_runtime::SecretKey::generate().public().to_string(),
        )
        .unwrap();
    match f
        .reg
        .train(
            &principal(Role::Team, "other"),
            TrainCall::Claim {
                holder: "x".into(),
                lease_seconds: 10,
            },
        )
        .unwrap()
    {
        TrainReply::Claimed(c) => assert!(c.is_none()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_challenger_over_its_latency_budget_is_rejected_and_bad_figures_are_named() {
    let f = fleet(3);
    serving_with_feedback(&f, 30);
    let mut policy = TrainPolicy::default_for("", KIT);
    policy.rules.min_field = 10;
    policy.rules.min_discordant = 5;
    f.reg.train(&f.acme, TrainCall::SetPolicy(policy)).unwrap();
    start(&f, &f.acme).unwrap();
    let (r, token) = claim(&f, "t1", 60).unwrap();
    let d = data(&f, &r.id, &token);
    assert!(d.holdout.len() >= 10, "{}", d.holdout.len());
    // The champion is wrong everywhere, the challenger right: the accuracy
    // rules alone would promote it.
    let answers: Vec<(String, String, String)> = d
        .holdout
        .iter()
        .map(|s| (s.sample_id.clone(), "x".into(), s.label.clone()))
        .collect();
    let evaluate = |champion_ms: f64, challenger_ms: f64| {
        f.reg.train(
            &team(),
            TrainCall::Evaluate {
                run: r.id.clone(),
                token: token.clone(),
                evaluation: Evaluation {
                    lineage: Lineage::default(),
                    base: vec![(true, true); 300],
                    field: answers.clone(),
                    golden_failure: String::new(),
                    champion_latency_ms: champion_ms,
                    challenger_latency_ms: challenger_ms,
                    challenger_kit_bytes: 1000,
                    ..Default::default()
                },
            },
        )
    };
    let err = evaluate(2.0, f64::NAN).unwrap_err().to_string();
    assert!(err.contains("evaluation.challenger_latency_ms"), "{err}");
    let judged = run(evaluate(2.0, 50.0).unwrap());
    assert_eq!(judged.state, RunState::Rejected, "{:?}", judged.history);
    let why = &judged.history.last().unwrap().reason;
    assert!(
        why.starts_with(
            "latency: the challenger takes 50.00 ms per call, over the budget of 4.00 ms"
        ),
        "{why}"
    );
    let budget = judged.gate.unwrap().budget.unwrap();
    assert_eq!(budget.challenger_bytes, 1000);
    assert!(budget.champion_bytes > 0);

    // The enterprise's training page shows the round, its gate's figures and why.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = common::web::console(&rt, std::sync::Arc::new(f.replica()));
    let (_, token) = f
        .reg
        .create_token(
            &principal(Role::Operator, ""),
            Role::Enterprise,
            "acme",
            0,
            "",
        )
        .unwrap();
    let (secret, _) = f.reg.sign_in(&token).unwrap();
    let cookie = format!("algobay_session={secret}");
    let page = common::web::request(addr, "GET", "/training", &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200, "{}", page.body);
    for shown in [
        "class=\"state rejected\"",
        "reject: latency: the challenger takes 50.00 ms per call",
        &format!("n={}", d.holdout.len()),
        "aria-label=\"accuracy per round\"",
    ] {
        assert!(
            page.body.contains(shown),
            "`{shown}` not on the page:\n{}",
            page.body
        );
    }
}

#[test]
fn teacher_labels_above_the_threshold_train_and_never_judge() {
    let f = fleet(3);
    let v1 = serving_with_feedback(&f, 0);
    // Samples nobody labelled, on every device.
    for i in 0..3 {
        for n in 0..2 {
            feedback_free(&f, i, &v1, n);
        }
    }
    let mut policy = TrainPolicy::default_for("", KIT);
    policy.teacher = f.v2.clone();
    policy.teacher_threshold = 0.8;
    f.reg.train(&f.acme, TrainCall::SetPolicy(policy)).unwrap();
    let r = start(&f, &f.acme).unwrap();
    let (_, token) = claim(&f, "t", 60).unwrap();
    let d = data(&f, &r.id, &token);
    assert_eq!(d.teacher, f.v2);
    assert_eq!(d.unlabelled.len(), 6);
    assert!(d.train.is_empty() && d.holdout.is_empty());
    let labels: Vec<(String, String, f64)> = d
        .unlabelled
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.sample_id.clone(),
                "4".into(),
                if i % 2 == 0 { 0.95 } else { 0.5 },
            )
        })
        .collect();
    match f
        .reg
        .train(
            &team(),
            TrainCall::Teach {
                run: r.id.clone(),
                token: token.clone(),
                labels,
            },
        )
        .unwrap()
    {
        TrainReply::Taught(kept, low) => assert_eq!((kept, low), (3, 3)),
        other => panic!("{other:?}"),
    }
    let d = data(&f, &r.id, &token);
    assert_eq!(d.unlabelled.len(), 3, "the unsure ones stay unlabelled");
    assert!(d.holdout.is_empty(), "teacher labels never judge");
    assert!(d
        .train
        .iter()
        .all(|s| s.source == LabelSource::Teacher && s.label == "4"));
    assert!(!d.train.is_empty() && d.train.len() < 3 + 1);
    // An enterprise's own label outranks the teacher's.
    let labelled = f
        .reg
        .list_samples(&f.acme, "", "", 100, "", false)
        .unwrap()
        .0;
    let taught = labelled.iter().find(|s| !s.labels.is_empty()).unwrap();
    assert!(
        taught.labels[0].by.starts_with(&f.v2),
        "{:?}",
        taught.labels
    );
}

/// Builds `name` around the weights in `weights`, uploads its blobs as `who`
/// and publishes it (`private_to`: empty for the public catalog).
fn publish_around(
    f: &Fleet,
    who: &Principal,
    key: &algobay_runtime::SecretKey,
    name: &str,
    weights: &std::path::Path,
    private_to: &str,
) -> Result<Artifact, RegistryError> {
    let kit = common::build_digits_with(key, name, Some(weights));
    for (d, b) in &kit.blobs {
        f.reg.blobs().put(d, b).unwrap();
        f.reg.note_upload(who, d, true).unwrap();
    }
    f.reg
        .blobs()
        .put(&Digest::of(&kit.manifest_bytes), &kit.manifest_bytes)
        .unwrap();
    f.reg.publish_kit(
        who,
        kit.manifest_bytes.clone(),
        kit.signatures.clone(),
        private_to,
        &algobay_registry::service::Cancel::new(),
    )
}

#[test]
fn a_public_push_that_reuses_an_enterprise_private_blob_is_refused() {
    let f = fleet(3);
    serving_with_feedback(&f, 30);
    let op = principal(Role::Operator, "");
    let dir = tempfile::tempdir().unwrap();
    let mut policy = TrainPolicy::default_for("", KIT);
    policy.rules.min_field = 10;
    policy.rules.min_discordant = 5;
    f.reg.train(&f.acme, TrainCall::SetPolicy(policy)).unwrap();
    // A round trains weights on acme's data (private by default).
    start(&f, &f.acme).unwrap();
    let (r, token) = claim(&f, "t1", 600).unwrap();
    assert_eq!(r.private_to, "acme");
    let d = data(&f, &r.id, &token);
    let trained = common::digits_weights_noted("acme round 1");
    let wpath = dir.path().join("trained.safetensors");
    std::fs::write(&wpath, &trained).unwrap();
    let weights = Digest::of(&trained);
    let judged = run(f
        .reg
        .train(
            &team(),
            TrainCall::Evaluate {
                run: r.id.clone(),
                token: token.clone(),
                evaluation: Evaluation {
                    lineage: Lineage {
                        weights: weights.to_string(),
                        ..Lineage::default()
                    },
                    base: vec![(true, true); 300],
                    field: d
                        .holdout
                        .iter()
                        .map(|s| (s.sample_id.clone(), "x".into(), s.label.clone()))
                        .collect(),
                    champion_latency_ms: 2.0,
                    challenger_latency_ms: 2.0,
                    challenger_kit_bytes: 1000,
                    ..Default::default()
                },
            },
        )
        .unwrap());
    assert_eq!(judged.state, RunState::Promoted, "{:?}", judged.history);
    let refused = |e: RegistryError| {
        let why = e.to_string();
        assert!(
            why.contains(&format!("blob {weights} is enterprise `acme`'s content"))
                && why.contains(&r.id),
            "{why}"
        );
    };
    // Pushed public by the team that trained it: refused, blob and owner named.
    refused(publish_around(&f, &team(), &f.key, "algobay/digits-a", &wpath, "").unwrap_err());
    // A changed manifest around the same weights (another kit, its own name): refused.
    refused(publish_around(&f, &team(), &f.key, "algobay/lookalike", &wpath, "").unwrap_err());
    // Through another team that got hold of the bytes: refused (it cannot
    // even read them back).
    let rival_key = algobay_runtime::SecretKey::generate();
    f.reg
        .create_team(&op, "rival", "", &rival_key.public().to_string())
        .unwrap();
    let rival = principal(Role::Team, "rival");
    refused(publish_around(&f, &rival, &rival_key, "rival/digits", &wpath, "").unwrap_err());
    assert!(f.reg.blob_source(&rival, &weights, "").is_err());
    // Nor to another enterprise.
    f.reg.create_enterprise(&op, "globex", "", vec![]).unwrap();
    refused(publish_around(&f, &team(), &f.key, "algobay/digits-a", &wpath, "globex").unwrap_err());
    // The round's own push, private to acme, is what it is for.
    let released =
        publish_around(&f, &team(), &f.key, "algobay/digits-acme", &wpath, "acme").unwrap();
    assert_eq!(released.private_to, "acme");
    // The team reads the weights while the round is open, and no longer after.
    assert!(f.reg.blob_source(&team(), &weights, "").is_ok());
    f.reg
        .train(
            &team(),
            TrainCall::Fail {
                run: r.id.clone(),
                token: token.clone(),
                reason: "stopped".into(),
            },
        )
        .unwrap();
    assert!(matches!(
        f.reg.blob_source(&team(), &weights, ""),
        Err(RegistryError::NotFound(_))
    ));
    assert!(f.reg.blob_source(&f.acme, &weights, "").is_ok());
    assert!(f
        .reg
        .blob_source(&principal(Role::Enterprise, "globex"), &weights, "")
        .is_err());

    // A blob that first came in with a kit made for acme is acme's too.
    let custom = common::digits_weights_noted("made for acme");
    let cpath = dir.path().join("custom.safetensors");
    std::fs::write(&cpath, &custom).unwrap();
    publish_around(&f, &team(), &f.key, "algobay/acme-custom", &cpath, "acme").unwrap();
    let why = publish_around(
        &f,
        &team(),
        &f.key,
        "algobay/acme-custom-public",
        &cpath,
        "",
    )
    .unwrap_err()
    .to_string();
    assert!(
        why.contains(&format!(
            "blob {} is enterprise `acme`'s content",
            Digest::of(&custom)
        )) && why.contains("it came in with kit algobay/acme-custom@1.0.0"),
        "{why}"
    );
    // Its team still reads what it made (it was not trained on acme's data).
    assert!(f.reg.blob_source(&team(), &Digest::of(&custom), "").is_ok());
}
