//! One layer's attention block: the q/k/v projections (split or fused, with optional biases),
//! per-head norms and rotary embeddings, the key/value cache, attention over the cached
//! positions (sliding windows where the layer has one) and the output projection with its
//! residual add.

use super::{Config, Decoder, Work, residual};
use crate::engine::kernels::{QMatrix, SyncPtr, matvec_many};
use crate::engine::models::ops::{KvStore, attend_scaled, rms_norm, rms_norm_rows, rope};

/// The query, key and value projections: three matrices, or one of `q + 2 kv` rows.
pub(super) enum Qkv {
    Split(QMatrix, QMatrix, QMatrix),
    Fused(QMatrix),
}

/// Positions x heads of attention work below which one thread does it all. Low enough that a
/// decode step splits its heads over the pool from a context of about 60 tokens (9 heads): with
/// one thread attending alone the pool's other threads waited, and decode at a 400-token context
/// ran 1.12-1.23x faster on 2 threads at this bound than at 2^15.
const PARALLEL_ATTENTION: usize = 1 << 9;

/// The rotary tables of one position: cos, sin.
type RopeRow<'a> = (&'a [f32], &'a [f32]);

impl Decoder {
    /// Layer `li`'s attention over `seq` tokens of each of `b` sequences from position `pos`,
    /// added to the residual stream `w.x`.
    pub(super) fn attention(
        &mut self,
        li: usize,
        w: &mut Work,
        b: usize,
        seq: usize,
        pos: usize,
    ) -> candle_core::Result<()> {
        let global = self.is_global(li);
        let Decoder {
            cfg: c,
            layers,
            rope_global,
            rope_local,
            cap,
            ..
        } = self;
        let (cos, sin) = if global { rope_global } else { rope_local };
        let l = &mut layers[li];
        let n = b * seq;
        rms_norm_rows(&w.x, &l.attn_norm, c.eps, &mut w.h);
        project(&l.qkv, l.bias.as_ref(), c, w, n);
        if pos == 0 {
            l.store = Some(KvStore::new(b, c.n_kv_head, c.head_dim, *cap));
        }
        let Some(store) = l.store.as_mut() else {
            candle_core::bail!("a step before the prompt");
        };
        let half = c.rope_dim / 2;
        for bi in 0..b {
            for t in 0..seq {
                let p = pos + t;
                let row = (
                    &cos[p * half..(p + 1) * half],
                    &sin[p * half..(p + 1) * half],
                );
                let norms = (l.q_norm.as_deref(), l.k_norm.as_deref());
                rotate_and_store(c, w, norms, store, bi, bi * seq + t, p, row);
            }
            attend_sequence(c, store, w, bi, seq, pos, global);
        }
        l.wo.matvec(&w.att, &mut w.o);
        residual(
            &mut w.x,
            &w.o,
            l.post_attn_norm.as_deref(),
            c.eps,
            &mut w.tmp,
        );
        Ok(())
    }
}

/// `q`, `k` and `v` of `n` normed rows (`w.h`), biases added.
fn project(
    qkv: &Qkv,
    bias: Option<&(Vec<f32>, Vec<f32>, Vec<f32>)>,
    c: &Config,
    w: &mut Work,
    n: usize,
) {
    let (qd, kvd) = (c.n_head * c.head_dim, c.n_kv_head * c.head_dim);
    match qkv {
        Qkv::Split(wq, wk, wv) => {
            matvec_many(&[wq, wk, wv], &w.h, &mut [&mut w.q, &mut w.k, &mut w.v]);
        }
        Qkv::Fused(m) => {
            w.fused.resize(n * (qd + 2 * kvd), 0.0);
            m.matvec(&w.h, &mut w.fused);
            super::split_rows(
                &w.fused,
                n,
                &mut [(&mut w.q, qd), (&mut w.k, kvd), (&mut w.v, kvd)],
            );
        }
    }
    if let Some((bq, bk, bv)) = bias {
        for (dst, bias) in [(&mut w.q, bq), (&mut w.k, bk), (&mut w.v, bv)] {
            for row in dst.chunks_exact_mut(bias.len()) {
                row.iter_mut().zip(bias).for_each(|(a, b)| *a += b);
            }
        }
    }
}

/// Row `row`'s query heads normed, rotated and (Gemma) scaled in place; its key heads normed,
/// rotated and stored with their values at position `p` of sequence `bi`.
#[allow(clippy::too_many_arguments)]
fn rotate_and_store(
    c: &Config,
    w: &mut Work,
    (q_norm, k_norm): (Option<&[f32]>, Option<&[f32]>),
    store: &mut KvStore,
    bi: usize,
    row: usize,
    p: usize,
    (cr, sr): RopeRow,
) {
    let a = &c.arch;
    let hd = c.head_dim;
    let (qd, kvd) = (c.n_head * hd, c.n_kv_head * hd);
    let qscale = 1.0 / (hd as f32).sqrt();
    for head in w.q[row * qd..(row + 1) * qd].chunks_exact_mut(hd) {
        if let Some(nw) = q_norm {
            w.tmp[..hd].copy_from_slice(head);
            rms_norm(&w.tmp[..hd], nw, c.eps, head);
        }
        rope(&mut head[..c.rope_dim], cr, sr, a.rope_interleaved);
        if a.scale_queries {
            head.iter_mut().for_each(|v| *v *= qscale);
        }
    }
    for kh in 0..c.n_kv_head {
        let r = row * kvd + kh * hd..row * kvd + (kh + 1) * hd;
        if let Some(nw) = k_norm {
            w.tmp[..hd].copy_from_slice(&w.k[r.clone()]);
            rms_norm(&w.tmp[..hd], nw, c.eps, &mut w.k[r.clone()]);
        }
        rope(
            &mut w.k[r.start..r.start + c.rope_dim],
            cr,
            sr,
            a.rope_interleaved,
        );
        store.put(bi, kh, p, &w.k[r.clone()], &w.v[r]);
    }
}

/// Every query head of sequence `bi`'s `seq` new rows over its cached positions, into `w.att`;
/// the heads split over the pool when the work is large enough.
fn attend_sequence(
    c: &Config,
    store: &KvStore,
    w: &mut Work,
    bi: usize,
    seq: usize,
    pos: usize,
    global: bool,
) {
    let hd = c.head_dim;
    let qd = c.n_head * hd;
    let rep = c.n_head / c.n_kv_head;
    let window = c.arch.swa.map(|(w, _, _)| w);
    let score_scale = if c.arch.scale_queries {
        1.0
    } else {
        1.0 / (hd as f32).sqrt()
    };
    let qs = &w.q;
    let out = SyncPtr(w.att.as_mut_ptr());
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
                // SAFETY: head hh of row `row` is written by this work item only; `att` holds
                // n x qd values.
                unsafe { std::ptr::copy_nonoverlapping(one.as_ptr(), out.0.add(r), hd) };
            }
        }
    };
    if seq * (pos + seq) * c.n_head >= PARALLEL_ATTENTION {
        candle_core::utils::barrier_pool().execute_chunked(c.n_head, heads);
    } else {
        heads(0..c.n_head);
    }
}
