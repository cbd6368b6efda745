//! Fleet benchmarks, with a real registry process and real agents on loopback:
//!
//! 1. a kit update where one model blob changed: bytes over the wire / kit size;
//! 2. deployment created → OCR kit serving on a fresh device;
//! 3. many simulated devices syncing against one registry: sync latency at a
//!    steady report rate, and the fan-out of a new deployment to all of them;
//! 4. the same devices spread over two registry replicas on PostgreSQL + an
//!    S3-compatible server (throwaway ones), a deployment made through one.
//!
//! `cargo bench -p algobay-agent --bench fleet [-- --devices 10000 --seconds 30 --interval 10]`
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use algobay_sdk::fleet::RolloutPolicy;

use common::*;

fn all() -> RolloutPolicy {
    RolloutPolicy {
        canary_share: 1.0,
        soak_seconds: 0,
        ..Default::default()
    }
}

fn selector(k: &str, v: &str) -> BTreeMap<String, String> {
    [(k.to_owned(), v.to_owned())].into()
}

/// The det model with one more metadata entry: other bytes, the same network.
fn det_revised(out: &std::path::Path) {
    let mut bytes = std::fs::read(root().join("examples/kits/ocr/models/det.onnx")).unwrap();
    // ModelProto field 14 (metadata_props), a StringStringEntryProto {1: key, 2: value}.
    let entry = [&[0x0a, 8][..], b"revision", &[0x12, 1], b"2"].concat();
    bytes.extend_from_slice(&[0x72, entry.len() as u8]);
    bytes.extend_from_slice(&entry);
    std::fs::write(out, bytes).unwrap();
}

fn main() {
    let devices = arg("--devices", 10_000) as usize;
    let seconds = arg("--seconds", 30);
    let interval = arg("--interval", 10);
    println!(
        "algobay fleet benchmarks ({} cores)\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let k = kits();
    let revised = k.builder.scratch().join("det-revised.onnx");
    det_revised(&revised);
    let ocr_next = k.builder.build(
        "ocr",
        "1.0.1",
        &[(
            &format!("{}/examples/kits/ocr/models/det.onnx\"", root().display()),
            &format!("{}\"", revised.display()),
        )],
    );
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, true));
    let acme = rt.block_on(reg.client(&acme_token));
    rt.block_on(push_as_algobay(&reg, &ocr_next));
    let enroll_token = |labels: BTreeMap<String, String>| {
        rt.block_on(acme.create_enrollment_token("", labels, 0))
            .unwrap()
            .1
    };

    // ------------------------------------------------------------ 2: deploy → serving
    println!("## deployment created → kit serving on a fresh device (OCR kit, loopback)");
    let proxy = Proxy::start(reg.port);
    let agent = AgentProc::start(
        &dir.path().join("agent"),
        &proxy.url(),
        &reg.ca_pem,
        &enroll_token(selector("bench", "update")),
        &k.public,
        &DeviceSpec {
            name: "bench",
            labels: &[],
            stage_memory_mb: None,
            extra: "",
        },
    );
    let t = Instant::now();
    rt.block_on(acme.create_deployment(
        "",
        "algobay/ocr-ppocrv4@1.0.0",
        selector("bench", "update"),
        all(),
    ))
    .unwrap();
    wait_for(300, "the OCR kit", || {
        agent.active().filter(|r| r == "algobay/ocr-ppocrv4@1.0.0")
    });
    let fresh = t.elapsed();
    let ocr_bytes: u64 = k.ocr.blobs.values().map(|b| b.len() as u64).sum::<u64>()
        + k.ocr.manifest_bytes.len() as u64;
    println!(
        "OCR kit ({:.1} MB) serving {:.2} s after the deployment was created \
(long-poll wake-up, pull, verify, load, 2 golden samples on the device, activate)\n",
        ocr_bytes as f64 / 1e6,
        fresh.as_secs_f64()
    );

    // ------------------------------------------------------------ 1: one changed blob
    println!("## kit update where one model blob changed (det.onnx revised)");
    let before = proxy.to_client.load(Ordering::SeqCst);
    let t = Instant::now();
    rt.block_on(acme.create_deployment(
        "",
        "algobay/ocr-ppocrv4@1.0.1",
        selector("bench", "update"),
        all(),
    ))
    .unwrap();
    wait_for(300, "the revised OCR kit", || {
        agent.active().filter(|r| r == "algobay/ocr-ppocrv4@1.0.1")
    });
    let update = t.elapsed();
    let wire = proxy.to_client.load(Ordering::SeqCst) - before;
    let kit_size: u64 = ocr_next.blobs.values().map(|b| b.len() as u64).sum::<u64>()
        + ocr_next.manifest_bytes.len() as u64;
    let changed: u64 = ocr_next
        .blobs
        .iter()
        .filter(|(d, _)| !k.ocr.blobs.contains_key(d))
        .map(|(_, b)| b.len() as u64)
        .sum::<u64>()
        + ocr_next.manifest_bytes.len() as u64;
    let share = changed as f64 / kit_size as f64 * 100.0;
    let sent = wire as f64 / kit_size as f64 * 100.0;
    println!(
        "bytes on the wire to the device (TLS, gRPC, syncs included): {wire} of a {kit_size}-byte kit = {sent:.2}%; \
the changed blob and new manifest are {share:.2}% of it (goal: ≤ {:.2}%: {})",
        share + 1.0,
        if sent <= share + 1.0 { "met" } else { "NOT met" }
    );
    println!(
        "update serving {:.2} s after its deployment\n",
        update.as_secs_f64()
    );
    drop(agent);

    // ------------------------------------------------------------ 3: many devices
    println!(
        "## {devices} simulated devices against one registry (each its own mTLS connection and certificate)"
    );
    let acme = Arc::new(acme);
    let dep = rt
        .block_on(acme.create_deployment(
            "",
            "algobay/digits-mlp@1.0.0",
            selector("sim", "yes"),
            all(),
        ))
        .unwrap();
    let one = [sim::Replica {
        url: reg.url(),
        ca_pem: reg.ca_pem.clone(),
    }];
    let (clients, desired, state) = sim::start_fleet(&rt, acme.clone(), &one, devices, &dep.id, "");
    // Steady state: every device reports and asks for its desired state every `interval` s.
    sim::print_steady(&rt, (&clients, &state, &desired), seconds, interval, "");

    // Fan-out: every device long-polls; one new deployment reaches them all.
    let reached = rt.block_on(sim::fan_out(
        &clients,
        &desired,
        "algobay/digits-mlp@1.0.1",
        async {
            acme.create_deployment(
                "",
                "algobay/digits-mlp@1.0.1",
                selector("sim", "yes"),
                all(),
            )
            .await
            .unwrap();
        },
    ));
    let mut wake: Vec<f64> = reached.iter().map(|(_, ms)| *ms).collect();
    let reached = wake.len();
    println!(
        "a new deployment reached {reached} of {devices} long-polling devices: p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms after it was created",
        pct(&mut wake, 0.5),
        pct(&mut wake, 0.99),
        wake.last().copied().unwrap_or(0.0)
    );

    drop(clients);

    // ------------------------------------------------------------ 4: two replicas
    use algobay_registry::blobs::object::throwaway::S3;
    use algobay_registry::store::postgres::throwaway::Postgres;
    println!(
        "\n## {devices} simulated devices spread over two replicas on PostgreSQL + S3 (real registry processes)"
    );
    let pg = Postgres::start();
    let s3 = S3::start();
    let (meta, bucket) = (pg.database("fleet"), s3.bucket("fleet"));
    let env = s3.env();
    let args = ["--meta", meta.as_str(), "--blobs", bucket.as_str()];
    let a = RegistryProc::start_env(&dir.path().join("replica-a"), 0, &args, &env);
    let b = RegistryProc::start_env(&dir.path().join("replica-b"), 0, &args, &env);
    let (acme_token, _) = rt.block_on(seed(&a, false));
    let acme = Arc::new(rt.block_on(a.client(&acme_token)));
    let dep = rt
        .block_on(acme.create_deployment(
            "",
            "algobay/digits-mlp@1.0.0",
            selector("sim", "yes"),
            all(),
        ))
        .unwrap();
    let replicas = [
        sim::Replica {
            url: a.url(),
            ca_pem: a.ca_pem.clone(),
        },
        sim::Replica {
            url: b.url(),
            ca_pem: b.ca_pem.clone(),
        },
    ];
    let (clients, desired, state) = sim::start_fleet(
        &rt,
        acme.clone(),
        &replicas,
        devices,
        &dep.id,
        ", half to each replica,",
    );
    sim::print_steady(
        &rt,
        (&clients, &state, &desired),
        seconds,
        interval,
        " over two replicas",
    );
    let reached = rt.block_on(sim::fan_out(
        &clients,
        &desired,
        "algobay/digits-mlp@1.0.1",
        async {
            acme.create_deployment(
                "",
                "algobay/digits-mlp@1.0.1",
                selector("sim", "yes"),
                all(),
            )
            .await
            .unwrap();
        },
    ));
    for (side, name) in [
        (0, "A (where it was made)"),
        (1, "B (told through PostgreSQL)"),
    ] {
        let mut v: Vec<f64> = reached
            .iter()
            .filter(|(i, _)| i % 2 == side)
            .map(|(_, ms)| *ms)
            .collect();
        let n = v.len();
        println!(
            "a deployment made through A reached {n} of {} devices long-polling replica {name}: p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms",
            devices / 2 + (devices % 2) * (1 - side),
            pct(&mut v, 0.5),
            pct(&mut v, 0.99),
            v.last().copied().unwrap_or(0.0)
        );
    }
}
