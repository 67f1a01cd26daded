//! The per-repetition record (one JSON line in records.jsonl, appended and fsynced as soon as it
//! is measured) and reading those lines back.

use crate::config::WorkloadKind;
use crate::engine::ModelInfo;
use crate::meter::Provenance;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Version of the record schema; bump when a field's meaning changes.
/// 2: prefill/decode energy may be null (engines without phases: commands); external-engine
/// fields (concurrency, steady state, whole run, token-count source) added.
/// 3: net figures subtract each domain's own idle power (and are null when the idle baseline
/// lacks a counted domain); `uncertainty_j` adds counter resolution and possible hidden wraps
/// (`uncertainty_parts` lists the parts); `partial_missing` marks a total that leaves out
/// domains it could not read (`--allow-partial`).
/// 4: evaluation workloads (`kind = "eval"`) and their `eval` figures (accuracy with its
/// interval, energy per item and per correct answer, every item with its energy).
pub const RECORD_SCHEMA_VERSION: u32 = 4;

/// Whether the repetition produced figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
}

/// Energy of one domain in one repetition (sums over the inner iterations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEnergy {
    pub source: String,
    pub name: String,
    pub prefill_j: Option<f64>,
    pub decode_j: Option<f64>,
    pub total_j: Option<f64>,
}

/// Energy figures of one repetition. Per-request and per-token figures are gross (`*_net_*`
/// subtract idle power × phase duration).
/// What an energy figure covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnergyScope {
    #[serde(rename = "cpu+gpu")]
    CpuGpu,
    #[serde(rename = "cpu")]
    Cpu,
    #[serde(rename = "gpu")]
    Gpu,
    /// psys, the whole platform (CPU, memory and more), where no package domain exists.
    #[serde(rename = "platform")]
    Platform,
    #[serde(rename = "platform+gpu")]
    PlatformGpu,
}

impl std::fmt::Display for EnergyScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnergyScope::CpuGpu => "cpu+gpu",
            EnergyScope::Cpu => "cpu",
            EnergyScope::Gpu => "gpu",
            EnergyScope::Platform => "platform",
            EnergyScope::PlatformGpu => "platform+gpu",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyFigures {
    pub provenance: Provenance,
    /// What the totals add up.
    pub scope: EnergyScope,
    /// How each source was read (`rapl: counter`, `estimate: estimate`, …).
    pub methods: Vec<String>,
    pub interval_ms: f64,
    /// Energy per request, by phase (prefill covers request start to first token); null when
    /// the engine shows no phases (commands).
    pub prefill_j: Option<f64>,
    pub decode_j: Option<f64>,
    pub request_j: f64,
    pub prefill_net_j: Option<f64>,
    pub decode_net_j: Option<f64>,
    pub request_net_j: Option<f64>,
    /// Per prompt token; per generated token; per request.
    pub j_per_prefill_token: Option<f64>,
    pub j_per_decode_token: Option<f64>,
    pub j_per_request: f64,
    /// Generated tokens per joule (input tokens for embedding workloads).
    pub tokens_per_j: Option<f64>,
    pub wh_per_1000_queries: f64,
    pub j_per_prefill_token_net: Option<f64>,
    pub j_per_decode_token_net: Option<f64>,
    pub avg_power_w: f64,
    pub peak_power_w: f64,
    /// Instrument uncertainty of `request_j` (one side) and its basis.
    pub uncertainty_j: f64,
    pub uncertainty_basis: String,
    /// What `uncertainty_j` is made of.
    #[serde(default)]
    pub uncertainty_parts: crate::meter::totals::UncertaintyParts,
    pub invalid_samples: u64,
    /// Domains a total needs but could not read, left out because partial totals were allowed
    /// (`--allow-partial`): the figures are then lower bounds, labelled PARTIAL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial_missing: Vec<String>,
    pub domains: Vec<DomainEnergy>,
}

/// One repetition of one cell (or a failed cell, with `repetition` null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub schema_version: u32,
    pub suite: String,
    pub cell: String,
    pub cell_index: usize,
    pub model: String,
    pub model_spec: String,
    pub profile: String,
    pub workload: String,
    pub kind: WorkloadKind,
    pub repetition: Option<u32>,
    pub status: Status,
    pub error: Option<String>,
    pub unix_time_s: f64,
    pub model_info: Option<ModelInfo>,
    pub synthetic: bool,
    pub batch: usize,
    /// Generations run back to back inside the measured window (figures are per generation).
    pub inner_iterations: usize,
    /// Tokens of one request (a batch of `batch` sequences), from the engine.
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub ttft_s: Option<f64>,
    pub tpot_s: Option<f64>,
    pub e2e_s: Option<f64>,
    pub itl_p50_s: Option<f64>,
    pub itl_p90_s: Option<f64>,
    pub itl_p99_s: Option<f64>,
    /// Every inter-token gap of the repetition, milliseconds (for ITL distributions).
    #[serde(default)]
    pub itls_ms: Vec<f32>,
    pub prefill_tokens_per_s: Option<f64>,
    pub decode_tokens_per_s: Option<f64>,
    pub energy: Option<EnergyFigures>,
    /// ML.ENERGY's names for the same figures.
    pub energy_per_token_joules: Option<f64>,
    pub energy_per_request_joules: Option<f64>,
    pub avg_power_watts: Option<f64>,
    /// With `[carbon]`: request energy × grid intensity, per 1,000 queries.
    pub gco2e_per_1000_queries: Option<f64>,
    pub warnings: Vec<String>,
    /// Parallel streams and requests of the repetition (external servers; candle: static batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<usize>,
    /// Where the token counts come from: `engine`, `server usage`, or an estimate and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_counts: Option<String>,
    /// Energy over the steady state: every stream running, until the first one finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady: Option<SteadyState>,
    /// Energy over the whole repetition: first request sent to last response ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole: Option<WholeRun>,
    /// Where it was measured (node, hardware fingerprint, shard); merged runs keep it per record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<crate::run_dir::HostTag>,
    /// In an A/B job (`joulebench ab`): which variant this repetition measured (`base` or
    /// `candidate`); its pair is `ab_pair` (the repetition number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab_variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab_pair: Option<u32>,
    /// Evaluation workloads: what the energy bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalFigures>,
    /// Percentiles over the repetition's requests (TTFT, TPOT and E2E one value per request;
    /// ITL every gap), as serving benchmarks report them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyQuantiles>,
    /// An open loop's schedule and what it achieved (server engines with `request_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival: Option<ArrivalFigures>,
    /// Dataset workloads: how the requests were drawn (conversations read, usable, left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<crate::engine::text::dataset::DatasetFigures>,
    /// Requests of different lengths (a dataset or `lengths`): [prompt, generated] tokens of
    /// each request of the repetition, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_tokens: Vec<[usize; 2]>,
    /// Server cells: averages of the server's /metrics over the steady window (an open loop:
    /// the whole repetition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<crate::engine::external::metrics::Telemetry>,
    /// Server cells: whether the repetition measured what it set out to (ML.ENERGY's checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<Stability>,
    /// A load curve's point (saturation, a fraction of it, or active idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::engine::load_curve::LoadFigures>,
}

/// Whether a served repetition is stable: a steady window at least `min_steady_s` long, an
/// achieved batch at least 0.85 of the target, and a positive J/token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    pub stable: bool,
    /// Why not, one line each.
    pub reasons: Vec<String>,
    /// Requests running at once, on average over the window.
    pub achieved_batch: Option<f64>,
    /// `server telemetry` (the server's running requests) or `requests in flight` (the client's
    /// view, which cannot see a server queueing requests it holds).
    pub achieved_batch_source: Option<String>,
    /// The concurrency asked for (closed loop; an open loop has none).
    pub target_batch: Option<usize>,
}

/// p50/p90/p95/p99 of one latency figure, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Quantiles {
    /// The quantiles of `v` (None when empty).
    pub fn of(v: &[f64]) -> Option<Quantiles> {
        use crate::stats::quantile;
        (!v.is_empty()).then(|| Quantiles {
            p50: quantile(v, 0.5),
            p90: quantile(v, 0.9),
            p95: quantile(v, 0.95),
            p99: quantile(v, 0.99),
        })
    }
}

/// Latency percentiles of a repetition (absent figures had no samples).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyQuantiles {
    /// Requests the figures come from.
    pub requests: usize,
    pub ttft_s: Option<Quantiles>,
    pub tpot_s: Option<Quantiles>,
    pub itl_s: Option<Quantiles>,
    pub e2e_s: Option<Quantiles>,
}

/// An open loop's settings next to what the repetition achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrivalFigures {
    #[serde(flatten)]
    pub settings: crate::engine::arrival::Arrivals,
    /// Requests completed per second over the repetition (first send to last end).
    pub achieved_requests_per_s: Option<f64>,
    /// Generated tokens per second over the repetition.
    pub achieved_output_tokens_per_s: Option<f64>,
    /// Requests sent more than 5 ms after they were due (every stream busy).
    pub late_requests: usize,
}

/// The steady-state window of a concurrent repetition (as ML.ENERGY defines it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyState {
    pub window_s: f64,
    pub energy_j: f64,
    /// Tokens generated inside the window (by their arrival times).
    pub generated_tokens: f64,
    pub j_per_token: Option<f64>,
    pub tokens_per_s: f64,
    pub avg_power_w: f64,
}

/// The whole repetition's energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WholeRun {
    pub duration_s: f64,
    pub energy_j: f64,
    pub requests: usize,
    pub generated_tokens: usize,
    pub j_per_generated_token: Option<f64>,
}

/// Appends one record as a line and fsyncs it before returning.
pub fn append(path: &Path, r: &Record) -> std::io::Result<()> {
    // Text from servers and commands may echo a key: nothing secret is stored.
    let mut line =
        crate::redact::text(&serde_json::to_string(r).map_err(std::io::Error::other)?).into_owned();
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(line.as_bytes())?;
    f.sync_data()
}

/// Reads every complete record; a torn or unreadable line (a kill mid-write, a byte cut inside
/// a multi-byte character) is skipped with a warning naming the file and line, not fatal.
pub fn read_all(path: &Path) -> std::io::Result<(Vec<Record>, Vec<String>)> {
    use std::io::BufRead;
    let file = match std::fs::File::open(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    // Line by line: the file is never held whole beside its records.
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut raw = Vec::new();
    for i in 0.. {
        raw.clear();
        let n = reader.read_until(b'\n', &mut raw).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })?;
        if n == 0 {
            break;
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
        }
        let Ok(line) = std::str::from_utf8(&raw) else {
            warnings.push(format!(
                "{}:{}: a line that is not UTF-8 (torn mid-character?) skipped",
                path.display(),
                i + 1
            ));
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(r) => out.push(r),
            Err(e) => warnings.push(format!(
                "{}:{}: unreadable record skipped ({e})",
                path.display(),
                i + 1
            )),
        }
    }
    Ok((out, warnings))
}

/// Refuses two records of one (cell, repetition): a run folder holds each repetition once, and
/// counting one twice would weigh it double.
pub fn check_unique(path: &Path, records: &[Record]) -> Result<(), String> {
    let mut seen: std::collections::HashMap<(&str, u32), usize> = std::collections::HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let Some(rep) = r.repetition else { continue };
        if let Some(first) = seen.insert((r.cell.as_str(), rep), i) {
            return Err(format!(
                "{}: cell {} repetition {rep} is recorded twice (records {} and {}): remove one \
                 of them (were two runs' records concatenated?) and run `joulebench report` again",
                path.display(),
                crate::names::terminal(&r.cell),
                first + 1,
                i + 1
            ));
        }
    }
    Ok(())
}

/// Cuts a torn last line (no newline at the end) so appends start on a fresh line.
pub fn repair(path: &Path) -> std::io::Result<bool> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(false);
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(keep as u64)?;
    f.sync_all()?;
    Ok(true)
}

/// One evaluation item of a repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalItem {
    pub doc_id: u64,
    /// Multiple choice: the right choice, the one picked, and every choice's log-likelihood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loglik: Vec<f64>,
    /// Generated answers: the final number read from the answer, and the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub correct: bool,
    /// Tokens the engine read for it (and generated).
    pub tokens: usize,
    #[serde(default)]
    pub generated: usize,
    /// Seconds from its start to the next item's (the last: to its end).
    pub s: f64,
    /// Its energy over that span (null: not measured).
    pub j: Option<f64>,
}

/// What an evaluation repetition's energy bought: accuracy and energy per item, from every
/// item's own span between meter reads (the spans add up to the repetition's window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalFigures {
    pub task: String,
    pub variant: String,
    /// `acc_raw`, `acc_per_char` or `exact_match`.
    pub metric: String,
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// 95% Wilson score interval.
    pub accuracy_ci: [f64; 2],
    /// Accuracy of a random pick (the mean of 1 / choices; null for generated answers).
    pub chance: Option<f64>,
    /// The energy the per-item figures divide: the items' spans, summed.
    pub total_j: Option<f64>,
    pub j_per_item: Option<f64>,
    pub j_per_correct: Option<f64>,
    pub correct_per_kj: Option<f64>,
    /// Intelligence per Watt's "accuracy per joule": accuracy / mean joules per query.
    pub accuracy_per_joule: Option<f64>,
    /// Measured or estimated, as the record's energy.
    pub provenance: Option<Provenance>,
    pub items_per_s: f64,
    /// Tokens read over all items, and how many of them were shared prefixes run once.
    pub tokens: usize,
    pub shared_tokens: usize,
    pub items: Vec<EvalItem>,
}
