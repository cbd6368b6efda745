//! Hostile clients against real processes: thousands of connections that
//! never finish their headers (or their TLS handshake) and a few that send a
//! body a byte at a time, while a legitimate client keeps being answered in
//! time and the servers keep their file descriptors; enrollments of 15 MB
//! before any check; a device's queue of a thousand small samples.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

/// Connections a flood opens.
const FLOOD: usize = 2000;

/// Open file descriptors of a process.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Opens `n` connections to `addr` that send the start of a request's
/// headers and then a header line every second, never the end; returns the
/// task keeping them going (for `secs` seconds).
fn slowloris(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    n: usize,
    secs: u64,
) -> tokio::task::JoinHandle<usize> {
    let addr = addr.to_owned();
    rt.spawn(async move {
        let mut conns = Vec::new();
        for _ in 0..n {
            if let Ok(mut s) = TcpStream::connect(&addr).await {
                let _ = s.write_all(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\n").await;
                conns.push(s);
            }
        }
        let opened = conns.len();
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for s in &mut conns {
                let _ = s.write_all(b"X-Slow: 1\r\n").await;
            }
        }
        opened
    })
}

/// Answers' latencies (ms) of `n` requests made one after another.
fn latencies(n: usize, mut one: impl FnMut() -> bool) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        assert!(one(), "a legitimate request failed under the flood");
        out.push(t.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    out.sort_by(f64::total_cmp);
    out
}

fn pct(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn a_flood_of_slow_connections_does_not_starve_the_agent() {
    let rt = two_threads();
    let dir = tempfile::tempdir().unwrap();
    let (reg, acme) = seeded(&rt, dir.path(), false);
    let agent = device(&rt, &reg, &acme, dir.path(), "flooded", "");
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 120);
    let addr = agent.http.trim_start_matches("http://").to_owned();
    let quiet = latencies(10, || {
        http(&agent.http, "POST", "/v1/infer", &row9()).0 == 200
    });
    // Eight bodies sent a byte every two seconds: they hold no turn on the kit.
    let trickle = {
        let addr = addr.clone();
        rt.spawn(async move {
            let mut conns = Vec::new();
            for _ in 0..8 {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                s.write_all(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{")
                    .await
                    .unwrap();
                conns.push(s);
            }
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                for s in &mut conns {
                    let _ = s.write_all(b" ").await;
                }
            }
        })
    };
    let flood = slowloris(&rt, &addr, FLOOD, 25);
    std::thread::sleep(Duration::from_secs(4));
    let during = latencies(40, || {
        http(&agent.http, "POST", "/v1/infer", &row9()).0 == 200
            && http(&agent.http, "GET", "/v1/status", &[]).0 == 200
    });
    let files = open_files(agent.pid());
    let opened = rt.block_on(flood).unwrap();
    rt.block_on(trickle).unwrap();
    let (_, peak) = rss_mib(agent.pid());
    eprintln!(
        "agent under {opened} slow connections and 8 trickled bodies: infer+status p50 {:.1} ms, p99 {:.1} ms (quiet: p50 {:.1} ms); {files} open files; peak RSS {peak} MiB",
        pct(&during, 0.5),
        pct(&during, 0.99),
        pct(&quiet, 0.5)
    );
    assert!(peak < 400, "agent peak RSS {peak} MiB");
    assert_eq!(opened, FLOOD);
    assert!(pct(&during, 0.5) < 1000.0, "{during:?}");
    assert!(
        files < 1024 + 200,
        "the agent holds {files} files: its per-address cap sheds the longest idle"
    );
}

/// A TLS client that trusts `ca_pem` and names `localhost`.
fn tls_client(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn console_get(tls: &tokio_rustls::TlsConnector, addr: &str, path: &str) -> u16 {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tls.connect(name, tcp).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text).await;
    String::from_utf8_lossy(&text)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_flood_of_slow_connections_does_not_take_the_registry_down_through_its_console() {
    let rt = two_threads();
    let dir = tempfile::tempdir().unwrap();
    let (reg, acme) = seeded(&rt, dir.path(), false);
    let addr = reg
        .web
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let tls = tls_client(&reg.ca_pem);
    // Half the flood never starts TLS; the other half finishes it and then
    // never finishes a request's headers.
    let raw = slowloris(&rt, &addr, FLOOD / 2, 25);
    let after_tls = {
        let (addr, tls) = (addr.clone(), tls.clone());
        rt.spawn(async move {
            let mut conns = Vec::new();
            for _ in 0..FLOOD / 2 {
                let Ok(tcp) = TcpStream::connect(&addr).await else {
                    continue;
                };
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                if let Ok(mut s) = tls.connect(name, tcp).await {
                    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n").await;
                    conns.push(s);
                }
            }
            let opened = conns.len();
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                for s in &mut conns {
                    let _ = s.write_all(b"X-Slow: 1\r\n").await;
                }
            }
            opened
        })
    };
    std::thread::sleep(Duration::from_secs(4));
    let during = latencies(30, || {
        rt.block_on(console_get(&tls, &addr, "/")) == 200
            && rt.block_on(acme.list_devices("")).is_ok()
    });
    let files = open_files(reg.pid());
    let (raw, tls_opened) = (rt.block_on(raw).unwrap(), rt.block_on(after_tls).unwrap());
    let (_, peak) = rss_mib(reg.pid());
    eprintln!(
        "registry under {raw} raw and {tls_opened} TLS slow connections to its console: page + gRPC call p50 {:.1} ms, p99 {:.1} ms; {files} open files; peak RSS {peak} MiB",
        pct(&during, 0.5),
        pct(&during, 0.99)
    );
    assert!(peak < 600, "registry peak RSS {peak} MiB");
    assert_eq!(raw, FLOOD / 2);
    assert!(pct(&during, 0.5) < 2000.0, "{during:?}");
    assert!(files < 1024 + 400, "the registry holds {files} files");
}

#[test]
fn enrollments_are_bounded_before_they_are_read_and_hold_no_memory() {
    let rt = two_threads();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (_, before) = rss_mib(reg.pid());
    // 150 enrollments of 15 MB each, no valid token, 25 at a time.
    let csr = Arc::new("A".repeat(15 << 20));
    let anon = rt
        .block_on(algobay_sdk::Client::connect(
            &reg.url(),
            None,
            Some(reg.ca_pem.clone()),
        ))
        .unwrap();
    let errors: Vec<String> = rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..6 {
            let calls: Vec<_> = (0..25)
                .map(|_| {
                    let (c, csr) = (anon.clone(), csr.clone());
                    tokio::spawn(async move {
                        c.enroll("abe_not_a_token", &csr, "big", Default::default())
                            .await
                            .unwrap_err()
                            .to_string()
                    })
                })
                .collect();
            for c in calls {
                out.push(c.await.unwrap());
            }
        }
        out
    });
    let (after, peak) = rss_mib(reg.pid());
    eprintln!(
        "registry after 150 enrollments of 15 MB: RSS {after} MiB, peak {peak} MiB (before: peak {before} MiB); first error: {}",
        errors[0]
    );
    assert!(
        errors
            .iter()
            .all(|e| e.contains("over the limit of 16384 bytes")),
        "{:?}",
        &errors[..3]
    );
    assert!(peak < before + 150, "peak {peak} MiB (before {before} MiB)");
    // A real enrollment still works.
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let agent = device(&rt, &reg, &acme, dir.path(), "after", "");
    assert!(agent.status()["device_id"].as_str().is_some());
}

#[test]
fn a_thousand_queued_small_samples_reach_the_registry_in_batches_it_takes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (reg, acme) = seeded(&rt, dir.path(), false);
    // A kit that keeps every request as a hard example; the device syncs
    // A kit that keeps every request as a hard example; the device syncs
    // seldom, so the samples pile up between its pushes.
    let agent = keen_agent(
        &rt,
        &reg,
        &acme,
        dir.path(),
        "sync_wait_seconds = 60\nreport_seconds = 60\n",
    );
    for i in 0..1000 {
        // Every input its own (a repeated input is the same sample).
        let mut px: Vec<f32> = (0..64).map(|k| ((i + k * 13) % 17) as f32).collect();
        px[0] = i as f32 / 100.0;
        let (code, _) = http(&agent.http, "POST", "/v1/infer", &common::digits::body(&px));
        assert_eq!(code, 200);
    }
    let n = wait_for(180, "a thousand samples at the registry", || {
        let n = all_samples(&rt, &acme).len();
        (n >= 1000).then_some(n)
    });
    assert_eq!(n, 1000);
    assert!(
        !agent.log().contains("refused a batch"),
        "batches fit what the registry takes"
    );
}

#[test]
fn feedback_needs_the_application_key_when_the_device_has_one() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (reg, acme) = seeded(&rt, dir.path(), false);
    let agent = device(
        &rt,
        &reg,
        &acme,
        dir.path(),
        "keyed",
        "feedback_key = \"app-secret\"\n",
    );
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 120);
    let (code, _, rid) = infer_id(&agent.http, &row9());
    assert_eq!(code, 200);
    let fb = serde_json::json!({"request_id": rid, "label": "9"}).to_string();
    for auth in [None, Some("Bearer wrong"), Some("app-secret")] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let (code, ans) = http_with(&agent.http, "POST", "/v1/feedback", &headers, fb.as_bytes());
        assert_eq!(
            code,
            401,
            "{auth:?}: {}",
            String::from_utf8_lossy(&ans.body)
        );
    }
    let (code, ans) = http_with(
        &agent.http,
        "POST",
        "/v1/feedback",
        &[("Authorization", "Bearer app-secret")],
        fb.as_bytes(),
    );
    assert_eq!(code, 202, "{}", String::from_utf8_lossy(&ans.body));
}

#[test]
fn a_64_mb_one_line_csv_is_refused_within_a_small_memory_bound() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    rt.block_on(seed(&reg, false));
    let op = rt.block_on(reg.client(&reg.operator));
    let (_, team_token) = rt.block_on(op.create_token("team", "algobay", 0)).unwrap();
    let team = rt.block_on(reg.client(&team_token));
    let (_, before) = rss_mib(reg.pid());
    // 32 million fields on one line.
    let line: Vec<u8> = (0..64usize << 20)
        .map(|i| if i % 2 == 0 { b'1' } else { b',' })
        .collect();
    let e = rt
        .block_on(team.publish_dataset(
            &line,
            algobay_sdk::DatasetInfo {
                name: "algobay/one-line".into(),
                version: "1.0.0".into(),
                license: "CC0-1.0".into(),
                source: "made by this test".into(),
                ..Default::default()
            },
            algobay_sdk::no_progress(),
        ))
        .unwrap_err()
        .to_string();
    let (_, peak) = rss_mib(reg.pid());
    eprintln!(
        "registry after a 64 MB one-line CSV: peak RSS {peak} MiB (before {before} MiB): {e}"
    );
    assert!(e.contains("data line 1: longer than 1048576 bytes"), "{e}");
    assert!(peak < before + 100, "peak {peak} MiB (before {before} MiB)");
    // Search still answers every tenant.
    let found = rt
        .block_on(team.search(algobay_sdk::Search {
            text: "digits".into(),
            ..Default::default()
        }))
        .unwrap();
    assert!(!found.artifacts.is_empty());
}
