//! Labelling an enterprise's hard examples from the command line: list, label
//! one, export to JSONL with the inputs, import labels back; another
//! enterprise can neither see nor label them. Real registry, agent and CLI.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::process::Command;

fn digits_input(pixel: usize, value: f32) -> Vec<u8> {
    let mut v = vec![0.0f32; 64];
    v[pixel] = value;
    serde_json::to_vec(&serde_json::json!({"dtype": "f32", "shape": [1, 64], "data": v})).unwrap()
}

#[test]
fn a_labeller_lists_labels_exports_and_imports_its_enterprises_samples() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, globex_token) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    // Every request is a hard example here.
    let agent = keen_agent(&rt, &reg, &acme, dir.path(), "telemetry_seconds = 0\n");
    for (p, v) in [(0, 1.0), (1, 2.0), (2, 3.0)] {
        let (code, _) = http(&agent.http, "POST", "/v1/infer", &digits_input(p, v));
        assert_eq!(code, 200);
    }
    wait_for(60, "three samples at the registry", || {
        let n = rt
            .block_on(acme.list_samples("", "", 100, ""))
            .unwrap()
            .0
            .len();
        (n == 3).then_some(())
    });

    std::fs::write(dir.path().join("ca.pem"), &reg.ca_pem).unwrap();
    let cli = |token: &str, args: &[&str]| {
        let o = Command::new(registry_bin().with_file_name("algobay"))
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .args([
                "--quiet",
                "--registry",
                &reg.url(),
                "--token",
                token,
                "--ca-cert",
            ])
            .arg(dir.path().join("ca.pem"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&acme_token, &["samples", "list", "--unlabelled"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 sample(s)"), "{out}");
    let first = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    // One by hand.
    let (code, out, err) = cli(&acme_token, &["samples", "label", &first, "7"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("as 7"), "{out}");
    let (_, out, _) = cli(&acme_token, &["samples", "show", &first]);
    assert!(out.contains("label       7 from human"), "{out}");
    let (_, out, _) = cli(&acme_token, &["samples", "list", "--unlabelled"]);
    assert!(out.contains("2 sample(s)"), "{out}");

    // Another enterprise sees none of them and cannot label them.
    let (code, out, _) = cli(&globex_token, &["samples", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("0 sample(s)"), "{out}");
    let (code, _, err) = cli(&globex_token, &["samples", "label", &first, "3"]);
    assert_eq!(code, 7, "{err}");

    // The rest through a file: exported with their inputs, labelled, imported.
    let export = dir.path().join("to-label");
    let (code, out, err) = cli(
        &acme_token,
        &[
            "samples",
            "export",
            "--unlabelled",
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("exported 2 sample(s)"), "{out}");
    let text = std::fs::read_to_string(export.join("samples.jsonl")).unwrap();
    let mut labelled = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = v["inputs"][0]["file"].as_str().unwrap().to_owned();
        assert_eq!(std::fs::read(export.join(&file)).unwrap().len(), 256);
        v["label"] = serde_json::json!(i);
        labelled.push_str(&format!("{v}\n"));
    }
    std::fs::write(export.join("labelled.jsonl"), labelled).unwrap();
    let (code, out, err) = cli(
        &acme_token,
        &[
            "samples",
            "import",
            export.join("labelled.jsonl").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("labelled 2 sample(s)"), "{out}");
    let (_, out, _) = cli(&acme_token, &["samples", "list", "--unlabelled"]);
    assert!(out.contains("0 sample(s)"), "{out}");
    let all = rt.block_on(acme.list_samples("", "", 100, "")).unwrap().0;
    assert!(all
        .iter()
        .all(|s| s.labels.len() == 1 && s.labels[0].source == "human"));

    // A line without a label is refused by its line number, and nothing else changes.
    std::fs::write(export.join("bad.jsonl"), "{\"id\": \"ab\"}\n").unwrap();
    let (code, _, err) = cli(
        &acme_token,
        &[
            "samples",
            "import",
            export.join("bad.jsonl").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1") && err.contains("`label`"), "{err}");
}
