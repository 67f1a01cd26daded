//! How each figure was obtained: one text for report.md and report.html, with the CPU estimate's
//! formula and inputs as this run recorded them.

use std::collections::BTreeMap;

/// meta.json's `sources`: each energy source's facts, by kind.
pub type Sources = BTreeMap<String, serde_json::Value>;

/// What each figure means and how it was measured, one statement a line.
pub const LINES: &[&str] = &[
    "mJ/token, the headline's figure, is the request's energy (prompt and generation, from the request's start to its last token) over the tokens it generated (input tokens for embeddings); with several concurrent streams it is the steady window's energy over the tokens generated in it, and under an arrival rate the whole run's.",
    "Energy per phase comes from reading every counter at the request start, at the first token and at the last token (device synchronized first); decode energy is never a whole run minus a separate prefill run.",
    "CPU energy is sum(package) + sum(dram) from RAPL (core and uncore are inside the package and never added; psys is reported on its own); GPU energy is NVML's energy counter where the GPU has one, else polled power integrated with the trapezoid rule. Without a sensor the CPU figure is the labelled ESTIMATE (its formula follows).",
    "prefill mJ/token = prefill energy / prompt tokens; decode mJ/token = decode energy / generated tokens; tokens/J counts generated tokens (input tokens for embeddings). Token counts come from the engine, or from a server's usage.",
    "Net figures subtract idle power x phase duration, clamped at zero and flagged when negative.",
    "TTFT = first token - request start; TPOT = (E2E - TTFT) / (output tokens - 1); ITL = the gaps between tokens; E2E = last token - request start. Latency is measured even where energy is estimated.",
    "Short generations are repeated inside one measured window (inner iterations) and divided, so the window spans several counter updates.",
    "Every figure is the median over repetitions; the interval beside it is a 95% bootstrap interval of that median (the order-statistic interval above 1,000 repetitions).",
];

/// The CPU estimate's formula with this run's numbers, when the run used the estimate.
pub fn estimate_formula(sources: Option<&Sources>) -> Option<String> {
    sources?
        .values()
        .find_map(|v| v.get("formula").and_then(|f| f.as_str()))
        .map(|f| format!("ESTIMATED CPU energy: {f}."))
}

/// Every line of the method, the estimate's formula last where there is one.
pub fn lines(sources: Option<&Sources>) -> Vec<String> {
    LINES
        .iter()
        .map(|l| l.to_string())
        .chain(estimate_formula(sources))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_formula_comes_from_the_run() {
        let mut m = Sources::new();
        assert_eq!(lines(Some(&m)).len(), LINES.len());
        assert_eq!(lines(None).len(), LINES.len());
        m.insert(
            "estimate".into(),
            serde_json::json!({"formula": "E = cpu_time_s x 3.125 W + wall_s x 5 W", "tdp_w": 100}),
        );
        let all = lines(Some(&m));
        assert_eq!(
            all.last().unwrap(),
            "ESTIMATED CPU energy: E = cpu_time_s x 3.125 W + wall_s x 5 W."
        );
    }
}
