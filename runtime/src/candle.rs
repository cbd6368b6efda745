//! Models in candle: safetensors weights plus a named architecture.
//!
//! - `bert`: a BERT-family encoder (e.g. all-MiniLM-L6-v2) with mean or CLS
//!   pooling and optional L2 normalisation: `input_ids`, `attention_mask`
//!   (i64[batch, tokens]) → `embedding` (f32[batch, hidden]).
//! - `mlp`: a small classifier, `x` (f32[batch, in]) → `logits` (f32[batch, classes]);
//!   [`train_mlp`] trains one.

use std::path::Path;

use candle_core::{DType as CDType, Device, Module, Tensor as CTensor, D};
use candle_nn::{
    embedding, layer_norm, linear, Embedding, LayerNorm, Linear, Optimizer, VarBuilder,
};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::manifest::{Contract, Port};
use crate::value::{Tensor, Value, Values};

/// The architectures this runtime can build.
pub const ARCHITECTURES: &[&str] = &["bert", "mlp"];

/// A loaded candle model.
pub struct CandleModel {
    step: String,
    net: Net,
    signature: Contract,
}

impl std::fmt::Debug for CandleModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleModel")
            .field("step", &self.step)
            .field("signature", &self.signature)
            .finish()
    }
}

enum Net {
    Bert(Box<Bert>),
    Mlp(Mlp),
}

fn port(name: &str, ty: &str) -> Port {
    Port {
        name: name.into(),
        ty: ty.parse().expect("static port type"),
    }
}

impl CandleModel {
    /// Builds a model from its weights, architecture, step config and assets
    /// (`bert` needs the `config` asset: the model's config.json).
    pub fn load(
        step: &str,
        architecture: &str,
        weights: &[u8],
        config: &serde_json::Value,
        asset: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<CandleModel> {
        let err = |e: candle_core::Error| Error::model(step, format!("cannot load weights: {e}"));
        if weights.is_empty() {
            return Err(Error::model(step, "weights file is empty"));
        }
        // Parse the header first so a non-safetensors file gets a clear error.
        safetensors_header(weights).map_err(|m| Error::model(step, m))?;
        let vb =
            VarBuilder::from_slice_safetensors(weights, CDType::F32, &Device::Cpu).map_err(err)?;
        match architecture {
            "bert" => {
                let raw = asset("config").ok_or_else(|| {
                    Error::model(
                        step,
                        "architecture `bert` needs the asset `config` (config.json)",
                    )
                })?;
                let cfg: BertConfig = serde_json::from_slice(&raw).map_err(|e| {
                    Error::model(
                        step,
                        format!("asset `config` is not a BERT config.json: {e}"),
                    )
                })?;
                let opts: BertOptions = serde_json::from_value(if config.is_null() {
                    serde_json::json!({})
                } else {
                    config.clone()
                })
                .map_err(|e| Error::model(step, format!("config: {e}")))?;
                let hidden = cfg.hidden_size;
                let bert = Bert::load(vb, &cfg, opts).map_err(err)?;
                Ok(CandleModel {
                    step: step.into(),
                    net: Net::Bert(Box::new(bert)),
                    signature: Contract {
                        inputs: vec![
                            port("input_ids", "i64[?,?]"),
                            port("attention_mask", "i64[?,?]"),
                        ],
                        outputs: vec![port("embedding", &format!("f32[?,{hidden}]"))],
                    },
                })
            }
            "mlp" => {
                // The layer sizes come from the step's config, or else from a `config` asset.
                let value = if config.is_null() {
                    let raw = asset("config").ok_or_else(|| {
                        Error::model(step, "architecture `mlp` needs {\"layers\": [in, hidden.., out]} as config or as a `config` asset")
                    })?;
                    serde_json::from_slice(&raw).map_err(|e| {
                        Error::model(step, format!("asset `config` is not json: {e}"))
                    })?
                } else {
                    config.clone()
                };
                let cfg: MlpConfig = serde_json::from_value(value).map_err(|e| {
                    Error::model(
                        step,
                        format!(
                            "config for `mlp` must be {{\"layers\": [in, hidden.., out]}}: {e}"
                        ),
                    )
                })?;
                let mlp = Mlp::new(vb, &cfg).map_err(err)?;
                Ok(CandleModel {
                    step: step.into(),
                    signature: Contract {
                        inputs: vec![port("x", &format!("f32[?,{}]", cfg.layers[0]))],
                        outputs: vec![port(
                            "logits",
                            &format!("f32[?,{}]", cfg.layers[cfg.layers.len() - 1]),
                        )],
                    },
                    net: Net::Mlp(mlp),
                })
            }
            other => Err(Error::model(
                step,
                format!(
                    "unknown candle architecture `{other}` (known: {})",
                    ARCHITECTURES.join(", ")
                ),
            )),
        }
    }

    /// Inputs and outputs.
    pub fn signature(&self) -> &Contract {
        &self.signature
    }

    /// Runs the model; `inputs` are keyed by port name.
    pub fn run(&self, inputs: &Values) -> Result<Values> {
        for p in &self.signature.inputs {
            let v = inputs.get(&p.name).ok_or_else(|| {
                Error::model(&self.step, format!("input `{}` is missing", p.name))
            })?;
            p.ty.check(v)
                .map_err(|m| Error::model(&self.step, format!("input `{}`: {m}", p.name)))?;
        }
        let e = |e: candle_core::Error| Error::model(&self.step, format!("inference failed: {e}"));
        let tensor = |name: &str| match &inputs[name] {
            Value::Tensor(t) => t,
            _ => unreachable!("checked above"),
        };
        match &self.net {
            Net::Bert(bert) => {
                let ids = tensor("input_ids");
                let mask = tensor("attention_mask");
                if ids.shape != mask.shape {
                    return Err(Error::model(
                        &self.step,
                        "input_ids and attention_mask must have the same shape",
                    ));
                }
                let shape = (ids.shape[0], ids.shape[1]);
                let ids = CTensor::from_vec(ids.to_i64()?, shape, &Device::Cpu).map_err(e)?;
                let mask = CTensor::from_vec(mask.to_i64()?, shape, &Device::Cpu).map_err(e)?;
                let out = bert.embed(&ids, &mask).map_err(e)?;
                Ok(Values::from([(
                    "embedding".to_string(),
                    Value::Tensor(to_value(&out).map_err(e)?),
                )]))
            }
            Net::Mlp(mlp) => {
                let x = tensor("x");
                let xt = CTensor::from_vec(x.to_f32()?, (x.shape[0], x.shape[1]), &Device::Cpu)
                    .map_err(e)?;
                let out = mlp.forward(&xt).map_err(e)?;
                Ok(Values::from([(
                    "logits".to_string(),
                    Value::Tensor(to_value(&out).map_err(e)?),
                )]))
            }
        }
    }
}

fn to_value(t: &CTensor) -> candle_core::Result<Tensor> {
    let shape = t.dims().to_vec();
    let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
    Ok(Tensor::from_f32(shape, &data))
}

/// Checks that `bytes` start with a well-formed safetensors header.
pub fn safetensors_header(bytes: &[u8]) -> std::result::Result<serde_json::Value, String> {
    if bytes.len() < 8 {
        return Err("is not a safetensors file: shorter than its 8-byte header length".into());
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    if n == 0 || n > 100 << 20 || 8 + n > bytes.len() {
        return Err(format!(
            "is not a safetensors file: header length {n} does not fit the file"
        ));
    }
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])
        .map_err(|e| format!("is not a safetensors file: header is not json: {e}"))?;
    if !header.is_object() {
        return Err("is not a safetensors file: header is not a json object".into());
    }
    Ok(header)
}

// ---------------------------------------------------------------- BERT

#[derive(Debug, Deserialize)]
struct BertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BertOptions {
    #[serde(default = "default_pooling")]
    pooling: String,
    #[serde(default = "default_true")]
    normalize: bool,
}

fn default_pooling() -> String {
    "mean".into()
}
fn default_true() -> bool {
    true
}

struct BertLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<BertLayer>,
    heads: usize,
    opts: BertOptions,
}

impl Bert {
    fn load(vb: VarBuilder, c: &BertConfig, opts: BertOptions) -> candle_core::Result<Bert> {
        if c.hidden_act != "gelu" {
            candle_core::bail!("hidden_act `{}` is not supported (only gelu)", c.hidden_act);
        }
        if !["mean", "cls"].contains(&opts.pooling.as_str()) {
            candle_core::bail!("pooling `{}` must be mean or cls", opts.pooling);
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!("hidden_size must be a multiple of num_attention_heads");
        }
        // Checkpoints come with or without the `bert.` prefix.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let ln = |vb: VarBuilder| layer_norm(h, c.layer_norm_eps, vb);
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            layers.push(BertLayer {
                q: linear(h, h, a.pp("self.query"))?,
                k: linear(h, h, a.pp("self.key"))?,
                v: linear(h, h, a.pp("self.value"))?,
                attn_out: linear(h, h, a.pp("output.dense"))?,
                attn_norm: ln(a.pp("output.LayerNorm"))?,
                inter: linear(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                out: linear(c.intermediate_size, h, l.pp("output.dense"))?,
                out_norm: ln(l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Bert {
            word: embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(c.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_type: embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            emb_norm: ln(e.pp("LayerNorm"))?,
            layers,
            heads: c.num_attention_heads,
            opts,
        })
    }

    fn embed(&self, ids: &CTensor, mask: &CTensor) -> candle_core::Result<CTensor> {
        let (b, n) = ids.dims2()?;
        let dev = ids.device();
        let positions = CTensor::arange(0u32, n as u32, dev)?
            .unsqueeze(0)?
            .broadcast_as((b, n))?;
        let types = CTensor::zeros((b, n), CDType::U32, dev)?;
        let ids = ids.to_dtype(CDType::U32)?;
        let x = (self.word.forward(&ids)?
            + self.position.forward(&positions)?
            + self.token_type.forward(&types)?)?;
        let mut x = self.emb_norm.forward(&x)?;
        let maskf = mask.to_dtype(CDType::F32)?;
        // 0 where attended, a large negative number where padded: [b, 1, 1, n].
        let bias = ((1.0 - &maskf)? * -10000.0)?.unsqueeze(1)?.unsqueeze(1)?;
        let h = x.dim(2)?;
        let hd = h / self.heads;
        let scale = 1.0 / (hd as f64).sqrt();
        for l in &self.layers {
            let split = |t: CTensor| -> candle_core::Result<CTensor> {
                t.reshape((b, n, self.heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = split(l.q.forward(&x)?)?;
            let k = split(l.k.forward(&x)?)?;
            let v = split(l.v.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, h))?;
            let a = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let i = l.inter.forward(&a)?.gelu_erf()?;
            x = l.out_norm.forward(&(l.out.forward(&i)? + &a)?)?;
        }
        let pooled = if self.opts.pooling == "cls" {
            x.narrow(1, 0, 1)?.squeeze(1)?
        } else {
            let m = maskf.unsqueeze(2)?;
            let summed = x.broadcast_mul(&m)?.sum(1)?;
            let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
            summed.broadcast_div(&count)?
        };
        if self.opts.normalize {
            let norm = pooled
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sqrt()?
                .clamp(1e-12, f64::MAX)?;
            pooled.broadcast_div(&norm)
        } else {
            Ok(pooled)
        }
    }
}

// ---------------------------------------------------------------- MLP

/// Shape of an `mlp`: `layers` = [inputs, hidden..., classes], ReLU between layers.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    pub layers: Vec<usize>,
}

struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn new(vb: VarBuilder, cfg: &MlpConfig) -> candle_core::Result<Mlp> {
        if cfg.layers.len() < 2 || cfg.layers.contains(&0) {
            candle_core::bail!("`layers` must list at least two non-zero sizes");
        }
        let layers = cfg
            .layers
            .windows(2)
            .enumerate()
            .map(|(i, w)| linear(w[0], w[1], vb.pp(format!("layers.{i}"))))
            .collect::<candle_core::Result<_>>()?;
        Ok(Mlp { layers })
    }

    fn forward(&self, x: &CTensor) -> candle_core::Result<CTensor> {
        let mut h = x.clone();
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
    crate::wasm::write_atomic(out, &bytes).map_err(|err| Error::io(out, err))?;
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
    if cfg.layers.len() < 2 || cfg.layers.contains(&0) {
        return Err(Error::invalid(
            "layers",
            "must list at least two non-zero sizes",
        ));
    }
    let n_in = cfg.layers[0];
    if y.is_empty() || x.len() != y.len() * n_in {
        return Err(Error::invalid(
            "training data",
            format!("{} values do not make {} rows of {n_in}", x.len(), y.len()),
        ));
    }
    let classes = *cfg.layers.last().expect("checked non-empty");
    if let Some(bad) = y.iter().find(|&&c| c as usize >= classes) {
        return Err(Error::invalid(
            "training labels",
            format!("label {bad} is not below the {classes} classes"),
        ));
    }
    let dev = Device::Cpu;
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
    let mlp = Mlp { layers };
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
    let bytes = safetensors_f32(tensors);
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
    while (8 + head.len()) % 8 != 0 {
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
    let n_in = *cfg
        .layers
        .first()
        .ok_or_else(|| Error::invalid("layers", "must list at least two non-zero sizes"))?;
    if n_in == 0 || x.len() % n_in != 0 {
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
    let e = |e: candle_core::Error| Error::model("predict", e);
    let dev = Device::Cpu;
    let n_in = cfg.layers.first().copied().unwrap_or(0);
    if n_in == 0 || x.len() % n_in != 0 {
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
            .and_then(|l| candle_nn::ops::softmax_last_dim(&l))
            .and_then(|p| p.flatten_all())
            .and_then(|p| p.to_vec1::<f32>())
            .map_err(e)?;
        out.extend(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Two blobs of points, one per class.
    fn blobs() -> (Vec<f32>, Vec<u32>) {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..60 {
            let c = (i % 2) as u32;
            let j = i as f32 * 0.01;
            x.extend([c as f32 * 2.0 - 1.0 + j, 0.5 - j, j]);
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn the_same_data_and_seed_give_the_same_weights_bytes_and_a_warm_start_goes_on_from_them() {
        let cfg = MlpConfig {
            layers: vec![3, 8, 2],
        };
        let (x, y) = blobs();
        let spec = TrainSpec {
            cfg: &cfg,
            x: &x,
            y: &y,
            holdout: (&[], &[]),
            epochs: 40,
            lr: 0.05,
            seed: 3,
            init: None,
        };
        let (a, report) = train_mlp_bytes(&spec).unwrap();
        let (b, _) = train_mlp_bytes(&spec).unwrap();
        assert_eq!(a, b, "deterministic");
        assert!(report.train_accuracy > 0.95, "{report:?}");
        // The bytes load as safetensors and predict what training measured.
        let pred = mlp_predict(&cfg, &a, &x).unwrap();
        let right = pred.iter().zip(&y).filter(|(p, t)| p == t).count();
        assert_eq!(right as f32 / y.len() as f32, report.train_accuracy);
        // Another seed, other weights; a warm start from `a` with no epochs is `a`.
        let (c, _) = train_mlp_bytes(&TrainSpec {
            seed: 4,
            ..spec.clone()
        })
        .unwrap();
        assert_ne!(a, c);
        let (d, _) = train_mlp_bytes(&TrainSpec {
            epochs: 0,
            init: Some(&a),
            ..spec.clone()
        })
        .unwrap();
        assert_eq!(a, d);
        // Weights of another shape are refused by name.
        let wide = MlpConfig {
            layers: vec![3, 9, 2],
        };
        let err = train_mlp_bytes(&TrainSpec {
            cfg: &wide,
            init: Some(&a),
            ..spec
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("layers.0.weight"), "{err}");
    }
}
