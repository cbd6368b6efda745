//! A head on frozen features: the kit input a trained step's rows hold, and
//! the steps before the head replayed on them, cached on disk.

use std::path::PathBuf;

use algobay_runtime::Digest;

use super::{invalid, Result};

/// The kit input a trained step's rows hold, and its shape (unknown sizes
/// as 1): the input `x` reads, or (a head on frozen features) the kit's one input.
pub(super) fn model_input(
    m: &algobay_runtime::Manifest,
    step: &str,
) -> Result<(String, Vec<usize>)> {
    use algobay_runtime::value::Dim;
    use algobay_runtime::PortType;
    let x = m
        .steps
        .iter()
        .find(|s| s.name == step)
        .map(|s| s.input_value("x").to_owned())
        .ok_or_else(|| invalid(format!("the kit has no step `{step}`")))?;
    let port = m
        .inputs
        .iter()
        .find(|p| p.name == x)
        .or_else(|| m.inputs.first())
        .ok_or_else(|| invalid("the kit has no input"))?;
    match &port.ty {
        PortType::Tensor { shape, .. } => Ok((
            port.name.clone(),
            shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Any => 1,
                })
                .collect(),
        )),
        _ => Err(invalid(format!(
            "kit input `{}` is not a tensor; rows of numbers cannot feed it",
            port.name
        ))),
    }
}

/// The frozen steps before a trained head, replayed on rows of the kit's
/// input; what they give is cached on disk by (the steps' digest, the row's).
pub(super) struct Frozen {
    kit: algobay_runtime::LoadedKit,
    step: String,
    input: String,
    shape: Vec<usize>,
    width: usize,
    dir: PathBuf,
    pub(super) computed: std::sync::atomic::AtomicU64,
    pub(super) cached: std::sync::atomic::AtomicU64,
}

impl Frozen {
    pub(super) fn new(
        kit: algobay_runtime::LoadedKit,
        step: &str,
        input: String,
        shape: Vec<usize>,
        width: usize,
        work_dir: &std::path::Path,
    ) -> Result<Frozen> {
        let m = kit.manifest();
        let at = m.steps.iter().position(|s| s.name == step).unwrap_or(0);
        // The encoder: every step before the head, with its files' digests and config.
        let encoder = Digest::of(
            &serde_json::to_vec(&m.steps[..at]).map_err(|e| invalid(format!("steps: {e}")))?,
        );
        let dir = work_dir.join("features").join(encoder.hex());
        std::fs::create_dir_all(&dir).map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
        Ok(Frozen {
            kit,
            step: step.into(),
            input,
            shape,
            width,
            dir,
            computed: Default::default(),
            cached: Default::default(),
        })
    }

    /// The head's features of each row of the kit's input.
    pub(super) fn features(&self, rows: &[f32]) -> Result<Vec<f32>> {
        use algobay_runtime::{DType, Tensor, Value, Values};
        use std::sync::atomic::Ordering;
        let in_width: usize = self.shape.iter().product();
        let mut out = Vec::with_capacity(rows.len() / in_width.max(1) * self.width);
        for row in rows.chunks_exact(in_width) {
            let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
            let path = self.dir.join(Digest::of(&bytes).hex());
            if let Ok(b) = std::fs::read(&path) {
                if b.len() == self.width * 4 {
                    out.extend(
                        b.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    );
                    self.cached.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            let mut v = Values::new();
            v.insert(
                self.input.clone(),
                Value::Tensor(Tensor::new(DType::F32, self.shape.clone(), bytes)?),
            );
            let f = match self.kit.value_before(v, &self.step, "x")? {
                Value::Tensor(t) => t.to_f32()?,
                _ => {
                    return Err(invalid(format!(
                        "the steps before `{}` give no tensor",
                        self.step
                    )))
                }
            };
            if f.len() != self.width {
                return Err(invalid(format!(
                    "the steps before `{}` give {} values, the model takes {}",
                    self.step,
                    f.len(),
                    self.width
                )));
            }
            // Written whole or not at all: a crash leaves no half file. A
            // cache: a failed write only means computing it again.
            let data: Vec<u8> = f.iter().flat_map(|v| v.to_le_bytes()).collect();
            let _ = algobay_runtime::fsx::write_atomic(&path, &data);
            self.computed.fetch_add(1, Ordering::Relaxed);
            out.extend(f);
        }
        Ok(out)
    }
}
