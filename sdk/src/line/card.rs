//! The cards of a recipe's dataset and models, and the metrics models are
//! published with.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::data::Prepared;
use super::fit::Fitted;
use super::recipe::{ModelSpec, Recipe, TaskKind};

/// The metrics a model is published with (searchable, shown on its card).
pub(super) fn metrics(f: &Fitted) -> HashMap<String, f64> {
    let s = &f.score;
    let mut m = HashMap::new();
    m.insert(s.metric.clone(), s.value);
    m.insert(format!("{}_ci95_low", s.metric), s.lo);
    m.insert(format!("{}_ci95_high", s.metric), s.hi);
    m.insert("holdout_rows".into(), s.n as f64);
    m.insert(format!("baseline_{}", s.metric), s.baseline);
    m.insert(format!("{}_minus_baseline_ci95_low", s.metric), s.diff_lo);
    m.insert(format!("{}_minus_baseline_ci95_high", s.metric), s.diff_hi);
    for (k, v) in &s.other {
        m.insert(k.clone(), *v);
    }
    m
}

/// Up to six items, or the first five and an ellipsis.
pub(super) fn abbreviate(items: &[String]) -> String {
    if items.len() <= 6 {
        items.join(", ")
    } else {
        format!("{}, …", items[..5].join(", "))
    }
}

/// The dataset's card: source, license, and what the checks found.
pub(super) fn dataset_card(r: &Recipe, p: &Prepared) -> String {
    let c = &p.checks;
    let mut s = format!(
        "# {}\n\n{}\n\n- Source: {}\n- License: {}\n- Target: `{}` ({})\n\n## Checks before training\n\n\
         | rows read | without target | duplicates removed | same features, other target (kept) | rows kept | training | holdout | holdout rows also in training |\n\
         |---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} | {} |\n",
        r.dataset.name,
        if r.dataset.description.is_empty() { &r.recipe.scenario } else { &r.dataset.description },
        r.dataset.origin,
        r.dataset.license,
        r.task.target,
        super::kind_name(r.task.kind),
        c.rows_read,
        c.missing_target,
        c.duplicates,
        c.conflicting,
        c.rows,
        c.train,
        c.holdout,
        c.leaked
    );
    if !c.classes.is_empty() {
        s.push_str("\n## Classes\n\n| class | rows |\n|---|---|\n");
        for (k, v) in &c.classes {
            let _ = writeln!(s, "| {k} | {v} |");
        }
    }
    s
}

/// The model's card: what it does, how it was judged, what it was trained on.
pub(super) fn model_card(
    r: &Recipe,
    m: &ModelSpec,
    p: &Prepared,
    f: &Fitted,
    dataset_ref: &str,
) -> String {
    let s = &f.score;
    let mut out = format!(
        "# {} ({})\n\n{}\n\n## Evaluation on the holdout\n\n\
         | metric | value | 95% interval | holdout rows | baseline |\n|---|---|---|---|---|\n\
         | {} | {:.4} | {:.4} – {:.4} | {} | {:.4} ({}) |\n",
        r.recipe.scenario,
        m.describe(),
        r.recipe.description,
        s.metric,
        s.value,
        s.lo,
        s.hi,
        s.n,
        s.baseline,
        s.baseline_is
    );
    for (k, v) in &s.other {
        let _ = writeln!(out, "| {k} | {v:.4} | | {} | |", s.n);
    }
    let _ = write!(
        out,
        "\nThe intervals are 95% bootstrap percentile intervals (500 resamples). The model was \
         published because, on the same resamples, its metric minus the baseline's ({:+.4} to {:+.4}) \
         stays on the better side of zero.\n\n\
         ## Training\n\n- Architecture: {} with layers {:?}, trained with candle on {} (full-batch AdamW, {} epochs, learning rate {}, seed {}) in {:.2} s\n\
         - Data: {} ({} training rows, {} holdout rows split by {}), {}\n- Features: {}\n",
        s.diff_lo,
        s.diff_hi,
        m.architecture,
        f.layers,
        match (r.task.kind, s.metric.as_str()) {
            (TaskKind::Classification, _) => "cross-entropy",
            (_, "mae") => "absolute error, the metric it is judged by,",
            _ => "squared error, the metric it is judged by,",
        },
        m.epochs,
        m.learning_rate,
        m.seed,
        f.train_seconds,
        if r.dataset.redistribute { format!("`{dataset_ref}`") } else { format!("{} (its license does not allow publishing the data itself)", r.dataset.origin) },
        p.checks.train,
        p.checks.holdout,
        match r.task.split { super::recipe::Split::Hash => "row hash", super::recipe::Split::Ordered => "order (the last rows held out)" },
        r.dataset.license,
        abbreviate(&p.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>()),
    );
    out
}
