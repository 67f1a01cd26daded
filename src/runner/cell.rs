//! One cell in its own process (`joulebench run-cell`): load the model outside any measured
//! window, warm up, then run the repetitions, reading every counter at the request start, the
//! first token and the last token, and append each record (fsynced) as soon as it is measured.

use super::figures::{Inner, fill};
use crate::config::{EngineKind, Suite, WorkloadKind};
use crate::engine::candle::load::{LoadOptions, load};
use crate::engine::{
    EmbedRequest, GenerateRequest, InferenceBackend, TokenEvent, TokenObserver, text::prompt,
};
use crate::meter::estimate::machine_busy_ns;
use crate::meter::sampler::{Sampler, SamplerConfig};
use crate::meter::select::{EstimateScope, Hardware, select};
use crate::plan::{Cell, plan};
use crate::record::{self, RECORD_SCHEMA_VERSION, Record, Status};
use crate::run_dir::{IdleBaseline, RunMeta, read_json};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Marks the meters at the request start, the first token and the end.
pub struct Marker<'a> {
    pub sampler: &'a Sampler,
    pub prefix: String,
}

impl TokenObserver for Marker<'_> {
    fn on_event(&mut self, e: TokenEvent, _t: u64) {
        let tag = match e {
            TokenEvent::Start => "start",
            TokenEvent::FirstToken => "first",
            TokenEvent::End => "end",
            TokenEvent::Token { .. } => return,
        };
        self.sampler.mark(&format!("{}:{tag}", self.prefix));
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

fn fault_hook() {
    // Test hook: make this cell fail in a chosen way.
    match std::env::var("JOULEBENCH_CELL_FAULT").as_deref() {
        Ok("panic") => panic!("injected fault (JOULEBENCH_CELL_FAULT=panic)"),
        Ok("exit") => {
            eprintln!("injected fault (JOULEBENCH_CELL_FAULT=exit)");
            std::process::exit(3)
        }
        Ok("hang") => std::thread::sleep(Duration::from_secs(3600)),
        _ => {}
    }
}

/// Inputs of one request, built deterministically.
fn inputs(model: &dyn InferenceBackend, cell: &Cell) -> Result<Vec<Vec<u32>>> {
    let w = &cell.workload;
    let one = match (w.kind, model.tokenizer()) {
        (WorkloadKind::Embed, Some(t)) => prompt::exact_encoder_tokens(t, w.prompt_tokens)?,
        (WorkloadKind::Generate, Some(t)) => {
            let chat = if w.chat_template {
                let tpl = model.chat_template().unwrap_or("");
                Some(prompt::ChatFormat::detect(tpl).with_context(|| {
                    format!(
                        "workload {}: the model has no chat template joulebench can apply",
                        w.name
                    )
                })?)
            } else {
                None
            };
            prompt::exact_tokens(t, w.prompt_tokens, chat)?
        }
        (_, None) => prompt::synthetic_tokens(model.info().vocab_size, w.prompt_tokens, 7),
    };
    Ok(vec![one; w.batch * w.concurrency])
}

/// Runs one generation (or embedding) with marks under `prefix`.
fn once(
    model: &mut dyn InferenceBackend,
    cell: &Cell,
    inputs: &[Vec<u32>],
    sampler: &Sampler,
    prefix: String,
) -> Result<Inner> {
    let mut marker = Marker { sampler, prefix };
    let w = &cell.workload;
    Ok(match w.kind {
        WorkloadKind::Generate => Inner::Generate(model.generate(
            &GenerateRequest {
                prompts: inputs.to_vec(),
                max_new_tokens: w.new_tokens,
                ignore_eos: w.ignore_eos,
            },
            &mut marker,
        )?),
        WorkloadKind::Embed => Inner::Embed(model.embed(
            &EmbedRequest {
                inputs: inputs.to_vec(),
            },
            &mut marker,
        )?),
    })
}

/// What every kind of cell process starts from.
pub struct CellContext {
    pub run_dir: std::path::PathBuf,
    pub meta: RunMeta,
    pub suite: Suite,
    pub cell: Cell,
    pub idle: Option<IdleBaseline>,
}

/// The opened meters of a cell.
pub struct Meters {
    pub sampler: Sampler,
    pub warnings: Vec<String>,
    /// Slowest nominal update period of the measured domains (window sizing).
    pub slowest_update_ms: f64,
    /// Set the measured child's PID here (ChildTree estimates).
    pub child_tracker: Option<std::sync::Arc<std::sync::atomic::AtomicI32>>,
}

impl CellContext {
    /// Reads the run folder's meta, suite and idle baseline, and finds the cell.
    pub fn load(run_dir: &Path, index: usize) -> Result<CellContext> {
        let meta: RunMeta = read_json(&run_dir.join("meta.json"))?;
        let text = std::fs::read_to_string(run_dir.join("config.toml"))
            .with_context(|| format!("cannot read {}", run_dir.join("config.toml").display()))?;
        let suite = Suite::parse(&meta.config_path, &text)?;
        let cell = plan(&suite)
            .cells
            .into_iter()
            .nth(index)
            .with_context(|| format!("the suite has no cell {index}"))?;
        let idle: Option<IdleBaseline> = read_json(&run_dir.join("idle.json")).ok();
        Ok(CellContext {
            run_dir: run_dir.to_path_buf(),
            meta,
            suite,
            cell,
            idle,
        })
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
        let slowest_update_ms = sel
            .sources
            .iter()
            .flat_map(|s| s.domains().to_vec())
            .filter(|d| d.provenance == crate::meter::Provenance::Measured)
            .map(|d| d.nominal_update_ms)
            .fold(0.0, f64::max);
        let sampler = Sampler::start(
            sel.sources,
            SamplerConfig {
                interval: Duration::from_secs_f64(suite.interval_ms / 1e3),
                ..Default::default()
            },
        );
        Ok(Meters {
            sampler,
            warnings: sel.warnings,
            slowest_update_ms,
            child_tracker: sel.child_tracker,
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
    pub fn save(&self, mut r: Record, rec: &crate::meter::recording::Recording) -> Result<()> {
        r.host = Some(self.meta.host_tag());
        if r.host.as_ref().is_some_and(|h| h.node_shared) {
            r.warnings.push(
                "the node was shared with other jobs (slurm --shared): its energy may include \
                 theirs"
                    .into(),
            );
        }
        let records = self.run_dir.join("records.jsonl");
        record::append(&records, &r)
            .with_context(|| format!("cannot append to {}", records.display()))?;
        let trace = self
            .run_dir
            .join("traces")
            .join(format!("{}.csv", self.cell.id));
        let mut buf = Vec::new();
        if rec.write_trace(&mut buf).is_ok() {
            let _ = crate::run_dir::write_atomic(&trace, &buf);
        }
        eprintln!(
            "[cell] {} repetition {} recorded",
            self.cell.id,
            r.repetition.unwrap_or(0)
        );
        Ok(())
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

/// Runs repetitions `reps` of cell `index` of the run in `run_dir`. Exit code 130 when
/// interrupted between repetitions.
pub fn run_cell(run_dir: &Path, index: usize, reps: &[u32], interrupt: &AtomicBool) -> Result<u8> {
    die_with_parent();
    let ctx = CellContext::load(run_dir, index)?;
    fault_hook();
    match ctx.cell.model.engine {
        EngineKind::Candle => run_candle(&ctx, reps, interrupt),
        EngineKind::Openai => super::external::run_openai(&ctx, reps, interrupt),
        EngineKind::Command => super::external::run_command(&ctx, reps, interrupt),
    }
}

fn run_candle(ctx: &CellContext, reps: &[u32], interrupt: &AtomicBool) -> Result<u8> {
    let (suite, cell) = (&ctx.suite, &ctx.cell);
    let meters = ctx.meters(EstimateScope::Process)?;
    let opts = LoadOptions {
        device: cell.profile.device.clone(),
        seed: cell.model.seed.unwrap_or(42),
        ..Default::default()
    };
    let mut model = load(&cell.model.spec(), &opts, &mut |s| eprintln!("[cell] {s}"))?;
    let inputs = inputs(model.as_ref(), cell)?;
    let sampler = &meters.sampler;
    // Warmup (at least one unrecorded run when warmup = 0, to size the window).
    let mut e2e_s: f64 = 0.0;
    for w in 0..suite.warmup.max(1) {
        let r = once(
            model.as_mut(),
            cell,
            &inputs,
            sampler,
            format!("warmup{}", w + 1),
        )?;
        e2e_s = r.e2e_s();
    }
    let min_window_s = (suite.min_window_ms / 1e3).max(5.0 * meters.slowest_update_ms / 1e3);
    let k = ((min_window_s / e2e_s.max(1e-6)).ceil() as usize).clamp(1, 10_000);
    for &rep in reps {
        if interrupt.load(Ordering::Relaxed) {
            return Ok(130);
        }
        let busy0 = machine_busy_ns();
        let own0 = crate::clock::process_cpu_ns();
        let t0 = crate::clock::monotonic_ns();
        let mut inner = Vec::with_capacity(k);
        for i in 0..k {
            inner.push(once(
                model.as_mut(),
                cell,
                &inputs,
                sampler,
                format!("r{rep}.{i}"),
            )?);
        }
        sampler.mark(&format!("r{rep}:settle"));
        let wall_ns = crate::clock::monotonic_ns() - t0;
        let rec = sampler.snapshot();
        let mut warnings = meters.warnings.clone();
        warnings.extend(sampler.health());
        let own = crate::clock::process_cpu_ns().saturating_sub(own0);
        warnings.extend(contamination(busy0, own, wall_ns));
        let mut r = ctx.new_record(rep);
        r.synthetic = model.info().synthetic;
        r.model_info = Some(model.info().clone());
        if cell.workload.concurrency > 1 {
            r.concurrency = Some(cell.workload.concurrency);
            r.batch = cell.workload.batch * cell.workload.concurrency;
            warnings.push(format!(
                "concurrency {} ran as one static batch of {} sequences (the in-process engine \
                 serves concurrent requests by batching them)",
                cell.workload.concurrency,
                cell.workload.concurrency * cell.workload.batch
            ));
        }
        r.token_counts = Some("engine".into());
        warnings.extend(fill(
            &mut r,
            &rec,
            &format!("r{rep}"),
            &inner,
            ctx.idle.as_ref(),
            suite,
        ));
        r.warnings = warnings;
        ctx.save(r, &rec)?;
    }
    drop(meters.sampler.stop());
    Ok(0)
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
    }
}
