//! The self-contained HTML report: no external scripts, styles or fonts; every chart inline;
//! every string from a config, a model file or a command line escaped. The output is also
//! well-formed XML, so it can be checked mechanically.

use super::{CellSummary, SummaryDoc};
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::run_dir::{IdleBaseline, RunMeta};
use std::fmt::Write;

/// A chart to embed.
pub struct Chart {
    pub title: String,
    pub svg: String,
}

/// Escapes text for HTML/XML content and attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn fig(c: &CellSummary, m: Metric) -> String {
    super::median_with_ci(c, m, "<br/><small>", "</small>")
}

/// The figures of the summary table, in column order.
const COLUMNS: &[Metric] = &[
    Metric::JPerPrefillToken,
    Metric::JPerDecodeToken,
    Metric::JPerRequest,
    Metric::TokensPerJ,
    Metric::WhPer1000Queries,
    Metric::TtftS,
    Metric::TpotS,
    Metric::ItlP50S,
    Metric::ItlP99S,
    Metric::AvgPowerW,
    Metric::PeakPowerW,
];

/// The report page.
pub fn render(
    doc: &SummaryDoc,
    meta: Option<&RunMeta>,
    idle: Option<&IdleBaseline>,
    tables: &[super::Table],
    charts: &[Chart],
) -> String {
    let mut h = String::new();
    let title = format!("joulebench: {}", doc.suite);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; color: #111; max-width: 1100px; }}\n\
         table {{ border-collapse: collapse; font-size: 13px; }}\n\
         th, td {{ border: 1px solid #999; padding: 3px 6px; text-align: right; vertical-align: top; }}\n\
         th:first-child, td:first-child {{ text-align: left; }}\n\
         .est {{ font-weight: bold; }}\n\
         .warn {{ color: #333; }}\n\
         figure {{ margin: 1.5em 0; }}\n\
         pre {{ background: #f3f3f3; padding: 0.6em; overflow-x: auto; font-size: 12px; }}\n\
         </style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    if doc.interrupted {
        h.push_str("<p><strong>Interrupted:</strong> the figures cover the repetitions that finished.</p>\n");
    }
    if let Some(m) = meta {
        let _ = write!(
            h,
            "<h2>Run</h2>\n<table>\n<tr><th>started (UTC)</th><td>{}</td></tr>\n<tr><th>command</th><td>{}</td></tr>\n\
             <tr><th>CPU</th><td>{} ({} CPUs)</td></tr>\n<tr><th>governor / turbo</th><td>{} / {}</td></tr>\n\
             <tr><th>memory</th><td>{} GiB</td></tr>\n<tr><th>kernel</th><td>{}</td></tr>\n\
             <tr><th>joulebench</th><td>{} {}</td></tr>\n<tr><th>suite hash</th><td>{}</td></tr>\n</table>\n",
            esc(&crate::clock::stamp(m.started_unix_s as u64)),
            esc(&m.command_line.join(" ")),
            esc(&m.machine.cpu_model),
            m.machine.logical_cpus,
            esc(m.machine.governor.as_deref().unwrap_or("unknown")),
            esc(m.machine.turbo.as_deref().unwrap_or("unknown")),
            m.machine
                .memory_gib
                .map_or("?".into(), |g| format!("{g:.1}")),
            esc(m.machine.kernel.as_deref().unwrap_or("?")),
            esc(&m.joulebench_version),
            esc(m.git_commit.as_deref().unwrap_or("")),
            esc(&m.config_hash)
        );
        if let Some(t) = super::parts_table(m) {
            h.push_str(&table_html(&t));
        }
    }
    if let Some(i) = idle {
        let _ = writeln!(
            h,
            "<p>Idle baseline: {} W over {:.1} s ({}), subtracted in the net figures.</p>",
            i.total_w.map_or("n/a".into(), |w| format!("{w:.3}")),
            i.duration_s,
            esc(&format!("{:?}", i.provenance).to_lowercase())
        );
    }
    h.push_str("<h2>Summary</h2>\n<p>Medians over repetitions, with 95% bootstrap intervals in brackets. <span class=\"est\">ESTIMATED</span> cells have no energy sensor: their energy comes from a CPU-time model.</p>\n<table>\n<tr><th>cell</th><th>energy</th>");
    for m in COLUMNS {
        let _ = write!(h, "<th>{}</th>", esc(m.shown().heading));
    }
    h.push_str("<th>reps</th></tr>\n");
    for c in &doc.cells {
        let prov = match c.provenance {
            Some(Provenance::Estimated) => "<span class=\"est\">ESTIMATED</span>",
            Some(Provenance::Measured) => "measured",
            None => "none",
        };
        let values: String = COLUMNS
            .iter()
            .map(|&m| format!("<td>{}</td>", fig(c, m)))
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}{}</td><td>{prov}</td>{values}<td>{}</td></tr>",
            esc(&super::charts::cell_label(c)),
            if c.synthetic {
                " <small>(synthetic model)</small>"
            } else {
                ""
            },
            c.repetitions_ok
        );
    }
    h.push_str("</table>\n");
    if let Some(t) = super::concurrency_table(doc) {
        h.push_str(&table_html(&t));
    }
    for t in tables {
        h.push_str(&table_html(t));
    }
    h.push_str("<h2>Charts</h2>\n");
    for ch in charts {
        let svg = ch.svg.trim_start();
        let svg = if svg.starts_with("<?xml") {
            svg.split_once("?>")
                .map_or(svg, |(_, rest)| rest.trim_start())
        } else {
            svg
        };
        let _ = writeln!(
            h,
            "<figure>\n{svg}\n<figcaption>{}</figcaption>\n</figure>",
            esc(&ch.title)
        );
    }
    h.push_str("<h2>Provenance, failures and warnings</h2>\n<ul>\n");
    for c in &doc.cells {
        let engine = c.engine.as_ref().map_or(String::new(), |e| {
            format!(
                "; engine {} on {}, {} threads, prefill {}, decode {}",
                e.backend, e.device, e.threads, e.prefill_matmul, e.decode_matmul
            )
        });
        let _ = writeln!(
            h,
            "<li><strong>{}</strong>: energy {}{} ({} repetitions){}</li>",
            esc(&super::charts::cell_label(c)),
            esc(&c
                .provenance
                .map_or("none".into(), |p| format!("{p:?}").to_lowercase())),
            esc(&c
                .scope
                .as_ref()
                .map_or(String::new(), |s| format!(", scope {s}"))),
            c.repetitions_ok,
            esc(&engine)
        );
        for f in &c.failures {
            let _ = writeln!(
                h,
                "<li class=\"warn\">{}: <strong>failed</strong>: <pre>{}</pre></li>",
                esc(&c.cell),
                esc(f)
            );
        }
        for w in &c.warnings {
            let _ = writeln!(h, "<li class=\"warn\">{}: {}</li>", esc(&c.cell), esc(w));
        }
    }
    for w in &doc.warnings {
        let _ = writeln!(h, "<li class=\"warn\">{}</li>", esc(w));
    }
    h.push_str("</ul>\n<h2>How each figure was obtained</h2>\n<ul>\n\
        <li>Energy per phase comes from reading every counter at the request start, at the first token and at the last token (device synchronized first); decode energy is never a whole run minus a separate prefill run.</li>\n\
        <li>CPU energy is sum(package) + sum(dram) from RAPL (core and uncore are inside the package and never added; psys is reported on its own); GPU energy is NVML's energy counter where the GPU has one, else polled power integrated with the trapezoid rule. Without a sensor the CPU figure is the labelled ESTIMATE.</li>\n\
        <li>J per prefill token = prefill energy / prompt tokens; J per decode token = decode energy / generated tokens; tokens per joule counts generated tokens (input tokens for embeddings). Token counts come from the engine.</li>\n\
        <li>Net figures subtract idle power × phase duration, clamped at zero and flagged when negative.</li>\n\
        <li>TTFT = first token − request start; TPOT = (E2E − TTFT) / (output tokens − 1); ITL = the gaps between tokens; E2E = last token − request start.</li>\n\
        <li>Short generations are repeated inside one measured window (inner iterations) and divided, so the window spans several counter updates.</li>\n</ul>\n");
    if let Some(m) = meta {
        let _ = writeln!(
            h,
            "<h3>Meters</h3>\n<pre>{}</pre>",
            esc(&serde_json::to_string_pretty(&serde_json::json!({
                "sources": m.sources,
                "unavailable": m.unavailable,
                "rapl_domains": m.rapl_domains,
            }))
            .unwrap_or_default())
        );
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// A small table with its title and note.
fn table_html(t: &super::Table) -> String {
    let mut h = format!(
        "<h3>{}</h3>\n<p>{}</p>\n<table>\n<tr>{}</tr>\n",
        esc(&t.title),
        esc(&t.note),
        t.headers
            .iter()
            .map(|x| format!("<th>{}</th>", esc(x)))
            .collect::<String>()
    );
    for r in &t.rows {
        let _ = writeln!(
            h,
            "<tr>{}</tr>",
            r.iter()
                .map(|x| format!("<td>{}</td>", esc(x)))
                .collect::<String>()
        );
    }
    h.push_str("</table>\n");
    h
}
