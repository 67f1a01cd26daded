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
    let sum = |pred: &dyn Fn(&DomainInfo) -> bool| -> Option<Option<f64>> {
        let parts: Vec<Option<f64>> = domains
            .iter()
            .zip(energy)
            .filter(|(d, _)| pred(d))
            .map(|(_, e)| *e)
            .collect();
        (!parts.is_empty()).then(|| parts.iter().copied().sum::<Option<f64>>())
    };
    let rapl = |k: DomainKind| move |d: &DomainInfo| d.source == SourceKind::Rapl && d.kind == k;
    let mut t = Totals::default();
    if let Some(pkg) = sum(&rapl(DomainKind::Package)) {
        let dram = sum(&rapl(DomainKind::Dram)).unwrap_or(Some(0.0));
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
    t
}

/// Instrument uncertainty of a domain's energy and its basis.
pub fn uncertainty(d: &DomainInfo, energy_j: f64, avg_w: f64, interval_ms: f64) -> (f64, String) {
    match d.method {
        Method::Counter => (
            2.0 * avg_w * d.nominal_update_ms / 1e3 + 2e-6,
            format!(
                "counter edges: two update periods (~{} ms) at average power",
                d.nominal_update_ms
            ),
        ),
        Method::PolledPower { averaged: false } => (
            avg_w * interval_ms / 1e3,
            "trapezoid integration: one sampling interval at average power".into(),
        ),
        Method::PolledPower { averaged: true } => (
            avg_w * 1.0,
            "driver-averaged power (~1 s trailing window) at average power".into(),
        ),
        Method::Estimate => (
            0.5 * energy_j,
            "ESTIMATED: model uncertainty, assumed +/-50%".into(),
        ),
    }
}
