//! `algobay._native`: the Rust SDK and runtime, as the `algobay` Python
//! package uses them. Verification, signing, building and running a kit are
//! the same code the `algobay` command runs; the Python layer
//! (`pysrc/algobay/__init__.py`) adds configuration, the cache and NumPy.
//!
//! Calls release the GIL while they work. Values cross as plain Python
//! types: tensors as `(dtype, shape, bytes)`, records as JSON text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use algobay_runtime::{
    kitfile::Packager, sign::TrustRoots, KitArchive, LoadedKit, Runtime, RuntimeOptions, SecretKey,
    Tensor, Value, Values,
};
use algobay_sdk::{Client as SdkClient, DatasetInfo, Kind, ModelInfo, SdkError, Search};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

create_exception!(
    _native,
    AlgobayError,
    PyException,
    "Any failure of an Algobay call."
);
create_exception!(
    _native,
    VerificationError,
    AlgobayError,
    "A signature or digest did not check out."
);
create_exception!(
    _native,
    GoldenError,
    AlgobayError,
    "A kit's golden sample gave another answer than the one it expects."
);
create_exception!(
    _native,
    NotFoundError,
    AlgobayError,
    "No such artifact or file."
);
create_exception!(
    _native,
    RegistryConnectionError,
    AlgobayError,
    "The registry could not be reached, or its certificate was not trusted."
);
create_exception!(
    _native,
    PermissionError,
    AlgobayError,
    "The token was refused or may not do this."
);

fn runtime_err(e: &algobay_runtime::Error) -> PyErr {
    use algobay_runtime::Error as E;
    let msg = e.to_string();
    match e {
        E::Signature(_) | E::DigestMismatch { .. } => VerificationError::new_err(msg),
        E::Golden { .. } => GoldenError::new_err(msg),
        E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            NotFoundError::new_err(msg)
        }
        _ => AlgobayError::new_err(msg),
    }
}

fn sdk_err(e: SdkError) -> PyErr {
    use algobay_sdk::client::Code;
    match &e {
        SdkError::Runtime(r) => runtime_err(r),
        SdkError::Connect { .. } => RegistryConnectionError::new_err(e.to_string()),
        SdkError::Status { code, .. } => match code {
            Code::NotFound => NotFoundError::new_err(e.to_string()),
            Code::Unauthenticated | Code::PermissionDenied => {
                PermissionError::new_err(e.to_string())
            }
            _ => AlgobayError::new_err(e.to_string()),
        },
        _ => AlgobayError::new_err(e.to_string()),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> PyErr {
    let msg = format!("{}: {e}", path.display());
    if e.kind() == std::io::ErrorKind::NotFound {
        NotFoundError::new_err(msg)
    } else {
        AlgobayError::new_err(msg)
    }
}

fn read(path: &str) -> PyResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_err(Path::new(path), e))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn kind(k: Option<&str>) -> PyResult<Option<Kind>> {
    Ok(match k {
        None | Some("") => None,
        Some("model") => Some(Kind::Model),
        Some("tool") => Some(Kind::Tool),
        Some("kit") => Some(Kind::Kit),
        Some("dataset") => Some(Kind::Dataset),
        Some(other) => {
            return Err(AlgobayError::new_err(format!(
                "kind `{other}` is not model, tool, kit or dataset"
            )))
        }
    })
}

/// A connection to an Algobay registry (gRPC over TLS).
#[pyclass(module = "algobay._native")]
struct Client {
    rt: tokio::runtime::Runtime,
    inner: SdkClient,
    url: String,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (registry, token=None, ca_pem=None))]
    fn new(
        py: Python<'_>,
        registry: String,
        token: Option<String>,
        ca_pem: Option<String>,
    ) -> PyResult<Client> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| AlgobayError::new_err(format!("async runtime: {e}")))?;
        let url = registry.clone();
        let inner = py
            .detach(|| rt.block_on(SdkClient::connect(&registry, token, ca_pem)))
            .map_err(sdk_err)?;
        Ok(Client { rt, inner, url })
    }

    /// The registry's URL.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// (role, subject) of the token.
    fn whoami(&self, py: Python<'_>) -> PyResult<(String, String)> {
        py.detach(|| self.rt.block_on(self.inner.whoami()))
            .map_err(sdk_err)
    }

    #[pyo3(signature = (text, kind=None, domain="", task="", industry="", team="", page_size=20, page_token=""))]
    #[allow(clippy::too_many_arguments)]
    fn search_json(
        &self,
        py: Python<'_>,
        text: &str,
        kind: Option<&str>,
        domain: &str,
        task: &str,
        industry: &str,
        team: &str,
        page_size: u32,
        page_token: &str,
    ) -> PyResult<String> {
        let q = Search {
            text: text.into(),
            kind: self::kind(kind)?,
            domain: domain.into(),
            task: task.into(),
            industry: industry.into(),
            team: team.into(),
            page_size,
            page_token: page_token.into(),
        };
        let page = py
            .detach(|| self.rt.block_on(self.inner.search(q)))
            .map_err(sdk_err)?;
        Ok(json(&page))
    }

    #[pyo3(signature = (reference, kind=None))]
    fn show_json(&self, py: Python<'_>, reference: &str, kind: Option<&str>) -> PyResult<String> {
        let k = self::kind(kind)?;
        let a = py
            .detach(|| self.rt.block_on(self.inner.get(reference, k)))
            .map_err(sdk_err)?;
        Ok(json(&a))
    }

    #[pyo3(signature = (path, name, version, domain, task, architecture="", description="", license="", industries=vec![], tags=vec![], card="", config=None))]
    #[allow(clippy::too_many_arguments)]
    fn publish_model_json(
        &self,
        py: Python<'_>,
        path: &str,
        name: &str,
        version: &str,
        domain: &str,
        task: &str,
        architecture: &str,
        description: &str,
        license: &str,
        industries: Vec<String>,
        tags: Vec<String>,
        card: &str,
        config: Option<&str>,
    ) -> PyResult<String> {
        let model = read(path)?;
        let config = config.map(read).transpose()?;
        let info = ModelInfo {
            name: name.into(),
            version: version.into(),
            domain: domain.into(),
            task: task.into(),
            architecture: architecture.into(),
            description: description.into(),
            license: license.into(),
            industries,
            tags,
            card: card.into(),
        };
        let a = py
            .detach(|| {
                self.rt.block_on(self.inner.publish_model(
                    &model,
                    config.as_deref(),
                    info,
                    algobay_sdk::no_progress(),
                ))
            })
            .map_err(sdk_err)?;
        Ok(json(&a))
    }

    #[pyo3(signature = (path, name, version, tool_kind, description="", license="", card=""))]
    #[allow(clippy::too_many_arguments)]
    fn publish_tool_json(
        &self,
        py: Python<'_>,
        path: &str,
        name: &str,
        version: &str,
        tool_kind: &str,
        description: &str,
        license: &str,
        card: &str,
    ) -> PyResult<String> {
        let wasm = read(path)?;
        let a = py
            .detach(|| {
                self.rt.block_on(self.inner.publish_tool(
                    &wasm,
                    name,
                    version,
                    tool_kind,
                    description,
                    license,
                    card,
                ))
            })
            .map_err(sdk_err)?;
        Ok(json(&a))
    }

    #[pyo3(signature = (path, name, version, license, source, label_column="", header=true, domain="", task="", description="", industries=vec![], tags=vec![], card=""))]
    #[allow(clippy::too_many_arguments)]
    fn publish_dataset_json(
        &self,
        py: Python<'_>,
        path: &str,
        name: &str,
        version: &str,
        license: &str,
        source: &str,
        label_column: &str,
        header: bool,
        domain: &str,
        task: &str,
        description: &str,
        industries: Vec<String>,
        tags: Vec<String>,
        card: &str,
    ) -> PyResult<String> {
        let data = read(path)?;
        let info = DatasetInfo {
            name: name.into(),
            version: version.into(),
            license: license.into(),
            source: source.into(),
            label_column: label_column.into(),
            header,
            domain: domain.into(),
            task: task.into(),
            description: description.into(),
            industries,
            tags,
            card: card.into(),
        };
        let a = py
            .detach(|| {
                self.rt.block_on(self.inner.publish_dataset(
                    &data,
                    info,
                    algobay_sdk::no_progress(),
                ))
            })
            .map_err(sdk_err)?;
        Ok(json(&a))
    }

    /// Pushes a kit file; returns the artifact (JSON) and the bytes sent.
    #[pyo3(signature = (path, private_to=""))]
    fn push_kit_json(
        &self,
        py: Python<'_>,
        path: &str,
        private_to: &str,
    ) -> PyResult<(String, u64)> {
        let kit = KitArchive::read_file(Path::new(path)).map_err(|e| runtime_err(&e))?;
        let (a, sent) = py
            .detach(|| {
                self.rt.block_on(self.inner.push_kit_for(
                    &kit,
                    private_to,
                    algobay_sdk::no_progress(),
                ))
            })
            .map_err(sdk_err)?;
        Ok((json(&a), sent))
    }

    /// Pulls a kit into `output`, every blob checked against its digest;
    /// returns (reference, digest).
    fn pull_kit(
        &self,
        py: Python<'_>,
        reference: &str,
        output: &str,
    ) -> PyResult<(String, String)> {
        let kit = py
            .detach(|| {
                self.rt.block_on(self.inner.pull_kit(
                    reference,
                    Path::new(output),
                    algobay_sdk::no_progress(),
                ))
            })
            .map_err(sdk_err)?;
        Ok((kit.manifest.reference(), kit.digest().to_string()))
    }
}

fn runtime(cache_dir: Option<PathBuf>, ort_library: Option<PathBuf>) -> PyResult<Runtime> {
    Runtime::new(RuntimeOptions {
        cache_dir,
        ort_library,
        ort_threads: 0,
        stage_limits_cap: None,
        max_batch: 0,
    })
    .map_err(|e| runtime_err(&e))
}

/// Builds the kit of the Kitfile in `dir` into `output`, signed with the key
/// file `key`, its golden samples run; returns the kit's reference and digest.
#[pyfunction]
#[pyo3(signature = (dir, output, key, cargo="cargo", cache_dir=None, ort_library=None))]
fn build_kit(
    py: Python<'_>,
    dir: &str,
    output: &str,
    key: &str,
    cargo: &str,
    cache_dir: Option<PathBuf>,
    ort_library: Option<PathBuf>,
) -> PyResult<(String, String)> {
    let secret = SecretKey::read(Path::new(key)).map_err(|e| runtime_err(&e))?;
    let rt = runtime(cache_dir, ort_library)?;
    let archive = py
        .detach(|| Packager::new(&rt, PathBuf::from(cargo)).build(Path::new(dir), &secret, &|_| {}))
        .map_err(|e| runtime_err(&e))?;
    archive
        .write_file(Path::new(output))
        .map_err(|e| runtime_err(&e))?;
    Ok((archive.manifest.reference(), archive.digest().to_string()))
}

/// A verified kit, loaded in this process.
#[pyclass(module = "algobay._native")]
struct Kit {
    kit: Arc<LoadedKit>,
    archive: KitArchive,
    signers: Vec<String>,
}

/// One value as it crosses: (kind, dtype, shape, bytes), kind being
/// `tensor`, `bytes`, `text` or `json`.
type Crossing = (String, String, Vec<usize>, Vec<u8>);

#[pymethods]
impl Kit {
    /// Reads a kit file, checks its digests and its signatures against the
    /// public key files in `trust`, and loads it.
    #[staticmethod]
    #[pyo3(signature = (path, trust, cache_dir=None, ort_library=None))]
    fn load(
        py: Python<'_>,
        path: &str,
        trust: Vec<PathBuf>,
        cache_dir: Option<PathBuf>,
        ort_library: Option<PathBuf>,
    ) -> PyResult<Kit> {
        if trust.is_empty() {
            return Err(VerificationError::new_err(
                "no trusted keys: pass trust=[...] (a team's .pub file), or set ALGOBAY_TRUST",
            ));
        }
        let mut roots = TrustRoots::new();
        for p in &trust {
            roots.trust_file(p).map_err(|e| runtime_err(&e))?;
        }
        let rt = runtime(cache_dir, ort_library)?;
        let path = PathBuf::from(path);
        py.detach(move || {
            let archive = KitArchive::read_file(&path)?;
            let verified = archive.clone().verify(&roots)?;
            let signers = verified.signers.iter().map(|k| k.id()).collect();
            let kit = rt.load(&verified)?;
            Ok(Kit {
                kit: Arc::new(kit),
                archive,
                signers,
            })
        })
        .map_err(|e: algobay_runtime::Error| runtime_err(&e))
    }

    #[getter]
    fn reference(&self) -> String {
        self.archive.manifest.reference()
    }

    #[getter]
    fn digest(&self) -> String {
        self.archive.digest().to_string()
    }

    /// Ids of the trusted keys that signed it.
    #[getter]
    fn signers(&self) -> Vec<String> {
        self.signers.clone()
    }

    /// (name, type) of each input, types as in the Kitfile (`f32[1,64]`, `bytes`).
    #[getter]
    fn inputs(&self) -> Vec<(String, String)> {
        self.archive
            .manifest
            .inputs
            .iter()
            .map(|p| (p.name.clone(), p.ty.to_string()))
            .collect()
    }

    #[getter]
    fn outputs(&self) -> Vec<(String, String)> {
        self.archive
            .manifest
            .outputs
            .iter()
            .map(|p| (p.name.clone(), p.ty.to_string()))
            .collect()
    }

    /// Runs one request: inputs by name as (kind, dtype, shape, bytes).
    fn run_raw<'py>(
        &self,
        py: Python<'py>,
        inputs: BTreeMap<String, Crossing>,
    ) -> PyResult<BTreeMap<String, (String, String, Vec<usize>, Bound<'py, PyBytes>)>> {
        let mut values = Values::new();
        for (name, (kind, dtype, shape, data)) in inputs {
            let v = match kind.as_str() {
                "tensor" => {
                    let dt = algobay_runtime::DType::parse(&dtype).ok_or_else(|| {
                        AlgobayError::new_err(format!(
                            "input `{name}`: dtype `{dtype}` is not one kits take (f32, f16, i64, i32, u8, i8, bool)"
                        ))
                    })?;
                    Value::Tensor(Tensor::new(dt, shape, data).map_err(|e| runtime_err(&e))?)
                }
                "bytes" => Value::Bytes(data),
                "text" | "json" => {
                    let s = String::from_utf8(data).map_err(|_| {
                        AlgobayError::new_err(format!("input `{name}` is not UTF-8 text"))
                    })?;
                    if kind == "text" {
                        Value::Text(s)
                    } else {
                        Value::Json(s)
                    }
                }
                other => {
                    return Err(AlgobayError::new_err(format!(
                        "input `{name}`: kind `{other}` is not tensor, bytes, text or json"
                    )))
                }
            };
            values.insert(name, v);
        }
        let kit = self.kit.clone();
        let out = py
            .detach(move || kit.run(values))
            .map_err(|e| runtime_err(&e))?;
        Ok(out
            .into_iter()
            .map(|(name, v)| {
                let (kind, dtype, shape, data) = match v {
                    Value::Tensor(t) => ("tensor", t.dtype.name().to_owned(), t.shape, t.data),
                    Value::Bytes(b) => ("bytes", String::new(), vec![], b),
                    Value::Text(s) => ("text", String::new(), vec![], s.into_bytes()),
                    Value::Json(s) => ("json", String::new(), vec![], s.into_bytes()),
                };
                (
                    name,
                    (kind.to_owned(), dtype, shape, PyBytes::new(py, &data)),
                )
            })
            .collect())
    }

    /// Runs the kit's golden samples: a JSON list of {index, passed, failure}.
    fn test_json(&self, py: Python<'_>) -> PyResult<String> {
        let kit = self.kit.clone();
        let archive = self.archive.clone();
        let outcomes = py
            .detach(move || algobay_runtime::golden::run_golden(&kit, &archive))
            .map_err(|e| runtime_err(&e))?;
        let list: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "index": o.index,
                    "passed": o.failure.is_none(),
                    "failure": o.failure,
                })
            })
            .collect();
        Ok(json(&list))
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Client>()?;
    m.add_class::<Kit>()?;
    m.add_function(wrap_pyfunction!(build_kit, m)?)?;
    m.add("AlgobayError", py.get_type::<AlgobayError>())?;
    m.add("VerificationError", py.get_type::<VerificationError>())?;
    m.add("GoldenError", py.get_type::<GoldenError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add(
        "RegistryConnectionError",
        py.get_type::<RegistryConnectionError>(),
    )?;
    m.add("PermissionError", py.get_type::<PermissionError>())?;
    Ok(())
}
