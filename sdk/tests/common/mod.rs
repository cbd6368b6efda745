//! A registry on sled and a blob folder, served over TLS in the test's own
//! process, for the tests that drive the `algobay` binary against it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use algobay_registry::blobs::LocalBlobStore;
use algobay_registry::domain::SystemClock;
use algobay_registry::service::Registry;
use algobay_registry::store::SledStore;
use algobay_runtime::{Runtime, RuntimeOptions};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn ort_lib() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("build/onnxruntime/libonnxruntime.so.1.32.0"))
}

/// A served registry, its folder (kept for the test's files too), its
/// operator token, address and certificate.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub operator: String,
    pub url: String,
    pub cert: PathBuf,
    _rt: tokio::runtime::Runtime,
}

impl Env {
    /// Opens a registry in a new temporary folder and serves it on a free port.
    pub fn serve() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("registry");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let kv = Arc::new(SledStore::open(&data.join("meta")).unwrap());
        let blobs = Arc::new(LocalBlobStore::open(&data.join("blobs"), 1 << 30).unwrap());
        let runtime = Arc::new(
            Runtime::new(RuntimeOptions {
                cache_dir: Some(dir.path().join("registry-cache")),
                ort_library: Some(ort_lib()),
                ort_threads: 1,
                stage_limits_cap: None,
                max_batch: 0,
            })
            .unwrap(),
        );
        // As `algobay-registry serve` does: a key that countersigns accepted
        // kits, and a CA for the devices that enroll.
        let ca = algobay_registry::tls::DeviceCa::open_or_create(&data.join("ca")).unwrap();
        let ca_pem = ca.cert_pem().to_owned();
        let registry = Arc::new(
            Registry::open(kv, blobs, runtime, Arc::new(SystemClock))
                .unwrap()
                .with_signing_key(algobay_runtime::SecretKey::generate())
                .with_device_ca(ca),
        );
        let operator = registry.bootstrap_operator().unwrap().unwrap();
        let (tls, _) =
            algobay_registry::tls::TlsIdentity::self_signed_in(&data.join("tls"), &[]).unwrap();
        let tls = tls.with_client_ca(&ca_pem);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let _guard = rt.enter();
        rt.spawn(algobay_registry::server::serve(
            listener,
            registry,
            Some(tls),
            algobay_registry::metrics::Metrics::new(),
            algobay_net::Limits::default(),
            std::future::pending(),
        ));
        Env {
            operator,
            url: format!("https://localhost:{port}"),
            cert: data.join("tls/cert.pem"),
            dir,
            _rt: rt,
        }
    }

    /// The `algobay` binary with this test's home, config and cache, and no
    /// registry, token or trust from the environment.
    pub fn algobay(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_algobay"));
        c.env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("ALGOBAY_CACHE_DIR", self.dir.path().join("cache"))
            .env("ORT_DYLIB_PATH", ort_lib())
            .env_remove("ALGOBAY_REGISTRY")
            .env_remove("ALGOBAY_TOKEN")
            .env_remove("ALGOBAY_TRUST")
            .arg("--quiet");
        c
    }
}
