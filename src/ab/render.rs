//! The A/B verdict as text, Markdown and the paired chart.

use super::{AbReport, AbRow};
use crate::compare::Verdict;
use crate::meter::Provenance;

pub(super) fn pct(x: f64) -> String {
    format!("{:+.2}%", (x - 1.0) * 100.0)
}

/// A sequence's interval, or what an unbounded one means.
fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or("unbounded yet".into(), |c| {
        format!("[{}, {}]", pct(c[0]), pct(c[1]))
    })
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Regressed => "REGRESSED",
        Verdict::Improved => "improved",
        Verdict::Unchanged => "unchanged",
        Verdict::Inconclusive => "inconclusive",
    }
}

fn cells(r: &AbRow) -> [String; 8] {
    let s = r.stats.as_ref();
    [
        s.map_or("-".into(), |s| pct(s.ratio)),
        match (&r.sequence, s) {
            (Some(q), _) => interval(q.ci),
            (None, Some(s)) => format!("[{}, {}]", pct(s.ci[0]), pct(s.ci[1])),
            _ => "-".into(),
        },
        r.p_holm.map_or("-".into(), |p| format!("{p:.3}")),
        r.base_drift
            .map_or("-".into(), |d| format!("{:.1}%", d * 100.0)),
        format!("{}", r.pairs),
        match r.provenance {
            Some(Provenance::Estimated) => " (ESTIMATED)".into(),
            _ => String::new(),
        },
        s.map_or("-".into(), |s| pct(s.geo_ratio)),
        r.noise.map_or("-".into(), |n| format!("{:.1}%", n * 100.0)),
    ]
}

/// What the job asked for: a fixed number of pairs, or the sequential design's budgets.
fn design(rep: &AbReport) -> String {
    match rep.max_pairs {
        Some(max) if rep.design == "sequential" => format!(
            "sequential: ABBA blocks until every row is decided, at most {max} pairs{}",
            rep.max_minutes
                .map_or(String::new(), |m| format!(" and {m} minutes"))
        ),
        _ => format!("{} pairs asked, ABBA", rep.pairs_requested),
    }
}

/// How each (profile, workload) of a sequential job ended, one line each.
fn stop_lines(rep: &AbReport) -> Vec<String> {
    rep.stops
        .iter()
        .map(|s| {
            format!(
                "{} / {}: stopped after {} pairs: {}",
                s.profile,
                s.workload,
                s.pairs,
                s.reason.text()
            )
        })
        .collect()
}

/// The looks worth printing: the first, every doubling of the pairs, the deciding one and the
/// last.
fn key_looks(q: &super::SeqRow) -> Vec<&super::sequential::Look> {
    let n = q.looks.len();
    q.looks
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            *i == 0 || *i + 1 == n || l.pairs.is_power_of_two() || Some(l.pairs) == q.decided_at
        })
        .map(|(_, l)| l)
        .collect()
}

/// The verdict as a terminal table.
pub fn text(rep: &AbReport) -> String {
    let mut s = format!(
        "A/B {} : candidate {} vs base {} ({}; threshold {:.1}%, alpha {}, Holm over {} \
         rows)\nrun folder: {}\n",
        rep.suite,
        rep.candidate,
        rep.base,
        design(rep),
        rep.threshold * 100.0,
        rep.alpha,
        rep.rows.len(),
        rep.run_dir
    );
    for l in stop_lines(rep) {
        s.push_str(&l);
        s.push('\n');
    }
    if let Some(w) = &rep.not_comparable {
        s.push_str(&format!("NOT COMPARABLE: {w}\n"));
    }
    s.push_str(&format!(
        "{:<12} {:<16} {:<28} {:>9} {:>22} {:>7} {:>11} {:>11} {:>5}  verdict\n",
        "profile",
        "workload",
        "metric",
        "change",
        if rep.design == "sequential" {
            "anytime interval"
        } else {
            "95% interval"
        },
        "p(Holm)",
        "base drift",
        "pair noise",
        "pairs"
    ));
    for r in &rep.rows {
        let c = cells(r);
        s.push_str(&format!(
            "{:<12} {:<16} {:<28} {:>9} {:>22} {:>7} {:>11} {:>11} {:>5}  {}{}\n",
            r.profile,
            r.workload,
            r.metric,
            c[0],
            c[1],
            c[2],
            c[3],
            c[7],
            c[4],
            verdict_word(r.verdict),
            c[5]
        ));
    }
    for w in &rep.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

/// The verdict as Markdown (fits a GitHub step summary).
pub fn markdown(rep: &AbReport) -> String {
    let head = match rep.exit_code() {
        0 => "✅ no efficiency regression",
        1 => "❌ efficiency regression",
        _ => "⚠️ nothing conclusive",
    };
    let head = if rep.design == "sequential" && rep.exit_code() == 2 && rep.not_comparable.is_none()
    {
        "⚠️ undecided: not enough pairs at this machine's noise"
    } else {
        head
    };
    let mut s = format!(
        "### joulebench A/B: {head}\n\nSuite `{}`: candidate `{}` against base `{}`, {} in \
         one job; threshold {:.1}%, alpha {} with Holm's correction over {} \
         rows. *Change* is the Hodges-Lehmann estimate of the pairs' ratios (one stalled \
         repetition does not move it; the geometric-mean ratio beside it does). *Base drift* \
         is how much the base itself moved across blocks during the job: what comparing runs \
         made at different times would have mixed into the result. *Pair noise* is how much the \
         pairs' ratios scatter (a robust standard deviation); the 95% interval is about 4 times \
         it over the square root of the pairs.\n\n",
        rep.suite,
        rep.candidate,
        rep.base,
        design(rep),
        rep.threshold * 100.0,
        rep.alpha,
        rep.rows.len()
    );
    if rep.design == "sequential" {
        s.push_str(
            "The job looked after every ABBA block. Each row's *anytime interval* is a confidence \
             sequence (Gaussian-mixture sequential t test) at alpha over the rows the job could \
             gate: it holds at every look at once, so stopping when it is clear does not raise \
             the false-alarm rate. A row is decided when its interval lies beyond the threshold \
             (regressed or improved) or its bad end inside it (unchanged: a regression of that \
             size is ruled out).\n\n",
        );
        for l in stop_lines(rep) {
            s.push_str(&format!("- {l}\n"));
        }
        s.push('\n');
    }
    if let Some(w) = &rep.not_comparable {
        s.push_str(&format!("**Not comparable:** {w}\n\n"));
    }
    s.push_str(if rep.design == "sequential" {
        "| profile | workload | metric | change | anytime interval | geo-mean ratio | p (Holm) | base drift | pair noise | pairs | verdict |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
    } else {
        "| profile | workload | metric | change | 95% interval | geo-mean ratio | p (Holm) | base drift | pair noise | pairs | verdict |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
    });
    for r in &rep.rows {
        let c = cells(r);
        let v = match r.verdict {
            Verdict::Regressed => "**REGRESSED**".to_string(),
            v => verdict_word(v).to_string(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {v}{} |\n",
            r.profile, r.workload, r.metric, c[0], c[1], c[6], c[2], c[3], c[7], c[4], c[5]
        ));
    }
    let seq_rows: Vec<&AbRow> = rep.rows.iter().filter(|r| r.sequence.is_some()).collect();
    if !seq_rows.is_empty() {
        s.push_str("\n#### The looks\n\n| profile | workload | metric | pairs | interval | decision |\n|---|---|---|---:|---:|---|\n");
        for r in seq_rows {
            let Some(q) = &r.sequence else { continue };
            for l in key_looks(q) {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    r.profile,
                    r.workload,
                    r.metric,
                    l.pairs,
                    interval(l.ci),
                    verdict_word(l.verdict)
                ));
            }
        }
        s.push_str("\nEvery look is in ab.json (`rows[].sequence.looks`).\n");
    }
    for w in &rep.warnings {
        s.push_str(&format!("\n> warning: {w}\n"));
    }
    s
}

/// Per-pair ratios over the job with each row's interval, and the base's own drift: one SVG.
pub fn chart_svg(rep: &AbReport, base_series: &[(String, Vec<(u32, f64)>)]) -> String {
    use plotters::prelude::*;
    let rows: Vec<&AbRow> = rep.rows.iter().filter(|r| r.stats.is_some()).collect();
    let h = 160 * (rows.len().max(1) as u32) + 60;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (900, h)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let (title, body) = root.split_vertically(40);
        let _ = title.draw(&Text::new(
            format!(
                "A/B in one job: {} vs {} (per-pair ratio; base drift dashed)",
                rep.candidate, rep.base
            ),
            (10, 12),
            ("sans-serif", 16),
        ));
        let areas = body.split_evenly((rows.len().max(1), 1));
        for (area, r) in areas.iter().zip(&rows) {
            let Some(s) = &r.stats else { continue };
            let n = s.pair_ratios.len() as u32;
            let base = base_series
                .iter()
                .find(|(k, _)| *k == format!("{}|{}|{}", r.profile, r.workload, r.metric))
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let base_mean = base.iter().map(|x| x.1).sum::<f64>() / base.len().max(1) as f64;
            let base_rel: Vec<(u32, f64)> = base
                .iter()
                .map(|&(p, v)| (p, if base_mean > 0.0 { v / base_mean } else { 1.0 }))
                .collect();
            let all = s
                .pair_ratios
                .iter()
                .chain(base_rel.iter().map(|x| &x.1))
                .chain(s.ci.iter());
            let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
            let pad = ((hi - lo) * 0.1).max(0.005);
            let Ok(mut chart) = ChartBuilder::on(area)
                .margin(8)
                .caption(
                    format!(
                        "{} / {} / {}: {}",
                        r.profile,
                        r.workload,
                        r.metric,
                        verdict_word(r.verdict)
                    ),
                    ("sans-serif", 13),
                )
                .x_label_area_size(24)
                .y_label_area_size(56)
                .build_cartesian_2d(0.5f64..(n as f64 + 0.5), (lo - pad)..(hi + pad))
            else {
                continue;
            };
            let _ = chart
                .configure_mesh()
                .x_desc("pair")
                .y_desc("ratio")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .draw();
            match &r.sequence {
                // A sequential row: its interval narrowing look by look, and the threshold.
                Some(q) => {
                    let band: Vec<(f64, f64, f64)> = q
                        .looks
                        .iter()
                        .map(|l| {
                            let [a, b] = l.ci.unwrap_or([f64::NEG_INFINITY, f64::INFINITY]);
                            (l.pairs as f64, a.max(lo - pad), b.min(hi + pad))
                        })
                        .collect();
                    let _ = chart.draw_series(band.windows(2).map(|w| {
                        Rectangle::new(
                            [(w[0].0, w[1].1), (w[1].0, w[1].2)],
                            RGBColor(0, 114, 178).mix(0.15).filled(),
                        )
                    }));
                    for edge in [1.0 + rep.threshold, 1.0 - rep.threshold] {
                        if edge > lo - pad && edge < hi + pad {
                            let _ = chart.draw_series(DashedLineSeries::new(
                                [(0.5, edge), (n as f64 + 0.5, edge)],
                                3,
                                3,
                                BLACK.mix(0.4).stroke_width(1),
                            ));
                        }
                    }
                }
                None => {
                    let _ = chart.draw_series(std::iter::once(Rectangle::new(
                        [(0.5, s.ci[0]), (n as f64 + 0.5, s.ci[1])],
                        RGBColor(0, 114, 178).mix(0.15).filled(),
                    )));
                }
            }
            let _ = chart.draw_series(LineSeries::new(
                [(0.5, 1.0), (n as f64 + 0.5, 1.0)],
                BLACK.mix(0.5),
            ));
            let _ = chart.draw_series(s.pair_ratios.iter().enumerate().map(|(i, &v)| {
                Circle::new((i as f64 + 1.0, v), 4, RGBColor(0, 114, 178).filled())
            }));
            let _ = chart.draw_series(DashedLineSeries::new(
                base_rel.iter().map(|&(p, v)| (p as f64, v)),
                4,
                3,
                RGBColor(213, 94, 0).stroke_width(1),
            ));
        }
    }
    buf
}
