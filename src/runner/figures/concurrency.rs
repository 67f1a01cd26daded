//! Figures of requests served over parallel streams: the steady state (every stream busy),
//! the whole repetition, and per-request token counts over all of a repetition's requests.

use crate::engine::driver::{Output, Streams};
use crate::meter::mark::{Mark, Phase, Round};
use crate::meter::recording::Recording;
use crate::meter::totals::totals;
use crate::record::{Record, SteadyState, WholeRun};

/// Applies the figures of a repetition served over `streams` to `r` (after the energy figures):
/// steady state and whole run; with overlapping streams the headline energy per token is the
/// steady state's. Returns warnings.
pub fn streams(
    r: &mut Record,
    rec: &Recording,
    round: Round,
    streams: Streams,
    outputs: &[Output],
    chunks: &[(u64, f64)],
) -> Vec<String> {
    let requests = streams.requests;
    r.concurrency = Some(streams.concurrency);
    r.requests = Some(requests);
    let total_generated: usize = outputs.iter().map(Output::generated_tokens).sum();
    let open = streams.arrivals.is_some();
    let warnings = concurrency_figures(r, rec, round, requests, chunks, open);
    if let Some(wh) = r.whole.as_mut() {
        wh.generated_tokens = total_generated;
        wh.j_per_generated_token =
            (total_generated > 0).then(|| wh.energy_j / total_generated as f64);
    }
    if let Some(a) = streams.arrivals {
        // An open loop has no steady window of a fixed batch: the whole repetition counts.
        let dur = r.whole.as_ref().map(|w| w.duration_s).filter(|d| *d > 0.0);
        r.arrival = Some(crate::record::ArrivalFigures {
            settings: a,
            achieved_requests_per_s: dur.map(|d| outputs.len() as f64 / d),
            achieved_output_tokens_per_s: dur.map(|d| total_generated as f64 / d),
            late_requests: streams.late,
        });
        r.energy_per_token_joules = r.whole.as_ref().and_then(|w| w.j_per_generated_token);
    } else if streams.concurrency > 1
        && let Some(s) = &r.steady
    {
        r.energy_per_token_joules = s.j_per_token;
    }
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
    totals(&rec.domains, &per).cpu_plus_gpu().map(|j| j.0)
}

/// Figures of a concurrent repetition: the steady state (between its steady-start and
/// steady-end marks) and the whole repetition (first request start to last end). `tokens` holds
/// (arrival time, tokens) of every content chunk of every request. An open loop (`open`) has
/// no steady window: how many requests are in flight follows the arrivals.
fn concurrency_figures(
    r: &mut Record,
    rec: &Recording,
    round: Round,
    requests: usize,
    tokens: &[(u64, f64)],
    open: bool,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let starts: Vec<usize> = (0..requests)
        .filter_map(|i| rec.mark_index(Mark::request(round, i, Phase::Start)))
        .collect();
    let ends: Vec<usize> = (0..requests)
        .filter_map(|i| rec.mark_index(Mark::request(round, i, Phase::End)))
        .collect();
    let t = |m: usize| rec.marks[m].t_ns;
    let generated = r.generated_tokens * requests;
    if let (Some(&a), Some(&z)) = (
        starts.iter().min_by_key(|&&m| t(m)),
        ends.iter().max_by_key(|&&m| t(m)),
    ) && let Some(e) = window_total_j(rec, a, z)
    {
        r.whole = Some(WholeRun {
            duration_s: (t(z) - t(a)) as f64 / 1e9,
            energy_j: e,
            requests,
            generated_tokens: generated,
            j_per_generated_token: (generated > 0).then(|| e / generated as f64),
        });
    }
    if open {
        return warnings;
    }
    let (Some(s), Some(z)) = (
        rec.mark_index(Mark::round(round, Phase::SteadyStart)),
        rec.mark_index(Mark::round(round, Phase::SteadyEnd)),
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
        r.steady = Some(SteadyState {
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
