//! Tokenizers from model files: `tokenizer.json` where the model has one, otherwise a byte-level
//! BPE built from the GGUF vocabulary and merges with the pre-tokenizer `tokenizer.ggml.pre` names.
//! (candle's own GGUF helper adds a prefix space for SmolLM2, so it is not used.)

use crate::engine::EngineError;
use crate::engine::gguf::Gguf;
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
    if model == "llama" {
        return sentencepiece(g);
    }
    if model != "gpt2" {
        return Err(err(format!(
            "{path}: tokenizer.ggml.model = {model:?}: byte-level BPE (\"gpt2\") and SentencePiece \
             (\"llama\") are built from GGUF metadata; put the model's tokenizer.json next to the file"
        )));
    }
    let tokens = strings_of(g, "tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = strings_of(g, "tokenizer.ggml.merges")?
        .into_iter()
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let types = token_types(g);
    let vocab = vocab_of(&tokens);
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
    add_special(&mut tok, &tokens, &types)?;
    Ok(tok)
}

/// A SentencePiece BPE vocabulary (`tokenizer.ggml.model = "llama"`: Llama 2, Mistral, TinyLlama,
/// Phi-3, Gemma) as the tokenizers crate runs it: spaces become `▁` (with a leading one when
/// `tokenizer.ggml.add_space_prefix` says so), pieces merge pairwise in the order of the merged
/// piece's score (merges derived from the scores, as Hugging Face's converter does), unknown
/// characters fall back to `<0xNN>` byte tokens, and control and user-defined tokens match whole.
fn sentencepiece(g: &Gguf) -> Result<Tokenizer, EngineError> {
    use tokenizers::decoders::DecoderWrapper;
    use tokenizers::normalizers::NormalizerWrapper;
    let path = g.path.display().to_string();
    let tokens = strings_of(g, "tokenizer.ggml.tokens")?;
    let scores: Vec<f32> = g
        .get("tokenizer.ggml.scores")
        .and_then(|v| v.to_vec().ok())
        .map(|a| a.iter().map(|x| x.to_f32().unwrap_or(0.0)).collect())
        .unwrap_or_default();
    if scores.len() != tokens.len() {
        return Err(err(format!(
            "{path}: {} scores for {} tokens (tokenizer.ggml.scores)",
            scores.len(),
            tokens.len()
        )));
    }
    let types = token_types(g);
    let vocab = vocab_of(&tokens);
    // Every way a normal piece splits into two pieces of the vocabulary is a merge, ranked by the
    // piece's score (higher first), ties by the parts' ids.
    let mut ranked: Vec<(f32, u32, u32, usize)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if types.get(i).is_some_and(|&ty| ty != 1) {
            continue;
        }
        for (cut, _) in t.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (vocab.get(&t[..cut]), vocab.get(&t[cut..])) {
                ranked.push((scores[i], l, r, i));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<(String, String)> = ranked
        .iter()
        .map(|&(_, l, r, _)| (tokens[l as usize].clone(), tokens[r as usize].clone()))
        .collect();
    let unk = g
        .u32("tokenizer.ggml.unknown_token_id")
        .ok()
        .and_then(|i| tokens.get(i as usize).cloned())
        .unwrap_or_else(|| "<unk>".into());
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(unk)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| err(format!("{path}: the vocabulary does not build: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    let prefix = g
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(true);
    let space = tokenizers::normalizers::replace::Replace::new(" ", "\u{2581}").map_err(err)?;
    let mut norms = Vec::new();
    if prefix {
        norms.push(NormalizerWrapper::Prepend(
            tokenizers::normalizers::prepend::Prepend::new("\u{2581}".into()),
        ));
    }
    norms.push(NormalizerWrapper::Replace(space));
    tok.with_normalizer(Some(tokenizers::normalizers::Sequence::new(norms)))
        .map_err(err)?;
    let unspace = tokenizers::normalizers::replace::Replace::new("\u{2581}", " ").map_err(err)?;
    let mut decs = vec![
        DecoderWrapper::Replace(unspace),
        DecoderWrapper::ByteFallback(tokenizers::decoders::byte_fallback::ByteFallback::default()),
        DecoderWrapper::Fuse(tokenizers::decoders::fuse::Fuse::default()),
    ];
    if prefix {
        decs.push(DecoderWrapper::Strip(
            tokenizers::decoders::strip::Strip::new(' ', 1, 0),
        ));
    }
    tok.with_decoder(Some(tokenizers::decoders::sequence::Sequence::new(decs)));
    add_special(&mut tok, &tokens, &types)?;
    Ok(tok)
}

/// Piece -> id.
fn vocab_of(tokens: &[String]) -> tokenizers::models::bpe::Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

fn strings_of(g: &Gguf, key: &str) -> Result<Vec<String>, EngineError> {
    let path = g.path.display().to_string();
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
}

fn token_types(g: &Gguf) -> Vec<i32> {
    g.get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|a| a.iter().map(|x| x.to_i32().unwrap_or(1)).collect())
        .unwrap_or_default()
}

/// Control (3) and user-defined (4) tokens are matched whole, before the model runs.
fn add_special(tok: &mut Tokenizer, tokens: &[String], types: &[i32]) -> Result<(), EngineError> {
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(_, t)| **t == 3 || **t == 4)
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(special).map_err(err)?;
    Ok(())
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
