//! Datasets over real gRPC: the card is what the registry read from the data.
#![allow(clippy::unwrap_used)]

mod common;
use common::harness::*;
use common::*;

use tonic::Code;

use algobay_proto::v1 as pb;
use algobay_runtime::Digest;

fn digits_csv() -> Vec<u8> {
    std::fs::read(root().join("examples/kits/digits/data/digits.csv"))
        .expect("scripts/setup.sh unpacks scikit-learn's digits")
}

fn request(name: &str, data: &[u8]) -> pb::PublishDatasetRequest {
    pb::PublishDatasetRequest {
        name: name.into(),
        version: "1.0.0".into(),
        digest: Digest::of(data).to_string(),
        license: "BSD-3-Clause".into(),
        source: "scikit-learn 1.7.2, sklearn/datasets/data/digits.csv.gz".into(),
        label_column: "64".into(),
        domain: "vision".into(),
        task: "classification".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_is_published_with_the_card_the_registry_reads_from_its_data() {
    let h = start().await;
    let (tok, _) = h.team("acme").await;
    let data = digits_csv();
    h.upload(&tok, &data).await;
    let a = h
        .catalog()
        .publish_dataset(req(request("acme/digits", &data), &tok))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.kind, pb::Kind::Dataset as i32);
    let card = a.dataset.unwrap();
    assert_eq!((card.rows, card.columns.len()), (1797, 65));
    assert_eq!(card.input_type, "f32[64]");
    assert_eq!(card.label_column, "64");
    // scikit-learn's digits: 178 zeros ... 180 nines.
    assert_eq!(card.label_counts.len(), 10);
    assert_eq!(card.label_counts["0"], 178);
    assert_eq!(card.label_counts["8"], 174);
    assert_eq!(card.label_counts.values().sum::<u64>(), 1797);
    assert!(card.source.starts_with("scikit-learn"));

    // Found by kind, counted by coverage, immutable.
    let s = h
        .catalog()
        .search(req(
            pb::SearchRequest {
                kind: pb::Kind::Dataset as i32,
                text: "digit".into(),
                ..Default::default()
            },
            &tok,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.total, 1);
    let c = h
        .catalog()
        .coverage(req(pb::CoverageRequest {}, &h.operator))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((c.datasets, c.models), (1, 0));
    let other = b"1,2,0\n3,4,1\n".to_vec();
    let mut r = request("acme/digits", &other);
    r.label_column = "2".into();
    r.blobs = vec![pb::InlineBlob {
        digest: Digest::of(&other).to_string(),
        data: other.clone(),
    }];
    let err = h.catalog().publish_dataset(req(r, &tok)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_without_license_or_source_or_with_bad_rows_is_refused_by_name() {
    let h = start().await;
    let (tok, _) = h.team("acme").await;
    let inline = |data: &[u8], f: &dyn Fn(&mut pb::PublishDatasetRequest)| {
        let mut r = request("acme/small", data);
        r.label_column = String::new();
        r.blobs = vec![pb::InlineBlob {
            digest: Digest::of(data).to_string(),
            data: data.to_vec(),
        }];
        f(&mut r);
        r
    };
    let good = b"a,b,y\n1,2,x\n".to_vec();
    for (r, want) in [
        (inline(&good, &|r| r.license.clear()), "license"),
        (inline(&good, &|r| r.source.clear()), "source"),
        (inline(&good, &|r| r.format = "parquet".into()), "format"),
        (
            inline(&good, &|r| {
                r.header = true;
                r.label_column = "z".into()
            }),
            "label_column",
        ),
        (inline(b"1,2\n3,4\n5\n", &|_| {}), "data line 3"),
        (inline(b"\xff\xfe\x00", &|_| {}), "not UTF-8"),
    ] {
        let err = h.catalog().publish_dataset(req(r, &tok)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(err.message().contains(want), "{want}: {}", err.message());
    }
    // A dataset is a team's like anything else it publishes.
    let (other, _) = h.team("globex").await;
    let err = h
        .catalog()
        .publish_dataset(req(inline(&good, &|_| {}), &other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
}
