//! Charts drawn with plotters into SVG strings (pure: data in, SVG out). One colour per model
//! (Okabe-Ito) across every chart, one marker per profile, dashes for estimated energy, the
//! provenance under every title; long names go in legends.

use super::CellSummary;
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::record::{Record, Status};
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::collections::BTreeMap;

mod axis;
mod energy;
mod heatmap;
mod load;
pub mod style;
mod timeline;
use axis::{Axis, label};
pub use energy::{TOP_N, energy_per_token, energy_vs_size, phase_share, top_cells};
pub use heatmap::heatmap;
pub use load::load_curve;
use style::{INK, MUTED, Style, header, marker};
pub use timeline::{TraceRow, decimate, power_timeline, read_trace};

const W: u32 = 960;

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("chart: {e:?}")
}

/// A series colour by index (charts with no model to colour by: load points, trace domains).
fn series(i: usize) -> RGBColor {
    style::PALETTE[i % style::PALETTE.len()]
}

/// A short, stable name for a cell in charts and tables. Flags (estimated energy, synthetic
/// models) are said once, in the caption or a column, not repeated per row.
pub fn cell_label(c: &CellSummary) -> String {
    style::short(&format!("{} · {} · {}", c.model, c.profile, c.workload), 56)
}

/// `cell_label` with its flags, for a chart of one cell (a timeline has no other caption).
pub fn cell_label_flagged(c: &CellSummary) -> String {
    let mut s = cell_label(c);
    if c.provenance == Some(Provenance::Estimated) {
        s.push_str(", ESTIMATED energy");
    }
    if c.synthetic {
        s.push_str(", synthetic model");
    }
    s
}

/// A small chart that says why there is nothing to draw.
fn no_data(what: &str) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, 60)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        root.draw(&Text::new(what.to_string(), (20, 25), ("sans-serif", 14)))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn metric(c: &CellSummary, m: Metric) -> Option<(f64, Option<[f64; 2]>)> {
    c.metric(m).filter(|s| s.median.is_finite()).map(|s| {
        (
            s.median,
            s.bootstrap_ci95
                .filter(|c| c[0].is_finite() && c[1].is_finite()),
        )
    })
}

/// A polyline in pixels, dashed for estimated energy.
fn line<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    pts: Vec<(i32, i32)>,
    colour: RGBColor,
    dashed: bool,
) -> Result<()> {
    area.draw(&PathElement::new(pts, style::stroke(colour, 2, dashed)))
        .map_err(err)?;
    Ok(())
}

/// The legend of models (colour) and profiles (marker), wrapped in rows from pixel row `y`;
/// returns the row after it.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    style: &Style,
    models: &[&String],
    profiles: &[&String],
    y: i32,
) -> Result<i32> {
    let mut y = y;
    let text = |s: &str| style::short(s, 40);
    for (k, m) in models.iter().enumerate() {
        if k > 0 && k % 3 == 0 {
            y += 18;
        }
        let x = 14 + 310 * (k % 3) as i32;
        area.draw(&Rectangle::new(
            [(x, y), (x + 12, y + 12)],
            style.colour(m).filled(),
        ))
        .map_err(err)?;
        area.draw(&Text::new(
            text(m),
            (x + 18, y),
            ("sans-serif", 12).into_font().color(&INK),
        ))
        .map_err(err)?;
    }
    if !profiles.is_empty() {
        y += 20;
        for (k, p) in profiles.iter().enumerate() {
            if k > 0 && k % 4 == 0 {
                y += 18;
            }
            let x = 14 + 232 * (k % 4) as i32;
            marker(area, (x + 6, y + 6), style.marker(p), INK)?;
            area.draw(&Text::new(
                text(p),
                (x + 16, y),
                ("sans-serif", 12).into_font().color(&INK),
            ))
            .map_err(err)?;
        }
    }
    Ok(y + 20)
}

fn rows_for(n: usize, per_row: usize) -> i32 {
    n.div_ceil(per_row) as i32
}

/// Latency against energy: one point per cell (colour: model, marker: profile), the Pareto
/// frontier (lower is better on both) drawn; cells numbered when there are few enough.
pub fn latency_energy(cells: &[CellSummary], style: &Style) -> Result<String> {
    let pts: Vec<(usize, f64, f64)> = cells
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let x = metric(c, Metric::TpotS)
                .or_else(|| metric(c, Metric::E2eS))?
                .0
                * 1e3;
            let y = c.energy_per_token_joules? * 1e3;
            (x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite()).then_some((i, x, y))
        })
        .collect();
    if pts.is_empty() {
        return no_data("Latency vs energy per token: no cell has both figures");
    }
    let numbered = pts.len() <= 20;
    let models: Vec<&String> = style
        .models()
        .iter()
        .filter(|m| pts.iter().any(|p| &cells[p.0].model == *m))
        .collect();
    let profiles: Vec<&String> = style
        .profiles()
        .iter()
        .filter(|m| pts.iter().any(|p| &cells[p.0].profile == *m))
        .collect();
    let (top, bottom) = (64, 420);
    let legend_h = 18 * (rows_for(models.len(), 3) + rows_for(profiles.len(), 4)) + 40;
    let list_h = if numbered { 18 * pts.len() as i32 } else { 0 };
    let h = (bottom + 60 + legend_h + list_h) as u32;
    let x = Axis::fit(
        &pts.iter().map(|p| p.1).collect::<Vec<_>>(),
        110,
        W as i32 - 40,
        false,
        None,
    );
    let y = Axis::fit(
        &pts.iter().map(|p| p.2).collect::<Vec<_>>(),
        bottom,
        top,
        false,
        None,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        header(
            &root,
            "Latency against energy per token (line: Pareto frontier, nothing better on both)",
            style,
        )?;
        x.draw_x(
            &root,
            bottom,
            top,
            "time per output token (ms; E2E for embeddings)",
            label,
        )?;
        y.draw_y(
            &root,
            110,
            W as i32 - 40,
            "energy per generated token (mJ)",
            label,
        )?;
        let mut sorted = pts.clone();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)));
        let mut front: Vec<(f64, f64)> = Vec::new();
        for p in &sorted {
            if front.last().is_none_or(|l| p.2 < l.1) {
                front.push((p.1, p.2));
            }
        }
        if front.len() > 1 {
            let px: Vec<(i32, i32)> = front.iter().map(|(a, b)| (x.px(*a), y.px(*b))).collect();
            root.draw(&PathElement::new(
                px,
                ShapeStyle::from(&MUTED).stroke_width(1),
            ))
            .map_err(err)?;
        }
        let mut taken: Vec<(i32, i32)> = Vec::new();
        for (i, vx, vy) in &pts {
            let c = &cells[*i];
            let p = (x.px(*vx), y.px(*vy));
            marker(&root, p, style.marker(&c.profile), style.colour(&c.model))?;
            if style.mixed && c.provenance == Some(Provenance::Estimated) {
                root.draw(&Circle::new(p, 7, ShapeStyle::from(&MUTED).stroke_width(1)))
                    .map_err(err)?;
            }
            if numbered {
                let mut at = (p.0 + 8, p.1 - 15);
                while taken
                    .iter()
                    .any(|t| (t.0 - at.0).abs() < 18 && (t.1 - at.1).abs() < 13)
                {
                    at.1 += 13;
                }
                taken.push(at);
                root.draw(&Text::new(
                    format!("{}", i + 1),
                    at,
                    ("sans-serif", 12).into_font().color(&INK),
                ))
                .map_err(err)?;
            }
        }
        let mut ly = legend(&root, style, &models, &profiles, bottom + 60)?;
        if numbered {
            for (i, _, _) in &pts {
                root.draw(&Text::new(
                    format!("{}: {}", i + 1, cell_label(&cells[*i])),
                    (14, ly),
                    ("sans-serif", 12).into_font().color(&INK),
                ))
                .map_err(err)?;
                ly += 18;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Curves drawn at most in the ITL chart (the cells with the lowest energy per token).
const MAX_CURVES: usize = 12;

/// Inter-token latency distribution: the CDF of every cell's ITLs (colour: model, marker:
/// profile); past 12 cells, the 12 most efficient.
pub fn itl_cdf(cells: &[CellSummary], records: &[Record], style: &Style) -> Result<String> {
    let mut curves: Vec<(usize, Vec<(f64, f64)>)> = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        let mut v: Vec<f64> = records
            .iter()
            .filter(|r| r.cell_index == c.cell_index && r.status == Status::Ok)
            .flat_map(|r| r.itls_ms.iter().map(|x| *x as f64))
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let step = (n / 300).max(1);
        let mut pts: Vec<(f64, f64)> = (0..n)
            .step_by(step)
            .map(|k| (v[k], (k + 1) as f64 / n as f64))
            .collect();
        pts.push((v[n - 1], 1.0));
        curves.push((i, pts));
    }
    if curves.is_empty() {
        return no_data("Inter-token latency: no cell generated more than one token");
    }
    let mut note = String::new();
    if curves.len() > MAX_CURVES {
        let key = |i: usize| cells[i].energy_per_token_joules.unwrap_or(f64::INFINITY);
        curves.sort_by(|a, b| key(a.0).total_cmp(&key(b.0)));
        note = format!(
            " (the {MAX_CURVES} most efficient of {} cells)",
            curves.len()
        );
        curves.truncate(MAX_CURVES);
        curves.sort_by_key(|c| c.0);
    }
    let (top, bottom) = (64, 400);
    let h = (bottom + 70 + 18 * curves.len() as i32) as u32;
    let all: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.0))
        .collect();
    let x = Axis::fit(&all, 90, W as i32 - 40, true, None);
    let y = Axis::fit(&[0.0, 1.0], bottom, top, true, Some(false));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        header(
            &root,
            &format!("Inter-token latency, cumulative distribution{note}"),
            style,
        )?;
        x.draw_x(&root, bottom, top, "inter-token latency (ms)", label)?;
        y.draw_y(&root, 90, W as i32 - 40, "fraction of tokens (0-1)", label)?;
        for (k, (i, pts)) in curves.iter().enumerate() {
            let c = &cells[*i];
            let colour = style.colour(&c.model);
            let px: Vec<(i32, i32)> = pts.iter().map(|(a, b)| (x.px(*a), y.px(*b))).collect();
            line(&root, px.clone(), colour, false)?;
            for p in px.iter().step_by((px.len() / 6).max(1)) {
                marker(&root, *p, style.marker(&c.profile), colour)?;
            }
            let ly = bottom + 60 + 18 * k as i32;
            marker(&root, (20, ly + 6), style.marker(&c.profile), colour)?;
            root.draw(&Text::new(
                cell_label(c),
                (32, ly),
                ("sans-serif", 12).into_font().color(&INK),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Scaling: tokens per joule and tokens per second against threads (or batch), one line per
/// model and workload (colour: model; dashed: estimated energy), integer x axis.
pub fn scaling(cells: &[CellSummary], records: &[Record], style: &Style) -> Result<String> {
    let first = |c: &CellSummary| {
        records
            .iter()
            .find(|r| r.cell_index == c.cell_index && r.status == Status::Ok)
    };
    let threads_of = |c: &CellSummary| -> Option<f64> {
        first(c).and_then(|r| r.model_info.as_ref().map(|m| m.engine.threads as f64))
    };
    let batch_of = |c: &CellSummary| -> f64 { first(c).map_or(1.0, |r| r.batch as f64) };
    let by_threads = {
        let mut t: Vec<u64> = cells
            .iter()
            .filter_map(threads_of)
            .map(|t| t as u64)
            .collect();
        t.sort_unstable();
        t.dedup();
        t.len() > 1
    };
    let xs = |c: &CellSummary| {
        if by_threads {
            threads_of(c)
        } else {
            Some(batch_of(c))
        }
    };
    let mut groups: BTreeMap<(usize, String), Vec<&CellSummary>> = BTreeMap::new();
    for c in cells {
        let mi = style
            .models()
            .iter()
            .position(|m| m == &c.model)
            .unwrap_or(0);
        groups
            .entry((mi, format!("{} · {}", c.model, c.workload)))
            .or_default()
            .push(c);
    }
    let workloads: Vec<&str> = {
        let mut w: Vec<&str> = Vec::new();
        for c in cells {
            if !w.contains(&c.workload.as_str()) {
                w.push(&c.workload);
            }
        }
        w
    };
    let shown: Vec<_> = groups.iter().take(24).collect();
    let (top, bottom) = (70, 400);
    let h = (bottom + 70 + 18 * shown.len() as i32) as u32;
    let xlab = if by_threads {
        "threads"
    } else {
        "batch size (sequences)"
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let more = if groups.len() > shown.len() {
            format!(" (the first {} of {} lines)", shown.len(), groups.len())
        } else {
            String::new()
        };
        header(
            &root,
            &format!("Tokens per joule and per second against {xlab}{more}"),
            style,
        )?;
        for (pi, (m, title, unit)) in [
            (Metric::TokensPerJ, "tokens per joule", "tokens/J"),
            (Metric::DecodeTokensPerS, "tokens per second", "tokens/s"),
        ]
        .iter()
        .enumerate()
        {
            let val = |c: &CellSummary| {
                metric(c, *m)
                    .or_else(|| metric(c, Metric::PrefillTokensPerS))
                    .map(|m| m.0)
            };
            let (x0, x1) = (90 + 470 * pi as i32, 440 + 470 * pi as i32);
            let xvals: Vec<f64> = cells.iter().filter_map(xs).collect();
            let x = Axis::integers(&xvals, x0, x1);
            let yvals: Vec<f64> = cells.iter().filter_map(val).collect();
            let y = Axis::fit(&yvals, bottom, top + 20, true, None);
            root.draw(&Text::new(
                title.to_string(),
                (x0, top - 2),
                ("sans-serif", 13).into_font().color(&INK),
            ))
            .map_err(err)?;
            x.draw_x(&root, bottom, top + 20, xlab, style::int_tick)?;
            y.draw_y(&root, x0, x1, unit, label)?;
            for ((_, _), cs) in &shown {
                let mut pts: Vec<(f64, f64)> =
                    cs.iter().filter_map(|c| Some((xs(c)?, val(c)?))).collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let colour = style.colour(&cs[0].model);
                let est = *m == Metric::TokensPerJ
                    && cs
                        .iter()
                        .any(|c| c.provenance == Some(Provenance::Estimated));
                let px: Vec<(i32, i32)> = pts.iter().map(|(a, b)| (x.px(*a), y.px(*b))).collect();
                if px.len() > 1 {
                    line(&root, px.clone(), colour, est)?;
                }
                let wi = workloads
                    .iter()
                    .position(|w| *w == cs[0].workload)
                    .unwrap_or(0);
                for p in &px {
                    marker(&root, *p, wi, colour)?;
                }
            }
        }
        for (k, ((_, name), cs)) in shown.iter().enumerate() {
            let ly = bottom + 60 + 18 * k as i32;
            let wi = workloads
                .iter()
                .position(|w| *w == cs[0].workload)
                .unwrap_or(0);
            marker(&root, (20, ly + 6), wi, style.colour(&cs[0].model))?;
            root.draw(&Text::new(
                name.clone(),
                (32, ly),
                ("sans-serif", 12).into_font().color(&INK),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_extremes_and_bounds_size() {
        let pts: Vec<(f64, f64)> = (0..100_000)
            .map(|i| (i as f64, if i == 5000 { 99.0 } else { (i % 7) as f64 }))
            .collect();
        let d = decimate(&pts, 0.0, 100_000.0, 100);
        assert!(d.len() <= 200);
        assert!(d.iter().any(|p| p.1 == 99.0));
        assert!(d.iter().any(|p| p.1 == 0.0));
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
