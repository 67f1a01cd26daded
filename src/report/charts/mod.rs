//! Charts drawn with plotters into SVG strings (pure: data in, SVG out). One colour per model
//! (Okabe-Ito) across every chart, one marker per profile, dashes for estimated energy, the
//! provenance under every title; long names go in legends.

use super::CellSummary;
use crate::meter::Provenance;
use crate::metric::Metric;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

mod accuracy;
mod axis;
mod energy;
mod heatmap;
mod latency;
mod load;
mod scaling;
pub mod style;
mod timeline;

pub use accuracy::accuracy_energy;
pub use energy::{TOP_N, energy_per_token, energy_vs_size, phase_share, top_cells};
pub use heatmap::heatmap;
pub use latency::{itl_cdf, latency_energy};
pub use load::load_curve;
pub use scaling::scaling;
use style::{INK, Style, marker};
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cell summary with the given metrics' medians (no interval).
    pub(crate) fn cell(name: &str, medians: &[(Metric, f64)]) -> CellSummary {
        let metrics = medians
            .iter()
            .map(|(m, v)| {
                (
                    m.name().to_string(),
                    crate::stats::Summary {
                        n: 3,
                        median: *v,
                        mean: *v,
                        sd: None,
                        cv: None,
                        ci95: None,
                        min: *v,
                        max: *v,
                        outliers: Vec::new(),
                        bootstrap_ci95: None,
                    },
                )
            })
            .collect();
        CellSummary {
            cell: name.into(),
            cell_index: 0,
            model: "m".into(),
            profile: "p".into(),
            workload: "w".into(),
            kind: crate::config::WorkloadKind::Generate,
            synthetic: false,
            provenance: None,
            scope: None,
            engine: None,
            hardware: None,
            node: None,
            concurrency: None,
            token_counts: None,
            repetitions_ok: 1,
            failures: Vec::new(),
            metrics,
            energy_per_token_joules: None,
            energy_per_request_joules: None,
            avg_power_watts: None,
            eval: None,
            warnings: Vec::new(),
        }
    }

    /// Every rectangle's right edge in an SVG.
    fn rect_right_edges(svg: &str) -> Vec<f64> {
        let attr = |tag: &str, name: &str| -> Option<f64> {
            let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            tag[at..].split('"').next()?.parse().ok()
        };
        svg.split("<rect")
            .skip(1)
            .filter_map(|t| Some(attr(t, "x")? + attr(t, "width")?))
            .collect()
    }

    #[test]
    fn shares_end_at_one_hundred_percent() {
        let c = cell("c", &[(Metric::PrefillJ, 1.0), (Metric::DecodeJ, 3.0)]);
        let cells = [c];
        let svg = phase_share(&cells, &style::Style::new(&cells)).unwrap();
        // The axis ends at 100 (no padded 120) and no bar reaches past the plot's right edge.
        assert!(svg.contains("\n100\n") && !svg.contains("\n120\n"), "{svg}");
        let right = W as f64 - 80.0;
        let edges = rect_right_edges(&svg);
        let bars: Vec<f64> = edges.into_iter().filter(|e| *e < W as f64).collect();
        assert!(!bars.is_empty());
        assert!(bars.iter().all(|e| *e <= right + 1.0), "{bars:?}");
        assert!(
            bars.iter().any(|e| (*e - right).abs() <= 1.0),
            "a full bar ends at 100%: {bars:?}"
        );
        assert!(svg.contains("25% prefill"));
    }

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
