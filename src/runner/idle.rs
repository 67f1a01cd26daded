//! The idle baseline: power with nothing loaded, measured before the first cell.

use crate::config::Suite;
use crate::measure::result::idle_result;
use crate::meter::mark::{Mark, Phase, Round};
use crate::meter::sampler::Sampler;
use crate::meter::select::{EstimateScope, Hardware, select};
use crate::meter::totals::totals;
use crate::run_dir::{IDLE, RUN_SCHEMA_VERSION, write_json};
use crate::run_meta::{IdleBaseline, IdleDomainW};
use anyhow::Result;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Measures idle power with nothing loaded and writes idle.json. Returns warnings for the user
/// (a zone that does not count, told once before any cell runs).
pub fn idle_baseline(
    dir: &Path,
    suite: &Suite,
    hw: &Hardware,
    interrupt: &AtomicBool,
) -> Result<Vec<String>> {
    let sel = select(&suite.meter, hw, suite.tdp_w, EstimateScope::Process)
        .map_err(|e| anyhow::anyhow!(e))?;
    let (sampler, _) = Sampler::start_safe(
        sel.sources,
        Duration::from_secs_f64(suite.interval_ms / 1e3),
    );
    sampler.mark(Mark::round(Round::Idle, Phase::Start));
    let whole = crate::clock::sleep_unless(Duration::from_secs_f64(suite.idle_seconds), interrupt);
    sampler.mark(Mark::round(Round::Idle, Phase::End));
    let rec = sampler.stop();
    if !whole {
        // A cut-short baseline is not kept: a resumed run measures it again.
        return Ok(Vec::new());
    }
    let w = rec.window(0, 1);
    let idle = idle_result(&rec, &w);
    let watts: Vec<Option<f64>> = idle.domains.iter().map(|d| d.power_w).collect();
    // Summed like energies: the domains' watts add up the same way their joules do.
    let t = totals(&rec.domains, &watts);
    // Watts of 0 beside a package's are a zone that never counted, as joules would be.
    let silent = t.silent.clone();
    let mut warnings = Vec::new();
    if !silent.is_empty() {
        warnings.push(crate::meter::totals::silent_warning(
            &silent,
            "idle baseline",
        ));
    }
    let base = IdleBaseline {
        schema_version: RUN_SCHEMA_VERSION,
        duration_s: idle.duration_s,
        total_w: t.cpu_plus_gpu().map(|j| j.0),
        cpu_w: t.cpu_j,
        gpu_w: t.gpu_j,
        domains: idle
            .domains
            .iter()
            .map(|d| IdleDomainW {
                source: d.source.to_string(),
                name: d.name.clone(),
                power_w: d.power_w,
            })
            .collect(),
        provenance: t
            .cpu_provenance
            .unwrap_or(crate::meter::Provenance::Measured),
    };
    write_json(&dir.join(IDLE), &base)?;
    Ok(warnings)
}
