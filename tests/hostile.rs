//! Hostile and careless input end to end: names that would escape folders or collide, results
//! that cannot be written, torn and duplicated records, tampered shards, interrupts during
//! waits. Every case is a clear error naming the file or setting, and loses nothing measured.

use crate::common::{files_under, jb, jb_process, only_dir, serial, write_suite};

use joulebench::record::{Status, read_all};
use predicates::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn tiny(dir: &Path, name: &str, reps: u32, workloads: usize, extra: &str) -> String {
    let mut s = format!(
        "[suite]\nname = {name:?}\nwarmup = 0\nrepetitions = {reps}\nidle_seconds = 0\n\
         min_window_ms = 20\n{extra}\n\n[meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n\
         [[model]]\nid = \"synthetic:llama-tiny\"\n\n[[profile]]\nname = \"one\"\nthreads = 1\n",
        dir.join("no-powercap").display()
    );
    for w in 0..workloads {
        s.push_str(&format!(
            "\n[[workload]]\nname = \"w{w}\"\nprompt_tokens = 8\nnew_tokens = 4\n"
        ));
    }
    s
}

#[test]
fn names_never_escape_the_output_folder_or_collide() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("a").join("out");
    let p = write_suite(
        t.path(),
        "s.toml",
        &tiny(t.path(), "../../escaped", 1, 1, ""),
    );
    jb().args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .assert()
        .success();
    let d = only_dir(&out);
    assert!(d.starts_with(&out), "{}", d.display());
    assert!(!t.path().join("escaped").exists() && !t.path().join("a/escaped").exists());
    // Newlines (a script injection into the Slurm scripts) are refused where written.
    let bad = write_suite(
        t.path(),
        "b.toml",
        &tiny(t.path(), "x\ntouch pwned\n#", 1, 1, ""),
    );
    jb().args(["run", bad.to_str().unwrap(), "--dry-run"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("b.toml:2:").and(predicate::str::contains("suite name")));
    jb().args(["slurm", bad.to_str().unwrap(), "--shards", "2", "--out"])
        .arg(t.path().join("sl"))
        .assert()
        .code(2);
    assert!(!t.path().join("sl").exists() || files_under(&t.path().join("sl")).is_empty());
    // Two aliases that share a file name.
    let two = tiny(t.path(), "t", 1, 1, "").replace(
        "[[profile]]",
        "[[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"a/b\"\n\n\
         [[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"a_b\"\n\n[[profile]]",
    );
    let c = write_suite(t.path(), "c.toml", &two);
    jb().args(["run", c.to_str().unwrap(), "--dry-run"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("\"a/b\"").and(predicate::str::contains("\"a_b\"")));
    // A baseline name that climbs out of the baselines folder.
    let base = t.path().join("b").join("baselines");
    for name in ["..", "../x", "/tmp/x", ".hidden"] {
        jb().args(["baseline", "save", d.to_str().unwrap(), name, "--baselines"])
            .arg(&base)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("baseline name"));
    }
    assert!(files_under(&t.path().join("b")).is_empty());
}

/// A run interrupted after some repetitions, then resumed: the cell's trace keeps the first
/// part's rows and appends the rest (time keeps increasing), never rewritten.
#[test]
fn resume_appends_traces_and_a_write_error_stops_cleanly() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let p = write_suite(t.path(), "s.toml", &tiny(t.path(), "tr", 40, 2, ""));
    let mut child = jb_process()
        .args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let recs = |d: &Path| read_all(&d.join("records.jsonl")).unwrap().0;
    loop {
        if std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some())
            && recs(&only_dir(&out)).len() >= 3
        {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let d = only_dir(&out);
    let trace = d.join("traces/synthetic_llama-tiny__one__w0.csv");
    let first = std::fs::read_to_string(&trace).unwrap();
    let n_before = recs(&d).len();
    assert!(n_before < 80);
    // A file where traces/ should be: the resumed cell cannot write its trace.
    let saved = t.path().join("traces-saved");
    std::fs::rename(d.join("traces"), &saved).unwrap();
    std::fs::write(d.join("traces"), "not a folder").unwrap();
    let o = jb()
        .args(["run", "--resume", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("traces") && err.contains("could not be written"),
        "{err}"
    );
    assert!(recs(&d).len() >= n_before, "nothing recorded is lost");
    let md = std::fs::read_to_string(d.join("report.md"))
        .expect("the report is written from what exists");
    assert!(
        md.contains("**Stopped before the end**: results could not be written"),
        "{md}"
    );
    assert!(
        md.contains("**1 cell never ran**: synthetic_llama-tiny__one__w1"),
        "{md}"
    );
    // A later `report` says the same.
    jb().args(["report", d.to_str().unwrap()])
        .assert()
        .success();
    let md = std::fs::read_to_string(d.join("report.md")).unwrap();
    assert!(
        md.contains("Stopped before the end") && md.contains("never ran"),
        "{md}"
    );
    let tmp: Vec<_> = files_under(&d)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    // Put the folder back and finish: the first part's rows are kept, the rest appended.
    std::fs::remove_file(d.join("traces")).unwrap();
    std::fs::rename(&saved, d.join("traces")).unwrap();
    jb().args(["run", "--resume", d.to_str().unwrap()])
        .assert()
        .success();
    let all = recs(&d);
    assert_eq!(
        all.iter().filter(|r| r.status == Status::Ok).count(),
        80,
        "every repetition once"
    );
    let after = std::fs::read_to_string(&trace).unwrap();
    assert!(
        after.starts_with(&first),
        "the earlier rows are kept as they were"
    );
    assert!(after.len() > first.len());
    assert_eq!(after.matches("t_s,event").count(), 1, "one header");
    let times: Vec<f64> = after
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] >= w[0]),
        "time keeps increasing"
    );
    assert!(after.contains("r1.0:start") && after.contains("r40.0:start"));
}

#[test]
fn torn_and_duplicated_records_are_named_not_miscounted() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let p = write_suite(t.path(), "s.toml", &tiny(t.path(), "dup", 3, 1, ""));
    jb().args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .assert()
        .success();
    let d = only_dir(&out);
    let path = d.join("records.jsonl");
    let good = std::fs::read(&path).unwrap();
    // A line torn inside a multi-byte character.
    let mut torn = good.clone();
    torn.extend_from_slice(b"{\"suite\":\"caf\xc3");
    std::fs::write(&path, &torn).unwrap();
    jb().args(["report", d.to_str().unwrap()])
        .assert()
        .success();
    let summary = std::fs::read_to_string(d.join("summary.json")).unwrap();
    assert!(summary.contains("records.jsonl:4"), "{summary}");
    // The same repetition twice.
    let first_line = good.split(|b| *b == b'\n').next().unwrap().to_vec();
    let mut dup = good.clone();
    dup.extend_from_slice(&first_line);
    dup.push(b'\n');
    std::fs::write(&path, &dup).unwrap();
    jb().args(["report", d.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("records.jsonl")
                .and(predicate::str::contains("recorded twice")),
        );
    jb().args(["compare", d.to_str().unwrap(), d.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("recorded twice"));
}

#[test]
fn merge_refuses_a_shard_whose_config_was_changed() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("shards");
    let p = write_suite(t.path(), "s.toml", &tiny(t.path(), "m", 1, 2, ""));
    for s in ["0/2", "1/2"] {
        jb().args([
            "run",
            p.to_str().unwrap(),
            "--shard",
            s,
            "--out",
            out.to_str().unwrap(),
        ])
        .assert()
        .success();
    }
    let parts: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(parts.len(), 2);
    let cfg = parts[1].join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("repetitions = 1", "repetitions = 9")).unwrap();
    jb().arg("merge")
        .args(&parts)
        .arg("--out")
        .arg(t.path().join("merged"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("config.toml").and(predicate::str::contains("hash")));
}

/// Ctrl-C during a long cooldown or idle baseline ends the run at once (not after the wait);
/// an interrupted idle baseline is not kept, so a resume measures it again.
#[test]
fn ctrl_c_is_honoured_during_cooldown_and_idle() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    for (what, extra) in [
        ("cooldown", "cooldown_seconds = 3600"),
        ("idle", "idle_seconds = 3600"),
    ] {
        let out = t.path().join(what);
        let body = tiny(t.path(), what, 1, 2, extra).replace(
            "idle_seconds = 0\n",
            if what == "idle" {
                ""
            } else {
                "idle_seconds = 0\n"
            },
        );
        let p = write_suite(t.path(), &format!("{what}.toml"), &body);
        let mut child = jb_process()
            .args(["run", p.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the run is in the wait: the first cell recorded (cooldown), or the run
        // folder exists (idle).
        loop {
            let ready = std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some())
                && (what == "idle"
                    || !read_all(&only_dir(&out).join("records.jsonl"))
                        .unwrap()
                        .0
                        .is_empty());
            if ready {
                break;
            }
            assert!(child.try_wait().unwrap().is_none());
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        let sent = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        assert_eq!(child.wait().unwrap().code(), Some(130), "{what}");
        // Far below the hour-long wait: the signal ended it.
        assert!(sent.elapsed() < Duration::from_secs(120), "{what}");
        if what == "idle" {
            assert!(!only_dir(&out).join("idle.json").exists());
        }
    }
}
