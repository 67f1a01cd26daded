//! Energy figures of a repetition: each domain over the requests' phase windows, from counter
//! reads at the boundaries (never from subtracting runs), net of idle, per token and per request,
//! with the instrument uncertainty.

use crate::config::Suite;
use crate::engine::driver::Output;
use crate::meter::mark::{Mark, Phase, Round};
use crate::meter::recording::{Recording, Window};
use crate::meter::totals::{Totals, totals, uncertainty};
use crate::meter::{DomainInfo, DomainKind, Method, Provenance, TotalGroup};
use crate::record::{DomainEnergy, EnergyFigures, EnergyScope, Record};
use crate::run_dir::IdleBaseline;
use crate::units::{Joules, Seconds, Watts};

use super::latency::mean_tokens;

/// Energy and time per phase, summed over the requests' windows (microjoules per domain).
struct PhaseSums {
    pre_uj: Vec<f64>,
    dec_uj: Vec<f64>,
    pre_s: f64,
    dec_s: f64,
    /// Invalid (bridged) reads inside the windows, per domain.
    invalid: Vec<u64>,
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
    let mut spans: Vec<(usize, Option<usize>, usize)> = Vec::new();
    for (i, item) in outputs.iter().enumerate() {
        let idx = |phase: Phase| rec.mark_index(Mark::request(round, i, phase));
        let (Some(a), Some(z)) = (idx(Phase::Start), idx(Phase::End)) else {
            warnings.push(format!("{round}.{i}: missing boundary marks"));
            continue;
        };
        let split = match item {
            Output::Generate(_) => idx(Phase::First),
            Output::Embed(_) | Output::Opaque { .. } => None,
        };
        spans.push((a, split, z));
    }
    let t = |m: usize| rec.marks[m].t_ns;
    let mut by_start = spans.clone();
    by_start.sort_by_key(|s| t(s.0));
    let overlapping = by_start.windows(2).any(|w| t(w[1].0) < t(w[0].2));
    let first_mark = by_start.first().map(|s| s.0);
    let last_mark = spans.iter().map(|s| s.2).max_by_key(|&z| t(z));
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
                for (acc, dw) in invalid.iter_mut().zip(&w.domains) {
                    *acc += dw.invalid_samples;
                }
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
            for (acc, dw) in invalid.iter_mut().zip(&w.domains) {
                *acc += dw.invalid_samples;
            }
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
        windows,
        first_mark,
        last_mark,
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
    let k = outputs.len().max(1);
    let opaque = outputs.iter().all(|i| matches!(i, Output::Opaque { .. }));
    let PhaseSums {
        pre_uj,
        dec_uj,
        pre_s,
        dec_s,
        invalid,
        windows,
        first_mark,
        last_mark,
    } = phase_sums(rec, round, outputs, &mut warnings);
    let to_j = |v: &[f64]| {
        v.iter()
            .map(|u| (u.is_finite()).then_some(u / 1e6))
            .collect::<Vec<_>>()
    };
    let (pre_j, dec_j) = (to_j(&pre_uj), to_j(&dec_uj));
    let (tp, td) = (totals(&rec.domains, &pre_j), totals(&rec.domains, &dec_j));
    let phase = |t: &Totals| t.cpu_plus_gpu().map(|j| j.0);
    let (Some(prefill_total), Some(decode_total)) = (phase(&tp), phase(&td)) else {
        let lost: Vec<String> = rec
            .domains
            .iter()
            .zip(pre_j.iter().zip(&dec_j))
            .filter(|(_, (p, q))| p.is_none() || q.is_none())
            .map(|(d, _)| format!("{}/{} ({})", d.source, d.name, d.location))
            .collect();
        warnings.push(format!(
            "energy could not be measured for this repetition: no valid reads of {} (a total \
             that needs a domain it cannot read is unknown, not smaller)",
            if lost.is_empty() {
                "any domain".to_string()
            } else {
                lost.join(", ")
            }
        ));
        return warnings;
    };
    if prefill_total + decode_total <= 0.0 || !(prefill_total + decode_total).is_finite() {
        warnings.push(
            "the energy counters did not advance during this repetition: no energy figure is \
             reported (a stuck or idle sensor is not a measurement of zero)"
                .into(),
        );
        return warnings;
    }
    let kf = k as f64;
    let request_j = (prefill_total + decode_total) / kf;
    let counted = |d: &DomainInfo| match d.kind.total_group() {
        TotalGroup::Cpu => match tp.cpu_provenance {
            Some(Provenance::Estimated) => d.kind == DomainKind::CpuEstimate,
            _ => d.kind != DomainKind::CpuEstimate,
        },
        TotalGroup::Gpu => true,
        TotalGroup::None => {
            (d.kind == DomainKind::Core
                && tp.cpu_basis.as_deref().is_some_and(|b| b.contains("core")))
                || (d.kind == DomainKind::Psys && tp.cpu_is_platform)
        }
    };
    let provenance = if rec
        .domains
        .iter()
        .any(|d| counted(d) && d.provenance == Provenance::Estimated)
    {
        Provenance::Estimated
    } else {
        Provenance::Measured
    };
    let scope = match (tp.cpu_j.is_some(), tp.gpu_j.is_some(), tp.cpu_is_platform) {
        (true, true, false) => EnergyScope::CpuGpu,
        (true, false, false) => EnergyScope::Cpu,
        (true, true, true) => EnergyScope::PlatformGpu,
        (true, false, true) => EnergyScope::Platform,
        _ => EnergyScope::Gpu,
    };
    let busy_s = pre_s + dec_s;
    let avg_power_w = if busy_s > 0.0 {
        (prefill_total + decode_total) / busy_s
    } else {
        0.0
    };
    let peak_power_w = match (first_mark, last_mark) {
        (Some(a), Some(z)) if z > a => {
            let w = rec.window(a, z);
            rec.domains
                .iter()
                .zip(&w.domains)
                .filter(|(d, _)| counted(d))
                .map(|(_, dw)| dw.peak_power_w)
                .filter(|p| p.is_finite())
                .sum::<f64>()
                .max(avg_power_w)
        }
        _ => avg_power_w,
    };
    let mut unc = 0.0;
    let mut bases = Vec::new();
    for (i, (d, (p, q))) in rec.domains.iter().zip(pre_j.iter().zip(&dec_j)).enumerate() {
        if !counted(d) {
            continue;
        }
        let e = p.unwrap_or(0.0) + q.unwrap_or(0.0);
        let avg_w = if busy_s > 0.0 { e / busy_s } else { 0.0 };
        let (u, basis) = uncertainty(d, e, avg_w, rec.interval_ms);
        let per_window = !matches!(d.method, Method::Estimate);
        unc += if per_window { u * windows as f64 } else { u } / kf;
        if !bases.contains(&basis) {
            bases.push(basis);
        }
        // A bridged read (a failed read, or a counter reset bridged at the last power) leaves
        // one sampling interval's energy estimated: count all of it as uncertain.
        if invalid[i] > 0 && per_window {
            unc += invalid[i] as f64 * avg_w * rec.interval_ms / 1e3 / kf;
            let b = "bridged reads: one sampling interval each at average power".to_string();
            if !bases.contains(&b) {
                bases.push(b);
            }
        }
    }
    let invalid: u64 = invalid.iter().sum();
    let idle_w = idle.and_then(|i| i.total_w).map(Watts);
    let net = |gross: f64, secs: f64| -> Option<f64> {
        let n = Joules(gross) - idle_w? * Seconds(secs);
        Some(n.0.max(0.0))
    };
    if let Some(w) = idle_w
        && Joules(prefill_total + decode_total) < w * Seconds(busy_s)
    {
        warnings.push(format!(
            "{round}: energy below idle power x duration ({:.4} J < {:.4} J): net figures clamped to 0",
            prefill_total + decode_total,
            (w * Seconds(busy_s)).0
        ));
    }
    let prefill_net = net(prefill_total, pre_s).map(|v| v / kf);
    let decode_net = net(decode_total, dec_s).map(|v| v / kf);
    // Per-request means over this repetition's own requests: a request's energy over its
    // tokens is the repetition's energy over all of its tokens.
    let out_tokens = mean_tokens(outputs, Output::generated_tokens);
    let in_tokens = mean_tokens(outputs, Output::prompt_tokens);
    let per_token_base = if out_tokens > 0.0 {
        out_tokens
    } else {
        in_tokens
    };
    let methods: Vec<String> = {
        let mut m: Vec<String> = rec
            .domains
            .iter()
            .filter(|d| counted(d))
            .map(|d| format!("{}: {}", d.source, d.method.as_str()))
            .collect();
        m.dedup();
        m
    };
    let phase_or_none = |v: f64| (!opaque).then_some(v);
    let fig = EnergyFigures {
        provenance,
        scope,
        methods,
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
        peak_power_w,
        uncertainty_j: unc,
        uncertainty_basis: bases.join("; "),
        invalid_samples: invalid,
        domains: rec
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| DomainEnergy {
                source: d.source.to_string(),
                name: d.name.clone(),
                prefill_j: pre_j[i].filter(|_| !opaque).map(|v| v / kf),
                decode_j: dec_j[i].filter(|_| !opaque).map(|v| v / kf),
                total_j: pre_j[i].zip(dec_j[i]).map(|(a, b)| (a + b) / kf),
            })
            .collect(),
    };
    if invalid > 0 {
        warnings.push(format!(
            "{invalid} invalid meter read(s) bridged from neighbouring samples"
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
