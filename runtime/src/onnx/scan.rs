//! A request's scan over its windows (a recurrent model driven step by
//! step, its state carried), and which waiting calls can run as one batch.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::OnnxModel;
use crate::error::{Error, Result};
use crate::manifest::Scan;
use crate::value::{Dim, PortType, Tensor, Value, Values};

/// One request's scan: the sliced inputs, the values fed back, what it has collected.
pub(super) struct ScanJob {
    pub(super) id: u64,
    over: Vec<(String, Tensor)>,
    pub(super) n: usize,
    pub(super) i: usize,
    state: Values,
    collected: BTreeMap<String, Vec<Tensor>>,
    last: Values,
    pub(super) error: Option<Error>,
}

impl ScanJob {
    pub(super) fn new(step: &str, inputs: &Values, scan: &Scan) -> Result<ScanJob> {
        let state: Values = inputs
            .iter()
            .filter(|(k, _)| !scan.over.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let over = scan
            .over
            .iter()
            .map(|name| match inputs.get(name) {
                Some(Value::Tensor(t)) if !t.shape.is_empty() => Ok((name.clone(), t.clone())),
                _ => Err(Error::model(
                    step,
                    format!("scanned input `{name}` must be a tensor with a first axis"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let steps: Vec<usize> = over.iter().map(|(_, t)| t.shape[0]).collect();
        let n = *steps
            .first()
            .ok_or_else(|| Error::model(step, "scan.over names no input"))?;
        if steps.iter().any(|&s| s != n) {
            return Err(Error::model(
                step,
                format!("scanned inputs have different lengths: {steps:?}"),
            ));
        }
        Ok(ScanJob {
            id: 0,
            over,
            n,
            i: 0,
            state,
            collected: Default::default(),
            last: Values::new(),
            error: None,
        })
    }

    pub(super) fn finished(&self) -> bool {
        self.i >= self.n
    }

    /// The model's inputs for the next slice.
    pub(super) fn feed(&mut self) -> Result<Values> {
        for (name, t) in &self.over {
            self.state
                .insert(name.clone(), Value::Tensor(t.index_first(self.i)?));
        }
        Ok(self.state.clone())
    }

    pub(super) fn absorb(&mut self, out: Values, scan: &Scan) {
        for (name, v) in &out {
            if let Some(feed) = scan.carry.get(name) {
                self.state.insert(feed.clone(), v.clone());
            } else if let Value::Tensor(t) = v {
                self.collected
                    .entry(name.clone())
                    .or_default()
                    .push(t.clone());
            }
        }
        self.last = out;
        self.i += 1;
    }

    /// Whether `other` can run in the same batches: its first slice fits ours.
    pub(super) fn fits(&self, other: &ScanJob, axes: &BTreeMap<String, usize>) -> bool {
        let slice = |j: &ScanJob| -> Option<Values> {
            let mut v = j.state.clone();
            for (name, t) in &j.over {
                v.insert(name.clone(), Value::Tensor(t.index_first(0).ok()?));
            }
            Some(v)
        };
        match (slice(self), slice(other)) {
            (Some(a), Some(b)) => fits(&a, &b, axes),
            _ => false,
        }
    }

    /// The step's outputs: the carried values' last state, the others stacked.
    pub(super) fn finish(mut self, model: &OnnxModel, scan: &Scan) -> Result<Values> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut result = Values::new();
        for port in &model.signature.outputs {
            if scan.carry.contains_key(&port.name) {
                let v = match self.last.remove(&port.name) {
                    Some(v) => v,
                    // Zero slices: the carried value is the initial one.
                    None => self
                        .state
                        .get(&scan.carry[&port.name])
                        .cloned()
                        .ok_or_else(|| {
                            Error::model(
                                &model.step,
                                format!("carried input `{}` is missing", scan.carry[&port.name]),
                            )
                        })?,
                };
                result.insert(port.name.clone(), v);
            } else {
                let parts = self.collected.remove(&port.name).unwrap_or_default();
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

/// Whether a call with inputs `v` can join a batch with one with inputs `first`:
/// batched inputs agree on every axis but the batch axis, the others are equal.
pub(super) fn fits(first: &Values, v: &Values, axes: &BTreeMap<String, usize>) -> bool {
    first
        .iter()
        .all(|(name, a)| match (axes.get(name), a, v.get(name)) {
            (Some(&axis), Value::Tensor(a), Some(Value::Tensor(b))) => {
                a.dtype == b.dtype
                    && a.shape.len() == b.shape.len()
                    && a.shape
                        .iter()
                        .zip(&b.shape)
                        .enumerate()
                        .all(|(i, (x, y))| i == axis || x == y)
            }
            (None, a, Some(b)) => a == b,
            _ => false,
        })
}

/// The calls at the front of the queue that can run as one batch: the first
/// waiting call, and those after it whose batched inputs agree with it on every
/// other axis and whose other inputs are equal to its own; at most `max`.
pub(super) fn take_group(
    waiting: &mut VecDeque<(u64, Instant, Values)>,
    axes: &BTreeMap<String, usize>,
    max: usize,
) -> Vec<(u64, Values)> {
    let Some((id, _, first)) = waiting.pop_front() else {
        return Vec::new();
    };
    let mut group = vec![(id, first)];
    let mut i = 0;
    while i < waiting.len() && group.len() < max {
        if fits(&group[0].1, &waiting[i].2, axes) {
            if let Some((id, _, call)) = waiting.remove(i) {
                group.push((id, call));
            }
        } else {
            i += 1;
        }
    }
    group
}
