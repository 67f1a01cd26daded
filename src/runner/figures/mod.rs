//! Turns one repetition (its requests' outputs and the meters' marks) into a record's figures,
//! one file per concern: latency, energy, and streams served concurrently.

pub mod concurrency;
pub mod energy;
pub mod latency;

use crate::config::Suite;
use crate::engine::driver::Output;
use crate::meter::mark::Round;
use crate::meter::recording::Recording;
use crate::record::Record;
use crate::run_meta::IdleBaseline;

/// Fills the latency and energy figures of `r` from repetition `round` (one output per request);
/// returns warnings.
pub fn fill(
    r: &mut Record,
    rec: &Recording,
    round: Round,
    outputs: &[Output],
    idle: Option<&IdleBaseline>,
    suite: &Suite,
) -> Vec<String> {
    r.inner_iterations = outputs.len().max(1);
    latency::fill(r, outputs);
    energy::fill(r, rec, round, outputs, idle, suite)
}
