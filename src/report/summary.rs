//! summary.json and summary.csv: each cell's figures over its repetitions (median, mean, sd,
//! cv, 95% intervals, outliers flagged), its provenance and its warnings.

use crate::config::WorkloadKind;
use crate::engine::EngineConfig;
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::record::{Record, Status};
use crate::run_dir::RUN_SCHEMA_VERSION;
use crate::stats::{Summary, summarize_bootstrap};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One cell over its repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSummary {
    pub cell: String,
    pub cell_index: usize,
    pub model: String,
    pub profile: String,
    pub workload: String,
    pub kind: WorkloadKind,
    pub synthetic: bool,
    /// `estimated` when any repetition's energy was estimated.
    pub provenance: Option<Provenance>,
    pub scope: Option<crate::record::EnergyScope>,
    pub engine: Option<EngineConfig>,
    /// Hardware fingerprint and node of the repetitions (merged runs: per part).
    #[serde(default)]
    pub hardware: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    /// Parallel streams (external engines; candle: a static batch).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Where token counts come from (`engine`, `server usage`, an estimate).
    #[serde(default)]
    pub token_counts: Option<String>,
    pub repetitions_ok: usize,
    pub failures: Vec<String>,
    /// Per figure: median, mean, sd, cv, 95% intervals, outliers (indices into the ok records).
    pub metrics: BTreeMap<String, Summary>,
    /// ML.ENERGY's names (medians).
    pub energy_per_token_joules: Option<f64>,
    pub energy_per_request_joules: Option<f64>,
    pub avg_power_watts: Option<f64>,
    /// Evaluation cells: accuracy (deterministic across repetitions, so its interval is the
    /// items' Wilson interval, not the repetitions').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalSummary>,
    pub warnings: Vec<String>,
}

/// What an evaluation cell scored (its first good repetition; a deterministic engine scores
/// every repetition the same, and a difference between them is a warning).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalSummary {
    pub task: String,
    pub variant: String,
    pub metric: String,
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub accuracy_ci: [f64; 2],
    pub chance: Option<f64>,
    pub items_per_s: f64,
}

impl CellSummary {
    /// The summary of figure `m`, when the cell has one.
    pub fn metric(&self, m: Metric) -> Option<&Summary> {
        self.metrics.get(m.name())
    }
}

/// summary.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryDoc {
    pub schema_version: u32,
    pub suite: String,
    pub interrupted: bool,
    /// Why the run stopped before its end, other than an interrupt (results that could not be
    /// written: a full disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Cells of the plan (this shard's) that have no record at all: they never ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_run: Vec<String>,
    pub cells: Vec<CellSummary>,
    pub warnings: Vec<String>,
}

fn seed(cell: &str, metric: &str) -> u64 {
    cell.bytes()
        .chain(metric.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
}

/// The errors of a cell's failed records that no later good repetition made up for: a failure
/// followed (in the records, which are in the order they were written) by a good repetition was
/// measured again by `--resume`, and the cell lost nothing to it.
fn unrecovered(rs: &[&Record]) -> Vec<String> {
    let last_ok = rs.iter().rposition(|r| r.status == Status::Ok);
    rs.iter()
        .enumerate()
        .filter(|(i, _)| last_ok.is_none_or(|k| *i > k))
        .filter_map(|(_, r)| r.error.clone())
        .collect()
}

/// Summarizes records by cell (order of the plan).
pub fn summarize(suite: &str, records: &[Record], interrupted: bool) -> SummaryDoc {
    let mut by: BTreeMap<usize, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by.entry(r.cell_index).or_default().push(r);
    }
    use rayon::prelude::*;
    let groups: Vec<Vec<&Record>> = by.into_values().collect();
    let cells = groups
        .into_par_iter()
        .map(|rs| {
            let ok: Vec<&Record> = rs
                .iter()
                .copied()
                .filter(|r| r.status == Status::Ok)
                .collect();
            let first = rs[0];
            let mut metrics = BTreeMap::new();
            for &m in Metric::ALL {
                if m == Metric::Accuracy {
                    continue; // the items' interval, in `eval`
                }
                let v: Vec<f64> = ok.iter().filter_map(|r| m.read(r)).collect();
                if let Some(s) = summarize_bootstrap(&v, seed(&first.cell, m.name())) {
                    metrics.insert(m.name().to_string(), s);
                }
            }
            let med = |f: fn(&Record) -> Option<f64>| {
                let v: Vec<f64> = ok.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| crate::stats::median(&v))
            };
            // The same warning from several repetitions is listed once, with its count.
            let mut seen: Vec<(String, Vec<u32>)> = Vec::new();
            for r in &ok {
                for w in &r.warnings {
                    let rep = r.repetition.unwrap_or(0);
                    match seen.iter_mut().find(|(t, _)| t == w) {
                        Some((_, reps)) => reps.push(rep),
                        None => seen.push((w.clone(), vec![rep])),
                    }
                }
            }
            let (eval, eval_warning) = eval_summary(&ok);
            let mut warnings: Vec<String> = seen
                .into_iter()
                .map(|(w, reps)| {
                    if reps.len() == ok.len() {
                        format!("{w} (every repetition)")
                    } else {
                        let list: Vec<String> = reps.iter().map(u32::to_string).collect();
                        format!("{w} (repetition {})", list.join(", "))
                    }
                })
                .collect();
            warnings.extend(eval_warning);
            CellSummary {
                cell: first.cell.clone(),
                cell_index: first.cell_index,
                model: first.model.clone(),
                profile: first.profile.clone(),
                workload: first.workload.clone(),
                kind: first.kind,
                synthetic: rs.iter().any(|r| r.synthetic),
                provenance: if ok.iter().any(|r| {
                    r.energy
                        .as_ref()
                        .is_some_and(|e| e.provenance == Provenance::Estimated)
                }) {
                    Some(Provenance::Estimated)
                } else if ok.iter().any(|r| r.energy.is_some()) {
                    Some(Provenance::Measured)
                } else {
                    None
                },
                scope: ok.iter().find_map(|r| r.energy.as_ref().map(|e| e.scope)),
                engine: ok
                    .iter()
                    .find_map(|r| r.model_info.as_ref().map(|m| m.engine.clone())),
                hardware: rs
                    .iter()
                    .find_map(|r| r.host.as_ref().map(|h| h.fingerprint.clone())),
                node: rs
                    .iter()
                    .find_map(|r| r.host.as_ref().and_then(|h| h.node.clone())),
                concurrency: rs.iter().find_map(|r| r.concurrency),
                token_counts: ok.iter().find_map(|r| r.token_counts.clone()),
                repetitions_ok: ok.len(),
                failures: unrecovered(&rs),
                energy_per_token_joules: med(|r| r.energy_per_token_joules),
                energy_per_request_joules: med(|r| r.energy_per_request_joules),
                avg_power_watts: med(|r| r.avg_power_watts),
                eval,
                metrics,
                warnings,
            }
        })
        .collect();
    SummaryDoc {
        schema_version: RUN_SCHEMA_VERSION,
        suite: suite.to_string(),
        interrupted,
        stopped: None,
        not_run: Vec::new(),
        cells,
        warnings: Vec::new(),
    }
}

/// An evaluation cell's accuracy, and a warning when its repetitions disagree.
fn eval_summary(ok: &[&Record]) -> (Option<EvalSummary>, Option<String>) {
    let evals: Vec<&crate::record::EvalFigures> =
        ok.iter().filter_map(|r| r.eval.as_ref()).collect();
    let Some(e) = evals.first() else {
        return (None, None);
    };
    let differ = evals.iter().any(|x| x.correct != e.correct || x.n != e.n);
    let speeds: Vec<f64> = evals.iter().map(|x| x.items_per_s).collect();
    (
        Some(EvalSummary {
            task: e.task.clone(),
            variant: e.variant.clone(),
            metric: e.metric.clone(),
            n: e.n,
            correct: e.correct,
            accuracy: e.accuracy,
            accuracy_ci: e.accuracy_ci,
            chance: e.chance,
            items_per_s: crate::stats::median(&speeds),
        }),
        differ.then(|| {
            "the repetitions scored differently (a nondeterministic engine?): accuracy is the \
             first repetition's"
                .to_string()
        }),
    )
}

/// summary.csv: one row per cell; per metric its median, mean, sd, cv and bootstrap interval.
pub fn summary_csv(doc: &SummaryDoc) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "cell",
        "model",
        "profile",
        "workload",
        "kind",
        "synthetic",
        "provenance",
        "repetitions_ok",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The evaluation columns only where a cell has an evaluation: a run without one keeps the
    // columns it always had.
    let eval = doc.cells.iter().any(|c| c.eval.is_some());
    let metrics: Vec<Metric> = Metric::CSV
        .iter()
        .copied()
        .filter(|m| {
            eval || !matches!(
                m,
                Metric::Accuracy
                    | Metric::JPerItem
                    | Metric::JPerCorrect
                    | Metric::CorrectPerKj
                    | Metric::AccuracyPerJoule
            )
        })
        .collect();
    for m in &metrics {
        for s in ["median", "mean", "sd", "cv", "ci95_low", "ci95_high"] {
            header.push(format!("{m}_{s}"));
        }
    }
    let _ = w.write_record(&header);
    let f = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.6e}"));
    for c in &doc.cells {
        let mut row = vec![
            c.cell.clone(),
            c.model.clone(),
            c.profile.clone(),
            c.workload.clone(),
            format!("{:?}", c.kind).to_lowercase(),
            c.synthetic.to_string(),
            c.provenance
                .map_or("none".into(), |p| format!("{p:?}").to_lowercase()),
            c.repetitions_ok.to_string(),
        ];
        for &m in &metrics {
            if m == Metric::Accuracy {
                // The items' Wilson interval (accuracy does not vary over repetitions).
                let e = c.eval.as_ref();
                row.push(f(e.map(|e| e.accuracy)));
                row.push(f(e.map(|e| e.accuracy)));
                row.push(String::new());
                row.push(String::new());
                row.push(f(e.map(|e| e.accuracy_ci[0])));
                row.push(f(e.map(|e| e.accuracy_ci[1])));
                continue;
            }
            let s = c.metric(m);
            row.push(f(s.map(|s| s.median)));
            row.push(f(s.map(|s| s.mean)));
            row.push(f(s.and_then(|s| s.sd)));
            row.push(f(s.and_then(|s| s.cv)));
            row.push(f(s.and_then(|s| s.bootstrap_ci95).map(|c| c[0])));
            row.push(f(s.and_then(|s| s.bootstrap_ci95).map(|c| c[1])));
        }
        let _ = w.write_record(&row);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}
