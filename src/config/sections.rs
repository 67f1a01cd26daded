//! The sections of a suite file as they are written (`[suite]`, `[meter]`, `[[profile]]`,
//! `[carbon]`, and the whole file), with their defaults; `check` turns them into a [`Suite`].

use super::model::RawModel;
use super::slo::Slo;
use super::workload::{Workload, WorkloadKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

/// `[suite]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSection {
    pub name: Spanned<String>,
    #[serde(default = "one")]
    pub warmup: Spanned<u32>,
    #[serde(default = "five")]
    pub repetitions: Spanned<u32>,
    #[serde(default = "five_f")]
    pub idle_seconds: Spanned<f64>,
    #[serde(default = "zero_f")]
    pub cooldown_seconds: Spanned<f64>,
    #[serde(default = "min_window")]
    pub min_window_ms: Spanned<f64>,
    #[serde(default = "timeout")]
    pub timeout_seconds: Spanned<f64>,
    /// A server cell whose steady window is shorter is flagged unstable.
    #[serde(default = "min_steady")]
    pub min_steady_s: Spanned<f64>,
}

/// Meter sources: `"auto"`, `"rapl,nvml"` or `["rapl", "nvml"]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Sources {
    One(String),
    List(Vec<String>),
}

/// `[meter]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeterSection {
    #[serde(default = "auto")]
    pub sources: Spanned<Sources>,
    #[serde(default = "ten")]
    pub interval_ms: Spanned<f64>,
    #[serde(default)]
    pub strict: bool,
    /// A total that needs a domain it cannot read is reported without it, labelled PARTIAL,
    /// instead of unknown.
    #[serde(default)]
    pub allow_partial: bool,
    pub powercap_root: Option<PathBuf>,
    pub tdp_w: Option<Spanned<f64>>,
}

impl Default for MeterSection {
    fn default() -> Self {
        MeterSection {
            sources: auto(),
            interval_ms: ten(),
            strict: false,
            allow_partial: false,
            powercap_root: None,
            tdp_w: None,
        }
    }
}

/// `[[profile]]`: how the hardware is used.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default = "cpu")]
    pub device: String,
    pub threads: Option<u32>,
    pub cpu_affinity: Option<Vec<usize>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Profile {
    /// Threads the engine uses: the profile's, else every CPU this process may use.
    pub fn thread_count(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |t| t as usize,
        )
    }
}

/// `[carbon]`: grid intensity and where the figure comes from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Carbon {
    pub grams_co2e_per_kwh: f64,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSuite {
    pub(super) suite: SuiteSection,
    #[serde(default)]
    pub(super) meter: MeterSection,
    #[serde(default, rename = "model")]
    pub(super) models: Vec<Spanned<RawModel>>,
    #[serde(default, rename = "profile")]
    pub(super) profiles: Vec<Spanned<Profile>>,
    #[serde(default, rename = "workload")]
    pub(super) workloads: Vec<Spanned<Workload>>,
    pub(super) carbon: Option<Spanned<Carbon>>,
    /// Latency deadlines `joulebench frontier` and the report judge configurations by.
    #[serde(default)]
    pub(super) slo: Option<Spanned<Slo>>,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
pub(super) fn one_usize() -> usize {
    1
}
pub(super) fn five() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}
pub(super) fn five_f() -> Spanned<f64> {
    Spanned::new(0..0, 5.0)
}
pub(super) fn zero_f() -> Spanned<f64> {
    Spanned::new(0..0, 0.0)
}
pub(super) fn min_steady() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}
pub(super) fn min_window() -> Spanned<f64> {
    Spanned::new(0..0, 200.0)
}
pub(super) fn timeout() -> Spanned<f64> {
    Spanned::new(0..0, 600.0)
}
pub(super) fn auto() -> Spanned<Sources> {
    Spanned::new(0..0, Sources::One("auto".into()))
}
pub(super) fn ten() -> Spanned<f64> {
    Spanned::new(0..0, 10.0)
}
pub(super) fn cpu() -> String {
    "cpu".into()
}
pub(super) fn generate() -> WorkloadKind {
    WorkloadKind::Generate
}
pub(super) fn yes() -> bool {
    true
}
