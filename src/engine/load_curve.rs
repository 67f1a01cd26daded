//! The points of a load curve (`load = [...]`) as cells and records name them.

use serde::{Deserialize, Serialize};

/// One point of a load curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadPoint {
    /// The closed loop whose throughput the other points are fractions of.
    Saturation,
    /// An open loop at `fraction` of the saturation throughput of workload `saturation`.
    Fraction { fraction: f64, saturation: String },
    /// The server loaded, no requests, for `seconds`.
    ActiveIdle { seconds: f64 },
}

/// A load-curve point as records state it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadFigures {
    /// The load-curve workload as the suite names it.
    pub curve: String,
    #[serde(flatten)]
    pub point: LoadPoint,
    /// Requests per second the saturation cell achieved (fractions are of this).
    pub saturation_requests_per_s: Option<f64>,
    /// The rate this point offered (requests per second).
    pub offered_requests_per_s: Option<f64>,
}
