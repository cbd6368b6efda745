//! The `algobay` commands against a real registry over TLS: publish, push, search, show, pull, run.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{root, Env};

/// Logging in, and the registry's certificate.
#[path = "registry_cli/login.rs"]
mod login;

impl Env {
    fn start() -> (Env, String) {
        let env = Env::serve();
        let operator = env.operator.clone();
        (env, operator)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Makes a signing key (`team.key`), registers team `algobay` with it, and
    /// logs in with a fresh team token; returns what `login` printed.
    fn log_in_as_team_algobay(&self) -> String {
        let operator = &self.operator;
        ok(self
            .algobay()
            .args(["keygen", "-o"])
            .arg(self.path("team.key")));
        ok(self
            .as_user(operator)
            .args(["team", "create", "algobay", "--key"])
            .arg(self.path("team.key.pub")));
        let token = ok(self.as_user(operator).args([
            "token",
            "create",
            "--role",
            "team",
            "--subject",
            "algobay",
        ]))
        .trim()
        .to_owned();
        assert!(token.starts_with("abt_"), "{token}");
        ok(self
            .algobay()
            .args([
                "login",
                "--registry",
                &self.url,
                "--token",
                &token,
                "--ca-cert",
            ])
            .arg(&self.cert))
    }

    /// With explicit registry flags (before `login`).
    fn as_user(&self, token: &str) -> Command {
        let mut c = self.algobay();
        c.arg("--registry")
            .arg(&self.url)
            .arg("--token")
            .arg(token)
            .arg("--ca-cert")
            .arg(&self.cert);
        c
    }
}

fn run(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(c: &mut Command) -> String {
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

#[test]
fn publisher_pushes_and_an_enterprise_style_user_finds_pulls_and_runs() {
    let (env, _operator) = Env::start();
    let out = env.log_in_as_team_algobay();
    assert!(out.contains("as team algobay"), "{out}");

    std::fs::write(
        env.path("card.md"),
        "# Silero VAD\nFinds speech in 16 kHz audio.",
    )
    .unwrap();
    let out = ok(env
        .algobay()
        .args(["model", "publish"])
        .arg(root().join("examples/kits/vad/models/silero_vad.onnx"))
        .args([
            "--name",
            "algobay/silero-vad",
            "--version",
            "6.2.3",
            "--domain",
            "speech",
            "--task",
            "vad",
            "--industry",
            "telecom",
            "--card",
        ])
        .arg(env.path("card.md")));
    assert!(
        out.contains("published model algobay/silero-vad@6.2.3 sha256:"),
        "{out}"
    );

    let wasm = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("wasm32-wasip2/release/stage_classify_post.wasm");
    let out = ok(env.algobay().args(["tool", "publish"]).arg(&wasm).args([
        "--name",
        "algobay/softmax",
        "--version",
        "1.0.0",
        "--kind",
        "postprocess",
    ]));
    assert!(
        out.contains("published tool algobay/softmax@1.0.0"),
        "{out}"
    );

    ok(env
        .algobay()
        .args(["kit", "build"])
        .arg(root().join("examples/kits/digits"))
        .arg("-o")
        .arg(env.path("digits.kit"))
        .arg("--key")
        .arg(env.path("team.key")));
    let out = ok(env
        .algobay()
        .args(["kit", "push"])
        .arg(env.path("digits.kit")));
    assert!(out.contains("pushed kit algobay/digits-mlp@1.0.0"), "{out}");
    // A second push sends no blob bytes: the registry has them all.
    let out = ok(env
        .algobay()
        .args(["kit", "push"])
        .arg(env.path("digits.kit")));
    assert!(out.contains("(0 of "), "{out}");

    let out = ok(env.algobay().args(["search", "silero", "--json"]));
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["total"], 1);
    assert_eq!(page["artifacts"][0]["name"], "algobay/silero-vad");
    let out = ok(env.algobay().args(["search", "--kind", "kit"]));
    assert!(
        out.contains("algobay/digits-mlp@1.0.0") && out.contains("1 of 1 shown"),
        "{out}"
    );

    let out = ok(env.algobay().args(["show", "algobay/silero-vad@6.2.3"]));
    assert!(
        out.contains("input       input: f32[?,?]") && out.contains("# Silero VAD"),
        "{out}"
    );

    // A pull that was cut off: one blob half there, in the parts folder. It resumes.
    let kit = algobay_runtime::KitArchive::read_file(&env.path("digits.kit")).unwrap();
    let (d, big) = kit.blobs.iter().max_by_key(|(_, b)| b.len()).unwrap();
    let parts = env.path("pulled.kit.parts");
    std::fs::create_dir_all(&parts).unwrap();
    std::fs::write(
        parts.join(format!("{}.partial", d.hex())),
        &big[..big.len() / 2],
    )
    .unwrap();
    ok(env
        .algobay()
        .args(["kit", "pull", "algobay/digits-mlp@1.0.0", "-o"])
        .arg(env.path("pulled.kit")));
    assert!(
        !parts.exists(),
        "the parts folder is gone once the kit file is written"
    );
    assert_eq!(
        algobay_runtime::KitArchive::read_file(&env.path("pulled.kit"))
            .unwrap()
            .digest(),
        kit.digest()
    );
    let out = ok(env
        .algobay()
        .args(["kit", "run"])
        .arg(env.path("pulled.kit"))
        .arg("--trust")
        .arg(env.path("team.key.pub"))
        .arg("--input")
        .arg(root().join("examples/kits/digits/samples/row9.json")));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"][0][0]["label"], "9");

    let out = ok(env.algobay().args(["coverage", "--json"]));
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            c["models"].as_u64(),
            c["tools"].as_u64(),
            c["kits"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
}

#[test]
fn registry_errors_print_one_line_and_exit_with_their_code() {
    let (env, operator) = Env::start();
    // A wrong token.
    let (code, _, err) = run(env.as_user("abt_000000000000_nope").args(["search", "x"]));
    assert_eq!(code, 9, "{err}");
    assert!(
        err.contains("unknown token") && err.lines().count() == 1,
        "{err}"
    );
    // Something that is not there.
    let (code, _, err) = run(env
        .as_user(&operator)
        .args(["show", "algobay/nothing@1.0.0"]));
    assert_eq!(code, 7, "{err}");
    // A registry that is not there.
    let (code, _, err) = run(env
        .algobay()
        .args(["--registry", "https://localhost:1", "--ca-cert"])
        .arg(&env.cert)
        .args(["--token", &operator, "search"]));
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("cannot reach the registry at https://localhost:1"),
        "{err}"
    );
    // No registry configured at all.
    let (code, _, err) = run(env.algobay().args(["search"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("algobay login"), "{err}");
    // A file that is not a model, and a name the caller's team does not own.
    ok(env.algobay().args(["keygen", "-o"]).arg(env.path("k")));
    ok(env
        .as_user(&operator)
        .args(["team", "create", "acme", "--key"])
        .arg(env.path("k.pub")));
    ok(env
        .as_user(&operator)
        .args(["team", "create", "other", "--key"])
        .arg(env.path("k.pub")));
    let acme =
        ok(env
            .as_user(&operator)
            .args(["token", "create", "--role", "team", "--subject", "acme"]))
        .trim()
        .to_owned();
    // A revoked token: its id is printed when it is made, and revoking it cuts it off.
    let (code, doomed, err) = run(env.as_user(&operator).args([
        "token",
        "create",
        "--role",
        "team",
        "--subject",
        "acme",
    ]));
    assert_eq!(code, 0, "{err}");
    let doomed = doomed.trim().to_owned();
    let doomed_id = doomed.split('_').nth(1).unwrap().to_owned();
    assert!(err.contains(&format!("token {doomed_id} ")), "{err}");
    ok(env.as_user(&operator).args(["token", "revoke", &doomed_id]));
    let (code, _, err) = run(env.as_user(&doomed).args(["search", "x"]));
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("revoked") && err.lines().count() == 1, "{err}");
    let (code, _, err) = run(env
        .as_user(&acme)
        .args(["model", "publish"])
        .arg(root().join("README.md"))
        .args([
            "--name",
            "acme/readme",
            "--version",
            "1.0.0",
            "--domain",
            "nlp",
            "--task",
            "none",
        ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not a valid ONNX model"), "{err}");
    let (code, _, err) = run(env
        .as_user(&acme)
        .args(["model", "publish"])
        .arg(root().join("examples/kits/vad/models/silero_vad.onnx"))
        .args([
            "--name",
            "other/vad",
            "--version",
            "1.0.0",
            "--domain",
            "speech",
            "--task",
            "vad",
        ]));
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("belongs to team `other`"), "{err}");
    // A version that exists with other content.
    let publish = |file: &Path| {
        run(env
            .as_user(&acme)
            .args(["model", "publish"])
            .arg(file)
            .args([
                "--name",
                "acme/m",
                "--version",
                "1.0.0",
                "--domain",
                "vision",
                "--task",
                "x",
            ]))
    };
    assert_eq!(
        publish(&root().join("examples/kits/vad/models/silero_vad.onnx")).0,
        0
    );
    let (code, _, err) = publish(&root().join("examples/kits/ocr/models/det.onnx"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("already published"), "{err}");
}

/// Every example model, stage and kit goes through the registry the way the README's
/// main command drives it, and each pulled kit runs to the answers recorded for it.
#[test]
fn every_example_model_tool_and_kit_is_published_pushed_found_pulled_and_run() {
    let (env, _operator) = Env::start();
    env.log_in_as_team_algobay();

    let kits = root().join("examples/kits");
    std::fs::write(env.path("digits-arch.json"), r#"{"layers":[64,32,10]}"#).unwrap();
    let models: [(&str, &str, &str, &str, &[&str]); 5] = [
        (
            "ocr/models/det.onnx",
            "ppocrv4-det",
            "vision",
            "detection",
            &[],
        ),
        ("ocr/models/rec.onnx", "ppocrv4-rec", "vision", "ocr", &[]),
        (
            "vad/models/silero_vad.onnx",
            "silero-vad",
            "speech",
            "vad",
            &[],
        ),
        (
            "embed/models/model.safetensors",
            "all-minilm-l6-v2",
            "nlp",
            "embedding",
            &["--architecture", "bert", "--arch-config"],
        ),
        (
            "digits/models/mlp.safetensors",
            "digits-mlp",
            "vision",
            "classification",
            &["--architecture", "mlp", "--arch-config"],
        ),
    ];
    for (file, name, domain, task, extra) in models {
        let mut c = env.algobay();
        c.args(["model", "publish"]).arg(kits.join(file)).args([
            "--name",
            &format!("algobay/{name}"),
            "--version",
            "1.0.0",
            "--domain",
            domain,
            "--task",
            task,
        ]);
        if !extra.is_empty() {
            c.args(extra);
            c.arg(if name == "digits-mlp" {
                env.path("digits-arch.json")
            } else {
                kits.join("embed/models/config.json")
            });
        }
        let out = ok(&mut c);
        assert!(
            out.contains(&format!("published model algobay/{name}@1.0.0")),
            "{out}"
        );
    }

    let wasm_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("wasm32-wasip2/release");
    let tools = [
        ("ocr-pre", "preprocess"),
        ("db-box-decode", "postprocess"),
        ("nms", "postprocess"),
        ("text-line-crop", "postprocess"),
        ("ctc-decode", "postprocess"),
        ("ocr-rec-post", "postprocess"),
        ("vad-pre", "preprocess"),
        ("vad-post", "postprocess"),
        ("wordpiece", "preprocess"),
        ("classify-post", "postprocess"),
    ];
    for (name, kind) in tools {
        let wasm = wasm_dir.join(format!("stage_{}.wasm", name.replace('-', "_")));
        ok(env.algobay().args(["tool", "publish"]).arg(wasm).args([
            "--name",
            &format!("algobay/{name}"),
            "--version",
            "1.0.0",
            "--kind",
            kind,
        ]));
    }

    let kit_names = [
        ("ocr", "algobay/ocr-ppocrv4"),
        ("vad", "algobay/vad-silero"),
        ("embed", "algobay/embed-minilm"),
        ("digits", "algobay/digits-mlp"),
    ];
    for (dir, name) in kit_names {
        let file = env.path(&format!("{dir}.kit"));
        ok(env
            .algobay()
            .args(["kit", "build"])
            .arg(kits.join(dir))
            .arg("-o")
            .arg(&file)
            .arg("--key")
            .arg(env.path("team.key")));
        let out = ok(env.algobay().args(["kit", "push"]).arg(&file));
        assert!(out.contains(&format!("pushed kit {name}@1.0.0")), "{out}");
    }

    for (kind, count) in [("model", 5), ("tool", 10), ("kit", 4)] {
        let out = ok(env.algobay().args(["search", "--kind", kind, "--json"]));
        let page: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(page["total"], count, "{kind}: {page}");
    }
    let out = ok(env.algobay().args(["search", "speech", "--json"]));
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        page["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "algobay/silero-vad"),
        "{page}"
    );

    let expected = |p: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(kits.join(p)).unwrap()).unwrap()
    };
    let inputs = [
        ("ocr", "ocr/samples/invoice.png"),
        ("vad", "vad/samples/speech.wav"),
        ("embed", "embed/samples/edge.txt"),
        ("digits", "digits/samples/row9.json"),
    ];
    for ((dir, name), (_, input)) in kit_names.iter().zip(inputs) {
        if *dir == "digits" {
            // The digits model and kit share a name: `show` asks which is meant.
            let (code, _, err) = run(env.algobay().args(["show", "algobay/digits-mlp@1.0.0"]));
            assert_eq!(code, 3, "{err}");
            assert!(err.contains("--kind"), "{err}");
        }
        let out =
            ok(env
                .algobay()
                .args(["show", &format!("{name}@1.0.0"), "--kind", "kit", "--json"]));
        let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(shown["kind"], "kit", "{shown}");

        let pulled = env.path(&format!("pulled-{dir}.kit"));
        ok(env
            .algobay()
            .args(["kit", "pull", &format!("{name}@1.0.0"), "-o"])
            .arg(&pulled));
        let built = algobay_runtime::KitArchive::read_file(&env.path(&format!("{dir}.kit")))
            .unwrap()
            .digest();
        assert_eq!(
            algobay_runtime::KitArchive::read_file(&pulled)
                .unwrap()
                .digest(),
            built
        );
        let mut c = env.algobay();
        c.args(["kit", "run"])
            .arg(&pulled)
            .arg("--trust")
            .arg(env.path("team.key.pub"))
            .arg("--input");
        if *dir == "embed" {
            c.arg(std::fs::read_to_string(kits.join(input)).unwrap());
        } else {
            c.arg(kits.join(input));
        }
        let got: serde_json::Value = serde_json::from_str(&ok(&mut c)).unwrap();
        match *dir {
            "ocr" => {
                let texts = |v: &serde_json::Value| -> Vec<String> {
                    v["result"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|l| l["text"].as_str().unwrap().to_owned())
                        .collect()
                };
                assert_eq!(
                    texts(&got),
                    texts(&expected("ocr/samples/invoice.png.expected.json"))
                );
            }
            "vad" => {
                let want = expected("vad/samples/speech.expected.json");
                let starts = |v: &serde_json::Value| -> Vec<u64> {
                    v["segments"]["segments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["start_sample"].as_u64().unwrap())
                        .collect()
                };
                assert_eq!(starts(&got), starts(&want), "{}", got["segments"]);
            }
            "embed" => {
                let want = expected("embed/samples/edge.expected.json");
                let (a, b) = (
                    got["embedding"]["data"].as_array().unwrap(),
                    want["embedding"]["data"].as_array().unwrap(),
                );
                assert_eq!(a.len(), 384);
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs())
                    .fold(0.0, f64::max);
                assert!(worst < 1e-3, "largest difference {worst}");
            }
            _ => assert_eq!(got["result"][0][0]["label"], "9"),
        }
    }

    let out = ok(env.algobay().args(["coverage", "--json"]));
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            c["models"].as_u64(),
            c["tools"].as_u64(),
            c["kits"].as_u64()
        ),
        (Some(5), Some(10), Some(4)),
        "{c}"
    );
}

#[test]
fn a_team_publishes_a_dataset_and_show_prints_the_card_the_registry_read() {
    let (env, operator) = Env::start();
    env.log_in_as_team_algobay();
    let csv = root().join("examples/kits/digits/data/digits.csv");
    let out = ok(env.algobay().args(["dataset", "publish"]).arg(&csv).args([
        "--name",
        "algobay/digits",
        "--version",
        "1.0.0",
        "--license",
        "BSD-3-Clause",
        "--source",
        "scikit-learn 1.7.2",
        "--label-column",
        "64",
        "--domain",
        "vision",
        "--task",
        "classification",
    ]));
    assert!(
        out.contains("published dataset algobay/digits@1.0.0")
            && out.contains("1797 rows, 65 columns, 10 labels"),
        "{out}"
    );
    let out = ok(env
        .algobay()
        .args(["dataset", "show", "algobay/digits@1.0.0"]));
    assert!(
        out.contains("rows        1797") && out.contains("f32[64]") && out.contains("178 rows"),
        "{out}"
    );
    let out = ok(env
        .algobay()
        .args(["search", "--kind", "dataset", "digits"]));
    assert!(out.contains("algobay/digits"), "{out}");
    let out = ok(env.as_user(&operator).args(["coverage"]));
    assert!(out.contains("\n1 datasets, "), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("models ") && l.ends_with("not met")),
        "{out}"
    );
    assert!(
        out.contains("\ndomain ") && out.contains("\nvision "),
        "{out}"
    );
    // Without a license, nothing is sent and the flag is named.
    let (code, _, err) = run(env.algobay().args(["dataset", "publish"]).arg(&csv).args([
        "--name",
        "algobay/digits",
        "--version",
        "1.0.1",
        "--source",
        "x",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--license"), "{err}");
}

#[test]
fn an_enterprise_sets_its_training_policy_and_a_round_needs_its_kit_deployed() {
    let (env, operator) = Env::start();
    env.log_in_as_team_algobay();
    ok(env
        .algobay()
        .args(["kit", "build"])
        .arg(root().join("examples/kits/digits"))
        .arg("-o")
        .arg(env.path("digits.kit"))
        .arg("--key")
        .arg(env.path("team.key")));
    ok(env
        .algobay()
        .args(["kit", "push"])
        .arg(env.path("digits.kit")));
    ok(env
        .as_user(&operator)
        .args(["enterprise", "create", "acme"]));
    let acme = ok(env.as_user(&operator).args([
        "token",
        "create",
        "--role",
        "enterprise",
        "--subject",
        "acme",
    ]));
    let acme = acme.trim();
    let kit = ["--kit", "algobay/digits-mlp"];

    let out = ok(env
        .as_user(acme)
        .args(["train", "policy", "show"])
        .args(kit));
    assert!(
        out.contains("started by hand") && out.contains("private to the enterprise"),
        "{out}"
    );
    let out = ok(env
        .as_user(acme)
        .args(["train", "policy", "set"])
        .args(kit)
        .args([
            "--auto",
            "true",
            "--min-new-labels",
            "120",
            "--base-margin",
            "0.02",
            "--teacher",
            "algobay/digits-mlp@1.0.0",
        ]));
    assert!(out.contains("automatic, after 120 new labels"), "{out}");
    assert!(out.contains("base loss under 2.0 points"), "{out}");
    assert!(
        out.contains("teacher          algobay/digits-mlp@1.0.0"),
        "{out}"
    );
    let out = ok(env
        .as_user(acme)
        .args(["train", "policy", "show", "--json"])
        .args(kit));
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (p["auto"].as_bool(), p["min_new_labels"].as_u64()),
        (Some(true), Some(120))
    );
    assert_eq!(p["alpha"], 0.05, "what was not given stays");

    // Bad values are named; a kit with no recipe, or not deployed, cannot be trained.
    let (code, _, err) = run(env
        .as_user(acme)
        .args(["train", "policy", "set"])
        .args(kit)
        .args(["--canary-share", "2"]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("policy.canary_share: 2 is not in (0, 1]"),
        "{err}"
    );
    let (code, _, err) = run(env.as_user(acme).args(["train", "start"]).args(kit));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not deployed to enterprise `acme`"), "{err}");
    let (code, _, err) =
        run(env
            .as_user(acme)
            .args(["train", "start", "--kit", "algobay/nothing"]));
    assert_eq!(code, 7, "{err}");
    let out = ok(env.as_user(acme).args(["train", "runs"]));
    assert!(out.contains("0 run(s)"), "{out}");
    let (code, _, err) = run(env.as_user(acme).args(["train", "show", "run-000001"]));
    assert_eq!(code, 7, "{err}");
}
