//! The operator's question: which configuration spends the fewest joules per output token while
//! meeting the latency deadlines? Per model, the cheapest cell that meets every deadline given
//! (`joulebench frontier RUN_DIR --itl-p90-ms X ...`, or `[slo]` in the suite), the time-energy
//! Pareto frontier across its cells (J/token against median ITL: no other cell is both faster
//! and cheaper), and a chart of it with the deadline drawn.

pub use crate::config::slo::Slo;
use crate::record::{Record, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One cell (a configuration): medians over its completed repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub cell: String,
    pub model: String,
    pub profile: String,
    pub workload: String,
    pub repetitions: usize,
    pub j_per_token: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p90_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    /// Some repetition was flagged unstable, or its energy is estimated.
    pub unstable: bool,
    pub estimated: bool,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The cells of a run's records, in first-seen order (failed repetitions left out).
pub fn points(records: &[Record]) -> Vec<Point> {
    let mut order: Vec<String> = Vec::new();
    let mut by: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.status == Status::Ok) {
        if !by.contains_key(&r.cell) {
            order.push(r.cell.clone());
        }
        by.entry(r.cell.clone()).or_default().push(r);
    }
    order
        .into_iter()
        .map(|cell| {
            let rs = &by[&cell];
            let ms = |f: &dyn Fn(&Record) -> Option<f64>| {
                median(rs.iter().filter_map(|r| f(r)).map(|s| s * 1e3).collect())
            };
            let lat = |r: &Record| r.latency.clone();
            Point {
                model: rs[0].model.clone(),
                profile: rs[0].profile.clone(),
                workload: rs[0].workload.clone(),
                repetitions: rs.len(),
                j_per_token: median(
                    rs.iter()
                        .filter_map(|r| r.energy_per_token_joules)
                        .collect(),
                ),
                itl_p50_ms: ms(&|r| lat(r).and_then(|l| l.itl_s.map(|q| q.p50)).or(r.itl_p50_s)),
                itl_p90_ms: ms(&|r| lat(r).and_then(|l| l.itl_s.map(|q| q.p90)).or(r.itl_p90_s)),
                ttft_p90_ms: ms(&|r| lat(r).and_then(|l| l.ttft_s.map(|q| q.p90))),
                tpot_p50_ms: ms(&|r| lat(r).and_then(|l| l.tpot_s.map(|q| q.p50))),
                unstable: rs
                    .iter()
                    .any(|r| r.stability.as_ref().is_some_and(|s| !s.stable)),
                estimated: rs.iter().any(|r| {
                    r.energy
                        .as_ref()
                        .is_some_and(|e| e.provenance == crate::meter::Provenance::Estimated)
                }),
                cell,
            }
        })
        .collect()
}

/// The deadlines `p` misses, one phrase each (empty: it meets them all). A figure the cell
/// lacks misses its deadline.
pub fn misses(slo: &Slo, p: &Point) -> Vec<String> {
    let mut out = Vec::new();
    for ((name, limit), have) in
        slo.bounds()
            .into_iter()
            .zip([p.itl_p90_ms, p.ttft_p90_ms, p.tpot_p50_ms])
    {
        let Some(limit) = limit else { continue };
        let short = &name[..name.len() - 3];
        match have {
            Some(h) if h <= limit => {}
            Some(h) => out.push(format!("{short} {h:.1} ms > {limit} ms")),
            None => out.push(format!("no {short} figure")),
        }
    }
    out
}

/// One model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelChoice {
    pub model: String,
    /// The cell with the least J/token meeting every deadline (stable cells only).
    pub best: Option<Point>,
    /// Cells no other cell of the model beats on both J/token and median ITL, fastest first.
    pub frontier: Vec<Point>,
    /// Every other cell and why it was not chosen.
    pub rejected: Vec<(String, String)>,
}

/// Per model (in first-seen order): the cheapest cell meeting `slo`, and the frontier.
pub fn analyze(points: &[Point], slo: &Slo) -> Vec<ModelChoice> {
    let mut models: Vec<String> = Vec::new();
    for p in points {
        if !models.contains(&p.model) {
            models.push(p.model.clone());
        }
    }
    models
        .into_iter()
        .map(|m| {
            let mine: Vec<&Point> = points.iter().filter(|p| p.model == m).collect();
            let mut rejected = Vec::new();
            let mut ok: Vec<&Point> = Vec::new();
            for p in &mine {
                let mut why = misses(slo, p);
                if p.unstable {
                    why.push("unstable".into());
                }
                if p.j_per_token.is_none_or(|j| j <= 0.0) {
                    why.push("no J/token".into());
                }
                if why.is_empty() {
                    ok.push(p);
                } else {
                    rejected.push((p.cell.clone(), why.join(", ")));
                }
            }
            let best = ok
                .iter()
                .min_by(|a, b| {
                    a.j_per_token
                        .unwrap_or(f64::INFINITY)
                        .total_cmp(&b.j_per_token.unwrap_or(f64::INFINITY))
                })
                .map(|p| (*p).clone());
            if let Some(b) = &best {
                for p in &ok {
                    if p.cell != b.cell {
                        rejected.push((
                            p.cell.clone(),
                            format!(
                                "meets the deadlines at {:.4} J/token, more than {:.4}",
                                p.j_per_token.unwrap_or(f64::NAN),
                                b.j_per_token.unwrap_or(f64::NAN)
                            ),
                        ));
                    }
                }
            }
            // Unstable cells neither join the frontier nor push others off it.
            let steady: Vec<&&Point> = mine.iter().filter(|p| !p.unstable).collect();
            let mut frontier: Vec<Point> = steady
                .iter()
                .filter(|p| p.j_per_token.is_some() && p.itl_p50_ms.is_some())
                .filter(|p| {
                    !steady.iter().any(|q| {
                        let (Some(qj), Some(qt), Some(pj), Some(pt)) =
                            (q.j_per_token, q.itl_p50_ms, p.j_per_token, p.itl_p50_ms)
                        else {
                            return false;
                        };
                        qj <= pj && qt <= pt && (qj < pj || qt < pt)
                    })
                })
                .map(|p| (**p).clone())
                .collect();
            frontier.sort_by(|a, b| {
                a.itl_p50_ms
                    .unwrap_or(0.0)
                    .total_cmp(&b.itl_p50_ms.unwrap_or(0.0))
            });
            ModelChoice {
                model: m,
                best,
                frontier,
                rejected,
            }
        })
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// The answer as Markdown (text output is the same table).
pub fn markdown(choices: &[ModelChoice], slo: &Slo) -> String {
    let mut s = format!(
        "## Least energy per output token meeting {}\n\n",
        slo.describe()
    );
    s.push_str("| model | configuration | J/token | ITL p50 ms | ITL p90 ms | TTFT p90 ms | TPOT p50 ms |\n|---|---|---|---|---|---|---|\n");
    for c in choices {
        match &c.best {
            Some(p) => s.push_str(&format!(
                "| {} | {} / {}{} | {} | {} | {} | {} | {} |\n",
                c.model,
                p.profile,
                p.workload,
                if p.estimated { " (ESTIMATED)" } else { "" },
                opt(p.j_per_token, 4),
                opt(p.itl_p50_ms, 1),
                opt(p.itl_p90_ms, 1),
                opt(p.ttft_p90_ms, 1),
                opt(p.tpot_p50_ms, 1)
            )),
            None => s.push_str(&format!(
                "| {} | none meets the deadlines | - | - | - | - | - |\n",
                c.model
            )),
        }
    }
    s.push_str("\n### Time-energy frontier (no other configuration of the model is both faster and cheaper)\n\n| model | configuration | ITL p50 ms | J/token |\n|---|---|---|---|\n");
    for c in choices {
        for p in &c.frontier {
            s.push_str(&format!(
                "| {} | {} / {} | {} | {} |\n",
                c.model,
                p.profile,
                p.workload,
                opt(p.itl_p50_ms, 1),
                opt(p.j_per_token, 4)
            ));
        }
    }
    let rejected: Vec<String> = choices
        .iter()
        .flat_map(|c| {
            c.rejected
                .iter()
                .map(move |(cell, why)| format!("- {}: {cell}: {why}", c.model))
        })
        .collect();
    if !rejected.is_empty() {
        s.push_str("\n### Not chosen\n\n");
        s.push_str(&rejected.join("\n"));
        s.push('\n');
    }
    s
}

/// J/token against median ITL per model, the frontier joined, the ITL deadline drawn.
pub fn chart_svg(points: &[Point], choices: &[ModelChoice], slo: &Slo) -> String {
    use plotters::prelude::*;
    let pts: Vec<&Point> = points
        .iter()
        .filter(|p| p.j_per_token.is_some() && p.itl_p50_ms.is_some())
        .collect();
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (900, 560)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let xs: Vec<f64> = pts.iter().filter_map(|p| p.itl_p50_ms).collect();
        let ys: Vec<f64> = pts.iter().filter_map(|p| p.j_per_token).collect();
        let max = |v: &[f64], extra: Option<f64>| {
            v.iter()
                .copied()
                .chain(extra)
                .fold(0f64, f64::max)
                .max(1e-9)
                * 1.15
        };
        let xmax = max(&xs, slo.itl_p90_ms);
        let ymax = max(&ys, None);
        let estimated = pts.iter().any(|p| p.estimated);
        let title = format!(
            "Energy per output token vs median ITL{}; deadline: {}",
            if estimated { " (ESTIMATED energy)" } else { "" },
            slo.describe()
        );
        let Ok(mut chart) = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        else {
            return String::new();
        };
        let _ = chart
            .configure_mesh()
            .x_desc("median inter-token latency (ms)")
            .y_desc("energy per output token (J)")
            .draw();
        let palette = [
            RGBColor(0, 114, 178),
            RGBColor(230, 159, 0),
            RGBColor(0, 158, 115),
            RGBColor(204, 121, 167),
            RGBColor(86, 180, 233),
            RGBColor(213, 94, 0),
            RGBColor(240, 228, 66),
            RGBColor(0, 0, 0),
        ];
        for (i, c) in choices.iter().enumerate() {
            let col = palette[i % palette.len()];
            let mine: Vec<(f64, f64)> = pts
                .iter()
                .filter(|p| p.model == c.model)
                .filter_map(|p| Some((p.itl_p50_ms?, p.j_per_token?)))
                .collect();
            let _ = chart
                .draw_series(
                    mine.iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, col.filled())),
                )
                .map(|s| {
                    s.label(c.model.clone())
                        .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()))
                });
            let line: Vec<(f64, f64)> = c
                .frontier
                .iter()
                .filter_map(|p| Some((p.itl_p50_ms?, p.j_per_token?)))
                .collect();
            let _ = chart.draw_series(LineSeries::new(line, col.stroke_width(2)));
            if let Some(b) = &c.best
                && let (Some(x), Some(y)) = (b.itl_p50_ms, b.j_per_token)
            {
                let _ =
                    chart.draw_series(std::iter::once(Circle::new((x, y), 9, col.stroke_width(2))));
            }
        }
        if let Some(d) = slo.itl_p90_ms {
            let _ = chart
                .draw_series(DashedLineSeries::new(
                    vec![(d, 0.0), (d, ymax)],
                    6,
                    4,
                    RED.stroke_width(2),
                ))
                .map(|s| {
                    s.label(format!("ITL p90 deadline {d} ms"))
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED))
                });
        }
        let _ = chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw();
        let _ = root.present();
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cell: &str, model: &str, j: f64, itl50: f64, itl90: f64) -> Point {
        Point {
            cell: cell.into(),
            model: model.into(),
            profile: "p".into(),
            workload: cell.into(),
            repetitions: 3,
            j_per_token: Some(j),
            itl_p50_ms: Some(itl50),
            itl_p90_ms: Some(itl90),
            ttft_p90_ms: Some(100.0),
            tpot_p50_ms: Some(itl50),
            unstable: false,
            estimated: false,
        }
    }

    /// A known grid: batching makes tokens cheaper and slower. The deadline picks the cheapest
    /// cell under it; the frontier drops the cell beaten on both axes; an unstable cell is
    /// never chosen however cheap.
    #[test]
    fn the_cheapest_cell_meeting_the_deadline_and_the_frontier() {
        let grid = vec![
            p("c1", "a", 1.0, 20.0, 25.0),
            p("c2", "a", 0.6, 30.0, 38.0),
            p("c4", "a", 0.4, 45.0, 60.0),
            p("c8", "a", 0.3, 80.0, 110.0),
            p("slow-and-dear", "a", 0.9, 50.0, 60.0),
            Point {
                unstable: true,
                ..p("c16", "a", 0.1, 30.0, 35.0)
            },
            p("b-c1", "b", 2.0, 10.0, 12.0),
        ];
        let slo = Slo {
            itl_p90_ms: Some(60.0),
            ..Slo::default()
        };
        let c = analyze(&grid, &slo);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].best.as_ref().unwrap().cell, "c4");
        let f: Vec<&str> = c[0].frontier.iter().map(|p| p.cell.as_str()).collect();
        assert_eq!(f, ["c1", "c2", "c4", "c8"]);
        assert!(
            c[0].rejected
                .iter()
                .any(|(x, why)| x == "c8" && why.contains("itl_p90 110.0 ms > 60 ms"))
        );
        assert!(
            c[0].rejected
                .iter()
                .any(|(x, why)| x == "c16" && why.contains("unstable"))
        );
        assert_eq!(c[1].best.as_ref().unwrap().cell, "b-c1");
        // A deadline nobody meets.
        let tight = Slo {
            itl_p90_ms: Some(5.0),
            ttft_p90_ms: Some(50.0),
            ..Slo::default()
        };
        let c = analyze(&grid, &tight);
        assert!(c.iter().all(|m| m.best.is_none()));
        assert!(markdown(&c, &tight).contains("none meets the deadlines"));
        let svg = chart_svg(&grid, &analyze(&grid, &slo), &slo);
        assert!(svg.contains("<svg") && svg.contains("ITL p90 deadline 60 ms"));
    }
}
