//! Small multi-layer perceptrons: classifiers and regressors, trained here with
//! full-batch AdamW and seeded initialisation.

use std::path::Path;

use candle_core::{DType as CDType, Device, Module, Tensor as CTensor};
use candle_nn::{linear, Linear, Optimizer, VarBuilder};
use serde::Deserialize;

use super::dense::{Dense, Target};
use crate::error::{Error, Result};

/// Shape of an `mlp`: `layers` = [inputs, hidden..., classes], ReLU between
/// layers; with `conv` (a `cnn`), convolutions come first and `layers[0]` is
/// the width of their flattened output.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    pub layers: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv: Option<ConvSpec>,
}

/// A small CNN's front: per entry of `channels`, a 3x3 convolution (padding
/// 1), ReLU and a 2x2 max-pool (while both sides are at least 2).
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    /// The input's channels, height and width (NCHW).
    pub input: [usize; 3],
    pub channels: Vec<usize>,
}

impl ConvSpec {
    /// The flattened width after the convolutions and pools.
    pub fn output_width(&self) -> usize {
        let [_, mut h, mut w] = self.input;
        for _ in &self.channels {
            if h >= 2 && w >= 2 {
                h /= 2;
                w /= 2;
            }
        }
        self.channels.last().copied().unwrap_or(self.input[0]) * h * w
    }
}

impl MlpConfig {
    /// A dense net of these layer sizes.
    pub fn dense(layers: Vec<usize>) -> MlpConfig {
        MlpConfig { layers, conv: None }
    }

    /// Values per input row: the image's for a `cnn`, else the first layer's.
    pub fn input_width(&self) -> usize {
        match &self.conv {
            Some(c) => c.input.iter().product(),
            None => self.layers.first().copied().unwrap_or(0),
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.layers.len() < 2 || self.layers.contains(&0) {
            return Err("`layers` must list at least two non-zero sizes".into());
        }
        if let Some(c) = &self.conv {
            if c.input.contains(&0) || c.channels.is_empty() || c.channels.contains(&0) {
                return Err("`conv` needs a non-zero input [c, h, w] and channel counts".into());
            }
            if self.layers[0] != c.output_width() {
                return Err(format!(
                    "`layers` starts at {}, but the convolutions give {} values",
                    self.layers[0],
                    c.output_width()
                ));
            }
        }
        Ok(())
    }
}

pub(super) struct Mlp {
    conv: Vec<candle_nn::Conv2d>,
    spec: Option<ConvSpec>,
    layers: Vec<Linear>,
}

fn conv_config() -> candle_nn::Conv2dConfig {
    candle_nn::Conv2dConfig {
        padding: 1,
        ..Default::default()
    }
}

impl Mlp {
    pub(super) fn new(vb: VarBuilder, cfg: &MlpConfig) -> candle_core::Result<Mlp> {
        if let Err(m) = cfg.check() {
            candle_core::bail!("{m}");
        }
        let mut conv = Vec::new();
        if let Some(c) = &cfg.conv {
            let mut from = c.input[0];
            for (i, &to) in c.channels.iter().enumerate() {
                conv.push(candle_nn::conv2d(
                    from,
                    to,
                    3,
                    conv_config(),
                    vb.pp(format!("conv.{i}")),
                )?);
                from = to;
            }
        }
        let layers = cfg
            .layers
            .windows(2)
            .enumerate()
            .map(|(i, w)| linear(w[0], w[1], vb.pp(format!("layers.{i}"))))
            .collect::<candle_core::Result<_>>()?;
        Ok(Mlp {
            conv,
            spec: cfg.conv.clone(),
            layers,
        })
    }

    pub(super) fn forward(&self, x: &CTensor) -> candle_core::Result<CTensor> {
        let mut h = x.clone();
        if let Some(spec) = &self.spec {
            // Rows of c·h·w values or NCHW batches alike.
            let n = h.dim(0)?;
            let [c, ih, iw] = spec.input;
            h = h.reshape((n, c, ih, iw))?;
            for conv in &self.conv {
                h = conv.forward(&h)?.relu()?;
                let (_, _, hh, ww) = h.dims4()?;
                if hh >= 2 && ww >= 2 {
                    h = h.max_pool2d(2)?;
                }
            }
            h = h.flatten_from(1)?;
        }
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}

/// What a training run reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    pub epochs: usize,
    pub final_loss: f32,
    pub train_accuracy: f32,
    /// Accuracy on the held-out rows, when some were given.
    pub holdout_accuracy: Option<f32>,
}

/// What to train an `mlp` with.
#[derive(Clone, Debug)]
pub struct TrainSpec<'a> {
    pub cfg: &'a MlpConfig,
    /// Rows (n × layers[0]) and their class labels.
    pub x: &'a [f32],
    pub y: &'a [u32],
    /// Held-out rows and labels, scored after training (may be empty).
    pub holdout: (&'a [f32], &'a [u32]),
    pub epochs: usize,
    pub lr: f64,
    pub seed: u64,
    /// Safetensors weights to start from (a warm start from the model serving);
    /// otherwise a seeded Kaiming-uniform initialisation.
    pub init: Option<&'a [u8]>,
}

/// Trains an `mlp` on rows `x` (n × layers[0]) with class labels `y`, full-batch AdamW,
/// and writes the weights as safetensors to `out` (atomically). Initialisation is
/// seeded, so the same data, shape and seed give the same model.
#[allow(clippy::too_many_arguments)]
pub fn train_mlp(
    cfg: &MlpConfig,
    x: &[f32],
    y: &[u32],
    holdout: (&[f32], &[u32]),
    epochs: usize,
    lr: f64,
    seed: u64,
    out: &Path,
) -> Result<TrainReport> {
    let (bytes, report) = train_mlp_bytes(&TrainSpec {
        cfg,
        x,
        y,
        holdout,
        epochs,
        lr,
        seed,
        init: None,
    })?;
    crate::fsx::write_atomic(out, &bytes).map_err(|err| Error::io(out, err))?;
    Ok(report)
}

/// Trains an `mlp` as [`TrainSpec`] says and returns its weights as safetensors
/// bytes: the same spec gives the same bytes.
pub fn train_mlp_bytes(spec: &TrainSpec<'_>) -> Result<(Vec<u8>, TrainReport)> {
    let TrainSpec {
        cfg,
        x,
        y,
        holdout,
        epochs,
        lr,
        seed,
        init,
    } = spec.clone();
    let e = |e: candle_core::Error| Error::model("train", e);
    let n_in = check_training_rows(cfg, x.len(), y.len())?;
    let classes = *cfg.layers.last().expect("checked non-empty");
    if let Some(bad) = y.iter().find(|&&c| c as usize >= classes) {
        return Err(Error::invalid(
            "training labels",
            format!("label {bad} is not below the {classes} classes"),
        ));
    }
    let dev = Device::Cpu;
    let (mlp, vars, named) = seeded_mlp(cfg, seed, init, &dev)?;
    if cfg.conv.is_none() {
        // Dense nets train without a graph (see `dense`).
        let mut net = dense_from(cfg, &named)?;
        let final_loss = net.train(x, Target::Classes(y), epochs, lr);
        let bytes = dense_bytes(&net);
        let accuracy = |rows: &[f32], labels: &[u32]| -> Result<f32> {
            let pred = mlp_predict(cfg, &bytes, rows)?;
            let right = pred.iter().zip(labels).filter(|(p, t)| p == t).count();
            Ok(right as f32 / labels.len() as f32)
        };
        let train_accuracy = accuracy(x, y)?;
        let holdout_accuracy = if holdout.1.is_empty() {
            None
        } else {
            if holdout.0.len() != holdout.1.len() * n_in {
                return Err(Error::invalid("holdout data", "rows do not match labels"));
            }
            Some(accuracy(holdout.0, holdout.1)?)
        };
        return Ok((
            bytes,
            TrainReport {
                epochs,
                final_loss,
                train_accuracy,
                holdout_accuracy,
            },
        ));
    }
    let xs = CTensor::from_slice(x, (y.len(), n_in), &dev).map_err(e)?;
    let ys = CTensor::from_slice(y, y.len(), &dev).map_err(e)?;
    let mut opt = candle_nn::AdamW::new_lr(vars, lr).map_err(e)?;
    let mut loss_v = f32::NAN;
    for _ in 0..epochs {
        let logits = mlp.forward(&xs).map_err(e)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &ys).map_err(e)?;
        opt.backward_step(&loss).map_err(e)?;
        loss_v = loss.to_scalar::<f32>().map_err(e)?;
    }
    let accuracy = |xs: &CTensor, ys: &CTensor, n: usize| -> candle_core::Result<f32> {
        let correct = mlp
            .forward(xs)?
            .argmax(1)?
            .eq(ys)?
            .to_dtype(CDType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        Ok(correct / n as f32)
    };
    let train_accuracy = accuracy(&xs, &ys, y.len()).map_err(e)?;
    let holdout_accuracy = if holdout.1.is_empty() {
        None
    } else {
        if holdout.0.len() != holdout.1.len() * n_in {
            return Err(Error::invalid("holdout data", "rows do not match labels"));
        }
        let hx = CTensor::from_slice(holdout.0, (holdout.1.len(), n_in), &dev).map_err(e)?;
        let hy = CTensor::from_slice(holdout.1, holdout.1.len(), &dev).map_err(e)?;
        Some(accuracy(&hx, &hy, holdout.1.len()).map_err(e)?)
    };
    let bytes = weights_bytes(named)?;
    Ok((
        bytes,
        TrainReport {
            epochs,
            final_loss: loss_v,
            train_accuracy,
            holdout_accuracy,
        },
    ))
}

/// Checks the layers and that `values` make `rows` rows of the first layer's
/// width; returns that width.
fn check_training_rows(cfg: &MlpConfig, values: usize, rows: usize) -> Result<usize> {
    cfg.check().map_err(|m| Error::invalid("layers", m))?;
    let n_in = cfg.input_width();
    if rows == 0 || values != rows * n_in {
        return Err(Error::invalid(
            "training data",
            format!("{values} values do not make {rows} rows of {n_in}"),
        ));
    }
    Ok(n_in)
}

/// Variables of a trained net, by safetensors name.
type Named = Vec<(String, candle_core::Var)>;

/// An `mlp` whose weights are variables: from `init` (a warm start) when
/// given, otherwise a Kaiming-uniform initialisation from a seeded xorshift
/// generator.
fn seeded_mlp(
    cfg: &MlpConfig,
    seed: u64,
    init: Option<&[u8]>,
    dev: &Device,
) -> Result<(Mlp, Vec<candle_core::Var>, Named)> {
    let e = |e: candle_core::Error| Error::model("train", e);
    let dev = dev.clone();
    let start = match init {
        Some(bytes) => Some(
            candle_core::safetensors::load_buffer(bytes, &dev)
                .map_err(|err| Error::invalid("initial weights", err.to_string()))?,
        ),
        None => None,
    };
    // Kaiming-uniform initialisation from a seeded xorshift generator.
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut vars = Vec::new();
    let mut named: Vec<(String, candle_core::Var)> = Vec::new();
    let mut layers = Vec::new();
    let mut conv = Vec::new();
    if let Some(c) = &cfg.conv {
        let mut from = c.input[0];
        for (i, &to) in c.channels.iter().enumerate() {
            let bound = (1.0 / (from * 9) as f64).sqrt();
            let mut draw = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| ((next() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            };
            let (wv, bv) = (draw(to * from * 9), draw(to));
            let wvar = candle_core::Var::from_tensor(
                &CTensor::from_vec(wv, (to, from, 3, 3), &dev).map_err(e)?,
            )
            .map_err(e)?;
            let bvar = candle_core::Var::from_tensor(&CTensor::from_vec(bv, to, &dev).map_err(e)?)
                .map_err(e)?;
            conv.push(candle_nn::Conv2d::new(
                wvar.as_tensor().clone(),
                Some(bvar.as_tensor().clone()),
                conv_config(),
            ));
            vars.push(wvar.clone());
            vars.push(bvar.clone());
            named.push((format!("conv.{i}.weight"), wvar));
            named.push((format!("conv.{i}.bias"), bvar));
            from = to;
        }
        if start.is_some() {
            return Err(Error::invalid(
                "initial weights",
                "a warm start is for dense nets only",
            ));
        }
    }
    for (i, w) in cfg.layers.windows(2).enumerate() {
        let bound = (1.0 / w[0] as f64).sqrt();
        let mut wv: Vec<f32> = (0..w[0] * w[1])
            .map(|_| ((next() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let mut bv: Vec<f32> = (0..w[1])
            .map(|_| ((next() * 2.0 - 1.0) * bound) as f32)
            .collect();
        if let Some(start) = &start {
            let take = |name: String, len: usize| -> Result<Vec<f32>> {
                let t = start.get(&name).ok_or_else(|| {
                    Error::invalid("initial weights", format!("no tensor `{name}`"))
                })?;
                let v = t
                    .flatten_all()
                    .and_then(|t| t.to_dtype(CDType::F32))
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(e)?;
                if v.len() != len {
                    return Err(Error::invalid(
                        "initial weights",
                        format!("`{name}` has {} values, the layers need {len}", v.len()),
                    ));
                }
                Ok(v)
            };
            wv = take(format!("layers.{i}.weight"), wv.len())?;
            bv = take(format!("layers.{i}.bias"), bv.len())?;
        }
        let wvar =
            candle_core::Var::from_tensor(&CTensor::from_vec(wv, (w[1], w[0]), &dev).map_err(e)?)
                .map_err(e)?;
        let bvar = candle_core::Var::from_tensor(&CTensor::from_vec(bv, w[1], &dev).map_err(e)?)
            .map_err(e)?;
        layers.push(Linear::new(
            wvar.as_tensor().clone(),
            Some(bvar.as_tensor().clone()),
        ));
        vars.push(wvar.clone());
        vars.push(bvar.clone());
        named.push((format!("layers.{i}.weight"), wvar));
        named.push((format!("layers.{i}.bias"), bvar));
    }
    let spec = cfg.conv.clone();
    Ok((Mlp { conv, spec, layers }, vars, named))
}

/// A dense net's starting parameters, read from the seeded variables.
fn dense_from(cfg: &MlpConfig, named: &Named) -> Result<Dense> {
    let e = |e: candle_core::Error| Error::model("train", e);
    let value = |name: String| -> Result<Vec<f32>> {
        let var = named
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::invalid("layers", format!("no tensor `{name}`")))?;
        var.as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(e)
    };
    let layers = cfg.layers.len() - 1;
    Ok(Dense {
        sizes: cfg.layers.clone(),
        weights: (0..layers)
            .map(|i| value(format!("layers.{i}.weight")))
            .collect::<Result<_>>()?,
        biases: (0..layers)
            .map(|i| value(format!("layers.{i}.bias")))
            .collect::<Result<_>>()?,
    })
}

/// A dense net's parameters as safetensors bytes, named as `Mlp` loads them.
fn dense_bytes(net: &Dense) -> Vec<u8> {
    let mut tensors = Vec::new();
    for (i, (w, b)) in net.weights.iter().zip(&net.biases).enumerate() {
        let (fan_in, fan_out) = (net.sizes[i], net.sizes[i + 1]);
        tensors.push((
            format!("layers.{i}.weight"),
            vec![fan_out, fan_in],
            w.clone(),
        ));
        tensors.push((format!("layers.{i}.bias"), vec![fan_out], b.clone()));
    }
    safetensors_f32(tensors)
}

/// The variables' values as safetensors bytes.
fn weights_bytes(named: Named) -> Result<Vec<u8>> {
    let e = |e: candle_core::Error| Error::model("train", e);
    let mut tensors = Vec::new();
    for (name, var) in named {
        let t = var.as_tensor();
        let shape = t.dims().to_vec();
        let values = t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(e)?;
        tensors.push((name, shape, values));
    }
    Ok(safetensors_f32(tensors))
}

/// What training a regressor reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RegressorReport {
    pub epochs: usize,
    /// The loss on the training rows at the end.
    pub final_loss: f32,
}

/// What a regressor is trained to make small.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegressionLoss {
    /// Mean squared error: predicts the conditional mean (judged by RMSE).
    #[default]
    Squared,
    /// Mean absolute error: predicts the conditional median (judged by MAE),
    /// and is not pulled by a heavy tail.
    Absolute,
}

/// Trains an `mlp` whose last layer has one output as a regressor: `loss`
/// against `y` (one target per row, best standardised), full-batch AdamW,
/// seeded initialisation. The same data, shape and seed give the same bytes.
pub fn train_regressor_bytes(
    cfg: &MlpConfig,
    x: &[f32],
    y: &[f32],
    epochs: usize,
    lr: f64,
    seed: u64,
    loss: RegressionLoss,
) -> Result<(Vec<u8>, RegressorReport)> {
    let e = |e: candle_core::Error| Error::model("train", e);
    let n_in = check_training_rows(cfg, x.len(), y.len())?;
    if cfg.layers.last() != Some(&1) {
        return Err(Error::invalid(
            "layers",
            "a regressor's last layer must have one output",
        ));
    }
    if let Some(bad) = y.iter().find(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "training targets",
            format!("target {bad} is not a finite number"),
        ));
    }
    let dev = Device::Cpu;
    let (mlp, vars, named) = seeded_mlp(cfg, seed, None, &dev)?;
    if cfg.conv.is_none() {
        let mut net = dense_from(cfg, &named)?;
        let target = match loss {
            RegressionLoss::Squared => Target::Squared(y),
            RegressionLoss::Absolute => Target::Absolute(y),
        };
        let final_loss = net.train(x, target, epochs, lr);
        return Ok((dense_bytes(&net), RegressorReport { epochs, final_loss }));
    }
    let xs = CTensor::from_slice(x, (y.len(), n_in), &dev).map_err(e)?;
    let ys = CTensor::from_slice(y, (y.len(), 1), &dev).map_err(e)?;
    let mut opt = candle_nn::AdamW::new_lr(vars, lr).map_err(e)?;
    let mut loss_v = f32::NAN;
    for _ in 0..epochs {
        let out = mlp.forward(&xs).map_err(e)?;
        let l = match loss {
            RegressionLoss::Squared => candle_nn::loss::mse(&out, &ys),
            RegressionLoss::Absolute => out.sub(&ys).and_then(|d| d.abs()?.mean_all()),
        }
        .map_err(e)?;
        opt.backward_step(&l).map_err(e)?;
        loss_v = l.to_scalar::<f32>().map_err(e)?;
    }
    Ok((
        weights_bytes(named)?,
        RegressorReport {
            epochs,
            final_loss: loss_v,
        },
    ))
}

/// Each row's value from an `mlp` regressor (its single output); rows are
/// scored in blocks of 4,096.
pub fn regressor_predict(cfg: &MlpConfig, weights: &[u8], x: &[f32]) -> Result<Vec<f32>> {
    if cfg.layers.last() != Some(&1) {
        return Err(Error::invalid(
            "layers",
            "a regressor's last layer must have one output",
        ));
    }
    mlp_probabilities_or_values(cfg, weights, x, false)
}

/// Writes f32 tensors in the safetensors format: an 8-byte little-endian header
/// length, a JSON header (names sorted, each with dtype, shape and byte offsets),
/// then the data in the header's order. Deterministic, so equal weights give
/// equal bytes (and digests).
pub fn safetensors_f32(mut tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> Vec<u8> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    let mut at = 0usize;
    for (name, shape, values) in &tensors {
        let end = at + values.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [at, end]}),
        );
        at = end;
    }
    let mut head = serde_json::Value::Object(header).to_string().into_bytes();
    // The data starts 8-aligned.
    while !(8 + head.len()).is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + at);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for (_, _, values) in &tensors {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// The class each row of `x` gets from an `mlp` with these weights (argmax of
/// the logits); rows are scored in blocks of 4,096.
pub fn mlp_predict(cfg: &MlpConfig, weights: &[u8], x: &[f32]) -> Result<Vec<u32>> {
    let e = |e: candle_core::Error| Error::model("predict", e);
    let dev = Device::Cpu;
    let n_in = cfg.input_width();
    if n_in == 0 || !x.len().is_multiple_of(n_in) {
        return Err(Error::invalid(
            "rows",
            format!("{} values are not rows of {n_in}", x.len()),
        ));
    }
    let vb = VarBuilder::from_buffered_safetensors(weights.to_vec(), CDType::F32, &dev)
        .map_err(|err| Error::invalid("weights", err.to_string()))?;
    let mlp = Mlp::new(vb, cfg).map_err(e)?;
    let mut out = Vec::with_capacity(x.len() / n_in);
    for block in x.chunks(4096 * n_in) {
        let rows = block.len() / n_in;
        let t = CTensor::from_slice(block, (rows, n_in), &dev).map_err(e)?;
        out.extend(
            mlp.forward(&t)
                .and_then(|l| l.argmax(1))
                .and_then(|a| a.to_vec1::<u32>())
                .map_err(e)?,
        );
    }
    Ok(out)
}

/// Each row's class probabilities from an `mlp` (softmax of the logits),
/// row after row; rows are scored in blocks of 4,096.
pub fn mlp_probabilities(cfg: &MlpConfig, weights: &[u8], x: &[f32]) -> Result<Vec<f32>> {
    mlp_probabilities_or_values(cfg, weights, x, true)
}

/// The net's outputs, row after row: softmaxed when `softmax`.
fn mlp_probabilities_or_values(
    cfg: &MlpConfig,
    weights: &[u8],
    x: &[f32],
    softmax: bool,
) -> Result<Vec<f32>> {
    let e = |e: candle_core::Error| Error::model("predict", e);
    let dev = Device::Cpu;
    let n_in = cfg.input_width();
    if n_in == 0 || !x.len().is_multiple_of(n_in) {
        return Err(Error::invalid(
            "rows",
            format!("{} values are not rows of {n_in}", x.len()),
        ));
    }
    let vb = VarBuilder::from_buffered_safetensors(weights.to_vec(), CDType::F32, &dev)
        .map_err(|err| Error::invalid("weights", err.to_string()))?;
    let mlp = Mlp::new(vb, cfg).map_err(e)?;
    let mut out = Vec::with_capacity(x.len() / n_in * cfg.layers.last().copied().unwrap_or(0));
    for block in x.chunks(4096 * n_in) {
        let rows = block.len() / n_in;
        let t = CTensor::from_slice(block, (rows, n_in), &dev).map_err(e)?;
        let p = mlp
            .forward(&t)
            .and_then(|l| {
                if softmax {
                    candle_nn::ops::softmax_last_dim(&l)
                } else {
                    Ok(l)
                }
            })
            .and_then(|p| p.flatten_all())
            .and_then(|p| p.to_vec1::<f32>())
            .map_err(e)?;
        out.extend(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
