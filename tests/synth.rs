//! `models synth`: seeded GGUF files in real architectures' shapes, loaded and run by the engine
//! in the memory of the file (weights kept once, in their format; caches sized to the request).

use crate::common::jb;
use std::path::Path;

fn synth(like: &str, format: &str, seed: &str, out: &Path) -> assert_cmd::assert::Assert {
    jb().args([
        "models", "synth", "--like", like, "--format", format, "--seed", seed, "--out",
    ])
    .arg(out)
    .assert()
}

fn generate(model: &Path, prompt: &str, new: &str) -> serde_json::Value {
    let out = jb()
        .args(["generate", "--model"])
        .arg(model)
        .args([
            "--prompt-tokens",
            prompt,
            "--max-new-tokens",
            new,
            "--ignore-eos",
            "--threads",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn same_seed_same_file_and_refusals_name_what_is_known() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        d.path().join("a.gguf"),
        d.path().join("b.gguf"),
        d.path().join("c.gguf"),
    );
    synth("SmolLM2-135M", "Q4_0", "1", &a).success();
    synth("smollm2-135m", "Q4_0", "1", &b).success();
    synth("smollm2-135m", "Q4_0", "2", &c).success();
    let (fa, fb, fc) = (
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        std::fs::read(&c).unwrap(),
    );
    assert_eq!(fa, fb, "one seed, one file");
    assert_eq!(fa.len(), fc.len());
    assert_ne!(fa, fc, "another seed, other weights");
    // No partial file is left next to the result.
    assert!(!d.path().join("a.gguf.partial").exists());
    let err = synth("gpt-5", "Q4_0", "1", &d.path().join("x.gguf")).failure();
    let msg = String::from_utf8_lossy(&err.get_output().stderr).to_string();
    assert!(
        msg.contains("gpt-5") && msg.contains("llama-3.1-8b"),
        "{msg}"
    );
    let err = synth("smollm2-135m", "Q9_9", "1", &d.path().join("x.gguf")).failure();
    let msg = String::from_utf8_lossy(&err.get_output().stderr).to_string();
    assert!(msg.contains("Q9_9") && msg.contains("Q4_K_M"), "{msg}");
    let err = synth("smollm2-135m", "Q4_0", "1", &a).failure();
    let msg = String::from_utf8_lossy(&err.get_output().stderr).to_string();
    assert!(msg.contains("--force"), "{msg}");
}

/// A Llama-3.2-1B-shaped Q4_K_M file (about 0.8 GB) runs with peak RSS within 1.2x its size plus
/// the key/value cache plus 64 MiB, and says it is synthetic.
#[test]
fn a_1b_shaped_q4_k_m_file_runs_in_the_memory_of_the_file() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("llama-3.2-1b-q4_k_m.gguf");
    synth("llama-3.2-1b", "Q4_K_M", "0", &f).success();
    let size = std::fs::metadata(&f).unwrap().len();
    assert!(size > 700 << 20 && size < 900 << 20, "{size}");
    let v = generate(&f, "16", "4");
    assert_eq!(v["model"]["synthetic"], true, "{v}");
    assert_eq!(v["generated_tokens"], 4, "{v}");
    let engine = v["model"]["engine"]["decode_matmul"].as_str().unwrap();
    assert!(
        engine.contains("q4_k") && engine.contains("q6_k"),
        "{engine}"
    );
    let Some(rss) = v["peak_rss_bytes"].as_u64() else {
        eprintln!("no /proc/self/status here: peak memory not checked");
        return;
    };
    // 16 layers x (K and V) x 8 heads x 64 x 64 positions (20, rounded up) x 4 bytes.
    let kv = 16 * 2 * 8 * 64 * 64 * 4;
    let limit = size as f64 * 1.2 + kv as f64 + (64u64 << 20) as f64;
    assert!(
        (rss as f64) <= limit,
        "peak RSS {} MiB over {} MiB (file {} MiB)",
        rss >> 20,
        limit as u64 >> 20,
        size >> 20
    );
}

/// An 8B-shaped Q4_K_M file (4.6 GB) runs on a 24 GB machine. Writing and loading it take a
/// minute or two: run with `--ignored`.
#[test]
#[ignore]
fn an_8b_shaped_q4_k_m_file_runs() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("llama-3.1-8b-q4_k_m.gguf");
    synth("llama-3.1-8b", "Q4_K_M", "0", &f).success();
    let size = std::fs::metadata(&f).unwrap().len();
    let v = generate(&f, "16", "2");
    assert_eq!(v["generated_tokens"], 2, "{v}");
    eprintln!(
        "8B-shaped Q4_K_M: file {} MiB, peak RSS {} MiB, prefill {:.1} tok/s, decode {:.2} tok/s",
        size >> 20,
        v["peak_rss_bytes"].as_u64().unwrap_or(0) >> 20,
        v["prefill_tokens_per_s"].as_f64().unwrap_or(0.0),
        v["decode_tokens_per_s"].as_f64().unwrap_or(0.0)
    );
    if let Some(rss) = v["peak_rss_bytes"].as_u64() {
        assert!((rss as f64) < size as f64 * 1.2 + (128u64 << 20) as f64);
    }
}
