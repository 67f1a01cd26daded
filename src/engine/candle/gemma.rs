//! Gemma 3 GGUF files (`general.architecture = "gemma3"`), in plain Rust on joulebench's kernels
//! in both phases: embeddings scaled by √hidden, RMS norms before and after attention and the
//! feed-forward block, per-head RMS norms on queries and keys, rotary embeddings on halves with
//! a local base (10,000) on sliding-window layers and the file's base on every sixth (global)
//! layer, queries scaled by 1/√head_dim, a GELU-gated feed-forward, tied output. This follows
//! llama.cpp's gemma3 graph, which the reference test compares against logit by logit.

use crate::engine::candle::decode::{KvStore, attend_scaled, rms_norm, rms_norm_rows, rope};
use crate::engine::candle::generate::{CausalLm, greedy};
use crate::engine::candle::gguf::Gguf;
use crate::engine::candle::qmatrix::{QFormat, QMatrix, matvec_many};
use crate::engine::{
    EngineConfig, EngineError, GenerateOutput, GenerateRequest, InferenceBackend, ModelInfo,
    TokenObserver,
};
use candle_core::{Device, Tensor};
use std::path::Path;
use tokenizers::Tokenizer;

/// Rotary base of the sliding-window layers (llama.cpp's `rope_freq_base_train_swa`).
const LOCAL_ROPE_BASE: f32 = 10_000.0;
/// Every this-many-th layer attends globally; the others within the window.
const SWA_PATTERN: usize = 6;

/// Model shape.
#[derive(Debug, Clone)]
pub struct Gemma3Config {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope_base: f32,
    pub window: usize,
    pub eps: f32,
    pub vocab: usize,
    pub ctx: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    post_ffw_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    w_gate: QMatrix,
    w_up: QMatrix,
    w_down: QMatrix,
    store: Option<KvStore>,
}

impl Layer {
    fn global(i: usize) -> bool {
        i % SWA_PATTERN == SWA_PATTERN - 1
    }
}

/// Rotary cos/sin tables (`len` x `head_dim / 2`) for one base.
fn tables(base: f32, hd: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
    let half = hd / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / base.powf(2.0 * i as f32 / hd as f32))
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

/// A loaded Gemma 3 model.
pub struct Gemma3 {
    pub cfg: Gemma3Config,
    embed: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    rope_global: (Vec<f32>, Vec<f32>),
    rope_local: (Vec<f32>, Vec<f32>),
    cap: usize,
    len: usize,
    device: Device,
}

/// `gelu(g) * u` in place of `g` (tanh approximation, as ggml_gelu).
fn geglu(g: &mut [f32], u: &[f32]) {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    for (g, &u) in g.iter_mut().zip(u) {
        let x = *g;
        *g = 0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh()) * u;
    }
}

impl Gemma3 {
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
        let scale = (e as f32).sqrt();
        x.iter_mut().for_each(|v| *v *= scale);
        let (mut h, mut o) = (vec![0f32; n * e], vec![0f32; n * e]);
        let (mut q, mut k, mut v) = (vec![0f32; n * qd], vec![0f32; n * kvd], vec![0f32; n * kvd]);
        let mut att = vec![0f32; n * qd];
        let (mut g, mut u) = (vec![0f32; n * c.n_ff], vec![0f32; n * c.n_ff]);
        let mut scores = vec![0f32; pos + seq];
        let mut tmp = vec![0f32; hd.max(e)];
        let qscale = 1.0 / (hd as f32).sqrt();
        let half = hd / 2;
        for (li, l) in self.layers.iter_mut().enumerate() {
            let global = Layer::global(li);
            let (cos, sin) = if global {
                &self.rope_global
            } else {
                &self.rope_local
            };
            rms_norm_rows(&x, &l.attn_norm, c.eps, &mut h);
            matvec_many(&[&l.wq, &l.wk, &l.wv], &h, &mut [&mut q, &mut k, &mut v]);
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
                        tmp[..hd].copy_from_slice(head);
                        rms_norm(&tmp[..hd], &l.q_norm, c.eps, head);
                        rope(head, cr, sr, false);
                        head.iter_mut().for_each(|v| *v *= qscale);
                    }
                    for kh in 0..c.n_kv_head {
                        let r = row * kvd + kh * hd..row * kvd + (kh + 1) * hd;
                        tmp[..hd].copy_from_slice(&k[r.clone()]);
                        rms_norm(&tmp[..hd], &l.k_norm, c.eps, &mut k[r.clone()]);
                        rope(&mut k[r.clone()], cr, sr, false);
                        store.put(bi, kh, p, &k[r.clone()], &v[r]);
                    }
                }
                for t in 0..seq {
                    let row = bi * seq + t;
                    let p = pos + t;
                    let lo = if global {
                        0
                    } else {
                        (p + 1).saturating_sub(c.window)
                    };
                    for hh in 0..c.n_head {
                        let (kk, vv) = store.head(bi, hh / rep, p + 1);
                        let r = row * qd + hh * hd..row * qd + (hh + 1) * hd;
                        attend_scaled(
                            &q[r.clone()],
                            &kk[lo * hd..],
                            &vv[lo * hd..],
                            p + 1 - lo,
                            1.0,
                            &mut att[r],
                            &mut scores,
                        );
                    }
                }
            }
            l.wo.matvec(&att, &mut o);
            for (xr, or) in x.chunks_exact_mut(e).zip(o.chunks_exact(e)) {
                rms_norm(or, &l.post_attn_norm, c.eps, &mut tmp[..e]);
                xr.iter_mut().zip(&tmp[..e]).for_each(|(a, b)| *a += b);
            }
            rms_norm_rows(&x, &l.ffn_norm, c.eps, &mut h);
            matvec_many(&[&l.w_gate, &l.w_up], &h, &mut [&mut g, &mut u]);
            geglu(&mut g, &u);
            l.w_down.matvec(&g, &mut o);
            for (xr, or) in x.chunks_exact_mut(e).zip(o.chunks_exact(e)) {
                rms_norm(or, &l.post_ffw_norm, c.eps, &mut tmp[..e]);
                xr.iter_mut().zip(&tmp[..e]).for_each(|(a, b)| *a += b);
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
        self.embed.matvec(&last, &mut logits);
        self.len = pos + seq;
        Tensor::from_vec(logits, (b, c.vocab), &self.device)
    }

    /// Logits of the last position of one prompt (the reference test compares them).
    pub fn last_logits(&mut self, prompt: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.prepare(prompt.len() + 1)?;
        Ok(self
            .forward(prompt, 1, prompt.len(), 0)?
            .flatten_all()?
            .to_vec1()?)
    }
}

impl CausalLm for Gemma3 {
    fn limits(&self) -> (usize, usize) {
        (self.cfg.vocab, self.cfg.ctx)
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn prepare(&mut self, total_len: usize) -> Result<(), EngineError> {
        let cap = total_len.div_ceil(64).max(1) * 64;
        if cap != self.cap {
            self.rope_global = tables(self.cfg.rope_base, self.cfg.head_dim, cap);
            self.rope_local = tables(LOCAL_ROPE_BASE, self.cfg.head_dim, cap);
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

/// A Gemma 3 model with its tokenizer.
pub struct CandleGemma {
    pub model: Gemma3,
    info: ModelInfo,
    tokenizer: Tokenizer,
    chat_template: Option<String>,
}

impl InferenceBackend for CandleGemma {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn tokenizer(&self) -> Option<&Tokenizer> {
        Some(&self.tokenizer)
    }

    fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    fn generate(
        &mut self,
        req: &GenerateRequest,
        obs: &mut dyn TokenObserver,
    ) -> Result<GenerateOutput, EngineError> {
        greedy(&mut self.model, req, &self.info.eos_token_ids, obs)
    }
}

/// The last position's logits of `prompt` on the Gemma 3 file at `path` (the reference test).
pub fn reference_logits(path: &Path, prompt: &[u32]) -> Result<Vec<f32>, EngineError> {
    let mut m = load(Gguf::open(path)?, "reference", "cpu", &Device::Cpu)?;
    m.model.last_logits(prompt)
}

/// Loads an opened Gemma 3 GGUF file (CPU only: every matrix runs on joulebench's kernels).
pub fn load(mut g: Gguf, id: &str, device: &str, dev: &Device) -> Result<CandleGemma, EngineError> {
    let path = g.path.clone();
    if !dev.is_cpu() {
        return Err(EngineError::Request(format!(
            "{}: gemma3 runs on the CPU only (joulebench's kernels)",
            path.display()
        )));
    }
    g.check_dims("gemma3")?;
    let meta = crate::engine::candle::text_meta::TextMeta::read(&g)?;
    let vocab_len = g
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok())
        .map_or(0, Vec::len);
    g.drop_vocabulary();
    let u = |g: &Gguf, k: &str| g.u32(&format!("gemma3.{k}")).map(|v| v as usize);
    let n_embd = u(&g, "embedding_length")?;
    let n_head = u(&g, "attention.head_count")?;
    let cfg = Gemma3Config {
        n_layer: u(&g, "block_count")?,
        n_embd,
        n_ff: u(&g, "feed_forward_length")?,
        n_head,
        n_kv_head: u(&g, "attention.head_count_kv").unwrap_or(n_head),
        head_dim: u(&g, "attention.key_length").unwrap_or(n_embd / n_head),
        rope_base: g.f32_or("gemma3.rope.freq_base", 1_000_000.0),
        window: u(&g, "attention.sliding_window").unwrap_or(512),
        eps: g.f32_or("gemma3.attention.layer_norm_rms_epsilon", 1e-6),
        vocab: vocab_len,
        ctx: u(&g, "context_length").unwrap_or(32_768),
    };
    let bad = |m: String| EngineError::bad_file(&path, m);
    if cfg.head_dim % 2 != 0
        || cfg.head_dim == 0
        || cfg.n_head % cfg.n_kv_head != 0
        || cfg.vocab == 0
    {
        return Err(bad(format!(
            "impossible dimensions: head size {}, {} heads over {} key/value heads, vocabulary {}",
            cfg.head_dim, cfg.n_head, cfg.n_kv_head, cfg.vocab
        )));
    }
    let (e, hd) = (cfg.n_embd, cfg.head_dim);
    let mat =
        |g: &mut Gguf, name: &str, rows: usize, cols: usize| -> Result<QMatrix, EngineError> {
            g.check_len(name, rows * cols)?;
            let qt = g.tensor(name, dev)?;
            let f = QFormat::of(qt.dtype()).ok_or_else(|| {
                bad(format!(
                    "tensor {name}: format {:?} is not supported",
                    qt.dtype()
                ))
            })?;
            let (r, c) = qt.shape().dims2()?;
            if (r, c) != (rows, cols) {
                return Err(bad(format!(
                    "tensor {name} is {r}x{c}, expected {rows}x{cols}"
                )));
            }
            QMatrix::from_bytes(f, rows, cols, qt.data()?.to_vec())
                .map_err(|m| bad(format!("{name}: {m}")))
        };
    let vec1 = |g: &mut Gguf, name: &str, n: usize| -> Result<Vec<f32>, EngineError> {
        g.check_len(name, n)?;
        Ok(g.tensor(name, dev)?
            .dequantize(dev)?
            .flatten_all()?
            .to_vec1()?)
    };
    let embed = mat(&mut g, "token_embd.weight", cfg.vocab, e)?;
    let norm = vec1(&mut g, "output_norm.weight", e)?;
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for i in 0..cfg.n_layer {
        let t = |n: &str| format!("blk.{i}.{n}.weight");
        let (qd, kvd) = (cfg.n_head * hd, cfg.n_kv_head * hd);
        layers.push(Layer {
            attn_norm: vec1(&mut g, &t("attn_norm"), e)?,
            q_norm: vec1(&mut g, &t("attn_q_norm"), hd)?,
            k_norm: vec1(&mut g, &t("attn_k_norm"), hd)?,
            post_attn_norm: vec1(&mut g, &t("post_attention_norm"), e)?,
            ffn_norm: vec1(&mut g, &t("ffn_norm"), e)?,
            post_ffw_norm: vec1(&mut g, &t("post_ffw_norm"), e)?,
            wq: mat(&mut g, &t("attn_q"), qd, e)?,
            wk: mat(&mut g, &t("attn_k"), kvd, e)?,
            wv: mat(&mut g, &t("attn_v"), kvd, e)?,
            wo: mat(&mut g, &t("attn_output"), e, qd)?,
            w_gate: mat(&mut g, &t("ffn_gate"), cfg.n_ff, e)?,
            w_up: mat(&mut g, &t("ffn_up"), cfg.n_ff, e)?,
            w_down: mat(&mut g, &t("ffn_down"), e, cfg.n_ff)?,
            store: None,
        });
    }
    let params: u64 = g
        .content
        .tensor_infos
        .values()
        .map(|t| t.shape.elem_count() as u64)
        .sum();
    let kernels = |tokens: usize| {
        let mut names: Vec<String> = Vec::new();
        for l in &layers {
            for m in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
                let k = m.kernel_name(tokens);
                if !names.contains(&k) {
                    names.push(k);
                }
            }
        }
        names.join(", ")
    };
    let (pre, dec) = (
        kernels(crate::engine::candle::qmatrix::GEMM_MIN_TOKENS),
        kernels(1),
    );
    let info = ModelInfo {
        id: id.to_string(),
        family: g
            .string("general.basename")
            .unwrap_or_else(|| "gemma3".into()),
        architecture: "gemma3".into(),
        parameters: params,
        quantization: meta.quantization.clone(),
        synthetic: g.get("joulebench.synthetic").is_some(),
        path: Some(path.clone()),
        vocab_size: cfg.vocab,
        context_length: cfg.ctx,
        eos_token_ids: {
            let mut eos = meta.eos.clone();
            // Instruction-tuned Gemma ends a turn with <end_of_turn>.
            if let Some(t) = meta.tokenizer.token_to_id("<end_of_turn>")
                && !eos.contains(&t)
            {
                eos.push(t);
            }
            eos
        },
        bos_token_id: meta.bos,
        source: None,
        engine: EngineConfig {
            backend: "candle".into(),
            device: device.into(),
            threads: crate::engine::threads(),
            prefill_matmul: pre,
            decode_matmul: dec,
            weights_dtype: meta.quantization.clone(),
        },
    };
    let model = Gemma3 {
        cfg,
        embed,
        layers,
        norm,
        rope_global: (Vec::new(), Vec::new()),
        rope_local: (Vec::new(), Vec::new()),
        cap: 0,
        len: 0,
        device: dev.clone(),
    };
    Ok(CandleGemma {
        model,
        info,
        tokenizer: meta.tokenizer,
        chat_template: meta.chat_template.or_else(|| Some(GEMMA_TURNS.into())),
    })
}
