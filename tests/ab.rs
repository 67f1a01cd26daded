//! `joulebench ab`: two variants alternately in one job (ABBA), long-lived cell processes, the
//! paired verdict and its exit codes, records marked with variant and pair, resume.

use crate::common::{ab_suite, jb, jb_process, only_dir};
use joulebench::record::{Record, Status};
use std::path::Path;
use std::time::{Duration, Instant};

/// A command whose work is `n` iterations of a shell loop (its energy follows its work).
fn busy(alias: &str, n: u64) -> String {
    format!(
        "\n[[model]]\nengine = \"command\"\nalias = \"{alias}\"\n\
         command = [\"sh\", \"-c\", \"i=0; while [ $i -lt {n} ]; do i=$((i+1)); done; echo generated {{new_tokens}} tokens\"]\n\
         tokens_regex = 'generated (?P<tokens>\\d+) tokens'\n"
    )
}

fn suite(dir: &Path, models: &str) -> std::path::PathBuf {
    ab_suite(dir, &dir.join("none"), models)
}

fn ab(cfg: &Path, out: &Path, base: &str, cand: &str, pairs: u32) -> std::process::Output {
    ab_auto(cfg, out, base, cand, &["--pairs", &pairs.to_string()])
}

use crate::common::records;

/// Waits (at most a minute) until the run folder inside `out` holds `n` record lines.
fn wait_for_records(out: &Path, n: usize) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let have = std::fs::read_dir(out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map_or(0, |e| {
                std::fs::read_to_string(e.path().join("records.jsonl"))
                    .map_or(0, |s| s.lines().count())
            });
        if have >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn more_work_is_a_regression_and_the_job_runs_in_abba_order_on_two_long_lived_processes() {
    let t = tempfile::tempdir().unwrap();
    let cfg = suite(
        t.path(),
        &(busy("base", 60_000) + &busy("slower", 120_000) + &busy("other", 1)),
    );
    let out = t.path().join("out");
    let o = ab(&cfg, &out, "base", "slower", 8);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rep["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rep}");
    for r in rows {
        assert_eq!(r["verdict"], "regressed", "{r}");
        let ratio = r["stats"]["ratio"].as_f64().unwrap();
        assert!(ratio > 1.3 && ratio < 2.6, "{r}");
        assert_eq!(r["pairs"], 8);
        assert!(r["p_holm"].as_f64().unwrap() < 0.05);
        assert!(r["base_drift"].as_f64().is_some());
    }
    let run = only_dir(&out);
    let recs = records(&run);
    // Only the two variants ran, each `pairs` times, in ABBA order.
    assert!(recs.iter().all(|r| r.model != "other"));
    let mut ok: Vec<&Record> = recs.iter().filter(|r| r.status == Status::Ok).collect();
    assert_eq!(ok.len(), 16);
    ok.sort_by(|a, b| a.unix_time_s.total_cmp(&b.unix_time_s));
    let order: Vec<(String, u32)> = ok
        .iter()
        .map(|r| (r.ab_variant.clone().unwrap(), r.ab_pair.unwrap()))
        .collect();
    let want: Vec<(String, u32)> = joulebench::ab::schedule(8)
        .into_iter()
        .map(|(v, p)| (v.name().to_string(), p))
        .collect();
    assert_eq!(order, want);
    for r in &ok {
        let v = r.ab_variant.as_deref().unwrap();
        assert_eq!(r.model, if v == "base" { "base" } else { "slower" });
        assert_eq!(r.repetition, r.ab_pair);
    }
    // One process per variant: each served all its repetitions after one warmup.
    for name in ["base", "slower"] {
        let log = std::fs::read_dir(run.join("logs"))
            .unwrap()
            .flatten()
            .find(|e| {
                let f = e.file_name().to_string_lossy().into_owned();
                f.starts_with(&format!("{name}__")) && f.ends_with(".stderr.log")
            })
            .map(|e| e.path())
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text.matches("loaded and warmed up once").count(),
            1,
            "{text}"
        );
    }
    for f in [
        "ab.json",
        "ab.md",
        "charts/ab-pairs.svg",
        "report.md",
        "meta.json",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    let md = std::fs::read_to_string(run.join("ab.md")).unwrap();
    assert!(
        md.contains("efficiency regression") && md.contains("REGRESSED"),
        "{md}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["ab"]["candidate"], "slower");
    // An ordinary resume of an A/B folder is refused with the command that resumes it.
    let o = jb().args(["run", "--resume"]).arg(&run).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("joulebench ab"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_against_itself_passes_and_thin_jobs_are_inconclusive() {
    let t = tempfile::tempdir().unwrap();
    let cfg = suite(t.path(), &busy("same", 40_000));
    let out = t.path().join("out");
    let o = ab(&cfg, &out, "same", "same", 8);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for r in rep["rows"].as_array().unwrap() {
        assert_ne!(r["verdict"], "regressed", "{r}");
    }
    // Fewer than 5 pairs: nothing conclusive (exit 2).
    let out2 = t.path().join("out2");
    let o = ab(&cfg, &out2, "same", "same", 3);
    assert_eq!(o.status.code(), Some(2));
    // 5 pairs and two metrics: the exact test cannot reach Holm's bound (2/32 x 2 > 0.05), so
    // the job is inconclusive, not "unchanged", and says why.
    let o = ab(&cfg, &t.path().join("out3"), "same", "same", 5);
    assert_eq!(o.status.code(), Some(2));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        rep["warnings"]
            .to_string()
            .contains("no change can be significant"),
        "{rep}"
    );
    // A name the suite does not have.
    let o = ab(&cfg, &out2, "same", "nope", 6);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("nope") && e.contains("same"), "{e}");
}

#[test]
fn an_interrupted_job_resumes_without_running_a_repetition_twice() {
    let t = tempfile::tempdir().unwrap();
    let cfg = suite(t.path(), &(busy("a", 150_000) + &busy("b", 150_000)));
    let out = t.path().join("out");
    let mut child = jb_process()
        .arg("ab")
        .arg(&cfg)
        .args(["--base", "a", "--candidate", "b", "--pairs", "6", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_records(&out, 3);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let run = only_dir(&out);
    let before = records(&run).len();
    assert!(
        before < 12,
        "interrupted before the end ({before} records, {status:?})"
    );
    let o = jb()
        .arg("ab")
        .arg(&cfg)
        .args([
            "--base",
            "a",
            "--candidate",
            "b",
            "--pairs",
            "6",
            "--format",
            "json",
        ])
        .arg("--resume")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let recs = records(&run);
    let mut seen: Vec<(String, u32)> = recs
        .iter()
        .filter(|r| r.status == Status::Ok)
        .map(|r| (r.ab_variant.clone().unwrap(), r.ab_pair.unwrap()))
        .collect();
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "no repetition twice");
    assert_eq!(n, 12, "every pair complete after the resume");
}

fn ab_auto(cfg: &Path, out: &Path, base: &str, cand: &str, extra: &[&str]) -> std::process::Output {
    jb().arg("ab")
        .arg(cfg)
        .args(["--base", base, "--candidate", cand])
        .args(extra)
        .args([
            "--format",
            "json",
            "--metric",
            "j_per_request",
            "--metric",
            "e2e_s",
        ])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// `--pairs auto` (the default): a clear change stops the job as soon as its rows are decided;
/// a job whose rows cannot be decided within `--max-pairs` exits 2 and says why and how many
/// pairs a decision would take; an interrupted job resumes the same sequence with the settings
/// it started with.
#[test]
fn a_sequential_job_stops_when_decided_says_why_and_resumes_the_same_sequence() {
    let t = tempfile::tempdir().unwrap();
    let cfg = suite(
        t.path(),
        &(busy("base", 60_000) + &busy("slower", 120_000) + &busy("same", 60_000)),
    );
    // Twice the work: decided long before the budget, and nothing runs after the stop.
    let out = t.path().join("clear");
    let o = ab_auto(&cfg, &out, "base", "slower", &["--max-pairs", "40"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["schema_version"], 2);
    assert_eq!(rep["design"], "sequential");
    assert_eq!(rep["max_pairs"], 40);
    let stop = &rep["stops"][0];
    assert_eq!(stop["reason"], "decided", "{rep}");
    let used = stop["pairs"].as_u64().unwrap();
    assert!((6..40).contains(&used), "{used} pairs");
    assert_eq!(used % 2, 0, "stops only at the end of an ABBA block");
    let run = only_dir(&out);
    assert_eq!(
        records(&run).len() as u64,
        2 * used,
        "nothing ran after the stop"
    );
    for row in rep["rows"].as_array().unwrap() {
        assert_eq!(row["verdict"], "regressed", "{row}");
        let q = &row["sequence"];
        let looks = q["looks"].as_array().unwrap();
        assert_eq!(looks.len() as u64, used / 2, "one look per block: {q}");
        assert!(q["decided_at"].as_u64().unwrap() <= used);
        assert_eq!(looks.last().unwrap()["verdict"], "regressed");
        // The level of each row's sequence: alpha over the two gated rows.
        assert!((q["level"].as_f64().unwrap() - 0.025).abs() < 1e-12);
    }
    let md = std::fs::read_to_string(run.join("ab.md")).unwrap();
    assert!(
        md.contains("#### The looks") && md.contains("stopped after"),
        "{md}"
    );
    let svg = std::fs::read_to_string(run.join("charts/ab-pairs.svg")).unwrap();
    assert!(
        svg.contains("<rect"),
        "the chart draws the narrowing interval"
    );

    // A against a copy of itself with a budget too small to decide: exit 2 with the noise and
    // the pairs a decision would take.
    let out = t.path().join("thin");
    let o = ab_auto(&cfg, &out, "base", "same", &["--max-pairs", "4"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["stops"][0]["reason"], "max_pairs", "{rep}");
    assert_eq!(rep["stops"][0]["pairs"], 4);
    let w = rep["warnings"].to_string();
    assert!(
        w.contains("not enough pairs to decide at this machine's noise")
            && w.contains("--max-pairs"),
        "{w}"
    );
    for row in rep["rows"].as_array().unwrap() {
        assert_eq!(row["verdict"], "inconclusive", "{row}");
    }
    assert!(
        !rep["rows"][0]["sequence"]["pairs_to_decide"].is_null()
            || w.contains("more pairs than 100,000"),
        "{rep}"
    );

    // A time budget that ends at once: the job stops at its first look and says so.
    let out = t.path().join("minutes");
    let o = ab_auto(&cfg, &out, "base", "slower", &["--max-minutes", "0.001"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["stops"][0]["reason"], "max_minutes", "{rep}");
    assert!(rep["stops"][0]["pairs"].as_u64().unwrap() <= 2, "{rep}");
    assert_eq!(rep["max_minutes"], 0.001);
    let o = ab_auto(&cfg, &out, "base", "slower", &["--max-minutes=-1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-minutes"));
    let o = ab_auto(&cfg, &out, "base", "slower", &["--pairs", "sometimes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pairs takes auto or"));

    // Interrupted, then resumed with other flags: the job's own settings go on, no repetition
    // runs twice, and every pair up to the budget completes.
    let out = t.path().join("resumed");
    let mut child = jb_process()
        .arg("ab")
        .arg(&cfg)
        .args(["--base", "base", "--candidate", "same", "--max-pairs", "6"])
        .args(["--metric", "j_per_request", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_records(&out, 3);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let run = only_dir(&out);
    let before = records(&run).len();
    assert!(before < 12, "{before} records");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["ab"]["sequential"]["max_pairs"], 6, "{meta}");
    let o = jb()
        .arg("ab")
        .args(["--base", "base", "--candidate", "same", "--max-pairs", "50"])
        .args(["--format", "json", "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{stderr}");
    assert!(
        stderr.contains("with the settings it started with"),
        "{stderr}"
    );
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["max_pairs"], 6);
    let mut seen: Vec<(String, u32)> = records(&run)
        .iter()
        .filter(|r| r.status == Status::Ok)
        .map(|r| (r.ab_variant.clone().unwrap(), r.ab_pair.unwrap()))
        .collect();
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "no repetition twice");
    assert_eq!(n, 12, "six pairs: the job's own budget");
    assert_eq!(rep["stops"][0]["pairs"], 6, "{rep}");
}
