//! Features as the kit's tools compute them, fitted on the training rows:
//! imputation, bounds, logs of long tails, ordinal ranks, calendars of
//! dates, one-hot codes, and standard or min-max scaling.

use super::data::Prepared;
use super::recipe::{Scaling, TaskSpec};

/// How features become the model's input, as the kit's tools will do it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Features {
    /// Per raw column: the training mean (numbers) or most frequent category's index.
    pub fill: Vec<f32>,
    /// Per raw column: 0 for a number, its number of categories otherwise.
    pub sizes: Vec<usize>,
    /// Per raw column: the training 0.5th and 99.5th percentiles values are
    /// bounded to (numbers of more than two values; none for the others).
    pub clip: Vec<Option<(f32, f32)>>,
    /// Raw columns that take ln(1 + x): numbers never negative in training
    /// whose distribution has a long right tail (skewness above 2).
    pub log: Vec<usize>,
    /// Raw category columns taken as their rank on the recipe's order: per
    /// category code, its rank.
    pub ordinal: Vec<(usize, Vec<f32>)>,
    /// Per encoded column: training mean and deviation (standard scaling),
    /// or minimum and maximum (min-max scaling onto 0–1, bounded).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub minmax: bool,
    /// Raw date columns (day numbers), each expanded into its calendar features.
    pub dates: Vec<usize>,
}

impl Features {
    /// Fits imputation, bounds, log columns (when `transforms`), one-hot
    /// widths and scaling on the training rows.
    pub fn fit(p: &Prepared, transforms: bool, task: &TaskSpec) -> Features {
        let cols = p.columns.len();
        let mut fill = vec![0.0; cols];
        let mut clip = vec![None; cols];
        let mut log = Vec::new();
        for (j, c) in p.columns.iter().enumerate() {
            let vals: Vec<f32> = p
                .train
                .iter()
                .map(|&i| p.x[i][j])
                .filter(|v| !v.is_nan())
                .collect();
            if transforms && c.categories.is_empty() && !c.date {
                let (bounds, skewed) = tail(&vals);
                clip[j] = bounds;
                if skewed {
                    log.push(j);
                }
            }
            fill[j] = if c.categories.is_empty() {
                if vals.is_empty() {
                    0.0
                } else {
                    (vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64) as f32
                }
            } else {
                let mut counts = vec![0usize; c.categories.len()];
                for v in vals {
                    counts[v as usize] += 1;
                }
                // The first most frequent category.
                let best = counts.iter().copied().max().unwrap_or(0);
                counts.iter().position(|&n| n == best).unwrap_or(0) as f32
            };
        }
        let mut sizes: Vec<usize> = p.columns.iter().map(|c| c.categories.len()).collect();
        // The order was checked to list every category (data::prepare).
        let ordinal: Vec<(usize, Vec<f32>)> = p
            .columns
            .iter()
            .enumerate()
            .filter_map(|(j, c)| {
                let order = task.ordinal.get(&c.name)?;
                let ranks = c
                    .categories
                    .iter()
                    .map(|k| order.iter().position(|o| o == k).unwrap_or(0) as f32)
                    .collect();
                Some((j, ranks))
            })
            .collect();
        for (j, _) in &ordinal {
            sizes[*j] = 0;
        }
        let mut f = Features {
            fill,
            sizes,
            clip,
            log,
            ordinal,
            mean: Vec::new(),
            std: Vec::new(),
            minmax: task.scaling == Scaling::Minmax,
            dates: p
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.date)
                .map(|(j, _)| j)
                .collect(),
        };
        let encoded: Vec<Vec<f32>> = p.train.iter().map(|&i| f.encode_raw(&p.x[i])).collect();
        let d = f.width();
        let n = encoded.len().max(1) as f64;
        for j in 0..d {
            if f.minmax {
                let col = encoded.iter().map(|r| r[j]);
                f.mean.push(col.clone().fold(f32::INFINITY, f32::min));
                f.std.push(col.fold(f32::NEG_INFINITY, f32::max));
                continue;
            }
            let m = encoded.iter().map(|r| r[j] as f64).sum::<f64>() / n;
            let var = encoded
                .iter()
                .map(|r| (r[j] as f64 - m).powi(2))
                .sum::<f64>()
                / n;
            f.mean.push(m as f32);
            f.std.push(var.sqrt() as f32);
        }
        f
    }

    /// The model's input width.
    pub fn width(&self) -> usize {
        self.sizes.iter().map(|&s| s.max(1)).sum::<usize>()
            + self.dates.len() * (algobay_text::CALENDAR.len() - 1)
    }

    /// Per column after the date step: 0 for a number, its categories' count otherwise.
    pub fn sizes_after_dates(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (j, &n) in self.sizes.iter().enumerate() {
            if self.dates.contains(&j) {
                out.extend([0; algobay_text::CALENDAR.len()]);
            } else {
                out.push(n);
            }
        }
        out
    }

    fn encode_raw(&self, row: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.width());
        for (j, &v) in row.iter().enumerate() {
            let mut v = if v.is_nan() { self.fill[j] } else { v };
            if let Some((lo, hi)) = self.clip[j] {
                v = v.clamp(lo, hi);
            }
            if self.log.contains(&j) {
                v = v.max(0.0).ln_1p();
            }
            if let Some((_, ranks)) = self.ordinal.iter().find(|(c, _)| *c == j) {
                v = ranks.get(v as usize).copied().unwrap_or(0.0);
            }
            if self.dates.contains(&j) {
                out.extend(algobay_text::calendar(v as f64));
                continue;
            }
            match self.sizes[j] {
                0 => out.push(v),
                n => out.extend((0..n).map(|k| if k == v as usize { 1.0 } else { 0.0 })),
            }
        }
        out
    }

    /// A row as the model sees it: imputed, bounded, logged, ranked, one-hot
    /// encoded, scaled.
    pub fn encode(&self, row: &[f32]) -> Vec<f32> {
        let mut e = self.encode_raw(row);
        if self.minmax {
            for (j, v) in e.iter_mut().enumerate() {
                let (lo, hi) = (self.mean[j], self.std[j]);
                *v = if hi > lo {
                    ((*v - lo) / (hi - lo)).clamp(0.0, 1.0)
                } else {
                    0.0
                };
            }
            return e;
        }
        for (j, v) in e.iter_mut().enumerate() {
            let s = self.std[j];
            *v = (*v - self.mean[j]) / if s > 0.0 { s } else { 1.0 };
        }
        e
    }

    pub(super) fn matrix(&self, p: &Prepared, rows: &[usize]) -> Vec<f32> {
        rows.iter().flat_map(|&i| self.encode(&p.x[i])).collect()
    }
}

/// A number column's bounds (its 0.5th and 99.5th percentiles, when it has
/// more than two values) and whether, never negative, its bounded values
/// have a long right tail (skewness above 2).
fn tail(vals: &[f32]) -> (Option<(f32, f32)>, bool) {
    let mut v = vals.to_vec();
    v.sort_by(f32::total_cmp);
    v.dedup();
    if v.len() <= 2 {
        return (None, false);
    }
    let mut sorted = vals.to_vec();
    sorted.sort_by(f32::total_cmp);
    let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f).round() as usize];
    let (lo, hi) = (q(0.005), q(0.995));
    let bounded: Vec<f64> = vals.iter().map(|x| x.clamp(lo, hi) as f64).collect();
    let n = bounded.len() as f64;
    let m = bounded.iter().sum::<f64>() / n;
    let var = bounded.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
    let skew = if var > 0.0 {
        bounded.iter().map(|x| (x - m).powi(3)).sum::<f64>() / n / var.powf(1.5)
    } else {
        0.0
    };
    (Some((lo, hi)), sorted[0] >= 0.0 && skew > 2.0)
}

#[cfg(test)]
mod tests {
    use super::super::data::{parse_csv, prepare};

    /// 400 rows: a size (S, M, L or XL on every 50th row), a number, a class.
    fn sized_rows() -> super::super::data::Table {
        let mut csv = String::from("size,amount,class\n");
        for i in 0..400 {
            let size = if i % 50 == 0 {
                "XL"
            } else {
                ["S", "M", "L"][i % 3]
            };
            csv.push_str(&format!(
                "{size},{i},{}\n",
                if i % 3 == 0 { "a" } else { "b" }
            ));
        }
        parse_csv(&csv).unwrap()
    }

    #[test]
    fn long_right_tails_are_logged_and_binary_columns_left_alone() {
        // Mostly small counts, a few large: bounded, and logged.
        let counts: Vec<f32> = (0..1000)
            .map(|i| if i % 50 == 0 { 200.0 } else { (i % 3) as f32 })
            .collect();
        let (bounds, skewed) = super::tail(&counts);
        assert_eq!(bounds, Some((0.0, 200.0)));
        assert!(skewed);
        // Symmetric values: bounded, not logged; negatives are never logged.
        let even: Vec<f32> = (0..1000).map(|i| (i % 100) as f32).collect();
        assert_eq!(super::tail(&even), (Some((0.0, 99.0)), false));
        let negative: Vec<f32> = counts.iter().map(|v| v - 1.0).collect();
        assert!(!super::tail(&negative).1);
        // Two values: nothing to bound.
        assert_eq!(super::tail(&[0.0, 1.0, 1.0, 0.0]), (None, false));
    }

    #[test]
    fn ordered_categories_become_one_rank_and_minmax_stays_within_zero_to_one() {
        let task: super::TaskSpec = toml::from_str(
            "kind = \"classification\"\ntarget = \"class\"\nscaling = \"minmax\"\n\
             ordinal = { size = [\"S\", \"M\", \"L\", \"XL\"] }\n",
        )
        .unwrap();
        let p = prepare(&sized_rows(), &task, None).unwrap();
        let f = super::Features::fit(&p, true, &task);
        assert_eq!(f.width(), 2, "one rank column and the amount, no one-hot");
        let code = |k: &str| p.columns[0].categories.iter().position(|c| c == k).unwrap() as f32;
        assert_eq!(
            f.encode(&[code("XL"), 1e9])[..],
            [1.0, 1.0],
            "bounded at the top"
        );
        assert_eq!(f.encode(&[code("S"), -1e9])[..], [0.0, 0.0]);
        // M's rank is 1 of 0–3, whatever its alphabetical code.
        assert!((f.encode(&[code("M"), 0.0])[0] - 1.0 / 3.0).abs() < 1e-6);

        let short: super::TaskSpec = toml::from_str(
            "kind = \"classification\"\ntarget = \"class\"\nordinal = { size = [\"S\", \"M\", \"L\"] }\n",
        )
        .unwrap();
        let err = prepare(&sized_rows(), &short, None).unwrap_err().0;
        assert!(err.contains("`size` holds `XL`"), "{err}");
    }
}
