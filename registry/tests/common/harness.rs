//! A registry served over real gRPC with TLS on loopback, and a tonic client's helpers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tonic::transport::Channel;

use algobay_proto::v1 as pb;
use algobay_registry::blobs::LocalBlobStore;
use algobay_registry::domain::Clock;
use algobay_registry::limits::Ceilings;
use algobay_registry::service::Registry;
use algobay_registry::store::SledStore;
use algobay_registry::tls::TlsIdentity;
use algobay_runtime::{Digest, Runtime, RuntimeOptions, SecretKey};

use super::*;

pub struct FakeClock(pub AtomicI64);

impl Clock for FakeClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The registry's countersigning key in these tests (one per test binary).
pub fn registry_key() -> SecretKey {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SecretKey::from_text(KEY.get_or_init(|| SecretKey::generate().to_text())).unwrap()
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub channel: Channel,
    pub operator: String,
    pub clock: Arc<FakeClock>,
    pub metrics_addr: std::net::SocketAddr,
    pub registry: Arc<Registry>,
    pub _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn start() -> Harness {
    start_with(Ceilings::default()).await
}

/// A registry with these ceilings.
pub async fn start_with(ceilings: Ceilings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(SledStore::open(&dir.path().join("meta")).unwrap());
    let blobs = Arc::new(LocalBlobStore::open(&dir.path().join("blobs"), 1 << 30).unwrap());
    let runtime = Arc::new(
        Runtime::new(RuntimeOptions {
            cache_dir: Some(dir.path().join("wasm")),
            ort_library: Some(ort_lib()),
            ort_threads: 1,
            stage_limits_cap: None,
            max_batch: 0,
        })
        .unwrap(),
    );
    let clock = Arc::new(FakeClock(AtomicI64::new(1_800_000_000)));
    let registry = Arc::new(
        Registry::open(kv, blobs, runtime, clock.clone())
            .unwrap()
            .with_signing_key(registry_key())
            .with_ceilings(ceilings)
            .with_device_ca(
                algobay_registry::tls::DeviceCa::open_or_create(&dir.path().join("ca")).unwrap(),
            ),
    );
    let operator = registry.bootstrap_operator().unwrap().unwrap();
    assert!(
        registry.bootstrap_operator().unwrap().is_none(),
        "only the first start makes an operator token"
    );
    let (tls, made) = TlsIdentity::self_signed_in(&dir.path().join("tls"), &[]).unwrap();
    assert!(made);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cert = tls.cert_pem.clone();
    let metrics = algobay_registry::metrics::Metrics::new();
    tokio::spawn(algobay_registry::server::serve(
        listener,
        registry.clone(),
        Some(tls),
        metrics.clone(),
        algobay_net::Limits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let ml = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = ml.local_addr().unwrap();
    tokio::spawn(algobay_registry::metrics::serve_metrics(
        ml,
        metrics,
        registry.clone(),
        std::future::pending(),
    ));
    let channel = tls_channel(port, cert).await;
    Harness {
        dir,
        registry,
        channel,
        operator,
        clock,
        metrics_addr,
        _stop: stop,
    }
}

impl Harness {
    pub fn admin(&self) -> pb::admin_client::AdminClient<Channel> {
        pb::admin_client::AdminClient::new(self.channel.clone())
    }
    pub fn blobs(&self) -> pb::blobs_client::BlobsClient<Channel> {
        pb::blobs_client::BlobsClient::new(self.channel.clone()).max_decoding_message_size(16 << 20)
    }
    pub fn catalog(&self) -> pb::catalog_client::CatalogClient<Channel> {
        pb::catalog_client::CatalogClient::new(self.channel.clone())
    }

    /// A team token, as the operator creates it.
    pub async fn team_token(
        &self,
        team: &str,
        ttl_seconds: i64,
    ) -> Result<pb::CreateTokenResponse, tonic::Status> {
        self.admin()
            .create_token(req(
                pb::CreateTokenRequest {
                    role: pb::Role::Team as i32,
                    subject: team.into(),
                    ttl_seconds,
                    description: String::new(),
                },
                &self.operator,
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// Creates a team with a fresh key; returns its token and key.
    pub async fn team(&self, name: &str) -> (String, SecretKey) {
        let key = SecretKey::generate();
        self.admin()
            .create_team(req(
                pb::CreateTeamRequest {
                    name: name.into(),
                    display_name: name.into(),
                    signing_key: key.public().to_string(),
                },
                &self.operator,
            ))
            .await
            .unwrap();
        (self.team_token(name, 0).await.unwrap().token, key)
    }

    pub async fn upload(&self, token: &str, data: &[u8]) -> pb::UploadResponse {
        upload_in_chunks(&self.channel, token, data, 256 << 10, true).await
    }

    pub async fn download(&self, token: &str, d: &Digest, offset: u64) -> Vec<u8> {
        let mut s = self
            .blobs()
            .download(req(
                pb::DownloadRequest {
                    digest: d.to_string(),
                    offset,
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(c) = s.message().await.unwrap() {
            out.extend_from_slice(&c.data);
        }
        out
    }
}

pub async fn push_kit(
    h: &Harness,
    tok: &str,
    archive: &algobay_runtime::archive::KitArchive,
) -> Result<pb::Artifact, tonic::Status> {
    for b in archive.blobs.values() {
        h.upload(tok, b).await;
    }
    let sigs = archive
        .signatures
        .iter()
        .map(|s| pb::KitSignature {
            key: s.key.clone(),
            signature: s.signature.clone(),
        })
        .collect();
    h.catalog()
        .publish_kit(req(
            pb::PublishKitRequest {
                manifest: archive.manifest_bytes.clone(),
                signatures: sigs,
                ..Default::default()
            },
            tok,
        ))
        .await
        .map(|r| r.into_inner())
}
