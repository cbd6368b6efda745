//! `algobay`: build, test, inspect and run kits; manage team keys.
use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    // Output piped into `head` and the like ends quietly when the reader goes,
    // as other command-line tools do, rather than failing on a closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    cli::init_tracing(&args.global);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
