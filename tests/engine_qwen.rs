//! Qwen2 and Qwen3 GGUF files (tiny, random, written here) on the plain-Rust forward: loading,
//! the byte-level tokenizer with the qwen2 pre-tokenizer, deterministic greedy generation at
//! batch 2 (Qwen3 included).

use crate::common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use joulebench::engine::models::{LoadOptions, load};
use joulebench::engine::{GenerateRequest, NoObserver, text::tokenizer};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::path::Path;

const H: usize = 32;
const HEADS: usize = 4;
const KV: usize = 2;
const FF: usize = 64;

fn write(path: &Path, arch: &str) {
    let vocab = common::byte_level_vocab(257);
    let n = vocab.len();
    let hd = H / HEADS;
    let mut rng = StdRng::seed_from_u64(3);
    let mut t = |shape: &[usize], s: f32| {
        let len: usize = shape.iter().product();
        let v: Vec<f32> = (0..len).map(|_| rng.random_range(-s..s)).collect();
        QTensor::quantize(
            &Tensor::from_vec(v, shape, &Device::Cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), t(&[n, H], 1.0)),
        ("output_norm.weight".into(), t(&[H], 1.0)),
        ("output.weight".into(), t(&[n, H], 0.3)),
    ];
    let l = "blk.0";
    for (name, shape) in [
        ("attn_q.weight", vec![HEADS * hd, H]),
        ("attn_k.weight", vec![KV * hd, H]),
        ("attn_v.weight", vec![KV * hd, H]),
        ("attn_output.weight", vec![H, HEADS * hd]),
        ("ffn_gate.weight", vec![FF, H]),
        ("ffn_up.weight", vec![FF, H]),
        ("ffn_down.weight", vec![H, FF]),
        ("attn_norm.weight", vec![H]),
        ("ffn_norm.weight", vec![H]),
    ] {
        tensors.push((format!("{l}.{name}"), t(&shape, 0.3)));
    }
    if arch == "qwen2" {
        for (name, len) in [
            ("attn_q.bias", HEADS * hd),
            ("attn_k.bias", KV * hd),
            ("attn_v.bias", KV * hd),
        ] {
            tensors.push((format!("{l}.{name}"), t(&[len], 0.1)));
        }
    } else {
        tensors.push((format!("{l}.attn_q_norm.weight"), t(&[hd], 1.0)));
        tensors.push((format!("{l}.attn_k_norm.weight"), t(&[hd], 1.0)));
    }
    let k = |s: &str| format!("{arch}.{s}");
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.dtype".into(), Value::U32(0)),
        (k("attention.head_count"), Value::U32(HEADS as u32)),
        (k("attention.head_count_kv"), Value::U32(KV as u32)),
        (k("attention.key_length"), Value::U32(hd as u32)),
        (k("embedding_length"), Value::U32(H as u32)),
        (k("context_length"), Value::U32(128)),
        (k("block_count"), Value::U32(1)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (k("rope.freq_base"), Value::F32(10_000.0)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(vocab.iter().cloned().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(vec![])),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                (0..n)
                    .map(|i| Value::I32(if i == n - 1 { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            Value::U32((n - 1) as u32),
        ),
        (
            "tokenizer.chat_template".into(),
            Value::String("{{'<|im_start|>' + message['role']}}".into()),
        ),
    ];
    md.sort_by(|a, b| a.0.cmp(&b.0));
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(a, b)| (a.as_str(), b)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(a, b)| (a.as_str(), b)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

#[test]
fn qwen2_and_qwen3_generate_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["qwen2", "qwen3"] {
        let p = dir.path().join(format!("{arch}.gguf"));
        write(&p, arch);
        let mut a = load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {}).unwrap();
        let mut b = load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(a.info().architecture, arch);
        assert!(
            a.info().engine.decode_matmul.contains("f32"),
            "{}",
            a.info().engine.decode_matmul
        );
        let tok = a.tokenizer().unwrap().clone();
        let ids = tokenizer::encode(&tok, "Hello, wörld 123").unwrap();
        assert_eq!(tokenizer::decode(&tok, &ids).unwrap(), "Hello, wörld 123");
        assert_eq!(tokenizer::encode(&tok, "<|endoftext|>").unwrap().len(), 1);
        let batch = 2;
        let req = GenerateRequest {
            prompts: vec![ids.clone(); batch],
            max_new_tokens: 6,
            ignore_eos: true,
            stop: Vec::new(),
        };
        let x = a.generate(&req, &mut NoObserver).unwrap();
        let y = b.generate(&req, &mut NoObserver).unwrap();
        assert_eq!(x.generated, y.generated, "{arch}");
        assert!(
            x.generated.iter().all(|g| *g == x.generated[0]),
            "{arch}: equal prompts agree"
        );
        assert_eq!(x.generated_tokens(), 6 * batch);
    }
}
