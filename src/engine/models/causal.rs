//! What the greedy loop and the scorer drive: a causal language model's state and steps.

use crate::engine::EngineError;
use candle_core::{Device, Tensor};

/// A causal language model the greedy loop can drive.
pub trait CausalLm {
    /// (vocabulary size, context length).
    fn limits(&self) -> (usize, usize);
    /// Where the model runs.
    fn device(&self) -> &Device;
    /// Resets state (KV caches) for a request of `total_len` positions.
    fn prepare(&mut self, total_len: usize) -> Result<(), EngineError>;
    /// Logits `(batch, vocab)` of the last position after feeding `tokens` at `pos`.
    fn step(&mut self, tokens: &Tensor, pos: usize) -> candle_core::Result<Tensor>;
    /// Continues each of `rests` from a copy of the state after the `pos` tokens run last (one
    /// sequence), as one batch: the logits of each rest's `rows` (positions within the rest),
    /// `rows.len() x vocab` per rest. None where the model cannot copy its state.
    fn fork(
        &mut self,
        _rests: &[Vec<u32>],
        _pos: usize,
        _rows: &[Vec<usize>],
    ) -> Option<candle_core::Result<Vec<Vec<f32>>>> {
        None
    }
}
