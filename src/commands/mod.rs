//! Runs a parsed command line; returns the process exit code.

mod ab;
mod cluster;
mod compare;
mod eval;
mod frontier;
mod models;
mod run;

use crate::cli::{Cli, Command, MeasureArgs, ProbeArgs};
use anyhow::{Context, Result};
use joulebench::measure::{self, MeasureObserver, MeasureOptions, RunProgress};
use joulebench::meter::probe;
use joulebench::meter::select::Hardware;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Exit code for "could not measure" and for bad input.
pub const EXIT_CANNOT_MEASURE: u8 = 2;

/// Dispatches a command.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Probe(a) => run_probe(a),
        Command::Measure(a) => run_measure(a),
        Command::Models(c) => models::run_models(c),
        Command::Generate(a) => models::run_generate(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Run(a) => run::run_suite(a),
        Command::RunCell(a) => run::run_cell(a),
        Command::Compare(a) => compare::run_compare(a),
        Command::Ab(a) => ab::run_ab(a),
        Command::Frontier(a) => frontier::run_frontier(a),
        Command::Report { dir } => {
            if !dir.join("records.jsonl").exists() {
                anyhow::bail!(
                    "{} is not a run folder: records.jsonl is missing",
                    dir.display()
                );
            }
            let flags = joulebench::run_dir::read_json::<joulebench::run_dir::SummaryFlags>(
                &dir.join("summary.json"),
            )
            .unwrap_or_default();
            // Not while a run or resume appends to it (nor two reports at once).
            let lock = joulebench::run_dir::lock(&dir)?;
            if let Some(n) = lock.note() {
                eprintln!("[joulebench] {n}");
            }
            let doc = joulebench::report::write_all_stopped(
                &dir,
                flags.interrupted,
                flags.stopped.as_deref(),
            )?;
            drop(lock);
            eprintln!(
                "{} cells; report at {}",
                doc.cells.len(),
                dir.join("report.html").display()
            );
            Ok(0)
        }
        Command::Baseline(c) => compare::run_baseline(c),
        Command::Merge(a) => cluster::run_merge(a),
        Command::Slurm(a) => cluster::run_slurm(a),
    }
}

fn run_probe(a: ProbeArgs) -> Result<u8> {
    let hw = Hardware::real(a.sensors.powercap_root.clone());
    let report = probe::probe(&hw, a.sensors.tdp_w, Duration::from_millis(a.watch_ms));
    let text = if a.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        probe::render(&report)
    };
    print_stdout(&text)?;
    Ok(0)
}

pub(crate) struct Progress;

impl MeasureObserver for Progress {
    fn phase(&mut self, what: &str) {
        eprintln!("[joulebench] {what}");
    }
    fn run_done(&mut self, r: &RunProgress) {
        let cpu = r.cpu_j.map_or("n/a".into(), |j| format!("{j:.4} J"));
        let gpu = r.gpu_j.map_or(String::new(), |j| format!(", GPU {j:.4} J"));
        eprintln!(
            "[joulebench] {} done: {:.4} s, CPU {cpu}{gpu}",
            r.label, r.duration_s
        );
    }
}

fn run_measure(a: MeasureArgs) -> Result<u8> {
    let interrupt = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupt))
            .context("cannot install the Ctrl-C handler")?;
    }
    let hw = Hardware::real(a.sensors.powercap_root.clone());
    let opts = MeasureOptions {
        meter: a.meter.clone(),
        interval: Duration::from_secs_f64(a.interval_ms / 1e3),
        runs: a.runs as usize,
        warmup: a.warmup as usize,
        idle: Duration::from_secs_f64(a.idle_s),
        tdp_w: a.sensors.tdp_w,
        strict: a.strict,
        allow_partial: a.allow_partial,
        command: a.command.clone(),
    };
    let outcome = measure::measure(&opts, &hw, &interrupt, &mut Progress)?;
    // Write files first: a failure to print must not lose what was measured.
    let mut write_errors = Vec::new();
    if let Some(path) = &a.trace {
        let res = std::fs::File::create(path)
            .map(std::io::BufWriter::new)
            .and_then(|f| outcome.recording.write_trace(f));
        if let Err(e) = res {
            write_errors.push(format!("cannot write trace {}: {e}", path.display()));
        }
    }
    let json = serde_json::to_string_pretty(&outcome.result)? + "\n";
    match a.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => print_stdout(&json)?,
        Some(p) => {
            if let Err(e) = joulebench::run_dir::write_atomic(p, json.as_bytes()) {
                write_errors.push(format!("cannot write {}: {e}", p.display()));
            }
        }
        None => {}
    }
    eprint!("{}", measure::render::render(&outcome.result));
    if !write_errors.is_empty() {
        for e in &write_errors {
            eprintln!("error: {e}");
        }
        if outcome.exit_code == 0 {
            return Ok(EXIT_CANNOT_MEASURE);
        }
    }
    Ok(u8::try_from(outcome.exit_code).unwrap_or(1))
}

/// Text for a terminal: secrets redacted, control characters shown escaped.
pub(crate) fn for_terminal(text: &str) -> String {
    joulebench::names::terminal_text(&joulebench::redact::text(text)).into_owned()
}

/// Prints human-readable text to stdout, made safe with [`for_terminal`].
pub(crate) fn print_text(text: &str) -> Result<()> {
    print_stdout(&for_terminal(text))
}

/// Prints to stdout (JSON and other machine-read text: redacted only); a closed pipe is not an
/// error.
pub(crate) fn print_stdout(text: &str) -> Result<()> {
    let text = joulebench::redact::text(text);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}
