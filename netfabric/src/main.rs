//! The `netfabric` binary: parses the command line, sets up logging (stderr)
//! and maps errors to exit codes (see `netfabric::cli`).

use std::process::ExitCode;

use clap::Parser as _;
use netfabric::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version exit 0 (clap's convention).
    let cli = Cli::parse();
    if !matches!(cli.command, cli::Command::Agent(_) | cli::Command::Lab(_)) {
        // A report piped into `head` ends quietly, as Unix tools do, instead
        // of panicking on EPIPE. The long-running agent and lab keep Rust's
        // default (EPIPE as an error) so a closed socket never kills them.
        // SAFETY: called before any thread starts; SIG_DFL is a valid handler.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cli.global.log_filter()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli::run(cli) {
        Ok(()) => ExitCode::from(cli::EXIT_OK),
        Err(err) => {
            eprintln!("error: {}", cli::error_message(&err));
            cli::exit_code(&err)
        }
    }
}
