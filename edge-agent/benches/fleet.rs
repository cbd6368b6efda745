//! Fleet benchmarks, with a real registry process and real agents on loopback:
//!
//! 1. a kit update where one model blob changed: bytes over the wire / kit size;
//! 2. deployment created → OCR kit serving on a fresh device;
//! 3. many simulated devices syncing against one registry: sync latency at a
//!    steady report rate, and the fan-out of a new deployment to all of them.
//!
//! `cargo bench -p algobay-agent --bench fleet [-- --devices 10000 --seconds 30 --interval 10]`
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use algobay_sdk::fleet::{DeviceState, RolloutPolicy};
use algobay_sdk::Client;

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
    let t = Instant::now();
    let clients: Vec<Client> = rt.block_on(async {
        let key = Arc::new(rcgen::KeyPair::generate().unwrap());
        let key_pem = key.serialize_pem();
        let anon = Client::connect(&reg.url(), None, Some(reg.ca_pem.clone()))
            .await
            .unwrap();
        let sem = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = Vec::new();
        for i in 0..devices {
            let (acme, anon, key, key_pem, sem) = (
                acme.clone(),
                anon.clone(),
                key.clone(),
                key_pem.clone(),
                sem.clone(),
            );
            let (url, ca) = (reg.url(), reg.ca_pem.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                let (_, token) = acme
                    .create_enrollment_token("", selector("sim", "yes"), 0)
                    .await
                    .unwrap();
                let csr = rcgen::CertificateParams::default()
                    .serialize_request(&*key)
                    .unwrap()
                    .pem()
                    .unwrap();
                let e = anon
                    .enroll(&token, &csr, &format!("sim-{i}"), BTreeMap::new())
                    .await
                    .unwrap();
                Client::connect_device(&url, Some(ca), &e.certificate_pem, &key_pem)
                    .await
                    .unwrap()
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    println!(
        "enrolled and connected {} devices in {:.1} s",
        clients.len(),
        t.elapsed().as_secs_f64()
    );
    let desired = rt.block_on(clients[0].sync(None, ("", ""), 0)).unwrap();
    assert_eq!(desired.deployment_id, dep.id);
    let state = DeviceState {
        active_digest: desired.kit_digest.clone(),
        active_reference: desired.kit_reference.clone(),
        deployment_id: dep.id.clone(),
        phase: "active".into(),
        ..Default::default()
    };

    // Each device first reports that it runs the kit (a stored change of state).
    let t = Instant::now();
    rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = Vec::new();
        for c in &clients {
            let (c, state, known, sem) = (c.clone(), state.clone(), desired.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await.unwrap();
                c.sync(Some(&state), (&known.kit_digest, &known.deployment_id), 0)
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!(
        "every device reported its new state (one durable write each) in {:.1} s: {:.0} reports/s",
        t.elapsed().as_secs_f64(),
        devices as f64 / t.elapsed().as_secs_f64()
    );

    // Steady state: every device reports and asks for its desired state every `interval` s.
    let (lat, count, errors) = rt.block_on(async {
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let (c, state, known) = (c.clone(), state.clone(), desired.clone());
            let offset = Duration::from_millis((i as u64 * interval * 1000) / devices as u64);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut next = tokio::time::Instant::now() + offset;
                loop {
                    tokio::time::sleep_until(next).await;
                    if Instant::now() >= end {
                        break;
                    }
                    let s = Instant::now();
                    match c
                        .sync(Some(&state), (&known.kit_digest, &known.deployment_id), 0)
                        .await
                    {
                        Ok(_) => lat.push(s.elapsed().as_secs_f64() * 1000.0),
                        Err(_) => errors += 1,
                    }
                    next += Duration::from_secs(interval);
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.unwrap();
            all.extend(l);
            errors += e;
        }
        let n = all.len();
        (all, n, errors)
    });
    let mut lat = lat;
    let p99 = pct(&mut lat, 0.99);
    println!(
        "steady state, each device syncing every {interval} s for {seconds} s: {:.0} syncs/s, \
p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {errors} errors (goal: p99 ≤ 50 ms with 10,000 devices: {})",
        count as f64 / seconds as f64,
        pct(&mut lat, 0.5),
        p99,
        lat.last().copied().unwrap_or(0.0),
        if devices >= 10_000 && p99 <= 50.0 && errors == 0 {
            "met"
        } else if p99 <= 50.0 && errors == 0 {
            "met at this count"
        } else {
            "NOT met"
        }
    );

    // Fan-out: every device long-polls; one new deployment reaches them all.
    let mut wake = rt.block_on(async {
        let mut tasks = Vec::new();
        let start = Arc::new(std::sync::OnceLock::<Instant>::new());
        for c in &clients {
            let (c, known) = (c.clone(), desired.clone());
            tasks.push(tokio::spawn(async move {
                let got = c
                    .sync(None, (&known.kit_digest, &known.deployment_id), 60)
                    .await;
                let at = Instant::now();
                got.ok().map(|d| (d, at))
            }));
        }
        // Let every long-poll reach the registry.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = start.set(Instant::now());
        acme.create_deployment(
            "",
            "algobay/digits-mlp@1.0.1",
            selector("sim", "yes"),
            all(),
        )
        .await
        .unwrap();
        let t0 = *start.get().unwrap();
        let mut v = Vec::new();
        for t in tasks {
            if let Some((d, at)) = t.await.unwrap() {
                if d.kit_reference == "algobay/digits-mlp@1.0.1" {
                    v.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                }
            }
        }
        v
    });
    let reached = wake.len();
    println!(
        "a new deployment reached {reached} of {devices} long-polling devices: p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms after it was created",
        pct(&mut wake, 0.5),
        pct(&mut wake, 0.99),
        wake.last().copied().unwrap_or(0.0)
    );
}
