//! Workloads whose requests differ in length: ShareGPT read from the real packaged file (cut in
//! the middle of a record) and from small cut files, requests drawn from it through the default
//! model's tokenizer, and `lengths` drawn from distributions; each record keeps every request's
//! lengths.

use crate::common;

use joulebench::config::lengths::{Dist, Lengths};
use joulebench::engine::text::dataset::{self, read_sharegpt};
use joulebench::record::{Record, Status};
use joulebench::store::registry;
use std::path::{Path, PathBuf};

fn run(dir: &Path, body: &str) -> (i32, Vec<Record>, String) {
    let r = common::run_suite_text(dir, body);
    (r.code, r.records, r.stderr)
}

fn header(dir: &Path, model: &str) -> String {
    format!(
        "[suite]\nname = \"varied\"\nwarmup = 0\nrepetitions = 2\nidle_seconds = 0\nmin_window_ms = 1\n\n\
         [meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n[[model]]\nid = \"{model}\"\n\n\
         [[profile]]\nname = \"p\"\nthreads = 1\n\n",
        dir.join("none").display()
    )
}

/// The registered ShareGPT V3 file (`joulebench models fetch sharegpt` caches it; CI does).
fn sharegpt_path() -> PathBuf {
    let m = registry::dataset("sharegpt").unwrap();
    registry::resolve(m, true, &mut |s| eprintln!("{s}"))
        .expect("ShareGPT must be cached or fetchable: joulebench models fetch sharegpt")
        .join(m.files[0].name)
}

/// The packaged file is cut inside its 17,672nd record: the 17,671 complete conversations are
/// read, 11,135 of which start with a human turn answered by the assistant.
#[test]
fn the_real_sharegpt_file_gives_its_complete_conversations() {
    let r = read_sharegpt(&sharegpt_path()).unwrap();
    assert_eq!((r.conversations, r.usable.len()), (17_671, 11_135));
    assert!(r.truncated);
    assert!(
        r.usable[0]
            .prompt
            .starts_with("Summarize the main ideas of Jeff Walker's")
    );
    assert!(r.usable[0].reply.starts_with("Here are the main ideas"));
}

/// A ShareGPT-format file with replies of known lengths, cut mid-record.
fn small_dataset(dir: &Path) -> PathBuf {
    let mut parts = Vec::new();
    for i in 0..40 {
        let reply = "word ".repeat(3 + i % 17);
        let prompt = format!("Question {i}: {}", "tell me more ".repeat(1 + i % 5));
        parts.push(
            serde_json::json!({"id": i.to_string(), "conversations": [
                {"from": "human", "value": prompt}, {"from": "gpt", "value": reply}]})
            .to_string(),
        );
        if i % 7 == 0 {
            parts.push(
                serde_json::json!({"conversations": [{"from": "gpt", "value": "hello"}]})
                    .to_string(),
            );
        }
    }
    let mut text = format!("[{}]", parts.join(",\n"));
    text.truncate(text.len() - 40);
    let p = dir.join("conv.json");
    std::fs::write(&p, text).unwrap();
    p
}

/// An in-process dataset workload: each request is a drawn conversation's prompt through the
/// chat template, and generates its reply's length capped at new_tokens; the record says how
/// the draw went and keeps every request's lengths, the same in both repetitions.
#[test]
fn a_dataset_workload_runs_each_drawn_request_at_its_own_lengths() {
    let t = tempfile::tempdir().unwrap();
    let file = small_dataset(t.path());
    let body = format!(
        "{}[[workload]]\nname = \"chat\"\ndataset = \"conv.json\"\nnew_tokens = 12\nrequests = 5\nseed = 4\n",
        header(t.path(), registry::DEFAULT_MODEL)
    );
    let (code, recs, err) = run(t.path(), &body);
    assert_eq!(code, 0, "{err}");
    assert_eq!(recs.len(), 2);
    let read = read_sharegpt(&file).unwrap();
    assert!(read.truncated);
    for r in &recs {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let d = r.dataset.as_ref().expect("dataset figures");
        assert_eq!(
            (d.conversations, d.usable, d.sampled),
            (read.conversations, read.usable.len(), 5)
        );
        assert!(d.truncated && d.sha256.is_none() && d.seed == 4 && d.output_cap == 12);
        assert_eq!(r.request_tokens.len(), 5);
        assert_eq!(r.latency.as_ref().unwrap().requests, 5);
        assert_eq!(r.inner_iterations, 5);
        for [p, g] in &r.request_tokens {
            assert!(
                *p >= dataset::MIN_TOKENS && (1..=12).contains(g),
                "{:?}",
                r.request_tokens
            );
        }
        let prompts: std::collections::BTreeSet<usize> =
            r.request_tokens.iter().map(|x| x[0]).collect();
        assert!(
            prompts.len() > 1,
            "prompts of one length: {:?}",
            r.request_tokens
        );
    }
    assert_eq!(recs[0].request_tokens, recs[1].request_tokens);
}

/// `lengths` on a synthetic model: each request's prompt and output come from the seeded
/// draws, exactly.
#[test]
fn drawn_lengths_are_the_lengths_each_request_runs() {
    let t = tempfile::tempdir().unwrap();
    let body = format!(
        "{}[[workload]]\nname = \"ln\"\nlengths = {{ prompt = \"lognormal(24, 10)\", output = \"uniform(2, 9)\" }}\n\
         requests = 6\nseed = 11\n",
        header(t.path(), "synthetic:llama-tiny")
    );
    let (code, recs, err) = run(t.path(), &body);
    assert_eq!(code, 0, "{err}");
    let want = Lengths {
        prompt: Some(Dist::LogNormal(24.0, 10.0)),
        output: Some(Dist::Uniform(2.0, 9.0)),
    }
    .draw(6, 0, 0, 11);
    for r in &recs {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let got: Vec<(usize, usize)> = r.request_tokens.iter().map(|x| (x[0], x[1])).collect();
        assert_eq!(got, want);
        assert!(r.dataset.is_none());
    }
}

#[test]
fn dataset_settings_are_checked_with_the_line() {
    let t = tempfile::tempdir().unwrap();
    for (workload, says) in [
        (
            "dataset = \"wikipedia\"\nnew_tokens = 4",
            "use sharegpt or a path",
        ),
        (
            "dataset = \"sharegpt\"\nnew_tokens = 4\nbatch = 2",
            "static batch",
        ),
        ("new_tokens = 4", "prompt_tokens must be at least 1"),
        (
            "lengths = { prompt = \"lognormal(5)\" }\nnew_tokens = 4",
            "lognormal(MEAN, SD)",
        ),
        (
            "dataset = \"sharegpt\"\nnew_tokens = 4\nlengths = { output = \"fixed(3)\" }",
            "not both",
        ),
    ] {
        let body = format!(
            "{}[[workload]]\nname = \"w\"\n{workload}\n",
            header(t.path(), "synthetic:llama-tiny")
        );
        common::assert_suite_refused(t.path(), &body, says);
    }
}
