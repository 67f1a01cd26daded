//! joulebench: how many joules an open model spends per token, on this hardware, in this
//! configuration. The library holds everything; the binary only translates the command line.

pub mod baseline;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod compare;
pub mod config;
pub mod engine;
pub mod fingerprint;
pub mod measure;
pub mod merge;
pub mod meter;
pub mod plan;
pub mod record;
pub mod report;
pub mod runner;
pub mod shard;
pub mod slurm;
pub mod stats;
pub mod units;
