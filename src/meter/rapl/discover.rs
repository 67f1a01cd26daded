//! Finding RAPL zones under a powercap root: the flat list and the nested folders walked once
//! each, zones keyed by folder name (`intel-rapl:0:1`), duplicates of a domain resolved, and
//! every zone's status (available, duplicate, or why not).

use crate::meter::DomainKind;
use crate::meter::sysfs::{CounterFile, Sysfs};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

/// Which interface a zone comes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    /// `intel-rapl:*` (MSR; also used by AMD).
    Msr,
    /// `intel-rapl-mmio:*`.
    Mmio,
    /// `intel-rapl-tpmi:*` (recent Xeons).
    Tpmi,
}

impl Interface {
    /// The folder-name prefix of its zones.
    pub fn prefix(self) -> &'static str {
        match self {
            Interface::Msr => "intel-rapl",
            Interface::Mmio => "intel-rapl-mmio",
            Interface::Tpmi => "intel-rapl-tpmi",
        }
    }
}

/// A parsed zone folder name such as `intel-rapl:0:1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ZoneId {
    pub interface: Interface,
    pub path: Vec<u32>,
}

impl ZoneId {
    /// Parses `intel-rapl:A[:B...]`, `intel-rapl-mmio:A[:B...]` or `intel-rapl-tpmi:A[:B...]`.
    pub fn parse(s: &str) -> Option<ZoneId> {
        let (interface, rest) = [Interface::Mmio, Interface::Tpmi, Interface::Msr]
            .into_iter()
            .find_map(|i| Some((i, s.strip_prefix(i.prefix())?.strip_prefix(':')?)))?;
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
        let nums: Vec<String> = self.path.iter().map(u32::to_string).collect();
        format!("{}:{}", self.interface.prefix(), nums.join(":"))
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
    pub(super) counters: Vec<OpenCounter>,
}

/// A zone's counter, opened and read once at discovery.
pub(super) struct OpenCounter {
    pub(super) zone: usize,
    pub(super) file: Box<dyn CounterFile>,
    pub(super) first: u64,
    pub(super) max_power_uw: Option<u64>,
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

/// The permission-denied explanation with its remedies, each with its trade-off.
pub fn permission_remedy(path: &Path, root: &Path) -> String {
    let r = root.display();
    format!(
        "permission denied reading {}: since Linux 5.10 (CVE-2020-8694, \"Platypus\") energy_uj is \
         readable by root only. Remedies, each reopening that side channel to someone: \
         (1) run joulebench with sudo (nothing persists; the whole run is root); \
         (2) until the next reboot, `sudo chmod a+r {r}/intel-rapl:*/energy_uj \
         {r}/intel-rapl:*:*/energy_uj` (every local user can read it); \
         (3) persistently for every user, a systemd-tmpfiles rule: `printf 'z \
         {r}/intel-rapl:*/energy_uj 0444 - - -\\nz {r}/intel-rapl:*:*/energy_uj 0444 - - -\\n' | \
         sudo tee /etc/tmpfiles.d/joulebench-rapl.conf && sudo systemd-tmpfiles --create \
         /etc/tmpfiles.d/joulebench-rapl.conf`; \
         (4) persistently for one group only (the usual non-root setup): `sudo groupadd -f \
         powercap && sudo usermod -aG powercap $USER`, then a udev rule, `echo 'ACTION==\"add\", \
         SUBSYSTEM==\"powercap\", RUN+=\"/bin/chgrp powercap /sys%p/energy_uj\", \
         RUN+=\"/bin/chmod g+r /sys%p/energy_uj\"' | sudo tee \
         /etc/udev/rules.d/99-joulebench-powercap.rules && sudo udevadm control --reload && \
         sudo udevadm trigger --subsystem-match=powercap` (only the group's members can read it; \
         log in again to join the group); \
         (5) a capability on the binary, `sudo setcap cap_dac_read_search+ep $(command -v \
         joulebench)` (no group or rule, but that binary can then read every file on the machine, \
         and a rebuilt or upgraded binary loses it). See README",
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
        let (status, handle) = open_zone(fs, &f.dir, &zone, &raw_name, range, root);
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

    d.counters = counters(fs, &d.zones, opened);
    if d.counters.is_empty() {
        d.unavailable = Some(none_readable(&d.zones));
    }
    d
}

/// An opened counter and its first value.
type Opened = (Box<dyn CounterFile>, u64);

/// A zone's status and, when it can be read, its opened counter with a first value.
fn open_zone(
    fs: &dyn Sysfs,
    dir: &Path,
    zone: &str,
    raw_name: &str,
    range: Option<u64>,
    root: &Path,
) -> (ZoneStatus, Option<Opened>) {
    let energy = dir.join("energy_uj");
    if raw_name.is_empty() {
        return (
            ZoneStatus::Unavailable(format!("{zone} has no readable name file")),
            None,
        );
    }
    if !energy.exists() {
        return (
            ZoneStatus::Unavailable("no energy_uj counter in this zone".into()),
            None,
        );
    }
    match fs.open_counter(&energy).and_then(|mut c| {
        let v = c.read_u64()?;
        Ok((c, v))
    }) {
        Ok((c, v)) => match range {
            Some(r) if v > r => (
                ZoneStatus::Unavailable(format!(
                    "{} reads {v}, above max_energy_range_uj {r}",
                    energy.display()
                )),
                None,
            ),
            _ => (ZoneStatus::Available, Some((c, v))),
        },
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => (
            ZoneStatus::Unavailable(permission_remedy(&energy, root)),
            None,
        ),
        Err(e) => (
            ZoneStatus::Unavailable(format!("cannot read {}: {e}", energy.display())),
            None,
        ),
    }
}

/// The zones' opened counters, each with its power limit where the zone states one.
fn counters(fs: &dyn Sysfs, zones: &[ZoneReport], opened: Vec<Option<Opened>>) -> Vec<OpenCounter> {
    let mut out = Vec::new();
    for (i, h) in opened.into_iter().enumerate() {
        if let Some((c, first)) = h {
            let max_power = fs
                .read_string(&zones[i].path.join("constraint_0_max_power_uw"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|p| *p > 0);
            out.push(OpenCounter {
                zone: i,
                file: c,
                first,
                max_power_uw: max_power,
            });
        }
    }
    out
}

/// Why no zone could be read: the first zone's reason, with the count when several failed.
fn none_readable(zones: &[ZoneReport]) -> String {
    let reasons: Vec<String> = zones
        .iter()
        .filter_map(|z| match &z.status {
            ZoneStatus::Unavailable(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    let first = reasons.first().cloned().unwrap_or_default();
    if reasons.len() > 1 {
        format!(
            "no RAPL zone could be read ({} zones); {first}",
            reasons.len()
        )
    } else {
        first
    }
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
        let present: std::collections::BTreeSet<Interface> =
            idx.iter().filter_map(|&i| iface(i)).collect();
        if present.len() > 1 {
            // One interface per domain: the first usable of TPMI, MMIO, MSR (else MSR).
            let chosen = [Interface::Tpmi, Interface::Mmio, Interface::Msr]
                .into_iter()
                .find(|f| idx.iter().any(|&i| iface(i) == Some(*f) && usable(i)))
                .unwrap_or(if present.contains(&Interface::Msr) {
                    Interface::Msr
                } else {
                    *present.iter().next().unwrap_or(&Interface::Msr)
                });
            let (keep, drop): (Vec<usize>, Vec<usize>) =
                idx.iter().partition(|&&i| iface(i) == Some(chosen));
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
