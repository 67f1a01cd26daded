//! Qwen2 and Qwen3 GGUF files on GPU devices through candle-transformers' own quantized modules
//! (candle's quantized matmul in both phases), behind the same greedy loop and events as every
//! model. On the CPU they run on the plain-Rust forward (`decoder`).

use crate::engine::gguf::Gguf;
use crate::engine::models::generate::{CausalLm, TextModel};
use crate::engine::{EngineConfig, EngineError, ModelInfo};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_qwen2, quantized_qwen3};
use std::path::Path;

enum Weights {
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
}

pub struct Model {
    weights: Weights,
    vocab: usize,
    ctx: usize,
    device: Device,
}

impl CausalLm for Model {
    fn limits(&self) -> (usize, usize) {
        (self.vocab, self.ctx)
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn prepare(&mut self, _total_len: usize) -> Result<(), EngineError> {
        match &mut self.weights {
            Weights::Qwen2(w) => w.clear_kv_cache(),
            Weights::Qwen3(w) => w.clear_kv_cache(),
        }
        Ok(())
    }

    fn step(&mut self, tokens: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        // A panic inside the third-party module becomes an error of this request.
        let weights = &mut self.weights;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match weights {
            Weights::Qwen2(w) => w.forward(tokens, pos),
            Weights::Qwen3(w) => w.forward(tokens, pos),
        }))
        .unwrap_or_else(|_| Err(candle_core::Error::Msg("the qwen module panicked".into())))
    }
}

/// A Qwen2 or Qwen3 GGUF model.
pub type CandleQwen = TextModel<Model>;

/// Loads an opened Qwen2/Qwen3 GGUF file (`arch` is `qwen2` or `qwen3`).
pub fn load(
    g: Gguf,
    arch: &str,
    id: &str,
    device: &str,
    dev: &Device,
) -> Result<CandleQwen, EngineError> {
    let path = g.path.clone();
    let crate::engine::text::meta::TextMeta {
        tokenizer: tok,
        eos,
        bos,
        chat_template,
        quantization: quant,
    } = crate::engine::text::meta::TextMeta::read(&g)?;
    g.check_dims(arch)?;
    let ctx = g.u32(&format!("{arch}.context_length"))? as usize;
    let vocab = g
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok())
        .map_or(0, Vec::len);
    let params = g.parameters();
    let family = g.string("general.basename").unwrap_or_else(|| arch.into());
    let synthetic = g.get("joulebench.synthetic").is_some();
    let Gguf {
        content, mut file, ..
    } = g;
    let bad = |e: candle_core::Error| EngineError::bad_file(Path::new(&path), e.to_string());
    let weights = match arch {
        "qwen2" => Weights::Qwen2(
            quantized_qwen2::ModelWeights::from_gguf(content, &mut file, dev).map_err(bad)?,
        ),
        _ => Weights::Qwen3(
            quantized_qwen3::ModelWeights::from_gguf(content, &mut file, dev).map_err(bad)?,
        ),
    };
    Ok(TextModel {
        model: Model {
            weights,
            vocab,
            ctx,
            device: dev.clone(),
        },
        info: ModelInfo {
            id: id.to_string(),
            family,
            architecture: arch.to_string(),
            parameters: params,
            quantization: quant,
            synthetic,
            path: Some(path.clone()),
            vocab_size: vocab,
            context_length: ctx,
            eos_token_ids: eos,
            bos_token_id: bos,
            source: None,
            engine: EngineConfig::candle(
                device,
                "candle quantized matmul (candle-transformers module)",
                "candle quantized matmul (candle-transformers module)",
                arch,
            ),
        },
        tokenizer: Some(tok),
        chat_template,
    })
}
