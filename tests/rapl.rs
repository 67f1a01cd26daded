//! RAPL through fake powercap trees: discovery, the domain tree, totals, wraps and faults.

use joulebench::meter::fake::{FakePowercap, FaultySysfs, ZoneSpec};
use joulebench::meter::rapl::{RaplSource, ZoneStatus, discover};
use joulebench::meter::sysfs::RealSysfs;
use joulebench::meter::totals::totals;
use joulebench::meter::{DomainKind, EnergySource, Provenance};
use std::path::Path;

fn open(root: &Path) -> (RaplSource, Vec<joulebench::meter::rapl::ZoneReport>) {
    RaplSource::from_discovery(discover(root, &RealSysfs::for_root(root))).expect("usable")
}

/// Reads once, applies increments (µJ) to zones, reads again; returns energy (J) per domain name.
fn deltas(tree: &FakePowercap, src: &mut RaplSource, add: &[(&str, u64)]) -> Vec<(String, f64)> {
    let n = src.domains().len();
    let mut a = vec![None; n];
    src.read_into(0, &mut a);
    for (zone, uj) in add {
        let p = tree.zone_dir(zone).unwrap().join("energy_uj");
        let now: u64 = std::fs::read_to_string(&p).unwrap().trim().parse().unwrap();
        tree.set_energy(zone, now + uj).unwrap();
    }
    let mut b = vec![None; n];
    src.read_into(0, &mut b);
    src.domains()
        .iter()
        .zip(a.iter().zip(&b))
        .map(|(d, (x, y))| (d.name.clone(), (y.unwrap() - x.unwrap()) as f64 / 1e6))
        .collect()
}

fn cpu_total(src: &RaplSource, e: &[(String, f64)]) -> Option<f64> {
    let energies: Vec<Option<f64>> = e.iter().map(|(_, j)| Some(*j)).collect();
    totals(src.domains(), &energies).cpu_j
}

fn names(src: &RaplSource) -> Vec<String> {
    let mut v: Vec<String> = src.domains().iter().map(|d| d.name.clone()).collect();
    v.sort();
    v
}

#[test]
fn intel_client_counts_each_zone_once_and_never_adds_core_or_psys() {
    let dir = tempfile::tempdir().unwrap();
    let tree = FakePowercap::intel_client(dir.path()).unwrap();
    let (mut src, zones) = open(dir.path());
    assert_eq!(
        zones.len(),
        5,
        "flat links and nesting must not double zones"
    );
    assert_eq!(
        names(&src),
        ["core-0", "dram-0", "package-0", "psys", "uncore-0"]
    );
    let kinds: Vec<DomainKind> = src.domains().iter().map(|d| d.kind).collect();
    assert!(kinds.contains(&DomainKind::Psys) && kinds.contains(&DomainKind::Uncore));
    let e = deltas(
        &tree,
        &mut src,
        &[
            ("intel-rapl:0", 10_000_000),
            ("intel-rapl:0:0", 6_000_000),
            ("intel-rapl:0:1", 1_000_000),
            ("intel-rapl:0:2", 2_000_000),
            ("intel-rapl:1", 15_000_000),
        ],
    );
    let t = totals(
        src.domains(),
        &e.iter().map(|(_, j)| Some(*j)).collect::<Vec<_>>(),
    );
    assert_eq!(t.cpu_j, Some(12.0), "package + dram only");
    assert_eq!(t.psys_j, Some(15.0));
    assert_eq!(t.gpu_j, None);
    assert!(
        src.domains()
            .iter()
            .all(|d| d.provenance == Provenance::Measured)
    );
}

#[test]
fn two_socket_server_uses_mmio_instead_of_the_duplicate_package() {
    let dir = tempfile::tempdir().unwrap();
    let tree = FakePowercap::two_socket_server(dir.path()).unwrap();
    let (mut src, zones) = open(dir.path());
    assert_eq!(names(&src), ["dram-0", "dram-1", "package-0", "package-1"]);
    let dup = zones.iter().find(|z| z.zone == "intel-rapl:0").unwrap();
    assert!(
        matches!(dup.status, ZoneStatus::Duplicate(_)),
        "{:?}",
        dup.status
    );
    let pkg0 = src
        .domains()
        .iter()
        .find(|d| d.name == "package-0")
        .unwrap();
    assert!(pkg0.location.contains("intel-rapl-mmio:0"));
    let e = deltas(
        &tree,
        &mut src,
        &[
            ("intel-rapl-mmio:0", 40_000_000),
            ("intel-rapl:0", 99_000_000), // the duplicate: must not count
            ("intel-rapl:0:0", 5_000_000),
            ("intel-rapl:1", 30_000_000),
            ("intel-rapl:1:0", 4_000_000),
        ],
    );
    assert_eq!(cpu_total(&src, &e), Some(79.0));
}

/// Recent Xeons expose `intel-rapl-tpmi:*` zones, next to (or instead of) the MSR ones: they
/// are read like any zone and a domain both cover is counted once, from TPMI.
#[test]
fn tpmi_zones_are_read_and_never_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let tree = FakePowercap::create(
        dir.path(),
        &[
            ZoneSpec::new("intel-rapl:0", "package-0"),
            ZoneSpec::new("intel-rapl-tpmi:0", "package-0"),
            ZoneSpec::new("intel-rapl-tpmi:0:0", "dram"),
        ],
    )
    .unwrap();
    let (mut src, zones) = open(dir.path());
    assert_eq!(names(&src), ["dram-0", "package-0"]);
    let dup = zones.iter().find(|z| z.zone == "intel-rapl:0").unwrap();
    assert!(
        matches!(dup.status, ZoneStatus::Duplicate(_)),
        "{:?}",
        dup.status
    );
    let e = deltas(
        &tree,
        &mut src,
        &[
            ("intel-rapl-tpmi:0", 40_000_000),
            ("intel-rapl:0", 99_000_000), // the duplicate: must not count
            ("intel-rapl-tpmi:0:0", 5_000_000),
        ],
    );
    assert_eq!(cpu_total(&src, &e), Some(45.0));
}

#[test]
fn mmio_duplicate_falls_back_to_msr_when_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    FakePowercap::two_socket_server(dir.path()).unwrap();
    let fs = FaultySysfs::new();
    fs.deny(
        dir.path()
            .join("intel-rapl-mmio/intel-rapl-mmio:0/energy_uj"),
    );
    let (src, zones) = RaplSource::from_discovery(discover(dir.path(), &fs)).unwrap();
    let pkg0 = src
        .domains()
        .iter()
        .find(|d| d.name == "package-0")
        .unwrap();
    assert!(pkg0.location.ends_with("intel-rapl:0"), "{}", pkg0.location);
    let mmio = zones
        .iter()
        .find(|z| z.zone == "intel-rapl-mmio:0")
        .unwrap();
    assert!(!matches!(mmio.status, ZoneStatus::Available));
}

#[test]
fn amd_two_die_sums_both_packages_once() {
    let dir = tempfile::tempdir().unwrap();
    let tree = FakePowercap::amd_two_die(dir.path()).unwrap();
    let (mut src, _) = open(dir.path());
    assert_eq!(names(&src), ["core-0", "core-1", "package-0", "package-1"]);
    let e = deltas(
        &tree,
        &mut src,
        &[
            ("intel-rapl:0", 20_000_000),
            ("intel-rapl:0:0", 15_000_000),
            ("intel-rapl:1", 22_000_000),
            ("intel-rapl:1:0", 16_000_000),
        ],
    );
    assert_eq!(cpu_total(&src, &e), Some(42.0));
}

#[test]
fn cores_only_is_a_labelled_lower_bound() {
    let dir = tempfile::tempdir().unwrap();
    let tree = FakePowercap::create(
        dir.path(),
        &[
            ZoneSpec::new("intel-rapl:0", "core"),
            ZoneSpec::new("intel-rapl:1", "core"),
        ],
    )
    .unwrap();
    let (mut src, _) = open(dir.path());
    let e = deltas(
        &tree,
        &mut src,
        &[("intel-rapl:0", 1_000_000), ("intel-rapl:1", 2_000_000)],
    );
    let t = totals(
        src.domains(),
        &e.iter().map(|(_, j)| Some(*j)).collect::<Vec<_>>(),
    );
    assert_eq!(t.cpu_j, Some(3.0));
    assert!(t.cpu_basis.unwrap().contains("lower bound"));
}

#[test]
fn nested_only_and_flat_only_layouts_and_odd_numbering() {
    // Nested only: no flat links at the top.
    let dir = tempfile::tempdir().unwrap();
    FakePowercap::create(
        dir.path(),
        &[
            ZoneSpec::new("intel-rapl:0", "package-0"),
            ZoneSpec::new("intel-rapl:0:7", "dram"),
        ],
    )
    .unwrap();
    for l in ["intel-rapl:0", "intel-rapl:0:7"] {
        std::fs::remove_file(dir.path().join(l)).unwrap();
    }
    let (src, _) = open(dir.path());
    assert_eq!(names(&src), ["dram-0", "package-0"]);

    // Flat only: real folders at the top, no control-type folder, no nesting.
    let flat = tempfile::tempdir().unwrap();
    for (z, n) in [
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:0:3", "dram"),
        ("intel-rapl:1", "package-1"),
    ] {
        let d = flat.path().join(z);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("name"), format!("{n}\n")).unwrap();
        std::fs::write(d.join("energy_uj"), "5\n").unwrap();
        std::fs::write(d.join("max_energy_range_uj"), "1000000\n").unwrap();
    }
    let (src, _) = open(flat.path());
    assert_eq!(names(&src), ["dram-0", "package-0", "package-1"]);
}

#[test]
fn one_wrap_and_a_value_exactly_at_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let range = 1_000_000_000u64;
    let tree = FakePowercap::create(
        dir.path(),
        &[ZoneSpec {
            energy_uj: range - 3_000_000,
            range_uj: range,
            ..ZoneSpec::new("intel-rapl:0", "package-0")
        }],
    )
    .unwrap();
    let (mut src, _) = open(dir.path());
    let mut v = [None];
    tree.set_energy("intel-rapl:0", range).unwrap();
    src.read_into(0, &mut v);
    assert_eq!(v[0], Some(3_000_000), "exactly at the range");
    tree.set_energy("intel-rapl:0", 2_000_000).unwrap();
    src.read_into(0, &mut v);
    assert_eq!(v[0], Some(5_000_000), "across the wrap");
    tree.set_energy("intel-rapl:0", 2_500_000).unwrap();
    src.read_into(0, &mut v);
    assert_eq!(v[0], Some(5_500_000));
    assert!(src.diagnostics().is_empty());
}

#[test]
fn read_error_mid_run_is_invalid_not_zero_and_loses_no_energy() {
    let dir = tempfile::tempdir().unwrap();
    let tree = FakePowercap::intel_client(dir.path()).unwrap();
    let fs = FaultySysfs::new();
    let pkg = tree.zone_dir("intel-rapl:0").unwrap().join("energy_uj");
    fs.fail_reads(&pkg, &[1]);
    let (mut src, _) = RaplSource::from_discovery(discover(dir.path(), &fs)).unwrap();
    let i = src
        .domains()
        .iter()
        .position(|d| d.name == "package-0")
        .unwrap();
    let mut v = vec![None; src.domains().len()];
    let start: u64 = 1_000_000;
    for (k, add) in [(0u64, 1_000_000u64), (1, 2_000_000), (2, 3_000_000)] {
        tree.set_energy("intel-rapl:0", start + add).unwrap();
        src.read_into(0, &mut v);
        if k == 1 {
            assert_eq!(v[i], None, "a failed read is marked invalid");
        } else {
            assert_eq!(v[i], Some(add), "read {k}");
        }
    }
    let diag = src.diagnostics().join("\n");
    assert!(
        diag.contains("package-0") && diag.contains("1 invalid read"),
        "{diag}"
    );
    // Garbage in the file mid-run is invalid too.
    std::fs::write(&pkg, "not a number\n").unwrap();
    src.read_into(0, &mut v);
    assert_eq!(v[i], None);
}

#[test]
fn permission_denied_names_the_path_reason_and_remedies() {
    let dir = tempfile::tempdir().unwrap();
    let tree = FakePowercap::intel_client(dir.path()).unwrap();
    let fs = FaultySysfs::new();
    for z in [
        "intel-rapl:0",
        "intel-rapl:0:0",
        "intel-rapl:0:1",
        "intel-rapl:0:2",
        "intel-rapl:1",
    ] {
        fs.deny(tree.zone_dir(z).unwrap().join("energy_uj"));
    }
    let err = match RaplSource::from_discovery(discover(dir.path(), &fs)) {
        Err(e) => e,
        Ok(_) => panic!("must be unavailable"),
    };
    for needle in [
        "permission denied",
        "energy_uj",
        "CVE-2020-8694",
        "sudo",
        "chmod a+r",
        "tmpfiles",
        "udev rule",
        "usermod -aG powercap",
        "setcap cap_dac_read_search+ep",
        "only the group's members",
        "every file on the machine",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
}

#[test]
fn one_denied_domain_leaves_the_others_usable() {
    let dir = tempfile::tempdir().unwrap();
    let tree = FakePowercap::intel_client(dir.path()).unwrap();
    let fs = FaultySysfs::new();
    fs.deny(tree.zone_dir("intel-rapl:1").unwrap().join("energy_uj"));
    let (src, zones) = RaplSource::from_discovery(discover(dir.path(), &fs)).unwrap();
    assert!(!src.domains().iter().any(|d| d.name == "psys"));
    let psys = zones.iter().find(|z| z.domain == "psys").unwrap();
    assert!(matches!(&psys.status, ZoneStatus::Unavailable(r) if r.contains("CVE-2020-8694")));
}

#[test]
fn missing_or_empty_tree_is_unavailable_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let d = discover(&missing, &RealSysfs::for_root(&missing));
    let why = d.unavailable.clone().unwrap();
    assert!(why.contains("no powercap tree at") && why.contains("virtual machine or container"));
    assert!(why.contains(&missing.display().to_string()));
    let d = discover(dir.path(), &RealSysfs::for_root(dir.path()));
    assert!(d.unavailable.unwrap().contains("no RAPL zones"));
}

#[test]
fn max_read_interval_keeps_reads_inside_one_wrap() {
    let dir = tempfile::tempdir().unwrap();
    FakePowercap::create(
        dir.path(),
        &[ZoneSpec {
            range_uj: 2_000_000, // 2 J: wraps in 2 ms at 1 kW
            ..ZoneSpec::new("intel-rapl:0", "package-0")
        }],
    )
    .unwrap();
    std::fs::write(
        dir.path()
            .join("intel-rapl/intel-rapl:0/constraint_0_max_power_uw"),
        "100000000\n",
    )
    .unwrap();
    let (src, _) = open(dir.path());
    // 2 J at 100 W wraps every 20 ms; reads must come at least every 10 ms.
    let m = src.max_read_interval_ms().unwrap();
    assert!((m - 10.0).abs() < 1e-9, "{m}");
}

/// One package of two reads `N/A`: it stays a domain whose every read is invalid, so the CPU
/// total is unknown (not the other package alone, which would read as a 50% improvement), and
/// the domain says why.
#[test]
fn an_unreadable_package_makes_the_cpu_total_unknown_not_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let tree = FakePowercap::two_socket_server(dir.path()).unwrap();
    std::fs::write(
        tree.zone_dir("intel-rapl:1").unwrap().join("energy_uj"),
        "N/A\n",
    )
    .unwrap();
    let (mut src, zones) = open(dir.path());
    let pkg1 = src
        .domains()
        .iter()
        .find(|d| d.name == "package-1")
        .expect("the unreadable package is kept");
    assert!(
        pkg1.note.as_deref().unwrap_or("").contains("unreadable"),
        "{pkg1:?}"
    );
    let z = zones.iter().find(|z| z.zone == "intel-rapl:1").unwrap();
    assert!(matches!(z.status, ZoneStatus::Unavailable(_)));
    let n = src.domains().len();
    let (mut a, mut b) = (vec![None; n], vec![None; n]);
    src.read_into(0, &mut a);
    tree.set_energy("intel-rapl-mmio:0", 10_000_000).unwrap();
    src.read_into(0, &mut b);
    let energies: Vec<Option<f64>> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| Some((y.as_ref()? - x.as_ref()?) as f64 / 1e6))
        .collect();
    assert_eq!(totals(src.domains(), &energies).cpu_j, None);
    assert!(
        src.diagnostics().iter().any(|l| l.contains("intel-rapl:1")),
        "{:?}",
        src.diagnostics()
    );
}
