//! The power timeline of one repetition from its trace file: every domain's power over time,
//! with prefill and decode shaded between the repetition's marks.

use super::style::tick;
use super::{W, err, series as palette};
use crate::meter::mark::{Mark, Phase, Round};
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::collections::BTreeMap;

/// One row of a trace file.
#[derive(Debug, Clone)]
pub struct TraceRow {
    pub t_s: f64,
    pub event: String,
    pub domain: String,
    pub power_w: Option<f64>,
    pub valid: bool,
}

/// Reads a trace CSV.
pub fn read_trace(path: &std::path::Path) -> Result<Vec<TraceRow>> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for rec in rd.records() {
        let r = rec.map_err(|e| anyhow!("{}: {e}", path.display()))?;
        out.push(TraceRow {
            t_s: r.get(0).and_then(|v| v.parse().ok()).unwrap_or(0.0),
            event: r.get(1).unwrap_or("").to_string(),
            domain: format!("{}/{}", r.get(2).unwrap_or(""), r.get(3).unwrap_or("")),
            power_w: r.get(5).and_then(|v| v.parse().ok()),
            valid: r.get(6) == Some("1"),
        });
    }
    Ok(out)
}

/// Keeps the minimum and maximum of each of `cols` time columns: at most 2 × cols points.
pub fn decimate(points: &[(f64, f64)], t0: f64, t1: f64, cols: usize) -> Vec<(f64, f64)> {
    if points.len() <= 2 * cols || t1 <= t0 {
        return points.to_vec();
    }
    type MinMax = ((f64, f64), (f64, f64));
    let mut buckets: Vec<Option<MinMax>> = vec![None; cols];
    for &(t, v) in points {
        let i = (((t - t0) / (t1 - t0)) * cols as f64).clamp(0.0, cols as f64 - 1.0) as usize;
        buckets[i] = Some(match buckets[i] {
            None => ((t, v), (t, v)),
            Some((lo, hi)) => (
                if v < lo.1 { (t, v) } else { lo },
                if v > hi.1 { (t, v) } else { hi },
            ),
        });
    }
    let mut out = Vec::with_capacity(2 * cols);
    for (lo, hi) in buckets.into_iter().flatten() {
        if lo.0 <= hi.0 {
            out.push(lo);
            if hi != lo {
                out.push(hi);
            }
        } else {
            out.push(hi);
            out.push(lo);
        }
    }
    out
}

/// The repetition's request boundaries (seconds in the trace): starts, first tokens, ends.
type Bounds = (Vec<f64>, Vec<f64>, Vec<f64>);

fn bounds(rows: &[TraceRow], rep: u32) -> Bounds {
    // The repetition's request marks (`r3.0:start`, ...), read back as typed marks.
    let marks: Vec<(Mark, f64)> = rows
        .iter()
        .filter_map(|r| Mark::parse(&r.event).map(|m| (m, r.t_s)))
        .filter(|(m, _)| m.round == Round::Repetition(rep) && m.request.is_some())
        .collect();
    let t_of = |phase: Phase| -> Vec<f64> {
        let mut v: Vec<f64> = marks
            .iter()
            .filter(|(m, _)| m.phase == phase)
            .map(|(_, t)| *t)
            .collect();
        v.dedup();
        v
    };
    (t_of(Phase::Start), t_of(Phase::First), t_of(Phase::End))
}

/// Power samples by domain: (time, watts).
type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// Power per domain over `t0..t1` (time from `a`), and where reads were invalid.
fn samples(rows: &[TraceRow], (t0, t1, a): (f64, f64, f64)) -> (Series, Vec<f64>) {
    let mut series: Series = BTreeMap::new();
    let mut invalid: Vec<f64> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.event == "sample" && r.t_s >= t0 && r.t_s <= t1)
    {
        if let Some(p) = r.power_w {
            series
                .entry(r.domain.clone())
                .or_default()
                .push((r.t_s - a, p));
        }
        if !r.valid {
            invalid.push(r.t_s - a);
        }
    }
    (series, invalid)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Each request's prefill (darker) and decode (lighter) shaded.
fn shade_phases(
    chart: &mut Chart,
    (starts, firsts, ends): &Bounds,
    a: f64,
    z: f64,
    ymax: f64,
) -> Result<()> {
    for (i, s) in starts.iter().enumerate() {
        let e = ends.get(i).copied().unwrap_or(z);
        let boxes = match firsts.get(i).copied() {
            Some(f) => vec![
                ((s - a, f - a), RGBColor(215, 215, 215)),
                ((f - a, e - a), RGBColor(240, 240, 240)),
            ],
            None => vec![((s - a, e - a), RGBColor(225, 225, 225))],
        };
        for ((x0, x1), c) in boxes {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x1, ymax)],
                    c.filled(),
                )))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Chart 3, power timeline of one repetition: watts per domain, prefill and decode shaded,
/// idle power as a line, invalid samples marked.
pub fn power_timeline(
    title: &str,
    rows: &[TraceRow],
    rep: u32,
    idle_w: Option<f64>,
) -> Result<String> {
    let b = bounds(rows, rep);
    let (Some(&a), Some(&z)) = (b.0.first(), b.2.last()) else {
        return Err(anyhow!("repetition {rep} has no marks in the trace"));
    };
    let pad = (z - a).max(1e-3) * 0.05;
    let (t0, t1) = (a - pad, z + pad);
    let (series, invalid) = samples(rows, (t0, t1, a));
    let ymax = series
        .values()
        .flatten()
        .map(|p| p.1)
        .chain(idle_w)
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Power during one repetition: {title}"),
                ("sans-serif", 16),
            )
            .margin(12)
            .margin_right(200)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((t0 - a)..(t1 - a), 0f64..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .x_desc("time from request start (s)")
            .y_desc("power (W)")
            .draw()
            .map_err(err)?;
        shade_phases(&mut chart, &b, a, z, ymax)?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let pts = decimate(pts, t0 - a, t1 - a, 800);
            chart
                .draw_series(LineSeries::new(pts, palette(i).stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], palette(i).stroke_width(2))
                });
        }
        if let Some(w) = idle_w {
            chart
                .draw_series(LineSeries::new(
                    vec![(t0 - a, w), (t1 - a, w)],
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?
                .label(format!("idle {w:.2} W"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(1))
                });
        }
        if !invalid.is_empty() {
            chart
                .draw_series(
                    invalid
                        .iter()
                        .map(|t| Cross::new((*t, ymax * 0.03), 4, BLACK.stroke_width(2))),
                )
                .map_err(err)?
                .label("invalid read (bridged)")
                .legend(|(x, y)| Cross::new((x + 9, y), 4, BLACK.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .margin(-190)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(err)?;
        root.draw(&Text::new(
            "shaded: prefill (darker), decode (lighter)",
            (W as i32 - 300, 400),
            ("sans-serif", 12),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
