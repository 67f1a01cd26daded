//! Command-line definitions (clap derive only; dispatch lives in `commands`).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// How many joules does this model spend per token, on this hardware, in this configuration?
#[derive(Debug, Parser)]
#[command(name = "joulebench", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show which energy sensors work here, how they are read, and why not.
    Probe(ProbeArgs),
    /// Meter any command: energy per domain, power, duration and provenance.
    Measure(MeasureArgs),
    /// List, fetch and verify the models joulebench knows.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Generate tokens with a model (greedy), printing text, token ids and speed.
    Generate(GenerateArgs),
    /// Score a model on an evaluation task (accuracy per joule): every item metered, its energy
    /// read at its start and end.
    Eval(EvalArgs),
    /// Run a suite: models × profiles × workloads, with idle baseline, warmup and repetitions.
    Run(RunArgs),
    /// Rebuild a run folder's summaries, charts and HTML report from its records and traces.
    Report {
        /// The run folder.
        dir: std::path::PathBuf,
    },
    /// Compare two runs (or a saved baseline) for efficiency regressions; exit 1 on one.
    Compare(CompareArgs),
    /// A/B in one job: two models of a suite measured alternately (ABBA) on this machine, judged
    /// on paired differences; exit 1 on a regression.
    Ab(AbArgs),
    /// Per model, the configuration with the least energy per output token that meets latency
    /// deadlines, and the time-energy frontier; exit 1 when some model has none that meets them.
    Frontier(FrontierArgs),
    /// Merge the run folders of a suite's shards into one run folder with one report.
    Merge(MergeArgs),
    /// Write (and with --submit, submit) a Slurm job array that runs a suite in shards, and a
    /// merge job after it.
    Slurm(SlurmArgs),
    /// Save and list baselines for `compare`.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// One cell of a run, in its own process (started by `run`).
    #[command(hide = true)]
    RunCell(RunCellArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The suite file (TOML). Optional with --resume (the run folder keeps its copy).
    pub config: Option<std::path::PathBuf>,
    /// Parent folder of run folders.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub out: std::path::PathBuf,
    /// Finish an interrupted run: only what is missing runs, no repetition twice.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<std::path::PathBuf>,
    /// Print the plan (cells in order, expected duration) and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: time the cells from these earlier run folders' records (the same cell
    /// ids); a resumed folder's own records count too. Repeat for several folders.
    #[arg(long, value_name = "RUN_DIR", requires = "dry_run")]
    pub estimate_from: Vec<std::path::PathBuf>,
    /// Run only shard I of N (0-based): the cells whose plan index is I modulo N.
    #[arg(long, value_name = "I/N", value_parser = joulebench::cluster::shard::Shard::parse)]
    pub shard: Option<joulebench::cluster::shard::Shard>,
    /// The node runs other work too (Slurm --shared): every record is marked so.
    #[arg(long, requires = "shard")]
    pub node_shared: bool,
    /// A total that needs a domain it cannot read leaves it out, labelled PARTIAL (a lower
    /// bound), instead of being unknown. Same as `[meter] allow_partial = true`.
    #[arg(long)]
    pub allow_partial: bool,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' run folders (any order).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub parts: Vec<std::path::PathBuf>,
    /// The merged run folder to write (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// Accept cells that no part measured: they are listed as missing in the report.
    #[arg(long)]
    pub allow_partial: bool,
}

#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// The suite file (TOML).
    pub config: std::path::PathBuf,
    /// Array tasks, one shard each.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub shards: u32,
    /// Slurm partition (default: the cluster's default partition).
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// Time limit of each shard and of the merge job, in Slurm's format (for example 2:00:00).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// GPUs for each shard.
    #[arg(long, value_name = "G", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub gpus_per_task: Option<u32>,
    /// Each shard holds its node alone (default): RAPL meters the whole node.
    #[arg(long, conflicts_with = "shared")]
    pub exclusive: bool,
    /// Let shards share nodes with other jobs; every record is then marked as sharing its node.
    #[arg(long)]
    pub shared: bool,
    /// Extra `#SBATCH` options for both jobs (repeatable), for example --sbatch-arg=--account=lab.
    #[arg(long = "sbatch-arg", value_name = "OPT", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Parent folder of the job folder (scripts, shard runs, logs, merged run).
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub out: std::path::PathBuf,
    /// Submit both jobs with sbatch and print their ids (else only write the scripts).
    #[arg(long)]
    pub submit: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline: a run folder or `baseline:NAME`.
    pub base: String,
    /// The candidate: a run folder or `baseline:NAME`.
    pub cand: String,
    /// Metrics to compare (repeatable); default: decode and prefill J/token, J/request, TPOT.
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// A regression must be worse by more than this many percent (and significant).
    #[arg(long, value_name = "PCT", default_value_t = 5.0)]
    pub threshold: f64,
    /// Significance level of the intervals.
    #[arg(long, value_name = "A", default_value_t = 0.05)]
    pub alpha: f64,
    #[arg(long, value_enum, default_value = "text")]
    pub format: CompareFormat,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Also draw the ratios with their intervals and the threshold band as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<std::path::PathBuf>,
    /// Compare runs from different hardware anyway.
    #[arg(long)]
    pub allow_hardware_mismatch: bool,
    /// Compare cells whose energy covers different domains, scopes or methods anyway (labelled).
    #[arg(long)]
    pub allow_scope_mismatch: bool,
    /// Where saved baselines live.
    #[arg(long, value_name = "DIR", default_value = joulebench::baseline::DEFAULT_DIR)]
    pub baselines: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct FrontierArgs {
    /// The run folder.
    pub dir: std::path::PathBuf,
    /// Deadline on the 90th percentile inter-token latency (default: the suite's `[slo]`).
    #[arg(long, value_name = "MS")]
    pub itl_p90_ms: Option<f64>,
    /// Deadline on the 90th percentile time to first token.
    #[arg(long, value_name = "MS")]
    pub ttft_p90_ms: Option<f64>,
    /// Deadline on the median time per output token.
    #[arg(long, value_name = "MS")]
    pub tpot_p50_ms: Option<f64>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: CompareFormat,
    /// Write the answer here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Where the chart goes (default: the run folder's charts/frontier.svg).
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<std::path::PathBuf>,
}

/// Output formats of `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Save a run folder as baseline NAME.
    Save {
        run_dir: std::path::PathBuf,
        name: String,
        #[arg(long, value_name = "DIR", default_value = joulebench::baseline::DEFAULT_DIR)]
        baselines: std::path::PathBuf,
        /// Replace an existing baseline of that name.
        #[arg(long)]
        force: bool,
    },
    /// List saved baselines.
    List {
        #[arg(long, value_name = "DIR", default_value = joulebench::baseline::DEFAULT_DIR)]
        baselines: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunCellArgs {
    #[arg(long)]
    pub run_dir: std::path::PathBuf,
    #[arg(long)]
    pub cell: usize,
    /// Repetition numbers to run, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub reps: Vec<u32>,
    /// Stay loaded and run one repetition per `rep N` line on stdin, marking records with
    /// this A/B variant (base or candidate).
    #[arg(long, value_name = "VARIANT")]
    pub serve: Option<String>,
}

#[derive(Debug, Args)]
pub struct AbArgs {
    /// The suite file (TOML); optional with --resume (the run folder keeps its copy).
    pub config: Option<std::path::PathBuf>,
    /// The base variant: a model name (alias) of the suite.
    #[arg(long, value_name = "ALIAS")]
    pub base: String,
    /// The candidate variant: another model name of the suite.
    #[arg(long, value_name = "ALIAS")]
    pub candidate: String,
    /// `auto` (the default): run ABBA blocks until every gated row is decided (an anytime-valid
    /// confidence sequence, so looking after every block keeps the false-alarm rate), or a
    /// budget ends. A number: exactly that many pairs, judged once (the fixed design).
    #[arg(long, value_name = "auto|N", default_value = "auto")]
    pub pairs: String,
    /// The most pairs per (profile, workload) of a `--pairs auto` job.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_pairs: u32,
    /// The time budget of a `--pairs auto` job, in minutes (shared equally by the
    /// (profile, workload)s still to run); rows undecided when it ends exit 2.
    #[arg(long, value_name = "M")]
    pub max_minutes: Option<f64>,
    /// A regression must be worse by more than this many percent (and significant).
    #[arg(long, value_name = "PCT", default_value_t = 2.0)]
    pub threshold: f64,
    /// Family-wise significance level (Holm-corrected over every cell and metric).
    #[arg(long, value_name = "A", default_value_t = 0.05)]
    pub alpha: f64,
    /// Metrics to judge (repeatable); default: decode and prefill J/token, J/request, TPOT.
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: CompareFormat,
    /// Parent folder of run folders.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub out: std::path::PathBuf,
    /// Finish an interrupted A/B job.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every registered model and every GGUF file or model folder in the Hugging Face cache:
    /// id, architecture, parameters, format, size, license, source, cached or not.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list the GGUF files of this Hub repository (ORG/REPO[@REVISION]; needs the
        /// `hub` feature and the network).
        #[arg(long, value_name = "ORG/REPO")]
        hub: Option<String>,
    },
    /// Download a registered model (or an hf:ORG/REPO[@REV]/FILE id, asking the Hub for the
    /// revision's current commit) into the cache and check its hash.
    Fetch {
        /// A registered model id, or an hf: id.
        id: String,
    },
    /// Write a GGUF file with seeded random weights in the tensor shapes of a known architecture
    /// (smollm2-135m/-360m/-1.7b, llama-3.2-1b/-3b, llama-3.1-8b, qwen2.5-0.5b/-1.5b/-7b), to
    /// measure energy per token at real model sizes without their weights.
    Synth {
        /// The architecture whose shapes to copy.
        #[arg(long, value_name = "NAME")]
        like: String,
        /// F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q4_K_M, Q5_K_M.
        #[arg(long, value_name = "FMT")]
        format: String,
        /// Where to write the .gguf file.
        #[arg(long, value_name = "FILE.gguf")]
        out: std::path::PathBuf,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check the hash of a cached model's files (registered ids and hf: ids).
    Verify {
        /// A registered model id, or an hf: id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A registered id, a .gguf path or folder, or synthetic:llama-tiny / synthetic:llama-135m.
    #[arg(long, default_value = joulebench::store::registry::DEFAULT_MODEL)]
    pub model: String,
    /// The prompt text (default: the bundled text cut to --prompt-tokens).
    #[arg(long, conflicts_with = "prompt_tokens")]
    pub prompt: Option<String>,
    /// Prompt length in tokens, from the bundled public-domain text.
    #[arg(long, value_name = "N")]
    pub prompt_tokens: Option<usize>,
    /// Wrap the prompt in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// New tokens to generate at most.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_new_tokens: u32,
    /// Keep generating after end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Sequences in the batch (copies of the prompt).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,
    /// Threads for the engine.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: Option<u32>,
    /// Device: cpu (cuda:N or metal with those features).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Do not fetch a registered model that is not cached.
    #[arg(long)]
    pub offline: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Unmeasured generations of the same request first (page cache, allocator, caches warm).
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub warmup: u32,
    /// Measured generations of the same request; speeds are their medians (each run's figures
    /// are listed in the JSON).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// How linear layers run while prefilling: dense (dequantized f32 copy, more memory),
    /// simd (joulebench's kernels on the file's blocks) or candle (candle's quantized matmul).
    #[arg(long, value_name = "WAY", value_parser = parse_matmul)]
    pub prefill_matmul: Option<joulebench::engine::models::llama::Matmul>,
    /// How linear layers run while decoding (same choices).
    #[arg(long, value_name = "WAY", value_parser = parse_matmul)]
    pub decode_matmul: Option<joulebench::engine::models::llama::Matmul>,
}

fn parse_matmul(s: &str) -> Result<joulebench::engine::models::llama::Matmul, String> {
    use joulebench::engine::models::llama::Matmul;
    match s {
        "dense" => Ok(Matmul::Dense),
        "simd" => Ok(Matmul::Simd),
        "candle" => Ok(Matmul::Candle),
        other => Err(format!("{other:?}: use dense, simd or candle")),
    }
}

/// Options shared by every command that meters.
#[derive(Debug, Args)]
pub struct SensorArgs {
    /// Powercap root to read RAPL from (a fake tree for tests, or another sysfs mount).
    #[arg(
        long,
        value_name = "DIR",
        env = "JOULEBENCH_POWERCAP_ROOT",
        default_value = joulebench::meter::rapl::DEFAULT_POWERCAP_ROOT
    )]
    pub powercap_root: PathBuf,
    /// CPU TDP in watts for the estimate (else a table keyed by CPU model, else 65 W).
    #[arg(long, value_name = "W", value_parser = positive_f64)]
    pub tdp_w: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to watch each counter to measure its update period.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub watch_ms: u64,
    #[command(flatten)]
    pub sensors: SensorArgs,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A registered id or a .gguf path (run in process).
    #[arg(long, default_value = joulebench::store::registry::DEFAULT_MODEL)]
    pub model: String,
    /// The task: arc_easy, arc_challenge, hellaswag, piqa, sciq, boolq, csqa, openbookqa,
    /// winogrande, socialiqa, gsm8k.
    #[arg(long)]
    pub task: String,
    /// The task's variant (default rc_0shot; 8shot for gsm8k).
    #[arg(long)]
    pub variant: Option<String>,
    /// Items drawn with --seed (default: every item).
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=joulebench::config::MAX_EVAL_ITEMS as u64))]
    pub items: Option<u64>,
    /// Seed of the draw: the same seed draws the same items for every model.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// The choice rule: acc_raw or acc_per_char (default: the task's primary metric).
    #[arg(long, value_parser = parse_mc_metric)]
    pub metric: Option<joulebench::engine::text::eval::McMetric>,
    /// Threads for the engine.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=joulebench::config::limits::MAX_THREADS as i64))]
    pub threads: Option<u32>,
    /// Do not fetch a model or data set the cache lacks.
    #[arg(long)]
    pub offline: bool,
    /// Write the result as JSON to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Sources: `auto`, or a comma-separated list of rapl, nvml, estimate.
    #[arg(long, value_name = "LIST", default_value = "auto", value_parser = parse_meter)]
    pub meter: joulebench::meter::select::MeterChoice,
    /// Sampling interval in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 10.0, allow_negative_numbers = true,
          value_parser = interval_ms)]
    pub interval_ms: f64,
    /// Measure idle power for S seconds first and report net energy too.
    #[arg(long, value_name = "S", default_value_t = 0.0, allow_negative_numbers = true,
          value_parser = non_negative_f64)]
    pub idle_s: f64,
    /// Refuse to report estimates: exit 2 when no sensor covers the CPU.
    #[arg(long)]
    pub strict: bool,
    /// A total that needs a domain it cannot read leaves it out, labelled PARTIAL.
    #[arg(long)]
    pub allow_partial: bool,
    #[command(flatten)]
    pub sensors: SensorArgs,
}

fn parse_mc_metric(s: &str) -> Result<joulebench::engine::text::eval::McMetric, String> {
    joulebench::engine::text::eval::McMetric::parse(s)
        .ok_or_else(|| format!("{s:?}: use acc_raw or acc_per_char"))
}

#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Sources: `auto`, or a comma-separated list of rapl, nvml, estimate.
    #[arg(long, value_name = "LIST", default_value = "auto", value_parser = parse_meter)]
    pub meter: joulebench::meter::select::MeterChoice,
    /// Sampling interval in milliseconds (1 works; fractions allowed).
    #[arg(long, value_name = "N", default_value_t = 10.0, allow_negative_numbers = true,
          value_parser = interval_ms)]
    pub interval_ms: f64,
    /// Measured runs of the command.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub runs: u32,
    /// Unmeasured runs before the measured ones.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warmup: u32,
    /// Measure idle power for S seconds first and report net energy too.
    #[arg(long, value_name = "S", default_value_t = 0.0, allow_negative_numbers = true,
          value_parser = non_negative_f64)]
    pub idle_s: f64,
    /// Write the result as JSON to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write every power sample as CSV to FILE.
    #[arg(long, value_name = "FILE.csv")]
    pub trace: Option<PathBuf>,
    /// Refuse to report estimates: exit 2 when no sensor covers the CPU.
    #[arg(long)]
    pub strict: bool,
    /// A total that needs a domain it cannot read leaves it out, labelled PARTIAL (a lower
    /// bound), instead of being unknown.
    #[arg(long)]
    pub allow_partial: bool,
    #[command(flatten)]
    pub sensors: SensorArgs,
    /// The command and its arguments, run directly (no shell).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_meter(s: &str) -> Result<joulebench::meter::select::MeterChoice, String> {
    joulebench::meter::select::MeterChoice::parse(s)
}

fn positive_f64(s: &str) -> Result<f64, String> {
    let max = joulebench::config::limits::MAX_TDP_W;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= max => Ok(v),
        _ => Err(format!("{s:?} is not a number of watts > 0 and <= {max}")),
    }
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    let week = joulebench::config::limits::WEEK_S;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=week).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds >= 0 and <= {week} (one week)"
        )),
    }
}

fn interval_ms(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.1..=60_000.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a valid interval: give milliseconds between 0.1 and 60000"
        )),
    }
}
