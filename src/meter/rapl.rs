//! RAPL energy counters through Linux powercap (Intel and AMD CPUs).
//!
//! The powercap folder lists every zone flat and also nests subzones inside their parent, next to
//! counter-less control-type folders. Discovery walks both, keys zones by their folder name
//! (`intel-rapl:0:1`), counts each once, and builds the domain tree from the names.

use super::sysfs::{CounterFile, Sysfs};
use super::{DomainInfo, DomainKind, EnergySource, InvalidReads, Method, Provenance, SourceKind};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

/// Where Linux exposes powercap zones.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// Power assumed when a zone states no maximum, to size the read interval against wraps.
const ASSUMED_MAX_POWER_W: f64 = 1000.0;

/// Which interface a zone comes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    /// `intel-rapl:*` (MSR; also used by AMD).
    Msr,
    /// `intel-rapl-mmio:*`.
    Mmio,
}

/// A parsed zone folder name such as `intel-rapl:0:1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ZoneId {
    pub interface: Interface,
    pub path: Vec<u32>,
}

impl ZoneId {
    /// Parses `intel-rapl:A[:B...]` or `intel-rapl-mmio:A[:B...]`.
    pub fn parse(s: &str) -> Option<ZoneId> {
        let (interface, rest) = if let Some(r) = s.strip_prefix("intel-rapl-mmio:") {
            (Interface::Mmio, r)
        } else if let Some(r) = s.strip_prefix("intel-rapl:") {
            (Interface::Msr, r)
        } else {
            return None;
        };
        let path: Option<Vec<u32>> = rest.split(':').map(|p| p.parse().ok()).collect();
        let path = path?;
        (!path.is_empty()).then_some(ZoneId { interface, path })
    }

    /// The parent zone's id, for subzones.
    pub fn parent(&self) -> Option<ZoneId> {
        (self.path.len() > 1).then(|| ZoneId {
            interface: self.interface,
            path: self.path[..self.path.len() - 1].to_vec(),
        })
    }

    /// The folder name this id was parsed from.
    pub fn dir_name(&self) -> String {
        let prefix = match self.interface {
            Interface::Msr => "intel-rapl",
            Interface::Mmio => "intel-rapl-mmio",
        };
        let nums: Vec<String> = self.path.iter().map(u32::to_string).collect();
        format!("{prefix}:{}", nums.join(":"))
    }
}

/// One zone found under the powercap root.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneReport {
    pub zone: String,
    pub path: PathBuf,
    /// Contents of the zone's `name` file.
    pub raw_name: String,
    /// The domain name joulebench reports (`package-0`, `dram-1`, `psys`).
    pub domain: String,
    pub kind: DomainKind,
    pub counter_range_uj: Option<u64>,
    /// `available`, or why this zone is not used.
    pub status: ZoneStatus,
}

/// Whether a zone is metered.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum ZoneStatus {
    Available,
    /// Duplicate of another zone covering the same domain; that one is used.
    Duplicate(String),
    Unavailable(String),
}

/// Everything discovery learned: the usable counters and every zone's status.
pub struct Discovery {
    pub root: PathBuf,
    pub zones: Vec<ZoneReport>,
    /// Why RAPL as a whole cannot be used, when nothing is usable.
    pub unavailable: Option<String>,
    counters: Vec<OpenCounter>,
}

/// A zone's counter, opened and read once at discovery.
struct OpenCounter {
    zone: usize,
    file: Box<dyn CounterFile>,
    first: u64,
    max_power_uw: Option<u64>,
}

struct Found {
    id: ZoneId,
    dir: PathBuf,
}

fn walk(root: &Path) -> io::Result<Vec<Found>> {
    let mut seen: BTreeMap<ZoneId, PathBuf> = BTreeMap::new();
    let mut queue: VecDeque<(PathBuf, usize)> = VecDeque::from([(root.to_path_buf(), 0)]);
    while let Some((dir, depth)) = queue.pop_front() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if depth == 0 => return Err(e),
            Err(_) => continue,
        };
        let mut names: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        names.sort();
        for (name, path) in names {
            if let Some(id) = ZoneId::parse(&name) {
                if !path.is_dir() || seen.contains_key(&id) {
                    continue;
                }
                seen.insert(id, path.clone());
                if depth < 6 {
                    queue.push_back((path, depth + 1));
                }
            } else if depth == 0 && (name == "intel-rapl" || name == "intel-rapl-mmio") {
                queue.push_back((path, depth + 1));
            }
        }
    }
    Ok(seen
        .into_iter()
        .map(|(id, dir)| Found { id, dir })
        .collect())
}

fn kind_of(raw_name: &str) -> DomainKind {
    let n = raw_name.trim();
    if n.starts_with("package") {
        DomainKind::Package
    } else if n == "core" || n.starts_with("core-") {
        DomainKind::Core
    } else if n == "uncore" || n.starts_with("uncore-") {
        DomainKind::Uncore
    } else if n == "dram" || n.starts_with("dram-") {
        DomainKind::Dram
    } else if n == "psys" || n.starts_with("psys-") {
        DomainKind::Psys
    } else {
        DomainKind::Other
    }
}

/// The permission-denied explanation with its remedies.
pub fn permission_remedy(path: &Path, root: &Path) -> String {
    let r = root.display();
    format!(
        "permission denied reading {}: since Linux 5.10 (CVE-2020-8694, \"Platypus\") energy_uj is \
         readable by root only. Remedies: run joulebench with sudo; or, until the next reboot, \
         `sudo chmod a+r {r}/intel-rapl:*/energy_uj {r}/intel-rapl:*:*/energy_uj`; or persistently, \
         a systemd-tmpfiles rule: `printf 'z {r}/intel-rapl:*/energy_uj 0444 - - -\\nz \
         {r}/intel-rapl:*:*/energy_uj 0444 - - -\\n' | sudo tee /etc/tmpfiles.d/joulebench-rapl.conf \
         && sudo systemd-tmpfiles --create /etc/tmpfiles.d/joulebench-rapl.conf` (this exposes \
         the side channel the restriction closes; see README)",
        path.display()
    )
}

/// Finds every RAPL zone under `root` and opens the counters that can be read.
pub fn discover(root: &Path, fs: &dyn Sysfs) -> Discovery {
    let mut d = Discovery {
        root: root.to_path_buf(),
        zones: Vec::new(),
        unavailable: None,
        counters: Vec::new(),
    };
    if !root.is_dir() {
        d.unavailable = Some(format!(
            "no powercap tree at {} (virtual machine or container?)",
            root.display()
        ));
        return d;
    }
    let found = match walk(root) {
        Ok(f) => f,
        Err(e) => {
            d.unavailable = Some(format!("cannot list {}: {e}", root.display()));
            return d;
        }
    };
    if found.is_empty() {
        d.unavailable = Some(format!(
            "no RAPL zones under {} (is the intel_rapl_msr or intel_rapl_common module loaded? \
             `sudo modprobe intel_rapl_msr`)",
            root.display()
        ));
        return d;
    }

    let raw_names: BTreeMap<ZoneId, Option<String>> = found
        .iter()
        .map(|f| {
            let n = fs.read_string(&f.dir.join("name")).ok();
            (f.id.clone(), n.map(|s| s.trim().to_string()))
        })
        .collect();

    // Socket suffix of a package zone: "package-1" -> "1", "package-0-die-1" -> "0-die-1".
    let socket_of = |id: &ZoneId| -> String {
        let top = ZoneId {
            interface: id.interface,
            path: vec![id.path[0]],
        };
        match raw_names.get(&top).cloned().flatten() {
            Some(n) if n.starts_with("package-") => n["package-".len()..].to_string(),
            _ => id.path[0].to_string(),
        }
    };

    let mut opened: Vec<Option<(Box<dyn CounterFile>, u64)>> = Vec::new();
    for f in &found {
        let zone = f.id.dir_name();
        let raw_name = raw_names.get(&f.id).cloned().flatten().unwrap_or_default();
        let kind = kind_of(&raw_name);
        let domain = match kind {
            DomainKind::Package => raw_name.clone(),
            DomainKind::Psys if f.id.parent().is_none() => raw_name.clone(),
            _ => format!("{raw_name}-{}", socket_of(&f.id)),
        };
        let range = fs
            .read_string(&f.dir.join("max_energy_range_uj"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|r| *r > 0);
        let energy = f.dir.join("energy_uj");
        let mut status = ZoneStatus::Available;
        let mut handle = None;
        if raw_name.is_empty() {
            status = ZoneStatus::Unavailable(format!("{} has no readable name file", zone));
        } else if !energy.exists() {
            status = ZoneStatus::Unavailable("no energy_uj counter in this zone".into());
        } else {
            match fs.open_counter(&energy).and_then(|mut c| {
                let v = c.read_u64()?;
                Ok((c, v))
            }) {
                Ok((c, v)) => match range {
                    Some(r) if v > r => {
                        status = ZoneStatus::Unavailable(format!(
                            "{} reads {v}, above max_energy_range_uj {r}",
                            energy.display()
                        ))
                    }
                    _ => handle = Some((c, v)),
                },
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    status = ZoneStatus::Unavailable(permission_remedy(&energy, root));
                }
                Err(e) => {
                    status =
                        ZoneStatus::Unavailable(format!("cannot read {}: {e}", energy.display()))
                }
            }
        }
        d.zones.push(ZoneReport {
            zone,
            path: f.dir.clone(),
            raw_name,
            domain,
            kind,
            counter_range_uj: range,
            status,
        });
        opened.push(handle);
    }

    resolve_duplicates(&mut d.zones, &mut opened);

    for (i, h) in opened.into_iter().enumerate() {
        if let Some((c, first)) = h {
            let max_power = fs
                .read_string(&d.zones[i].path.join("constraint_0_max_power_uw"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|p| *p > 0);
            d.counters.push(OpenCounter {
                zone: i,
                file: c,
                first,
                max_power_uw: max_power,
            });
        }
    }
    if d.counters.is_empty() {
        let reasons: Vec<String> = d
            .zones
            .iter()
            .filter_map(|z| match &z.status {
                ZoneStatus::Unavailable(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        let first = reasons.first().cloned().unwrap_or_default();
        d.unavailable = Some(if reasons.len() > 1 {
            format!(
                "no RAPL zone could be read ({} zones); {first}",
                reasons.len()
            )
        } else {
            first
        });
    }
    d
}

/// Among zones with the same domain name, uses one: the mmio zone instead of the MSR one when it
/// can be read; same-interface clashes are kept apart by renaming with the zone id.
fn resolve_duplicates(
    zones: &mut [ZoneReport],
    opened: &mut [Option<(Box<dyn CounterFile>, u64)>],
) {
    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, z) in zones.iter().enumerate() {
        by_name.entry(z.domain.clone()).or_default().push(i);
    }
    for (_, idx) in by_name {
        if idx.len() < 2 {
            continue;
        }
        let usable = |i: usize| zones[i].status == ZoneStatus::Available;
        let iface = |i: usize| ZoneId::parse(&zones[i].zone).map(|z| z.interface);
        let mmio: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| iface(i) == Some(Interface::Mmio))
            .collect();
        let msr: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| iface(i) == Some(Interface::Msr))
            .collect();
        if !mmio.is_empty() && !msr.is_empty() {
            let (keep, drop) = if mmio.iter().any(|&i| usable(i)) {
                (mmio, msr)
            } else {
                (msr, mmio)
            };
            let kept = zones[keep[0]].zone.clone();
            for i in drop {
                zones[i].status = ZoneStatus::Duplicate(format!(
                    "same domain as {kept}, which is used instead (never both)"
                ));
                opened[i] = None;
            }
            if keep.len() > 1 {
                for &i in &keep {
                    zones[i].domain = format!("{}@{}", zones[i].domain, zones[i].zone);
                }
            }
        } else {
            for &i in &idx {
                zones[i].domain = format!("{}@{}", zones[i].domain, zones[i].zone);
            }
        }
    }
}

/// Unwraps a counter that wraps at `range`, keeping a u64 running total.
#[derive(Debug, Clone)]
pub struct CounterUnwrap {
    range: Option<u64>,
    last: u64,
    total: u64,
}

impl CounterUnwrap {
    /// Starts from a first raw reading; the total starts at zero.
    pub fn new(first: u64, range: Option<u64>) -> Self {
        CounterUnwrap {
            range,
            last: first,
            total: 0,
        }
    }

    /// Feeds one raw reading; returns the running total, or why the reading is invalid.
    pub fn update(&mut self, raw: u64) -> Result<u64, String> {
        let delta = match self.range {
            Some(r) if raw > r => {
                return Err(format!("value {raw} above max_energy_range_uj {r}"));
            }
            Some(r) if raw < self.last => r - self.last + raw,
            None if raw < self.last => {
                self.last = raw;
                return Err(format!(
                    "counter went back from {} to {raw} and no max_energy_range_uj is known; \
                     energy in this interval is lost",
                    self.last
                ));
            }
            _ => raw - self.last,
        };
        self.last = raw;
        self.total = self.total.saturating_add(delta);
        Ok(self.total)
    }

    /// The running total in microjoules.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// The RAPL energy source: every usable zone, unwrapped on every read.
pub struct RaplSource {
    domains: Vec<DomainInfo>,
    counters: Vec<Box<dyn CounterFile>>,
    unwraps: Vec<CounterUnwrap>,
    invalid: InvalidReads,
    max_interval_ms: Option<f64>,
    root: PathBuf,
}

impl RaplSource {
    /// Builds the source from a discovery; `Err` carries the reason when nothing is usable.
    pub fn from_discovery(mut d: Discovery) -> Result<(RaplSource, Vec<ZoneReport>), String> {
        if let Some(reason) = d.unavailable.take() {
            return Err(reason);
        }
        let mut domains = Vec::new();
        let mut counters = Vec::new();
        let mut unwraps = Vec::new();
        let mut max_interval_ms: Option<f64> = None;
        for OpenCounter {
            zone,
            file: c,
            first,
            max_power_uw,
        } in d.counters.drain(..)
        {
            let z = &d.zones[zone];
            domains.push(DomainInfo {
                source: SourceKind::Rapl,
                name: z.domain.clone(),
                kind: z.kind,
                provenance: Provenance::Measured,
                method: Method::Counter,
                location: z.path.display().to_string(),
                counter_range_uj: z.counter_range_uj,
                nominal_update_ms: 1.0,
                note: domain_note(z.kind),
            });
            if let Some(r) = z.counter_range_uj {
                let watts = max_power_uw.map_or(ASSUMED_MAX_POWER_W, |p| p as f64 / 1e6);
                // µJ / W = µs; read at least twice per shortest wrap period.
                let half_wrap_ms = r as f64 / watts / 1000.0 / 2.0;
                max_interval_ms =
                    Some(max_interval_ms.map_or(half_wrap_ms, |m| m.min(half_wrap_ms)));
            }
            unwraps.push(CounterUnwrap::new(first, z.counter_range_uj));
            counters.push(c);
        }
        let invalid = InvalidReads::new(domains.len());
        Ok((
            RaplSource {
                domains,
                counters,
                unwraps,
                invalid,
                max_interval_ms,
                root: d.root,
            },
            d.zones,
        ))
    }
}

fn domain_note(kind: DomainKind) -> Option<String> {
    match kind {
        DomainKind::Core | DomainKind::Uncore => {
            Some("inside its package; not added to any total".into())
        }
        DomainKind::Dram => {
            Some("separate from the package (nested in sysfs only); added to the CPU total".into())
        }
        DomainKind::Psys => Some(
            "whole platform (roughly package + dram + more); reported on its own, not added".into(),
        ),
        DomainKind::Other => Some("unknown RAPL domain; reported, not added".into()),
        _ => None,
    }
}

impl EnergySource for RaplSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Rapl
    }

    fn domains(&self) -> &[DomainInfo] {
        &self.domains
    }

    fn read_into(&mut self, _now_ns: u64, out: &mut [Option<u64>]) {
        for (i, c) in self.counters.iter_mut().enumerate() {
            out[i] = match c.read_u64() {
                Ok(raw) => match self.unwraps[i].update(raw) {
                    Ok(total) => Some(total),
                    Err(why) => {
                        self.invalid.record(i, || why);
                        None
                    }
                },
                Err(e) => {
                    let path = &self.domains[i].location;
                    self.invalid.record(i, || format!("{path}/energy_uj: {e}"));
                    None
                }
            };
        }
    }

    fn diagnostics(&self) -> Vec<String> {
        self.invalid.lines(&self.domains)
    }

    fn max_read_interval_ms(&self) -> Option<f64> {
        self.max_interval_ms
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "powercap_root": self.root.display().to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zone_names_parse() {
        let z = ZoneId::parse("intel-rapl:0:1").unwrap();
        assert_eq!(z.interface, Interface::Msr);
        assert_eq!(z.path, vec![0, 1]);
        assert_eq!(z.parent().unwrap().dir_name(), "intel-rapl:0");
        assert_eq!(
            ZoneId::parse("intel-rapl-mmio:0").unwrap().interface,
            Interface::Mmio
        );
        assert!(ZoneId::parse("intel-rapl").is_none());
        assert!(ZoneId::parse("intel-rapl:").is_none());
        assert!(ZoneId::parse("intel-rapl:x").is_none());
        assert!(ZoneId::parse("dtpm:0").is_none());
    }

    #[test]
    fn unwrap_handles_one_wrap_and_exact_range() {
        let range = 1_000;
        let mut u = CounterUnwrap::new(900, Some(range));
        assert_eq!(u.update(950).unwrap(), 50);
        assert_eq!(u.update(1_000).unwrap(), 100); // exactly at the range
        assert_eq!(u.update(30).unwrap(), 130); // wrapped
        assert_eq!(u.update(30).unwrap(), 130);
        assert!(u.update(1_001).is_err());
        assert_eq!(u.total(), 130);
        assert_eq!(u.update(40).unwrap(), 140);
    }

    #[test]
    fn unwrap_without_range_refuses_to_guess() {
        let mut u = CounterUnwrap::new(500, None);
        assert_eq!(u.update(700).unwrap(), 200);
        assert!(u.update(100).is_err());
        assert_eq!(u.update(150).unwrap(), 250);
    }

    proptest! {
        #[test]
        fn unwrapped_total_equals_true_energy(
            range in 1_000u64..10_000_000,
            start_frac in 0.0f64..1.0,
            steps in proptest::collection::vec(0u64..1_000_000, 1..50),
        ) {
            // Every step is below the range, so at most one wrap hides between reads.
            let start = (range as f64 * start_frac) as u64;
            let mut u = CounterUnwrap::new(start, Some(range));
            let mut truth = 0u64;
            let mut raw = start;
            for s in steps {
                let s = s % range;
                truth += s;
                raw = (raw + s) % range;
                prop_assert_eq!(u.update(raw).unwrap(), truth);
            }
        }
    }
}
