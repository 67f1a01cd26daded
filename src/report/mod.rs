//! Summaries of a run, rebuilt from records.jsonl: pure exporters (JSON, CSV, Markdown, charts,
//! HTML) and one place that writes the files.

pub mod charts;
pub mod html;
#[cfg(feature = "png")]
pub mod png;

use crate::config::WorkloadKind;
use crate::engine::EngineConfig;
use crate::meter::Provenance;
use crate::record::{self, Record, Status};
use crate::run_dir::{IdleBaseline, RUN_SCHEMA_VERSION, RunMeta, read_json, write_json};
use crate::stats::{Summary, summarize_bootstrap};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

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
    pub scope: Option<String>,
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
    pub warnings: Vec<String>,
}

/// summary.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryDoc {
    pub schema_version: u32,
    pub suite: String,
    pub interrupted: bool,
    pub cells: Vec<CellSummary>,
    pub warnings: Vec<String>,
}

type Getter = fn(&Record) -> Option<f64>;

/// The figures summarized per cell, in report order.
pub const METRICS: &[(&str, Getter)] = &[
    ("j_per_prefill_token", |r| {
        r.energy.as_ref().and_then(|e| e.j_per_prefill_token)
    }),
    ("j_per_decode_token", |r| {
        r.energy.as_ref().and_then(|e| e.j_per_decode_token)
    }),
    ("j_per_request", |r| {
        r.energy.as_ref().map(|e| e.j_per_request)
    }),
    ("tokens_per_j", |r| {
        r.energy.as_ref().and_then(|e| e.tokens_per_j)
    }),
    ("wh_per_1000_queries", |r| {
        r.energy.as_ref().map(|e| e.wh_per_1000_queries)
    }),
    ("prefill_j", |r| r.energy.as_ref().and_then(|e| e.prefill_j)),
    ("decode_j", |r| r.energy.as_ref().and_then(|e| e.decode_j)),
    ("request_j", |r| r.energy.as_ref().map(|e| e.request_j)),
    ("request_net_j", |r| {
        r.energy.as_ref().and_then(|e| e.request_net_j)
    }),
    ("j_per_prefill_token_net", |r| {
        r.energy.as_ref().and_then(|e| e.j_per_prefill_token_net)
    }),
    ("j_per_decode_token_net", |r| {
        r.energy.as_ref().and_then(|e| e.j_per_decode_token_net)
    }),
    ("avg_power_w", |r| r.energy.as_ref().map(|e| e.avg_power_w)),
    ("peak_power_w", |r| {
        r.energy.as_ref().map(|e| e.peak_power_w)
    }),
    ("uncertainty_j", |r| {
        r.energy.as_ref().map(|e| e.uncertainty_j)
    }),
    ("ttft_s", |r| r.ttft_s),
    ("tpot_s", |r| r.tpot_s),
    ("itl_p50_s", |r| r.itl_p50_s),
    ("itl_p90_s", |r| r.itl_p90_s),
    ("itl_p99_s", |r| r.itl_p99_s),
    ("e2e_s", |r| r.e2e_s),
    ("prefill_tokens_per_s", |r| r.prefill_tokens_per_s),
    ("decode_tokens_per_s", |r| r.decode_tokens_per_s),
    ("gco2e_per_1000_queries", |r| r.gco2e_per_1000_queries),
    ("steady_j_per_token", |r| {
        r.steady.as_ref().and_then(|s| s.j_per_token)
    }),
    ("steady_tokens_per_s", |r| {
        r.steady.as_ref().map(|s| s.tokens_per_s)
    }),
    ("whole_j_per_generated_token", |r| {
        r.whole.as_ref().and_then(|w| w.j_per_generated_token)
    }),
];

fn seed(cell: &str, metric: &str) -> u64 {
    cell.bytes()
        .chain(metric.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
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
            for (name, get) in METRICS {
                let v: Vec<f64> = ok.iter().filter_map(|r| get(r)).collect();
                if let Some(s) = summarize_bootstrap(&v, seed(&first.cell, name)) {
                    metrics.insert(name.to_string(), s);
                }
            }
            let med = |f: Getter| {
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
            let warnings: Vec<String> = seen
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
                scope: ok
                    .iter()
                    .find_map(|r| r.energy.as_ref().map(|e| e.scope.clone())),
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
                failures: rs.iter().filter_map(|r| r.error.clone()).collect(),
                energy_per_token_joules: med(|r| r.energy_per_token_joules),
                energy_per_request_joules: med(|r| r.energy_per_request_joules),
                avg_power_watts: med(|r| r.avg_power_watts),
                metrics,
                warnings,
            }
        })
        .collect();
    SummaryDoc {
        schema_version: RUN_SCHEMA_VERSION,
        suite: suite.to_string(),
        interrupted,
        cells,
        warnings: Vec::new(),
    }
}

const CSV_METRICS: &[&str] = &[
    "j_per_prefill_token",
    "j_per_decode_token",
    "j_per_request",
    "tokens_per_j",
    "wh_per_1000_queries",
    "request_net_j",
    "ttft_s",
    "tpot_s",
    "itl_p50_s",
    "itl_p90_s",
    "itl_p99_s",
    "e2e_s",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "avg_power_w",
    "peak_power_w",
];

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
    for m in CSV_METRICS {
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
        for m in CSV_METRICS {
            let s = c.metrics.get(*m);
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

/// A cell's median of `m` (× `scale`) with its bootstrap interval between `open` and `close`.
pub fn median_with_ci(
    c: &CellSummary,
    m: &str,
    scale: f64,
    prec: usize,
    open: &str,
    close: &str,
) -> String {
    match c.metrics.get(m) {
        Some(s) => match s.bootstrap_ci95 {
            Some([a, b]) => format!(
                "{:.p$}{open}[{:.p$}, {:.p$}]{close}",
                s.median * scale,
                a * scale,
                b * scale,
                p = prec
            ),
            None => format!("{:.p$}", s.median * scale, p = prec),
        },
        None => "–".into(),
    }
}

fn cell_value(c: &CellSummary, m: &str, scale: f64, prec: usize) -> String {
    median_with_ci(c, m, scale, prec, " ", "")
}

/// report.md: the figures a reader compares, with how they were obtained.
pub fn report_md(doc: &SummaryDoc, meta: Option<&RunMeta>, idle: Option<&IdleBaseline>) -> String {
    let mut s = format!("# joulebench: {}\n\n", doc.suite);
    if doc.interrupted {
        s.push_str("**Interrupted**: the figures cover the repetitions that finished.\n\n");
    }
    let mixed = meta.is_some_and(|m| {
        m.parts
            .iter()
            .map(|p| &p.fingerprint)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1
    });
    if let Some(m) = meta {
        let _ = writeln!(
            s,
            "{} {} ({} CPUs, governor {}, {} GiB), joulebench {}{}.\n",
            if mixed {
                "Machines: several (see Parts); the first part ran on"
            } else {
                "Machine:"
            },
            m.machine.cpu_model,
            m.machine.logical_cpus,
            m.machine.governor.as_deref().unwrap_or("unknown"),
            m.machine
                .memory_gib
                .map_or("?".into(), |g| format!("{g:.0}")),
            m.joulebench_version,
            m.git_commit
                .as_deref()
                .map_or(String::new(), |c| format!(" ({c})"))
        );
    }
    if let Some(m) = meta.filter(|m| !m.parts.is_empty()) {
        if let Some(t) = parts_table(m) {
            s.push_str(&table_md(&t));
            s.push('\n');
        }
        if !m.missing_cells.is_empty() {
            let _ = writeln!(
                s,
                "**MISSING**: {} of {} cells were measured by no part (a failed shard): {}.\n",
                m.missing_cells.len(),
                m.cells,
                md_escape(&m.missing_cells.join(", "))
            );
        }
    }
    if let Some(i) = idle {
        let _ = writeln!(
            s,
            "Idle baseline: {} W over {:.1} s ({}).\n",
            i.total_w.map_or("n/a".into(), |w| format!("{w:.3}")),
            i.duration_s,
            format!("{:?}", i.provenance).to_lowercase()
        );
    }
    s.push_str(
        "Medians over repetitions with 95% bootstrap intervals. Energy covers the CPU (sum of \
         packages and DRAM) and metered GPUs; ESTIMATED figures come from a CPU-time model, \
         not a sensor.\n\n",
    );
    s.push_str("| cell | energy | prefill mJ/token | decode mJ/token | J/request | tokens/J | Wh/1k queries | TTFT ms | TPOT ms | avg W | reps |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for c in &doc.cells {
        let prov = match c.provenance {
            Some(Provenance::Estimated) => "ESTIMATED",
            Some(Provenance::Measured) => "measured",
            None => "none",
        };
        let name = if c.synthetic {
            format!("{} (synthetic)", c.cell)
        } else {
            c.cell.clone()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md_escape(&name),
            prov,
            cell_value(c, "j_per_prefill_token", 1e3, 3),
            cell_value(c, "j_per_decode_token", 1e3, 3),
            cell_value(c, "j_per_request", 1.0, 4),
            cell_value(c, "tokens_per_j", 1.0, 2),
            cell_value(c, "wh_per_1000_queries", 1.0, 4),
            cell_value(c, "ttft_s", 1e3, 1),
            cell_value(c, "tpot_s", 1e3, 2),
            cell_value(c, "avg_power_w", 1.0, 2),
            c.repetitions_ok
        );
    }
    if let Some(t) = concurrency_table(doc) {
        s.push_str(&table_md(&t));
    }
    for c in doc
        .cells
        .iter()
        .filter(|c| !c.failures.is_empty() || !c.warnings.is_empty())
    {
        let _ = writeln!(s, "\n### {}\n", md_escape(&c.cell));
        for f in &c.failures {
            let _ = writeln!(s, "- **failed**: {}", md_escape(&failure_line(f)));
        }
        for w in &c.warnings {
            let _ = writeln!(s, "- warning: {}", md_escape(w));
        }
    }
    for w in &doc.warnings {
        let _ = writeln!(s, "\n- {}", md_escape(w));
    }
    s
}

/// A small table: headers and rows of plain text, for Markdown and HTML alike.
pub struct Table {
    pub title: String,
    pub note: String,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// Renders a table as Markdown.
pub fn table_md(t: &Table) -> String {
    let mut s = format!(
        "\n### {}\n\n{}\n\n| {} |\n|{}\n",
        t.title,
        t.note,
        t.headers.join(" | "),
        "---|".repeat(t.headers.len())
    );
    for r in &t.rows {
        let cells: Vec<String> = r.iter().map(|c| md_escape(c)).collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s
}

/// Cells with concurrent streams or an external engine: steady-state and whole-run energy per
/// generated token, and where the token counts come from.
pub fn concurrency_table(doc: &SummaryDoc) -> Option<Table> {
    let rows: Vec<Vec<String>> = doc
        .cells
        .iter()
        .filter(|c| {
            c.concurrency.is_some() || c.token_counts.as_deref().is_some_and(|t| t != "engine")
        })
        .map(|c| {
            vec![
                c.cell.clone(),
                c.engine.as_ref().map_or("?".into(), |e| e.backend.clone()),
                c.concurrency.map_or("1".into(), |n| n.to_string()),
                cell_value(c, "steady_j_per_token", 1e3, 2),
                cell_value(c, "steady_tokens_per_s", 1.0, 1),
                cell_value(c, "whole_j_per_generated_token", 1e3, 2),
                c.token_counts.clone().unwrap_or_else(|| "engine".into()),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: "Concurrency and steady state".into(),
        note: "Steady state: from the moment every stream is running until the first one \
               finishes (no apportioning needed); whole: first request sent to last response \
               ended. Medians with 95% bootstrap intervals."
            .into(),
        headers: vec![
            "cell",
            "engine",
            "streams",
            "steady mJ/token",
            "steady tokens/s",
            "whole mJ/token",
            "token counts",
        ],
        rows,
    })
}

/// The parts of a merged run: shard, node, Slurm job, hardware, cells, idle power.
pub fn parts_table(m: &RunMeta) -> Option<Table> {
    if m.parts.is_empty() {
        return None;
    }
    let rows = m
        .parts
        .iter()
        .map(|p| {
            let job = p.shard.as_ref().and_then(|s| s.slurm.as_ref()).map_or(
                "–".to_string(),
                |j| match (&j.array_job_id, &j.array_task_id, &j.job_id) {
                    (Some(a), Some(t), _) => format!("{a}_{t}"),
                    (_, _, Some(id)) => id.clone(),
                    _ => "–".into(),
                },
            );
            vec![
                p.dir.clone(),
                p.shard
                    .as_ref()
                    .map_or("–".into(), |x| format!("{}/{}", x.index, x.count)),
                p.node.clone().unwrap_or_else(|| "?".into()),
                job,
                p.fingerprint.clone(),
                p.cells.len().to_string(),
                p.records.to_string(),
                p.idle_w.map_or("n/a".into(), |w| format!("{w:.3}")),
            ]
        })
        .collect();
    Some(Table {
        title: "Parts".into(),
        note: format!(
            "Merged from {} parts (each node's records subtract its own idle baseline).",
            m.parts.len()
        ),
        headers: vec![
            "part",
            "shard",
            "node",
            "Slurm job",
            "hardware",
            "cells",
            "records",
            "idle W",
        ],
        rows,
    })
}

/// Warnings a run folder's meta.json implies: missing cells, mixed hardware, shared nodes.
pub fn run_warnings(m: &RunMeta) -> Vec<String> {
    let mut w = m.merge_warnings.clone();
    if !m.missing_cells.is_empty() {
        w.push(format!(
            "{} of {} cells are MISSING (their shard failed or never ran): {}",
            m.missing_cells.len(),
            m.cells,
            m.missing_cells.join(", ")
        ));
    }
    let fps: std::collections::BTreeSet<&str> =
        m.parts.iter().map(|p| p.fingerprint.as_str()).collect();
    if fps.len() > 1 {
        w.push(format!(
            "the shards ran on different hardware ({}): figures are comparable only between \
             cells of the same hardware; charts are drawn per hardware",
            fps.into_iter().collect::<Vec<_>>().join("; ")
        ));
    }
    let shared = m
        .parts
        .iter()
        .filter_map(|p| p.shard.as_ref())
        .chain(m.shard.as_ref())
        .any(|s| s.node_shared);
    if shared {
        w.push(
            "shards shared their nodes with other jobs: RAPL energy covers the whole node and \
             may include other work"
                .into(),
        );
    }
    w
}

/// A failure in one line: its first line and, when the message goes on, its last line (where
/// a child's error usually is).
pub fn failure_line(f: &str) -> String {
    let mut lines = f.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    match lines.next_back() {
        Some(last) => format!("{first} … {last}"),
        None => first.to_string(),
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws every chart of a run: (file name, title, SVG).
pub fn charts_for(
    dir: &Path,
    doc: &SummaryDoc,
    records: &[Record],
    idle: Option<&IdleBaseline>,
) -> Vec<(String, String, anyhow::Result<String>)> {
    let groups: BTreeMap<Option<&str>, Vec<CellSummary>> =
        doc.cells.iter().fold(BTreeMap::new(), |mut m, c| {
            m.entry(c.hardware.as_deref())
                .or_insert_with(Vec::new)
                .push(c.clone());
            m
        });
    let mut out = Vec::new();
    if groups.len() <= 1 {
        out.extend(cross_cell_charts(&doc.cells, records, "", ""));
    } else {
        // Cells measured on different hardware are never drawn against each other.
        for (i, (hw, cells)) in groups.iter().enumerate() {
            let suffix = format!("-hw{}", i + 1);
            let title = format!(" (on {})", hw.unwrap_or("unknown hardware"));
            out.extend(cross_cell_charts(cells, records, &suffix, &title));
        }
    }
    out.extend(timelines(dir, doc, records, idle));
    out
}

fn cross_cell_charts(
    cells: &[CellSummary],
    records: &[Record],
    suffix: &str,
    title: &str,
) -> Vec<(String, String, anyhow::Result<String>)> {
    let doc = SummaryDoc {
        schema_version: RUN_SCHEMA_VERSION,
        suite: String::new(),
        interrupted: false,
        cells: cells.to_vec(),
        warnings: Vec::new(),
    };
    let out = vec![
        (
            "energy-per-token.svg".to_string(),
            "Energy per token by cell".to_string(),
            charts::energy_per_token(&doc.cells),
        ),
        (
            "latency-vs-energy.svg".into(),
            "Latency against energy per token, with the Pareto frontier".into(),
            charts::latency_energy(&doc.cells),
        ),
        (
            "itl-cdf.svg".into(),
            "Inter-token latency distribution".into(),
            charts::itl_cdf(&doc.cells, records),
        ),
        (
            "scaling.svg".into(),
            "Tokens per joule and per second against threads (or batch)".into(),
            charts::scaling(&doc.cells, records),
        ),
    ];
    out.into_iter()
        .map(|(f, t, svg)| (f.replace(".svg", &format!("{suffix}.svg")), t + title, svg))
        .collect()
}

fn timelines(
    dir: &Path,
    doc: &SummaryDoc,
    records: &[Record],
    idle: Option<&IdleBaseline>,
) -> Vec<(String, String, anyhow::Result<String>)> {
    let mut out = Vec::new();
    for c in &doc.cells {
        // The repetition with the median request energy represents the cell.
        let mut ok: Vec<&Record> = records
            .iter()
            .filter(|r| {
                r.cell_index == c.cell_index && r.status == Status::Ok && r.energy.is_some()
            })
            .collect();
        ok.sort_by(|a, b| {
            let e = |r: &Record| r.energy.as_ref().map_or(0.0, |e| e.request_j);
            e(a).total_cmp(&e(b))
        });
        let Some(rep) = ok.get(ok.len() / 2).and_then(|r| r.repetition) else {
            continue;
        };
        let trace = dir.join("traces").join(format!("{}.csv", c.cell));
        let svg = charts::read_trace(&trace).and_then(|rows| {
            charts::power_timeline(
                &charts::cell_label(c),
                &rows,
                rep,
                idle.and_then(|i| i.total_w),
            )
        });
        out.push((
            format!("timeline-{}.svg", c.cell),
            format!("Power timeline of {} (repetition {rep})", c.cell),
            svg,
        ));
    }
    out
}

/// Rebuilds summary.json, summary.csv, report.md, charts/*.svg and report.html of a run folder
/// from its records and traces.
pub fn write_all(dir: &Path, interrupted: bool) -> anyhow::Result<SummaryDoc> {
    let (records, warnings) = record::read_all(&dir.join("records.jsonl"))?;
    let meta: Option<RunMeta> = read_json(&dir.join("meta.json")).ok();
    let idle: Option<IdleBaseline> = read_json(&dir.join("idle.json")).ok();
    let suite = meta.as_ref().map_or_else(String::new, |m| m.suite.clone());
    let mut doc = summarize(&suite, &records, interrupted);
    doc.warnings = warnings;
    if let Some(m) = &meta {
        doc.warnings.extend(run_warnings(m));
    }
    write_json(&dir.join("summary.json"), &doc)?;
    crate::run_dir::write_atomic(&dir.join("summary.csv"), summary_csv(&doc).as_bytes())?;
    crate::run_dir::write_atomic(
        &dir.join("report.md"),
        report_md(&doc, meta.as_ref(), idle.as_ref()).as_bytes(),
    )?;
    let chart_dir = dir.join("charts");
    std::fs::create_dir_all(&chart_dir)?;
    let mut embedded = Vec::new();
    let mut chart_warnings = Vec::new();
    for (file, title, svg) in charts_for(dir, &doc, &records, idle.as_ref()) {
        match svg {
            Ok(svg) => {
                crate::run_dir::write_atomic(&chart_dir.join(&file), svg.as_bytes())?;
                #[cfg(feature = "png")]
                match png::svg_to_png(&svg) {
                    Ok(bytes) => crate::run_dir::write_atomic(
                        &chart_dir.join(file.replace(".svg", ".png")),
                        &bytes,
                    )?,
                    Err(e) => chart_warnings.push(format!("{file}: no PNG: {e}")),
                }
                embedded.push(html::Chart { title, svg });
            }
            Err(e) => chart_warnings.push(format!("chart {file} not drawn: {e}")),
        }
    }
    let mut doc_html = doc.clone();
    doc_html.warnings.extend(chart_warnings);
    crate::run_dir::write_atomic(
        &dir.join("report.html"),
        html::render(&doc_html, meta.as_ref(), idle.as_ref(), &embedded).as_bytes(),
    )?;
    Ok(doc)
}
