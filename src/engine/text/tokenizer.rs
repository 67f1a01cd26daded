//! Tokenizers from model files: `tokenizer.json` where the model has one, otherwise a byte-level
//! BPE built from the GGUF vocabulary and merges with the pre-tokenizer `tokenizer.ggml.pre` names.
//! (candle's own GGUF helper adds a prefix space for SmolLM2, so it is not used.)

use crate::engine::EngineError;
use crate::engine::candle::gguf::Gguf;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// Pre-tokenizers joulebench can build from `tokenizer.ggml.pre`.
pub const SUPPORTED_PRE: &[&str] = &["smollm", "gpt2", "default", "llama-bpe", "llama3", "qwen2"];

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}

/// Loads a `tokenizer.json`, without its padding and truncation settings: token counts must be
/// the real input's (sentence-transformers files pad every input to 128 tokens).
pub fn from_json(path: &Path) -> Result<Tokenizer, EngineError> {
    if !path.exists() {
        return Err(EngineError::Missing {
            path: path.to_path_buf(),
            hint: "the model folder needs its tokenizer.json".into(),
        });
    }
    let mut tok =
        Tokenizer::from_file(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    tok.with_padding(None);
    tok.with_truncation(None).map_err(err)?;
    Ok(tok)
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, EngineError> {
    let split = |re: &str| -> Result<PreTokenizerWrapper, EngineError> {
        Ok(Sequence::new(vec![
            Split::new(
                SplitPattern::Regex(re.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(err)?
            .into(),
            ByteLevel::new(false, true, false).into(),
        ])
        .into())
    };
    match pre {
        // SmolLM2's tokenizer.json: digits one by one, then GPT-2's byte-level split.
        "smollm" => Ok(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into()),
        "gpt2" | "default" => Ok(ByteLevel::new(false, true, true).into()),
        "llama-bpe" | "llama3" => split(LLAMA3_SPLIT),
        "qwen2" => split(QWEN2_SPLIT),
        other => Err(err(format!(
            "tokenizer.ggml.pre = {other:?} is not supported; supported: {}; or put the model's \
             tokenizer.json next to it",
            SUPPORTED_PRE.join(", ")
        ))),
    }
}

/// Builds the tokenizer a GGUF file describes.
pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, EngineError> {
    let path = g.path.display().to_string();
    let model = g.string("tokenizer.ggml.model").unwrap_or_default();
    if model != "gpt2" {
        return Err(err(format!(
            "{path}: tokenizer.ggml.model = {model:?}: only byte-level BPE (\"gpt2\") is built from \
             GGUF metadata; put the model's tokenizer.json next to the file"
        )));
    }
    let strings = |key: &str| -> Result<Vec<String>, EngineError> {
        let v = g
            .get(key)
            .ok_or_else(|| err(format!("{path}: metadata {key} is missing")))?;
        let arr = v.to_vec().map_err(|e| err(format!("{path}: {key}: {e}")))?;
        arr.iter()
            .map(|x| {
                x.to_string()
                    .cloned()
                    .map_err(|e| err(format!("{path}: {key}: {e}")))
            })
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
        .into_iter()
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let types: Vec<i32> = g
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|a| a.iter().map(|x| x.to_i32().unwrap_or(1)).collect())
        .unwrap_or_default();
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| {
            err(format!(
                "{path}: the vocabulary and merges do not agree: {e}"
            ))
        })?;
    let mut tok = Tokenizer::new(bpe);
    let pre = g
        .string("tokenizer.ggml.pre")
        .unwrap_or_else(|| "default".into());
    tok.with_pre_tokenizer(Some(
        pre_tokenizer(&pre).map_err(|e| err(format!("{path}: {e}")))?,
    ));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    // Control (3) and user-defined (4) tokens are matched whole, before the BPE.
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == 3 || **t == 4)
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(&special);
    Ok(tok)
}

/// Encodes text without adding special tokens.
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, EngineError> {
    Ok(tok.encode(text, false).map_err(err)?.get_ids().to_vec())
}

/// Decodes ids, keeping special tokens.
pub fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String, EngineError> {
    tok.decode(ids, false).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_pre_tokenizer_is_a_clear_error() {
        let e = pre_tokenizer("mystery").err().unwrap().to_string();
        assert!(e.contains("mystery") && e.contains("smollm"));
        for p in SUPPORTED_PRE {
            assert!(pre_tokenizer(p).is_ok(), "{p}");
        }
    }
}
