//! Splitting a suite across machines: which cells a shard runs, what Slurm says about where it
//! runs, and the tag every record carries so merged runs keep each part's hardware.

pub use crate::run_dir::{HostTag, ShardInfo, SlurmJob};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Shard `index` of `count` (0-based): it runs the cells whose plan index ≡ index (mod count).
/// Round-robin rather than contiguous, so a suite ordered model-major spreads each model's
/// cells over all shards and the shards finish at about the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `I/N` with 0 ≤ I < N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || {
            format!(
                "{s:?} is not a shard: give I/N with 0 <= I < N (0-based, as Slurm's \
                 SLURM_ARRAY_TASK_ID for --array=0-(N-1)), for example 0/4"
            )
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// True when this shard runs the cell at `cell_index` of the plan.
    pub fn owns(&self, cell_index: usize) -> bool {
        cell_index % self.count as usize == self.index as usize
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl SlurmJob {
    /// Reads `SLURM_*` variables through `get`; None outside Slurm.
    pub fn from_env_with(get: impl Fn(&str) -> Option<String>) -> Option<SlurmJob> {
        let job = SlurmJob {
            job_id: get("SLURM_JOB_ID"),
            array_job_id: get("SLURM_ARRAY_JOB_ID"),
            array_task_id: get("SLURM_ARRAY_TASK_ID"),
            node: get("SLURMD_NODENAME").or_else(|| get("SLURM_NODELIST")),
            partition: get("SLURM_JOB_PARTITION"),
            cluster: get("SLURM_CLUSTER_NAME"),
        };
        job.job_id.is_some().then_some(job)
    }

    /// This process's Slurm job, if any.
    pub fn from_env() -> Option<SlurmJob> {
        Self::from_env_with(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_belongs_to_exactly_one_shard() {
        for n in 1..=7u32 {
            for cells in 0..40usize {
                let mut owners = vec![0u32; cells];
                for i in 0..n {
                    let s = Shard { index: i, count: n };
                    for (c, o) in owners.iter_mut().enumerate() {
                        if s.owns(c) {
                            *o += 1;
                        }
                    }
                }
                assert!(owners.iter().all(|&o| o == 1), "n={n} cells={cells}");
                // Round robin: shard sizes differ by at most one.
                let sizes: Vec<usize> = (0..n)
                    .map(|i| {
                        (0..cells)
                            .filter(|&c| Shard { index: i, count: n }.owns(c))
                            .count()
                    })
                    .collect();
                let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
                assert!(
                    hi.unwrap() - lo.unwrap() <= 1,
                    "n={n} cells={cells} {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn parses_i_of_n() {
        assert_eq!(Shard::parse("0/4"), Ok(Shard { index: 0, count: 4 }));
        assert_eq!(Shard::parse(" 3 / 4 "), Ok(Shard { index: 3, count: 4 }));
        for bad in ["4/4", "1/0", "-1/3", "a/b", "2", "", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_slurm_variables() {
        assert_eq!(SlurmJob::from_env_with(|_| None), None);
        let env = |k: &str| match k {
            "SLURM_JOB_ID" => Some("101".to_string()),
            "SLURM_ARRAY_JOB_ID" => Some("100".to_string()),
            "SLURM_ARRAY_TASK_ID" => Some("1".to_string()),
            "SLURMD_NODENAME" => Some("node7".to_string()),
            _ => None,
        };
        let j = SlurmJob::from_env_with(env).unwrap();
        assert_eq!(j.array_task_id.as_deref(), Some("1"));
        assert_eq!(j.node.as_deref(), Some("node7"));
        assert_eq!(j.partition, None);
    }
}
