//! One decoder-only transformer forward for the GGUF architectures joulebench runs in plain
//! Rust on its kernels (both phases): llama, qwen2, qwen3, gemma3 and phi3 differ only in the
//! options of [`Arch`]: norm placement (pre-norm, or Gemma's sandwich with norms after attention
//! and the feed-forward block too), per-head RMS norms on queries and keys (Qwen3, Gemma 3),
//! biases on q/k/v (Qwen2), fused q/k/v and gate/up matrices (Phi-3), rotary embeddings on
//! adjacent pairs (llama's GGUF layout) or on halves (NeoX layout) over `rope.dimension_count`
//! dimensions with per-frequency factors (`rope_freqs.weight`, Llama 3.x) or linear scaling,
//! sliding-window layers (Gemma's local/global pattern with its own rotary base, or a window on
//! every layer), the embedding scale, GELU or SiLU gating, GQA, and a tied or separate output
//! matrix. Each architecture is checked logit by logit against a reference
//! (`tests/arch.rs`: candle-transformers' modules; `tests/gemma.rs`: llama.cpp).
//!
//! A forward pass is [`Decoder::hidden`] (embeddings, then per layer [`attention`] and [`mlp`])
//! followed by the output head on the positions the caller needs: the last one (generation) or
//! every one (scoring continuations).

mod arch;
mod attention;
mod load;
mod mlp;

pub use arch::{Act, Arch, Config};
pub use load::load;

use crate::engine::EngineError;
use crate::engine::gguf::Gguf;
use crate::engine::kernels::QMatrix;
use crate::engine::models::generate::{CausalLm, TextModel};
use crate::engine::models::ops::{KvStore, rms_norm, rope_tables};
use attention::Qkv;
use candle_core::{Device, Tensor};
use mlp::GateUp;
use std::path::Path;

/// Architectures this forward runs.
pub const ARCHES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3", "phi3"];

/// One layer's weights and its key/value cache.
struct Layer {
    attn_norm: Vec<f32>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    post_ffw_norm: Option<Vec<f32>>,
    qkv: Qkv,
    bias: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    wo: QMatrix,
    gate_up: GateUp,
    w_down: QMatrix,
    store: Option<KvStore>,
}

impl Layer {
    fn matrices(&self) -> Vec<&QMatrix> {
        let mut v: Vec<&QMatrix> = match &self.qkv {
            Qkv::Split(q, k, v) => vec![q, k, v],
            Qkv::Fused(m) => vec![m],
        };
        v.push(&self.wo);
        match &self.gate_up {
            GateUp::Split(g, u) => v.extend([g, u]),
            GateUp::Fused(m) => v.push(m),
        }
        v.push(&self.w_down);
        v
    }
}

/// A loaded decoder.
pub struct Decoder {
    pub cfg: Config,
    embed: QMatrix,
    /// `None`: tied to the embeddings.
    output: Option<QMatrix>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    rope_factors: Option<Vec<f32>>,
    rope_global: (Vec<f32>, Vec<f32>),
    rope_local: (Vec<f32>, Vec<f32>),
    cap: usize,
    len: usize,
    device: Device,
}

/// The buffers of one forward pass over `n` token rows.
struct Work {
    /// The residual stream, `n` x hidden.
    x: Vec<f32>,
    /// The normed input of a block.
    h: Vec<f32>,
    /// A block's output before the residual add.
    o: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Fused projections before they are split.
    fused: Vec<f32>,
    att: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    /// One head or one row.
    tmp: Vec<f32>,
}

impl Work {
    fn new(c: &Config, x: Vec<f32>, n: usize) -> Work {
        let (e, hd) = (c.n_embd, c.head_dim);
        let (qd, kvd) = (c.n_head * hd, c.n_kv_head * hd);
        Work {
            x,
            h: vec![0f32; n * e],
            o: vec![0f32; n * e],
            q: vec![0f32; n * qd],
            k: vec![0f32; n * kvd],
            v: vec![0f32; n * kvd],
            fused: Vec::new(),
            att: vec![0f32; n * qd],
            g: vec![0f32; n * c.n_ff],
            u: vec![0f32; n * c.n_ff],
            tmp: vec![0f32; hd.max(e)],
        }
    }
}

impl Decoder {
    fn is_global(&self, layer: usize) -> bool {
        match self.cfg.arch.swa {
            Some((_, pattern, _)) if pattern > 1 => layer % pattern == pattern - 1,
            Some(_) => false,
            None => true,
        }
    }

    /// The embeddings of `ids`, scaled where the architecture says.
    fn embed(&self, ids: &[u32]) -> candle_core::Result<Vec<f32>> {
        let e = self.cfg.n_embd;
        let mut x = Vec::with_capacity(ids.len() * e);
        for &id in ids {
            if id as usize >= self.embed.rows {
                candle_core::bail!(
                    "token id {id} is outside the vocabulary of {}",
                    self.embed.rows
                );
            }
            self.embed.dequantize_row(id as usize, &mut x);
        }
        if self.cfg.arch.embed_scale {
            let scale = (e as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= scale);
        }
        Ok(x)
    }

    /// Runs `seq` tokens of each of `b` sequences (`ids` row-major) from position `pos` through
    /// every layer: the residual stream after the last one, `b * seq` rows.
    fn hidden(
        &mut self,
        ids: &[u32],
        b: usize,
        seq: usize,
        pos: usize,
    ) -> candle_core::Result<Vec<f32>> {
        if pos + seq > self.cap {
            candle_core::bail!(
                "positions up to {} are past the prepared {}",
                pos + seq,
                self.cap
            );
        }
        if pos != self.len {
            candle_core::bail!("position {pos} does not follow the cached {}", self.len);
        }
        let x = self.embed(ids)?;
        let mut w = Work::new(&self.cfg, x, b * seq);
        for li in 0..self.layers.len() {
            self.attention(li, &mut w, b, seq, pos)?;
            self.mlp(li, &mut w, b * seq);
        }
        self.len = pos + seq;
        Ok(w.x)
    }

    /// Logits of the hidden rows `rows` (each `n_embd` wide), normed, in order.
    fn head(&self, x: &[f32], rows: impl Iterator<Item = usize>) -> Vec<f32> {
        let e = self.cfg.n_embd;
        let mut normed = Vec::new();
        for r in rows {
            let start = normed.len();
            normed.resize(start + e, 0.0);
            rms_norm(
                &x[r * e..(r + 1) * e],
                &self.norm,
                self.cfg.eps,
                &mut normed[start..],
            );
        }
        let mut logits = vec![0f32; normed.len() / e * self.cfg.vocab];
        self.output
            .as_ref()
            .unwrap_or(&self.embed)
            .matvec(&normed, &mut logits);
        logits
    }

    /// Runs `seq` tokens of each of `b` sequences (`ids` row-major) from position `pos`;
    /// logits `(b, vocab)` of each sequence's last token.
    fn forward(
        &mut self,
        ids: &[u32],
        b: usize,
        seq: usize,
        pos: usize,
    ) -> candle_core::Result<Tensor> {
        let x = self.hidden(ids, b, seq, pos)?;
        let logits = self.head(&x, (0..b).map(|bi| bi * seq + seq - 1));
        Tensor::from_vec(logits, (b, self.cfg.vocab), &self.device)
    }

    /// Logits of the last position of one prompt (the reference tests compare them).
    pub fn last_logits(&mut self, prompt: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.prepare(prompt.len() + 1)?;
        Ok(self
            .forward(prompt, 1, prompt.len(), 0)?
            .flatten_all()?
            .to_vec1()?)
    }
}

impl CausalLm for Decoder {
    fn limits(&self) -> (usize, usize) {
        (self.cfg.vocab, self.cfg.ctx)
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn prepare(&mut self, total_len: usize) -> Result<(), EngineError> {
        let cap = total_len.div_ceil(64).max(1) * 64;
        if cap != self.cap {
            let c = &self.cfg;
            let f = self.rope_factors.as_deref();
            self.rope_global = rope_tables(c.rope_base, c.rope_dim, f, c.rope_linear, cap);
            self.rope_local = match c.arch.swa {
                Some((_, pattern, base)) if pattern > 1 => {
                    rope_tables(base, c.rope_dim, f, c.rope_linear, cap)
                }
                _ => (Vec::new(), Vec::new()),
            };
            self.cap = cap;
        }
        self.len = 0;
        for l in &mut self.layers {
            l.store = None;
        }
        Ok(())
    }

    fn step(&mut self, tokens: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        let (b, seq) = tokens.dims2()?;
        let ids: Vec<u32> = tokens.flatten_all()?.to_vec1()?;
        self.forward(&ids, b, seq, pos)
    }

    fn fork(
        &mut self,
        rests: &[Vec<u32>],
        pos: usize,
        rows: &[Vec<usize>],
    ) -> Option<candle_core::Result<Vec<Vec<f32>>>> {
        Some(self.forked(rests, pos, rows))
    }
}

impl Decoder {
    /// Copies the one sequence's cache into one per rest, runs every rest as one batch (padded
    /// at the end with its last token: a causal model never looks ahead, so the padding changes
    /// no logit wanted) and returns the logits of each rest's `rows`.
    fn forked(
        &mut self,
        rests: &[Vec<u32>],
        pos: usize,
        rows: &[Vec<usize>],
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        if pos != self.len || pos == 0 {
            candle_core::bail!("a fork needs the prefix run last ({pos} of {})", self.len);
        }
        let n = rests.len();
        let seq = rests.iter().map(Vec::len).max().unwrap_or(0);
        if seq == 0 || rows.len() != n {
            candle_core::bail!("a fork needs a non-empty rest and rows for each");
        }
        for l in &mut self.layers {
            let Some(store) = l.store.as_ref() else {
                candle_core::bail!("a fork before the prefix");
            };
            l.store = Some(store.forked(n, pos));
        }
        let mut ids = Vec::with_capacity(n * seq);
        for r in rests {
            ids.extend_from_slice(r);
            let pad = r.last().copied().unwrap_or(0);
            ids.extend(std::iter::repeat_n(pad, seq - r.len()));
        }
        let x = self.hidden(&ids, n, seq, pos)?;
        let wanted: Vec<usize> = rows
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.iter().map(move |&q| i * seq + q))
            .collect();
        if let Some(&bad) = rows
            .iter()
            .zip(rests)
            .find_map(|(r, rest)| r.iter().find(|&&q| q >= rest.len()))
        {
            candle_core::bail!("row {bad} is past its rest");
        }
        let logits = self.head(&x, wanted.into_iter());
        let v = self.cfg.vocab;
        let mut out = Vec::with_capacity(n);
        let mut at = 0;
        for r in rows {
            out.push(logits[at * v..(at + r.len()) * v].to_vec());
            at += r.len();
        }
        Ok(out)
    }
}

/// `x += o`, with each row of `o` normed first where the architecture norms a block's output
/// (Gemma's sandwich norms, `norm` as wide as a row); `tmp` holds one row.
fn residual(x: &mut [f32], o: &[f32], norm: Option<&[f32]>, eps: f32, tmp: &mut [f32]) {
    match norm {
        Some(nw) => {
            let e = nw.len();
            for (xr, or) in x.chunks_exact_mut(e).zip(o.chunks_exact(e)) {
                rms_norm(or, nw, eps, &mut tmp[..e]);
                xr.iter_mut().zip(&tmp[..e]).for_each(|(a, b)| *a += b);
            }
        }
        None => x.iter_mut().zip(o).for_each(|(a, b)| *a += b),
    }
}

/// Splits each of `n` rows of fused values into consecutive parts of the given widths.
fn split_rows(fused: &[f32], n: usize, parts: &mut [(&mut [f32], usize)]) {
    let width: usize = parts.iter().map(|(_, w)| *w).sum();
    for r in 0..n {
        let mut at = r * width;
        for (dst, w) in parts.iter_mut() {
            dst[r * *w..(r + 1) * *w].copy_from_slice(&fused[at..at + *w]);
            at += *w;
        }
    }
}

/// Gemma's turn format, for files that carry no template (the 270M GGUF does not): what Google's
/// published template renders for one user turn.
const GEMMA_TURNS: &str =
    "{{ bos_token }}<start_of_turn>user\n{{ content }}<end_of_turn>\n<start_of_turn>model\n";

/// A decoder with its tokenizer.
pub type CandleDecoder = TextModel<Decoder>;

/// The last position's logits of `prompt` on the GGUF file at `path` (the reference tests).
pub fn reference_logits(path: &Path, prompt: &[u32]) -> Result<Vec<f32>, EngineError> {
    reference_logits_as(path, prompt, None)
}

/// [`reference_logits`] with the gate's activation replaced: a reference implementation that
/// differs from the architecture in that one place can still check everything else.
pub fn reference_logits_as(
    path: &Path,
    prompt: &[u32],
    act: Option<Act>,
) -> Result<Vec<f32>, EngineError> {
    let mut m = load(Gguf::open(path)?, "reference", "cpu", &Device::Cpu)?;
    if let Some(a) = act {
        m.model.cfg.arch.act = a;
    }
    m.model.last_logits(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_rows_split_in_order() {
        let fused: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let (mut a, mut b) = (vec![0f32; 4], vec![0f32; 8]);
        split_rows(&fused, 2, &mut [(&mut a, 2), (&mut b, 4)]);
        assert_eq!(a, [0.0, 1.0, 6.0, 7.0]);
        assert_eq!(b, [2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 10.0, 11.0]);
    }
}
