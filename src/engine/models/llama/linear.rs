//! Linear layers of the candle-based llama path: which representation each phase multiplies
//! with (a dense f32 copy, joulebench's kernels on the file's blocks, or candle's quantized
//! matmul), and where token embeddings are read from.

use crate::engine::EngineError;
use crate::engine::kernels::{QFormat, QMatrix};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

/// How linear layers are computed in each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matmul {
    /// Dequantized f32 weights through candle's gemm (a second, 4-byte-per-weight copy).
    Dense,
    /// joulebench's kernels on the file's blocks (`matvec`, `gemm`), else candle's quantized
    /// matmul for a format they do not cover.
    Simd,
    /// candle's own quantized matmul.
    Candle,
}

/// The matmul strategy per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MatmulPlan {
    pub prefill: Matmul,
    pub decode: Matmul,
}

impl Default for MatmulPlan {
    /// Both phases on the file's blocks: one copy of the weights, in the file's format.
    fn default() -> Self {
        MatmulPlan {
            prefill: Matmul::Simd,
            decode: Matmul::Simd,
        }
    }
}

/// A linear layer holding the representations its plan uses.
pub struct Linear {
    dense: Option<Tensor>,
    /// The weights as in the file, for joulebench's kernels.
    qm: Option<QMatrix>,
    qmm: Option<QMatMul>,
    plan: MatmulPlan,
    out_dim: usize,
    in_dim: usize,
}

impl Linear {
    /// From a GGUF tensor, keeping the representations `plan` needs.
    pub fn from_qtensor(qt: QTensor, plan: MatmulPlan) -> Result<Linear, EngineError> {
        let (out_dim, in_dim) = qt.shape().dims2()?;
        let dev = qt.device();
        let phases = [plan.prefill, plan.decode];
        let mut l = Linear {
            dense: None,
            qm: None,
            qmm: None,
            plan,
            out_dim,
            in_dim,
        };
        if phases.contains(&Matmul::Dense) {
            l.dense = Some(qt.dequantize(&dev)?.to_dtype(DType::F32)?);
        }
        let simd = phases.contains(&Matmul::Simd);
        if simd
            && dev.is_cpu()
            && let Some(f) = QFormat::of(qt.dtype())
        {
            // A row length the kernels cannot block (not a multiple of 32) falls back below.
            l.qm = QMatrix::from_bytes(f, out_dim, in_dim, qt.data()?.to_vec()).ok();
        }
        if phases.contains(&Matmul::Candle) || (simd && l.qm.is_none()) {
            l.qmm = Some(QMatMul::from_qtensor(qt)?);
        }
        Ok(l)
    }

    /// From dense f32 weights (out × in); a Q4_1 copy replaces them when no phase is dense.
    pub fn from_dense(w: Tensor, plan: MatmulPlan) -> Result<Linear, EngineError> {
        let (out_dim, in_dim) = w.dims2()?;
        let phases = [plan.prefill, plan.decode];
        let quantized = phases.iter().any(|m| *m != Matmul::Dense)
            && in_dim % crate::engine::kernels::quant::QK == 0
            && w.device().is_cpu();
        let qm = if quantized {
            let v: Vec<f32> = w.flatten_all()?.to_vec1()?;
            let bytes = crate::engine::kernels::quant::quantize_q4_1(&v);
            QMatrix::from_bytes(QFormat::Q4_1, out_dim, in_dim, bytes).ok()
        } else {
            None
        };
        let dense = (qm.is_none() || phases.contains(&Matmul::Dense)).then_some(w);
        Ok(Linear {
            dense,
            qm,
            qmm: None,
            plan,
            out_dim,
            in_dim,
        })
    }

    pub(super) fn simd(&self, q: &QMatrix, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let mut y = vec![0f32; xs.len() / self.in_dim * self.out_dim];
        q.matvec(&xs, &mut y);
        if let Some(last) = dims.last_mut() {
            *last = self.out_dim;
        }
        Tensor::from_vec(y, dims, x.device())
    }

    /// The representation a phase uses: the planned one, else whatever the layer has.
    pub(super) fn pick(&self, prefill: bool) -> Matmul {
        let want = if prefill {
            self.plan.prefill
        } else {
            self.plan.decode
        };
        let order: [Matmul; 3] = match want {
            Matmul::Dense => [Matmul::Dense, Matmul::Simd, Matmul::Candle],
            Matmul::Simd => [Matmul::Simd, Matmul::Candle, Matmul::Dense],
            Matmul::Candle => [Matmul::Candle, Matmul::Simd, Matmul::Dense],
        };
        for m in order {
            let has = match m {
                Matmul::Simd => self.qm.is_some(),
                Matmul::Candle => self.qmm.is_some(),
                Matmul::Dense => self.dense.is_some(),
            };
            if has {
                return m;
            }
        }
        Matmul::Dense
    }

    pub(super) fn forward(&self, x: &Tensor, prefill: bool) -> candle_core::Result<Tensor> {
        match (self.pick(prefill), &self.qm, &self.qmm, &self.dense) {
            (Matmul::Simd, Some(q), _, _) => self.simd(q, x),
            (Matmul::Candle, _, Some(q), _) => q.forward(x),
            (_, _, _, Some(w)) => x.broadcast_matmul(&w.t()?),
            _ => candle_core::bail!("linear layer has no weights"),
        }
    }

    /// The kernel used in a phase, for the record (prefill: a prompt of 4 or more tokens).
    pub(super) fn path(&self, prefill: bool) -> String {
        let tokens = if prefill {
            crate::engine::kernels::matvec::GEMM_MIN_TOKENS
        } else {
            1
        };
        match (self.pick(prefill), &self.qm) {
            (Matmul::Simd, Some(q)) => q.kernel_name(tokens),
            (Matmul::Candle | Matmul::Simd, _) if self.qmm.is_some() => {
                "candle quantized matmul".into()
            }
            (_, _) if self.dense.is_some() => "dense f32 (candle gemm)".into(),
            _ => "none".into(),
        }
    }

    /// Rows `ids` of the weight matrix as a (ids, in_dim) tensor: embedding lookups on a tied
    /// output matrix, read from whichever copy the layer keeps (None: only candle's copy).
    pub(super) fn rows(&self, ids: &[u32], dev: &Device) -> Option<candle_core::Result<Tensor>> {
        if let Some(q) = &self.qm {
            return Some(lookup(q, ids, dev));
        }
        let d = self.dense.as_ref()?;
        Some(Tensor::from_vec(ids.to_vec(), ids.len(), dev).and_then(|t| d.index_select(&t, 0)))
    }

    /// Whether decode runs on joulebench's kernels (the plain decode path needs every matrix to).
    pub(super) fn decodes_on_kernels(&self) -> bool {
        self.pick(false) == Matmul::Simd && self.qm.is_some()
    }

    /// Whether `rows` can read this layer's weights.
    pub fn has_rows(&self) -> bool {
        self.qm.is_some() || self.dense.is_some()
    }
}

/// The kernel matrix of a layer the plain decode path runs on.
pub(super) fn qm(l: &Linear) -> candle_core::Result<&QMatrix> {
    l.qm.as_ref()
        .ok_or_else(|| candle_core::Error::Msg("a matrix without joulebench's kernels".into()))
}

/// Token rows of a quantized embedding matrix, dequantized; an id past the vocabulary is an
/// error, not a panic.
pub(super) fn lookup(q: &QMatrix, ids: &[u32], dev: &Device) -> candle_core::Result<Tensor> {
    let mut v = Vec::with_capacity(ids.len() * q.cols);
    for &id in ids {
        if id as usize >= q.rows {
            candle_core::bail!("token id {id} is outside the vocabulary of {}", q.rows);
        }
        q.dequantize_row(id as usize, &mut v);
    }
    Tensor::from_vec(v, (ids.len(), q.cols), dev)
}

/// Where token embeddings come from.
pub enum Embedding {
    /// An f32 matrix (safetensors models, and GGUF formats the kernels do not read).
    Dense(Tensor),
    /// Rows read from the file's blocks.
    Rows(QMatrix),
    /// The output matrix's rows (tied embeddings: one copy serves both).
    Tied,
}
