//! `joulebench probe`: which sources and domains work, how, and how often their counters move.

use super::rapl::ZoneStatus;
use super::select::{Hardware, open_nvml, open_rapl};
use super::{DomainKind, EnergySource, Method, Provenance, SourceKind};
use crate::clock::monotonic_ns;
use serde::Serialize;
use std::time::Duration;

/// Version of the probe JSON.
pub const PROBE_SCHEMA_VERSION: u32 = 1;

/// What `probe` found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub schema_version: u32,
    pub powercap_root: String,
    pub watch_ms: u64,
    pub sources: Vec<SourceProbe>,
    pub warnings: Vec<String>,
}

/// One source's status.
#[derive(Debug, Clone, Serialize)]
pub struct SourceProbe {
    pub source: SourceKind,
    /// `available` or `unavailable`.
    pub status: String,
    pub reason: Option<String>,
    pub domains: Vec<DomainProbe>,
    pub details: serde_json::Value,
}

/// One domain's status.
#[derive(Debug, Clone, Serialize)]
pub struct DomainProbe {
    pub name: String,
    pub kind: DomainKind,
    pub status: String,
    pub reason: Option<String>,
    pub method: Option<Method>,
    pub provenance: Option<Provenance>,
    pub counter_range_j: Option<f64>,
    /// Median time between counter changes while watched; null if it never changed.
    pub update_period_ms: Option<f64>,
    pub updates_seen: u32,
    pub location: String,
    pub note: Option<String>,
}

/// Watches `src` for `watch`, returning per domain (median period between changes, changes).
fn watch(src: &mut dyn EnergySource, watch: Duration) -> Vec<(Option<f64>, u32)> {
    let n = src.domains().len();
    let mut buf = vec![None; n];
    let mut last: Vec<Option<u64>> = vec![None; n];
    let mut changes: Vec<Vec<u64>> = vec![Vec::new(); n];
    let end = monotonic_ns() + watch.as_nanos() as u64;
    loop {
        let now = monotonic_ns();
        if now >= end {
            break;
        }
        src.read_into(now, &mut buf);
        for d in 0..n {
            if let Some(v) = buf[d] {
                if last[d].is_some_and(|l| l != v) {
                    changes[d].push(now);
                }
                last[d] = Some(v);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    changes
        .iter()
        .map(|c| {
            let gaps: Vec<f64> = c.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e6).collect();
            let period = (!gaps.is_empty()).then(|| crate::stats::median(&gaps));
            (period, c.len() as u32)
        })
        .collect()
}

fn domain_probes(src: &mut dyn EnergySource, dur: Duration) -> Vec<DomainProbe> {
    let watched = watch(src, dur);
    src.domains()
        .iter()
        .zip(watched)
        .map(|(d, (period, seen))| DomainProbe {
            name: d.name.clone(),
            kind: d.kind,
            status: "available".into(),
            reason: None,
            method: Some(d.method),
            provenance: Some(d.provenance),
            counter_range_j: d.counter_range_uj.map(|r| r as f64 / 1e6),
            update_period_ms: period,
            updates_seen: seen,
            location: d.location.clone(),
            note: d.note.clone(),
        })
        .collect()
}

/// Probes every source; watches available counters for `watch_for`.
pub fn probe(hw: &Hardware, tdp_w: Option<f64>, watch_for: Duration) -> ProbeReport {
    let mut sources = Vec::new();
    let mut warnings = Vec::new();

    match open_rapl(hw) {
        Ok((mut src, zones)) => {
            let mut domains = domain_probes(&mut src, watch_for);
            for z in &zones {
                let (status, reason) = match &z.status {
                    ZoneStatus::Duplicate(r) => ("duplicate", r.clone()),
                    ZoneStatus::Unavailable(r) => ("unavailable", r.clone()),
                    ZoneStatus::Available => continue,
                };
                domains.push(DomainProbe {
                    name: z.domain.clone(),
                    kind: z.kind,
                    status: status.into(),
                    reason: Some(reason),
                    method: None,
                    provenance: None,
                    counter_range_j: z.counter_range_uj.map(|r| r as f64 / 1e6),
                    update_period_ms: None,
                    updates_seen: 0,
                    location: z.path.display().to_string(),
                    note: None,
                });
            }
            let zones_json: Vec<serde_json::Value> = zones
                .iter()
                .map(
                    |z| serde_json::json!({"zone": z.zone, "name": z.raw_name, "domain": z.domain}),
                )
                .collect();
            sources.push(SourceProbe {
                source: SourceKind::Rapl,
                status: "available".into(),
                reason: None,
                domains,
                details: serde_json::json!({ "zones": zones_json }),
            });
        }
        Err(reason) => sources.push(unavailable(SourceKind::Rapl, reason)),
    }

    match open_nvml(hw) {
        Ok(mut src) => {
            warnings.append(&mut src.warnings);
            let domains = domain_probes(&mut src, watch_for);
            sources.push(SourceProbe {
                source: SourceKind::Nvml,
                status: "available".into(),
                reason: None,
                domains,
                details: src.describe(),
            });
        }
        Err(reason) => sources.push(unavailable(SourceKind::Nvml, reason)),
    }

    let model = super::estimate::EstimateModel::for_this_machine(tdp_w);
    let mut est = super::estimate::EstimateSource::new(
        model,
        Box::new(super::estimate::ProcessCpu),
        monotonic_ns(),
    );
    let details = est.describe();
    let mut domains = domain_probes(&mut est, Duration::ZERO);
    domains[0].note = Some(
        "used only when no measured source covers the CPU; every figure is labelled ESTIMATED"
            .into(),
    );
    sources.push(SourceProbe {
        source: SourceKind::Estimate,
        status: "available".into(),
        reason: None,
        domains,
        details,
    });

    let cpu_measured = sources.iter().any(|s| {
        s.source == SourceKind::Rapl
            && s.domains.iter().any(|d| {
                d.status == "available" && matches!(d.kind, DomainKind::Package | DomainKind::Core)
            })
    });
    if !cpu_measured {
        warnings.push(
            "no measured source covers the CPU here: `measure` will fall back to the ESTIMATE \
             (refused with --strict)"
                .into(),
        );
    }
    ProbeReport {
        schema_version: PROBE_SCHEMA_VERSION,
        powercap_root: hw.powercap_root.display().to_string(),
        watch_ms: watch_for.as_millis() as u64,
        sources,
        warnings,
    }
}

fn unavailable(source: SourceKind, reason: String) -> SourceProbe {
    SourceProbe {
        source,
        status: "unavailable".into(),
        reason: Some(reason),
        domains: Vec::new(),
        details: serde_json::Value::Null,
    }
}

/// Human-readable rendering of a probe report.
pub fn render(r: &ProbeReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for src in &r.sources {
        match &src.reason {
            None => {
                let _ = writeln!(s, "{}: available", src.source);
            }
            Some(why) => {
                let _ = writeln!(s, "{}: unavailable: {why}", src.source);
            }
        }
        for d in &src.domains {
            let mut line = format!("  {:<22} {:<11}", d.name, d.status);
            if let Some(m) = d.method {
                let _ = write!(line, " {m}");
            }
            if let Some(p) = d.provenance
                && p == Provenance::Estimated
            {
                line.push_str(" [ESTIMATED]");
            }
            if let Some(range) = d.counter_range_j {
                let _ = write!(line, ", wraps at {range:.0} J");
            }
            if d.status == "available" && src.source != SourceKind::Estimate {
                match d.update_period_ms {
                    Some(p) => {
                        let _ = write!(line, ", updates every {p:.2} ms");
                    }
                    None => {
                        let _ = write!(line, ", no update seen in {} ms", r.watch_ms);
                    }
                }
            }
            let _ = writeln!(s, "{line}");
            if let Some(why) = &d.reason {
                let _ = writeln!(s, "      {why}");
            }
            if let Some(n) = &d.note {
                let _ = writeln!(s, "      {n}");
            }
        }
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}
