//! Loading a [`Decoder`] from an opened GGUF file: the architecture's options and shape from
//! the metadata, every tensor checked against that shape, the kernels recorded per phase.

use super::arch::arch_of;
use super::attention::Qkv;
use super::mlp::GateUp;
use super::{Arch, CandleDecoder, Config, Decoder, GEMMA_TURNS, Layer};
use crate::engine::gguf::Gguf;
use crate::engine::kernels::{GEMM_MIN_TOKENS, QFormat, QMatrix};
use crate::engine::models::generate::TextModel;
use crate::engine::text::meta::TextMeta;
use crate::engine::{EngineConfig, EngineError, ModelInfo};
use candle_core::Device;
use std::path::PathBuf;

/// Loads an opened GGUF file of one of [`super::ARCHES`] (CPU only: every matrix runs on
/// joulebench's kernels).
pub fn load(
    mut g: Gguf,
    id: &str,
    device: &str,
    dev: &Device,
) -> Result<CandleDecoder, EngineError> {
    let path = g.path.clone();
    let name = g.string("general.architecture").unwrap_or_default();
    let arch = arch_of(&g, &name)?;
    if !dev.is_cpu() {
        return Err(EngineError::Request(format!(
            "{}: {name} runs on the CPU only (joulebench's kernels)",
            path.display()
        )));
    }
    g.check_dims(&name)?;
    let rope_linear = rope_scaling(&g, &name)?;
    let meta = TextMeta::read(&g)?;
    let vocab_len = g
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok())
        .map_or(0, Vec::len);
    g.drop_vocabulary();
    let cfg = config_of(&g, &name, arch, rope_linear, vocab_len)?;
    let mut t = Tensors { g: &mut g, dev };
    let e = cfg.n_embd;
    let embed = t.mat("token_embd.weight", cfg.vocab, e)?;
    let output = if t.g.has("output.weight") {
        Some(t.mat("output.weight", cfg.vocab, e)?)
    } else {
        None
    };
    let norm = t.vec("output_norm.weight", e)?;
    let rope_factors = t.opt("rope_freqs.weight", cfg.rope_dim / 2)?;
    let layers = (0..cfg.n_layer)
        .map(|i| layer(&mut t, &cfg, i))
        .collect::<Result<Vec<_>, _>>()?;
    let head = output.as_ref().unwrap_or(&embed);
    let kernels = (
        kernel_names(&layers, head, GEMM_MIN_TOKENS),
        kernel_names(&layers, head, 1),
    );
    let info = info_of(&g, id, device, &name, &cfg, &meta, kernels);
    let chat_template = match meta.chat_template {
        Some(t) => Some(t),
        None if name == "gemma3" => Some(GEMMA_TURNS.into()),
        None => None,
    };
    let model = Decoder {
        cfg,
        embed,
        output,
        layers,
        norm,
        rope_factors,
        rope_global: (Vec::new(), Vec::new()),
        rope_local: (Vec::new(), Vec::new()),
        cap: 0,
        len: 0,
        device: dev.clone(),
    };
    Ok(TextModel {
        model,
        info,
        tokenizer: Some(meta.tokenizer),
        chat_template,
    })
}

/// Linear rotary scaling's factor (1: none); long-context schemes are refused.
fn rope_scaling(g: &Gguf, name: &str) -> Result<f32, EngineError> {
    let bad = |m: String| EngineError::bad_file(&g.path, m);
    for t in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if g.has(t) {
            return Err(bad(format!(
                "{t}: long-context rotary scaling (LongRoPE, Phi-3 128k variants) is not \
                 supported; use a 4k-context variant"
            )));
        }
    }
    let scaling = g
        .string(&format!("{name}.rope.scaling.type"))
        .unwrap_or_else(|| "none".into());
    match scaling.as_str() {
        "none" | "" => Ok(1.0),
        "linear" => Ok(g
            .f32_or(&format!("{name}.rope.scaling.factor"), 1.0)
            .max(1e-6)),
        other => Err(bad(format!(
            "{name}.rope.scaling.type = {other:?} is not supported (none and linear are)"
        ))),
    }
}

/// The model's shape from the metadata of architecture `name`, checked for consistency.
fn config_of(
    g: &Gguf,
    name: &str,
    arch: Arch,
    rope_linear: f32,
    vocab: usize,
) -> Result<Config, EngineError> {
    let u = |k: &str| g.u32(&format!("{name}.{k}")).map(|v| v as usize);
    let n_embd = u("embedding_length")?;
    let n_head = u("attention.head_count")?;
    let head_dim = u("attention.key_length").unwrap_or(n_embd / n_head.max(1));
    let gemma = name == "gemma3";
    let cfg = Config {
        n_layer: u("block_count")?,
        n_embd,
        // Some converters leave the key out: the down projection's width says it.
        n_ff: match u("feed_forward_length") {
            Ok(v) => v,
            Err(e) => g
                .content
                .tensor_infos
                .get("blk.0.ffn_down.weight")
                .and_then(|t| t.shape.dims2().ok())
                .map(|(_, ff)| ff)
                .ok_or(e)?,
        },
        n_head,
        n_kv_head: u("attention.head_count_kv").unwrap_or(n_head),
        head_dim,
        rope_dim: u("rope.dimension_count").unwrap_or(head_dim),
        rope_base: g.f32_or(
            &format!("{name}.rope.freq_base"),
            if gemma { 1_000_000.0 } else { 10_000.0 },
        ),
        rope_linear,
        eps: g.f32_or(
            &format!("{name}.attention.layer_norm_rms_epsilon"),
            if gemma { 1e-6 } else { 1e-5 },
        ),
        vocab,
        ctx: u("context_length").unwrap_or(4096),
        arch,
    };
    if !cfg.head_dim.is_multiple_of(2)
        || cfg.head_dim == 0
        || cfg.n_kv_head == 0
        || !cfg.n_head.is_multiple_of(cfg.n_kv_head)
        || !cfg.rope_dim.is_multiple_of(2)
        || cfg.rope_dim > cfg.head_dim
        || cfg.vocab == 0
        || cfg.n_ff == 0
    {
        return Err(EngineError::bad_file(
            &g.path,
            format!(
                "impossible dimensions: head size {}, rotary dimensions {}, {} heads over {} \
                 key/value heads, vocabulary {}, feed-forward {}",
                cfg.head_dim, cfg.rope_dim, cfg.n_head, cfg.n_kv_head, cfg.vocab, cfg.n_ff
            ),
        ));
    }
    Ok(cfg)
}

/// The file's tensors, read as kernel matrices or float vectors with their sizes checked.
struct Tensors<'a> {
    g: &'a mut Gguf,
    dev: &'a Device,
}

impl Tensors<'_> {
    fn bad(&self, m: String) -> EngineError {
        EngineError::bad_file(&self.g.path, m)
    }

    /// A `rows` x `cols` matrix in the file's block format (interleaved eight rows at a time
    /// where this CPU's decode kernel reads that layout).
    fn mat(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, EngineError> {
        self.g.check_len(name, rows * cols)?;
        let (dtype, r, c, bytes) = self.g.matrix_bytes(name)?;
        let f = QFormat::of(dtype)
            .ok_or_else(|| self.bad(format!("tensor {name}: format {dtype:?} is not supported")))?;
        if (r, c) != (rows, cols) {
            return Err(self.bad(format!("tensor {name} is {r}x{c}, expected {rows}x{cols}")));
        }
        QMatrix::from_bytes(f, rows, cols, bytes)
            .map(QMatrix::interleaved)
            .map_err(|m| self.bad(format!("{name}: {m}")))
    }

    /// A vector of `n` values, as f32.
    fn vec(&mut self, name: &str, n: usize) -> Result<Vec<f32>, EngineError> {
        self.g.check_len(name, n)?;
        Ok(self
            .g
            .tensor(name, self.dev)?
            .dequantize(self.dev)?
            .flatten_all()?
            .to_vec1()?)
    }

    /// [`Tensors::vec`] where the file has the tensor.
    fn opt(&mut self, name: &str, n: usize) -> Result<Option<Vec<f32>>, EngineError> {
        if self.g.has(name) {
            self.vec(name, n).map(Some)
        } else {
            Ok(None)
        }
    }

    /// [`Tensors::vec`] of a tensor the architecture needs (`why` says what it is).
    fn need(&mut self, name: &str, n: usize, why: &str) -> Result<Vec<f32>, EngineError> {
        self.opt(name, n)?
            .ok_or_else(|| self.bad(format!("tensor {name} is missing ({why})")))
    }
}

/// Layer `i`'s weights, in the architecture's layout.
fn layer(t: &mut Tensors, cfg: &Config, i: usize) -> Result<Layer, EngineError> {
    let (e, hd) = (cfg.n_embd, cfg.head_dim);
    let (qd, kvd) = (cfg.n_head * hd, cfg.n_kv_head * hd);
    let a = &cfg.arch;
    let w = |n: &str| format!("blk.{i}.{n}.weight");
    let tb = |n: &str| format!("blk.{i}.{n}.bias");
    let qkv = if t.g.has(&w("attn_qkv")) {
        Qkv::Fused(t.mat(&w("attn_qkv"), qd + 2 * kvd, e)?)
    } else {
        Qkv::Split(
            t.mat(&w("attn_q"), qd, e)?,
            t.mat(&w("attn_k"), kvd, e)?,
            t.mat(&w("attn_v"), kvd, e)?,
        )
    };
    let bias = match (
        t.opt(&tb("attn_q"), qd)?,
        t.opt(&tb("attn_k"), kvd)?,
        t.opt(&tb("attn_v"), kvd)?,
    ) {
        (Some(q), Some(k), Some(v)) => Some((q, k, v)),
        (None, None, None) => None,
        _ => {
            return Err(t.bad(format!("layer {i}: some of the q/k/v biases are missing")));
        }
    };
    let gate_up = if t.g.has(&w("ffn_gate")) {
        GateUp::Split(
            t.mat(&w("ffn_gate"), cfg.n_ff, e)?,
            t.mat(&w("ffn_up"), cfg.n_ff, e)?,
        )
    } else {
        GateUp::Fused(t.mat(&w("ffn_up"), 2 * cfg.n_ff, e)?)
    };
    let (q_norm, k_norm) = if a.qk_norm {
        (
            Some(t.need(&w("attn_q_norm"), hd, "per-head query norm")?),
            Some(t.need(&w("attn_k_norm"), hd, "per-head key norm")?),
        )
    } else {
        (None, None)
    };
    let (post_attn_norm, post_ffw_norm) = if a.sandwich_norms {
        (
            Some(t.need(&w("post_attention_norm"), e, "norm after attention")?),
            Some(t.need(&w("post_ffw_norm"), e, "norm after the feed-forward")?),
        )
    } else {
        (None, None)
    };
    Ok(Layer {
        attn_norm: t.vec(&w("attn_norm"), e)?,
        q_norm,
        k_norm,
        post_attn_norm,
        ffn_norm: t.vec(&w("ffn_norm"), e)?,
        post_ffw_norm,
        qkv,
        bias,
        wo: t.mat(&w("attn_output"), e, qd)?,
        gate_up,
        w_down: t.mat(&w("ffn_down"), e, cfg.n_ff)?,
        store: None,
    })
}

/// Every distinct kernel a product of `tokens` tokens runs, the output matrix's last.
fn kernel_names(layers: &[Layer], head: &QMatrix, tokens: usize) -> String {
    let mut names: Vec<String> = Vec::new();
    for l in layers {
        for m in l.matrices() {
            let k = m.kernel_name(tokens);
            if !names.contains(&k) {
                names.push(k);
            }
        }
    }
    // The output matrix sees one token per sequence in both phases.
    names.push(format!("{} (output)", head.kernel_name(1)));
    names.join(", ")
}

/// What the records say about the model.
fn info_of(
    g: &Gguf,
    id: &str,
    device: &str,
    name: &str,
    cfg: &Config,
    meta: &TextMeta,
    (pre, dec): (String, String),
) -> ModelInfo {
    let mut eos = meta.eos.clone();
    // Instruction-tuned Gemma ends a turn with <end_of_turn>, Phi-3 with <|end|>.
    for t in ["<end_of_turn>", "<|end|>"] {
        if let Some(t) = meta.tokenizer.token_to_id(t)
            && !eos.contains(&t)
        {
            eos.push(t);
        }
    }
    let path: PathBuf = g.path.clone();
    ModelInfo {
        id: id.to_string(),
        family: g.string("general.basename").unwrap_or_else(|| name.into()),
        architecture: name.into(),
        parameters: g.parameters(),
        quantization: meta.quantization.clone(),
        synthetic: g.get("joulebench.synthetic").is_some(),
        path: Some(path),
        vocab_size: cfg.vocab,
        context_length: cfg.ctx,
        eos_token_ids: eos,
        bos_token_id: meta.bos,
        source: None,
        engine: EngineConfig::candle(device, &pre, &dec, &meta.quantization),
    }
}
