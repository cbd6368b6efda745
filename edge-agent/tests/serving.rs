//! The agent serves its active kit the way the field expects: the Open
//! Inference Protocol over HTTP (JSON and the binary extension) and gRPC, a
//! plain file endpoint, Prometheus metrics, and a clear "overloaded" answer.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use algobay_proto::inference as oip;

use common::*;

/// The 64 pixel values of the sample that must come out as a 9.
fn pixels_of_nine() -> Vec<f32> {
    let v: serde_json::Value = serde_json::from_slice(&row9()).unwrap();
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            x => {
                if let Some(f) = x.as_f64() {
                    out.push(f as f32)
                }
            }
        }
    }
    walk(&v["data"], &mut out);
    if out.is_empty() {
        walk(&v, &mut out);
    }
    out
}

#[test]
fn the_active_kit_answers_the_open_inference_protocol_over_http_and_grpc() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, globex_token) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let agent = device(
        &rt,
        &reg,
        &acme,
        dir.path(),
        "edge",
        "telemetry_seconds = 1\ntrace_sample_ratio = 0\n",
    );
    // Before any kit: live, but the model is not there.
    let (code, _) = http(&agent.http, "GET", "/v2/health/live", &[]);
    assert_eq!(code, 200);
    let (code, body) = http(&agent.http, "GET", "/v2/models/digits-mlp/ready", &[]);
    assert_eq!(code, 503, "{body}");
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 180);

    // Metadata from the kit's ports.
    let (code, body) = http(&agent.http, "GET", "/v2/models/digits-mlp", &[]);
    assert_eq!(code, 200, "{body}");
    let meta: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meta["versions"][0], "1.0.0");
    assert_eq!(
        meta["inputs"][0],
        serde_json::json!({"name": "pixels", "datatype": "FP32", "shape": [1, 64]})
    );
    assert_eq!(meta["outputs"][0]["datatype"], "BYTES");

    // JSON infer.
    let px = pixels_of_nine();
    assert_eq!(px.len(), 64);
    let req = serde_json::json!({
        "id": "r1",
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": px}],
    });
    // The caller's sampled W3C trace context: this request is traced although
    // the device samples none by itself; one that says "not sampled" is not.
    let (code, resp) = http_with(
        &agent.http,
        "POST",
        "/v2/models/digits-mlp/versions/1.0.0/infer",
        &[(
            "traceparent",
            &format!("00-{TRACE_HTTP}-00f067aa0ba902b7-01"),
        )],
        &serde_json::to_vec(&req).unwrap(),
    );
    let body = String::from_utf8(resp.body).unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, _) = http_with(
        &agent.http,
        "POST",
        "/v2/models/digits-mlp/infer",
        &[(
            "traceparent",
            &format!("00-{TRACE_UNSAMPLED}-00f067aa0ba902b7-00"),
        )],
        &serde_json::to_vec(&req).unwrap(),
    );
    assert_eq!(code, 200);
    let out: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(out["id"], "r1");
    let result: serde_json::Value =
        serde_json::from_str(out["outputs"][0]["data"][0].as_str().unwrap()).unwrap();
    assert_eq!(result[0][0]["label"], "9");

    // The binary tensor extension, as Triton's HTTP client sends it.
    let raw: Vec<u8> = px.iter().flat_map(|v| v.to_le_bytes()).collect();
    let head = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                     "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "result", "parameters": {"binary_data": true}}],
    }))
    .unwrap();
    let (code, body) = http_with(
        &agent.http,
        "POST",
        "/v2/models/digits-mlp/infer",
        &[("Inference-Header-Content-Length", &head.len().to_string())],
        &[head.clone(), raw.clone()].concat(),
    );
    assert_eq!(code, 200);
    let (json_len, _) = body
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("inference-header-content-length"))
        .map(|(_, v)| (v.parse::<usize>().unwrap(), ()))
        .expect("a binary answer says where its JSON ends");
    let head_out: serde_json::Value = serde_json::from_slice(&body.body[..json_len]).unwrap();
    let tail = &body.body[json_len..];
    assert_eq!(
        head_out["outputs"][0]["parameters"]["binary_data_size"],
        tail.len()
    );
    let n = u32::from_le_bytes(tail[..4].try_into().unwrap()) as usize;
    let result: serde_json::Value = serde_json::from_slice(&tail[4..4 + n]).unwrap();
    assert_eq!(result[0][0]["label"], "9");

    // Bad requests are named.
    for (req, want) in [
        (
            serde_json::json!({"inputs": [{"name": "pixels", "datatype": "INT64", "shape": [1, 64], "data": vec![0; 64]}]}),
            "datatype INT64 where the kit takes FP32",
        ),
        (
            serde_json::json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [1.0]}]}),
            "needs 256 bytes",
        ),
        (
            serde_json::json!({"inputs": []}),
            "input `pixels` is missing",
        ),
        (serde_json::json!({"oops": 1}), "`inputs` must be a list"),
    ] {
        let (code, body) = http(
            &agent.http,
            "POST",
            "/v2/models/digits-mlp/infer",
            &serde_json::to_vec(&req).unwrap(),
        );
        assert_eq!(code, 400, "{body}");
        assert!(body.contains(want), "{want}: {body}");
    }
    let (code, body) = http(&agent.http, "POST", "/v2/models/other/infer", b"{}");
    assert_eq!(code, 404, "{body}");

    // gRPC, with raw contents, as Triton's gRPC client sends them.
    rt.block_on(async {
        let mut c = oip::grpc_inference_service_client::GrpcInferenceServiceClient::connect(
            format!("http://{}", agent.grpc),
        )
        .await
        .unwrap();
        assert!(
            c.server_live(oip::ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live
        );
        let ready = c
            .model_ready(oip::ModelReadyRequest {
                name: "digits-mlp".into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(ready.ready);
        let mut traced = tonic::Request::new(oip::ModelInferRequest {
            model_name: "digits-mlp".into(),
            id: "g1".into(),
            inputs: vec![oip::model_infer_request::InferInputTensor {
                name: "pixels".into(),
                datatype: "FP32".into(),
                shape: vec![1, 64],
                ..Default::default()
            }],
            raw_input_contents: vec![raw.clone()],
            ..Default::default()
        });
        traced.metadata_mut().insert(
            "traceparent",
            format!("00-{TRACE_GRPC}-b7ad6b7169203331-01")
                .parse()
                .unwrap(),
        );
        let r = c.model_infer(traced).await.unwrap().into_inner();
        assert_eq!((r.id.as_str(), r.model_version.as_str()), ("g1", "1.0.0"));
        let out = &r.raw_output_contents[0];
        let result: serde_json::Value = serde_json::from_slice(&out[4..]).unwrap();
        assert_eq!(result[0][0]["label"], "9");
        let err = c
            .model_infer(oip::ModelInferRequest {
                model_name: "digits-mlp".into(),
                inputs: vec![oip::model_infer_request::InferInputTensor {
                    name: "pixels".into(),
                    datatype: "FP32".into(),
                    shape: vec![1, 64],
                    ..Default::default()
                }],
                raw_input_contents: vec![raw[..8].to_vec()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("needs 256 bytes"),
            "{}",
            err.message()
        );
    });

    // The plain file endpoint and the metrics that count it all.
    let (code, body) = http(&agent.http, "POST", "/v1/infer", &row9());
    assert_eq!(code, 200, "{body}");
    let (code, metrics) = http(&agent.http, "GET", "/metrics", &[]);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("algobay_agent_active_kit{kit=\"algobay/digits-mlp@1.0.0\""),
        "{metrics}"
    );
    let count = metrics
        .lines()
        .find(|l| l.starts_with("algobay_agent_request_seconds_count"))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(count >= 8, "{metrics}");

    // The same figures reached the registry's OTLP receiver, per device and kit,
    // with the time of each step; another enterprise sees none of them.
    let device = agent.status()["device_id"].as_str().unwrap().to_owned();
    let t = wait_for(60, "the device's metrics at the registry", || {
        let kits = rt.block_on(acme.telemetry("", "")).unwrap();
        kits.into_iter()
            .find(|k| k.device_id == device && k.requests + k.errors >= count)
    });
    assert_eq!(t.kit_reference, "algobay/digits-mlp@1.0.0");
    assert!(
        t.errors >= 1,
        "the bad gRPC request counts as an error: {t:?}"
    );
    assert!(
        t.stages.contains_key("mlp") && t.stages.contains_key("post"),
        "{t:?}"
    );
    assert!(
        t.latency_count >= count && t.latency_quantile_ms(0.99).is_some(),
        "{t:?}"
    );
    let globex = rt.block_on(reg.client(&globex_token));
    assert!(rt.block_on(globex.telemetry("", "")).unwrap().is_empty());

    // Exactly the two requests whose callers asked reached the registry as
    // traces, each with a span per step, seen by acme only.
    let query = algobay_sdk::fleet::TraceQuery {
        device: device.clone(),
        ..Default::default()
    };
    let traces = wait_for(60, "both traces at the registry", || {
        let v = rt.block_on(acme.traces(&query)).unwrap();
        (v.len() >= 2).then_some(v)
    });
    let mut ids: Vec<&str> = traces.iter().map(|t| t.trace_id.as_str()).collect();
    ids.sort();
    let mut want = vec![TRACE_HTTP, TRACE_GRPC];
    want.sort();
    assert_eq!(ids, want, "{traces:?}");
    for t in &traces {
        assert_eq!(t.kit_reference, "algobay/digits-mlp@1.0.0", "{t:?}");
        assert_eq!(t.name, "infer algobay/digits-mlp", "{t:?}");
        assert!(t.error.is_empty(), "{t:?}");
        let steps: Vec<&str> = t.steps.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(steps, ["mlp", "post"], "{t:?}");
        let inside: f64 = t.steps.iter().map(|(_, ms)| ms).sum();
        assert!(inside <= t.duration_ms + 0.001, "{t:?}");
    }
    let one = rt
        .block_on(acme.traces(&algobay_sdk::fleet::TraceQuery {
            trace_id: TRACE_GRPC.into(),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(one.len(), 1);
    assert!(rt
        .block_on(globex.traces(&Default::default()))
        .unwrap()
        .is_empty());
}

const TRACE_HTTP: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_GRPC: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACE_UNSAMPLED: &str = "11111111111111111111111111111111";

/// Triton's own Python client (`tritonclient` from PyPI, installed by the
/// set-up), used as its users use it, against the agent.
#[test]
fn tritons_own_python_client_works_against_the_agent_unchanged() {
    let python = std::env::var_os("ALGOBAY_BUILD_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("build"))
        .join("tritonclient/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup.sh",
        python.display()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let agent = device(&rt, &reg, &acme, dir.path(), "edge", "");
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 180);
    let pixels = dir.path().join("pixels.json");
    std::fs::write(&pixels, serde_json::to_vec(&pixels_of_nine()).unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .arg(root().join("edge-agent/tests/python/triton_client.py"))
        .arg(agent.http.trim_start_matches("http://"))
        .arg(&agent.grpc)
        .arg("digits-mlp")
        .arg(&pixels)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (h, g) = (&seen["http"], &seen["grpc"]);
    for flag in ["live", "ready", "model_ready"] {
        assert_eq!(h[flag], true, "http {flag}: {seen}");
        assert_eq!(g[flag], true, "grpc {flag}: {seen}");
    }
    assert_eq!(h["missing_model_ready"], false, "{seen}");
    assert_eq!(h["server"], "algobay-agent", "{seen}");
    let pixels_port = serde_json::json!({"name": "pixels", "datatype": "FP32", "shape": [1, 64]});
    assert_eq!(h["inputs"][0], pixels_port, "{seen}");
    assert_eq!(g["inputs"][0]["name"], "pixels", "{seen}");
    assert_eq!(g["inputs"][0]["datatype"], "FP32", "{seen}");
    assert_eq!(h["outputs"], serde_json::json!(["result"]), "{seen}");
    // The kit's answer, whether the tensors travel as JSON, as binary or over gRPC.
    for answer in [&h["json"], &h["binary"], &g["answer"]] {
        assert_eq!(answer[0][0]["label"], "9", "{seen}");
    }
    let bad = h["bad_shape_error"].as_str().unwrap_or_default();
    assert!(bad.contains("pixels"), "a wrong shape is named: {seen}");
    let missing = g["missing_model_error"].as_str().unwrap_or_default();
    assert!(
        missing.contains("no-such-model"),
        "an unknown model is named: {seen}"
    );
}

#[test]
fn a_device_past_its_queue_answers_overloaded_and_keeps_serving() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, true));
    let acme = rt.block_on(reg.client(&acme_token));
    let agent = device(
        &rt,
        &reg,
        &acme,
        dir.path(),
        "small",
        "max_concurrent = 1\nmax_queue = 1\n",
    );
    serve(&rt, &acme, &agent, "algobay/ocr-ppocrv4@1.0.0", 120);
    let image = std::fs::read(root().join("examples/kits/ocr/samples/invoice.png")).unwrap();
    // Six at once: one runs, one waits, the rest are told to come back later.
    let codes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| http(&agent.http, "POST", "/v1/infer", &image)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap().0).collect()
    });
    let ok = codes.iter().filter(|c| **c == 200).count();
    let overloaded = codes.iter().filter(|c| **c == 429).count();
    assert!(
        ok >= 1 && overloaded >= 1 && ok + overloaded == 6,
        "{codes:?}"
    );
    let (code, _) = http(&agent.http, "POST", "/v1/infer", &image);
    assert_eq!(code, 200, "it serves again once the queue drains");
    let (_, metrics) = http(&agent.http, "GET", "/metrics", &[]);
    assert!(
        metrics.contains(&format!(
            "algobay_agent_requests_total{{outcome=\"overloaded\"}} {overloaded}"
        )),
        "{metrics}"
    );
}

/// A digits input with one pixel changed (so each is a different sample).
fn digits_input(pixel: usize, value: f32) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&row9()).unwrap();
    v["data"][pixel] = serde_json::json!(value);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn hard_examples_are_kept_on_disk_through_outages_and_restarts_and_reach_the_registry_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg_dir = dir.path().join("registry");
    let mut reg = RegistryProc::start(&reg_dir, 0);
    let (acme_token, globex_token) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    // Every request is a hard example here.
    let mut agent = keen_agent(&rt, &reg, &acme, dir.path(), "telemetry_seconds = 0\n");
    let count = |reg: &RegistryProc| {
        let c = rt.block_on(reg.client(&acme_token));
        rt.block_on(c.list_samples("", "algobay/digits-mlp@1.1.0", 100, ""))
            .unwrap()
            .0
    };

    // Three different inputs, one of them twice: three samples. The second comes
    // with its caller's trace context, and its sample keeps the trace id.
    for (p, v) in [(0, 1.0), (1, 2.0), (0, 1.0), (2, 3.0)] {
        let tp = format!("00-{TRACE_HTTP}-00f067aa0ba902b7-01");
        let headers: &[(&str, &str)] = if p == 1 { &[("traceparent", &tp)] } else { &[] };
        let (code, _) = http_with(
            &agent.http,
            "POST",
            "/v1/infer",
            headers,
            &digits_input(p, v),
        );
        assert_eq!(code, 200);
    }
    let samples = wait_for(60, "three samples at the registry", || {
        let s = count(&reg);
        (s.len() == 3).then_some(s)
    });
    let traced: Vec<&str> = samples.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(
        traced.iter().filter(|t| **t == TRACE_HTTP).count(),
        1,
        "{traced:?}"
    );
    let s = &samples[0];
    assert!(s.reason.contains("below 1.01"), "{}", s.reason);
    assert_eq!(s.inputs[0].datatype, "FP32");
    assert_eq!(s.inputs[0].shape, vec![1, 64]);
    let bytes = rt.block_on(acme.download(&s.inputs[0].digest)).unwrap();
    assert_eq!(bytes.len(), 256);
    assert!(s.outputs_json.contains("label"), "{}", s.outputs_json);
    let globex = rt.block_on(reg.client(&globex_token));
    assert!(rt
        .block_on(globex.list_samples("", "", 100, ""))
        .unwrap()
        .0
        .is_empty());

    // The registry goes away; two more; the agent is killed and comes back; then the registry.
    let port = reg.port;
    reg.kill();
    for (p, v) in [(3, 4.0), (4, 5.0)] {
        let (code, _) = http(&agent.http, "POST", "/v1/infer", &digits_input(p, v));
        assert_eq!(code, 200);
    }
    agent.kill_and_restart();
    let reg = RegistryProc::start(&reg_dir, port);
    wait_for(120, "all five samples after the outage", || {
        (count(&reg).len() == 5).then_some(())
    });

    // A deployment with sampling off keeps nothing.
    let acme = rt.block_on(reg.client(&acme_token));
    rt.block_on(acme.create_deployment(
        "",
        "algobay/digits-mlp@1.1.0",
        BTreeMap::new(),
        algobay_sdk::fleet::RolloutPolicy {
            sampling_off: true,
            ..all()
        },
    ))
    .unwrap();
    let device = agent.status()["device_id"].as_str().unwrap().to_owned();
    wait_for(60, "the device to take the new deployment", || {
        let d = rt.block_on(acme.list_devices("")).unwrap();
        d.into_iter()
            .find(|d| d.id == device)
            .filter(|d| d.state.deployment_id != samples[0].deployment_id)
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (code, _) = http(&agent.http, "POST", "/v1/infer", &digits_input(5, 6.0));
    assert_eq!(code, 200);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(count(&reg).len(), 5);
}

#[test]
fn telemetry_made_while_the_registry_is_down_reaches_it_when_it_returns() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg_dir = dir.path().join("registry");
    let mut reg = RegistryProc::start(&reg_dir, 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let agent = device(
        &rt,
        &reg,
        &acme,
        dir.path(),
        "offline",
        "telemetry_seconds = 1\ntrace_sample_ratio = 0\n",
    );
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 180);
    let device = agent.status()["device_id"].as_str().unwrap().to_owned();
    let served = |acme: &algobay_sdk::Client| {
        rt.block_on(acme.telemetry("", &device))
            .unwrap()
            .into_iter()
            .map(|k| k.requests)
            .sum::<u64>()
    };
    for _ in 0..2 {
        let (code, body) = http(&agent.http, "POST", "/v1/infer", &row9());
        assert_eq!(code, 200, "{body}");
    }
    wait_for(60, "the first two requests at the registry", || {
        (served(&acme) == 2).then_some(())
    });

    // The registry goes away (and forgets what it held in memory); the device serves on.
    let port = reg.port;
    reg.kill();
    let outage: Vec<String> = (0..5).map(|i| format!("{:032x}", 0xabc0 + i)).collect();
    for id in &outage {
        let (code, _) = http_with(
            &agent.http,
            "POST",
            "/v1/infer",
            &[("traceparent", &format!("00-{id}-00f067aa0ba902b7-01"))],
            &row9(),
        );
        assert_eq!(code, 200, "the device serves while the registry is away");
    }
    // Several exports fail meanwhile.
    std::thread::sleep(std::time::Duration::from_secs(3));

    let reg = RegistryProc::start(&reg_dir, port);
    let acme = rt.block_on(reg.client(&acme_token));
    // Every request since the agent started, counted once: nothing lost, nothing twice.
    wait_for(90, "all seven requests at the returned registry", || {
        (served(&acme) == 7).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(served(&acme), 7);
    // And the traces made during the outage, held back on the device, all arrived.
    let traces = wait_for(90, "the five traces made during the outage", || {
        let v = rt
            .block_on(acme.traces(&algobay_sdk::fleet::TraceQuery {
                device: device.clone(),
                ..Default::default()
            }))
            .unwrap();
        (v.len() >= 5).then_some(v)
    });
    let mut got: Vec<String> = traces.into_iter().map(|t| t.trace_id).collect();
    got.sort();
    assert_eq!(got, outage);
}
