//! The `measure` result (versioned JSON contract) and how it is built from a recording.

use crate::meter::recording::{Recording, Window};
use crate::meter::totals::{Span, Totals, UncertaintyParts, totals, totals_with, uncertainty};
use crate::meter::{DomainInfo, DomainKind, Method, Provenance, SourceKind, Unavailable};
use crate::stats::{Summary, median, summarize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the `measure --json` schema; bump when a field's meaning changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything `measure` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasureResult {
    pub schema_version: u32,
    pub tool: String,
    pub tool_version: String,
    pub command: Vec<String>,
    /// Exit code of the last run of the command; null if a signal ended it.
    pub exit_code: Option<i32>,
    /// Signal that ended the last run, if any.
    pub signal: Option<i32>,
    /// The session was interrupted (Ctrl-C); what was measured before is kept.
    pub interrupted: bool,
    /// Median run duration in seconds.
    pub duration_s: f64,
    /// Number of measured runs completed.
    pub runs: usize,
    pub warmup: usize,
    /// How top-level figures combine runs.
    pub aggregate: String,
    pub domains: Vec<DomainResult>,
    pub totals: Totals,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleResult>,
    pub per_run: Vec<RunResult>,
    /// Per figure across runs (`duration_s`, `cpu_j`, `gpu_j`, `<source>/<domain>/energy_j`, …).
    pub statistics: BTreeMap<String, Summary>,
    pub meter: MeterInfo,
    /// The machine the figures were measured on.
    pub machine: crate::fingerprint::Machine,
    pub warnings: Vec<String>,
}

/// One domain, aggregated over runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainResult {
    pub source: SourceKind,
    pub name: String,
    pub kind: DomainKind,
    /// Median over runs; null when it could not be measured (never zero for that).
    pub energy_j: Option<f64>,
    pub avg_power_w: Option<f64>,
    /// Highest over runs, taken over windows of `peak_window_ms`.
    pub peak_power_w: Option<f64>,
    pub peak_window_ms: f64,
    /// Energy minus idle power × duration (median over runs), when idle was measured.
    pub net_energy_j: Option<f64>,
    pub provenance: Provenance,
    pub method: Method,
    pub interval_ms: f64,
    pub counter_range_j: Option<f64>,
    /// Instrument uncertainty of `energy_j` (one side), and what it accounts for.
    pub uncertainty_j: Option<f64>,
    pub uncertainty_basis: String,
    /// What `uncertainty_j` is made of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_parts: Option<UncertaintyParts>,
    pub invalid_samples: u64,
    pub bridged: bool,
    pub location: String,
    pub note: Option<String>,
}

/// One domain in one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainRun {
    pub source: SourceKind,
    pub name: String,
    pub energy_j: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub peak_power_w: Option<f64>,
    pub net_energy_j: Option<f64>,
    pub invalid_samples: u64,
    pub bridged: bool,
    /// Energy wraps hidden in long gaps between reads could add (J).
    #[serde(default)]
    pub lost_wrap_j: f64,
}

/// One measured run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub index: usize,
    pub duration_s: f64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub domains: Vec<DomainRun>,
    pub totals: Totals,
}

/// The idle baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleResult {
    pub duration_s: f64,
    pub domains: Vec<IdleDomain>,
    pub cpu_w: Option<f64>,
    pub gpu_w: Option<f64>,
}

/// Idle power of one domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleDomain {
    pub source: SourceKind,
    pub name: String,
    pub power_w: Option<f64>,
}

/// How the metering ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeterInfo {
    pub interval_ms: f64,
    pub samples: usize,
    pub sampler_reads: u64,
    pub decimation: u64,
    /// Sampler thread CPU time / session wall time.
    pub sampler_cpu_fraction: f64,
    pub sources: BTreeMap<String, serde_json::Value>,
    pub unavailable: Vec<Unavailable>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Warnings for domains whose counter updates too slowly for windows this short.
pub fn short_window_warnings(domains: &[DomainInfo], window_s: f64) -> Vec<String> {
    domains
        .iter()
        .filter(|d| d.method != Method::Estimate && window_s * 1e3 < 5.0 * d.nominal_update_ms)
        .map(|d| {
            format!(
                "{}/{}: the window ({:.1} ms) is shorter than five updates of its counter (~{} ms \
                 each): edge effects dominate; lengthen the work or repeat it inside one run",
                d.source,
                d.name,
                window_s * 1e3,
                d.nominal_update_ms
            )
        })
        .collect()
}

/// Idle power per domain from the idle window.
pub fn idle_result(rec: &Recording, w: &Window) -> IdleResult {
    let dur = w.duration_s();
    let watts: Vec<Option<f64>> = w.domains.iter().map(|d| finite(d.avg_power_w)).collect();
    let energy: Vec<Option<f64>> = watts.clone();
    let t = totals(&rec.domains, &energy);
    IdleResult {
        duration_s: dur,
        domains: rec
            .domains
            .iter()
            .zip(&watts)
            .map(|(d, w)| IdleDomain {
                source: d.source,
                name: d.name.clone(),
                power_w: *w,
            })
            .collect(),
        cpu_w: t.cpu_j,
        gpu_w: t.gpu_j,
    }
}

/// Gross minus idle, clamped at zero; a negative value adds a warning.
fn net(
    gross: Option<f64>,
    idle_w: Option<f64>,
    dur: f64,
    what: &str,
    warn: &mut Vec<String>,
) -> Option<f64> {
    let n = gross? - idle_w? * dur;
    if n < 0.0 {
        warn.push(format!(
            "{what}: net energy was negative ({n:.4} J): idle power above this window's average; \
             clamped to 0"
        ));
        return Some(0.0);
    }
    Some(n)
}

/// Builds one run's result from its window.
pub fn run_result(
    rec: &Recording,
    w: &Window,
    index: usize,
    status: (Option<i32>, Option<i32>),
    idle: Option<&IdleResult>,
    allow_partial: bool,
    warnings: &mut Vec<String>,
) -> RunResult {
    let dur = w.duration_s();
    let mut domains = Vec::new();
    for line in rec.lost_lines(w) {
        warnings.push(format!(
            "run {index}: {line}; figures that need it are unknown"
        ));
    }
    for (i, (d, dw)) in rec.domains.iter().zip(&w.domains).enumerate() {
        let energy = finite(dw.energy_uj / 1e6);
        let idle_w = idle.and_then(|x| x.domains.get(i).and_then(|d| d.power_w));
        let net_e = net(
            energy,
            idle_w,
            dur,
            &format!("run {index}: {}/{}", d.source, d.name),
            warnings,
        );
        domains.push(DomainRun {
            source: d.source,
            name: d.name.clone(),
            energy_j: energy,
            avg_power_w: energy.and(finite(dw.avg_power_w)),
            peak_power_w: energy.and(finite(dw.peak_power_w)),
            net_energy_j: net_e,
            invalid_samples: dw.invalid_samples,
            bridged: dw.bridged,
            lost_wrap_j: dw.lost_wrap_uj / 1e6,
        });
        if dw.lost_wrap_uj > 0.0 {
            warnings.push(format!(
                "run {index}: {}/{}: a gap between reads was longer than a counter wrap at the \
                 zone's maximum power: up to {:.3} J could be missing (counted as uncertainty)",
                d.source,
                d.name,
                dw.lost_wrap_uj / 1e6
            ));
        }
    }
    let energies: Vec<Option<f64>> = domains.iter().map(|d| d.energy_j).collect();
    let mut t = totals_with(&rec.domains, &energies, allow_partial);
    if !t.silent.is_empty() {
        warnings.push(crate::meter::totals::silent_warning(
            &t.silent,
            &format!("run {index}"),
        ));
    }
    let unread: Vec<&str> = t
        .partial_missing
        .iter()
        .filter(|m| !t.silent.contains(m))
        .map(String::as_str)
        .collect();
    if !unread.is_empty() {
        warnings.push(format!(
            "run {index}: PARTIAL totals (allowed): they leave out {} and are lower bounds",
            unread.join(", ")
        ));
    }
    if let Some(idle) = idle {
        t.cpu_net_j = net(
            t.cpu_j,
            idle.cpu_w,
            dur,
            &format!("run {index}: CPU total"),
            warnings,
        );
        t.gpu_net_j = net(
            t.gpu_j,
            idle.gpu_w,
            dur,
            &format!("run {index}: GPU total"),
            warnings,
        );
    }
    RunResult {
        index,
        duration_s: dur,
        exit_code: status.0,
        signal: status.1,
        domains,
        totals: t,
    }
}

fn med(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let xs: Vec<f64> = v.flatten().collect();
    (!xs.is_empty()).then(|| median(&xs))
}

/// Aggregates runs into per-domain results, totals and statistics.
pub fn aggregate(
    rec: &Recording,
    runs: &[RunResult],
) -> (Vec<DomainResult>, Totals, BTreeMap<String, Summary>) {
    let mut domains = Vec::new();
    let mut stats = BTreeMap::new();
    let mut put = |key: String, vals: Vec<Option<f64>>| {
        let v: Vec<f64> = vals.into_iter().flatten().collect();
        if let Some(s) = summarize(&v) {
            stats.insert(key, s);
        }
    };
    put(
        "duration_s".into(),
        runs.iter().map(|r| Some(r.duration_s)).collect(),
    );
    put(
        "cpu_j".into(),
        runs.iter().map(|r| r.totals.cpu_j).collect(),
    );
    put(
        "cpu_net_j".into(),
        runs.iter().map(|r| r.totals.cpu_net_j).collect(),
    );
    put(
        "gpu_j".into(),
        runs.iter().map(|r| r.totals.gpu_j).collect(),
    );
    put(
        "gpu_net_j".into(),
        runs.iter().map(|r| r.totals.gpu_net_j).collect(),
    );
    put(
        "psys_j".into(),
        runs.iter().map(|r| r.totals.psys_j).collect(),
    );
    for (i, d) in rec.domains.iter().enumerate() {
        let col = |f: &dyn Fn(&DomainRun) -> Option<f64>| {
            runs.iter().map(|r| f(&r.domains[i])).collect::<Vec<_>>()
        };
        let key = format!("{}/{}", d.source, d.name);
        put(format!("{key}/energy_j"), col(&|x| x.energy_j));
        put(format!("{key}/avg_power_w"), col(&|x| x.avg_power_w));
        let energy = med(col(&|x| x.energy_j).into_iter());
        let avg = med(col(&|x| x.avg_power_w).into_iter());
        let peak = col(&|x| x.peak_power_w)
            .into_iter()
            .flatten()
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let worst = |f: &dyn Fn(&DomainRun) -> f64| {
            runs.iter().map(|r| f(&r.domains[i])).fold(0.0, f64::max)
        };
        let (parts, basis) = match (energy, avg) {
            (Some(e), Some(a)) => {
                let span = Span {
                    energy_j: e,
                    avg_w: a,
                    windows: 1,
                    bridged_reads: worst(&|x| x.invalid_samples as f64) as u64,
                    lost_wrap_j: worst(&|x| x.lost_wrap_j),
                };
                let (u, b) = uncertainty(d, span, rec.interval_ms);
                (Some(u), b.join("; "))
            }
            _ => (None, "not measured".into()),
        };
        domains.push(DomainResult {
            source: d.source,
            name: d.name.clone(),
            kind: d.kind,
            energy_j: energy,
            avg_power_w: avg,
            peak_power_w: peak,
            peak_window_ms: rec.interval_ms.max(2.0 * d.nominal_update_ms),
            net_energy_j: med(col(&|x| x.net_energy_j).into_iter()),
            provenance: d.provenance,
            method: d.method,
            interval_ms: rec.interval_ms,
            counter_range_j: d.counter_range_uj.map(|r| r as f64 / 1e6),
            uncertainty_j: parts.as_ref().map(UncertaintyParts::total),
            uncertainty_basis: basis,
            uncertainty_parts: parts,
            invalid_samples: runs.iter().map(|r| r.domains[i].invalid_samples).sum(),
            bridged: runs.iter().any(|r| r.domains[i].bridged),
            location: d.location.clone(),
            note: d.note.clone(),
        });
    }
    let pick = |f: &dyn Fn(&Totals) -> Option<f64>| med(runs.iter().map(|r| f(&r.totals)));
    let first = runs.first().map(|r| r.totals.clone()).unwrap_or_default();
    let t = Totals {
        cpu_j: pick(&|t| t.cpu_j),
        cpu_basis: first.cpu_basis,
        cpu_provenance: first.cpu_provenance,
        cpu_net_j: pick(&|t| t.cpu_net_j),
        gpu_j: pick(&|t| t.gpu_j),
        gpu_net_j: pick(&|t| t.gpu_net_j),
        psys_j: pick(&|t| t.psys_j),
        cpu_is_platform: first.cpu_is_platform,
        partial_missing: {
            let mut m: Vec<String> = runs
                .iter()
                .flat_map(|r| r.totals.partial_missing.clone())
                .collect();
            m.sort();
            m.dedup();
            m
        },
        silent: {
            let mut m: Vec<String> = runs.iter().flat_map(|r| r.totals.silent.clone()).collect();
            m.sort();
            m.dedup();
            m
        },
    };
    (domains, t, stats)
}
