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

use crate::engine::gguf::Gguf;
use crate::engine::kernels::matvec::{GEMM_MIN_TOKENS, QFormat, QMatrix, matvec_many};
use crate::engine::kernels::quant::SyncPtr;
use crate::engine::models::generate::{CausalLm, TextModel};
use crate::engine::models::ops::{KvStore, attend_scaled, rms_norm, rms_norm_rows, rope};
use crate::engine::{EngineConfig, EngineError, ModelInfo};
use candle_core::{Device, Tensor};
use std::path::Path;

/// Architectures this forward runs.
pub const ARCHES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3", "phi3"];

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

enum Qkv {
    Split(QMatrix, QMatrix, QMatrix),
    Fused(QMatrix),
}

enum GateUp {
    Split(QMatrix, QMatrix),
    /// One matrix of 2 x n_ff rows: the gate, then the up projection.
    Fused(QMatrix),
}

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

/// Rotary cos/sin tables (`len` x `rope_dim / 2`) for one base.
fn tables(
    base: f32,
    rope_dim: usize,
    factors: Option<&[f32]>,
    linear: f32,
    len: usize,
) -> (Vec<f32>, Vec<f32>) {
    let half = rope_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| {
            let f = factors.and_then(|f| f.get(i)).copied().unwrap_or(1.0);
            1.0 / base.powf(2.0 * i as f32 / rope_dim as f32) / f / linear
        })
        .collect();
    let (mut c, mut s) = (
        Vec::with_capacity(len * half),
        Vec::with_capacity(len * half),
    );
    for p in 0..len {
        for f in &inv {
            let a = p as f32 * f;
            c.push(a.cos());
            s.push(a.sin());
        }
    }
    (c, s)
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

/// `act(g) * u` in place of `g`.
fn gate(act: Act, g: &mut [f32], u: &[f32]) {
    match act {
        Act::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2 / pi)
            for (g, &u) in g.iter_mut().zip(u) {
                let x = *g;
                *g = 0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh()) * u;
            }
        }
        Act::Silu => {
            for (g, &u) in g.iter_mut().zip(u) {
                let x = *g;
                *g = x / (1.0 + (-x).exp()) * u;
            }
        }
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

/// Positions x heads of attention work below which one thread does it all. Low enough that a
/// decode step splits its heads over the pool from a context of about 60 tokens (9 heads): with
/// one thread attending alone the pool's other threads waited, and decode at a 400-token context
/// ran 1.12-1.23x faster on 2 threads at this bound than at 2^15.
const PARALLEL_ATTENTION: usize = 1 << 9;

impl Decoder {
    fn is_global(&self, layer: usize) -> bool {
        match self.cfg.arch.swa {
            Some((_, pattern, _)) if pattern > 1 => layer % pattern == pattern - 1,
            Some(_) => false,
            None => true,
        }
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
        let c = self.cfg.clone();
        let a = &c.arch;
        let (e, hd) = (c.n_embd, c.head_dim);
        let (qd, kvd) = (c.n_head * hd, c.n_kv_head * hd);
        let rep = c.n_head / c.n_kv_head;
        let n = b * seq;
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
        let mut x = Vec::with_capacity(n * e);
        for &id in ids {
            if id as usize >= self.embed.rows {
                candle_core::bail!(
                    "token id {id} is outside the vocabulary of {}",
                    self.embed.rows
                );
            }
            self.embed.dequantize_row(id as usize, &mut x);
        }
        if a.embed_scale {
            let scale = (e as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= scale);
        }
        let (mut h, mut o) = (vec![0f32; n * e], vec![0f32; n * e]);
        let (mut q, mut k, mut v) = (vec![0f32; n * qd], vec![0f32; n * kvd], vec![0f32; n * kvd]);
        let mut fused = Vec::new();
        let mut att = vec![0f32; n * qd];
        let (mut g, mut u) = (vec![0f32; n * c.n_ff], vec![0f32; n * c.n_ff]);
        let mut tmp = vec![0f32; hd.max(e)];
        let qscale = 1.0 / (hd as f32).sqrt();
        let half = c.rope_dim / 2;
        let window = a.swa.map(|(w, _, _)| w);
        let score_scale = if a.scale_queries { 1.0 } else { qscale };
        for li in 0..self.layers.len() {
            let global = self.is_global(li);
            let (cos, sin) = if global {
                &self.rope_global
            } else {
                &self.rope_local
            };
            let l = &mut self.layers[li];
            rms_norm_rows(&x, &l.attn_norm, c.eps, &mut h);
            match &l.qkv {
                Qkv::Split(wq, wk, wv) => {
                    matvec_many(&[wq, wk, wv], &h, &mut [&mut q, &mut k, &mut v]);
                }
                Qkv::Fused(w) => {
                    fused.resize(n * (qd + 2 * kvd), 0.0);
                    w.matvec(&h, &mut fused);
                    split_rows(&fused, n, &mut [(&mut q, qd), (&mut k, kvd), (&mut v, kvd)]);
                }
            }
            if let Some((bq, bk, bv)) = &l.bias {
                for (dst, bias) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                    for row in dst.chunks_exact_mut(bias.len()) {
                        row.iter_mut().zip(bias).for_each(|(a, b)| *a += b);
                    }
                }
            }
            if pos == 0 {
                l.store = Some(KvStore::new(b, c.n_kv_head, hd, self.cap));
            }
            let Some(store) = l.store.as_mut() else {
                candle_core::bail!("a step before the prompt");
            };
            for bi in 0..b {
                for t in 0..seq {
                    let row = bi * seq + t;
                    let p = pos + t;
                    let (cr, sr) = (
                        &cos[p * half..(p + 1) * half],
                        &sin[p * half..(p + 1) * half],
                    );
                    for head in q[row * qd..(row + 1) * qd].chunks_exact_mut(hd) {
                        if let Some(w) = &l.q_norm {
                            tmp[..hd].copy_from_slice(head);
                            rms_norm(&tmp[..hd], w, c.eps, head);
                        }
                        rope(&mut head[..c.rope_dim], cr, sr, a.rope_interleaved);
                        if a.scale_queries {
                            head.iter_mut().for_each(|v| *v *= qscale);
                        }
                    }
                    for kh in 0..c.n_kv_head {
                        let r = row * kvd + kh * hd..row * kvd + (kh + 1) * hd;
                        if let Some(w) = &l.k_norm {
                            tmp[..hd].copy_from_slice(&k[r.clone()]);
                            rms_norm(&tmp[..hd], w, c.eps, &mut k[r.clone()]);
                        }
                        rope(
                            &mut k[r.start..r.start + c.rope_dim],
                            cr,
                            sr,
                            a.rope_interleaved,
                        );
                        store.put(bi, kh, p, &k[r.clone()], &v[r]);
                    }
                }
                let store = &*store;
                let qs = &q;
                let out = SyncPtr(att.as_mut_ptr());
                let heads = |range: std::ops::Range<usize>| {
                    let out = &out;
                    let mut scores = vec![0f32; pos + seq];
                    let mut one = vec![0f32; hd];
                    for hh in range {
                        let (kk, vv) = store.head(bi, hh / rep, pos + seq);
                        for t in 0..seq {
                            let row = bi * seq + t;
                            let p = pos + t;
                            let lo = match window {
                                Some(w) if !global => (p + 1).saturating_sub(w),
                                _ => 0,
                            };
                            let r = row * qd + hh * hd;
                            attend_scaled(
                                &qs[r..r + hd],
                                &kk[lo * hd..],
                                &vv[lo * hd..],
                                p + 1 - lo,
                                score_scale,
                                &mut one,
                                &mut scores,
                            );
                            // SAFETY: head hh of row `row` is written by this work item only;
                            // `att` holds n x qd values.
                            unsafe {
                                std::ptr::copy_nonoverlapping(one.as_ptr(), out.0.add(r), hd)
                            };
                        }
                    }
                };
                if seq * (pos + seq) * c.n_head >= PARALLEL_ATTENTION {
                    candle_core::utils::barrier_pool().execute_chunked(c.n_head, heads);
                } else {
                    heads(0..c.n_head);
                }
            }
            l.wo.matvec(&att, &mut o);
            for (xr, or) in x.chunks_exact_mut(e).zip(o.chunks_exact(e)) {
                match &l.post_attn_norm {
                    Some(w) => {
                        rms_norm(or, w, c.eps, &mut tmp[..e]);
                        xr.iter_mut().zip(&tmp[..e]).for_each(|(a, b)| *a += b);
                    }
                    None => xr.iter_mut().zip(or).for_each(|(a, b)| *a += b),
                }
            }
            rms_norm_rows(&x, &l.ffn_norm, c.eps, &mut h);
            match &l.gate_up {
                GateUp::Split(wg, wu) => matvec_many(&[wg, wu], &h, &mut [&mut g, &mut u]),
                GateUp::Fused(w) => {
                    fused.resize(n * 2 * c.n_ff, 0.0);
                    w.matvec(&h, &mut fused);
                    split_rows(&fused, n, &mut [(&mut g, c.n_ff), (&mut u, c.n_ff)]);
                }
            }
            gate(a.act, &mut g, &u);
            l.w_down.matvec(&g, &mut o);
            for (xr, or) in x.chunks_exact_mut(e).zip(o.chunks_exact(e)) {
                match &l.post_ffw_norm {
                    Some(w) => {
                        rms_norm(or, w, c.eps, &mut tmp[..e]);
                        xr.iter_mut().zip(&tmp[..e]).for_each(|(a, b)| *a += b);
                    }
                    None => xr.iter_mut().zip(or).for_each(|(a, b)| *a += b),
                }
            }
        }
        let mut last = vec![0f32; b * e];
        for bi in 0..b {
            let r = (bi * seq + seq - 1) * e;
            rms_norm(
                &x[r..r + e],
                &self.norm,
                c.eps,
                &mut last[bi * e..(bi + 1) * e],
            );
        }
        let mut logits = vec![0f32; b * c.vocab];
        self.output
            .as_ref()
            .unwrap_or(&self.embed)
            .matvec(&last, &mut logits);
        self.len = pos + seq;
        Tensor::from_vec(logits, (b, c.vocab), &self.device)
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
            self.rope_global = tables(c.rope_base, c.rope_dim, f, c.rope_linear, cap);
            self.rope_local = match c.arch.swa {
                Some((_, pattern, base)) if pattern > 1 => {
                    tables(base, c.rope_dim, f, c.rope_linear, cap)
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

/// The options of architecture `name` as its GGUF file describes it.
fn arch_of(g: &Gguf, name: &str) -> Result<Arch, EngineError> {
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
                supported: ARCHES.join(", "),
            });
        }
    }
    Ok(a)
}

/// Loads an opened GGUF file of one of [`ARCHES`] (CPU only: every matrix runs on
/// joulebench's kernels).
pub fn load(
    mut g: Gguf,
    id: &str,
    device: &str,
    dev: &Device,
) -> Result<CandleDecoder, EngineError> {
    let path = g.path.clone();
    let name = g.string("general.architecture").unwrap_or_default();
    let arch = arch_of(&g, &name)?;
    if !dev.is_cpu() {
        return Err(EngineError::Request(format!(
            "{}: {name} runs on the CPU only (joulebench's kernels)",
            path.display()
        )));
    }
    g.check_dims(&name)?;
    let bad = |m: String| EngineError::bad_file(&path, m);
    for t in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if g.has(t) {
            return Err(bad(format!(
                "{t}: long-context rotary scaling (LongRoPE, Phi-3 128k variants) is not \
                 supported; use a 4k-context variant"
            )));
        }
    }
    let scaling = g
        .string(&format!("{name}.rope.scaling.type"))
        .unwrap_or_else(|| "none".into());
    let rope_linear = match scaling.as_str() {
        "none" | "" => 1.0,
        "linear" => g
            .f32_or(&format!("{name}.rope.scaling.factor"), 1.0)
            .max(1e-6),
        other => {
            return Err(bad(format!(
                "{name}.rope.scaling.type = {other:?} is not supported (none and linear are)"
            )));
        }
    };
    let meta = crate::engine::gguf::meta::TextMeta::read(&g)?;
    let vocab_len = g
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok())
        .map_or(0, Vec::len);
    g.drop_vocabulary();
    let u = |g: &Gguf, k: &str| g.u32(&format!("{name}.{k}")).map(|v| v as usize);
    let n_embd = u(&g, "embedding_length")?;
    let n_head = u(&g, "attention.head_count")?;
    let head_dim = u(&g, "attention.key_length").unwrap_or(n_embd / n_head.max(1));
    let cfg = Config {
        n_layer: u(&g, "block_count")?,
        n_embd,
        // Some converters leave the key out: the down projection's width says it.
        n_ff: match u(&g, "feed_forward_length") {
            Ok(v) => v,
            Err(e) => g
                .content
                .tensor_infos
                .get("blk.0.ffn_down.weight")
                .and_then(|t| t.shape.dims2().ok())
                .map(|(_, ff)| ff)
                .ok_or(e)?,
        },
        n_head,
        n_kv_head: u(&g, "attention.head_count_kv").unwrap_or(n_head),
        head_dim,
        rope_dim: u(&g, "rope.dimension_count").unwrap_or(head_dim),
        rope_base: g.f32_or(
            &format!("{name}.rope.freq_base"),
            if name == "gemma3" {
                1_000_000.0
            } else {
                10_000.0
            },
        ),
        rope_linear,
        eps: g.f32_or(
            &format!("{name}.attention.layer_norm_rms_epsilon"),
            if name == "gemma3" { 1e-6 } else { 1e-5 },
        ),
        vocab: vocab_len,
        ctx: u(&g, "context_length").unwrap_or(4096),
        arch,
    };
    if !cfg.head_dim.is_multiple_of(2)
        || cfg.head_dim == 0
        || cfg.n_kv_head == 0
        || !cfg.n_head.is_multiple_of(cfg.n_kv_head)
        || !cfg.rope_dim.is_multiple_of(2)
        || cfg.rope_dim > cfg.head_dim
        || cfg.vocab == 0
        || cfg.n_ff == 0
    {
        return Err(bad(format!(
            "impossible dimensions: head size {}, rotary dimensions {}, {} heads over {} \
             key/value heads, vocabulary {}, feed-forward {}",
            cfg.head_dim, cfg.rope_dim, cfg.n_head, cfg.n_kv_head, cfg.vocab, cfg.n_ff
        )));
    }
    let (e, hd) = (cfg.n_embd, cfg.head_dim);
    let (qd, kvd) = (cfg.n_head * hd, cfg.n_kv_head * hd);
    let mat =
        |g: &mut Gguf, name: &str, rows: usize, cols: usize| -> Result<QMatrix, EngineError> {
            g.check_len(name, rows * cols)?;
            let (dtype, r, c, bytes) = g.matrix_bytes(name)?;
            let f = QFormat::of(dtype)
                .ok_or_else(|| bad(format!("tensor {name}: format {dtype:?} is not supported")))?;
            if (r, c) != (rows, cols) {
                return Err(bad(format!(
                    "tensor {name} is {r}x{c}, expected {rows}x{cols}"
                )));
            }
            QMatrix::from_bytes(f, rows, cols, bytes).map_err(|m| bad(format!("{name}: {m}")))
        };
    let vec1 = |g: &mut Gguf, name: &str, n: usize| -> Result<Vec<f32>, EngineError> {
        g.check_len(name, n)?;
        Ok(g.tensor(name, dev)?
            .dequantize(dev)?
            .flatten_all()?
            .to_vec1()?)
    };
    let opt = |g: &mut Gguf, name: &str, n: usize| -> Result<Option<Vec<f32>>, EngineError> {
        if g.has(name) {
            vec1(g, name, n).map(Some)
        } else {
            Ok(None)
        }
    };
    let need = |g: &mut Gguf, name: &str, n: usize, why: &str| {
        opt(g, name, n)?.ok_or_else(|| bad(format!("tensor {name} is missing ({why})")))
    };
    let embed = mat(&mut g, "token_embd.weight", cfg.vocab, e)?;
    let output = if g.has("output.weight") {
        Some(mat(&mut g, "output.weight", cfg.vocab, e)?)
    } else {
        None
    };
    let norm = vec1(&mut g, "output_norm.weight", e)?;
    let rope_factors = opt(&mut g, "rope_freqs.weight", cfg.rope_dim / 2)?;
    let a = cfg.arch.clone();
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for i in 0..cfg.n_layer {
        let t = |n: &str| format!("blk.{i}.{n}.weight");
        let tb = |n: &str| format!("blk.{i}.{n}.bias");
        let qkv = if g.has(&t("attn_qkv")) {
            Qkv::Fused(mat(&mut g, &t("attn_qkv"), qd + 2 * kvd, e)?)
        } else {
            Qkv::Split(
                mat(&mut g, &t("attn_q"), qd, e)?,
                mat(&mut g, &t("attn_k"), kvd, e)?,
                mat(&mut g, &t("attn_v"), kvd, e)?,
            )
        };
        let bias = match (
            opt(&mut g, &tb("attn_q"), qd)?,
            opt(&mut g, &tb("attn_k"), kvd)?,
            opt(&mut g, &tb("attn_v"), kvd)?,
        ) {
            (Some(q), Some(k), Some(v)) => Some((q, k, v)),
            (None, None, None) => None,
            _ => {
                return Err(bad(format!(
                    "layer {i}: some of the q/k/v biases are missing"
                )));
            }
        };
        let gate_up = if g.has(&t("ffn_gate")) {
            GateUp::Split(
                mat(&mut g, &t("ffn_gate"), cfg.n_ff, e)?,
                mat(&mut g, &t("ffn_up"), cfg.n_ff, e)?,
            )
        } else {
            GateUp::Fused(mat(&mut g, &t("ffn_up"), 2 * cfg.n_ff, e)?)
        };
        let (q_norm, k_norm) = if a.qk_norm {
            (
                Some(need(&mut g, &t("attn_q_norm"), hd, "per-head query norm")?),
                Some(need(&mut g, &t("attn_k_norm"), hd, "per-head key norm")?),
            )
        } else {
            (None, None)
        };
        let (post_attn_norm, post_ffw_norm) = if a.sandwich_norms {
            (
                Some(need(
                    &mut g,
                    &t("post_attention_norm"),
                    e,
                    "norm after attention",
                )?),
                Some(need(
                    &mut g,
                    &t("post_ffw_norm"),
                    e,
                    "norm after the feed-forward",
                )?),
            )
        } else {
            (None, None)
        };
        layers.push(Layer {
            attn_norm: vec1(&mut g, &t("attn_norm"), e)?,
            q_norm,
            k_norm,
            post_attn_norm,
            ffn_norm: vec1(&mut g, &t("ffn_norm"), e)?,
            post_ffw_norm,
            qkv,
            bias,
            wo: mat(&mut g, &t("attn_output"), e, qd)?,
            gate_up,
            w_down: mat(&mut g, &t("ffn_down"), e, cfg.n_ff)?,
            store: None,
        });
    }
    let params = g.parameters();
    let head = output.as_ref().unwrap_or(&embed);
    let kernels = |tokens: usize| {
        let mut names: Vec<String> = Vec::new();
        for l in &layers {
            for m in l.matrices() {
                let k = m.kernel_name(tokens);
                if !names.contains(&k) {
                    names.push(k);
                }
            }
        }
        // The output matrix sees one token per sequence in both phases.
        let k = format!("{} (output)", head.kernel_name(1));
        names.push(k);
        names.join(", ")
    };
    let (pre, dec) = (kernels(GEMM_MIN_TOKENS), kernels(1));
    let mut eos = meta.eos.clone();
    // Instruction-tuned Gemma ends a turn with <end_of_turn>, Phi-3 with <|end|>.
    for t in ["<end_of_turn>", "<|end|>"] {
        if let Some(t) = meta.tokenizer.token_to_id(t)
            && !eos.contains(&t)
        {
            eos.push(t);
        }
    }
    let info = ModelInfo {
        id: id.to_string(),
        family: g.string("general.basename").unwrap_or_else(|| name.clone()),
        architecture: name.clone(),
        parameters: params,
        quantization: meta.quantization.clone(),
        synthetic: g.get("joulebench.synthetic").is_some(),
        path: Some(path.clone()),
        vocab_size: cfg.vocab,
        context_length: cfg.ctx,
        eos_token_ids: eos,
        bos_token_id: meta.bos,
        source: None,
        engine: EngineConfig::candle(device, &pre, &dec, &meta.quantization),
    };
    let chat_template = match meta.chat_template {
        Some(t) => Some(t),
        None if name == "gemma3" => Some(GEMMA_TURNS.into()),
        None => None,
    };
    let model = Decoder {
        cfg,
        embed,
        output,
        layers,
        norm,
        rope_factors,
        rope_global: (Vec::new(), Vec::new()),
        rope_local: (Vec::new(), Vec::new()),
        cap: 0,
        len: 0,
        device: dev.clone(),
    };
    Ok(TextModel {
        model,
        info,
        tokenizer: meta.tokenizer,
        chat_template,
    })
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

    #[test]
    fn rotary_factors_and_linear_scaling_slow_the_frequencies() {
        let (c0, s0) = tables(10_000.0, 4, None, 1.0, 3);
        let (c1, s1) = tables(10_000.0, 4, Some(&[2.0, 1.0]), 1.0, 3);
        let (c2, _) = tables(10_000.0, 4, None, 2.0, 5);
        // position 2, frequency 0: angle 2 unscaled, 1 with factor 2 or linear 2 at position 2.
        assert!((c0[4] - 2f32.cos()).abs() < 1e-6 && (s0[4] - 2f32.sin()).abs() < 1e-6);
        assert!((c1[4] - 1f32.cos()).abs() < 1e-6 && (s1[4] - 1f32.sin()).abs() < 1e-6);
        assert!((c2[4] - 1f32.cos()).abs() < 1e-6);
        // frequency 1 untouched by a factor of 1.
        assert_eq!(c0[5], c1[5]);
    }

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
