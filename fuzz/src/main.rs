//! `algobay-fuzz run`: fuzzes Algobay's parsers and decoders for as long as
//! asked, prints what each run did, keeps the inputs that made a target panic.
//! Exit codes: 0 no finding, 1 findings, 2 usage, 3 set-up failed.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use algobay_fuzz::{fuzz, targets, Budget};

#[derive(Debug, Parser)]
#[command(
    name = "algobay-fuzz",
    version,
    about = "Mutation fuzzing of Algobay's kit archive reader, manifest and Kitfile parsers, Open Inference Protocol decoders and the example stages' image and WAV readers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fuzz the named targets (all by default), one after the other.
    #[command(
        after_help = "Targets: kit-archive, manifest, kitfile, oip-http, image, wav.\n\nExample:\n  algobay-fuzz run --seconds 600 --findings fuzz-findings\n  algobay-fuzz run --target manifest --execs 1000000"
    )]
    Run {
        /// A target to fuzz (repeat for several); all when none is named.
        #[arg(long)]
        target: Vec<String>,
        /// Seconds for each target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Executions for each target, at most.
        #[arg(long, default_value_t = u64::MAX)]
        execs: u64,
        /// Seed of the mutations (the same seed repeats the same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the inputs that made a target panic.
        #[arg(long, default_value = "fuzz-findings")]
        findings: PathBuf,
    },
}

fn main() {
    let Command::Run {
        target,
        seconds,
        execs,
        seed,
        findings,
    } = Cli::parse().command;
    let all = match targets::all() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: setting up the targets: {e:#}");
            std::process::exit(3);
        }
    };
    let chosen: Vec<_> = all
        .iter()
        .filter(|t| target.is_empty() || target.iter().any(|n| n == t.name))
        .collect();
    if chosen.is_empty() {
        eprintln!("error: no target named {target:?}; see --help");
        std::process::exit(2);
    }
    println!(
        "{:<12} {:>10} {:>9} {:>8} {:>8} {:>9}",
        "target", "execs", "execs/s", "corpus", "classes", "findings"
    );
    let mut found = 0;
    for t in chosen {
        let r = fuzz(
            t,
            Budget {
                execs,
                time: Duration::from_secs(seconds),
            },
            seed,
        );
        println!(
            "{:<12} {:>10} {:>9.0} {:>8} {:>8} {:>9}",
            r.target,
            r.execs,
            r.execs_per_second(),
            r.corpus,
            r.classes,
            r.findings.len()
        );
        for (i, (input, message)) in r.findings.iter().enumerate() {
            found += 1;
            let _ = std::fs::create_dir_all(&findings);
            let path = findings.join(format!("{}-{i}.bin", r.target));
            let _ = std::fs::write(&path, input);
            println!("  finding {}: {message}", path.display());
        }
    }
    std::process::exit(if found > 0 { 1 } else { 0 });
}
