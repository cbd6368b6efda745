//! Two registry processes over one PostgreSQL and one S3-compatible server
//! (throwaway ones the test starts): they share keys, catalog, blobs and
//! fleet; what goes in through one comes out of the other; either can be
//! killed with `kill -9` mid-publish or mid-upload and nothing acknowledged
//! is lost, nothing is half there.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use algobay_registry::blobs::object::throwaway::S3;
use algobay_registry::store::postgres::throwaway::Postgres;

/// Runs `f` with a client of `reg` on a thread and runtime of its own (the
/// calls it makes go on while the test kills the registry).
fn on_thread<T: Send + 'static, F>(
    reg: &RegistryProc,
    token: &str,
    f: impl FnOnce(algobay_sdk::Client) -> F + Send + 'static,
) -> std::thread::JoinHandle<Result<T, algobay_sdk::SdkError>>
where
    F: std::future::Future<Output = Result<T, algobay_sdk::SdkError>>,
{
    let (url, token, ca) = (reg.url(), token.to_owned(), reg.ca_pem.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let c = algobay_sdk::Client::connect(&url, Some(token), Some(ca)).await?;
            f(c).await
        })
    })
}

/// Lines of a replica's log that say a deployment was promoted.
fn promotions(reg: &RegistryProc, id: &str) -> usize {
    let log = std::fs::read_to_string(reg.data.with_extension("log")).unwrap_or_default();
    // Without the terminal's colours.
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .filter(|l| {
            l.contains(&format!("deployment={id} "))
                && (l.contains("state=promoted") || l.contains("state=\"promoted\""))
        })
        .count()
}

#[test]
fn two_replicas_on_postgres_and_s3_serve_as_one_and_survive_a_kill_of_either() {
    let pg = Postgres::start();
    let s3 = S3::start();
    let meta = pg.database("algobay");
    let blobs = s3.bucket("algobay");
    let mut env: Vec<(&str, &str)> = s3.env().to_vec();
    // Promotions are logged at info: they are counted below.
    env.push(("RUST_LOG", "warn,algobay_registry::fleet=info"));
    let args = ["--meta", meta.as_str(), "--blobs", blobs.as_str()];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = RegistryProc::start_env(&data_a, 0, &args, &env);
    let mut b = RegistryProc::start_env(&data_b, 0, &args, &env);

    // One identity: B took A's certificate, device CA and signing key from the store.
    assert_eq!(a.ca_pem, b.ca_pem);
    let pubkey = |d: &std::path::Path| std::fs::read_to_string(d.join("registry.key.pub")).unwrap();
    assert_eq!(pubkey(&data_a), pubkey(&data_b));
    assert!(b.operator.is_empty(), "the operator token is made once");
    assert!(!data_a.join("blobs").exists() && !data_b.join("meta").exists());

    // Published through A, read through B at once; found by B's search within 2 s.
    let (acme_token, _) = rt.block_on(seed(&a, false));
    let acme_a = rt.block_on(a.client(&acme_token));
    let acme_b = rt.block_on(b.client(&acme_token));
    let kit = rt
        .block_on(acme_b.get("algobay/digits-mlp@1.0.1", Some(algobay_sdk::Kind::Kit)))
        .unwrap();
    assert_eq!(kit.version, "1.0.1");
    let t0 = Instant::now();
    wait_for(10, "B's search finds what A published", || {
        rt.block_on(acme_b.search(algobay_sdk::Search {
            text: "digits".into(),
            ..Default::default()
        }))
        .unwrap()
        .artifacts
        .iter()
        .any(|x| x.name == "algobay/digits-mlp")
        .then_some(())
    });
    println!(
        "search through B found A's publish after {:?}",
        t0.elapsed()
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // An agent syncing through B, long-polling 30 s at a time: a deployment
    // made through A wakes it at once (without the wake it would wait out the poll).
    let agent = device(
        &rt,
        &b,
        &acme_b,
        &dir.path().join("agent"),
        "edge-1",
        "sync_wait_seconds = 30\nreport_seconds = 60\ntelemetry_seconds = 1\ntrace_sample_ratio = 1.0\n",
    );
    serve(&rt, &acme_a, &agent, "algobay/digits-mlp@1.0.0", 120);
    std::thread::sleep(Duration::from_secs(1)); // the agent is back in its long poll
    let t0 = Instant::now();
    serve(&rt, &acme_a, &agent, "algobay/digits-mlp@1.0.1", 120);
    let woke = t0.elapsed();
    println!("a deployment through A was running on B's agent after {woke:?}");
    assert!(
        woke < Duration::from_secs(20),
        "{woke:?}: the long poll was not woken"
    );

    // Requests served: telemetry and traces go to B; A reads the same figures.
    for _ in 0..5 {
        let (code, out) = agent.infer(&row9());
        assert_eq!(code, 200, "{out}");
    }
    let figures = |c: &algobay_sdk::Client| {
        rt.block_on(c.telemetry("", ""))
            .unwrap()
            .into_iter()
            .filter(|t| t.kit_reference == "algobay/digits-mlp@1.0.1")
            .map(|t| (t.requests, t.errors, t.latency_count))
            .collect::<Vec<_>>()
    };
    let traces = |c: &algobay_sdk::Client| {
        let mut ids: Vec<String> = rt
            .block_on(c.traces(&algobay_sdk::fleet::TraceQuery::default()))
            .unwrap()
            .into_iter()
            .map(|t| t.trace_id)
            .collect();
        ids.sort();
        ids
    };
    wait_for(30, "5 requests in B's figures", || {
        (figures(&acme_b) == vec![(5, 0, 5)] && traces(&acme_b).len() >= 5).then_some(())
    });
    assert_eq!(figures(&acme_a), figures(&acme_b));
    assert_eq!(traces(&acme_a), traces(&acme_b));
    let (before, traced) = (figures(&acme_b), traces(&acme_b));
    // B killed and started again: the same totals and traces.
    let port_b = b.port;
    b.kill();
    assert_eq!(figures(&acme_a), before, "A still has them with B gone");
    b = RegistryProc::start_env(&data_b, port_b, &args, &env);
    let acme_b = rt.block_on(b.client(&acme_token));
    assert_eq!(figures(&acme_b), before);
    assert_eq!(traces(&acme_b), traced);

    // kill -9 of A mid-upload: what A acknowledged is kept, and the upload
    // resumes through B; nothing is there under the blob's name before it ends.
    let op = rt.block_on(a.client(&a.operator));
    let (_, team) = rt.block_on(op.create_token("team", "algobay", 0)).unwrap();
    let big: Vec<u8> = (0..24u64 << 20)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    let digest = algobay_runtime::Digest::of(&big).to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let progress: algobay_sdk::Progress = Arc::new(move |done, total| {
        if done * 10 >= total * 6 {
            let _ = tx.send(());
        }
    });
    let upload = {
        let big = big.clone();
        on_thread(
            &a,
            &team,
            move |c| async move { c.upload(&big, progress).await },
        )
    };
    rx.recv_timeout(Duration::from_secs(120)).unwrap();
    a.kill();
    assert!(upload.join().unwrap().is_err(), "the upload was cut");
    let team_b = rt.block_on(b.client(&team));
    let scratch = dir.path().join("download");
    assert!(
        rt.block_on(team_b.download_to(&digest, &scratch, algobay_sdk::no_progress()))
            .is_err(),
        "nothing under the blob's name before the upload ends"
    );
    let resumed = rt
        .block_on(team_b.upload(&big, algobay_sdk::no_progress()))
        .unwrap();
    println!(
        "upload cut by kill -9 at ~60%: {} of {} bytes sent again through B",
        resumed.sent,
        big.len()
    );
    assert!(
        resumed.sent > 0 && (resumed.sent as usize) < big.len(),
        "{resumed:?}"
    );
    let _ = std::fs::remove_file(&scratch);
    rt.block_on(team_b.download_to(&digest, &scratch, algobay_sdk::no_progress()))
        .unwrap();
    assert!(std::fs::read(&scratch).unwrap() == big);

    // kill -9 of A mid-publish: the kit is there whole or not at all; B then publishes it.
    let port_a = a.port;
    a = RegistryProc::start_env(&data_a, port_a, &args, &env);
    let push = on_thread(&a, &team, |c| async move {
        c.push_kit(&kits().ocr, algobay_sdk::no_progress()).await
    });
    std::thread::sleep(Duration::from_millis(1500));
    a.kill();
    let cut = push.join().unwrap();
    let ocr = kits().ocr.manifest.name.clone() + "@" + &kits().ocr.manifest.version;
    match rt.block_on(team_b.get(&ocr, Some(algobay_sdk::Kind::Kit))) {
        Ok(k) => {
            // Stored whole: every blob it names is there.
            for blob in &k.blobs {
                let p = dir.path().join("blob");
                let _ = std::fs::remove_file(&p);
                rt.block_on(team_b.download_to(blob, &p, algobay_sdk::no_progress()))
                    .unwrap();
            }
        }
        Err(e) => assert!(cut.is_err(), "acknowledged but not stored: {e}"),
    }
    let team_b2 = rt.block_on(b.client(&team));
    rt.block_on(team_b2.push_kit(&kits().ocr, algobay_sdk::no_progress()))
        .unwrap();
    rt.block_on(team_b2.get(&ocr, Some(algobay_sdk::Kind::Kit)))
        .unwrap();

    // Both replicas running: a canary soaks and is promoted once, by whichever holds the lease.
    a = RegistryProc::start_env(&data_a, port_a, &args, &env);
    let acme_a = rt.block_on(a.client(&acme_token));
    let dep = rt
        .block_on(acme_a.create_deployment(
            "",
            "algobay/digits-mlp@1.0.0",
            std::collections::BTreeMap::new(),
            algobay_sdk::fleet::RolloutPolicy {
                canary_share: 1.0,
                soak_seconds: 3,
                ..Default::default()
            },
        ))
        .unwrap();
    wait_for(90, "the canary promoted", || {
        rt.block_on(acme_b.list_deployments(""))
            .unwrap()
            .into_iter()
            .find(|d| d.id == dep.id && d.state == "promoted")
    });
    std::thread::sleep(Duration::from_secs(3)); // both keep ticking
    let (by_a, by_b) = (promotions(&a, &dep.id), promotions(&b, &dep.id));
    assert_eq!(
        by_a + by_b,
        1,
        "promoted by A {by_a} times, by B {by_b}: {}",
        std::fs::read_to_string(a.data.with_extension("log")).unwrap_or_default()
    );
}
