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
    jb().arg("ab")
        .arg(cfg)
        .args([
            "--base",
            base,
            "--candidate",
            cand,
            "--pairs",
            &pairs.to_string(),
        ])
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

use crate::common::records;

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
    let start = Instant::now();
    loop {
        let n = std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map_or(0, |e| {
                std::fs::read_to_string(e.path().join("records.jsonl"))
                    .map_or(0, |s| s.lines().count())
            });
        if n >= 3 || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
