//! `joulebench eval`: one model on one task's items, in process, metered like `measure` (the
//! same sources, interval, strictness and idle window): the model loads and the items are
//! tokenized outside the window, two items warm up, then every item is one request with the
//! meters read at its start and end. Ctrl-C stops after the current item; what was scored is
//! kept.

use super::{figures, item_energy, window_j};
use crate::engine::driver::{Boundary, EvalJob, ItemOutput, RunEvents};
use crate::engine::models::evaluate::EvalItems;
use crate::engine::models::{LoadOptions, load};
use crate::engine::text::eval::{McMetric, TaskRef};
use crate::engine::{InferenceBackend, ModelInfo};
use crate::measure::result::MeterInfo;
use crate::measure::{MeasureError, MeasureObserver, Meters, meter_info, open_meters};
use crate::meter::mark::{Mark, Phase, Round};
use crate::meter::sampler::Sampler;
use crate::meter::select::{EstimateScope, Hardware, MeterChoice};
use crate::meter::totals::totals_with;
use crate::meter::{DomainKind, Provenance};
use crate::record::EvalFigures;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Version of the `joulebench eval` JSON.
pub const EVAL_SCHEMA_VERSION: u32 = 1;

/// What `joulebench eval` was asked to do.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// A registered id or a .gguf path.
    pub model: String,
    pub task: TaskRef,
    /// Items drawn with `seed` (None: every item).
    pub items: Option<usize>,
    pub seed: u64,
    pub metric: Option<McMetric>,
    pub meter: MeterChoice,
    pub interval: Duration,
    pub tdp_w: Option<f64>,
    pub strict: bool,
    pub allow_partial: bool,
    /// An idle window before the items (net figures then subtract it).
    pub idle: Duration,
    /// Do not fetch a model or data set the cache lacks.
    pub offline: bool,
}

/// Energy of the pass, and what it covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassEnergy {
    /// The energy the per-item figures divide (the items' spans; null: not measured).
    pub total_j: Option<f64>,
    /// The parts: CPU (package + DRAM, or the estimate) and GPU.
    pub cpu_j: Option<f64>,
    pub gpu_j: Option<f64>,
    pub provenance: Option<Provenance>,
    /// How each counted domain was read.
    pub methods: Vec<String>,
    /// Every domain's energy over the pass.
    pub domains: Vec<DomainJ>,
    /// Idle power over the pass's duration, subtracted (with `--idle-s`).
    pub net_j: Option<f64>,
    pub idle_w: Option<f64>,
}

/// One domain's energy over the pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainJ {
    pub source: String,
    pub name: String,
    pub energy_j: Option<f64>,
}

/// `joulebench eval`'s JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalResult {
    pub schema_version: u32,
    pub task: String,
    pub variant: String,
    pub metric: String,
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub accuracy_ci: [f64; 2],
    pub chance: Option<f64>,
    pub energy: PassEnergy,
    pub j_per_item: Option<f64>,
    pub j_per_correct: Option<f64>,
    pub correct_per_kj: Option<f64>,
    /// Intelligence per Watt's "accuracy per joule": accuracy / mean joules per query.
    pub accuracy_per_joule: Option<f64>,
    pub duration_s: f64,
    pub items_per_s: f64,
    pub tokens: usize,
    pub shared_tokens: usize,
    pub seed: u64,
    pub interrupted: bool,
    pub items: Vec<crate::record::EvalItem>,
    pub model: ModelInfo,
    pub meter: MeterInfo,
    pub machine: crate::fingerprint::Machine,
    pub warnings: Vec<String>,
}

/// Marks on the sampler for one round's items.
struct Marks<'a> {
    sampler: &'a Sampler,
    round: Round,
}

impl RunEvents for Marks<'_> {
    fn request(&self, index: usize, at: Boundary) {
        let phase = match at {
            Boundary::Start => Phase::Start,
            Boundary::FirstToken => Phase::First,
            Boundary::End => Phase::End,
        };
        self.sampler.mark(Mark::request(self.round, index, phase));
    }
    fn steady(&self, _started: bool) {}
    fn child(&self, _pid: Option<u32>) {}
    fn label(&self) -> String {
        self.round.to_string()
    }
}

/// Runs the evaluation. Errors come only before anything was measured (a missing model or data
/// set, unreadable meters, `--strict` without a sensor).
pub fn evaluate(
    opts: &EvalOptions,
    hw: &Hardware,
    interrupt: &AtomicBool,
    obs: &mut dyn MeasureObserver,
) -> anyhow::Result<EvalResult> {
    if let Some(why) = opts.task.problem() {
        anyhow::bail!(why);
    }
    let mut log = |s: &str| obs.phase(s);
    let (data, docs) = opts
        .task
        .draw(opts.items, opts.seed, !opts.offline, &mut log)?;
    let load_opts = LoadOptions {
        allow_fetch: !opts.offline,
        ..Default::default()
    };
    let mut model = load(&opts.model, &load_opts, &mut log)?;
    let job = EvalJob {
        task: opts.task.clone(),
        metric: opts.metric,
        docs,
        data,
    };
    let items = EvalItems::prepare(model.as_ref(), &job)?;
    let m = open_meters(
        &opts.meter,
        hw,
        opts.tdp_w,
        opts.strict,
        opts.interval,
        EstimateScope::Process,
    )
    .map_err(|e: MeasureError| anyhow::anyhow!(e))?;
    let run = run_items(opts, model.as_mut(), &items, &m, interrupt, obs)?;
    let Meters {
        sampler,
        unavailable,
        mut warnings,
        ..
    } = m;
    let rec = sampler.stop();
    warnings.extend(rec.diagnostics.iter().cloned());
    let refs: Vec<&ItemOutput> = run.outputs.iter().collect();
    let spans = item_energy(&rec, Round::Run(1), 0, refs.len(), opts.allow_partial);
    let energy = pass_energy(&rec, opts, refs.len());
    let f = figures(
        &opts.task,
        items.metric_name(),
        &refs,
        &spans,
        energy.provenance,
    );
    if energy.total_j.is_none() && !refs.is_empty() {
        warnings.push(
            "energy could not be measured over the items: no per-item energy is reported (an \
             unknown figure is never a smaller one)"
                .into(),
        );
    }
    if run.interrupted {
        warnings.push(format!(
            "interrupted after {} of {} items; the figures cover those items",
            refs.len(),
            items.len()
        ));
    }
    Ok(result(
        opts,
        f,
        energy,
        model.info(),
        &rec,
        unavailable,
        warnings,
        run.interrupted,
    ))
}

/// What the items' pass produced.
struct Run {
    outputs: Vec<ItemOutput>,
    interrupted: bool,
}

/// The idle window, the warmup items and every item, one at a time (an interrupt stops after
/// the current one).
fn run_items(
    opts: &EvalOptions,
    model: &mut dyn InferenceBackend,
    items: &EvalItems,
    m: &Meters,
    interrupt: &AtomicBool,
    obs: &mut dyn MeasureObserver,
) -> anyhow::Result<Run> {
    let sampler = &m.sampler;
    if !opts.idle.is_zero() {
        obs.phase(&format!("idle baseline ({:.1} s)", opts.idle.as_secs_f64()));
        sampler.mark(Mark::round(Round::Idle, Phase::Start));
        crate::clock::sleep_unless(opts.idle, interrupt);
        sampler.mark(Mark::round(Round::Idle, Phase::End));
    }
    obs.phase("warmup");
    let warm = Marks {
        sampler,
        round: Round::Warmup(1),
    };
    let n_warm = crate::engine::driver::EVAL_WARMUP_ITEMS.min(items.len());
    items.run(model, &warm, 0, 0..n_warm)?;
    obs.phase(&format!("{} items", items.len()));
    let marks = Marks {
        sampler,
        round: Round::Run(1),
    };
    let mut outputs = Vec::with_capacity(items.len());
    let mut interrupted = false;
    for i in 0..items.len() {
        if interrupt.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        outputs.extend(items.run(model, &marks, i, i..i + 1)?);
        if (i + 1) % 50 == 0 {
            obs.phase(&format!("{} of {} items", i + 1, items.len()));
        }
    }
    Ok(Run {
        outputs,
        interrupted,
    })
}

/// The pass's energy (first item's start to the last one's end), its parts and, with an idle
/// window, net of idle.
fn pass_energy(
    rec: &crate::meter::recording::Recording,
    opts: &EvalOptions,
    n: usize,
) -> PassEnergy {
    let round = Round::Run(1);
    let a = rec.mark_index(Mark::request(round, 0, Phase::Start));
    let z = n
        .checked_sub(1)
        .and_then(|l| rec.mark_index(Mark::request(round, l, Phase::End)));
    let (Some(a), Some(z)) = (a, z) else {
        return PassEnergy {
            total_j: None,
            cpu_j: None,
            gpu_j: None,
            provenance: None,
            methods: Vec::new(),
            domains: Vec::new(),
            net_j: None,
            idle_w: None,
        };
    };
    let w = rec.window(a, z);
    let per: Vec<Option<f64>> = w
        .domains
        .iter()
        .map(|d| d.energy_uj.is_finite().then_some(d.energy_uj / 1e6))
        .collect();
    let t = totals_with(&rec.domains, &per, opts.allow_partial);
    let total_j = window_j(rec, a, z, opts.allow_partial);
    let idle_w = rec
        .mark_index(Mark::round(Round::Idle, Phase::Start))
        .zip(rec.mark_index(Mark::round(Round::Idle, Phase::End)))
        .and_then(|(ia, iz)| {
            let secs = rec.marks[iz].t_ns.saturating_sub(rec.marks[ia].t_ns) as f64 / 1e9;
            window_j(rec, ia, iz, opts.allow_partial).map(|j| j / secs.max(1e-9))
        });
    let secs = w.duration_s();
    let estimated = rec.domains.iter().any(|d| {
        d.kind == DomainKind::CpuEstimate && t.cpu_provenance == Some(Provenance::Estimated)
    });
    PassEnergy {
        total_j,
        cpu_j: t.cpu_j,
        gpu_j: t.gpu_j,
        provenance: total_j.map(|_| {
            if estimated {
                Provenance::Estimated
            } else {
                Provenance::Measured
            }
        }),
        methods: {
            let mut m: Vec<String> = rec
                .domains
                .iter()
                .map(|d| format!("{}: {}", d.source, d.method.as_str()))
                .collect();
            m.dedup();
            m
        },
        domains: rec
            .domains
            .iter()
            .zip(&per)
            .map(|(d, e)| DomainJ {
                source: d.source.to_string(),
                name: d.name.clone(),
                energy_j: *e,
            })
            .collect(),
        net_j: total_j.zip(idle_w).map(|(j, w)| (j - w * secs).max(0.0)),
        idle_w,
    }
}

#[allow(clippy::too_many_arguments)]
fn result(
    opts: &EvalOptions,
    f: EvalFigures,
    energy: PassEnergy,
    model: &ModelInfo,
    rec: &crate::meter::recording::Recording,
    unavailable: Vec<crate::meter::Unavailable>,
    warnings: Vec<String>,
    interrupted: bool,
) -> EvalResult {
    EvalResult {
        schema_version: EVAL_SCHEMA_VERSION,
        task: f.task,
        variant: f.variant,
        metric: f.metric,
        n: f.n,
        correct: f.correct,
        accuracy: f.accuracy,
        accuracy_ci: f.accuracy_ci,
        chance: f.chance,
        energy,
        j_per_item: f.j_per_item,
        j_per_correct: f.j_per_correct,
        correct_per_kj: f.correct_per_kj,
        accuracy_per_joule: f.accuracy_per_joule,
        duration_s: f.items.iter().map(|i| i.s).sum(),
        items_per_s: f.items_per_s,
        tokens: f.tokens,
        shared_tokens: f.shared_tokens,
        seed: opts.seed,
        interrupted,
        items: f.items,
        model: model.clone(),
        meter: meter_info(rec, unavailable),
        machine: crate::fingerprint::machine(),
        warnings,
    }
}
