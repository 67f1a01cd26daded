//! The repetition protocol every engine runs: meters, warmup and window sizing once, then each
//! repetition's passes inside one window, its figures and its record.

use super::meters::{Meters, SamplerEvents};
use super::{CellContext, CellObserver, contamination};
use crate::engine::driver::{Driver, Job, Output, Pass};
use crate::meter::estimate::machine_busy_ns;
use crate::meter::mark::{Mark, Phase, Round};
use crate::runner::figures::{self, concurrency};
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the warmup settled: the meters, and how many passes one repetition's window holds.
pub(super) struct Prepared {
    pub(super) meters: Meters,
    pub(super) k: usize,
}

/// Meters, warmup and window sizing: everything before the first repetition.
pub(super) fn prepare(
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
            .warmup(&events)
            .map_err(|e| driver.explain(e.context("warmup failed")))?;
        e2e_s = pass.outputs.iter().map(Output::e2e_s).fold(0.0, f64::max);
    }
    // In-process passes repeat inside one window until it spans the minimum and five updates of
    // the slowest counter; the figures are divided by the count. An evaluation's pass over its
    // items is one window whatever its length.
    let k = if driver.repeat_in_window() {
        let min_window_s = (suite.min_window_ms / 1e3).max(5.0 * meters.slowest_update_ms / 1e3);
        ((min_window_s / e2e_s.max(1e-6)).ceil() as usize).clamp(1, 10_000)
    } else {
        1
    };
    Ok(Prepared { meters, k })
}

/// The repetition protocol: warmup, window sizing, then each repetition's passes inside one
/// window, its figures and its record.
pub(super) fn repeat(
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
pub(super) fn one(
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
    // Other processes' CPU during the window (a leftover of an earlier cell, another job) is
    // contamination, for every engine whose own work can be told apart.
    let busy0 = driver.cpu_is_ours().then(machine_busy_ns).flatten();
    let own_cpu = || crate::clock::process_cpu_ns() + crate::procs::children_cpu_ns();
    let own0 = own_cpu();
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
    if driver.cpu_is_ours() {
        let own = own_cpu().saturating_sub(own0);
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
    if let Some(e) = &job.eval {
        let metric = driver.eval_metric().unwrap_or_default();
        let provenance = r.energy.as_ref().map(|f| f.provenance);
        r.eval = crate::eval::repetition(
            &e.task,
            &metric,
            &outputs,
            &rec,
            round,
            suite.allow_partial,
            provenance,
        );
        if r.energy.is_none()
            && let Some(f) = r.eval.as_mut()
        {
            crate::eval::clear_energy(f);
        }
    }
    if meters.energy_refused {
        figures::energy::clear(&mut r);
        if let Some(f) = r.eval.as_mut() {
            crate::eval::clear_energy(f);
        }
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
