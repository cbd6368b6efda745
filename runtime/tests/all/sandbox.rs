//! A stage that misbehaves fails that request with a clear error; the kit keeps serving.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use algobay_runtime::{LoadedKit, Tensor, Value, Values};

use crate::common::*;

fn kit() -> Arc<LoadedKit> {
    static KIT: OnceLock<Arc<LoadedKit>> = OnceLock::new();
    KIT.get_or_init(|| {
        let dir = kitfile(&format!(
            r#"
[kit]
name = "test/misbehave"
version = "0.1.0"
scenario = "sandbox tests"
[[input]]
name = "x"
type = "f32[3]"
[[input]]
name = "mode"
type = "text"
[[output]]
name = "y"
type = "f32[3]"
[[step]]
name = "m"
stage = "{}"
limits = {{ memory_mb = 32, time_ms = 300 }}
"#,
            misbehave_crate()
        ));
        load(&build(dir.path()).expect("build misbehave kit"))
    })
    .clone()
}

fn call(mode: &str) -> algobay_runtime::Result<Values> {
    kit().run(Values::from([
        (
            "x".into(),
            Value::Tensor(Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0])),
        ),
        ("mode".into(), Value::Text(mode.into())),
    ]))
}

fn assert_still_serves() {
    let out = call("ok").expect("a good request after a bad one");
    assert_eq!(
        out["y"],
        Value::Tensor(Tensor::from_f32(vec![3], &[2.0, 4.0, 6.0]))
    );
}

#[test]
fn stage_that_loops_forever_is_stopped_by_its_time_budget() {
    let started = Instant::now();
    let err = call("loop").unwrap_err().to_string();
    assert!(
        err.contains("stage `m`") && err.contains("time budget of 300 ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_still_serves();
}

#[test]
fn stage_that_allocates_without_bound_hits_its_memory_limit() {
    let err = call("alloc").unwrap_err().to_string();
    assert!(err.contains("memory limit of 32 MiB"), "{err}");
    assert_still_serves();
}

#[test]
fn stage_that_panics_reports_its_panic_message() {
    let err = call("panic").unwrap_err().to_string();
    assert!(
        err.contains("trapped during process") && err.contains("deliberate failure"),
        "{err}"
    );
    assert_still_serves();
}

#[test]
fn stage_that_returns_the_wrong_shape_is_refused() {
    let err = call("wrong_shape").unwrap_err().to_string();
    assert!(
        err.contains("returned a bad `y`") && err.contains("expected f32[3], got f32[2]"),
        "{err}"
    );
    assert_still_serves();
}

#[test]
fn stage_error_is_passed_through_and_instance_reused() {
    let err = call("error").unwrap_err().to_string();
    assert_eq!(err, "stage `m`: the request asked for an error");
    assert_still_serves();
}

#[test]
fn request_with_wrong_input_type_is_refused_before_any_step() {
    let err = kit()
        .run(Values::from([
            (
                "x".into(),
                Value::Tensor(Tensor::from_f32(vec![2], &[1.0, 2.0])),
            ),
            ("mode".into(), Value::Text("ok".into())),
        ]))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "input `x`: expected f32[3], got f32[2]");
    let err = kit()
        .run(Values::from([("x".into(), Value::Text("hi".into()))]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input `x`: expected f32[3], got text"),
        "{err}"
    );
    let err = call_with_extra().unwrap_err().to_string();
    assert_eq!(err, "input `extra`: is not an input of this kit");
}

fn call_with_extra() -> algobay_runtime::Result<Values> {
    kit().run(Values::from([
        (
            "x".into(),
            Value::Tensor(Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0])),
        ),
        ("mode".into(), Value::Text("ok".into())),
        ("extra".into(), Value::Text("?".into())),
    ]))
}

#[test]
fn bad_requests_in_parallel_do_not_disturb_good_ones() {
    let handles: Vec<_> = ["loop", "panic", "alloc", "ok", "ok", "wrong_shape"]
        .into_iter()
        .map(|mode| std::thread::spawn(move || (mode, call(mode))))
        .collect();
    for h in handles {
        let (mode, result) = h.join().unwrap();
        assert_eq!(result.is_ok(), mode == "ok", "{mode}: {result:?}");
    }
    assert_still_serves();
}

#[test]
fn a_stop_signal_ends_a_stage_call_before_its_own_budget() {
    use algobay_runtime::wasm::StopSignal;
    use std::sync::atomic::{AtomicBool, Ordering};
    let kit = kit(); // built first: the signal is for the stage call
    let flag = Arc::new(AtomicBool::new(false));
    let stop = StopSignal {
        cancelled: Some(flag.clone()),
        deadline: None,
    };
    let raiser = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            flag.store(true, Ordering::SeqCst);
        })
    };
    let started = Instant::now();
    let err = kit
        .run_checked(
            Values::from([
                (
                    "x".into(),
                    Value::Tensor(Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0])),
                ),
                ("mode".into(), Value::Text("loop".into())),
            ]),
            &stop,
        )
        .unwrap_err()
        .to_string();
    raiser.join().unwrap();
    assert!(
        err.contains("stopped during process: the caller went away"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
    assert_still_serves();
}
