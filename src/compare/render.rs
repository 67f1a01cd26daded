//! How a comparison reads: plain text for a terminal, Markdown for a CI step summary, and an SVG
//! chart of every row's ratio with its interval.

use super::{Comparison, Row, Verdict};
use crate::meter::Provenance;
use std::fmt::Write;

fn pct(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{:+.1}%", (r - 1.0) * 100.0))
}

fn ci(r: Option<[f64; 2]>) -> String {
    r.map_or("n/a".into(), |[a, b]| {
        format!("[{:+.1}%, {:+.1}%]", (a - 1.0) * 100.0, (b - 1.0) * 100.0)
    })
}

/// Plain text.
pub fn text(c: &Comparison) -> String {
    let mut s = format!("joulebench compare: {} -> {}\n", c.base, c.cand);
    if let Some(why) = &c.not_comparable {
        let _ = writeln!(s, "NOT COMPARABLE: {why}");
    } else if !c.rows.is_empty() && c.nothing_conclusive() {
        let _ = writeln!(
            s,
            "NOTHING COMPARED: every row is inconclusive (fewer than {} repetitions on a side; \
             5 or more are recommended)",
            super::MIN_REPETITIONS
        );
    }
    for r in &c.rows {
        let _ = writeln!(
            s,
            "  {:<12} {} / {} / {} {}: {} {} (n={}/{}){}",
            format!("{:?}", r.verdict).to_uppercase(),
            r.model,
            r.profile,
            r.workload,
            r.metric,
            pct(r.ratio),
            ci(r.ci),
            r.n_base,
            r.n_cand,
            if r.provenance == Some(Provenance::Estimated) {
                " [ESTIMATED]"
            } else {
                ""
            }
        );
    }
    for u in &c.unmatched {
        let _ = writeln!(s, "  only on one side: {u}");
    }
    for w in &c.warnings {
        let _ = writeln!(s, "  warning: {w}");
    }
    s
}

use crate::report::markdown::md_escape as md;

/// Markdown for a pull-request comment or a CI step summary.
pub fn markdown(c: &Comparison) -> String {
    let mut s = String::from("## joulebench efficiency check\n\n");
    let regressions = c
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Regressed)
        .count();
    let _ = writeln!(
        s,
        "{}\n",
        match (&c.not_comparable, regressions) {
            (Some(why), _) => format!("**Not comparable**: {}", md(why)),
            (None, 0) => "No regression beyond the threshold.".to_string(),
            (None, n) => format!("**{n} regression(s)** beyond the threshold."),
        }
    );
    let _ = writeln!(
        s,
        "Baseline `{}` ({}), started {}; candidate `{}`. Threshold {:.1}%, {}% intervals (seeded bootstrap of the ratio of medians).\n",
        md(&c.base),
        md(&c.base_fingerprint),
        crate::clock::stamp(c.base_started_unix_s as u64),
        md(&c.cand),
        c.threshold * 100.0,
        ((1.0 - c.alpha) * 100.0).round()
    );
    if !c.rows.is_empty() {
        s.push_str("| model | profile | workload | metric | energy | baseline | candidate | change | interval | verdict |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &c.rows {
            let strong = matches!(r.verdict, Verdict::Regressed | Verdict::Improved);
            let b = |t: String| if strong { format!("**{t}**") } else { t };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                md(&r.model),
                md(&r.profile),
                md(&r.workload),
                r.metric,
                match r.provenance {
                    Some(Provenance::Estimated) => "ESTIMATED",
                    Some(Provenance::Measured) => "measured",
                    None => "n/a",
                },
                r.base_median.map_or("n/a".into(), |v| format!("{v:.4e}")),
                r.cand_median.map_or("n/a".into(), |v| format!("{v:.4e}")),
                b(pct(r.ratio)),
                ci(r.ci),
                b(format!("{:?}", r.verdict).to_lowercase()),
            );
        }
    }
    for u in &c.unmatched {
        let _ = writeln!(s, "\n- only on one side: {}", md(u));
    }
    for w in &c.warnings {
        let _ = writeln!(s, "\n- warning: {}", md(w));
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG chart: each row's ratio with its interval, and the threshold band around 1.
pub fn chart_svg(c: &Comparison) -> String {
    let rows: Vec<&Row> = c.rows.iter().filter(|r| r.ratio.is_some()).collect();
    let (w, left, right, top, row_h) = (900.0, 360.0, 40.0, 50.0, 26.0);
    let h = top + row_h * rows.len().max(1) as f64 + 50.0;
    let lo = rows
        .iter()
        .filter_map(|r| r.ci.map(|x| x[0]).or(r.ratio))
        .fold(1.0 - 2.0 * c.threshold, f64::min)
        .min(0.9);
    let hi = rows
        .iter()
        .filter_map(|r| r.ci.map(|x| x[1]).or(r.ratio))
        .fold(1.0 + 2.0 * c.threshold, f64::max)
        .max(1.1);
    let x = |v: f64| left + (v - lo) / (hi - lo) * (w - left - right);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"15\">Candidate / baseline (ratio of medians, {}% interval)</text>\n",
        left,
        ((1.0 - c.alpha) * 100.0).round()
    );
    let (b0, b1) = (x(1.0 - c.threshold), x(1.0 + c.threshold));
    let _ = writeln!(
        s,
        "<rect x=\"{b0:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#dddddd\"/>",
        b1 - b0,
        h - top - 40.0
    );
    let _ = writeln!(
        s,
        "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{1:.1}\" stroke=\"black\"/>",
        x(1.0),
        h - 40.0
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * (i as f64 + 0.5);
        let label = format!(
            "{} / {} / {} · {}",
            r.model, r.profile, r.workload, r.metric
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y + 4.0,
            esc(&label)
        );
        if let Some([a, b]) = r.ci {
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"black\" stroke-width=\"2\"/>",
                x(a),
                x(b)
            );
        }
        let (fill, shape) = match r.verdict {
            Verdict::Regressed => ("black", "rect"),
            Verdict::Improved => ("white", "rect"),
            _ => ("gray", "circle"),
        };
        let px = x(r.ratio.unwrap_or(1.0));
        if shape == "rect" {
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{fill}\" stroke=\"black\"><title>{}</title></rect>",
                px - 5.0,
                y - 5.0,
                esc(&format!("{:?}", r.verdict))
            );
        } else {
            let _ = writeln!(
                s,
                "<circle cx=\"{px:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{fill}\" stroke=\"black\"/>"
            );
        }
    }
    for v in [lo, 1.0 - c.threshold, 1.0, 1.0 + c.threshold, hi] {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:+.0}%</text>",
            x(v),
            h - 22.0,
            (v - 1.0) * 100.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">change vs baseline (gray band: ±{:.0}% threshold; squares: significant beyond it)</text>",
        (left + w - right) / 2.0,
        h - 6.0,
        c.threshold * 100.0
    );
    s.push_str("</svg>\n");
    s
}
