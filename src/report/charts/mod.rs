//! Charts drawn with plotters into SVG strings (pure: data in, SVG out). Shapes and shades of
//! gray tell series apart, so the charts survive grayscale printing; long names go in legends.

use super::CellSummary;
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::record::{Record, Status};
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;

mod load;
mod timeline;
pub use load::load_curve;
pub use timeline::{TraceRow, decimate, power_timeline, read_trace};

const W: u32 = 960;
const GRAYS: [RGBColor; 5] = [
    RGBColor(0, 0, 0),
    RGBColor(110, 110, 110),
    RGBColor(170, 170, 170),
    RGBColor(60, 60, 60),
    RGBColor(140, 140, 140),
];

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("chart: {e:?}")
}

fn gray(i: usize) -> RGBColor {
    GRAYS[i % GRAYS.len()]
}

/// A short, stable name for a cell in charts.
pub fn cell_label(c: &CellSummary) -> String {
    let mut s = format!("{} · {} · {}", c.model, c.profile, c.workload);
    if s.chars().count() > 56 {
        s = s.chars().take(55).collect::<String>() + "…";
    }
    if c.provenance == Some(Provenance::Estimated) {
        s.push_str(" [E]");
    }
    if c.synthetic {
        s.push_str(" [synthetic]");
    }
    s
}

/// Draws a marker of shape `i` (circle, triangle, square, cross, diamond) at `p`.
fn marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: (i32, i32),
    i: usize,
    color: RGBColor,
) -> Result<()> {
    let st = ShapeStyle::from(&color).filled();
    let (x, y) = p;
    match i % 5 {
        0 => area.draw(&Circle::new(p, 4, st)).map_err(err)?,
        1 => area
            .draw(&Polygon::new(
                vec![(x, y - 5), (x - 5, y + 4), (x + 5, y + 4)],
                st,
            ))
            .map_err(err)?,
        2 => area
            .draw(&Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], st))
            .map_err(err)?,
        3 => {
            let s2 = ShapeStyle::from(&color).stroke_width(2);
            area.draw(&PathElement::new(vec![(x - 4, y - 4), (x + 4, y + 4)], s2))
                .map_err(err)?;
            area.draw(&PathElement::new(vec![(x - 4, y + 4), (x + 4, y - 4)], s2))
                .map_err(err)?;
        }
        _ => area
            .draw(&Polygon::new(
                vec![(x, y - 5), (x + 5, y), (x, y + 5), (x - 5, y)],
                st,
            ))
            .map_err(err)?,
    }
    Ok(())
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

/// Chart 1, energy per token by cell: prefill and decode bars (mJ/token) with 95% interval whiskers.
pub fn energy_per_token(cells: &[CellSummary]) -> Result<String> {
    let cells: Vec<&CellSummary> = cells
        .iter()
        .filter(|c| c.metric(Metric::JPerPrefillToken).is_some())
        .collect();
    let n = cells.len().max(1);
    let h = 130 + 44 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = cells
            .iter()
            .flat_map(|c| {
                [Metric::JPerPrefillToken, Metric::JPerDecodeToken]
                    .iter()
                    .filter_map(|m| {
                        metric(c, *m).map(|(v, ci)| ci.map_or(v, |x| x[1].max(v)) * 1e3)
                    })
                    .collect::<Vec<_>>()
            })
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Energy per token (median, 95% interval)",
                ("sans-serif", 18),
            )
            .margin(10)
            .margin_left(370)
            .margin_bottom(30)
            .x_label_area_size(40)
            .build_cartesian_2d(0f64..max, 0f64..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("energy per token (mJ)")
            .draw()
            .map_err(err)?;
        for (i, c) in cells.iter().enumerate() {
            let y = n as f64 - i as f64 - 1.0;
            for (k, m) in [Metric::JPerPrefillToken, Metric::JPerDecodeToken]
                .iter()
                .enumerate()
            {
                let Some((v, ci)) = metric(c, *m) else {
                    continue;
                };
                let (y0, y1) = (y + 0.12 + 0.38 * k as f64, y + 0.46 + 0.38 * k as f64);
                let fill = if k == 0 {
                    RGBColor(90, 90, 90)
                } else {
                    RGBColor(200, 200, 200)
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, y0), (v * 1e3, y1)],
                        fill.filled(),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, y0), (v * 1e3, y1)],
                        BLACK.stroke_width(1),
                    )))
                    .map_err(err)?;
                if let Some([a, b]) = ci {
                    let ym = (y0 + y1) / 2.0;
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(a * 1e3, ym), (b * 1e3, ym)],
                            BLACK.stroke_width(2),
                        )))
                        .map_err(err)?;
                }
            }
            let (px, py) = chart.backend_coord(&(0.0, y + 0.5));
            root.draw(&Text::new(
                cell_label(c),
                (px - 8, py),
                ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(err)?;
        }
        let ly = h as i32 - 22;
        for (k, (name, fill)) in [
            ("prefill, per prompt token", RGBColor(90, 90, 90)),
            ("decode, per generated token", RGBColor(200, 200, 200)),
        ]
        .iter()
        .enumerate()
        {
            let x = 380 + 240 * k as i32;
            root.draw(&Rectangle::new([(x, ly), (x + 14, ly + 12)], fill.filled()))
                .map_err(err)?;
            root.draw(&Rectangle::new(
                [(x, ly), (x + 14, ly + 12)],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                name.to_string(),
                (x + 20, ly + 1),
                ("sans-serif", 12),
            ))
            .map_err(err)?;
        }
        root.draw(&Text::new(
            "[E] = ESTIMATED (no sensor)",
            (860 - 60, ly + 1),
            ("sans-serif", 12),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Chart 2, latency against energy: one point per cell, the Pareto frontier (lower is better
/// on both) drawn and labelled.
pub fn latency_energy(cells: &[CellSummary]) -> Result<String> {
    let pts: Vec<(usize, f64, f64)> = cells
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let x = metric(c, Metric::TpotS)
                .or_else(|| metric(c, Metric::E2eS))?
                .0
                * 1e3;
            let y = c.energy_per_token_joules? * 1e3;
            // Log axes: only positive, finite values can be placed.
            (x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite()).then_some((i, x, y))
        })
        .collect();
    if pts.is_empty() {
        return no_data("Latency vs energy per token: no cell has both figures");
    }
    let h = 460 + 18 * cells.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, legend) = root.split_vertically(440);
        let xmin = pts
            .iter()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min)
            .max(1e-6);
        let ymin = pts
            .iter()
            .map(|p| p.2)
            .fold(f64::INFINITY, f64::min)
            .max(1e-9);
        let xmax = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(xmin * 1.01);
        let ymax = pts.iter().map(|p| p.2).fold(0.0, f64::max).max(ymin * 1.01);
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                "Latency vs energy per token (Pareto frontier: nothing is better on both)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (xmin / 1.5..xmax * 1.5).log_scale(),
                (ymin / 1.5..ymax * 1.5).log_scale(),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("TPOT (ms/token; E2E ms for embeddings), log scale")
            .y_desc("energy per generated token, whole request (mJ), log scale")
            .draw()
            .map_err(err)?;
        let mut sorted = pts.clone();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)));
        let mut front: Vec<(f64, f64)> = Vec::new();
        for p in &sorted {
            if front.last().is_none_or(|l| p.2 < l.1) {
                front.push((p.1, p.2));
            }
        }
        if front.len() > 1 {
            chart
                .draw_series(LineSeries::new(front.clone(), BLACK.stroke_width(1)))
                .map_err(err)?;
        }
        // Numbers beside the points, moved down where they would overlap an earlier one.
        let mut taken: Vec<(i32, i32)> = Vec::new();
        for (i, x, y) in &pts {
            let p = chart.backend_coord(&(*x, *y));
            marker(&plot, p, *i, gray(*i))?;
            let mut at = (p.0 + 7, p.1 - 14);
            while taken
                .iter()
                .any(|t| (t.0 - at.0).abs() < 18 && (t.1 - at.1).abs() < 13)
            {
                at.1 += 13;
            }
            taken.push(at);
            plot.draw(&Text::new(format!("{}", i + 1), at, ("sans-serif", 12)))
                .map_err(err)?;
        }
        if let Some(l) = front.first() {
            let p = chart.backend_coord(l);
            plot.draw(&Text::new(
                "Pareto frontier",
                (p.0 + 10, p.1 + 8),
                ("sans-serif", 12),
            ))
            .map_err(err)?;
        }
        for (i, c) in cells.iter().enumerate() {
            let y = 4 + 18 * i as i32;
            marker(&legend, (80, y + 6), i, gray(i))?;
            legend
                .draw(&Text::new(
                    format!("{}: {}", i + 1, cell_label(c)),
                    (92, y),
                    ("sans-serif", 12),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Chart 4, inter-token latency distribution: the CDF of every cell's ITLs.
pub fn itl_cdf(cells: &[CellSummary], records: &[Record]) -> Result<String> {
    let mut curves: Vec<(usize, Vec<(f64, f64)>)> = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        let mut v: Vec<f64> = records
            .iter()
            .filter(|r| r.cell_index == c.cell_index && r.status == Status::Ok)
            .flat_map(|r| r.itls_ms.iter().map(|x| *x as f64))
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let step = (n / 400).max(1);
        let mut pts: Vec<(f64, f64)> = (0..n)
            .step_by(step)
            .map(|k| (v[k], (k + 1) as f64 / n as f64))
            .collect();
        pts.push((v[n - 1], 1.0));
        curves.push((i, pts));
    }
    let xmax = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.05;
    let h = 440 + 18 * curves.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, legend) = root.split_vertically(420);
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                "Inter-token latency (cumulative distribution)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 0f64..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("inter-token latency (ms)")
            .y_desc("fraction of tokens")
            .draw()
            .map_err(err)?;
        for (k, (i, pts)) in curves.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(pts.clone(), gray(k).stroke_width(2)))
                .map_err(err)?;
            // Markers along the curve tell the lines apart in gray.
            for p in pts.iter().step_by((pts.len() / 6).max(1)) {
                marker(&plot, chart.backend_coord(p), k, gray(k))?;
            }
            marker(&legend, (80, 10 + 18 * k as i32), k, gray(k))?;
            legend
                .draw(&Text::new(
                    cell_label(&cells[*i]),
                    (92, 4 + 18 * k as i32),
                    ("sans-serif", 12),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Chart 5, scaling: tokens per joule and tokens per second against threads (or batch), per
/// model and workload.
pub fn scaling(cells: &[CellSummary], records: &[Record]) -> Result<String> {
    let threads_of = |c: &CellSummary| -> f64 {
        records
            .iter()
            .find(|r| r.cell_index == c.cell_index)
            .and_then(|r| r.model_info.as_ref().map(|m| m.engine.threads as f64))
            .unwrap_or(0.0)
    };
    let batch_of = |c: &CellSummary| -> f64 {
        records
            .iter()
            .find(|r| r.cell_index == c.cell_index)
            .map_or(1.0, |r| r.batch as f64)
    };
    let by_threads = {
        let mut t: Vec<f64> = cells.iter().map(threads_of).collect();
        t.dedup();
        t.len() > 1
    };
    let xs = |c: &CellSummary| {
        if by_threads {
            threads_of(c)
        } else {
            batch_of(c)
        }
    };
    let mut groups: BTreeMap<String, Vec<&CellSummary>> = BTreeMap::new();
    for c in cells {
        groups
            .entry(format!("{} · {}", c.model, c.workload))
            .or_default()
            .push(c);
    }
    let h = 430 + 18 * groups.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plots, legend) = root.split_vertically(410);
        let panels = plots.split_evenly((1, 2));
        let xlab = if by_threads { "threads" } else { "batch size" };
        for (pi, (metric_name, title)) in [
            (Metric::TokensPerJ, "tokens per joule"),
            (Metric::DecodeTokensPerS, "tokens per second"),
        ]
        .iter()
        .enumerate()
        {
            let val = |c: &CellSummary| {
                metric(c, *metric_name)
                    .or_else(|| metric(c, Metric::PrefillTokensPerS))
                    .map(|m| m.0)
            };
            let xmax = cells.iter().map(xs).fold(1.0, f64::max) * 1.2;
            let ymax = cells.iter().filter_map(val).fold(0.0, f64::max).max(1e-9) * 1.2;
            let mut chart = ChartBuilder::on(&panels[pi])
                .caption(*title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..xmax, 0f64..ymax)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(xlab)
                .y_desc(title.to_string())
                .draw()
                .map_err(err)?;
            for (k, cs) in groups.values().enumerate() {
                let mut pts: Vec<(f64, f64)> =
                    cs.iter().filter_map(|c| Some((xs(c), val(c)?))).collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                chart
                    .draw_series(LineSeries::new(pts.clone(), gray(k).stroke_width(2)))
                    .map_err(err)?;
                for p in &pts {
                    // backend_coord is in whole-image pixels: draw on the unshifted root.
                    marker(&root, chart.backend_coord(p), k, gray(k))?;
                }
            }
        }
        for (k, name) in groups.keys().enumerate() {
            marker(&legend, (80, 10 + 18 * k as i32), k, gray(k))?;
            legend
                .draw(&Text::new(
                    name.clone(),
                    (92, 4 + 18 * k as i32),
                    ("sans-serif", 12),
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
