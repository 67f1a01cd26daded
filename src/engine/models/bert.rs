//! BERT encoders (all-MiniLM-L6-v2) for embedding workloads: mean-pooled, unit-length vectors,
//! energy per input token.

use crate::clock::monotonic_ns;
use crate::engine::{
    BackendKind, EmbedOutput, EmbedRequest, EngineConfig, EngineError, GenerateOutput,
    GenerateRequest, InferenceBackend, ModelInfo, TokenEvent, TokenObserver, text::tokenizer,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokenizers::Tokenizer;

/// A BERT encoder run by candle.
pub struct Bert {
    model: BertModel,
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
    let model =
        BertModel::load(vb, &cfg).map_err(|e| EngineError::bad_file(&weights, e.to_string()))?;
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
        let types = ids.zeros_like()?;
        let mask = ids.ones_like()?;
        self.device.synchronize()?;
        let start_ns = monotonic_ns();
        obs.on_event(TokenEvent::Start, start_ns);
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
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
