//! A model's kit as the line makes it: a Kitfile of tools around the model,
//! golden samples from the holdout, and the cards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use algobay_runtime::Digest;
use serde_json::{json, Value as J};

use super::data::Prepared;
use super::fit::{Features, Fitted};
use super::image::Capture;
use super::recipe::{ModelSpec, Recipe, Scaling, TaskKind};
use super::screen::Screen;

/// Golden samples per kit.
const GOLDEN: usize = 3;

/// How a kit takes its rows: the two make two kits of one model, each
/// saying on its card what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InputFormat {
    /// A JSON object per row (column → value), or a list of them.
    Json,
    /// CSV text, a row a line, the columns in the schema's order, no header.
    Csv,
}

/// The kits of one model: each gives its user something different (what it
/// reads, or what it answers), and its card says what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Variant {
    /// The likeliest class with its probability, or the value (JSON rows).
    Json,
    /// The same from CSV lines.
    Csv,
    /// Two classes: a yes/no decision at the threshold that balances the
    /// error rates (`threshold-decision`), with the score.
    Decision,
    /// Regression: the value with a 90% split-conformal prediction interval
    /// (`conformal-interval`).
    Interval,
    /// The JSON kit's answer with a screen of the row for values unlike
    /// the training data (`anomaly-score`).
    Screen,
    /// Image features: the same answer from a PNG or JPEG (`image-decode`,
    /// `grayscale`, `resize`, `normalize`, `flatten`), as the capture brings it.
    Image(Capture),
}

impl Variant {
    /// The kits a model of this task gets.
    pub(super) fn for_task(r: &Recipe, classes: usize) -> Vec<Variant> {
        let (kind, image) = (r.task.kind, r.image.as_ref());
        // A recording is read like a text: one input, whatever the answer.
        let text = r.text.is_some() || r.audio.is_some();
        // A text recipe's kits read the text, whatever they answer; an
        // equalised image recipe's models know only equalised pictures.
        let rows = !image.is_some_and(|i| i.equalize);
        let mut v = match (text, rows) {
            (true, _) => vec![Variant::Json],
            (false, true) => vec![Variant::Json, Variant::Csv],
            (false, false) => Vec::new(),
        };
        if !text && image.is_none() {
            v.push(Variant::Screen);
        }
        if image.is_some() {
            v.extend([Capture::Plain, Capture::Form, Capture::Sideways].map(Variant::Image));
        }
        match kind {
            TaskKind::Classification if classes == 2 && rows => v.push(Variant::Decision),
            TaskKind::Classification => {}
            TaskKind::Regression => v.push(Variant::Interval),
        }
        v
    }

    /// What the kit's name gets after the model's.
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Variant::Json => "",
            Variant::Csv => "-csv",
            Variant::Decision => "-decision",
            Variant::Screen => "-screen",
            Variant::Interval => "-interval",
            Variant::Image(Capture::Plain) => "-image",
            Variant::Image(Capture::Form) => "-form",
            Variant::Image(Capture::Sideways) => "-sideways",
        }
    }

    fn format(self) -> InputFormat {
        match self {
            Variant::Csv => InputFormat::Csv,
            _ => InputFormat::Json,
        }
    }
}

/// A classifier's temperature from its holdout probabilities.
fn calibration(p: &Prepared, f: &Fitted) -> super::fit::Calibration {
    let truth: Vec<u32> = p.holdout.iter().map(|&i| p.y_class[i]).collect();
    super::fit::calibrate(&f.probabilities, p.classes.len(), &truth)
}

/// Share of new rows a kit's prediction interval is made to hold.
const INTERVAL_LEVEL: f64 = 0.9;

/// A split-conformal interval from holdout errors: the half width from the
/// even-numbered holdout rows, and the share of the odd-numbered ones (not
/// used to make it) that fall inside.
#[derive(Clone, Copy, Debug)]
pub(super) struct Interval {
    pub(super) half_width: f64,
    /// Odd holdout rows inside the interval, and how many were tried.
    pub(super) covered: usize,
    pub(super) tried: usize,
}

pub(super) fn interval(p: &Prepared, f: &Fitted) -> Interval {
    let err = |k: usize| (f.predictions[k] - p.y_value[p.holdout[k]] as f64).abs();
    let mut cal: Vec<f64> = (0..p.holdout.len()).step_by(2).map(err).collect();
    cal.sort_by(f64::total_cmp);
    // The ⌈(n+1)·level⌉-th smallest error: at least `level` coverage for exchangeable rows.
    let rank =
        (((cal.len() + 1) as f64 * INTERVAL_LEVEL).ceil() as usize).clamp(1, cal.len().max(1));
    let half_width = round_up(cal.get(rank - 1).copied().unwrap_or(0.0).max(1e-6));
    let test: Vec<usize> = (1..p.holdout.len()).step_by(2).collect();
    let covered = test.iter().filter(|&&k| err(k) <= half_width).count();
    Interval {
        half_width,
        covered,
        tried: test.len(),
    }
}

/// The tools a recipe's kits use, in pipeline order (both readers).
pub(super) fn tools_for(r: &Recipe) -> Vec<&'static str> {
    let mut t = vec![
        "row-reader",
        "csv-reader",
        "impute",
        "clip",
        "log-transform",
    ];
    // Category columns (listed or found holding text) are known only from
    // the data; the one-hot stage is in every kit's fingerprint and passes
    // through when there are none.
    if !r.task.ordinal.is_empty() {
        t.push("ordinal-encode");
    }
    if !r.task.dates.is_empty() {
        t.push("date-features");
    }
    t.push("one-hot");
    t.push(match r.task.scaling {
        Scaling::Standard => "standard-scale",
        Scaling::Minmax => "min-max-scale",
    });
    if r.image.is_none() && r.text.is_none() && r.audio.is_none() {
        t.push("anomaly-score");
    }
    // The decision kit is made only for two classes, known from the data;
    // its tool is in every classification recipe's fingerprint.
    match r.task.kind {
        TaskKind::Classification => {
            t.extend(["temperature-scale", "classify-post", "threshold-decision"])
        }
        TaskKind::Regression => t.extend(["regression-out", "conformal-interval"]),
    }
    if r.image.is_some() {
        t.extend(super::image::TOOLS);
        t.push("layout");
    }
    if r.audio.is_some() {
        t.extend(super::audio::TOOLS);
    }
    match &r.text {
        Some(spec) if spec.words.is_some() => t.extend([
            "pii-mask",
            "text-normalize",
            "chinese-segment",
            "feature-hash",
        ]),
        Some(_) => t.extend(TEXT_TOOLS),
        None => {}
    }
    t
}

/// The tools a text kit reads its text with, in order.
const TEXT_TOOLS: [&str; 3] = ["pii-mask", "text-normalize", "char-ngram-hash"];

/// A holdout row as the kit takes it: column → number or category text.
fn row_json(p: &Prepared, i: usize) -> J {
    let mut o = serde_json::Map::new();
    for (c, cell) in p.columns.iter().zip(&p.cells[i]) {
        if cell.is_empty() || cell.eq_ignore_ascii_case("na") || cell.eq_ignore_ascii_case("nan") {
            continue;
        }
        let v = if c.categories.is_empty() {
            cell.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(J::Number)
                .unwrap_or_else(|| J::String(cell.clone()))
        } else {
            J::String(cell.clone())
        };
        o.insert(c.name.clone(), v);
    }
    J::Object(o)
}

/// A holdout row as one CSV line, the columns in the schema's order.
fn row_csv(p: &Prepared, i: usize) -> String {
    p.cells[i]
        .iter()
        .map(|c| {
            if c.eq_ignore_ascii_case("na") || c.eq_ignore_ascii_case("nan") {
                String::new()
            } else if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Rounds `v` up to two significant figures.
fn round_up(v: f64) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    let p = 10f64.powf(v.log10().floor() - 1.0);
    (v / p).ceil() * p
}

/// Holdout rows for golden samples and, for regression, the tolerance: rows
/// the model gets right (the expected output is always the row's true label,
/// or its true value within the model's 80th-percentile error), a class each
/// first.
fn golden_rows(
    p: &Prepared,
    f: &Fitted,
    kind: TaskKind,
    variant: Variant,
) -> (Vec<usize>, Option<f64>) {
    if variant == Variant::Interval {
        // Rows the interval was not made from, whose true value lies inside it.
        let iv = interval(p, f);
        let rows = (1..p.holdout.len())
            .step_by(2)
            .filter(|&k| {
                (f.predictions[k] - p.y_value[p.holdout[k]] as f64).abs() <= iv.half_width * 0.9
            })
            .map(|k| p.holdout[k])
            .take(GOLDEN)
            .collect();
        return (rows, Some(iv.half_width));
    }
    match kind {
        TaskKind::Classification => {
            let predicted = |k: usize| match (variant, f.threshold) {
                (Variant::Decision, Some(t)) => u32::from(f.positive[k] >= t),
                _ => f.predictions[k] as u32,
            };
            let right: Vec<(usize, u32)> = p
                .holdout
                .iter()
                .enumerate()
                .filter(|(k, &i)| predicted(*k) == p.y_class[i])
                .map(|(_, &i)| (i, p.y_class[i]))
                .collect();
            let mut out: Vec<usize> = Vec::new();
            for c in 0..p.classes.len() as u32 {
                if out.len() == GOLDEN {
                    break;
                }
                if let Some(&(i, _)) = right.iter().find(|(_, y)| *y == c) {
                    out.push(i);
                }
            }
            for &(i, _) in &right {
                if out.len() == GOLDEN {
                    break;
                }
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            (out, None)
        }
        TaskKind::Regression => {
            let mut errs: Vec<f64> = p
                .holdout
                .iter()
                .enumerate()
                .map(|(k, &i)| (f.predictions[k] - p.y_value[i] as f64).abs())
                .collect();
            let within = errs.clone();
            errs.sort_by(f64::total_cmp);
            let q80 = errs[(errs.len() * 8 / 10).min(errs.len() - 1)];
            let tol = round_up(q80.max(1e-6));
            let rows = p
                .holdout
                .iter()
                .enumerate()
                .filter(|(k, _)| within[*k] <= tol * 0.9)
                .map(|(_, &i)| i)
                .take(GOLDEN)
                .collect();
            (rows, Some(tol))
        }
    }
}

/// A step of a tabular tool: its `x` from `input`, its `y` named `output`.
fn table_step(name: &str, stage: String, config: J, input: &str, output: &str) -> J {
    json!({
        "name": name,
        "stage": stage,
        "config": config,
        "inputs": {"x": input},
        "outputs": {"y": output},
    })
}

/// Writes the kit's folder: Kitfile, model, golden samples.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_kit_dir(
    dir: &Path,
    r: &Recipe,
    m: &ModelSpec,
    version: &str,
    p: &Prepared,
    feats: &Features,
    f: &Fitted,
    tools: &BTreeMap<String, (PathBuf, Digest)>,
    variant: Variant,
    words: Option<&str>,
) -> Result<(), String> {
    let format = variant.format();
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("samples")).map_err(err)?;
    std::fs::write(dir.join("model.safetensors"), &f.weights).map_err(err)?;
    let tool = |n: &str| tools[n].0.display().to_string();
    let image = match (variant, &r.image) {
        (Variant::Image(capture), Some(spec)) => {
            let n = spec.width * spec.height;
            if p.columns.len() != n || p.columns.iter().any(|c| !c.categories.is_empty()) {
                return Err(format!(
                    "[image] is {}x{} = {n} pixels, but the data has {} feature columns{}",
                    spec.width,
                    spec.height,
                    p.columns.len(),
                    if p.columns.iter().any(|c| !c.categories.is_empty()) {
                        ", some of them categories"
                    } else {
                        ""
                    }
                ));
            }
            Some((spec, capture))
        }
        (Variant::Image(_), None) => return Err("an image kit needs the recipe's [image]".into()),
        _ => None,
    };
    let mut steps = Vec::new();
    if let Some(t) = &r.text {
        steps.push(
            json!({"name": "mask", "stage": tool("pii-mask"), "outputs": {"masked": "masked"}}),
        );
        steps.push(json!({
            "name": "normalize",
            "stage": tool("text-normalize"),
            "inputs": {"text": "masked"},
            "outputs": {"normalized": "clean"},
        }));
        if let Some(w) = words {
            std::fs::write(dir.join("words.txt"), w).map_err(err)?;
            steps.push(json!({
                "name": "segment",
                "stage": tool("chinese-segment"),
                "assets": {"words": "words.txt"},
                "inputs": {"text": "clean"},
                "outputs": {"tokens": "words"},
            }));
            steps.push(json!({
                "name": "hash",
                "stage": tool("feature-hash"),
                "config": {"buckets": t.buckets},
                "inputs": {"tokens": "words"},
                "outputs": {"features": "filled"},
            }));
        } else {
            steps.push(json!({
                "name": "hash",
                "stage": tool("char-ngram-hash"),
                "config": {"buckets": t.buckets, "n": t.n},
                "inputs": {"text": "clean"},
                "outputs": {"features": "filled"},
            }));
        }
    } else if let Some(spec) = &r.audio {
        steps.extend(super::audio::steps(spec, &tool));
    } else if let Some((spec, capture)) = image {
        steps.extend(super::image::steps(spec, capture, &tool));
    } else {
        steps.push(match format {
            InputFormat::Json => json!({
                "name": "read",
                "stage": tool("row-reader"),
                "config": {"columns": p.columns},
                "outputs": {"x": "raw"},
            }),
            InputFormat::Csv => json!({
                "name": "read",
                "stage": tool("csv-reader"),
                "config": {"columns": p.columns},
                "outputs": {"x": "raw"},
            }),
        });
        steps.push(table_step(
            "impute",
            tool("impute"),
            json!({"fill": feats.fill}),
            "raw",
            "filled",
        ));
    }
    let screen = match variant {
        Variant::Screen => Some(Screen::fit(p, feats).ok_or("no number column to screen")?),
        _ => None,
    };
    if let Some(s) = &screen {
        steps.push(json!({
            "name": "screen",
            "stage": tool("anomaly-score"),
            "config": s.config(),
            "inputs": {"x": "filled"},
        }));
    }
    let mut last = "filled";
    if image.is_none() && feats.clip.iter().any(Option::is_some) {
        let bounded: Vec<(usize, f32, f32)> = feats
            .clip
            .iter()
            .enumerate()
            .filter_map(|(j, b)| b.map(|(lo, hi)| (j, lo, hi)))
            .collect();
        let config = json!({
            "columns": bounded.iter().map(|b| b.0).collect::<Vec<_>>(),
            "low": bounded.iter().map(|b| b.1).collect::<Vec<_>>(),
            "high": bounded.iter().map(|b| b.2).collect::<Vec<_>>(),
        });
        steps.push(table_step("bound", tool("clip"), config, last, "bounded"));
        last = "bounded";
    }
    if image.is_none() && !feats.log.is_empty() {
        let config = json!({"columns": feats.log});
        steps.push(table_step(
            "log",
            tool("log-transform"),
            config,
            last,
            "logged",
        ));
        last = "logged";
    }
    if image.is_none() && !feats.ordinal.is_empty() {
        let config = json!({
            "columns": feats.ordinal.iter().map(|o| o.0).collect::<Vec<_>>(),
            "ranks": feats.ordinal.iter().map(|o| &o.1).collect::<Vec<_>>(),
        });
        steps.push(table_step(
            "rank",
            tool("ordinal-encode"),
            config,
            last,
            "ranked",
        ));
        last = "ranked";
    }
    if image.is_none() && !feats.dates.is_empty() {
        let config = json!({"columns": feats.dates});
        steps.push(table_step(
            "calendar",
            tool("date-features"),
            config,
            last,
            "dated",
        ));
        last = "dated";
    }
    if image.is_none() && feats.sizes.iter().any(|&n| n > 0) {
        let config = json!({"sizes": feats.sizes_after_dates()});
        steps.push(table_step(
            "encode",
            tool("one-hot"),
            config,
            last,
            "encoded",
        ));
        last = "encoded";
    }
    steps.push(if feats.minmax {
        let config = json!({"min": feats.mean, "max": feats.std});
        table_step("scale", tool("min-max-scale"), config, last, "features")
    } else {
        let config = json!({"mean": feats.mean, "std": feats.std});
        table_step("scale", tool("standard-scale"), config, last, "features")
    });
    match &f.conv {
        Some(conv) => {
            // The scaled row as a one-picture NCHW batch for the convolutions.
            let [c, h, w] = conv.input;
            steps.push(json!({
                "name": "layout",
                "stage": tool("layout"),
                "config": {"channels": c, "height": h, "width": w, "to": "nchw"},
                "inputs": {"x": "features"},
                "outputs": {"y": "planes"},
            }));
            steps.push(json!({
                "name": "model",
                "model": "model.safetensors",
                "architecture": "cnn",
                "config": {"layers": f.layers, "conv": conv},
                "inputs": {"x": "planes"},
            }));
        }
        None => steps.push(json!({
            "name": "model",
            "model": "model.safetensors",
            "architecture": "mlp",
            "config": {"layers": f.layers},
            "inputs": {"x": "features"},
        })),
    }
    let (golden_idx, tol) = golden_rows(p, f, r.task.kind, variant);
    if golden_idx.is_empty() {
        return Err("no holdout row the model gets right to make a golden sample of".into());
    }
    let mut regression_config = json!({"mean": f.target_scale.0, "std": f.target_scale.1});
    if let Some(u) = &r.task.unit {
        regression_config["unit"] = json!(u);
    }
    let iv = (variant == Variant::Interval).then(|| interval(p, f));
    match (r.task.kind, variant) {
        (TaskKind::Classification, Variant::Decision) => {
            let t = f
                .threshold
                .ok_or("a decision kit needs a two-class model")?;
            steps.push(json!({
                "name": "post",
                "stage": tool("threshold-decision"),
                "config": {"labels": p.classes, "threshold": t},
            }));
        }
        (TaskKind::Regression, Variant::Interval) => {
            let mut config = regression_config.clone();
            config["half_width"] = json!(iv.map(|i| i.half_width));
            config["level"] = json!(INTERVAL_LEVEL);
            steps.push(json!({
                "name": "post",
                "stage": tool("conformal-interval"),
                "config": config,
                "inputs": {"y": "logits"},
            }));
        }
        (TaskKind::Classification, _) => {
            let cal = calibration(p, f);
            steps.push(json!({
                "name": "calibrate",
                "stage": tool("temperature-scale"),
                "config": {"temperature": cal.temperature},
                "inputs": {"logits": "logits"},
                "outputs": {"scaled": "calibrated"},
            }));
            steps.push(json!({
                "name": "post",
                "stage": tool("classify-post"),
                "config": {"labels": p.classes, "top_k": 1},
                "inputs": {"logits": "calibrated"},
            }));
        }
        (TaskKind::Regression, _) => steps.push(json!({
            "name": "post",
            "stage": tool("regression-out"),
            "config": regression_config,
            "inputs": {"y": "logits"},
        })),
    }
    let mut golden = Vec::new();
    for (g, &i) in golden_idx.iter().enumerate() {
        let expected = format!("samples/row{g}.expected.json");
        let (input, port) = match (image, format) {
            _ if r.audio.is_some() => {
                let input = format!("samples/row{g}.wav");
                let wav = super::audio::wav_of(&p.cells[i][0])?;
                std::fs::write(dir.join(&input), wav).map_err(err)?;
                (input, "audio")
            }
            _ if r.text.is_some() => {
                let input = format!("samples/row{g}.txt");
                std::fs::write(dir.join(&input), &p.cells[i][0]).map_err(err)?;
                (input, "text")
            }
            (Some((spec, capture)), _) => {
                let input = format!("samples/row{g}.png");
                let png = super::image::golden_png(p, i, spec, capture)?;
                std::fs::write(dir.join(&input), png).map_err(err)?;
                (input, "image")
            }
            (None, InputFormat::Json) => {
                let input = format!("samples/row{g}.json");
                std::fs::write(dir.join(&input), row_json(p, i).to_string()).map_err(err)?;
                (input, "row")
            }
            (None, InputFormat::Csv) => {
                let input = format!("samples/row{g}.csv");
                std::fs::write(dir.join(&input), row_csv(p, i) + "\n").map_err(err)?;
                (input, "line")
            }
        };
        let label = |i: usize| p.classes[p.y_class[i] as usize].clone();
        let want = match (r.task.kind, variant) {
            (TaskKind::Classification, Variant::Decision) => {
                json!({"result": [{"label": label(i)}]})
            }
            (TaskKind::Classification, _) => json!({"result": [[{"label": label(i)}]]}),
            // Within the tolerance: within the model's usual error, or (the
            // interval kit, whose tolerance is its half width) inside the interval.
            (TaskKind::Regression, _) => json!({"result": [{"value": p.y_value[i] as f64}]}),
        };
        std::fs::write(dir.join(&expected), want.to_string()).map_err(err)?;
        let mut entry = json!({"inputs": {port: input}, "expected": expected});
        if let Some(t) = tol {
            entry["tolerance"] = json!({"abs": t});
        }
        golden.push(entry);
    }
    if let (Some(s), Some(&i)) = (&screen, golden_idx.first()) {
        let (row, column) = s.far_out(row_json(p, i));
        std::fs::write(dir.join("samples/far.json"), row.to_string()).map_err(err)?;
        let want = json!({"screen": [{"unusual": true, "column": column}]});
        std::fs::write(dir.join("samples/far.expected.json"), want.to_string()).map_err(err)?;
        golden.push(
            json!({"inputs": {"row": "samples/far.json"}, "expected": "samples/far.expected.json"}),
        );
    }
    let unit = r
        .task
        .unit
        .as_ref()
        .map(|u| format!(" in {u}"))
        .unwrap_or_default();
    let what = match (r.task.kind, variant, f.threshold, iv) {
        (TaskKind::Classification, Variant::Decision, Some(t), _) => format!(
            "a decision, `{}` when its probability reaches {t} (the threshold that balances \
             the two error rates on the training rows) and `{}` otherwise, with the probability",
            p.classes[1], p.classes[0]
        ),
        (TaskKind::Classification, ..) => {
            let cal = calibration(p, f);
            format!(
                "the likeliest of {} classes ({}) with its probability, calibrated (temperature {}, \
                 fitted on {} holdout rows; expected calibration error on {} others {:.3} before, {:.3} after)",
                p.classes.len(),
                super::card::abbreviate(&p.classes),
                cal.temperature,
                cal.fitted_on,
                cal.checked_on,
                cal.ece_before,
                cal.ece_after
            )
        }
        (TaskKind::Regression, Variant::Interval, _, Some(iv)) => format!(
            "the predicted `{}`{unit} with a {:.0}% prediction interval (± {}, the split-conformal \
             quantile of the model's holdout errors; {} of {} other holdout rows fell inside)",
            r.task.target,
            INTERVAL_LEVEL * 100.0,
            iv.half_width,
            iv.covered,
            iv.tried
        ),
        (TaskKind::Regression, ..) => format!("the predicted `{}`{unit}", r.task.target),
    };
    let what = match &screen {
        Some(s) => format!("{what}, {}", s.describe()),
        None => what,
    };
    let reads = match (image, format) {
        _ if r.audio.is_some() => super::audio::reads(r.audio.as_ref().expect("audio")),
        _ if r.text.is_some() => {
            let cut = match (words, r.text.as_ref().and_then(|t| t.words.as_ref())) {
                (Some(w), Some(file)) => format!(
                    ", then cut into words with the {} most frequent words of `{file}` and the words hashed",
                    w.lines().count()
                ),
                _ => String::new(),
            };
            format!("a text (up to 20,000 characters; e-mail and web addresses and phone numbers are masked first{cut})")
        }
        (Some((spec, capture)), _) => super::image::reads(spec, capture),
        (None, InputFormat::Json) => format!("a JSON row ({} columns by name)", p.columns.len()),
        (None, InputFormat::Csv) => format!(
            "CSV text, a row a line, no header, columns in this order: {}",
            super::card::abbreviate(&p.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
        ),
    };
    let input = match (image, format) {
        _ if r.audio.is_some() => json!({"name": "audio", "type": "bytes", "media": "audio/wav"}),
        _ if r.text.is_some() => json!({"name": "text", "type": "text"}),
        (Some(_), _) => json!({"name": "image", "type": "bytes", "media": "image/png, image/jpeg"}),
        (None, InputFormat::Json) => json!({"name": "row", "type": "json"}),
        (None, InputFormat::Csv) => json!({"name": "line", "type": "text"}),
    };
    let mut outputs = vec![json!({"name": "result", "type": "json"})];
    if screen.is_some() {
        outputs.push(json!({"name": "screen", "type": "json"}));
    }
    let mut kitfile = json!({
        "kit": {
            "name": format!("{}/{}-{}{}", r.recipe.team, r.recipe.name, m.label(), variant.suffix()),
            "version": version,
            "scenario": r.recipe.scenario,
            "industries": [r.recipe.industry],
            "description": format!(
                "{} Reads {reads} and returns {what}; model: {} ({}).",
                r.recipe.description,
                m.describe(),
                f.score.summary()
            ),
            "license": r.recipe.license,
        },
        "input": [input],
        "output": outputs,
        "step": steps,
        "golden": golden,
        "resources": {"memory_mb": 64, "cpus": 1},
    });
    // Hard examples: answers the model is unsure of (a decision's score is the
    // positive class's probability, not a confidence, so not there).
    if r.task.kind == TaskKind::Classification && variant != Variant::Decision {
        kitfile["sampling"] = json!({"rule": "score_below", "output": "result", "threshold": 0.6});
    }
    let text = toml::to_string(&kitfile).map_err(|e| format!("Kitfile: {e}"))?;
    std::fs::write(dir.join("Kitfile"), text).map_err(err)
}
