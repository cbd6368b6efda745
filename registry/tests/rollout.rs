//! The rollout gate over the service API, with a clock the test moves: soak
//! time, error-rate and latency bounds, manual promote, pause, rollback, and
//! what each device is told to run.
#![allow(clippy::unwrap_used)]

mod common;
use common::fleet::*;

use algobay_registry::domain::*;
use algobay_registry::fleet::DeploymentAction;
use algobay_registry::traces::{SpanRecord, TraceFilter, TRACES_PER_ENTERPRISE};
use algobay_runtime::Digest;

#[test]
fn canaries_soak_then_the_rest_follow() {
    let f = fleet(4);
    let dep = f.deploy(&f.v1, f.policy(0.25, 60));
    assert_eq!(dep.canary_devices.len(), 1);
    let c = index_of(&f, &dep.canary_devices[0]);
    let other = (c + 1) % 4;
    assert_eq!(f.wants(c), f.v1);
    assert_eq!(f.wants(other), "", "only the canary has it before the gate");
    f.runs(c, 100, 0.0, 20.0);
    f.advance(59);
    assert_eq!(f.state(&dep.id).0, DeploymentState::Canary);
    f.advance(1);
    let (state, reason) = f.state(&dep.id);
    assert_eq!(state, DeploymentState::Promoted, "{reason}");
    assert!(reason.starts_with("gate passed"), "{reason}");
    for i in 0..4 {
        assert_eq!(f.wants(i), f.v1);
    }
}

#[test]
fn a_canary_out_of_bounds_rolls_back_and_devices_return_to_the_previous_kit() {
    let f = fleet(2);
    let first = f.deploy(&f.v1, f.policy(1.0, 0));
    f.runs(0, 10, 0.0, 10.0);
    f.runs(1, 10, 0.0, 10.0);
    f.advance(1);
    assert_eq!(f.state(&first.id).0, DeploymentState::Promoted);

    let second = f.deploy(&f.v2, f.policy(0.5, 600));
    let c = index_of(&f, &second.canary_devices[0]);
    assert_eq!(f.wants(c), f.v2);
    assert_eq!(f.wants(1 - c), f.v1);
    // Too many errors on the canary.
    f.runs(c, 200, 0.2, 10.0);
    let (state, reason) = f.state(&second.id);
    assert_eq!(state, DeploymentState::RolledBack);
    assert!(
        reason.contains("error rate 0.200 above the bound 0.050"),
        "{reason}"
    );
    assert_eq!(f.wants(c), f.v1, "back to what it ran before");

    // Too slow, this time after promotion.
    let third = f.deploy(&f.v2, f.policy(1.0, 0));
    // The canary that failed reports first (its last report still shows the errors).
    f.runs(c, 10, 0.0, 10.0);
    f.runs(1 - c, 10, 0.0, 10.0);
    f.advance(1);
    let (state, reason) = f.state(&third.id);
    assert_eq!(state, DeploymentState::Promoted, "{reason}");
    f.runs(1, 50, 0.0, 950.0);
    let (state, reason) = f.state(&third.id);
    assert_eq!(state, DeploymentState::RolledBack);
    assert!(reason.contains("p99 latency 950.0 ms"), "{reason}");
    assert_eq!((f.wants(0), f.wants(1)), (f.v1.clone(), f.v1.clone()));
}

#[test]
fn a_device_failing_the_kit_rolls_it_back_with_its_reason() {
    let f = fleet(2);
    let dep = f.deploy(&f.v1, f.policy(1.0, 30));
    let d = f.reg.desired(&f.devices[1]).unwrap();
    f.reg
        .report(
            &f.devices[1],
            DeviceState {
                phase: "failed".into(),
                message: "golden sample 0 failed: label 4 expected, got 9".into(),
                deployment_id: d.deployment_id,
                target_digest: d.kit_digest.unwrap().to_string(),
                ..Default::default()
            },
        )
        .unwrap();
    let (state, reason) = f.state(&dep.id);
    assert_eq!(state, DeploymentState::RolledBack);
    assert!(reason.contains("golden sample 0 failed"), "{reason}");
    assert_eq!(f.wants(0), "");
}

#[test]
fn manual_promote_waits_and_pause_holds() {
    let f = fleet(3);
    let dep = f.deploy(
        &f.v1,
        RolloutPolicy {
            manual_promote: true,
            ..f.policy(0.34, 5)
        },
    );
    assert_eq!(dep.canary_devices.len(), 2);
    let canaries: Vec<usize> = dep
        .canary_devices
        .iter()
        .map(|id| index_of(&f, id))
        .collect();
    let rest = (0..3).find(|i| !canaries.contains(i)).unwrap();
    for &c in &canaries {
        f.runs(c, 1, 0.0, 1.0);
    }
    f.advance(10);
    let (state, reason) = f.state(&dep.id);
    assert_eq!(state, DeploymentState::Canary);
    assert_eq!(reason, "gate passed; waiting for promote");
    assert_eq!(f.wants(rest), "");

    let paused = f
        .reg
        .act_on_deployment(&f.acme, &dep.id, DeploymentAction::Pause, "")
        .unwrap();
    assert_eq!(paused.state, DeploymentState::Paused);
    f.advance(100);
    assert_eq!(f.state(&dep.id).0, DeploymentState::Paused);
    assert_eq!(
        f.wants(canaries[0]),
        f.v1,
        "a paused rollout keeps what it reached"
    );
    assert_eq!(f.wants(rest), "");

    f.reg
        .act_on_deployment(&f.acme, &dep.id, DeploymentAction::Promote, "ok by ops")
        .unwrap();
    assert_eq!(f.wants(rest), f.v1);
    let back = f
        .reg
        .act_on_deployment(&f.acme, &dep.id, DeploymentAction::Rollback, "")
        .unwrap();
    assert_eq!(
        (back.state, back.reason.as_str()),
        (DeploymentState::RolledBack, "rolled back by hand")
    );
    let err = f
        .reg
        .act_on_deployment(&f.acme, &dep.id, DeploymentAction::Promote, "")
        .unwrap_err();
    assert!(err.to_string().contains("create a new one"), "{err}");
    assert_eq!(f.wants(2), "");
}

#[test]
fn reports_carrying_awkward_floats_keep_being_accepted() {
    let f = fleet(1);
    f.deploy(&f.v1, f.policy(1.0, 0));
    for (i, p99) in [
        94.812_345_678_912_34,
        0.1 + 0.2,
        1e-7,
        5e300,
        70.910_000_000_000_01,
    ]
    .into_iter()
    .enumerate()
    {
        f.runs(0, 10 + i as u64, 0.0, p99);
    }
    let err = f
        .reg
        .report(
            &f.devices[0],
            DeviceState {
                p99_ms: f64::NAN,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("finite"), "{err}");
}

fn span(trace: &str, step: Option<&str>, start_ms: u64, end_ms: u64) -> SpanRecord {
    SpanRecord {
        trace_id: trace.into(),
        parent_span_id: if step.is_some() {
            "00f067aa0ba902b7".into()
        } else {
            String::new()
        },
        name: step.map_or("infer algobay/digits-a".into(), str::to_owned),
        start_unix_nano: start_ms * 1_000_000,
        end_unix_nano: end_ms * 1_000_000,
        attributes: match step {
            Some(s) => [("step".to_owned(), s.to_owned())].into(),
            None => [
                ("kit".to_owned(), "algobay/digits-a@1.0.0".to_owned()),
                ("kit_digest".to_owned(), "sha256:00".to_owned()),
            ]
            .into(),
        },
        error: None,
    }
}

#[test]
fn traces_gather_their_steps_and_stay_with_their_enterprise() {
    let f = fleet(2);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    // Step spans may arrive before the request span (another export batch).
    f.reg
        .ingest_spans(&f.devices[0], vec![span(trace, Some("post"), 12, 15)])
        .unwrap();
    let none = f.reg.traces(&f.acme, "", &TraceFilter::default()).unwrap();
    assert!(
        none.is_empty(),
        "shown only once the request span is in: {none:?}"
    );
    f.reg
        .ingest_spans(
            &f.devices[0],
            vec![span(trace, Some("mlp"), 10, 12), span(trace, None, 10, 16)],
        )
        .unwrap();
    let got = f.reg.traces(&f.acme, "", &TraceFilter::default()).unwrap();
    assert_eq!(got.len(), 1);
    let t = &got[0];
    assert_eq!(t.device_id, f.devices[0].token_id);
    assert_eq!(t.kit_reference, "algobay/digits-a@1.0.0");
    assert!((t.duration_ms - 6.0).abs() < 1e-9, "{t:?}");
    let steps: Vec<(&str, f64)> = t.steps.iter().map(|(_, s, ms)| (s.as_str(), *ms)).collect();
    assert_eq!(steps, [("mlp", 2.0), ("post", 3.0)]);

    // Filters; another enterprise sees nothing and may not ask for acme's.
    let by_device = |d: &str| TraceFilter {
        device: d.into(),
        ..Default::default()
    };
    assert_eq!(
        f.reg
            .traces(&f.acme, "", &by_device(&f.devices[1].token_id))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        f.reg
            .traces(&f.acme, "", &by_device(&f.devices[0].token_id))
            .unwrap()
            .len(),
        1
    );
    let op = principal(Role::Operator, "");
    f.reg.create_enterprise(&op, "globex", "", vec![]).unwrap();
    let globex = principal(Role::Enterprise, "globex");
    assert!(f
        .reg
        .traces(&globex, "", &TraceFilter::default())
        .unwrap()
        .is_empty());
    let err = f
        .reg
        .traces(&globex, "acme", &TraceFilter::default())
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");

    // Bad exports are refused by name and change nothing.
    let err = f
        .reg
        .ingest_spans(&f.devices[1], vec![span("not-hex", None, 1, 2)])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("trace id `not-hex` is not 32 hex digits"),
        "{err}"
    );
    let err = f
        .reg
        .ingest_spans(&f.acme, vec![span(trace, None, 1, 2)])
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert_eq!(
        f.reg
            .traces(&op, "", &TraceFilter::default())
            .unwrap()
            .len(),
        1
    );

    // The ring keeps the newest.
    let many: Vec<SpanRecord> = (0..TRACES_PER_ENTERPRISE as u64 + 5)
        .map(|i| span(&format!("{:032x}", i + 1), None, 100 + i, 101 + i))
        .collect();
    f.reg.ingest_spans(&f.devices[1], many).unwrap();
    let every = || {
        f.reg
            .traces(
                &op,
                "",
                &TraceFilter {
                    limit: usize::MAX,
                    ..Default::default()
                },
            )
            .unwrap()
    };
    let all = every();
    assert_eq!(all.len(), TRACES_PER_ENTERPRISE);
    assert_eq!(
        all[0].trace_id,
        format!("{:032x}", TRACES_PER_ENTERPRISE as u64 + 5)
    );
    // What is stored is trimmed to the newest now and then.
    assert_eq!(f.reg.trim_traces().unwrap(), 6);
    assert_eq!(f.reg.trim_traces().unwrap(), 0);
    assert_eq!(every(), all);
}

/// acme's 4 devices serve v1; then v2 goes to half of them first, judged on
/// the field against v1 run in the shadow. Returns the deployment and the
/// canaries' indexes.
fn field_gated(f: &Fleet) -> (Deployment, Vec<usize>, Digest, Digest) {
    let first = f.deploy(&f.v1, f.policy(1.0, 0));
    for i in 0..4 {
        f.runs(i, 10, 0.0, 10.0);
    }
    f.advance(1);
    assert_eq!(f.state(&first.id).0, DeploymentState::Promoted);
    let v1 = f.reg.get(&f.v1, Some(Kind::Kit)).unwrap().digest;
    let v2 = f.reg.get(&f.v2, Some(Kind::Kit)).unwrap().digest;
    let mut policy = f.policy(0.5, 0);
    policy.field_gate = Some(FieldGate {
        margin: 0.05,
        min_count: 30,
        control: v1,
    });
    let second = f.deploy(&f.v2, policy);
    let canaries: Vec<usize> = second
        .canary_devices
        .iter()
        .map(|id| index_of(f, id))
        .collect();
    assert_eq!(canaries.len(), 2);
    assert!(
        second
            .reason
            .contains("chosen at random among 4 device(s) serving the control kit"),
        "{}",
        second.reason
    );
    for &i in &canaries {
        f.runs(i, 10, 0.0, 10.0);
    }
    (second, canaries, v1, v2)
}

#[test]
fn canaries_run_the_kit_they_replace_in_the_shadow_and_are_chosen_at_random() {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let f = fleet(4);
        let (dep, canaries, v1, _) = field_gated(&f);
        for i in 0..4 {
            let d = f.reg.desired(&f.devices[i]).unwrap();
            if canaries.contains(&i) {
                assert_eq!(d.kit_reference, f.v2);
                assert_eq!(
                    d.shadow_digest,
                    Some(v1),
                    "a canary answers with v1 in the shadow too"
                );
            } else {
                assert_eq!(d.kit_reference, f.v1);
                assert_eq!(d.shadow_digest, None);
            }
        }
        seen.insert(
            dep.canary_devices
                .iter()
                .map(|id| index_of(&f, id))
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        seen.len() > 1,
        "the canaries are not always the same devices: {seen:?}"
    );
}

#[test]
fn a_canary_on_repeated_training_inputs_is_judged_paired_and_promotes_the_better_model() {
    let f = fleet(4);
    let (dep, canaries, v1, v2) = field_gated(&f);
    f.advance(1);
    let (state, reason) = f.state(&dep.id);
    assert_eq!(state, DeploymentState::Canary);
    assert_eq!(
        reason,
        "waiting for feedback: 0/30 labelled requests on the canaries, each answered by both kits"
    );
    // The other devices see inputs the champion was trained on: all right.
    for i in (0..4).filter(|i| !canaries.contains(i)) {
        for n in 0..40 {
            feedback(&f, i, &v1, n, "3", "3");
        }
    }
    // The canaries' requests are harder; on the same ones the new kit is right
    // on 56 of 60 and the kit it replaces on 49 (unpaired, 0.933 against the
    // others' 1.000 would have rolled it back).
    for (k, &i) in canaries.iter().enumerate() {
        for n in 0..30u32 {
            let hard = n < 5 || (k == 0 && n == 5);
            let new_right = !(n < 2);
            let answer = if new_right || !hard { "4" } else { "9" };
            let shadow = if hard { "9" } else { "4" };
            feedback_paired(&f, i, &v2, &v1, n, answer, shadow, "4");
        }
    }
    f.advance(1);
    let (state, reason) = f.state(&dep.id);
    assert_eq!(state, DeploymentState::Promoted, "{reason}");
    assert!(
        reason.contains("within 0.05 of the control, paired")
            && reason.contains("canaries' 60 labelled requests: control 0.817, new kit 0.933"),
        "{reason}"
    );
    for i in 0..4 {
        assert_eq!(f.wants(i), f.v2);
        assert_eq!(f.reg.desired(&f.devices[i]).unwrap().shadow_digest, None);
    }
}

#[test]
fn canaries_whose_kit_loses_to_the_one_it_replaces_on_the_same_requests_roll_back() {
    let f = fleet(4);
    let (dep, canaries, v1, v2) = field_gated(&f);
    // On the same requests the new kit is wrong where the old one was right.
    for &i in &canaries {
        for n in 0..30u32 {
            let answer = if n % 3 == 0 { "2" } else { "1" };
            feedback_paired(&f, i, &v2, &v1, n, answer, "1", "1");
        }
    }
    // Samples without the shadow (or of another control) do not count.
    feedback(&f, canaries[0], &v2, 99, "1", "1");
    f.advance(1);
    let (state, reason) = f.state(&dep.id);
    assert_eq!(state, DeploymentState::RolledBack, "{reason}");
    assert!(
        reason.contains("the new kit loses more than 0.05 to the control on the same requests")
            && reason.contains("60 labelled requests: control 1.000, new kit 0.667"),
        "{reason}"
    );
    for i in 0..4 {
        assert_eq!(f.wants(i), f.v1, "every device is back on the kit before");
    }
}

#[test]
fn time_driven_gates_run_on_one_replica_at_a_time_and_move_when_it_stops() {
    let f = fleet(4);
    let b = f.replica();
    let dep = f.deploy(&f.v1, f.policy(0.25, 60));
    f.runs(index_of(&f, &dep.canary_devices[0]), 100, 0.0, 20.0);
    let at = |secs: i64| {
        f.clock
            .0
            .store(f.now() + secs, std::sync::atomic::Ordering::SeqCst)
    };
    // The first to tick holds the lease; the other does nothing while it lasts.
    assert!(f.reg.tick().unwrap());
    assert!(!b.tick().unwrap());
    at(5);
    assert!(f.reg.tick().unwrap(), "the holder renews");
    assert!(!b.tick().unwrap());
    // What is stored, read without judging it (a status call would).
    let stored = || {
        use algobay_registry::store::{KvStore, Tree};
        let v =
            f.kv.get(Tree::Deployments, format!("acme/{}", dep.id).as_bytes())
                .unwrap()
                .unwrap();
        serde_json::from_slice::<Deployment>(&v).unwrap().state
    };
    // The holder stops (a replica gone): once its lease lapses, B takes over
    // and judges the soak; A, back, finds the lease taken.
    at(60);
    assert_eq!(stored(), DeploymentState::Canary);
    assert!(b.tick().unwrap());
    assert_eq!(stored(), DeploymentState::Promoted, "B's tick judged it");
    assert!(!f.reg.tick().unwrap());
    assert_eq!(f.wants(3), f.v1, "promoted through B, seen through A");
}

#[test]
fn two_replicas_never_hand_out_the_same_sequence_number() {
    let f = fleet(2);
    let b = f.replica();
    let mut seqs = Vec::new();
    for i in 0..6 {
        let via = if i % 2 == 0 { &f.reg } else { &b };
        let d = via
            .create_deployment(&f.acme, "", &f.v1, Labels::new(), f.policy(1.0, 0))
            .unwrap();
        seqs.push(d.seq);
    }
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "each replica's numbers follow the other's: {seqs:?}"
    );
}

/// Applies every note the replica heard so far.
fn follow_all(
    r: &algobay_registry::service::Registry,
    rx: &mut algobay_registry::store::Subscription,
) -> usize {
    let mut n = 0;
    while let Ok(notice) = rx.try_recv() {
        r.follow(notice).unwrap();
        n += 1;
    }
    n
}

#[test]
fn what_one_replica_changes_reaches_the_other_s_search_and_waiting_devices() {
    let f = fleet(2);
    let b = f.replica().with_replica("b");
    let mut rx = b.subscribe_store().unwrap();
    let mut waiting = b.subscribe();
    let op = principal(Role::Operator, "");
    let visible = |r: &algobay_registry::service::Registry| {
        r.search(&Query {
            text: "digits".into(),
            page_size: 100,
            viewer: Some(op.clone()),
            ..Default::default()
        })
        .unwrap()
        .artifacts
        .iter()
        .filter(|a| a.reference() == f.v2)
        .count()
    };
    assert_eq!(visible(&b), 1);
    // A yank through the first replica: the second's index follows its note.
    f.reg.yank(&op, &f.v2, Some(Kind::Kit), false).unwrap();
    assert_eq!(visible(&f.reg), 0);
    assert_eq!(visible(&b), 1, "not yet followed");
    assert!(follow_all(&b, &mut rx) >= 1);
    assert_eq!(
        visible(&b),
        0,
        "the yank reached the other replica's search"
    );
    // A deployment through the first wakes devices waiting on the second.
    waiting.borrow_and_update();
    f.deploy(&f.v1, f.policy(1.0, 0));
    follow_all(&b, &mut rx);
    assert!(
        waiting.has_changed().unwrap(),
        "devices waiting on B were woken"
    );
    // Notes may have been lost (a dropped connection): B reads the catalog again.
    f.reg.yank(&op, &f.v2, Some(Kind::Kit), true).unwrap();
    b.follow(algobay_registry::store::Notice::Missed).unwrap();
    assert_eq!(visible(&b), 1);
}

#[test]
fn telemetry_totals_and_traces_are_stored_so_another_replica_and_a_restart_see_them() {
    use algobay_registry::telemetry::{MetricPoint, PointValue, DURATION, REQUESTS};
    let f = fleet(2);
    let attrs = |outcome: Option<&str>| {
        let mut a: std::collections::BTreeMap<String, String> = [
            ("kit".to_owned(), f.v1.clone()),
            ("kit_digest".to_owned(), "sha256:00".to_owned()),
        ]
        .into();
        if let Some(o) = outcome {
            a.insert("outcome".into(), o.into());
        }
        a
    };
    let export = |ok: f64, start: u64| {
        vec![
            MetricPoint {
                name: REQUESTS.into(),
                attributes: attrs(Some("ok")),
                start_unix_nano: start,
                value: PointValue::Sum(ok),
            },
            MetricPoint {
                name: REQUESTS.into(),
                attributes: attrs(Some("error")),
                start_unix_nano: start,
                value: PointValue::Sum(2.0),
            },
            MetricPoint {
                name: DURATION.into(),
                attributes: attrs(None),
                start_unix_nano: start,
                value: PointValue::Histogram {
                    count: ok as u64 + 2,
                    sum: 40.0,
                    bounds: vec![1.0, 10.0],
                    counts: vec![1, ok as u64, 1],
                },
            },
        ]
    };
    f.reg
        .ingest_metrics(&f.devices[0], export(10.0, 1))
        .unwrap();
    // The same cumulative export again (a retry, or through the other replica): counted once.
    let b = f.replica();
    b.ingest_metrics(&f.devices[0], export(10.0, 1)).unwrap();
    // The agent restarted (a new series) and sent through B.
    b.ingest_metrics(&f.devices[0], export(5.0, 2)).unwrap();
    let op = principal(Role::Operator, "");
    let seen = |r: &algobay_registry::service::Registry| r.telemetry(&op, "acme", "").unwrap();
    let t = seen(&f.reg);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].ok, t[0].errors, t[0].requests), (15, 4, 19));
    assert_eq!(t[0].latency_count, 19);
    assert_eq!(seen(&b), t, "both replicas read the same totals");
    // Over time: the three exports fell in one window (less than 30 s apart);
    // a minute later another 10 requests make a second window of their own.
    assert_eq!(t[0].history.len(), 1);
    assert_eq!((t[0].history[0].1, t[0].history[0].2), (19, 4));
    f.clock.0.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
    b.ingest_metrics(&f.devices[0], export(15.0, 2)).unwrap();
    let t = seen(&f.reg);
    assert_eq!(t[0].history.len(), 2);
    let w = t[0].history[1];
    assert_eq!((w.1, w.2), (10, 0), "the window holds only what came in it");
    assert_eq!(
        (w.3, w.4),
        (10.0, 10.0),
        "its ten requests all took 1-10 ms"
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    f.reg
        .ingest_spans(&f.devices[0], vec![span(trace, Some("pre"), 10, 12)])
        .unwrap();
    b.ingest_spans(&f.devices[0], vec![span(trace, None, 10, 20)])
        .unwrap();
    // A replica started afresh on the same stores (a restart) sees all of it.
    let c = f.replica();
    assert_eq!(seen(&c), t);
    let traces = c.traces(&op, "", &TraceFilter::default()).unwrap();
    assert_eq!(traces.len(), 1);
    assert_eq!(
        traces[0].steps.len(),
        1,
        "spans sent through two replicas make one trace"
    );
    assert_eq!(traces[0].duration_ms, 10.0);
}
