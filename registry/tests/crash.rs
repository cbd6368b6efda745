//! `kill -9` of the real registry process in the middle of an upload or a publish.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::Code;

use algobay_proto::v1 as pb;
use algobay_runtime::{Digest, SecretKey};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    fn start_with(data: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_algobay-registry"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--web-listen",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(data)
            .args(extra)
            .env("ALGOBAY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("registry exited before listening")
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on https://") {
                break addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, port }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    async fn channel(&self, data: &Path) -> Channel {
        tls_channel(
            self.port,
            std::fs::read_to_string(data.join("tls/cert.pem")).unwrap(),
        )
        .await
    }
}

fn operator(data: &Path) -> String {
    std::fs::read_to_string(data.join("operator.token"))
        .unwrap()
        .trim()
        .to_owned()
}

async fn team(ch: &Channel, op: &str, key: &SecretKey) -> String {
    let mut admin = pb::admin_client::AdminClient::new(ch.clone());
    admin
        .create_team(req(
            pb::CreateTeamRequest {
                name: "acme".into(),
                display_name: "Acme".into(),
                signing_key: key.public().to_string(),
            },
            op,
        ))
        .await
        .unwrap();
    admin
        .create_token(req(
            pb::CreateTokenRequest {
                role: pb::Role::Team as i32,
                subject: "acme".into(),
                ttl_seconds: 0,
                description: String::new(),
            },
            op,
        ))
        .await
        .unwrap()
        .into_inner()
        .token
}

async fn upload_all(ch: &Channel, tok: &str, data: &[u8]) {
    upload_in_chunks(ch, tok, data, 1 << 20, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_upload_leaves_it_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir);
    let ch = server.channel(&data_dir).await;
    let tok = team(&ch, &operator(&data_dir), &SecretKey::generate()).await;
    let data: Vec<u8> = (0..12_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let d = Digest::of(&data);
    // Send chunks through a channel so the stream is still open when the process dies.
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadChunk>(1);
    let mut blobs = pb::blobs_client::BlobsClient::new(ch.clone());
    let t2 = tok.clone();
    let upload = tokio::spawn(async move {
        blobs
            .upload(req(tokio_stream::wrappers::ReceiverStream::new(rx), &t2))
            .await
    });
    for (i, c) in data.chunks(1 << 20).take(5).enumerate() {
        tx.send(pb::UploadChunk {
            digest: d.to_string(),
            size: data.len() as u64,
            offset: (i << 20) as u64,
            data: c.to_vec(),
            chunk_digest: String::new(),
        })
        .await
        .unwrap();
    }
    for _ in 0..200 {
        let s = stat(&ch, &tok, &d).await;
        if s.received >= 4 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    let err = upload.await.unwrap().unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    drop(tx);

    let server = Server::start(&data_dir);
    let ch = server.channel(&data_dir).await;
    let s = stat(&ch, &tok, &d).await;
    assert!(!s.present);
    assert!(
        s.received >= 4 << 20 && s.received <= 5 << 20,
        "received {}",
        s.received
    );
    upload_all(&ch, &tok, &data).await;
    let s = stat(&ch, &tok, &d).await;
    assert!(s.present && s.size == data.len() as u64);
    server.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_publish_leaves_it_wholly_there_or_wholly_absent() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let key = SecretKey::generate();
    let kit = build_digits(&key, "acme/digits");
    let server = Server::start(&data_dir);
    let ch = server.channel(&data_dir).await;
    let tok = team(&ch, &operator(&data_dir), &key).await;
    for b in kit.blobs.values() {
        upload_all(&ch, &tok, b).await;
    }
    let mut server = Some(server);
    let mut outcomes = Vec::new();
    // Kill at different moments of the publish: early, during the golden samples, late.
    for (round, delay_ms) in [0u64, 15, 40, 80, 150].into_iter().enumerate() {
        let s = server.take().unwrap();
        let ch = s.channel(&data_dir).await;
        let mut catalog = pb::catalog_client::CatalogClient::new(ch.clone());
        let version = format!("1.0.{round}");
        let mut k = kit.clone();
        k.manifest.version = version.clone();
        k.manifest_bytes = k.manifest.canonical_json();
        k.signatures = vec![key.sign(&k.manifest_bytes)];
        let sigs = k
            .signatures
            .iter()
            .map(|s| pb::KitSignature {
                key: s.key.clone(),
                signature: s.signature.clone(),
            })
            .collect();
        let t2 = tok.clone();
        let bytes = k.manifest_bytes.clone();
        let publish = tokio::spawn(async move {
            catalog
                .publish_kit(req(
                    pb::PublishKitRequest {
                        manifest: bytes,
                        signatures: sigs,
                        ..Default::default()
                    },
                    &t2,
                ))
                .await
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        s.kill9();
        let answered = publish.await.unwrap().is_ok();

        let s = Server::start(&data_dir);
        let ch = s.channel(&data_dir).await;
        let mut catalog = pb::catalog_client::CatalogClient::new(ch.clone());
        let by_ref = catalog
            .get(req(
                pb::GetRequest {
                    reference: format!("acme/digits@{version}"),
                    kind: pb::Kind::Kit as i32,
                },
                &tok,
            ))
            .await;
        let by_digest = catalog
            .get(req(
                pb::GetRequest {
                    reference: k.digest().to_string(),
                    kind: pb::Kind::Kit as i32,
                },
                &tok,
            ))
            .await;
        let in_search = catalog
            .search(req(
                pb::SearchRequest {
                    kind: pb::Kind::Kit as i32,
                    ..Default::default()
                },
                &tok,
            ))
            .await
            .unwrap()
            .into_inner()
            .artifacts
            .iter()
            .any(|a| a.version == version);
        match (&by_ref, &by_digest) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.get_ref().digest, b.get_ref().digest);
                assert!(
                    in_search,
                    "round {round}: published but not in search after restart"
                );
                outcomes.push("there");
            }
            (Err(a), Err(b)) => {
                assert_eq!((a.code(), b.code()), (Code::NotFound, Code::NotFound));
                assert!(!in_search);
                assert!(
                    !answered,
                    "round {round}: the publish was acknowledged but is gone after the restart"
                );
                outcomes.push("absent");
            }
            _ => panic!(
                "round {round}: half a publish: by reference {by_ref:?}, by digest {by_digest:?}"
            ),
        }
        server = Some(s);
    }
    server.unwrap().kill9();
    eprintln!("publish outcomes after kill -9: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_registry_promptly_while_a_golden_run_loops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(&data, &["--shutdown-grace-seconds", "1"]);
    let ch = server.channel(&data).await;
    let key = SecretKey::generate();
    let tok = team(&ch, &operator(&data), &key).await;
    // A stage that loops for the whole of the 10 s a call the default ceiling allows.
    let kit = looping_kit(&key, 10_000);
    for b in kit.blobs.values() {
        upload_all(&ch, &tok, b).await;
    }
    let manifest = kit.manifest_bytes.clone();
    let signatures = kit
        .signatures
        .iter()
        .map(|s| pb::KitSignature {
            key: s.key.clone(),
            signature: s.signature.clone(),
        })
        .collect();
    let publish = tokio::spawn({
        let ch = ch.clone();
        let tok = tok.clone();
        async move {
            pb::catalog_client::CatalogClient::new(ch)
                .publish_kit(req(
                    pb::PublishKitRequest {
                        manifest,
                        signatures,
                        ..Default::default()
                    },
                    &tok,
                ))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "the registry still runs {:?} after SIGTERM",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        publish.await.unwrap().is_err(),
        "the publish did not succeed"
    );
}
