//! What a joule buys: accuracy against energy per item for one evaluation task, one point per
//! model (colour) and profile (marker), the items' 95% Wilson interval vertically and the
//! repetitions' 95% interval of J per item horizontally (log axis), chance level drawn, and the
//! Pareto frontier (more accurate for less energy) joined.

use super::axis::{Axis, label};
use super::style::{INK, MUTED, Style, header, marker, short};
use super::{W, err, metric, no_data};
use crate::meter::Provenance;
use crate::metric::Metric;
use crate::report::CellSummary;
use anyhow::Result;
use plotters::prelude::*;

/// One point: a cell's accuracy (with its interval) and J per item (with its interval).
struct Point<'a> {
    cell: &'a CellSummary,
    acc: f64,
    acc_ci: [f64; 2],
    j: f64,
    j_ci: [f64; 2],
}

fn points<'a>(cells: &'a [CellSummary], task: &str) -> Vec<Point<'a>> {
    cells
        .iter()
        .filter_map(|c| {
            let e = c.eval.as_ref().filter(|e| e.task == task)?;
            let (j, ci) = metric(c, Metric::JPerItem)?;
            (j > 0.0 && j.is_finite()).then(|| Point {
                cell: c,
                acc: e.accuracy,
                acc_ci: e.accuracy_ci,
                j,
                j_ci: ci.unwrap_or([j, j]),
            })
        })
        .collect()
}

/// The points no other point beats on both axes (higher accuracy, lower energy), by energy.
fn frontier(pts: &[Point]) -> Vec<(f64, f64)> {
    let mut order: Vec<&Point> = pts.iter().collect();
    order.sort_by(|a, b| a.j.total_cmp(&b.j).then(b.acc.total_cmp(&a.acc)));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in order {
        if out.last().is_none_or(|l| p.acc > l.1) {
            out.push((p.j, p.acc));
        }
    }
    out
}

/// The chart of task `task` (an error-free "no data" chart when no cell has both figures).
pub fn accuracy_energy(cells: &[CellSummary], task: &str, style: &Style) -> Result<String> {
    let pts = points(cells, task);
    if pts.is_empty() {
        return no_data(&format!(
            "Accuracy against energy per item ({task}): no cell has both figures"
        ));
    }
    let chance = pts
        .iter()
        .filter_map(|p| p.cell.eval.as_ref().and_then(|e| e.chance))
        .next();
    let (top, bottom) = (64, 420);
    let h = (bottom + 60 + 18 * pts.len() as i32 + 20) as u32;
    let xs: Vec<f64> = pts
        .iter()
        .flat_map(|p| [p.j_ci[0], p.j_ci[1], p.j])
        .collect();
    let x = Axis::fit(&xs, 110, W as i32 - 40, false, Some(true));
    let mut ys: Vec<f64> = pts
        .iter()
        .flat_map(|p| [p.acc_ci[0] * 100.0, p.acc_ci[1] * 100.0])
        .collect();
    ys.extend(chance.map(|c| c * 100.0));
    ys.push(0.0);
    let y = Axis::fit(&ys, bottom, top, true, Some(false));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        header(
            &root,
            &format!("What a joule buys on {task}: accuracy against energy per item"),
            style,
        )?;
        x.draw_x(&root, bottom, top, "energy per item (J)", label)?;
        y.draw_y(
            &root,
            110,
            W as i32 - 40,
            "accuracy (%), 95% interval",
            label,
        )?;
        if let Some(c) = chance {
            let py = y.px(c * 100.0);
            root.draw(&PathElement::new(
                vec![(110, py), (W as i32 - 40, py)],
                super::style::stroke(MUTED, 1, true),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                format!("chance {:.1}%", c * 100.0),
                (W as i32 - 150, py - 14),
                ("sans-serif", 11).into_font().color(&MUTED),
            ))
            .map_err(err)?;
        }
        let front = frontier(&pts);
        if front.len() > 1 {
            let px: Vec<(i32, i32)> = front
                .iter()
                .map(|(j, a)| (x.px(*j), y.px(a * 100.0)))
                .collect();
            root.draw(&PathElement::new(
                px,
                ShapeStyle::from(&INK).stroke_width(1),
            ))
            .map_err(err)?;
        }
        for p in &pts {
            let colour = style.colour(&p.cell.model);
            let at = (x.px(p.j), y.px(p.acc * 100.0));
            let line = |a: (i32, i32), b: (i32, i32)| {
                root.draw(&PathElement::new(
                    vec![a, b],
                    ShapeStyle::from(&colour).stroke_width(1),
                ))
                .map_err(err)
            };
            line(
                (at.0, y.px(p.acc_ci[0] * 100.0)),
                (at.0, y.px(p.acc_ci[1] * 100.0)),
            )?;
            line((x.px(p.j_ci[0]), at.1), (x.px(p.j_ci[1]), at.1))?;
            marker(&root, at, style.marker(&p.cell.profile), colour)?;
            if p.cell.provenance == Some(Provenance::Estimated) && style.mixed {
                root.draw(&Circle::new(
                    at,
                    7,
                    ShapeStyle::from(&MUTED).stroke_width(1),
                ))
                .map_err(err)?;
            }
        }
        for (k, p) in pts.iter().enumerate() {
            let ly = bottom + 60 + 18 * k as i32;
            marker(
                &root,
                (20, ly + 6),
                style.marker(&p.cell.profile),
                style.colour(&p.cell.model),
            )?;
            root.draw(&Text::new(
                format!(
                    "{} / {}: {:.1}% [{:.1}, {:.1}] at {} J per item",
                    short(&p.cell.model, 40),
                    short(&p.cell.profile, 20),
                    p.acc * 100.0,
                    p.acc_ci[0] * 100.0,
                    p.acc_ci[1] * 100.0,
                    label(p.j)
                ),
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
    fn the_frontier_keeps_only_points_nothing_beats_on_both() {
        let dummy = super::super::tests::cell("c", &[]);
        let p = |j: f64, acc: f64| Point {
            cell: &dummy,
            acc,
            acc_ci: [acc, acc],
            j,
            j_ci: [j, j],
        };
        let pts = [
            p(1.0, 0.4),
            p(2.0, 0.3),
            p(3.0, 0.6),
            p(4.0, 0.5),
            p(0.5, 0.2),
        ];
        assert_eq!(frontier(&pts), vec![(0.5, 0.2), (1.0, 0.4), (3.0, 0.6)]);
    }
}
