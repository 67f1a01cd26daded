//! Latency figures of a repetition from the engine's own timestamps (TTFT, TPOT, ITL, E2E,
//! prefill and decode tokens/s), as vLLM defines them.

use crate::engine::driver::Output;
use crate::record::{Quantiles, Record};
use crate::stats::quantile;

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Mean per request of a token count over the repetition's outputs.
pub fn mean_tokens(outputs: &[Output], count: fn(&Output) -> usize) -> f64 {
    let n = outputs.len().max(1) as f64;
    outputs.iter().map(count).sum::<usize>() as f64 / n
}

/// Fills `r`'s latency figures and its token counts (per-request means over the repetition's
/// outputs, so requests of different lengths all count) from the repetition's outputs.
pub fn fill(r: &mut Record, outputs: &[Output]) {
    r.prompt_tokens = mean_tokens(outputs, Output::prompt_tokens).round() as usize;
    r.generated_tokens = mean_tokens(outputs, Output::generated_tokens).round() as usize;
    let (mut ttft, mut e2e, mut tpot, mut itl, mut pre_tps, mut dec_tps) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in outputs {
        e2e.push(i.e2e_s());
        match i {
            Output::Generate(o) => {
                let t = (o.first_token_ns - o.start_ns) as f64 / 1e9;
                ttft.push(t);
                pre_tps.push(o.prompt_tokens as f64 / t);
                let decode_s = i.e2e_s() - t;
                if o.steps > 1 {
                    tpot.push(decode_s / (o.steps - 1) as f64);
                    let later: usize = o.generated.iter().map(|g| g.len().saturating_sub(1)).sum();
                    dec_tps.push(later as f64 / decode_s);
                }
                itl.extend(o.token_ns.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9));
            }
            Output::Embed(o) => {
                pre_tps.push(o.input_tokens as f64 / i.e2e_s());
            }
            Output::Item(o) => {
                pre_tps.push((o.tokens + o.generated) as f64 / i.e2e_s());
            }
            Output::Opaque { .. } => {}
        }
    }
    r.ttft_s = mean(&ttft);
    r.e2e_s = mean(&e2e);
    r.tpot_s = mean(&tpot);
    r.prefill_tokens_per_s = mean(&pre_tps);
    r.decode_tokens_per_s = mean(&dec_tps);
    if !ttft.is_empty() {
        r.latency = Some(crate::record::LatencyQuantiles {
            requests: ttft.len(),
            ttft_s: Quantiles::of(&ttft),
            tpot_s: Quantiles::of(&tpot),
            itl_s: Quantiles::of(&itl),
            e2e_s: Quantiles::of(&e2e),
        });
    }
    r.itls_ms = itl.iter().map(|s| (s * 1e3) as f32).collect();
    if !itl.is_empty() {
        r.itl_p50_s = Some(quantile(&itl, 0.5));
        r.itl_p90_s = Some(quantile(&itl, 0.9));
        r.itl_p99_s = Some(quantile(&itl, 0.99));
    }
}
