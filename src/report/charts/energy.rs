//! Energy charts: per token grouped by model (prefill and decode side by side, 95% whiskers),
//! the share of each request's energy spent in prefill and in decode, and energy per token
//! against model size and format.

use super::super::CellSummary;
use super::axis::{Axis, label};
use super::style::{INK, MUTED, Style, header, marker, outline, short, tint};
use super::{W, err, metric};
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::record::{Record, Status};
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Bar charts show at most this many cells (the most efficient); the tables list every cell.
pub const TOP_N: usize = 30;

/// The cells to draw: every one when they fit, else the `TOP_N` lowest by `key`, and a note.
pub fn top_cells<'a>(
    cells: &[&'a CellSummary],
    key: impl Fn(&CellSummary) -> Option<f64>,
) -> (Vec<&'a CellSummary>, Option<String>) {
    if cells.len() <= TOP_N {
        return (cells.to_vec(), None);
    }
    let mut v: Vec<&CellSummary> = cells.to_vec();
    v.sort_by(|a, b| {
        let k = |c: &CellSummary| key(c).unwrap_or(f64::INFINITY);
        k(a).total_cmp(&k(b)).then(a.cell_index.cmp(&b.cell_index))
    });
    v.truncate(TOP_N);
    v.sort_by_key(|c| c.cell_index);
    let note = format!(
        "the {TOP_N} most efficient of {} cells; every cell is in the summary table",
        cells.len()
    );
    (v, Some(note))
}

/// Cells grouped by model (in the style's order), each group in plan order.
fn by_model<'a>(cells: &[&'a CellSummary], style: &Style) -> Vec<(String, Vec<&'a CellSummary>)> {
    style
        .models()
        .iter()
        .filter_map(|m| {
            let g: Vec<&CellSummary> = cells.iter().copied().filter(|c| &c.model == m).collect();
            (!g.is_empty()).then(|| (m.clone(), g))
        })
        .collect()
}

/// A model's heading above its rows, in its colour.
fn group_heading<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    model: &str,
    colour: RGBColor,
    y: i32,
) -> Result<()> {
    root.draw(&Text::new(
        short(model, 60),
        (14, y + 4),
        ("sans-serif", 13)
            .into_font()
            .style(FontStyle::Bold)
            .color(&colour),
    ))
    .map_err(err)?;
    Ok(())
}

/// A cell's row label (profile and workload; the model is its group's heading), right-aligned
/// left of `left` and centred on `y`.
fn row_label<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    c: &CellSummary,
    left: i32,
    y: i32,
) -> Result<()> {
    root.draw(&Text::new(
        short(&format!("{} · {}", c.profile, c.workload), 44),
        (left - 8, y),
        ("sans-serif", 12)
            .into_font()
            .color(&INK)
            .pos(Pos::new(HPos::Right, VPos::Center)),
    ))
    .map_err(err)?;
    Ok(())
}

/// Energy per token by cell, grouped by model: prefill (solid) and decode (tinted) bars per
/// cell, in mJ/token, with 95% interval whiskers; dashed outlines mark estimated energy.
pub fn energy_per_token(all: &[CellSummary], style: &Style) -> Result<String> {
    let with: Vec<&CellSummary> = all
        .iter()
        .filter(|c| {
            metric(c, Metric::JPerPrefillToken).is_some()
                || metric(c, Metric::JPerDecodeToken).is_some()
        })
        .collect();
    if with.is_empty() {
        return super::no_data("Energy per token: no cell has per-token energy");
    }
    let (cells, note) = top_cells(&with, |c| {
        metric(c, Metric::JPerDecodeToken)
            .or_else(|| metric(c, Metric::JPerPrefillToken))
            .map(|m| m.0)
    });
    let groups = by_model(&cells, style);
    let row_h = 30;
    let group_h = 22;
    let top = 64;
    let plot_h = groups.len() as i32 * group_h + cells.len() as i32 * row_h;
    let h = (top + plot_h + 110) as u32;
    let (left, right) = (300, W as i32 - 30);
    let phases = [Metric::JPerPrefillToken, Metric::JPerDecodeToken];
    let mut vals: Vec<f64> = Vec::new();
    for c in &cells {
        for m in phases {
            if let Some((v, ci)) = metric(c, m) {
                vals.push(v * 1e3);
                if let Some([a, b]) = ci {
                    vals.extend([a * 1e3, b * 1e3]);
                }
            }
        }
    }
    let x = Axis::fit(&vals, left, right, true, None);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let title = match &note {
            Some(n) => format!("Energy per token by model ({n})"),
            None => "Energy per token by model and cell (median, 95% interval)".to_string(),
        };
        header(&root, &title, style)?;
        let mut y = top;
        for (model, g) in &groups {
            let colour = style.colour(model);
            group_heading(&root, model, colour, y)?;
            y += group_h;
            for c in g {
                let est = c.provenance == Some(Provenance::Estimated);
                row_label(&root, c, left, y + row_h / 2 - 2)?;
                for (k, m) in phases.iter().enumerate() {
                    let Some((v, ci)) = metric(c, *m) else {
                        continue;
                    };
                    let (y0, y1) = (y + 2 + 13 * k as i32, y + 13 + 13 * k as i32);
                    let fill = if k == 0 { colour } else { tint(colour, 0.6) };
                    let x1 = x.px(v * 1e3).max(left + 1);
                    root.draw(&Rectangle::new([(left, y0), (x1, y1)], fill.filled()))
                        .map_err(err)?;
                    outline(&root, [(left, y0), (x1, y1)], colour, est)?;
                    if let Some([a, b]) = ci {
                        let ym = (y0 + y1) / 2;
                        let (xa, xb) = (x.px(a * 1e3), x.px(b * 1e3));
                        let st = ShapeStyle::from(&INK).stroke_width(1);
                        root.draw(&PathElement::new(vec![(xa, ym), (xb, ym)], st))
                            .map_err(err)?;
                        for xe in [xa, xb] {
                            root.draw(&PathElement::new(vec![(xe, ym - 3), (xe, ym + 3)], st))
                                .map_err(err)?;
                        }
                    }
                }
                y += row_h;
            }
        }
        x.draw_x(&root, y + 4, top, "energy per token (mJ/token)", label)?;
        let ly = h as i32 - 30;
        let gray = RGBColor(90, 90, 90);
        for (k, (name, fill)) in [
            ("prefill, per prompt token", gray),
            ("decode, per generated token", tint(gray, 0.6)),
        ]
        .iter()
        .enumerate()
        {
            let lx = 14 + 230 * k as i32;
            root.draw(&Rectangle::new(
                [(lx, ly), (lx + 14, ly + 12)],
                fill.filled(),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                name.to_string(),
                (lx + 20, ly),
                ("sans-serif", 12).into_font().color(&INK),
            ))
            .map_err(err)?;
        }
        if style.estimated {
            outline(&root, [(474, ly), (488, ly + 12)], INK, true)?;
            root.draw(&Text::new(
                "dashed: ESTIMATED (no sensor)",
                (494, ly),
                ("sans-serif", 12).into_font().color(&INK),
            ))
            .map_err(err)?;
        }
        root.draw(&Text::new(
            "whiskers: 95% bootstrap interval over repetitions",
            (700, ly),
            ("sans-serif", 11).into_font().color(&MUTED),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The share of each cell's request energy spent in prefill and in decode (100% bars).
pub fn phase_share(all: &[CellSummary], style: &Style) -> Result<String> {
    let with: Vec<&CellSummary> = all
        .iter()
        .filter(|c| {
            metric(c, Metric::PrefillJ).is_some_and(|m| m.0 >= 0.0)
                && metric(c, Metric::DecodeJ).is_some_and(|m| m.0 >= 0.0)
                && metric(c, Metric::PrefillJ).map(|m| m.0).unwrap_or(0.0)
                    + metric(c, Metric::DecodeJ).map(|m| m.0).unwrap_or(0.0)
                    > 0.0
        })
        .collect();
    if with.is_empty() {
        return super::no_data("Prefill and decode shares: no cell has both phases' energy");
    }
    let share = |c: &CellSummary| {
        let p = metric(c, Metric::PrefillJ).map_or(0.0, |m| m.0);
        let d = metric(c, Metric::DecodeJ).map_or(0.0, |m| m.0);
        p / (p + d)
    };
    let (cells, note) = top_cells(&with, |c| c.energy_per_request_joules);
    let groups = by_model(&cells, style);
    let (row_h, group_h, top) = (20, 22, 64);
    let plot_h = groups.len() as i32 * group_h + cells.len() as i32 * row_h;
    let h = (top + plot_h + 96) as u32;
    let (left, right) = (300, W as i32 - 80);
    // Shares end at 100%: the axis too (a fitted axis pads past it).
    let x = Axis::exact(0.0, 100.0, left, right);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let title = match &note {
            Some(n) => format!("Where each request's energy goes: prefill and decode ({n})"),
            None => "Where each request's energy goes: prefill and decode shares".to_string(),
        };
        header(&root, &title, style)?;
        let mut y = top;
        for (model, g) in &groups {
            let colour = style.colour(model);
            group_heading(&root, model, colour, y)?;
            y += group_h;
            for c in g {
                let est = c.provenance == Some(Provenance::Estimated);
                let s = share(c);
                row_label(&root, c, left, y + row_h / 2 - 2)?;
                let xm = x.px(s * 100.0);
                let (y0, y1) = (y + 2, y + row_h - 3);
                root.draw(&Rectangle::new([(left, y0), (xm, y1)], colour.filled()))
                    .map_err(err)?;
                root.draw(&Rectangle::new(
                    [(xm, y0), (right, y1)],
                    tint(colour, 0.6).filled(),
                ))
                .map_err(err)?;
                outline(&root, [(left, y0), (right, y1)], colour, est)?;
                root.draw(&Text::new(
                    format!("{:.0}% prefill", s * 100.0),
                    (right + 6, y + row_h / 2 - 2),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&INK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(err)?;
                y += row_h;
            }
        }
        x.draw_x(
            &root,
            y + 4,
            top,
            "share of the request's energy (%): prefill, then decode",
            label,
        )?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A model's size and format as its records say.
fn size_of(records: &[Record], c: &CellSummary) -> Option<(u64, String)> {
    records
        .iter()
        .filter(|r| r.cell_index == c.cell_index && r.status == Status::Ok)
        .find_map(|r| r.model_info.as_ref())
        .filter(|m| m.parameters > 0)
        .map(|m| (m.parameters, m.quantization.clone()))
}

/// Decode energy per token against the model's parameters (log axes when they span a decade):
/// colour by model, marker by format, the format written beside each point.
pub fn energy_vs_size(all: &[CellSummary], records: &[Record], style: &Style) -> Result<String> {
    let pts: Vec<(&CellSummary, u64, String, f64)> = all
        .iter()
        .filter_map(|c| {
            let (p, q) = size_of(records, c)?;
            let e = metric(c, Metric::JPerDecodeToken)
                .map(|m| m.0)
                .or(c.energy_per_token_joules)?;
            (e > 0.0 && e.is_finite()).then_some((c, p, q, e * 1e3))
        })
        .collect();
    if pts.is_empty() {
        return super::no_data("Energy per token against model size: no cell has both figures");
    }
    let mut formats: Vec<String> = pts.iter().map(|p| p.2.clone()).collect();
    formats.sort();
    formats.dedup();
    let models: Vec<&String> = style
        .models()
        .iter()
        .filter(|m| pts.iter().any(|p| &p.0.model == *m))
        .collect();
    let legend_rows = models.len().div_ceil(3) + formats.len().div_ceil(6);
    let h = 500 + 18 * legend_rows as u32;
    let (top, bottom) = (64, 420);
    let x = Axis::fit(
        &pts.iter().map(|p| p.1 as f64).collect::<Vec<_>>(),
        110,
        W as i32 - 40,
        false,
        Some(true),
    );
    let y = Axis::fit(
        &pts.iter().map(|p| p.3).collect::<Vec<_>>(),
        bottom,
        top,
        true,
        None,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        header(
            &root,
            "Decode energy per token against model size and format (median per cell)",
            style,
        )?;
        x.draw_x(&root, bottom, top, "parameters", label)?;
        y.draw_y(&root, 110, W as i32 - 40, "decode energy (mJ/token)", label)?;
        // Each model's format is written once, beside its highest point.
        let mut labelled: Vec<(&str, &str)> = Vec::new();
        let mut order: Vec<usize> = (0..pts.len()).collect();
        order.sort_by(|a, b| pts[*b].3.total_cmp(&pts[*a].3));
        for i in order {
            let (c, p, q, e) = &pts[i];
            let at = (x.px(*p as f64), y.px(*e));
            let fi = formats.iter().position(|f| f == q).unwrap_or(0);
            marker(&root, at, fi, style.colour(&c.model))?;
            if style.mixed && c.provenance == Some(Provenance::Estimated) {
                root.draw(&Circle::new(
                    at,
                    7,
                    ShapeStyle::from(&MUTED).stroke_width(1),
                ))
                .map_err(err)?;
            }
            if !labelled.contains(&(c.model.as_str(), q.as_str())) {
                root.draw(&Text::new(
                    q.clone(),
                    (at.0 + 8, at.1 - 12),
                    ("sans-serif", 11).into_font().color(&MUTED),
                ))
                .map_err(err)?;
                labelled.push((c.model.as_str(), q.as_str()));
            }
        }
        let mut ly = 474;
        for (k, m) in models.iter().enumerate() {
            let lx = 14 + 310 * (k % 3) as i32;
            if k > 0 && k % 3 == 0 {
                ly += 18;
            }
            root.draw(&Rectangle::new(
                [(lx, ly), (lx + 12, ly + 12)],
                style.colour(m).filled(),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                short(m, 44),
                (lx + 18, ly),
                ("sans-serif", 12).into_font().color(&INK),
            ))
            .map_err(err)?;
        }
        ly += 20;
        for (k, f) in formats.iter().enumerate() {
            let lx = 14 + 150 * (k % 6) as i32;
            if k > 0 && k % 6 == 0 {
                ly += 18;
            }
            marker(&root, (lx + 6, ly + 6), k, INK)?;
            root.draw(&Text::new(
                short(f, 18),
                (lx + 16, ly),
                ("sans-serif", 12).into_font().color(&INK),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}
