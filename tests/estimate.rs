//! `run --dry-run` durations: from model size and tokens for a new suite, from the records of
//! an earlier run folder when one is given (`--estimate-from`, or the folder a resume
//! continues, whose finished cells cost nothing).

use crate::common;

use crate::common::{jb, only_dir, serial};
use std::path::Path;

fn suite(dir: &Path) -> std::path::PathBuf {
    let mut s = format!(
        "[suite]\nname = \"est\"\nwarmup = 1\nrepetitions = 3\nidle_seconds = 0.5\nmin_window_ms = 20\n\n\
         [meter]\npowercap_root = \"{}\"\n\n",
        dir.join("none").display()
    );
    for m in 0..3 {
        s.push_str(&format!(
            "[[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"m{m}\"\nseed = {}\n\n",
            m + 1
        ));
    }
    for p in 1..=2 {
        s.push_str(&format!("[[profile]]\nname = \"t{p}\"\nthreads = {p}\n\n"));
    }
    for w in 0..4 {
        s.push_str(&format!(
            "[[workload]]\nname = \"w{w}\"\nprompt_tokens = {}\nnew_tokens = {}\n\n",
            8 + 8 * w,
            4 + 4 * w
        ));
    }
    common::write_suite(dir, "s.toml", &s)
}

/// Seconds and the "(...)" note of the dry run's last line.
fn expected(args: &[&std::ffi::OsStr]) -> (f64, String) {
    let o = jb()
        .arg("run")
        .args(args)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let line = out
        .lines()
        .find(|l| l.starts_with("expected duration: about "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let rest = line.trim_start_matches("expected duration: about ");
    let (num, tail) = rest.split_once(' ').unwrap();
    let mut secs: f64 = num.parse().unwrap();
    if tail.starts_with("min") {
        let s: f64 = tail
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0.0);
        secs = secs * 60.0 + s;
    }
    (secs, line)
}

#[test]
fn estimates_come_from_model_size_then_from_earlier_records() {
    let _one = serial();
    let t = tempfile::tempdir().unwrap();
    let s = suite(t.path());
    let (by_size, line) = expected(&[s.as_os_str()]);
    assert!(line.contains("24 from model size and tokens"), "{line}");
    let out = t.path().join("out");
    let start = std::time::Instant::now();
    jb().arg("run")
        .arg(&s)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let took = start.elapsed().as_secs_f64();
    let run = only_dir(&out);
    // Model size and tokens: the right order of magnitude (tiny cells, not seconds each; a
    // busy test machine may run slower than the rates assume).
    assert!(
        by_size > took / 4.0 && by_size < took * 4.0,
        "size-based {by_size:.1} s against {took:.1} s"
    );
    // From the run's own records: close to what it took.
    let (by_records, line) =
        expected(&[s.as_os_str(), "--estimate-from".as_ref(), run.as_os_str()]);
    assert!(
        line.contains("24 cell(s) timed from earlier records"),
        "{line}"
    );
    assert!(
        (by_records - took).abs() < 0.35 * took,
        "record-based {by_records:.1} s against {took:.1} s"
    );
    // A folder without records: said on stderr, and the estimate falls back to model size.
    let o = jb()
        .arg("run")
        .arg(&s)
        .arg("--dry-run")
        .arg("--estimate-from")
        .arg(t.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nowhere") && err.contains("estimated from model size"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("24 from model size and tokens"));
    // Resuming a finished run: nothing left but the idle baseline.
    let (left, line) = expected(&["--resume".as_ref(), run.as_os_str()]);
    assert!(line.contains("24 already done"), "{line}");
    assert!(left < 1.0, "{line}");
}
