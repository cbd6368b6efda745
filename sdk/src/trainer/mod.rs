//! A trainer: claims a training run, trains the kit's model on the base
//! dataset plus the enterprise's labelled field samples (warm-started from the
//! model serving), scores champion and challenger on the holdout for the
//! registry's gate and, when the gate promotes, builds and signs the new kit
//! version (only the weights change), pushes it and hands it to the registry to
//! deploy. The `algobay-trainer` binary runs this in a loop.
//!
//! A round is reproducible: the same samples, dataset and seed give the same
//! weights bytes, so the same kit digest. A trainer killed at any point loses
//! its lease; the next claim trains again and finds (rather than duplicates)
//! the version if it was already pushed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use algobay_proto::v1 as pb;
use algobay_runtime::candle::{
    mlp_predict, mlp_probabilities, train_mlp_bytes, MlpConfig, TrainSpec,
};
use algobay_runtime::manifest::{StepKind, Training};
use algobay_runtime::{Digest, KitArchive, Runtime, SecretKey};

use crate::client::{no_progress, Client, Kind, SdkError};

mod cost;
mod features;

use crate::training::{FieldSample, TrainingRun};
use cost::{side_by_side, timing_inputs};
use features::{model_input, Frozen};

type Result<T, E = SdkError> = std::result::Result<T, E>;

fn invalid(m: impl Into<String>) -> SdkError {
    SdkError::Invalid(m.into())
}

/// How a trainer works.
#[derive(Clone, Debug)]
pub struct TrainerOptions {
    /// Its name in runs' histories.
    pub holder: String,
    pub lease_seconds: u32,
    /// Where kits and datasets are cached.
    pub work_dir: PathBuf,
}

/// What one round did.
#[derive(Clone, Debug)]
pub struct RoundOutcome {
    pub run: TrainingRun,
    pub train_seconds: f64,
    pub base_rows: usize,
    pub field_train: usize,
    pub field_holdout: usize,
}

/// Rows of features and class indices.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Reads a CSV dataset's rows: the label column (a header name, or a 0-based
/// index) mapped to its class index, every other column a feature. A first
/// line equal to the card's column names is the header.
pub fn csv_rows(
    bytes: &[u8],
    columns: &[String],
    label_column: &str,
    classes: &[String],
    width: usize,
) -> Result<Rows> {
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("dataset: {e}")))?;
    let at = columns
        .iter()
        .position(|c| c == label_column)
        .or_else(|| label_column.parse::<usize>().ok())
        .ok_or_else(|| {
            invalid(format!(
                "label column `{label_column}` is not in the dataset"
            ))
        })?;
    let class: BTreeMap<&str, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let mut rows = Rows::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if n == 0 && cells.iter().zip(columns).all(|(a, b)| a == b) && cells.len() == columns.len()
        {
            continue;
        }
        if cells.len() != width + 1 || at >= cells.len() {
            return Err(invalid(format!(
                "dataset line {}: {} columns, the model takes {width} features and a label",
                n + 1,
                cells.len()
            )));
        }
        let label = cells[at];
        let c = *class.get(label).ok_or_else(|| {
            invalid(format!(
                "dataset line {}: label `{label}` is not one of the recipe's classes",
                n + 1
            ))
        })?;
        for (i, cell) in cells.iter().enumerate() {
            if i != at {
                rows.x.push(cell.parse::<f32>().map_err(|e| {
                    invalid(format!("dataset line {}, column {}: {e}", n + 1, i + 1))
                })?);
            }
        }
        rows.y.push(c);
    }
    Ok(rows)
}

/// A field sample's features: its input's bytes as little-endian f32.
fn sample_features(s: &FieldSample, width: usize) -> Option<Vec<f32>> {
    if s.datatype != "FP32" || s.data.len() != width * 4 {
        return None;
    }
    Some(
        s.data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// The trainer.
pub struct Trainer {
    client: Client,
    key: SecretKey,
    runtime: Arc<Runtime>,
    opts: TrainerOptions,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    pub fn new(
        client: Client,
        key: SecretKey,
        runtime: Arc<Runtime>,
        opts: TrainerOptions,
    ) -> Self {
        Trainer {
            client,
            key,
            runtime,
            opts,
        }
    }

    async fn cached(&self, digest: &str) -> Result<Vec<u8>> {
        let d: Digest = digest.parse()?;
        let path = self.opts.work_dir.join("blobs").join(d.hex());
        if let Ok(b) = std::fs::read(&path) {
            if Digest::of(&b) == d {
                return Ok(b);
            }
        }
        let b = self.client.download(digest).await?;
        let _ = std::fs::create_dir_all(path.parent().unwrap_or(&self.opts.work_dir));
        let _ = std::fs::write(&path, &b);
        Ok(b)
    }

    async fn kit(&self, reference: &str) -> Result<KitArchive> {
        let a = self.client.get(reference, Some(Kind::Kit)).await?;
        let path = self
            .opts
            .work_dir
            .join("kits")
            .join(format!("{}.kit", a.digest.trim_start_matches("sha256:")));
        if let Ok(k) = KitArchive::read_file(&path) {
            if k.digest().to_string() == a.digest {
                return Ok(k);
            }
        }
        self.client.pull_kit(reference, &path, no_progress()).await
    }

    async fn dataset(&self, reference: &str, t: &Training, width: usize) -> Result<(String, Rows)> {
        let a = self.client.get(reference, Some(Kind::Dataset)).await?;
        let card = a
            .dataset
            .clone()
            .ok_or_else(|| invalid(format!("{} has no dataset card", a.reference())))?;
        let bytes = self.cached(&a.digest).await?;
        let rows = csv_rows(&bytes, &card.columns, &t.label_column, &t.classes, width)?;
        Ok((a.digest.clone(), rows))
    }

    /// Claims a run and works it to its end; `None` when there is none to claim.
    pub async fn run_once(&self) -> Result<Option<RoundOutcome>> {
        let Some((run, token)) = self
            .client
            .claim_run(&self.opts.holder, self.opts.lease_seconds)
            .await?
        else {
            return Ok(None);
        };
        tracing::info!(run = %run.id, kit = %run.kit, enterprise = %run.enterprise, round = run.round, "claimed");
        // The lease is renewed while the round is worked on.
        let renew = {
            let client = self.client.clone();
            let (id, token, secs) = (run.id.clone(), token.clone(), self.opts.lease_seconds);
            tokio::spawn(async move {
                let every = std::time::Duration::from_secs((secs / 3).max(1) as u64);
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = client.renew_lease(&id, &token, secs).await {
                        tracing::warn!(error = %e, run = %id, "lease not renewed");
                        return;
                    }
                }
            })
        };
        let result = self.work(&run, &token).await;
        renew.abort();
        match result {
            Ok(outcome) => Ok(Some(outcome)),
            Err(e) => {
                tracing::warn!(run = %run.id, error = %e, "round failed");
                if let Err(f) = self.client.fail_run(&run.id, &token, &e.to_string()).await {
                    tracing::warn!(run = %run.id, error = %f, "could not mark the run failed");
                }
                Err(e)
            }
        }
    }

    /// Has the policy's teacher kit label the round's unlabelled samples; the
    /// registry keeps the confident ones. Returns how many it kept.
    async fn teach(
        &self,
        run: &TrainingRun,
        token: &str,
        data: &crate::training::RunDataResponse,
    ) -> Result<u32> {
        let teacher = self.kit(&data.teacher).await?;
        if teacher.digest().to_string() != data.teacher_digest {
            return Err(invalid(format!(
                "teacher {} is {}, the registry named {}",
                data.teacher,
                teacher.digest(),
                data.teacher_digest
            )));
        }
        // The registry checked the team's signature when it was pushed; the
        // same signatures are checked here against the digests just read.
        let mut roots = algobay_runtime::TrustRoots::new();
        for s in &teacher.signatures {
            roots.trust(s.public_key()?);
        }
        let runtime = self.runtime.clone();
        let unlabelled = data.unlabelled.clone();
        let labels = tokio::task::spawn_blocking(move || -> Result<Vec<pb::TeacherLabel>> {
            let verified = teacher.verify(&roots)?;
            let loaded = runtime.load(&verified)?;
            let m = loaded.manifest().clone();
            let port = m
                .inputs
                .first()
                .ok_or_else(|| invalid("the teacher kit has no input"))?;
            let mut out = Vec::new();
            for s in &unlabelled {
                let value = match port.ty {
                    algobay_runtime::PortType::Tensor { .. } if s.datatype == "FP32" => {
                        let shape: Vec<usize> = s.shape.iter().map(|d| *d as usize).collect();
                        algobay_runtime::Value::Tensor(algobay_runtime::Tensor::new(
                            algobay_runtime::DType::F32,
                            shape,
                            s.data.clone(),
                        )?)
                    }
                    _ => algobay_runtime::Value::Bytes(s.data.clone()),
                };
                let mut values = algobay_runtime::Values::new();
                values.insert(port.name.clone(), value);
                let Ok(answer) = loaded.run(values) else {
                    continue;
                };
                let json = serde_json::Value::Object(
                    answer
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_json()))
                        .collect(),
                );
                if let Some((label, score)) = first_label(&json) {
                    out.push(pb::TeacherLabel {
                        sample_id: s.sample_id.clone(),
                        value: label,
                        confidence: score.clamp(0.0, 1.0),
                    });
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| invalid(format!("teacher task: {e}")))??;
        let (kept, low) = self.client.teach_labels(&run.id, token, labels).await?;
        tracing::info!(run = %run.id, kept, below_threshold = low, teacher = %data.teacher, "teacher labels");
        Ok(kept)
    }

    async fn work(&self, run: &TrainingRun, token: &str) -> Result<RoundOutcome> {
        let mut data = self.client.run_data(&run.id, token).await?;
        if !data.teacher.is_empty() && !data.unlabelled.is_empty() && run.state != "promoted" {
            if self.teach(run, token, &data).await? > 0 {
                data = self.client.run_data(&run.id, token).await?;
            }
        }
        let recipe: Training = serde_json::from_str(&data.recipe_json)
            .map_err(|e| invalid(format!("the run's recipe: {e}")))?;
        let champion = self.kit(&run.champion).await?;
        let step = champion
            .manifest
            .steps
            .iter()
            .find(|s| s.name == recipe.step)
            .ok_or_else(|| invalid(format!("the champion has no step `{}`", recipe.step)))?;
        let StepKind::Candle {
            weights, config, ..
        } = &step.kind
        else {
            return Err(invalid(format!(
                "step `{}` is not a candle model",
                recipe.step
            )));
        };
        let cfg: MlpConfig = serde_json::from_value(config.clone())
            .map_err(|e| invalid(format!("step `{}` config: {e}", recipe.step)))?;
        let width = cfg.layers[0];
        // A head on frozen features reads what the steps before it make of the
        // kit's input: rows and samples hold that input, replayed through them.
        let (input, in_shape) = model_input(&champion.manifest, &recipe.step)?;
        let head = input != step.input_value("x");
        let in_width = if head {
            in_shape.iter().product()
        } else {
            width
        };
        let frozen = if head {
            let mut roots = algobay_runtime::TrustRoots::new();
            for s in &champion.signatures {
                roots.trust(s.public_key()?);
            }
            let (kit, runtime) = (champion.clone(), self.runtime.clone());
            let loaded = tokio::task::spawn_blocking(move || runtime.load(&kit.verify(&roots)?))
                .await
                .map_err(|e| invalid(format!("load task: {e}")))??;
            Some(Arc::new(Frozen::new(
                loaded,
                &recipe.step,
                input.clone(),
                in_shape.clone(),
                width,
                &self.opts.work_dir,
            )?))
        } else {
            None
        };
        let parent = champion
            .blobs
            .get(weights)
            .ok_or_else(|| invalid("the champion's weights are missing"))?
            .to_vec();
        let (dataset_digest, base) = self.dataset(&recipe.dataset, &recipe, in_width).await?;
        let (holdout_digest, holdout) = self.dataset(&recipe.holdout, &recipe, in_width).await?;
        // A round re-claimed after its judgement trains on exactly what was judged.
        let judged: Option<Judged> = if run.state == "promoted" {
            serde_json::from_str(&run.lineage_json).ok()
        } else {
            None
        };
        let class: BTreeMap<&str, u32> = recipe
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        let mut x = base.x.clone();
        let mut y = base.y.clone();
        let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut skipped = 0usize;
        for s in &data.train {
            if let Some(j) = &judged {
                if !j.samples.values().any(|ids| ids.contains(&s.sample_id)) {
                    continue;
                }
            }
            match (sample_features(s, in_width), class.get(s.label.as_str())) {
                (Some(f), Some(c)) => {
                    x.extend(f);
                    y.push(*c);
                    used.entry(s.source.clone())
                        .or_default()
                        .push(s.sample_id.clone());
                }
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "field samples whose input or label the model cannot take"
            );
        }
        let mut snapshot = dataset_digest.clone();
        for id in used.values().flatten() {
            snapshot.push('/');
            snapshot.push_str(id);
        }
        let snapshot_digest = Digest::of(snapshot.as_bytes()).to_string();
        let field_train = y.len() - base.len();
        let (epochs, lr, seed) = (recipe.epochs, recipe.learning_rate, recipe.seed);
        let started = Instant::now();
        let holdout_raw = holdout.clone();
        let (challenger, parent_bytes, holdout_rows, field_rows) = {
            let cfg = cfg.clone();
            let parent = parent.clone();
            let mut holdout = holdout.clone();
            let mut field: Vec<(String, Option<Vec<f32>>)> = data
                .holdout
                .iter()
                .map(|s| (s.sample_id.clone(), sample_features(s, in_width)))
                .collect();
            let frozen = frozen.clone();
            tokio::task::spawn_blocking(move || -> Result<_> {
                let mut x = x;
                if let Some(f) = &frozen {
                    x = f.features(&x)?;
                    holdout.x = f.features(&holdout.x)?;
                    for (_, row) in &mut field {
                        if let Some(r) = row {
                            *r = f.features(r)?;
                        }
                    }
                    tracing::info!(
                        computed = f.computed.load(std::sync::atomic::Ordering::Relaxed),
                        cached = f.cached.load(std::sync::atomic::Ordering::Relaxed),
                        "frozen features"
                    );
                }
                let (weights, _) = train_mlp_bytes(&TrainSpec {
                    cfg: &cfg,
                    x: &x,
                    y: &y,
                    holdout: (&[], &[]),
                    epochs,
                    lr,
                    seed,
                    init: Some(&parent),
                })?;
                Ok((weights, parent, holdout, field))
            })
            .await
            .map_err(|e| invalid(format!("training task: {e}")))??
        };
        let train_seconds = started.elapsed().as_secs_f64();
        let weights_digest = Digest::of(&challenger).to_string();
        if let Some(j) = &judged {
            if j.weights != weights_digest {
                return Err(invalid(format!(
                    "retraining gave weights {weights_digest}, the gate judged {}",
                    j.weights
                )));
            }
        }
        // Both models on the base holdout and the field holdout.
        let predict = |w: &[u8], rows: &[f32]| mlp_predict(&cfg, w, rows);
        let champ_base = predict(&parent_bytes, &holdout_rows.x)?;
        let chal_base = predict(&challenger, &holdout_rows.x)?;
        let mut field_x = Vec::new();
        let mut field_ids = Vec::new();
        for (id, f) in &field_rows {
            // A sample the model cannot read counts as a wrong answer for both.
            match f {
                Some(f) => {
                    field_x.extend_from_slice(f);
                    field_ids.push((id.clone(), true));
                }
                None => field_ids.push((id.clone(), false)),
            }
        }
        let champ_field = predict(&parent_bytes, &field_x)?;
        let chal_field = predict(&challenger, &field_x)?;
        // Ranked by AUC: each model's probability of the positive class too.
        let ranked = recipe.metric == "auc";
        let positive = |w: &[u8], rows: &[f32]| -> Result<Vec<f64>> {
            if !ranked {
                return Ok(Vec::new());
            }
            let k = cfg.layers.last().copied().unwrap_or(1).max(1);
            Ok(mlp_probabilities(&cfg, w, rows)?
                .chunks(k)
                .map(|r| r.get(1).copied().unwrap_or(0.0) as f64)
                .collect())
        };
        let (champ_scores, chal_scores) = (
            positive(&parent_bytes, &field_x)?,
            positive(&challenger, &field_x)?,
        );
        let base_scores = (
            positive(&parent_bytes, &holdout_rows.x)?,
            positive(&challenger, &holdout_rows.x)?,
        );
        let mut k = 0;
        let field: Vec<pb::FieldAnswer> = field_ids
            .into_iter()
            .map(|(id, ok)| {
                let (a, b, sa, sb) = if ok {
                    k += 1;
                    (
                        recipe.classes[champ_field[k - 1] as usize].clone(),
                        recipe.classes[chal_field[k - 1] as usize].clone(),
                        champ_scores.get(k - 1).copied().unwrap_or(0.0),
                        chal_scores.get(k - 1).copied().unwrap_or(0.0),
                    )
                } else {
                    (String::new(), String::new(), 0.0, 0.0)
                };
                pb::FieldAnswer {
                    sample_id: id,
                    champion: a,
                    challenger: b,
                    champion_score: sa,
                    challenger_score: sb,
                }
            })
            .collect();
        let lineage = serde_json::json!({
            "dataset": recipe.dataset,
            "dataset_digest": dataset_digest,
            "holdout": recipe.holdout,
            "holdout_digest": holdout_digest,
            "snapshot_digest": snapshot_digest,
            "samples": used,
            "base_rows": base.len(),
            "seed": seed,
            "epochs": epochs,
            "learning_rate": lr,
            "code_version": concat!("algobay-trainer ", env!("CARGO_PKG_VERSION")),
            "train_seconds": train_seconds,
            "parent_weights": weights.to_string(),
            "weights": weights_digest,
        });
        // The challenger's kit is built (golden samples run, signed) before the
        // gate: a failing golden sample is a reason to reject it.
        let built = {
            let runtime = self.runtime.clone();
            let key = self.key.clone();
            let step = recipe.step.clone();
            let version = run.version.clone();
            let base_kit = champion.clone();
            tokio::task::spawn_blocking(move || {
                algobay_runtime::kitfile::derive(
                    &runtime, &base_kit, &step, challenger, &version, &key,
                )
            })
            .await
            .map_err(|e| invalid(format!("build task: {e}")))?
        };
        let (kit, golden_failure) = match built {
            Ok(k) => (Some(k), String::new()),
            Err(e @ algobay_runtime::Error::Golden { .. }) => (None, e.to_string()),
            Err(e) => return Err(e.into()),
        };
        // Rule 5's figures: both whole kits timed side by side on the base
        // holdout's rows, and the challenger's size.
        let (champion_ms, challenger_ms, challenger_bytes) = match &kit {
            Some(k) => {
                let inputs = timing_inputs(&input, &in_shape, &holdout_raw, in_width)?;
                let mut roots = algobay_runtime::TrustRoots::new();
                for s in champion.signatures.iter().chain(&k.signatures) {
                    roots.trust(s.public_key()?);
                }
                let (a, b, runtime) = (champion.clone(), k.clone(), self.runtime.clone());
                let (ca, cb) = tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
                    let a = runtime.load(&a.verify(&roots)?)?;
                    let b = runtime.load(&b.verify(&roots)?)?;
                    side_by_side(&a, &b, &inputs)
                })
                .await
                .map_err(|e| invalid(format!("timing task: {e}")))??;
                (ca, cb, k.manifest.blobs.values().sum::<u64>())
            }
            None => (0.0, 0.0, 0),
        };
        tracing::info!(run = %run.id, champion_ms, challenger_ms, challenger_bytes, "cost");
        let mut judged_run = if judged.is_some() {
            run.clone()
        } else {
            self.client
                .submit_evaluation(pb::SubmitEvaluationRequest {
                    run: run.id.clone(),
                    lease_token: token.to_owned(),
                    lineage_json: lineage.to_string(),
                    base_champion: champ_base
                        .iter()
                        .zip(&holdout_rows.y)
                        .map(|(p, t)| p == t)
                        .collect(),
                    base_challenger: chal_base
                        .iter()
                        .zip(&holdout_rows.y)
                        .map(|(p, t)| p == t)
                        .collect(),
                    field,
                    golden_failure,
                    champion_latency_ms: champion_ms,
                    challenger_latency_ms: challenger_ms,
                    challenger_kit_bytes: challenger_bytes,
                    base_champion_scores: base_scores.0,
                    base_challenger_scores: base_scores.1,
                    base_positive: if ranked {
                        holdout_rows.y.iter().map(|y| *y == 1).collect()
                    } else {
                        Vec::new()
                    },
                })
                .await?
        };
        tracing::info!(run = %run.id, state = %judged_run.state, "judged");
        if let (Some(kit), "promoted") = (kit, judged_run.state.as_str()) {
            let reference = kit.manifest.reference();
            match self
                .client
                .push_kit_for(&kit, &run.private_to, no_progress())
                .await
            {
                Ok(_) => {}
                // Pushed by an earlier attempt: the same bytes, or something is wrong.
                Err(SdkError::Status { code, .. }) if code == tonic::Code::AlreadyExists => {
                    let there = self.client.get(&reference, Some(Kind::Kit)).await?;
                    if there.digest != kit.digest().to_string() {
                        return Err(invalid(format!(
                            "{reference} exists with digest {}, this round built {}",
                            there.digest,
                            kit.digest()
                        )));
                    }
                }
                Err(e) => return Err(e),
            }
            judged_run = self.client.release_run(&run.id, token, &reference).await?;
        }
        Ok(RoundOutcome {
            run: judged_run,
            train_seconds,
            base_rows: base.len(),
            field_train,
            field_holdout: data.holdout.len(),
        })
    }
}

/// The first `label` in a kit's outputs with its `score` (depth first).
fn first_label(v: &serde_json::Value) -> Option<(String, f64)> {
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(serde_json::Value::String(l)), Some(s)) =
                (m.get("label"), m.get("score").and_then(|s| s.as_f64()))
            {
                return Some((l.clone(), s));
            }
            m.values().find_map(first_label)
        }
        serde_json::Value::Array(a) => a.iter().find_map(first_label),
        _ => None,
    }
}

/// The part of a judged round's lineage a trainer reads back.
#[derive(serde::Deserialize)]
struct Judged {
    samples: BTreeMap<String, Vec<String>>,
    weights: String,
}
