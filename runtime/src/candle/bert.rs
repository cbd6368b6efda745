//! BERT-family encoders for [`super::CandleModel`].

use candle_core::{DType as CDType, Module, Tensor as CTensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct BertConfig {
    vocab_size: usize,
    pub(super) hidden_size: usize,
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
pub(super) struct BertOptions {
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

pub(super) struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<BertLayer>,
    heads: usize,
    opts: BertOptions,
}

impl Bert {
    pub(super) fn load(
        vb: VarBuilder,
        c: &BertConfig,
        opts: BertOptions,
    ) -> candle_core::Result<Bert> {
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

    pub(super) fn embed(&self, ids: &CTensor, mask: &CTensor) -> candle_core::Result<CTensor> {
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
