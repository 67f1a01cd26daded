//! Scoring an item's continuations, as `llama-perplexity --multiple-choice` does: the tokens
//! every choice shares are run once, then every choice continues from a copy of that state, all
//! choices in one batch (padded at the end, which a causal model never looks at). A model that
//! cannot copy its state scores each choice alone, its prefix recomputed, and says so
//! (`shared = 0`).

use super::causal::CausalLm;
use crate::clock::monotonic_ns;
use crate::engine::{EngineError, ScoreOutput, ScoreRequest, TokenEvent, TokenObserver};
use candle_core::Tensor;

/// log P(token) under `logits`, in f64: `logits[token] - logsumexp(logits)`.
pub fn log_prob(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Each term in f32 (every one is at most 1, so its relative error is f32's), summed in
    // f64 by chunks: about 1e-6 nats, far below the quantization's differences.
    let sum: f64 = logits
        .chunks(256)
        .map(|c| c.iter().map(|&l| (l - max).exp()).sum::<f32>() as f64)
        .sum();
    logits[token as usize] as f64 - max as f64 - sum.ln()
}

/// Checks a request: at least one choice, each continuation non-empty and after at
/// least one context token, every token in the vocabulary, within the context length.
fn check(req: &ScoreRequest, vocab: usize, ctx: usize) -> Result<(), EngineError> {
    if req.choices.is_empty() || req.choices.len() != req.starts.len() {
        return Err(EngineError::Request(
            "an item needs its choices and where each continuation starts".into(),
        ));
    }
    for (c, &s) in req.choices.iter().zip(&req.starts) {
        if s == 0 || s >= c.len() {
            return Err(EngineError::Request(format!(
                "a continuation must start after its context and hold a token (start {s} of \
                 {})",
                c.len()
            )));
        }
        if c.len() > ctx {
            return Err(EngineError::Request(format!(
                "a choice of {} tokens exceeds the context length {ctx}",
                c.len()
            )));
        }
        if let Some(bad) = c.iter().find(|t| **t as usize >= vocab) {
            return Err(EngineError::Request(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
    }
    Ok(())
}

/// The length of the prefix every choice's input shares, up to its first continuation token
/// (the inputs are each choice without its last token).
fn shared_prefix(req: &ScoreRequest) -> usize {
    let first = &req.choices[0];
    let mut p = req.starts.iter().copied().min().unwrap_or(0);
    for c in &req.choices[1..] {
        p = p.min(first.iter().zip(c).take_while(|(a, b)| a == b).count());
    }
    p
}

/// Scores every choice of `req` on `model`, with `Start` and `End` events.
pub fn score(
    model: &mut dyn CausalLm,
    req: &ScoreRequest,
    obs: &mut dyn TokenObserver,
) -> Result<ScoreOutput, EngineError> {
    let (vocab, ctx) = model.limits();
    check(req, vocab, ctx)?;
    let longest = req.choices.iter().map(Vec::len).max().unwrap_or(0);
    model.prepare(longest)?;
    let device = model.device().clone();
    let p = shared_prefix(req);
    device.synchronize()?;
    let start_ns = monotonic_ns();
    obs.on_event(TokenEvent::Start, start_ns);
    // JOULEBENCH_SCORE=alone: every choice scored on its own (the baseline the shared prefix
    // is measured against; the figures are the same within the kernels' rounding).
    let alone = std::env::var("JOULEBENCH_SCORE").is_ok_and(|v| v == "alone");
    let shared = if p > 0 && !alone {
        shared_then_forked(model, req, p)?
    } else {
        None
    };
    let (loglik, tokens, shared) = match shared {
        Some((l, t)) => (l, t, p),
        None => {
            let (l, t) = each_alone(model, req)?;
            (l, t, 0)
        }
    };
    device.synchronize()?;
    let end_ns = monotonic_ns();
    obs.on_event(TokenEvent::End, end_ns);
    Ok(ScoreOutput {
        loglik,
        tokens,
        shared,
        start_ns,
        end_ns,
    })
}

/// Runs the `p` shared tokens once and every choice's rest from a copy of their state: each
/// choice's log-likelihood and the tokens run; None where the model cannot copy its state.
fn shared_then_forked(
    model: &mut dyn CausalLm,
    req: &ScoreRequest,
    p: usize,
) -> Result<Option<(Vec<f64>, usize)>, EngineError> {
    let device = model.device().clone();
    let prefix = Tensor::from_vec(req.choices[0][..p].to_vec(), (1, p), &device)?;
    // The logits at position p - 1 predict the first token after the prefix.
    let last: Vec<f32> = model.step(&prefix, 0)?.flatten_all()?.to_vec1()?;
    let mut rests = Vec::new();
    let mut rows = Vec::new();
    let mut owner = Vec::new();
    for (i, (c, &s)) in req.choices.iter().zip(&req.starts).enumerate() {
        // Inputs p..len-1; the logits wanted are at positions s-1..len-2, those past p - 1
        // from this choice's own rest.
        let rest = c[p..c.len() - 1].to_vec();
        let want: Vec<usize> = (s.max(p + 1) - 1..c.len() - 1).map(|q| q - p).collect();
        if !rest.is_empty() && !want.is_empty() {
            rests.push(rest);
            rows.push(want);
            owner.push(i);
        }
    }
    let forked = if rests.is_empty() {
        Vec::new()
    } else {
        match model.fork(&rests, p, &rows) {
            Some(r) => r?,
            None => return Ok(None),
        }
    };
    let vocab = last.len();
    let mut loglik = Vec::with_capacity(req.choices.len());
    for (i, (c, &s)) in req.choices.iter().zip(&req.starts).enumerate() {
        let mut sum = 0f64;
        if s == p {
            sum += log_prob(&last, c[p]);
        }
        if let Some(k) = owner.iter().position(|&o| o == i) {
            // Rows on the engine's threads: a row's normalizer is a pass over the vocabulary.
            // (Collected in order and summed in order: the same sum on every run.)
            use rayon::prelude::*;
            let each: Vec<f64> = forked[k]
                .par_chunks_exact(vocab)
                .zip(rows[k].par_iter())
                .map(|(row, &q)| log_prob(row, c[p + q + 1]))
                .collect();
            sum += each.iter().sum::<f64>();
        }
        loglik.push(sum);
    }
    let tokens = p + rests.iter().map(Vec::len).sum::<usize>();
    Ok(Some((loglik, tokens)))
}

/// Scores each choice on its own: its context run, then its continuation as one batch from
/// that state (one token at a time where the model cannot copy its state).
fn each_alone(
    model: &mut dyn CausalLm,
    req: &ScoreRequest,
) -> Result<(Vec<f64>, usize), EngineError> {
    let device = model.device().clone();
    let mut loglik = Vec::with_capacity(req.choices.len());
    let mut tokens = 0;
    for (c, &s) in req.choices.iter().zip(&req.starts) {
        model.prepare(c.len())?;
        let ctx = Tensor::from_vec(c[..s].to_vec(), (1, s), &device)?;
        let first: Vec<f32> = model.step(&ctx, 0)?.flatten_all()?.to_vec1()?;
        let mut sum = log_prob(&first, c[s]);
        let rest = c[s..c.len() - 1].to_vec();
        if !rest.is_empty() {
            let rows = vec![(0..rest.len()).collect::<Vec<usize>>()];
            match model.fork(std::slice::from_ref(&rest), s, &rows) {
                Some(r) => {
                    let r = r?;
                    let vocab = first.len();
                    for (q, row) in r[0].chunks_exact(vocab).enumerate() {
                        sum += log_prob(row, c[s + q + 1]);
                    }
                }
                None => {
                    for j in s + 1..c.len() {
                        let t = Tensor::from_vec(vec![c[j - 1]], (1, 1), &device)?;
                        let logits: Vec<f32> = model.step(&t, j - 1)?.flatten_all()?.to_vec1()?;
                        sum += log_prob(&logits, c[j]);
                    }
                }
            }
        }
        tokens += c.len() - 1;
        loglik.push(sum);
    }
    Ok((loglik, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_probabilities_normalize() {
        let l = [1.0f32, 2.0, 3.0];
        let total: f64 = (0..3).map(|t| log_prob(&l, t).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(
            (log_prob(&l, 2) - (3.0 - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln())).abs() < 1e-6
        );
        // Large logits do not overflow.
        assert!(log_prob(&[1e4, 1e4], 0).is_finite());
    }

    #[test]
    fn the_shared_prefix_stops_at_the_first_difference_or_continuation() {
        let r = ScoreRequest {
            choices: vec![vec![1, 2, 3, 4, 5], vec![1, 2, 3, 9], vec![1, 2, 7, 8]],
            starts: vec![3, 3, 3],
        };
        assert_eq!(shared_prefix(&r), 2);
        let r = ScoreRequest {
            choices: vec![vec![1, 2, 3, 4], vec![1, 2, 3, 4, 6]],
            starts: vec![2, 3],
        };
        assert_eq!(shared_prefix(&r), 2, "never past the earliest continuation");
        assert!(check(&r, 10, 100).is_ok());
        assert!(
            check(&r, 5, 100).is_err(),
            "token 6 outside a vocabulary of 5"
        );
        let bad = ScoreRequest {
            choices: vec![vec![1, 2]],
            starts: vec![2],
        };
        assert!(check(&bad, 10, 100).is_err(), "an empty continuation");
    }
}
