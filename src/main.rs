//! The `joulebench` binary: parse the command line, run it, map errors to exit codes. It owns the
//! clap definitions (`cli`) and one file per command (`commands`); the library holds the rest.

mod cli;
mod commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("joulebench: error: {e:#}");
            ExitCode::from(commands::EXIT_CANNOT_MEASURE)
        }
    }
}
