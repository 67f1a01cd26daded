//! Every architecture of the plain-Rust forward checked logit by logit against
//! candle-transformers' own module for it, on small random GGUF files written here (llama,
//! qwen2, qwen3, phi3, gemma3), in F32 (tight) and in quantized formats (the kernels quantize
//! activations to 8 bits as llama.cpp does, candle's modules as well, so the tolerance is wider).
//! The modules' answers are recorded (`common::candle_ref`); `--features qwen-modules` asks them
//! live.
//! candle-transformers' quantized_gemma3 gates its feed-forward with SiLU where Gemma (and
//! llama.cpp) use GELU, so Gemma 3 is compared with the activation swapped to SiLU on our side
//! (everything else must then agree) and checked to differ with GELU; the real check of Gemma 3
//! is against llama.cpp on the 270M file (`tests/gemma.rs`).

use crate::common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use joulebench::engine::models::decoder::{Act, reference_logits, reference_logits_as};
use joulebench::engine::models::{LoadOptions, load};
use joulebench::engine::{GenerateRequest, NoObserver};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::path::Path;

const H: usize = 256;
const HEADS: usize = 4;
const KV: usize = 2;
const FF: usize = 512;
const LAYERS: usize = 2;
const VOCAB: usize = 320;

/// Writes a random `arch` model with matrices in `dtype` (norms and biases in F32).
fn write(path: &Path, arch: &str, dtype: GgmlDType, seed: u64) {
    let hd = H / HEADS;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = |shape: &[usize], s: f32, base: f32, dt: GgmlDType| {
        let len: usize = shape.iter().product();
        let v: Vec<f32> = (0..len).map(|_| base + rng.random_range(-s..s)).collect();
        QTensor::quantize(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap(), dt).unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), t(&[VOCAB, H], 0.5, 0.0, dtype)),
        (
            "output_norm.weight".into(),
            t(&[H], 0.2, 1.0, GgmlDType::F32),
        ),
    ];
    if arch != "gemma3" {
        tensors.push(("output.weight".into(), t(&[VOCAB, H], 0.1, 0.0, dtype)));
    }
    let m = 1.0 / (H as f32).sqrt();
    for i in 0..LAYERS {
        let l = format!("blk.{i}");
        let mut mats: Vec<(&str, Vec<usize>)> = vec![
            ("attn_output.weight", vec![H, HEADS * hd]),
            ("ffn_down.weight", vec![H, FF]),
        ];
        if arch == "phi3" {
            mats.push(("attn_qkv.weight", vec![(HEADS + 2 * KV) * hd, H]));
            mats.push(("ffn_up.weight", vec![2 * FF, H]));
        } else {
            mats.push(("attn_q.weight", vec![HEADS * hd, H]));
            mats.push(("attn_k.weight", vec![KV * hd, H]));
            mats.push(("attn_v.weight", vec![KV * hd, H]));
            mats.push(("ffn_gate.weight", vec![FF, H]));
            mats.push(("ffn_up.weight", vec![FF, H]));
        }
        for (name, shape) in mats {
            let s = if name == "ffn_down.weight" {
                1.0 / (FF as f32).sqrt()
            } else {
                m
            } * 1.5;
            tensors.push((format!("{l}.{name}"), t(&shape, s, 0.0, dtype)));
        }
        let mut vecs: Vec<(&str, usize, f32)> =
            vec![("attn_norm.weight", H, 1.0), ("ffn_norm.weight", H, 1.0)];
        match arch {
            "qwen2" => vecs.extend([
                ("attn_q.bias", HEADS * hd, 0.0),
                ("attn_k.bias", KV * hd, 0.0),
                ("attn_v.bias", KV * hd, 0.0),
            ]),
            "qwen3" => vecs.extend([
                ("attn_q_norm.weight", hd, 1.0),
                ("attn_k_norm.weight", hd, 1.0),
            ]),
            "gemma3" => vecs.extend([
                ("attn_q_norm.weight", hd, 1.0),
                ("attn_k_norm.weight", hd, 1.0),
                ("post_attention_norm.weight", H, 1.0),
                ("post_ffw_norm.weight", H, 1.0),
            ]),
            _ => {}
        }
        for (name, n, base) in vecs {
            tensors.push((format!("{l}.{name}"), t(&[n], 0.2, base, GgmlDType::F32)));
        }
    }
    let k = |s: &str| format!("{arch}.{s}");
    let v = common::byte_level_vocab(VOCAB);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (k("attention.head_count"), Value::U32(HEADS as u32)),
        (k("attention.head_count_kv"), Value::U32(KV as u32)),
        (k("attention.key_length"), Value::U32(hd as u32)),
        (k("attention.value_length"), Value::U32(hd as u32)),
        (k("embedding_length"), Value::U32(H as u32)),
        (k("feed_forward_length"), Value::U32(FF as u32)),
        (k("context_length"), Value::U32(256)),
        (k("block_count"), Value::U32(LAYERS as u32)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (k("rope.freq_base"), Value::F32(10_000.0)),
        (k("rope.dimension_count"), Value::U32(hd as u32)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(v.iter().cloned().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(vec![])),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                (0..VOCAB)
                    .map(|i| Value::I32(if i == 256 { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(256)),
    ];
    if arch == "gemma3" {
        // A window wider than the test prompts: candle's mask and llama.cpp's differ by one
        // position at the window's edge.
        md.push((k("attention.sliding_window"), Value::U32(128)));
        md.push((k("rope.local_freq_base"), Value::F32(10_000.0)));
        md.push((k("attention.sliding_window_type"), Value::U32(6)));
    }
    md.sort_by(|a, b| a.0.cmp(&b.0));
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(a, b)| (a.as_str(), b)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(a, b)| (a.as_str(), b)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

/// The reference module's logits of the last position of `prompt`, where this build has
/// candle-transformers.
#[cfg(not(feature = "qwen-modules"))]
fn candle_logits(_: &Path, _: &str, _: &[u32]) -> Option<Vec<f32>> {
    None
}

/// The reference module's logits of the last position of `prompt`, where this build has
/// candle-transformers.
#[cfg(feature = "qwen-modules")]
fn candle_logits(path: &Path, arch: &str, prompt: &[u32]) -> Option<Vec<f32>> {
    use candle_transformers::models::{
        quantized_gemma3, quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3,
    };
    let dev = Device::Cpu;
    let mut f = std::fs::File::open(path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let x = Tensor::new(prompt, &dev).unwrap().unsqueeze(0).unwrap();
    let y = match arch {
        "llama" => quantized_llama::ModelWeights::from_gguf(ct, &mut f, &dev)
            .unwrap()
            .forward(&x, 0),
        "qwen2" => quantized_qwen2::ModelWeights::from_gguf(ct, &mut f, &dev)
            .unwrap()
            .forward(&x, 0),
        "qwen3" => quantized_qwen3::ModelWeights::from_gguf(ct, &mut f, &dev)
            .unwrap()
            .forward(&x, 0),
        "phi3" => quantized_phi3::ModelWeights::from_gguf(false, ct, &mut f, &dev)
            .unwrap()
            .forward(&x, 0),
        "gemma3" => quantized_gemma3::ModelWeights::from_gguf(ct, &mut f, &dev)
            .unwrap()
            .forward(&x, 0),
        other => panic!("{other}"),
    }
    .unwrap();
    Some(y.flatten_all().unwrap().to_vec1().unwrap())
}

/// RMS of the difference over RMS of the reference.
fn rel_rms(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let r: f32 = b.iter().map(|y| y * y).sum();
    (d / r).sqrt()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

#[test]
fn every_architecture_matches_its_reference_module_logit_by_logit() {
    let dir = tempfile::tempdir().unwrap();
    let prompt: Vec<u32> = (0..19).map(|i| (i * 37 + 5) % 256).collect();
    let mut report = Vec::new();
    let mut recorded = common::candle_ref::Recorded::open("arch");
    for arch in ["llama", "qwen2", "qwen3", "phi3", "gemma3"] {
        for (dtype, tol) in [
            (GgmlDType::F32, 1e-3),
            (GgmlDType::Q8_0, 0.03),
            (GgmlDType::Q4K, 0.05),
        ] {
            let p = dir.path().join(format!("{arch}-{dtype:?}.gguf"));
            write(&p, arch, dtype, 11);
            let digest = common::candle_ref::digest(std::slice::from_ref(&p));
            let live = candle_logits(&p, arch, &prompt)
                .map(|l| common::candle_ref::Answer::new(digest.clone(), &l, 1, Vec::new()));
            let theirs = recorded
                .answer(&format!("{arch}-{dtype:?}"), &digest, live)
                .logits;
            let ours = if arch == "gemma3" {
                let gelu = reference_logits(&p, &prompt).unwrap();
                if dtype == GgmlDType::F32 {
                    assert!(
                        rel_rms(&gelu, &theirs) > 10.0 * tol,
                        "gemma3 gates with GELU, not candle's SiLU"
                    );
                }
                reference_logits_as(&p, &prompt, Some(Act::Silu)).unwrap()
            } else {
                reference_logits(&p, &prompt).unwrap()
            };
            let e = rel_rms(&ours, &theirs);
            report.push(format!("{arch} {dtype:?}: rel RMS {e:.2e}"));
            assert!(
                e < tol,
                "{arch} {dtype:?}: logits differ by {e} (tolerance {tol})"
            );
            if dtype == GgmlDType::F32 {
                assert_eq!(argmax(&ours), argmax(&theirs), "{arch}");
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    recorded.finish();
}

#[test]
fn the_generic_forward_runs_any_batch_and_caches_like_one_long_prompt() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["qwen3", "phi3", "qwen2"] {
        let p = dir.path().join(format!("{arch}.gguf"));
        write(&p, arch, GgmlDType::F32, 5);
        let mut m = load(p.to_str().unwrap(), &LoadOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(m.info().architecture, arch);
        assert!(
            m.info().engine.decode_matmul.contains("f32"),
            "{}",
            m.info().engine.decode_matmul
        );
        let prompt: Vec<u32> = vec![72, 101, 108, 108, 111, 32, 119];
        let one = GenerateRequest {
            prompts: vec![prompt.clone()],
            max_new_tokens: 8,
            ignore_eos: true,
            stop: Vec::new(),
        };
        let a = m.generate(&one, &mut NoObserver).unwrap();
        let three = GenerateRequest {
            prompts: vec![prompt.clone(); 3],
            ..one.clone()
        };
        let b = m.generate(&three, &mut NoObserver).unwrap();
        assert_eq!(b.generated.len(), 3, "{arch}: batch 3 runs");
        for g in &b.generated {
            assert_eq!(
                g, &a.generated[0],
                "{arch}: each sequence of a batch as alone"
            );
        }
        // Decoding token by token gives what one prompt of the same tokens predicts.
        let longer: Vec<u32> = prompt.iter().chain(&a.generated[0][..4]).copied().collect();
        let next = reference_logits(&p, &longer).unwrap();
        assert_eq!(argmax(&next) as u32, a.generated[0][4], "{arch}");
    }
}
