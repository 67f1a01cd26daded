//! What every chart shares: one colour per model (Okabe-Ito, safe for colour-blind readers and
//! kept across charts), one marker per profile, dashes for estimated figures, tick labels
//! without spurious decimals, and the caption line that says where the energy came from.

use super::super::CellSummary;
use crate::meter::Provenance;
use anyhow::Result;
use plotters::prelude::*;

/// Okabe and Ito's palette (2008) without its yellow, which vanishes on white, and with black
/// last; after seven models the colours repeat, and the legend and labels tell them apart.
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 0, 0),       // black
];

/// Text and axis gray.
pub const INK: RGBColor = RGBColor(34, 34, 34);
pub const MUTED: RGBColor = RGBColor(110, 110, 110);

/// The models and profiles of a run in plan order: their colours and markers.
#[derive(Debug, Clone, Default)]
pub struct Style {
    models: Vec<String>,
    profiles: Vec<String>,
    /// The caption line under every title: what the energy figures are.
    pub provenance: String,
    /// Any cell's energy estimated (no sensor): charts say so on themselves.
    pub estimated: bool,
    /// Estimated and measured cells side by side: estimated points are ringed as well.
    pub mixed: bool,
}

impl Style {
    /// Colours by model and markers by profile, in the order cells first name them.
    pub fn new(cells: &[CellSummary]) -> Style {
        let mut models: Vec<String> = Vec::new();
        let mut profiles: Vec<String> = Vec::new();
        for c in cells {
            if !models.contains(&c.model) {
                models.push(c.model.clone());
            }
            if !profiles.contains(&c.profile) {
                profiles.push(c.profile.clone());
            }
        }
        let est = cells
            .iter()
            .filter(|c| c.provenance == Some(Provenance::Estimated))
            .count();
        let measured = cells
            .iter()
            .filter(|c| c.provenance == Some(Provenance::Measured))
            .count();
        let synthetic = cells.iter().filter(|c| c.synthetic).count();
        let mut provenance = match (est, measured) {
            (0, 0) => "no energy figures".to_string(),
            (0, _) => "energy measured by sensors (RAPL/NVML)".to_string(),
            (e, 0) => format!(
                "ESTIMATED energy: no sensor, a CPU-time model ({} cell{})",
                e,
                if e == 1 { "" } else { "s" }
            ),
            (e, m) => format!("{m} cells measured; {e} ESTIMATED (no sensor, dashed outlines)"),
        };
        if synthetic > 0 {
            provenance.push_str(&format!(
                "; {synthetic} cell{} on synthetic models (random weights)",
                if synthetic == 1 { "" } else { "s" }
            ));
        }
        Style {
            models,
            profiles,
            provenance,
            estimated: est > 0,
            mixed: est > 0 && measured > 0,
        }
    }

    /// The models in plan order.
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// The profiles in plan order.
    pub fn profiles(&self) -> &[String] {
        &self.profiles
    }

    /// A model's colour (the same in every chart of the run).
    pub fn colour(&self, model: &str) -> RGBColor {
        let i = self.models.iter().position(|m| m == model).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }

    /// A profile's marker shape.
    pub fn marker(&self, profile: &str) -> usize {
        self.profiles.iter().position(|p| p == profile).unwrap_or(0)
    }
}

/// `s` cut to `n` characters with an ellipsis (names in legends and row labels).
pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        s.chars().take(n.saturating_sub(1)).collect::<String>() + "…"
    } else {
        s.to_string()
    }
}

/// A lighter tint of `c` (`t` of the way to white): the decode bar beside a prefill bar.
pub fn tint(c: RGBColor, t: f64) -> RGBColor {
    let m = |x: u8| (x as f64 + (255.0 - x as f64) * t).round() as u8;
    RGBColor(m(c.0), m(c.1), m(c.2))
}

/// A tick label without spurious decimals: `100`, `0.5`, `2.25`, `12k`, `1.5M`, `0.0003`.
pub fn tick(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    // Three significant digits at most, trailing zeros dropped.
    let digits = (3 - (x.abs().log10().floor() as i32 + 1)).clamp(0, 8) as usize;
    let mut s = format!("{x:.digits$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s + suffix
}

/// A tick label on an integer axis (threads, batch): whole numbers only, else nothing.
pub fn int_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 && v >= 0.0 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}

/// Whether values from `lo` to `hi` span more than a decade (then the axis is logarithmic).
pub fn spans_decade(lo: f64, hi: f64) -> bool {
    lo > 0.0 && hi.is_finite() && hi / lo > 10.0
}

/// Draws a marker of shape `i` (circle, triangle, square, cross, diamond, triangle down) at
/// `p` in pixels of `area`.
pub fn marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: (i32, i32),
    i: usize,
    color: RGBColor,
) -> Result<()> {
    let st = ShapeStyle::from(&color).filled();
    let (x, y) = p;
    let e = super::err;
    match i % 6 {
        0 => area.draw(&Circle::new(p, 4, st)).map_err(e)?,
        1 => area
            .draw(&Polygon::new(
                vec![(x, y - 5), (x - 5, y + 4), (x + 5, y + 4)],
                st,
            ))
            .map_err(e)?,
        2 => area
            .draw(&Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], st))
            .map_err(e)?,
        3 => {
            let s2 = ShapeStyle::from(&color).stroke_width(2);
            area.draw(&PathElement::new(vec![(x - 4, y - 4), (x + 4, y + 4)], s2))
                .map_err(e)?;
            area.draw(&PathElement::new(vec![(x - 4, y + 4), (x + 4, y - 4)], s2))
                .map_err(e)?;
        }
        4 => area
            .draw(&Polygon::new(
                vec![(x, y - 5), (x + 5, y), (x, y + 5), (x - 5, y)],
                st,
            ))
            .map_err(e)?,
        _ => area
            .draw(&Polygon::new(
                vec![(x, y + 5), (x - 5, y - 4), (x + 5, y - 4)],
                st,
            ))
            .map_err(e)?,
    }
    Ok(())
}

/// The outline of a rectangle in pixels: solid for measured figures, dashed for estimated.
pub fn outline<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    [(x0, y0), (x1, y1)]: [(i32, i32); 2],
    color: RGBColor,
    dashed: bool,
) -> Result<()> {
    let pts = vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)];
    area.draw(&PathElement::new(pts, stroke(color, 1, dashed)))
        .map_err(super::err)?;
    Ok(())
}

/// The opacity that marks a stroke to be dashed: plotters draws dashes as one element per
/// dash (thousands per chart); `dashes` turns the marked strokes into one SVG dash pattern.
const DASH_ALPHA: f64 = 0.999;

/// A stroke of `width`, marked for `dashes` when `dashed`.
pub fn stroke(color: RGBColor, width: u32, dashed: bool) -> ShapeStyle {
    if dashed {
        ShapeStyle::from(&color.mix(DASH_ALPHA)).stroke_width(width)
    } else {
        ShapeStyle::from(&color).stroke_width(width)
    }
}

/// Turns the strokes `stroke` marked into dashed ones (`stroke-dasharray`, which resvg's PNGs
/// draw too).
pub fn dashes(svg: String) -> String {
    let mark = format!("opacity=\"{DASH_ALPHA}\"");
    if !svg.contains(&mark) {
        return svg;
    }
    svg.replace(&mark, "opacity=\"1\" stroke-dasharray=\"5 3\"")
}

/// The title and, under it, the provenance caption (red-free emphasis for ESTIMATED).
pub fn header<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    style: &Style,
) -> Result<()> {
    area.draw(&Text::new(
        title.to_string(),
        (14, 10),
        ("sans-serif", 17).into_font().color(&INK),
    ))
    .map_err(super::err)?;
    let font = if style.estimated {
        ("sans-serif", 12).into_font().style(FontStyle::Bold)
    } else {
        ("sans-serif", 12).into_font()
    };
    area.draw(&Text::new(
        style.provenance.clone(),
        (14, 32),
        font.color(&MUTED),
    ))
    .map_err(super::err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_have_no_spurious_decimals() {
        let cases = [
            (100.0, "100"),
            (0.5, "0.5"),
            (2.25, "2.25"),
            (1.0, "1"),
            (12_000.0, "12k"),
            (1_500_000.0, "1.5M"),
            (0.0003, "0.0003"),
            (0.000_123_4, "0.000123"),
            (-40.0, "-40"),
            (0.0, "0"),
            (999.9, "1000"),
        ];
        for (v, want) in cases {
            assert_eq!(tick(v), want, "{v}");
        }
        assert_eq!(int_tick(2.0), "2");
        assert_eq!(int_tick(0.5), "");
        assert!(spans_decade(0.1, 2.0) && !spans_decade(1.0, 9.0) && !spans_decade(0.0, 5.0));
    }

    #[test]
    fn marked_strokes_become_one_dash_pattern() {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (50, 50)).into_drawing_area();
            outline(&root, [(5, 5), (40, 40)], PALETTE[0], true).unwrap();
            outline(&root, [(10, 10), (20, 20)], PALETTE[1], false).unwrap();
            root.present().unwrap();
        }
        let svg = dashes(svg);
        assert_eq!(svg.matches("stroke-dasharray=\"5 3\"").count(), 1, "{svg}");
        assert!(!svg.contains("0.999"));
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
    }

    #[test]
    fn tints_move_towards_white() {
        assert_eq!(tint(RGBColor(0, 100, 255), 0.5), RGBColor(128, 178, 255));
        assert_eq!(tint(PALETTE[0], 0.0), PALETTE[0]);
    }
}
