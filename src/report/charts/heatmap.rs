//! Energy per token as a heatmap, model x profile, one panel per workload (small multiples):
//! the chart that stays readable at a thousand cells. One colour scale (viridis, logarithmic
//! when the values span more than a decade) for every panel, so panels compare.

use super::super::CellSummary;
use super::axis::Axis;
use super::style::{INK, MUTED, Style, header, short, tick};
use super::{W, err};
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Panels drawn at most (workloads); rows and columns per panel at most.
pub const MAX_PANELS: usize = 12;
pub const MAX_SIDE: usize = 24;

/// Viridis at `t` in 0..1 (0 dark purple, 1 yellow), from five anchors.
pub fn viridis(t: f64) -> RGBColor {
    const A: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let f = t * 4.0;
    let i = (f.floor() as usize).min(3);
    let u = f - i as f64;
    let (a, b) = (A[i], A[i + 1]);
    let m = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    RGBColor(m(a.0, b.0), m(a.1, b.1), m(a.2, b.2))
}

fn first_seen(cells: &[&CellSummary], f: fn(&CellSummary) -> &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in cells {
        let s = f(c);
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// What the heatmap draws: its panels (workloads), rows (models), columns (profiles), and
/// what did not fit.
struct Grid {
    workloads: Vec<String>,
    models: Vec<String>,
    profiles: Vec<String>,
    dropped: Vec<String>,
}

impl Grid {
    fn of(cells: &[&CellSummary], style: &Style) -> Grid {
        let mut workloads = first_seen(cells, |c| &c.workload);
        let mut models: Vec<String> = style
            .models()
            .iter()
            .filter(|m| cells.iter().any(|c| &c.model == *m))
            .cloned()
            .collect();
        let mut profiles: Vec<String> = style
            .profiles()
            .iter()
            .filter(|p| cells.iter().any(|c| &c.profile == *p))
            .cloned()
            .collect();
        let mut dropped = Vec::new();
        if workloads.len() > MAX_PANELS {
            dropped.push(format!("{} more workloads", workloads.len() - MAX_PANELS));
            workloads.truncate(MAX_PANELS);
        }
        if models.len() > MAX_SIDE {
            dropped.push(format!("{} more models", models.len() - MAX_SIDE));
            models.truncate(MAX_SIDE);
        }
        if profiles.len() > MAX_SIDE {
            dropped.push(format!("{} more profiles", profiles.len() - MAX_SIDE));
            profiles.truncate(MAX_SIDE);
        }
        Grid {
            workloads,
            models,
            profiles,
            dropped,
        }
    }
}

/// Sizes of the drawing.
#[derive(Clone, Copy)]
struct Layout {
    cols: i32,
    panel_w: i32,
    panel_h: i32,
    label_w: i32,
    cell_w: i32,
    cell_h: i32,
    top: i32,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// The heatmap (None-like chart when no cell has energy per token).
pub fn heatmap(all: &[CellSummary], style: &Style) -> Result<String> {
    let cells: Vec<&CellSummary> = all
        .iter()
        .filter(|c| {
            c.energy_per_token_joules
                .is_some_and(|v| v > 0.0 && v.is_finite())
        })
        .collect();
    if cells.is_empty() {
        return super::no_data("Energy per token heatmap: no cell has energy per token");
    }
    let g = Grid::of(&cells, style);
    let vals: Vec<f64> = cells
        .iter()
        .filter_map(|c| c.energy_per_token_joules.map(|v| v * 1e3))
        .collect();
    // The colour scale: an axis from 0 (low, yellow) to 1000 (high, purple).
    let scale = Axis::fit(&vals, 0, 1000, false, None);
    let cols = if g.workloads.len() > 1 { 2 } else { 1 };
    let panel_w = (W as i32 - 20) / cols;
    let label_w = 150;
    let cell_h = 20;
    let lay = Layout {
        cols,
        panel_w,
        panel_h: 56 + cell_h * g.models.len() as i32 + 16,
        label_w,
        cell_w: ((panel_w - label_w - 10) / g.profiles.len().max(1) as i32).clamp(12, 80),
        cell_h,
        top: 64,
    };
    let rows = g.workloads.len().div_ceil(cols as usize) as i32;
    let h = (lay.top + rows * lay.panel_h + 80) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut title =
            "Energy per generated token (mJ), model x profile, per workload".to_string();
        if !g.dropped.is_empty() {
            title.push_str(&format!(" (not drawn: {})", g.dropped.join(", ")));
        }
        header(&root, &title, style)?;
        for (wi, w) in g.workloads.iter().enumerate() {
            panel(&root, wi, w, &g, lay, &cells, style, &scale)?;
        }
        colour_bar(&root, h, &scale)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Workload `w`'s panel: its title, the profile and model labels, a cell per pair.
#[allow(clippy::too_many_arguments)]
fn panel(
    root: &Area,
    wi: usize,
    w: &str,
    g: &Grid,
    lay: Layout,
    cells: &[&CellSummary],
    style: &Style,
    scale: &Axis,
) -> Result<()> {
    let px = 10 + (wi as i32 % lay.cols) * lay.panel_w;
    let py = lay.top + (wi as i32 / lay.cols) * lay.panel_h;
    root.draw(&Text::new(
        short(w, 50),
        (px, py),
        ("sans-serif", 13)
            .into_font()
            .style(FontStyle::Bold)
            .color(&INK),
    ))
    .map_err(err)?;
    let gx = px + lay.label_w;
    let gy = py + 52;
    for (pi, p) in g.profiles.iter().enumerate() {
        let cx = gx + pi as i32 * lay.cell_w + lay.cell_w / 2;
        root.draw(&Text::new(
            short(p, 14),
            (cx, gy - 4),
            ("sans-serif", 10)
                .into_font()
                .color(&MUTED)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    for (mi, m) in g.models.iter().enumerate() {
        let cy = gy + mi as i32 * lay.cell_h;
        root.draw(&Text::new(
            short(m, 22),
            (gx - 6, cy + lay.cell_h / 2),
            ("sans-serif", 11)
                .into_font()
                .color(&style.colour(m))
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(err)?;
        for (pi, p) in g.profiles.iter().enumerate() {
            let cx = gx + pi as i32 * lay.cell_w;
            let cell = cells
                .iter()
                .find(|c| c.workload == w && &c.model == m && &c.profile == p);
            let v = cell.and_then(|c| c.energy_per_token_joules);
            cell_box(root, (cx, cy), lay, v, scale)?;
        }
    }
    Ok(())
}

/// One cell at `(cx, cy)`: its colour and value, or gray when it was not run.
fn cell_box(
    root: &Area,
    (cx, cy): (i32, i32),
    lay: Layout,
    v: Option<f64>,
    scale: &Axis,
) -> Result<()> {
    let r = [(cx, cy), (cx + lay.cell_w - 1, cy + lay.cell_h - 1)];
    let Some(v) = v else {
        return root
            .draw(&Rectangle::new(r, RGBColor(240, 240, 240).filled()))
            .map_err(err);
    };
    let fill = viridis(1.0 - scale.px(v * 1e3) as f64 / 1000.0);
    root.draw(&Rectangle::new(r, fill.filled())).map_err(err)?;
    if lay.cell_w >= 34 {
        let light = (fill.0 as u32 + fill.1 as u32 + fill.2 as u32) > 380;
        root.draw(&Text::new(
            tick(v * 1e3),
            (cx + lay.cell_w / 2, cy + lay.cell_h / 2),
            ("sans-serif", 10)
                .into_font()
                .color(if light { &BLACK } else { &WHITE })
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// The colour bar under the panels, with its axis.
fn colour_bar(root: &Area, h: u32, scale: &Axis) -> Result<()> {
    let by = h as i32 - 60;
    let (bx0, bx1) = (150, W as i32 - 150);
    for i in 0..200 {
        let x = bx0 + (bx1 - bx0) * i / 200;
        let x2 = bx0 + (bx1 - bx0) * (i + 1) / 200;
        root.draw(&Rectangle::new(
            [(x, by), (x2, by + 12)],
            viridis(1.0 - i as f64 / 200.0).filled(),
        ))
        .map_err(err)?;
    }
    let bar = Axis {
        p0: bx0,
        p1: bx1,
        ..*scale
    };
    bar.draw_x(
        root,
        by + 12,
        by,
        "energy per generated token (mJ); gray: not run",
        tick,
    )
}

#[cfg(test)]
mod tests {
    use super::viridis;

    #[test]
    fn viridis_runs_from_purple_to_yellow() {
        assert_eq!(viridis(0.0), plotters::style::RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), plotters::style::RGBColor(253, 231, 37));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
        let mid = viridis(0.5);
        assert_eq!((mid.0, mid.1, mid.2), (33, 145, 140));
    }
}
