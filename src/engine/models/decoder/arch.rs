//! What distinguishes one architecture's forward from another's ([`Arch`]), the model's shape
//! ([`Config`]) and how a GGUF file states both.

use crate::engine::EngineError;
use crate::engine::gguf::Gguf;

/// The feed-forward gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Silu,
    /// GELU, tanh approximation (ggml_gelu).
    GeluTanh,
}

/// What distinguishes one architecture's forward from another's.
#[derive(Debug, Clone, PartialEq)]
pub struct Arch {
    pub name: String,
    /// Embeddings multiplied by √hidden (Gemma).
    pub embed_scale: bool,
    /// RMS norms after attention and after the feed-forward block as well (Gemma).
    pub sandwich_norms: bool,
    /// RMS norm of every query and key head (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Rotary pairs are adjacent values (llama's GGUF layout) rather than the two halves.
    pub rope_interleaved: bool,
    pub act: Act,
    /// Queries are multiplied by 1/√head_dim before the scores (Gemma, as llama.cpp's gemma3
    /// graph does), rather than the scores after (every other family, as llama.cpp's softmax).
    pub scale_queries: bool,
    /// Sliding-window attention: `(window, pattern, local base)`; every `pattern`-th layer is
    /// global with the file's rotary base, the others attend within `window` positions with
    /// `local base`. A pattern of 1 puts the window on every layer with the file's base.
    pub swa: Option<(usize, usize, f32)>,
}

/// Model shape.
#[derive(Debug, Clone)]
pub struct Config {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub rope_base: f32,
    /// Positions are divided by this (linear rotary scaling).
    pub rope_linear: f32,
    pub eps: f32,
    pub vocab: usize,
    pub ctx: usize,
    pub arch: Arch,
}

/// The options of architecture `name` as its GGUF file describes it.
pub(super) fn arch_of(g: &Gguf, name: &str) -> Result<Arch, EngineError> {
    let key = |k: &str| format!("{name}.{k}");
    let window = g
        .u32(&key("attention.sliding_window"))
        .ok()
        .map(|w| w as usize);
    let mut a = Arch {
        name: name.to_string(),
        embed_scale: false,
        sandwich_norms: false,
        qk_norm: false,
        rope_interleaved: false,
        act: Act::Silu,
        scale_queries: false,
        swa: None,
    };
    match name {
        "llama" => a.rope_interleaved = true,
        "qwen2" => {}
        "qwen3" => a.qk_norm = true,
        "gemma3" => {
            a.embed_scale = true;
            a.sandwich_norms = true;
            a.qk_norm = true;
            a.act = Act::GeluTanh;
            a.scale_queries = true;
            // llama.cpp's gemma3: every sixth layer global, the rest local with base 10,000.
            a.swa = Some((window.unwrap_or(512), 6, 10_000.0));
        }
        "phi3" => a.swa = window.filter(|&w| w > 0).map(|w| (w, 1, 0.0)),
        other => {
            return Err(EngineError::UnsupportedArch {
                path: g.path.clone(),
                arch: other.to_string(),
                supported: super::ARCHES.join(", "),
            });
        }
    }
    Ok(a)
}

/// `act(g) * u` in place of `g`.
pub(super) fn gate(act: Act, g: &mut [f32], u: &[f32]) {
    match act {
        Act::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2 / pi)
            for (g, &u) in g.iter_mut().zip(u) {
                let x = *g;
                *g = 0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh()) * u;
            }
        }
        Act::Silu => crate::engine::kernels::silu_mul(g, u),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_match_their_formulas() {
        let mut g = vec![-1.0f32, 0.0, 2.0];
        gate(Act::Silu, &mut g, &[1.0, 1.0, 0.5]);
        let silu = |x: f32| x / (1.0 + (-x).exp());
        assert!((g[0] - silu(-1.0)).abs() < 1e-6 && g[1] == 0.0);
        assert!((g[2] - 0.5 * silu(2.0)).abs() < 1e-6);
        let mut g = vec![1.0f32];
        gate(Act::GeluTanh, &mut g, &[1.0]);
        assert!((g[0] - 0.841_192).abs() < 1e-4, "{}", g[0]);
    }
}
