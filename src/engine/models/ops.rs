//! The decode step in plain Rust on flat buffers: one new token per sequence needs a few
//! thousand floats per layer, where a tensor library's per-op dispatch and allocation cost as
//! much as the arithmetic. The key/value cache is sized once per request and written by prefill
//! too; the math mirrors candle's ops (rms_norm, rotary tables, softmax) so both paths agree.

/// Keys and values of every sequence, head and position of one layer, sized to the request.
pub struct KvStore {
    kv_heads: usize,
    hd: usize,
    cap: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl KvStore {
    /// Room for `batch` sequences of `cap` positions.
    pub fn new(batch: usize, kv_heads: usize, hd: usize, cap: usize) -> KvStore {
        let n = batch * kv_heads * cap * hd;
        KvStore {
            kv_heads,
            hd,
            cap,
            k: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    fn at(&self, b: usize, h: usize, pos: usize) -> usize {
        ((b * self.kv_heads + h) * self.cap + pos) * self.hd
    }

    /// Stores head `h`'s key and value of sequence `b` at `pos` (false: past the capacity).
    pub fn put(&mut self, b: usize, h: usize, pos: usize, k: &[f32], v: &[f32]) -> bool {
        if pos >= self.cap {
            return false;
        }
        let i = self.at(b, h, pos);
        self.k[i..i + self.hd].copy_from_slice(k);
        self.v[i..i + self.hd].copy_from_slice(v);
        true
    }

    /// Positions `0..len` of head `h` of sequence `b`: keys, values.
    pub fn head(&self, b: usize, h: usize, len: usize) -> (&[f32], &[f32]) {
        let i = self.at(b, h, 0);
        (&self.k[i..i + len * self.hd], &self.v[i..i + len * self.hd])
    }

    /// Positions this store holds.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// `n` sequences, each a copy of sequence 0's first `len` positions (the shared prefix of
    /// an item's choices), with the same room.
    pub fn forked(&self, n: usize, len: usize) -> KvStore {
        let mut out = KvStore::new(n, self.kv_heads, self.hd, self.cap);
        let len = len.min(self.cap);
        for b in 0..n {
            for h in 0..self.kv_heads {
                let (src, dst) = (self.at(0, h, 0), out.at(b, h, 0));
                let m = len * self.hd;
                out.k[dst..dst + m].copy_from_slice(&self.k[src..src + m]);
                out.v[dst..dst + m].copy_from_slice(&self.v[src..src + m]);
            }
        }
        out
    }
}

/// `out = x / sqrt(mean(x²) + eps) * w`, as candle's rms_norm computes it.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum2: f32 = x.iter().map(|v| v * v).sum();
    let m = (sum2 / x.len() as f32 + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v / m * g;
    }
}

/// `rms_norm` of every row of `x` (rows as long as `w`) into the same row of `out`.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        rms_norm(xr, w, eps, or);
    }
}

/// Rotates one head in place with the position's `cos`/`sin` row (`rope_dim / 2` values):
/// adjacent pairs (`interleaved`, GGUF) or the two halves (Hugging Face checkpoints).
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = cos.len();
    for i in 0..half {
        let (a, b) = if interleaved {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + x.len() / 2)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * cos[i] - x1 * sin[i];
        x[b] = x0 * sin[i] + x1 * cos[i];
    }
}

/// Rotary cos/sin tables (`len` x `rope_dim / 2`) for one base.
pub fn rope_tables(
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

/// One query head over `len` cached positions: softmax(q·k / sqrt(hd)) · v into `out`;
/// `scores` is scratch of at least `len`.
pub fn attend(q: &[f32], k: &[f32], v: &[f32], len: usize, out: &mut [f32], scores: &mut [f32]) {
    let scale = 1.0 / (q.len() as f32).sqrt();
    attend_scaled(q, k, v, len, scale, out, scores);
}

/// `attend` with the score scale given (models that scale queries themselves pass 1).
pub fn attend_scaled(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    len: usize,
    scale: f32,
    out: &mut [f32],
    scores: &mut [f32],
) {
    let hd = q.len();
    let mut max = f32::NEG_INFINITY;
    for (t, s) in scores[..len].iter_mut().enumerate() {
        *s = dot(q, &k[t * hd..(t + 1) * hd]) * scale;
        max = max.max(*s);
    }
    scores[..len].iter_mut().for_each(|s| *s -= max);
    crate::engine::kernels::exp_in_place(&mut scores[..len]);
    let sum: f32 = scores[..len].iter().sum();
    out.fill(0.0);
    for (t, s) in scores[..len].iter().enumerate() {
        crate::engine::kernels::axpy(out, s / sum, &v[t * hd..(t + 1) * hd]);
    }
}

pub use crate::engine::kernels::dot;

/// `silu(g) * u` in place of `g`.
pub fn swiglu(g: &mut [f32], u: &[f32]) {
    crate::engine::kernels::silu_mul(g, u);
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    fn vals(n: usize, k: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + 1.0) * k).sin()).collect()
    }

    #[test]
    fn rms_norm_rope_softmax_and_attention_match_candle() {
        let (x, w) = (vals(64, 0.37), vals(64, 0.11));
        let mut ours = vec![0f32; 64];
        rms_norm(&x, &w, 1e-5, &mut ours);
        let theirs: Vec<f32> = candle_nn::ops::rms_norm(&t(&x, &[1, 64]), &t(&w, &[64]), 1e-5)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        close(&ours, &theirs);
        for interleaved in [true, false] {
            let (cos, sin) = (vals(8, 0.2), vals(8, 0.3));
            let mut ours = vals(16, 0.5);
            rope(&mut ours, &cos, &sin, interleaved);
            let (xt, ct, st) = (
                t(&vals(16, 0.5), &[1, 1, 1, 16]),
                t(&cos, &[1, 8]),
                t(&sin, &[1, 8]),
            );
            let theirs = if interleaved {
                candle_nn::rotary_emb::rope_i(&xt, &ct, &st)
            } else {
                candle_nn::rotary_emb::rope(&xt, &ct, &st)
            };
            close(
                &ours,
                &theirs.unwrap().flatten_all().unwrap().to_vec1().unwrap(),
            );
        }
        let (hd, len) = (16, 5);
        let (q, k, v) = (vals(hd, 0.7), vals(hd * len, 0.13), vals(hd * len, 0.29));
        let mut ours = vec![0f32; hd];
        attend(&q, &k, &v, len, &mut ours, &mut [0f32; 8]);
        let (qt, kt, vt) = (t(&q, &[1, hd]), t(&k, &[len, hd]), t(&v, &[len, hd]));
        let att = (qt.matmul(&kt.t().unwrap()).unwrap() / (hd as f64).sqrt()).unwrap();
        let att = candle_nn::ops::softmax_last_dim(&att).unwrap();
        let theirs: Vec<f32> = att
            .matmul(&vt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        close(&ours, &theirs);
    }

    #[test]
    fn a_forked_store_copies_the_prefix_into_every_sequence() {
        let mut s = KvStore::new(1, 2, 2, 4);
        for p in 0..3 {
            for h in 0..2 {
                let v = (10 * p + h) as f32;
                s.put(0, h, p, &[v, v + 0.5], &[-v, -v - 0.5]);
            }
        }
        let f = s.forked(3, 2);
        for b in 0..3 {
            for h in 0..2 {
                let (k, v) = f.head(b, h, 2);
                assert_eq!(
                    k,
                    &[h as f32, h as f32 + 0.5, 10.0 + h as f32, 10.5 + h as f32]
                );
                assert_eq!(v[0], -(h as f32));
            }
        }
        // Position 2 was past the prefix: not copied.
        assert_eq!(f.head(1, 0, 3).0[4], 0.0);
    }

    #[test]
    fn the_store_refuses_positions_past_its_capacity() {
        let mut s = KvStore::new(2, 1, 4, 3);
        assert!(s.put(1, 0, 2, &[1.0; 4], &[2.0; 4]));
        assert!(!s.put(1, 0, 3, &[1.0; 4], &[2.0; 4]));
        let (k, v) = s.head(1, 0, 3);
        assert_eq!(&k[8..], &[1.0; 4]);
        assert_eq!(&v[8..], &[2.0; 4]);
        assert_eq!(s.head(0, 0, 3).0, &[0.0; 12]);
    }

    #[test]
    fn rotary_factors_and_linear_scaling_slow_the_frequencies() {
        let (c0, s0) = rope_tables(10_000.0, 4, None, 1.0, 3);
        let (c1, s1) = rope_tables(10_000.0, 4, Some(&[2.0, 1.0]), 1.0, 3);
        let (c2, _) = rope_tables(10_000.0, 4, None, 2.0, 5);
        // position 2, frequency 0: angle 2 unscaled, 1 with factor 2 or linear 2 at position 2.
        assert!((c0[4] - 2f32.cos()).abs() < 1e-6 && (s0[4] - 2f32.sin()).abs() < 1e-6);
        assert!((c1[4] - 1f32.cos()).abs() < 1e-6 && (s1[4] - 1f32.sin()).abs() < 1e-6);
        assert!((c2[4] - 1f32.cos()).abs() < 1e-6);
        // frequency 1 untouched by a factor of 1.
        assert_eq!(c0[5], c1[5]);
    }
}
