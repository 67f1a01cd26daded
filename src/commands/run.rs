//! `joulebench run` and the hidden `run-cell`.

use crate::cli::{RunArgs, RunCellArgs};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use joulebench::config::Suite;
use joulebench::plan::{Cell, plan, render};
use joulebench::run_dir::read_json;
use joulebench::run_meta::RunMeta;
use joulebench::runner::{RunObserver, RunOptions};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub(super) fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("cannot install the Ctrl-C handler")?;
    }
    Ok(flag)
}

/// A bar with ETA on a terminal, plain lines otherwise (CI logs).
pub(super) struct Progress {
    pub(super) bar: Option<ProgressBar>,
}

impl Progress {
    fn line(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(super::for_terminal(msg)),
            None => eprintln!("[joulebench] {}", super::for_terminal(msg)),
        }
    }
}

impl RunObserver for Progress {
    fn started(&mut self, dir: &Path, cells: usize, todo: usize) {
        if std::io::stderr().is_terminal() {
            let b = ProgressBar::new(todo as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} cells, ETA {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar = Some(b);
        }
        self.line(&format!(
            "run folder {} ({todo} of {cells} cells to run)",
            dir.display()
        ));
    }
    fn phase(&mut self, what: &str) {
        self.line(what);
    }
    fn cell_started(&mut self, cell: &Cell, pos: usize, of: usize) {
        match &self.bar {
            Some(b) => b.set_message(cell.id.clone()),
            None => eprintln!("[joulebench] cell {}/{of}: {}", pos + 1, cell.id),
        }
    }
    fn cell_finished(&mut self, cell: &Cell, failure: Option<&str>) {
        if let Some(f) = failure {
            self.line(&format!(
                "cell {} failed: {}",
                cell.id,
                joulebench::report::failure_line(f)
            ));
        }
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }
}

/// Runs `joulebench run`.
pub fn run_suite(a: RunArgs) -> Result<u8> {
    let mut suite = match (&a.config, &a.resume) {
        (Some(c), resume) => {
            let s = Suite::load(c)?;
            if let Some(r) = resume {
                let meta: RunMeta = read_json(&r.join("meta.json"))?;
                if meta.config_hash != s.hash() {
                    bail!(
                        "{} is a different suite than the one {} was run with; resume without \
                         CONFIG to use the run's own copy",
                        c.display(),
                        r.display()
                    );
                }
            }
            s
        }
        (None, Some(r)) => {
            let meta: RunMeta = read_json(&r.join("meta.json"))?;
            let text = std::fs::read_to_string(r.join("config.toml"))
                .with_context(|| format!("cannot read {}", r.join("config.toml").display()))?;
            Suite::parse(&meta.config_path, &text)?
        }
        (None, None) => {
            bail!("give a suite file (joulebench run configs/quickstart.toml) or --resume RUN_DIR")
        }
    };
    suite.allow_partial |= a.allow_partial;
    if a.dry_run {
        let mut p = plan(&suite);
        if let Some(s) = a.shard {
            p.cells.retain(|c| s.owns(c.index));
        }
        let dirs: Vec<&std::path::Path> = a.estimate_from.iter().map(|d| d.as_path()).collect();
        let history = joulebench::estimate::History::read(&dirs, a.resume.as_deref());
        for u in &history.unreadable {
            eprintln!(
                "[joulebench] note: no timings from {u}; those cells are estimated from model size"
            );
        }
        let file_size = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.len());
        let e = joulebench::estimate::estimate(&suite, &p, &history, &file_size);
        let mut text = render(&suite, &p);
        let mut from = Vec::new();
        if e.from_records > 0 {
            from.push(format!(
                "{} cell(s) timed from earlier records",
                e.from_records
            ));
        }
        if e.from_size > 0 {
            from.push(format!("{} from model size and tokens", e.from_size));
        }
        if e.done > 0 {
            from.push(format!("{} already done", e.done));
        }
        text.push_str(&format!(
            "expected duration: about {} ({})\n",
            joulebench::units::human_seconds(e.seconds),
            from.join(", ")
        ));
        super::print_text(&text)?;
        return Ok(0);
    }
    if let (Some(s), Ok(f)) = (a.shard, std::env::var("JOULEBENCH_SHARD_FAULT")) {
        // Test hook: stands for a shard whose node fails before it measures anything.
        if f.trim() == s.index.to_string() {
            bail!("shard {s} failed on purpose (JOULEBENCH_SHARD_FAULT={f})");
        }
    }
    let interrupt = interrupt_flag()?;
    let opts = RunOptions {
        out: a.out.clone(),
        resume: a.resume.clone(),
        exe: std::env::current_exe().context("cannot find the joulebench binary")?,
        shard: a.shard,
        node_shared: a.node_shared,
        ab: None,
    };
    let mut progress = Progress { bar: None };
    let out = joulebench::runner::run(&suite, &opts, &interrupt, &mut progress)?;
    // The report is written from what exists, even when the suite stopped on a write error.
    let reported = joulebench::report::write_all_stopped(
        &out.dir,
        out.interrupted,
        out.write_failure
            .as_ref()
            .map(|w| format!("results could not be written ({w})"))
            .as_deref(),
    );
    if let Some(w) = &out.write_failure {
        if let Err(e) = &reported {
            eprintln!("[joulebench] {}", super::for_terminal(&format!("{e:#}")));
        }
        anyhow::bail!(
            "stopped: results could not be written: {w}. Everything recorded before is kept in \
             {}; free space and resume with `joulebench run --resume {}`",
            out.dir.display(),
            out.dir.display()
        );
    }
    reported?;
    if let Some(b) = &progress.bar {
        b.finish_and_clear();
    }
    let report = std::fs::read_to_string(out.dir.join("report.md")).unwrap_or_default();
    eprintln!("{report}");
    eprintln!("results in {}", out.dir.display());
    Ok(if out.interrupted {
        130
    } else if !out.failed_cells.is_empty() {
        1
    } else {
        0
    })
}

/// A cell process's notes go to its stderr, which the parent keeps as the cell's log.
struct StderrNotes;

impl joulebench::runner::cell::CellObserver for StderrNotes {
    fn note(&mut self, line: &str) {
        eprintln!("[cell] {}", super::for_terminal(line));
    }
}

/// Runs one cell (child process of `run`).
pub fn run_cell(a: RunCellArgs) -> Result<u8> {
    let interrupt = interrupt_flag()?;
    if let Some(v) = &a.serve {
        return joulebench::runner::cell::serve_cell(
            &a.run_dir,
            a.cell,
            v,
            &interrupt,
            &mut StderrNotes,
        );
    }
    joulebench::runner::cell::run_cell(&a.run_dir, a.cell, &a.reps, &interrupt, &mut StderrNotes)
}
