//! Prompts of an exact token length, deterministically, from a bundled public-domain text
//! (the Gettysburg Address and the Preamble of the US Constitution), with the model's chat
//! template when asked.

use crate::engine::EngineError;
use crate::engine::text::tokenizer::encode;
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokenizers::Tokenizer;

/// The bundled public-domain text.
pub const TEXT: &str = include_str!("../../../assets/prompt-text.txt");

/// Chat formats joulebench can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat {
    /// `<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n` (SmolLM2, Qwen).
    ChatMl,
    /// Llama 3's header tokens.
    Llama3,
    /// `<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n` (Gemma).
    Gemma,
}

impl ChatFormat {
    /// Recognizes a model's Jinja chat template by its markers.
    pub fn detect(template: &str) -> Option<ChatFormat> {
        if template.contains("<|im_start|>") {
            Some(ChatFormat::ChatMl)
        } else if template.contains("<|start_header_id|>") {
            Some(ChatFormat::Llama3)
        } else if template.contains("<start_of_turn>") {
            Some(ChatFormat::Gemma)
        } else {
            None
        }
    }

    /// The text before and after the user's message.
    pub fn wrap(self) -> (&'static str, &'static str) {
        match self {
            ChatFormat::ChatMl => ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"),
            ChatFormat::Llama3 => (
                "<|start_header_id|>user<|end_header_id|>\n\n",
                "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            ),
            ChatFormat::Gemma => (
                "<start_of_turn>user\n",
                "<end_of_turn>\n<start_of_turn>model\n",
            ),
        }
    }
}

/// Exactly `n` token ids: the bundled text (repeated as needed), inside the chat template when
/// `chat` is given. Fails when the template alone is longer than `n`.
pub fn exact_tokens(
    tok: &Tokenizer,
    n: usize,
    chat: Option<ChatFormat>,
) -> Result<Vec<u32>, EngineError> {
    let (pre, post) = match chat {
        Some(f) => {
            let (a, b) = f.wrap();
            (encode(tok, a)?, encode(tok, b)?)
        }
        None => (Vec::new(), Vec::new()),
    };
    let overhead = pre.len() + post.len();
    if n <= overhead {
        return Err(EngineError::Request(format!(
            "a {n}-token prompt cannot hold the chat template ({overhead} tokens)"
        )));
    }
    let want = n - overhead;
    let mut text = String::from(TEXT);
    let mut body = encode(tok, &text)?;
    while body.len() < want {
        text.push_str("\n\n");
        text.push_str(TEXT);
        body = encode(tok, &text)?;
    }
    body.truncate(want);
    Ok([pre, body, post].concat())
}

/// [`exact_tokens`] after the model's start-of-sequence token when it has one (`bos`): `n` ids in
/// all, the token counted.
pub fn prompt_tokens(
    tok: &Tokenizer,
    n: usize,
    chat: Option<ChatFormat>,
    bos: Option<u32>,
) -> Result<Vec<u32>, EngineError> {
    match bos {
        Some(b) if n > 1 => Ok([vec![b], exact_tokens(tok, n - 1, chat)?].concat()),
        _ => exact_tokens(tok, n, chat),
    }
}

/// Exactly `n` ids for an encoder: `[CLS]` + the bundled text + `[SEP]` where the tokenizer has
/// those tokens, else the text alone.
pub fn exact_encoder_tokens(tok: &Tokenizer, n: usize) -> Result<Vec<u32>, EngineError> {
    match (tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")) {
        (Some(cls), Some(sep)) if n >= 3 => {
            let body = exact_tokens(tok, n - 2, None)?;
            Ok([vec![cls], body, vec![sep]].concat())
        }
        _ => exact_tokens(tok, n, None),
    }
}

/// `n` deterministic token ids in `[first, vocab)` for models without a tokenizer.
pub fn synthetic_tokens(vocab: usize, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let first = 3.min(vocab.saturating_sub(1)) as u32;
    (0..n)
        .map(|_| rng.random_range(first..vocab.max(1) as u32))
        .collect()
}

/// How a prompt's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptLength {
    /// Counted with joulebench's tokenizer for the model.
    Tokenizer,
    /// Declared without a tokenizer (the server's count, when it sends one, wins).
    Declared,
}

impl PromptLength {
    /// How records and warnings say it.
    pub fn describe(self) -> &'static str {
        match self {
            PromptLength::Tokenizer => "joulebench's tokenizer",
            PromptLength::Declared => "declared",
        }
    }
}

/// The prompt of one request and how its length is known.
pub struct StreamPrompt {
    pub text: String,
    pub tokens: usize,
    pub how: PromptLength,
}

/// The prompt of request number `seq` of the cell: `n` tokens of the bundled text starting at
/// a different place for every request, so a server's prompt (prefix) cache never skips the
/// prefill a fresh request would pay.
pub fn stream_prompt(
    tok: Option<&tokenizers::Tokenizer>,
    n: usize,
    seq: usize,
) -> Result<StreamPrompt, EngineError> {
    use crate::engine::text::tokenizer::{decode, encode};
    match tok {
        Some(t) => {
            let all = encode(t, TEXT)?;
            if all.is_empty() {
                return Err(EngineError::Tokenizer(
                    "the tokenizer made no tokens of the bundled text".into(),
                ));
            }
            let start = seq.wrapping_mul(7919) % all.len();
            let ids: Vec<u32> = all.iter().cycle().skip(start).take(n).copied().collect();
            let text = decode(t, &ids)?;
            let tokens = encode(t, &text)?.len();
            Ok(StreamPrompt {
                text,
                tokens,
                how: PromptLength::Tokenizer,
            })
        }
        None => {
            // About 0.75 words per token for English BPE tokenizers; the server's usage corrects it.
            let words: Vec<&str> = TEXT.split_whitespace().collect();
            let start = seq.wrapping_mul(7919) % words.len().max(1);
            let text: Vec<&str> = words
                .iter()
                .cycle()
                .skip(start)
                .take((n * 3 / 4).max(1))
                .copied()
                .collect();
            Ok(StreamPrompt {
                text: text.join(" "),
                tokens: n,
                how: PromptLength::Declared,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_prompts_are_deterministic_and_in_range() {
        let a = synthetic_tokens(100, 64, 7);
        assert_eq!(a, synthetic_tokens(100, 64, 7));
        assert_ne!(a, synthetic_tokens(100, 64, 8));
        assert!(a.iter().all(|t| (3..100).contains(t)));
    }

    #[test]
    fn detects_chat_formats() {
        assert_eq!(
            ChatFormat::detect("{{'<|im_start|>' + role}}"),
            Some(ChatFormat::ChatMl)
        );
        assert_eq!(
            ChatFormat::detect("<|start_header_id|>{{ role }}"),
            Some(ChatFormat::Llama3)
        );
        assert_eq!(ChatFormat::detect("[INST]"), None);
    }
}
