//! A numeric axis drawn by hand: linear or logarithmic (chosen when the values span more than a
//! decade), ticks at 1-2-5 steps, labels from `style::tick`, light grid lines, a title with units.

use super::err;
use super::style::{INK, MUTED, spans_decade, tick};
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Maps values to pixels between `p0` (at `lo`) and `p1` (at `hi`).
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    pub p0: i32,
    pub p1: i32,
    /// Whole numbers only (threads, batch): ticks at integers.
    pub int: bool,
}

fn nice_step(span: f64, want: usize) -> f64 {
    let raw = span / want.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

impl Axis {
    /// An axis covering the finite values `vals` (positive ones only on a log axis): log when
    /// they span more than a decade (or `log` says so), else linear from 0 when `from_zero`.
    pub fn fit(vals: &[f64], p0: i32, p1: i32, from_zero: bool, log: Option<bool>) -> Axis {
        let finite: Vec<f64> = vals.iter().copied().filter(|v| v.is_finite()).collect();
        let pos: Vec<f64> = finite.iter().copied().filter(|v| *v > 0.0).collect();
        let lo_pos = pos.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let use_log = log.unwrap_or_else(|| spans_decade(lo_pos, hi)) && !pos.is_empty();
        if use_log {
            // Bounds on the 1-2-5 ladder just outside the values.
            let ladder = |v: f64, up: bool| {
                let e = v.log10().floor();
                let steps = [1.0, 2.0, 5.0, 10.0];
                let base = 10f64.powf(e);
                if up {
                    steps
                        .iter()
                        .map(|m| m * base)
                        .find(|x| *x >= v * 0.999)
                        .unwrap_or(base * 10.0)
                } else {
                    steps
                        .iter()
                        .rev()
                        .map(|m| m * base)
                        .find(|x| *x <= v * 1.001)
                        .unwrap_or(base)
                }
            };
            let lo = ladder(lo_pos, false);
            let mut top = ladder(hi, true);
            if top <= lo {
                top = lo * 10.0;
            }
            return Axis {
                lo,
                hi: top,
                log: true,
                p0,
                p1,
                int: false,
            };
        }
        let lo = if from_zero {
            finite.iter().copied().fold(0.0, f64::min)
        } else {
            finite.iter().copied().fold(f64::INFINITY, f64::min)
        };
        let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
            (true, true) if hi > lo => (lo, hi),
            (true, true) => (
                lo - 0.5_f64.max(lo.abs() * 0.1),
                hi + 0.5_f64.max(hi.abs() * 0.1),
            ),
            _ => (0.0, 1.0),
        };
        let step = nice_step(hi - lo, 5);
        let lo = if from_zero && lo >= 0.0 {
            0.0
        } else {
            (lo / step).floor() * step
        };
        let hi = ((hi * 1.02) / step).ceil() * step;
        Axis {
            lo,
            hi: if hi > lo { hi } else { lo + step },
            log: false,
            p0,
            p1,
            int: false,
        }
    }

    /// A linear axis from exactly `lo` to exactly `hi` (shares: 0 to 100).
    pub fn exact(lo: f64, hi: f64, p0: i32, p1: i32) -> Axis {
        Axis {
            lo,
            hi,
            log: false,
            p0,
            p1,
            int: false,
        }
    }

    /// A linear axis of whole numbers from 0 (or below) to at least 1, ticked at integers.
    pub fn integers(vals: &[f64], p0: i32, p1: i32) -> Axis {
        let mut a = Axis::fit(vals, p0, p1, true, Some(false));
        a.lo = a.lo.floor();
        a.hi = a.hi.max(1.0).ceil();
        a.int = true;
        a
    }

    /// The pixel of value `v` (clamped to the axis).
    pub fn px(&self, v: f64) -> i32 {
        let f = if self.log {
            let v = v.max(self.lo);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        let f = if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.p0 + ((self.p1 - self.p0) as f64 * f).round() as i32
    }

    /// Where ticks go: 1-2-5 steps (linear), decades (with 2 and 5 inside up to three decades).
    pub fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            let inner: &[f64] = if b - a <= 3 { &[1.0, 2.0, 5.0] } else { &[1.0] };
            let mut out = Vec::new();
            for e in a..=b {
                for m in inner {
                    let v = m * 10f64.powi(e);
                    if v >= self.lo * 0.999 && v <= self.hi * 1.001 {
                        out.push(v);
                    }
                }
            }
            out
        } else {
            let mut step = nice_step(self.hi - self.lo, 5);
            if self.int {
                step = step.max(1.0).round();
            }
            let mut out = Vec::new();
            let mut k = (self.lo / step).ceil();
            while k * step <= self.hi + step * 1e-9 && out.len() < 50 {
                out.push(k * step);
                k += 1.0;
            }
            out
        }
    }

    /// Draws this as a horizontal axis at pixel row `y`, grid lines up to `top`, and `title`.
    pub fn draw_x<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
        y: i32,
        top: i32,
        title: &str,
        label: fn(f64) -> String,
    ) -> Result<()> {
        let grid = RGBColor(225, 225, 225);
        for t in self.ticks() {
            let x = self.px(t);
            area.draw(&PathElement::new(vec![(x, top), (x, y)], grid))
                .map_err(err)?;
            area.draw(&PathElement::new(vec![(x, y), (x, y + 5)], INK))
                .map_err(err)?;
            area.draw(&Text::new(
                label(t),
                (x, y + 8),
                ("sans-serif", 12)
                    .into_font()
                    .color(&INK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(err)?;
        }
        area.draw(&PathElement::new(vec![(self.p0, y), (self.p1, y)], INK))
            .map_err(err)?;
        let title = if self.log {
            format!("{title}, log scale")
        } else {
            title.to_string()
        };
        area.draw(&Text::new(
            title,
            ((self.p0 + self.p1) / 2, y + 26),
            ("sans-serif", 13)
                .into_font()
                .color(&INK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(err)?;
        Ok(())
    }

    /// Draws this as a vertical axis at pixel column `x` (p0 at the bottom), grid lines to
    /// `right`, and `title` written upwards left of the labels.
    pub fn draw_y<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
        x: i32,
        right: i32,
        title: &str,
        label: fn(f64) -> String,
    ) -> Result<()> {
        let grid = RGBColor(225, 225, 225);
        for t in self.ticks() {
            let y = self.px(t);
            area.draw(&PathElement::new(vec![(x, y), (right, y)], grid))
                .map_err(err)?;
            area.draw(&PathElement::new(vec![(x - 5, y), (x, y)], INK))
                .map_err(err)?;
            area.draw(&Text::new(
                label(t),
                (x - 8, y),
                ("sans-serif", 12)
                    .into_font()
                    .color(&INK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(err)?;
        }
        area.draw(&PathElement::new(vec![(x, self.p0), (x, self.p1)], INK))
            .map_err(err)?;
        let title = if self.log {
            format!("{title}, log scale")
        } else {
            title.to_string()
        };
        area.draw(&Text::new(
            title,
            (x - 62, (self.p0 + self.p1) / 2),
            ("sans-serif", 13)
                .into_font()
                .color(&MUTED)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(err)?;
        Ok(())
    }
}

/// The default tick label.
pub fn label(v: f64) -> String {
    tick(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_axes_start_at_zero_and_tick_in_nice_steps() {
        let a = Axis::fit(&[1.3, 4.2, 7.9], 0, 500, true, None);
        assert!(!a.log && a.lo == 0.0 && a.hi >= 7.9);
        let t = a.ticks();
        assert_eq!(t[0], 0.0);
        let step = t[1] - t[0];
        assert!([1.0, 2.0, 5.0].contains(&step), "{t:?}");
        assert_eq!(a.px(0.0), 0);
        assert_eq!(a.px(a.hi), 500);
    }

    #[test]
    fn values_over_a_decade_get_a_log_axis_with_decade_ticks() {
        let a = Axis::fit(&[0.02, 3.0], 100, 0, true, None);
        assert!(a.log && a.lo == 0.02 && a.hi == 5.0, "{a:?}");
        let t = a.ticks();
        assert!(
            t.contains(&0.02) && t.contains(&1.0) && t.contains(&5.0),
            "{t:?}"
        );
        assert!(t.iter().all(|v| {
            let m = v / 10f64.powf(v.log10().floor());
            [1.0, 2.0, 5.0].iter().any(|n| (m - n).abs() < 1e-6)
        }));
        // p0 is at the low end (a vertical axis counts down in pixels).
        assert_eq!(a.px(0.02), 100);
        assert_eq!(a.px(1.0), 29);
        // Bounds sit on the 1-2-5 ladder just outside the values.
        let b = Axis::fit(&[1.35e8, 1.35e9], 0, 100, false, Some(true));
        assert_eq!((b.lo, b.hi), (1e8, 2e9), "{b:?}");
        let i = Axis::integers(&[1.0, 2.0], 0, 100);
        assert!(
            i.ticks().iter().all(|t| t.fract() == 0.0),
            "{:?}",
            i.ticks()
        );
        // Nothing to show still gives a usable axis.
        let e = Axis::fit(&[], 0, 10, true, None);
        assert!(e.hi > e.lo);
    }
}
