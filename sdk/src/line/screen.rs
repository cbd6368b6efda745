//! The screening kit's numbers: per number column the training median and
//! robust scale, and the score threshold that 0.5% of training rows pass
//! (`anomaly-score`).

use serde_json::{json, Value as J};

use super::data::Prepared;
use super::fit::Features;

/// Share of training rows a screen flags.
const FLAGGED: f64 = 0.005;
/// How far out (in robust scales) the golden far-out row is put.
const FAR: f32 = 1000.0;

pub(super) struct Screen {
    columns: Vec<usize>,
    names: Vec<String>,
    median: Vec<f32>,
    scale: Vec<f32>,
    pub(super) threshold: f64,
    /// Holdout rows flagged, of how many.
    pub(super) flagged: usize,
    pub(super) of: usize,
}

fn median(sorted: &[f32]) -> f32 {
    sorted[sorted.len() / 2]
}

impl Screen {
    /// The screen of the number columns, none when no column varies.
    pub(super) fn fit(p: &Prepared, feats: &Features) -> Option<Screen> {
        let value = |i: usize, j: usize| {
            let v = p.x[i][j];
            if v.is_nan() {
                feats.fill[j]
            } else {
                v
            }
        };
        let mut s = Screen {
            columns: Vec::new(),
            names: Vec::new(),
            median: Vec::new(),
            scale: Vec::new(),
            threshold: 0.0,
            flagged: 0,
            of: p.holdout.len(),
        };
        for (j, c) in p.columns.iter().enumerate() {
            // Categories and dates are not screened: a date is new by nature.
            if !c.categories.is_empty() || c.date {
                continue;
            }
            let mut v: Vec<f32> = p.train.iter().map(|&i| value(i, j)).collect();
            v.sort_by(f32::total_cmp);
            let m = median(&v);
            let mut dev: Vec<f32> = v.iter().map(|x| (x - m).abs()).collect();
            dev.sort_by(f32::total_cmp);
            let mut scale = 1.4826 * median(&dev);
            if scale <= 0.0 {
                // Mostly one value (a flag, a count of zeros): the deviation instead.
                let n = v.len() as f64;
                let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
                scale =
                    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt() as f32;
            }
            if scale > 0.0 && scale.is_finite() {
                s.columns.push(j);
                s.names.push(c.name.clone());
                s.median.push(m);
                s.scale.push(scale);
            }
        }
        if s.columns.is_empty() {
            return None;
        }
        let score = |i: usize| {
            s.columns
                .iter()
                .enumerate()
                .map(|(k, &j)| ((value(i, j) - s.median[k]) / s.scale[k]).abs() as f64)
                .fold(0.0, f64::max)
        };
        let mut train: Vec<f64> = p.train.iter().map(|&i| score(i)).collect();
        train.sort_by(f64::total_cmp);
        let at = ((train.len() as f64 * (1.0 - FLAGGED)).ceil() as usize).min(train.len() - 1);
        let t = train[at].max(1.0);
        // Two significant figures, up.
        let unit = 10f64.powf(t.log10().floor() - 1.0);
        s.threshold = (t / unit).ceil() * unit;
        s.flagged = p
            .holdout
            .iter()
            .filter(|&&i| score(i) > s.threshold)
            .count();
        Some(s)
    }

    /// The `anomaly-score` step's config.
    pub(super) fn config(&self) -> J {
        json!({
            "columns": self.columns,
            "names": self.names,
            "median": self.median,
            "scale": self.scale,
            "threshold": self.threshold,
        })
    }

    /// `row` (a JSON row of the holdout) with its first screened column put
    /// far beyond anything seen in training, and that column's name: a row
    /// the screen must flag whatever the model answers.
    pub(super) fn far_out(&self, mut row: J) -> (J, String) {
        let v = self.median[0] + FAR * self.scale[0];
        row[&self.names[0]] = json!(v);
        (row, self.names[0].clone())
    }

    /// What the card says of the screen.
    pub(super) fn describe(&self) -> String {
        format!(
            "and a screen of the row (`screen`: the largest robust z-score of its {} number \
             columns, against the training medians; `unusual` past {}, which {:.1}% of training \
             rows pass; {} of {} holdout rows were flagged)",
            self.columns.len(),
            self.threshold,
            FLAGGED * 100.0,
            self.flagged,
            self.of
        )
    }
}
