//! How long a plan will take, for `run --dry-run`: from earlier runs' records of the same cells
//! when a run folder is given (the time they took), else from each model's size and the
//! workload's tokens (weights streamed once per decode step, two operations per parameter and
//! prompt token), with the load and start-up cost of its engine.

use crate::config::Suite;
use crate::engine::spec::{EngineSpec, Weights};
use crate::plan::{Cell, Plan};
use crate::record::Record;
use std::collections::BTreeMap;
use std::path::Path;

/// Bytes per second one thread streams weights at during decode (a desktop or server core).
const STREAM_BPS: f64 = 6.0e9;
/// Multiply-adds per second per thread during prefill (two operations per parameter).
const FLOPS_PER_THREAD: f64 = 3.0e10;
/// Bytes per second a model file loads at (page cache or a local disk).
const LOAD_BPS: f64 = 1.5e9;
/// Starting a cell's child process and its meters.
const CELL_START_S: f64 = 0.05;
/// Starting a managed server and waiting for it to answer.
const SERVER_START_S: f64 = 5.0;

/// Tokens an evaluation item reads, shared prefix once (a multiple-choice item of the OLMES
/// tasks: a context of a few dozen tokens and two to five continuations).
const EVAL_MC_TOKENS: usize = 60;
/// A GSM8K item: the eight worked examples and the question, then the answer generated.
const EVAL_GEN_TOKENS: (usize, usize) = (900, 128);
/// Items assumed when an evaluation workload scores every item of its task.
const EVAL_ALL_ITEMS: usize = 2000;

/// What the plan knows of a model's size.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelSize {
    pub bytes: Option<u64>,
    pub parameters: Option<u64>,
}

/// "135M", "1.7B", "270m" -> parameters.
fn parse_parameters(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1e3),
        'm' | 'M' => (&s[..s.len() - 1], 1e6),
        'b' | 'B' | 'g' | 'G' => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some((v * mul) as u64)
}

/// The size of a model entry's weights: synthetic shapes and registered ids from what
/// joulebench knows, files from `file_size` (the command layer reads the disk, not the plan).
pub fn model_size(engine: &EngineSpec, file_size: &dyn Fn(&Path) -> Option<u64>) -> ModelSize {
    let Some(w) = engine.weights() else {
        return ModelSize::default();
    };
    match w {
        Weights::Id(id) => {
            if let Some(name) = id.strip_prefix("synthetic:") {
                let Some((c, quantized)) = crate::engine::models::synthetic::config(name) else {
                    return ModelSize::default();
                };
                let kv = c.n_embd * c.n_kv_head / c.n_head.max(1);
                let per_layer = 2 * c.n_embd * c.n_embd + 2 * c.n_embd * kv + 3 * c.n_embd * c.n_ff;
                let p = (c.n_layer * per_layer + c.vocab * c.n_embd) as u64;
                // Quantized synthetic models are Q4_1 (5 bits a weight); the tiny one is f32.
                let bytes = if quantized { p * 5 / 8 } else { p * 4 };
                return ModelSize {
                    bytes: Some(bytes),
                    parameters: Some(p),
                };
            }
            match crate::store::registry::lookup(id) {
                Some(r) => ModelSize {
                    bytes: Some(r.files.iter().map(|f| f.size).sum()),
                    parameters: parse_parameters(r.parameters),
                },
                None => ModelSize::default(),
            }
        }
        Weights::Path(p) => ModelSize {
            bytes: file_size(p),
            parameters: None,
        },
    }
}

/// Seconds of one generation of `w` on `threads` threads for a model of `size`.
fn generation_s(size: ModelSize, threads: usize, prompt: usize, new: usize, batch: usize) -> f64 {
    let t = threads.max(1) as f64;
    // Memory-bound decode gains less than compute-bound prefill from more threads.
    let stream = STREAM_BPS * (1.0 + 0.6 * (t - 1.0).min(3.0));
    let params = size
        .parameters
        .or(size.bytes.map(|b| b * 2))
        .map(|p| p as f64);
    match (size.bytes, params) {
        (Some(bytes), Some(p)) => {
            let prefill = (prompt * batch) as f64 * 2.0 * p / (FLOPS_PER_THREAD * t);
            let step = bytes as f64 / stream
                + (batch.max(1) - 1) as f64 * 2.0 * p / (FLOPS_PER_THREAD * t);
            prefill + new as f64 * step
        }
        // Nothing known of the model: a small model's speed on a few cores.
        _ => (prompt * batch) as f64 / 300.0 + (new * batch) as f64 / 80.0,
    }
}

/// Where the estimate of each cell came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    pub seconds: f64,
    /// Cells timed from earlier records.
    pub from_records: usize,
    /// Cells estimated from model size and tokens.
    pub from_size: usize,
    /// Cells with every repetition already recorded in the resumed folder (0 s).
    pub done: usize,
}

/// Timings of cells in earlier run folders.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Per cell id: seconds between its repetitions (median) and from the previous cell's last
    /// repetition to its first (start, load, warmups and one repetition).
    cells: BTreeMap<String, (Option<f64>, Option<f64>)>,
    /// Per cell id in a resumed folder: repetitions already recorded.
    recorded: BTreeMap<String, usize>,
    /// Folders whose records could not be read, with why (their cells fall back to size).
    pub unreadable: Vec<String>,
}

impl History {
    /// Reads the records of `dirs` (unreadable folders are skipped: an estimate never fails a
    /// dry run); `resumed` is the folder a resume continues, whose finished cells cost nothing.
    pub fn read(dirs: &[&Path], resumed: Option<&Path>) -> History {
        let mut h = History::default();
        for d in dirs.iter().copied().chain(resumed) {
            let path = d.join("records.jsonl");
            match crate::record::read_all(&path) {
                Ok((records, _)) if !records.is_empty() => h.learn(&records),
                Ok(_) => h
                    .unreadable
                    .push(format!("{} (no records)", path.display())),
                Err(e) => h.unreadable.push(format!("{}: {e}", path.display())),
            }
        }
        if let Some(d) = resumed
            && let Ok((records, _)) = crate::record::read_all(&d.join("records.jsonl"))
        {
            for r in records.iter().filter(|r| r.repetition.is_some()) {
                *h.recorded.entry(r.cell.clone()).or_default() += 1;
            }
        }
        h
    }

    /// Learns per-cell timings from one run's records; the shards of a merged run are read
    /// apart (each ran its cells one after another).
    pub fn learn(&mut self, records: &[Record]) {
        let mut runs: BTreeMap<Option<&str>, Vec<&Record>> = BTreeMap::new();
        for r in records.iter().filter(|r| r.repetition.is_some()) {
            let shard = r.host.as_ref().and_then(|h| h.shard.as_deref());
            runs.entry(shard).or_default().push(r);
        }
        for mut rs in runs.into_values() {
            rs.sort_by(|a, b| a.unix_time_s.total_cmp(&b.unix_time_s));
            let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            let mut order: Vec<&str> = Vec::new();
            for r in &rs {
                if !by.contains_key(r.cell.as_str()) {
                    order.push(&r.cell);
                }
                by.entry(&r.cell).or_default().push(r.unix_time_s);
            }
            let mut prev_end: Option<f64> = None;
            for id in order {
                let t = &by[id];
                let diffs: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
                let rep = (!diffs.is_empty()).then(|| crate::stats::median(&diffs));
                // From the previous cell's last record to this one's first: start, load,
                // warmups and the first repetition.
                let first = prev_end.map(|p| (t[0] - p).max(0.0));
                self.cells.insert(id.to_string(), (rep, first));
                prev_end = t.last().copied();
            }
        }
    }

    /// Seconds for `cell`'s remaining `repetitions` by earlier records, if any recorded it.
    fn cell_seconds(&self, cell: &Cell, repetitions: usize) -> Option<f64> {
        let (rep, first) = *self.cells.get(&cell.id)?;
        let first = first.or_else(|| {
            let v: Vec<f64> = self.cells.values().filter_map(|c| c.1).collect();
            (!v.is_empty()).then(|| crate::stats::median(&v))
        });
        match (first, rep) {
            (Some(f), rep) => Some(f + repetitions.saturating_sub(1) as f64 * rep.unwrap_or(f)),
            (None, Some(r)) => Some(repetitions as f64 * r),
            (None, None) => None,
        }
    }
}

/// The estimate of `p` (suite `s`), each cell from `history` where it has the cell, else from
/// its model's size.
pub fn estimate(
    s: &Suite,
    p: &Plan,
    history: &History,
    file_size: &dyn Fn(&Path) -> Option<u64>,
) -> Estimate {
    let mut e = Estimate {
        seconds: s.idle_seconds,
        ..Estimate::default()
    };
    for c in &p.cells {
        let done = history.recorded.get(&c.id).copied().unwrap_or(0);
        let left = (s.repetitions as usize).saturating_sub(done);
        if left == 0 {
            e.done += 1;
            continue;
        }
        if let Some(t) = history.cell_seconds(c, left) {
            e.seconds += t + s.cooldown_seconds;
            e.from_records += 1;
            continue;
        }
        e.from_size += 1;
        let w = &c.workload;
        let size = model_size(&c.model.engine, file_size);
        let threads = c.profile.threads.unwrap_or(1) as usize;
        let prompt = if w.dataset.is_some() {
            256
        } else {
            w.prompt_tokens.max(1)
        };
        let (one, n) = if let Some(t) = w.task_ref() {
            // An evaluation pass: every item one request of a typical length.
            let (prompt, new) = if t.task == crate::engine::text::eval::GSM8K {
                EVAL_GEN_TOKENS
            } else {
                (EVAL_MC_TOKENS, 0)
            };
            let items = w.items.unwrap_or(EVAL_ALL_ITEMS) as f64;
            (generation_s(size, threads, prompt, new, 1), items)
        } else {
            let n = if w.varied() || w.requests.is_some() {
                w.request_count() as f64
            } else {
                1.0
            };
            (
                generation_s(size, threads, prompt, w.new_tokens, w.batch),
                n,
            )
        };
        // Parallel streams share the machine: a batching server gains a little per stream.
        let streams = w.concurrency.max(1) as f64;
        let mut rep = one * n / streams * (1.0 + 0.25 * (streams - 1.0));
        if let Some(a) = w.arrivals() {
            rep = rep.max(w.request_count() as f64 / a.request_rate_per_s);
        }
        let rep = rep.max(s.min_window_ms / 1e3);
        let external = !matches!(c.model.engine, EngineSpec::Candle(_));
        let start = if external {
            SERVER_START_S
        } else {
            CELL_START_S
        } + size.bytes.map_or(0.5, |b| b as f64 / LOAD_BPS);
        // An evaluation's warmup scores a few items, not a pass.
        let warmup = if w.task_ref().is_some() {
            let items = w.items.unwrap_or(EVAL_ALL_ITEMS).max(1) as f64;
            rep * (crate::engine::driver::EVAL_WARMUP_ITEMS as f64 / items).min(1.0)
        } else {
            rep
        };
        e.seconds += start + s.warmup as f64 * warmup + left as f64 * rep + s.cooldown_seconds;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_parse() {
        assert_eq!(parse_parameters("135M"), Some(135_000_000));
        assert_eq!(parse_parameters("1.7B"), Some(1_700_000_000));
        assert_eq!(parse_parameters("x"), None);
    }

    #[test]
    fn sizes_of_synthetic_and_registered_models_and_their_cost() {
        let none = |_: &Path| None;
        let spec = |id: &str| {
            EngineSpec::Candle(crate::engine::spec::CandleSpec {
                weights: Weights::Id(id.into()),
                seed: None,
                encoder: false,
            })
        };
        let tiny = model_size(&spec("synthetic:llama-tiny"), &none);
        let p = tiny.parameters.unwrap();
        assert!((3_000_000..6_000_000).contains(&p), "{p}");
        assert_eq!(tiny.bytes, Some(p * 4));
        let smol = model_size(&spec(crate::store::registry::DEFAULT_MODEL), &none);
        assert_eq!(smol.parameters, Some(135_000_000));
        assert!(smol.bytes.unwrap() > 50_000_000);
        // The same request costs more on the bigger model, less on more threads.
        let g = |m, t| generation_s(m, t, 64, 64, 1);
        assert!(g(smol, 1) > 3.0 * g(tiny, 1));
        assert!(g(smol, 2) < g(smol, 1));
        // Nothing known: the fallback rates.
        assert!((g(ModelSize::default(), 1) - (64.0 / 300.0 + 64.0 / 80.0)).abs() < 1e-12);
    }

    /// An evaluation cell costs its items, each a typical item's tokens: 100 items on the
    /// default model are seconds to a minute, not nothing, and a bigger model or more items
    /// cost more; its warmup is a few items, not a pass.
    #[test]
    fn evaluation_cells_cost_their_items() {
        let suite = |model: &str, items: usize, warmup: u32| {
            let text = format!(
                "[suite]\nname = \"e\"\nwarmup = {warmup}\nrepetitions = 1\nidle_seconds = 0\n\n\
                 [[model]]\nid = \"{model}\"\n\n[[profile]]\nname = \"p\"\nthreads = 2\n\n\
                 [[workload]]\nname = \"w\"\nkind = \"eval\"\ntask = \"arc_easy\"\n\
                 items = {items}\nseed = 1\n"
            );
            let s = Suite::parse(Path::new("e.toml"), &text).expect("a valid suite");
            let p = crate::plan::plan(&s);
            estimate(&s, &p, &History::default(), &|_: &Path| None).seconds
        };
        let small = crate::store::registry::DEFAULT_MODEL;
        let big = "qwen2.5-coder-1.5b-instruct-q4_k_m";
        let t = suite(small, 100, 0);
        assert!((2.0..120.0).contains(&t), "{t} s");
        assert!(suite(small, 400, 0) > 3.0 * t);
        assert!(suite(big, 100, 0) > 5.0 * t);
        assert!(suite(small, 100, 5) < 1.2 * t);
    }
}
