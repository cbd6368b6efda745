//! A real registry and real agents on loopback: rollouts, rollbacks, dropped
//! links, kills, outages, tenants and revocation.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use algobay_sdk::client::Code;
use algobay_sdk::fleet::{Action, RolloutPolicy};
use algobay_sdk::{Client, SdkError};

use common::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn policy(canary: f64, soak: u32) -> RolloutPolicy {
    RolloutPolicy {
        canary_share: canary,
        soak_seconds: soak,
        ..Default::default()
    }
}

fn label(k: &str, v: &str) -> BTreeMap<String, String> {
    [(k.to_owned(), v.to_owned())].into()
}

async fn deployment_state(c: &Client, id: &str) -> (String, String) {
    let s = c.deployment_status(id).await.unwrap();
    (s.deployment.state, s.deployment.reason)
}

#[test]
fn canary_passes_its_gate_then_promotes_and_a_kit_failing_on_a_device_rolls_back() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, true));
    let acme = rt.block_on(reg.client(&acme_token));
    let k = kits();

    let token = |labels: BTreeMap<String, String>| {
        rt.block_on(acme.create_enrollment_token("", labels, 0))
            .unwrap()
            .1
    };
    let a = AgentProc::start(
        &dir.path().join("a"),
        &reg.url(),
        &reg.ca_pem,
        &token(label("site", "hz")),
        &k.public,
        &DeviceSpec {
            name: "camera-a",
            labels: &[("line", "1")],
            stage_memory_mb: None,
            extra: "",
        },
    );
    // A small device: its stages get at most 16 MiB, too little for the OCR kit's decoder.
    let b = AgentProc::start(
        &dir.path().join("b"),
        &reg.url(),
        &reg.ca_pem,
        &token(label("site", "hz")),
        &k.public,
        &DeviceSpec {
            name: "camera-b",
            labels: &[("line", "2")],
            stage_memory_mb: Some(16),
            extra: "",
        },
    );
    let devices = rt.block_on(acme.list_devices("")).unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices
        .iter()
        .all(|d| d.labels.get("site").map(String::as_str) == Some("hz")));

    // Half the fleet first; the gate passes after the soak; then everyone.
    let dep = rt
        .block_on(acme.create_deployment(
            "",
            "algobay/digits-mlp@1.0.0",
            label("site", "hz"),
            policy(0.5, 2),
        ))
        .unwrap();
    assert_eq!(dep.state, "canary");
    assert_eq!(dep.canary_devices.len(), 1);
    let canary_is_a = devices
        .iter()
        .find(|d| d.id == dep.canary_devices[0])
        .unwrap()
        .name
        == "camera-a";
    let (canary, other) = if canary_is_a { (&a, &b) } else { (&b, &a) };
    wait_for(180, "the canary to run the kit", || {
        canary.active().filter(|r| r == "algobay/digits-mlp@1.0.0")
    });
    assert_eq!(other.active(), None, "the other device waits for the gate");
    wait_for(180, "the gate to promote", || {
        let (state, reason) = rt.block_on(deployment_state(&acme, &dep.id));
        (state == "promoted").then_some(reason)
    });
    wait_for(180, "the other device to run the kit", || {
        other.active().filter(|r| r == "algobay/digits-mlp@1.0.0")
    });
    for agent in [&a, &b] {
        let (code, out) = agent.infer(&row9());
        assert_eq!(code, 200, "{out}");
        assert_eq!(out["result"][0][0]["label"], "9");
    }

    // The OCR kit: fine on A, its golden samples fail on B. B keeps digits
    // and says why; the gate rolls the deployment back, and A returns to digits.
    let ocr = rt
        .block_on(acme.create_deployment(
            "",
            "algobay/ocr-ppocrv4@1.0.0",
            label("site", "hz"),
            policy(1.0, 600),
        ))
        .unwrap();
    let reason = wait_for(180, "the gate to roll the OCR kit back", || {
        let (state, reason) = rt.block_on(deployment_state(&acme, &ocr.id));
        (state == "rolled_back").then_some(reason)
    });
    assert!(
        reason.contains("health gate failed") && reason.contains("golden"),
        "{reason}"
    );
    let sb = b.status();
    assert_eq!(
        sb["active"]["reference"], "algobay/digits-mlp@1.0.0",
        "{sb}"
    );
    assert_eq!(sb["failed"][0]["deployment_id"], ocr.id.as_str(), "{sb}");
    let (code, out) = b.infer(&row9());
    assert_eq!((code, &out["result"][0][0]["label"]), (200, &"9".into()));
    wait_or(
        180,
        "A to settle on the digits kit",
        || {
            let st = a.status();
            (st["phase"] == "active" && st["active"]["reference"] == "algobay/digits-mlp@1.0.0")
                .then_some(())
        },
        || format!("{}\n{}", a.status(), a.log()),
    );

    // A failed deployment does not block the next one.
    let next = rt
        .block_on(acme.create_deployment(
            "",
            "algobay/digits-mlp@1.0.1",
            label("site", "hz"),
            RolloutPolicy {
                manual_promote: true,
                ..policy(0.5, 0)
            },
        ))
        .unwrap();
    rt.block_on(acme.deployment_action(&next.id, Action::Promote, "looks good"))
        .unwrap();
    for agent in [&a, &b] {
        wait_or(
            180,
            "every device to run 1.0.1",
            || agent.active().filter(|r| r == "algobay/digits-mlp@1.0.1"),
            || {
                let s = rt.block_on(acme.deployment_status(&next.id));
                format!("{s:?}\n{}\n{}", agent.status(), agent.log())
            },
        );
        let st = agent.status();
        assert_eq!(
            st["previous"]["reference"],
            "algobay/digits-mlp@1.0.0",
            "{st}\n{}",
            agent.log()
        );
    }
    let (state, reason) = rt.block_on(deployment_state(&acme, &next.id));
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("promoted", "promoted looks good")
    );
}

#[test]
fn pulls_resume_after_a_cut_and_a_kill_and_the_agent_outlives_the_registry() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, true));
    let acme = rt.block_on(reg.client(&acme_token));
    let k = kits();
    let proxy = Proxy::start(reg.port);
    let (_, token) = rt
        .block_on(acme.create_enrollment_token("", BTreeMap::new(), 0))
        .unwrap();
    let mut agent = AgentProc::start(
        &dir.path().join("agent"),
        &proxy.url(),
        &reg.ca_pem,
        &token,
        &k.public,
        &DeviceSpec {
            name: "gate-1",
            labels: &[],
            stage_memory_mb: None,
            extra: "",
        },
    );
    rt.block_on(acme.create_deployment(
        "",
        "algobay/digits-mlp@1.0.0",
        BTreeMap::new(),
        policy(1.0, 0),
    ))
    .unwrap();
    wait_for(180, "the digits kit", || {
        agent.active().filter(|r| r == "algobay/digits-mlp@1.0.0")
    });

    // The OCR kit over a link that drops once, 12 MiB into the transfer.
    let ocr_bytes: u64 = k.ocr.blobs.values().map(|b| b.len() as u64).sum();
    let before = proxy.to_client.load(Ordering::SeqCst);
    proxy.cut_after.store(12 << 20, Ordering::SeqCst);
    rt.block_on(acme.create_deployment(
        "",
        "algobay/ocr-ppocrv4@1.0.0",
        BTreeMap::new(),
        policy(1.0, 0),
    ))
    .unwrap();
    // Killed while it tests the kit, before activation.
    wait_for(180, "the agent to test the OCR kit", || {
        (agent.status()["phase"] == "testing").then_some(())
    });
    assert_eq!(
        proxy.cuts.load(Ordering::SeqCst),
        1,
        "the link was cut once"
    );
    // Resuming loses only what was in flight at the cut (at most the 4 MiB
    // flow-control window); starting again would carry the kit plus the 12 MiB
    // carried before the cut, less that window.
    let carried = proxy.to_client.load(Ordering::SeqCst) - before;
    assert!(
        carried < ocr_bytes + (6 << 20),
        "{carried} bytes carried for a {ocr_bytes}-byte kit: the download started again instead of resuming"
    );
    agent.kill_and_restart();
    // Back at once on the last good kit, then on to the new one.
    assert_eq!(agent.active().as_deref(), Some("algobay/digits-mlp@1.0.0"));
    let (code, _) = agent.infer(&row9());
    assert_eq!(code, 200);
    wait_for(180, "the OCR kit after the restart", || {
        agent.active().filter(|r| r == "algobay/ocr-ppocrv4@1.0.0")
    });
    let after_restart = proxy.to_client.load(Ordering::SeqCst) - before;
    assert!(
        after_restart < carried + (1 << 20),
        "the restart fetched blobs again: {after_restart} vs {carried}"
    );

    // The registry goes away: the device keeps serving; when it is back, the
    // device picks up the deployment made since.
    let port = reg.port;
    reg.kill();
    let invoice = std::fs::read(root().join("examples/kits/ocr/samples/invoice.png")).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (code, out) = agent.infer(&invoice);
    assert_eq!(code, 200, "{out}");
    assert!(
        out["result"].as_array().is_some_and(|l| !l.is_empty()),
        "{out}"
    );
    let reg = RegistryProc::start(&dir.path().join("registry"), port);
    let acme = rt.block_on(reg.client(&acme_token));
    rt.block_on(acme.create_deployment(
        "",
        "algobay/digits-mlp@1.0.1",
        BTreeMap::new(),
        policy(1.0, 0),
    ))
    .unwrap();
    wait_for(120, "the agent to catch up", || {
        agent.active().filter(|r| r == "algobay/digits-mlp@1.0.1")
    });
    assert!(agent.log().contains("registry unreachable") || agent.log().contains("sync failed"));
}

#[test]
fn tenants_see_only_their_own_fleet_and_a_revoked_device_is_refused() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, globex_token) = rt.block_on(seed(&reg, false));
    rt.block_on(async {
        let acme = reg.client(&acme_token).await;
        let globex = reg.client(&globex_token).await;
        // Enroll one device in each enterprise, as an agent does.
        let enroll = |c: &Client| {
            let c = c.clone();
            let url = reg.url();
            let ca = reg.ca_pem.clone();
            async move {
                let (_, token) = c
                    .create_enrollment_token("", BTreeMap::new(), 0)
                    .await
                    .unwrap();
                let key = rcgen::KeyPair::generate().unwrap();
                let csr = rcgen::CertificateParams::default()
                    .serialize_request(&key)
                    .unwrap()
                    .pem()
                    .unwrap();
                let anon = Client::connect(&url, None, Some(ca.clone())).await.unwrap();
                let e = anon
                    .enroll(&token, &csr, "d", BTreeMap::new())
                    .await
                    .unwrap();
                // The token works once.
                let again = anon
                    .enroll(&token, &csr, "d", BTreeMap::new())
                    .await
                    .unwrap_err();
                assert!(again.to_string().contains("already used"), "{again}");
                let device = Client::connect_device(
                    &url,
                    Some(ca),
                    &e.certificate_pem,
                    &key.serialize_pem(),
                )
                .await
                .unwrap();
                (e.device_id, device)
            }
        };
        let (acme_dev, acme_device) = enroll(&acme).await;
        let (_, globex_device) = enroll(&globex).await;
        let dep = acme
            .create_deployment(
                "",
                "algobay/digits-mlp@1.0.0",
                BTreeMap::new(),
                policy(1.0, 0),
            )
            .await
            .unwrap();

        // Globex reads nothing of Acme's.
        let err = globex.deployment_status(&dep.id).await.unwrap_err();
        assert!(
            matches!(&err, SdkError::Status { code, .. } if *code == Code::NotFound),
            "{err}"
        );
        let err = globex.list_devices("acme").await.unwrap_err();
        assert!(
            matches!(&err, SdkError::Status { code, .. } if *code == Code::PermissionDenied),
            "{err}"
        );
        let err = globex.revoke_device(&acme_dev).await.unwrap_err();
        assert!(
            matches!(&err, SdkError::Status { code, .. } if *code == Code::NotFound),
            "{err}"
        );
        assert_eq!(globex.list_devices("").await.unwrap().len(), 1);
        assert!(globex.list_deployments("").await.unwrap().is_empty());

        // Acme's device is told to run the kit and may fetch it; Globex's is told nothing and may not.
        let want = acme_device.sync(None, ("", ""), 0).await.unwrap();
        assert_eq!(want.kit_reference, "algobay/digits-mlp@1.0.0");
        // The team's signature and the registry's countersignature, both over the manifest.
        let registry_key = std::fs::read_to_string(reg.data.join("registry.key.pub"))
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(want.signatures.len(), 2, "{:?}", want.signatures);
        let manifest = acme_device.download(&want.kit_digest).await.unwrap();
        let mut only_registry = algobay_runtime::TrustRoots::new();
        only_registry.trust(registry_key.parse().unwrap());
        only_registry.verify(&manifest, &want.signatures).unwrap();
        acme_device.download(&want.kit_digest).await.unwrap();
        let none = globex_device.sync(None, ("", ""), 0).await.unwrap();
        assert!(none.kit_digest.is_empty(), "{none:?}");
        // What it may not read is "not found", exactly as what does not exist.
        let err = globex_device.download(&want.kit_digest).await.unwrap_err();
        assert!(
            matches!(&err, SdkError::Status { code, .. } if *code == Code::NotFound),
            "{err}"
        );
        // Devices do not manage fleets, and tokens do not sync.
        let err = acme_device.list_devices("acme").await.unwrap_err();
        assert!(
            matches!(&err, SdkError::Status { code, .. } if *code == Code::PermissionDenied),
            "{err}"
        );
        let err = acme.sync(None, ("", ""), 0).await.unwrap_err();
        assert!(
            err.to_string().contains("only an enrolled device syncs"),
            "{err}"
        );

        // A long-poll wakes up when the desired state changes.
        let waiting = {
            let d = acme_device.clone();
            let (digest, id) = (want.kit_digest.clone(), want.deployment_id.clone());
            tokio::spawn(async move { d.sync(None, (&digest, &id), 30).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        acme.create_deployment(
            "",
            "algobay/digits-mlp@1.0.1",
            BTreeMap::new(),
            policy(1.0, 0),
        )
        .await
        .unwrap();
        let woke = waiting.await.unwrap().unwrap();
        assert_eq!(woke.kit_reference, "algobay/digits-mlp@1.0.1");
        assert!(started.elapsed().as_secs() < 10);

        // Revoked: its certificate no longer gets it anywhere.
        acme.revoke_device(&acme_dev).await.unwrap();
        let err = acme_device.sync(None, ("", ""), 0).await.unwrap_err();
        assert!(
            matches!(&err, SdkError::Status { code, .. } if *code == Code::Unauthenticated)
                && err.to_string().contains("revoked"),
            "{err}"
        );
        let err = acme_device.download(&want.kit_digest).await.unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");

        // Bad input is named.
        let err = acme
            .create_deployment(
                "",
                "algobay/digits-mlp@1.0.0",
                BTreeMap::new(),
                policy(0.0, 0),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("canary_share"), "{err}");
        let err = acme
            .create_deployment("", "algobay/nothing@1.0.0", BTreeMap::new(), policy(1.0, 0))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SdkError::Status { code, .. } if *code == Code::NotFound),
            "{err}"
        );
        let err = acme
            .create_deployment(
                "",
                "algobay/digits-mlp@1.0.0",
                label("bad key", "x"),
                policy(1.0, 0),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("selector"), "{err}");
    });
}
