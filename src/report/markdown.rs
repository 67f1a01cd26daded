//! report.md and the table model both Markdown and HTML render: the comparison table with
//! provenance, concurrency, the parts of a merged run, failures and warnings.

use super::summary::{CellSummary, SummaryDoc};
use crate::meter::Provenance;
use crate::metric::{Metric, Shown};
use crate::run_meta::{IdleBaseline, RunMeta};
use std::fmt::Write;

/// A cell's median of `m` as tables show it, with its bootstrap interval between `open` and
/// `close`.
pub fn median_with_ci(c: &CellSummary, m: Metric, open: &str, close: &str) -> String {
    let Shown {
        scale,
        decimals: prec,
        ..
    } = m.shown();
    match c.metric(m) {
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

fn cell_value(c: &CellSummary, m: Metric) -> String {
    median_with_ci(c, m, " ", "")
}

/// The figures of the Markdown summary table, in column order.
const MD_COLUMNS: &[Metric] = &[
    Metric::JPerToken,
    Metric::JPerPrefillToken,
    Metric::JPerDecodeToken,
    Metric::JPerRequest,
    Metric::TokensPerJ,
    Metric::WhPer1000Queries,
    Metric::TtftS,
    Metric::TpotS,
    Metric::AvgPowerW,
];

/// report.md: the headline (already rendered), then the figures a reader compares, with how
/// they were obtained.
pub fn report_md(
    doc: &SummaryDoc,
    meta: Option<&RunMeta>,
    idle: Option<&IdleBaseline>,
    headline_md: &str,
) -> String {
    let mut s = format!("# joulebench: {}\n\n", md_escape(&doc.suite));
    s.push_str(headline_md);
    if doc.interrupted {
        s.push_str("**Interrupted**: the figures cover the repetitions that finished.\n\n");
    }
    if let Some(why) = &doc.stopped {
        s.push_str(&format!(
            "**Stopped before the end**: {}. The figures cover what was recorded before; \
             `joulebench run --resume` on this folder runs the rest.\n\n",
            md_escape(why)
        ));
    }
    if !doc.not_run.is_empty() {
        s.push_str(&format!(
            "**{} never ran**: {}.\n\n",
            match doc.not_run.len() {
                1 => "1 cell".to_string(),
                n => format!("{n} cells"),
            },
            md_escape(&doc.not_run.join(", "))
        ));
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
         not a sensor (its formula is under \"How each figure was obtained\" below).\n\n",
    );
    let headings: Vec<&str> = MD_COLUMNS.iter().map(|m| m.shown().heading).collect();
    let _ = writeln!(s, "| cell | energy | {} | reps |", headings.join(" | "));
    let _ = writeln!(s, "|---|---|{}---|", "---|".repeat(MD_COLUMNS.len()));
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
        let values: Vec<String> = MD_COLUMNS.iter().map(|&m| cell_value(c, m)).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            md_escape(&name),
            prov,
            values.join(" | "),
            c.repetitions_ok
        );
    }
    if let Some(t) = eval_table(doc) {
        s.push_str(&table_md(&t));
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
    s.push_str("\n## How each figure was obtained\n\n");
    for l in super::method::lines(meta.map(|m| &m.sources)) {
        let _ = writeln!(s, "- {}", md_escape(&l));
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
                cell_value(c, Metric::SteadyJPerToken),
                cell_value(c, Metric::SteadyTokensPerS),
                cell_value(c, Metric::WholeJPerGeneratedToken),
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

/// Evaluation cells: what the energy bought. Accuracy with the items' 95% Wilson interval;
/// energy figures as medians over repetitions with their 95% bootstrap intervals.
pub fn eval_table(doc: &SummaryDoc) -> Option<Table> {
    let rows: Vec<Vec<String>> = doc
        .cells
        .iter()
        .filter_map(|c| {
            let e = c.eval.as_ref()?;
            Some(vec![
                c.cell.clone(),
                format!("{} ({})", e.task, e.variant),
                e.metric.clone(),
                e.n.to_string(),
                format!(
                    "{:.1} [{:.1}, {:.1}]",
                    e.accuracy * 100.0,
                    e.accuracy_ci[0] * 100.0,
                    e.accuracy_ci[1] * 100.0
                ),
                e.chance.map_or("–".into(), |p| format!("{:.1}", p * 100.0)),
                cell_value(c, Metric::JPerItem),
                cell_value(c, Metric::JPerCorrect),
                cell_value(c, Metric::CorrectPerKj),
                cell_value(c, Metric::AccuracyPerJoule),
                format!("{:.2}", e.items_per_s),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: "What the energy bought".into(),
        note: "Every item is one request, metered at its start and end: its energy is its own \
               span's, and the items' energies add up to the repetition's. Accuracy % with the \
               items' 95% Wilson interval (the same items for every model); accuracy per joule \
               is accuracy over the mean joules per item (Intelligence per Watt's figure)."
            .into(),
        headers: vec![
            "cell",
            "task",
            "metric",
            "items",
            "accuracy %",
            "chance %",
            "J/item",
            "J/correct",
            "correct/kJ",
            "accuracy/J",
            "items/s",
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

/// Text that cannot break a Markdown table, heading or list, nor inject markup: newlines become
/// spaces, control characters are shown escaped, `< > &` become entities, and every character
/// that starts emphasis, code, a link or a table cell is backslash-escaped (an underscore only
/// where it could start emphasis, so `a__b__c` ids stay readable).
pub fn md_escape(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let flat = crate::names::terminal(&flat);
    let chars: Vec<char> = flat.chars().collect();
    let mut out = String::with_capacity(flat.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '[' | ']' | '|' | '~' | '#' | '!' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '_' => {
                // A run of underscores between letters or digits cannot open emphasis.
                let before = chars[..i].iter().rev().find(|c| **c != '_');
                let after = chars[i + 1..].iter().find(|c| **c != '_');
                let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric());
                let inner = word(before) && word(after);
                if !inner {
                    out.push('\\');
                }
                out.push('_');
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod escape_tests {
    use super::md_escape;

    #[test]
    fn names_cannot_break_tables_headings_or_inject_markup() {
        assert_eq!(md_escape("a__b__c"), "a__b__c");
        assert_eq!(md_escape("x|y\n# h"), "x\\|y \\# h");
        assert_eq!(
            md_escape("_em_ *b* `c` [l](u) <s>"),
            "\\_em\\_ \\*b\\* \\`c\\` \\[l\\](u) &lt;s&gt;"
        );
        assert_eq!(md_escape("\u{1b}[31m"), "\\\\u{1b}\\[31m");
    }
}
