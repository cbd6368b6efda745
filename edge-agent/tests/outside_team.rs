//! An outside team's path, with the documentation alone: from an empty folder
//! outside this repository, `algobay stage new`, a model whose ONNX file
//! states a wrong output shape (kept byte for byte, its shape declared in the
//! Kitfile instead), build, test, publish, push, find by a part of its name,
//! deploy to a device, and call it over HTTP with a base64 image in JSON and
//! with the binary extension. A JPEG sample is checked against OpenCV's
//! decoding with a tolerance per output field, a wrong expectation shows every
//! mismatch at once, a hyphenated name with a typo is found, and the README's
//! file-based curl example sends a photograph too large for a command line.
//! Real processes throughout.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;

fn algobay_bin() -> PathBuf {
    let p = registry_bin().with_file_name("algobay");
    assert!(p.exists(), "{} is not built", p.display());
    p
}

/// The workspace's target folder, so that the team's crates reuse what is built.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            registry_bin()
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .to_path_buf()
        })
}

fn build_dir() -> PathBuf {
    std::env::var_os("ALGOBAY_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("build"))
}

struct Team {
    dir: tempfile::TempDir,
}

impl Team {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn algobay(&self) -> Command {
        let mut c = Command::new(algobay_bin());
        c.current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("ALGOBAY_CACHE_DIR", self.path("cache"))
            .env("ORT_DYLIB_PATH", ort_lib())
            .env("CARGO_TARGET_DIR", target_dir())
            .env_remove("ALGOBAY_REGISTRY")
            .env_remove("ALGOBAY_TOKEN")
            .env_remove("ALGOBAY_TRUST")
            .arg("--quiet");
        c
    }
}

fn kitfile(ports: &str) -> String {
    kitfile_expecting(ports, "scan.expected.json")
}

fn kitfile_expecting(ports: &str, scan_expected: &str) -> String {
    format!(
        r#"[kit]
name = "acme/doc-orientation"
version = "1.0.0"
scenario = "document scanning"
industries = ["finance"]
description = "Says which way up a scanned page is."
license = "Apache-2.0"

[[input]]
name = "image"
type = "bytes"
media = "image/x-portable-graymap"

[[output]]
name = "result"
type = "json"

[[step]]
name = "pre"
stage = "../acme-pre"
config = {{ width = 16, height = 16, resize = "opencv:area", gray = true }}

[[step]]
name = "model"
model = "models/orientation.onnx"
inputs = {{ x = "input" }}
outputs = {{ y = "logits" }}
{ports}

[[step]]
name = "post"
stage = "../acme-post"
config = {{ labels = ["0", "90", "180", "270"] }}

[[golden]]
inputs = {{ image = "samples/page.pgm" }}
expected = "samples/page.expected.json"
tolerance = {{ abs = 1e-4 }}

# A colour JPEG: decoded as OpenCV decodes it, the score agrees to float
# rounding; every other number must be equal.
[[golden]]
inputs = {{ image = "samples/scan.jpg" }}
expected = "samples/{scan_expected}"
[golden.tolerance]
abs = 0.0
[golden.tolerance.fields]
"result.top.score" = {{ abs = 1e-5 }}
"#
    )
}

const INFER: &str = "/v2/models/doc-orientation/infer";

/// The top label of an Open Inference Protocol answer whose `result` is JSON.
fn label(answer: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(answer).unwrap();
    let result: serde_json::Value =
        serde_json::from_str(v["outputs"][0]["data"][0].as_str().unwrap()).unwrap();
    result["top"][0]["label"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The answer to a file sent as one `BYTES` element with the binary
/// extension: a 4-byte little-endian length, then the bytes.
fn infer_binary(agent: &str, file: &[u8]) -> Vec<u8> {
    let mut tensor = (file.len() as u32).to_le_bytes().to_vec();
    tensor.extend_from_slice(file);
    let head = serde_json::json!({"inputs": [{
        "name": "image", "datatype": "BYTES", "shape": [1],
        "parameters": {"binary_data_size": tensor.len()},
    }]})
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(&tensor);
    let (code, answer) = http_with(
        agent,
        "POST",
        INFER,
        &[("Inference-Header-Content-Length", &head.len().to_string())],
        &body,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&answer.body));
    answer.body
}

#[test]
fn an_outside_team_goes_from_an_empty_folder_to_a_kit_serving_on_a_device() {
    let team = Team {
        dir: tempfile::tempdir().unwrap(),
    };
    assert!(
        !team.dir.path().starts_with(root()),
        "must run outside the repository"
    );

    // 1. Two stage crates from the templates; their unit tests pass natively.
    ok(team
        .algobay()
        .args(["stage", "new", "acme-pre", "--kind", "preprocess"]));
    ok(team
        .algobay()
        .args(["stage", "new", "acme-post", "--kind", "postprocess"]));
    for name in ["acme-pre", "acme-post"] {
        assert!(team
            .path(name)
            .join("vendor/algobay-stage/wit/stage.wit")
            .exists());
        ok(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .arg("test")
                .arg("--release")
                .current_dir(team.path(name))
                .env("CARGO_TARGET_DIR", target_dir()),
        );
    }

    // The API reference of the crates a stage is written with builds offline
    // in the stage's own folder, as docs/stages.md says.
    ok(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "doc",
                "--no-deps",
                "-p",
                "algobay-stage",
                "-p",
                "algobay-imaging",
            ])
            .args(["-p", "algobay-audio", "-p", "algobay-text"])
            .current_dir(team.path("acme-pre"))
            .env("CARGO_TARGET_DIR", team.path("doc-target")),
    );
    for page in [
        "algobay_stage/trait.Stage.html",
        "algobay_imaging/fn.decode_jpeg.html",
        "algobay_audio/fn.decode_wav.html",
        "algobay_text/fn.mask_pii.html",
    ] {
        assert!(team.path("doc-target/doc").join(page).exists(), "{page}");
    }

    // 2. The model they brought, its sample and its reference output.
    let kit_dir = team.path("doc-orientation");
    let py = build_dir().join("pytools/bin/python");
    let out = Command::new(&py)
        .arg(root().join("edge-agent/tests/python/outside_model.py"))
        .arg(&kit_dir)
        .arg(build_dir().join("images/china.jpg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (want, want_jpeg) = stdout.trim().split_once(' ').unwrap();
    let (want, want_jpeg) = (want.to_owned(), want_jpeg.to_owned());
    let model_bytes = std::fs::read(kit_dir.join("models/orientation.onnx")).unwrap();
    let model_digest = algobay_runtime::Digest::of(&model_bytes).to_string();

    // 3. Without a port override the golden sample shows what is wrong, by name.
    ok(team
        .algobay()
        .args(["keygen", "-o"])
        .arg(team.path("team.key")));
    std::fs::write(kit_dir.join("Kitfile"), kitfile("")).unwrap();
    let (code, _, err) = run(team
        .algobay()
        .args(["kit", "build"])
        .arg(&kit_dir)
        .arg("-o")
        .arg(team.path("doc.kit"))
        .arg("--key")
        .arg(team.path("team.key")));
    assert_ne!(code, 0);
    assert!(
        err.contains("model step `model`")
            && err.contains("output `y` is f32[1,4]")
            && err.contains("f32[1,7]")
            && err.contains("the model file states"),
        "{err}"
    );

    // 3b. A wrong expectation: every mismatch of the sample is listed, and the
    //     golden report holds every sample's whole output.
    std::fs::write(
        kit_dir.join("Kitfile"),
        kitfile_expecting("ports = { y = \"f32[1,4]\" }", "scan.wrong.json"),
    )
    .unwrap();
    let (code, _, err) = run(team
        .algobay()
        .args(["kit", "build"])
        .arg(&kit_dir)
        .arg("-o")
        .arg(team.path("doc.kit"))
        .arg("--key")
        .arg(team.path("team.key"))
        .arg("--golden-report")
        .arg(team.path("golden.json")));
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("1 of 2 samples failed")
            && err.contains("output `result`.top[0].label: got")
            && err.contains("output `result`.top[0].score: got")
            && err.contains("(tolerance 0.00001)"),
        "{err}"
    );
    assert!(!team.path("doc.kit").exists(), "nothing is written");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(team.path("golden.json")).unwrap()).unwrap();
    let samples = report["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2, "{report}");
    assert_eq!(samples[0]["passed"], true);
    assert_eq!(samples[1]["passed"], false);
    let got = &samples[1]["outputs"]["result"];
    assert_eq!(got["top"][0]["label"], want_jpeg.as_str(), "{report}");

    // 4. With the real shape declared it builds (in the crates' own folders), tests and
    //    keeps the model file as it came.
    std::fs::write(
        kit_dir.join("Kitfile"),
        kitfile("ports = { y = \"f32[1,4]\" }"),
    )
    .unwrap();
    ok(team
        .algobay()
        .args(["kit", "build"])
        .arg(&kit_dir)
        .arg("-o")
        .arg(team.path("doc.kit"))
        .arg("--key")
        .arg(team.path("team.key")));
    let out = ok(team
        .algobay()
        .args(["kit", "test"])
        .arg(team.path("doc.kit"))
        .arg("--trust")
        .arg(team.path("team.key.pub")));
    assert!(out.contains("1/1") || out.contains("passed"), "{out}");
    let inspect = ok(team
        .algobay()
        .args(["kit", "inspect"])
        .arg(team.path("doc.kit")));
    assert!(inspect.contains(&model_digest), "{inspect}");
    assert!(inspect.contains("ports declared"), "{inspect}");
    assert!(inspect.contains("stage (wasm simd128)"), "{inspect}");
    assert_eq!(
        std::fs::read(kit_dir.join("models/orientation.onnx")).unwrap(),
        model_bytes
    );

    // 5. A registry; an operator registers the team; the team publishes.
    let reg = RegistryProc::start(&team.path("registry"), 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let op = rt.block_on(reg.client(&reg.operator));
    let public = std::fs::read_to_string(team.path("team.key.pub")).unwrap();
    rt.block_on(op.create_team("acme", "", public.trim()))
        .unwrap();
    let (_, token) = rt.block_on(op.create_token("team", "acme", 0)).unwrap();
    std::fs::write(team.path("registry.pem"), &reg.ca_pem).unwrap();
    ok(team
        .algobay()
        .args([
            "login",
            "--registry",
            &reg.url(),
            "--token",
            &token,
            "--ca-cert",
        ])
        .arg(team.path("registry.pem")));
    ok(team
        .algobay()
        .args(["tool", "publish"])
        .arg(target_dir().join("wasm32-wasip2/release/acme_pre.wasm"))
        .args([
            "--name",
            "acme/pgm-prepare",
            "--version",
            "0.1.0",
            "--kind",
            "preprocess",
        ]));
    ok(team
        .algobay()
        .args(["model", "publish"])
        .arg(kit_dir.join("models/orientation.onnx"))
        .args([
            "--name",
            "acme/orientation",
            "--version",
            "1.0.0",
            "--domain",
            "vision",
            "--task",
            "classification",
        ]));
    let out = ok(team
        .algobay()
        .args(["kit", "push"])
        .arg(team.path("doc.kit")));
    assert!(out.contains("acme/doc-orientation@1.0.0"), "{out}");

    // 6. Found by a part of its name; show lists what it runs, and the model its kit.
    let out = ok(team.algobay().args(["search", "ientat"]));
    assert!(out.contains("acme/doc-orientation"), "{out}");
    let out = ok(team.algobay().args(["search", "doc-orientaton"]));
    assert!(
        out.contains("acme/doc-orientation"),
        "a hyphenated typo: {out}"
    );
    let out = ok(team.algobay().args(["show", "acme/doc-orientation@1.0.0"]));
    assert!(
        out.contains("acme/orientation@1.0.0")
            && out.contains("acme/pgm-prepare@0.1.0")
            && out.contains("golden 0"),
        "{out}"
    );
    let out = ok(team.algobay().args(["show", "acme/orientation@1.0.0"]));
    assert!(
        out.contains("used by     acme/doc-orientation@1.0.0"),
        "{out}"
    );

    // 7. An enterprise deploys it to its device.
    rt.block_on(op.create_enterprise("bank", "Bank", vec!["finance".into()]))
        .unwrap();
    let (_, bank) = rt
        .block_on(op.create_token("enterprise", "bank", 0))
        .unwrap();
    let bank = rt.block_on(reg.client(&bank));
    let (_, enroll) = rt
        .block_on(bank.create_enrollment_token("", Default::default(), 0))
        .unwrap();
    let agent = AgentProc::start(
        &team.path("device"),
        &reg.url(),
        &reg.ca_pem,
        &enroll,
        &team.path("team.key.pub"),
        &DeviceSpec {
            name: "scanner-1",
            labels: &[],
            stage_memory_mb: None,
            extra: "",
        },
    );
    serve(&rt, &bank, &agent, "acme/doc-orientation@1.0.0", 120);

    // 8. Over HTTP: the image in base64 in JSON, as MLServer's codec marks it...
    let pgm = std::fs::read(kit_dir.join("samples/page.pgm")).unwrap();
    let body = serde_json::json!({"inputs": [{
        "name": "image", "datatype": "BYTES", "shape": [1],
        "parameters": {"content_type": "base64"},
        "data": [base64::engine::general_purpose::STANDARD.encode(&pgm)],
    }]});
    let (code, text) = http(&agent.http, "POST", INFER, body.to_string().as_bytes());
    assert_eq!(code, 200, "{text}");
    assert_eq!(label(text.as_bytes()), want, "{text}");

    // ...and in binary: a 4-byte little-endian length, then the bytes.
    assert_eq!(label(&infer_binary(&agent.http, &pgm)), want);

    // A colour JPEG in binary: the label of the reference pipeline on OpenCV's pixels.
    let jpeg = std::fs::read(kit_dir.join("samples/scan.jpg")).unwrap();
    assert_eq!(label(&infer_binary(&agent.http, &jpeg)), want_jpeg);

    // The README's curl example, as written, with a photograph whose base64
    // (over 128 KiB) would not fit in one command-line argument.
    let photo = build_dir().join("images/china.jpg");
    assert!(std::fs::metadata(&photo).unwrap().len() > 100_000);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("# JSON, the image in base64").unwrap();
    let snippet = &readme[start..start + readme[start..].find("```").unwrap()];
    let script = snippet
        .replace(
            "http://127.0.0.1:8470/v2/models/ocr-ppocrv4/infer",
            &format!("http://{}{INFER}", agent.http.trim_start_matches("http://")),
        )
        .replace("scan.png", &photo.display().to_string());
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(team.path(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !label(&out.stdout).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Literal strings stay what the protocol says they are: bytes, here not an image.
    let body = serde_json::json!({"inputs": [{
        "name": "image", "datatype": "BYTES", "shape": [1],
        "data": [base64::engine::general_purpose::STANDARD.encode(&pgm)],
    }]});
    let (code, text) = http(&agent.http, "POST", INFER, body.to_string().as_bytes());
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("not a binary PGM"), "{text}");
}
