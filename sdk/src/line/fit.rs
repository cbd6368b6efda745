//! Training with candle and judging on the holdout: the metric with a 95%
//! bootstrap interval, the trivial baseline (the best constant answer), and
//! whether the model beats it beyond chance (a paired bootstrap interval of
//! the difference that excludes zero).

use algobay_runtime::candle::{
    mlp_probabilities, regressor_predict, train_mlp_bytes, train_regressor_bytes, ConvSpec,
    MlpConfig, RegressionLoss, TrainSpec,
};

use super::data::Prepared;
pub use super::features::Features;
use super::recipe::{ImageSpec, ModelSpec, Recipe, TaskKind};

/// A metric with its 95% interval on `n` holdout rows, and the baseline's value.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Score {
    pub metric: String,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    pub baseline: f64,
    /// What the baseline predicts: "always class `x`", "always 151.3".
    pub baseline_is: String,
    /// The 95% interval of the model's metric minus the baseline's, on the
    /// same bootstrap resamples (paired).
    pub diff_lo: f64,
    pub diff_hi: f64,
    /// Accuracy (classification) or MAE (regression), alongside.
    pub other: Vec<(String, f64)>,
}

impl Score {
    /// Higher is better for classification metrics, lower for errors.
    pub fn higher_is_better(&self) -> bool {
        !matches!(self.metric.as_str(), "rmse" | "mae")
    }

    /// Whether the model is better than the baseline beyond chance: the
    /// paired interval of the difference excludes zero on the good side.
    pub fn beats_baseline(&self) -> bool {
        if self.higher_is_better() {
            self.diff_lo > 0.0
        } else {
            self.diff_hi < 0.0
        }
    }

    /// A perfect score, which on a small holdout says more about the data than the model.
    pub fn is_perfect(&self) -> bool {
        if self.higher_is_better() {
            self.value >= 1.0
        } else {
            self.value <= 0.0
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} {:.4} [{:.4}, {:.4}] on {} holdout rows; baseline {:.4} ({}), difference [{:+.4}, {:+.4}]",
            self.metric,
            self.value,
            self.lo,
            self.hi,
            self.n,
            self.baseline,
            self.baseline_is,
            self.diff_lo,
            self.diff_hi
        )
    }
}

/// A trained model and how it did.
#[derive(Debug)]
pub struct Fitted {
    pub layers: Vec<usize>,
    /// A cnn's convolutions (the kit lays rows out as NCHW pictures for them).
    pub conv: Option<ConvSpec>,
    pub weights: Vec<u8>,
    pub score: Score,
    /// Holdout predictions: class index (classification) or value.
    pub predictions: Vec<f64>,
    /// Regression: the target's training mean and deviation (the model predicts
    /// the standardised target).
    pub target_scale: (f64, f64),
    /// Two classes: the holdout's probabilities of the second (positive)
    /// class, and the decision threshold that balances the error rates on the
    /// training rows (rounded to 4 decimals, as kits carry it).
    pub positive: Vec<f64>,
    pub threshold: Option<f64>,
    /// Classification: the holdout's class probabilities, row after row.
    pub probabilities: Vec<f32>,
    pub train_seconds: f64,
}

/// A classifier's temperature, fitted on half the holdout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// Logits are divided by it before the softmax (above 1: less sure).
    pub temperature: f64,
    /// Expected calibration error (10 bins) on the other half, before and after.
    pub ece_before: f64,
    pub ece_after: f64,
    /// Rows it was fitted on, and rows it was checked on.
    pub fitted_on: usize,
    pub checked_on: usize,
}

/// The temperature (0.25 to 8, on a log grid, rounded to 3 decimals) that
/// minimises the negative log-likelihood of the even-numbered holdout rows;
/// its effect is measured on the odd-numbered ones. `probs` are the holdout's
/// class probabilities (`k` a row), `truth` its classes.
pub fn calibrate(probs: &[f32], k: usize, truth: &[u32]) -> Calibration {
    let rows: Vec<&[f32]> = probs.chunks_exact(k).collect();
    let scaled = |p: &[f32], t: f64| -> Vec<f64> {
        let logits: Vec<f64> = p.iter().map(|&v| (v.max(1e-12) as f64).ln() / t).collect();
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect()
    };
    let nll = |t: f64| -> f64 {
        (0..rows.len())
            .step_by(2)
            .map(|i| -scaled(rows[i], t)[truth[i] as usize].max(1e-12).ln())
            .sum()
    };
    let mut best = (f64::MAX, 1.0);
    for g in 0..=60 {
        let t = ((2f64.ln() * (g as f64 / 12.0 - 2.0)).exp() * 1000.0).round() / 1000.0;
        let v = nll(t);
        if v < best.0 - 1e-9 {
            best = (v, t);
        }
    }
    let ece = |t: f64| -> f64 {
        let mut bins = [(0usize, 0f64, 0f64); 10];
        let odd: Vec<usize> = (1..rows.len()).step_by(2).collect();
        for &i in &odd {
            let p = scaled(rows[i], t);
            let (c, conf) = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(c, v)| (c, *v))
                .unwrap_or((0, 0.0));
            let b = &mut bins[((conf * 10.0) as usize).min(9)];
            b.0 += 1;
            b.1 += conf;
            b.2 += f64::from(u8::from(c as u32 == truth[i]));
        }
        let n = odd.len().max(1) as f64;
        // Σ over bins of (rows in bin / n) · |mean confidence − accuracy|
        bins.iter()
            .map(|(_, conf, right)| (conf - right).abs())
            .sum::<f64>()
            / n
    };
    Calibration {
        temperature: best.1,
        ece_before: ece(1.0),
        ece_after: ece(best.1),
        fitted_on: rows.len().div_ceil(2),
        checked_on: rows.len() / 2,
    }
}

/// Fewest holdout rows on which a perfect score is believed.
pub const PERFECT_MIN_ROWS: usize = 1000;

/// Trains every model of a recipe at once, a thread each (a dense net's
/// training is one thread's work), and returns their outcomes in order.
pub fn fit_all(p: &Prepared, f: &Features, r: &Recipe) -> Vec<Result<Fitted, String>> {
    std::thread::scope(|s| {
        let running: Vec<_> = r
            .model
            .iter()
            .map(|m| s.spawn(move || fit(p, f, r.task.kind, r.metric(), m, r.image.as_ref())))
            .collect();
        running
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the training thread panicked".into()))
            })
            .collect()
    })
}

/// Trains `spec` on the training rows and scores it on the holdout.
pub fn fit(
    p: &Prepared,
    f: &Features,
    kind: TaskKind,
    metric: &str,
    spec: &ModelSpec,
    image: Option<&ImageSpec>,
) -> Result<Fitted, String> {
    let start = std::time::Instant::now();
    let d = f.width();
    let out = match kind {
        TaskKind::Classification => p.classes.len(),
        TaskKind::Regression => 1,
    };
    // A cnn's convolutions read the row as the recipe's gray picture.
    let conv = match (spec.architecture.as_str(), image) {
        ("cnn", Some(im)) if im.width * im.height == d => Some(ConvSpec {
            input: [1, im.height, im.width],
            channels: spec.channels.clone(),
        }),
        ("cnn", _) => {
            return Err(format!(
                "a cnn needs the {d} features to be the recipe's [image] pixels"
            ))
        }
        _ => None,
    };
    let mut layers = vec![conv.as_ref().map_or(d, ConvSpec::output_width)];
    layers.extend(&spec.hidden);
    layers.push(out);
    let cfg = MlpConfig {
        layers: layers.clone(),
        conv: conv.clone(),
    };
    let x = f.matrix(p, &p.train);
    let hx = f.matrix(p, &p.holdout);
    match kind {
        TaskKind::Classification => {
            let y: Vec<u32> = p.train.iter().map(|&i| p.y_class[i]).collect();
            let (weights, _) = train_mlp_bytes(&TrainSpec {
                cfg: &cfg,
                x: &x,
                y: &y,
                holdout: (&[], &[]),
                epochs: spec.epochs,
                lr: spec.learning_rate,
                seed: spec.seed,
                init: None,
            })
            .map_err(|e| e.to_string())?;
            let probs = mlp_probabilities(&cfg, &weights, &hx).map_err(|e| e.to_string())?;
            let k = p.classes.len();
            let threshold = if k == 2 {
                let tp = mlp_probabilities(&cfg, &weights, &x).map_err(|e| e.to_string())?;
                let scores: Vec<f64> = tp.chunks_exact(2).map(|r| r[1] as f64).collect();
                Some(balanced_threshold(&scores, &y))
            } else {
                None
            };
            let truth: Vec<u32> = p.holdout.iter().map(|&i| p.y_class[i]).collect();
            let pred: Vec<u32> = probs
                .chunks_exact(k)
                .map(|r| {
                    r.iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(i, _)| i as u32)
                        .unwrap_or(0)
                })
                .collect();
            let pos: Vec<f64> = probs.chunks_exact(k).map(|r| r[k - 1] as f64).collect();
            let score_of = |idx: &[usize]| -> f64 {
                match metric {
                    "macro_f1" => macro_f1(idx, &truth, &pred, k),
                    "auc" => auc(idx, &truth, &pos),
                    _ => accuracy(idx, &truth, &pred),
                }
            };
            let all: Vec<usize> = (0..truth.len()).collect();
            let value = score_of(&all);
            let (lo, hi) = bootstrap(truth.len(), &score_of);
            // The baseline: the best a constant answer does on this very holdout
            // (stricter than the training majority class, which may be rarer here).
            let constant_score = |idx: &[usize], c: u32| -> f64 {
                let constant = vec![c; truth.len()];
                match metric {
                    "auc" => 0.5,
                    "macro_f1" => macro_f1(idx, &truth, &constant, k),
                    _ => accuracy(idx, &truth, &constant),
                }
            };
            let best = (0..k as u32)
                .map(|c| (constant_score(&all, c), c))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap_or((0.0, 0));
            let baseline = best.0;
            let baseline_is = if metric == "auc" {
                "a constant score".to_owned()
            } else {
                format!("always class `{}`", p.classes[best.1 as usize])
            };
            let (diff_lo, diff_hi) = bootstrap(truth.len(), &|idx| {
                score_of(idx) - constant_score(idx, best.1)
            });
            Ok(Fitted {
                layers,
                conv: conv.clone(),
                weights,
                score: Score {
                    metric: metric.into(),
                    value,
                    lo,
                    hi,
                    n: truth.len(),
                    baseline,
                    baseline_is,
                    diff_lo,
                    diff_hi,
                    other: vec![("accuracy".into(), accuracy(&all, &truth, &pred))],
                },
                predictions: pred.iter().map(|&c| c as f64).collect(),
                target_scale: (0.0, 1.0),
                positive: if k == 2 { pos } else { Vec::new() },
                threshold,
                probabilities: probs,
                train_seconds: start.elapsed().as_secs_f64(),
            })
        }
        TaskKind::Regression => {
            let ys: Vec<f64> = p.train.iter().map(|&i| p.y_value[i] as f64).collect();
            let n = ys.len().max(1) as f64;
            let mean = ys.iter().sum::<f64>() / n;
            let sd = (ys.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n)
                .sqrt()
                .max(1e-12);
            let z: Vec<f32> = ys.iter().map(|v| ((v - mean) / sd) as f32).collect();
            // Trained on the error it is judged by.
            let loss = if metric == "mae" {
                RegressionLoss::Absolute
            } else {
                RegressionLoss::Squared
            };
            let (weights, _) = train_regressor_bytes(
                &cfg,
                &x,
                &z,
                spec.epochs,
                spec.learning_rate,
                spec.seed,
                loss,
            )
            .map_err(|e| e.to_string())?;
            let zp = regressor_predict(&cfg, &weights, &hx).map_err(|e| e.to_string())?;
            let pred: Vec<f64> = zp.iter().map(|v| *v as f64 * sd + mean).collect();
            let truth: Vec<f64> = p.holdout.iter().map(|&i| p.y_value[i] as f64).collect();
            // The error `name`s (rmse, mae) of predictions `pr` on rows `idx`.
            let error = |name: &str, idx: &[usize], pr: &dyn Fn(usize) -> f64| -> f64 {
                let m = idx.len().max(1) as f64;
                if name == "mae" {
                    idx.iter().map(|&i| (pr(i) - truth[i]).abs()).sum::<f64>() / m
                } else {
                    (idx.iter().map(|&i| (pr(i) - truth[i]).powi(2)).sum::<f64>() / m).sqrt()
                }
            };
            let err = |idx: &[usize], pr: &dyn Fn(usize) -> f64| error(metric, idx, pr);
            let all: Vec<usize> = (0..truth.len()).collect();
            let model = |i: usize| pred[i];
            let value = err(&all, &model);
            let (lo, hi) = bootstrap(truth.len(), &|idx| err(idx, &model));
            // The baseline: the best constant on this holdout (its mean for
            // RMSE, its median for MAE), stricter than the training mean.
            let constant = if metric == "mae" {
                let mut t = truth.clone();
                t.sort_by(f64::total_cmp);
                t.get(t.len() / 2).copied().unwrap_or(mean)
            } else {
                truth.iter().sum::<f64>() / truth.len().max(1) as f64
            };
            let baseline = err(&all, &|_| constant);
            let (diff_lo, diff_hi) = bootstrap(truth.len(), &|idx| {
                err(idx, &model) - err(idx, &|_| constant)
            });
            let other_name = if metric == "mae" { "rmse" } else { "mae" };
            let other = vec![(other_name.into(), error(other_name, &all, &model))];
            Ok(Fitted {
                layers,
                conv: conv.clone(),
                weights,
                score: Score {
                    metric: metric.into(),
                    value,
                    lo,
                    hi,
                    n: truth.len(),
                    baseline,
                    baseline_is: format!("always {constant:.4}"),
                    diff_lo,
                    diff_hi,
                    other,
                },
                predictions: pred,
                target_scale: (mean, sd),
                positive: Vec::new(),
                threshold: None,
                probabilities: Vec::new(),
                train_seconds: start.elapsed().as_secs_f64(),
            })
        }
    }
}

/// The threshold on the positive class's probability that maximises balanced
/// accuracy (the mean of the two classes' recall) on these rows, rounded to 4
/// decimals; ties go to the one nearest 0.5.
pub fn balanced_threshold(scores: &[f64], truth: &[u32]) -> f64 {
    let pos = truth.iter().filter(|&&t| t == 1).count().max(1) as f64;
    let neg = truth.iter().filter(|&&t| t != 1).count().max(1) as f64;
    let mut candidates: Vec<f64> = scores
        .iter()
        .map(|s| (s * 1e4).round() / 1e4)
        .filter(|t| *t > 0.0 && *t < 1.0)
        .collect();
    candidates.push(0.5);
    candidates.sort_by(f64::total_cmp);
    candidates.dedup();
    // Rows by score, then one sweep: below each threshold so many of each class.
    let mut rows: Vec<(f64, bool)> = scores
        .iter()
        .zip(truth)
        .map(|(s, y)| (*s, *y == 1))
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut below, mut pos_below, mut neg_below) = (0, 0usize, 0usize);
    let mut best: (f64, f64) = (f64::MIN, 0.5);
    for t in candidates {
        while below < rows.len() && rows[below].0 < t {
            if rows[below].1 {
                pos_below += 1;
            } else {
                neg_below += 1;
            }
            below += 1;
        }
        let tp = pos - pos_below as f64;
        let b = (tp / pos + neg_below as f64 / neg) / 2.0;
        let better = b > best.0 + 1e-12
            || ((b - best.0).abs() <= 1e-12 && (t - 0.5).abs() < (best.1 - 0.5).abs());
        if better {
            best = (b, t);
        }
    }
    best.1
}

fn accuracy(idx: &[usize], truth: &[u32], pred: &[u32]) -> f64 {
    let right = idx.iter().filter(|&&i| truth[i] == pred[i]).count();
    right as f64 / idx.len().max(1) as f64
}

fn macro_f1(idx: &[usize], truth: &[u32], pred: &[u32], k: usize) -> f64 {
    let mut sum = 0.0;
    let mut present = 0;
    for c in 0..k as u32 {
        let tp = idx
            .iter()
            .filter(|&&i| truth[i] == c && pred[i] == c)
            .count() as f64;
        let fp = idx
            .iter()
            .filter(|&&i| truth[i] != c && pred[i] == c)
            .count() as f64;
        let fnn = idx
            .iter()
            .filter(|&&i| truth[i] == c && pred[i] != c)
            .count() as f64;
        if tp + fnn == 0.0 {
            continue;
        }
        present += 1;
        if tp > 0.0 {
            sum += 2.0 * tp / (2.0 * tp + fp + fnn);
        }
    }
    sum / present.max(1) as f64
}

/// The area under the ROC curve of the last class's score (rank statistic, ties halved).
fn auc(idx: &[usize], truth: &[u32], score: &[f64]) -> f64 {
    let top = truth.iter().copied().max().unwrap_or(1);
    let mut v: Vec<(f64, bool)> = idx.iter().map(|&i| (score[i], truth[i] == top)).collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut pos, mut i) = (0.0, 0usize, 0usize);
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0;
        for e in &v[i..j] {
            if e.1 {
                rank_sum += avg;
                pos += 1;
            }
        }
        i = j;
    }
    let neg = v.len() - pos;
    if pos == 0 || neg == 0 {
        return 0.5;
    }
    (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64
}

/// A 95% percentile interval from 500 seeded bootstrap resamples of `n` rows.
fn bootstrap(n: usize, score: &dyn Fn(&[usize]) -> f64) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut values: Vec<f64> = (0..500)
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| (next() % n as u64) as usize).collect();
            score(&idx)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    (values[12], values[487])
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_over_confident_classifier_gets_a_temperature_above_one() {
        // Always 99% sure of class 0, right 70% of the time.
        let probs: Vec<f32> = (0..1000).flat_map(|_| [0.99f32, 0.01]).collect();
        let truth: Vec<u32> = (0..1000).map(|i| u32::from((i / 2) % 10 >= 7)).collect();
        let c = super::calibrate(&probs, 2, &truth);
        assert!(c.temperature > 1.5, "{c:?}");
        assert!(c.ece_after < c.ece_before / 2.0, "{c:?}");
        assert_eq!((c.fitted_on, c.checked_on), (500, 500));
    }

    #[test]
    fn the_decision_threshold_balances_the_two_recalls() {
        // Positives score 0.3 and above, negatives below: 0.3 separates them
        // perfectly, where 0.5 would miss two positives of three.
        let scores = [0.1, 0.2, 0.25, 0.3, 0.35, 0.9];
        let truth = [0, 0, 0, 1, 1, 1];
        assert_eq!(super::balanced_threshold(&scores, &truth), 0.3);
        // Nothing to separate: the usual 0.5.
        assert_eq!(super::balanced_threshold(&[0.4, 0.4], &[0, 1]), 0.5);
    }

    use super::*;

    #[test]
    fn metrics_match_hand_computed_values() {
        let truth = [0, 0, 1, 1];
        let pred = [0, 1, 1, 1];
        let all = [0, 1, 2, 3];
        assert_eq!(accuracy(&all, &truth, &pred), 0.75);
        // class 0: tp1 fp0 fn1 → 2/3; class 1: tp2 fp1 fn0 → 4/5.
        assert!((macro_f1(&all, &truth, &pred, 2) - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        assert_eq!(auc(&all, &truth, &[0.1, 0.4, 0.35, 0.8]), 0.75);
        assert_eq!(auc(&all, &truth, &[0.5; 4]), 0.5);
        let (lo, hi) = bootstrap(4, &|idx| accuracy(idx, &truth, &pred));
        assert!(lo <= 0.75 && hi >= 0.75 && lo >= 0.0 && hi <= 1.0);
    }
}
