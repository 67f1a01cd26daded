//! Synthetic llama models from seeded random weights: no files needed, labelled synthetic in
//! every output. `llama-tiny` (~4M parameters) for tests; `llama-135m` has SmolLM2's shape and
//! runs the same kernels as a real Q4_1 file (joulebench's Q4_1 kernels in both phases).

use crate::engine::EngineError;
use crate::engine::models::llama::{
    Embedding, LayerWeights, Linear, Llama, LlamaConfig, Matmul, MatmulPlan,
};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Synthetic model names (after `synthetic:`).
pub const SYNTHETIC: &[&str] = &["llama-tiny", "llama-135m"];

/// The shape and decode path of a synthetic model.
pub fn config(name: &str) -> Option<(LlamaConfig, bool)> {
    match name {
        "llama-tiny" => Some((
            LlamaConfig {
                n_layer: 4,
                n_embd: 256,
                n_ff: 688,
                n_head: 4,
                n_kv_head: 2,
                rope_dim: 64,
                rope_theta: 10_000.0,
                rms_eps: 1e-5,
                vocab: 4096,
                ctx_len: 2048,
                rope_interleaved: true,
            },
            false,
        )),
        "llama-135m" => Some((
            LlamaConfig {
                n_layer: 30,
                n_embd: 576,
                n_ff: 1536,
                n_head: 9,
                n_kv_head: 3,
                rope_dim: 64,
                rope_theta: 100_000.0,
                rms_eps: 1e-5,
                vocab: 49152,
                ctx_len: 8192,
                rope_interleaved: true,
            },
            true,
        )),
        _ => None,
    }
}

fn random(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Builds a synthetic model with weights from `seed` (never all zeros). `llama-tiny` stays
/// dense; `llama-135m` follows `plan` like a real quantized model.
pub fn build(
    name: &str,
    seed: u64,
    plan: MatmulPlan,
    device: &Device,
) -> Result<(Llama, u64), EngineError> {
    let (cfg, q41) = config(name).ok_or_else(|| EngineError::UnknownModel {
        id: format!("synthetic:{name}"),
        known: SYNTHETIC
            .iter()
            .map(|s| format!("synthetic:{s}"))
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let plan = if q41 {
        plan
    } else {
        MatmulPlan {
            prefill: Matmul::Dense,
            decode: Matmul::Dense,
        }
    };
    let mut rng = StdRng::seed_from_u64(seed);
    // Uniform in ±s has standard deviation s/√3; aim for ~0.02 like real initializations.
    let s = 0.035f32;
    let hd = cfg.head_dim();
    let lin = |rng: &mut StdRng, out: usize, inp: usize| -> Result<Linear, EngineError> {
        let w = Tensor::from_vec(random(rng, out * inp, s), (out, inp), device)?;
        Linear::from_dense(w, plan)
    };
    let ones = Tensor::ones(cfg.n_embd, candle_core::DType::F32, device)?;
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for _ in 0..cfg.n_layer {
        layers.push(LayerWeights {
            attn_norm: ones.clone(),
            wq: lin(&mut rng, cfg.n_head * hd, cfg.n_embd)?,
            wk: lin(&mut rng, cfg.n_kv_head * hd, cfg.n_embd)?,
            wv: lin(&mut rng, cfg.n_kv_head * hd, cfg.n_embd)?,
            wo: lin(&mut rng, cfg.n_embd, cfg.n_head * hd)?,
            ffn_norm: ones.clone(),
            w_gate: lin(&mut rng, cfg.n_ff, cfg.n_embd)?,
            w_up: lin(&mut rng, cfg.n_ff, cfg.n_embd)?,
            w_down: lin(&mut rng, cfg.n_embd, cfg.n_ff)?,
        });
    }
    let embed = Tensor::from_vec(
        random(&mut rng, cfg.vocab * cfg.n_embd, 1.0),
        (cfg.vocab, cfg.n_embd),
        device,
    )?;
    // Tied output, as SmolLM2 does; Q8_0 like SmolLM2's GGUF when the model is quantized.
    let output = if q41 {
        let q = candle_core::quantized::QTensor::quantize(
            &embed,
            candle_core::quantized::GgmlDType::Q8_0,
        )?;
        Linear::from_qtensor(q, plan)?
    } else {
        Linear::from_dense(embed.clone(), plan)?
    };
    let params = cfg.parameters(true);
    Ok((
        Llama::new(cfg, Embedding::Dense(embed), layers, ones, output, device)?,
        params,
    ))
}
