//! Energy figures of a repetition: each domain over the requests' phase windows, from counter
//! reads at the boundaries (never from subtracting runs), net of idle, per token and per request,
//! with the instrument uncertainty.

use crate::config::Suite;
use crate::engine::driver::Output;
use crate::meter::mark::{Mark, Phase, Round};
use crate::meter::recording::{Recording, Window};
use crate::meter::totals::{Span, Totals, UncertaintyParts, totals_with, uncertainty};
use crate::meter::{DomainKind, Provenance, TotalGroup};
use crate::record::{DomainEnergy, EnergyFigures, EnergyScope, Record};
use crate::run_meta::IdleBaseline;

use super::latency::mean_tokens;

/// Energy and time per phase, summed over the requests' windows (microjoules per domain).
struct PhaseSums {
    pre_uj: Vec<f64>,
    dec_uj: Vec<f64>,
    pre_s: f64,
    dec_s: f64,
    /// Invalid (bridged) reads inside the windows, per domain.
    invalid: Vec<u64>,
    /// Energy hidden wraps could add, per domain (µJ).
    lost_wrap_uj: Vec<f64>,
    /// Why domains have no figure (zone and time), one line each.
    lost: Vec<String>,
    windows: usize,
    /// The earliest start and the latest end mark of the requests.
    first_mark: Option<usize>,
    last_mark: Option<usize>,
}

/// Adds each domain's energy over every request's prefill and decode windows. Requests that
/// overlap (concurrent streams) share each stretch between two marks equally, each in its own
/// phase.
fn phase_sums(
    rec: &Recording,
    round: Round,
    outputs: &[Output],
    warnings: &mut Vec<String>,
) -> PhaseSums {
    let n = rec.domains.len();
    let (mut pre_uj, mut dec_uj) = (vec![0f64; n], vec![0f64; n]);
    let (mut pre_s, mut dec_s, mut windows) = (0f64, 0f64, 0usize);
    let mut invalid = vec![0u64; n];
    let mut lost_wrap_uj = vec![0f64; n];
    let mut lost: Vec<String> = Vec::new();
    let mut spans: Vec<(usize, Option<usize>, usize)> = Vec::new();
    for (i, item) in outputs.iter().enumerate() {
        let idx = |phase: Phase| rec.mark_index(Mark::request(round, i, phase));
        let (Some(a), Some(z)) = (idx(Phase::Start), idx(Phase::End)) else {
            warnings.push(format!("{round}.{i}: missing boundary marks"));
            continue;
        };
        let split = match item {
            Output::Generate(_) => idx(Phase::First),
            // An item's choices are read, not generated (a generated answer is not split).
            Output::Embed(_) | Output::Item(_) | Output::Opaque { .. } => None,
        };
        spans.push((a, split, z));
    }
    let t = |m: usize| rec.marks[m].t_ns;
    let mut by_start = spans.clone();
    by_start.sort_by_key(|s| t(s.0));
    let overlapping = by_start.windows(2).any(|w| t(w[1].0) < t(w[0].2));
    let first_mark = by_start.first().map(|s| s.0);
    let last_mark = spans.iter().map(|s| s.2).max_by_key(|&z| t(z));
    let mut seen = |w: &Window| {
        for (d, dw) in w.domains.iter().enumerate() {
            invalid[d] += dw.invalid_samples;
            lost_wrap_uj[d] += dw.lost_wrap_uj;
        }
        for line in rec.lost_lines(w) {
            if !lost.contains(&line) {
                lost.push(line);
            }
        }
    };
    let mut add = |w: &Window, share: f64, is_prefill: bool| {
        let (acc, secs) = if is_prefill {
            (&mut pre_uj, &mut pre_s)
        } else {
            (&mut dec_uj, &mut dec_s)
        };
        *secs += w.duration_s() * share;
        for (d, dw) in w.domains.iter().enumerate() {
            acc[d] += dw.energy_uj * share;
        }
    };
    if !overlapping {
        for &(a, split, z) in &spans {
            let phases: Vec<(usize, usize, bool)> = match split {
                Some(f) => vec![(a, f, true), (f, z, false)],
                None => vec![(a, z, true)],
            };
            for (x, y, is_prefill) in phases {
                let w = rec.window(x, y);
                windows += 1;
                seen(&w);
                add(&w, 1.0, is_prefill);
            }
        }
    } else {
        let mut bounds: Vec<usize> = spans
            .iter()
            .flat_map(|&(a, f, z)| [Some(a), f, Some(z)])
            .flatten()
            .collect();
        bounds.sort_by_key(|&m| (t(m), m));
        bounds.dedup();
        for b in bounds.windows(2) {
            let (x, y) = (b[0], b[1]);
            if t(y) <= t(x) {
                continue;
            }
            let active: Vec<&(usize, Option<usize>, usize)> = spans
                .iter()
                .filter(|s| t(s.0) <= t(x) && t(s.2) >= t(y))
                .collect();
            if active.is_empty() {
                continue;
            }
            let w = rec.window(x, y);
            windows += 1;
            seen(&w);
            let share = 1.0 / active.len() as f64;
            for s in active {
                add(&w, share, s.1.is_none_or(|f| t(y) <= t(f)));
            }
        }
    }
    PhaseSums {
        pre_uj,
        dec_uj,
        pre_s,
        dec_s,
        invalid,
        lost_wrap_uj,
        lost,
        windows,
        first_mark,
        last_mark,
    }
}

/// Which domains a total counts, given how the totals were formed.
fn counted(rec: &Recording, t: &Totals) -> Vec<bool> {
    rec.domains
        .iter()
        .map(|d| match d.kind.total_group() {
            TotalGroup::Cpu => match t.cpu_provenance {
                Some(Provenance::Estimated) => d.kind == DomainKind::CpuEstimate,
                _ => d.kind != DomainKind::CpuEstimate,
            },
            TotalGroup::Gpu => true,
            TotalGroup::None => {
                (d.kind == DomainKind::Core
                    && t.cpu_basis.as_deref().is_some_and(|b| b.contains("core")))
                    || (d.kind == DomainKind::Psys && t.cpu_is_platform)
            }
        })
        .collect()
}

/// Each counted domain's idle power from the baseline, matched by source and name; `Err` names
/// the counted domains the baseline has no figure for (their net is then unknown: a measured
/// idle is never subtracted from an estimate, nor one GPU's idle from another's).
fn idle_watts(
    rec: &Recording,
    counted: &[bool],
    idle: &IdleBaseline,
) -> Result<Vec<f64>, Vec<String>> {
    let mut out = vec![0.0; rec.domains.len()];
    let mut lacking = Vec::new();
    for (i, d) in rec.domains.iter().enumerate() {
        if !counted[i] {
            continue;
        }
        let w = idle
            .domains
            .iter()
            .find(|x| x.source == d.source.as_str() && x.name == d.name)
            .and_then(|x| x.power_w)
            .filter(|w| w.is_finite());
        match w {
            Some(w) => out[i] = w,
            None => lacking.push(format!("{}/{}", d.source, d.name)),
        }
    }
    if lacking.is_empty() {
        Ok(out)
    } else {
        Err(lacking)
    }
}

/// Fills `r`'s energy figures from repetition `round` (one output per request); returns
/// warnings.
pub fn fill(
    r: &mut Record,
    rec: &Recording,
    round: Round,
    outputs: &[Output],
    idle: Option<&IdleBaseline>,
    suite: &Suite,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let kf = outputs.len().max(1) as f64;
    let opaque = outputs.iter().all(|i| matches!(i, Output::Opaque { .. }));
    let sums = phase_sums(rec, round, outputs, &mut warnings);
    let to_j = |v: &[f64]| {
        v.iter()
            .map(|u| (u.is_finite()).then_some(u / 1e6))
            .collect::<Vec<_>>()
    };
    let (pre_j, dec_j) = (to_j(&sums.pre_uj), to_j(&sums.dec_uj));
    let partial = suite.allow_partial;
    let (tp, td) = (
        totals_with(&rec.domains, &pre_j, partial),
        totals_with(&rec.domains, &dec_j, partial),
    );
    let Some((prefill_total, decode_total)) =
        measured_totals(&tp, &td, &sums, round, &mut warnings)
    else {
        return warnings;
    };
    let partial_missing = partial_missing(&tp, &td, &sums, round, &mut warnings);
    let request_j = (prefill_total + decode_total) / kf;
    let counted = counted(rec, &tp);
    let busy_s = sums.pre_s + sums.dec_s;
    let avg_power_w = if busy_s > 0.0 {
        (prefill_total + decode_total) / busy_s
    } else {
        0.0
    };
    let (parts, bases) = uncertainty_of(rec, &counted, (&pre_j, &dec_j), &sums, kf);
    if parts.lost_wrap_j > 0.0 {
        warnings.push(format!(
            "{round}: a gap between counter reads was longer than a counter wrap at the domain's \
             maximum power: up to {:.3} J per request could be missing (counted as uncertainty)",
            parts.lost_wrap_j
        ));
    }
    let net = Net::of(rec, &counted, idle, round, &mut warnings);
    let what = if opaque { "the" } else { "prefill" };
    let prefill_net = net
        .phase(&pre_j, sums.pre_s)
        .map(|n| clamped(n, kf, what, round, &mut warnings));
    let decode_net = net
        .phase(&dec_j, sums.dec_s)
        .map(|n| clamped(n, kf, "decode", round, &mut warnings));
    // Per-request means over this repetition's own requests: a request's energy over its
    // tokens is the repetition's energy over all of its tokens.
    let out_tokens = mean_tokens(outputs, Output::generated_tokens);
    let in_tokens = mean_tokens(outputs, Output::prompt_tokens);
    let per_token_base = if out_tokens > 0.0 {
        out_tokens
    } else {
        in_tokens
    };
    let phase_or_none = |v: f64| (!opaque).then_some(v);
    let fig = EnergyFigures {
        provenance: provenance(rec, &counted),
        scope: scope(&tp),
        methods: methods(rec, &counted),
        interval_ms: rec.interval_ms,
        prefill_j: phase_or_none(prefill_total / kf),
        decode_j: phase_or_none(decode_total / kf),
        request_j,
        prefill_net_j: prefill_net.filter(|_| !opaque),
        decode_net_j: decode_net.filter(|_| !opaque),
        request_net_j: prefill_net.zip(decode_net).map(|(a, b)| a + b),
        j_per_prefill_token: phase_or_none(prefill_total / kf / in_tokens.max(1.0)),
        j_per_decode_token: (out_tokens > 0.0 && !opaque).then(|| decode_total / kf / out_tokens),
        j_per_request: request_j / r.batch.max(1) as f64,
        tokens_per_j: (per_token_base > 0.0).then(|| per_token_base / request_j),
        wh_per_1000_queries: request_j / r.batch.max(1) as f64 * 1000.0 / 3600.0,
        j_per_prefill_token_net: prefill_net
            .filter(|_| !opaque)
            .map(|p| p / in_tokens.max(1.0)),
        j_per_decode_token_net: decode_net
            .filter(|_| out_tokens > 0.0 && !opaque)
            .map(|d| d / out_tokens),
        avg_power_w,
        peak_power_w: peak_power(rec, &sums, &counted, avg_power_w),
        uncertainty_j: parts.total(),
        uncertainty_basis: bases.join("; "),
        uncertainty_parts: parts,
        invalid_samples: sums.invalid.iter().sum(),
        partial_missing,
        domains: domain_figures(rec, (&pre_j, &dec_j), opaque, kf),
    };
    if fig.invalid_samples > 0 {
        warnings.push(format!(
            "{} invalid meter read(s) bridged from neighbouring samples (counted as uncertainty)",
            fig.invalid_samples
        ));
    }
    r.energy_per_token_joules = (per_token_base > 0.0).then(|| request_j / per_token_base);
    r.energy_per_request_joules = Some(fig.j_per_request);
    r.avg_power_watts = Some(avg_power_w);
    r.gco2e_per_1000_queries = suite
        .carbon
        .as_ref()
        .map(|c| fig.wh_per_1000_queries * c.grams_co2e_per_kwh / 1000.0);
    r.energy = Some(fig);
    warnings
}

/// The prefill and decode totals (CPU plus GPU), or None with a warning where they cannot be
/// measured or the counters did not advance.
fn measured_totals(
    tp: &Totals,
    td: &Totals,
    sums: &PhaseSums,
    round: Round,
    warnings: &mut Vec<String>,
) -> Option<(f64, f64)> {
    let phase = |t: &Totals| t.cpu_plus_gpu().map(|j| j.0);
    let (Some(prefill_total), Some(decode_total)) = (phase(tp), phase(td)) else {
        let why = if sums.lost.is_empty() {
            "no valid reads of any domain".to_string()
        } else {
            sums.lost.join("; ")
        };
        warnings.push(format!(
            "{round}: energy could not be measured: {why}. A total that needs a domain it cannot \
             read is unknown, not smaller (pass --allow-partial for a labelled partial total)"
        ));
        return None;
    };
    if prefill_total + decode_total <= 0.0 || !(prefill_total + decode_total).is_finite() {
        warnings.push(
            "the energy counters did not advance during this repetition: no energy figure is \
             reported (a stuck or idle sensor is not a measurement of zero)"
                .into(),
        );
        return None;
    }
    Some((prefill_total, decode_total))
}

/// The domains a partial total leaves out (either phase), with a warning when there are any.
fn partial_missing(
    tp: &Totals,
    td: &Totals,
    sums: &PhaseSums,
    round: Round,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut missing = tp.partial_missing.clone();
    for m in &td.partial_missing {
        if !missing.contains(m) {
            missing.push(m.clone());
        }
    }
    let mut silent = tp.silent.clone();
    for z in &td.silent {
        if !silent.contains(z) {
            silent.push(z.clone());
        }
    }
    if !silent.is_empty() {
        warnings.push(crate::meter::totals::silent_warning(
            &silent,
            &round.to_string(),
        ));
    }
    let unread: Vec<&String> = missing.iter().filter(|m| !silent.contains(m)).collect();
    if !unread.is_empty() {
        warnings.push(format!(
            "{round}: PARTIAL energy (allowed): the totals leave out {} and are lower bounds; {}",
            unread
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            sums.lost.join("; ")
        ));
    }
    missing
}

/// Estimated when any counted domain is.
fn provenance(rec: &Recording, counted: &[bool]) -> Provenance {
    if rec
        .domains
        .iter()
        .zip(counted)
        .any(|(d, c)| *c && d.provenance == Provenance::Estimated)
    {
        Provenance::Estimated
    } else {
        Provenance::Measured
    }
}

/// What the totals cover.
fn scope(tp: &Totals) -> EnergyScope {
    match (tp.cpu_j.is_some(), tp.gpu_j.is_some(), tp.cpu_is_platform) {
        (true, true, false) => EnergyScope::CpuGpu,
        (true, false, false) => EnergyScope::Cpu,
        (true, true, true) => EnergyScope::PlatformGpu,
        (true, false, true) => EnergyScope::Platform,
        _ => EnergyScope::Gpu,
    }
}

/// `source: method` of each counted domain.
fn methods(rec: &Recording, counted: &[bool]) -> Vec<String> {
    let mut m: Vec<String> = rec
        .domains
        .iter()
        .zip(counted)
        .filter(|(_, c)| **c)
        .map(|(d, _)| format!("{}: {}", d.source, d.method.as_str()))
        .collect();
    m.dedup();
    m
}

/// The highest power of the counted domains over the requests' span (at least the average).
fn peak_power(rec: &Recording, sums: &PhaseSums, counted: &[bool], avg_power_w: f64) -> f64 {
    match (sums.first_mark, sums.last_mark) {
        (Some(a), Some(z)) if z > a => {
            let w = rec.window(a, z);
            w.domains
                .iter()
                .zip(counted)
                .filter(|(_, c)| **c)
                .map(|(dw, _)| dw.peak_power_w)
                .filter(|p| p.is_finite())
                .sum::<f64>()
                .max(avg_power_w)
        }
        _ => avg_power_w,
    }
}

/// The instrument uncertainty per request (counted domains) and what it is based on.
fn uncertainty_of(
    rec: &Recording,
    counted: &[bool],
    (pre_j, dec_j): (&[Option<f64>], &[Option<f64>]),
    sums: &PhaseSums,
    kf: f64,
) -> (UncertaintyParts, Vec<String>) {
    let busy_s = sums.pre_s + sums.dec_s;
    let mut parts = UncertaintyParts::default();
    let mut bases: Vec<String> = Vec::new();
    for (i, d) in rec.domains.iter().enumerate() {
        if !counted[i] {
            continue;
        }
        let e = pre_j[i].unwrap_or(0.0) + dec_j[i].unwrap_or(0.0);
        let span = Span {
            energy_j: e,
            avg_w: if busy_s > 0.0 { e / busy_s } else { 0.0 },
            windows: sums.windows,
            bridged_reads: sums.invalid[i],
            lost_wrap_j: sums.lost_wrap_uj[i] / 1e6,
        };
        let (u, basis) = uncertainty(d, span, rec.interval_ms);
        parts.add_scaled(&u, 1.0 / kf);
        for b in basis {
            if !bases.contains(&b) {
                bases.push(b);
            }
        }
    }
    (parts, bases)
}

/// Net of idle: each counted domain less its own idle power over a phase's duration.
struct Net<'a> {
    counted: &'a [bool],
    idle_w: Option<Vec<f64>>,
}

impl<'a> Net<'a> {
    fn of(
        rec: &Recording,
        counted: &'a [bool],
        idle: Option<&IdleBaseline>,
        round: Round,
        warnings: &mut Vec<String>,
    ) -> Net<'a> {
        let idle_w = match idle.map(|b| idle_watts(rec, counted, b)) {
            Some(Ok(w)) => Some(w),
            Some(Err(lacking)) => {
                warnings.push(format!(
                    "{round}: no net-of-idle figures: the idle baseline has no figure for {} (it \
                     was measured with other sensors); a measured idle is never subtracted from \
                     an estimate",
                    lacking.join(", ")
                ));
                None
            }
            None => None,
        };
        Net { counted, idle_w }
    }

    /// A phase's net energy over the repetition (unclamped), where the baseline allows one.
    fn phase(&self, gross: &[Option<f64>], secs: f64) -> Option<f64> {
        let w = self.idle_w.as_ref()?;
        Some(
            (0..gross.len())
                .filter(|&i| self.counted[i])
                .map(|i| gross[i].unwrap_or(0.0) - w[i] * secs)
                .sum(),
        )
    }
}

/// A net figure per request, clamped to 0 with a warning when the energy was below idle.
fn clamped(n: f64, kf: f64, what: &str, round: Round, warnings: &mut Vec<String>) -> f64 {
    if n < 0.0 {
        warnings.push(format!(
            "{round}: {what} energy below idle power x duration by {:.4} J: its net figure is \
             clamped to 0",
            -n
        ));
    }
    n.max(0.0) / kf
}

/// Each domain's figures per request (phases left out for commands).
fn domain_figures(
    rec: &Recording,
    (pre_j, dec_j): (&[Option<f64>], &[Option<f64>]),
    opaque: bool,
    kf: f64,
) -> Vec<DomainEnergy> {
    rec.domains
        .iter()
        .enumerate()
        .map(|(i, d)| DomainEnergy {
            source: d.source.to_string(),
            name: d.name.clone(),
            prefill_j: pre_j[i].filter(|_| !opaque).map(|v| v / kf),
            decode_j: dec_j[i].filter(|_| !opaque).map(|v| v / kf),
            total_j: pre_j[i].zip(dec_j[i]).map(|(a, b)| (a + b) / kf),
        })
        .collect()
}

/// Removes every energy figure from `r` (its sensors were not the suite's).
pub fn clear(r: &mut Record) {
    r.energy = None;
    r.energy_per_token_joules = None;
    r.energy_per_request_joules = None;
    r.avg_power_watts = None;
    r.gco2e_per_1000_queries = None;
}
