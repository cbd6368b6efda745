//! The registry with its metadata on a real PostgreSQL server (a throwaway
//! one the test starts): teams, kits, enterprises, devices and deployments go
//! there, an agent is served through it, and after a `kill -9` the registry
//! comes back with all of it (search included, rebuilt from the database).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use algobay_registry::store::postgres::throwaway::Postgres;

#[test]
fn a_registry_on_postgres_serves_an_agent_and_keeps_everything_across_a_kill() {
    let pg = Postgres::start();
    let url = pg.database("algobay");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry");
    let mut reg = RegistryProc::start_with(&data, 0, &["--meta", &url]);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let agent = device(&rt, &reg, &acme, &dir.path().join("a"), "a", "");
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 120);
    let (code, out) = agent.infer(&row9());
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["result"][0][0]["label"], "9");
    // Nothing of it is in sled: the metadata folder was never made.
    assert!(!data.join("meta").exists());

    let port = reg.port;
    reg.kill();
    let reg = RegistryProc::start_with(&data, port, &["--meta", &url]);
    let acme = rt.block_on(reg.client(&acme_token));
    let kit = rt
        .block_on(acme.get("algobay/digits-mlp@1.0.1", Some(algobay_sdk::Kind::Kit)))
        .unwrap();
    assert_eq!(kit.version, "1.0.1");
    let found = rt
        .block_on(acme.search(algobay_sdk::Search {
            text: "digits".into(),
            ..Default::default()
        }))
        .unwrap();
    assert!(
        found
            .artifacts
            .iter()
            .any(|a| a.name == "algobay/digits-mlp"),
        "{:?}",
        found.artifacts
    );
    let deployments = rt.block_on(acme.list_deployments("")).unwrap();
    assert_eq!(deployments.len(), 1);
    let devices = rt.block_on(acme.list_devices("")).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(
        devices[0].state.active_reference,
        "algobay/digits-mlp@1.0.0"
    );
    // The agent syncs with the registry restarted: a new deployment reaches it.
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.1", 120);
    let (code, _) = agent.infer(&row9());
    assert_eq!(code, 200);
}
