//! The fault table (docs/faults.md) on driven fake powercap trees with a known truth: every
//! figure is right within its stated uncertainty, or absent and flagged. `measure` cases go
//! through the library; suite cases run the binary.

use crate::common;

use crate::common::{jb, serial};

use joulebench::measure::{MeasureObserver, Quiet, measure};
use joulebench::meter::Provenance;
use joulebench::meter::fake::{FakePowercap, PowerDriver, ZoneSpec};
use joulebench::record::{Record, read_all};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::common::{close, measure_opts as opts, no_gpu as hw};

/// An Intel client tree with package-0 driven at 50 W and its DRAM at 10 W.
fn package_and_dram(root: &Path) -> (FakePowercap, PowerDriver) {
    let tree = FakePowercap::intel_client(root).unwrap();
    let driver = PowerDriver::start(
        &tree,
        &[("intel-rapl:0", 50.0), ("intel-rapl:0:2", 10.0)],
        Duration::from_micros(200),
    );
    (tree, driver)
}

/// DRAM freezes 300 ms into a 1 s run while its package keeps counting: not 0 W of DRAM and a
/// CPU total 10 W short, but an unknown total and a warning naming the zone; with partial
/// totals allowed, a labelled lower bound. A zone that never counted (core here) reads 0 W.
#[test]
fn a_stuck_zone_is_unknown_or_a_labelled_partial_total() {
    let _serial = serial();
    for allow_partial in [false, true] {
        let dir = common::counter_dir();
        let (_tree, driver) = package_and_dram(dir.path());
        let driver = Arc::new(driver);
        let d = Arc::clone(&driver);
        let freeze = std::thread::spawn(move || {
            // A fault injected inside the run, not a check of speed.
            std::thread::sleep(Duration::from_millis(300));
            d.set_watts(1, 0.0);
        });
        let mut o = opts(&["sleep", "1"]);
        o.allow_partial = allow_partial;
        let out = measure(
            &o,
            &hw(dir.path()),
            &Arc::new(AtomicBool::new(false)),
            &mut Quiet,
        )
        .unwrap();
        freeze.join().unwrap();
        let run = &out.result.per_run[0];
        let dram = run
            .domains
            .iter()
            .find(|x| x.name.starts_with("dram"))
            .unwrap();
        assert_eq!(
            dram.energy_j, None,
            "a stuck DRAM is not {:?} J",
            dram.energy_j
        );
        let w = out.result.warnings.join("\n");
        assert!(
            w.contains("intel-rapl:0:2") && w.contains("stopped advancing"),
            "{w}"
        );
        let core = run
            .domains
            .iter()
            .find(|x| x.name.starts_with("core"))
            .unwrap();
        assert_eq!(core.energy_j, Some(0.0), "a zone that never counted");
        let t = &run.totals;
        if allow_partial {
            let pkg = 50.0 * run.duration_s;
            assert!(close(t.cpu_j.unwrap(), pkg, 0.02), "{:?} vs {pkg}", t.cpu_j);
            assert_eq!(t.partial_missing, vec!["rapl/dram-0".to_string()]);
            assert!(w.contains("PARTIAL"), "{w}");
        } else {
            assert_eq!(t.cpu_j, None, "{t:?}");
            assert!(t.partial_missing.is_empty());
        }
    }
}

/// Counts measured runs as they start, to inject a fault during a chosen one.
struct OnRun<F: FnMut(&str)>(F);
impl<F: FnMut(&str)> MeasureObserver for OnRun<F> {
    fn phase(&mut self, what: &str) {
        (self.0)(what)
    }
}

/// The tree vanishes during run 2 of 3: run 1 is measured and right, runs 2 and 3 are unknown
/// (never 0 J measured), and the aggregate says it covers run 1 only.
#[test]
fn a_sensor_lost_during_run_2_of_3_leaves_run_1_right_and_the_rest_unknown() {
    let _serial = serial();
    let dir = common::counter_dir();
    let tree = FakePowercap::intel_client(dir.path()).unwrap();
    let _driver = PowerDriver::start(&tree, &[("intel-rapl:0", 30.0)], Duration::from_micros(200));
    let root = dir.path().to_path_buf();
    let mut gone: Option<std::thread::JoinHandle<()>> = None;
    let mut o = opts(&["sleep", "0.6"]);
    o.runs = 3;
    let mut obs = OnRun(|what: &str| {
        if what == "run2" && gone.is_none() {
            let root = root.clone();
            gone = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                common::remove_tree(&root);
            }));
        }
    });
    let out = measure(
        &o,
        &hw(dir.path()),
        &Arc::new(AtomicBool::new(false)),
        &mut obs,
    )
    .unwrap();
    if let Some(g) = gone {
        g.join().unwrap();
    }
    let runs = &out.result.per_run;
    assert_eq!(runs.len(), 3);
    let first = runs[0].totals.cpu_j.unwrap();
    assert!(close(first, 30.0 * runs[0].duration_s, 0.02), "{first}");
    for r in &runs[1..] {
        assert_eq!(
            r.totals.cpu_j, None,
            "run {}: {:?}",
            r.index, r.totals.cpu_j
        );
    }
    assert!(close(out.result.totals.cpu_j.unwrap(), first, 1e-9));
    let w = out.result.warnings.join("\n");
    assert!(w.contains("run(s) 2, 3 of 3"), "{w}");
    assert!(w.contains("package-0"), "{w}");
}

/// A suite on the fake tree. Windows of at least 250 ms: a loaded machine may delay the fake
/// driver's counter updates by a few milliseconds at a window's ends (real counters never wait).
fn suite_text(root: &Path, body_meter: &str, suite_extra: &str, workloads: usize) -> String {
    let mut s = format!(
        "[suite]\nname = \"faults\"\nwarmup = 1\nrepetitions = 2\nmin_window_ms = 250\n{suite_extra}\n\n\
         [meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n{body_meter}\n\n\
         [[model]]\nid = \"synthetic:llama-tiny\"\n\n[[profile]]\nname = \"one\"\nthreads = 1\n",
        root.display()
    );
    if !suite_extra.contains("idle_seconds") {
        s = s.replace(
            "min_window_ms = 250\n",
            "min_window_ms = 250\nidle_seconds = 0\n",
        );
    }
    for w in 0..workloads {
        s.push_str(&format!(
            "\n[[workload]]\nname = \"w{w}\"\nprompt_tokens = 16\nnew_tokens = 8\n"
        ));
    }
    s
}

fn records_of(out: &Path) -> (PathBuf, Vec<Record>) {
    let d = common::only_dir(out);
    let r = read_all(&d.join("records.jsonl")).unwrap().0;
    (d, r)
}

/// Every measured record's average power is the driven wattage (within 3%, or within its
/// stated uncertainty).
fn assert_right_or_unknown(recs: &[Record], watts: f64) {
    for r in recs {
        let Some(e) = &r.energy else { continue };
        let busy = e.request_j / e.avg_power_w;
        let slack = (0.03 * e.request_j).max(e.uncertainty_j);
        assert!(
            (e.request_j - watts * busy).abs() <= slack,
            "{} r{:?}: {} J at {} W (uncertainty {} J)",
            r.cell,
            r.repetition,
            e.request_j,
            e.avg_power_w,
            e.uncertainty_j
        );
        // Average power by the same rule: 5%, or the stated uncertainty over the window (the
        // fixture's driver thread lags a little on a loaded test machine).
        let power_slack = (0.05 * watts).max(e.uncertainty_j / busy);
        assert!(
            (e.avg_power_w - watts).abs() <= power_slack,
            "{} W (uncertainty {} J over {busy} s)",
            e.avg_power_w,
            e.uncertainty_j
        );
    }
}

/// The package counter steps back 2 J while a suite runs: no repetition reads it as a
/// ~262 kJ wrap (1 MW); every figure stays at the driven 30 W.
#[test]
fn a_counter_stepping_back_mid_suite_is_never_a_wrap() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let counters = common::counter_dir();
    let tree = FakePowercap::intel_client(counters.path()).unwrap();
    let driver = PowerDriver::start(&tree, &[("intel-rapl:0", 30.0)], Duration::from_micros(200));
    let out = dir.path().join("out");
    let p = common::write_suite(
        dir.path(),
        "s.toml",
        &suite_text(counters.path(), "", "", 1).replace("repetitions = 2", "repetitions = 6"),
    );
    let mut child = common::spawn_run(&p, &out);
    // Step back once the first record is on disk, and again a little later.
    let mut stepped = 0;
    while child.try_wait().unwrap().is_none() {
        let n = common::records_now(&out);
        if n > 2 * stepped && stepped < 2 {
            driver.step_counter(0, -2e6);
            stepped += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(child.wait().unwrap().success());
    let (_, recs) = records_of(&out);
    assert_eq!(recs.len(), 6);
    assert_right_or_unknown(&recs, 30.0);
    assert!(recs.iter().filter(|r| r.energy.is_some()).count() >= 4);
}

/// The tree vanishes after the first cell: the cells after it do not switch silently to the
/// estimate (their energy is not reported, with a message saying what was lost), unless the
/// suite wrote `sources = "auto"`, in which case every later record says so, is ESTIMATED, and
/// has no net figure from the measured idle.
#[test]
fn a_sensor_lost_mid_suite_fails_the_later_energy_or_is_a_labelled_fallback() {
    let _serial = serial();
    for fallback in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let counters = common::counter_dir();
        let tree = FakePowercap::intel_client(counters.path()).unwrap();
        let _driver =
            PowerDriver::start(&tree, &[("intel-rapl:0", 30.0)], Duration::from_micros(200));
        let out = dir.path().join("out");
        let meter = if fallback { "sources = \"auto\"" } else { "" };
        let p = common::write_suite(
            dir.path(),
            "s.toml",
            &suite_text(counters.path(), meter, "idle_seconds = 0.3", 2),
        );
        let mut child = common::spawn_run(&p, &out);
        let mut removed = false;
        while child.try_wait().unwrap().is_none() {
            let n = common::records_now(&out);
            if n >= 2 && !removed {
                common::remove_tree(counters.path());
                removed = true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            removed,
            "the suite ended before its first cell was recorded"
        );
        let (_, recs) = records_of(&out);
        assert_eq!(recs.len(), 4);
        for r in &recs[..2] {
            assert_eq!(r.cell, recs[0].cell);
            let e = r.energy.as_ref().expect("the first cell is measured");
            assert_eq!(e.provenance, Provenance::Measured);
        }
        for r in &recs[2..] {
            assert_ne!(r.cell, recs[0].cell);
            let w = r.warnings.join("\n");
            assert!(
                w.contains("SENSOR LOST") && w.contains("rapl/package-0"),
                "{w}"
            );
            if fallback {
                let e = r.energy.as_ref().expect("a labelled fallback");
                assert_eq!(e.provenance, Provenance::Estimated);
                assert_eq!(e.request_net_j, None, "no measured idle off an estimate");
            } else {
                assert!(r.energy.is_none(), "{:?}", r.energy);
                assert_eq!(r.energy_per_token_joules, None);
            }
        }
    }
}

/// DRAM reads a constant while its package counts (an unsupported zone, or a stuck one): not
/// 0 J of DRAM inside a "measured" CPU total, but a total labelled as not covering it, with a
/// warning naming the zone and both explanations: in `measure`, in every record of a suite,
/// and once at the idle baseline, before any cell runs.
#[test]
fn a_zone_that_never_counts_is_left_out_and_named_not_added_as_zero() {
    let _serial = serial();
    let counters = common::counter_dir();
    let tree = FakePowercap::intel_client(counters.path()).unwrap();
    let _driver = PowerDriver::start(&tree, &[("intel-rapl:0", 30.0)], Duration::from_micros(200));
    let out = measure(
        &opts(&["sleep", "0.3"]),
        &hw(counters.path()),
        &Arc::new(AtomicBool::new(false)),
        &mut Quiet,
    )
    .unwrap();
    let run = &out.result.per_run[0];
    let t = &run.totals;
    assert_eq!(t.partial_missing, vec!["rapl/dram-0".to_string()]);
    assert_eq!(t.silent, vec!["rapl/dram-0".to_string()]);
    assert!(
        close(t.cpu_j.unwrap(), 30.0 * run.duration_s, 0.02),
        "{t:?}"
    );
    let w = out.result.warnings.join("\n");
    assert!(
        w.contains("rapl/dram-0 did not count")
            && w.contains("does not support")
            && w.contains("stuck")
            && w.contains("PARTIAL"),
        "{w}"
    );
    // A suite: told at the idle baseline, and on every record.
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_suite(
        dir.path(),
        "s.toml",
        &suite_text(counters.path(), "", "idle_seconds = 0.3", 1),
    );
    let o = jb()
        .args(["run", p.to_str().unwrap(), "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let idle = err
        .lines()
        .position(|l| l.contains("idle baseline: rapl/dram-0 did not count"))
        .unwrap_or_else(|| panic!("{err}"));
    let first_cell = err.lines().position(|l| l.contains("cell 1/")).unwrap();
    assert!(idle < first_cell, "{err}");
    let (_, recs) = records_of(&dir.path().join("out"));
    assert_eq!(recs.len(), 2);
    for r in &recs {
        let e = r.energy.as_ref().unwrap();
        assert_eq!(e.partial_missing, vec!["rapl/dram-0".to_string()]);
        assert!(
            r.warnings.iter().any(|w| w.contains("did not count")),
            "{:?}",
            r.warnings
        );
    }
}

/// DRAM reads `N/A` for the whole suite: no record shows package-only energy as the CPU
/// total; `--allow-partial` gives package-only figures labelled PARTIAL, and `compare`
/// refuses to set them against a full run.
#[test]
fn an_unreadable_zone_in_a_suite_is_unknown_or_partial_and_compare_refuses_partial() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for (i, (na, partial)) in [(true, false), (true, true), (false, false)]
        .iter()
        .enumerate()
    {
        let counters = common::counter_dir();
        let tree = FakePowercap::intel_client(counters.path()).unwrap();
        let driven: Vec<(&str, f64)> = if *na {
            std::fs::write(
                tree.zone_dir("intel-rapl:0:2").unwrap().join("energy_uj"),
                "N/A\n",
            )
            .unwrap();
            vec![("intel-rapl:0", 30.0)]
        } else {
            vec![("intel-rapl:0", 25.0), ("intel-rapl:0:2", 5.0)]
        };
        let _driver = PowerDriver::start(&tree, &driven, Duration::from_micros(200));
        let out = dir.path().join(format!("out{i}"));
        let p = common::write_suite(
            dir.path(),
            &format!("s{i}.toml"),
            &suite_text(counters.path(), "", "", 1).replace("repetitions = 2", "repetitions = 3"),
        );
        let mut cmd = jb();
        cmd.args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        if *partial {
            cmd.arg("--allow-partial");
        }
        cmd.assert().success();
        let (d, recs) = records_of(&out);
        assert_eq!(recs.len(), 3);
        for r in &recs {
            let w = r.warnings.join("\n");
            match (na, partial) {
                (true, false) => {
                    assert!(r.energy.is_none(), "{:?}", r.energy);
                    assert!(w.contains("dram") && w.contains("--allow-partial"), "{w}");
                }
                (true, true) => {
                    let e = r.energy.as_ref().unwrap();
                    assert_eq!(e.partial_missing, vec!["rapl/dram-0".to_string()]);
                    assert!(w.contains("PARTIAL"), "{w}");
                }
                _ => assert!(r.energy.as_ref().expect(&w).partial_missing.is_empty()),
            }
        }
        assert_right_or_unknown(&recs, 30.0);
        outs.push(d);
    }
    jb().args([
        "compare",
        outs[2].to_str().unwrap(),
        outs[1].to_str().unwrap(),
    ])
    .assert()
    .code(2)
    .stderr(predicates::str::contains("PARTIAL"));
}

/// `interval_ms = 3000` against a 10 J counter at 30 W (a wrap every 333 ms): the suite clamps
/// its sampling interval (with a warning) and every repetition is right, not one counter range.
#[test]
fn a_slow_interval_against_a_small_range_is_clamped_in_suites() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let counters = common::counter_dir();
    let mut pkg = ZoneSpec::new("intel-rapl:0", "package-0");
    pkg.range_uj = 10_000_000;
    let mut dram = ZoneSpec::new("intel-rapl:0:0", "dram");
    dram.range_uj = 10_000_000;
    let tree = FakePowercap::create(counters.path(), &[pkg, dram]).unwrap();
    // The zone states its maximum power, as real ones do.
    std::fs::write(
        tree.zone_dir("intel-rapl:0")
            .unwrap()
            .join("constraint_0_max_power_uw"),
        "100000000\n",
    )
    .unwrap();
    let _driver = PowerDriver::start(
        &tree,
        &[("intel-rapl:0", 30.0), ("intel-rapl:0:0", 0.0)],
        Duration::from_micros(200),
    );
    let out = dir.path().join("out");
    let p = common::write_suite(
        dir.path(),
        "s.toml",
        &suite_text(counters.path(), "", "", 1)
            .replace("interval_ms = 5", "interval_ms = 3000")
            .replace("min_window_ms = 250", "min_window_ms = 1500"),
    );
    jb().args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .assert()
        .success();
    let (_, recs) = records_of(&out);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        let e = r.energy.as_ref().expect("measured");
        assert!(e.interval_ms < 3000.0, "interval {}", e.interval_ms);
        let w = r.warnings.join("\n");
        assert!(w.contains("interval"), "{w}");
        // The repetition is sized to >= 1.5 s from a warmup pass (~45 J at 30 W; a slow warmup
        // makes it shorter): the 10 J counter wrapped inside it at least once.
        assert!(e.request_j * r.inner_iterations as f64 > 10.0);
    }
    assert_right_or_unknown(&recs, 30.0);
}

/// A laptop with only psys, under `strict = true`: the suite runs and its records are measured
/// at platform scope.
#[test]
fn a_psys_only_suite_is_measured_and_strict_accepts_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let counters = common::counter_dir();
    let tree =
        FakePowercap::create(counters.path(), &[ZoneSpec::new("intel-rapl:0", "psys")]).unwrap();
    let _driver = PowerDriver::start(&tree, &[("intel-rapl:0", 15.0)], Duration::from_micros(200));
    let out = dir.path().join("out");
    let p = common::write_suite(
        dir.path(),
        "s.toml",
        &suite_text(counters.path(), "strict = true", "", 1),
    );
    jb().args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .assert()
        .success();
    let (_, recs) = records_of(&out);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        let e = r.energy.as_ref().expect("measured");
        assert_eq!(e.provenance, Provenance::Measured);
        assert_eq!(e.scope.to_string(), "platform");
    }
    assert_right_or_unknown(&recs, 15.0);
}

/// Idle (30 W) above run power (10 W): net figures are 0 with a warning for each phase
/// clamped, and without a clamp the identity net = gross - idle x duration holds.
#[test]
fn idle_above_run_power_gives_net_zero_and_a_warning() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let counters = common::counter_dir();
    let tree = FakePowercap::intel_client(counters.path()).unwrap();
    let driver = PowerDriver::start(&tree, &[("intel-rapl:0", 30.0)], Duration::from_micros(200));
    let out = dir.path().join("out");
    let p = common::write_suite(
        dir.path(),
        "s.toml",
        &suite_text(counters.path(), "", "idle_seconds = 0.5", 1),
    );
    let mut child = common::spawn_run(&p, &out);
    loop {
        if std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .is_some()
            && common::only_dir(&out).join("idle.json").exists()
        {
            driver.set_watts(0, 10.0);
            break;
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!("run ended early: {s}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(child.wait().unwrap().success());
    let (_, recs) = records_of(&out);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        let e = r.energy.as_ref().unwrap();
        assert_eq!(e.request_net_j, Some(0.0));
        assert_eq!(e.decode_net_j, Some(0.0));
        let w = r.warnings.join("\n");
        assert!(w.contains("below idle") && w.contains("clamped"), "{w}");
    }
}
