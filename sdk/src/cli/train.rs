//! `algobay train …`: an enterprise's retraining of a kit on its own field
//! data: the policy (gate thresholds, automatic rounds, rollout), starting a
//! round, the rounds with their gate reports and lineage.

use clap::Subcommand;

use algobay_sdk::training::{TrainPolicy, TrainingRun};

use super::registry::{connect, print_json, rt, Connection};
use super::{Global, Usage};

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Show or change the enterprise's training policy for a kit.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Start the next round of a kit now (one unfinished round at a time).
    #[command(after_help = "Example:\n  algobay train start --kit algobay/digits-mlp")]
    Start {
        /// `team/name` of the kit.
        #[arg(long)]
        kit: String,
        /// The enterprise (operators only; an enterprise token acts for its own).
        #[arg(long, default_value = "")]
        enterprise: String,
        #[arg(long)]
        json: bool,
    },
    /// The rounds: state, champion, version, gate figures.
    #[command(
        after_help = "Examples:\n  algobay train runs --kit algobay/digits-mlp\n  algobay train runs --sample 3f9c2a1b7d4e   (the rounds that trained on a sample)"
    )]
    Runs {
        #[arg(long, default_value = "")]
        kit: String,
        #[arg(long, default_value = "")]
        enterprise: String,
        /// Only the rounds that trained on this sample (its id or the start of it).
        #[arg(long)]
        sample: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One round: every change of state with its reason, the gate report, the
    /// lineage (datasets, samples by source, seed, weights) and the release.
    Show {
        run: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the policy (the defaults until one is set).
    Show {
        #[arg(long)]
        kit: String,
        #[arg(long, default_value = "")]
        enterprise: String,
        #[arg(long)]
        json: bool,
    },
    /// Change some of the policy; what is not given stays as it is.
    #[command(
        after_help = "Example:\n  algobay train policy set --kit algobay/digits-mlp --auto true --min-new-labels 300 --canary-share 0.34"
    )]
    Set {
        #[arg(long)]
        kit: String,
        #[arg(long, default_value = "")]
        enterprise: String,
        /// Start rounds by themselves: on enough new labels, drift or the longest interval.
        #[arg(long)]
        auto: Option<bool>,
        #[arg(long)]
        min_new_labels: Option<u32>,
        /// The gate's significance level on the field slice.
        #[arg(long)]
        alpha: Option<f64>,
        /// Largest accuracy loss allowed on the base holdout (0.01 = one point).
        #[arg(long)]
        base_margin: Option<f64>,
        /// Field holdout samples needed before the gate decides.
        #[arg(long)]
        min_field: Option<u32>,
        /// Discordant pairs needed before the gate decides.
        #[arg(long)]
        min_discordant: Option<u64>,
        /// Share of the devices that get a promoted model first.
        #[arg(long)]
        canary_share: Option<f64>,
        #[arg(long)]
        soak_seconds: Option<u32>,
        /// Canaries' feedback accuracy may fall this far below the others' (0.05 = 5 points).
        #[arg(long)]
        field_margin: Option<f64>,
        /// Feedback labels each side needs before field accuracy is compared.
        #[arg(long)]
        min_field_count: Option<u32>,
        /// Whether models trained on the enterprise's data may be public.
        #[arg(long)]
        share: Option<bool>,
        /// A larger kit (`team/name@version`) that labels unlabelled samples; "" for none.
        #[arg(long)]
        teacher: Option<String>,
        /// The teacher's labels are kept only at or above this confidence.
        #[arg(long)]
        teacher_threshold: Option<f64>,
        /// With --auto: start a round once this many seconds passed since the
        /// last began and a label came meanwhile (0: not by time; else ≥ 60).
        #[arg(long)]
        max_interval_seconds: Option<u32>,
        /// With --auto: start a round when the share of requests kept as hard
        /// examples over a window reaches this multiple of the champion's
        /// first window's (0: off; else over 1).
        #[arg(long)]
        drift_factor: Option<f64>,
        /// Requests per drift window.
        #[arg(long)]
        drift_window: Option<u32>,
    },
}

fn print_policy(p: &TrainPolicy) {
    println!("kit              {}", p.kit);
    println!("enterprise       {}", p.enterprise);
    println!(
        "rounds           {}",
        if p.auto {
            let mut t = format!("automatic, after {} new labels", p.min_new_labels);
            if p.drift_factor > 0.0 {
                t += &format!(
                    "; on drift (hard examples over {} requests at {}× the champion's first window)",
                    p.drift_window, p.drift_factor
                );
            }
            if p.max_interval_seconds > 0 {
                t += &format!(
                    "; at least every {} s when labels came",
                    p.max_interval_seconds
                );
            }
            t
        } else {
            "started by hand (train start)".into()
        }
    );
    println!(
        "gate             p < {} on the field slice, base loss under {:.1} points, at least {} field samples and {} discordant pairs",
        p.alpha,
        p.base_margin * 100.0,
        p.min_field,
        p.min_discordant
    );
    println!(
        "rollout          {:.0}% canaries, {}s soak, rolled back when their feedback accuracy falls {:.1} points under the others' ({} labels each)",
        p.canary_share * 100.0,
        p.soak_seconds,
        p.field_margin * 100.0,
        p.min_field_count
    );
    if !p.teacher.is_empty() {
        println!(
            "teacher          {} (labels kept at confidence {} or more; they train, never judge)",
            p.teacher, p.teacher_threshold
        );
    }
    println!(
        "models           {}",
        if p.share {
            "may be public"
        } else {
            "private to the enterprise"
        }
    );
}

/// One line of the gate's figures, from its report.
fn gate_line(r: &TrainingRun) -> String {
    let Ok(g) = serde_json::from_str::<serde_json::Value>(&r.gate_json) else {
        return String::new();
    };
    let f = &g["field"];
    let b = &g["base"];
    format!(
        "field {:.3}→{:.3} (n {}, b {}, c {}, p {:.2e})  base {:.3}→{:.3}",
        f["champion_accuracy"].as_f64().unwrap_or(0.0),
        f["challenger_accuracy"].as_f64().unwrap_or(0.0),
        f["n"],
        f["b"],
        f["c"],
        f["p"].as_f64().unwrap_or(1.0),
        b["champion_accuracy"].as_f64().unwrap_or(0.0),
        b["challenger_accuracy"].as_f64().unwrap_or(0.0),
    )
}

fn trained_on(r: &TrainingRun, sample: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(&r.lineage_json)
        .ok()
        .and_then(|l| l["samples"].as_object().cloned())
        .is_some_and(|by| {
            by.values().any(|ids| {
                ids.as_array().is_some_and(|ids| {
                    ids.iter()
                        .any(|i| i.as_str().is_some_and(|i| i.starts_with(sample)))
                })
            })
        })
}

pub fn run(g: &Global, c: &Connection, cmd: TrainCommand) -> anyhow::Result<()> {
    rt()?.block_on(async {
        let client = connect(g, c).await?;
        match cmd {
            TrainCommand::Policy(PolicyCommand::Show {
                kit,
                enterprise,
                json,
            }) => {
                let p = client.train_policy(&enterprise, &kit).await?;
                if json {
                    return print_json(&serde_json::json!({
                        "enterprise": p.enterprise, "kit": p.kit, "auto": p.auto,
                        "min_new_labels": p.min_new_labels, "alpha": p.alpha,
                        "base_margin": p.base_margin, "min_field": p.min_field,
                        "min_discordant": p.min_discordant, "bootstrap_reps": p.bootstrap_reps,
                        "canary_share": p.canary_share, "soak_seconds": p.soak_seconds,
                        "field_margin": p.field_margin, "min_field_count": p.min_field_count,
                        "share": p.share, "teacher": p.teacher, "teacher_threshold": p.teacher_threshold,
                        "max_interval_seconds": p.max_interval_seconds,
                        "drift_factor": p.drift_factor, "drift_window": p.drift_window,
                        "updated_unix": p.updated_unix, "updated_by": p.updated_by,
                    }));
                }
                print_policy(&p);
            }
            TrainCommand::Policy(PolicyCommand::Set {
                kit,
                enterprise,
                auto,
                min_new_labels,
                alpha,
                base_margin,
                min_field,
                min_discordant,
                canary_share,
                soak_seconds,
                field_margin,
                min_field_count,
                share,
                teacher,
                teacher_threshold,
                max_interval_seconds,
                drift_factor,
                drift_window,
            }) => {
                let mut p = client.train_policy(&enterprise, &kit).await?;
                p.auto = auto.unwrap_or(p.auto);
                p.min_new_labels = min_new_labels.unwrap_or(p.min_new_labels);
                p.alpha = alpha.unwrap_or(p.alpha);
                p.base_margin = base_margin.unwrap_or(p.base_margin);
                p.min_field = min_field.unwrap_or(p.min_field);
                p.min_discordant = min_discordant.unwrap_or(p.min_discordant);
                p.canary_share = canary_share.unwrap_or(p.canary_share);
                p.soak_seconds = soak_seconds.unwrap_or(p.soak_seconds);
                p.field_margin = field_margin.unwrap_or(p.field_margin);
                p.min_field_count = min_field_count.unwrap_or(p.min_field_count);
                p.share = share.unwrap_or(p.share);
                p.teacher = teacher.unwrap_or(p.teacher);
                p.teacher_threshold = teacher_threshold.unwrap_or(p.teacher_threshold);
                p.max_interval_seconds = max_interval_seconds.unwrap_or(p.max_interval_seconds);
                p.drift_factor = drift_factor.unwrap_or(p.drift_factor);
                p.drift_window = drift_window.unwrap_or(p.drift_window);
                let p = client.set_train_policy(p).await?;
                print_policy(&p);
            }
            TrainCommand::Start {
                kit,
                enterprise,
                json,
            } => {
                let r = client.start_run(&enterprise, &kit).await?;
                if json {
                    return print_json(&run_json(&r));
                }
                println!(
                    "{} round {} of {} for {}: {} (champion {}, releases {})",
                    r.id, r.round, r.kit, r.enterprise, r.state, r.champion, r.version
                );
            }
            TrainCommand::Runs {
                kit,
                enterprise,
                sample,
                json,
            } => {
                if let Some(s) = &sample {
                    if s.len() < 6 {
                        anyhow::bail!(Usage(format!(
                            "sample id `{s}`: give at least 6 of its hex digits"
                        )));
                    }
                }
                let runs: Vec<TrainingRun> = client
                    .list_runs(&enterprise, &kit)
                    .await?
                    .into_iter()
                    .filter(|r| sample.as_deref().is_none_or(|s| trained_on(r, s)))
                    .collect();
                if json {
                    return print_json(&runs.iter().map(run_json).collect::<Vec<_>>());
                }
                if !kit.is_empty() {
                    let a = client.kit_aliases(&enterprise, &kit).await?;
                    let or_none = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
                    println!("champion  {}", or_none(&a.champion));
                    println!("previous  {}", or_none(&a.previous));
                }
                for r in &runs {
                    println!(
                        "{}  round {}  {}  {}  {}  {}",
                        r.id,
                        r.round,
                        r.state,
                        r.champion,
                        r.release
                            .as_ref()
                            .map(|x| x.kit_reference.clone())
                            .unwrap_or_else(|| format!("({})", r.version)),
                        gate_line(r)
                    );
                }
                println!("{} run(s)", runs.len());
            }
            TrainCommand::Show { run, json } => {
                let r = client.get_run(&run).await?;
                if json {
                    return print_json(&run_json(&r));
                }
                println!("run         {} (round {})", r.id, r.round);
                println!("kit         {} for {}", r.kit, r.enterprise);
                println!("champion    {} {}", r.champion, r.champion_digest);
                println!(
                    "version     {}{}",
                    r.version,
                    if r.private_to.is_empty() {
                        " (public)".to_owned()
                    } else {
                        format!(" (private to {})", r.private_to)
                    }
                );
                println!("state       {} (attempts {})", r.state, r.attempts);
                for t in &r.history {
                    println!("  {}  {:<22} {}", t.at_unix, t.state, t.reason);
                }
                if !r.gate_json.is_empty() {
                    println!("gate        {}", gate_line(&r));
                    if let Ok(g) = serde_json::from_str::<serde_json::Value>(&r.gate_json) {
                        let b = &g["budget"];
                        if b.is_object() {
                            println!(
                                "cost        {:.2} ms per call (champion {:.2}, budget {:.2}); {} bytes (champion {}, budget {})",
                                b["challenger_latency_ms"].as_f64().unwrap_or(0.0),
                                b["champion_latency_ms"].as_f64().unwrap_or(0.0),
                                b["latency_budget_ms"].as_f64().unwrap_or(0.0),
                                b["challenger_bytes"],
                                b["champion_bytes"],
                                b["size_budget_bytes"]
                            );
                        }
                    }
                }
                if let Ok(l) = serde_json::from_str::<serde_json::Value>(&r.lineage_json) {
                    println!(
                        "data        {} ({}) + samples {}",
                        l["dataset"].as_str().unwrap_or("?"),
                        l["dataset_digest"].as_str().unwrap_or("?"),
                        l["samples"]
                            .as_object()
                            .map(|m| m
                                .iter()
                                .map(|(k, v)| format!(
                                    "{k} {}",
                                    v.as_array().map(Vec::len).unwrap_or(0)
                                ))
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    );
                    println!("snapshot    {}", l["snapshot_digest"].as_str().unwrap_or("?"));
                    println!(
                        "trained     {} epochs, learning rate {}, seed {}, {:.1}s",
                        l["epochs"], l["learning_rate"], l["seed"],
                        l["train_seconds"].as_f64().unwrap_or(0.0)
                    );
                    println!(
                        "weights     {} (parent {})",
                        l["weights"].as_str().unwrap_or("?"),
                        l["parent_weights"].as_str().unwrap_or("?")
                    );
                }
                if let Some(x) = &r.release {
                    println!(
                        "released    {} {} as {} ({} new bytes of {})",
                        x.kit_reference, x.kit_digest, x.deployment_id, x.new_bytes, x.kit_bytes
                    );
                }
            }
        }
        Ok(())
    })
}

/// A run as JSON, its gate report and lineage as objects.
fn run_json(r: &TrainingRun) -> serde_json::Value {
    let parse =
        |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": r.id, "enterprise": r.enterprise, "kit": r.kit, "round": r.round,
        "champion": r.champion, "champion_digest": r.champion_digest, "version": r.version,
        "private_to": r.private_to, "trigger": r.trigger, "state": r.state,
        "history": r.history.iter().map(|t| serde_json::json!({"state": t.state, "at_unix": t.at_unix, "reason": t.reason})).collect::<Vec<_>>(),
        "lease_holder": r.lease_holder, "lease_until_unix": r.lease_until_unix, "attempts": r.attempts,
        "gate": parse(&r.gate_json), "lineage": parse(&r.lineage_json),
        "release": r.release.as_ref().map(|x| serde_json::json!({
            "kit_reference": x.kit_reference, "kit_digest": x.kit_digest, "deployment_id": x.deployment_id,
            "new_bytes": x.new_bytes, "kit_bytes": x.kit_bytes,
        })),
        "created_unix": r.created_unix, "updated_unix": r.updated_unix,
    })
}
