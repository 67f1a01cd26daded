//! Summaries of a run, rebuilt from records.jsonl: pure exporters (JSON, CSV, Markdown, charts,
//! HTML) and one place that writes the files.

pub mod charts;
pub mod headline;
pub mod html;
pub mod markdown;
pub mod method;
#[cfg(feature = "png")]
pub mod png;
pub mod serving;
pub mod summary;

pub use markdown::{
    Table, concurrency_table, eval_table, failure_line, median_with_ci, parts_table, report_md,
    run_warnings, table_md,
};
pub use summary::{CellSummary, SummaryDoc, summarize, summary_csv};

use crate::record::Status;
use crate::record::{self, Record};
use crate::run_dir::read_json;
use crate::run_meta::{IdleBaseline, RunMeta};
use std::collections::BTreeMap;
use std::path::Path;

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
    // One style for the whole run: a model keeps its colour in every chart.
    let style = charts::style::Style::new(&doc.cells);
    if groups.len() <= 1 {
        out.extend(cross_cell_charts(&doc.cells, records, &style, "", ""));
    } else {
        // Cells measured on different hardware are never drawn against each other.
        for (i, (hw, cells)) in groups.iter().enumerate() {
            let suffix = format!("-hw{}", i + 1);
            let title = format!(" (on {})", hw.unwrap_or("unknown hardware"));
            let mut style = style.clone();
            style.provenance = charts::style::Style::new(cells).provenance;
            out.extend(cross_cell_charts(cells, records, &style, &suffix, &title));
        }
    }
    if records.iter().any(|r| r.load.is_some()) {
        out.push((
            "load-curve.svg".into(),
            "Power and energy per request against offered load (the load curve)".into(),
            charts::load_curve(records),
        ));
    }
    if let Some(slo) = suite_slo(dir) {
        let points = crate::frontier::points(records);
        let choices = crate::frontier::analyze(&points, &slo);
        out.push((
            "frontier.svg".into(),
            format!(
                "Least energy per output token meeting {} (circled), and the time-energy frontier",
                slo.describe()
            ),
            Ok(crate::frontier::chart_svg(&points, &choices, &slo)),
        ));
    }
    out.extend(timelines(dir, doc, records, idle));
    out.into_iter()
        .map(|(f, t, svg)| (f, t, svg.map(charts::style::dashes)))
        .collect()
}

/// The `[slo]` of the run folder's suite copy, if it has one.
fn suite_slo(dir: &Path) -> Option<crate::frontier::Slo> {
    let text = std::fs::read_to_string(dir.join(crate::run_dir::CONFIG)).ok()?;
    crate::frontier::Slo::from_suite_text(&text).ok().flatten()
}

fn cross_cell_charts(
    cells: &[CellSummary],
    records: &[Record],
    style: &charts::style::Style,
    suffix: &str,
    title: &str,
) -> Vec<(String, String, anyhow::Result<String>)> {
    let mut tasks: Vec<&str> = Vec::new();
    for c in cells {
        if let Some(e) = &c.eval
            && !tasks.contains(&e.task.as_str())
        {
            tasks.push(&e.task);
        }
    }
    let mut out: Vec<(String, String, anyhow::Result<String>)> = tasks
        .iter()
        .map(|t| {
            (
                format!("accuracy-vs-energy-{}.svg", crate::names::component(t)),
                format!("What a joule buys on {t}: accuracy against energy per item"),
                charts::accuracy_energy(cells, t, style),
            )
        })
        .collect();
    out.extend([
        (
            "energy-per-token.svg".to_string(),
            "Energy per token, grouped by model: prefill and decode per cell".to_string(),
            charts::energy_per_token(cells, style),
        ),
        (
            "phase-share.svg".into(),
            "The share of each request's energy spent in prefill and in decode".into(),
            charts::phase_share(cells, style),
        ),
        (
            "energy-vs-size.svg".into(),
            "Decode energy per token against model size and format".into(),
            charts::energy_vs_size(cells, records, style),
        ),
    ]);
    let models: std::collections::BTreeSet<&str> = cells.iter().map(|c| c.model.as_str()).collect();
    let profiles: std::collections::BTreeSet<&str> =
        cells.iter().map(|c| c.profile.as_str()).collect();
    if models.len() > 1 || profiles.len() > 1 {
        out.push((
            "heatmap.svg".into(),
            "Energy per token, model x profile, one panel per workload".into(),
            charts::heatmap(cells, style),
        ));
    }
    out.extend([
        (
            "latency-vs-energy.svg".to_string(),
            "Latency against energy per token, with the Pareto frontier".to_string(),
            charts::latency_energy(cells, style),
        ),
        (
            "itl-cdf.svg".into(),
            "Inter-token latency distribution".into(),
            charts::itl_cdf(cells, records, style),
        ),
        (
            "scaling.svg".into(),
            "Tokens per joule and per second against threads (or batch)".into(),
            charts::scaling(cells, records, style),
        ),
    ]);
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
                &charts::cell_label_flagged(c),
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
/// from its records and traces. Each file is written on its own: one that cannot be written (a
/// full disk) does not stop the others, and the error names every file that failed.
pub fn write_all(dir: &Path, interrupted: bool) -> anyhow::Result<SummaryDoc> {
    write_all_stopped(dir, interrupted, None)
}

/// The cells of the run's plan (its shard's, for a shard) that have no record.
fn not_run(dir: &Path, meta: Option<&RunMeta>, records: &[Record]) -> Vec<String> {
    let Ok(plan) = read_json::<crate::plan::Plan>(&dir.join(crate::run_dir::PLAN)) else {
        return Vec::new();
    };
    let shard = meta.and_then(|m| m.shard.as_ref());
    let seen: std::collections::BTreeSet<usize> = records.iter().map(|r| r.cell_index).collect();
    plan.cells
        .iter()
        .filter(|c| shard.is_none_or(|s| c.index % s.count as usize == s.index as usize))
        .filter(|c| !seen.contains(&c.index))
        .map(|c| c.id.clone())
        .collect()
}

/// [`write_all`] for a run that stopped early (`stopped`: why, e.g. results could not be
/// written): the report says so and lists the cells that never ran.
pub fn write_all_stopped(
    dir: &Path,
    interrupted: bool,
    stopped: Option<&str>,
) -> anyhow::Result<SummaryDoc> {
    let records_path = dir.join("records.jsonl");
    let (records, warnings) = record::read_all(&records_path)?;
    record::check_unique(&records_path, &records).map_err(|e| anyhow::anyhow!(e))?;
    let meta: Option<RunMeta> = read_json(&dir.join("meta.json")).ok();
    let idle: Option<IdleBaseline> = read_json(&dir.join("idle.json")).ok();
    let suite = meta.as_ref().map_or_else(String::new, |m| m.suite.clone());
    let mut doc = summarize(&suite, &records, interrupted);
    doc.stopped = stopped.map(str::to_string);
    if (interrupted || stopped.is_some()) && meta.as_ref().is_none_or(|m| m.parts.is_empty()) {
        doc.not_run = not_run(dir, meta.as_ref(), &records);
    }
    doc.warnings = warnings;
    if let Some(m) = &meta {
        doc.warnings.extend(run_warnings(m));
    }
    let mut failed: Vec<String> = Vec::new();
    fn put(failed: &mut Vec<String>, path: &Path, bytes: &[u8]) {
        if let Err(e) = crate::run_dir::write_atomic(path, bytes) {
            failed.push(e.to_string());
        }
    }
    let head = headline::headline(&doc, &records);
    let mut md = report_md(
        &doc,
        meta.as_ref(),
        idle.as_ref(),
        &headline::markdown(&head),
    );
    let extra: Vec<Table> = serving::serving_table(&doc, &records).into_iter().collect();
    for t in &extra {
        md.push_str(&table_md(t));
    }
    if let Some(slo) = suite_slo(dir) {
        let choices = crate::frontier::analyze(&crate::frontier::points(&records), &slo);
        md.push('\n');
        md.push_str(&crate::frontier::markdown(&choices, &slo));
    }
    put(&mut failed, &dir.join("report.md"), md.as_bytes());
    match serde_json::to_string_pretty(&doc) {
        Ok(j) => put(
            &mut failed,
            &dir.join("summary.json"),
            (j + "\n").as_bytes(),
        ),
        Err(e) => failed.push(format!("summary.json: {e}")),
    }
    put(
        &mut failed,
        &dir.join("summary.csv"),
        summary_csv(&doc).as_bytes(),
    );
    let chart_dir = dir.join("charts");
    if let Err(e) = std::fs::create_dir_all(&chart_dir) {
        failed.push(format!("cannot create {}: {e}", chart_dir.display()));
    }
    let mut embedded = Vec::new();
    let mut chart_warnings = Vec::new();
    let link_timelines = doc.cells.len() > html::INLINE_TIMELINES;
    for (file, title, svg) in charts_for(dir, &doc, &records, idle.as_ref()) {
        match svg {
            Ok(svg) => {
                put(&mut failed, &chart_dir.join(&file), svg.as_bytes());
                #[cfg(feature = "png")]
                match png::svg_to_png(&svg) {
                    Ok(bytes) => put(
                        &mut failed,
                        &chart_dir.join(file.replace(".svg", ".png")),
                        &bytes,
                    ),
                    Err(e) => chart_warnings.push(format!("{file}: no PNG: {e}")),
                }
                let inline = !(link_timelines && file.starts_with("timeline-"));
                embedded.push(html::Chart {
                    title,
                    file,
                    svg: inline.then_some(svg),
                });
            }
            Err(e) => chart_warnings.push(format!("chart {file} not drawn: {e}")),
        }
    }
    let mut doc_html = doc.clone();
    doc_html.warnings.extend(chart_warnings);
    put(
        &mut failed,
        &dir.join("report.html"),
        html::render(
            &doc_html,
            meta.as_ref(),
            idle.as_ref(),
            &head,
            &extra,
            &embedded,
        )
        .as_bytes(),
    );
    if !failed.is_empty() {
        anyhow::bail!(
            "the report of {} is incomplete: {}",
            dir.display(),
            failed.join("; ")
        );
    }
    Ok(doc)
}
