//! The self-contained HTML report: no external scripts, styles or fonts; every chart inline;
//! every string from a config, a model file or a command line escaped. The output is also
//! well-formed XML, so it can be checked mechanically.

use super::{CellSummary, SummaryDoc};
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::run_meta::{IdleBaseline, RunMeta};
use std::fmt::Write;

/// A chart of the report: inline, or (past `INLINE_TIMELINES` cells) a link to its file.
pub struct Chart {
    pub title: String,
    /// The file under `charts/`.
    pub file: String,
    /// The SVG to inline; None links to the file instead.
    pub svg: Option<String>,
}

/// Per-cell timelines are inlined up to this many cells, linked from a list beyond.
pub const INLINE_TIMELINES: usize = 50;

const CSS: &str = "\
:root { color-scheme: light dark; --bg: #fff; --fg: #111; --muted: #555; --line: #bbb; --head: #f1f3f5; --accent: #0072b2; --warn: #a14500; --card: #fff; }\n\
@media (prefers-color-scheme: dark) { :root { --bg: #16181b; --fg: #e8e8e8; --muted: #a8a8a8; --line: #454a50; --head: #23272c; --accent: #56b4e9; --warn: #e69f00; --card: #f7f7f7; } }\n\
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; color: var(--fg); background: var(--bg); max-width: 1100px; line-height: 1.4; }\n\
a { color: var(--accent); }\n\
nav { font-size: 14px; margin: 0.5em 0 1.5em; }\n\
nav a { margin-right: 1em; }\n\
#headline { border-left: 4px solid var(--accent); padding: 0.2em 1em; background: var(--head); }\n\
#headline li { margin: 0.3em 0; }\n\
.warn { color: var(--warn); }\n\
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1em; }\n\
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: right; vertical-align: top; }\n\
th { background: var(--head); }\n\
th:first-child, td:first-child { text-align: left; }\n\
table.sortable th { cursor: pointer; }\n\
th[aria-sort=ascending]::after { content: ' \\25B2'; }\n\
th[aria-sort=descending]::after { content: ' \\25BC'; }\n\
.est { font-weight: bold; }\n\
figure { margin: 1.5em 0; }\n\
figure svg { max-width: 100%; height: auto; background: var(--card); border-radius: 4px; }\n\
figcaption { font-size: 13px; color: var(--muted); }\n\
pre { background: var(--head); padding: 0.6em; overflow-x: auto; font-size: 12px; }\n\
@media print { body { margin: 0; max-width: none; color: #000; background: #fff; } nav, .noprint { display: none; } figure, tr, #headline { break-inside: avoid; } a { color: #000; text-decoration: none; } h2 { break-after: avoid; } }\n";

/// Sorts a table by the column clicked (numbers by their `data-v`), without which the page
/// reads the same; in CDATA so the page stays well-formed XML.
const SCRIPT: &str = "//<![CDATA[
(function () {
  function key(td) {
    var v = td.getAttribute('data-v');
    if (v !== null && v !== '') { return parseFloat(v); }
    return td.textContent.trim().toLowerCase();
  }
  var tables = document.querySelectorAll('table.sortable');
  for (var t = 0; t < tables.length; t++) {
    (function (table) {
      var heads = table.querySelectorAll('thead th');
      for (var i = 0; i < heads.length; i++) {
        (function (th, col) {
          th.setAttribute('tabindex', '0');
          th.setAttribute('role', 'button');
          function go() {
            var body = table.tBodies[0];
            var rows = Array.prototype.slice.call(body.rows);
            var asc = th.getAttribute('aria-sort') !== 'ascending';
            for (var k = 0; k < heads.length; k++) { heads[k].removeAttribute('aria-sort'); }
            th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
            rows.sort(function (a, b) {
              var x = key(a.cells[col]), y = key(b.cells[col]);
              var nx = typeof x === 'number' && !isNaN(x), ny = typeof y === 'number' && !isNaN(y);
              var c = nx && ny ? x - y : nx ? -1 : ny ? 1 : x < y ? -1 : x > y ? 1 : 0;
              return asc ? c : -c;
            });
            for (var r = 0; r < rows.length; r++) { body.appendChild(rows[r]); }
          }
          th.addEventListener('click', go);
          th.addEventListener('keydown', function (e) {
            if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); go(); }
          });
        })(heads[i], i);
      }
    })(tables[t]);
  }
})();
//]]>";

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

fn fig(c: &CellSummary, m: Metric, intervals: bool) -> String {
    if intervals {
        super::median_with_ci(c, m, "<br/><small>", "</small>")
    } else {
        match c.metric(m) {
            Some(s) => {
                let sh = m.shown();
                format!("{:.p$}", s.median * sh.scale, p = sh.decimals)
            }
            None => "–".into(),
        }
    }
}

/// The figures of the summary table, in column order.
const COLUMNS: &[Metric] = &[
    Metric::JPerToken,
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

/// The report page: the answer first (headline), then the run, the tables (sortable), the
/// charts, provenance and method.
pub fn render(
    doc: &SummaryDoc,
    meta: Option<&RunMeta>,
    idle: Option<&IdleBaseline>,
    headline: &super::headline::Headline,
    tables: &[super::Table],
    charts: &[Chart],
) -> String {
    let mut h = String::new();
    let title = format!("joulebench: {}", doc.suite);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    h.push_str("<nav class=\"noprint\"><a href=\"#headline\">Headline</a><a href=\"#run\">Run</a><a href=\"#summary\">Summary</a><a href=\"#charts\">Charts</a><a href=\"#provenance\">Provenance and warnings</a><a href=\"#method\">Method</a></nav>\n");
    headline_html(&mut h, doc, headline);
    run_html(&mut h, doc, meta, idle);
    summary_html(&mut h, doc);
    if let Some(t) = super::eval_table(doc) {
        h.push_str(&table_html(&t));
    }
    if let Some(t) = super::concurrency_table(doc) {
        h.push_str(&table_html(&t));
    }
    for t in tables {
        h.push_str(&table_html(t));
    }
    charts_html(&mut h, charts);
    h.push_str("<h2 id=\"provenance\">Provenance, failures and warnings</h2>\n<ul>\n");
    provenance_html(&mut h, doc);
    for w in &doc.warnings {
        let _ = writeln!(h, "<li class=\"warn\">{}</li>", esc(w));
    }
    h.push_str("</ul>\n");
    method_html(&mut h, meta);
    let _ = write!(h, "<script>\n{SCRIPT}\n</script>\n</body>\n</html>\n");
    h
}

/// The run: interrupted or not, the machine, the parts of a merged run, the idle baseline.
fn run_html(h: &mut String, doc: &SummaryDoc, meta: Option<&RunMeta>, idle: Option<&IdleBaseline>) {
    h.push_str("<h2 id=\"run\">Run</h2>\n");
    if doc.interrupted {
        h.push_str("<p><strong>Interrupted:</strong> the figures cover the repetitions that finished.</p>\n");
    }
    if let Some(why) = &doc.stopped {
        let _ = writeln!(
            h,
            "<p><strong>Stopped before the end:</strong> {}. The figures cover what was recorded \
             before; <code>joulebench run --resume</code> on this folder runs the rest.</p>",
            esc(why)
        );
    }
    if !doc.not_run.is_empty() {
        let _ = writeln!(
            h,
            "<p><strong>Never ran ({}):</strong> {}.</p>",
            doc.not_run.len(),
            esc(&doc.not_run.join(", "))
        );
    }
    if let Some(m) = meta {
        let _ = write!(
            h,
            "<table>\n<tbody>\n<tr><th>started (UTC)</th><td>{}</td></tr>\n<tr><th>command</th><td>{}</td></tr>\n\
             <tr><th>CPU</th><td>{} ({} CPUs)</td></tr>\n<tr><th>governor / turbo</th><td>{} / {}</td></tr>\n\
             <tr><th>memory</th><td>{} GiB</td></tr>\n<tr><th>kernel</th><td>{}</td></tr>\n\
             <tr><th>joulebench</th><td>{} {}</td></tr>\n<tr><th>suite hash</th><td>{}</td></tr>\n</tbody>\n</table>\n",
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
}

/// The summary table: every cell, or past a size the most efficient first and every cell folded.
fn summary_html(h: &mut String, doc: &SummaryDoc) {
    h.push_str("<h2 id=\"summary\">Summary</h2>\n");
    let all: Vec<&CellSummary> = doc.cells.iter().collect();
    if all.len() <= INLINE_TIMELINES {
        h.push_str("<p>Medians over repetitions, with 95% bootstrap intervals in brackets; click a heading to sort. <span class=\"est\">ESTIMATED</span> cells have no energy sensor: their energy comes from a CPU-time model.</p>\n");
        summary_table(h, &all, true);
    } else {
        // A large run: the most efficient cells first, every cell in a folded table (laid out
        // only when opened, so the page opens fast); intervals are in summary.csv.
        let (top, _) = super::charts::top_cells(&all, |c| c.energy_per_token_joules);
        let _ = writeln!(
            h,
            "<p>The {} most efficient of {} cells by energy per generated token (medians over repetitions, 95% intervals in brackets); every cell follows in the folded table below (medians only: the intervals of all cells are in summary.csv and summary.json). Click a heading to sort. <span class=\"est\">ESTIMATED</span> cells have no energy sensor.</p>",
            top.len(),
            all.len()
        );
        summary_table(h, &top, true);
        let _ = writeln!(
            h,
            "<details id=\"all-cells\"><summary>All {} cells</summary>",
            all.len()
        );
        summary_table(h, &all, false);
        h.push_str("</details>\n");
    }
}

/// Every chart inline, or linked past a size.
fn charts_html(h: &mut String, charts: &[Chart]) {
    h.push_str("<h2 id=\"charts\">Charts</h2>\n");
    let linked: Vec<&Chart> = charts.iter().filter(|c| c.svg.is_none()).collect();
    for ch in charts {
        let Some(svg) = &ch.svg else { continue };
        let svg = svg.trim_start();
        let svg = if svg.starts_with("<?xml") {
            svg.split_once("?>")
                .map_or(svg, |(_, rest)| rest.trim_start())
        } else {
            svg
        };
        let _ = writeln!(
            h,
            "<figure id=\"{}\">\n{svg}\n<figcaption>{} <a class=\"noprint\" href=\"charts/{}\">(file)</a></figcaption>\n</figure>",
            esc(&ch.file.replace('.', "-")),
            esc(&ch.title),
            esc(&ch.file)
        );
    }
    if !linked.is_empty() {
        let _ = writeln!(
            h,
            "<h3>Power timelines</h3>\n<p>{} charts, one per cell, are in <code>charts/</code> (not inlined past {INLINE_TIMELINES} cells, to keep this page light).</p>\n<details><summary>Links to every timeline</summary>\n<ul class=\"timelines\">",
            linked.len()
        );
        for ch in linked {
            let _ = writeln!(
                h,
                "<li><a href=\"charts/{}\">{}</a></li>",
                esc(&ch.file),
                esc(&ch.title)
            );
        }
        h.push_str("</ul>\n</details>\n");
    }
}

/// How each figure was obtained, and the meters.
fn method_html(h: &mut String, meta: Option<&RunMeta>) {
    h.push_str("<h2 id=\"method\">How each figure was obtained</h2>\n<ul>\n");
    for l in super::method::lines(meta.map(|m| &m.sources)) {
        let _ = writeln!(h, "<li>{}</li>", esc(&l));
    }
    h.push_str("</ul>\n");
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
}

/// The summary table of `cells` (sortable), with or without intervals.
fn summary_table(h: &mut String, cells: &[&CellSummary], intervals: bool) {
    h.push_str("<table class=\"sortable\">\n<thead><tr><th>cell</th><th>energy</th>");
    for m in COLUMNS {
        let _ = write!(h, "<th>{}</th>", esc(m.shown().heading));
    }
    h.push_str("<th>reps</th></tr></thead>\n<tbody>\n");
    for c in cells {
        let prov = match c.provenance {
            Some(Provenance::Estimated) => "<span class=\"est\">ESTIMATED</span>",
            Some(Provenance::Measured) => "measured",
            None => "none",
        };
        let values: String = COLUMNS
            .iter()
            .map(|&m| {
                let v = c
                    .metric(m)
                    .map_or(String::new(), |s| format!("{}", s.median * m.shown().scale));
                format!("<td data-v=\"{v}\">{}</td>", fig(c, m, intervals))
            })
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}{}</td><td>{prov}</td>{values}<td data-v=\"{}\">{}</td></tr>",
            esc(&super::charts::cell_label(c)),
            if c.synthetic {
                " <small>(synthetic model)</small>"
            } else {
                ""
            },
            c.repetitions_ok,
            c.repetitions_ok
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

/// Names of cells, at most five, then how many more.
fn some_cells(cells: &[&str]) -> String {
    if cells.len() <= 5 {
        cells.join(", ")
    } else {
        format!("{} and {} more", cells[..5].join(", "), cells.len() - 5)
    }
}

/// Each cell's energy provenance and engine, failures and warnings. Cells that say the same
/// are listed once with their names (a thousand-cell run stays short); failures per cell.
fn provenance_html(h: &mut String, doc: &SummaryDoc) {
    let mut lines: Vec<(String, Vec<&str>)> = Vec::new();
    let mut warns: Vec<(String, Vec<&str>)> = Vec::new();
    fn add<'a>(v: &mut Vec<(String, Vec<&'a str>)>, text: String, cell: &'a str) {
        match v.iter_mut().find(|(t, _)| *t == text) {
            Some((_, cells)) => cells.push(cell),
            None => v.push((text, vec![cell])),
        }
    }
    for c in &doc.cells {
        let engine = c.engine.as_ref().map_or(String::new(), |e| {
            format!(
                "; engine {} on {}, {} threads, prefill {}, decode {}",
                e.backend, e.device, e.threads, e.prefill_matmul, e.decode_matmul
            )
        });
        let text = format!(
            "energy {}{} ({} repetitions){engine}",
            c.provenance
                .map_or("none".into(), |p| format!("{p:?}").to_lowercase()),
            c.scope
                .as_ref()
                .map_or(String::new(), |s| format!(", scope {s}")),
            c.repetitions_ok
        );
        if doc.cells.len() > INLINE_TIMELINES {
            add(&mut lines, text, &c.cell);
        } else {
            let _ = writeln!(
                h,
                "<li><strong>{}</strong>: {}</li>",
                esc(&super::charts::cell_label(c)),
                esc(&text)
            );
        }
        for f in &c.failures {
            let _ = writeln!(
                h,
                "<li class=\"warn\">{}: <strong>failed</strong>: <pre>{}</pre></li>",
                esc(&c.cell),
                esc(f)
            );
        }
        for w in &c.warnings {
            add(&mut warns, w.clone(), &c.cell);
        }
    }
    for (text, cells) in &lines {
        let _ = writeln!(
            h,
            "<li><strong>{} cells</strong> ({}): {}</li>",
            cells.len(),
            esc(&some_cells(cells)),
            esc(text)
        );
    }
    for (w, cells) in &warns {
        let who = if cells.len() == 1 {
            cells[0].to_string()
        } else {
            format!("{} cells ({})", cells.len(), some_cells(cells))
        };
        let _ = writeln!(h, "<li class=\"warn\">{}: {}</li>", esc(&who), esc(w));
    }
}

/// The headline section: the answer per workload, the models ranked, and the warnings.
fn headline_html(h: &mut String, doc: &SummaryDoc, hl: &super::headline::Headline) {
    h.push_str("<section id=\"headline\">\n<h2>Headline</h2>\n");
    if hl.best.is_empty() && hl.evals.is_empty() {
        h.push_str("<p>No cell has a usable energy per token (see the warnings below).</p>\n");
    } else if !hl.best.is_empty() {
        h.push_str("<p>The most efficient cell per workload (energy per generated token, median over repetitions):</p>\n<ul>\n");
        for b in &hl.best {
            let _ = writeln!(h, "<li>{}</li>", esc(&b.sentence()));
        }
        h.push_str("</ul>\n");
    }
    if !hl.evals.is_empty() {
        h.push_str("<p>What a joule buys, per evaluation task:</p>\n<ul>\n");
        for e in &hl.evals {
            let _ = writeln!(h, "<li>{}</li>", esc(&e.sentence()));
        }
        h.push_str("</ul>\n");
    }
    if let Some(n) = &hl.synthetic_note {
        let _ = writeln!(h, "<p>{}</p>", esc(n));
    }
    if let Some(o) = hl.overall_sentence() {
        let _ = writeln!(h, "<p>{}</p>", esc(&o));
    }
    if !hl.models.is_empty() {
        let ranked: Vec<String> = hl
            .models
            .iter()
            .map(|(m, v, r)| format!("{m} {} ({r:.2}x)", super::headline::mj(*v)))
            .collect();
        let _ = writeln!(
            h,
            "<p>Models, least energy per token first (median over their cells): {}.</p>",
            esc(&ranked.join("; "))
        );
    }
    if !hl.warnings.is_empty() {
        h.push_str("<p><strong>Before drawing conclusions:</strong></p>\n<ul>\n");
        for w in &hl.warnings {
            let _ = writeln!(h, "<li class=\"warn\">{}</li>", esc(w));
        }
        h.push_str("</ul>\n");
    }
    let _ = writeln!(
        h,
        "<p><small>{} cells; full figures in the summary table and summary.csv.</small></p>\n</section>",
        doc.cells.len()
    );
}

/// A small table with its title and note (sortable; numbers sort as numbers).
fn table_html(t: &super::Table) -> String {
    let mut h = format!(
        "<h3>{}</h3>\n<p>{}</p>\n<table class=\"sortable\">\n<thead><tr>{}</tr></thead>\n<tbody>\n",
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
                .map(|x| {
                    // The leading number of a figure ("1.23 [1.1, 1.4]") is its sort key.
                    let lead = x.split([' ', '/']).next().unwrap_or("");
                    match lead.parse::<f64>() {
                        Ok(v) if v.is_finite() => format!("<td data-v=\"{v}\">{}</td>", esc(x)),
                        _ => format!("<td>{}</td>", esc(x)),
                    }
                })
                .collect::<String>()
        );
    }
    h.push_str("</tbody>\n</table>\n");
    h
}
