//! Suites across machines: which cells a shard runs, merging shards' run folders, and Slurm job
//! scripts.

pub mod merge;
pub mod shard;
pub mod slurm;
