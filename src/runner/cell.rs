//! One cell in its own process (`joulebench run-cell`), the same protocol for every engine: open
//! the engine's driver outside any measured window, start the meters, warm up, then run the
//! repetitions, reading every counter at each request's start, first token and end, and append
//! each record (fsynced) as soon as it is measured.

use super::figures::{self, concurrency};
use crate::config::{Suite, WorkloadKind};
use crate::engine::driver::{Boundary, Driver, Job, Output, Pass, RunEvents};
use crate::meter::estimate::machine_busy_ns;
use crate::meter::mark::{Mark, Phase, Round};
use crate::meter::recording::Recording;
use crate::meter::sampler::Sampler;
use crate::meter::select::{EstimateScope, Hardware, select};
use crate::plan::{Cell, Plan};
use crate::record::{self, RECORD_SCHEMA_VERSION, Record, Status};
use crate::run_dir::{self, read_json};
use crate::run_meta::{IdleBaseline, RunMeta};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
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

/// The opened meters of a cell.
pub struct Meters {
    pub sampler: Sampler,
    pub warnings: Vec<String>,
    /// Slowest nominal update period of the measured domains (window sizing).
    pub slowest_update_ms: f64,
    /// Set the measured child's PID here (ChildTree estimates).
    pub child_tracker: Option<Arc<AtomicI32>>,
    /// A measured domain the suite started with is gone: what every record says.
    pub lost_sensor: Option<String>,
    /// ... and the suite did not ask for a fallback: records carry no energy.
    pub energy_refused: bool,
}

/// The meters, read at every boundary a driver reports during one round.
pub struct SamplerEvents<'a> {
    pub meters: &'a Meters,
    pub round: Round,
}

impl RunEvents for SamplerEvents<'_> {
    fn request(&self, index: usize, at: Boundary) {
        let phase = match at {
            Boundary::Start => Phase::Start,
            Boundary::FirstToken => Phase::First,
            Boundary::End => Phase::End,
        };
        self.meters
            .sampler
            .mark(Mark::request(self.round, index, phase));
    }

    fn steady(&self, started: bool) {
        let phase = if started {
            Phase::SteadyStart
        } else {
            Phase::SteadyEnd
        };
        self.meters.sampler.mark(Mark::round(self.round, phase));
    }

    fn child(&self, pid: Option<u32>) {
        if let Some(t) = &self.meters.child_tracker {
            t.store(pid.map_or(0, |p| p as i32), Ordering::SeqCst);
        }
    }

    fn label(&self) -> String {
        self.round.to_string()
    }
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

    /// The cell's workload as its engine sees it. A load-curve point reads the throughput its
    /// saturation cell achieved in this run (an error when that cell has none).
    pub fn job(&self) -> Result<Job> {
        let (w, p) = (&self.cell.workload, &self.cell.profile);
        let mut job = Job {
            cell_id: self.cell.id.clone(),
            workload: w.name.clone(),
            prompt_tokens: w.prompt_tokens,
            new_tokens: w.new_tokens,
            batch: w.batch,
            concurrency: w.concurrency,
            requests: w.request_count(),
            arrivals: w.arrivals(),
            lengths: w.drawn_lengths(),
            dataset: w
                .dataset
                .as_ref()
                .map(|d| crate::engine::text::dataset::DatasetJob {
                    name: d.clone(),
                    path: crate::store::registry::dataset(d).is_none().then(|| {
                        self.meta
                            .config_path
                            .parent()
                            .unwrap_or(Path::new("."))
                            .join(d)
                    }),
                    seed: w.seed.unwrap_or(0),
                }),
            ignore_eos: w.ignore_eos,
            chat_template: w.chat_template,
            embed: w.kind == WorkloadKind::Embed,
            threads: p.thread_count(),
            device: p.device.clone(),
            env: p.env.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
            logs_dir: self.run_dir.join("logs"),
            suite_dir: self
                .meta
                .config_path
                .parent()
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            active_idle_s: None,
            load: None,
        };
        if let Some(point) = &w.load_point {
            let curve = w
                .name
                .rsplit_once('-')
                .map_or(w.name.clone(), |(a, _)| a.to_string());
            let curve = curve.strip_suffix("-active").unwrap_or(&curve).to_string();
            let mut fig = crate::engine::load_curve::LoadFigures {
                curve,
                point: point.clone(),
                saturation_requests_per_s: None,
                offered_requests_per_s: None,
            };
            match point {
                crate::engine::load_curve::LoadPoint::Saturation => {}
                crate::engine::load_curve::LoadPoint::ActiveIdle { seconds } => {
                    job.active_idle_s = Some(*seconds);
                    job.requests = 1;
                }
                crate::engine::load_curve::LoadPoint::Fraction {
                    fraction,
                    saturation,
                } => {
                    let sat = self.saturation_rate(saturation)?;
                    let rate = sat * fraction;
                    let requests = match (w.requests, w.duration_s) {
                        (Some(n), _) => n,
                        (None, Some(d)) => ((rate * d).round() as usize)
                            .clamp(1, crate::config::limits::MAX_REQUESTS),
                        (None, None) => 1,
                    };
                    let process = w
                        .arrival
                        .unwrap_or(crate::engine::arrival::Process::Poisson);
                    job.requests = requests;
                    job.concurrency = 1;
                    job.arrivals = Some(crate::engine::arrival::Arrivals {
                        request_rate_per_s: rate,
                        process,
                        burstiness: match process {
                            crate::engine::arrival::Process::Poisson => 1.0,
                            crate::engine::arrival::Process::Gamma => w.burstiness.unwrap_or(1.0),
                        },
                        max_concurrency: w.max_concurrency.unwrap_or(1).min(requests).max(1),
                        seed: w.seed.unwrap_or(0),
                    });
                    fig.saturation_requests_per_s = Some(sat);
                    fig.offered_requests_per_s = Some(rate);
                }
            }
            job.load = Some(fig);
        }
        Ok(job)
    }

    /// Requests per second the saturation cell `workload` of the same model and profile
    /// completed in this run (median over its repetitions).
    fn saturation_rate(&self, workload: &str) -> Result<f64> {
        let path = self.run_dir.join(crate::run_dir::RECORDS);
        let (recs, _) = crate::record::read_all(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut rates: Vec<f64> = recs
            .iter()
            .filter(|r| {
                r.status == crate::record::Status::Ok
                    && r.model == self.cell.model.name()
                    && r.profile == self.cell.profile.name
                    && r.workload == workload
            })
            .filter_map(|r| {
                let w = r.whole.as_ref()?;
                (w.duration_s > 0.0).then(|| w.requests as f64 / w.duration_s)
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        match rates.get(rates.len() / 2) {
            Some(&r) if r > 0.0 => Ok(r),
            _ => anyhow::bail!(
                "load curve: the saturation cell {workload} has no completed repetition in {} \
                 (it runs first; its failure is recorded there)",
                path.display()
            ),
        }
    }

    /// Opens the suite's meters (estimates counting `scope`) and starts sampling.
    pub fn meters(&self, scope: EstimateScope) -> Result<Meters> {
        let suite = &self.suite;
        let root = suite
            .powercap_root
            .clone()
            .unwrap_or_else(|| crate::meter::rapl::DEFAULT_POWERCAP_ROOT.into());
        let sel = select(&suite.meter, &Hardware::real(root), suite.tdp_w, scope)
            .map_err(|e| anyhow::anyhow!(e))?;
        if suite.strict && sel.has_estimates() {
            bail!("strict: no measured source covers the CPU; refusing to report estimates");
        }
        let lost = self.lost_domains(&sel);
        let slowest_update_ms = sel
            .sources
            .iter()
            .flat_map(|s| s.domains().to_vec())
            .filter(|d| d.provenance == crate::meter::Provenance::Measured)
            .map(|d| d.nominal_update_ms)
            .fold(0.0, f64::max);
        let (sampler, clamped) = Sampler::start_safe(
            sel.sources,
            Duration::from_secs_f64(suite.interval_ms / 1e3),
        );
        let mut warnings = sel.warnings;
        warnings.extend(clamped);
        let lost_sensor = (!lost.is_empty()).then(|| {
            let why: Vec<String> = sel
                .unavailable
                .iter()
                .filter(|u| lost.iter().any(|l| l.starts_with(u.source.as_str())))
                .map(|u| u.to_string())
                .collect();
            let what = format!(
                "{} measured when this suite started, not available to this cell{}",
                lost.join(", "),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            );
            if suite.auto_fallback {
                format!(
                    "SENSOR LOST: {what}; [meter] sources = \"auto\" asked for a fallback, so \
                     this record's energy uses what is left (ESTIMATED where no sensor covers \
                     the CPU) and no idle measured with the lost sensor is subtracted"
                )
            } else {
                format!(
                    "SENSOR LOST: {what}; this cell's energy is not reported (a figure from \
                     fewer sensors, or from the estimate, would not be the suite's \
                     measurement). Restore the sensor and resume the run (run --resume), or \
                     write sources = \"auto\" under [meter] to accept a labelled fallback"
                )
            }
        });
        Ok(Meters {
            sampler,
            warnings,
            slowest_update_ms,
            child_tracker: sel.child_tracker,
            lost_sensor,
            energy_refused: !lost.is_empty() && !suite.auto_fallback,
        })
    }

    /// The measured domains the suite started with that this cell's sources lack.
    fn lost_domains(&self, sel: &crate::meter::select::Selection) -> Vec<String> {
        let have: Vec<String> = sel
            .sources
            .iter()
            .flat_map(|s| s.domains().to_vec())
            .filter(|d| d.provenance == crate::meter::Provenance::Measured)
            .map(|d| format!("{}/{}", d.source, d.name))
            .collect();
        self.meta
            .measured_domains
            .iter()
            .filter(|d| !have.contains(d))
            .cloned()
            .collect()
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

/// What the warmup settled: the meters, and how many passes one repetition's window holds.
struct Prepared {
    meters: Meters,
    k: usize,
}

/// Meters, warmup and window sizing: everything before the first repetition.
fn prepare(
    ctx: &CellContext,
    driver: &mut dyn Driver,
    obs: &mut dyn CellObserver,
) -> Result<Prepared> {
    let suite = &ctx.suite;
    let meters = ctx.meters(driver.estimate_scope())?;
    if let Some(line) = &meters.lost_sensor {
        obs.note(line);
    }
    let mut e2e_s: f64 = 0.0;
    for w in 0..suite.warmup.max(driver.min_warmups()) {
        let events = SamplerEvents {
            meters: &meters,
            round: Round::Warmup(w + 1),
        };
        let pass = driver
            .run(&events, 0)
            .map_err(|e| driver.explain(e.context("warmup failed")))?;
        e2e_s = pass.outputs.iter().map(Output::e2e_s).fold(0.0, f64::max);
    }
    // In-process passes repeat inside one window until it spans the minimum and five updates of
    // the slowest counter; the figures are divided by the count.
    let k = if driver.in_process() {
        let min_window_s = (suite.min_window_ms / 1e3).max(5.0 * meters.slowest_update_ms / 1e3);
        ((min_window_s / e2e_s.max(1e-6)).ceil() as usize).clamp(1, 10_000)
    } else {
        1
    };
    Ok(Prepared { meters, k })
}

/// The repetition protocol: warmup, window sizing, then each repetition's passes inside one
/// window, its figures and its record.
fn repeat(
    ctx: &CellContext,
    job: &Job,
    driver: &mut dyn Driver,
    reps: &[u32],
    interrupt: &AtomicBool,
    obs: &mut dyn CellObserver,
) -> Result<u8> {
    let prep = prepare(ctx, driver, obs)?;
    for &rep in reps {
        if interrupt.load(Ordering::Relaxed) {
            return Ok(130);
        }
        one(ctx, job, driver, &prep, rep, None, obs)?;
    }
    drop(prep.meters.sampler.stop());
    Ok(0)
}

/// Repetition `rep`: its passes inside one window, its figures, its record (fsynced). `ab`
/// marks the record with its variant of an A/B job (the pair is the repetition).
fn one(
    ctx: &CellContext,
    job: &Job,
    driver: &mut dyn Driver,
    prep: &Prepared,
    rep: u32,
    ab: Option<&str>,
    obs: &mut dyn CellObserver,
) -> Result<()> {
    let (suite, cell) = (&ctx.suite, &ctx.cell);
    let (meters, k) = (&prep.meters, prep.k);
    let round = Round::Repetition(rep);
    let events = SamplerEvents { meters, round };
    let busy0 = driver.in_process().then(machine_busy_ns).flatten();
    let own0 = crate::clock::process_cpu_ns();
    let t0 = crate::clock::monotonic_ns();
    let mut passes: Vec<Pass> = Vec::with_capacity(k);
    let mut first = 0;
    for _ in 0..k {
        let pass = driver
            .run(&events, first)
            .map_err(|e| driver.explain(e.context(format!("repetition {rep} of {}", cell.id))))?;
        first += pass.outputs.len();
        passes.push(pass);
    }
    let settle = meters.sampler.mark(Mark::round(round, Phase::Settle));
    let wall_ns = crate::clock::monotonic_ns() - t0;
    if settle.values.iter().any(Option::is_none) {
        // A failed read at the window's end is bridged only from reads on both sides.
        meters.sampler.sample_now();
    }
    let rec = meters.sampler.snapshot();
    let mut warnings = meters.warnings.clone();
    warnings.extend(meters.sampler.health());
    if driver.in_process() {
        let own = crate::clock::process_cpu_ns().saturating_sub(own0);
        warnings.extend(contamination(busy0, own, wall_ns));
    }
    let mut r = ctx.new_record(rep);
    if let Some(v) = ab {
        r.ab_variant = Some(v.to_string());
        r.ab_pair = Some(rep);
    }
    r.synthetic = driver.info().synthetic;
    r.model_info = Some(driver.info().clone());
    r.dataset = driver.dataset().cloned();
    r.load = job.load.clone();
    (r.batch, r.concurrency) = driver.shape(job);
    r.token_counts = passes.first().map(|p| p.token_counts.clone());
    for w in passes.iter().flat_map(|p| &p.warnings) {
        if !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    let outputs: Vec<Output> = passes
        .iter_mut()
        .flat_map(|p| p.outputs.drain(..))
        .collect();
    if job.lengths.is_some() || job.dataset.is_some() {
        r.request_tokens = outputs
            .iter()
            .map(|o| [o.prompt_tokens(), o.generated_tokens()])
            .collect();
    }
    warnings.extend(meters.lost_sensor.clone());
    warnings.extend(figures::fill(
        &mut r,
        &rec,
        round,
        &outputs,
        ctx.idle.as_ref(),
        suite,
    ));
    if meters.energy_refused {
        figures::energy::clear(&mut r);
    }
    if let Some(streams) = passes.first().and_then(|p| p.streams.clone()) {
        let chunks: Vec<(u64, f64)> = passes.iter().flat_map(|p| p.chunks.clone()).collect();
        warnings.extend(concurrency::streams(
            &mut r,
            &rec,
            round,
            streams,
            &outputs,
            &chunks,
            suite.min_steady_s,
        ));
    }
    r.warnings = warnings;
    ctx.save(r, &rec, obs)?;
    driver.check()
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
    }
}
