//! Energy sources behind one trait: RAPL through powercap, NVIDIA GPUs through NVML, and a labelled
//! estimate for machines without a sensor. A background [`sampler`] reads them all.

pub mod estimate;
pub mod fake;
pub mod mark;
pub mod nvml;
pub mod probe;
pub mod rapl;
pub mod recording;
pub mod sampler;
pub mod select;
pub mod sysfs;
pub mod totals;

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which kind of energy source a domain comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Rapl,
    Nvml,
    Estimate,
}

impl SourceKind {
    /// The name used on the command line and in results.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Rapl => "rapl",
            SourceKind::Nvml => "nvml",
            SourceKind::Estimate => "estimate",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What part of the machine a domain covers; decides how domains add up to totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainKind {
    /// A CPU package (socket or die); counted in the CPU total.
    Package,
    /// Cores inside a package (PP0); already part of the package, never added to a total.
    Core,
    /// Uncore or integrated graphics inside a package (PP1); never added to a total.
    Uncore,
    /// Memory attached to a package; a separate domain, counted in the CPU total.
    Dram,
    /// The whole platform (client chips); reported on its own.
    Psys,
    /// A GPU board (or module, on Grace Hopper).
    Gpu,
    /// The estimate for the CPU; counted in the CPU total when no sensor covers the CPU.
    CpuEstimate,
    /// A domain joulebench does not know; reported, never totalled.
    Other,
}

/// Which total a domain belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalGroup {
    Cpu,
    Gpu,
    None,
}

impl DomainKind {
    /// The total this kind adds to: CPU = packages + dram (or the estimate), GPU = boards.
    pub fn total_group(self) -> TotalGroup {
        match self {
            DomainKind::Package | DomainKind::Dram | DomainKind::CpuEstimate => TotalGroup::Cpu,
            DomainKind::Gpu => TotalGroup::Gpu,
            _ => TotalGroup::None,
        }
    }
}

/// Whether a figure was measured by a sensor or estimated by a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provenance {
    Measured,
    Estimated,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provenance::Measured => "measured",
            Provenance::Estimated => "ESTIMATED",
        })
    }
}

/// How a domain's energy is obtained. Serialized as one string: `counter`, `polled_power`,
/// `polled_power_averaged` or `estimate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Method {
    /// A cumulative hardware energy counter read at window edges.
    Counter,
    /// Instantaneous power polled and integrated with the trapezoid rule; `averaged` when the
    /// driver reports a trailing average rather than an instantaneous value.
    PolledPower { averaged: bool },
    /// A model of CPU time and TDP; see the estimate's formula.
    Estimate,
}

impl Method {
    /// The name used in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Counter => "counter",
            Method::PolledPower { averaged: false } => "polled_power",
            Method::PolledPower { averaged: true } => "polled_power_averaged",
            Method::Estimate => "estimate",
        }
    }
}

impl From<Method> for &'static str {
    fn from(m: Method) -> &'static str {
        m.as_str()
    }
}

impl TryFrom<String> for Method {
    type Error = String;
    fn try_from(s: String) -> Result<Method, String> {
        Ok(match s.as_str() {
            "counter" => Method::Counter,
            "polled_power" => Method::PolledPower { averaged: false },
            "polled_power_averaged" => Method::PolledPower { averaged: true },
            "estimate" => Method::Estimate,
            other => return Err(format!("unknown method {other:?}")),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Counter => f.write_str("counter"),
            Method::PolledPower { averaged: false } => f.write_str("polled power (trapezoid)"),
            Method::PolledPower { averaged: true } => {
                f.write_str("polled power (trapezoid, driver-averaged ~1 s)")
            }
            Method::Estimate => f.write_str("estimate"),
        }
    }
}

/// One domain a source reports: what it is, how it is read, where it lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainInfo {
    pub source: SourceKind,
    /// Unique within its source: `package-0`, `core-0`, `dram-1`, `psys`, `gpu0`, `cpu`.
    pub name: String,
    pub kind: DomainKind,
    pub provenance: Provenance,
    pub method: Method,
    /// Where it is read: a powercap zone folder, a GPU UUID, or the estimate's model.
    pub location: String,
    /// Counter wrap range in microjoules, where the counter wraps.
    pub counter_range_uj: Option<u64>,
    /// Typical time between counter updates, used to size windows for peak power.
    pub nominal_update_ms: f64,
    /// The most this domain can draw (its stated constraint, else an assumed bound), for
    /// judging whether a wrap could hide between two reads; None where the counter never wraps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_power_w: Option<f64>,
    /// A note every result carrying this domain repeats (scope, averaging, model).
    pub note: Option<String>,
}

/// A meter that reports cumulative energy per domain.
///
/// Values are microjoules since the source was created, already unwrapped, as u64. `None` marks
/// an invalid read (failed or unparsable); it is never reported as zero.
pub trait EnergySource: Send {
    /// Which kind of source this is.
    fn kind(&self) -> SourceKind;
    /// The domains, in the order `read_into` fills them.
    fn domains(&self) -> &[DomainInfo];
    /// Reads every domain at `now_ns` (CLOCK_MONOTONIC) into `out` (one slot per domain).
    fn read_into(&mut self, now_ns: u64, out: &mut [Option<u64>]);
    /// Problems seen so far (invalid reads and their first cause), one line each.
    fn diagnostics(&self) -> Vec<String> {
        Vec::new()
    }
    /// Conditions that make figures suspect right now (a throttling GPU), one line each.
    fn health(&self) -> Vec<String> {
        Vec::new()
    }
    /// The longest safe interval between reads, so no counter wrap can hide between two reads.
    fn max_read_interval_ms(&self) -> Option<f64> {
        None
    }
    /// Static facts about this source for results (model, driver, formula), as key/value pairs.
    fn describe(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// A source that could not be used, and why; never a zero reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unavailable {
    pub source: SourceKind,
    pub reason: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} unavailable: {}", self.source, self.reason)
    }
}

/// Running per-domain bookkeeping of invalid reads, shared by every source.
#[derive(Debug, Default, Clone)]
pub struct InvalidReads {
    counts: Vec<u64>,
    first_cause: Vec<Option<String>>,
}

impl InvalidReads {
    /// Tracks `n` domains.
    pub fn new(n: usize) -> Self {
        InvalidReads {
            counts: vec![0; n],
            first_cause: vec![None; n],
        }
    }

    /// Records one invalid read of domain `i`.
    pub fn record(&mut self, i: usize, cause: impl FnOnce() -> String) {
        self.counts[i] += 1;
        if self.first_cause[i].is_none() {
            self.first_cause[i] = Some(cause());
        }
    }

    /// One line per domain that had invalid reads.
    pub fn lines(&self, domains: &[DomainInfo]) -> Vec<String> {
        self.counts
            .iter()
            .zip(&self.first_cause)
            .zip(domains)
            .filter(|((c, _), _)| **c > 0)
            .map(|((c, cause), d)| {
                format!(
                    "{}/{}: {} invalid read(s), bridged from neighbouring samples; first: {}",
                    d.source,
                    d.name,
                    c,
                    cause.as_deref().unwrap_or("unknown")
                )
            })
            .collect()
    }
}
