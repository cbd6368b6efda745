//! The statistical gate a challenger must pass to replace the champion.
//!
//! Both models are scored on the same frozen holdout, in two slices: the base
//! test split, and field samples labelled by the enterprise that were never
//! trained on. Correctness is paired per sample, so the tests are paired:
//!
//! 1. enough evidence: at least `min_field` field samples and `min_discordant`
//!    discordant pairs, otherwise the answer is "insufficient evidence" and
//!    nothing is released (a point estimate over a handful of samples is not
//!    a reason to ship);
//! 2. on the field slice, the exact McNemar test (two-sided binomial on the
//!    discordant pairs) gives p < `alpha`, and the paired-bootstrap 95% lower
//!    bound on Δaccuracy (challenger − champion) is above 0;
//! 3. on the base slice, non-inferiority: the score test for paired
//!    proportions (Nam; Tango 1998) rejects "the challenger loses at least
//!    `base_margin`" at level `alpha` ([`non_inferiority`]). It can pass a
//!    challenger that answers every base row as the champion does once the
//!    slice has z²(1 − M)/M rows (268 for one point at 5%, 52 for five). When
//!    it neither passes nor shows the challenger worse by the margin, a slice
//!    smaller than what the test needs for 80% power (at the discordance
//!    seen) ends as "insufficient base evidence: N rows needed", not rejected;
//! 4. cost: the challenger's whole kit keeps within the recipe's latency and
//!    size budget ([`Budget`]), measured beside the champion's.
//!
//! Everything the decision used is in the [`GateReport`]: n, b, c, p, the
//! intervals, each slice's accuracies, the base test's statistic and the
//! rows it needs, and which rule decided.

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

/// The power the base rule plans for: a slice with fewer rows than this power
/// needs is "insufficient", never a rejection.
pub const BASE_POWER: f64 = 0.8;

impl Default for GateRules {
    /// Five points of base accuracy: what the base slice of a few hundred
    /// rows a recipe's holdout gives can show at 5% (52 rows when nothing
    /// changed, 127 at 3% discordance and 167 at 5%, with 80% power). A round
    /// that learns a drift may give up that much of the world before it, no
    /// more, and only with a field gain shown. Three points would need 282
    /// rows at 3% discordance and about 1,000 to pass a real 1.7-point loss;
    /// one point, about 1,900 rows at 3%. A recipe that wants a finer margin
    /// brings a larger holdout.
    fn default() -> Self {
        GateRules {
            alpha: 0.05,
            base_margin: 0.05,
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

/// The base rule's test: non-inferiority of paired accuracies within a margin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NonInferiority {
    pub n: usize,
    /// Champion right, challenger wrong; champion wrong, challenger right.
    pub b: u64,
    pub c: u64,
    pub margin: f64,
    /// The score statistic at Δ = −margin (positive: the challenger is
    /// within the margin), and its one-sided p.
    pub z: f64,
    pub p: f64,
    /// Rows the test needs for [`BASE_POWER`] when the models are equally
    /// accurate and disagree as often as they did here.
    pub rows_needed: usize,
    pub power: f64,
    pub verdict: Verdict,
}

/// What the base test found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Shown within the margin (p < alpha).
    NonInferior,
    /// Shown worse than the margin allows (the mirror test, p < alpha).
    Inferior,
    /// Neither, on a slice big enough for the planned power.
    NotShown,
    /// Neither, on a slice smaller than the planned power needs.
    TooFewRows,
}

/// Φ⁻¹(p), by bisection on the normal tail (ample for the quantiles a gate uses).
pub fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if 1.0 - super::auc::upper_tail(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The restricted maximum-likelihood estimate of (p_b, p_c), the shares of
/// rows only the champion and only the challenger get right, under
/// p_c − p_b = −margin, given `b` and `c` of `n` (the root of the score
/// equation 2n·p_c² − B·p_c − c·M(1 − M) = 0, B = b + c + M(b − c) − 2nM).
fn restricted(n: f64, b: f64, c: f64, m: f64) -> (f64, f64) {
    let big_b = b + c + m * (b - c) - 2.0 * n * m;
    let pc = ((big_b + (big_b * big_b + 8.0 * n * c * m * (1.0 - m)).sqrt()) / (4.0 * n)).max(0.0);
    (pc + m, pc)
}

/// The score statistic for H0: Δ = p_c − p_b ≤ −margin on `n` paired rows.
fn score(n: usize, b: u64, c: u64, margin: f64) -> f64 {
    if n == 0 {
        return f64::NEG_INFINITY;
    }
    let (nf, bf, cf) = (n as f64, b as f64, c as f64);
    let (pb, pc) = restricted(nf, bf, cf, margin);
    let var = (pb + pc - margin * margin) / nf;
    let d = (cf - bf) / nf + margin;
    if var <= 0.0 {
        return if d > 0.0 {
            f64::INFINITY
        } else if d < 0.0 {
            f64::NEG_INFINITY
        } else {
            0.0
        };
    }
    d / var.sqrt()
}

/// Rows a paired non-inferiority test at `margin` and one-sided `alpha`
/// needs for `power` when the two models are equally accurate and disagree
/// on a share `discordance` of rows (Nam's formula: the variance under the
/// null from its restricted estimate, under the alternative ψ).
pub fn rows_needed(discordance: f64, margin: f64, alpha: f64, power: f64) -> usize {
    if margin <= 0.0 {
        return usize::MAX;
    }
    let psi = discordance.clamp(0.0, 1.0);
    let (pb, pc) = restricted(1.0, psi / 2.0, psi / 2.0, margin);
    let var0 = pb + pc - margin * margin;
    let (za, zb) = (normal_quantile(1.0 - alpha), normal_quantile(power));
    let n = ((za * var0.max(0.0).sqrt() + zb * psi.sqrt()) / margin).powi(2);
    n.ceil().max(1.0) as usize
}

/// The base rule: is the challenger within `margin` of the champion on
/// these paired rows?
pub fn non_inferiority(slice: &SliceReport, margin: f64, alpha: f64) -> NonInferiority {
    let (n, b, c) = (slice.n, slice.b, slice.c);
    let z = score(n, b, c, margin);
    let p = super::auc::upper_tail(z);
    let discordance = if n == 0 {
        0.0
    } else {
        (b + c) as f64 / n as f64
    };
    let needed = rows_needed(discordance, margin, alpha, BASE_POWER);
    let verdict = if p < alpha {
        Verdict::NonInferior
    } else if super::auc::upper_tail(-z) < alpha {
        Verdict::Inferior
    } else if n < needed {
        Verdict::TooFewRows
    } else {
        Verdict::NotShown
    };
    NonInferiority {
        n,
        b,
        c,
        margin,
        z,
        p,
        rows_needed: needed,
        power: BASE_POWER,
        verdict,
    }
}

impl NonInferiority {
    /// Says what was found, with its figures.
    pub fn describe(&self) -> String {
        let figures = format!(
            "{} rows, the champion alone right on {}, the challenger alone on {}; score z = {:.2}, p = {:.2e}",
            self.n, self.b, self.c, self.z, self.p
        );
        match self.verdict {
            Verdict::NonInferior => format!(
                "base slice within {} of the champion ({figures})",
                self.margin
            ),
            Verdict::Inferior => format!(
                "base slice: the challenger loses more than {} ({figures})",
                self.margin
            ),
            Verdict::NotShown => format!(
                "base slice: not shown within {} of the champion on a slice large enough for {:.0}% power ({} rows needed; {figures})",
                self.margin,
                self.power * 100.0,
                self.rows_needed
            ),
            Verdict::TooFewRows => format!(
                "insufficient base evidence: {} rows needed for a margin of {} at {:.0}% power; the base slice has {} ({figures})",
                self.rows_needed,
                self.margin,
                self.power * 100.0,
                self.n
            ),
        }
    }
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
    /// The base rule's test (absent in reports of old rounds and AUC gates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_test: Option<NonInferiority>,
    /// The rule that decided: `evidence`, `field`, `base`, `budget`, `golden`
    /// or `all` (every rule passed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decided_by: String,
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
    let base_test = non_inferiority(&s, rules.base_margin, rules.alpha);
    let (decided_by, decision) = if f.n < rules.min_field || f.b + f.c < rules.min_discordant {
        (
            "evidence",
            Decision::InsufficientEvidence(format!(
                "field slice: {} samples and {} discordant pairs; the gate needs at least {} and {}",
                f.n,
                f.b + f.c,
                rules.min_field,
                rules.min_discordant
            )),
        )
    } else if f.p >= rules.alpha || f.c <= f.b {
        (
            "field",
            Decision::Reject(format!(
                "field slice: McNemar p = {:.4} (b = {}, c = {}), not below {} in the challenger's favour",
                f.p, f.b, f.c, rules.alpha
            )),
        )
    } else if f.delta_low <= 0.0 {
        (
            "field",
            Decision::Reject(format!(
                "field slice: the 95% lower bound on the accuracy gain is {:.4}, not above 0",
                f.delta_low
            )),
        )
    } else {
        match base_test.verdict {
            Verdict::NonInferior => ("all", Decision::Promote),
            Verdict::TooFewRows => ("base", Decision::InsufficientEvidence(base_test.describe())),
            Verdict::Inferior | Verdict::NotShown => {
                ("base", Decision::Reject(base_test.describe()))
            }
        }
    };
    GateReport {
        decision,
        field: f,
        base: s,
        rules,
        budget: None,
        base_test: Some(base_test),
        decided_by: decided_by.into(),
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

    fn paired_base(n: usize, b: usize, c: usize) -> (Vec<bool>, Vec<bool>) {
        // Rows 0..b: only the champion right; b..b+c: only the challenger;
        // the rest: both right.
        let champ = (0..n).map(|i| i < b || i >= b + c).collect();
        let chall = (0..n).map(|i| i >= b).collect();
        (champ, chall)
    }

    /// The gate on a clearly better field slice and the given base slice.
    fn with_base(base: &(Vec<bool>, Vec<bool>), margin: f64) -> GateReport {
        let (fc, fz) = better_field();
        evaluate(
            Paired {
                champion: &fc,
                challenger: &fz,
            },
            Paired {
                champion: &base.0,
                challenger: &base.1,
            },
            GateRules {
                base_margin: margin,
                ..GateRules::default()
            },
        )
    }

    fn better_field() -> (Vec<bool>, Vec<bool>) {
        (
            (0..200).map(|i| i % 3 != 0).collect(),
            (0..200).map(|i| i % 3 != 0 || i % 2 == 0).collect(),
        )
    }

    #[test]
    fn a_challenger_that_answers_the_base_slice_as_the_champion_does_is_not_rejected_on_it() {
        let same = pattern(179, 20);
        let judge = |margin: f64| with_base(&(same.clone(), same.clone()), margin);
        // At the default margin 179 unchanged rows show it.
        let r = judge(GateRules::default().base_margin);
        assert_eq!(r.decision, Decision::Promote, "{r:?}");
        assert_eq!(r.decided_by, "all");
        let t = r.base_test.unwrap();
        assert_eq!(t.verdict, Verdict::NonInferior);
        assert!(t.p < 0.05, "{t:?}");
        // At one point they cannot: insufficient, with the rows it needs
        // (z² (1 - M) / M = 1.645² × 0.99 / 0.01 = 268), never a rejection.
        let r = judge(0.01);
        match &r.decision {
            Decision::InsufficientEvidence(why) => assert!(
                why.starts_with("insufficient base evidence: 268 rows needed for a margin of 0.01"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.decided_by, "base");
    }

    #[test]
    fn a_too_small_base_slice_is_insufficient_and_names_the_rows_it_needs() {
        // The round the loop once rejected: 179 base rows, 3 lost and 2 won.
        let r = with_base(&paired_base(179, 3, 2), 0.01);
        let t = r.base_test.clone().unwrap();
        assert_eq!(t.verdict, Verdict::TooFewRows, "{t:?}");
        assert!(t.rows_needed > 179, "{t:?}");
        match &r.decision {
            Decision::InsufficientEvidence(why) => assert!(
                why.contains(&format!(
                    "{} rows needed for a margin of 0.01",
                    t.rows_needed
                )) && why.contains("the base slice has 179"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        // The same pattern on a slice that large is judged.
        let n = t.rows_needed * 3;
        let r = with_base(&paired_base(n, 3 * n / 179, 2 * n / 179), 0.01);
        assert_ne!(
            r.base_test.unwrap().verdict,
            Verdict::TooFewRows,
            "{:?}",
            r.decision
        );
    }

    #[test]
    fn the_score_test_solves_its_restricted_likelihood_and_has_its_stated_power() {
        // The restricted estimate zeroes the score of the likelihood.
        for (n, b, c, m) in [
            (179.0, 3.0, 2.0, 0.01),
            (500.0, 20.0, 31.0, 0.03),
            (60.0, 0.0, 4.0, 0.05),
        ] {
            let (pb, pc) = restricted(n, b, c, m);
            assert!((pb - pc - m).abs() < 1e-12);
            let rest = n - b - c;
            let d = b / pb + c / pc.max(1e-300) - 2.0 * rest / (1.0 - pb - pc);
            if c > 0.0 {
                assert!(d.abs() < 1e-6 * n, "{n} {b} {c} {m}: {d}");
            }
        }
        assert!((normal_quantile(0.95) - 1.644_854).abs() < 1e-5);
        assert!((normal_quantile(0.8) - 0.841_621).abs() < 1e-5);
        // No discordance: z² (1 − M) / M rows.
        assert_eq!(rows_needed(0.0, 0.03, 0.05, 0.8), 88);
        // More discordance, or a finer margin, needs more rows.
        assert!(rows_needed(0.05, 0.03, 0.05, 0.8) > rows_needed(0.02, 0.03, 0.05, 0.8));
        assert!(rows_needed(0.03, 0.01, 0.05, 0.8) > 1500);
        // Simulated: equal models at 3% discordance on the rows it asks for
        // pass about 80% of the time.
        let n = rows_needed(0.03, 0.03, 0.05, 0.8);
        let mut rng = SplitMix(42);
        let mut passed = 0;
        for _ in 0..2000 {
            let (mut b, mut c) = (0u64, 0u64);
            for _ in 0..n {
                match rng.below(200) {
                    0..=2 => b += 1,
                    3..=5 => c += 1,
                    _ => {}
                }
            }
            let slice = SliceReport {
                n,
                champion_accuracy: 0.0,
                challenger_accuracy: 0.0,
                b,
                c,
                p: 1.0,
                delta_low: 0.0,
                delta_high: 0.0,
                champion_auc: None,
                challenger_auc: None,
            };
            passed += (non_inferiority(&slice, 0.03, 0.05).verdict == Verdict::NonInferior) as u32;
        }
        let power = passed as f64 / 2000.0;
        assert!((0.74..=0.88).contains(&power), "power {power} on {n} rows");
    }
}
