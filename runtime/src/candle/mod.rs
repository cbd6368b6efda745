//! Models in candle: safetensors weights plus a named architecture.
//!
//! - `bert`: a BERT-family encoder (e.g. all-MiniLM-L6-v2) with mean or CLS
//!   pooling and optional L2 normalisation: `input_ids`, `attention_mask`
//!   (i64[batch, tokens]) → `embedding` (f32[batch, hidden]).
//! - `mlp`: a small classifier, `x` (f32[batch, in]) → `logits` (f32[batch, classes]);
//!   [`train_mlp`] trains one.

use candle_core::{DType as CDType, Device, Tensor as CTensor};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::manifest::{Contract, Port};
use crate::value::{Tensor, Value, Values};

mod bert;
mod dense;
mod mlp;

use bert::{Bert, BertConfig, BertOptions};
use mlp::Mlp;
pub use mlp::{
    mlp_predict, mlp_probabilities, regressor_predict, safetensors_f32, train_mlp, train_mlp_bytes,
    train_regressor_bytes, ConvSpec, MlpConfig, RegressionLoss, RegressorReport, TrainReport,
    TrainSpec,
};

/// The architectures this runtime can build.
pub const ARCHITECTURES: &[&str] = &["bert", "cnn", "mlp"];

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
            "mlp" | "cnn" => {
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
                // A `cnn` takes NCHW batches and says its convolutions; an `mlp` takes rows.
                let input = match (architecture, &cfg.conv) {
                    ("cnn", Some(c)) => format!("f32[?,{},{},{}]", c.input[0], c.input[1], c.input[2]),
                    ("mlp", None) => format!("f32[?,{}]", cfg.layers[0]),
                    ("cnn", None) => {
                        return Err(Error::model(
                            step,
                            "architecture `cnn` needs `conv`: {\"input\": [c, h, w], \"channels\": [..]}",
                        ))
                    }
                    _ => {
                        return Err(Error::model(
                            step,
                            "architecture `mlp` takes no `conv`; name the architecture `cnn`",
                        ))
                    }
                };
                let mlp = Mlp::new(vb, &cfg).map_err(err)?;
                Ok(CandleModel {
                    step: step.into(),
                    signature: Contract {
                        inputs: vec![port("x", &input)],
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
                let xt =
                    CTensor::from_vec(x.to_f32()?, x.shape.clone(), &Device::Cpu).map_err(e)?;
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
