//! What an outsider tried against the registry, kept as regression tests:
//! reads across tenants, kits that ask for too much, and requests that are
//! malformed, oversized or tokenless.
#![allow(clippy::unwrap_used)]

mod common;
use common::harness::*;
use common::*;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tonic::{Code, Request};

use algobay_proto::v1 as pb;
use algobay_registry::domain::{Principal, Role, RolloutPolicy, SampleInput, SampleRecord};
use algobay_registry::limits::Ceilings;
use algobay_registry::service::Cancel;
use algobay_runtime::archive::KitArchive;
use algobay_runtime::{Digest, SecretKey};

fn who(role: Role, subject: &str) -> Principal {
    Principal {
        role,
        subject: subject.into(),
        token_id: String::new(),
    }
}

fn policy() -> RolloutPolicy {
    RolloutPolicy {
        canary_share: 1.0,
        soak_seconds: 0,
        max_error_rate: 1.0,
        max_p99_ms: 0.0,
        manual_promote: false,
        sampling_off: false,
        field_gate: None,
    }
}

impl Harness {
    async fn enterprise(&self, name: &str) -> String {
        self.admin()
            .create_enterprise(req(
                pb::CreateEnterpriseRequest {
                    name: name.into(),
                    display_name: name.into(),
                    industries: vec!["logistics".into()],
                },
                &self.operator,
            ))
            .await
            .unwrap();
        self.admin()
            .create_token(req(
                pb::CreateTokenRequest {
                    role: pb::Role::Enterprise as i32,
                    subject: name.into(),
                    ttl_seconds: 0,
                    description: String::new(),
                },
                &self.operator,
            ))
            .await
            .unwrap()
            .into_inner()
            .token
    }

    /// A device enrolled into `enterprise`, as the registry knows it.
    fn device(&self, enterprise: &str) -> Principal {
        let reg = &self.registry;
        let (_, token) = reg
            .create_enrollment(&who(Role::Enterprise, enterprise), "", BTreeMap::new(), 0)
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let (d, _, _) = reg.enroll(&token, &csr, "d", BTreeMap::new()).unwrap();
        reg.authenticate_device(&d.fingerprint).unwrap()
    }

    async fn try_download(
        &self,
        token: &str,
        d: &Digest,
        enterprise: &str,
    ) -> Result<Vec<u8>, tonic::Status> {
        let mut s = self
            .blobs()
            .download(req(
                pb::DownloadRequest {
                    digest: d.to_string(),
                    offset: 0,
                    enterprise: enterprise.into(),
                },
                token,
            ))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(c) = s.message().await? {
            out.extend_from_slice(&c.data);
        }
        Ok(out)
    }

    async fn get(&self, token: &str, reference: &str) -> Result<pb::Artifact, tonic::Status> {
        self.catalog()
            .get(req(
                pb::GetRequest {
                    reference: reference.into(),
                    kind: pb::Kind::Kit as i32,
                },
                token,
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn kits_seen(&self, token: &str) -> u64 {
        self.catalog()
            .search(req(
                pb::SearchRequest {
                    kind: pb::Kind::Kit as i32,
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .total
    }
}

async fn publish(
    h: &Harness,
    tok: &str,
    kit: &KitArchive,
    private_to: &str,
) -> Result<pb::Artifact, tonic::Status> {
    for b in kit.blobs.values() {
        h.upload(tok, b).await;
    }
    h.catalog()
        .publish_kit(req(
            pb::PublishKitRequest {
                manifest: kit.manifest_bytes.clone(),
                signatures: kit
                    .signatures
                    .iter()
                    .map(|s| pb::KitSignature {
                        key: s.key.clone(),
                        signature: s.signature.clone(),
                    })
                    .collect(),
                private_to: private_to.into(),
            },
            tok,
        ))
        .await
        .map(|r| r.into_inner())
}

fn sample(kit: &Digest, input: &[u8], seed: u8) -> (SampleRecord, Vec<Vec<u8>>) {
    (
        SampleRecord {
            id: hex::encode([seed; 32]),
            enterprise: String::new(),
            device_id: String::new(),
            kit_reference: String::new(),
            kit_digest: *kit,
            deployment_id: String::new(),
            reason: "score_below".into(),
            trace_id: String::new(),
            created_unix: 0,
            received_unix: 0,
            outputs_json: "{}".into(),
            inputs: vec![SampleInput {
                name: "pixels".into(),
                datatype: "FP32".into(),
                shape: vec![1, 64],
                digest: Digest::of(input),
                size: input.len() as u64,
            }],
            labels: Vec::new(),
            shadow_outputs_json: String::new(),
            shadow_digest: None,
        },
        vec![input.to_vec()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_kits_and_samples_are_read_only_by_those_who_may_see_them() {
    let h = start().await;
    let (acme, key) = h.team("acme").await;
    let (zeta, _) = h.team("zeta").await;
    let ent_a = h.enterprise("ent-a").await;
    let ent_b = h.enterprise("ent-b").await;

    // An uploaded blob no artifact names yet: its team sees it, nobody else does.
    let secret: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sd = Digest::of(&secret);
    h.upload(&acme, &secret).await;
    assert!(stat(&h.channel, &acme, &sd).await.present);
    for tok in [&zeta, &ent_a, &ent_b] {
        let s = stat(&h.channel, tok, &sd).await;
        assert!(!s.present && s.received == 0, "{s:?}");
        let e = h.try_download(tok, &sd, "").await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
    // Another team learns the blob is there only by sending all of its bytes.
    let r = h.upload(&zeta, &secret).await;
    assert!(r.existed);
    assert!(stat(&h.channel, &zeta, &sd).await.present);

    // A kit made for enterprise A alone, of the same parts as a public one
    // (published first: what first comes in with a private kit is that
    // enterprise's content and could not be public afterwards).
    let public = build_digits(&key, "acme/digits-pub");
    publish(&h, &acme, &public, "").await.unwrap();
    let private = build_digits(&key, "acme/digits-a");
    publish(&h, &acme, &private, "ent-a").await.unwrap();
    assert_eq!(
        h.get(&ent_a, "acme/digits-a@1.0.0")
            .await
            .unwrap()
            .private_to,
        "ent-a"
    );
    h.get(&acme, "acme/digits-a@1.0.0").await.unwrap();
    assert_eq!(
        h.try_download(&ent_a, &private.digest(), "").await.unwrap(),
        private.manifest_bytes
    );
    for tok in [&zeta, &ent_b] {
        let e = h.get(tok, "acme/digits-a@1.0.0").await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let e = h.get(tok, &private.digest().to_string()).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let e = h
            .try_download(tok, &private.digest(), "")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(!stat(&h.channel, tok, &private.digest()).await.present);
        assert_eq!(h.kits_seen(tok).await, 1, "only the public kit");
    }
    assert_eq!(h.kits_seen(&ent_a).await, 2);
    assert_eq!(h.kits_seen(&acme).await, 2);
    let e = h
        .registry
        .create_deployment(
            &who(Role::Enterprise, "ent-b"),
            "",
            "acme/digits-a@1.0.0",
            BTreeMap::new(),
            policy(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");

    // Samples stay in their enterprise's namespace.
    let dev_a = h.device("ent-a");
    let dev_b = h.device("ent-b");
    h.registry
        .create_deployment(
            &who(Role::Enterprise, "ent-a"),
            "",
            "acme/digits-a@1.0.0",
            BTreeMap::new(),
            policy(),
        )
        .unwrap();
    h.registry
        .create_deployment(
            &who(Role::Enterprise, "ent-b"),
            "",
            "acme/digits-pub@1.0.0",
            BTreeMap::new(),
            policy(),
        )
        .unwrap();
    let input = vec![42u8; 256];
    let id = Digest::of(&input);
    assert_eq!(
        h.registry
            .push_samples(&dev_a, vec![sample(&private.digest(), &input, 1)])
            .unwrap(),
        (1, 0)
    );
    // The same sample again is stored once.
    assert_eq!(
        h.registry
            .push_samples(&dev_a, vec![sample(&private.digest(), &input, 1)])
            .unwrap(),
        (0, 1)
    );
    assert_eq!(h.try_download(&ent_a, &id, "").await.unwrap(), input);
    assert_eq!(
        h.try_download(&h.operator, &id, "ent-a").await.unwrap(),
        input
    );
    for tok in [&ent_b, &zeta, &acme] {
        let e = h.try_download(tok, &id, "").await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(!stat(&h.channel, tok, &id).await.present);
    }
    let e = h.try_download(&ent_b, &id, "ent-a").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // A device can neither name another enterprise's sample nor a catalog blob
    // as a sample input without sending its bytes.
    let (mut rec, _) = sample(&public.digest(), &input, 2);
    let e = h
        .registry
        .push_samples(&dev_b, vec![(rec.clone(), vec![vec![]])])
        .unwrap_err();
    assert!(e.to_string().contains("came without its bytes"), "{e}");
    rec.inputs[0].digest = public.digest();
    rec.inputs[0].size = public.manifest_bytes.len() as u64;
    let e = h
        .registry
        .push_samples(&dev_b, vec![(rec, vec![vec![]])])
        .unwrap_err();
    assert!(e.to_string().contains("came without its bytes"), "{e}");
    // Bytes that are not what the record says are refused.
    let (mut rec, data) = sample(&public.digest(), &input, 3);
    rec.inputs[0].digest = Digest::of(b"other");
    let e = h
        .registry
        .push_samples(&dev_b, vec![(rec, data)])
        .unwrap_err();
    assert!(e.to_string().contains("sample.inputs.data"), "{e}");
}

/// The digits kit with its post-processing stage's limits changed, re-signed.
fn with_limits(key: &SecretKey, name: &str, time_ms: u32, memory_mb: u32) -> KitArchive {
    let mut kit = build_digits(key, name);
    for s in &mut kit.manifest.steps {
        if let algobay_runtime::manifest::StepKind::Stage { limits, .. } = &mut s.kind {
            limits.time_ms = time_ms;
            limits.memory_mb = memory_mb;
        }
    }
    kit.manifest_bytes = kit.manifest.canonical_json();
    kit.signatures = vec![key.sign(&kit.manifest_bytes)];
    kit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kit_asking_past_the_registry_ceilings_is_refused_before_it_runs() {
    let h = start_with(Ceilings {
        max_steps: 8,
        ..Ceilings::default()
    })
    .await;
    let (acme, key) = h.team("acme").await;
    let e = publish(&h, &acme, &with_limits(&key, "acme/slow", u32::MAX, 64), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("steps[1].limits.time_ms")
            && e.message().contains("ceiling of 10000 ms"),
        "{}",
        e.message()
    );
    let e = publish(&h, &acme, &with_limits(&key, "acme/fat", 1000, 2048), "")
        .await
        .unwrap_err();
    assert!(
        e.message().contains("steps[1].limits.memory_mb"),
        "{}",
        e.message()
    );

    // Too many steps, too large a manifest: refused by size, with the figure.
    let mut long = build_digits(&key, "acme/long");
    let post = long.manifest.steps[1].clone();
    for i in 0..10 {
        let mut s = post.clone();
        s.name = format!("post{i}");
        long.manifest.steps.push(s);
    }
    long.manifest_bytes = long.manifest.canonical_json();
    let err = h
        .registry
        .publish_kit(
            &who(Role::Team, "acme"),
            long.manifest_bytes.clone(),
            vec![],
            "",
            &Cancel::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("steps: 12 steps, over the registry's limit of 8"),
        "{err}"
    );
    let huge = vec![b' '; 2 << 20];
    let err = h
        .registry
        .publish_kit(&who(Role::Team, "acme"), huge, vec![], "", &Cancel::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("manifest: 2097152 bytes, over the registry's limit of 1048576"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_stage_at_publish_fails_within_its_time_budget() {
    let h = start().await;
    let (acme, key) = h.team("acme").await;
    let kit = looping_kit(&key, 1500);
    let started = Instant::now();
    let e = publish(&h, &acme, &kit, "").await.unwrap_err();
    assert!(
        e.message().contains("golden sample 0 failed") && e.message().contains("time budget"),
        "{}",
        e.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_golden_run_stops_when_its_caller_goes_away_and_frees_its_slot() {
    let h = start().await;
    let (acme, key) = h.team("acme").await;
    // A stage that would loop for the whole of its 10 s; one golden slot.
    let looping = looping_kit(&key, 10_000);
    let good = build_digits(&key, "acme/digits");
    for b in looping.blobs.values().chain(good.blobs.values()) {
        h.upload(&acme, b).await;
    }
    let gone =
        tokio::time::timeout(Duration::from_millis(800), publish(&h, &acme, &looping, "")).await;
    assert!(
        gone.is_err(),
        "the looping kit's publish is still running when its caller leaves"
    );
    // The slot is free again long before the looping call's own 10 s are up.
    let started = Instant::now();
    publish(&h, &acme, &good, "").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "waited {:?} for the golden slot",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenless_and_malformed_calls_are_refused_with_the_callers_status() {
    let h = start().await;
    let (acme, _) = h.team("acme").await;
    // No token: refused before a 15 MB body is read.
    let e = h
        .catalog()
        .publish_kit(Request::new(pb::PublishKitRequest {
            manifest: vec![b'x'; 15 << 20],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // Bytes that are not the message: INVALID_ARGUMENT, after the token is checked.
    // A CreateTokenRequest (field 1 a varint) sent as a GetRequest (field 1 a string).
    let mut grpc = tonic::client::Grpc::new(h.channel.clone());
    for (token, want) in [
        (None, Code::Unauthenticated),
        (Some(acme.as_str()), Code::InvalidArgument),
    ] {
        grpc.ready().await.unwrap();
        let mut r = Request::new(pb::CreateTokenRequest {
            role: 2,
            ..Default::default()
        });
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let e = grpc
            .unary::<_, pb::Artifact, _>(
                r,
                http::uri::PathAndQuery::from_static("/algobay.v1.Catalog/Get"),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), want, "{e:?}");
    }
    // Errors quote a long value by its start and length, not whole.
    let e = h
        .get(&acme, &format!("{}@1.0.0", "a".repeat(1 << 20)))
        .await
        .unwrap_err();
    assert!(e.message().len() < 300, "{} bytes", e.message().len());
    // Overflowing expiries, garbage page tokens and oversized lists are refused by name.
    let e = h.team_token("acme", i64::MAX).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("ttl_seconds"), "{}", e.message());
    let e = h
        .catalog()
        .search(req(
            pb::SearchRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            &acme,
        ))
        .await
        .unwrap_err();
    assert!(e.message().contains("page_token"), "{}", e.message());
    let e = h
        .admin()
        .create_token(req(
            pb::CreateTokenRequest {
                role: pb::Role::Team as i32,
                subject: "acme".into(),
                ttl_seconds: 0,
                description: "d".repeat(10 << 20),
            },
            &h.operator,
        ))
        .await
        .unwrap_err();
    assert!(e.message().contains("description"), "{}", e.message());
    h.enterprise("acme-ent").await;
    let labels: BTreeMap<String, String> =
        (0..1000).map(|i| (format!("k{i}"), "v".into())).collect();
    let e = h
        .registry
        .create_enrollment(&who(Role::Operator, ""), "acme-ent", labels, 0)
        .unwrap_err();
    assert!(e.to_string().contains("labels: 1000 entries"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_are_dropped_after_the_idle_timeout_and_their_partials_swept() {
    let h = start_with(Ceilings {
        upload_idle: Duration::from_secs(1),
        partial_max_age: Duration::from_secs(2),
        ..Ceilings::default()
    })
    .await;
    let (acme, _) = h.team("acme").await;
    let mut calls = Vec::new();
    for i in 0..200u32 {
        let data = vec![(i % 251) as u8; 100_000 + i as usize];
        let d = Digest::of(&data);
        let first = pb::UploadChunk {
            digest: d.to_string(),
            size: data.len() as u64,
            offset: 0,
            data: data[..1000].to_vec(),
            chunk_digest: String::new(),
        };
        // The first chunk, then nothing: the stream stays open.
        let stream = futures::StreamExt::chain(
            futures::stream::iter(vec![first]),
            futures::stream::pending(),
        );
        let mut client = h.blobs();
        let token = acme.clone();
        calls.push(tokio::spawn(async move {
            client.upload(req(stream, &token)).await
        }));
    }
    for c in calls {
        let e = tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("the registry drops an idle upload")
            .unwrap()
            .unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
        assert!(
            e.message().contains("resume from byte 1000"),
            "{}",
            e.message()
        );
    }
    let uploads = h.dir.path().join("blobs/uploads");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = std::fs::read_dir(&uploads).unwrap().count();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} partial files left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_teams_publish_is_served_while_another_team_loops() {
    let h = std::sync::Arc::new(start().await);
    let (acme, acme_key) = h.team("acme").await;
    let (zeta, zeta_key) = h.team("zeta").await;
    // Four publishes of acme's, each looping for its stage's 3 s budget, one
    // golden slot: a queue of about 12 s.
    let looping = looping_kit(&acme_key, 3000);
    for b in looping.blobs.values() {
        h.upload(&acme, b).await;
    }
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (h, acme, looping) = (h.clone(), acme.clone(), looping.clone());
            tokio::spawn(async move { publish(&h, &acme, &looping, "").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // zeta comes last and is served next: acme was served most recently.
    let good = build_digits(&zeta_key, "zeta/digits");
    let started = Instant::now();
    publish(&h, &zeta, &good, "").await.unwrap();
    let waited = started.elapsed();
    eprintln!("zeta's publish behind four looping acme publishes: {waited:?}");
    assert!(waited < Duration::from_secs(8), "waited {waited:?}");
    for l in loops {
        let e = l.await.unwrap().unwrap_err();
        assert!(e.message().contains("time budget"), "{}", e.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_upload_is_its_openers_and_another_team_cannot_claim_it() {
    let h = start().await;
    let (acme, _) = h.team("acme").await;
    let (zeta, _) = h.team("zeta").await;
    let data: Vec<u8> = (0..900_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let d = Digest::of(&data);
    let chunk = |offset: usize, bytes: &[u8]| pb::UploadChunk {
        digest: d.to_string(),
        size: data.len() as u64,
        offset: offset as u64,
        data: bytes.to_vec(),
        chunk_digest: String::new(),
    };
    // acme sends every byte and keeps its upload open.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut client = h.blobs();
    let token = acme.clone();
    let open = tokio::spawn(async move {
        client
            .upload(req(tokio_stream::wrappers::ReceiverStream::new(rx), &token))
            .await
    });
    for (i, part) in data.chunks(300_000).enumerate() {
        tx.send(chunk(i * 300_000, part)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // zeta "resumes" it from the end with no bytes: refused, and told nothing of how far it got.
    let e = h
        .blobs()
        .upload(req(
            futures::stream::iter(vec![chunk(data.len(), &[])]),
            &zeta,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("must start at byte 0, not 900000"),
        "{}",
        e.message()
    );
    let s = stat(&h.channel, &zeta, &d).await;
    assert!(!s.present && s.received == 0, "{s:?}");
    assert_eq!(
        h.try_download(&zeta, &d, "").await.unwrap_err().code(),
        Code::NotFound
    );
    // Wrong bytes from byte 0 are refused too (the stream must hash to the digest).
    let mut wrong = data.clone();
    wrong[0] ^= 1;
    let e = h
        .blobs()
        .upload(req(futures::stream::iter(vec![chunk(0, &wrong)]), &zeta))
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::FailedPrecondition)
            && e.message().contains("hash"),
        "{e:?}"
    );
    assert!(h.try_download(&zeta, &d, "").await.is_err());
    // acme closes its upload: the blob is stored, and readable by acme alone.
    drop(tx);
    let done = open.await.unwrap().unwrap().into_inner();
    assert_eq!(done.size, data.len() as u64);
    assert_eq!(h.download(&acme, &d, 0).await, data);
    assert!(h.try_download(&zeta, &d, "").await.is_err());
}
