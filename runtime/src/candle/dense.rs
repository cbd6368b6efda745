//! Training dense nets without a graph: the forward pass, the gradients and
//! AdamW written out for a stack of linear layers with ReLU between them.
//!
//! candle's autograd builds and frees a graph of a few dozen small tensors
//! each epoch and runs AdamW as ten tensor operations per parameter; for the
//! nets the line and the loop train (tens of thousands of weights, full
//! batches of thousands of rows) that bookkeeping costs more than the
//! arithmetic. Here every buffer is allocated once, the three products per
//! layer go to `gemm` (the kernels candle's CPU backend itself uses, with its
//! threads for the larger ones), and each optimiser step is one pass over a
//! parameter. The mathematics is candle's: `Linear` (x·Wᵀ + b), ReLU whose
//! gradient passes where the input is >= 0, cross-entropy as the mean negative
//! log-softmax, `mse`, the mean absolute error, and `AdamW` with its defaults
//! (β 0.9 / 0.999, ε 1e-8, weight decay 0.01). The results equal candle's up
//! to the order of floating-point sums, and the same inputs give the same bytes.

use gemm::Parallelism;

/// What the last layer's outputs are trained against.
#[derive(Clone, Copy, Debug)]
pub(super) enum Target<'a> {
    /// Class labels: cross-entropy of the softmax.
    Classes(&'a [u32]),
    /// One value per row: mean squared error.
    Squared(&'a [f32]),
    /// One value per row: mean absolute error.
    Absolute(&'a [f32]),
}

/// A dense net's parameters: per layer, the weight (out × in, row-major, as
/// candle's `Linear` holds it) and the bias.
#[derive(Clone, Debug)]
pub(super) struct Dense {
    pub sizes: Vec<usize>,
    pub weights: Vec<Vec<f32>>,
    pub biases: Vec<Vec<f32>>,
}

/// `dst (m×n) = lhs (m×k) · rhs (k×n)`, each given by its row and column
/// strides, overwriting `dst`.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    // Every index the product touches lies inside its slice.
    let last = |rs: usize, cs: usize, r: usize, c: usize| (r - 1) * rs + (c - 1) * cs;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    assert!(last(dst_rs, dst_cs, m, n) < dst.len(), "dst out of bounds");
    assert!(last(lhs_rs, lhs_cs, m, k) < lhs.len(), "lhs out of bounds");
    assert!(last(rhs_rs, rhs_cs, k, n) < rhs.len(), "rhs out of bounds");
    // Below about 16 million multiply-adds (a 64-32-10 net on 1,400 rows is
    // 3 million) a second thread costs more than it saves: measured 0.19 s
    // against 0.11 s for the training bench's 400 epochs.
    let parallelism = if m * n * k >= 1 << 24 {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every element gemm reads or writes
    // inside the slices; `dst` is borrowed mutably and does not alias them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// AdamW's moments for one parameter.
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Moments {
    fn new(len: usize) -> Moments {
        Moments {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    /// candle's `AdamW::step` for one parameter, in one pass.
    fn step(&mut self, theta: &mut [f32], grad: &[f32], c: &StepConsts) {
        for (((t, g), m), v) in theta.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            let next_m = *m * c.beta1 + *g * c.one_minus_beta1;
            let next_v = *v * c.beta2 + (*g * *g) * c.one_minus_beta2;
            let m_hat = next_m * c.scale_m;
            let v_hat = next_v * c.scale_v;
            let adjusted = m_hat / (v_hat.sqrt() + c.eps);
            *t = *t * c.decay - adjusted * c.lr;
            *m = next_m;
            *v = next_v;
        }
    }
}

/// The scalars of one AdamW step, as candle turns its f64 parameters into f32.
struct StepConsts {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    scale_m: f32,
    scale_v: f32,
    decay: f32,
    eps: f32,
    lr: f32,
}

impl StepConsts {
    fn new(lr: f64, t: usize) -> StepConsts {
        let (beta1, beta2, eps, weight_decay) = (0.9f64, 0.999f64, 1e-8f64, 0.01f64);
        StepConsts {
            beta1: beta1 as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            scale_m: (1.0 / (1.0 - beta1.powi(t as i32))) as f32,
            scale_v: (1.0 / (1.0 - beta2.powi(t as i32))) as f32,
            decay: (1.0 - lr * weight_decay) as f32,
            eps: eps as f32,
            lr: lr as f32,
        }
    }
}

impl Dense {
    fn layers(&self) -> usize {
        self.weights.len()
    }

    /// Trains full-batch for `epochs` on `x` (rows × sizes[0]); returns the
    /// last epoch's loss (the loss before its step, as candle reports it).
    pub fn train(&mut self, x: &[f32], target: Target<'_>, epochs: usize, lr: f64) -> f32 {
        let layers = self.layers();
        let n_in = self.sizes[0];
        let rows = x.len() / n_in;
        let out_w = self.sizes[layers];
        // Pre-activations of every layer; the activations of the hidden ones.
        let mut z: Vec<Vec<f32>> = (0..layers)
            .map(|l| vec![0.0; rows * self.sizes[l + 1]])
            .collect();
        let mut a: Vec<Vec<f32>> = (0..layers.saturating_sub(1))
            .map(|l| vec![0.0; rows * self.sizes[l + 1]])
            .collect();
        // The loss's gradient with respect to each layer's pre-activation.
        let mut dz: Vec<Vec<f32>> = z.iter().map(|v| vec![0.0; v.len()]).collect();
        let mut dw: Vec<Vec<f32>> = self.weights.iter().map(|w| vec![0.0; w.len()]).collect();
        let mut db: Vec<Vec<f32>> = self.biases.iter().map(|b| vec![0.0; b.len()]).collect();
        let mut mw: Vec<Moments> = self.weights.iter().map(|w| Moments::new(w.len())).collect();
        let mut mb: Vec<Moments> = self.biases.iter().map(|b| Moments::new(b.len())).collect();
        let mut loss = f32::NAN;
        for t in 1..=epochs {
            // Forward.
            for l in 0..layers {
                let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
                let input: &[f32] = if l == 0 { x } else { &a[l - 1] };
                matmul(
                    rows,
                    fan_out,
                    fan_in,
                    &mut z[l],
                    (fan_out, 1),
                    input,
                    (fan_in, 1),
                    &self.weights[l],
                    (1, fan_in),
                );
                for row in z[l].chunks_exact_mut(fan_out) {
                    for (v, b) in row.iter_mut().zip(&self.biases[l]) {
                        *v += b;
                    }
                }
                if l + 1 < layers {
                    for (o, v) in a[l].iter_mut().zip(&z[l]) {
                        *o = v.max(0.0);
                    }
                }
            }
            // The loss and its gradient at the outputs.
            loss = output_gradient(&z[layers - 1], out_w, target, &mut dz[layers - 1]);
            // Backward.
            for l in (0..layers).rev() {
                let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
                let input: &[f32] = if l == 0 { x } else { &a[l - 1] };
                // dW (out × in) = dzᵀ · input.
                matmul(
                    fan_out,
                    fan_in,
                    rows,
                    &mut dw[l],
                    (fan_in, 1),
                    &dz[l],
                    (1, fan_out),
                    input,
                    (fan_in, 1),
                );
                db[l].iter_mut().for_each(|v| *v = 0.0);
                for row in dz[l].chunks_exact(fan_out) {
                    for (s, g) in db[l].iter_mut().zip(row) {
                        *s += g;
                    }
                }
                if l > 0 {
                    // d(input) (rows × in) = dz · W, then through the ReLU.
                    let (below, here) = dz.split_at_mut(l);
                    let prev = &mut below[l - 1];
                    matmul(
                        rows,
                        fan_in,
                        fan_out,
                        prev,
                        (fan_in, 1),
                        &here[0],
                        (fan_out, 1),
                        &self.weights[l],
                        (fan_in, 1),
                    );
                    for (g, pre) in prev.iter_mut().zip(&z[l - 1]) {
                        if *pre < 0.0 {
                            *g = 0.0;
                        }
                    }
                }
            }
            let c = StepConsts::new(lr, t);
            for l in 0..layers {
                mw[l].step(&mut self.weights[l], &dw[l], &c);
                mb[l].step(&mut self.biases[l], &db[l], &c);
            }
        }
        loss
    }
}

/// Writes d(loss)/d(outputs) into `grad` and returns the loss, for outputs
/// `out` (rows × width).
fn output_gradient(out: &[f32], width: usize, target: Target<'_>, grad: &mut [f32]) -> f32 {
    let rows = out.len() / width;
    let inv = 1.0 / rows as f32;
    match target {
        Target::Classes(y) => {
            let mut sum = 0.0f64;
            for ((row, g), &label) in out
                .chunks_exact(width)
                .zip(grad.chunks_exact_mut(width))
                .zip(y)
            {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0.0f32;
                for (gv, v) in g.iter_mut().zip(row) {
                    *gv = (v - max).exp();
                    total += *gv;
                }
                let log_total = total.ln();
                sum += f64::from(row[label as usize] - max - log_total);
                for gv in g.iter_mut() {
                    *gv = *gv / total * inv;
                }
                g[label as usize] -= inv;
            }
            (-sum / rows as f64) as f32
        }
        Target::Squared(y) => {
            let mut sum = 0.0f64;
            for ((g, o), t) in grad.iter_mut().zip(out).zip(y) {
                let d = o - t;
                sum += f64::from(d * d);
                *g = 2.0 * d * inv;
            }
            (sum / rows as f64) as f32
        }
        Target::Absolute(y) => {
            let mut sum = 0.0f64;
            for ((g, o), t) in grad.iter_mut().zip(out).zip(y) {
                let d = o - t;
                sum += f64::from(d.abs());
                *g = if d >= 0.0 { inv } else { -inv };
            }
            (sum / rows as f64) as f32
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_product_follows_the_strides_given() {
        // [[1, 2], [3, 4]] · [[5, 6], [7, 8]] and its transposes.
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut d = [0.0f32; 4];
        matmul(2, 2, 2, &mut d, (2, 1), &a, (2, 1), &b, (2, 1));
        assert_eq!(d, [19.0, 22.0, 43.0, 50.0]);
        // aᵀ · b
        matmul(2, 2, 2, &mut d, (2, 1), &a, (1, 2), &b, (2, 1));
        assert_eq!(d, [26.0, 30.0, 38.0, 44.0]);
        // a · bᵀ
        matmul(2, 2, 2, &mut d, (2, 1), &a, (2, 1), &b, (1, 2));
        assert_eq!(d, [17.0, 23.0, 39.0, 53.0]);
    }

    #[test]
    fn the_softmax_gradient_sums_to_zero_per_row_and_the_loss_is_the_mean_negative_log() {
        let out = [0.0f32, 0.0, 1.0, 3.0];
        let mut g = [0.0f32; 4];
        let loss = output_gradient(&out, 2, Target::Classes(&[0, 1]), &mut g);
        let want = (2f32.ln() + (1.0 + (-2f32).exp()).ln()) / 2.0;
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
        assert!((g[0] + g[1]).abs() < 1e-7 && (g[2] + g[3]).abs() < 1e-7);
        assert!((g[0] - (0.25 - 0.5)).abs() < 1e-7, "{g:?}");
    }
}
