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
