//! The loop of an A/B job: per (profile, workload), one long-lived cell process per variant
//! (`run-cell --serve`), both loaded and warmed up before the first pair, then asked for one
//! repetition at a time in ABBA order. Every repetition's record is fsynced by its process
//! before it answers; a failure is recorded like any cell's and the job goes on with the next
//! (profile, workload).

use super::RunObserver;
use super::cell::EXIT_WRITE_FAILED;
use super::child::cell_command;
use crate::ab::{Stop, StopReason, Variant, schedule};
use crate::config::Suite;
use crate::plan::Cell;
use crate::run_dir::{file_tail, log_path};
use crate::run_meta::{AbSettings, RunMeta};
use anyhow::Result;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How the loop over the cells (or the A/B pairs) ended.
pub struct LoopOutcome {
    pub interrupted: bool,
    pub failed: Vec<String>,
    pub write_failure: Option<String>,
    /// A sequential A/B job: how each (profile, workload) ended.
    pub ab_stops: Vec<Stop>,
}

/// One variant's long-lived cell process.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    log: PathBuf,
    copier: Option<std::thread::JoinHandle<()>>,
}

enum WaitEnd {
    Line(String),
    Interrupted,
    Failed(String),
}

impl Worker {
    fn start(dir: &Path, cell: &Cell, variant: Variant, exe: &Path) -> Result<Worker, String> {
        let log = log_path(dir, &cell.id, "stderr.log");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut cmd = cell_command(dir, cell, exe);
        cmd.args(["--serve", variant.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the cell process: {e}"))?;
        let copier = child
            .stderr
            .take()
            .map(|e| crate::redact::copy_to_log(e, err));
        let (tx, rx) = channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Worker {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            log,
            copier,
        })
    }

    /// The next line the process says, within `limit`.
    fn wait_line(&mut self, limit: Duration, interrupt: &AtomicBool) -> WaitEnd {
        let start = Instant::now();
        loop {
            if interrupt.load(Ordering::Relaxed) {
                return WaitEnd::Interrupted;
            }
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => return WaitEnd::Line(l),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    self.join_log();
                    return WaitEnd::Failed(match status.and_then(|s| s.code()) {
                        Some(c) if c == i32::from(EXIT_WRITE_FAILED) => format!(
                            "WRITE: the cell could not write its results:\n{}",
                            file_tail(&self.log, 5)
                        ),
                        c => format!(
                            "the cell process ended{}; stderr tail:\n{}",
                            c.map_or(String::new(), |c| format!(" with status {c}")),
                            file_tail(&self.log, 15)
                        ),
                    });
                }
                Err(RecvTimeoutError::Timeout) if start.elapsed() > limit => {
                    super::child::stop_cell(&mut self.child);
                    self.join_log();
                    return WaitEnd::Failed(format!(
                        "timed out after {} s; stderr tail:\n{}",
                        limit.as_secs_f64(),
                        file_tail(&self.log, 15)
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err("the cell process's input is closed".into());
        };
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("cannot talk to the cell process: {e}"))
    }

    fn join_log(&mut self) {
        if let Some(c) = self.copier.take() {
            let _ = c.join();
        }
    }

    /// Asks the process to end (interrupting it when `interrupt`), waits a while, then kills.
    /// Returns its exit code.
    fn finish(mut self, interrupt: bool) -> Option<i32> {
        if interrupt {
            // SAFETY: signalling the group our own, not yet reaped, child leads.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGINT) };
        }
        let _ = self.send("quit");
        self.stdin = None;
        let start = Instant::now();
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    super::child::stop_cell(&mut self.child);
                    break self.child.wait().ok().and_then(|s| s.code());
                }
            }
        };
        self.join_log();
        code
    }
}

/// Each (profile, workload)'s two variants with their missing repetitions, in plan order.
type Sides<'a> = BTreeMap<Variant, (&'a Cell, Vec<u32>)>;

/// Each (profile, workload)'s sides.
type Groups<'a> = BTreeMap<(String, String), Sides<'a>>;

fn groups<'a>(
    todo: &[(&'a Cell, Vec<u32>)],
    ab: &AbSettings,
) -> (Vec<(String, String)>, Groups<'a>) {
    let mut groups: Groups = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for (cell, reps) in todo {
        let variant = if cell.model.name() == ab.base {
            Variant::Base
        } else {
            Variant::Candidate
        };
        let key = (cell.profile.name.clone(), cell.workload.name.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups
            .entry(key)
            .or_default()
            .insert(variant, (*cell, reps.clone()));
    }
    (order, groups)
}

/// Starts both variants' cell processes and waits until each has loaded and warmed up: the
/// workers, and the first variant that failed with why.
fn start_both(
    dir: &Path,
    sides: &Sides,
    exe: &Path,
    limit: Duration,
    interrupt: &AtomicBool,
    out: &mut LoopOutcome,
) -> (BTreeMap<Variant, Worker>, Option<(Variant, String)>) {
    let mut workers: BTreeMap<Variant, Worker> = BTreeMap::new();
    let mut failure: Option<(Variant, String)> = None;
    for (&v, (cell, _)) in sides {
        match Worker::start(dir, cell, v, exe) {
            Ok(w) => {
                workers.insert(v, w);
            }
            Err(e) => failure = Some((v, e)),
        }
    }
    for (&v, w) in workers.iter_mut() {
        if failure.is_some() {
            break;
        }
        match w.wait_line(limit, interrupt) {
            WaitEnd::Line(l) if l == "ready" => {}
            WaitEnd::Line(l) => failure = Some((v, format!("unexpected answer {l:?}"))),
            WaitEnd::Interrupted => out.interrupted = true,
            WaitEnd::Failed(e) => failure = Some((v, e)),
        }
    }
    (workers, failure)
}

/// What a sequential job's (profile, workload) looks at before each ABBA block: its run folder,
/// settings and key, and the time its share of `--max-minutes` ends.
struct Looks<'a> {
    dir: &'a Path,
    ab: &'a AbSettings,
    key: &'a (String, String),
    deadline: Option<Instant>,
}

impl Looks<'_> {
    /// Why the job stops before the block starting at `pair`, if it does.
    fn stop(&self) -> Option<StopReason> {
        if crate::ab::group_decided(self.dir, self.ab, &self.key.0, &self.key.1) {
            Some(StopReason::Decided)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(StopReason::MaxMinutes)
        } else {
            None
        }
    }
}

/// Asks the workers for the missing repetitions in ABBA order, one at a time: the first variant
/// that failed, with why. A sequential job looks before every block and stops there once its
/// rows are decided or its time is up (`stopped`).
#[allow(clippy::too_many_arguments)]
fn run_schedule(
    sides: &Sides,
    workers: &mut BTreeMap<Variant, Worker>,
    pairs: u32,
    limit: Duration,
    interrupt: &AtomicBool,
    out: &mut LoopOutcome,
    looks: Option<&Looks>,
    stopped: &mut Option<StopReason>,
) -> Option<(Variant, String)> {
    for (v, pair) in schedule(pairs) {
        if interrupt.load(Ordering::Relaxed) {
            out.interrupted = true;
            return None;
        }
        // The first repetition of an odd pair starts a block: look first.
        if pair % 2 == 1
            && v == Variant::Base
            && let Some(l) = looks
            && let Some(why) = l.stop()
        {
            *stopped = Some(why);
            return None;
        }
        let Some((_, missing)) = sides.get(&v) else {
            continue;
        };
        if !missing.contains(&pair) {
            continue;
        }
        let Some(w) = workers.get_mut(&v) else {
            continue;
        };
        if let Err(e) = w.send(&format!("rep {pair}")) {
            return Some((v, e));
        }
        match w.wait_line(limit, interrupt) {
            WaitEnd::Line(l) if l == format!("done {pair}") => {}
            WaitEnd::Line(l) => return Some((v, format!("unexpected answer {l:?}"))),
            WaitEnd::Interrupted => {
                out.interrupted = true;
                return None;
            }
            WaitEnd::Failed(e) => return Some((v, e)),
        }
    }
    None
}

/// Runs the missing repetitions of every (profile, workload) of an A/B job.
#[allow(clippy::too_many_arguments)]
pub fn run_pairs(
    dir: &Path,
    suite: &Suite,
    meta: &RunMeta,
    ab: &AbSettings,
    todo: &[(&Cell, Vec<u32>)],
    exe: &Path,
    interrupt: &AtomicBool,
    obs: &mut dyn RunObserver,
) -> Result<LoopOutcome> {
    let (order, groups) = groups(todo, ab);
    let mut out = LoopOutcome {
        interrupted: interrupt.load(Ordering::Relaxed),
        failed: Vec::new(),
        write_failure: None,
        ab_stops: Vec::new(),
    };
    let limit = Duration::from_secs_f64(suite.timeout_seconds);
    let seq = ab.sequential.as_ref();
    let job_end = seq
        .and_then(|s| s.max_minutes)
        .map(|m| Instant::now() + Duration::from_secs_f64(m * 60.0));
    for (pos, key) in order.iter().enumerate() {
        if out.interrupted || out.write_failure.is_some() {
            break;
        }
        // Each (profile, workload) left gets an equal share of the time left.
        let deadline = job_end.map(|end| {
            let left = end.saturating_duration_since(Instant::now());
            Instant::now() + left / (order.len() - pos) as u32
        });
        let looks = seq.map(|_| Looks {
            dir,
            ab,
            key,
            deadline,
        });
        let mut stopped;
        let sides = &groups[key];
        let Some((first, _)) = sides.values().next() else {
            continue;
        };
        obs.cell_started(first, pos, order.len());
        // A sequential job's (profile, workload) already decided (a resumed job) or out of
        // time starts nothing.
        stopped = looks.as_ref().and_then(|l| l.stop());
        // Both load and warm up before the first pair.
        let (mut workers, mut failure) = if stopped.is_some() {
            (BTreeMap::new(), None)
        } else {
            start_both(dir, sides, exe, limit, interrupt, &mut out)
        };
        if failure.is_none() && !out.interrupted && stopped.is_none() {
            failure = run_schedule(
                sides,
                &mut workers,
                ab.pairs,
                limit,
                interrupt,
                &mut out,
                looks.as_ref(),
                &mut stopped,
            );
        }
        for (_, w) in std::mem::take(&mut workers) {
            if let Some(c) = w.finish(out.interrupted)
                && c == i32::from(EXIT_WRITE_FAILED)
                && out.write_failure.is_none()
            {
                out.write_failure = Some("a cell process could not write its results".into());
            }
        }
        // Nothing either side started outlives the pair of processes.
        let left = super::child::sweep(&[]);
        if !left.is_empty() {
            failure = Some(match failure {
                Some((v, why)) => (v, format!("{why}{left}")),
                None => (
                    *sides.keys().next().unwrap_or(&Variant::Base),
                    format!("the A/B cell processes ended{left}"),
                ),
            });
        }
        if let Some(l) = &looks {
            let reason = if failure.is_some() {
                StopReason::Failed
            } else if out.interrupted {
                StopReason::Interrupted
            } else {
                stopped.unwrap_or_else(|| l.stop().unwrap_or(StopReason::MaxPairs))
            };
            let pairs = crate::ab::complete_pairs(dir, &key.0, &key.1);
            out.ab_stops.push(Stop {
                profile: key.0.clone(),
                workload: key.1.clone(),
                pairs,
                reason,
            });
        }
        match failure {
            Some((v, why)) => {
                let Some((cell, _)) = sides.get(&v) else {
                    continue;
                };
                if let Some(w) = why.strip_prefix("WRITE: ") {
                    out.write_failure = Some(w.to_string());
                } else if let Some(w) = super::record_failure(dir, suite, meta, cell, &why) {
                    out.write_failure = Some(w);
                }
                out.failed.push(cell.id.clone());
                obs.cell_finished(cell, Some(&why));
            }
            None if out.interrupted => obs.cell_finished(first, Some("interrupted")),
            None => obs.cell_finished(first, None),
        }
    }
    Ok(out)
}
