//! The example kits, end to end, on real models and real inputs.

use std::sync::Arc;

use algobay_runtime::golden::{run_golden, tensor_from_json};
use algobay_runtime::{Value, Values};

use crate::common::*;

fn json_output(out: &Values, name: &str) -> serde_json::Value {
    match &out[name] {
        Value::Json(s) => serde_json::from_str(s).expect("json output"),
        other => panic!("output {name} is {other:?}"),
    }
}

#[test]
fn ocr_kit_reads_rendered_text_as_rapidocr_does() {
    let kit = load(&example("ocr"));
    let out = kit
        .run(Values::from([(
            "image".into(),
            Value::Bytes(sample("ocr", "invoice.png")),
        )]))
        .unwrap();
    let lines = json_output(&out, "result");
    let texts: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "ALGOBAYEDGEKIT2026",
            "InvoiceNo.48213",
            "Total1,250.00",
            "Shipped to Hangzhou warehouse"
        ]
    );
    for l in lines.as_array().unwrap() {
        let pts = l["box"].as_array().unwrap();
        assert_eq!(pts.len(), 4, "a box has four corners");
        for p in pts {
            let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
            assert!(
                (0.0..=760.0).contains(&x) && (0.0..=200.0).contains(&y),
                "corner {x},{y} outside the image"
            );
        }
        assert!(l["score"].as_f64().unwrap() > 0.9);
    }
}

#[test]
fn vad_kit_finds_the_two_utterances() {
    let kit = load(&example("vad"));
    let out = kit
        .run(Values::from([(
            "audio".into(),
            Value::Bytes(sample("vad", "speech.wav")),
        )]))
        .unwrap();
    let segs = json_output(&out, "segments");
    let segs = segs["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 2, "{segs:?}");
    // Speech starts after 0.8 s of silence and the second utterance after a 1.2 s pause.
    assert!((segs[0]["start"].as_f64().unwrap() - 0.8).abs() < 0.1);
    assert!(segs[1]["start"].as_f64().unwrap() > segs[0]["end"].as_f64().unwrap() + 0.8);
}

#[test]
fn embed_kit_returns_a_unit_vector_close_to_the_reference() {
    let kit = load(&example("embed"));
    let text = String::from_utf8(sample("embed", "edge.txt")).unwrap();
    let out = kit
        .run(Values::from([("text".into(), Value::Text(text))]))
        .unwrap();
    let Value::Tensor(t) = &out["embedding"] else {
        panic!("embedding is not a tensor")
    };
    assert_eq!(t.shape, vec![1, 384]);
    let e = t.to_f32().unwrap();
    let norm: f32 = e.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    let expected: serde_json::Value =
        serde_json::from_slice(&sample("embed", "edge.expected.json")).unwrap();
    let r = tensor_from_json("embedding", &expected["embedding"])
        .unwrap()
        .to_f32()
        .unwrap();
    let cos: f32 = e.iter().zip(&r).map(|(a, b)| a * b).sum();
    assert!(cos > 0.999, "cosine {cos}");
    // Similar sentences are closer than unrelated ones.
    let embed = |s: &str| match &kit
        .run(Values::from([("text".into(), Value::Text(s.into()))]))
        .unwrap()["embedding"]
    {
        Value::Tensor(t) => t.to_f32().unwrap(),
        _ => unreachable!(),
    };
    let (a, b, c) = (
        embed("The cat sits on the mat."),
        embed("A cat is sitting on a rug."),
        embed("Quarterly revenue rose by ten percent."),
    );
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    assert!(dot(&a, &b) > dot(&a, &c) + 0.2);
}

#[test]
fn wordpiece_stage_matches_the_reference_tokenizer() {
    let dir = kitfile(&format!(
        r#"
[kit]
name = "test/wordpiece"
version = "0.1.0"
scenario = "tokenizer check"
[[input]]
name = "text"
type = "text"
[[output]]
name = "input_ids"
type = "i64[1,?]"
[[step]]
name = "tokenize"
stage = "{stage}"
assets = {{ vocab = "{vocab}" }}
"#,
        stage = root().join("examples/stages/wordpiece").display(),
        vocab = root()
            .join("examples/kits/embed/models/vocab.txt")
            .display(),
    ));
    let kit = load(&build(dir.path()).unwrap());
    let cases: Vec<serde_json::Value> =
        serde_json::from_slice(&sample("embed", "wordpiece_cases.json")).unwrap();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<i64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let out = kit
            .run(Values::from([("text".into(), Value::Text(text.into()))]))
            .unwrap();
        let Value::Tensor(t) = &out["input_ids"] else {
            panic!()
        };
        assert_eq!(t.to_i64().unwrap(), want, "token ids of {text:?}");
    }
}

#[test]
fn digits_kit_classifies_held_out_rows() {
    let archive = example("digits");
    let kit = load(&archive);
    let outcomes = run_golden(&kit, &archive).unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(|o| o.failure.is_none()), "{outcomes:?}");
}

#[test]
fn many_concurrent_requests_on_one_loaded_kit_agree() {
    let kit = load(&example("vad"));
    let audio = sample("vad", "speech.wav");
    let first = kit
        .run(Values::from([(
            "audio".into(),
            Value::Bytes(audio.clone()),
        )]))
        .unwrap();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let kit = Arc::clone(&kit);
            let audio = audio.clone();
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| {
                        kit.run(Values::from([(
                            "audio".into(),
                            Value::Bytes(audio.clone()),
                        )]))
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for out in h.join().unwrap() {
            assert_eq!(out, first);
        }
    }
}

#[test]
fn async_callers_run_requests_off_the_async_threads() {
    let kit = load(&example("digits"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let pixels = tensor_from_json(
        "pixels",
        &serde_json::from_slice(&sample("digits", "row9.json")).unwrap(),
    )
    .unwrap();
    let outs = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let kit = Arc::clone(&kit);
            let v = Values::from([("pixels".into(), Value::Tensor(pixels.clone()))]);
            tasks.push(tokio::spawn(async move { kit.run_async(v).await }));
        }
        let mut outs = Vec::new();
        for t in tasks {
            outs.push(t.await.unwrap().unwrap());
        }
        outs
    });
    let label = |o: &Values| {
        json_output(o, "result")[0][0]["label"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(outs.iter().all(|o| label(o) == "9"));
}

#[test]
fn second_load_uses_the_compiled_stage_cache() {
    let cache = tempfile::tempdir().unwrap();
    let archive = example("vad");
    let verified = archive.clone().verify(&trust()).unwrap();
    let first = runtime_with_cache(Some(cache.path().into()));
    first.load(&verified).unwrap();
    let cached: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        cached.len(),
        2,
        "one compiled file per distinct stage: {cached:?}"
    );
    let second = runtime_with_cache(Some(cache.path().into()));
    let kit = second.load(&verified).unwrap();
    let after: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(after.len(), 2);
    let out = kit
        .run(Values::from([(
            "audio".into(),
            Value::Bytes(sample("vad", "speech.wav")),
        )]))
        .unwrap();
    assert!(out.contains_key("segments"));
}

/// The sample recording, reversed and at half volume: three inputs with different answers.
fn three_recordings() -> Vec<Vec<u8>> {
    let wav = sample("vad", "speech.wav");
    let (head, pcm) = wav.split_at(44);
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let encode = |s: &mut dyn Iterator<Item = i16>| {
        let mut out = head.to_vec();
        out.extend(s.flat_map(|x| x.to_le_bytes()));
        out
    };
    vec![
        wav.clone(),
        encode(&mut samples.iter().rev().copied()),
        encode(&mut samples.iter().map(|x| x / 2)),
    ]
}

fn batching_runtime() -> algobay_runtime::Runtime {
    algobay_runtime::Runtime::new(algobay_runtime::RuntimeOptions {
        cache_dir: None,
        ort_library: Some(ort_library()),
        ort_threads: 1,
        stage_limits_cap: None,
        max_batch: 8,
    })
    .unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    match v {
        Value::Tensor(t) => bytemuck::pod_collect_to_vec::<u8, f32>(&t.data),
        other => panic!("not a tensor: {other:?}"),
    }
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-4, "{what} differs by {worst} when batched");
}

#[test]
fn overlapping_scans_are_batched_and_each_answers_as_it_would_alone() {
    let alone = load(&example("vad"));
    let inputs = three_recordings();
    let input = |i: usize| Values::from([("audio".into(), Value::Bytes(inputs[i].clone()))]);
    let expected: Vec<Values> = (0..3).map(|i| alone.run(input(i)).unwrap()).collect();
    assert_ne!(f32s(&expected[0]["probs"]), f32s(&expected[1]["probs"]));
    assert_eq!(alone.batched_calls(), 0, "this runtime does not batch");

    let rt = batching_runtime();
    let kit = rt.load(&example("vad").verify(&trust()).unwrap()).unwrap();
    // More callers than cores (a model keeps one session per core), so that calls must wait and join.
    let callers = 3 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let outs: Vec<(usize, Values)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers)
            .map(|t| {
                let (kit, input) = (&kit, &input);
                s.spawn(move || {
                    (0..2)
                        .map(|k| {
                            let i = (t + k) % 3;
                            (i, kit.run(input(i)).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        kit.batched_calls() > 0,
        "six requests at once were never joined"
    );
    for (i, out) in &outs {
        assert_eq!(out["segments"], expected[*i]["segments"], "recording {i}");
        assert_close(&f32s(&out["probs"]), &f32s(&expected[*i]["probs"]), "probs");
    }
}

#[test]
fn overlapping_single_calls_are_batched_and_each_gets_its_own_answer() {
    // The VAD model as a plain step: one window and a state in, probability and state out.
    let dir = kitfile(&format!(
        r#"[kit]
name = "t/vad-window"
version = "1.0.0"
scenario = "test"

[[input]]
name = "input"
type = "f32[1,576]"

[[input]]
name = "state"
type = "f32[2,1,128]"

[[input]]
name = "sr"
type = "i64[]"

[[output]]
name = "output"
type = "f32[1,1]"

[[output]]
name = "stateN"
type = "f32[2,1,128]"

[[step]]
name = "vad"
model = "{}"
batch = {{ input = 0, state = 1, output = 0, stateN = 1 }}
"#,
        root()
            .join("examples/kits/vad/models/silero_vad.onnx")
            .display()
    ));
    let archive = build(dir.path()).unwrap();
    let window = |seed: usize| {
        let x: Vec<f32> = (0..576)
            .map(|k| ((k * (seed + 3)) as f32 * 0.05).sin() * 0.3 * (seed % 4) as f32)
            .collect();
        let st: Vec<f32> = (0..256).map(|k| ((k + seed) % 7) as f32 * 0.01).collect();
        Values::from([
            (
                "input".into(),
                Value::Tensor(algobay_runtime::Tensor::from_f32(vec![1, 576], &x)),
            ),
            (
                "state".into(),
                Value::Tensor(algobay_runtime::Tensor::from_f32(vec![2, 1, 128], &st)),
            ),
            (
                "sr".into(),
                Value::Tensor(
                    algobay_runtime::Tensor::new(
                        algobay_runtime::DType::I64,
                        vec![],
                        16000i64.to_le_bytes().to_vec(),
                    )
                    .unwrap(),
                ),
            ),
        ])
    };
    let alone = load(&archive);
    let rt = batching_runtime();
    let kit = rt.load(&archive.clone().verify(&trust()).unwrap()).unwrap();
    let callers = 3 * std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for t in 0..callers {
            let (kit, alone, window) = (&kit, &alone, &window);
            s.spawn(move || {
                for k in 0..200 {
                    let seed = t * 1000 + k;
                    let got = kit.run(window(seed)).unwrap();
                    let want = alone.run(window(seed)).unwrap();
                    assert_close(&f32s(&got["output"]), &f32s(&want["output"]), "output");
                    assert_close(&f32s(&got["stateN"]), &f32s(&want["stateN"]), "stateN");
                }
            });
        }
    });
    assert!(
        kit.batched_calls() > 0,
        "1,200 overlapping calls were never joined"
    );
}

#[test]
fn missing_onnx_runtime_says_how_to_install_it() {
    let rt = algobay_runtime::Runtime::new(algobay_runtime::RuntimeOptions {
        cache_dir: None,
        ort_library: Some("/nonexistent/libonnxruntime.so.1.32.0".into()),
        ort_threads: 1,
        stage_limits_cap: None,
        max_batch: 0,
    })
    .unwrap();
    let verified = example("vad").verify(&trust()).unwrap();
    let err = rt.load(&verified).unwrap_err().to_string();
    assert!(
        err.contains("onnx runtime is not available")
            && err.contains("pip download --no-deps onnxruntime"),
        "{err}"
    );
}
