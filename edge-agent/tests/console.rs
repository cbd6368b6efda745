//! The web console in a real browser: Debian's chromium driven by Playwright
//! for Python (`tests/python/console_browser.py`), against a real registry
//! with a real agent serving. The script clicks through the marketplace, a
//! kit's page, a card written to attack its readers, labelling with the
//! keyboard, a deployment from canary to promotion, another enterprise's
//! attempts on all of it, forged forms and the coverage page; the labels it
//! gives are then read back with `algobay samples list --json`; the token of
//! a signed-in session is revoked and the session is seen to end. Screenshots
//! go to `target/console-screens/`.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::process::Command;

fn digits_input(pixel: usize, value: f32) -> Vec<u8> {
    let mut v = vec![0.0f32; 64];
    v[pixel] = value;
    serde_json::to_vec(&serde_json::json!({"dtype": "f32", "shape": [1, 64], "data": v})).unwrap()
}

/// The Python with Playwright that the set-up made, or none (then the test says why).
fn browser_python() -> Option<std::path::PathBuf> {
    let py = root().join("build/browser/bin/python");
    let chromium = std::path::Path::new("/usr/bin/chromium");
    (py.exists() && chromium.exists()).then_some(py)
}

const EVIL_CARD: &str = r#"# A helpful model

<script>window.__pwned = 1; alert("card script ran")</script>

<img src="x" onerror="window.__pwned = 2; alert('onerror ran')">

[click me](javascript:window.__pwned=3;alert('link'))

![tracker](https://evil.example/pixel.png)

Plain **markdown** still renders.
"#;

#[test]
fn the_console_works_in_a_real_browser_and_keeps_tenants_apart() {
    let py = browser_python().expect(
        "chromium and Playwright are missing: scripts/setup.sh installs them (build/browser, /usr/bin/chromium)",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    assert!(
        reg.web.starts_with("https://"),
        "console address: {:?}",
        reg.web
    );
    let (acme_token, globex_token) = rt.block_on(seed(&reg, true));
    let acme = rt.block_on(reg.client(&acme_token));
    let op = rt.block_on(reg.client(&reg.operator));

    // A card written to attack whoever reads it.
    let (_, team_token) = rt.block_on(op.create_token("team", "algobay", 0)).unwrap();
    let team = rt.block_on(reg.client(&team_token));
    let weights =
        std::fs::read(root().join("examples/kits/digits/models/mlp.safetensors")).unwrap();
    rt.block_on(team.publish_model(
        &weights,
        Some(br#"{"layers":[64,32,10]}"#),
        algobay_sdk::ModelInfo {
            name: "algobay/helpful".into(),
            version: "1.0.0".into(),
            domain: "vision".into(),
            task: "classification".into(),
            architecture: "mlp".into(),
            description: "a model whose card attacks its readers".into(),
            license: "Apache-2.0".into(),
            card: EVIL_CARD.into(),
            ..Default::default()
        },
        algobay_sdk::no_progress(),
    ))
    .unwrap();

    // An agent of acme serving a kit that keeps every request as a hard example.
    let agent = keen_agent(&rt, &reg, &acme, dir.path(), "telemetry_seconds = 1\n");
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
    // Served, as coverage counts it: acme (logistics) runs a kit made for
    // logistics and its device reported requests; globex runs nothing.
    wait_for(60, "acme counted as served", || {
        let c = rt.block_on(op.coverage()).unwrap();
        (c["enterprises_served"] == 1).then_some(c)
    });
    let c = rt.block_on(op.coverage()).unwrap();
    assert_eq!(c["industries_served"], 1, "{c}");
    let logistics = &c["by_industry"]["logistics"];
    assert_eq!(logistics["enterprises_served"], 1, "{c}");
    assert_eq!(logistics["devices"], 1, "{c}");
    assert!(logistics["kits"].as_u64().unwrap() >= 1, "{c}");
    assert!(
        c["by_domain"]["vision"]["models"].as_u64().unwrap() >= 1,
        "{c}"
    );
    assert!(
        c["by_industry"]
            .get("finance")
            .is_some_and(|f| f["enterprises_served"] == 0),
        "{c}"
    );
    // An enterprise sees the public catalog's counts: not how many other
    // enterprises there are or are served, nor the fleets per industry.
    let theirs = rt.block_on(acme.coverage()).unwrap();
    assert_eq!(theirs["enterprises_served"], 0, "{theirs}");
    assert_eq!(theirs["enterprises"], 0, "{theirs}");
    assert_eq!(theirs["devices"], 0, "{theirs}");
    assert_eq!(theirs["by_industry"]["logistics"]["devices"], 0, "{theirs}");
    assert_eq!(
        theirs["by_industry"]["logistics"]["enterprises_served"], 0,
        "{theirs}"
    );
    assert_eq!(
        theirs["by_industry"]["logistics"]["kits"], logistics["kits"],
        "{theirs}"
    );

    // A second token of acme, whose session the test revokes.
    let (doomed_id, doomed) = rt
        .block_on(op.create_token("enterprise", "acme", 0))
        .unwrap();

    let shots = root().join("target/console-screens");
    std::fs::create_dir_all(&shots).unwrap();
    let state = dir.path().join("doomed-session.json");
    let script = root().join("edge-agent/tests/python/console_browser.py");
    let run = |phase: &str| {
        let o = Command::new(&py)
            .arg(&script)
            .arg(phase)
            .env("WEB", &reg.web)
            .env("ACME", &acme_token)
            .env("GLOBEX", &globex_token)
            .env("OPERATOR", &reg.operator)
            .env("DOOMED", &doomed)
            .env("STATE", &state)
            .env("SHOTS", &shots)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            o.status.success(),
            "browser phase {phase} failed:\n{out}\n{err}"
        );
        out
    };
    let out = run("main");
    println!("{out}");
    for step in [
        "search, facet, kit page, diagram, golden samples, pull command copied",
        "hostile card inert",
        "session cookie HttpOnly Secure SameSite=Strict",
        "three samples labelled with the keyboard",
        "deployment seen in canary, then promoted",
        "another enterprise gets 404",
        "forms without the token refused",
        "coverage shows every target met or not",
    ] {
        assert!(
            out.contains(&format!("ok: {step}")),
            "missing `{step}` in:\n{out}"
        );
    }

    // The labels reached the registry through the same service as the command line.
    std::fs::write(dir.path().join("ca.pem"), &reg.ca_pem).unwrap();
    let o = Command::new(registry_bin().with_file_name("algobay"))
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .args([
            "--quiet",
            "--registry",
            &reg.url(),
            "--token",
            &acme_token,
            "--ca-cert",
        ])
        .arg(dir.path().join("ca.pem"))
        .args(["samples", "list", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let samples = listed
        .as_array()
        .cloned()
        .unwrap_or_else(|| listed["samples"].as_array().cloned().unwrap_or_default());
    let human = samples
        .iter()
        .filter(|s| {
            s["labels"].as_array().is_some_and(|l| {
                l.iter().any(|l| {
                    l["source"] == "human" && !l["value"].as_str().unwrap_or("").is_empty()
                })
            })
        })
        .count();
    assert_eq!(human, 3, "{listed:#}");

    // Revoking a token ends the sessions made with it.
    rt.block_on(op.revoke_token(&doomed_id)).unwrap();
    let out = run("revoked");
    assert!(out.contains("ok: revoked token's session ended"), "{out}");
    drop(agent);
}
