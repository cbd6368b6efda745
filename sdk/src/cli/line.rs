//! `algobay line run LINE.toml`: the production line.

use std::path::PathBuf;

use clap::Subcommand;

use algobay_sdk::line::{self, LineOptions};

use super::registry::{rt, settings, Connection};
use super::{Global, Usage};

#[derive(Debug, Subcommand)]
pub enum LineCommand {
    /// Make every recipe's dataset, models and kits and publish them as the
    /// recipe's team (registered, with a key and token, the first time; needs an
    /// operator token). A recipe unchanged since the last run is not rebuilt and
    /// sends nothing; a refused or failed recipe is reported and the others go on.
    /// Exits 0 when nothing failed (refusals are verdicts, not failures), 1 otherwise.
    #[command(
        after_help = "Examples:\n  algobay line run examples/line/LINE.toml\n  algobay line run examples/line/LINE.toml --only breast-cancer --json"
    )]
    Run {
        /// The line file (recipes, teams, tools).
        line: PathBuf,
        /// Only this recipe (its file name without .toml); repeatable.
        #[arg(long)]
        only: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The work folder (state, team keys and tokens, data, kits, report), in
        /// place of the one LINE.toml names.
        #[arg(long, env = "ALGOBAY_LINE_WORK")]
        work: Option<PathBuf>,
    },
}

pub fn run(g: &Global, c: &Connection, cmd: LineCommand) -> anyhow::Result<()> {
    let LineCommand::Run {
        line,
        only,
        json,
        work,
    } = cmd;
    let (url, token, ca_pem) = settings(g, c)?;
    let operator_token = token.ok_or_else(|| {
        Usage("the line needs an operator token: pass --token or set ALGOBAY_TOKEN".into())
    })?;
    let runtime = g.runtime()?;
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into());
    let opts = LineOptions {
        url,
        ca_pem,
        operator_token,
        cargo,
        only,
        work,
    };
    let quiet = g.quiet || json;
    let spinner = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let sp = spinner.clone();
    let report = rt()?.block_on(line::run(&runtime, &line, &opts, &move |m: &str| {
        sp.set_message(m.to_owned())
    }))?;
    spinner.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for o in &report.outcomes {
            println!(
                "{:<9} {:<8} {:<52} {}",
                o.status, o.kind, o.reference, o.detail
            );
        }
        let t = &report.timings;
        println!(
            "\n{} published, {} unchanged, {} refused, {} failed; {} bytes sent in {:.1} s \
             (extract {:.1}, check {:.1}, train {:.1}, evaluate {:.1}, build {:.1}, publish {:.1})",
            report.count("published", None),
            report.count("unchanged", None),
            report.count("refused", None),
            report.count("failed", None),
            report.bytes_sent,
            report.seconds,
            t.extract,
            t.check,
            t.train,
            t.evaluate,
            t.build,
            t.publish
        );
    }
    if report.count("failed", None) > 0 {
        return Err(LineFailed(report.count("failed", None)).into());
    }
    Ok(())
}

/// Some recipes failed (the report names them and why).
#[derive(Debug, thiserror::Error)]
#[error("{0} artifacts of the line failed")]
pub struct LineFailed(usize);
