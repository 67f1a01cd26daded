//! Hugging Face llama-family folders: config.json + tokenizer.json + *.safetensors (one file or
//! shards), weights in f32, bf16 or f16, computed in f32 (no quantization is added).

use crate::engine::models::generate::TextModel;
use crate::engine::models::llama::CandleLlama;
use crate::engine::models::llama::{
    Embedding, LayerWeights, Linear, Llama, LlamaConfig, Matmul, MatmulPlan,
};
use crate::engine::{EngineConfig, EngineError, ModelInfo, text::tokenizer};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct HfConfig {
    hidden_size: usize,
    intermediate_size: usize,
    vocab_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f32,
    max_position_embeddings: usize,
    tie_word_embeddings: Option<bool>,
    rope_scaling: Option<serde_json::Value>,
    model_type: Option<String>,
    torch_dtype: Option<String>,
    eos_token_id: Option<serde_json::Value>,
}

fn default_theta() -> f32 {
    10_000.0
}

/// Model types this loader runs.
pub const SUPPORTED: &str = "llama, mistral (config.json model_type)";

/// The weight files of a folder: `model.safetensors`, or every shard in name order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let files = crate::engine::files_with_ext(dir, "safetensors")?;
    if files.is_empty() {
        return Err(EngineError::Missing {
            path: dir.join("model.safetensors"),
            hint: "the folder has config.json but no .safetensors weights".into(),
        });
    }
    Ok(files)
}

/// Loads a llama-family Hugging Face folder.
pub fn load_folder(
    dir: &Path,
    id: &str,
    device: &str,
    dev: &Device,
) -> Result<CandleLlama, EngineError> {
    let hf = read_config(dir)?;
    let arch = hf.model_type.clone().unwrap_or_default();
    let tok = tokenizer::from_json(&dir.join("tokenizer.json"))?;
    let files = weight_files(dir)?;
    // SAFETY: the files are memory-mapped read-only; joulebench does not modify them while loaded.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, dev) }.map_err(|e| {
            EngineError::bad_file(
                &files[0],
                format!("cannot read the safetensors weights: {e}"),
            )
        })?;
    let cfg = LlamaConfig {
        n_layer: hf.num_hidden_layers,
        n_embd: hf.hidden_size,
        n_ff: hf.intermediate_size,
        n_head: hf.num_attention_heads,
        n_kv_head: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
        rope_dim: hf.hidden_size / hf.num_attention_heads,
        rope_theta: hf.rope_theta,
        rms_eps: hf.rms_norm_eps,
        vocab: hf.vocab_size,
        ctx_len: hf.max_position_embeddings,
        rope_interleaved: false,
    };
    let w = Weights {
        vb: &vb,
        file: &files[0],
    };
    let layers = (0..cfg.n_layer)
        .map(|i| w.layer(&cfg, i))
        .collect::<Result<Vec<_>, _>>()?;
    let embed = w.get((cfg.vocab, cfg.n_embd), "model.embed_tokens.weight")?;
    let tied = hf.tie_word_embeddings.unwrap_or(false) || !vb.contains_tensor("lm_head.weight");
    let output = if tied {
        Linear::from_dense(embed.clone(), DENSE)?
    } else {
        w.linear((cfg.vocab, cfg.n_embd), "lm_head.weight")?
    };
    let norm = w.get1(cfg.n_embd, "model.norm.weight")?;
    let chat_template = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["chat_template"].as_str().map(str::to_string));
    let params = cfg.parameters(tied);
    let model = Llama::new(
        cfg.clone(),
        Embedding::Dense(embed),
        layers,
        norm,
        output,
        dev,
    )?;
    let (pre, dec) = model.paths();
    let dtype = hf.torch_dtype.clone().unwrap_or_else(|| "unknown".into());
    Ok(TextModel {
        model,
        info: ModelInfo {
            id: id.to_string(),
            family: arch.clone(),
            architecture: arch,
            parameters: params,
            quantization: format!("none ({dtype} weights, computed in f32)"),
            synthetic: false,
            path: Some(dir.to_path_buf()),
            vocab_size: cfg.vocab,
            context_length: cfg.ctx_len,
            eos_token_ids: eos_ids(&hf),
            bos_token_id: None,
            source: None,
            engine: EngineConfig::candle(device, &pre, &dec, "f32"),
        },
        tokenizer: Some(tok),
        chat_template,
    })
}

/// Both phases on dense f32 weights: the folder's weights are not quantized.
const DENSE: MatmulPlan = MatmulPlan {
    prefill: Matmul::Dense,
    decode: Matmul::Dense,
};

/// The folder's config.json, checked: a supported model type, plausible dimensions, no rotary
/// scaling.
fn read_config(dir: &Path) -> Result<HfConfig, EngineError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| EngineError::Io {
        path: cfg_path.clone(),
        source: e,
    })?;
    let hf: HfConfig = serde_json::from_str(&text).map_err(|e| {
        EngineError::bad_file(
            &cfg_path,
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })?;
    let arch = hf.model_type.clone().unwrap_or_default();
    if !matches!(arch.as_str(), "llama" | "mistral") {
        return Err(EngineError::UnsupportedArch {
            path: cfg_path,
            arch,
            supported: SUPPORTED.into(),
        });
    }
    let n = |v: usize| Some(v as u64);
    crate::engine::gguf::plausible(
        &cfg_path,
        crate::engine::gguf::Dims {
            layers: n(hf.num_hidden_layers),
            heads: n(hf.num_attention_heads),
            kv_heads: hf.num_key_value_heads.map(|v| v as u64),
            hidden: n(hf.hidden_size),
            ff: n(hf.intermediate_size),
            vocab: n(hf.vocab_size),
            context: n(hf.max_position_embeddings),
            head_size: None,
        },
        "config.json ",
    )?;
    if hf.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(EngineError::bad_file(
            &cfg_path,
            "rope_scaling is not supported yet",
        ));
    }
    Ok(hf)
}

/// The end-of-sequence ids config.json names (one or a list).
fn eos_ids(hf: &HfConfig) -> Vec<u32> {
    match &hf.eos_token_id {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| v as u32).into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_u64())
            .map(|v| v as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// The folder's tensors, each error naming the first weight file.
struct Weights<'a> {
    vb: &'a VarBuilder<'a>,
    file: &'a Path,
}

impl Weights<'_> {
    fn get(&self, shape: (usize, usize), name: &str) -> Result<Tensor, EngineError> {
        self.vb
            .get(shape, name)
            .map_err(|e| EngineError::bad_file(self.file, format!("tensor {name}: {e}")))
    }

    fn get1(&self, n: usize, name: &str) -> Result<Tensor, EngineError> {
        self.vb
            .get(n, name)
            .map_err(|e| EngineError::bad_file(self.file, format!("tensor {name}: {e}")))
    }

    fn linear(&self, shape: (usize, usize), name: &str) -> Result<Linear, EngineError> {
        Linear::from_dense(self.get(shape, name)?, DENSE)
    }

    /// Layer `i`'s weights (`model.layers.i.*`).
    fn layer(&self, cfg: &LlamaConfig, i: usize) -> Result<LayerWeights, EngineError> {
        let hd = cfg.head_dim();
        let (e, q, kv, ff) = (cfg.n_embd, cfg.n_head * hd, cfg.n_kv_head * hd, cfg.n_ff);
        let p = |n: &str| format!("model.layers.{i}.{n}.weight");
        Ok(LayerWeights {
            attn_norm: self.get1(e, &p("input_layernorm"))?,
            wq: self.linear((q, e), &p("self_attn.q_proj"))?,
            wk: self.linear((kv, e), &p("self_attn.k_proj"))?,
            wv: self.linear((kv, e), &p("self_attn.v_proj"))?,
            wo: self.linear((e, q), &p("self_attn.o_proj"))?,
            ffn_norm: self.get1(e, &p("post_attention_layernorm"))?,
            w_gate: self.linear((ff, e), &p("mlp.gate_proj"))?,
            w_up: self.linear((ff, e), &p("mlp.up_proj"))?,
            w_down: self.linear((e, ff), &p("mlp.down_proj"))?,
        })
    }
}
