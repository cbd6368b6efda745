//! Loads a verified kit once and runs requests on it, many at a time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::archive::VerifiedKit;
use crate::candle::CandleModel;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Contract, Manifest, Scan, Step, StepKind};
use crate::onnx::{OnnxModel, OrtRuntime};
use crate::value::{PortType, Value, Values};
use crate::wasm::{StageEngine, StageRunner};

/// How the runtime is set up.
#[derive(Clone, Debug, Default)]
pub struct RuntimeOptions {
    /// Where compiled WASM stages are cached (a second load skips compilation).
    pub cache_dir: Option<PathBuf>,
    /// The ONNX Runtime shared library file. Needed only by kits with ONNX steps.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per session (0: ONNX Runtime's default).
    pub ort_threads: usize,
    /// The most a stage may use on this machine, whatever its kit asks for
    /// (a device with little memory or a slow clock sets it); a stage then gets
    /// the lower of the two.
    pub stage_limits_cap: Option<crate::manifest::Limits>,
    /// The most overlapping calls of a model that declares a batch axis that
    /// run as one batch (0 or 1: no batching).
    pub max_batch: usize,
}

/// The engine: one wasmtime engine, ONNX Runtime loaded on first use.
pub struct Runtime {
    options: RuntimeOptions,
    stages: StageEngine,
    ort: Mutex<Option<OrtRuntime>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.options)
            .finish()
    }
}

impl Runtime {
    /// Builds the runtime.
    pub fn new(options: RuntimeOptions) -> Result<Runtime> {
        let stages = StageEngine::new(options.cache_dir.clone())?;
        Ok(Runtime {
            options,
            stages,
            ort: Mutex::new(None),
        })
    }

    /// The WASM stage engine.
    pub fn stages(&self) -> &StageEngine {
        &self.stages
    }

    /// ONNX Runtime, loaded on first call.
    pub fn ort(&self) -> Result<OrtRuntime> {
        let mut slot = self
            .ort
            .lock()
            .map_err(|_| Error::OrtUnavailable("lock poisoned".into()))?;
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        let path = OrtRuntime::locate(self.options.ort_library.as_deref(), None)?;
        let rt = OrtRuntime::load(&path, self.options.ort_threads)?;
        *slot = Some(rt.clone());
        Ok(rt)
    }

    /// Loads every step of a verified kit: compiles (or loads cached) stages, loads models.
    pub fn load(&self, kit: &VerifiedKit) -> Result<LoadedKit> {
        let archive = &kit.archive;
        let m = &archive.manifest;
        let mut steps = Vec::with_capacity(m.steps.len());
        for step in &m.steps {
            let exec = match &step.kind {
                StepKind::Stage {
                    wasm,
                    config,
                    assets,
                    contract,
                    limits,
                    ..
                } => {
                    let assets = assets
                        .iter()
                        .map(|(k, d)| Ok((k.clone(), archive.blob(d)?.clone())))
                        .collect::<Result<Vec<_>>>()?;
                    let limits = match self.options.stage_limits_cap {
                        Some(cap) => crate::manifest::Limits {
                            memory_mb: limits.memory_mb.min(cap.memory_mb),
                            time_ms: limits.time_ms.min(cap.time_ms),
                        },
                        None => *limits,
                    };
                    let runner = self.stages.prepare(
                        &step.name,
                        archive.blob(wasm)?,
                        config,
                        assets,
                        limits,
                    )?;
                    same_contract(
                        &step.name,
                        "the stage declares",
                        runner.contract(),
                        contract,
                    )?;
                    Exec::Stage(runner)
                }
                StepKind::Onnx {
                    model,
                    signature,
                    scan,
                    batch,
                    declared,
                } => {
                    let mut onnx = self
                        .ort()?
                        .model(&step.name, archive.blob(model)?)?
                        .declare(declared)?;
                    if !batch.is_empty() {
                        onnx = onnx.with_batching(batch, self.options.max_batch)?;
                    }
                    same_contract(
                        &step.name,
                        "the model (with the kit's declared ports) declares",
                        onnx.signature(),
                        signature,
                    )?;
                    Exec::Onnx(onnx, scan.clone())
                }
                StepKind::Candle {
                    weights,
                    architecture,
                    config,
                    assets,
                    signature,
                } => {
                    let lookup = |name: &str| {
                        assets
                            .get(name)
                            .and_then(|d| archive.blobs.get(d))
                            .map(|b| b.to_vec())
                    };
                    let model = CandleModel::load(
                        &step.name,
                        architecture,
                        archive.blob(weights)?,
                        config,
                        &lookup,
                    )?;
                    same_contract(
                        &step.name,
                        "the model declares",
                        model.signature(),
                        signature,
                    )?;
                    Exec::Candle(model)
                }
            };
            steps.push(LoadedStep {
                step: step.clone(),
                contract: step.contract(),
                exec,
            });
        }
        Ok(LoadedKit {
            manifest: m.clone(),
            digest: archive.digest(),
            steps,
        })
    }
}

fn same_contract(step: &str, who: &str, actual: &Contract, manifest: &Contract) -> Result<()> {
    if actual != manifest {
        return Err(Error::Pipeline(format!(
            "step `{step}`: {who} {}, but the manifest says {}",
            describe(actual),
            describe(manifest)
        )));
    }
    Ok(())
}

fn describe(c: &Contract) -> String {
    let list = |ps: &[crate::manifest::Port]| {
        ps.iter()
            .map(|p| format!("{}: {}", p.name, p.ty))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(&c.inputs), list(&c.outputs))
}

enum Exec {
    Stage(StageRunner),
    Onnx(OnnxModel, Option<Scan>),
    Candle(CandleModel),
}

struct LoadedStep {
    step: Step,
    contract: Contract,
    exec: Exec,
}

impl LoadedStep {
    /// An error of this step, named as a stage or a model step.
    fn error(&self, message: String) -> Error {
        match &self.exec {
            Exec::Stage(_) => Error::stage(&self.step.name, message),
            Exec::Onnx(..) | Exec::Candle(_) => Error::model(&self.step.name, message),
        }
    }

    /// An output that does not fit its port: for a model step, which model, and
    /// whether the type was the model file's own or one the kit declared.
    fn bad_output(&self, port: &str, ty: &PortType, v: &Value, why: String) -> Error {
        match &self.step.kind {
            StepKind::Onnx {
                model, declared, ..
            } => {
                let whose = if declared.contains_key(port) {
                    "the type the Kitfile declares for it (`ports`)"
                } else {
                    "the type the model file states (declare the real one under the step's `ports` in the Kitfile)"
                };
                Error::model(
                    &self.step.name,
                    format!(
                        "model {model}: output `{port}` is {}, which does not fit {ty}, {whose}",
                        v.kind()
                    ),
                )
            }
            _ => self.error(format!("returned a bad `{port}`: {why}")),
        }
    }
}

/// Time spent in one step of one request.
#[derive(Clone, Debug)]
pub struct StepTiming {
    pub step: String,
    /// `stage`, `onnx` or `candle`.
    pub kind: &'static str,
    pub elapsed: Duration,
}

/// A kit ready to serve. `run` takes `&self`: share it across threads.
pub struct LoadedKit {
    manifest: Manifest,
    digest: Digest,
    steps: Vec<LoadedStep>,
}

impl std::fmt::Debug for LoadedKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKit")
            .field("kit", &self.manifest.reference())
            .field("digest", &self.digest)
            .finish()
    }
}

impl LoadedKit {
    /// The kit's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The kit's digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Model calls so far that ran joined with calls of other requests
    /// (dynamic batching); 0 when no step batches.
    pub fn batched_calls(&self) -> u64 {
        self.steps
            .iter()
            .map(|s| match &s.exec {
                Exec::Onnx(m, _) => m.batched_calls(),
                _ => 0,
            })
            .sum()
    }

    /// Runs one request.
    pub fn run(&self, inputs: Values) -> Result<Values> {
        self.run_timed(inputs).map(|(v, _)| v)
    }

    /// Runs one request on a blocking thread, for callers on an async runtime.
    pub async fn run_async(self: &Arc<Self>, inputs: Values) -> Result<Values> {
        let kit = self.clone();
        tokio::task::spawn_blocking(move || kit.run(inputs))
            .await
            .map_err(|e| Error::Pipeline(format!("request task failed: {e}")))?
    }

    /// Runs one request and reports the time spent in each step.
    pub fn run_timed(&self, inputs: Values) -> Result<(Values, Vec<StepTiming>)> {
        self.run_checked(inputs, &crate::wasm::StopSignal::default())
    }

    /// [`Self::run_timed`] under a stop signal: checked before each step, and
    /// inside stages at every epoch tick (a budget spent, a caller gone).
    pub fn run_checked(
        &self,
        inputs: Values,
        stop: &crate::wasm::StopSignal,
    ) -> Result<(Values, Vec<StepTiming>)> {
        stop.during(|| self.run_steps(inputs, stop))
    }

    /// Runs the steps before `step` and returns the value its input `port`
    /// reads: the features a model step is given (for training a head on the
    /// frozen steps before it).
    pub fn value_before(&self, inputs: Values, step: &str, port: &str) -> Result<Value> {
        let s = self
            .steps
            .iter()
            .find(|s| s.step.name == step)
            .ok_or_else(|| Error::Pipeline(format!("`{step}` is not a step of the kit")))?;
        let value = s.step.input_value(port).to_owned();
        let (mut env, _) = self.run_env(inputs, &crate::wasm::StopSignal::default(), Some(step))?;
        env.remove(&value).ok_or_else(|| {
            Error::Pipeline(format!(
                "step `{step}` needs `{value}`, which the steps before it did not produce"
            ))
        })
    }

    fn run_steps(
        &self,
        inputs: Values,
        stop: &crate::wasm::StopSignal,
    ) -> Result<(Values, Vec<StepTiming>)> {
        let (mut env, timings) = self.run_env(inputs, stop, None)?;
        let mut out = Values::new();
        for p in &self.manifest.outputs {
            let v = env
                .remove(&p.name)
                .ok_or_else(|| Error::Pipeline(format!("output `{}` was not produced", p.name)))?;
            out.insert(p.name.clone(), v);
        }
        Ok((out, timings))
    }

    /// Runs the steps (up to, not including, `until`), returning every value.
    fn run_env(
        &self,
        inputs: Values,
        stop: &crate::wasm::StopSignal,
        until: Option<&str>,
    ) -> Result<(Values, Vec<StepTiming>)> {
        for (name, _) in inputs.iter() {
            if !self.manifest.inputs.iter().any(|p| &p.name == name) {
                return Err(Error::input(name, "is not an input of this kit"));
            }
        }
        for p in &self.manifest.inputs {
            let v = inputs
                .get(&p.name)
                .ok_or_else(|| Error::input(&p.name, "is missing"))?;
            p.ty.check(v).map_err(|m| Error::input(&p.name, m))?;
        }
        let mut env = inputs;
        let mut timings = Vec::with_capacity(self.steps.len());
        for s in &self.steps {
            if until == Some(s.step.name.as_str()) {
                break;
            }
            if let Some(why) = stop.check() {
                return Err(Error::Pipeline(format!(
                    "stopped before step `{}`: {why}",
                    s.step.name
                )));
            }
            let mut port_inputs = Values::new();
            for port in &s.contract.inputs {
                let value = s.step.input_value(&port.name);
                let v = env.get(value).ok_or_else(|| {
                    Error::Pipeline(format!(
                        "step `{}` needs `{value}`, which was not produced",
                        s.step.name
                    ))
                })?;
                port_inputs.insert(port.name.clone(), v.clone());
            }
            let started = Instant::now();
            let (outputs, kind) = match &s.exec {
                Exec::Stage(r) => (r.process(&port_inputs)?, "stage"),
                Exec::Onnx(m, None) => (m.run(&port_inputs)?, "onnx"),
                Exec::Onnx(m, Some(scan)) => (m.run_scan(&port_inputs, scan)?, "onnx"),
                Exec::Candle(m) => (m.run(&port_inputs)?, "candle"),
            };
            timings.push(StepTiming {
                step: s.step.name.clone(),
                kind,
                elapsed: started.elapsed(),
            });
            let mut outputs = outputs;
            for port in &s.contract.outputs {
                let v = outputs
                    .remove(&port.name)
                    .ok_or_else(|| s.error(format!("did not return its output `{}`", port.name)))?;
                port.ty
                    .check(&v)
                    .map_err(|m| s.bad_output(&port.name, &port.ty, &v, m))?;
                env.insert(s.step.output_value(&port.name).to_owned(), v);
            }
        }
        Ok((env, timings))
    }
}
