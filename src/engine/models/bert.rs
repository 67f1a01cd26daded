//! BERT encoders (all-MiniLM-L6-v2) for embedding workloads: mean-pooled, unit-length vectors,
//! energy per input token.
//!
//! The forward is BERT as a checkpoint's `config.json` describes it, on candle's tensors: word,
//! absolute position and token-type (0) embeddings, LayerNorm; per layer, multi-head
//! self-attention over every token (inputs carry no padding: a batch is equal-length), output
//! projection, residual, LayerNorm; a feed-forward with the config's activation, residual,
//! LayerNorm. Checked against an independent float64 encoder (`scripts/minilm-ref.py`).

use crate::clock::monotonic_ns;
use crate::engine::{
    BackendKind, EmbedOutput, EmbedRequest, EngineConfig, EngineError, GenerateOutput,
    GenerateRequest, InferenceBackend, ModelInfo, TokenEvent, TokenObserver, text::tokenizer,
};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use std::path::Path;
use tokenizers::Tokenizer;

/// A BERT encoder run by candle.
pub struct Bert {
    model: Encoder,
    tokenizer: Tokenizer,
    info: ModelInfo,
    device: Device,
}

/// Loads a BERT folder (config.json, tokenizer.json, model.safetensors).
pub fn load_folder(dir: &Path, id: &str, device: &str, dev: &Device) -> Result<Bert, EngineError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| EngineError::Io {
        path: cfg_path.clone(),
        source: e,
    })?;
    let cfg: Config = serde_json::from_str(&text).map_err(|e| {
        EngineError::bad_file(
            &cfg_path,
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })?;
    cfg.check()
        .map_err(|e| EngineError::bad_file(&cfg_path, e))?;
    let n = |v: usize| Some(v as u64);
    crate::engine::gguf::plausible(
        &cfg_path,
        crate::engine::gguf::Dims {
            layers: n(cfg.num_hidden_layers),
            heads: n(cfg.num_attention_heads),
            kv_heads: None,
            hidden: n(cfg.hidden_size),
            ff: n(cfg.intermediate_size),
            vocab: n(cfg.vocab_size),
            context: n(cfg.max_position_embeddings),
            head_size: None,
        },
        "config.json ",
    )?;
    let tokenizer = tokenizer::from_json(&dir.join("tokenizer.json"))?;
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(EngineError::Missing {
            path: weights,
            hint: "the encoder folder needs model.safetensors".into(),
        });
    }
    // SAFETY: mapped read-only; joulebench does not modify the file while it is loaded.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, dev) }.map_err(
        |e| {
            EngineError::bad_file(
                &weights,
                format!("cannot read the safetensors weights: {e}"),
            )
        },
    )?;
    let model = Encoder::load(vb, &cfg).map_err(|e| {
        EngineError::bad_file(
            &weights,
            format!("{e} (the encoder folder's weights do not match its config.json)"),
        )
    })?;
    let h = cfg.hidden_size;
    let params = (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * h
        + cfg.num_hidden_layers * (4 * h * h + 2 * h * cfg.intermediate_size);
    Ok(Bert {
        model,
        tokenizer,
        info: ModelInfo {
            id: id.to_string(),
            family: "bert".into(),
            architecture: "bert".into(),
            parameters: params as u64,
            quantization: "none (f32)".into(),
            synthetic: false,
            path: Some(dir.to_path_buf()),
            vocab_size: cfg.vocab_size,
            context_length: cfg.max_position_embeddings,
            eos_token_ids: Vec::new(),
            bos_token_id: None,
            source: None,
            engine: EngineConfig::candle(device, "dense f32 (candle gemm)", "n/a (encoder)", "f32"),
        },
        device: dev.clone(),
    })
}

impl InferenceBackend for Bert {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn tokenizer(&self) -> Option<&Tokenizer> {
        Some(&self.tokenizer)
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Encoder
    }

    fn generate(
        &mut self,
        _req: &GenerateRequest,
        _obs: &mut dyn TokenObserver,
    ) -> Result<GenerateOutput, EngineError> {
        Err(EngineError::Request(format!(
            "{} is an encoder: use an embedding workload",
            self.info.id
        )))
    }

    fn embed(
        &mut self,
        req: &EmbedRequest,
        obs: &mut dyn TokenObserver,
    ) -> Result<EmbedOutput, EngineError> {
        let b = req.inputs.len();
        let len = req.inputs.first().map_or(0, Vec::len);
        if b == 0 || len == 0 || req.inputs.iter().any(|x| x.len() != len) {
            return Err(EngineError::Request(
                "an embedding batch needs non-empty inputs of equal length".into(),
            ));
        }
        if len > self.info.context_length {
            return Err(EngineError::Request(format!(
                "{len} tokens exceed the encoder's {} positions",
                self.info.context_length
            )));
        }
        if let Some(t) = req
            .inputs
            .iter()
            .flatten()
            .find(|t| **t as usize >= self.info.vocab_size)
        {
            return Err(EngineError::Request(format!(
                "token id {t} is outside the vocabulary"
            )));
        }
        let flat: Vec<u32> = req.inputs.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (b, len), &self.device)?;
        self.device.synchronize()?;
        let start_ns = monotonic_ns();
        obs.on_event(TokenEvent::Start, start_ns);
        let hidden = self.model.forward(&ids)?;
        // Mean over tokens (all attended), then unit length, as sentence-transformers does.
        let pooled = (hidden.sum(1)? / len as f64)?;
        let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?;
        let unit = pooled.broadcast_div(&norm)?;
        let embeddings: Vec<Vec<f32>> = unit.to_vec2()?;
        self.device.synchronize()?;
        let end_ns = monotonic_ns();
        obs.on_event(TokenEvent::End, end_ns);
        Ok(EmbedOutput {
            input_tokens: b * len,
            embeddings,
            start_ns,
            end_ns,
        })
    }
}

/// The fields of a BERT `config.json` the forward uses.
#[derive(Debug, serde::Deserialize)]
struct Config {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "default_types")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_types() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

/// A feed-forward activation, by the names Hugging Face's configs use.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// `gelu`: the exact (erf) form.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
}

impl Config {
    fn act(&self) -> Option<Act> {
        match self.hidden_act.as_str() {
            "gelu" => Some(Act::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Act::GeluTanh),
            "relu" => Some(Act::Relu),
            _ => None,
        }
    }

    /// What the forward cannot run, said in the config's own terms.
    fn check(&self) -> Result<(), String> {
        if self.act().is_none() {
            return Err(format!(
                "hidden_act \"{}\" is not one joulebench runs (gelu, gelu_new, gelu_pytorch_tanh, relu)",
                self.hidden_act
            ));
        }
        if let Some(p) = self
            .position_embedding_type
            .as_deref()
            .filter(|p| *p != "absolute")
        {
            return Err(format!(
                "position_embedding_type \"{p}\" is not one joulebench runs (absolute)"
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.type_vocab_size == 0 {
            return Err("type_vocab_size is 0".into());
        }
        Ok(())
    }
}

/// A LayerNorm stored as `LayerNorm.weight`/`.bias` or, in older checkpoints, `gamma`/`beta`.
fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    let (w, b) = if vb.contains_tensor("weight") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    Ok(LayerNorm::new(w, b, eps))
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    ffn_norm: LayerNorm,
}

/// A BERT encoder's weights.
struct Encoder {
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: Act,
}

impl Encoder {
    fn load(vb: VarBuilder, cfg: &Config) -> candle_core::Result<Encoder> {
        // Some checkpoints keep the encoder under `bert.` (a task head beside it).
        let vb = if !vb.contains_tensor("embeddings.word_embeddings.weight")
            && vb.contains_tensor("bert.embeddings.word_embeddings.weight")
        {
            vb.pp("bert")
        } else {
            vb
        };
        let (h, ff, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let e = vb.pp("embeddings");
        let words = candle_nn::embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?;
        let positions =
            candle_nn::embedding(cfg.max_position_embeddings, h, e.pp("position_embeddings"))?;
        let types = candle_nn::embedding(cfg.type_vocab_size, h, e.pp("token_type_embeddings"))?;
        let norm = layer_norm(h, eps, e.pp("LayerNorm"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                let s = a.pp("self");
                Ok(Layer {
                    q: candle_nn::linear(h, h, s.pp("query"))?,
                    k: candle_nn::linear(h, h, s.pp("key"))?,
                    v: candle_nn::linear(h, h, s.pp("value"))?,
                    o: candle_nn::linear(h, h, a.pp("output").pp("dense"))?,
                    attn_norm: layer_norm(h, eps, a.pp("output").pp("LayerNorm"))?,
                    up: candle_nn::linear(h, ff, l.pp("intermediate").pp("dense"))?,
                    down: candle_nn::linear(ff, h, l.pp("output").pp("dense"))?,
                    ffn_norm: layer_norm(h, eps, l.pp("output").pp("LayerNorm"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Encoder {
            words,
            positions,
            types,
            norm,
            layers,
            heads: cfg.num_attention_heads,
            // `check` ran before loading.
            act: cfg.act().unwrap_or(Act::Gelu),
        })
    }

    /// The last layer's hidden states, `(batch, tokens, hidden)`, of equal-length inputs `ids`
    /// `(batch, tokens)` (u32), every token attending to every token.
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n) = ids.dims2()?;
        let dev = ids.device();
        let pos = Tensor::arange(0u32, n as u32, dev)?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&pos)?)?
            .broadcast_add(&self.types.forward(&Tensor::zeros(1, DType::U32, dev)?)?)?;
        let mut x = self.norm.forward(&x)?;
        let h = x.dim(2)?;
        let d = h / self.heads;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, n, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        for l in &self.layers {
            let q = split(l.q.forward(&x)?)?;
            let k = split(l.k.forward(&x)?)?;
            let v = split(l.v.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? / (d as f64).sqrt())?;
            let p = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = p.matmul(&v)?.transpose(1, 2)?.reshape((b, n, h))?;
            x = l.attn_norm.forward(&(l.o.forward(&ctx)? + &x)?)?;
            let up = l.up.forward(&x)?;
            let up = match self.act {
                Act::Gelu => up.gelu_erf()?,
                Act::GeluTanh => up.gelu()?,
                Act::Relu => up.relu()?,
            };
            x = l.ffn_norm.forward(&(l.down.forward(&up)? + &x)?)?;
        }
        Ok(x)
    }
}
