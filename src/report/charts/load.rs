//! The load curve: average power against offered load (active idle at 0, the saturation
//! closed loop at 1), each point labelled with its energy per request, per model and profile.

use super::style::tick;
use super::{W, err, series as palette};
use crate::engine::load_curve::LoadPoint;
use crate::record::{Record, Status};
use anyhow::Result;
use plotters::prelude::*;
use std::collections::BTreeMap;

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// (offered load, median power W, median J per request) per curve, None when no record is on
/// a load curve.
pub fn points(records: &[Record]) -> BTreeMap<String, Vec<(f64, f64, Option<f64>)>> {
    let mut cells: BTreeMap<(String, String), Vec<&Record>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.status == Status::Ok && r.load.is_some())
    {
        cells
            .entry((r.cell.clone(), r.model.clone()))
            .or_default()
            .push(r);
    }
    let mut out: BTreeMap<String, Vec<(f64, f64, Option<f64>)>> = BTreeMap::new();
    for rs in cells.values() {
        let l = rs[0].load.as_ref().expect("filtered on load");
        let x = match &l.point {
            LoadPoint::Saturation => 1.0,
            LoadPoint::Fraction { fraction, .. } => *fraction,
            LoadPoint::ActiveIdle { .. } => 0.0,
        };
        let Some(power) = median(rs.iter().filter_map(|r| r.avg_power_watts).collect()) else {
            continue;
        };
        let per_request = match l.point {
            LoadPoint::ActiveIdle { .. } => None,
            _ => median(
                rs.iter()
                    .filter_map(|r| {
                        let w = r.whole.as_ref()?;
                        (w.requests > 0).then(|| w.energy_j / w.requests as f64)
                    })
                    .collect(),
            ),
        };
        let key = format!("{} / {} / {}", rs[0].model, rs[0].profile, l.curve);
        out.entry(key).or_default().push((x, power, per_request));
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The chart (Err when no record is on a load curve).
pub fn load_curve(records: &[Record]) -> Result<String> {
    let curves = points(records);
    if curves.is_empty() {
        anyhow::bail!("no load-curve records");
    }
    let ymax = curves
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(0f64, f64::max)
        .max(1e-9)
        * 1.2;
    let xmax = curves.values().flatten().map(|p| p.0).fold(1f64, f64::max) * 1.05;
    let estimated = records.iter().any(|r| {
        r.load.is_some()
            && r.energy
                .as_ref()
                .is_some_and(|e| e.provenance == crate::meter::Provenance::Estimated)
    });
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Average power against offered load{} (labels: J per request; 0 = active idle)",
                    if estimated { ", ESTIMATED energy" } else { "" }
                ),
                ("sans-serif", 16),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.02f64..xmax, 0f64..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .x_desc("offered load (fraction of the saturation throughput)")
            .y_desc("average power (W)")
            .draw()
            .map_err(err)?;
        for (i, (name, pts)) in curves.iter().enumerate() {
            let c = palette(i);
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
            chart
                .draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 4, c.filled())))
                .map_err(err)?;
            chart
                .draw_series(pts.iter().filter_map(|p| {
                    p.2.map(|j| {
                        Text::new(
                            format!("{j:.2} J"),
                            (p.0, p.1 + ymax * 0.03),
                            ("sans-serif", 12),
                        )
                    })
                }))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}
