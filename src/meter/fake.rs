//! Fixtures for tests and benches: fake powercap trees in a folder, a sysfs seam that injects
//! faults, a fake NVML, and a scripted source. Never used against real sensors.

use super::nvml::{GpuDevice, GpuError, GpuLibrary};
use super::sysfs::{CounterFile, RealSysfs, Sysfs};
use super::{DomainInfo, DomainKind, EnergySource, Method, Provenance, SourceKind};
use crate::clock::monotonic_ns;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The usual RAPL wrap range (about 262 kJ).
pub const TYPICAL_RANGE_UJ: u64 = 262_143_328_850;

/// One zone of a fake powercap tree.
#[derive(Debug, Clone)]
pub struct ZoneSpec {
    /// Folder name, such as `intel-rapl:0:2`.
    pub zone: String,
    /// Contents of the `name` file.
    pub name: String,
    pub energy_uj: u64,
    pub range_uj: u64,
}

impl ZoneSpec {
    pub fn new(zone: &str, name: &str) -> Self {
        ZoneSpec {
            zone: zone.into(),
            name: name.into(),
            energy_uj: 1_000_000,
            range_uj: TYPICAL_RANGE_UJ,
        }
    }
}

/// A fake `/sys/class/powercap` laid out as Linux does: zones nested in their parent inside a
/// control-type folder, plus a flat symlink for every zone at the top.
pub struct FakePowercap {
    pub root: PathBuf,
    zones: HashMap<String, PathBuf>,
}

impl FakePowercap {
    /// Writes the tree under `root` (which must exist).
    pub fn create(root: &Path, zones: &[ZoneSpec]) -> io::Result<FakePowercap> {
        let mut map = HashMap::new();
        for z in zones {
            let id = super::rapl::ZoneId::parse(&z.zone).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad zone {}", z.zone))
            })?;
            let control = id.interface.prefix();
            let mut rel = PathBuf::from(control);
            for k in 1..=id.path.len() {
                let part = super::rapl::ZoneId {
                    interface: id.interface,
                    path: id.path[..k].to_vec(),
                };
                rel.push(part.dir_name());
            }
            let dir = root.join(&rel);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(root.join(control).join("enabled"), "1\n")?;
            std::fs::write(dir.join("name"), format!("{}\n", z.name))?;
            std::fs::write(dir.join("max_energy_range_uj"), format!("{}\n", z.range_uj))?;
            std::fs::write(dir.join("energy_uj"), format!("{}\n", z.energy_uj))?;
            std::fs::write(dir.join("enabled"), "1\n")?;
            let link = root.join(&z.zone);
            if !link.exists() {
                std::os::unix::fs::symlink(&rel, &link)?;
            }
            map.insert(z.zone.clone(), dir);
        }
        Ok(FakePowercap {
            root: root.to_path_buf(),
            zones: map,
        })
    }

    /// (a) An Intel client: package-0 with core, uncore and dram nested, and psys.
    pub fn intel_client(root: &Path) -> io::Result<FakePowercap> {
        Self::create(
            root,
            &[
                ZoneSpec::new("intel-rapl:0", "package-0"),
                ZoneSpec::new("intel-rapl:0:0", "core"),
                ZoneSpec::new("intel-rapl:0:1", "uncore"),
                ZoneSpec::new("intel-rapl:0:2", "dram"),
                ZoneSpec::new("intel-rapl:1", "psys"),
            ],
        )
    }

    /// (b) A two-socket server: dram per socket, and an mmio zone duplicating package-0.
    pub fn two_socket_server(root: &Path) -> io::Result<FakePowercap> {
        Self::create(
            root,
            &[
                ZoneSpec::new("intel-rapl:0", "package-0"),
                ZoneSpec::new("intel-rapl:0:0", "dram"),
                ZoneSpec::new("intel-rapl:1", "package-1"),
                ZoneSpec::new("intel-rapl:1:0", "dram"),
                ZoneSpec::new("intel-rapl-mmio:0", "package-0"),
            ],
        )
    }

    /// (c) A two-die AMD part: one package per die, each with a core subzone, no dram.
    pub fn amd_two_die(root: &Path) -> io::Result<FakePowercap> {
        Self::create(
            root,
            &[
                ZoneSpec::new("intel-rapl:0", "package-0"),
                ZoneSpec::new("intel-rapl:0:0", "core"),
                ZoneSpec::new("intel-rapl:1", "package-1"),
                ZoneSpec::new("intel-rapl:1:0", "core"),
            ],
        )
    }

    /// The zone's folder.
    pub fn zone_dir(&self, zone: &str) -> Option<&Path> {
        self.zones.get(zone).map(PathBuf::as_path)
    }

    /// Sets a zone's counter, atomically (write a temporary file, then rename).
    pub fn set_energy(&self, zone: &str, uj: u64) -> io::Result<()> {
        let dir = self
            .zone_dir(zone)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no zone {zone}")))?;
        let tmp = dir.join(".energy_uj.tmp");
        std::fs::write(&tmp, format!("{uj}\n"))?;
        std::fs::rename(tmp, dir.join("energy_uj"))
    }
}

/// Drives zones of a fake tree at set wattages from a background thread, like a CPU would.
pub struct PowerDriver {
    stop: Arc<std::sync::atomic::AtomicBool>,
    watts: Arc<Mutex<Vec<f64>>>,
    /// One-off steps (µJ, may be negative) to apply to each zone's counter.
    steps: Arc<Mutex<Vec<f64>>>,
    corrupt: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PowerDriver {
    /// Every `step`, adds watts × elapsed to each `(zone, watts)` counter (wrapping at the zone's
    /// range), starting from the zone's current value.
    pub fn start(tree: &FakePowercap, zones: &[(&str, f64)], step: std::time::Duration) -> Self {
        let targets: Vec<(PathBuf, u64, u64)> = zones
            .iter()
            .filter_map(|(z, _)| {
                let dir = tree.zone_dir(z)?.to_path_buf();
                let start = std::fs::read_to_string(dir.join("energy_uj")).ok()?;
                let range = std::fs::read_to_string(dir.join("max_energy_range_uj")).ok()?;
                Some((dir, start.trim().parse().ok()?, range.trim().parse().ok()?))
            })
            .collect();
        let watts = Arc::new(Mutex::new(
            zones.iter().map(|(_, w)| *w).collect::<Vec<_>>(),
        ));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let corrupt = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let steps = Arc::new(Mutex::new(vec![0.0; zones.len()]));
        let (flag, w, bad) = (Arc::clone(&stop), Arc::clone(&watts), Arc::clone(&corrupt));
        let jumps = Arc::clone(&steps);
        let handle = std::thread::spawn(move || {
            let mut energy: Vec<f64> = targets.iter().map(|(_, s, _)| *s as f64).collect();
            let mut last = monotonic_ns();
            while !flag.load(Ordering::Relaxed) {
                let now = monotonic_ns();
                let dt = (now - last) as f64 / 1e9;
                last = now;
                let watts = w.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let jump: Vec<f64> =
                    std::mem::take(&mut *jumps.lock().unwrap_or_else(|p| p.into_inner()));
                for (i, (dir, _, range)) in targets.iter().enumerate() {
                    energy[i] += watts[i] * dt * 1e6 + jump.get(i).copied().unwrap_or(0.0);
                    energy[i] = energy[i].max(0.0);
                    let text = if bad.load(Ordering::Relaxed) {
                        "garbage\n".to_string()
                    } else {
                        format!("{}\n", energy[i] as u64 % range)
                    };
                    let tmp = dir.join(".energy_uj.tmp");
                    if std::fs::write(&tmp, text).is_ok() {
                        let _ = std::fs::rename(&tmp, dir.join("energy_uj"));
                    }
                }
                std::thread::sleep(step);
            }
        });
        PowerDriver {
            stop,
            watts,
            steps,
            corrupt,
            handle: Some(handle),
        }
    }

    /// Changes the wattage of the `i`-th driven zone from now on.
    pub fn set_watts(&self, i: usize, watts: f64) {
        if let Some(w) = self
            .watts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(i)
        {
            *w = watts;
        }
    }

    /// Moves the `i`-th driven zone's counter by `uj` once (negative: a reset or a glitch that
    /// steps it back); the energy actually used is unchanged.
    pub fn step_counter(&self, i: usize, uj: f64) {
        let mut s = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() <= i {
            s.resize(i + 1, 0.0);
        }
        s[i] += uj;
    }

    /// While on, the counters read `garbage` (a failing sensor); energy keeps accruing.
    pub fn set_corrupt(&self, on: bool) {
        self.corrupt.store(on, Ordering::Relaxed);
    }
}

impl Drop for PowerDriver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Wraps the real filesystem and injects faults: permission denied on chosen files, and failed
/// reads on chosen read numbers of a counter.
#[derive(Clone, Default)]
pub struct FaultySysfs {
    deny: Arc<Mutex<Vec<PathBuf>>>,
    fail: Arc<Mutex<HashMap<PathBuf, Vec<u64>>>>,
}

impl FaultySysfs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every open of `path` fails with EACCES, as for a non-root user on Linux >= 5.10.
    pub fn deny(&self, path: impl Into<PathBuf>) -> &Self {
        self.deny
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path.into());
        self
    }

    /// Reads number `n` (0 = the first after opening) of `path` fail.
    pub fn fail_reads(&self, path: impl Into<PathBuf>, reads: &[u64]) -> &Self {
        self.fail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.into(), reads.to_vec());
        self
    }

    fn denied(&self, path: &Path) -> bool {
        let path = canonical(path);
        self.deny
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|d| canonical(d) == path)
    }
}

impl Sysfs for FaultySysfs {
    fn read_string(&self, path: &Path) -> io::Result<String> {
        if self.denied(path) {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        std::fs::read_to_string(path)
    }

    fn open_counter(&self, path: &Path) -> io::Result<Box<dyn CounterFile>> {
        if self.denied(path) {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let inner = RealSysfs::with_keep_open(false).open_counter(path)?;
        let fails = self
            .fail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(p, _)| canonical(p) == canonical(path))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Ok(Box::new(FaultyCounter { inner, fails, n: 0 }))
    }
}

/// The same file reached through a flat link or the nested folder compares equal.
fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

struct FaultyCounter {
    inner: Box<dyn CounterFile>,
    fails: Vec<u64>,
    n: u64,
}

impl CounterFile for FaultyCounter {
    fn read_u64(&mut self) -> io::Result<u64> {
        // Read 0 is discovery's own check; test reads count from 1.
        let n = self.n;
        self.n += 1;
        if n > 0 && self.fails.contains(&(n - 1)) {
            return Err(io::Error::other("simulated read error"));
        }
        self.inner.read_u64()
    }
}

/// A fake GPU whose counters a test sets.
#[derive(Clone)]
pub struct FakeGpu {
    pub name: String,
    pub uuid: String,
    /// None: the GPU has no energy counter (pre-Volta).
    pub energy_mj: Option<Arc<AtomicU64>>,
    pub power_mw: Arc<AtomicU32>,
    pub limit_mw: u32,
    pub cc: (i32, i32),
    pub pids: Vec<u32>,
    /// Throttle reasons the GPU reports.
    pub throttle: Arc<Mutex<Vec<String>>>,
}

impl FakeGpu {
    /// A Volta-or-newer GPU with an energy counter.
    pub fn with_counter(name: &str, uuid: &str) -> Self {
        FakeGpu {
            name: name.into(),
            uuid: uuid.into(),
            energy_mj: Some(Arc::new(AtomicU64::new(5_000_000))),
            power_mw: Arc::new(AtomicU32::new(100_000)),
            limit_mw: 300_000,
            cc: (8, 0),
            pids: vec![],
            throttle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// An older GPU that only reports power.
    pub fn polling_only(name: &str, uuid: &str, cc: (i32, i32)) -> Self {
        FakeGpu {
            energy_mj: None,
            cc,
            ..Self::with_counter(name, uuid)
        }
    }
}

/// A fake NVML library.
pub struct FakeNvml {
    pub gpus: Vec<FakeGpu>,
    pub driver: String,
}

impl FakeNvml {
    pub fn new(gpus: Vec<FakeGpu>) -> Self {
        FakeNvml {
            gpus,
            driver: "550.54.15".into(),
        }
    }
}

/// A machine without the NVIDIA driver.
pub struct MissingNvml;

impl GpuLibrary for MissingNvml {
    fn driver_version(&self) -> Result<String, GpuError> {
        Err(GpuError::LibraryNotFound("NVML library not found".into()))
    }
    fn device_count(&self) -> Result<u32, GpuError> {
        Err(GpuError::LibraryNotFound("NVML library not found".into()))
    }
    fn device(&self, _: u32) -> Result<Box<dyn GpuDevice>, GpuError> {
        Err(GpuError::LibraryNotFound("NVML library not found".into()))
    }
}

impl GpuLibrary for FakeNvml {
    fn driver_version(&self) -> Result<String, GpuError> {
        Ok(self.driver.clone())
    }
    fn device_count(&self) -> Result<u32, GpuError> {
        Ok(self.gpus.len() as u32)
    }
    fn device(&self, index: u32) -> Result<Box<dyn GpuDevice>, GpuError> {
        self.gpus
            .get(index as usize)
            .cloned()
            .map(|g| Box::new(g) as Box<dyn GpuDevice>)
            .ok_or_else(|| GpuError::Other(format!("no GPU {index}")))
    }
}

impl GpuDevice for FakeGpu {
    fn name(&self) -> Result<String, GpuError> {
        Ok(self.name.clone())
    }
    fn uuid(&self) -> Result<String, GpuError> {
        Ok(self.uuid.clone())
    }
    fn total_energy_mj(&self) -> Result<u64, GpuError> {
        self.energy_mj
            .as_ref()
            .map(|e| e.load(Ordering::SeqCst))
            .ok_or(GpuError::NotSupported)
    }
    fn power_mw(&self) -> Result<u32, GpuError> {
        match self.power_mw.load(Ordering::SeqCst) {
            u32::MAX => Err(GpuError::Other("simulated failure".into())),
            p => Ok(p),
        }
    }
    fn power_limit_mw(&self) -> Result<u32, GpuError> {
        Ok(self.limit_mw)
    }
    fn compute_capability(&self) -> Result<(i32, i32), GpuError> {
        Ok(self.cc)
    }
    fn compute_pids(&self) -> Result<Vec<u32>, GpuError> {
        Ok(self.pids.clone())
    }
    fn throttle_reasons(&self) -> Result<Vec<String>, GpuError> {
        Ok(self
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }
}

/// A source whose energy is a known wattage times time since it was created.
pub struct ScriptedSource {
    domains: Vec<DomainInfo>,
    watts: f64,
    t0: u64,
}

impl ScriptedSource {
    /// One package domain drawing `watts` constantly.
    pub fn linear(name: &str, watts: f64) -> Self {
        ScriptedSource {
            domains: vec![DomainInfo {
                source: SourceKind::Rapl,
                name: name.into(),
                kind: DomainKind::Package,
                provenance: Provenance::Measured,
                method: Method::Counter,
                location: "scripted".into(),
                counter_range_uj: None,
                nominal_update_ms: 1.0,
                max_power_w: None,
                note: None,
            }],
            watts,
            t0: monotonic_ns(),
        }
    }
}

impl EnergySource for ScriptedSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Rapl
    }
    fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }
    fn read_into(&mut self, now_ns: u64, out: &mut [Option<u64>]) {
        out[0] = Some((now_ns.saturating_sub(self.t0) as f64 * self.watts / 1e3) as u64);
    }
}
