//! The `joulebench` binary: parse the command line, run it, map errors to exit codes.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = joulebench::cli::Cli::parse();
    match joulebench::commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("joulebench: error: {e:#}");
            ExitCode::from(joulebench::commands::EXIT_CANNOT_MEASURE)
        }
    }
}
