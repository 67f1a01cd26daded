//! What a GGUF file says about text (tokenizer, stop tokens, chat template) and the quantization
//! of its attention weights: what a loader needs besides the tensors.

use crate::engine::EngineError;
use crate::engine::gguf::Gguf;
use crate::engine::text::tokenizer;

/// What a GGUF file says about text: tokenizer, stop tokens, chat template, quantization.
pub struct TextMeta {
    pub tokenizer: tokenizers::Tokenizer,
    pub eos: Vec<u32>,
    /// The start-of-sequence token prompts begin with, when the file asks for one.
    pub bos: Option<u32>,
    pub chat_template: Option<String>,
    pub quantization: String,
}

impl TextMeta {
    /// The tokenizer (tokenizer.json next to the file, else built from the metadata), the
    /// end-of-sequence ids, the chat template and the quantization of the attention weights.
    pub fn read(g: &Gguf) -> Result<TextMeta, EngineError> {
        let json = g.path.with_file_name("tokenizer.json");
        let tokenizer = if json.exists() {
            tokenizer::from_json(&json)?
        } else {
            tokenizer::from_gguf(g)?
        };
        let mut eos: Vec<u32> = g
            .u32("tokenizer.ggml.eos_token_id")
            .ok()
            .into_iter()
            .collect();
        if let Ok(eot) = g.u32("tokenizer.ggml.eot_token_id")
            && !eos.contains(&eot)
        {
            eos.push(eot);
        }
        let add_bos = g
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos = if add_bos {
            g.u32("tokenizer.ggml.bos_token_id").ok()
        } else {
            None
        };
        Ok(TextMeta {
            tokenizer,
            eos,
            bos,
            chat_template: g.string("tokenizer.chat_template"),
            quantization: g
                .content
                .tensor_infos
                .get("blk.0.attn_q.weight")
                .map_or_else(|| "unknown".into(), |t| format!("{:?}", t.ggml_dtype)),
        })
    }
}
