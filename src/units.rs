//! Physical units as types, so joules are never mixed up with watts or seconds.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Div, Mul, Sub};

/// Energy in joules.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Joules(pub f64);

/// Power in watts.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Watts(pub f64);

/// A duration in seconds.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seconds(pub f64);

impl Joules {
    /// Converts a cumulative counter value in microjoules; the last step of the u64 pipeline.
    pub fn from_micro(uj: u64) -> Self {
        Joules(uj as f64 / 1e6)
    }
    /// Converts fractional microjoules (bridged or interpolated values).
    pub fn from_micro_f64(uj: f64) -> Self {
        Joules(uj / 1e6)
    }
}

impl Seconds {
    /// Converts monotonic nanoseconds.
    pub fn from_nanos(ns: u64) -> Self {
        Seconds(ns as f64 / 1e9)
    }
}

impl Add for Joules {
    type Output = Joules;
    fn add(self, o: Joules) -> Joules {
        Joules(self.0 + o.0)
    }
}

impl Sub for Joules {
    type Output = Joules;
    fn sub(self, o: Joules) -> Joules {
        Joules(self.0 - o.0)
    }
}

impl Div<Seconds> for Joules {
    type Output = Watts;
    fn div(self, s: Seconds) -> Watts {
        Watts(self.0 / s.0)
    }
}

impl Mul<Seconds> for Watts {
    type Output = Joules;
    fn mul(self, s: Seconds) -> Joules {
        Joules(self.0 * s.0)
    }
}

impl fmt::Display for Joules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4} J", self.0)
    }
}

impl fmt::Display for Watts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} W", self.0)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4} s", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_times_time_is_energy_and_back() {
        let e = Watts(12.5) * Seconds(4.0);
        assert_eq!(e, Joules(50.0));
        assert_eq!(e / Seconds(4.0), Watts(12.5));
        assert_eq!(Joules::from_micro(2_500_000), Joules(2.5));
        assert_eq!(Seconds::from_nanos(1_500_000_000), Seconds(1.5));
    }
}

/// A duration for people: `0.4 s`, `52 s`, `14 min 3 s`, `2 h 05 min`.
pub fn human_seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "unknown".into();
    }
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        let m = (s / 60.0).floor();
        format!("{m:.0} min {:.0} s", s - m * 60.0)
    } else {
        let h = (s / 3600.0).floor();
        format!("{h:.0} h {:02.0} min", (s - h * 3600.0) / 60.0)
    }
}

#[cfg(test)]
mod human_tests {
    #[test]
    fn durations_read_naturally() {
        use super::human_seconds as h;
        assert_eq!(h(0.44), "0.4 s");
        assert_eq!(h(52.2), "52 s");
        assert_eq!(h(843.0), "14 min 3 s");
        assert_eq!(h(7500.0), "2 h 05 min");
        assert_eq!(h(f64::NAN), "unknown");
    }
}
