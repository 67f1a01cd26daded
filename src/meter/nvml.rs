//! NVIDIA GPUs through NVML, behind [`GpuLibrary`] so tests drive a fake device.
//!
//! Volta and newer expose a millijoule energy counter, read at window edges. Older GPUs only
//! report power; it is polled and integrated with the trapezoid rule, and labelled as averaged
//! where the driver reports a trailing one-second average (Ampere and newer, except GA100).

use super::{DomainInfo, DomainKind, EnergySource, InvalidReads, Method, Provenance, SourceKind};
use crate::clock::monotonic_ns;
use serde::Serialize;
use std::fmt;

/// What an NVML call can fail with.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuError {
    /// The library or the driver is missing: the whole source is unavailable.
    LibraryNotFound(String),
    /// This GPU does not support the call (for example, no energy counter before Volta).
    NotSupported,
    Other(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::LibraryNotFound(s) => f.write_str(s),
            GpuError::NotSupported => f.write_str("not supported on this GPU"),
            GpuError::Other(s) => f.write_str(s),
        }
    }
}

/// The NVML library: driver facts and devices by NVML index.
pub trait GpuLibrary: Send {
    fn driver_version(&self) -> Result<String, GpuError>;
    fn device_count(&self) -> Result<u32, GpuError>;
    fn device(&self, index: u32) -> Result<Box<dyn GpuDevice>, GpuError>;
}

/// One GPU as NVML sees it.
pub trait GpuDevice: Send {
    fn name(&self) -> Result<String, GpuError>;
    fn uuid(&self) -> Result<String, GpuError>;
    /// Energy since the driver loaded, in millijoules (Volta and newer).
    fn total_energy_mj(&self) -> Result<u64, GpuError>;
    /// Current power draw in milliwatts.
    fn power_mw(&self) -> Result<u32, GpuError>;
    /// Enforced power limit in milliwatts.
    fn power_limit_mw(&self) -> Result<u32, GpuError>;
    /// CUDA compute capability (major, minor).
    fn compute_capability(&self) -> Result<(i32, i32), GpuError>;
    /// PIDs of processes running compute work on this GPU.
    fn compute_pids(&self) -> Result<Vec<u32>, GpuError>;
    /// Active clock-throttle reasons that slow the work (power cap, thermal, hardware).
    fn throttle_reasons(&self) -> Result<Vec<String>, GpuError> {
        Err(GpuError::NotSupported)
    }
}

/// Loads the real NVML (`libnvidia-ml.so.1`) at run time.
pub fn load_library() -> Result<Box<dyn GpuLibrary>, GpuError> {
    #[cfg(feature = "nvml")]
    {
        real::load()
    }
    #[cfg(not(feature = "nvml"))]
    {
        Err(GpuError::LibraryNotFound(
            "NVML library not found: joulebench was built without the `nvml` feature".into(),
        ))
    }
}

/// Facts recorded for every metered GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuFacts {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub driver_version: String,
    pub power_limit_w: Option<f64>,
    pub compute_capability: Option<String>,
    pub method: Method,
}

/// Which GPUs the work can see, from CUDA_VISIBLE_DEVICES, as NVML indices.
#[derive(Debug, Default, PartialEq)]
pub struct Visibility {
    pub indices: Vec<u32>,
    pub warnings: Vec<String>,
}

/// Resolves CUDA_VISIBLE_DEVICES (indices or UUID prefixes, as CUDA accepts them) against the
/// UUIDs of NVML's devices, in NVML order. CUDA stops at the first entry it cannot resolve; so
/// does this. `order_pci` says whether CUDA_DEVICE_ORDER=PCI_BUS_ID makes indices match NVML's.
pub fn resolve_visible(spec: Option<&str>, uuids: &[String], order_pci: bool) -> Visibility {
    let mut v = Visibility::default();
    let Some(spec) = spec else {
        v.indices = (0..uuids.len() as u32).collect();
        return v;
    };
    let mut used_index = false;
    for token in spec.split(',').map(str::trim) {
        let found = if let Ok(i) = token.parse::<u32>() {
            used_index = true;
            ((i as usize) < uuids.len()).then_some(i)
        } else if token.is_empty() || token.starts_with("MIG-") {
            None
        } else {
            let want = token.strip_prefix("GPU-").unwrap_or(token);
            let hits: Vec<u32> = uuids
                .iter()
                .enumerate()
                .filter(|(_, u)| u.strip_prefix("GPU-").unwrap_or(u).starts_with(want))
                .map(|(i, _)| i as u32)
                .collect();
            (hits.len() == 1).then(|| hits[0])
        };
        match found {
            Some(i) if !v.indices.contains(&i) => v.indices.push(i),
            Some(_) => {}
            None => {
                if token.starts_with("MIG-") {
                    v.warnings.push(format!(
                        "CUDA_VISIBLE_DEVICES entry {token:?} is a MIG instance: NVML meters \
                         whole GPUs only; this entry and those after it are not metered"
                    ));
                } else if !token.is_empty() || spec.trim() != "" {
                    v.warnings.push(format!(
                        "CUDA_VISIBLE_DEVICES entry {token:?} matches no GPU; as CUDA does, it and \
                         the entries after it are ignored"
                    ));
                }
                break;
            }
        }
    }
    if used_index && uuids.len() > 1 && !order_pci {
        v.warnings.push(
            "CUDA_VISIBLE_DEVICES uses indices but CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA may \
             number GPUs differently from NVML; set CUDA_DEVICE_ORDER=PCI_BUS_ID or use UUIDs"
                .into(),
        );
    }
    v
}

enum Mode {
    Counter {
        base_mj: u64,
    },
    Polled {
        last: Option<(u64, u32)>,
        acc_uj: f64,
    },
}

/// GPU energy: the counter where the GPU has one, polled power otherwise.
pub struct NvmlSource {
    devices: Vec<Box<dyn GpuDevice>>,
    modes: Vec<Mode>,
    domains: Vec<DomainInfo>,
    facts: Vec<GpuFacts>,
    invalid: InvalidReads,
    /// Warnings found while opening (visibility, busy GPUs).
    pub warnings: Vec<String>,
}

impl NvmlSource {
    /// Opens the GPUs visible to the work. `Err` says why NVML cannot be used.
    pub fn open(
        lib: &dyn GpuLibrary,
        cuda_visible: Option<&str>,
        order_pci: bool,
    ) -> Result<NvmlSource, String> {
        let count = lib.device_count().map_err(|e| e.to_string())?;
        let driver = lib
            .driver_version()
            .unwrap_or_else(|e| format!("unknown ({e})"));
        let mut all = Vec::new();
        for i in 0..count {
            all.push(lib.device(i).map_err(|e| format!("GPU {i}: {e}"))?);
        }
        let uuids: Vec<String> = all.iter().map(|d| d.uuid().unwrap_or_default()).collect();
        let vis = resolve_visible(cuda_visible, &uuids, order_pci);
        let mut src = NvmlSource {
            devices: Vec::new(),
            modes: Vec::new(),
            domains: Vec::new(),
            facts: Vec::new(),
            invalid: InvalidReads::default(),
            warnings: vis.warnings,
        };
        let mut slots: Vec<Option<Box<dyn GpuDevice>>> = all.into_iter().map(Some).collect();
        for index in vis.indices {
            let Some(dev) = slots[index as usize].take() else {
                continue;
            };
            let name = dev.name().unwrap_or_else(|_| format!("GPU {index}"));
            let cc = dev.compute_capability().ok();
            let mode = match dev.total_energy_mj() {
                Ok(base_mj) => Mode::Counter { base_mj },
                Err(GpuError::NotSupported) => Mode::Polled {
                    last: dev.power_mw().ok().map(|p| (monotonic_ns(), p)),
                    acc_uj: 0.0,
                },
                Err(e) => return Err(format!("GPU {index} ({name}): energy counter: {e}")),
            };
            let averaged =
                matches!(cc, Some((major, minor)) if major > 8 || (major == 8 && minor > 0));
            let method = match mode {
                Mode::Counter { .. } => Method::Counter,
                Mode::Polled { .. } => Method::PolledPower { averaged },
            };
            let mut notes = Vec::new();
            if name.contains("GH200") || name.contains("GB200") || name.contains("Grace") {
                notes
                    .push("module scope on Grace Hopper/Blackwell: CPU + GPU + memory".to_string());
            }
            if let Method::PolledPower { averaged: true } = method {
                notes.push(
                    "power is a ~1 s trailing average on this GPU: short windows smear energy \
                     into neighbouring phases"
                        .into(),
                );
            }
            if let Ok(pids) = dev.compute_pids() {
                let me = std::process::id();
                let others: Vec<String> = pids
                    .iter()
                    .filter(|p| **p != me)
                    .map(u32::to_string)
                    .collect();
                if !others.is_empty() {
                    src.warnings.push(format!(
                        "GPU {index} ({name}) is already running compute processes (PIDs {}): \
                         their energy is counted too",
                        others.join(", ")
                    ));
                }
            }
            let uuid = dev.uuid().unwrap_or_default();
            src.domains.push(DomainInfo {
                source: SourceKind::Nvml,
                name: format!("gpu{index}"),
                kind: DomainKind::Gpu,
                provenance: Provenance::Measured,
                method,
                location: uuid.clone(),
                counter_range_uj: None,
                nominal_update_ms: 100.0,
                max_power_w: None,
                note: (!notes.is_empty()).then(|| notes.join("; ")),
            });
            src.facts.push(GpuFacts {
                index,
                name,
                uuid,
                driver_version: driver.clone(),
                power_limit_w: dev.power_limit_mw().ok().map(|mw| mw as f64 / 1000.0),
                compute_capability: cc.map(|(a, b)| format!("{a}.{b}")),
                method,
            });
            src.devices.push(dev);
            src.modes.push(mode);
        }
        if src.devices.is_empty() {
            let mut why = if count == 0 {
                "NVML found no GPU".to_string()
            } else {
                "no GPU is visible to the work (CUDA_VISIBLE_DEVICES)".to_string()
            };
            if let Some(w) = src.warnings.first() {
                why = format!("{why}: {w}");
            }
            return Err(why);
        }
        src.invalid = InvalidReads::new(src.domains.len());
        Ok(src)
    }

    /// The facts recorded for each metered GPU.
    pub fn facts(&self) -> &[GpuFacts] {
        &self.facts
    }
}

impl EnergySource for NvmlSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Nvml
    }

    fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    fn read_into(&mut self, now_ns: u64, out: &mut [Option<u64>]) {
        for (i, dev) in self.devices.iter().enumerate() {
            out[i] = match &mut self.modes[i] {
                Mode::Counter { base_mj } => match dev.total_energy_mj() {
                    Ok(mj) if mj >= *base_mj => Some((mj - *base_mj) * 1000),
                    Ok(mj) => {
                        let base = *base_mj;
                        self.invalid.record(i, || {
                            format!("energy counter went back ({mj} mJ < start {base} mJ)")
                        });
                        None
                    }
                    Err(e) => {
                        self.invalid.record(i, || format!("energy counter: {e}"));
                        None
                    }
                },
                Mode::Polled { last, acc_uj } => match dev.power_mw() {
                    Ok(p) => {
                        if let Some((t0, p0)) = *last {
                            let dt_ns = now_ns.saturating_sub(t0) as f64;
                            // mW x ns = 1e-12 J = 1e-6 µJ
                            *acc_uj += (p0 as f64 + p as f64) / 2.0 * dt_ns / 1e6;
                        }
                        *last = Some((now_ns, p));
                        Some(*acc_uj as u64)
                    }
                    Err(e) => {
                        self.invalid.record(i, || format!("power reading: {e}"));
                        None
                    }
                },
            };
        }
    }

    fn diagnostics(&self) -> Vec<String> {
        self.invalid.lines(&self.domains)
    }

    fn health(&self) -> Vec<String> {
        self.devices
            .iter()
            .zip(&self.facts)
            .filter_map(|(d, f)| match d.throttle_reasons() {
                Ok(r) if !r.is_empty() => Some(format!(
                    "GPU {} ({}) is throttling: {}",
                    f.index,
                    f.name,
                    r.join(", ")
                )),
                _ => None,
            })
            .collect()
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::to_value(&self.facts).unwrap_or_default()
    }
}

#[cfg(feature = "nvml")]
mod real {
    use super::{GpuDevice, GpuError, GpuLibrary};
    use nvml_wrapper::Nvml;
    use nvml_wrapper::error::NvmlError;
    use std::sync::Arc;

    fn map(e: NvmlError) -> GpuError {
        match e {
            NvmlError::NotSupported => GpuError::NotSupported,
            NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
                GpuError::LibraryNotFound("NVML library not found (libnvidia-ml.so.1)".into())
            }
            NvmlError::DriverNotLoaded => {
                GpuError::LibraryNotFound("NVIDIA driver not loaded (NVML is present)".into())
            }
            other => GpuError::Other(other.to_string()),
        }
    }

    pub fn load() -> Result<Box<dyn GpuLibrary>, GpuError> {
        let mut last = GpuError::LibraryNotFound("NVML library not found".into());
        for path in ["libnvidia-ml.so.1", "libnvidia-ml.so"] {
            match Nvml::builder().lib_path(std::ffi::OsStr::new(path)).init() {
                Ok(nvml) => {
                    return Ok(Box::new(RealNvml {
                        nvml: Arc::new(nvml),
                    }));
                }
                Err(e) => last = map(e),
            }
        }
        Err(last)
    }

    struct RealNvml {
        nvml: Arc<Nvml>,
    }

    impl GpuLibrary for RealNvml {
        fn driver_version(&self) -> Result<String, GpuError> {
            self.nvml.sys_driver_version().map_err(map)
        }
        fn device_count(&self) -> Result<u32, GpuError> {
            self.nvml.device_count().map_err(map)
        }
        fn device(&self, index: u32) -> Result<Box<dyn GpuDevice>, GpuError> {
            self.nvml.device_by_index(index).map_err(map)?;
            Ok(Box::new(RealGpu {
                nvml: Arc::clone(&self.nvml),
                index,
            }))
        }
    }

    /// Holds the library and an index; handles are looked up per call (cheap in NVML).
    struct RealGpu {
        nvml: Arc<Nvml>,
        index: u32,
    }

    impl RealGpu {
        fn with<T>(
            &self,
            f: impl FnOnce(&nvml_wrapper::Device<'_>) -> Result<T, NvmlError>,
        ) -> Result<T, GpuError> {
            let d = self.nvml.device_by_index(self.index).map_err(map)?;
            f(&d).map_err(map)
        }
    }

    impl GpuDevice for RealGpu {
        fn name(&self) -> Result<String, GpuError> {
            self.with(|d| d.name())
        }
        fn uuid(&self) -> Result<String, GpuError> {
            self.with(|d| d.uuid())
        }
        fn total_energy_mj(&self) -> Result<u64, GpuError> {
            self.with(|d| d.total_energy_consumption())
        }
        fn power_mw(&self) -> Result<u32, GpuError> {
            self.with(|d| d.power_usage())
        }
        fn power_limit_mw(&self) -> Result<u32, GpuError> {
            self.with(|d| d.enforced_power_limit())
        }
        fn compute_capability(&self) -> Result<(i32, i32), GpuError> {
            self.with(|d| d.cuda_compute_capability().map(|c| (c.major, c.minor)))
        }
        fn compute_pids(&self) -> Result<Vec<u32>, GpuError> {
            self.with(|d| {
                d.running_compute_processes()
                    .map(|v| v.into_iter().map(|p| p.pid).collect())
            })
        }
        fn throttle_reasons(&self) -> Result<Vec<String>, GpuError> {
            use nvml_wrapper::bitmasks::device::ThrottleReasons as T;
            let r = self.with(|d| d.current_throttle_reasons())?;
            let named = [
                (T::SW_POWER_CAP, "software power cap"),
                (T::HW_SLOWDOWN, "hardware slowdown"),
                (T::SW_THERMAL_SLOWDOWN, "software thermal slowdown"),
                (T::HW_THERMAL_SLOWDOWN, "hardware thermal slowdown"),
                (T::HW_POWER_BRAKE_SLOWDOWN, "hardware power brake"),
            ];
            Ok(named
                .iter()
                .filter(|(f, _)| r.contains(*f))
                .map(|(_, n)| n.to_string())
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids() -> Vec<String> {
        vec![
            "GPU-aaaa1111-0000".to_string(),
            "GPU-bbbb2222-0000".to_string(),
            "GPU-bbbb3333-0000".to_string(),
        ]
    }

    #[test]
    fn visibility_by_index_uuid_and_prefix() {
        let u = uuids();
        assert_eq!(resolve_visible(None, &u, true).indices, vec![0, 1, 2]);
        assert_eq!(resolve_visible(Some("2,0"), &u, true).indices, vec![2, 0]);
        assert_eq!(
            resolve_visible(Some("GPU-bbbb3333-0000"), &u, true).indices,
            vec![2]
        );
        assert_eq!(resolve_visible(Some("aaaa"), &u, true).indices, vec![0]);
        assert!(resolve_visible(Some(""), &u, true).indices.is_empty());
    }

    #[test]
    fn visibility_stops_at_first_unresolvable_entry() {
        let u = uuids();
        // "bbbb" is ambiguous, so like CUDA we stop there.
        let v = resolve_visible(Some("0,bbbb,2"), &u, true);
        assert_eq!(v.indices, vec![0]);
        assert!(v.warnings[0].contains("bbbb"));
        let v = resolve_visible(Some("1,7,2"), &u, true);
        assert_eq!(v.indices, vec![1]);
        let v = resolve_visible(Some("MIG-xyz"), &u, true);
        assert!(v.indices.is_empty());
        assert!(v.warnings[0].contains("MIG"));
    }

    #[test]
    fn index_order_warning_without_pci_bus_order() {
        let v = resolve_visible(Some("1"), &uuids(), false);
        assert!(v.warnings.iter().any(|w| w.contains("PCI_BUS_ID")));
        let v = resolve_visible(Some("1"), &uuids(), true);
        assert!(v.warnings.is_empty());
    }
}
