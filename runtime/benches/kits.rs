//! Benchmarks of the runtime on the example kits. Prints its figures; asserts nothing.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly by design
//!
//!   cargo bench -p algobay-runtime --bench kits [-- batching | imaging]
//!
//! `imaging` times only the resize stage compiled to WASM (simd128) in the
//! stage sandbox, beside the same resize natively and Pillow's and OpenCV's.
//!
//! Needs `scripts/setup.sh` (models, ONNX Runtime) and, for the comparison with
//! rapidocr, the reference environment `build/pyref` (see examples/golden/make_golden.py).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use algobay_runtime::archive::KitArchive;
use algobay_runtime::kitfile::Packager;
use algobay_runtime::{Runtime, RuntimeOptions, SecretKey, Tensor, TrustRoots, Value, Values};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn ort_lib() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("build/onnxruntime/libonnxruntime.so.1.32.0"))
}

fn runtime(cache: Option<PathBuf>) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: cache,
        ort_library: Some(ort_lib()),
        ort_threads: 0,
        stage_limits_cap: None,
        max_batch: 0,
    })
    .unwrap()
}

struct Stats {
    median: Duration,
    p90: Duration,
}

fn measure(iters: usize, mut f: impl FnMut()) -> Stats {
    f(); // warm up
    f();
    let mut t: Vec<Duration> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    Stats {
        median: t[t.len() / 2],
        p90: t[t.len() * 9 / 10],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn build(rt: &Runtime, key: &SecretKey, dir: &Path) -> KitArchive {
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into());
    Packager::new(rt, cargo)
        .build(dir, key, &|_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn model_only_kit(rt: &Runtime, key: &SecretKey, body: &str) -> KitArchive {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Kitfile"),
        format!("[kit]\nname = \"bench/model\"\nversion = \"0.1.0\"\nscenario = \"bench\"\n{body}"),
    )
    .unwrap();
    build(rt, key, dir.path())
}

/// VAD requests from several threads at once on one loaded kit, with and
/// without dynamic batching (one ONNX Runtime thread per session, as on a
/// serving device).
fn dynamic_batching(key: &SecretKey, roots: &TrustRoots) {
    println!(
        "## dynamic batching: VAD (9.3 s WAV) from concurrent callers, one ort thread per session"
    );
    let wav = std::fs::read(root().join("examples/kits/vad/samples/speech.wav")).unwrap();
    let archive = build(&runtime(None), key, &root().join("examples/kits/vad"));
    for callers in [1, 2, 4, 8] {
        let mut line = format!("{callers} callers:");
        for max_batch in [0, 8] {
            let rt = Runtime::new(RuntimeOptions {
                cache_dir: None,
                ort_library: Some(ort_lib()),
                ort_threads: 1,
                stage_limits_cap: None,
                max_batch,
            })
            .unwrap();
            let kit = rt.load(&archive.clone().verify(roots).unwrap()).unwrap();
            let input = || Values::from([("audio".to_string(), Value::Bytes(wav.clone()))]);
            kit.run(input()).unwrap();
            let per = 32 / callers.min(8);
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..callers {
                    s.spawn(|| {
                        for _ in 0..per {
                            kit.run(input()).unwrap();
                        }
                    });
                }
            });
            let rate = (per * callers) as f64 / t.elapsed().as_secs_f64();
            line += &format!(
                "  {} {rate:.1} req/s{}",
                if max_batch > 1 {
                    "batched"
                } else {
                    "unbatched"
                },
                if max_batch > 1 {
                    format!(" ({} calls joined)", kit.batched_calls())
                } else {
                    String::new()
                }
            );
        }
        println!("{line}");
    }
    println!();
}

fn main() {
    // `cargo bench --bench kits -- batching` runs only the dynamic batching section.
    let only_batching = std::env::args().skip(1).any(|a| a == "batching");
    let rt = runtime(None);
    let key = SecretKey::generate();
    let mut roots = TrustRoots::new();
    roots.trust(key.public());
    let kits = root().join("examples/kits");
    let load = |a: &KitArchive| rt.load(&a.clone().verify(&roots).unwrap()).unwrap();
    println!(
        "algobay-runtime benchmarks ({} cores)\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    if std::env::args().skip(1).any(|a| a == "imaging") {
        wasm_imaging(&rt);
        return;
    }
    dynamic_batching(&key, &roots);
    if only_batching {
        return;
    }
    // ------------------------------------------------ pipeline overhead vs raw ort
    println!(
        "## pipeline overhead: model steps through the kit vs the raw ort session, same tensors"
    );
    let ocr = build(&rt, &key, &kits.join("ocr"));
    let ocr_kit = load(&ocr);
    let png = std::fs::read(kits.join("ocr/samples/invoice.png")).unwrap();
    let pre = ocr_common::preprocess(&ocr_common::PreConfig::default(), &png).unwrap();
    let det_x = Tensor::from_f32(vec![1, 3, pre.det_h, pre.det_w], &pre.det_x);
    let det_kit = load(&model_only_kit(
        &rt,
        &key,
        &format!(
            "[[input]]\nname = \"x\"\ntype = \"f32[1,3,?,?]\"\n[[output]]\nname = \"sigmoid_0.tmp_0\"\ntype = \"f32[1,1,?,?]\"\n[[step]]\nname = \"det\"\nmodel = \"{}\"\n",
            kits.join("ocr/models/det.onnx").display()
        ),
    ));
    let env = rt.ort().unwrap();
    let mut raw_det = ort::session::Session::builder(env.environment())
        .unwrap()
        .commit_from_file(kits.join("ocr/models/det.onnx"))
        .unwrap();
    let det_in = Values::from([("x".to_string(), Value::Tensor(det_x.clone()))]);
    let kit_det = measure(20, || {
        det_kit.run(det_in.clone()).unwrap();
    });
    let raw = measure(20, || {
        let t = ort::value::Tensor::from_array((
            vec![1i64, 3, pre.det_h as i64, pre.det_w as i64],
            pre.det_x.clone(),
        ))
        .unwrap();
        let out = raw_det.run(ort::inputs!["x" => t]).unwrap();
        let (_, v) = out[0].try_extract_tensor::<f32>().unwrap();
        std::hint::black_box(v.len());
    });
    println!(
        "ocr det  {}x{}: kit {:.2} ms, raw ort {:.2} ms (median) -> overhead {:+.2}%",
        pre.det_w,
        pre.det_h,
        ms(kit_det.median),
        ms(raw.median),
        (ms(kit_det.median) / ms(raw.median) - 1.0) * 100.0
    );

    let vad = build(&rt, &key, &kits.join("vad"));
    let vad_kit = load(&vad);
    let wav = std::fs::read(kits.join("vad/samples/speech.wav")).unwrap();
    let vad_out = vad_kit
        .run_timed(Values::from([(
            "audio".to_string(),
            Value::Bytes(wav.clone()),
        )]))
        .unwrap();
    let scan_kit = load(&model_only_kit(
        &rt,
        &key,
        &format!(
            "[[input]]\nname = \"frames\"\ntype = \"f32[?,1,576]\"\n[[input]]\nname = \"state\"\ntype = \"f32[2,1,128]\"\n[[input]]\nname = \"sr\"\ntype = \"i64[]\"\n\
[[output]]\nname = \"probs\"\ntype = \"f32[?,1,1]\"\n[[step]]\nname = \"vad\"\nmodel = \"{}\"\nscan = {{ over = [\"input\"], carry = {{ stateN = \"state\" }} }}\n\
inputs = {{ input = \"frames\" }}\noutputs = {{ output = \"probs\", stateN = \"vad_state\" }}\n",
            kits.join("vad/models/silero_vad.onnx").display()
        ),
    ));
    // The same frames the pre stage makes.
    let samples: Vec<f32> = wav[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
        .collect();
    let n = samples.len().div_ceil(512);
    let mut frames = vec![0f32; n * 576];
    for i in 0..n {
        for k in 0..576 {
            let idx = (i * 512 + k) as isize - 64;
            frames[i * 576 + k] = if idx >= 0 {
                samples.get(idx as usize).copied().unwrap_or(0.0)
            } else {
                0.0
            };
        }
    }
    let scan_in = Values::from([
        (
            "frames".to_string(),
            Value::Tensor(Tensor::from_f32(vec![n, 1, 576], &frames)),
        ),
        (
            "state".to_string(),
            Value::Tensor(Tensor::from_f32(vec![2, 1, 128], &[0.0; 256])),
        ),
        (
            "sr".to_string(),
            Value::Tensor(Tensor::from_i64(vec![], &[16000])),
        ),
    ]);
    let kit_scan = measure(20, || {
        scan_kit.run(scan_in.clone()).unwrap();
    });
    let mut raw_vad = ort::session::Session::builder(env.environment())
        .unwrap()
        .commit_from_file(kits.join("vad/models/silero_vad.onnx"))
        .unwrap();
    let raw = measure(20, || {
        let mut state = vec![0f32; 256];
        for i in 0..n {
            let x = ort::value::Tensor::from_array((
                vec![1i64, 576],
                frames[i * 576..(i + 1) * 576].to_vec(),
            ))
            .unwrap();
            let s = ort::value::Tensor::from_array((vec![2i64, 1, 128], state)).unwrap();
            let sr = ort::value::Tensor::from_array(((), vec![16000i64])).unwrap();
            let out = raw_vad
                .run(ort::inputs!["input" => x, "state" => s, "sr" => sr])
                .unwrap();
            let (_, p) = out["output"].try_extract_tensor::<f32>().unwrap();
            std::hint::black_box(p[0]);
            state = out["stateN"]
                .try_extract_tensor::<f32>()
                .unwrap()
                .1
                .to_vec();
        }
    });
    println!(
        "vad scan {n} windows: kit {:.2} ms, raw ort {:.2} ms (median) -> overhead {:+.2}%",
        ms(kit_scan.median),
        ms(raw.median),
        (ms(kit_scan.median) / ms(raw.median) - 1.0) * 100.0
    );
    let whole_vad = measure(20, || {
        vad_kit
            .run(Values::from([(
                "audio".to_string(),
                Value::Bytes(wav.clone()),
            )]))
            .unwrap();
    });
    println!(
        "vad kit end to end (WAV in, segments out): {:.2} ms median, {:.2} ms p90; steps: {}",
        ms(whole_vad.median),
        ms(whole_vad.p90),
        vad_out
            .1
            .iter()
            .map(|s| format!("{} {:.2} ms", s.step, ms(s.elapsed)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // ------------------------------------------------ wasm vs native
    println!("\n## WASM stage vs the same Rust code compiled natively (ocr pre-processing of {} bytes of PNG)", png.len());
    let pre_kit = load(&model_only_kit(
        &rt,
        &key,
        &format!(
            "[[input]]\nname = \"image\"\ntype = \"bytes\"\n[[output]]\nname = \"det_x\"\ntype = \"f32[1,3,?,?]\"\n[[step]]\nname = \"pre\"\nstage = \"{}\"\n",
            root().join("examples/stages/ocr-pre").display()
        ),
    ));
    let img_in = Values::from([("image".to_string(), Value::Bytes(png.clone()))]);
    let wasm = measure(30, || {
        pre_kit.run(img_in.clone()).unwrap();
    });
    let native = measure(30, || {
        let p = ocr_common::preprocess(&ocr_common::PreConfig::default(), &png).unwrap();
        // The same output values the stage hands back.
        let t = Tensor::from_f32(vec![1, 3, p.det_h, p.det_w], &p.det_x);
        let i = Tensor {
            dtype: algobay_runtime::DType::U8,
            shape: vec![p.image.h, p.image.w, 3],
            data: p.image.data,
        };
        std::hint::black_box((t, i));
    });
    println!(
        "wasm {:.2} ms, native {:.2} ms (median) -> {:.2}x native",
        ms(wasm.median),
        ms(native.median),
        ms(wasm.median) / ms(native.median)
    );

    // ------------------------------------------------ load times
    println!("\n## kit load (verify + compile WASM + load models)");
    let cache = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let verified = KitArchive::read_file(&{
        let p = cache.path().join("ocr.kit");
        ocr.write_file(&p).unwrap();
        p
    })
    .unwrap()
    .verify(&roots)
    .unwrap();
    let read_verify = t.elapsed();
    let cold_rt = runtime(Some(cache.path().join("wasm")));
    let t = Instant::now();
    cold_rt.load(&verified).unwrap();
    let cold = t.elapsed();
    let warm_rt = runtime(Some(cache.path().join("wasm")));
    let t = Instant::now();
    warm_rt.load(&verified).unwrap();
    let warm = t.elapsed();
    println!(
        "ocr kit ({:.1} MB): read + verify {:.1} ms; load cold {:.1} ms; load with the WASM cache {:.1} ms",
        ocr.blobs.values().map(|b| b.len()).sum::<usize>() as f64 / 1e6,
        ms(read_verify),
        ms(cold),
        ms(warm)
    );

    // ------------------------------------------------ ocr vs rapidocr
    println!("\n## OCR end to end vs rapidocr_onnxruntime (Python), same images, same models, angle classifier off");
    let images = [
        kits.join("ocr/samples/invoice.png"),
        kits.join("ocr/samples/invoice.jpg"),
    ];
    let python = root().join("build/pyref/bin/python");
    // rapidocr runs before and after ours, so drift of the machine shows and averages out.
    let rapid = || -> Option<(f64, f64)> {
        if !python.exists() {
            return None;
        }
        let out = std::process::Command::new(&python)
            .arg(root().join("runtime/benches/rapidocr_bench.py"))
            .args(&images)
            .arg("15")
            .output()
            .ok()?;
        if !out.status.success() {
            println!(
                "rapidocr run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((v["median_ms"].as_f64()?, v["ort_median_ms"].as_f64()?))
    };
    let before = rapid();
    let blobs: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let request = |b: &Vec<u8>| Values::from([("image".to_string(), Value::Bytes(b.clone()))]);
    for b in blobs.iter().chain(&blobs) {
        ocr_kit.run(request(b)).unwrap();
    }
    let (mut totals, mut in_ort) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        for b in &blobs {
            let t = Instant::now();
            let (_, steps) = ocr_kit.run_timed(request(b)).unwrap();
            totals.push(t.elapsed());
            in_ort.push(
                steps
                    .iter()
                    .filter(|s| s.kind == "onnx")
                    .map(|s| s.elapsed)
                    .sum::<Duration>(),
            );
        }
    }
    let after = rapid();
    totals.sort();
    in_ort.sort();
    let ours = ms(totals[totals.len() / 2]);
    let ours_ort = ms(in_ort[in_ort.len() / 2]);
    println!(
        "algobay: {ours:.1} ms per image (median), {ours_ort:.1} ms inside ONNX Runtime ({:.0}%)",
        ours_ort / ours * 100.0
    );
    let (Some(before), Some(after)) = (before, after) else {
        println!(
            "rapidocr: skipped ({} is missing; see examples/golden/make_golden.py)",
            python.display()
        );
        return;
    };
    for (label, (t, o)) in [("before", before), ("after", after)] {
        println!("rapidocr ({label} ours): {t:.1} ms per image (median), {o:.1} ms inside ONNX Runtime ({:.0}%)", o / t * 100.0);
    }
    let theirs = (before.0 + after.0) / 2.0;
    println!(
        "ratio: algobay is {:.2}x faster than rapidocr (against the mean of its two runs)",
        theirs / ours
    );
}

/// The resize stage compiled to WASM with simd128, run in the stage sandbox
/// (the pixels copied in and out included), against the same resize natively
/// and against Pillow and OpenCV on the same photograph: each the median of
/// 15 runs, one thread.
fn wasm_imaging(rt: &Runtime) {
    use algobay_imaging::{resize_opencv, resize_pillow, Image};
    use algobay_runtime::manifest::Limits;
    let python = root().join("build/pytools/bin/python");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("china.rgb");
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys, numpy as np; from PIL import Image; a = np.asarray(Image.open(sys.argv[1]).convert('RGB')); open(sys.argv[2], 'wb').write(a.tobytes()); print(a.shape[1], a.shape[0])",
        ])
        .arg(root().join("build/images/china.jpg"))
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dims: Vec<usize> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let (w, h) = (dims[0], dims[1]);
    let img = Image::new(w, h, 3, std::fs::read(&raw).unwrap()).unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let wasm = std::fs::read(target.join("wasm32-wasip2/release/stage_resize.wasm"))
        .expect("build the stages first (scripts/common.sh does)");
    let mut cases = Vec::new();
    for (tw, th) in [(224, 224), (w / 2, h / 2), (w * 3 / 2, h * 3 / 2)] {
        for mode in ["nearest", "bilinear", "bicubic", "lanczos"] {
            cases.push(("pillow", mode, tw, th));
        }
        for mode in ["nearest", "linear", "cubic", "area", "lanczos4"] {
            cases.push(("opencv", mode, tw, th));
        }
    }
    let reps = 15;
    let req = serde_json::json!({
        "reps": reps,
        "cases": cases.iter().map(|(lib, mode, tw, th)| serde_json::json!({
            "input": raw, "width": w, "height": h, "lib": lib, "op": "resize", "mode": mode,
            "out_width": tw, "out_height": th,
        })).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(&python)
        .arg(root().join("sdk/algobay-imaging/benches/reference_timing.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), req.to_string().as_bytes())
        .unwrap();
    let theirs: Vec<f64> =
        serde_json::from_slice(&child.wait_with_output().unwrap().stdout).unwrap();
    let input: Values = [(
        "pixels".to_owned(),
        Value::Tensor(
            Tensor::new(algobay_runtime::DType::U8, vec![h, w, 3], img.data.clone()).unwrap(),
        ),
    )]
    .into_iter()
    .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // What entering the sandbox with this image costs whatever the stage
    // does: the pixels copied into its memory and a 1x1 result out.
    let floor = {
        let config = serde_json::json!({"width": 1, "height": 1, "filter": "opencv:nearest"});
        let stage = rt
            .stages()
            .prepare("resize", &wasm, &config, Vec::new(), Limits::default())
            .unwrap();
        ms(measure(reps * 4, || {
            stage.process(&input).unwrap();
        })
        .median)
    };
    println!("## the resize stage in WASM (simd128) against native and the reference libraries");
    println!("{w}x{h} RGB photograph, median of {reps} runs, one thread");
    println!(
        "a call that only carries the {w}x{h} image into the sandbox (a 1x1 result): {floor:.3} ms"
    );
    println!(
        "{:<24} {:>10} {:>9} {:>10} {:>8} {:>12} {:>20}",
        "operation", "to", "wasm ms", "native ms", "ref ms", "wasm / ref", "(wasm - carry) / ref"
    );
    let mut worst: f64 = 0.0;
    for (i, (lib, mode, tw, th)) in cases.iter().enumerate() {
        let config =
            serde_json::json!({"width": tw, "height": th, "filter": format!("{lib}:{mode}")});
        let stage = rt
            .stages()
            .prepare("resize", &wasm, &config, Vec::new(), Limits::default())
            .unwrap();
        let in_wasm = measure(reps, || {
            stage.process(&input).unwrap();
        });
        let native = measure(reps, || {
            if *lib == "pillow" {
                resize_pillow(&img, *tw, *th, mode.parse().unwrap()).unwrap();
            } else {
                resize_opencv(&img, *tw, *th, mode.parse().unwrap()).unwrap();
            }
        });
        let ratio = ms(in_wasm.median) / theirs[i];
        worst = worst.max(ratio);
        println!(
            "{:<24} {:>10} {:>9.2} {:>10.2} {:>8.2} {:>12.2} {:>20.2}",
            format!("{lib} {mode}"),
            format!("{tw}x{th}"),
            ms(in_wasm.median),
            ms(native.median),
            theirs[i],
            ratio,
            (ms(in_wasm.median) - floor) / theirs[i]
        );
    }
    println!(
        "goal: every row within 2x of its reference in WASM: worst {worst:.2}x — {}",
        if worst <= 2.0 { "met" } else { "NOT met" }
    );
}
