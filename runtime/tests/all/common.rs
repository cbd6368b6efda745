use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use algobay_runtime::archive::KitArchive;
use algobay_runtime::kitfile::Packager;
use algobay_runtime::{LoadedKit, Runtime, RuntimeOptions, SecretKey, TrustRoots};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn ort_library() -> PathBuf {
    let p = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("build/onnxruntime/libonnxruntime.so.1.32.0"));
    assert!(
        p.is_file(),
        "ONNX Runtime is missing at {}: run scripts/setup.sh",
        p.display()
    );
    p
}

pub fn runtime_with_cache(cache: Option<PathBuf>) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: cache,
        ort_library: Some(ort_library()),
        ort_threads: 1,
        stage_limits_cap: None,
        max_batch: 0,
    })
    .expect("runtime")
}

/// One runtime for the whole test binary, caching compiled stages in a temporary folder.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<(Runtime, tempfile::TempDir)> = OnceLock::new();
    let (rt, _) = RT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        (runtime_with_cache(Some(dir.path().to_path_buf())), dir)
    });
    rt
}

pub fn key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(SecretKey::generate)
}

pub fn trust() -> TrustRoots {
    let mut t = TrustRoots::new();
    t.trust(key().public());
    t
}

pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into())
}

/// Builds a Kitfile folder into a kit (golden samples included).
pub fn build(dir: &Path) -> algobay_runtime::Result<KitArchive> {
    Packager::new(runtime(), cargo()).build(dir, key(), &|_| {})
}

/// Builds one of the example kits once per test binary.
pub fn example(name: &str) -> KitArchive {
    static KITS: OnceLock<std::sync::Mutex<std::collections::BTreeMap<String, KitArchive>>> =
        OnceLock::new();
    let kits = KITS.get_or_init(Default::default);
    let mut kits = kits.lock().unwrap_or_else(|e| e.into_inner());
    kits.entry(name.to_owned())
        .or_insert_with(|| {
            build(&root().join("examples/kits").join(name))
                .unwrap_or_else(|e| panic!("building example kit {name}: {e}"))
        })
        .clone()
}

pub fn load(archive: &KitArchive) -> Arc<LoadedKit> {
    let verified = archive.clone().verify(&trust()).expect("verify");
    Arc::new(runtime().load(&verified).expect("load"))
}

pub fn sample(kit: &str, file: &str) -> Vec<u8> {
    std::fs::read(
        root()
            .join("examples/kits")
            .join(kit)
            .join("samples")
            .join(file),
    )
    .expect("sample file")
}

/// Writes a Kitfile into a fresh folder and returns the folder.
pub fn kitfile(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Kitfile"), text).expect("write Kitfile");
    dir
}

pub fn misbehave_crate() -> String {
    root()
        .join("runtime/tests/stages/misbehave")
        .display()
        .to_string()
}
