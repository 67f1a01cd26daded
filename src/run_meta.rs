//! What meta.json and idle.json say: the fingerprint of the machine, the energy sources and the
//! RAPL domain map a run started with, the parts of a merged folder, and the idle baseline.

use crate::fingerprint::Machine;
use crate::meter::rapl::ZoneStatus;
use crate::meter::{Provenance, Unavailable};
use crate::run_dir::{HostTag, ShardInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// meta.json: what ran where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub schema_version: u32,
    pub suite: String,
    /// The suite file as given (relative model paths resolve against its folder).
    pub config_path: PathBuf,
    pub config_hash: String,
    pub started_unix_s: f64,
    pub joulebench_version: String,
    pub git_commit: Option<String>,
    pub command_line: Vec<String>,
    pub machine: Machine,
    /// Each energy source's facts (GPU name, UUID, driver, power limit; estimate model; powercap
    /// root), by source kind.
    pub sources: BTreeMap<String, serde_json::Value>,
    /// The RAPL domain map.
    pub rapl_domains: Vec<RaplDomain>,
    pub unavailable: Vec<Unavailable>,
    pub cells: usize,
    pub repetitions: u32,
    /// Set when this run is one shard of a suite (`run --shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// Set when this run folder was merged from shards: each part's facts, in shard order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartInfo>,
    /// Cells of the plan no part measured (merged with `--allow-partial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_cells: Vec<String>,
    /// What the merge noticed (incomplete cells, parts from different joulebench builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge_warnings: Vec<String>,
    /// The measured domains (`rapl/package-0`, `nvml/gpu0`) the suite started with: a cell
    /// that finds one of them gone does not silently measure with less.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measured_domains: Vec<String>,
    /// `run --allow-partial`: labelled partial totals instead of unknown ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_partial: bool,
    /// Models from the Hugging Face Hub, by model name: repository, revision, the commit it
    /// resolved to when the run started, and each file's hash (`engine::hub::ModelSource`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_sources: BTreeMap<String, serde_json::Value>,
    /// Set when this run folder is an A/B job (`joulebench ab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab: Option<AbSettings>,
}

/// What an A/B job compares: two model names of the suite and the pairs asked for (the most
/// pairs, in a sequential job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbSettings {
    pub base: String,
    pub candidate: String,
    pub pairs: u32,
    /// Set for `--pairs auto`: the job stops each (profile, workload) once its rows are
    /// decided. Kept in meta.json so that `--resume` continues the same sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SeqSettings>,
}

/// The settings of a sequential A/B job (`--pairs auto`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeqSettings {
    /// `--max-pairs`: the most pairs per (profile, workload).
    pub max_pairs: u32,
    /// `--max-minutes`: the time budget of the whole job, if any.
    pub max_minutes: Option<f64>,
    /// The threshold as a fraction (0.02 for `--threshold 2`) and the family-wise alpha.
    pub threshold: f64,
    pub alpha: f64,
    /// The gated metrics, by name.
    pub metrics: Vec<String>,
    /// The rows the job could gate ((profile, workload) pairs x non-accuracy metrics): each
    /// row's confidence sequence runs at alpha / rows.
    pub rows: usize,
}

impl AbSettings {
    /// What `--pairs` was: `auto` for a sequential job, else the number.
    pub fn pairs_flag(&self) -> String {
        match self.sequential {
            Some(_) => "auto".into(),
            None => self.pairs.to_string(),
        }
    }
}

impl SeqSettings {
    /// The level of each row's confidence sequence.
    pub fn level(&self) -> f64 {
        self.alpha / self.rows.max(1) as f64
    }
}

impl RunMeta {
    /// The hardware fingerprint: what must match for results to be compared.
    pub fn fingerprint(&self) -> String {
        crate::fingerprint::label(&self.machine, &self.sources)
    }

    /// The tag this run's records carry.
    pub fn host_tag(&self) -> HostTag {
        let slurm_node = self
            .shard
            .as_ref()
            .and_then(|s| s.slurm.as_ref())
            .and_then(|j| j.node.clone());
        HostTag {
            node: slurm_node.or_else(|| self.machine.hostname.clone()),
            fingerprint: self.fingerprint(),
            shard: self
                .shard
                .as_ref()
                .map(|s| format!("{}/{}", s.index, s.count)),
            node_shared: self.shard.as_ref().is_some_and(|s| s.node_shared),
        }
    }
}

/// idle.json: power with nothing loaded, measured before the first cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleBaseline {
    pub schema_version: u32,
    pub duration_s: f64,
    /// CPU total + GPU total, what records subtract.
    pub total_w: Option<f64>,
    pub cpu_w: Option<f64>,
    pub gpu_w: Option<f64>,
    pub domains: Vec<IdleDomainW>,
    pub provenance: Provenance,
}

/// Idle power of one domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleDomainW {
    pub source: String,
    pub name: String,
    pub power_w: Option<f64>,
}

/// One powercap zone of the RAPL domain map, as meta.json keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaplDomain {
    pub zone: String,
    /// Contents of the zone's `name` file.
    pub name: String,
    /// The domain joulebench reports it as (`package-0`, `dram-1`, `psys`).
    pub domain: String,
    pub status: ZoneStatus,
}

/// One merged part, as meta.json of the merged folder keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartInfo {
    /// The part's folder name (not its path: merges elsewhere give the same files).
    pub dir: String,
    pub shard: Option<ShardInfo>,
    pub node: Option<String>,
    pub fingerprint: String,
    pub machine: Machine,
    pub sources: BTreeMap<String, serde_json::Value>,
    pub started_unix_s: f64,
    /// Cells this part measured, in plan order.
    pub cells: Vec<String>,
    pub records: usize,
    /// Its idle baseline (each node has its own; records subtract their own node's).
    pub idle_w: Option<f64>,
}
