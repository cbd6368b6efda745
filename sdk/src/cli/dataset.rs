//! `algobay dataset …`: publish a data file as a dataset, show one.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use algobay_sdk::DatasetInfo;

use super::registry::{bar, connect, read, read_text, rt, show, Connection};
use super::Global;

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Publish a CSV file as a dataset. The registry reads it for its card:
    /// rows, columns, what a row holds and how the labels are spread.
    #[command(
        after_help = "Example:\n  algobay dataset publish digits.csv --name acme/digits --version 1.0.0 \\\n    \
--license BSD-3-Clause --source 'scikit-learn 1.7.2, sklearn/datasets/data/digits.csv.gz' \\\n    \
--label-column 64 --domain vision --task classification"
    )]
    Publish(DatasetPublish),
    /// Show a dataset: its card, source, license and label distribution.
    #[command(after_help = "Example:\n  algobay dataset show acme/digits@1.0.0")]
    Show {
        /// `team/name@version` or a digest.
        reference: String,
        /// Print the artifact as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `algobay dataset publish` options.
#[derive(Debug, Args)]
pub struct DatasetPublish {
    /// The data file (CSV, UTF-8, one row a line).
    pub file: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub version: String,
    /// The data's license: an SPDX identifier or the name of its terms (required).
    #[arg(long)]
    pub license: String,
    /// Where the data comes from: a package and version, a URL, a paper (required).
    #[arg(long)]
    pub source: String,
    /// The label or target column: its name (with --header) or 0-based index.
    #[arg(long, default_value = "")]
    pub label_column: String,
    /// The first line names the columns.
    #[arg(long)]
    pub header: bool,
    /// vision, speech, nlp, tabular, ...
    #[arg(long, default_value = "")]
    pub domain: String,
    /// classification, regression, ...
    #[arg(long, default_value = "")]
    pub task: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Industries it serves (repeatable).
    #[arg(long)]
    pub industry: Vec<String>,
    #[arg(long)]
    pub tag: Vec<String>,
    /// The dataset card, in markdown.
    #[arg(long)]
    pub card: Option<PathBuf>,
}

pub fn run(g: &Global, c: &Connection, cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Show { reference, json } => {
            show(g, c, &reference, &Some("dataset".into()), json)
        }
        DatasetCommand::Publish(d) => {
            let data = read(&d.file)?;
            let info = DatasetInfo {
                name: d.name,
                version: d.version,
                license: d.license,
                source: d.source,
                label_column: d.label_column,
                header: d.header,
                domain: d.domain,
                task: d.task,
                description: d.description,
                industries: d.industry,
                tags: d.tag,
                card: read_text(&d.card)?,
            };
            let a = rt()?.block_on(async {
                let client = connect(g, c).await?;
                let (bar, progress) = bar(g, "uploading");
                let a = client.publish_dataset(&data, info, progress).await;
                bar.finish_and_clear();
                a.map_err(anyhow::Error::from)
            })?;
            let card = a.dataset.clone().unwrap_or_default();
            println!(
                "published dataset {} {} ({} rows, {} columns, {} labels)",
                a.reference(),
                a.digest,
                card.rows,
                card.columns.len(),
                card.label_counts.len()
            );
            Ok(())
        }
    }
}
