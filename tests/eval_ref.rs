//! joulebench's multiple-choice scoring against llama.cpp on the same GGUF file: the reference
//! log-likelihoods of 200 ARC-Easy documents (`tests/fixtures/eval-ref/`, written by
//! `scripts/eval-reference.py` with llama-cpp-python 0.3.36) and the engine's, choice by choice.
//! Picks are compared where llama.cpp's two best choices are at least 0.05 nats apart.
//!
//! llama.cpp is not reproducible to that precision itself: the same file scored one token at a
//! time (`--n-batch 1`) instead of in one batch moves its log-likelihoods by 0.13 nats at the
//! median on SmolLM2-135M and changes 3% of its decisive picks (its kernels round differently,
//! and a small quantized model amplifies rounding). The checks are read against that spread:
//! the engine stays within it, and within fixed bounds that any scoring mistake (a lost BOS, a
//! shifted continuation, a wrong normalizer) breaks by far.

use crate::common::default_model;
use joulebench::engine::models::{LoadOptions, load};
use joulebench::engine::text::eval::{Choice, McMetric, choice_tokens};
use joulebench::engine::text::tokenizer;
use joulebench::engine::{NoObserver, ScoreRequest};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct Reference {
    model_sha256: String,
    docs: Vec<Doc>,
}

#[derive(Deserialize)]
struct Doc {
    doc_id: u64,
    choices: Vec<RefChoice>,
}

#[derive(Deserialize)]
struct RefChoice {
    context: String,
    continuation: String,
    tokens: usize,
    loglik: f64,
}

/// What one model's comparison found.
struct Agreement {
    decisive: usize,
    same_pick: usize,
    median_abs: f64,
    worst: (u64, f64),
}

fn read(reference: &Path) -> Reference {
    serde_json::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap()
}

/// How closely `got` (each document's log-likelihoods, in order) follows the reference `r`.
fn agreement(r: &Reference, got: &[Vec<f64>]) -> Agreement {
    assert_eq!(got.len(), r.docs.len());
    let (mut decisive, mut same_pick) = (0, 0);
    let mut diffs = Vec::new();
    let mut worst = (0, 0.0);
    for (d, got) in r.docs.iter().zip(got) {
        let want: Vec<f64> = d.choices.iter().map(|c| c.loglik).collect();
        assert_eq!(got.len(), want.len(), "doc {}", d.doc_id);
        for (g, w) in got.iter().zip(&want) {
            let diff = (g - w).abs();
            if diff > worst.1 {
                worst = (d.doc_id, diff);
            }
            diffs.push(diff);
        }
        let chars = vec![1; want.len()];
        let mut sorted = want.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted.len() > 1 && sorted[0] - sorted[1] >= 0.05 {
            decisive += 1;
            same_pick += usize::from(
                McMetric::AccRaw.pick(got, &chars) == McMetric::AccRaw.pick(&want, &chars),
            );
        }
    }
    diffs.sort_by(f64::total_cmp);
    Agreement {
        decisive,
        same_pick,
        median_abs: diffs[diffs.len() / 2],
        worst,
    }
}

/// The engine's log-likelihoods for every choice of the reference's documents.
fn engine_scores(model: &Path, r: &Reference) -> Vec<Vec<f64>> {
    assert_eq!(
        joulebench::store::registry::sha256_file(model).unwrap(),
        r.model_sha256,
        "the reference was made from another file"
    );
    let mut m = load(
        model.to_str().unwrap(),
        &LoadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let tok = m.tokenizer().unwrap().clone();
    let enc = |s: &str| tokenizer::encode(&tok, s);
    let bos = m.info().bos_token_id;
    let mut out = Vec::new();
    for d in &r.docs {
        let mut req = ScoreRequest {
            choices: Vec::new(),
            starts: Vec::new(),
        };
        for c in &d.choices {
            let choice = Choice {
                context: c.context.clone(),
                continuation: c.continuation.clone(),
            };
            let (ids, start) = choice_tokens(&enc, &choice, bos, 0).unwrap();
            assert_eq!(
                ids.len() - start,
                c.tokens,
                "doc {}: {:?} tokenizes differently",
                d.doc_id,
                c.continuation
            );
            req.choices.push(ids);
            req.starts.push(start);
        }
        out.push(m.score(&req, &mut NoObserver).unwrap().loglik);
    }
    out
}

fn say(who: &str, a: &Agreement) {
    eprintln!(
        "{who}: same pick on {} of {} decisive documents; median |diff| {:.4} nats; worst {:.4} \
         (doc {})",
        a.same_pick, a.decisive, a.median_abs, a.worst.1, a.worst.0
    );
}

/// The default model against llama.cpp, read against llama.cpp's own spread (the same file,
/// one token at a time).
#[test]
fn the_default_model_scores_arc_easy_as_llama_cpp_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval-ref");
    let r = read(&dir.join("smollm2-135m-instruct-q4_1.arc_easy.rc_0shot.json"));
    let itself = read(&dir.join("smollm2-135m-instruct-q4_1.arc_easy.rc_0shot.nbatch1.json"));
    let spread = agreement(
        &r,
        &itself
            .docs
            .iter()
            .map(|d| d.choices.iter().map(|c| c.loglik).collect())
            .collect::<Vec<_>>(),
    );
    let got = engine_scores(&default_model(), &r);
    let a = agreement(&r, &got);
    say("llama.cpp, one token at a time", &spread);
    say("joulebench", &a);
    // For the record: the engine against llama.cpp's one-token-at-a-time scores.
    say(
        "joulebench against one token at a time",
        &agreement(&itself, &got),
    );
    assert!(a.decisive >= 150, "{} decisive documents", a.decisive);
    // Fixed bounds: a scoring mistake moves every document by nats, not tenths.
    assert!(
        a.same_pick as f64 >= 0.95 * a.decisive as f64,
        "{} of {}",
        a.same_pick,
        a.decisive
    );
    assert!(a.median_abs <= 0.2, "{}", a.median_abs);
    // Within llama.cpp's own spread: at most two more changed picks, and a median difference
    // at most half again its own.
    assert!(
        a.same_pick + 2 >= spread.same_pick,
        "{} same picks; llama.cpp itself {}",
        a.same_pick,
        spread.same_pick
    );
    assert!(
        a.median_abs <= 1.5 * spread.median_abs,
        "{} against llama.cpp's own {}",
        a.median_abs,
        spread.median_abs
    );
}

/// The same check for the rest of the ladder (Gemma 3 270M, Qwen2.5-Coder 0.5B and 1.5B: about
/// 1.9 GB to fetch, so not in the default test run). `JOULEBENCH_LADDER=ID,ID` limits it to some.
#[test]
#[ignore = "needs the ladder models (models fetch; ~1.9 GB): run with -- --ignored eval_ref::"]
fn every_ladder_model_scores_arc_easy_as_llama_cpp_does() {
    use joulebench::store::registry;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let only = std::env::var("JOULEBENCH_LADDER").unwrap_or_default();
    let mut failed = Vec::new();
    for id in [
        "gemma-3-270m-q4_k_m",
        "qwen2.5-coder-0.5b-instruct-q4_k_m",
        "qwen2.5-coder-1.5b-instruct-q4_k_m",
    ] {
        if !only.is_empty() && !only.split(',').any(|o| o == id) {
            continue;
        }
        let m = registry::lookup(id).unwrap();
        let fixture = root.join(format!(
            "tests/fixtures/eval-ref/{id}.arc_easy.rc_0shot.json"
        ));
        let file = registry::resolve(m, true, &mut |s| eprintln!("{s}"))
            .unwrap_or_else(|e| panic!("{id}: {e}"))
            .join(m.files[0].name);
        let r = read(&fixture);
        let a = agreement(&r, &engine_scores(&file, &r));
        say(id, &a);
        if (a.same_pick as f64) < 0.95 * a.decisive as f64 || a.median_abs > 0.2 {
            failed.push(id);
        }
    }
    assert!(failed.is_empty(), "outside the bounds: {failed:?}");
}
