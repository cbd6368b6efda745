//! `algobay samples …`: an enterprise's hard examples, for its labellers:
//! list, show, label one, export to JSONL with the input files, import labels.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Subcommand;

use algobay_sdk::fleet::Sample;

use super::registry::{connect, print_json, rt, Connection};
use super::{Global, Usage};

#[derive(Debug, Subcommand)]
pub enum SamplesCommand {
    /// List hard examples (newest last), with their labels.
    #[command(
        after_help = "Examples:\n  algobay samples list --unlabelled\n  algobay samples list --kit acme/digits@1.0.0 --json"
    )]
    List {
        /// Only this kit (`team/name@version` or a digest).
        #[arg(long, default_value = "")]
        kit: String,
        /// Only samples with no label yet.
        #[arg(long)]
        unlabelled: bool,
        /// The enterprise (operators only; an enterprise token reads its own).
        #[arg(long, default_value = "")]
        enterprise: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one sample: its kit, why it was kept, outputs, inputs and labels.
    Show {
        /// The sample id (or the start of it, as `list` prints it).
        id: String,
        #[arg(long, default_value = "")]
        enterprise: String,
        #[arg(long)]
        json: bool,
    },
    /// Label one sample (the human source; replaces your earlier label).
    #[command(after_help = "Example:\n  algobay samples label 3f9c2a1b7d4e 7")]
    Label {
        /// The sample id (or the start of it).
        id: String,
        /// The label.
        value: String,
        #[arg(long, default_value = "")]
        enterprise: String,
    },
    /// Write samples to DIR: samples.jsonl (one sample a line, with its labels)
    /// and each input as a file named by its digest.
    #[command(after_help = "Example:\n  algobay samples export --out to-label --unlabelled")]
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "")]
        kit: String,
        #[arg(long)]
        unlabelled: bool,
        #[arg(long, default_value = "")]
        enterprise: String,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Label samples from a JSONL file: one `{"id": ..., "label": ...}` a line
    /// (an exported file with a `label` added to each line works).
    #[command(after_help = "Example:\n  algobay samples import to-label/samples.jsonl")]
    Import {
        file: PathBuf,
        #[arg(long, default_value = "")]
        enterprise: String,
    },
}

/// Every sample of the enterprise (a page at a time), up to `limit`.
async fn all(
    client: &algobay_sdk::Client,
    enterprise: &str,
    kit: &str,
    unlabelled: bool,
    limit: u32,
) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = client
            .list_samples_where(enterprise, kit, 500.min(limit), &token, unlabelled)
            .await?;
        out.extend(page);
        if next.is_empty() || out.len() >= limit as usize {
            break;
        }
        token = next;
    }
    out.truncate(limit as usize);
    Ok(out)
}

/// The one sample whose id starts with `id`.
async fn find(client: &algobay_sdk::Client, enterprise: &str, id: &str) -> anyhow::Result<Sample> {
    if id.len() < 6 {
        anyhow::bail!(Usage(format!(
            "sample id `{id}`: give at least 6 of its hex digits"
        )));
    }
    let found: Vec<Sample> = all(client, enterprise, "", false, u32::MAX)
        .await?
        .into_iter()
        .filter(|s| s.id.starts_with(id))
        .collect();
    match found.len() {
        0 => anyhow::bail!(super::NotFound(format!(
            "no sample has an id starting `{id}`"
        ))),
        1 => Ok(found.into_iter().next().unwrap_or_else(|| unreachable!())),
        n => anyhow::bail!(Usage(format!(
            "sample id `{id}` starts {n} samples' ids; give more of it"
        ))),
    }
}

/// Text from a device or a labeller, as a terminal may show it: control
/// characters (escape sequences, NUL, new lines) escaped.
fn shown(t: &str) -> String {
    t.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn labels(s: &Sample) -> String {
    if s.labels.is_empty() {
        return "-".into();
    }
    s.labels
        .iter()
        .map(|l| format!("{}={}", shown(&l.source), shown(&l.value)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(g: &Global, c: &Connection, cmd: SamplesCommand) -> anyhow::Result<()> {
    rt()?.block_on(async {
        let client = connect(g, c).await?;
        match cmd {
            SamplesCommand::List {
                kit,
                unlabelled,
                enterprise,
                limit,
                json,
            } => {
                let v = all(&client, &enterprise, &kit, unlabelled, limit).await?;
                if json {
                    return print_json(&v);
                }
                for s in &v {
                    println!(
                        "{}  {}  {}  {}  {}",
                        shown(&s.id[..12.min(s.id.len())]),
                        shown(&s.kit_reference),
                        shown(&s.device_id),
                        shown(&s.reason),
                        labels(s)
                    );
                }
                println!("{} sample(s)", v.len());
            }
            SamplesCommand::Show {
                id,
                enterprise,
                json,
            } => {
                let s = find(&client, &enterprise, &id).await?;
                if json {
                    return print_json(&s);
                }
                println!("sample      {}", shown(&s.id));
                println!(
                    "kit         {} {}",
                    shown(&s.kit_reference),
                    shown(&s.kit_digest)
                );
                println!("device      {}", shown(&s.device_id));
                println!("kept        {} (at {})", shown(&s.reason), s.created_unix);
                for i in &s.inputs {
                    println!(
                        "input       {} {} {:?} {} ({} bytes)",
                        i.name, i.datatype, i.shape, i.digest, i.size
                    );
                }
                println!("outputs     {}", shown(&s.outputs_json));
                for l in &s.labels {
                    println!(
                        "label       {} from {} by {} at {}",
                        shown(&l.value),
                        shown(&l.source),
                        shown(&l.by),
                        l.at_unix
                    );
                }
            }
            SamplesCommand::Label {
                id,
                value,
                enterprise,
            } => {
                let s = find(&client, &enterprise, &id).await?;
                client
                    .label_samples(&enterprise, vec![(s.id.clone(), value.clone())])
                    .await?;
                println!("labelled {} as {value}", &s.id[..12.min(s.id.len())]);
            }
            SamplesCommand::Export {
                out,
                kit,
                unlabelled,
                enterprise,
                limit,
            } => {
                let v = all(&client, &enterprise, &kit, unlabelled, limit).await?;
                std::fs::create_dir_all(&out)?;
                let mut lines = Vec::new();
                for s in &v {
                    let mut inputs = Vec::new();
                    for i in &s.inputs {
                        let file = i.digest.replace(':', "-");
                        let path = out.join(&file);
                        if !path.exists() {
                            let bytes = client.download_for(&i.digest, &enterprise).await?;
                            algobay_runtime::fsx::write_atomic(&path, &bytes)?;
                        }
                        inputs.push(serde_json::json!({
                            "name": i.name, "datatype": i.datatype, "shape": i.shape,
                            "digest": i.digest, "file": file,
                        }));
                    }
                    let outputs: serde_json::Value = serde_json::from_str(&s.outputs_json)
                        .unwrap_or(serde_json::Value::String(s.outputs_json.clone()));
                    lines.push(serde_json::json!({
                        "id": s.id, "kit": s.kit_reference, "kit_digest": s.kit_digest,
                        "device": s.device_id, "reason": s.reason, "created_unix": s.created_unix,
                        "inputs": inputs, "outputs": outputs, "labels": s.labels,
                    }));
                }
                let path = out.join("samples.jsonl");
                algobay_runtime::fsx::write_atomic_with(&path, false, |f| {
                    let mut w = std::io::BufWriter::new(f);
                    for l in &lines {
                        writeln!(w, "{l}")?;
                    }
                    w.flush()
                })?;
                println!("exported {} sample(s) to {}", lines.len(), path.display());
            }
            SamplesCommand::Import { file, enterprise } => {
                let f = std::fs::File::open(&file)
                    .map_err(|e| super::NotFound(format!("{}: {e}", file.display())))?;
                let mut labels = Vec::new();
                for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
                        Usage(format!("{} line {}: not JSON: {e}", file.display(), n + 1))
                    })?;
                    let field = |k: &str| {
                        v.get(k)
                            .and_then(|x| match x {
                                serde_json::Value::String(s) => Some(s.clone()),
                                serde_json::Value::Number(n) => Some(n.to_string()),
                                _ => None,
                            })
                            .ok_or_else(|| {
                                Usage(format!(
                                    "{} line {}: needs a `{k}` (a string or number)",
                                    file.display(),
                                    n + 1
                                ))
                            })
                    };
                    labels.push((field("id")?, field("label")?));
                }
                let mut labelled = 0;
                let mut unknown = Vec::new();
                for chunk in labels.chunks(1000) {
                    let (n, u) = client.label_samples(&enterprise, chunk.to_vec()).await?;
                    labelled += n;
                    unknown.extend(u);
                }
                println!("labelled {labelled} sample(s)");
                if !unknown.is_empty() {
                    anyhow::bail!(super::NotFound(format!(
                        "{} id(s) name no sample of the enterprise: {}",
                        unknown.len(),
                        unknown.join(", ")
                    )));
                }
            }
        }
        Ok(())
    })
}
