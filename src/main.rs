//! The `joulebench` binary: parse the command line, run it, map errors to exit codes. It owns the
//! clap definitions (`cli`) and one file per command (`commands`); the library holds the rest.

mod cli;
mod commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic prints its message and where it happened as one line (a cell's report shows that
    // line), redacted, and never asks for RUST_BACKTRACE.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!(
            "joulebench: internal error (panic{at}): {}",
            commands::for_terminal(&msg)
        );
    }));
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!(
                "joulebench: error: {}",
                commands::for_terminal(&format!("{e:#}"))
            );
            ExitCode::from(commands::EXIT_CANNOT_MEASURE)
        }
    }
}
