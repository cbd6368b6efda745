//! The statistical gate a challenger must pass to replace the champion.
//!
//! Both models are scored on the same frozen holdout, in two slices: the base
//! test split, and field samples labelled by the enterprise that were never
//! trained on. Correctness is paired per sample, so the tests are paired:
//!
//! 1. on the field slice, the exact McNemar test (two-sided binomial on the
//!    discordant pairs) gives p < `alpha`, and the paired-bootstrap 95% lower
//!    bound on Δaccuracy (challenger − champion) is above 0;
//! 2. on the base slice, non-inferiority: the bootstrap lower bound on
//!    Δaccuracy is above −`base_margin`;
//! 3. enough evidence: at least `min_field` field samples and `min_discordant`
//!    discordant pairs, otherwise the answer is "insufficient evidence" and
//!    nothing is released (a point estimate over a handful of samples is not
//!    a reason to ship).
//!
//! 4. cost: the challenger's whole kit keeps within the recipe's latency and
//!    size budget ([`Budget`]), measured beside the champion's.
//!
//! Everything the decision used is in the [`GateReport`]: n, b, c, p, the
//! intervals and each slice's accuracies.

use serde::{Deserialize, Serialize};

/// The thresholds of the gate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateRules {
    pub alpha: f64,
    /// Largest loss of base accuracy allowed (0.01 = one point).
    pub base_margin: f64,
    pub min_field: usize,
    pub min_discordant: u64,
    pub bootstrap_reps: usize,
    /// Seeds the bootstrap, so a report can be recomputed exactly.
    pub seed: u64,
}

impl Default for GateRules {
    fn default() -> Self {
        GateRules {
            alpha: 0.05,
            base_margin: 0.01,
            min_field: 50,
            min_discordant: 10,
            bootstrap_reps: 2000,
            seed: 0x5eed,
        }
    }
}

/// One slice's paired comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SliceReport {
    pub n: usize,
    pub champion_accuracy: f64,
    pub challenger_accuracy: f64,
    /// Champion right, challenger wrong.
    pub b: u64,
    /// Champion wrong, challenger right.
    pub c: u64,
    /// Exact McNemar p-value (two-sided).
    pub p: f64,
    /// Paired-bootstrap 95% interval on challenger − champion accuracy (on
    /// AUC when the recipe's metric is `auc`; `p` is then DeLong's).
    pub delta_low: f64,
    pub delta_high: f64,
    /// Each model's AUC, when the recipe's metric is `auc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger_auc: Option<f64>,
}

/// What the gate decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision", content = "reason")]
pub enum Decision {
    Promote,
    Reject(String),
    InsufficientEvidence(String),
}

/// The gate's decision with every figure it used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub decision: Decision,
    pub field: SliceReport,
    pub base: SliceReport,
    pub rules: GateRules,
    /// The challenger's cost beside its budget (absent in reports of old rounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// Rule 5: what each kit costs, and what the challenger's may.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Median milliseconds per call of each whole kit, measured side by side.
    pub champion_latency_ms: f64,
    pub challenger_latency_ms: f64,
    pub latency_budget_ms: f64,
    pub champion_bytes: u64,
    pub challenger_bytes: u64,
    pub size_budget_bytes: u64,
}

impl Budget {
    /// The budget from the recipe's figures, or from the champion's: 1.5× its
    /// latency + 1 ms (timings on a busy machine wander), 1.1× its size.
    pub fn new(
        champion_latency_ms: f64,
        challenger_latency_ms: f64,
        champion_bytes: u64,
        challenger_bytes: u64,
        latency_budget_ms: Option<f64>,
        size_budget_mb: Option<f64>,
    ) -> Budget {
        Budget {
            champion_latency_ms,
            challenger_latency_ms,
            latency_budget_ms: latency_budget_ms.unwrap_or(champion_latency_ms * 1.5 + 1.0),
            champion_bytes,
            challenger_bytes,
            size_budget_bytes: match size_budget_mb {
                Some(mb) => (mb * 1024.0 * 1024.0) as u64,
                None => champion_bytes + champion_bytes / 10,
            },
        }
    }

    /// Why the challenger is over budget; `None` when it is within.
    pub fn over(&self) -> Option<String> {
        if self.challenger_latency_ms > self.latency_budget_ms {
            return Some(format!(
                "latency: the challenger takes {:.2} ms per call, over the budget of {:.2} ms (champion {:.2} ms)",
                self.challenger_latency_ms, self.latency_budget_ms, self.champion_latency_ms
            ));
        }
        if self.challenger_bytes > self.size_budget_bytes {
            return Some(format!(
                "size: the challenger's kit is {} bytes, over the budget of {} (champion {})",
                self.challenger_bytes, self.size_budget_bytes, self.champion_bytes
            ));
        }
        None
    }
}

/// Per-sample correctness of both models on one slice (same order).
#[derive(Clone, Copy, Debug)]
pub struct Paired<'a> {
    pub champion: &'a [bool],
    pub challenger: &'a [bool],
}

/// ln(n!) by summing logs (exact enough for the binomial tail, n ≤ millions).
fn ln_factorials(n: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(n as usize + 1);
    let mut acc = 0.0;
    out.push(0.0);
    for k in 1..=n {
        acc += (k as f64).ln();
        out.push(acc);
    }
    out
}

/// The exact McNemar test: two-sided binomial p for `b` against `c` discordant pairs.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let lf = ln_factorials(n);
    let ln_half_n = n as f64 * 0.5f64.ln();
    // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space.
    let terms: Vec<f64> = (0..=k)
        .map(|i| lf[n as usize] - lf[i as usize] - lf[(n - i) as usize] + ln_half_n)
        .collect();
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// SplitMix64: a small, seedable generator, so bootstrap intervals reproduce.
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
}

/// Compares two models on one slice.
pub fn compare(slice: Paired<'_>, rules: &GateRules) -> SliceReport {
    let n = slice.champion.len().min(slice.challenger.len());
    let (a, z) = (&slice.champion[..n], &slice.challenger[..n]);
    let acc = |v: &[bool]| {
        if n == 0 {
            0.0
        } else {
            v.iter().filter(|x| **x).count() as f64 / n as f64
        }
    };
    let b = a.iter().zip(z).filter(|(x, y)| **x && !**y).count() as u64;
    let c = a.iter().zip(z).filter(|(x, y)| !**x && **y).count() as u64;
    // Per-sample difference: +1, 0 or -1; resampled with replacement.
    let diff: Vec<i8> = a.iter().zip(z).map(|(x, y)| *y as i8 - *x as i8).collect();
    let (mut lo, mut hi) = (0.0, 0.0);
    if n > 0 {
        let mut rng = SplitMix(rules.seed ^ n as u64);
        let mut means: Vec<f64> = (0..rules.bootstrap_reps.max(1))
            .map(|_| {
                let s: i64 = (0..n).map(|_| diff[rng.below(n)] as i64).sum();
                s as f64 / n as f64
            })
            .collect();
        means.sort_by(f64::total_cmp);
        let at = |q: f64| means[((means.len() - 1) as f64 * q).round() as usize];
        lo = at(0.025);
        hi = at(0.975);
    }
    SliceReport {
        n,
        champion_accuracy: acc(a),
        challenger_accuracy: acc(z),
        b,
        c,
        p: mcnemar_exact(b, c),
        delta_low: lo,
        delta_high: hi,
        champion_auc: None,
        challenger_auc: None,
    }
}

/// Runs the whole gate.
pub fn evaluate(field: Paired<'_>, base: Paired<'_>, rules: GateRules) -> GateReport {
    let f = compare(field, &rules);
    let s = compare(base, &rules);
    let decision = if f.n < rules.min_field || f.b + f.c < rules.min_discordant {
        Decision::InsufficientEvidence(format!(
            "field slice: {} samples and {} discordant pairs; the gate needs at least {} and {}",
            f.n,
            f.b + f.c,
            rules.min_field,
            rules.min_discordant
        ))
    } else if f.p >= rules.alpha || f.c <= f.b {
        Decision::Reject(format!(
            "field slice: McNemar p = {:.4} (b = {}, c = {}), not below {} in the challenger's favour",
            f.p, f.b, f.c, rules.alpha
        ))
    } else if f.delta_low <= 0.0 {
        Decision::Reject(format!(
            "field slice: the 95% lower bound on the accuracy gain is {:.4}, not above 0",
            f.delta_low
        ))
    } else if s.delta_low <= -rules.base_margin {
        Decision::Reject(format!(
            "base slice: the 95% lower bound on the accuracy change is {:.4}, below -{}",
            s.delta_low, rules.base_margin
        ))
    } else {
        Decision::Promote
    };
    GateReport {
        decision,
        field: f,
        base: s,
        rules,
        budget: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenger_over_its_budget_is_named_by_what_it_exceeds() {
        // Defaults follow the champion: 1.5x + 1 ms, 1.1x bytes.
        let b = Budget::new(2.0, 3.9, 1000, 1100, None, None);
        assert_eq!(b.latency_budget_ms, 4.0);
        assert_eq!(b.size_budget_bytes, 1100);
        assert_eq!(b.over(), None);
        let slow = Budget::new(2.0, 4.5, 1000, 1000, None, None);
        assert!(slow
            .over()
            .unwrap()
            .starts_with("latency: the challenger takes 4.50 ms"));
        let big = Budget::new(2.0, 2.0, 1000, 1101, None, None);
        assert!(big
            .over()
            .unwrap()
            .starts_with("size: the challenger's kit is 1101 bytes"));
        // The recipe's own figures win.
        let own = Budget::new(2.0, 9.0, 1000, 2_000_000, Some(10.0), Some(2.0));
        assert_eq!(own.over(), None);
    }

    #[test]
    fn mcnemar_matches_the_binomial_tail() {
        // 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096.
        assert!((mcnemar_exact(10, 2) - 158.0 / 4096.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large counts stay finite and tiny.
        let p = mcnemar_exact(10_000, 12_000);
        assert!(p > 0.0 && p < 1e-40, "{p}");
    }

    fn pattern(n: usize, right_every: usize) -> Vec<bool> {
        (0..n).map(|i| i % right_every != 0).collect()
    }

    #[test]
    fn a_clearly_better_challenger_is_promoted_with_its_figures() {
        let champ: Vec<bool> = (0..200).map(|i| i % 3 != 0).collect(); // 66%
        let chall: Vec<bool> = (0..200).map(|i| i % 3 != 0 || i % 2 == 0).collect(); // 83%
        let base = pattern(300, 10);
        let r = evaluate(
            Paired {
                champion: &champ,
                challenger: &chall,
            },
            Paired {
                champion: &base,
                challenger: &base,
            },
            GateRules::default(),
        );
        assert_eq!(r.decision, Decision::Promote, "{r:?}");
        assert_eq!((r.field.n, r.field.b), (200, 0));
        assert!(
            r.field.c > 30 && r.field.p < 1e-6 && r.field.delta_low > 0.0,
            "{r:?}"
        );
        assert_eq!((r.base.delta_low, r.base.delta_high), (0.0, 0.0));
    }

    #[test]
    fn a_worse_challenger_is_rejected_and_too_few_samples_are_insufficient() {
        let champ = pattern(200, 10);
        let shuffled: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
        let base = pattern(300, 10);
        let r = evaluate(
            Paired {
                champion: &champ,
                challenger: &shuffled,
            },
            Paired {
                champion: &base,
                challenger: &base,
            },
            GateRules::default(),
        );
        assert!(matches!(r.decision, Decision::Reject(_)), "{r:?}");
        let few = pattern(20, 3);
        let r = evaluate(
            Paired {
                champion: &few,
                challenger: &vec![true; 20],
            },
            Paired {
                champion: &base,
                challenger: &base,
            },
            GateRules::default(),
        );
        assert!(
            matches!(r.decision, Decision::InsufficientEvidence(_)),
            "{r:?}"
        );
    }

    #[test]
    fn a_challenger_that_loses_the_base_slice_is_rejected() {
        let champ: Vec<bool> = (0..200).map(|i| i % 3 != 0).collect();
        let chall: Vec<bool> = (0..200).map(|i| i % 3 != 0 || i % 2 == 0).collect();
        let base = vec![true; 300];
        let forgot: Vec<bool> = (0..300).map(|i| i % 10 != 0).collect();
        let r = evaluate(
            Paired {
                champion: &champ,
                challenger: &chall,
            },
            Paired {
                champion: &base,
                challenger: &forgot,
            },
            GateRules::default(),
        );
        match &r.decision {
            Decision::Reject(why) => assert!(why.starts_with("base slice"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_report_is_the_same_when_recomputed() {
        let champ = pattern(100, 4);
        let chall = pattern(100, 7);
        let one = compare(
            Paired {
                champion: &champ,
                challenger: &chall,
            },
            &GateRules::default(),
        );
        let two = compare(
            Paired {
                champion: &champ,
                challenger: &chall,
            },
            &GateRules::default(),
        );
        assert_eq!(one, two);
        assert!(one.delta_low <= one.delta_high);
    }
}
