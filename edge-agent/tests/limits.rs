//! What an outsider tried against a device's local endpoints, kept as
//! regression tests: bodies past the device's limits are refused before they
//! are read (so memory stays small), and malformed protocol requests are
//! refused by name.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Sends only the head of a request announcing `len` bytes, asking to
/// continue (`Expect: 100-continue`); returns the status the agent answers.
fn announce(base: &str, path: &str, content_type: &str, len: usize) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap();
    let line = String::from_utf8_lossy(&head[..n]).into_owned();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn oversized_bodies_are_refused_with_413_and_memory_stays_small() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let agent = device(&rt, &reg, &acme, dir.path(), "small", "");
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 120);
    // Eight 49 MB JSON bodies at once, to both endpoints.
    let codes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let base = agent.http.clone();
                s.spawn(move || {
                    let path = if i % 2 == 0 {
                        "/v2/models/digits-mlp/infer"
                    } else {
                        "/v1/infer"
                    };
                    announce(&base, path, "application/json", 49 << 20)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes, vec![413; 8]);
    // A file past the other limit (64 MiB by default) too.
    assert_eq!(
        announce(&agent.http, "/v1/infer", "image/png", 65 << 20),
        413
    );
    let (rss, peak) = rss_mib(agent.pid());
    eprintln!("agent RSS after eight 49 MB bodies refused: {rss} MiB, peak {peak} MiB");
    assert!(peak < 200, "agent peak RSS {peak} MiB (now {rss} MiB)");
    // And it still serves.
    let (code, _) = http(&agent.http, "POST", "/v1/infer", &row9());
    assert_eq!(code, 200);
}

#[test]
fn malformed_protocol_requests_are_refused_by_name() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProc::start(&dir.path().join("registry"), 0);
    let (acme_token, _) = rt.block_on(seed(&reg, false));
    let acme = rt.block_on(reg.client(&acme_token));
    let agent = device(&rt, &reg, &acme, dir.path(), "d", "");
    serve(&rt, &acme, &agent, "algobay/digits-mlp@1.0.0", 120);
    let pixels = vec![0.0f32; 64];
    let tensor =
        serde_json::json!({"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": pixels});
    let post = |doc: serde_json::Value| {
        let (code, body) = http(
            &agent.http,
            "POST",
            "/v2/models/digits-mlp/infer",
            doc.to_string().as_bytes(),
        );
        (code, body)
    };
    let (code, body) = post(serde_json::json!({"inputs": [tensor, tensor]}));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("more than once"), "{body}");
    let mut both = tensor.clone();
    both["parameters"] = serde_json::json!({"binary_data_size": 256});
    let (code, body) = post(serde_json::json!({"inputs": [both]}));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("both `data` and"), "{body}");
    let many: Vec<_> = (0..1000)
        .map(|i| {
            let mut t = tensor.clone();
            t["name"] = format!("x{i}").into();
            t
        })
        .collect();
    let (code, body) = post(serde_json::json!({"inputs": many}));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("over the limit of 64"), "{body}");
    // Unknown models are not "ready"; their long names are not echoed whole.
    let long = "m".repeat(5000);
    let (code, body) = http(&agent.http, "GET", &format!("/v2/models/{long}/ready"), &[]);
    assert_eq!(code, 404, "{body}");
    assert!(body.len() < 300, "{} bytes", body.len());
    let (code, _) = http(&agent.http, "GET", "/v2/models/digits-mlp/ready", &[]);
    assert_eq!(code, 200);

    // The gRPC form: an unknown model is not found, contents come in one form
    // only, and bytes that are not the message are the caller's fault.
    use algobay_proto::inference as oip;
    rt.block_on(async {
        let url = format!("http://{}", agent.grpc);
        let mut c =
            oip::grpc_inference_service_client::GrpcInferenceServiceClient::connect(url.clone())
                .await
                .unwrap();
        let e = c
            .model_ready(oip::ModelReadyRequest {
                name: "nobody".into(),
                version: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        let e = c
            .model_infer(oip::ModelInferRequest {
                model_name: "digits-mlp".into(),
                inputs: vec![oip::model_infer_request::InferInputTensor {
                    name: "pixels".into(),
                    datatype: "FP32".into(),
                    shape: vec![1, 64],
                    contents: Some(oip::InferTensorContents {
                        fp32_contents: vec![0.0; 64],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                raw_input_contents: vec![vec![0; 256]],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("one form"), "{}", e.message());
        // A ServerLiveResponse (field 1 a bool) where a ModelInferRequest
        // (field 1 a string) is expected.
        let ch = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(ch);
        grpc.ready().await.unwrap();
        let e = grpc
            .unary::<_, oip::ModelInferResponse, _>(
                tonic::Request::new(oip::ServerLiveResponse { live: true }),
                http::uri::PathAndQuery::from_static("/inference.GRPCInferenceService/ModelInfer"),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    });
}
