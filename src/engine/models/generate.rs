//! Greedy generation shared by every causal model: request checks, prefill, decode steps, and
//! events with timestamps taken after the device synchronized.

use crate::clock::monotonic_ns;
use crate::engine::{EngineError, GenerateOutput, GenerateRequest, TokenEvent, TokenObserver};
use candle_core::{D, Tensor};

pub use super::causal::CausalLm;

/// A causal language model with its tokenizer and chat template: the [`InferenceBackend`] of
/// every GGUF family that runs through [`greedy`].
pub struct TextModel<M> {
    pub model: M,
    pub info: crate::engine::ModelInfo,
    /// None for synthetic models, which have no vocabulary.
    pub tokenizer: Option<tokenizers::Tokenizer>,
    pub chat_template: Option<String>,
}

impl<M> TextModel<M> {
    /// The model itself (tests compare logits).
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }
}

impl<M: CausalLm + Send> crate::engine::InferenceBackend for TextModel<M> {
    fn info(&self) -> &crate::engine::ModelInfo {
        &self.info
    }

    fn tokenizer(&self) -> Option<&tokenizers::Tokenizer> {
        self.tokenizer.as_ref()
    }

    fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    fn generate(
        &mut self,
        req: &GenerateRequest,
        obs: &mut dyn TokenObserver,
    ) -> Result<GenerateOutput, EngineError> {
        let eos = &self.info.eos_token_ids;
        match (&self.tokenizer, req.stop.is_empty()) {
            (Some(tok), false) => {
                let mut stop = stop_strings(tok, &req.stop);
                greedy_until(&mut self.model, req, eos, obs, &mut stop)
            }
            _ => greedy(&mut self.model, req, eos, obs),
        }
    }

    fn score(
        &mut self,
        req: &crate::engine::ScoreRequest,
        obs: &mut dyn TokenObserver,
    ) -> Result<crate::engine::ScoreOutput, EngineError> {
        super::score::score(&mut self.model, req, obs)
    }
}

/// A stop test for generated tokens: whether the text of a sequence's tokens contains one of
/// `stop` (checked on the text of its last tokens, so each step costs a short decode).
fn stop_strings<'a>(
    tok: &'a tokenizers::Tokenizer,
    stop: &'a [String],
) -> impl FnMut(&[u32]) -> bool + 'a {
    let longest = stop.iter().map(|s| s.len()).max().unwrap_or(0);
    move |ids: &[u32]| {
        // A token is at least one byte: the last `longest + 8` tokens hold any stop string
        // that ends in the newest one.
        let tail = &ids[ids.len().saturating_sub(longest + 8)..];
        let text = tok.decode(tail, false).unwrap_or_default();
        stop.iter().any(|s| text.contains(s.as_str()))
    }
}

/// Checks a request against the model's limits.
fn check(req: &GenerateRequest, vocab: usize, ctx: usize) -> Result<(usize, usize), EngineError> {
    let b = req.prompts.len();
    let len = req.prompts.first().map_or(0, Vec::len);
    if b == 0 || len == 0 {
        return Err(EngineError::Request("empty prompt".into()));
    }
    if req.prompts.iter().any(|p| p.len() != len) {
        return Err(EngineError::Request(
            "prompts in a batch must have equal length".into(),
        ));
    }
    if req.max_new_tokens == 0 {
        return Err(EngineError::Request(
            "max_new_tokens must be at least 1".into(),
        ));
    }
    if len + req.max_new_tokens > ctx {
        return Err(EngineError::Request(format!(
            "{len} prompt + {} new tokens exceed the context length {ctx}",
            req.max_new_tokens
        )));
    }
    if let Some(bad) = req.prompts.iter().flatten().find(|t| **t as usize >= vocab) {
        return Err(EngineError::Request(format!(
            "token id {bad} is outside the vocabulary ({vocab})"
        )));
    }
    Ok((b, len))
}

/// Greedy, deterministic generation with events at the request start, the first token, every
/// token and the end. Sequences stop at an end-of-sequence token unless `ignore_eos`.
pub fn greedy(
    model: &mut dyn CausalLm,
    req: &GenerateRequest,
    eos: &[u32],
    obs: &mut dyn TokenObserver,
) -> Result<GenerateOutput, EngineError> {
    greedy_until(model, req, eos, obs, &mut |_| false)
}

/// [`greedy`], a sequence also stopping once `stop` says so of its generated tokens.
pub fn greedy_until(
    model: &mut dyn CausalLm,
    req: &GenerateRequest,
    eos: &[u32],
    obs: &mut dyn TokenObserver,
    stop: &mut dyn FnMut(&[u32]) -> bool,
) -> Result<GenerateOutput, EngineError> {
    let (vocab, ctx) = model.limits();
    let (b, len) = check(req, vocab, ctx)?;
    model.prepare(len + req.max_new_tokens)?;
    let device = model.device().clone();
    let flat: Vec<u32> = req.prompts.iter().flatten().copied().collect();
    let input = Tensor::from_vec(flat, (b, len), &device)?;
    device.synchronize()?;
    let start_ns = monotonic_ns();
    obs.on_event(TokenEvent::Start, start_ns);
    let logits = model.step(&input, 0)?;
    let mut next: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    device.synchronize()?;
    let first = monotonic_ns();
    obs.on_event(TokenEvent::FirstToken, first);
    obs.on_event(TokenEvent::Token { index: 0 }, first);
    let mut token_ns = vec![first];
    let mut generated: Vec<Vec<u32>> = next.iter().map(|t| vec![*t]).collect();
    let mut done: Vec<bool> = next
        .iter()
        .zip(&generated)
        .map(|(t, g)| (!req.ignore_eos && eos.contains(t)) || stop(g))
        .collect();
    let mut steps = 1;
    while steps < req.max_new_tokens && !done.iter().all(|d| *d) {
        let input = Tensor::from_vec(next.clone(), (b, 1), &device)?;
        let logits = model.step(&input, len + steps - 1)?;
        next = logits.argmax(D::Minus1)?.to_vec1()?;
        device.synchronize()?;
        let t = monotonic_ns();
        obs.on_event(TokenEvent::Token { index: steps }, t);
        token_ns.push(t);
        for (s, tok) in next.iter().enumerate() {
            if !done[s] {
                generated[s].push(*tok);
                done[s] = (!req.ignore_eos && eos.contains(tok)) || stop(&generated[s]);
            }
        }
        steps += 1;
    }
    let end_ns = monotonic_ns();
    obs.on_event(TokenEvent::End, end_ns);
    Ok(GenerateOutput {
        prompt_tokens: b * len,
        generated,
        steps,
        start_ns,
        first_token_ns: first,
        token_ns,
        end_ns,
    })
}
