//! A run folder written by an earlier joulebench (tests/fixtures/run-v1, made from
//! run-v1.suite.toml over a fake powercap tree driven by run-v1.drive.py) must rebuild into the
//! same summaries and the same set of files: the report reads old folders as they were.

use crate::common::{copy_tree, jb};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-v1")
}

fn files(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Equal JSON, numbers within a relative 1e-9 (the figures are recomputed, not copied).
fn same(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-12),
                "{at}: {x} != {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths differ");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                same(p, q, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => same(p, q, &format!("{at}.{k}")),
                    (p, q) => panic!("{at}.{k}: {p:?} vs {q:?}"),
                }
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn an_old_run_folder_rebuilds_into_the_same_summaries_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    copy_tree(&fixture(), &dir);
    // Remove everything `report` writes, so each must be written again.
    for f in ["summary.json", "summary.csv", "report.md", "report.html"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    std::fs::remove_dir_all(dir.join("charts")).unwrap();
    jb().arg("report").arg(&dir).assert().success();

    assert_eq!(files(&dir), files(&fixture()), "the set of files");
    let read =
        |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (old, new) = (
        read(&fixture().join("summary.json")),
        read(&dir.join("summary.json")),
    );
    assert_eq!(new["cells"].as_array().unwrap().len(), 4);
    assert!(
        new["cells"][0]["metrics"]["j_per_request"]["n"] == 5,
        "every repetition counted"
    );
    same(&old, &new, "summary");
    assert_eq!(
        std::fs::read_to_string(fixture().join("summary.csv")).unwrap(),
        std::fs::read_to_string(dir.join("summary.csv")).unwrap()
    );
}
