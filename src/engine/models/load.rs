//! Loading a model from an id, a registry entry, a path or a synthetic name, outside any
//! measured window.

use crate::engine::gguf::Gguf;
use crate::engine::kernels::matvec::{QFormat, QMatrix};
use crate::engine::models::llama::{
    CandleLlama, Embedding, LayerWeights, Linear, Llama, LlamaConfig, Matmul, MatmulPlan,
};
use crate::engine::{EngineConfig, EngineError, InferenceBackend, ModelInfo, models::synthetic};
use crate::store::hub;
use crate::store::registry::{self, ModelKind};
use candle_core::Device;
use candle_core::quantized::QTensor;
use std::path::{Path, PathBuf};

/// Architectures joulebench runs from GGUF files.
pub const SUPPORTED_ARCH: &str =
    "llama (SmolLM2, Llama 2/3, Mistral, TinyLlama), qwen2, qwen3, gemma3, phi3";

/// Architectures loaded by the generic forward (`transformer.rs`) whatever the plan.
const OTHER_ARCH: &[&str] = &["qwen2", "qwen3", "gemma3", "phi3"];

/// Whether the generic forward runs this file: every architecture but llama always, and llama
/// on the CPU with the default plan (both phases on joulebench's kernels, prefill included, with
/// no tensor library between the layers). llama.rs serves the plans only it has (a dense f32 or
/// candle-quantized phase), GPU devices, safetensors folders and `synthetic:` models. Both agree
/// with llama.cpp wherever the model is decisive (tests/llama_ref.rs, every format); where the
/// top two logits are within a few tenths, 8-bit activations let either pick either.
fn generic(arch: &str, opts: &LoadOptions) -> bool {
    OTHER_ARCH.contains(&arch)
        || (arch == "llama" && opts.device == "cpu" && opts.matmul == MatmulPlan::default())
}

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `cpu`, or `cuda:N` / `metal` with those features.
    pub device: String,
    /// How linear layers are computed while prefilling and while decoding.
    pub matmul: MatmulPlan,
    /// Fetch registered models that are not cached.
    pub allow_fetch: bool,
    /// Seed of synthetic weights.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: "cpu".into(),
            matmul: MatmulPlan::default(),
            allow_fetch: true,
            seed: 42,
        }
    }
}

/// Parses a device string.
pub fn device(spec: &str) -> Result<Device, EngineError> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s.starts_with("cuda") => {
            let idx = s
                .strip_prefix("cuda:")
                .map_or(Ok(0), |i| i.parse::<usize>())
                .map_err(|_| EngineError::Device(s.into()))?;
            Device::new_cuda(idx).map_err(|_| EngineError::Device(s.into()))
        }
        "metal" => Device::new_metal(0).map_err(|_| EngineError::Device(spec.into())),
        other => Err(EngineError::Device(other.into())),
    }
}

/// Loads any model: encoders (registered BERT ids, BERT folders) and everything [`load_llama`]
/// takes.
pub fn load(
    spec: &str,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Box<dyn InferenceBackend>, EngineError> {
    if let Some(id) = hub::HubId::parse(spec) {
        let id = id.map_err(EngineError::Request)?;
        let (path, source) =
            hub::resolve(&id, opts.allow_fetch, hub::Freshness::CacheFirst, progress)?;
        let inner = load(&path.display().to_string(), opts, progress)?;
        let mut info = inner.info().clone();
        info.id = spec.to_string();
        info.source = Some(source);
        return Ok(Box::new(Sourced { inner, info }));
    }
    let dev = device(&opts.device)?;
    if let Some(m) = registry::lookup(spec)
        && m.kind == ModelKind::BertEncoder
    {
        let dir = registry::resolve(m, opts.allow_fetch, progress)?;
        for f in m.files {
            registry::check_size(&dir.join(f.name), f)?;
        }
        return Ok(Box::new(crate::engine::models::bert::load_folder(
            &dir,
            m.id,
            &opts.device,
            &dev,
        )?));
    }
    let p = Path::new(spec);
    if p.is_dir() && is_bert_folder(p) {
        return Ok(Box::new(crate::engine::models::bert::load_folder(
            p,
            spec,
            &opts.device,
            &dev,
        )?));
    }
    if let Some(g) = other_gguf(spec, opts, progress)? {
        let arch = g.string("general.architecture").unwrap_or_default();
        // On the CPU every architecture runs on the one plain-Rust forward; Qwen on a GPU
        // device through candle-transformers' modules.
        if dev.is_cpu() || !matches!(arch.as_str(), "qwen2" | "qwen3") {
            return Ok(Box::new(crate::engine::models::decoder::load(
                g,
                spec,
                &opts.device,
                &dev,
            )?));
        }
        return Ok(Box::new(crate::engine::models::qwen::load(
            g,
            &arch,
            spec,
            &opts.device,
            &dev,
        )?));
    }
    Ok(Box::new(load_llama(spec, opts, progress)?))
}

/// A model loaded from the Hub: its info says the `hf:` id and where the files came from.
struct Sourced {
    inner: Box<dyn InferenceBackend>,
    info: ModelInfo,
}

impl InferenceBackend for Sourced {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn tokenizer(&self) -> Option<&tokenizers::Tokenizer> {
        self.inner.tokenizer()
    }
    fn chat_template(&self) -> Option<&str> {
        self.inner.chat_template()
    }
    fn kind(&self) -> crate::engine::BackendKind {
        self.inner.kind()
    }
    fn generate(
        &mut self,
        req: &crate::engine::GenerateRequest,
        obs: &mut dyn crate::engine::TokenObserver,
    ) -> Result<crate::engine::GenerateOutput, EngineError> {
        self.inner.generate(req, obs)
    }
    fn embed(
        &mut self,
        req: &crate::engine::EmbedRequest,
        obs: &mut dyn crate::engine::TokenObserver,
    ) -> Result<crate::engine::EmbedOutput, EngineError> {
        self.inner.embed(req, obs)
    }
}

/// The opened GGUF file at `spec` (a path, or a registered id) when the generic forward runs
/// it ([`generic`]).
fn other_gguf(
    spec: &str,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<Gguf>, EngineError> {
    if let Some(m) = registry::lookup(spec) {
        if m.kind != ModelKind::GgufLlama || m.files.len() != 1 {
            return Ok(None);
        }
        let dir = registry::resolve(m, opts.allow_fetch, progress)?;
        let f = &m.files[0];
        let path = dir.join(f.name);
        registry::check_size(&path, f)?;
        let g = Gguf::open(&path)?;
        let arch = g.string("general.architecture").unwrap_or_default();
        return Ok(generic(&arch, opts).then_some(g));
    }
    let p = Path::new(spec);
    if spec.starts_with("synthetic:") || !p.exists() {
        return Ok(None);
    }
    if p.is_dir() && p.join("config.json").exists() {
        return Ok(None);
    }
    let g = Gguf::open(&gguf_in(p)?)?;
    let arch = g.string("general.architecture").unwrap_or_default();
    Ok(generic(&arch, opts).then_some(g))
}

fn is_bert_folder(p: &Path) -> bool {
    std::fs::read_to_string(p.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["model_type"] == "bert")
}

/// Loads a llama-family model: `synthetic:NAME`, a registered id, a `.gguf` path, a folder holding one, or a
/// Hugging Face folder (config.json, tokenizer.json, *.safetensors).
pub fn load_llama(
    spec: &str,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<CandleLlama, EngineError> {
    let dev = device(&opts.device)?;
    if let Some(name) = spec.strip_prefix("synthetic:") {
        let (model, params) = synthetic::build(name, opts.seed, opts.matmul, &dev)?;
        let (pre, dec) = model.paths();
        let cfg = model.cfg.clone();
        return Ok(CandleLlama {
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
        });
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
            return crate::engine::models::hf::load_folder(&p, spec, &opts.device, &dev);
        }
        (gguf_in(&p)?, spec.to_string())
    };
    load_gguf(&path, &id, opts, &dev)
}

/// The .gguf file `p` names, or the only one in the folder `p`.
pub fn gguf_in(p: &Path) -> Result<PathBuf, EngineError> {
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let mut found = crate::engine::files_with_ext(p, "gguf")?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(EngineError::Missing {
            path: p.to_path_buf(),
            hint: "no .gguf file and no config.json in this folder".into(),
        }),
        _ => Err(EngineError::Request(format!(
            "{} holds several .gguf files; name one",
            p.display()
        ))),
    }
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
            path,
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
    let crate::engine::gguf::meta::TextMeta {
        tokenizer: tok,
        eos,
        bos,
        chat_template,
        quantization: quant,
    } = crate::engine::gguf::meta::TextMeta::read(&g)?;
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
    let dense = opts.matmul;
    let embed_q = g.tensor("token_embd.weight", dev)?;
    let (embed, output) = if g.has("output.weight") {
        let output = Linear::from_qtensor(g.tensor("output.weight", dev)?, head_plan(opts.matmul))?;
        (embedding(embed_q, dev)?, output)
    } else {
        // Tied: the output matrix's own copy serves the lookups when it keeps a readable one.
        let output = Linear::from_qtensor(embed_q, head_plan(opts.matmul))?;
        let embed = if output.has_rows() {
            Embedding::Tied
        } else {
            embedding(g.tensor("token_embd.weight", dev)?, dev)?
        };
        (embed, output)
    };
    let norm = g.tensor("output_norm.weight", dev)?.dequantize(dev)?;
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for i in 0..cfg.n_layer {
        let mut t = |n: &str| g.tensor(&format!("blk.{i}.{n}.weight"), dev);
        layers.push(LayerWeights {
            attn_norm: t("attn_norm")?.dequantize(dev)?,
            wq: Linear::from_qtensor(t("attn_q")?, dense)?,
            wk: Linear::from_qtensor(t("attn_k")?, dense)?,
            wv: Linear::from_qtensor(t("attn_v")?, dense)?,
            wo: Linear::from_qtensor(t("attn_output")?, dense)?,
            ffn_norm: t("ffn_norm")?.dequantize(dev)?,
            w_gate: Linear::from_qtensor(t("ffn_gate")?, dense)?,
            w_up: Linear::from_qtensor(t("ffn_up")?, dense)?,
            w_down: Linear::from_qtensor(t("ffn_down")?, dense)?,
        });
    }
    let tied = !g.has("output.weight");
    let model = Llama::new(cfg.clone(), embed, layers, norm, output, dev)?;
    let (pre, dec) = model.paths();
    Ok(CandleLlama {
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
