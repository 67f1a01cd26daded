//! `joulebench measure -- CMD`: meter any command, with idle baseline, warmup and repetitions.

pub mod render;
pub mod result;

use crate::meter::DomainInfo;
use crate::meter::mark::{Mark, Phase, Round};
use crate::meter::recording::{MarkRead, Recording};
use crate::meter::sampler::Sampler;
use crate::meter::select::{EstimateScope, Hardware, MeterChoice, select};
use result::{MeasureResult, MeterInfo, SCHEMA_VERSION};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What `measure` was asked to do.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    pub meter: MeterChoice,
    pub interval: Duration,
    pub runs: usize,
    pub warmup: usize,
    pub idle: Duration,
    pub tdp_w: Option<f64>,
    pub strict: bool,
    /// Totals that need an unreadable domain leave it out, labelled PARTIAL, instead of unknown.
    pub allow_partial: bool,
    pub command: Vec<String>,
}

/// Why `measure` could not measure (exit status 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    #[error("no command given: use `joulebench measure -- CMD [ARGS...]`")]
    NoCommand,
    #[error("{0}")]
    Meter(String),
    #[error(
        "--strict: refusing to report estimates; {0}. Make RAPL readable (see `joulebench probe`) \
         or drop --strict to accept a labelled estimate"
    )]
    StrictEstimate(String),
    #[error(
        "command not found: {cmd:?} (not on PATH and not a file); check the spelling or give a path"
    )]
    CommandNotFound { cmd: String },
    #[error("cannot run {cmd:?}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
}

/// A run just finished: figures from its two boundary reads, before any bridging.
#[derive(Debug, Clone)]
pub struct RunProgress {
    /// `warmup1`, `run3`, …
    pub label: String,
    pub duration_s: f64,
    pub cpu_j: Option<f64>,
    pub gpu_j: Option<f64>,
}

/// Progress notifications, as they happen; every hook defaults to doing nothing.
pub trait MeasureObserver {
    fn phase(&mut self, _what: &str) {}
    fn run_done(&mut self, _run: &RunProgress) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl MeasureObserver for Quiet {}

/// What a finished (or interrupted) session produced.
pub struct MeasureOutcome {
    pub result: MeasureResult,
    pub recording: Recording,
    /// The exit code joulebench should end with: the command's failure, 130 when interrupted, else 0.
    pub exit_code: i32,
}

/// Runs `cmd` to completion; `on_exit` runs the moment the child is reaped, before any cleanup,
/// so the end mark is not delayed by joulebench's own housekeeping.
fn spawn_and_wait(
    cmd: &[String],
    tracker: Option<&Arc<AtomicI32>>,
    interrupt: &Arc<AtomicBool>,
    on_exit: impl FnOnce(),
) -> Result<std::process::ExitStatus, MeasureError> {
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MeasureError::CommandNotFound {
                cmd: cmd[0].clone(),
            },
            _ => MeasureError::Spawn {
                cmd: cmd[0].clone(),
                source: e,
            },
        })?;
    let pid = child.id() as i32;
    if let Some(t) = tracker {
        t.store(pid, Ordering::Relaxed);
    }
    // On interrupt the child usually got the same Ctrl-C; if it is still running after a grace
    // period (SIGTERM sent to joulebench alone), pass a SIGTERM on.
    let done = Arc::new(Mutex::new(false));
    let watcher = {
        let done = Arc::clone(&done);
        let interrupt = Arc::clone(interrupt);
        std::thread::spawn(move || {
            let mut since: Option<std::time::Instant> = None;
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let d = done.lock().unwrap_or_else(|p| p.into_inner());
                if *d {
                    return;
                }
                if interrupt.load(Ordering::Relaxed) {
                    let t = *since.get_or_insert_with(std::time::Instant::now);
                    if t.elapsed() >= Duration::from_secs(2) {
                        // SAFETY: plain kill(2) on our own child, which has not been reaped yet
                        // (`done` is still false under the lock).
                        unsafe { libc::kill(pid, libc::SIGTERM) };
                        return;
                    }
                }
            }
        })
    };
    let status = child.wait();
    on_exit();
    *done.lock().unwrap_or_else(|p| p.into_inner()) = true;
    let _ = watcher.join();
    if let Some(t) = tracker {
        t.store(0, Ordering::Relaxed);
    }
    status.map_err(|e| MeasureError::Spawn {
        cmd: cmd[0].clone(),
        source: e,
    })
}

fn progress(label: &str, domains: &[DomainInfo], a: &MarkRead, b: &MarkRead) -> RunProgress {
    let energy: Vec<Option<f64>> = a
        .values
        .iter()
        .zip(&b.values)
        .map(|(x, y)| Some(y.as_ref()?.saturating_sub(*x.as_ref()?) as f64 / 1e6))
        .collect();
    let t = crate::meter::totals::totals(domains, &energy);
    RunProgress {
        label: label.to_string(),
        duration_s: b.t_ns.saturating_sub(a.t_ns) as f64 / 1e9,
        cpu_j: t.cpu_j,
        gpu_j: t.gpu_j,
    }
}

/// The meters opened for a session: the sampler running, the child tracker of the estimate,
/// what is unavailable and why, and the selection's warnings.
pub struct Meters {
    pub sampler: Sampler,
    pub tracker: Option<Arc<AtomicI32>>,
    pub unavailable: Vec<crate::meter::Unavailable>,
    pub warnings: Vec<String>,
}

/// Selects the sources (`--strict` refuses estimates) and starts sampling them every
/// `interval`; `scope` says whose CPU time an estimate counts.
pub fn open_meters(
    meter: &MeterChoice,
    hw: &Hardware,
    tdp_w: Option<f64>,
    strict: bool,
    interval: Duration,
    scope: EstimateScope,
) -> Result<Meters, MeasureError> {
    let sel = select(meter, hw, tdp_w, scope).map_err(MeasureError::Meter)?;
    if strict && sel.has_estimates() {
        let why = sel
            .unavailable
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let why = if why.is_empty() {
            "the estimate source was selected".to_string()
        } else {
            format!("no measured source covers the CPU ({why})")
        };
        return Err(MeasureError::StrictEstimate(why));
    }
    let mut warnings = sel.warnings.clone();
    let tracker = sel.child_tracker.clone();
    let unavailable = sel.unavailable.clone();
    let (sampler, clamped) = Sampler::start_safe(sel.sources, interval);
    warnings.extend(clamped);
    Ok(Meters {
        sampler,
        tracker,
        unavailable,
        warnings,
    })
}

/// What the rounds of a session ended with.
struct Rounds {
    /// Measured runs (1-based) with their exit status.
    spans: Vec<(usize, std::process::ExitStatus)>,
    last_status: Option<std::process::ExitStatus>,
    failure: Option<MeasureError>,
    interrupted: bool,
}

/// Runs the idle window, the warmups and the measured runs of the command, marking each.
fn run_rounds(
    opts: &MeasureOptions,
    m: &Meters,
    interrupt: &Arc<AtomicBool>,
    obs: &mut dyn MeasureObserver,
) -> Rounds {
    let sampler = &m.sampler;
    let mut interrupted = false;
    if !opts.idle.is_zero() {
        obs.phase(&format!("idle baseline ({:.1} s)", opts.idle.as_secs_f64()));
        sampler.mark(Mark::round(Round::Idle, Phase::Start));
        interrupted = !crate::clock::sleep_unless(opts.idle, interrupt);
        sampler.mark(Mark::round(Round::Idle, Phase::End));
    }
    let mut out = Rounds {
        spans: Vec::new(),
        last_status: None,
        failure: None,
        interrupted,
    };
    for k in 0..opts.warmup + opts.runs {
        if out.interrupted || interrupt.load(Ordering::Relaxed) {
            out.interrupted = true;
            break;
        }
        let (round, measured) = if k < opts.warmup {
            (Round::Warmup(k as u32 + 1), false)
        } else {
            (Round::Run((k - opts.warmup + 1) as u32), true)
        };
        let label = round.to_string();
        obs.phase(&label);
        let start = sampler.mark(Mark::round(round, Phase::Start));
        let mut end_mark = None;
        let end = spawn_and_wait(&opts.command, m.tracker.as_ref(), interrupt, || {
            end_mark = Some(sampler.mark(Mark::round(round, Phase::End)));
        });
        let end_mark = end_mark.unwrap_or_else(|| sampler.mark(Mark::round(round, Phase::End)));
        if end.is_ok() {
            obs.run_done(&progress(&label, sampler.domains(), &start, &end_mark));
        }
        match end {
            Ok(status) => {
                out.last_status = Some(status);
                if measured {
                    out.spans.push((k - opts.warmup + 1, status));
                }
                if interrupt.load(Ordering::Relaxed) {
                    out.interrupted = true;
                }
                if !status.success() {
                    break;
                }
            }
            Err(e) => {
                out.failure = Some(e);
                break;
            }
        }
    }
    out
}

/// Runs the whole session. Errors are raised only before anything was measured.
pub fn measure(
    opts: &MeasureOptions,
    hw: &Hardware,
    interrupt: &Arc<AtomicBool>,
    obs: &mut dyn MeasureObserver,
) -> Result<MeasureOutcome, MeasureError> {
    if opts.command.is_empty() {
        return Err(MeasureError::NoCommand);
    }
    let m = open_meters(
        &opts.meter,
        hw,
        opts.tdp_w,
        opts.strict,
        opts.interval,
        EstimateScope::ChildTree,
    )?;
    let rounds = run_rounds(opts, &m, interrupt, obs);
    let Meters {
        sampler,
        unavailable,
        mut warnings,
        ..
    } = m;
    let rec = sampler.stop();
    if let Some(e) = rounds.failure
        && rounds.spans.is_empty()
    {
        return Err(e);
    }
    let idle = rec
        .mark_index(Mark::round(Round::Idle, Phase::Start))
        .zip(rec.mark_index(Mark::round(Round::Idle, Phase::End)))
        .map(|(a, b)| result::idle_result(&rec, &rec.window(a, b)));
    let mut runs = Vec::new();
    for (i, status) in &rounds.spans {
        let (Some(a), Some(b)) = (
            rec.mark_index(Mark::round(Round::Run(*i as u32), Phase::Start)),
            rec.mark_index(Mark::round(Round::Run(*i as u32), Phase::End)),
        ) else {
            continue;
        };
        let w = rec.window(a, b);
        runs.push(result::run_result(
            &rec,
            &w,
            *i,
            (status.code(), status.signal()),
            idle.as_ref(),
            opts.allow_partial,
            &mut warnings,
        ));
    }
    let interrupted = rounds.interrupted;
    let (domains, totals, statistics) = result::aggregate(&rec, &runs);
    warnings.extend(session_warnings(
        &rec,
        &runs,
        &statistics,
        interrupted,
        opts.runs,
    ));
    let status = rounds.last_status;
    let exit_code = match status {
        _ if interrupted => 130,
        Some(s) if !s.success() => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        _ => 0,
    };
    let result = MeasureResult {
        schema_version: SCHEMA_VERSION,
        tool: "joulebench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        command: opts.command.clone(),
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        interrupted,
        duration_s: statistics.get("duration_s").map_or(0.0, |s| s.median),
        runs: runs.len(),
        warmup: opts.warmup,
        aggregate: "median over runs (peak power: maximum over runs)".into(),
        domains,
        totals,
        idle,
        per_run: runs,
        statistics,
        meter: meter_info(&rec, unavailable),
        machine: crate::fingerprint::machine(),
        warnings,
    };
    Ok(MeasureOutcome {
        result,
        recording: rec,
        exit_code,
    })
}

/// What the figures over all runs call for: short windows, outlier runs, runs without a
/// figure, the recording's own diagnostics, an interrupt.
fn session_warnings(
    rec: &Recording,
    runs: &[result::RunResult],
    statistics: &std::collections::BTreeMap<String, crate::stats::Summary>,
    interrupted: bool,
    asked: usize,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(d) = statistics.get("duration_s") {
        warnings.extend(result::short_window_warnings(&rec.domains, d.median));
    }
    if let Some(s) = statistics.get("cpu_j") {
        // Outlier indices count the runs that have a CPU figure; name the run itself.
        let with_cpu: Vec<usize> = runs
            .iter()
            .filter(|r| r.totals.cpu_j.is_some())
            .map(|r| r.index)
            .collect();
        for &o in &s.outliers {
            if let Some(run) = with_cpu.get(o) {
                warnings.push(format!(
                    "run {run} is an outlier in CPU energy (flagged, kept)"
                ));
            }
        }
    }
    let unknown: Vec<String> = runs
        .iter()
        .filter(|r| r.totals.cpu_plus_gpu().is_none())
        .map(|r| r.index.to_string())
        .collect();
    if !unknown.is_empty() && !runs.is_empty() {
        warnings.push(format!(
            "energy unknown for run(s) {} of {}: the aggregate figures are over the other runs \
             only",
            unknown.join(", "),
            runs.len()
        ));
    }
    warnings.extend(rec.diagnostics.iter().cloned());
    if interrupted {
        warnings.push(format!(
            "interrupted after {} of {} measured runs; the results cover those runs",
            runs.len(),
            asked
        ));
    }
    warnings
}

/// How the session was metered: interval, samples, the sampler's own CPU share, each source's
/// facts and what was unavailable.
pub fn meter_info(rec: &Recording, unavailable: Vec<crate::meter::Unavailable>) -> MeterInfo {
    let session_s = rec
        .times
        .last()
        .map_or(0.0, |t| t.saturating_sub(rec.start_ns) as f64 / 1e9);
    MeterInfo {
        interval_ms: rec.interval_ms,
        samples: rec.times.len(),
        sampler_reads: rec.ticks,
        decimation: rec.decimation,
        sampler_cpu_fraction: if session_s > 0.0 {
            rec.sampler_cpu_ns as f64 / 1e9 / session_s
        } else {
            0.0
        },
        sources: rec
            .sources
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        unavailable,
    }
}
