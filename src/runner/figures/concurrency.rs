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
    min_steady_s: f64,
) -> Vec<String> {
    let requests = streams.requests;
    r.concurrency = Some(streams.concurrency);
    r.requests = Some(requests);
    let total_generated: usize = outputs.iter().map(Output::generated_tokens).sum();
    let open = streams.arrivals.is_some();
    let mut warnings = concurrency_figures(r, rec, round, requests, chunks, open);
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
    let window = match (open, steady_marks(rec, round)) {
        (false, Some(w)) => Some(w),
        (false, None) => None,
        (true, _) => whole_marks(rec, round, requests),
    };
    if let (Some((url, samples)), Some((a, z))) = (&streams.telemetry, window) {
        r.telemetry = crate::engine::external::metrics::summarize(url, samples, a, z);
    }
    let st = stability(r, rec, round, requests, &streams, window, min_steady_s);
    if !st.stable {
        warnings.push(format!("UNSTABLE: {}", st.reasons.join("; ")));
    }
    r.stability = Some(st);
    warnings
}

/// The steady window's start and end times (ns).
fn steady_marks(rec: &Recording, round: Round) -> Option<(u64, u64)> {
    let s = rec.mark_index(Mark::round(round, Phase::SteadyStart))?;
    let z = rec.mark_index(Mark::round(round, Phase::SteadyEnd))?;
    let (a, b) = (rec.marks[s].t_ns, rec.marks[z].t_ns);
    (b > a).then_some((a, b))
}

/// Each request's (start, end) times (ns), for those with both marks.
fn request_spans(rec: &Recording, round: Round, requests: usize) -> Vec<(u64, u64)> {
    (0..requests)
        .filter_map(|i| {
            let s = rec.mark_index(Mark::request(round, i, Phase::Start))?;
            let e = rec.mark_index(Mark::request(round, i, Phase::End))?;
            Some((rec.marks[s].t_ns, rec.marks[e].t_ns))
        })
        .collect()
}

/// First request sent to last response ended (ns).
fn whole_marks(rec: &Recording, round: Round, requests: usize) -> Option<(u64, u64)> {
    let spans = request_spans(rec, round, requests);
    let a = spans.iter().map(|s| s.0).min()?;
    let z = spans.iter().map(|s| s.1).max()?;
    (z > a).then_some((a, z))
}

/// The fraction of an achieved batch below which a repetition is unstable (ML.ENERGY's).
pub const MIN_BATCH_FRACTION: f64 = 0.85;

/// The stability checks of a served repetition over its window.
fn stability(
    r: &Record,
    rec: &Recording,
    round: Round,
    requests: usize,
    streams: &Streams,
    window: Option<(u64, u64)>,
    min_steady_s: f64,
) -> crate::record::Stability {
    let mut reasons = Vec::new();
    let open = streams.arrivals.is_some();
    let target = (!open).then_some(streams.concurrency);
    let (mut achieved, mut source) = (None, None);
    match window {
        None if !open => {
            reasons.push("no steady window (every stream was never running at once)".into())
        }
        None => reasons.push("no complete request to measure".into()),
        Some((a, z)) => {
            let secs = (z - a) as f64 / 1e9;
            if !open && secs < min_steady_s {
                reasons.push(format!(
                    "steady window {secs:.3} s is shorter than min_steady_s = {min_steady_s} s \
                     (give the workload more requests or longer outputs)"
                ));
            }
            if let Some(run) = r.telemetry.as_ref().and_then(|t| t.running_avg) {
                achieved = Some(run);
                source = Some("server telemetry".to_string());
            } else {
                let busy: u64 = request_spans(rec, round, requests)
                    .iter()
                    .map(|&(s, e)| e.min(z).saturating_sub(s.max(a)))
                    .sum();
                achieved = Some(busy as f64 / (z - a) as f64);
                source = Some("requests in flight".to_string());
            }
        }
    }
    if let (Some(t), Some(b)) = (target, achieved)
        && b < MIN_BATCH_FRACTION * t as f64
    {
        reasons.push(format!(
            "achieved batch {b:.2} ({}) is below {MIN_BATCH_FRACTION} of the target {t}",
            source.as_deref().unwrap_or("")
        ));
    }
    match r.energy_per_token_joules {
        Some(j) if j > 0.0 => {}
        Some(j) => reasons.push(format!("J/token {j} is not positive")),
        None if r.energy.is_some() => reasons.push("no J/token".into()),
        None => {}
    }
    crate::record::Stability {
        stable: reasons.is_empty(),
        reasons,
        achieved_batch: achieved,
        achieved_batch_source: source,
        target_batch: target,
    }
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
