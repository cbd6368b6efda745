//! The `algobay` binary as a user runs it: real processes, real files, exit codes.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly by design

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn key(&self) -> PathBuf {
        self.dir.path().join("team.key")
    }
    fn public(&self) -> PathBuf {
        self.dir.path().join("team.key.pub")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn algobay(env: &Env) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_algobay"));
    c.env("HOME", env.dir.path())
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .env("ALGOBAY_CACHE_DIR", env.dir.path().join("cache"))
        .env_remove("ALGOBAY_TRUST")
        .env_remove("ALGOBAY_KEY")
        .arg("--quiet");
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        c.env(
            "ORT_DYLIB_PATH",
            root().join("build/onnxruntime/libonnxruntime.so.1.32.0"),
        );
    }
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run algobay");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A key and the digits kit, built once for the whole file.
fn shared() -> &'static (Env, PathBuf) {
    static SHARED: OnceLock<(Env, PathBuf)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        let (code, _, err) = run(algobay(&env).args(["keygen", "-o"]).arg(env.key()));
        assert_eq!(code, 0, "{err}");
        let kit = env.path("digits.kit");
        // From the checkout with a relative path, as the README says: the
        // stage crate it names is built in its own folder all the same.
        let (code, out, err) = run(algobay(&env)
            .current_dir(root())
            .args(["kit", "build", "examples/kits/digits"])
            .arg("-o")
            .arg(&kit)
            .arg("--key")
            .arg(env.key()));
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("built algobay/digits-mlp@1.0.0 sha256:"),
            "{out}"
        );
        (env, kit)
    })
}

#[test]
fn keygen_writes_a_private_key_and_refuses_to_overwrite_it() {
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let (code, out, _) = run(algobay(&env).args(["keygen", "-o"]).arg(env.key()));
    assert_eq!(code, 0);
    assert!(out.contains("public key:"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.key()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(std::fs::read_to_string(env.public())
        .unwrap()
        .starts_with("ed25519:"));
    let (code, _, err) = run(algobay(&env).args(["keygen", "-o"]).arg(env.key()));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pass --force"), "{err}");
}

#[test]
fn built_kit_tests_runs_and_inspects() {
    let (env, kit) = shared();
    let (code, out, err) = run(algobay(env)
        .args(["kit", "test"])
        .arg(kit)
        .arg("--trust")
        .arg(env.public()));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");

    let (code, out, err) = run(algobay(env)
        .args(["kit", "test", "--json"])
        .arg(kit)
        .arg("--trust")
        .arg(env.public()));
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kit"], "algobay/digits-mlp@1.0.0");
    assert_eq!(
        (v["passed"].as_u64(), v["failed"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(v["samples"][2]["passed"], true);
    assert!(v["samples"][0]["outputs"]["result"].is_array(), "{v}");

    let (code, out, err) = run(algobay(env)
        .args(["kit", "run"])
        .arg(kit)
        .arg("--trust")
        .arg(env.public())
        .arg("--input")
        .arg(root().join("examples/kits/digits/samples/row9.json")));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"][0][0]["label"], "9");

    let (code, out, _) = run(algobay(env)
        .args(["kit", "inspect", "--json"])
        .arg(kit)
        .arg("--trust")
        .arg(env.public()));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(v["signatures"][0]["trusted"], true);
    assert_eq!(v["manifest"]["name"], "algobay/digits-mlp");
}

#[test]
fn trust_comes_from_the_config_file_too() {
    let (env, kit) = shared();
    let cfg_dir = env.path("config/algobay");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let other = tempfile::tempdir().unwrap();
    let cfg = other.path().join("config.toml");
    std::fs::write(&cfg, format!("trust = [\"{}\"]\n", env.public().display())).unwrap();
    let (code, out, err) = run(algobay(env)
        .args(["kit", "test"])
        .arg(kit)
        .arg("--config")
        .arg(&cfg));
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn untrusted_kit_exits_with_the_verification_code() {
    let (env, kit) = shared();
    let (code, _, err) = run(algobay(env)
        .args(["kit", "run"])
        .arg(kit)
        .args(["--input", "x.json"]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("untrusted key"), "{err}");
}

#[test]
fn missing_files_exit_with_the_not_found_code() {
    let (env, kit) = shared();
    let (code, _, err) = run(algobay(env).args(["kit", "test", "/nonexistent/x.kit"]));
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = run(algobay(env)
        .args(["kit", "run"])
        .arg(kit)
        .arg("--trust")
        .arg(env.public())
        .args(["--input", "/nonexistent/pixels.json"]));
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("input `pixels`"), "{err}");
}

#[test]
fn bad_input_exits_with_the_invalid_code_and_names_it() {
    let (env, kit) = shared();
    let bad = env.path("bad.json");
    std::fs::write(&bad, r#"{"dtype": "f32", "shape": [1, 63], "data": [1]}"#).unwrap();
    let (code, _, err) = run(algobay(env)
        .args(["kit", "run"])
        .arg(kit)
        .arg("--trust")
        .arg(env.public())
        .arg("--input")
        .arg(&bad));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("input `pixels`"), "{err}");
    let garbage = env.path("garbage.kit");
    std::fs::write(&garbage, b"not a tar file at all").unwrap();
    let (code, _, err) = run(algobay(env).args(["kit", "inspect"]).arg(&garbage));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("kit archive"), "{err}");
}

#[test]
fn build_without_a_key_is_a_usage_error() {
    let (env, _) = shared();
    let (code, _, err) = run(algobay(env)
        .args(["kit", "build"])
        .arg(root().join("examples/kits/digits"))
        .args(["-o", "/tmp/never.kit"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no signing key"), "{err}");
}

#[test]
fn failing_golden_sample_exits_with_the_golden_code_and_shows_the_output() {
    let (env, kit) = shared();
    // Re-sign a copy of the kit whose first golden sample expects another digit's answer.
    let mut a = algobay_runtime::KitArchive::read_file(kit).unwrap();
    let other = a.manifest.golden[1].expected;
    a.manifest.golden[0].expected = other;
    a.manifest_bytes = a.manifest.canonical_json();
    let key = algobay_runtime::SecretKey::read(&env.key()).unwrap();
    a.signatures = vec![key.sign(&a.manifest_bytes)];
    let broken = env.path("broken.kit");
    a.write_file(&broken).unwrap();
    let (code, out, _) = run(algobay(env)
        .args(["kit", "test"])
        .arg(&broken)
        .arg("--trust")
        .arg(env.public()));
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains("golden sample 0: FAILED") && out.contains("got:"),
        "{out}"
    );
    let (code, out, _) = run(algobay(env)
        .args(["kit", "test", "--json"])
        .arg(&broken)
        .arg("--trust")
        .arg(env.public()));
    assert_eq!(code, 5, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["failed"], 1, "{v}");
    assert_eq!(v["samples"][0]["passed"], false);
    assert!(v["samples"][0]["failure"].as_str().is_some(), "{v}");
    assert!(v["samples"][0]["outputs"].is_object(), "{v}");
}

#[test]
fn missing_onnx_runtime_exits_with_the_environment_code() {
    let (env, _) = shared();
    let vad = env.path("vad.kit");
    let (code, out, err) = run(algobay(env)
        .args(["kit", "build"])
        .arg(root().join("examples/kits/vad"))
        .arg("-o")
        .arg(&vad)
        .arg("--key")
        .arg(env.key()));
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run(algobay(env)
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .args(["kit", "test"])
        .arg(&vad)
        .arg("--trust")
        .arg(env.public()));
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("pip download --no-deps onnxruntime"), "{err}");
}

#[test]
fn help_explains_with_examples_and_completions_print() {
    let (env, _) = shared();
    let (code, out, _) = run(algobay(env).args(["kit", "build", "--help"]));
    assert_eq!(code, 0);
    assert!(out.contains("Examples:") && out.contains("--key"), "{out}");
    let (code, out, _) = run(algobay(env).args(["completions", "bash"]));
    assert_eq!(code, 0);
    assert!(out.contains("algobay"));
    let (code, _, err) = run(algobay(env).args(["kit", "frobnicate"]));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn help_names_every_key_of_the_config_file_and_its_variable() {
    let (env, _) = shared();
    // The parser's own list of keys, from its error for an unknown one.
    let probe = env.path("probe.toml");
    std::fs::write(&probe, "__probe__ = 1\n").unwrap();
    let (code, _, err) = run(algobay(env).arg("--config").arg(&probe).arg("search"));
    assert_eq!(code, 2, "{err}");
    let at = err.find("expected").expect(&err);
    let keys: Vec<&str> = err[at..].split('`').skip(1).step_by(2).collect();
    assert!(keys.len() >= 7, "{err}");
    let (code, help, _) = run(algobay(env).arg("--help"));
    assert_eq!(code, 0);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for k in keys {
        assert!(
            help.contains(k),
            "`algobay --help` does not name `{k}`:\n{help}"
        );
        assert!(
            readme.contains(&format!("`{k}`")),
            "README does not name `{k}`"
        );
    }
    for var in [
        "ALGOBAY_CONFIG",
        "ALGOBAY_REGISTRY",
        "ALGOBAY_TOKEN",
        "ALGOBAY_TRUST",
    ] {
        assert!(help.contains(var), "{var} missing from:\n{help}");
    }
}

/// `docs/stages.md`'s API reference names every public item of the crates a
/// stage is written with, so a stage author finds each there.
#[test]
fn the_stage_reference_names_every_public_item_of_the_stage_crates() {
    let doc = std::fs::read_to_string(root().join("docs/stages.md")).unwrap();
    let reference = &doc[doc.find("## 5. API reference").expect("no API reference")..];
    let mut missing = Vec::new();
    for dir in [
        "sdk/stage/src",
        "sdk/algobay-imaging/src",
        "sdk/algobay-audio/src",
        "sdk/algobay-text/src",
    ] {
        let mut files = Vec::new();
        let mut folders = vec![root().join(dir)];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            // Public items before the unit tests, outside the generated bindings.
            let text = &text[..text.find("#[cfg(test)]").unwrap_or(text.len())];
            for line in text.lines() {
                let l = line.trim_start();
                let name = [
                    "pub fn ",
                    "pub struct ",
                    "pub enum ",
                    "pub trait ",
                    "pub const ",
                    "pub type ",
                    "macro_rules! ",
                ]
                .iter()
                .find_map(|p| l.strip_prefix(p))
                .map(|rest| {
                    rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap()
                        .to_owned()
                });
                if let Some(name) = name {
                    if !reference.contains(&name) {
                        missing.push(format!("{}: {name}", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/stages.md does not name:\n{}",
        missing.join("\n")
    );
}

#[test]
fn onnx_runtime_leaves_no_usage_telemetry_on_the_machine() {
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let (code, out, err) = run(algobay(&env)
        .env_remove("ORT_DISABLE_TELEMETRY")
        .args(["model", "inspect"])
        .arg(root().join("examples/kits/vad/models/silero_vad.onnx")));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("state"), "{out}");
    assert!(
        !env.dir.path().join(".cache/Microsoft").exists(),
        "ONNX Runtime wrote its telemetry files under HOME"
    );
}

#[test]
fn the_guest_crate_and_imaging_library_package_for_publishing_with_everything_they_need() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for (krate, must) in [
        (
            "algobay-stage",
            &["wit/stage.wit", "src/lib.rs", "README.md"][..],
        ),
        (
            "algobay-imaging",
            &[
                "src/pillow.rs",
                "src/opencv/mod.rs",
                "src/opencv/wasm.rs",
                "README.md",
            ][..],
        ),
    ] {
        let out = Command::new(&cargo)
            .current_dir(root())
            .args([
                "package",
                "--list",
                "--allow-dirty",
                "--offline",
                "-p",
                krate,
            ])
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{krate}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for f in must {
            assert!(list.lines().any(|l| l == *f), "{krate} lacks {f}:\n{list}");
        }
    }
}
