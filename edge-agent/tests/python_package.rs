//! The `algobay` Python package, as a Python user gets it: the wheel the
//! set-up builds (maturin, PyO3 over the Rust SDK and runtime) installed into
//! a fresh virtual environment, then `python/tests/test_algobay.py` run there
//! against a real registry and a real device serving a kit.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

fn wheel() -> PathBuf {
    let build = std::env::var_os("ALGOBAY_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("build"));
    let dir = build.join("python-wheel");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run scripts/test.sh, which builds the wheel",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .unwrap_or_else(|| panic!("no wheel in {}", dir.display()))
}

fn run(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}:\n{text}");
    text
}

#[test]
fn the_python_package_searches_publishes_builds_pushes_pulls_runs_and_calls_a_device() {
    let dir = tempfile::tempdir().unwrap();
    // A fresh virtual environment with the wheel (and NumPy from PyPI).
    let venv = dir.path().join("venv");
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    let python = venv.join("bin/python");
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(wheel()),
        "pip install the wheel",
    );

    // A registry with team algobay's kits, and a device serving digits.
    let rt = two_threads();
    let (reg, acme) = seeded(&rt, dir.path(), false);
    let agent = device(&rt, &reg, &acme, dir.path(), "py-device", "");
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 120);
    let op = rt.block_on(reg.client(&reg.operator));
    let (_, team) = rt.block_on(op.create_token("team", "algobay", 0)).unwrap();
    let ca = dir.path().join("registry.pem");
    std::fs::write(&ca, &reg.ca_pem).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let target = registry_bin()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();

    let out = run(
        Command::new(&python)
            .arg(root().join("python/tests/test_algobay.py"))
            .current_dir(dir.path())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("ALGOBAY_REGISTRY", reg.url())
            .env("ALGOBAY_TOKEN", &team)
            .env("ALGOBAY_CA_CERT", &ca)
            .env("ALGOBAY_TRUST", &kits().public)
            .env("ORT_DYLIB_PATH", ort_lib())
            .env("CARGO_TARGET_DIR", &target)
            .env("TEST_KEY", &kits().key)
            .env("TEST_AGENT", &agent.http)
            .env("TEST_ROOT", root())
            .env("TEST_ALGOBAY", registry_bin().with_file_name("algobay"))
            .env(
                "TEST_WASM",
                target.join("wasm32-wasip2/release/stage_clip.wasm"),
            ),
        "python/tests/test_algobay.py",
    );
    assert!(out.contains("OK"), "{out}");
}
