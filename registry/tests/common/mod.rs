//! Helpers shared by the registry's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use tonic::Request;

pub mod fleet;
pub mod harness;
pub mod web;

use algobay_runtime::archive::KitArchive;
use algobay_runtime::SecretKey;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn ort_lib() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("build/onnxruntime/libonnxruntime.so.1.32.0"))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// A TLS channel to a registry on this machine that trusts `cert_pem` alone.
pub async fn tls_channel(port: u16, cert_pem: String) -> tonic::transport::Channel {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(cert_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A request carrying a bearer token.
pub fn req<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// What the registry knows of a blob.
pub async fn stat(
    ch: &tonic::transport::Channel,
    token: &str,
    d: &algobay_runtime::Digest,
) -> algobay_proto::v1::StatBlobResponse {
    algobay_proto::v1::blobs_client::BlobsClient::new(ch.clone())
        .stat(req(
            algobay_proto::v1::StatBlobRequest {
                digest: d.to_string(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Uploads `data` from where the registry's record of it stops, in chunks of
/// `chunk` bytes (each with its own digest if `chunk_digests`).
pub async fn upload_in_chunks(
    ch: &tonic::transport::Channel,
    token: &str,
    data: &[u8],
    chunk: usize,
    chunk_digests: bool,
) -> algobay_proto::v1::UploadResponse {
    use algobay_proto::v1 as pb;
    let d = algobay_runtime::Digest::of(data);
    let from = stat(ch, token, &d).await.received;
    let piece = |offset: u64, c: &[u8]| pb::UploadChunk {
        digest: d.to_string(),
        size: data.len() as u64,
        offset,
        data: c.to_vec(),
        chunk_digest: if chunk_digests && !c.is_empty() {
            algobay_runtime::Digest::of(c).to_string()
        } else {
            String::new()
        },
    };
    let mut chunks: Vec<pb::UploadChunk> = data[from as usize..]
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| piece(from + (i * chunk) as u64, c))
        .collect();
    if chunks.is_empty() {
        chunks.push(piece(from, &[]));
    }
    pb::blobs_client::BlobsClient::new(ch.clone())
        .upload(req(tokio_stream::iter(chunks), token))
        .await
        .unwrap()
        .into_inner()
}

/// The example digits kit under another name, signed with `key`.
pub fn build_digits(key: &SecretKey, name: &str) -> KitArchive {
    build_digits_with(key, name, None)
}

/// The digits MLP's weights with `note` in their safetensors header: the same
/// tensors (every golden sample passes) under another digest.
pub fn digits_weights_noted(note: &str) -> Vec<u8> {
    let w = std::fs::read(root().join("examples/kits/digits/models/mlp.safetensors")).unwrap();
    let n = u64::from_le_bytes(w[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&w[8..8 + n]).unwrap();
    header["__metadata__"] = serde_json::json!({ "note": note });
    let mut text = serde_json::to_vec(&header).unwrap();
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&w[8 + n..]);
    out
}

/// [`build_digits`] around other weights (a file), when given.
pub fn build_digits_with(
    key: &SecretKey,
    name: &str,
    weights: Option<&std::path::Path>,
) -> KitArchive {
    let rt = algobay_runtime::Runtime::new(algobay_runtime::RuntimeOptions {
        cache_dir: None,
        ort_library: Some(ort_lib()),
        ort_threads: 1,
        stage_limits_cap: None,
        max_batch: 0,
    })
    .unwrap();
    let digits = root().join("examples/kits/digits");
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(digits.join("Kitfile"))
        .unwrap()
        .replace("algobay/digits-mlp", name)
        .replace(
            "models/mlp.safetensors",
            &weights.map_or("models/mlp.safetensors".to_owned(), |w| {
                w.display().to_string()
            }),
        )
        .replace("models/", &format!("{}/models/", digits.display()))
        .replace("samples/", &format!("{}/samples/", digits.display()))
        .replace(
            "../../stages/",
            &format!("{}/examples/stages/", root().display()),
        );
    std::fs::write(dir.path().join("Kitfile"), text).unwrap();
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into());
    algobay_runtime::kitfile::Packager::new(&rt, cargo)
        .build(dir.path(), key, &|_| {})
        .unwrap()
}

/// The misbehave stage in a kit whose golden sample makes it loop.
pub fn looping_kit(key: &SecretKey, time_ms: u32) -> algobay_runtime::archive::KitArchive {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.json"),
        r#"{"dtype": "f32", "shape": [3], "data": [1, 2, 3]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("mode.txt"), "ok").unwrap();
    std::fs::write(
        dir.path().join("y.json"),
        r#"{"y": {"dtype": "f32", "shape": [3], "data": [2, 4, 6]}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Kitfile"),
        format!(
            r#"
[kit]
name = "acme/loops"
version = "1.0.0"
scenario = "tests"
[[input]]
name = "x"
type = "f32[3]"
[[input]]
name = "mode"
type = "text"
[[output]]
name = "y"
type = "f32[3]"
[[step]]
name = "m"
stage = "{}"
limits = {{ memory_mb = 32, time_ms = {time_ms} }}
[[golden]]
inputs = {{ x = "x.json", mode = "mode.txt" }}
expected = "y.json"
"#,
            root().join("runtime/tests/stages/misbehave").display()
        ),
    )
    .unwrap();
    let rt = algobay_runtime::Runtime::new(algobay_runtime::RuntimeOptions {
        cache_dir: None,
        ort_library: Some(ort_lib()),
        ort_threads: 1,
        stage_limits_cap: None,
        max_batch: 0,
    })
    .unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut kit = algobay_runtime::kitfile::Packager::new(&rt, cargo.into())
        .build(dir.path(), key, &|_| {})
        .unwrap();
    // The golden sample now asks the stage to loop.
    let looping = b"loop".to_vec();
    let d = algobay_runtime::Digest::of(&looping);
    kit.manifest.golden[0].inputs.insert("mode".into(), d);
    kit.manifest.blobs.insert(d, looping.len() as u64);
    kit.blobs.insert(d, std::sync::Arc::new(looping));
    kit.manifest_bytes = kit.manifest.canonical_json();
    kit.signatures = vec![key.sign(&kit.manifest_bytes)];
    kit
}
