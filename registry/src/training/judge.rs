//! What a round trains and is judged on: its field data (split by device),
//! the teacher's labels, the gate on a trainer's answers scored against the
//! registry's own labels, and the release of a promoted round.

use std::collections::{BTreeMap, BTreeSet};

use algobay_runtime::Manifest;

use super::auc::{self, Scored};
use super::gate::{self, Budget, Decision, Paired};
use super::runs::*;
use crate::domain::*;
use crate::error::{RegistryError, Result};
use crate::service::{json, parse, Registry};
use crate::store::{Batch, Tree};

impl Registry {
    /// The labelled field samples of a run's enterprise for its kit, split into
    /// what trains and what is held out. Teacher labels never enter the holdout.
    pub(super) fn run_data(&self, run: &Run) -> Result<RunData> {
        let (_, manifest) = self.trainable(&run.kit)?;
        let policy = self.policy(&run.enterprise, &run.kit)?;
        let mut rows = Vec::new();
        let mut unlabelled = Vec::new();
        let mut devices = BTreeSet::new();
        for (k, v) in self
            .kv
            .scan_prefix(Tree::Samples, format!("{}/", run.enterprise).as_bytes())?
        {
            let rec: SampleRecord = parse("sample", &v)?;
            if rec.kit_reference.split('@').next() != Some(run.kit.as_str()) {
                continue;
            }
            // A drift-started round learns and is judged on the drifted world only.
            if rec.received_unix < run.field_since_unix {
                continue;
            }
            devices.insert(rec.device_id.clone());
            let key = String::from_utf8_lossy(&k).into_owned();
            let labels: Vec<Label> = self
                .kv
                .scan_prefix(Tree::Labels, format!("{key}/").as_bytes())?
                .into_iter()
                .map(|(_, v)| parse("label", &v))
                .collect::<Result<_>>()?;
            // The model reads one input; the sample's first is it.
            let Some(input) = rec.inputs.first() else {
                continue;
            };
            let Some(label) = best_label(&labels).cloned() else {
                if !policy.teacher.is_empty() && unlabelled.len() < MAX_UNLABELLED {
                    unlabelled.push(FieldRow {
                        sample_id: rec.id.clone(),
                        device_id: rec.device_id.clone(),
                        source: LabelSource::Teacher,
                        label: String::new(),
                        datatype: input.datatype.clone(),
                        shape: input.shape.clone(),
                        data: self
                            .kv
                            .get(
                                Tree::SampleInputs,
                                crate::access::sample_key(&run.enterprise, &input.digest)
                                    .as_bytes(),
                            )?
                            .unwrap_or_default(),
                    });
                }
                continue;
            };
            let data = self
                .kv
                .get(
                    Tree::SampleInputs,
                    crate::access::sample_key(&run.enterprise, &input.digest).as_bytes(),
                )?
                .unwrap_or_default();
            rows.push(FieldRow {
                sample_id: rec.id,
                device_id: rec.device_id,
                source: label.source,
                label: label.value,
                datatype: input.datatype.clone(),
                shape: input.shape.clone(),
                data,
            });
        }
        let devices: Vec<String> = devices.into_iter().collect();
        let teacher_digest = if policy.teacher.is_empty() {
            String::new()
        } else {
            self.get(&policy.teacher, Some(Kind::Kit))?
                .digest
                .to_string()
        };
        let mut out = RunData {
            recipe: manifest.training,
            teacher: policy.teacher.clone(),
            teacher_digest,
            teacher_threshold: policy.teacher_threshold,
            unlabelled,
            ..RunData::default()
        };
        rows.sort_by(|a, b| a.sample_id.cmp(&b.sample_id));
        for r in rows {
            if held_out(&devices, &r.device_id, &r.sample_id) {
                if r.source != LabelSource::Teacher {
                    out.holdout.push(r);
                }
            } else {
                out.train.push(r);
            }
        }
        Ok(out)
    }

    /// Keeps the teacher's labels at or above the policy's threshold, on
    /// samples of the round. (kept, below the threshold)
    pub(super) fn teach(
        &self,
        run: &Run,
        labels: Vec<(String, String, f64)>,
    ) -> Result<(u32, u32)> {
        let policy = self.policy(&run.enterprise, &run.kit)?;
        if policy.teacher.is_empty() {
            return Err(RegistryError::FailedPrecondition(format!(
                "enterprise `{}` names no teacher for kit `{}`",
                run.enterprise, run.kit
            )));
        }
        if labels.len() > MAX_UNLABELLED {
            return Err(RegistryError::TooLarge(format!(
                "{} teacher labels in one call, over the limit of {MAX_UNLABELLED}",
                labels.len()
            )));
        }
        let teacher = self.get(&policy.teacher, Some(Kind::Kit))?;
        let mut open: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in self
            .kv
            .scan_prefix(Tree::Samples, format!("{}/", run.enterprise).as_bytes())?
        {
            let rec: SampleRecord = parse("sample", &v)?;
            if rec.kit_reference.split('@').next() == Some(run.kit.as_str()) {
                open.insert(rec.id, String::from_utf8_lossy(&k).into_owned());
            }
        }
        let now = self.clock.now_unix();
        let (mut kept, mut low) = (0u32, 0u32);
        let mut batch = Batch::new();
        for (i, (id, value, confidence)) in labels.into_iter().enumerate() {
            let key = open.get(&id).ok_or_else(|| {
                RegistryError::invalid(
                    format!("labels[{i}].sample_id"),
                    format!(
                        "`{}` is not a sample of this round",
                        crate::limits::shown(&id)
                    ),
                )
            })?;
            if !(0.0..=1.0).contains(&confidence) {
                return Err(RegistryError::invalid(
                    format!("labels[{i}].confidence"),
                    format!("{confidence} is not in [0, 1]"),
                ));
            }
            crate::limits::check_len(
                &format!("labels[{i}].value"),
                &value,
                crate::limits::text::ITEM,
            )?;
            if confidence < policy.teacher_threshold || value.trim().is_empty() {
                low += 1;
                continue;
            }
            let label = Label {
                value: value.trim().to_owned(),
                source: LabelSource::Teacher,
                by: format!("{} {}", teacher.reference(), teacher.digest),
                at_unix: now,
            };
            batch = batch.put(Tree::Labels, format!("{key}/teacher"), json(&label));
            kept += 1;
        }
        if kept > 0 && !self.kv.commit(batch)? {
            return Err(RegistryError::Storage(
                "teacher labels were not written".into(),
            ));
        }
        Ok((kept, low))
    }

    /// Judges a trained challenger: the gate on the trainer's answers, scored
    /// against the labels the registry holds.
    pub(super) fn evaluate_run(
        &self,
        p: &Principal,
        id: &str,
        token: &str,
        ev: Evaluation,
    ) -> Result<Run> {
        let (_, current) = self.find_run(id)?;
        if current.state != RunState::Training {
            return Err(RegistryError::FailedPrecondition(format!(
                "run {id} is {}, not training",
                current.state.as_str()
            )));
        }
        let data = self.run_data(&current)?;
        let given: BTreeSet<&str> = current.holdout.iter().map(String::as_str).collect();
        let truth: BTreeMap<&str, &str> = data
            .holdout
            .iter()
            .filter(|r| given.contains(r.sample_id.as_str()))
            .map(|r| (r.sample_id.as_str(), r.label.as_str()))
            .collect();
        let answered: BTreeSet<&str> = ev.field.iter().map(|(s, _, _)| s.as_str()).collect();
        if answered.len() != ev.field.len() {
            return Err(RegistryError::invalid(
                "evaluation.field",
                "a sample is answered twice",
            ));
        }
        if let Some(missing) = truth.keys().find(|s| !answered.contains(*s)) {
            return Err(RegistryError::invalid(
                "evaluation.field",
                format!("field holdout sample {missing} is not answered"),
            ));
        }
        if let Some(extra) = answered.iter().find(|s| !truth.contains_key(*s)) {
            return Err(RegistryError::invalid(
                "evaluation.field",
                format!(
                    "sample {} is not in the run's field holdout",
                    crate::limits::shown(extra)
                ),
            ));
        }
        if ev.base.is_empty() {
            return Err(RegistryError::invalid(
                "evaluation.base",
                "the base holdout has no rows",
            ));
        }
        let (fc, fh): (Vec<bool>, Vec<bool>) = ev
            .field
            .iter()
            .map(|(s, champ, chal)| {
                let t = truth[s.as_str()];
                (champ == t, chal == t)
            })
            .unzip();
        let (bc, bh): (Vec<bool>, Vec<bool>) = ev.base.iter().copied().unzip();
        if ev.golden_failure.is_empty() {
            for (field, v) in [
                ("evaluation.champion_latency_ms", ev.champion_latency_ms),
                ("evaluation.challenger_latency_ms", ev.challenger_latency_ms),
            ] {
                if !(v.is_finite() && v > 0.0 && v < 3_600_000.0) {
                    return Err(RegistryError::invalid(
                        field,
                        format!("{v} is not a duration in milliseconds"),
                    ));
                }
            }
            if ev.challenger_kit_bytes == 0 {
                return Err(RegistryError::invalid(
                    "evaluation.challenger_kit_bytes",
                    "must be the size of the challenger's kit",
                ));
            }
        }
        let rules = self.policy(&current.enterprise, &current.kit)?.rules;
        let field_pair = Paired {
            champion: &fc,
            challenger: &fh,
        };
        let base_pair = Paired {
            champion: &bc,
            challenger: &bh,
        };
        let recipe = data.recipe.clone();
        let mut report = match recipe.as_ref().filter(|t| t.metric == "auc") {
            None => gate::evaluate(field_pair, base_pair, rules),
            Some(t) => {
                // Ranking: each model's score for the positive class, the
                // field truth from the registry's own labels.
                let n = ev.field.len();
                if ev.field_scores.len() != n
                    || ev.base_scores.len() != ev.base.len()
                    || ev.base_positive.len() != ev.base.len()
                {
                    return Err(RegistryError::invalid(
                        "evaluation.scores",
                        format!(
                            "the recipe's metric is auc: every field answer and base row needs both models' scores (field {} of {n}, base {} and {} truths of {})",
                            ev.field_scores.len(),
                            ev.base_scores.len(),
                            ev.base_positive.len(),
                            ev.base.len()
                        ),
                    ));
                }
                if let Some(bad) = ev
                    .field_scores
                    .iter()
                    .chain(&ev.base_scores)
                    .flat_map(|(a, b)| [*a, *b])
                    .find(|v| !(0.0..=1.0).contains(v))
                {
                    return Err(RegistryError::invalid(
                        "evaluation.scores",
                        format!("{bad} is not a probability"),
                    ));
                }
                let positive_class = t.classes.get(1).cloned().unwrap_or_default();
                let field_positive: Vec<bool> = ev
                    .field
                    .iter()
                    .map(|(s, _, _)| truth[s.as_str()] == positive_class)
                    .collect();
                let (fa, fz): (Vec<f64>, Vec<f64>) = ev.field_scores.iter().copied().unzip();
                let (ba, bz): (Vec<f64>, Vec<f64>) = ev.base_scores.iter().copied().unzip();
                auc::evaluate(
                    gate::compare(field_pair, &rules),
                    Scored {
                        positive: &field_positive,
                        champion: &fa,
                        challenger: &fz,
                    },
                    gate::compare(base_pair, &rules),
                    Scored {
                        positive: &ev.base_positive,
                        champion: &ba,
                        challenger: &bz,
                    },
                    rules,
                )
            }
        };
        // Rule 5: the challenger's cost within the recipe's budget.
        let (latency_budget, size_budget) = data
            .recipe
            .as_ref()
            .map_or((None, None), |t| (t.latency_budget_ms, t.size_budget_mb));
        let budget = Budget::new(
            ev.champion_latency_ms,
            ev.challenger_latency_ms,
            self.kit_bytes(&current.champion_digest)?,
            ev.challenger_kit_bytes,
            latency_budget,
            size_budget,
        );
        if report.decision == Decision::Promote && ev.golden_failure.is_empty() {
            if let Some(why) = budget.over() {
                report.decision = Decision::Reject(why);
                report.decided_by = "budget".into();
            }
        }
        report.budget = Some(budget);
        // Weights trained on a private enterprise's data are its content
        // (without them named, nothing of the round can be released).
        if !current.private_to.is_empty() && !ev.lineage.weights.is_empty() {
            let weights: algobay_runtime::Digest =
                ev.lineage
                    .weights
                    .parse()
                    .map_err(|e: algobay_runtime::Error| {
                        RegistryError::invalid("evaluation.lineage.weights", e.to_string())
                    })?;
            self.mark_trained(&weights, &current.private_to, &current.id)?;
        }
        self.leased(p, id, token, move |r, now| {
            r.to(
                RunState::Evaluating,
                now,
                format!(
                    "trained in {:.1}s on {} base rows and {} field samples",
                    ev.lineage.train_seconds,
                    ev.lineage.base_rows,
                    ev.lineage.samples.values().map(Vec::len).sum::<usize>()
                ),
            );
            let golden = (!ev.golden_failure.is_empty()).then(|| {
                format!(
                    "the challenger fails a golden sample: {}",
                    crate::limits::shown(&ev.golden_failure)
                )
            });
            // The report says what was decided, golden samples included.
            if let Some(g) = &golden {
                report.decision = Decision::Reject(g.clone());
                report.decided_by = "golden".into();
            }
            let (state, why) = match &report.decision {
                _ if golden.is_some() => (RunState::Rejected, golden.unwrap_or_default()),
                Decision::Promote => (
                    RunState::Promoted,
                    match (report.field.champion_auc, report.field.challenger_auc) {
                        (Some(a), Some(z)) => format!(
                            "field AUC {a:.3} → {z:.3} (DeLong p = {:.2e}), base AUC {:.3} → {:.3}",
                            report.field.p,
                            report.base.champion_auc.unwrap_or(f64::NAN),
                            report.base.challenger_auc.unwrap_or(f64::NAN)
                        ),
                        _ => format!(
                            "field accuracy {:.3} → {:.3} (p = {:.2e}), base {:.3} → {:.3}",
                            report.field.champion_accuracy,
                            report.field.challenger_accuracy,
                            report.field.p,
                            report.base.champion_accuracy,
                            report.base.challenger_accuracy
                        ),
                    },
                ),
                Decision::Reject(why) => (RunState::Rejected, why.clone()),
                Decision::InsufficientEvidence(why) => {
                    (RunState::InsufficientEvidence, why.clone())
                }
            };
            r.to(state, now, why);
            if state != RunState::Promoted {
                r.lease = None;
            }
            r.lineage = Some(ev.lineage);
            r.gate = Some(report);
            Ok(())
        })
    }

    /// Takes the kit a promoted round built and deploys it to the enterprise's
    /// devices with a canary.
    pub(super) fn release_run(
        &self,
        p: &Principal,
        id: &str,
        token: &str,
        kit: &str,
    ) -> Result<Run> {
        let (_, current) = self.find_run(id)?;
        if current.state != RunState::Promoted {
            return Err(RegistryError::FailedPrecondition(format!(
                "run {id} is {}; only a promoted round is released",
                current.state.as_str()
            )));
        }
        let a = self.get(kit, Some(Kind::Kit))?;
        if a.name != current.kit || a.version != current.version {
            return Err(RegistryError::invalid(
                "kit",
                format!(
                    "{} is not this round's version {}@{}",
                    a.reference(),
                    current.kit,
                    current.version
                ),
            ));
        }
        if a.private_to != current.private_to {
            return Err(RegistryError::invalid(
                "kit",
                format!(
                    "{} is private to `{}`, the round's data allows `{}`",
                    a.reference(),
                    a.private_to,
                    if current.private_to.is_empty() {
                        "everyone"
                    } else {
                        &current.private_to
                    }
                ),
            ));
        }
        let m = Manifest::from_json(&self.blobs().read_all(&a.digest)?)?;
        let lineage = current.lineage.clone().unwrap_or_default();
        let step = m
            .training
            .as_ref()
            .map(|t| t.step.clone())
            .unwrap_or_default();
        let weights = m.steps.iter().find_map(|s| match &s.kind {
            algobay_runtime::manifest::StepKind::Candle { weights, .. } if s.name == step => {
                Some(weights.to_string())
            }
            _ => None,
        });
        if weights.as_deref() != Some(lineage.weights.as_str()) {
            return Err(RegistryError::invalid(
                "kit",
                format!(
                    "the weights of step `{step}` in {} are not the ones the gate judged ({})",
                    a.reference(),
                    lineage.weights
                ),
            ));
        }
        let model = self.publish_round_model(&current, &a, &m, &step)?;
        let champion = Manifest::from_json(&self.blobs().read_all(&current.champion_digest)?)?;
        let new_bytes: u64 = m
            .blobs
            .iter()
            .filter(|(d, _)| !champion.blobs.contains_key(d))
            .map(|(_, s)| *s)
            .sum();
        let kit_bytes: u64 = m.blobs.values().sum();
        if let Some(b) = current.gate.as_ref().and_then(|g| g.budget.as_ref()) {
            if kit_bytes > b.size_budget_bytes {
                return Err(RegistryError::invalid(
                    "kit",
                    format!(
                        "{} is {kit_bytes} bytes, over the round's size budget of {}",
                        a.reference(),
                        b.size_budget_bytes
                    ),
                ));
            }
        }
        let policy = self.policy(&current.enterprise, &current.kit)?;
        let acting = Principal {
            role: Role::Enterprise,
            subject: current.enterprise.clone(),
            token_id: format!("training {id}"),
        };
        let dep = self.create_deployment(
            &acting,
            &current.enterprise,
            &a.reference(),
            Labels::new(),
            RolloutPolicy {
                canary_share: policy.canary_share,
                soak_seconds: policy.soak_seconds,
                max_error_rate: 0.05,
                max_p99_ms: 0.0,
                manual_promote: false,
                sampling_off: false,
                field_gate: Some(FieldGate {
                    margin: policy.field_margin,
                    min_count: policy.min_field_count,
                    control: current.champion_digest,
                }),
            },
        )?;
        self.leased(p, id, token, move |r, now| {
            r.to(
                RunState::Deploying,
                now,
                format!(
                    "{} deployed as {} ({} new bytes of {}); its model is {model}",
                    a.reference(),
                    dep.id,
                    new_bytes,
                    kit_bytes
                ),
            );
            r.lease = None;
            r.release = Some(Release {
                kit_reference: a.reference(),
                kit_digest: a.digest,
                deployment_id: dep.id.clone(),
                new_bytes,
                kit_bytes,
            });
            Ok(())
        })
    }
}

impl Registry {
    /// Publishes the round's trained weights as a model version of their own
    /// (`team/kit.step@version`, private like the kit): its parent the
    /// champion's, its card the lineage and the gate's figures.
    fn publish_round_model(
        &self,
        run: &Run,
        kit: &Artifact,
        m: &Manifest,
        step: &str,
    ) -> Result<String> {
        let Some((weights, architecture, signature)) = m.steps.iter().find_map(|s| match &s.kind {
            algobay_runtime::manifest::StepKind::Candle {
                weights,
                architecture,
                signature,
                ..
            } if s.name == step => Some((*weights, architecture.clone(), signature.clone())),
            _ => None,
        }) else {
            return Err(RegistryError::invalid(
                "kit",
                format!("{} has no candle step `{step}`", kit.reference()),
            ));
        };
        let name = format!("{}.{step}", run.kit);
        let champion_version = run.champion.split('@').nth(1).unwrap_or_default();
        let parent_model = format!("{name}@{champion_version}");
        let parent = if self.get(&parent_model, Some(Kind::Model)).is_ok() {
            parent_model
        } else {
            run.champion.clone()
        };
        let size = self.blobs().read_all(&weights)?.len() as u64;
        let mut metrics = std::collections::BTreeMap::new();
        if let Some(g) = &run.gate {
            metrics.insert("field_accuracy".to_string(), g.field.challenger_accuracy);
            metrics.insert(
                "field_accuracy_parent".to_string(),
                g.field.champion_accuracy,
            );
            metrics.insert("base_accuracy".to_string(), g.base.challenger_accuracy);
            metrics.insert("base_accuracy_parent".to_string(), g.base.champion_accuracy);
            metrics.insert("field_p".to_string(), g.field.p);
            for (k, v) in [
                ("field_auc", g.field.challenger_auc),
                ("field_auc_parent", g.field.champion_auc),
                ("base_auc", g.base.challenger_auc),
                ("base_auc_parent", g.base.champion_auc),
            ] {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    metrics.insert(k.to_string(), v);
                }
            }
        }
        let lineage = run.lineage.clone().unwrap_or_default();
        let card = format!(
            "Step `{step}` of {kit_ref}, retrained by round {round} of {kit_name} for {ent} ({id}).\n\n\
             Data: {dataset} ({dataset_digest}) + field samples {samples}; snapshot {snapshot}.\n\
             Holdout: {holdout} ({holdout_digest}) and {n} field samples never trained on.\n\
             Recipe: {epochs} epochs, learning rate {lr}, seed {seed}; {code}.\n\
             Parent weights {parent_w}.\n\nGate: {gate}",
            kit_ref = kit.reference(),
            round = run.round,
            kit_name = run.kit,
            ent = run.enterprise,
            id = run.id,
            dataset = lineage.dataset,
            dataset_digest = lineage.dataset_digest,
            samples = lineage
                .samples
                .iter()
                .map(|(k, v)| format!("{k} {}", v.len()))
                .collect::<Vec<_>>()
                .join(", "),
            snapshot = lineage.snapshot_digest,
            holdout = lineage.holdout,
            holdout_digest = lineage.holdout_digest,
            n = run.holdout.len(),
            epochs = lineage.epochs,
            lr = lineage.learning_rate,
            seed = lineage.seed,
            code = lineage.code_version,
            parent_w = lineage.parent_weights,
            gate = run
                .gate
                .as_ref()
                .and_then(|g| serde_json::to_string(g).ok())
                .unwrap_or_default(),
        );
        let model = Artifact {
            description: format!(
                "{} retrained on {}'s field samples (round {})",
                run.kit, run.enterprise, run.round
            ),
            license: kit.license.clone(),
            industries: kit.industries.clone(),
            tags: vec!["retrained".into()],
            domain: if kit.domain.is_empty() {
                "tabular".into()
            } else {
                kit.domain.clone()
            },
            task: if kit.task.is_empty() {
                "classification".into()
            } else {
                kit.task.clone()
            },
            architecture,
            inputs: signature.inputs,
            outputs: signature.outputs,
            card,
            metrics,
            parent,
            blobs: vec![weights],
            private_to: run.private_to.clone(),
            published_unix: self.clock.now_unix(),
            published_by: format!("training {}", run.id),
            ..Artifact::new(
                Kind::Model,
                name,
                run.version.clone(),
                weights,
                size,
                "safetensors",
            )
        };
        Ok(self.insert_with(Vec::new(), model)?.reference())
    }

    /// A kit's size: the sum of its blobs, as a device fetches them.
    pub(super) fn kit_bytes(&self, digest: &algobay_runtime::Digest) -> Result<u64> {
        let m = Manifest::from_json(&self.blobs().read_all(digest)?)?;
        Ok(m.blobs.values().sum())
    }
}
