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
    /// Put the line's kits in service: for every enterprise of the file LINE.toml
    /// names (`enterprises = …`), register the enterprise and its token, start a
    /// real `algobay-agent` on this machine enrolled as its device, deploy a kit
    /// the line published for the enterprise's industry, send it the kit's sample
    /// inputs, and wait until the registry has the device's report and telemetry
    /// (what `algobay coverage` counts as served). Needs an operator token and a
    /// run of `algobay line run` first. Prints each enterprise and the agents'
    /// peak memory; exits 0 when every enterprise was served, 1 otherwise.
    #[command(
        after_help = "Examples:\n  algobay line pilot examples/line/LINE.toml\n  algobay line pilot examples/line/LINE.toml --keep --requests 50"
    )]
    Pilot {
        /// The line file.
        line: PathBuf,
        /// The agent program (default: `algobay-agent` beside this program, else on PATH).
        #[arg(long, env = "ALGOBAY_AGENT")]
        agent: Option<PathBuf>,
        /// Requests each device serves (its kit's sample inputs, in turn).
        #[arg(long, default_value_t = 10)]
        requests: usize,
        /// Enterprises set up at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        /// Seconds one enterprise may take, from enrolment to its telemetry at the registry.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Keep the agents serving until Ctrl-C (else they stop once all have served).
        #[arg(long)]
        keep: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The line's work folder, in place of the one LINE.toml names.
        #[arg(long, env = "ALGOBAY_LINE_WORK")]
        work: Option<PathBuf>,
    },
}

pub fn run(g: &Global, c: &Connection, cmd: LineCommand) -> anyhow::Result<()> {
    let (line, only, json, work) = match cmd {
        LineCommand::Run {
            line,
            only,
            json,
            work,
        } => (line, only, json, work),
        LineCommand::Pilot {
            line,
            agent,
            requests,
            parallel,
            timeout,
            keep,
            json,
            work,
        } => {
            let agent = agent.unwrap_or_else(default_agent);
            return pilot(
                g, c, &line, agent, requests, parallel, timeout, keep, json, work,
            );
        }
    };
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

/// `algobay-agent` beside this program, else the one on PATH.
fn default_agent() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("algobay-agent")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "algobay-agent".into())
}

#[allow(clippy::too_many_arguments)]
fn pilot(
    g: &Global,
    c: &Connection,
    line: &std::path::Path,
    agent: PathBuf,
    requests: usize,
    parallel: usize,
    timeout: u64,
    keep: bool,
    json: bool,
    work: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (url, token, ca_pem) = settings(g, c)?;
    let operator_token = token.ok_or_else(|| {
        Usage("the pilot needs an operator token: pass --token or set ALGOBAY_TOKEN".into())
    })?;
    if requests == 0 {
        return Err(Usage("--requests must be at least 1".into()).into());
    }
    let opts = line::pilot::PilotOptions {
        url,
        ca_pem,
        operator_token,
        agent,
        work,
        requests,
        parallel,
        timeout: std::time::Duration::from_secs(timeout),
    };
    let bar = if g.quiet || json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let b = bar.clone();
    let rt = rt()?;
    let pilot = rt.block_on(line::pilot::run(line, &opts, &move |m: &str| {
        b.set_message(m.to_owned())
    }))?;
    bar.finish_and_clear();
    let r = pilot.report.clone();
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{:<32} {:<14} {:<16} {:<48} {:>8} {:>8}  detail",
            "enterprise", "industry", "device", "kit", "answered", "peak MiB"
        );
        for s in &r.enterprises {
            println!(
                "{:<32} {:<14} {:<16} {:<48} {:>8} {:>8.1}  {}",
                s.enterprise,
                s.industry,
                s.device,
                s.kit,
                s.answered,
                s.peak_rss_kib as f64 / 1024.0,
                if s.detail.is_empty() {
                    &s.status
                } else {
                    &s.detail
                }
            );
        }
        println!(
            "\n{} of {} enterprises served by {} agents in {:.1} s; agents' peak memory {:.0} MiB together \
             (largest {:.1} MiB), resident {:.0} MiB once all had served",
            r.served,
            r.enterprises.len(),
            r.agents,
            r.seconds,
            r.peak_rss_total_mib,
            r.peak_rss_max_mib,
            r.rss_total_mib
        );
    }
    if keep {
        eprintln!("the agents serve until Ctrl-C");
        let _ = rt.block_on(tokio::signal::ctrl_c());
    }
    rt.block_on(pilot.stop());
    let failed = r.enterprises.len() - r.served;
    if failed > 0 {
        return Err(PilotFailed(failed).into());
    }
    Ok(())
}

/// Some enterprises were not served (the report says why).
#[derive(Debug, thiserror::Error)]
#[error("{0} enterprises of the pilot were not served")]
pub struct PilotFailed(usize);
