//! WASM stages in wasmtime: the component model, no ambient authority, a memory
//! limit and a wall-clock budget per call, compiled code cached on disk.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, ResourceLimiter, Store, Trap, UpdateDeadline};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Contract, Limits, Port};
use crate::value::{DType, Tensor, Value, Values};

mod bindings {
    wasmtime::component::bindgen!({
        world: "stage",
        path: "../sdk/stage/wit",
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

use bindings::algobay::stage::types as wit;

/// How often the epoch advances: the granularity of a stage's time budget.
const TICK: Duration = Duration::from_millis(5);

/// The wasmtime engine shared by every stage, with its epoch ticker and code cache.
pub struct StageEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StageEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageEngine")
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl Drop for StageEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl StageEngine {
    /// A new engine. Compiled stages are cached under `cache_dir` when given.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<StageEngine> {
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        cfg.wasm_component_model(true);
        cfg.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&cfg).map_err(|e| Error::stage("engine", e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("algobay-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| Error::stage("engine", format!("cannot start epoch thread: {e}")))?
        };
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(StageEngine {
            engine,
            cache_dir,
            stop,
            ticker: Some(ticker),
        })
    }

    fn cache_path(&self, digest: &Digest) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{}-{:016x}.cwasm", digest.hex(), h.finish())))
    }

    /// Compiles a component, or loads its compiled form from the cache.
    pub fn compile(&self, step: &str, wasm: &[u8]) -> Result<Component> {
        let digest = Digest::of(wasm);
        let cached = self.cache_path(&digest);
        if let Some(path) = &cached {
            if path.exists() {
                // SAFETY: the cache holds only files this engine wrote from code it compiled,
                // keyed by the source digest and the engine's compatibility hash.
                match unsafe { Component::deserialize_file(&self.engine, path) } {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "discarding unusable cached stage")
                    }
                }
            }
        }
        if !wasm.starts_with(b"\0asm") {
            return Err(Error::stage(step, "is not a WebAssembly binary"));
        }
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| Error::stage(step, format!("is not a valid stage component: {e:#}")))?;
        if let Some(path) = cached {
            if let Err(e) = crate::fsx::write_atomic(
                &path,
                &component
                    .serialize()
                    .map_err(|e| Error::stage(step, e.to_string()))?,
            ) {
                tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled stage");
            }
        }
        Ok(component)
    }

    /// Prepares a stage for running: links it with nothing but traps, reads its contract.
    pub fn prepare(
        &self,
        step: &str,
        wasm: &[u8],
        config: &serde_json::Value,
        assets: Vec<(String, Arc<Vec<u8>>)>,
        limits: Limits,
    ) -> Result<StageRunner> {
        let component = self.compile(step, wasm)?;
        let mut linker: Linker<StageState> = Linker::new(&self.engine);
        bindings::Stage::add_to_linker_imports::<StageState, HasSelf<StageState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| Error::stage(step, format!("cannot link: {e:#}")))?;
        // No ambient authority: whatever else the component imports (WASI or otherwise) traps.
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| Error::stage(step, format!("cannot link: {e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(bindings::StagePre::new)
            .map_err(|e| {
                Error::stage(
                    step,
                    format!("does not implement the stage interface: {e:#}"),
                )
            })?;
        let runner = StageRunner {
            step: step.to_owned(),
            engine: self.engine.clone(),
            pre,
            config: config.to_string(),
            assets,
            limits,
            contract: Contract::default(),
            idle: Mutex::new(Vec::new()),
        };
        let contract = runner.describe()?;
        Ok(StageRunner { contract, ..runner })
    }
}

struct StageState {
    memory_limit: usize,
    memory_exceeded: bool,
    /// Epoch ticks left of the call's time budget.
    ticks_left: u64,
    /// Why the caller stopped the call, if it did (see [`StopSignal`]).
    stopped: Option<String>,
    /// The last line the stage logged (its panic message, when it panicked).
    last_log: Option<String>,
}

impl bindings::StageImports for StageState {
    fn log(&mut self, message: String) {
        tracing::debug!(target: "algobay_runtime::stage", "{message}");
        let mut m = message;
        m.truncate(2000);
        self.last_log = Some(m);
    }
}

impl ResourceLimiter for StageState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            return Err(wasmtime::format_err!("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct Live {
    store: Store<StageState>,
    stage: bindings::Stage,
}

/// One stage of a loaded kit: a pool of configured instances, each used by one request at a time.
pub struct StageRunner {
    step: String,
    engine: Engine,
    pre: bindings::StagePre<StageState>,
    config: String,
    assets: Vec<(String, Arc<Vec<u8>>)>,
    limits: Limits,
    contract: Contract,
    idle: Mutex<Vec<Live>>,
}

impl std::fmt::Debug for StageRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageRunner")
            .field("step", &self.step)
            .field("limits", &self.limits)
            .finish()
    }
}

impl StageRunner {
    /// The ports the stage declares.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    fn new_store(&self) -> Store<StageState> {
        let mut store = Store::new(
            &self.engine,
            StageState {
                memory_limit: self.limits.memory_mb as usize * (1 << 20),
                memory_exceeded: false,
                ticks_left: 0,
                stopped: None,
                last_log: None,
            },
        );
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        // Every tick: the call's own budget counts down, and the thread's stop
        // signal (a caller gone, a checker's budget spent) may end it sooner.
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if let Some(why) = STOP.with(|s| s.borrow().as_ref().and_then(StopSignal::check)) {
                state.stopped = Some(why);
                return Ok(UpdateDeadline::Interrupt);
            }
            if state.ticks_left <= 1 {
                return Ok(UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::Continue(1))
        });
        store
    }

    /// Gives the next call its whole time budget.
    fn arm(&self, store: &mut Store<StageState>) {
        let data = store.data_mut();
        data.ticks_left = self.deadline_ticks();
        data.stopped = None;
        store.set_epoch_deadline(1);
    }

    fn deadline_ticks(&self) -> u64 {
        (self.limits.time_ms as u64 / TICK.as_millis() as u64).max(1) + 1
    }

    fn describe(&self) -> Result<Contract> {
        let mut store = self.new_store();
        self.arm(&mut store);
        let stage = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.trap_error(&store, e, "instantiating"))?;
        let c = stage
            .call_describe(&mut store)
            .map_err(|e| self.trap_error(&store, e, "describe"))?;
        let port = |p: wit::Port| -> Result<Port> {
            let ty = p
                .ty
                .parse()
                .map_err(|e: Error| Error::stage(&self.step, format!("port `{}`: {e}", p.name)))?;
            Ok(Port { name: p.name, ty })
        };
        Ok(Contract {
            inputs: c.inputs.into_iter().map(port).collect::<Result<_>>()?,
            outputs: c.outputs.into_iter().map(port).collect::<Result<_>>()?,
        })
    }

    fn instantiate(&self) -> Result<Live> {
        let mut store = self.new_store();
        self.arm(&mut store);
        let stage = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.trap_error(&store, e, "instantiating"))?;
        let assets: Vec<wit::Asset<'_>> = self
            .assets
            .iter()
            .map(|(name, data)| wit::Asset {
                name: name.as_str(),
                data: data.as_slice(),
            })
            .collect();
        stage
            .call_configure(&mut store, &self.config, &assets)
            .map_err(|e| self.trap_error(&store, e, "configure"))?
            .map_err(|m| Error::stage(&self.step, format!("rejected its configuration: {m}")))?;
        Ok(Live { store, stage })
    }

    fn trap_error(&self, store: &Store<StageState>, e: wasmtime::Error, during: &str) -> Error {
        let msg = if let Some(why) = &store.data().stopped {
            format!("stopped during {during}: {why}")
        } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            format!(
                "exceeded its time budget of {} ms during {during}",
                self.limits.time_ms
            )
        } else if store.data().memory_exceeded {
            format!(
                "exceeded its memory limit of {} MiB during {during}",
                self.limits.memory_mb
            )
        } else {
            match &store.data().last_log {
                Some(log) => format!("trapped during {during}: {} ({log})", root_cause(&e)),
                None => format!("trapped during {during}: {}", root_cause(&e)),
            }
        };
        Error::stage(&self.step, msg)
    }

    /// Runs the stage on `inputs`. A trap discards the instance; others keep serving.
    pub fn process(&self, inputs: &Values) -> Result<Values> {
        // Borrowed: the values are copied once, straight into the instance's memory.
        let shapes: Vec<Vec<u64>> = inputs
            .values()
            .map(|v| match v {
                Value::Tensor(t) => t.shape.iter().map(|&d| d as u64).collect(),
                _ => Vec::new(),
            })
            .collect();
        let named: Vec<wit::NamedParam<'_>> = inputs
            .iter()
            .zip(&shapes)
            .map(|((k, v), shape)| wit::NamedParam {
                name: k.as_str(),
                value: to_wit(v, shape),
            })
            .collect();
        let live = self
            .idle
            .lock()
            .map_err(|_| Error::stage(&self.step, "pool lock poisoned"))?
            .pop();
        let mut live = match live {
            Some(l) => l,
            None => self.instantiate()?,
        };
        self.arm(&mut live.store);
        live.store.data_mut().last_log = None;
        let result = live.stage.call_process(&mut live.store, &named);
        let out = match result {
            Err(e) => return Err(self.trap_error(&live.store, e, "process")),
            Ok(Err(m)) => Err(Error::stage(&self.step, m)),
            Ok(Ok(values)) => values
                .into_iter()
                .map(|n| Ok((n.name.clone(), from_wit(&self.step, &n.name, n.value)?)))
                .collect::<Result<Values>>(),
        };
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(live);
        }
        out
    }
}

/// The innermost cause of a wasmtime error, without the WASM backtrace.
fn root_cause(e: &wasmtime::Error) -> String {
    let cause = e.root_cause().to_string();
    let first = cause.lines().next().unwrap_or_default().trim();
    if first.is_empty() {
        e.to_string().lines().next().unwrap_or_default().to_owned()
    } else {
        first.to_owned()
    }
}

/// A value as the stage's interface takes it, borrowed; `shape` is a
/// tensor's shape in the interface's integers.
fn to_wit<'a>(v: &'a Value, shape: &'a [u64]) -> wit::ValueParam<'a> {
    match v {
        Value::Tensor(t) => wit::ValueParam::Tensor(wit::TensorParam {
            dtype: match t.dtype {
                DType::F32 => wit::Dtype::F32,
                DType::F16 => wit::Dtype::F16,
                DType::I64 => wit::Dtype::I64,
                DType::I32 => wit::Dtype::I32,
                DType::U8 => wit::Dtype::U8,
                DType::I8 => wit::Dtype::I8,
                DType::Bool => wit::Dtype::Bool,
            },
            shape,
            data: &t.data,
        }),
        Value::Bytes(b) => wit::ValueParam::Bytes(b),
        Value::Text(s) => wit::ValueParam::Text(s),
        Value::Json(s) => wit::ValueParam::Json(s),
    }
}

fn from_wit(step: &str, name: &str, v: wit::ValueResult) -> Result<Value> {
    Ok(match v {
        wit::ValueResult::Tensor(t) => {
            let dtype = match t.dtype {
                wit::Dtype::F32 => DType::F32,
                wit::Dtype::F16 => DType::F16,
                wit::Dtype::I64 => DType::I64,
                wit::Dtype::I32 => DType::I32,
                wit::Dtype::U8 => DType::U8,
                wit::Dtype::I8 => DType::I8,
                wit::Dtype::Bool => DType::Bool,
            };
            let shape = t.shape.iter().map(|&d| d as usize).collect();
            Value::Tensor(
                Tensor::new(dtype, shape, t.data)
                    .map_err(|e| Error::stage(step, format!("output `{name}`: {e}")))?,
            )
        }
        wit::ValueResult::Bytes(b) => Value::Bytes(b),
        wit::ValueResult::Text(s) => Value::Text(s),
        wit::ValueResult::Json(s) => Value::Json(s),
    })
}

thread_local! {
    /// The stop signal of the run on this thread, if any (see [`StopSignal::during`]).
    static STOP: std::cell::RefCell<Option<StopSignal>> = const { std::cell::RefCell::new(None) };
}

/// Tells a run to stop: when a flag is raised (its caller went away) or past a
/// deadline (a checker's budget). Checked before each step of a pipeline and,
/// inside a stage, at every epoch tick.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    pub cancelled: Option<Arc<AtomicBool>>,
    pub deadline: Option<(std::time::Instant, String)>,
}

impl StopSignal {
    /// Why to stop now, if so.
    pub fn check(&self) -> Option<String> {
        if self
            .cancelled
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            return Some("the caller went away".into());
        }
        match &self.deadline {
            Some((at, why)) if std::time::Instant::now() >= *at => Some(why.clone()),
            _ => None,
        }
    }

    /// Runs `f` with this signal watching the stages it calls on this thread.
    pub fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<StopSignal>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                STOP.with(|s| *s.borrow_mut() = previous);
            }
        }
        let previous = STOP.with(|s| s.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        f()
    }
}

/// The optional WebAssembly features a stage's code uses: `simd128` when it
/// has SIMD instructions (it does not validate without them). Code that does
/// not validate at all uses none; loading it says what is wrong.
pub fn features_used(wasm: &[u8]) -> Vec<String> {
    use wasmparser::{Validator, WasmFeatures};
    let all = WasmFeatures::all();
    if Validator::new_with_features(all)
        .validate_all(wasm)
        .is_err()
    {
        return Vec::new();
    }
    let scalar = all.difference(WasmFeatures::SIMD | WasmFeatures::RELAXED_SIMD);
    if Validator::new_with_features(scalar)
        .validate_all(wasm)
        .is_err()
    {
        vec!["simd128".to_owned()]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod feature_tests {
    use super::features_used;

    /// A module with one function whose body is `body` (locals count first).
    fn module(body: &[u8]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type () -> ()
        m.extend([0x03, 0x02, 0x01, 0x00]); // one function of type 0
        m.extend([0x0a, body.len() as u8 + 2, 0x01, body.len() as u8]);
        m.extend(body);
        m
    }

    #[test]
    fn simd_instructions_are_recorded_and_scalar_code_records_none() {
        let mut simd = vec![0x00, 0xfd, 0x0c];
        simd.extend([0u8; 16]);
        simd.extend([0x1a, 0x0b]); // v128.const 0; drop; end
        assert_eq!(features_used(&module(&simd)), ["simd128"]);
        assert!(features_used(&module(&[0x00, 0x0b])).is_empty());
        assert!(features_used(b"not wasm").is_empty());
    }
}
