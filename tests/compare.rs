//! `joulebench compare` and baselines on real runs over a fake powercap tree.

use crate::common;

use crate::common::jb;

use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn suite(dir: &Path, name: &str, root: &Path, workload: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "[suite]\nname = \"{name}\"\nwarmup = 1\nrepetitions = 10\nidle_seconds = 0\nmin_window_ms = 250\n\n\
             [meter]\npowercap_root = \"{}\"\ninterval_ms = 10\n\n[[model]]\nid = \"synthetic:llama-135m\"\n\n\
             [[profile]]\nname = \"one\"\nthreads = 1\ncpu_affinity = [0]\n\n[[workload]]\nname = \"{workload}\"\nprompt_tokens = 32\nnew_tokens = 16\n",
            root.display()
        ),
    )
    .unwrap();
    p
}

/// Runs a suite into its own output folder and returns the run folder.
fn run(suite: &Path, out: &Path) -> PathBuf {
    jb().arg("run")
        .arg(suite)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
    std::fs::read_dir(out)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap()
}

#[test]
fn compare_detects_a_power_regression_and_passes_equal_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (_counters, tree, driver) = common::driven_tree(20.0, Duration::from_millis(1));
    let root = tree.root.clone();
    let s = suite(dir.path(), "gate", &root, "w");
    let a = run(&s, &dir.path().join("a"));
    let b = run(&s, &dir.path().join("b"));
    // 1.5x the power: large enough that this machine's run-to-run speed drift (7-18%, which
    // J/token follows) cannot hide it; the ratio is checked against power x drift below.
    const STEP: f64 = 1.5;
    driver.set_watts(0, 20.0 * STEP);
    let c = run(&s, &dir.path().join("c"));
    drop(driver);

    // Same wattage: the energy figures agree. (Compared on power, which does not move with the
    // machine's run-to-run speed drift; J/token is checked against that drift below.)
    jb().arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--metric", "avg_power_w"])
        .assert()
        .code(0);
    let speed = |d: &Path| {
        let recs = joulebench::record::read_all(&d.join("records.jsonl"))
            .unwrap()
            .0;
        let v: Vec<f64> = recs
            .iter()
            .filter_map(|r| Some(r.e2e_s? - r.ttft_s?))
            .collect();
        joulebench::stats::median(&v)
    };
    let json = |x: &Path, y: &Path| -> serde_json::Value {
        let o = jb()
            .arg("compare")
            .arg(x)
            .arg(y)
            .args(["--format", "json"])
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let ratio_of = |v: &serde_json::Value, m: &str| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == m)
            .unwrap()["ratio"]
            .as_f64()
            .unwrap()
    };
    let same = ratio_of(&json(&a, &b), "j_per_decode_token");
    let drift_ab = speed(&b) / speed(&a);
    assert!(
        (same / drift_ab - 1.0).abs() < 0.03,
        "equal power: J/token ratio {same} vs decode-time ratio {drift_ab}"
    );
    let out = jb()
        .arg("compare")
        .arg(&a)
        .arg(&c)
        .args(["--format", "json", "--chart"])
        .arg(dir.path().join("chart.svg"))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "j_per_decode_token")
        .unwrap();
    assert_eq!(row["verdict"], "regressed");
    let ratio = row["ratio"].as_f64().unwrap();
    // STEP x the power, times the decode-time drift between the two runs.
    let want = STEP * speed(&c) / speed(&a);
    assert!(
        (ratio / want - 1.0).abs() < 0.03,
        "decode J/token ratio {ratio}, expected {want}"
    );
    assert!(ratio > 1.1, "{ratio}");
    let svg = std::fs::read_to_string(dir.path().join("chart.svg")).unwrap();
    roxmltree::Document::parse(&svg).expect("the chart is well-formed XML");

    // Markdown for a pull request: the regression is emphasised, the baseline named.
    jb().arg("compare")
        .arg(&a)
        .arg(&c)
        .args(["--format", "markdown"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("| model | profile |"))
        .stdout(predicate::str::contains("**regressed**"))
        .stdout(predicate::str::contains("measured"));

    // Baselines: save, list, compare against baseline:NAME.
    let bl = dir.path().join("baselines");
    jb().args(["baseline", "save"])
        .arg(&a)
        .arg("main")
        .arg("--baselines")
        .arg(&bl)
        .assert()
        .success();
    jb().args(["baseline", "list", "--baselines"])
        .arg(&bl)
        .assert()
        .success()
        .stdout(predicate::str::contains("main").and(predicate::str::contains("gate")));
    // Equal power again, so judged on power (J/token follows this machine's speed drift).
    jb().args(["compare", "baseline:main"])
        .arg(&b)
        .arg("--baselines")
        .arg(&bl)
        .args(["--metric", "avg_power_w"])
        .assert()
        .code(0);
    jb().args(["baseline", "save"])
        .arg(&a)
        .arg("main")
        .arg("--baselines")
        .arg(&bl)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--force"));

    // Exit 2: different hardware (unless allowed), no matching cells, estimated vs measured, missing files.
    let moved = dir.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    for f in ["meta.json", "records.jsonl"] {
        std::fs::copy(b.join(f), moved.join(f)).unwrap();
    }
    let meta = std::fs::read_to_string(moved.join("meta.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&meta).unwrap();
    m["machine"]["cpu_model"] = "Another CPU".into();
    std::fs::write(moved.join("meta.json"), m.to_string()).unwrap();
    jb().arg("compare")
        .arg(&a)
        .arg(&moved)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("hardware fingerprints differ"));
    jb().arg("compare")
        .arg(&a)
        .arg(&moved)
        .arg("--allow-hardware-mismatch")
        .args(["--metric", "avg_power_w"])
        .assert()
        .code(0);

    let other = run(
        &suite(dir.path(), "other", &root, "different"),
        &dir.path().join("d"),
    );
    jb().arg("compare")
        .arg(&a)
        .arg(&other)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no cell"));

    let est = run(
        &suite(dir.path(), "gate", &dir.path().join("none"), "w"),
        &dir.path().join("e"),
    );
    jb().arg("compare")
        .arg(&a)
        .arg(&est)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "estimates are only compared with estimates",
        ));

    jb().arg("compare")
        .arg(&a)
        .arg(dir.path().join("nope"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope"));
    jb().arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--metric", "joules_per_vibe"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown metric"));
}
