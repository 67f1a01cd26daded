//! The serving table: per served cell, the offered and achieved load, latency percentiles, the
//! server's own telemetry and whether the cell is stable (medians over its repetitions).

use super::markdown::Table;
use super::summary::SummaryDoc;
use crate::engine::load_curve::LoadPoint;
use crate::record::{Quantiles, Record, Status};
use crate::stats::median;

/// The median over `rs` of what `f` reads (None when no repetition has it).
fn med<'a>(rs: &[&'a Record], f: impl Fn(&'a Record) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = rs
        .iter()
        .filter_map(|r| f(r))
        .filter(|x| x.is_finite())
        .collect();
    (!v.is_empty()).then(|| median(&v))
}

fn show(x: Option<f64>, decimals: usize) -> String {
    x.map_or("–".into(), |v| format!("{v:.decimals$}"))
}

/// `p50 / p99` of one latency figure in milliseconds, medians over repetitions.
fn pair(rs: &[&Record], q: fn(&Record) -> Option<Quantiles>, hi: fn(&Quantiles) -> f64) -> String {
    let lo = med(rs, |r| q(r).map(|q| q.p50 * 1e3));
    let hi = med(rs, |r| q(r).map(|q| hi(&q) * 1e3));
    match (lo, hi) {
        (None, None) => "–".into(),
        (lo, hi) => format!("{} / {}", show(lo, 1), show(hi, 1)),
    }
}

/// The table (None when no cell was served: no latency percentiles, arrivals or telemetry).
pub fn serving_table(doc: &SummaryDoc, records: &[Record]) -> Option<Table> {
    let mut rows = Vec::new();
    for c in &doc.cells {
        let rs: Vec<&Record> = records
            .iter()
            .filter(|r| r.cell_index == c.cell_index && r.status == Status::Ok)
            .collect();
        let served = rs.iter().any(|r| {
            r.arrival.is_some()
                || r.telemetry.is_some()
                || r.stability.is_some()
                || r.load.is_some()
        });
        if !served {
            continue;
        }
        let idle = rs.iter().any(|r| {
            r.load
                .as_ref()
                .is_some_and(|l| matches!(l.point, LoadPoint::ActiveIdle { .. }))
        });
        let offered = match rs.iter().find_map(|r| r.arrival.as_ref()) {
            Some(a) => format!(
                "{:.2}/s {}",
                a.settings.request_rate_per_s,
                a.settings.process_text()
            ),
            None if idle => "none (active idle)".into(),
            None => match c.concurrency.unwrap_or(1) {
                1 => "closed loop, 1 stream".to_string(),
                n => format!("closed loop, {n} streams"),
            },
        };
        let achieved = med(&rs, |r| {
            r.arrival
                .as_ref()
                .and_then(|a| a.achieved_requests_per_s)
                .or_else(|| {
                    let w = r.whole.as_ref()?;
                    (w.duration_s > 0.0).then(|| w.requests as f64 / w.duration_s)
                })
        });
        let late: usize = rs
            .iter()
            .filter_map(|r| r.arrival.as_ref().map(|a| a.late_requests))
            .sum();
        let tel = |f: fn(&crate::engine::external::metrics::Telemetry) -> Option<f64>| {
            med(&rs, |r| r.telemetry.as_ref().and_then(f))
        };
        let batch = med(&rs, |r| r.stability.as_ref().and_then(|s| s.achieved_batch));
        let unstable: Vec<String> = {
            let mut v: Vec<String> = rs
                .iter()
                .filter_map(|r| r.stability.as_ref())
                .filter(|s| !s.stable)
                .flat_map(|s| s.reasons.iter().cloned())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let judged = rs.iter().filter(|r| r.stability.is_some()).count();
        let bad = rs
            .iter()
            .filter(|r| r.stability.as_ref().is_some_and(|s| !s.stable))
            .count();
        let stable = if judged == 0 {
            "–".to_string()
        } else if bad == 0 {
            "yes".into()
        } else {
            format!("UNSTABLE ({bad} of {judged}): {}", unstable.join("; "))
        };
        rows.push(vec![
            c.cell.clone(),
            offered,
            show(achieved, 2),
            late.to_string(),
            pair(&rs, |r| r.latency.as_ref()?.ttft_s, |q| q.p99),
            pair(&rs, |r| r.latency.as_ref()?.tpot_s, |q| q.p90),
            pair(&rs, |r| r.latency.as_ref()?.itl_s, |q| q.p99),
            pair(&rs, |r| r.latency.as_ref()?.e2e_s, |q| q.p99),
            show(batch, 2),
            show(tel(|t| t.running_avg), 2),
            show(tel(|t| t.waiting_avg), 2),
            show(tel(|t| t.kv_cache_avg.map(|k| k * 100.0)), 1),
            stable,
        ]);
    }
    (!rows.is_empty()).then(|| Table {
        title: "Serving: load, latency percentiles, server telemetry, stability".into(),
        note: "Medians over repetitions. Latency columns are p50 / p99 in ms (TPOT: p50 / p90) \
               over the requests of a repetition (ITL: over every gap between tokens). Achieved \
               batch: requests running at once over the steady window; running, waiting and KV \
               cache: the server's own /metrics averaged over the same window. Late: requests \
               sent more than 5 ms after they were due, summed over repetitions."
            .into(),
        headers: vec![
            "cell",
            "offered",
            "achieved req/s",
            "late",
            "TTFT ms",
            "TPOT ms",
            "ITL ms",
            "E2E ms",
            "achieved batch",
            "server running",
            "server waiting",
            "KV cache %",
            "stable",
        ],
        rows,
    })
}
