//! Chooses and opens energy sources for a session: `auto` or an explicit list.

use super::estimate::{ChildTreeCpu, CpuClock, EstimateModel, EstimateSource, ProcessCpu};
use super::nvml::{GpuError, GpuLibrary, NvmlSource};
use super::rapl::{self, RaplSource, ZoneReport};
use super::sysfs::{RealSysfs, Sysfs};
use super::{DomainKind, EnergySource, SourceKind, Unavailable};
use crate::clock::monotonic_ns;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicI32;

/// Which sources to use.
#[derive(Debug, Clone, PartialEq)]
pub enum MeterChoice {
    /// Every measured source that works, plus the estimate when none covers the CPU.
    Auto,
    /// Exactly these; any one unavailable is an error.
    Only(Vec<SourceKind>),
}

impl MeterChoice {
    /// Parses `auto` or a comma-separated list of `rapl`, `nvml`, `estimate`.
    pub fn parse(s: &str) -> Result<MeterChoice, String> {
        if s.trim() == "auto" {
            return Ok(MeterChoice::Auto);
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let k = match part {
                "rapl" => SourceKind::Rapl,
                "nvml" => SourceKind::Nvml,
                "estimate" => SourceKind::Estimate,
                other => {
                    return Err(format!(
                        "unknown meter {other:?}; use auto, or a comma-separated list of rapl, \
                         nvml, estimate"
                    ));
                }
            };
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(MeterChoice::Only(out))
    }
}

/// Whose CPU time the estimate counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EstimateScope {
    /// Child processes joulebench starts (`measure`).
    ChildTree,
    /// This process (in-process engines).
    Process,
    /// Every process on the machine (external servers joulebench may not have started).
    Machine,
}

/// The hardware seams: the powercap root and how to read it, and how to load NVML.
pub struct Hardware {
    pub powercap_root: PathBuf,
    pub sysfs: Box<dyn Sysfs>,
    pub gpu: Box<dyn Fn() -> Result<Box<dyn GpuLibrary>, GpuError> + Send + Sync>,
    pub cuda_visible_devices: Option<String>,
    pub cuda_order_pci: bool,
}

impl Hardware {
    /// The machine's real sensors, with the powercap root given.
    pub fn real(powercap_root: PathBuf) -> Hardware {
        Hardware {
            sysfs: Box::new(RealSysfs::for_root(&powercap_root)),
            powercap_root,
            gpu: Box::new(super::nvml::load_library),
            cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
            cuda_order_pci: std::env::var("CUDA_DEVICE_ORDER").is_ok_and(|v| v == "PCI_BUS_ID"),
        }
    }
}

/// The opened sources and what could not be used.
pub struct Selection {
    pub sources: Vec<Box<dyn EnergySource>>,
    pub unavailable: Vec<Unavailable>,
    pub zones: Vec<ZoneReport>,
    pub warnings: Vec<String>,
    /// Set the running child's PID here so the estimate counts it (ChildTree scope).
    pub child_tracker: Option<Arc<AtomicI32>>,
}

impl Selection {
    /// True when any selected source only estimates.
    pub fn has_estimates(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.kind() == SourceKind::Estimate)
    }
}

/// Opens RAPL; on failure says why.
pub fn open_rapl(hw: &Hardware) -> Result<(RaplSource, Vec<ZoneReport>), String> {
    RaplSource::from_discovery(rapl::discover(&hw.powercap_root, hw.sysfs.as_ref()))
}

/// Opens NVML for the visible GPUs; on failure says why.
pub fn open_nvml(hw: &Hardware) -> Result<NvmlSource, String> {
    let lib = (hw.gpu)().map_err(|e| e.to_string())?;
    NvmlSource::open(
        lib.as_ref(),
        hw.cuda_visible_devices.as_deref(),
        hw.cuda_order_pci,
    )
}

/// Opens the sources `choice` asks for.
pub fn select(
    choice: &MeterChoice,
    hw: &Hardware,
    tdp_w: Option<f64>,
    scope: EstimateScope,
) -> Result<Selection, String> {
    let want = |k: SourceKind| match choice {
        MeterChoice::Auto => true,
        MeterChoice::Only(v) => v.contains(&k),
    };
    let explicit = |k: SourceKind| matches!(choice, MeterChoice::Only(v) if v.contains(&k));
    let mut sel = Selection {
        sources: Vec::new(),
        unavailable: Vec::new(),
        zones: Vec::new(),
        warnings: Vec::new(),
        child_tracker: None,
    };
    let mut errors = Vec::new();
    let mut cpu_measured = false;
    if want(SourceKind::Rapl) {
        match open_rapl(hw) {
            Ok((src, zones)) => {
                cpu_measured = src.domains().iter().any(|d| {
                    matches!(
                        d.kind,
                        DomainKind::Package | DomainKind::Core | DomainKind::Psys
                    )
                });
                sel.zones = zones;
                sel.sources.push(Box::new(src));
            }
            Err(reason) => {
                if explicit(SourceKind::Rapl) {
                    errors.push(format!("rapl unavailable: {reason}"));
                }
                sel.unavailable.push(Unavailable {
                    source: SourceKind::Rapl,
                    reason,
                });
            }
        }
    }
    if want(SourceKind::Nvml) {
        match open_nvml(hw) {
            Ok(mut src) => {
                sel.warnings.append(&mut src.warnings);
                sel.sources.push(Box::new(src));
            }
            Err(reason) => {
                if explicit(SourceKind::Nvml) {
                    errors.push(format!("nvml unavailable: {reason}"));
                }
                sel.unavailable.push(Unavailable {
                    source: SourceKind::Nvml,
                    reason,
                });
            }
        }
    }
    let estimate = match choice {
        MeterChoice::Auto => !cpu_measured,
        MeterChoice::Only(v) => v.contains(&SourceKind::Estimate),
    };
    if estimate {
        let clock: Box<dyn CpuClock> = match scope {
            EstimateScope::ChildTree => {
                let c = ChildTreeCpu::new();
                sel.child_tracker = Some(c.tracker());
                Box::new(c)
            }
            EstimateScope::Process => Box::new(ProcessCpu),
            EstimateScope::Machine => Box::new(super::estimate::MachineCpu),
        };
        let model = EstimateModel::for_this_machine(tdp_w);
        sel.warnings.push(
            "CPU energy is ESTIMATED (no CPU energy sensor in use); the report's method section \
             and meta.json give its formula and inputs"
                .into(),
        );
        sel.sources
            .push(Box::new(EstimateSource::new(model, clock, monotonic_ns())));
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if sel.sources.is_empty() {
        return Err("no energy source selected".into());
    }
    Ok(sel)
}
