//! Hugging Face llama folders (config.json, tokenizer.json, sharded bf16 safetensors) against
//! candle-transformers' own llama implementation, on small random weights (its answers are
//! recorded, `common::candle_ref`; `--features qwen-modules` asks it live).

use crate::common;

use candle_core::{DType, Device, Tensor};
use joulebench::engine::models::{LoadOptions, load_llama as load};
use joulebench::engine::{GenerateRequest, InferenceBackend, NoObserver};
use joulebench::store::registry::{self, DEFAULT_MODEL};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::HashMap;
use std::path::Path;

const H: usize = 64;
const FF: usize = 128;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV: usize = 2;

fn write_folder(dir: &Path, dtype: DType, shards: usize) {
    let m = registry::lookup(DEFAULT_MODEL).unwrap();
    let gguf = registry::resolve(m, true, &mut |_| {})
        .unwrap()
        .join(m.files[0].name);
    // A real byte-level BPE tokenizer.json, taken from the default model.
    let smol = load(gguf.to_str().unwrap(), &LoadOptions::default(), &mut |_| {}).unwrap();
    smol.tokenizer()
        .unwrap()
        .save(dir.join("tokenizer.json"), false)
        .unwrap();
    let vocab = 49152;
    let cfg = serde_json::json!({
        "model_type": "llama", "hidden_size": H, "intermediate_size": FF, "vocab_size": vocab,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "tie_word_embeddings": false, "torch_dtype": "bfloat16", "eos_token_id": 2,
        "bos_token_id": 1
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let mut t = |shape: (usize, usize), s: f32| {
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| rng.random_range(-s..s))
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    let hd = H / HEADS;
    let mut all: Vec<(String, Tensor)> = vec![
        ("model.embed_tokens.weight".into(), t((vocab, H), 1.0)),
        ("lm_head.weight".into(), t((vocab, H), 0.1)),
        (
            "model.norm.weight".into(),
            t((1, H), 1.0).reshape(H).unwrap(),
        ),
    ];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        for (n, shape) in [
            ("self_attn.q_proj", (HEADS * hd, H)),
            ("self_attn.k_proj", (KV * hd, H)),
            ("self_attn.v_proj", (KV * hd, H)),
            ("self_attn.o_proj", (H, HEADS * hd)),
            ("mlp.gate_proj", (FF, H)),
            ("mlp.up_proj", (FF, H)),
            ("mlp.down_proj", (H, FF)),
        ] {
            all.push((format!("{p}.{n}.weight"), t(shape, 0.2)));
        }
        for n in ["input_layernorm", "post_attention_layernorm"] {
            all.push((
                format!("{p}.{n}.weight"),
                t((1, H), 1.0).reshape(H).unwrap(),
            ));
        }
    }
    let per = all.len().div_ceil(shards);
    for (k, chunk) in all.chunks(per).enumerate() {
        let map: HashMap<String, Tensor> = chunk.iter().cloned().collect();
        let name = format!("model-{:05}-of-{:05}.safetensors", k + 1, shards);
        candle_core::safetensors::save(&map, dir.join(name)).unwrap();
    }
}

#[test]
fn hf_folder_matches_candle_transformers_llama() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), DType::BF16, 2);
    let mut ours = load(
        dir.path().to_str().unwrap(),
        &LoadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(ours.info().quantization.contains("bfloat16"));
    assert_eq!(ours.info().eos_token_ids, vec![2]);

    let prompt: Vec<u32> = vec![504, 1463, 282, 1439, 7585, 314];
    let mut inputs = joulebench::engine::models::hf::weight_files(dir.path()).unwrap();
    inputs.push(dir.path().join("config.json"));
    let digest = common::candle_ref::digest(&inputs);
    let mut recorded = common::candle_ref::Recorded::open("hf-llama");
    // Every 8th logit of the 49,152 (the recording stays ~70 KB) and the greedy continuation.
    let live = candle_llama(dir.path(), &prompt, 5)
        .map(|(l, t)| common::candle_ref::Answer::new(digest.clone(), &l, 8, t));
    let theirs = recorded.answer("bf16-2-shards", &digest, live);
    let got = ours.model_mut().last_logits(&prompt).unwrap();
    assert_eq!(got.len(), 49152);
    let got = theirs.same_ids(&got);
    assert_eq!(got.len(), theirs.logits.len());
    let max_err = got
        .iter()
        .zip(&theirs.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_err < 1e-3, "max logit difference {max_err}");

    // Greedy continuation agrees too.
    let out = ours
        .generate(
            &GenerateRequest {
                prompts: vec![prompt],
                max_new_tokens: 5,
                ignore_eos: true,
                stop: Vec::new(),
            },
            &mut NoObserver,
        )
        .unwrap();
    assert_eq!(out.generated[0], theirs.tokens);
    recorded.finish();
}

/// candle-transformers' llama on the folder: the last position's logits of `prompt` and `n`
/// greedy tokens after it, where this build has candle-transformers.
#[cfg(not(feature = "qwen-modules"))]
fn candle_llama(_: &Path, _: &[u32], _: usize) -> Option<(Vec<f32>, Vec<u32>)> {
    None
}

/// candle-transformers' llama on the folder: the last position's logits of `prompt` and `n`
/// greedy tokens after it, where this build has candle-transformers.
#[cfg(feature = "qwen-modules")]
fn candle_llama(dir: &Path, prompt: &[u32], n: usize) -> Option<(Vec<f32>, Vec<u32>)> {
    use candle_nn::VarBuilder;
    use candle_transformers::models::llama::{Cache, Llama, LlamaConfig};
    let cfg: LlamaConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let cfg = cfg.into_config(false);
    let files = joulebench::engine::models::hf::weight_files(dir).unwrap();
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
    let reference = Llama::load(vb, &cfg).unwrap();
    let step = |ids: &[u32], pos: usize, cache: &mut Cache| -> Tensor {
        let input = Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        reference.forward(&input, pos, cache).unwrap()
    };
    let mut cache = Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
    let logits: Vec<f32> = step(prompt, 0, &mut cache)
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut cache = Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
    let mut ids = prompt.to_vec();
    let mut pos = 0;
    let mut tokens = Vec::new();
    for _ in 0..n {
        let next = step(&ids[pos..], pos, &mut cache)
            .squeeze(0)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        pos = ids.len();
        ids.push(next);
        tokens.push(next);
    }
    Some((logits, tokens))
}

#[test]
fn broken_folders_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), DType::F32, 1);
    let shard = dir.path().join("model-00001-of-00001.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(
        dir.path().to_str().unwrap(),
        &LoadOptions::default(),
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("safetensors") && e.contains("not a usable model file"),
        "{e}"
    );

    std::fs::write(
        dir.path().join("config.json"),
        "{\"model_type\": \"llama\",\n \"hidden_size\": }",
    )
    .unwrap();
    let e = load(
        dir.path().to_str().unwrap(),
        &LoadOptions::default(),
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("config.json") && e.contains("line 2"), "{e}");

    std::fs::write(
        dir.path().join("config.json"),
        serde_json::json!({"model_type": "gpt_neox", "hidden_size": 8, "intermediate_size": 8,
            "vocab_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1, "rms_norm_eps": 1e-5,
            "max_position_embeddings": 8})
        .to_string(),
    )
    .unwrap();
    let e = load(
        dir.path().to_str().unwrap(),
        &LoadOptions::default(),
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("gpt_neox") && e.contains("llama"), "{e}");

    let fresh = tempfile::tempdir().unwrap();
    write_folder(fresh.path(), DType::F32, 1);
    std::fs::remove_file(fresh.path().join("tokenizer.json")).unwrap();
    let e = load(
        fresh.path().to_str().unwrap(),
        &LoadOptions::default(),
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}
