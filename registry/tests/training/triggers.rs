//! What starts a round by itself: enough new labels, the longest interval,
//! a rising share of hard examples, and a drift that waits for labels after it.

use super::*;

#[test]
fn an_automatic_policy_starts_a_round_once_enough_new_labels_came() {
    let f = fleet(2);
    let v1 = serving_with_feedback(&f, 0);
    let mut policy = TrainPolicy::default_for("", KIT);
    policy.auto = true;
    policy.min_new_labels = 4;
    f.reg
        .train(&f.acme, TrainCall::SetPolicy(policy.clone()))
        .unwrap();
    policy.canary_share = 0.0;
    let err = f
        .reg
        .train(&f.acme, TrainCall::SetPolicy(policy))
        .unwrap_err()
        .to_string();
    assert!(err.contains("policy.canary_share"), "{err}");
    for n in 0..3 {
        feedback(&f, 0, &v1, n, "1", "1");
    }
    f.advance(1);
    let runs = |f: &Fleet| match f
        .reg
        .train(
            &f.acme,
            TrainCall::List {
                enterprise: String::new(),
                kit: KIT.into(),
            },
        )
        .unwrap()
    {
        TrainReply::Runs(r) => r,
        other => panic!("{other:?}"),
    };
    assert!(runs(&f).is_empty(), "three labels are not four");
    feedback(&f, 1, &v1, 9, "1", "2");
    f.advance(1);
    let started = runs(&f);
    assert_eq!(started.len(), 1);
    assert!(
        started[0].trigger.contains("4 new labels"),
        "{}",
        started[0].trigger
    );
}

fn runs_of(f: &Fleet) -> Vec<Run> {
    match f
        .reg
        .train(
            &f.acme,
            TrainCall::List {
                enterprise: String::new(),
                kit: KIT.into(),
            },
        )
        .unwrap()
    {
        TrainReply::Runs(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_round_starts_after_the_longest_interval_only_when_labels_came() {
    let f = fleet(2);
    let v1 = serving_with_feedback(&f, 0);
    let mut policy = TrainPolicy::default_for("", KIT);
    policy.auto = true;
    policy.min_new_labels = 1000;
    policy.max_interval_seconds = 30;
    let err = f
        .reg
        .train(&f.acme, TrainCall::SetPolicy(policy.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("policy.max_interval_seconds"), "{err}");
    policy.max_interval_seconds = 3600;
    f.reg.train(&f.acme, TrainCall::SetPolicy(policy)).unwrap();
    // An hour with nothing new to learn from starts nothing.
    f.advance(3700);
    assert!(runs_of(&f).is_empty());
    feedback(&f, 0, &v1, 1, "1", "2");
    f.advance(1);
    let started = runs_of(&f);
    assert_eq!(started.len(), 1, "an hour passed and a label came");
    assert!(
        started[0]
            .trigger
            .contains("since the champion was deployed"),
        "{}",
        started[0].trigger
    );
}

#[test]
fn a_rising_share_of_hard_examples_starts_a_round_as_drift() {
    let f = fleet(3);
    let v1 = serving_with_feedback(&f, 0);
    let mut policy = TrainPolicy::default_for("", KIT);
    policy.auto = true;
    policy.min_new_labels = 1000;
    policy.drift_factor = 2.0;
    policy.drift_window = 100;
    f.reg.train(&f.acme, TrainCall::SetPolicy(policy)).unwrap();
    // The champion's first window: 6 hard examples in 120 requests (5%).
    for i in 0..3 {
        f.runs(i, 40, 0.0, 10.0);
        feedback_free(&f, i, &v1, 0);
        feedback_free(&f, i, &v1, 1);
    }
    f.advance(1);
    // The next: 9 in 120 (7.5%), under twice the first.
    for i in 0..3 {
        f.runs(i, 80, 0.0, 10.0);
        for n in 2..5 {
            feedback_free(&f, i, &v1, n);
        }
    }
    f.advance(1);
    assert!(runs_of(&f).is_empty(), "7.5% is not twice 5%");
    // Then 30 in 120 (25%): drift, seen by another replica once the first
    // stopped ticking: it goes on from the stored window and baseline.
    for i in 0..3 {
        f.runs(i, 120, 0.0, 10.0);
        for n in 5..15 {
            feedback_free(&f, i, &v1, n);
        }
    }
    let b = f.replica();
    f.clock.0.fetch_add(11, std::sync::atomic::Ordering::SeqCst);
    assert!(b.tick().unwrap(), "B takes the lapsed lease");
    let started = runs_of(&f);
    assert_eq!(started.len(), 1);
    assert!(
        started[0]
            .trigger
            .starts_with("drift: 25.0% of the last 100 requests"),
        "{}",
        started[0].trigger
    );
}

#[test]
fn a_drift_started_round_waits_for_post_drift_labels_and_trains_only_on_them() {
    let f = fleet(3);
    let v1 = serving_with_feedback(&f, 0);
    let mut policy = TrainPolicy::default_for("", KIT);
    policy.auto = true;
    policy.min_new_labels = 9;
    policy.drift_factor = 2.0;
    policy.drift_window = 100;
    f.reg.train(&f.acme, TrainCall::SetPolicy(policy)).unwrap();
    // Before the drift: labels on what the devices saw then (8, under the minimum).
    for i in 0..2 {
        for n in 0..4 {
            feedback(&f, i, &v1, 100 + n, "1", "1");
        }
    }
    // The champion's first window: 6 hard examples in 120 requests (5%).
    for i in 0..3 {
        f.runs(i, 40, 0.0, 10.0);
        feedback_free(&f, i, &v1, 0);
        feedback_free(&f, i, &v1, 1);
    }
    f.advance(10);
    // Then 30 in 120 (25%): drift.
    for i in 0..3 {
        f.runs(i, 80, 0.0, 10.0);
        for n in 2..12 {
            feedback_free(&f, i, &v1, n);
        }
    }
    f.advance(11);
    let runs = runs_of(&f);
    assert_eq!(runs.len(), 1);
    let waiting = &runs[0];
    assert_eq!(waiting.state, RunState::Collecting, "{:?}", waiting.history);
    assert!(
        waiting
            .trigger
            .starts_with("drift: 25.0% of the last 100 requests")
            && waiting.trigger.contains("waiting for 9 labels"),
        "{}",
        waiting.trigger
    );
    // Nothing to claim while it waits; the pre-drift labels do not count.
    assert!(claim(&f, "t1", 60).is_none());
    // Post-drift labels arrive: 8 are not enough, a ninth (a label-count
    // trigger meanwhile) joins the same round rather than starting another.
    f.advance(5);
    for i in 0..3 {
        for n in 0..3 {
            feedback(&f, i, &v1, 200 + n, "1", "7");
        }
    }
    f.advance(1);
    let runs = runs_of(&f);
    assert_eq!(runs.len(), 1, "one round at a time");
    assert_eq!(runs[0].state, RunState::Pending, "{:?}", runs[0].history);
    assert!(
        runs[0]
            .history
            .last()
            .unwrap()
            .reason
            .starts_with("9 labels since the drift began"),
        "{:?}",
        runs[0].history
    );
    // It trains and is judged on the drifted window's samples alone.
    let (r, token) = claim(&f, "t1", 60).unwrap();
    assert_eq!(r.id, waiting.id);
    let d = data(&f, &r.id, &token);
    let labels: Vec<&str> = d
        .train
        .iter()
        .chain(&d.holdout)
        .map(|s| s.label.as_str())
        .collect();
    assert_eq!(labels.len(), 9, "{labels:?}");
    assert!(
        labels.iter().all(|l| *l == "7"),
        "pre-drift labels left out: {labels:?}"
    );
}
