//! One layer's feed-forward block: the gate and up projections (split or fused), the gate's
//! activation, the down projection and its residual add.

use super::arch::gate;
use super::{Decoder, Work, residual, split_rows};
use crate::engine::kernels::{QMatrix, matvec_many};
use crate::engine::models::ops::rms_norm_rows;

/// The gate and up projections: two matrices, or one of 2 x n_ff rows (the gate, then up).
pub(super) enum GateUp {
    Split(QMatrix, QMatrix),
    Fused(QMatrix),
}

impl Decoder {
    /// Layer `li`'s feed-forward block over `n` token rows, added to the residual stream `w.x`.
    pub(super) fn mlp(&mut self, li: usize, w: &mut Work, n: usize) {
        let c = &self.cfg;
        let l = &self.layers[li];
        rms_norm_rows(&w.x, &l.ffn_norm, c.eps, &mut w.h);
        match &l.gate_up {
            GateUp::Split(wg, wu) => matvec_many(&[wg, wu], &w.h, &mut [&mut w.g, &mut w.u]),
            GateUp::Fused(m) => {
                w.fused.resize(n * 2 * c.n_ff, 0.0);
                m.matvec(&w.h, &mut w.fused);
                split_rows(&w.fused, n, &mut [(&mut w.g, c.n_ff), (&mut w.u, c.n_ff)]);
            }
        }
        gate(c.arch.act, &mut w.g, &w.u);
        l.w_down.matvec(&w.g, &mut w.o);
        residual(
            &mut w.x,
            &w.o,
            l.post_ffw_norm.as_deref(),
            c.eps,
            &mut w.tmp,
        );
    }
}
