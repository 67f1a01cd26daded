//! SmolLM2-135M (llama architecture) on joulebench's default path, checked against llama.cpp
//! (llama-cpp-python 0.3.36, the build scripts/llama-cpp-server.sh installs) on the same files,
//! in every common GGUF format: the registered Q4_1 file, and the same model requantized by
//! llama.cpp's own quantizer (`llama_model_quantize`, allow-requantize) into Q4_0, Q5_0, Q5_1,
//! Q8_0, Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K and F16.
//!
//! Two correct implementations of a quantized model agree exactly only where the model is
//! decisive: both quantize activations to 8 bits, so a difference in the last bit of a sum (the
//! order a kernel adds in) can flip the rounding of an activation and move the logits by a few
//! tenths. So the check is:
//! - teacher-forced on llama.cpp's own greedy continuation, our argmax equals llama.cpp's at
//!   every position where llama.cpp's top two logits are at least `MARGIN` apart;
//! - free-running, our greedy tokens equal llama.cpp's at least up to llama.cpp's first
//!   near-tie (a flip there makes the two continue from different texts).
//!
//! The per-format counts are printed (`--nocapture`); the closing notes quote them.

use crate::common;

use joulebench::engine::models::{LoadOptions, load};
use joulebench::engine::{GenerateRequest, InferenceBackend, NoObserver};
use std::ffi::OsStr;
use std::path::Path;

/// "The history of energy measurement" in SmolLM2's vocabulary.
const PROMPT: [u32; 5] = [504, 1463, 282, 1439, 7585];

/// A top-two gap (in logits) below which two correct implementations may pick either token.
const MARGIN: f32 = 0.5;

/// llama.cpp's file type numbers (`enum llama_ftype`).
const FORMATS: &[(&str, u32)] = &[
    ("Q4_0", 2),
    ("Q5_0", 8),
    ("Q5_1", 9),
    ("Q8_0", 7),
    ("Q2_K", 10),
    ("Q3_K_M", 12),
    ("Q4_K_M", 15),
    ("Q5_K_M", 17),
    ("Q6_K", 18),
    ("F16", 1),
];

use crate::common::default_model as model_path;

/// Requantizes `src` into each of `FORMATS` under `dir` with llama.cpp's quantizer, then for
/// every file (the source first) runs llama.cpp greedily from `PROMPT` for 16 tokens: the tokens
/// and, at each step, the gap between its top two logits.
fn reference(py: &Path, src: &Path, dir: &Path) -> serde_json::Value {
    let code = r#"
import ctypes, json, sys, llama_cpp
src, out_dir, formats, prompt = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
files = [["source", src]]
for name, ftype in formats:
    dst = f"{out_dir}/smollm2-135m-{name}.gguf"
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.allow_requantize = True
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"quantizing to {name} failed: {rc}")
    files.append([name, dst])
res = []
for name, path in files:
    llm = llama_cpp.Llama(model_path=path, n_ctx=128, n_threads=2, n_batch=128, logits_all=True, verbose=False)
    llm.eval(prompt)
    toks, gaps = [], []
    for _ in range(16):
        row = llm.scores[llm.n_tokens - 1]
        order = row.argsort()
        toks.append(int(order[-1]))
        gaps.append(float(row[order[-1]] - row[order[-2]]))
        llm.eval([toks[-1]])
    res.append({"format": name, "path": path, "greedy": toks, "gaps": gaps})
    del llm
open(f"{out_dir}/reference.json", "w").write(json.dumps(res))
"#;
    let (formats, prompt) = (
        serde_json::to_string(FORMATS).unwrap(),
        serde_json::to_string(&PROMPT).unwrap(),
    );
    common::run_reference(
        py,
        code,
        &[
            src.as_os_str(),
            dir.as_os_str(),
            OsStr::new(&formats),
            OsStr::new(&prompt),
        ],
    );
    // llama.cpp's quantizer logs to stdout: the answer goes to a file.
    let text = std::fs::read(dir.join("reference.json")).expect("reference.json written");
    serde_json::from_slice(&text).expect("json")
}

fn next_token(m: &mut dyn InferenceBackend, ids: &[u32]) -> u32 {
    let req = GenerateRequest {
        prompts: vec![ids.to_vec()],
        max_new_tokens: 1,
        ignore_eos: true,
        stop: Vec::new(),
    };
    m.generate(&req, &mut NoObserver).unwrap().generated[0][0]
}

#[test]
fn every_format_agrees_with_llama_cpp_wherever_the_model_is_decisive() {
    let py = common::llama_cpp_python();
    let dir = tempfile::tempdir().unwrap();
    let want = reference(&py, &model_path(), dir.path());
    let mut table = vec![format!(
        "{:<7} {:>12} {:>15} {:>10} {:>9}  kernels (decode)",
        "format", "free-running", "teacher-forced", "decisive", "min gap"
    )];
    let mut failures = Vec::new();
    for r in want.as_array().unwrap() {
        let name = r["format"].as_str().unwrap();
        let theirs: Vec<u32> = serde_json::from_value(r["greedy"].clone()).unwrap();
        let gaps: Vec<f32> = serde_json::from_value(r["gaps"].clone()).unwrap();
        let mut m = load(
            r["path"].as_str().unwrap(),
            &LoadOptions::default(),
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let info = m.info().clone();
        assert_eq!(info.architecture, "llama");
        assert!(
            !info.engine.prefill_matmul.contains("dense")
                && !info.engine.prefill_matmul.contains("candle"),
            "{name}: the default plan runs on joulebench's kernels: {}",
            info.engine.prefill_matmul
        );
        let free = m
            .generate(
                &GenerateRequest {
                    prompts: vec![PROMPT.to_vec()],
                    max_new_tokens: 16,
                    ignore_eos: true,
                    stop: Vec::new(),
                },
                &mut NoObserver,
            )
            .unwrap()
            .generated[0]
            .clone();
        let agree = free.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
        let first_tie = gaps.iter().position(|g| *g < MARGIN).unwrap_or(16);
        let mut forced = 0;
        let mut ctx = PROMPT.to_vec();
        for (i, &t) in theirs.iter().enumerate() {
            let ours = next_token(m.as_mut(), &ctx);
            if ours == t {
                forced += 1;
            } else if gaps[i] >= MARGIN {
                failures.push(format!(
                    "{name}: position {i}: ours {ours}, llama.cpp {t} by a gap of {:.2}",
                    gaps[i]
                ));
            }
            ctx.push(t);
        }
        if agree < first_tie {
            failures.push(format!(
                "{name}: free-running greedy left llama.cpp's at token {agree}, before its \
                 first near-tie at {first_tie}: ours {free:?}, llama.cpp {theirs:?}"
            ));
        }
        let decisive = gaps.iter().filter(|g| **g >= MARGIN).count();
        let min_gap = gaps.iter().copied().fold(f32::INFINITY, f32::min);
        table.push(format!(
            "{name:<7} {:>12} {:>15} {:>10} {min_gap:>9.2}  {}",
            format!("{agree} of 16"),
            format!("{forced} of 16"),
            format!("{decisive} of 16"),
            info.engine.decode_matmul
        ));
    }
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
