//! `compare` judges like with like: sides whose energy covers different domains (a lost DRAM
//! zone, a lost GPU) or different scopes are refused, every-row-inconclusive is "nothing
//! compared" (exit 2), and estimated rows say so. Built from the committed fixture run folder.

use crate::common::{copy_tree, jb};
use predicates::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-v1")
}

/// A copy of the fixture with every record passed through `edit` (records it returns None for
/// are left out).
fn side(root: &Path, name: &str, edit: impl Fn(Value) -> Option<Value>) -> PathBuf {
    let dir = root.join(name);
    copy_tree(&fixture(), &dir);
    let text = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(&edit)
        .map(|v| v.to_string())
        .collect();
    std::fs::write(dir.join("records.jsonl"), lines.join("\n") + "\n").unwrap();
    dir
}

/// The record without its DRAM domain: the CPU total lost a part (and reads ~10% lower).
fn without_dram(mut v: Value) -> Option<Value> {
    if let Some(e) = v.get_mut("energy").and_then(|e| e.as_object_mut()) {
        let domains = e["domains"].as_array_mut().unwrap();
        domains.retain(|d| d["name"] != "dram-0");
        for k in [
            "request_j",
            "j_per_request",
            "j_per_decode_token",
            "j_per_prefill_token",
        ] {
            if let Some(x) = e.get(k).and_then(Value::as_f64) {
                e.insert(k.into(), (x * 0.9).into());
            }
        }
    }
    Some(v)
}

#[test]
fn a_side_that_lost_a_domain_is_refused_not_called_an_improvement() {
    let t = tempfile::tempdir().unwrap();
    let base = side(t.path(), "base", Some);
    let cand = side(t.path(), "cand", without_dram);
    jb().arg("compare")
        .arg(&base)
        .arg(&cand)
        .assert()
        .code(2)
        .stdout(predicate::str::contains("NOT COMPARABLE"))
        .stdout(predicate::str::contains("rapl/dram-0"))
        .stdout(predicate::str::contains("--allow-scope-mismatch"))
        .stdout(predicate::str::contains("IMPROVED").not());
    // Swapped, it is not a regression either.
    jb().arg("compare").arg(&cand).arg(&base).assert().code(2);
    // Asked for, it is compared and labelled.
    jb().arg("compare")
        .arg(&base)
        .arg(&cand)
        .arg("--allow-scope-mismatch")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "compared anyway (--allow-scope-mismatch)",
        ));
    // The same side against itself passes.
    jb().arg("compare").arg(&base).arg(&base).assert().code(0);
}

#[test]
fn every_row_inconclusive_is_nothing_compared() {
    let t = tempfile::tempdir().unwrap();
    let two = |v: Value| (v["repetition"].as_u64().unwrap_or(0) <= 2).then_some(v);
    let (base, cand) = (side(t.path(), "base", two), side(t.path(), "cand", two));
    jb().arg("compare")
        .arg(&base)
        .arg(&cand)
        .assert()
        .code(2)
        .stdout(predicate::str::contains("NOTHING COMPARED"))
        .stdout(predicate::str::contains("5 or more are recommended"));
}

#[test]
fn estimated_rows_are_labelled_in_text() {
    let t = tempfile::tempdir().unwrap();
    let estimated = |mut v: Value| {
        if let Some(e) = v.get_mut("energy").and_then(|e| e.as_object_mut()) {
            e.insert("provenance".into(), "estimated".into());
        }
        Some(v)
    };
    let (base, cand) = (
        side(t.path(), "base", estimated),
        side(t.path(), "cand", estimated),
    );
    jb().arg("compare")
        .arg(&base)
        .arg(&cand)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("[ESTIMATED]"));
}
