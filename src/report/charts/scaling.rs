//! Scaling: tokens per joule and tokens per second against threads or batch size.

use super::axis::{Axis, label};
use super::style::{self, INK, Style, header, marker};
use super::{W, err, line, metric};
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::record::{Record, Status};
use crate::report::CellSummary;
use anyhow::Result;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// A line of the chart: its (model index, name) and cells.
type Group<'a, 'b> = (&'a (usize, String), &'a Vec<&'b CellSummary>);

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
    let bottom = 400;
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
        for (pi, panel) in [
            (Metric::TokensPerJ, "tokens per joule", "tokens/J"),
            (Metric::DecodeTokensPerS, "tokens per second", "tokens/s"),
        ]
        .into_iter()
        .enumerate()
        {
            draw_panel(
                &root, pi, panel, cells, &shown, &workloads, &xs, xlab, style,
            )?;
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

/// One panel: metric `m` against the x axis, a line per (model, workload) group.
#[allow(clippy::too_many_arguments)]
fn draw_panel(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    pi: usize,
    (m, title, unit): (Metric, &str, &str),
    cells: &[CellSummary],
    shown: &[Group],
    workloads: &[&str],
    xs: &dyn Fn(&CellSummary) -> Option<f64>,
    xlab: &str,
    style: &Style,
) -> Result<()> {
    let (top, bottom) = (70, 400);

    let val = |c: &CellSummary| {
        metric(c, m)
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
    x.draw_x(root, bottom, top + 20, xlab, style::int_tick)?;
    y.draw_y(root, x0, x1, unit, label)?;
    for ((_, _), cs) in shown {
        let mut pts: Vec<(f64, f64)> = cs.iter().filter_map(|c| Some((xs(c)?, val(c)?))).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let colour = style.colour(&cs[0].model);
        let est = m == Metric::TokensPerJ
            && cs
                .iter()
                .any(|c| c.provenance == Some(Provenance::Estimated));
        let px: Vec<(i32, i32)> = pts.iter().map(|(a, b)| (x.px(*a), y.px(*b))).collect();
        if px.len() > 1 {
            line(root, px.clone(), colour, est)?;
        }
        let wi = workloads
            .iter()
            .position(|w| *w == cs[0].workload)
            .unwrap_or(0);
        for p in &px {
            marker(root, *p, wi, colour)?;
        }
    }
    Ok(())
}
