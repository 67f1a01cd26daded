//! Gemma 3 270M (registered: `gemma-3-270m-q4_k_m`, four chunk wheels on PyPI) against llama.cpp
//! (llama-cpp-python 0.3.36, the build scripts/llama-cpp-server.sh installs) on the same file:
//! SentencePiece tokenization of tricky strings, the last position's logits, and greedy tokens.

use crate::common;

use joulebench::engine::models::{LoadOptions, load};
use joulebench::engine::text::{prompt, tokenizer};
use joulebench::engine::{GenerateRequest, NoObserver};
use joulebench::store::registry;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

fn gemma_file() -> PathBuf {
    let m = registry::lookup("gemma-3-270m-q4_k_m").expect("registered");
    let dir = registry::resolve(m, true, &mut |s| eprintln!("{s}")).expect("fetched");
    dir.join(m.files[0].name)
}

const STRINGS: &[&str] = &[
    "The history of energy measurement",
    "  two leading spaces and  double  gaps ",
    "digits 1234567890 and 3.14159, 1e-9",
    "Crème brûlée, naïve café — 東京の天気は晴れ 🌍🔋!",
    "\ttabs\tand\nnew lines\r\n",
    "<start_of_turn>user\nHi<end_of_turn>\n",
    "rare bytes: \u{1F9EC}\u{E000}\u{10FFFD}",
];

const PROMPT: &str = "The three most important ways to save energy at home are";

/// llama.cpp's view: tokens of every string (special tokens parsed), then for BOS + PROMPT the
/// last position's logits (as a list) and 16 greedy tokens.
fn reference(py: &Path, model: &Path) -> serde_json::Value {
    let code = r#"
import json, sys, llama_cpp
path = sys.argv[1]
strings = json.loads(sys.argv[2])
llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=2, n_batch=256, logits_all=True,
                      verbose=False)
toks = [llm.tokenize(s.encode(), add_bos=False, special=True) for s in strings]
ids = llm.tokenize(sys.argv[3].encode(), add_bos=True, special=True)
llm.reset()
llm.eval(ids)
last = [float(x) for x in llm.scores[llm.n_tokens - 1]]
out = []
for _ in range(16):
    row = llm.scores[llm.n_tokens - 1]
    t = int(row.argmax())
    out.append(t)
    llm.eval([t])
print(json.dumps({"tokens": toks, "prompt": ids, "logits": last, "greedy": out}))
"#;
    let strings = serde_json::to_string(STRINGS).unwrap();
    let out = common::run_reference(
        py,
        code,
        &[model.as_os_str(), OsStr::new(&strings), OsStr::new(PROMPT)],
    );
    serde_json::from_slice(&out).expect("json")
}

#[test]
fn gemma3_matches_llama_cpp_on_the_same_file() {
    let model = gemma_file();
    let py = common::llama_cpp_python();
    let want = reference(&py, &model);
    let mut m = load(
        model.to_str().unwrap(),
        &LoadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let info = m.info().clone();
    assert_eq!(info.architecture, "gemma3");
    let tok = m.tokenizer().unwrap().clone();
    for (s, w) in STRINGS.iter().zip(want["tokens"].as_array().unwrap()) {
        let ours = tokenizer::encode(&tok, s).unwrap();
        let theirs: Vec<u32> = serde_json::from_value(w.clone()).unwrap();
        assert_eq!(ours, theirs, "tokens of {s:?}");
        assert_eq!(
            tokenizer::decode(&tok, &ours).unwrap(),
            *s,
            "round trip of {s:?}"
        );
    }
    // A chat prompt: BOS, then Gemma's turns (the file has no template; Gemma's is used).
    let fmt = prompt::ChatFormat::detect(m.chat_template().unwrap()).unwrap();
    assert_eq!(fmt, prompt::ChatFormat::Gemma);
    let chat = prompt::prompt_tokens(&tok, 48, Some(fmt), info.bos_token_id).unwrap();
    assert_eq!(chat.len(), 48);
    let id = |s: &str| tok.token_to_id(s).unwrap();
    assert_eq!(chat[..2], [2, id("<start_of_turn>")]);
    assert_eq!(chat[chat.len() - 3], id("<start_of_turn>"));
    let prompt: Vec<u32> = serde_json::from_value(want["prompt"].clone()).unwrap();
    assert_eq!(
        [&[2u32][..], &tokenizer::encode(&tok, PROMPT).unwrap()].concat(),
        prompt
    );
    // Logits of the prompt's last position: same ranking at the top, close values.
    let theirs: Vec<f32> = serde_json::from_value(want["logits"].clone()).unwrap();
    let req = GenerateRequest {
        prompts: vec![prompt.clone()],
        max_new_tokens: 16,
        ignore_eos: true,
        stop: Vec::new(),
    };
    let out = m.generate(&req, &mut NoObserver).unwrap();
    let greedy: Vec<u32> = serde_json::from_value(want["greedy"].clone()).unwrap();
    let agree = out.generated[0]
        .iter()
        .zip(&greedy)
        .take_while(|(a, b)| a == b)
        .count();
    eprintln!(
        "gemma3: greedy ours {:?}\n        llama.cpp {greedy:?}\n        {agree} of 16 agree",
        out.generated[0]
    );
    // 16 of 16 on this machine; a near-tie may flip on another CPU (summation order).
    assert!(agree >= 12, "only {agree} of 16 greedy tokens agree");
    let ours = joulebench::engine::models::decoder::reference_logits(&model, &prompt).unwrap();
    let top = |v: &[f32]| {
        let mut i: Vec<usize> = (0..v.len()).collect();
        i.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
        i.truncate(5);
        i
    };
    assert_eq!(top(&ours)[0], top(&theirs)[0], "top token");
    let (mut d, mut n) = (0f64, 0f64);
    for (a, b) in ours.iter().zip(&theirs) {
        d += ((a - b) as f64).powi(2);
        n += (*b as f64).powi(2);
    }
    let rel = (d / n).sqrt();
    eprintln!("gemma3: last-position logits, relative RMS difference {rel:.4}");
    assert!(rel < 0.05, "logits differ by {rel}");
}
