//! Sharded runs and merging, end to end through the CLI (no Slurm here; scripts/slurm-test.sh
//! runs the same through a real one-node Slurm cluster).

use crate::common::{jb, only_dir, serial};

use joulebench::record::{Status, read_all};
use joulebench::run_dir::read_json;
use joulebench::run_meta::RunMeta;
use predicates::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// 2 models × 1 profile × 3 workloads = 6 cells of the tiny synthetic model.
fn suite(dir: &Path, name: &str) -> PathBuf {
    let body = format!(
        "[suite]\nname = \"{name}\"\nwarmup = 0\nrepetitions = 2\nidle_seconds = 0.2\n\
         min_window_ms = 10\n\n[meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n\
         [[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"a\"\nseed = 1\n\n\
         [[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"b\"\nseed = 2\n\n\
         [[profile]]\nname = \"one\"\nthreads = 1\n\n\
         [[workload]]\nname = \"w0\"\nprompt_tokens = 8\nnew_tokens = 4\n\n\
         [[workload]]\nname = \"w1\"\nprompt_tokens = 16\nnew_tokens = 4\n\n\
         [[workload]]\nname = \"w2\"\nprompt_tokens = 4\nnew_tokens = 8\n",
        dir.join("no-powercap").display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, body).unwrap();
    p
}

fn keys(dir: &Path) -> BTreeSet<(String, u32)> {
    read_all(&dir.join("records.jsonl"))
        .unwrap()
        .0
        .into_iter()
        .filter(|r| r.status == Status::Ok)
        .map(|r| (r.cell, r.repetition.unwrap()))
        .collect()
}

/// Runs shards `which` of `n` of `cfg`, each into out/<i>/, and returns their folders.
fn shards(cfg: &Path, out: &Path, n: u32, which: &[u32]) -> Vec<PathBuf> {
    which
        .iter()
        .map(|i| {
            let o = out.join(i.to_string());
            jb().arg("run")
                .arg(cfg)
                .args(["--shard", &format!("{i}/{n}"), "--out"])
                .arg(&o)
                .assert()
                .success();
            only_dir(&o)
        })
        .collect()
}

fn merge(parts: &[PathBuf], out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    jb().arg("merge")
        .args(parts)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                v.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    v.sort();
    v
}

#[test]
fn shards_merge_into_the_same_cells_as_one_run_and_merging_is_deterministic() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let cfg = suite(t.path(), "shardy");
    jb().arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(t.path().join("whole"))
        .assert()
        .success();
    let whole = only_dir(&t.path().join("whole"));

    // The dry run of a shard lists only its cells.
    jb().arg("run")
        .arg(&cfg)
        .args(["--shard", "1/3", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("a__one__w1").and(predicate::str::contains("b__one__w1")))
        .stdout(predicate::str::contains("a__one__w0").not());

    let parts = shards(&cfg, &t.path().join("parts"), 3, &[2, 0, 1]);
    for (p, i) in parts.iter().zip([2u32, 0, 1]) {
        let m: RunMeta = read_json(&p.join("meta.json")).unwrap();
        let s = m.shard.expect("shard facts in meta.json");
        assert_eq!((s.index, s.count, s.plan_cells), (i, 3, 6));
        assert_eq!(
            m.config_hash,
            read_json::<RunMeta>(&whole.join("meta.json"))
                .unwrap()
                .config_hash
        );
        assert!(
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(&format!("-shard-{i}-of-3"))
        );
        // Records carry their shard and hardware.
        let (recs, _) = read_all(&p.join("records.jsonl")).unwrap();
        assert_eq!(recs.len(), 4, "two cells x two repetitions");
        for r in &recs {
            let h = r.host.as_ref().unwrap();
            assert_eq!(h.shard.as_deref(), Some(format!("{i}/3").as_str()));
            assert!(r.cell_index % 3 == i as usize);
        }
    }

    let m1 = t.path().join("merged-1");
    let m2 = t.path().join("nested").join("merged-2");
    merge(&parts, &m1, &[]).success();
    let mut reversed = parts.clone();
    reversed.reverse();
    merge(&reversed, &m2, &[]).success();
    assert_eq!(keys(&m1), keys(&whole));
    assert_eq!(keys(&m1).len(), 12);
    let (a, b) = (files(&m1), files(&m2));
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{} differs between two merges", name.display());
    }
    for f in [
        "report.md",
        "report.html",
        "summary.json",
        "summary.csv",
        "idle.json",
    ] {
        assert!(m1.join(f).exists(), "{f}");
    }
    for c in ["a__one__w0", "b__one__w2"] {
        assert!(m1.join("traces").join(format!("{c}.csv")).exists(), "{c}");
    }
    let meta: RunMeta = read_json(&m1.join("meta.json")).unwrap();
    assert_eq!(meta.parts.len(), 3);
    assert_eq!(
        meta.parts
            .iter()
            .map(|p| p.shard.as_ref().unwrap().index)
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(meta.missing_cells.is_empty());
    let md = std::fs::read_to_string(m1.join("report.md")).unwrap();
    assert!(md.contains("Merged from 3 parts"), "{md}");
    let html = std::fs::read_to_string(m1.join("report.html")).unwrap();
    assert!(html.contains("<h3>Parts</h3>") && html.contains("-shard-2-of-3"));
    // A merged folder is a run folder: report rebuilds it identically.
    jb().arg("report").arg(&m1).assert().success();
    assert_eq!(std::fs::read(m1.join("report.md")).unwrap(), md.as_bytes());

    // Parts on different hardware: a warning, and charts drawn per hardware, never across.
    let odd = t.path().join("odd").join(parts[2].file_name().unwrap());
    std::fs::create_dir_all(odd.parent().unwrap()).unwrap();
    copy_tree(&parts[2], &odd);
    for f in ["meta.json", "records.jsonl"] {
        let text = std::fs::read_to_string(odd.join(f)).unwrap();
        let cpu = meta.parts[0].machine.cpu_model.clone();
        std::fs::write(odd.join(f), text.replace(&cpu, "Other CPU 9000")).unwrap();
    }
    let m4 = t.path().join("mixed");
    merge(&[parts[0].clone(), parts[1].clone(), odd], &m4, &[]).success();
    let charts: BTreeSet<String> = std::fs::read_dir(m4.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        charts.contains("energy-per-token-hw1.svg") && charts.contains("energy-per-token-hw2.svg"),
        "{charts:?}"
    );
    assert!(!charts.contains("energy-per-token.svg"));
    let md = std::fs::read_to_string(m4.join("report.md")).unwrap();
    assert!(
        md.contains("different hardware") && md.contains("Other CPU 9000"),
        "{md}"
    );

    // A missing shard: refused, then accepted with --allow-partial and listed as missing.
    let m3 = t.path().join("partial");
    merge(&parts[..2], &m3, &[]).failure().stderr(
        predicate::str::contains("a__one__w1").and(predicate::str::contains("--allow-partial")),
    );
    assert!(!m3.exists(), "a refused merge writes nothing");
    merge(&parts[..2], &m3, &["--allow-partial"]).success();
    let md = std::fs::read_to_string(m3.join("report.md")).unwrap();
    assert!(
        md.contains("MISSING") && md.contains("a__one__w1") && md.contains("b__one__w1"),
        "{md}"
    );
    assert_eq!(keys(&m3).len(), 8, "the other shards' records are all kept");

    // A merged folder is not resumed (the missing shard is rerun and merged again).
    jb().arg("run")
        .args(["--resume"])
        .arg(&m3)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot be resumed"));

    // A cell from two parts, a part given twice, an existing output: all refused.
    merge(
        &[parts[0].clone(), whole.clone()],
        &t.path().join("dup"),
        &[],
    )
    .failure()
    .stderr(predicate::str::contains("measured by both"));
    merge(
        &[parts[0].clone(), parts[0].clone()],
        &t.path().join("twice"),
        &[],
    )
    .failure()
    .stderr(predicate::str::contains("given twice"));
    merge(&parts, &m1, &[])
        .failure()
        .stderr(predicate::str::contains("not empty"));
}

#[test]
fn merge_refuses_parts_of_different_suites_and_failed_shards_leave_nothing() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let a = suite(t.path(), "one");
    let b = suite(t.path(), "two");
    let pa = shards(&a, &t.path().join("pa"), 2, &[0]);
    let pb = shards(&b, &t.path().join("pb"), 2, &[1]);
    merge(
        &[pa[0].clone(), pb[0].clone()],
        &t.path().join("m"),
        &["--allow-partial"],
    )
    .failure()
    .stderr(predicate::str::contains("different suite"));
    assert!(!t.path().join("m").exists());

    // The fault hook stands for a node that dies: the shard exits non-zero, writes no folder.
    let o = t.path().join("faulty");
    jb().arg("run")
        .arg(&a)
        .args(["--shard", "1/2", "--out"])
        .arg(&o)
        .env("JOULEBENCH_SHARD_FAULT", "1")
        .assert()
        .failure()
        .stderr(predicate::str::contains("shard 1/2"));
    assert!(!o.exists());

    // A shard on a shared node marks every record so.
    let o = t.path().join("shared");
    jb().arg("run")
        .arg(&a)
        .args(["--shard", "0/2", "--node-shared", "--out"])
        .arg(&o)
        .assert()
        .success();
    let (recs, _) = read_all(&only_dir(&o).join("records.jsonl")).unwrap();
    assert!(!recs.is_empty());
    for r in &recs {
        assert!(r.host.as_ref().unwrap().node_shared);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("shared with other jobs"))
        );
    }
    jb().arg("run")
        .arg(&a)
        .arg("--node-shared")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--shard"));

    // Bad shard syntax is a usage error naming the rule.
    jb().arg("run")
        .arg(&a)
        .args(["--shard", "2/2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("0 <= I < N"));
    // Merging a folder that is not a run.
    merge(&[t.path().to_path_buf()], &t.path().join("m2"), &[])
        .failure()
        .stderr(predicate::str::contains("not a run folder"));
}

#[test]
fn slurm_writes_reviewable_scripts_without_submitting() {
    let t = tempfile::tempdir().unwrap();
    let cfg = suite(t.path(), "sl");
    let out = jb()
        .arg("slurm")
        .arg(&cfg)
        .args([
            "--shards",
            "4",
            "--partition",
            "cpu",
            "--time",
            "0:30:00",
            "--out",
        ])
        .arg(t.path().join("r"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let dir = PathBuf::from(String::from_utf8(out).unwrap().trim());
    let arr = std::fs::read_to_string(dir.join("shards.sbatch")).unwrap();
    assert!(arr.contains("#SBATCH --array=0-3") && arr.contains("#SBATCH --exclusive"));
    assert!(arr.contains(&cfg.display().to_string()));
    let merge = std::fs::read_to_string(dir.join("merge.sbatch")).unwrap();
    assert!(merge.contains("--allow-partial"));
    let sub = std::fs::read_to_string(dir.join("submit.sh")).unwrap();
    assert!(sub.contains("afterany"));
    // Bash accepts all three.
    for f in ["shards.sbatch", "merge.sbatch", "submit.sh"] {
        let ok = std::process::Command::new("bash")
            .arg("-n")
            .arg(dir.join(f))
            .status()
            .unwrap();
        assert!(ok.success(), "{f}");
    }
    jb().arg("slurm")
        .arg(&cfg)
        .args(["--shards", "2", "--time", "1:00 ; rm -rf /"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--time"));
    jb().arg("slurm")
        .arg(&cfg)
        .args(["--shards", "2", "--shared", "--exclusive"])
        .assert()
        .code(2);
}
