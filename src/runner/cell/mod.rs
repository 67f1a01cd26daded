//! One cell in its own process (`joulebench run-cell`), the same protocol for every engine: open
//! the engine's driver outside any measured window, start the meters, warm up, then run the
//! repetitions, reading every counter at each request's start, first token and end, and append
//! each record (fsynced) as soon as it is measured.

mod job;
mod meters;
mod repetition;

pub use meters::{Meters, SamplerEvents};

use crate::config::Suite;
use crate::engine::driver::{Driver, Job};
use crate::meter::estimate::machine_busy_ns;
use crate::meter::recording::Recording;
use crate::plan::{Cell, Plan};
use crate::record::{self, RECORD_SCHEMA_VERSION, Record, Status};
use crate::run_dir::{self, read_json};
use crate::run_meta::{IdleBaseline, RunMeta};
use anyhow::{Context, Result, bail};
use repetition::{one, prepare, repeat};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What a cell process says as it goes (the binary writes it to the cell's stderr log).
pub trait CellObserver {
    fn note(&mut self, _line: &str) {}
}

/// Says nothing.
pub struct Silent;

impl CellObserver for Silent {}

/// What every cell process starts from.
pub struct CellContext {
    pub run_dir: PathBuf,
    pub meta: RunMeta,
    pub suite: Suite,
    pub cell: Cell,
    pub idle: Option<IdleBaseline>,
    /// The cell's trace from an earlier process (a resumed run) and the time its last row is
    /// at: new rows are appended after it, never written over it.
    pub prior_trace: Option<(Vec<u8>, f64)>,
}

/// A result file could not be written (a full disk, a read-only folder): the suite stops,
/// keeping everything already fsynced.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutputWriteError(pub String);

/// Exit status of a cell process that could not write its results.
pub const EXIT_WRITE_FAILED: u8 = 74;

/// The trace already on disk and the time of its last row.
fn prior_trace(path: &Path) -> Option<(Vec<u8>, f64)> {
    let mut bytes = std::fs::read(path).ok()?;
    if bytes.is_empty() {
        return None;
    }
    if !bytes.ends_with(b"\n") {
        // A torn last row (a kill mid-write) is cut.
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(keep);
    }
    let last_t = bytes
        .split(|b| *b == b'\n')
        .rev()
        .filter_map(|l| std::str::from_utf8(l).ok())
        .find_map(|l| l.split(',').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (!bytes.is_empty()).then_some((bytes, last_t))
}

impl CellContext {
    /// Reads the run folder's meta, suite, plan and idle baseline, and finds the cell.
    pub fn load(run_dir: &Path, index: usize) -> Result<CellContext> {
        let meta: RunMeta = read_json(&run_dir.join(run_dir::META))?;
        let config = run_dir.join(run_dir::CONFIG);
        let text = std::fs::read_to_string(&config)
            .with_context(|| format!("cannot read {}", config.display()))?;
        let mut suite = Suite::parse(&meta.config_path, &text)?;
        suite.allow_partial |= meta.allow_partial;
        let plan: Plan = read_json(&run_dir.join(run_dir::PLAN))?;
        let cell = plan
            .cells
            .into_iter()
            .find(|c| c.index == index)
            .with_context(|| format!("the plan in {} has no cell {index}", run_dir.display()))?;
        let idle: Option<IdleBaseline> = read_json(&run_dir.join(run_dir::IDLE)).ok();
        let prior_trace = prior_trace(&run_dir::trace_path(run_dir, &cell.id));
        Ok(CellContext {
            run_dir: run_dir.to_path_buf(),
            meta,
            suite,
            cell,
            idle,
            prior_trace,
        })
    }

    /// A record for repetition `rep`, status ok, figures to fill.
    pub fn new_record(&self, rep: u32) -> Record {
        let mut r = failed_record(&self.suite, &self.cell, String::new());
        r.status = Status::Ok;
        r.error = None;
        r.repetition = Some(rep);
        r
    }

    /// Stamps where it was measured, appends it (fsynced) and rewrites the cell's trace.
    pub fn save(&self, mut r: Record, rec: &Recording, obs: &mut dyn CellObserver) -> Result<()> {
        r.host = Some(self.meta.host_tag());
        if r.host.as_ref().is_some_and(|h| h.node_shared) {
            r.warnings.push(
                "the node was shared with other jobs (slurm --shared): its energy may include \
                 theirs"
                    .into(),
            );
        }
        let records = self.run_dir.join(run_dir::RECORDS);
        record::append(&records, &r).map_err(|e| {
            OutputWriteError(format!("cannot append to {}: {e}", records.display()))
        })?;
        let trace = run_dir::trace_path(&self.run_dir, &self.cell.id);
        let mut buf = Vec::new();
        let written = match &self.prior_trace {
            Some((prior, last_t)) => {
                buf.extend_from_slice(prior);
                rec.write_trace_rows(&mut buf, last_t + 0.001, false)
            }
            None => rec.write_trace(&mut buf),
        }
        .and_then(|_| run_dir::write_atomic(&trace, &buf));
        written.map_err(|e| OutputWriteError(format!("cannot write the trace: {e}")))?;
        obs.note(&format!(
            "{} repetition {} recorded",
            self.cell.id,
            r.repetition.unwrap_or(0)
        ));
        Ok(())
    }
}

/// Dies with the parent, so a killed suite never leaves a cell appending records.
fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        std::process::exit(137);
    }
}

/// Test hook: make this cell fail in a chosen way.
fn fault_hook(obs: &mut dyn CellObserver) {
    match std::env::var("JOULEBENCH_CELL_FAULT").as_deref() {
        Ok("panic") => panic!("injected fault (JOULEBENCH_CELL_FAULT=panic)"),
        Ok("exit") => {
            obs.note("injected fault (JOULEBENCH_CELL_FAULT=exit)");
            std::process::exit(3)
        }
        Ok("hang") => std::thread::sleep(Duration::from_secs(3600)),
        _ => {}
    }
}

/// Warns when other processes used much of the machine during a repetition.
pub fn contamination(busy0: Option<u64>, own_ns: u64, wall_ns: u64) -> Option<String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (b0, b1) = (busy0?, machine_busy_ns()?);
    let other_s = b1.saturating_sub(b0).saturating_sub(own_ns) as f64 / 1e9;
    let share = other_s / (wall_ns as f64 / 1e9 * cpus);
    (share > 0.10 && other_s > 0.05).then(|| {
        format!(
            "other processes used {other_s:.2} CPU-seconds ({:.0}% of the machine) during this \
             repetition: its energy is contaminated",
            share * 100.0
        )
    })
}

/// Loads cell `index` of the run in `run_dir`, opens its engine's driver, runs `body` with
/// them and closes the driver; a result that could not be written becomes
/// [`EXIT_WRITE_FAILED`].
fn with_cell(
    run_dir: &Path,
    index: usize,
    obs: &mut dyn CellObserver,
    body: impl FnOnce(&CellContext, &Job, &mut dyn Driver, &mut dyn CellObserver) -> Result<u8>,
) -> Result<u8> {
    die_with_parent();
    // What the engine starts stays a descendant however it detaches (see `procs`).
    crate::procs::become_subreaper();
    let ctx = CellContext::load(run_dir, index)?;
    fault_hook(obs);
    let job = ctx.job()?;
    let mut driver = crate::engine::open_driver(
        &ctx.cell.model.engine,
        &job,
        ctx.cell.model.name(),
        &mut |s| obs.note(s),
    )?;
    let outcome = body(&ctx, &job, driver.as_mut(), obs);
    driver.close();
    // Nothing the cell started outlives it.
    let left = crate::procs::stop(Duration::from_secs(3), &[], &|_| true);
    if let Some(b) = crate::engine::peak_rss_bytes() {
        obs.note(&format!(
            "peak memory {:.0} MiB",
            b as f64 / f64::from(1 << 20)
        ));
    }
    let outcome = if left.is_empty() {
        outcome
    } else {
        let why = format!(
            "the cell left {} running when it ended: stopped (SIGTERM, then SIGKILL)",
            left.describe()
        );
        obs.note(&format!("error: {why}"));
        match outcome {
            Ok(_) => Err(anyhow::anyhow!(why)),
            Err(e) => Err(e.context(why)),
        }
    };
    match outcome {
        Err(e) if e.downcast_ref::<OutputWriteError>().is_some() => {
            obs.note(&format!("error: {e}"));
            Ok(EXIT_WRITE_FAILED)
        }
        other => other,
    }
}

/// Runs repetitions `reps` of cell `index` of the run in `run_dir`. Exit code 130 when
/// interrupted between repetitions.
pub fn run_cell(
    run_dir: &Path,
    index: usize,
    reps: &[u32],
    interrupt: &AtomicBool,
    obs: &mut dyn CellObserver,
) -> Result<u8> {
    with_cell(run_dir, index, obs, |ctx, job, driver, obs| {
        repeat(ctx, job, driver, reps, interrupt, obs)
    })
}

/// A long-lived cell process of an A/B job (`run-cell --serve VARIANT`): loads the model, warms
/// up, says `ready` on stdout, then runs one repetition per `rep N` line on stdin, answering
/// `done N` once its record is fsynced; ends at `quit`, end of input, or an interrupt. The
/// parent alternates two of these, so interleaving costs no load time.
pub fn serve_cell(
    run_dir: &Path,
    index: usize,
    variant: &str,
    interrupt: &AtomicBool,
    obs: &mut dyn CellObserver,
) -> Result<u8> {
    use std::io::{BufRead, Write};
    with_cell(run_dir, index, obs, |ctx, job, driver, obs| {
        let prep = prepare(ctx, driver, obs)?;
        obs.note(&format!(
            "A/B {variant}: loaded and warmed up once; serving repetitions"
        ));
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            if interrupt.load(Ordering::Relaxed) {
                return Ok(130);
            }
            let cmd = line.trim();
            if cmd == "quit" {
                break;
            }
            let Some(rep) = cmd
                .strip_prefix("rep ")
                .and_then(|n| n.trim().parse::<u32>().ok())
            else {
                bail!("unknown request {cmd:?} (rep N or quit)");
            };
            one(ctx, job, driver, &prep, rep, Some(variant), obs)?;
            writeln!(out, "done {rep}")?;
            out.flush()?;
        }
        drop(prep.meters.sampler.stop());
        Ok(0)
    })
}

/// A record for a cell that failed before or while running.
pub fn failed_record(suite: &Suite, cell: &Cell, error: String) -> Record {
    Record {
        schema_version: RECORD_SCHEMA_VERSION,
        suite: suite.name.clone(),
        cell: cell.id.clone(),
        cell_index: cell.index,
        model: cell.model.name(),
        model_spec: cell.model.spec(),
        profile: cell.profile.name.clone(),
        workload: cell.workload.name.clone(),
        kind: cell.workload.kind,
        repetition: None,
        status: Status::Failed,
        error: Some(error),
        unix_time_s: crate::clock::unix_now(),
        model_info: None,
        synthetic: cell.model.spec().starts_with("synthetic:"),
        batch: cell.workload.batch,
        inner_iterations: 0,
        prompt_tokens: 0,
        generated_tokens: 0,
        ttft_s: None,
        tpot_s: None,
        e2e_s: None,
        itl_p50_s: None,
        itl_p90_s: None,
        itl_p99_s: None,
        latency: None,
        arrival: None,
        dataset: None,
        request_tokens: Vec::new(),
        telemetry: None,
        stability: None,
        load: None,
        itls_ms: Vec::new(),
        prefill_tokens_per_s: None,
        decode_tokens_per_s: None,
        energy: None,
        energy_per_token_joules: None,
        energy_per_request_joules: None,
        avg_power_watts: None,
        gco2e_per_1000_queries: None,
        warnings: Vec::new(),
        concurrency: None,
        requests: None,
        token_counts: None,
        steady: None,
        whole: None,
        host: None,
        ab_variant: None,
        ab_pair: None,
        eval: None,
    }
}
