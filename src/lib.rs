//! joulebench: how many joules an open model spends per token, on this hardware, in this
//! configuration. The library holds everything; the binary only translates the command line.

pub mod ab;
pub mod baseline;
pub mod clock;
pub mod cluster;
pub mod compare;
pub mod config;
pub mod engine;
pub mod estimate;
pub mod eval;
pub mod fingerprint;
pub mod frontier;
pub mod measure;
pub mod meter;
pub mod metric;
pub mod names;
pub mod plan;
pub mod procs;
pub mod record;
pub mod redact;
pub mod report;
pub mod run_dir;
pub mod run_meta;
pub mod runner;
pub mod stats;
pub mod store;
pub mod units;
