//! Turns one repetition (its inner generations and the meters' marks) into a record's figures:
//! energy per phase from counter reads at the boundaries, never from subtracting runs.

use crate::config::Suite;
use crate::engine::{EmbedOutput, GenerateOutput};
use crate::measure::result::{totals, uncertainty};
use crate::meter::recording::Recording;
use crate::meter::{DomainKind, Method, Provenance, TotalGroup};
use crate::record::{DomainEnergy, EnergyFigures, Record};
use crate::run_dir::IdleBaseline;
use crate::stats::quantile;

/// One generation (or embedding) inside a repetition's window.
pub enum Inner {
    Generate(GenerateOutput),
    Embed(EmbedOutput),
    /// A run whose inside joulebench cannot see (a command): energy and duration only.
    Opaque {
        start_ns: u64,
        end_ns: u64,
        tokens: Option<usize>,
    },
}

impl Inner {
    /// Request start to last token (or to the embedding), seconds.
    pub fn e2e_s(&self) -> f64 {
        match self {
            Inner::Generate(o) => {
                (o.token_ns.last().copied().unwrap_or(o.end_ns) - o.start_ns) as f64 / 1e9
            }
            Inner::Embed(o) => (o.end_ns - o.start_ns) as f64 / 1e9,
            Inner::Opaque {
                start_ns, end_ns, ..
            } => (end_ns - start_ns) as f64 / 1e9,
        }
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Fills latency and energy figures of `r` from repetition `prefix`; returns warnings.
pub fn fill(
    r: &mut Record,
    rec: &Recording,
    prefix: &str,
    inner: &[Inner],
    idle: Option<&IdleBaseline>,
    suite: &Suite,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let k = inner.len().max(1);
    r.inner_iterations = k;
    // Latency, from the engine's own timestamps.
    let (mut ttft, mut e2e, mut tpot, mut itl, mut pre_tps, mut dec_tps) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in inner {
        e2e.push(i.e2e_s());
        match i {
            Inner::Generate(o) => {
                let t = (o.first_token_ns - o.start_ns) as f64 / 1e9;
                ttft.push(t);
                pre_tps.push(o.prompt_tokens as f64 / t);
                let decode_s = i.e2e_s() - t;
                if o.steps > 1 {
                    tpot.push(decode_s / (o.steps - 1) as f64);
                    let later: usize = o.generated.iter().map(|g| g.len().saturating_sub(1)).sum();
                    dec_tps.push(later as f64 / decode_s);
                }
                itl.extend(o.token_ns.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9));
                r.prompt_tokens = o.prompt_tokens;
                r.generated_tokens = o.generated_tokens();
            }
            Inner::Embed(o) => {
                pre_tps.push(o.input_tokens as f64 / i.e2e_s());
                r.prompt_tokens = o.input_tokens;
            }
            Inner::Opaque { tokens, .. } => {
                r.generated_tokens = tokens.unwrap_or(0);
            }
        }
    }
    let opaque = inner.iter().all(|i| matches!(i, Inner::Opaque { .. }));
    r.ttft_s = mean(&ttft);
    r.e2e_s = mean(&e2e);
    r.tpot_s = mean(&tpot);
    r.prefill_tokens_per_s = mean(&pre_tps);
    r.decode_tokens_per_s = mean(&dec_tps);
    r.itls_ms = itl.iter().map(|s| (s * 1e3) as f32).collect();
    if !itl.is_empty() {
        r.itl_p50_s = Some(quantile(&itl, 0.5));
        r.itl_p90_s = Some(quantile(&itl, 0.9));
        r.itl_p99_s = Some(quantile(&itl, 0.99));
    }

    // Energy: each domain over the inner iterations' phase windows. Requests that overlap
    // (concurrent streams) share each stretch between two marks equally, each in its own phase.
    let n = rec.domains.len();
    let (mut pre_uj, mut dec_uj) = (vec![0f64; n], vec![0f64; n]);
    let (mut pre_s, mut dec_s, mut invalid, mut windows) = (0f64, 0f64, 0u64, 0usize);
    let mut spans: Vec<(usize, Option<usize>, usize)> = Vec::new();
    for (i, item) in inner.iter().enumerate() {
        let idx = |tag: &str| rec.mark_index(&format!("{prefix}.{i}:{tag}"));
        let (Some(a), Some(z)) = (idx("start"), idx("end")) else {
            warnings.push(format!("{prefix}.{i}: missing boundary marks"));
            continue;
        };
        let split = match item {
            Inner::Generate(_) => idx("first"),
            Inner::Embed(_) | Inner::Opaque { .. } => None,
        };
        spans.push((a, split, z));
    }
    let t = |m: usize| rec.marks[m].t_ns;
    let mut by_start = spans.clone();
    by_start.sort_by_key(|s| t(s.0));
    let overlapping = by_start.windows(2).any(|w| t(w[1].0) < t(w[0].2));
    let first_mark = by_start.first().map(|s| s.0);
    let last_mark = spans.iter().map(|s| s.2).max_by_key(|&z| t(z));
    let mut add = |w: &crate::meter::recording::Window, share: f64, is_prefill: bool| {
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
                invalid += w.domains.iter().map(|d| d.invalid_samples).sum::<u64>();
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
            invalid += w.domains.iter().map(|d| d.invalid_samples).sum::<u64>();
            let share = 1.0 / active.len() as f64;
            for s in active {
                add(&w, share, s.1.is_none_or(|f| t(y) <= t(f)));
            }
        }
    }
    let to_j = |v: &[f64]| {
        v.iter()
            .map(|u| (u.is_finite()).then_some(u / 1e6))
            .collect::<Vec<_>>()
    };
    let (pre_j, dec_j) = (to_j(&pre_uj), to_j(&dec_uj));
    let (tp, td) = (totals(&rec.domains, &pre_j), totals(&rec.domains, &dec_j));
    let phase = |t: &crate::measure::result::Totals| match (t.cpu_j, t.gpu_j) {
        (None, None) => None,
        (c, g) => Some(c.unwrap_or(0.0) + g.unwrap_or(0.0)),
    };
    let (Some(prefill_total), Some(decode_total)) = (phase(&tp), phase(&td)) else {
        warnings.push("energy could not be measured for this repetition (no valid reads)".into());
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
    let counted = |d: &crate::meter::DomainInfo| match d.kind.total_group() {
        TotalGroup::Cpu => match tp.cpu_provenance {
            Some(Provenance::Estimated) => d.kind == DomainKind::CpuEstimate,
            _ => d.kind != DomainKind::CpuEstimate,
        },
        TotalGroup::Gpu => true,
        TotalGroup::None => {
            d.kind == DomainKind::Core
                && tp.cpu_basis.as_deref().is_some_and(|b| b.contains("core"))
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
    let scope = match (tp.cpu_j.is_some(), tp.gpu_j.is_some()) {
        (true, true) => "cpu+gpu",
        (true, false) => "cpu",
        _ => "gpu",
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
    for (d, (p, q)) in rec.domains.iter().zip(pre_j.iter().zip(&dec_j)) {
        if !counted(d) {
            continue;
        }
        let e = p.unwrap_or(0.0) + q.unwrap_or(0.0);
        let (u, basis) = uncertainty(
            d,
            e,
            if busy_s > 0.0 { e / busy_s } else { 0.0 },
            rec.interval_ms,
        );
        let per_window = !matches!(d.method, Method::Estimate);
        unc += if per_window { u * windows as f64 } else { u } / kf;
        if !bases.contains(&basis) {
            bases.push(basis);
        }
    }
    let idle_w = idle.and_then(|i| i.total_w);
    let net = |gross: f64, secs: f64| -> Option<f64> {
        let n = gross - idle_w? * secs;
        Some(n.max(0.0))
    };
    if let Some(w) = idle_w
        && (prefill_total + decode_total) < w * busy_s
    {
        warnings.push(format!(
            "{prefix}: energy below idle power x duration ({:.4} J < {:.4} J): net figures clamped to 0",
            prefill_total + decode_total,
            w * busy_s
        ));
    }
    let prefill_net = net(prefill_total, pre_s).map(|v| v / kf);
    let decode_net = net(decode_total, dec_s).map(|v| v / kf);
    let out_tokens = r.generated_tokens as f64;
    let per_token_base = if out_tokens > 0.0 {
        out_tokens
    } else {
        r.prompt_tokens as f64
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
        scope: scope.into(),
        methods,
        interval_ms: rec.interval_ms,
        prefill_j: phase_or_none(prefill_total / kf),
        decode_j: phase_or_none(decode_total / kf),
        request_j,
        prefill_net_j: prefill_net.filter(|_| !opaque),
        decode_net_j: decode_net.filter(|_| !opaque),
        request_net_j: prefill_net.zip(decode_net).map(|(a, b)| a + b),
        j_per_prefill_token: phase_or_none(prefill_total / kf / r.prompt_tokens.max(1) as f64),
        j_per_decode_token: (out_tokens > 0.0 && !opaque).then(|| decode_total / kf / out_tokens),
        j_per_request: request_j / r.batch.max(1) as f64,
        tokens_per_j: (per_token_base > 0.0).then(|| per_token_base / request_j),
        wh_per_1000_queries: request_j / r.batch.max(1) as f64 * 1000.0 / 3600.0,
        j_per_prefill_token_net: prefill_net
            .filter(|_| !opaque)
            .map(|p| p / r.prompt_tokens.max(1) as f64),
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

/// CPU + GPU joules between marks `a` and `b` (what records total), if measurable.
pub fn window_total_j(rec: &Recording, a: usize, b: usize) -> Option<f64> {
    let w = rec.window(a, b);
    let per: Vec<Option<f64>> = w
        .domains
        .iter()
        .map(|d| d.energy_uj.is_finite().then_some(d.energy_uj / 1e6))
        .collect();
    let t = totals(&rec.domains, &per);
    match (t.cpu_j, t.gpu_j) {
        (None, None) => None,
        (c, g) => Some(c.unwrap_or(0.0) + g.unwrap_or(0.0)),
    }
}

/// Figures of a concurrent repetition: the steady state (marks `{prefix}:steady-start` and
/// `{prefix}:steady-end`) and the whole repetition (first request start to last end).
/// `tokens` holds (arrival time, tokens) of every content chunk of every request.
pub fn concurrency_figures(
    r: &mut Record,
    rec: &Recording,
    prefix: &str,
    requests: usize,
    tokens: &[(u64, f64)],
) -> Vec<String> {
    let mut warnings = Vec::new();
    let starts: Vec<usize> = (0..requests)
        .filter_map(|i| rec.mark_index(&format!("{prefix}.{i}:start")))
        .collect();
    let ends: Vec<usize> = (0..requests)
        .filter_map(|i| rec.mark_index(&format!("{prefix}.{i}:end")))
        .collect();
    let t = |m: usize| rec.marks[m].t_ns;
    let generated = r.generated_tokens * requests;
    if let (Some(&a), Some(&z)) = (
        starts.iter().min_by_key(|&&m| t(m)),
        ends.iter().max_by_key(|&&m| t(m)),
    ) && let Some(e) = window_total_j(rec, a, z)
    {
        r.whole = Some(crate::record::WholeRun {
            duration_s: (t(z) - t(a)) as f64 / 1e9,
            energy_j: e,
            requests,
            generated_tokens: generated,
            j_per_generated_token: (generated > 0).then(|| e / generated as f64),
        });
    }
    let (Some(s), Some(z)) = (
        rec.mark_index(&format!("{prefix}:steady-start")),
        rec.mark_index(&format!("{prefix}:steady-end")),
    ) else {
        warnings.push(
            "no steady state: the first stream finished before the last one produced its first \
             token (give the workload more requests or longer outputs)"
                .into(),
        );
        return warnings;
    };
    if t(z) <= t(s) {
        warnings.push("no steady state: the steady window is empty".into());
        return warnings;
    }
    let secs = (t(z) - t(s)) as f64 / 1e9;
    let in_window: f64 = tokens
        .iter()
        .filter(|(tt, _)| *tt > t(s) && *tt <= t(z))
        .map(|(_, k)| k)
        .sum();
    if let Some(e) = window_total_j(rec, s, z) {
        r.steady = Some(crate::record::SteadyState {
            window_s: secs,
            energy_j: e,
            generated_tokens: in_window,
            j_per_token: (in_window > 0.0).then(|| e / in_window),
            tokens_per_s: in_window / secs,
            avg_power_w: e / secs,
        });
    }
    warnings
}
