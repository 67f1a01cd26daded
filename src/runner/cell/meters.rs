//! A cell's meters: the suite's sources opened in the cell process (a sensor the suite started
//! with and the cell lacks is a lost sensor, never a silent change of what is measured), and
//! the boundary reads a driver asks for.

use super::CellContext;
use crate::engine::driver::{Boundary, RunEvents};
use crate::meter::mark::{Mark, Phase, Round};
use crate::meter::sampler::Sampler;
use crate::meter::select::{EstimateScope, Hardware, select};
use anyhow::{Result, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// The opened meters of a cell.
pub struct Meters {
    pub sampler: Sampler,
    pub warnings: Vec<String>,
    /// Slowest nominal update period of the measured domains (window sizing).
    pub slowest_update_ms: f64,
    /// Set the measured child's PID here (ChildTree estimates).
    pub child_tracker: Option<Arc<AtomicI32>>,
    /// A measured domain the suite started with is gone: what every record says.
    pub lost_sensor: Option<String>,
    /// ... and the suite did not ask for a fallback: records carry no energy.
    pub energy_refused: bool,
}

/// The meters, read at every boundary a driver reports during one round.
pub struct SamplerEvents<'a> {
    pub meters: &'a Meters,
    pub round: Round,
}

impl RunEvents for SamplerEvents<'_> {
    fn request(&self, index: usize, at: Boundary) {
        let phase = match at {
            Boundary::Start => Phase::Start,
            Boundary::FirstToken => Phase::First,
            Boundary::End => Phase::End,
        };
        self.meters
            .sampler
            .mark(Mark::request(self.round, index, phase));
    }

    fn steady(&self, started: bool) {
        let phase = if started {
            Phase::SteadyStart
        } else {
            Phase::SteadyEnd
        };
        self.meters.sampler.mark(Mark::round(self.round, phase));
    }

    fn child(&self, pid: Option<u32>) {
        if let Some(t) = &self.meters.child_tracker {
            t.store(pid.map_or(0, |p| p as i32), Ordering::SeqCst);
        }
    }

    fn label(&self) -> String {
        self.round.to_string()
    }
}

impl CellContext {
    /// Opens the suite's meters (estimates counting `scope`) and starts sampling.
    pub fn meters(&self, scope: EstimateScope) -> Result<Meters> {
        let suite = &self.suite;
        let root = suite
            .powercap_root
            .clone()
            .unwrap_or_else(|| crate::meter::rapl::DEFAULT_POWERCAP_ROOT.into());
        let sel = select(&suite.meter, &Hardware::real(root), suite.tdp_w, scope)
            .map_err(|e| anyhow::anyhow!(e))?;
        if suite.strict && sel.has_estimates() {
            bail!("strict: no measured source covers the CPU; refusing to report estimates");
        }
        let lost = self.lost_domains(&sel);
        let slowest_update_ms = sel
            .sources
            .iter()
            .flat_map(|s| s.domains().to_vec())
            .filter(|d| d.provenance == crate::meter::Provenance::Measured)
            .map(|d| d.nominal_update_ms)
            .fold(0.0, f64::max);
        let (sampler, clamped) = Sampler::start_safe(
            sel.sources,
            Duration::from_secs_f64(suite.interval_ms / 1e3),
        );
        let mut warnings = sel.warnings;
        warnings.extend(clamped);
        let lost_sensor = (!lost.is_empty()).then(|| {
            let why: Vec<String> = sel
                .unavailable
                .iter()
                .filter(|u| lost.iter().any(|l| l.starts_with(u.source.as_str())))
                .map(|u| u.to_string())
                .collect();
            let what = format!(
                "{} measured when this suite started, not available to this cell{}",
                lost.join(", "),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            );
            if suite.auto_fallback {
                format!(
                    "SENSOR LOST: {what}; [meter] sources = \"auto\" asked for a fallback, so \
                     this record's energy uses what is left (ESTIMATED where no sensor covers \
                     the CPU) and no idle measured with the lost sensor is subtracted"
                )
            } else {
                format!(
                    "SENSOR LOST: {what}; this cell's energy is not reported (a figure from \
                     fewer sensors, or from the estimate, would not be the suite's \
                     measurement). Restore the sensor and resume the run (run --resume), or \
                     write sources = \"auto\" under [meter] to accept a labelled fallback"
                )
            }
        });
        Ok(Meters {
            sampler,
            warnings,
            slowest_update_ms,
            child_tracker: sel.child_tracker,
            lost_sensor,
            energy_refused: !lost.is_empty() && !suite.auto_fallback,
        })
    }

    /// The measured domains the suite started with that this cell's sources lack.
    fn lost_domains(&self, sel: &crate::meter::select::Selection) -> Vec<String> {
        let have: Vec<String> = sel
            .sources
            .iter()
            .flat_map(|s| s.domains().to_vec())
            .filter(|d| d.provenance == crate::meter::Provenance::Measured)
            .map(|d| format!("{}/{}", d.source, d.name))
            .collect();
        self.meta
            .measured_domains
            .iter()
            .filter(|d| !have.contains(d))
            .cloned()
            .collect()
    }
}
