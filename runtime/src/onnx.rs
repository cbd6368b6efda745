//! ONNX models through ONNX Runtime, loaded dynamically from the library the
//! `onnxruntime` wheel ships.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::session::SessionInputValue;
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::error::{Error, Result};
use crate::manifest::{Contract, Port, Scan};
use crate::value::{DType, Dim, PortType, Tensor, Value, Values};

/// How to get the library, for error messages.
pub const INSTALL_HINT: &str = "run `scripts/setup.sh` (it unpacks libonnxruntime.so from the onnxruntime 1.32.0 wheel \
into build/onnxruntime/), or by hand: `pip download --no-deps onnxruntime==1.32.0 -d /tmp/ort && \
unzip -j /tmp/ort/onnxruntime-1.32.0-*.whl 'onnxruntime/capi/libonnxruntime.so*' -d /opt/onnxruntime`, \
then set ORT_DYLIB_PATH to the libonnxruntime.so.1.32.0 file";

/// ONNX Runtime, loaded once per process from a shared library file.
#[derive(Debug, Clone)]
pub struct OrtRuntime {
    env: ort::environment::Environment,
    intra_threads: usize,
}

impl OrtRuntime {
    /// Loads the library at `path` (a file, not a folder).
    pub fn load(path: &Path, intra_threads: usize) -> Result<OrtRuntime> {
        if path.is_dir() {
            return Err(Error::OrtUnavailable(format!(
                "{} is a folder; ORT_DYLIB_PATH must name the libonnxruntime.so file itself; {INSTALL_HINT}",
                path.display()
            )));
        }
        if !path.exists() {
            return Err(Error::OrtUnavailable(format!(
                "{} does not exist; {INSTALL_HINT}",
                path.display()
            )));
        }
        // ONNX Runtime allows one library and one environment per process: every
        // runtime in the process shares them.
        static ENV: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);
        let mut slot = ENV
            .lock()
            .map_err(|_| Error::OrtUnavailable("environment lock poisoned".into()))?;
        let env = match slot.as_ref() {
            Some(env) => env.clone(),
            None => {
                let env = ort::init_from(path)
                    .map_err(|e| Error::OrtUnavailable(format!("{e}; {INSTALL_HINT}")))?
                    .with_name("algobay")
                    .build()
                    .map_err(|e| Error::OrtUnavailable(e.to_string()))?;
                *slot = Some(env.clone());
                env
            }
        };
        Ok(OrtRuntime { env, intra_threads })
    }

    /// Finds the library: `explicit`, else the `ORT_DYLIB_PATH` value given.
    pub fn locate(explicit: Option<&Path>, env_value: Option<&str>) -> Result<PathBuf> {
        if let Some(p) = explicit {
            return Ok(p.to_path_buf());
        }
        match env_value {
            Some(v) if !v.trim().is_empty() => Ok(PathBuf::from(v)),
            _ => Err(Error::OrtUnavailable(format!(
                "ORT_DYLIB_PATH is not set; {INSTALL_HINT}"
            ))),
        }
    }

    /// The process's ONNX Runtime environment (for callers that build their own sessions).
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.env
    }

    /// Loads a model from its bytes.
    pub fn model(&self, step: &str, bytes: &[u8]) -> Result<OnnxModel> {
        OnnxModel::load(self, step, bytes)
    }
}

/// A loaded ONNX model: a pool of sessions over the same bytes, so that
/// concurrent requests run side by side (a session runs one call at a time).
/// The first session is made at load; more are made when requests overlap, up
/// to one per core.
pub struct OnnxModel {
    step: String,
    rt: OrtRuntime,
    bytes: std::sync::Arc<Vec<u8>>,
    pool: Mutex<Pool>,
    returned: std::sync::Condvar,
    max_sessions: usize,
    signature: Contract,
}

struct Pool {
    idle: Vec<Session>,
    made: usize,
}

/// A session taken from the pool; it goes back when dropped.
struct Lease<'a> {
    model: &'a OnnxModel,
    session: Option<Session>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session
            .as_ref()
            .expect("a lease holds its session until dropped")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .expect("a lease holds its session until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let mut pool = self.model.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.idle.push(s);
            self.model.returned.notify_one();
        }
    }
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("step", &self.step)
            .field("signature", &self.signature)
            .finish()
    }
}

fn dtype_of(step: &str, what: &str, ty: &TensorElementType) -> Result<DType> {
    Ok(match ty {
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Bool => DType::Bool,
        other => {
            return Err(Error::model(
                step,
                format!("{what} has element type {other:?}, which kits cannot carry"),
            ))
        }
    })
}

fn port_of(step: &str, kind: &str, name: &str, vt: &ValueType) -> Result<Port> {
    match vt {
        ValueType::Tensor { ty, shape, .. } => {
            let dtype = dtype_of(step, &format!("{kind} `{name}`"), ty)?;
            let shape = shape
                .iter()
                .map(|&d| {
                    if d < 0 {
                        Dim::Any
                    } else {
                        Dim::Fixed(d as usize)
                    }
                })
                .collect();
            Ok(Port {
                name: name.to_owned(),
                ty: PortType::Tensor { dtype, shape },
            })
        }
        other => Err(Error::model(
            step,
            format!("{kind} `{name}` is a {other:?}, only tensors are supported"),
        )),
    }
}

impl OnnxModel {
    fn session(rt: &OrtRuntime, step: &str, bytes: &[u8]) -> Result<Session> {
        let mut builder = Session::builder(&rt.env).map_err(|e| Error::model(step, e))?;
        if rt.intra_threads > 0 {
            builder = builder
                .with_intra_threads(rt.intra_threads)
                .map_err(|e| Error::model(step, e.to_string()))?;
        }
        builder
            .commit_from_memory(bytes)
            .map_err(|e| Error::model(step, format!("is not a valid ONNX model: {e}")))
    }

    fn load(rt: &OrtRuntime, step: &str, bytes: &[u8]) -> Result<OnnxModel> {
        if bytes.is_empty() {
            return Err(Error::model(step, "model file is empty"));
        }
        let session = Self::session(rt, step, bytes)?;
        let signature = Contract {
            inputs: session
                .inputs()
                .iter()
                .map(|o| port_of(step, "input", o.name(), o.dtype()))
                .collect::<Result<_>>()?,
            outputs: session
                .outputs()
                .iter()
                .map(|o| port_of(step, "output", o.name(), o.dtype()))
                .collect::<Result<_>>()?,
        };
        Ok(OnnxModel {
            step: step.to_owned(),
            rt: rt.clone(),
            bytes: std::sync::Arc::new(bytes.to_vec()),
            pool: Mutex::new(Pool {
                idle: vec![session],
                made: 1,
            }),
            returned: std::sync::Condvar::new(),
            max_sessions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            signature,
        })
    }

    /// An idle session, a new one if all are busy and the pool may grow, else
    /// the first one returned.
    fn lease(&self) -> Result<Lease<'_>> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok(Lease {
                    model: self,
                    session: Some(s),
                });
            }
            if pool.made < self.max_sessions {
                pool.made += 1;
                drop(pool);
                return match Self::session(&self.rt, &self.step, &self.bytes) {
                    Ok(s) => Ok(Lease {
                        model: self,
                        session: Some(s),
                    }),
                    Err(e) => {
                        self.pool.lock().unwrap_or_else(|e| e.into_inner()).made -= 1;
                        Err(e)
                    }
                };
            }
            pool = self.returned.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Inputs and outputs as the model declares them.
    pub fn signature(&self) -> &Contract {
        &self.signature
    }

    /// A custom metadata value of the model (e.g. PP-OCR's `character` list).
    pub fn metadata(&self, key: &str) -> Result<Option<String>> {
        let s = self.lease()?;
        let m = s.metadata().map_err(|e| Error::model(&self.step, e))?;
        Ok(m.custom(key))
    }

    /// Runs the model once; `inputs` are keyed by the model's input names.
    pub fn run(&self, inputs: &Values) -> Result<Values> {
        let mut feed: Vec<(String, SessionInputValue<'_>)> =
            Vec::with_capacity(self.signature.inputs.len());
        for port in &self.signature.inputs {
            let v = inputs.get(&port.name).ok_or_else(|| {
                Error::model(&self.step, format!("input `{}` is missing", port.name))
            })?;
            port.ty
                .check(v)
                .map_err(|m| Error::model(&self.step, format!("input `{}`: {m}", port.name)))?;
            let Value::Tensor(t) = v else {
                unreachable!("checked above")
            };
            feed.push((port.name.clone(), to_ort(&self.step, t)?));
        }
        let mut session = self.lease()?;
        let outputs = session
            .run(feed)
            .map_err(|e| Error::model(&self.step, format!("inference failed: {e}")))?;
        let mut out = Values::new();
        for (name, value) in outputs.iter() {
            out.insert(
                name.to_owned(),
                Value::Tensor(from_ort(&self.step, name, &value)?),
            );
        }
        Ok(out)
    }

    /// Runs the model once per slice of the `over` inputs' first axis, feeding carried outputs back.
    pub fn run_scan(&self, inputs: &Values, scan: &Scan) -> Result<Values> {
        let mut state: Values = inputs
            .iter()
            .filter(|(k, _)| !scan.over.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let steps = scan
            .over
            .iter()
            .map(|name| match inputs.get(name) {
                Some(Value::Tensor(t)) if !t.shape.is_empty() => Ok(t.shape[0]),
                _ => Err(Error::model(
                    &self.step,
                    format!("scanned input `{name}` must be a tensor with a first axis"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let n = *steps
            .first()
            .ok_or_else(|| Error::model(&self.step, "scan.over names no input"))?;
        if steps.iter().any(|&s| s != n) {
            return Err(Error::model(
                &self.step,
                format!("scanned inputs have different lengths: {steps:?}"),
            ));
        }
        let mut collected: std::collections::BTreeMap<String, Vec<Tensor>> = Default::default();
        let mut last = Values::new();
        for i in 0..n {
            for name in &scan.over {
                if let Some(Value::Tensor(t)) = inputs.get(name) {
                    state.insert(name.clone(), Value::Tensor(t.index_first(i)?));
                }
            }
            let out = self.run(&state)?;
            for (name, v) in &out {
                if let Some(feed) = scan.carry.get(name) {
                    state.insert(feed.clone(), v.clone());
                } else if let Value::Tensor(t) = v {
                    collected.entry(name.clone()).or_default().push(t.clone());
                }
            }
            last = out;
        }
        let mut result = Values::new();
        for port in &self.signature.outputs {
            if scan.carry.contains_key(&port.name) {
                let v = match last.remove(&port.name) {
                    Some(v) => v,
                    // Zero slices: the carried value is the initial one.
                    None => state.get(&scan.carry[&port.name]).cloned().ok_or_else(|| {
                        Error::model(
                            &self.step,
                            format!("carried input `{}` is missing", scan.carry[&port.name]),
                        )
                    })?,
                };
                result.insert(port.name.clone(), v);
            } else {
                let parts = collected.remove(&port.name).unwrap_or_default();
                let t = if parts.is_empty() {
                    let PortType::Tensor { dtype, shape } = &port.ty else {
                        unreachable!("onnx ports are tensors")
                    };
                    let mut s = vec![0];
                    s.extend(shape.iter().map(|d| match d {
                        Dim::Fixed(n) => *n,
                        Dim::Any => 0,
                    }));
                    Tensor {
                        dtype: *dtype,
                        shape: s,
                        data: Vec::new(),
                    }
                } else {
                    Tensor::stack(&parts)?
                };
                result.insert(port.name.clone(), Value::Tensor(t));
            }
        }
        Ok(result)
    }
}

/// A session input over the tensor's bytes: borrowed in place when they are aligned
/// for the element type (the usual case), copied otherwise.
fn to_ort<'a>(step: &str, t: &'a Tensor) -> Result<SessionInputValue<'a>> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    let err = |e: ort::Error| Error::model(step, format!("cannot build input tensor: {e}"));
    fn view<'a, T: bytemuck::Pod + ort::value::PrimitiveTensorElementType + std::fmt::Debug>(
        shape: Vec<i64>,
        data: &'a [u8],
    ) -> std::result::Result<SessionInputValue<'a>, ort::Error> {
        Ok(match bytemuck::try_cast_slice::<u8, T>(data) {
            Ok(s) => TensorRef::from_array_view((shape, s))?.into(),
            Err(_) => ort::value::Tensor::from_array((
                shape,
                bytemuck::pod_collect_to_vec::<u8, T>(data),
            ))?
            .into(),
        })
    }
    Ok(match t.dtype {
        DType::F32 => view::<f32>(shape, &t.data).map_err(err)?,
        DType::F16 => view::<half::f16>(shape, &t.data).map_err(err)?,
        DType::I64 => view::<i64>(shape, &t.data).map_err(err)?,
        DType::I32 => view::<i32>(shape, &t.data).map_err(err)?,
        DType::U8 => view::<u8>(shape, &t.data).map_err(err)?,
        DType::I8 => view::<i8>(shape, &t.data).map_err(err)?,
        DType::Bool => ort::value::Tensor::from_array((
            shape,
            t.data.iter().map(|&b| b != 0).collect::<Vec<_>>(),
        ))
        .map_err(err)?
        .into(),
    })
}

fn from_ort(step: &str, name: &str, v: &ort::value::DynValueRef<'_>) -> Result<Tensor> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        return Err(Error::model(
            step,
            format!("output `{name}` is not a tensor"),
        ));
    };
    let dtype = dtype_of(step, &format!("output `{name}`"), ty)?;
    let err = |e: ort::Error| Error::model(step, format!("cannot read output `{name}`: {e}"));
    macro_rules! grab {
        ($t:ty) => {{
            let (shape, data) = v.try_extract_tensor::<$t>().map_err(err)?;
            (
                shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                bytemuck::cast_slice::<$t, u8>(data).to_vec(),
            )
        }};
    }
    let (shape, data) = match dtype {
        DType::F32 => grab!(f32),
        DType::F16 => grab!(half::f16),
        DType::I64 => grab!(i64),
        DType::I32 => grab!(i32),
        DType::U8 => grab!(u8),
        DType::I8 => grab!(i8),
        DType::Bool => {
            let (shape, data) = v.try_extract_tensor::<bool>().map_err(err)?;
            (
                shape.iter().map(|&d| d as usize).collect(),
                data.iter().map(|&b| b as u8).collect(),
            )
        }
    };
    Tensor::new(dtype, shape, data)
}
