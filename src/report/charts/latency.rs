//! Latency charts: latency against energy per token with its Pareto frontier, and the
//! inter-token latency distribution.

use super::axis::{Axis, label};
use super::style::{INK, MUTED, Style, header, marker};
use super::{W, cell_label, err, legend, line, metric, no_data, rows_for};
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::record::{Record, Status};
use crate::report::CellSummary;
use anyhow::Result;
use plotters::prelude::*;

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
        let front = pareto_front(&pts);
        if front.len() > 1 {
            let px: Vec<(i32, i32)> = front.iter().map(|(a, b)| (x.px(*a), y.px(*b))).collect();
            root.draw(&PathElement::new(
                px,
                ShapeStyle::from(&MUTED).stroke_width(1),
            ))
            .map_err(err)?;
        }
        points(&root, cells, &pts, (&x, &y), style, numbered)?;
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

/// The points no other point beats on both axes (lower is better), by latency.
fn pareto_front(pts: &[(usize, f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted = pts.to_vec();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)));
    let mut front: Vec<(f64, f64)> = Vec::new();
    for p in &sorted {
        if front.last().is_none_or(|l| p.2 < l.1) {
            front.push((p.1, p.2));
        }
    }
    front
}

/// Each cell's marker (circled when estimated among measured ones), numbered where asked, the
/// numbers moved down where they would overlap.
fn points(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    cells: &[CellSummary],
    pts: &[(usize, f64, f64)],
    (x, y): (&Axis, &Axis),
    style: &Style,
    numbered: bool,
) -> Result<()> {
    let mut taken: Vec<(i32, i32)> = Vec::new();
    for (i, vx, vy) in pts {
        let c = &cells[*i];
        let p = (x.px(*vx), y.px(*vy));
        marker(root, p, style.marker(&c.profile), style.colour(&c.model))?;
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
    Ok(())
}
