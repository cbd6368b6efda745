//! The registry over real gRPC with TLS on loopback, with a real tonic client.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "grpc/operations.rs"]
mod operations;
#[path = "grpc/tokens_and_tools.rs"]
mod tokens_and_tools;
use common::harness::*;
use common::*;

use std::sync::atomic::Ordering;

use sha2::Digest as _;
use tonic::{Code, Request};

use algobay_proto::v1 as pb;
use algobay_runtime::manifest::StepKind;
use algobay_runtime::{Digest, SecretKey};

fn vad_model() -> Vec<u8> {
    std::fs::read(root().join("examples/kits/vad/models/silero_vad.onnx"))
        .expect("run scripts/setup.sh first")
}

fn model_req(name: &str, version: &str, d: &Digest) -> pb::PublishModelRequest {
    pb::PublishModelRequest {
        name: name.into(),
        version: version.into(),
        digest: d.to_string(),
        domain: "speech".into(),
        task: "vad".into(),
        description: "Silero voice activity detector".into(),
        license: "MIT".into(),
        industries: vec!["telecom".into()],
        card: "# Silero VAD\nFinds speech.".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_publishes_a_model_that_search_get_and_coverage_then_see() {
    let h = start().await;
    let (tok, _) = h.team("acme").await;
    let model = vad_model();
    let up = h.upload(&tok, &model).await;
    assert!(!up.existed);
    let d = Digest::of(&model);
    let a = h
        .catalog()
        .publish_model(req(model_req("acme/silero-vad", "6.2.3", &d), &tok))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.format, "onnx");
    // The signature is read from the model itself.
    let inputs: Vec<(String, String)> = a
        .inputs
        .iter()
        .map(|p| (p.name.clone(), p.r#type.clone()))
        .collect();
    assert_eq!(
        inputs,
        [
            ("input".into(), "f32[?,?]".into()),
            ("state".into(), "f32[2,?,128]".into()),
            ("sr".into(), "i64[]".into())
        ]
    );
    let got = h
        .catalog()
        .get(req(
            pb::GetRequest {
                reference: "acme/silero-vad@6.2.3".into(),
                kind: 0,
            },
            &tok,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.digest, d.to_string());
    assert_eq!(got.card, "# Silero VAD\nFinds speech.");
    let by_digest = h
        .catalog()
        .get(req(
            pb::GetRequest {
                reference: d.to_string(),
                kind: 0,
            },
            &tok,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_digest.name, "acme/silero-vad");
    let found = h
        .catalog()
        .search(req(
            pb::SearchRequest {
                text: "silero voice".into(),
                domain: "speech".into(),
                ..Default::default()
            },
            &tok,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.total, 1);
    let none = h
        .catalog()
        .search(req(
            pb::SearchRequest {
                domain: "vision".into(),
                ..Default::default()
            },
            &tok,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.total, 0);
    let c = h
        .catalog()
        .coverage(req(pb::CoverageRequest {}, &h.operator))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (c.models, c.teams, c.publishing_teams, c.industries),
        (1, 1, 1, 1)
    );
    assert_eq!(c.models_by_domain.get("speech"), Some(&1));
    // Downloads are the same bytes, from any offset.
    assert_eq!(h.download(&tok, &d, 0).await, model);
    assert_eq!(h.download(&tok, &d, 1_000_000).await, model[1_000_000..]);
}

/// A tiny valid MLP in safetensors (4 inputs, 3 classes) and its config.
fn tiny_mlp(seed: u8) -> (Vec<u8>, Vec<u8>) {
    let header = r#"{"layers.0.bias":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"layers.0.weight":{"dtype":"F32","shape":[3,4],"data_offsets":[12,60]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for k in 0..15u8 {
        out.extend_from_slice(&(f32::from(k.wrapping_mul(seed)) / 100.0).to_le_bytes());
    }
    (out, br#"{"layers":[4,3]}"#.to_vec())
}

fn mlp_req(
    name: &str,
    weights: &[u8],
    config: &[u8],
    inline: Vec<(Digest, Vec<u8>)>,
) -> pb::PublishModelRequest {
    pb::PublishModelRequest {
        name: name.into(),
        version: "1.0.0".into(),
        digest: Digest::of(weights).to_string(),
        config_digest: Digest::of(config).to_string(),
        architecture: "mlp".into(),
        domain: "tabular".into(),
        task: "classification".into(),
        blobs: inline
            .into_iter()
            .map(|(d, data)| pb::InlineBlob {
                digest: d.to_string(),
                data,
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_model_is_published_in_one_call_with_its_blobs_inline() {
    let h = start().await;
    let (tok, _) = h.team("acme").await;
    let (w, c) = tiny_mlp(3);
    let (dw, dc) = (Digest::of(&w), Digest::of(&c));
    let inline = vec![(dw, w.clone()), (dc, c.clone())];

    // Bad inline blobs are named, and nothing is stored.
    let bad = [
        (
            vec![(dw, c.clone()), (dc, c.clone())],
            "blobs[0]: the bytes hash to",
            tonic::Code::InvalidArgument,
        ),
        (
            vec![(Digest::of(b"other"), b"other".to_vec())],
            "is not a blob this publish names",
            tonic::Code::InvalidArgument,
        ),
        (
            vec![(dw, vec![7u8; 300 * 1024])],
            "over the inline limit",
            tonic::Code::ResourceExhausted,
        ),
    ];
    for (blobs, want, code) in bad {
        let err = h
            .catalog()
            .publish_model(req(mlp_req("acme/tiny", &w, &c, blobs), &tok))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
        assert!(err.message().contains(want), "{want}: {}", err.message());
    }
    assert!(!stat(&h.channel, &tok, &dw).await.present);
    let mut bad_digest = mlp_req("acme/tiny", &w, &c, inline.clone());
    bad_digest.blobs[1].digest = "sha256:xyz".into();
    let err = h
        .catalog()
        .publish_model(req(bad_digest, &tok))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("blobs[1].digest"),
        "{}",
        err.message()
    );

    // One call: nothing uploaded before.
    let a = h
        .catalog()
        .publish_model(req(mlp_req("acme/tiny", &w, &c, inline.clone()), &tok))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.format, "safetensors");
    assert_eq!(a.inputs[0].r#type, "f32[?,4]");
    // The blobs are then like any other: present, downloadable by digest, verified.
    for (d, bytes) in [(dw, &w), (dc, &c)] {
        assert!(stat(&h.channel, &tok, &d).await.present);
        assert_eq!(&h.download(&tok, &d, 0).await, bytes);
    }
    // The same again is idempotent; other content at that version is refused.
    let again = h
        .catalog()
        .publish_model(req(mlp_req("acme/tiny", &w, &c, inline), &tok))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.digest, a.digest);
    let (w2, _) = tiny_mlp(5);
    let err = h
        .catalog()
        .publish_model(req(
            mlp_req("acme/tiny", &w2, &c, vec![(Digest::of(&w2), w2.clone())]),
            &tok,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_resumes_after_a_dropped_stream_and_a_present_blob_is_not_sent_again() {
    let h = start().await;
    let (tok, _) = h.team("acme").await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = Digest::of(&data);
    // The first attempt sends 1 MiB and then the stream ends.
    let partial = vec![pb::UploadChunk {
        digest: d.to_string(),
        size: data.len() as u64,
        offset: 0,
        data: data[..1 << 20].to_vec(),
        chunk_digest: String::new(),
    }];
    let err = h
        .blobs()
        .upload(req(tokio_stream::iter(partial), &tok))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("resume from byte 1048576"),
        "{}",
        err.message()
    );
    let st = stat(&h.channel, &tok, &d).await;
    assert_eq!((st.present, st.received), (false, 1 << 20));
    // Resuming at the wrong offset is refused.
    let wrong = vec![pb::UploadChunk {
        digest: d.to_string(),
        size: data.len() as u64,
        offset: 0,
        data: data[..10].to_vec(),
        chunk_digest: String::new(),
    }];
    let err = h
        .blobs()
        .upload(req(tokio_stream::iter(wrong), &tok))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("must resume at byte 1048576"),
        "{}",
        err.message()
    );
    let up = h.upload(&tok, &data).await;
    assert!(!up.existed);
    assert_eq!(h.download(&tok, &d, 0).await, data);
    // Already there: accepted at once.
    let again = vec![pb::UploadChunk {
        digest: d.to_string(),
        size: data.len() as u64,
        offset: 0,
        data: vec![],
        chunk_digest: String::new(),
    }];
    let r = h
        .blobs()
        .upload(req(tokio_stream::iter(again), &tok))
        .await
        .unwrap()
        .into_inner();
    assert!(r.existed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_change_nothing() {
    let h = start().await;
    let (acme, _) = h.team("acme").await;
    let (other, _) = h.team("other").await;
    let model = vad_model();
    let d = Digest::of(&model);
    h.upload(&acme, &model).await;

    let no_token = h
        .catalog()
        .search(Request::new(pb::SearchRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    let garbage = h
        .catalog()
        .search(req(pb::SearchRequest::default(), "abt_0000_nope"))
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);

    let err = h
        .catalog()
        .publish_model(req(model_req("acme/vad", "1.0.0", &d), &other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("belongs to team `acme`"),
        "{}",
        err.message()
    );
    let err = h
        .admin()
        .create_team(req(
            pb::CreateTeamRequest {
                name: "x".into(),
                display_name: "x".into(),
                signing_key: SecretKey::generate().public().to_string(),
            },
            &acme,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    for bad in ["acme/../etc", "../acme/x", "acme/x/y", "ACME/x", "acme/"] {
        let err = h
            .catalog()
            .publish_model(req(model_req(bad, "1.0.0", &d), &acme))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
        assert!(err.message().contains("name"), "{bad}: {}", err.message());
    }
    let err = h
        .catalog()
        .publish_model(req(model_req("acme/vad", "v1", &d), &acme))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("not a semantic version"),
        "{}",
        err.message()
    );

    let big = vec![pb::UploadChunk {
        digest: Digest::of(b"x").to_string(),
        size: 10_000_000_000,
        offset: 0,
        data: vec![],
        chunk_digest: String::new(),
    }];
    let err = h
        .blobs()
        .upload(req(tokio_stream::iter(big), &acme))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("10000000000"), "{}", err.message());

    let data = b"some bytes".to_vec();
    let bad_chunk = vec![pb::UploadChunk {
        digest: Digest::of(&data).to_string(),
        size: data.len() as u64,
        offset: 0,
        data: data.clone(),
        chunk_digest: Digest::of(b"something else").to_string(),
    }];
    let err = h
        .blobs()
        .upload(req(tokio_stream::iter(bad_chunk), &acme))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("does not match its digest"),
        "{}",
        err.message()
    );

    // One chunk holding the whole blob, whose bytes are not what the digest names.
    let claimed = Digest::of(b"what was promised");
    let lying = vec![pb::UploadChunk {
        digest: claimed.to_string(),
        size: data.len() as u64,
        offset: 0,
        data: data.clone(),
        chunk_digest: String::new(),
    }];
    let err = h
        .blobs()
        .upload(req(tokio_stream::iter(lying), &acme))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("hash to"), "{}", err.message());
    let st = h
        .blobs()
        .stat(req(
            pb::StatBlobRequest {
                digest: claimed.to_string(),
                ..Default::default()
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!st.present && st.received == 0, "{st:?}");

    let empty = h.upload(&acme, b"").await;
    let err = h
        .catalog()
        .publish_model(req(
            model_req("acme/empty", "1.0.0", &empty.digest.parse().unwrap()),
            &acme,
        ))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("model file is empty"),
        "{}",
        err.message()
    );

    let junk = b"this is not an onnx model".to_vec();
    h.upload(&acme, &junk).await;
    let err = h
        .catalog()
        .publish_model(req(
            model_req("acme/junk", "1.0.0", &Digest::of(&junk)),
            &acme,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("not a valid ONNX model"),
        "{}",
        err.message()
    );

    let err = h
        .catalog()
        .publish_model(req(
            model_req("acme/ghost", "1.0.0", &Digest::of(b"never uploaded")),
            &acme,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Versions are immutable: the same content is idempotent, other content is refused.
    h.catalog()
        .publish_model(req(model_req("acme/vad", "1.0.0", &d), &acme))
        .await
        .unwrap();
    h.catalog()
        .publish_model(req(model_req("acme/vad", "1.0.0", &d), &acme))
        .await
        .unwrap();
    let digits = std::fs::read(root().join("examples/kits/ocr/models/det.onnx")).unwrap();
    h.upload(&acme, &digits).await;
    let err = h
        .catalog()
        .publish_model(req(
            model_req("acme/vad", "1.0.0", &Digest::of(&digits)),
            &acme,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // Nothing above stored anything but acme/vad@1.0.0.
    let all = h
        .catalog()
        .search(req(
            pb::SearchRequest {
                include_yanked: true,
                ..Default::default()
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.artifacts
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["acme/vad"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kit_is_accepted_only_signed_by_its_team_with_passing_golden_samples() {
    let h = start().await;
    let (tok, key) = h.team("acme").await;
    let kit = build_digits(&key, "acme/digits");
    let a = push_kit(&h, &tok, &kit).await.unwrap();
    assert_eq!(
        (a.kind, a.digest.clone()),
        (pb::Kind::Kit as i32, kit.digest().to_string())
    );
    assert_eq!(a.scenario, "handwritten digit classification");
    // Countersigned by the registry, after the team.
    let keys: Vec<&str> = a.signatures.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            key.public().to_string(),
            registry_key().public().to_string()
        ]
    );
    // The manifest is downloadable by the kit's digest.
    assert_eq!(h.download(&tok, &kit.digest(), 0).await, kit.manifest_bytes);

    // Signed by a key that is not the team's.
    let stranger = build_digits(&SecretKey::generate(), "acme/digits-2");
    let err = push_kit(&h, &tok, &stranger).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("untrusted"), "{}", err.message());

    // A golden sample that fails on the registry's runtime.
    let mut broken = build_digits(&key, "acme/digits-3");
    broken.manifest.golden[0].expected = broken.manifest.golden[1].expected;
    broken.manifest_bytes = broken.manifest.canonical_json();
    broken.signatures = vec![key.sign(&broken.manifest_bytes)];
    let err = push_kit(&h, &tok, &broken).await.unwrap_err();
    assert!(
        err.message().contains("golden sample 0 failed") && err.message().contains("expected"),
        "{}",
        err.message()
    );

    // Yanked kits leave search but stay gettable.
    h.catalog()
        .yank(req(
            pb::YankRequest {
                reference: "acme/digits@1.0.0".into(),
                kind: pb::Kind::Kit as i32,
                undo: false,
            },
            &tok,
        ))
        .await
        .unwrap();
    let s = h
        .catalog()
        .search(req(
            pb::SearchRequest {
                kind: pb::Kind::Kit as i32,
                ..Default::default()
            },
            &tok,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.total, 0);
    let g = h
        .catalog()
        .get(req(
            pb::GetRequest {
                reference: kit.digest().to_string(),
                kind: 0,
            },
            &tok,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(g.yanked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kit_lists_the_models_and_tools_it_runs_and_they_list_the_kits_using_them() {
    let h = start().await;
    let (tok, key) = h.team("acme").await;
    let kit = build_digits(&key, "acme/captcha-ddddocr");
    push_kit(&h, &tok, &kit).await.unwrap();
    let (mlp, wasm) = match (&kit.manifest.steps[0].kind, &kit.manifest.steps[1].kind) {
        (StepKind::Candle { weights, .. }, StepKind::Stage { wasm, .. }) => (*weights, *wasm),
        other => panic!("digits kit changed: {other:?}"),
    };
    let config = br#"{"layers":[64,32,10]}"#.to_vec();
    let weights = kit.blobs[&mlp].to_vec();
    h.upload(&tok, &config).await;
    let mut m = mlp_req("acme/digits-mlp", &weights, &config, vec![]);
    m.config_digest = Digest::of(&config).to_string();
    h.catalog().publish_model(req(m, &tok)).await.unwrap();
    h.catalog()
        .publish_tool(req(
            pb::PublishToolRequest {
                name: "acme/softmax-top-k".into(),
                version: "1.0.0".into(),
                digest: wasm.to_string(),
                tool_kind: "postprocess".into(),
                ..Default::default()
            },
            &tok,
        ))
        .await
        .unwrap();
    let rel = |reference: &str, kind: pb::Kind| {
        let h = &h;
        let tok = tok.clone();
        let reference = reference.to_owned();
        async move {
            h.catalog()
                .relations(req(
                    pb::GetRequest {
                        reference,
                        kind: kind as i32,
                    },
                    &tok,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let r = rel("acme/captcha-ddddocr@1.0.0", pb::Kind::Kit).await;
    let steps: Vec<(&str, &str, &str, Vec<String>)> = r
        .steps
        .iter()
        .map(|s| {
            (
                s.step.as_str(),
                s.kind.as_str(),
                s.digest.as_str(),
                s.artifacts.clone(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (
                "mlp",
                "candle",
                mlp.to_string().as_str(),
                vec!["acme/digits-mlp@1.0.0".to_owned()]
            ),
            (
                "post",
                "stage",
                wasm.to_string().as_str(),
                vec!["acme/softmax-top-k@1.0.0".to_owned()]
            ),
        ]
    );
    assert_eq!(r.steps[0].inputs, ["x: f32[?,64]"]);
    assert_eq!(r.golden.len(), 3);
    assert!(
        r.golden[0].inputs["pixels"].ends_with("bytes)"),
        "{:?}",
        r.golden[0]
    );
    assert_eq!(r.golden[0].tolerance, "exact");
    let r = rel("acme/digits-mlp@1.0.0", pb::Kind::Model).await;
    assert_eq!(r.used_by, ["acme/captcha-ddddocr@1.0.0"]);
    let r = rel("acme/softmax-top-k@1.0.0", pb::Kind::Tool).await;
    assert_eq!(r.used_by, ["acme/captcha-ddddocr@1.0.0"]);

    // Found by a part of its name and despite a typo, through the API.
    for text in ["ocr", "captha", "ddddocr"] {
        let s = h
            .catalog()
            .search(req(
                pb::SearchRequest {
                    text: text.into(),
                    ..Default::default()
                },
                &tok,
            ))
            .await
            .unwrap()
            .into_inner();
        let names: Vec<&str> = s.artifacts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["acme/captcha-ddddocr"], "{text}");
    }
}
