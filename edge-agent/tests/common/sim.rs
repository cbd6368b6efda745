//! Simulated devices for the fleet benchmarks: each one enrolled for real
//! (its own certificate) and holding its own mTLS connection, spread over
//! one or more registry replicas.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use algobay_sdk::fleet::{Desired, DeviceState, RolloutPolicy};
use algobay_sdk::Client;

/// A registry replica the devices may connect to: its URL and CA certificate.
#[derive(Clone, Debug)]
pub struct Replica {
    pub url: String,
    pub ca_pem: String,
}

/// Every device at once, no soak.
pub fn at_once() -> RolloutPolicy {
    RolloutPolicy {
        canary_share: 1.0,
        soak_seconds: 0,
        ..Default::default()
    }
}

pub fn labels(k: &str, v: &str) -> BTreeMap<String, String> {
    [(k.to_owned(), v.to_owned())].into()
}

/// Enrolls `n` devices labelled `sim=yes` through `acme`, device `i` on
/// replica `i % replicas.len()`; returns their clients (device `i` at `i`).
pub async fn enroll(acme: Arc<Client>, replicas: &[Replica], n: usize) -> Vec<Client> {
    let key = Arc::new(rcgen::KeyPair::generate().unwrap());
    let key_pem = key.serialize_pem();
    let mut anon = Vec::new();
    for r in replicas {
        anon.push(
            Client::connect(&r.url, None, Some(r.ca_pem.clone()))
                .await
                .unwrap(),
        );
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..n {
        let r = replicas[i % replicas.len()].clone();
        let (acme, anon, key, key_pem, sem) = (
            acme.clone(),
            anon[i % replicas.len()].clone(),
            key.clone(),
            key_pem.clone(),
            sem.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let (_, token) = acme
                .create_enrollment_token("", labels("sim", "yes"), 0)
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
            Client::connect_device(&r.url, Some(r.ca_pem), &e.certificate_pem, &key_pem)
                .await
                .unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// What a device runs once it took `desired`.
pub fn running(desired: &Desired) -> DeviceState {
    DeviceState {
        active_digest: desired.kit_digest.clone(),
        active_reference: desired.kit_reference.clone(),
        deployment_id: desired.deployment_id.clone(),
        phase: "active".into(),
        ..Default::default()
    }
}

/// Every device reports `state` once (a stored change each); returns the seconds taken.
pub async fn report_all(clients: &[Client], state: &DeviceState, known: &Desired) -> f64 {
    let t = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for c in clients {
        let (c, state, known, sem) = (c.clone(), state.clone(), known.clone(), sem.clone());
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
    t.elapsed().as_secs_f64()
}

/// Every device reports and asks for its desired state every `interval` s,
/// spread evenly, for `seconds`: (latencies in ms, errors).
pub async fn steady(
    clients: &[Client],
    state: &DeviceState,
    known: &Desired,
    seconds: u64,
    interval: u64,
) -> (Vec<f64>, u64) {
    let end = Instant::now() + Duration::from_secs(seconds);
    let n = clients.len() as u64;
    let mut tasks = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, state, known) = (c.clone(), state.clone(), known.clone());
        let offset = Duration::from_millis((i as u64 * interval * 1000) / n.max(1));
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
    (all, errors)
}

/// Every device long-polls; `deploy` then creates a deployment of `reference`
/// (through whichever replica it likes). Returns, per device it reached (with
/// the index of the device), the ms from creation to the device's answer.
pub async fn fan_out<F>(
    clients: &[Client],
    known: &Desired,
    reference: &str,
    deploy: F,
) -> Vec<(usize, f64)>
where
    F: std::future::Future<Output = ()>,
{
    let mut tasks = Vec::new();
    for c in clients {
        let (c, known) = (c.clone(), known.clone());
        tasks.push(tokio::spawn(async move {
            let got = c
                .sync(None, (&known.kit_digest, &known.deployment_id), 60)
                .await;
            let at = Instant::now();
            got.ok().map(|d| (d, at))
        }));
    }
    // Let every long-poll reach its registry.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    deploy.await;
    let mut v = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if let Some((d, at)) = t.await.unwrap() {
            if d.kit_reference == reference {
                v.push((i, at.saturating_duration_since(t0).as_secs_f64() * 1000.0));
            }
        }
    }
    v
}

/// The verdict on the sync goal (p99 ≤ 50 ms with 10,000 devices, no errors).
pub fn verdict(devices: usize, p99: f64, errors: u64) -> &'static str {
    if devices >= 10_000 && p99 <= 50.0 && errors == 0 {
        "met"
    } else if p99 <= 50.0 && errors == 0 {
        "met at this count"
    } else {
        "NOT met"
    }
}

/// Enrolls `devices` over `replicas`, checks that the first gets deployment
/// `deployment`, has every device report running it, and prints what each
/// step took (`how` says where the devices went).
pub fn start_fleet(
    rt: &tokio::runtime::Runtime,
    acme: Arc<Client>,
    replicas: &[Replica],
    devices: usize,
    deployment: &str,
    how: &str,
) -> (Vec<Client>, Desired, DeviceState) {
    let t = Instant::now();
    let clients = rt.block_on(enroll(acme, replicas, devices));
    println!(
        "enrolled and connected {} devices{how} in {:.1} s",
        clients.len(),
        t.elapsed().as_secs_f64()
    );
    // A deployment made before any device matched reaches them once its gate
    // (ticking each second) promotes it.
    let desired = super::wait_for(30, "the deployment reaching the devices", || {
        let d = rt.block_on(clients[0].sync(None, ("", ""), 0)).unwrap();
        (d.deployment_id == deployment).then_some(d)
    });
    let state = running(&desired);
    // Each device first reports that it runs the kit (a stored change of state).
    let took = rt.block_on(report_all(&clients, &state, &desired));
    println!(
        "every device reported its new state (one durable write each) in {took:.1} s: {:.0} reports/s",
        devices as f64 / took
    );
    (clients, desired, state)
}

/// Runs [`steady`] and prints its figures against the goal.
pub fn print_steady(
    rt: &tokio::runtime::Runtime,
    fleet: (&[Client], &DeviceState, &Desired),
    seconds: u64,
    interval: u64,
    how: &str,
) {
    let (clients, state, desired) = fleet;
    let (mut lat, errors) = rt.block_on(steady(clients, state, desired, seconds, interval));
    let count = lat.len();
    let p99 = super::pct(&mut lat, 0.99);
    println!(
        "steady state{how}, each device syncing every {interval} s for {seconds} s: {:.0} syncs/s, \
p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {errors} errors (goal: p99 ≤ 50 ms with 10,000 devices: {})",
        count as f64 / seconds as f64,
        super::pct(&mut lat, 0.5),
        p99,
        lat.last().copied().unwrap_or(0.0),
        verdict(clients.len(), p99, errors)
    );
}
