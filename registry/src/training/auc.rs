//! The gate on ranking quality, for two-class kits whose recipe says
//! `metric = "auc"` (a rare positive class, where accuracy barely moves):
//! both models' scores for the positive class on the same samples, compared
//! by the area under the ROC curve.
//!
//! On the field slice DeLong's test for two correlated AUCs gives p, and a
//! paired bootstrap (the same resampled samples for both models) the 95%
//! interval on ΔAUC; on the base slice the bootstrap's lower bound must stay
//! above −`base_margin`. Enough evidence is `min_field` samples with at least
//! `min_discordant` of each class.

use super::gate::{Decision, GateReport, GateRules, SliceReport, SplitMix};

/// Both models' positive-class scores on one slice, and the truth.
#[derive(Clone, Copy, Debug)]
pub struct Scored<'a> {
    pub positive: &'a [bool],
    pub champion: &'a [f64],
    pub challenger: &'a [f64],
}

/// The area under the ROC curve by ranks (ties count half); NaN without both classes.
pub fn auc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let (mut rank_sum, mut pos) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j + 1) as f64 / 2.0;
        for k in &order[i..j] {
            if positive[*k] {
                rank_sum += rank;
                pos += 1.0;
            }
        }
        i = j;
    }
    let neg = order.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// 1 − Φ(z) for z ≥ 0, by the complementary error function (Numerical
/// Recipes' Chebyshev fit, relative error under 1.2e-7).
pub(crate) fn upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if x >= 0.0 { y } else { 2.0 - y };
    erfc / 2.0
}

/// DeLong's two-sided p for AUC(challenger) = AUC(champion) on the same samples.
pub fn delong(s: Scored<'_>) -> f64 {
    let pos: Vec<usize> = (0..s.positive.len()).filter(|i| s.positive[*i]).collect();
    let neg: Vec<usize> = (0..s.positive.len()).filter(|i| !s.positive[*i]).collect();
    let (m, n) = (pos.len(), neg.len());
    if m < 2 || n < 2 {
        return 1.0;
    }
    let psi = |x: f64, y: f64| {
        if x > y {
            1.0
        } else if x == y {
            0.5
        } else {
            0.0
        }
    };
    // Structural components of each model: per positive, per negative.
    let comps = |sc: &[f64]| {
        let mut v10 = vec![0.0; m];
        let mut v01 = vec![0.0; n];
        for (a, &i) in pos.iter().enumerate() {
            for (b, &j) in neg.iter().enumerate() {
                let k = psi(sc[i], sc[j]);
                v10[a] += k;
                v01[b] += k;
            }
        }
        v10.iter_mut().for_each(|v| *v /= n as f64);
        v01.iter_mut().for_each(|v| *v /= m as f64);
        (v10, v01)
    };
    let (a10, a01) = comps(s.champion);
    let (b10, b01) = comps(s.challenger);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let cov = |x: &[f64], y: &[f64]| {
        let (mx, my) = (mean(x), mean(y));
        x.iter()
            .zip(y)
            .map(|(a, b)| (a - mx) * (b - my))
            .sum::<f64>()
            / (x.len() - 1) as f64
    };
    let var = (cov(&a10, &a10) + cov(&b10, &b10) - 2.0 * cov(&a10, &b10)) / m as f64
        + (cov(&a01, &a01) + cov(&b01, &b01) - 2.0 * cov(&a01, &b01)) / n as f64;
    let delta = mean(&b10) - mean(&a10);
    if var <= 0.0 {
        return if delta == 0.0 { 1.0 } else { 0.0 };
    }
    (2.0 * upper_tail((delta / var.sqrt()).abs())).min(1.0)
}

/// Paired-bootstrap 95% interval on AUC(challenger) − AUC(champion).
fn delta_interval(s: Scored<'_>, rules: &GateRules) -> (f64, f64) {
    let n = s.positive.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mut rng = SplitMix(rules.seed ^ (n as u64).rotate_left(17));
    let mut deltas = Vec::with_capacity(rules.bootstrap_reps);
    let (mut p, mut a, mut b) = (vec![false; n], vec![0.0; n], vec![0.0; n]);
    for _ in 0..rules.bootstrap_reps.max(1) {
        for k in 0..n {
            let i = rng.below(n);
            p[k] = s.positive[i];
            a[k] = s.champion[i];
            b[k] = s.challenger[i];
        }
        let d = auc(&b, &p) - auc(&a, &p);
        if d.is_finite() {
            deltas.push(d);
        }
    }
    if deltas.is_empty() {
        return (0.0, 0.0);
    }
    deltas.sort_by(f64::total_cmp);
    let at = |q: f64| deltas[((deltas.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// Puts a slice's AUC figures over its accuracy report: p is DeLong's, the
/// interval ΔAUC's.
fn with_auc(mut r: SliceReport, s: Scored<'_>, rules: &GateRules) -> SliceReport {
    r.champion_auc = Some(auc(s.champion, s.positive));
    r.challenger_auc = Some(auc(s.challenger, s.positive));
    r.p = delong(s);
    (r.delta_low, r.delta_high) = delta_interval(s, rules);
    r
}

/// The gate on AUC; `field` and `base` are the accuracy reports of the same slices.
pub fn evaluate(
    field: SliceReport,
    field_scores: Scored<'_>,
    base: SliceReport,
    base_scores: Scored<'_>,
    rules: GateRules,
) -> GateReport {
    let positives = field_scores.positive.iter().filter(|p| **p).count();
    let negatives = field_scores.positive.len() - positives;
    let f = with_auc(field, field_scores, &rules);
    let s = with_auc(base, base_scores, &rules);
    let (fa, fz) = (
        f.champion_auc.unwrap_or(f64::NAN),
        f.challenger_auc.unwrap_or(f64::NAN),
    );
    let decision = if f.n < rules.min_field
        || (positives.min(negatives) as u64) < rules.min_discordant
    {
        Decision::InsufficientEvidence(format!(
            "field slice: {} samples, {positives} positive and {negatives} negative; the gate needs at least {} with {} of each class",
            f.n, rules.min_field, rules.min_discordant
        ))
    } else if f.p >= rules.alpha || fz <= fa {
        Decision::Reject(format!(
            "field slice: AUC {fa:.4} → {fz:.4}, DeLong p = {:.4}, not below {} in the challenger's favour",
            f.p, rules.alpha
        ))
    } else if f.delta_low <= 0.0 {
        Decision::Reject(format!(
            "field slice: the 95% lower bound on the AUC gain is {:.4}, not above 0",
            f.delta_low
        ))
    } else if s.delta_low <= -rules.base_margin {
        Decision::Reject(format!(
            "base slice: the 95% lower bound on the AUC change is {:.4}, below -{}",
            s.delta_low, rules.base_margin
        ))
    } else {
        Decision::Promote
    };
    let decided_by = match &decision {
        Decision::Promote => "all",
        Decision::InsufficientEvidence(_) => "evidence",
        Decision::Reject(why) if why.starts_with("base") => "base",
        Decision::Reject(_) => "field",
    };
    GateReport {
        decision,
        field: f,
        base: s,
        rules,
        budget: None,
        base_test: None,
        decided_by: decided_by.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::gate::{compare, Paired};

    #[test]
    fn auc_counts_ordered_pairs_and_ties_as_half() {
        assert_eq!(
            auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            0.75
        );
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), 0.5);
        assert!(auc(&[0.1, 0.2], &[true, true]).is_nan());
    }

    #[test]
    fn delong_matches_the_normal_tail_and_equal_models_give_one() {
        assert!((upper_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((upper_tail(0.0) - 0.5).abs() < 1e-7);
        let positive: Vec<bool> = (0..200).map(|i| i % 4 == 0).collect();
        let champion: Vec<f64> = (0..200).map(|i| ((i * 37) % 101) as f64 / 100.0).collect();
        let same = Scored {
            positive: &positive,
            champion: &champion,
            challenger: &champion,
        };
        assert_eq!(delong(same), 1.0);
        // A challenger that ranks every positive first is far better.
        let challenger: Vec<f64> = positive
            .iter()
            .zip(&champion)
            .map(|(p, c)| if *p { 1.0 + c } else { *c })
            .collect();
        let better = Scored {
            positive: &positive,
            champion: &champion,
            challenger: &challenger,
        };
        assert!(delong(better) < 1e-6, "{}", delong(better));
    }

    #[test]
    fn a_better_ranking_promotes_and_too_few_positives_are_insufficient() {
        let rules = GateRules {
            min_field: 100,
            min_discordant: 20,
            ..GateRules::default()
        };
        let n = 400;
        let positive: Vec<bool> = (0..n).map(|i| i % 5 == 0).collect();
        let noise = |i: usize, k: usize| ((i * k) % 97) as f64 / 97.0;
        let champion: Vec<f64> = (0..n)
            .map(|i| noise(i, 31) * 0.8 + if positive[i] { 0.1 } else { 0.0 })
            .collect();
        let challenger: Vec<f64> = (0..n)
            .map(|i| noise(i, 31) * 0.5 + if positive[i] { 0.4 } else { 0.0 })
            .collect();
        let right = |s: &[f64]| -> Vec<bool> {
            s.iter()
                .zip(&positive)
                .map(|(v, p)| (*v > 0.5) == *p)
                .collect()
        };
        let (ra, rz) = (right(&champion), right(&challenger));
        let report = |positive: &[bool], n: usize| {
            let s = Scored {
                positive,
                champion: &champion[..n],
                challenger: &challenger[..n],
            };
            let acc = compare(
                Paired {
                    champion: &ra[..n],
                    challenger: &rz[..n],
                },
                &rules,
            );
            evaluate(acc.clone(), s, acc, s, rules)
        };
        let r = report(&positive, n);
        assert_eq!(r.decision, Decision::Promote, "{:?}", r.decision);
        assert!(r.field.challenger_auc > r.field.champion_auc);
        assert!(r.field.delta_low > 0.0);
        // The same figures over 90 samples: 18 positives are too few.
        let r = report(&positive[..90], 90);
        assert!(
            matches!(r.decision, Decision::InsufficientEvidence(_)),
            "{:?}",
            r.decision
        );
        // The same run twice gives the same report.
        assert_eq!(report(&positive, n), report(&positive, n));
    }
}
