//! The llama family (SmolLM2, Llama 2/3, Mistral, TinyLlama) with a matmul strategy per phase:
//! dense f32 weights for batched prefill, SIMD Q4_1 (or candle's quantized kernels) for decode.

pub mod linear;
pub mod load;

pub use linear::{Embedding, Linear, Matmul, MatmulPlan};

use crate::engine::kernels::matvec_many;
use crate::engine::models::generate::TextModel;
use crate::engine::models::ops::{KvStore, attend, rms_norm_rows, rope, swiglu};
use crate::engine::{EngineError, GenerateOutput, GenerateRequest, TokenObserver};
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::kv_cache::KvCache;
use linear::{lookup, qm};

/// Model shape.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub rope_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f64,
    pub vocab: usize,
    pub ctx_len: usize,
    /// GGUF permutes q/k for interleaved rotary pairs; Hugging Face checkpoints rotate halves.
    pub rope_interleaved: bool,
}

impl LlamaConfig {
    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Parameter count (tied embeddings counted once when `tied`).
    pub fn parameters(&self, tied: bool) -> u64 {
        let hd = self.head_dim();
        let attn = self.n_embd * (self.n_head * hd) * 2 + self.n_embd * (self.n_kv_head * hd) * 2;
        let ffn = 3 * self.n_embd * self.n_ff;
        let per_layer = attn + ffn + 2 * self.n_embd;
        let emb = self.vocab * self.n_embd;
        (self.n_layer * per_layer + emb * if tied { 1 } else { 2 } + self.n_embd) as u64
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
    cache: KvCache,
    /// The decode path's cache (when every matrix has joulebench's kernels).
    store: Option<KvStore>,
}

/// What the plain-Rust decode step needs besides the layers: norm weights as floats, the
/// rotary tables as floats, how many positions the caches hold.
struct Fast {
    attn_norm: Vec<Vec<f32>>,
    ffn_norm: Vec<Vec<f32>>,
    norm: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    len: usize,
}

/// A loaded llama-family model.
pub struct Llama {
    pub cfg: LlamaConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    /// Present when decode can run in plain Rust on joulebench's kernels.
    fast: Option<Fast>,
}

/// The weights of one layer, in any representation.
pub struct LayerWeights {
    pub attn_norm: Tensor,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub ffn_norm: Tensor,
    pub w_gate: Linear,
    pub w_up: Linear,
    pub w_down: Linear,
}

impl crate::engine::models::generate::CausalLm for Llama {
    fn limits(&self) -> (usize, usize) {
        (self.cfg.vocab, self.cfg.ctx_len)
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn prepare(&mut self, total_len: usize) -> Result<(), EngineError> {
        self.size_for(total_len)?;
        Ok(())
    }

    fn step(&mut self, tokens: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        self.forward(tokens, pos)
    }
}

impl Llama {
    /// Assembles a model from its parts.
    pub fn new(
        cfg: LlamaConfig,
        embed: Embedding,
        layers: Vec<LayerWeights>,
        norm: Tensor,
        output: Linear,
        device: &Device,
    ) -> Result<Llama, EngineError> {
        let (cos, sin) = rope_tables(&cfg, 1, device)?;
        let kernels = device.is_cpu()
            && layers.iter().all(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .iter()
                    .all(|m| m.decodes_on_kernels())
            })
            && output.decodes_on_kernels();
        let floats = |t: &Tensor| -> candle_core::Result<Vec<f32>> {
            t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
        };
        let fast = if kernels {
            Some(Fast {
                attn_norm: layers
                    .iter()
                    .map(|l| floats(&l.attn_norm))
                    .collect::<Result<_, _>>()?,
                ffn_norm: layers
                    .iter()
                    .map(|l| floats(&l.ffn_norm))
                    .collect::<Result<_, _>>()?,
                norm: floats(&norm)?,
                cos: Vec::new(),
                sin: Vec::new(),
                len: 0,
            })
        } else {
            None
        };
        Ok(Llama {
            cos,
            sin,
            fast,
            layers: layers
                .into_iter()
                .map(|w| Layer {
                    attn_norm: w.attn_norm,
                    wq: w.wq,
                    wk: w.wk,
                    wv: w.wv,
                    wo: w.wo,
                    ffn_norm: w.ffn_norm,
                    w_gate: w.w_gate,
                    w_up: w.w_up,
                    w_down: w.w_down,
                    cache: KvCache::new(2, 1),
                    store: None,
                })
                .collect(),
            cfg,
            embed,
            norm,
            output,
            device: device.clone(),
        })
    }

    /// Sizes the key/value caches and rotary tables for `len` positions (prompt + new tokens,
    /// rounded up to 64), not for the model's whole context.
    fn size_for(&mut self, len: usize) -> candle_core::Result<()> {
        let len = len.div_ceil(64).max(1) * 64;
        for l in &mut self.layers {
            l.cache = KvCache::new(2, len);
        }
        if self.cos.dim(0)? != len {
            (self.cos, self.sin) = rope_tables(&self.cfg, len, &self.device)?;
        }
        if let Some(f) = self.fast.as_mut() {
            f.cos = self.cos.flatten_all()?.to_vec1()?;
            f.sin = self.sin.flatten_all()?.to_vec1()?;
            f.len = 0;
            for l in &mut self.layers {
                l.store = None;
            }
        }
        Ok(())
    }

    /// Token embeddings of `ids`, `(ids, n_embd)`, from whichever copy the model keeps.
    fn embed_tensor(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        match &self.embed {
            Embedding::Dense(t) => {
                let i = Tensor::from_vec(ids.to_vec(), ids.len(), &self.device)?;
                t.index_select(&i, 0)
            }
            Embedding::Rows(q) => lookup(q, ids, &self.device),
            Embedding::Tied => match self.output.rows(ids, &self.device) {
                Some(t) => t,
                None => candle_core::bail!("tied embeddings without a readable output matrix"),
            },
        }
    }

    /// One decode step (a token per sequence at `pos`) in plain Rust on joulebench's kernels and
    /// the request-sized cache prefill filled: logits `(batch, vocab)`.
    fn decode_fast(&mut self, ids: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (b, e, hd) = (ids.len(), cfg.n_embd, cfg.head_dim());
        let (qd, kvd, ff) = (cfg.n_head * hd, cfg.n_kv_head * hd, cfg.n_ff);
        let rep = cfg.n_head / cfg.n_kv_head;
        let eps = cfg.rms_eps as f32;
        let Some(f) = self.fast.as_ref() else {
            candle_core::bail!("no plain decode path for this model");
        };
        let half = cfg.rope_dim / 2;
        let (cos, sin) = (
            &f.cos[pos * half..(pos + 1) * half],
            &f.sin[pos * half..(pos + 1) * half],
        );
        let mut x: Vec<f32> = self.embed_tensor(ids)?.flatten_all()?.to_vec1()?;
        let (mut h, mut o) = (vec![0f32; b * e], vec![0f32; b * e]);
        let (mut q, mut k, mut v) = (vec![0f32; b * qd], vec![0f32; b * kvd], vec![0f32; b * kvd]);
        let mut att = vec![0f32; b * qd];
        let (mut g, mut u) = (vec![0f32; b * ff], vec![0f32; b * ff]);
        let mut scores = vec![0f32; pos + 1];
        for (li, layer) in self.layers.iter_mut().enumerate() {
            rms_norm_rows(&x, &f.attn_norm[li], eps, &mut h);
            let qkv = [qm(&layer.wq)?, qm(&layer.wk)?, qm(&layer.wv)?];
            matvec_many(&qkv, &h, &mut [&mut q, &mut k, &mut v]);
            let Some(store) = layer.store.as_mut() else {
                candle_core::bail!("decode before prefill");
            };
            for bi in 0..b {
                for hq in q[bi * qd..(bi + 1) * qd].chunks_exact_mut(hd) {
                    rope(hq, cos, sin, cfg.rope_interleaved);
                }
                for kh in 0..cfg.n_kv_head {
                    let r = bi * kvd + kh * hd..bi * kvd + (kh + 1) * hd;
                    rope(&mut k[r.clone()], cos, sin, cfg.rope_interleaved);
                    if !store.put(bi, kh, pos, &k[r.clone()], &v[r]) {
                        candle_core::bail!(
                            "position {pos} is past the cache of {}",
                            store.capacity()
                        );
                    }
                }
                for hh in 0..cfg.n_head {
                    let (kk, vv) = store.head(bi, hh / rep, pos + 1);
                    let r = bi * qd + hh * hd..bi * qd + (hh + 1) * hd;
                    attend(&q[r.clone()], kk, vv, pos + 1, &mut att[r], &mut scores);
                }
            }
            qm(&layer.wo)?.matvec(&att, &mut o);
            for (xv, ov) in x.iter_mut().zip(&o) {
                *xv += ov;
            }
            rms_norm_rows(&x, &f.ffn_norm[li], eps, &mut h);
            matvec_many(
                &[qm(&layer.w_gate)?, qm(&layer.w_up)?],
                &h,
                &mut [&mut g, &mut u],
            );
            swiglu(&mut g, &u);
            qm(&layer.w_down)?.matvec(&g, &mut o);
            for (xv, ov) in x.iter_mut().zip(&o) {
                *xv += ov;
            }
        }
        rms_norm_rows(&x, &f.norm, eps, &mut h);
        let mut logits = vec![0f32; b * cfg.vocab];
        qm(&self.output)?.matvec(&h, &mut logits);
        if let Some(f) = self.fast.as_mut() {
            f.len = pos + 1;
        }
        Tensor::from_vec(logits, (b, cfg.vocab), &self.device)
    }

    /// The matmul path of each phase, for the record: every distinct kernel with how many
    /// weight matrices use it (a "Q4_K_M" file mixes formats), most used first.
    pub fn paths(&self) -> (String, String) {
        let linears: Vec<&Linear> = self
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
            .chain([&self.output])
            .collect();
        let describe = |prefill: bool| {
            let mut counts: Vec<(String, usize)> = Vec::new();
            for l in &linears {
                let p = l.path(prefill);
                match counts.iter_mut().find(|(q, _)| *q == p) {
                    Some(c) => c.1 += 1,
                    None => counts.push((p, 1)),
                }
            }
            counts.sort_by_key(|c| std::cmp::Reverse(c.1));
            match counts.as_slice() {
                [(only, _)] => only.to_string(),
                many => many
                    .iter()
                    .map(|(p, n)| {
                        format!("{p} ({n} {})", if *n == 1 { "matrix" } else { "matrices" })
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        };
        (describe(true), describe(false))
    }

    fn rope(&self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        let (_b, _h, seq, _d) = x.dims4()?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        if self.cfg.rope_interleaved {
            candle_nn::rotary_emb::rope_i(&x.contiguous()?, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
        }
    }

    fn forward(&mut self, tokens: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        let (b, seq) = tokens.dims2()?;
        if seq == 1 && pos > 0 && self.fast.as_ref().is_some_and(|f| f.len == pos) {
            return self.decode_fast(&tokens.flatten_all()?.to_vec1()?, pos);
        }
        // The plain decode path needs the whole prompt in its cache: only a prefill from 0.
        let fill = pos == 0 && self.fast.is_some();
        let prefill = seq > 1;
        let cfg = self.cfg.clone();
        let hd = cfg.head_dim();
        let mask = if prefill {
            let m: Vec<f32> = (0..seq)
                .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Some(Tensor::from_vec(m, (seq, seq), &self.device)?)
        } else {
            None
        };
        let ids = tokens.flatten_all()?;
        let mut x = self
            .embed_tensor(&ids.to_vec1()?)?
            .reshape((b, seq, cfg.n_embd))?;
        for i in 0..self.layers.len() {
            let h = candle_nn::ops::rms_norm(&x, &self.layers[i].attn_norm, cfg.rms_eps as f32)?;
            let layer = &self.layers[i];
            let q = layer
                .wq
                .forward(&h, prefill)?
                .reshape((b, seq, cfg.n_head, hd))?
                .transpose(1, 2)?;
            let k = layer
                .wk
                .forward(&h, prefill)?
                .reshape((b, seq, cfg.n_kv_head, hd))?
                .transpose(1, 2)?;
            let v = layer
                .wv
                .forward(&h, prefill)?
                .reshape((b, seq, cfg.n_kv_head, hd))?
                .transpose(1, 2)?;
            let q = self.rope(&q, pos)?;
            let k = self.rope(&k, pos)?;
            let (k, v) = if fill {
                let cap = self.cos.dim(0)?;
                let (kc, vc) = (k.contiguous()?, v.contiguous()?);
                let (kf, vf): (Vec<f32>, Vec<f32>) =
                    (kc.flatten_all()?.to_vec1()?, vc.flatten_all()?.to_vec1()?);
                let mut store = KvStore::new(b, cfg.n_kv_head, hd, cap);
                for bi in 0..b {
                    for kh in 0..cfg.n_kv_head {
                        for t in 0..seq {
                            let at = ((bi * cfg.n_kv_head + kh) * seq + t) * hd;
                            if !store.put(bi, kh, t, &kf[at..at + hd], &vf[at..at + hd]) {
                                candle_core::bail!("prompt of {seq} is past the cache of {cap}");
                            }
                        }
                    }
                }
                self.layers[i].store = Some(store);
                (kc, vc)
            } else {
                self.layers[i]
                    .cache
                    .append(&k.contiguous()?, &v.contiguous()?)?
            };
            let rep = cfg.n_head / cfg.n_kv_head;
            let k = repeat_kv(k, rep)?;
            let v = repeat_kv(v, rep)?;
            let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
            let att = match &mask {
                Some(m) => att.broadcast_add(m)?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att
                .matmul(&v.contiguous()?)?
                .transpose(1, 2)?
                .reshape((b, seq, cfg.n_embd))?;
            let layer = &self.layers[i];
            x = (layer.wo.forward(&y, prefill)? + x)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, cfg.rms_eps as f32)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h, prefill)?)?;
            let up = layer.w_up.forward(&h, prefill)?;
            x = (layer.w_down.forward(&(gate * up)?, prefill)? + x)?;
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, cfg.rms_eps as f32)?;
        let last = x.i((.., seq - 1, ..))?.contiguous()?;
        if let Some(f) = self.fast.as_mut() {
            f.len = if fill { seq } else { 0 };
        }
        self.output.forward(&last, false)
    }

    /// Greedy generation with events at the phase boundaries.
    pub fn generate(
        &mut self,
        req: &GenerateRequest,
        eos: &[u32],
        obs: &mut dyn TokenObserver,
    ) -> Result<GenerateOutput, EngineError> {
        crate::engine::models::generate::greedy(self, req, eos, obs)
    }

    /// Logits for every position of one prompt (tests compare implementations with this).
    pub fn last_logits(&mut self, prompt: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.size_for(prompt.len() + 1)?;
        let input = Tensor::from_vec(prompt.to_vec(), (1, prompt.len()), &self.device)?;
        Ok(self.forward(&input, 0)?.flatten_all()?.to_vec1()?)
    }
}

/// Rotary cos/sin tables for positions `0..len`, as `(len, rope_dim / 2)` tensors.
fn rope_tables(
    cfg: &LlamaConfig,
    len: usize,
    dev: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let half = cfg.rope_dim / 2;
    let (cos, sin) =
        crate::engine::models::ops::rope_tables(cfg.rope_theta, cfg.rope_dim, None, 1.0, len);
    Ok((
        Tensor::from_vec(cos, (len, half), dev)?,
        Tensor::from_vec(sin, (len, half), dev)?,
    ))
}

/// A llama-family model with its tokenizer (none for synthetic models).
pub type CandleLlama = TextModel<Llama>;

/// Grouped-query attention's keys or values `(batch, kv_heads, seq, dim)` with each head
/// repeated `rep` times in place, `(batch, kv_heads * rep, seq, dim)`: query head `h` reads kv
/// head `h / rep`.
fn repeat_kv(x: Tensor, rep: usize) -> candle_core::Result<Tensor> {
    if rep == 1 {
        return Ok(x);
    }
    let (b, kv, seq, dim) = x.dims4()?;
    // `rep` copies of each head's rows one after another, read as `rep` heads (a plain
    // concatenation copies contiguously, unlike a broadcast view).
    Tensor::cat(&vec![&x; rep], 2)?.reshape((b, kv * rep, seq, dim))
}
