//! Loading the candle-based llama path: `synthetic:` models, registered ids, `.gguf` files of
//! the llama architecture and Hugging Face folders.

use super::{Embedding, LayerWeights, Linear, Llama, LlamaConfig, Matmul, MatmulPlan};
use crate::engine::gguf::Gguf;
use crate::engine::kernels::{QFormat, QMatrix};
use crate::engine::models::generate::TextModel;
use crate::engine::models::llama::CandleLlama;
use crate::engine::models::{LoadOptions, SUPPORTED_ARCH, device, gguf_in, hf, synthetic};
use crate::engine::text::meta::TextMeta;
use crate::engine::{EngineConfig, EngineError, ModelInfo};
use crate::store::registry::{self, ModelKind};
use candle_core::Device;
use candle_core::quantized::QTensor;
use std::path::{Path, PathBuf};

/// Loads a llama-family model: `synthetic:NAME`, a registered id, a `.gguf` path, a folder holding one, or a
/// Hugging Face folder (config.json, tokenizer.json, *.safetensors).
pub fn load_llama(
    spec: &str,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<CandleLlama, EngineError> {
    let dev = device(&opts.device)?;
    if let Some(name) = spec.strip_prefix("synthetic:") {
        return synthetic_model(spec, name, opts, &dev);
    }
    let (path, id) = if let Some(m) = registry::lookup(spec) {
        if m.kind != ModelKind::GgufLlama {
            return Err(EngineError::Request(format!(
                "{spec} is an encoder (embedding) model, not a text generator"
            )));
        }
        let dir = registry::resolve(m, opts.allow_fetch, progress)?;
        let f = &m.files[0];
        let p = dir.join(f.name);
        registry::check_size(&p, f)?;
        (p, m.id.to_string())
    } else {
        let p = PathBuf::from(spec);
        if !p.exists() {
            if spec.contains('/') || spec.ends_with(".gguf") {
                return Err(EngineError::Missing {
                    path: p,
                    hint: "give an existing .gguf file or model folder".into(),
                });
            }
            return Err(EngineError::UnknownModel {
                id: spec.into(),
                known: format!(
                    "{}, synthetic:llama-tiny, synthetic:llama-135m",
                    registry::known_ids()
                ),
            });
        }
        if p.is_dir() && p.join("config.json").exists() {
            return hf::load_folder(&p, spec, &opts.device, &dev);
        }
        (gguf_in(&p)?, spec.to_string())
    };
    load_gguf(&path, &id, opts, &dev)
}

/// A synthetic llama model (`synthetic:NAME`), labelled synthetic.
fn synthetic_model(
    spec: &str,
    name: &str,
    opts: &LoadOptions,
    dev: &Device,
) -> Result<CandleLlama, EngineError> {
    let (model, params) = synthetic::build(name, opts.seed, opts.matmul, dev)?;
    let (pre, dec) = model.paths();
    let cfg = model.cfg.clone();
    Ok(TextModel {
        info: ModelInfo {
            id: spec.to_string(),
            family: "synthetic llama".into(),
            architecture: "llama".into(),
            parameters: params,
            quantization: if dec.contains("q4_1") {
                "Q4_1 (decode), F32"
            } else {
                "F32"
            }
            .into(),
            synthetic: true,
            path: None,
            vocab_size: cfg.vocab,
            context_length: cfg.ctx_len,
            eos_token_ids: Vec::new(),
            bos_token_id: None,
            source: None,
            engine: EngineConfig::candle(&opts.device, &pre, &dec, "f32"),
        },
        model,
        tokenizer: None,
        chat_template: None,
    })
}

/// The output head only ever sees one row per sequence: quantized unless the plan is all dense.
fn head_plan(plan: MatmulPlan) -> MatmulPlan {
    let q = if plan.decode == Matmul::Dense {
        Matmul::Dense
    } else {
        plan.decode
    };
    MatmulPlan {
        prefill: q,
        decode: q,
    }
}

/// Token embeddings kept in the file's format where the kernels read it (lookups dequantize
/// only the rows a batch needs), else as f32.
fn embedding(qt: QTensor, dev: &Device) -> Result<Embedding, EngineError> {
    let (rows, cols) = qt.shape().dims2()?;
    if dev.is_cpu()
        && let Some(f) = QFormat::of(qt.dtype())
        && let Ok(q) = QMatrix::from_bytes(f, rows, cols, qt.data()?.to_vec())
    {
        return Ok(Embedding::Rows(q));
    }
    Ok(Embedding::Dense(
        qt.dequantize(dev)?.to_dtype(candle_core::DType::F32)?,
    ))
}

/// Loads a llama-family GGUF file.
pub fn load_gguf(
    path: &Path,
    id: &str,
    opts: &LoadOptions,
    dev: &Device,
) -> Result<CandleLlama, EngineError> {
    let mut g = Gguf::open(path)?;
    let arch = g.string("general.architecture").unwrap_or_default();
    if arch != "llama" {
        return Err(EngineError::UnsupportedArch {
            path: path.to_path_buf(),
            arch,
            supported: SUPPORTED_ARCH.into(),
        });
    }
    g.check_dims("llama")?;
    let cfg = config_of(&g)?;
    let TextMeta {
        tokenizer: tok,
        eos,
        bos,
        chat_template,
        quantization: quant,
    } = TextMeta::read(&g)?;
    check_shapes(&g, &cfg)?;
    let (embed, output) = embedding_and_output(&mut g, opts.matmul, dev)?;
    let norm = g.tensor("output_norm.weight", dev)?.dequantize(dev)?;
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for i in 0..cfg.n_layer {
        layers.push(layer(&mut g, i, opts.matmul, dev)?);
    }
    let tied = !g.has("output.weight");
    let model = Llama::new(cfg.clone(), embed, layers, norm, output, dev)?;
    let (pre, dec) = model.paths();
    Ok(TextModel {
        info: ModelInfo {
            id: id.to_string(),
            family: g
                .string("general.basename")
                .unwrap_or_else(|| "llama".into()),
            architecture: arch,
            parameters: cfg.parameters(tied),
            quantization: quant.clone(),
            // Files from `models synth` say so; every record of them is marked synthetic.
            synthetic: g.get("joulebench.synthetic").is_some(),
            path: Some(path.to_path_buf()),
            vocab_size: cfg.vocab,
            context_length: cfg.ctx_len,
            eos_token_ids: eos,
            bos_token_id: bos,
            source: None,
            engine: EngineConfig::candle(&opts.device, &pre, &dec, &quant),
        },
        model,
        tokenizer: Some(tok),
        chat_template,
    })
}

/// The model's shape from the file's `llama.*` metadata, checked for plausibility.
fn config_of(g: &Gguf) -> Result<LlamaConfig, EngineError> {
    let n_embd = g.u32("llama.embedding_length")? as usize;
    let n_head = g.u32("llama.attention.head_count")? as usize;
    let tokens_len = g
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok())
        .map(Vec::len);
    let cfg = LlamaConfig {
        n_layer: g.u32("llama.block_count")? as usize,
        n_embd,
        n_ff: g.u32("llama.feed_forward_length")? as usize,
        n_head,
        n_kv_head: g
            .u32("llama.attention.head_count_kv")
            .unwrap_or(n_head as u32) as usize,
        rope_dim: g
            .u32("llama.rope.dimension_count")
            .map_or(n_embd / n_head, |v| v as usize),
        rope_theta: g.f32_or("llama.rope.freq_base", 10_000.0),
        rms_eps: g.f32_or("llama.attention.layer_norm_rms_epsilon", 1e-5) as f64,
        vocab: g
            .u32("llama.vocab_size")
            .map(|v| v as usize)
            .or_else(|e| tokens_len.ok_or(e))?,
        ctx_len: g.u32("llama.context_length").unwrap_or(4096) as usize,
        rope_interleaved: true,
    };
    if cfg.vocab == 0 || cfg.vocab > 1 << 22 || cfg.n_ff == 0 || cfg.rope_dim > cfg.head_dim() {
        return Err(EngineError::bad_file(
            &g.path,
            format!(
                "impossible dimensions: vocab {}, feed_forward_length {}, rope dimensions {} for \
                 head size {}",
                cfg.vocab,
                cfg.n_ff,
                cfg.rope_dim,
                cfg.head_dim()
            ),
        ));
    }
    Ok(cfg)
}

/// Every tensor's size against the shape.
fn check_shapes(g: &Gguf, cfg: &LlamaConfig) -> Result<(), EngineError> {
    let hd = cfg.head_dim();
    let (e, q, kv, ff) = (cfg.n_embd, cfg.n_head * hd, cfg.n_kv_head * hd, cfg.n_ff);
    g.check_len("token_embd.weight", e * cfg.vocab)?;
    g.check_len("output_norm.weight", e)?;
    if g.has("output.weight") {
        g.check_len("output.weight", e * cfg.vocab)?;
    }
    for i in 0..cfg.n_layer {
        for (n, want) in [
            ("attn_norm", e),
            ("attn_q", e * q),
            ("attn_k", e * kv),
            ("attn_v", e * kv),
            ("attn_output", q * e),
            ("ffn_norm", e),
            ("ffn_gate", e * ff),
            ("ffn_up", e * ff),
            ("ffn_down", ff * e),
        ] {
            g.check_len(&format!("blk.{i}.{n}.weight"), want)?;
        }
    }
    Ok(())
}

/// Token embeddings and the output matrix; a tied file reads its embeddings from the output
/// matrix's own copy where that copy is readable.
fn embedding_and_output(
    g: &mut Gguf,
    plan: MatmulPlan,
    dev: &Device,
) -> Result<(Embedding, Linear), EngineError> {
    let embed_q = g.tensor("token_embd.weight", dev)?;
    if g.has("output.weight") {
        let output = Linear::from_qtensor(g.tensor("output.weight", dev)?, head_plan(plan))?;
        return Ok((embedding(embed_q, dev)?, output));
    }
    let output = Linear::from_qtensor(embed_q, head_plan(plan))?;
    let embed = if output.has_rows() {
        Embedding::Tied
    } else {
        embedding(g.tensor("token_embd.weight", dev)?, dev)?
    };
    Ok((embed, output))
}

/// Layer `i`'s weights, each matrix kept in the representations `plan` needs.
fn layer(
    g: &mut Gguf,
    i: usize,
    plan: MatmulPlan,
    dev: &Device,
) -> Result<LayerWeights, EngineError> {
    let mut t = |n: &str| g.tensor(&format!("blk.{i}.{n}.weight"), dev);
    Ok(LayerWeights {
        attn_norm: t("attn_norm")?.dequantize(dev)?,
        wq: Linear::from_qtensor(t("attn_q")?, plan)?,
        wk: Linear::from_qtensor(t("attn_k")?, plan)?,
        wv: Linear::from_qtensor(t("attn_v")?, plan)?,
        wo: Linear::from_qtensor(t("attn_output")?, plan)?,
        ffn_norm: t("ffn_norm")?.dequantize(dev)?,
        w_gate: Linear::from_qtensor(t("ffn_gate")?, plan)?,
        w_up: Linear::from_qtensor(t("ffn_up")?, plan)?,
        w_down: Linear::from_qtensor(t("ffn_down")?, plan)?,
    })
}
