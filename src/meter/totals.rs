//! Energy totals over domains (CPU = sum(package) + sum(dram), else core, else the estimate;
//! GPUs summed; psys on its own) and each domain's instrument uncertainty: the one place `measure`
//! and the suite runner add energies up.

use crate::meter::{DomainInfo, DomainKind, Method, Provenance, SourceKind};
use crate::units::Joules;
use serde::{Deserialize, Serialize};

/// Totals without double counting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    /// sum(package) + sum(dram), or the estimate when no sensor covers the CPU.
    pub cpu_j: Option<f64>,
    pub cpu_basis: Option<String>,
    pub cpu_provenance: Option<Provenance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_net_j: Option<f64>,
    /// Sum over metered GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_net_j: Option<f64>,
    /// Platform energy, reported on its own and never added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psys_j: Option<f64>,
    /// The CPU figure is psys, the whole platform (a machine with no package or core domain).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cpu_is_platform: bool,
    /// Domains a total needed but could not read, left out because partial totals were
    /// allowed: the totals are then lower bounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial_missing: Vec<String>,
    /// RAPL zones that did not count at all while their package (or a sibling of their kind)
    /// did: left out of the totals and named in `partial_missing`, whatever `allow_partial`
    /// says (an unsupported zone or a stuck counter; 0 J would be a figure that is wrong).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent: Vec<String>,
}

/// The least a package or sibling zone must have counted over a window for another zone's
/// standing still to mean it does not count (well above one counter update at any power).
pub const SILENT_AFTER_J: f64 = 0.05;

/// Which domains stood still (exactly 0) over a window while another RAPL zone of the same
/// kind (or, for DRAM, a package) counted at least [`SILENT_AFTER_J`].
pub fn silent_zones(domains: &[DomainInfo], energy: &[Option<f64>]) -> Vec<bool> {
    // A sibling of its kind counted, or (for DRAM, which the CPU total adds to the package)
    // a package did.
    let counted = |k: DomainKind, not: usize| {
        domains.iter().zip(energy).enumerate().any(|(j, (d, e))| {
            j != not
                && d.source == SourceKind::Rapl
                && (d.kind == k || (k == DomainKind::Dram && d.kind == DomainKind::Package))
                && e.is_some_and(|e| e >= SILENT_AFTER_J)
        })
    };
    domains
        .iter()
        .zip(energy)
        .enumerate()
        .map(|(i, (d, e))| {
            d.source == SourceKind::Rapl
                && d.kind != DomainKind::Psys
                && *e == Some(0.0)
                && counted(d.kind, i)
        })
        .collect()
}

/// The warning for zones that did not count, naming them and the two explanations.
pub fn silent_warning(silent: &[String], what: &str) -> String {
    format!(
        "{what}: {} did not count at all while the package did: either the CPU does not \
         support the zone (common on client parts, whose kernel still lists it) or its counter \
         is stuck. The totals leave it out and are PARTIAL (they do not cover it); measure it \
         another way or read the figures as lower bounds",
        silent.join(", ")
    )
}

impl Totals {
    /// CPU plus GPU: what records total; None when neither is known.
    pub fn cpu_plus_gpu(&self) -> Option<Joules> {
        match (self.cpu_j, self.gpu_j) {
            (None, None) => None,
            (c, g) => Some(Joules(c.unwrap_or(0.0)) + Joules(g.unwrap_or(0.0))),
        }
    }
}

/// Adds energies by domain kind into totals; a missing part makes the total unknown.
pub fn totals(domains: &[DomainInfo], energy: &[Option<f64>]) -> Totals {
    totals_with(domains, energy, false)
}

/// Like [`totals`]; with `allow_partial`, a missing part is left out of its total (named in
/// `partial_missing`) as long as some part of that total is known.
pub fn totals_with(domains: &[DomainInfo], energy: &[Option<f64>], allow_partial: bool) -> Totals {
    let silent = silent_zones(domains, energy);
    let missing = std::cell::RefCell::new(Vec::<String>::new());
    let sum = |pred: &dyn Fn(&DomainInfo) -> bool| -> Option<Option<f64>> {
        // (domain, energy, stood still): a zone that stood still counts as not read.
        let parts: Vec<(&DomainInfo, Option<f64>, bool)> = domains
            .iter()
            .zip(energy)
            .zip(&silent)
            .filter(|((d, _), _)| pred(d))
            .map(|((d, e), s)| (d, if *s { None } else { *e }, *s))
            .collect();
        if parts.is_empty() {
            return None;
        }
        let known: Option<f64> = parts
            .iter()
            .filter_map(|(_, e, _)| *e)
            .fold(None, |a, e| Some(a.unwrap_or(0.0) + e));
        let unread = parts.iter().any(|(_, e, s)| e.is_none() && !s);
        if unread && !allow_partial {
            return Some(None);
        }
        let mut m = missing.borrow_mut();
        for (d, e, _) in &parts {
            let name = format!("{}/{}", d.source, d.name);
            if e.is_none() && !m.contains(&name) {
                m.push(name);
            }
        }
        // Zones that stood still leave the total at what the others counted (0 when none).
        Some(known.or((!unread).then_some(0.0)))
    };
    let rapl = |k: DomainKind| move |d: &DomainInfo| d.source == SourceKind::Rapl && d.kind == k;
    let mut t = Totals::default();
    if let Some(pkg) = sum(&rapl(DomainKind::Package)) {
        // With partial totals allowed, DRAM that cannot be read at all is left out (named).
        let dram = sum(&rapl(DomainKind::Dram))
            .unwrap_or(Some(0.0))
            .or(allow_partial.then_some(0.0));
        t.cpu_j = pkg.zip(dram).map(|(a, b)| a + b);
        t.cpu_basis = Some("sum(package) + sum(dram)".into());
        t.cpu_provenance = Some(Provenance::Measured);
    } else if let Some(core) = sum(&rapl(DomainKind::Core)) {
        t.cpu_j = core;
        t.cpu_basis = Some("sum(core): no package domain, a lower bound".into());
        t.cpu_provenance = Some(Provenance::Measured);
    } else if let Some(psys) = sum(&rapl(DomainKind::Psys)) {
        // Many laptops expose only psys: a measured figure for the whole platform, which
        // contains the CPU and memory.
        t.cpu_j = psys;
        t.cpu_basis = Some("psys: the whole platform (CPU, memory and more), measured".into());
        t.cpu_provenance = Some(Provenance::Measured);
        t.cpu_is_platform = true;
    } else if let Some(est) = sum(&|d: &DomainInfo| d.kind == DomainKind::CpuEstimate) {
        t.cpu_j = est;
        t.cpu_basis = Some("estimate".into());
        t.cpu_provenance = Some(Provenance::Estimated);
    }
    t.gpu_j = sum(&|d: &DomainInfo| d.kind == DomainKind::Gpu).flatten();
    t.psys_j = sum(&rapl(DomainKind::Psys)).flatten();
    // Only the parts a known total leaves out are partial; an unknown total is just unknown.
    t.partial_missing = if t.cpu_j.is_some() || t.gpu_j.is_some() {
        missing.into_inner()
    } else {
        Vec::new()
    };
    // Only those a total left out (a silent core beside a package is in no total).
    t.silent = domains
        .iter()
        .zip(&silent)
        .filter(|(_, s)| **s)
        .map(|(d, _)| format!("{}/{}", d.source, d.name))
        .filter(|n| t.partial_missing.contains(n))
        .collect();
    t
}

/// What a figure's instrument uncertainty (one side, joules) is made of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UncertaintyParts {
    /// The method's own term: counter edges (one update period at each end of every window),
    /// trapezoid integration, driver averaging, or the estimate's model (+/-50%).
    pub method_j: f64,
    /// Counter resolution at both edges of every window: RAPL's energy unit (2^-14 J on Intel)
    /// and NVML's 1 mJ.
    pub resolution_j: f64,
    /// Energy of intervals bridged at the last known power (failed reads, counter resets):
    /// all of it counts as uncertain.
    pub bridged_j: f64,
    /// Wraps that could hide in a gap between reads longer than the counter needs to wrap at
    /// the domain's maximum power: one counter range each.
    pub lost_wrap_j: f64,
}

impl UncertaintyParts {
    /// The sum of the parts.
    pub fn total(&self) -> f64 {
        self.method_j + self.resolution_j + self.bridged_j + self.lost_wrap_j
    }

    /// Adds `other` scaled by `f` (per-request shares of a repetition).
    pub fn add_scaled(&mut self, other: &UncertaintyParts, f: f64) {
        self.method_j += other.method_j * f;
        self.resolution_j += other.resolution_j * f;
        self.bridged_j += other.bridged_j * f;
        self.lost_wrap_j += other.lost_wrap_j * f;
    }
}

/// RAPL's energy status unit on Intel parts (2^-14 J), the counter's real resolution.
const RAPL_UNIT_J: f64 = 1.0 / 16384.0;
/// NVML's energy counter counts millijoules.
const NVML_UNIT_J: f64 = 1e-3;

/// How one domain's energy was summed: over how many windows, with how many bridged reads and
/// how much energy hidden wraps could add.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub energy_j: f64,
    pub avg_w: f64,
    /// Windows the energy is summed over (each has two edges).
    pub windows: usize,
    pub bridged_reads: u64,
    pub lost_wrap_j: f64,
}

/// Instrument uncertainty of a domain's energy by part, and the basis of each nonzero part.
pub fn uncertainty(d: &DomainInfo, s: Span, interval_ms: f64) -> (UncertaintyParts, Vec<String>) {
    let w = s.windows.max(1) as f64;
    let mut basis = Vec::new();
    let method_j = match d.method {
        Method::Counter => {
            basis.push(format!(
                "counter edges: two update periods (~{} ms) at average power per window",
                d.nominal_update_ms
            ));
            2.0 * s.avg_w * d.nominal_update_ms / 1e3 * w
        }
        Method::PolledPower { averaged: false } => {
            basis.push("trapezoid integration: one sampling interval at average power".into());
            s.avg_w * interval_ms / 1e3 * w
        }
        Method::PolledPower { averaged: true } => {
            basis.push("driver-averaged power (~1 s trailing window) at average power".into());
            s.avg_w * w
        }
        Method::Estimate => {
            basis.push("ESTIMATED: model uncertainty, assumed +/-50%".into());
            0.5 * s.energy_j
        }
    };
    let unit = match (d.method, d.source) {
        (Method::Counter, SourceKind::Nvml) => NVML_UNIT_J,
        (Method::Counter, _) => RAPL_UNIT_J,
        _ => 0.0,
    };
    let resolution_j = 2.0 * unit * w;
    if resolution_j > 0.0 {
        basis.push(format!(
            "counter resolution: {} per edge",
            if d.source == SourceKind::Nvml {
                "1 mJ"
            } else {
                "61 uJ"
            }
        ));
    }
    let bridged_j = if d.method == Method::Estimate {
        0.0
    } else {
        s.bridged_reads as f64 * s.avg_w * interval_ms / 1e3
    };
    if bridged_j > 0.0 {
        basis.push("bridged reads: one sampling interval each at average power".into());
    }
    if s.lost_wrap_j > 0.0 {
        basis.push("possible hidden wraps: a counter range per gap longer than a wrap".into());
    }
    (
        UncertaintyParts {
            method_j,
            resolution_j,
            bridged_j,
            lost_wrap_j: s.lost_wrap_j,
        },
        basis,
    )
}
