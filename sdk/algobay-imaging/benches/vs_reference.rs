//! Time of the imaging library against Pillow and OpenCV on the same real
//! photograph, side by side in one run (median of several runs each, one
//! thread): `cargo bench -p algobay-imaging`. Needs `scripts/setup.sh`.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use algobay_imaging::{gray_opencv, resize_opencv, resize_pillow, Image};

/// Every row's goal: at most this many times the reference's time.
const GOAL: f64 = 2.0;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let build = std::env::var_os("ALGOBAY_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("build"));
    let python = build.join("pytools/bin/python");
    // The photograph as raw RGB, decoded once by Pillow.
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("china.rgb");
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys, numpy as np; from PIL import Image; a = np.asarray(Image.open(sys.argv[1]).convert('RGB')); open(sys.argv[2], 'wb').write(a.tobytes()); print(a.shape[1], a.shape[0])",
        ])
        .arg(build.join("images/china.jpg"))
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
    let reps = 15;
    let mut cases = Vec::new();
    for (tw, th) in [(224, 224), (w / 2, h / 2), (w * 3 / 2, h * 3 / 2)] {
        for mode in ["nearest", "bilinear", "bicubic", "lanczos"] {
            cases.push(("pillow", "resize", mode, tw, th));
        }
        for mode in ["nearest", "linear", "cubic", "area", "lanczos4"] {
            cases.push(("opencv", "resize", mode, tw, th));
        }
    }
    cases.push(("opencv", "gray", "rgb", w, h));
    let req = serde_json::json!({
        "reps": reps,
        "cases": cases.iter().map(|(lib, op, mode, tw, th)| serde_json::json!({
            "input": raw, "width": w, "height": h, "lib": lib, "op": op, "mode": mode,
            "out_width": tw, "out_height": th,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new(&python)
        .arg(root.join("sdk/algobay-imaging/benches/reference_timing.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let theirs: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();
    println!("{w}x{h} RGB photograph, median of {reps} runs, one thread");
    println!(
        "{:<26} {:>12} {:>10} {:>10} {:>7}  goal <= {GOAL}x",
        "operation", "to", "ours ms", "ref ms", "ratio"
    );
    let mut missed = 0;
    for (i, (lib, op, mode, tw, th)) in cases.iter().enumerate() {
        let run = || match (*lib, *op) {
            ("pillow", _) => resize_pillow(&img, *tw, *th, mode.parse().unwrap()).unwrap(),
            ("opencv", "resize") => resize_opencv(&img, *tw, *th, mode.parse().unwrap()).unwrap(),
            _ => gray_opencv(&img, false).unwrap(),
        };
        std::hint::black_box(run());
        let mut t: Vec<f64> = (0..reps)
            .map(|_| {
                let s = Instant::now();
                std::hint::black_box(run());
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        let ours = t[t.len() / 2];
        let ratio = ours / theirs[i];
        let met = ratio <= GOAL;
        missed += usize::from(!met);
        println!(
            "{:<26} {:>12} {:>10.2} {:>10.2} {:>7.2}  {}",
            format!("{lib} {op} {mode}"),
            format!("{tw}x{th}"),
            ours,
            theirs[i],
            ratio,
            if met { "met" } else { "not met" }
        );
    }
    println!(
        "{} of {} rows within {GOAL}x of their reference: {}",
        cases.len() - missed,
        cases.len(),
        if missed == 0 { "met" } else { "not met" }
    );
}
