//! ONNX models through ONNX Runtime, loaded dynamically from the library the
//! `onnxruntime` wheel ships.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::SessionInputValue;

use crate::error::{Error, Result};
use crate::manifest::{Contract, Scan};
use crate::value::{Dim, PortType, Tensor, Value, Values};

mod convert;
mod scan;

use convert::{from_ort, port_of, to_ort};
use scan::{take_group, ScanJob};

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
                // ONNX Runtime's own usage telemetry writes a device id under
                // ~/.cache/Microsoft as the library starts, before any API can
                // turn it off; its environment switch is read then. Set once,
                // under this lock, before the library is loaded.
                if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
                    std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
                }
                let env = ort::init_from(path)
                    .map_err(|e| Error::OrtUnavailable(format!("{e}; {INSTALL_HINT}")))?
                    .with_name("algobay")
                    // No usage events from ONNX Runtime on a customer's device.
                    .with_telemetry(false)
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
    batching: Option<Batching>,
}

/// Dynamic batching: calls that overlap are run as one, joined along each
/// port's batch axis. Callers combine their own work: whoever finds a session
/// free takes the waiting calls that fit together and runs them, so there is no
/// extra thread and no wait when the model is idle.
struct Batching {
    /// Port (input or output) → its batch axis. Inputs not listed must be equal
    /// across the calls of one batch.
    axes: BTreeMap<String, usize>,
    max: usize,
    queue: Mutex<BatchQueue>,
    changed: std::sync::Condvar,
    /// Calls that ran joined with others.
    joined: std::sync::atomic::AtomicU64,
    /// Callers now in a single call.
    callers: AtomicUsize,
}

/// How long the oldest waiting call may wait for others to join it.
const GATHER: Duration = Duration::from_micros(200);

/// A caller counted in [`Batching::callers`] while it lives.
struct Caller<'a>(&'a AtomicUsize);

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Batching {
    fn enter(&self) -> Caller<'_> {
        self.callers.fetch_add(1, Ordering::Relaxed);
        Caller(&self.callers)
    }
}

#[derive(Default)]
struct BatchQueue {
    next: u64,
    waiting: VecDeque<(u64, Instant, Values)>,
    done: HashMap<u64, Result<Values>>,
    leaders: usize,
    /// Scans waiting for a session or to be taken into a running batch.
    scans: VecDeque<ScanJob>,
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
            batching: None,
        })
    }

    /// Takes the kit's declared type for some ports in place of the one the
    /// model file states (an export's stated shape may be wrong). Inputs are
    /// checked against the declared types; outputs are checked by the pipeline.
    pub fn declare(mut self, ports: &BTreeMap<String, PortType>) -> Result<OnnxModel> {
        for (name, ty) in ports {
            let all: Vec<String> = self
                .signature
                .inputs
                .iter()
                .chain(&self.signature.outputs)
                .map(|p| p.name.clone())
                .collect();
            let Some(port) = self
                .signature
                .inputs
                .iter_mut()
                .chain(self.signature.outputs.iter_mut())
                .find(|p| &p.name == name)
            else {
                return Err(Error::model(
                    &self.step,
                    format!(
                        "ports: the model has no port `{name}` (it has {})",
                        all.join(", ")
                    ),
                ));
            };
            if !matches!(ty, PortType::Tensor { .. }) {
                return Err(Error::model(
                    &self.step,
                    format!("ports: `{name}` must be declared as a tensor type, not {ty}"),
                ));
            }
            port.ty = ty.clone();
        }
        Ok(self)
    }

    /// Turns on dynamic batching of up to `max` overlapping calls, joined along
    /// the given batch axis of each port. Every output must have one; every
    /// named port must exist and have that axis.
    pub fn with_batching(
        mut self,
        axes: &BTreeMap<String, usize>,
        max: usize,
    ) -> Result<OnnxModel> {
        let ports = self.signature.inputs.iter().chain(&self.signature.outputs);
        let mut named = 0;
        for port in ports {
            let Some(&axis) = axes.get(&port.name) else {
                if self.signature.outputs.contains(port) {
                    return Err(Error::model(
                        &self.step,
                        format!("batch: output `{}` needs a batch axis", port.name),
                    ));
                }
                continue;
            };
            named += 1;
            if let PortType::Tensor { shape, .. } = &port.ty {
                match shape.get(axis) {
                    Some(Dim::Any) => {}
                    Some(Dim::Fixed(n)) => {
                        return Err(Error::model(
                            &self.step,
                            format!("batch: axis {axis} of `{}` is fixed at {n}", port.name),
                        ))
                    }
                    None => {
                        return Err(Error::model(
                            &self.step,
                            format!(
                                "batch: `{}` has no axis {axis} (rank {})",
                                port.name,
                                shape.len()
                            ),
                        ))
                    }
                }
            }
        }
        if let Some(unknown) = axes.keys().find(|k| {
            !self
                .signature
                .inputs
                .iter()
                .chain(&self.signature.outputs)
                .any(|p| &p.name == *k)
        }) {
            return Err(Error::model(
                &self.step,
                format!("batch: the model has no port `{unknown}`"),
            ));
        }
        if named == self.signature.outputs.len() {
            return Err(Error::model(&self.step, "batch: no input has a batch axis"));
        }
        if max > 1 {
            self.batching = Some(Batching {
                axes: axes.clone(),
                max,
                queue: Mutex::new(BatchQueue::default()),
                changed: std::sync::Condvar::new(),
                joined: Default::default(),
                callers: AtomicUsize::new(0),
            });
        }
        Ok(self)
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

    /// Calls so far that ran joined with other calls in one batch.
    pub fn batched_calls(&self) -> u64 {
        self.batching
            .as_ref()
            .map_or(0, |b| b.joined.load(std::sync::atomic::Ordering::Relaxed))
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
    /// With batching on, overlapping calls may run as one batch.
    pub fn run(&self, inputs: &Values) -> Result<Values> {
        match &self.batching {
            Some(b) => {
                self.check_inputs(inputs)?;
                self.run_batched(b, inputs.clone())
            }
            None => self.run_single(inputs),
        }
    }

    fn check_inputs(&self, inputs: &Values) -> Result<()> {
        for port in &self.signature.inputs {
            let v = inputs.get(&port.name).ok_or_else(|| {
                Error::model(&self.step, format!("input `{}` is missing", port.name))
            })?;
            port.ty
                .check(v)
                .map_err(|m| Error::model(&self.step, format!("input `{}`: {m}", port.name)))?;
        }
        Ok(())
    }

    /// Queues the call and waits for its result, running a batch itself when a
    /// session is free and enough calls wait (as many as there are callers per
    /// session), or fewer once the oldest has waited [`GATHER`].
    fn run_batched(&self, b: &Batching, inputs: Values) -> Result<Values> {
        let _caller = b.enter();
        let mut q = b.queue.lock().unwrap_or_else(|e| e.into_inner());
        let id = q.next;
        q.next += 1;
        q.waiting.push_back((id, Instant::now(), inputs));
        b.changed.notify_all();
        loop {
            if let Some(r) = q.done.remove(&id) {
                return r;
            }
            let oldest = q.waiting.front().map(|(_, at, _)| at.elapsed());
            if let (true, Some(age)) = (q.leaders < self.max_sessions, oldest) {
                let callers = b.callers.load(Ordering::Relaxed);
                let want = callers.div_ceil(self.max_sessions).clamp(1, b.max);
                if q.waiting.len() >= want || age >= GATHER {
                    q.leaders += 1;
                    let group = take_group(&mut q.waiting, &b.axes, b.max);
                    drop(q);
                    let results = self.run_group(&b.axes, group);
                    q = b.queue.lock().unwrap_or_else(|e| e.into_inner());
                    q.leaders -= 1;
                    q.done.extend(results);
                    b.changed.notify_all();
                    continue;
                }
                q = b
                    .changed
                    .wait_timeout(q, GATHER - age)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            q = b.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs calls that fit together as one batch; if the batch fails, each call
    /// runs on its own so that one bad call fails only itself.
    fn run_group(
        &self,
        axes: &BTreeMap<String, usize>,
        group: Vec<(u64, Values)>,
    ) -> Vec<(u64, Result<Values>)> {
        if group.len() == 1 {
            return group
                .into_iter()
                .map(|(id, v)| (id, self.run_single(&v)))
                .collect();
        }
        match self.run_joined(axes, &group) {
            Ok(split) => {
                if let Some(b) = &self.batching {
                    b.joined
                        .fetch_add(group.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                group
                    .iter()
                    .map(|(id, _)| *id)
                    .zip(split.into_iter().map(Ok))
                    .collect()
            }
            Err(e) => {
                tracing::debug!(step = %self.step, error = %e, "batch failed; running its calls one by one");
                group
                    .into_iter()
                    .map(|(id, v)| (id, self.run_single(&v)))
                    .collect()
            }
        }
    }

    fn run_joined(
        &self,
        axes: &BTreeMap<String, usize>,
        group: &[(u64, Values)],
    ) -> Result<Vec<Values>> {
        let mut joined = Values::new();
        let mut lengths: Option<Vec<usize>> = None;
        for port in &self.signature.inputs {
            let tensors: Vec<&Tensor> = group
                .iter()
                .map(|(_, v)| match v.get(&port.name) {
                    Some(Value::Tensor(t)) => Ok(t),
                    _ => Err(Error::model(
                        &self.step,
                        format!("input `{}` is missing", port.name),
                    )),
                })
                .collect::<Result<_>>()?;
            let value = match axes.get(&port.name) {
                Some(&axis) => {
                    let l: Vec<usize> = tensors.iter().map(|t| t.shape[axis]).collect();
                    lengths.get_or_insert(l);
                    let owned: Vec<Tensor> = tensors.into_iter().cloned().collect();
                    Tensor::concat(&owned, axis)?
                }
                None => tensors[0].clone(),
            };
            joined.insert(port.name.clone(), Value::Tensor(value));
        }
        let lengths = lengths.ok_or_else(|| Error::model(&self.step, "batch: no batched input"))?;
        let out = self.run_single(&joined)?;
        let mut split: Vec<Values> = vec![Values::new(); group.len()];
        for (name, v) in out {
            let (Some(&axis), Value::Tensor(t)) = (axes.get(&name), &v) else {
                return Err(Error::model(
                    &self.step,
                    format!("batch: output `{name}` has no batch axis"),
                ));
            };
            for (values, part) in split.iter_mut().zip(t.split(axis, &lengths)?) {
                values.insert(name.clone(), Value::Tensor(part));
            }
        }
        Ok(split)
    }

    fn run_single(&self, inputs: &Values) -> Result<Values> {
        self.check_inputs(inputs)?;
        let mut feed: Vec<(String, SessionInputValue<'_>)> =
            Vec::with_capacity(self.signature.inputs.len());
        for port in &self.signature.inputs {
            let Some(Value::Tensor(t)) = inputs.get(&port.name) else {
                unreachable!("checked above: every input is there, a tensor")
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
    /// With batching on, scans of overlapping requests advance in lock-step, one
    /// batch per slice.
    pub fn run_scan(&self, inputs: &Values, scan: &Scan) -> Result<Values> {
        let mut job = ScanJob::new(&self.step, inputs, scan)?;
        match &self.batching {
            Some(b) if job.n > 0 => self.run_scan_batched(b, scan, job),
            _ => {
                while !job.finished() {
                    let feed = job.feed()?;
                    let out = self.run_single(&feed)?;
                    job.absorb(out, scan);
                }
                job.finish(self, scan)
            }
        }
    }

    /// Queues the scan and waits for it; when a session is free, drives the
    /// scans waiting (its own or others') until they are all done, taking in at
    /// each slice the compatible scans that no free session could take.
    fn run_scan_batched(&self, b: &Batching, scan: &Scan, mut job: ScanJob) -> Result<Values> {
        let mut q = b.queue.lock().unwrap_or_else(|e| e.into_inner());
        let id = q.next;
        q.next += 1;
        job.id = id;
        q.scans.push_back(job);
        b.changed.notify_all();
        loop {
            if let Some(r) = q.done.remove(&id) {
                return r;
            }
            if q.leaders < self.max_sessions {
                if let Some(first) = q.scans.pop_front() {
                    q.leaders += 1;
                    drop(q);
                    self.drive(b, scan, first, id);
                    q = b.queue.lock().unwrap_or_else(|e| e.into_inner());
                    q.leaders -= 1;
                    b.changed.notify_all();
                    continue;
                }
            }
            q = b.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn drive(&self, b: &Batching, scan: &Scan, first: ScanJob, me: u64) {
        let mut owned = vec![first];
        while !owned.is_empty() {
            {
                // Take in scans that wait because every session is busy, while our own is not done.
                let mut q = b.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.leaders >= self.max_sessions && !q.done.contains_key(&me) {
                    let mut i = 0;
                    while i < q.scans.len() && owned.len() < b.max {
                        if owned[0].fits(&q.scans[i], &b.axes) {
                            if let Some(j) = q.scans.remove(i) {
                                owned.push(j);
                            }
                        } else {
                            i += 1;
                        }
                    }
                }
            }
            let mut group = Vec::with_capacity(owned.len());
            let mut failed = Vec::new();
            for j in owned.iter_mut() {
                match j.feed() {
                    Ok(f) => group.push((j.id, f)),
                    Err(e) => failed.push((j.id, e)),
                }
            }
            let results = self.run_group(&b.axes, group);
            let mut outcome: HashMap<u64, Result<Values>> = results.into_iter().collect();
            for (id, e) in failed {
                outcome.insert(id, Err(e));
            }
            let mut finished = Vec::new();
            let mut k = 0;
            while k < owned.len() {
                let j = &mut owned[k];
                match outcome.remove(&j.id) {
                    Some(Ok(out)) => j.absorb(out, scan),
                    Some(Err(e)) => j.error = Some(e),
                    None => j.error = Some(Error::model(&self.step, "a batched call was lost")),
                }
                if j.finished() || j.error.is_some() {
                    let j = owned.swap_remove(k);
                    let id = j.id;
                    finished.push((id, j.finish(self, scan)));
                } else {
                    k += 1;
                }
            }
            if !finished.is_empty() {
                let mut q = b.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.done.extend(finished);
                b.changed.notify_all();
            }
        }
    }
}
