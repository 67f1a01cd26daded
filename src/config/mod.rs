//! The TOML suite file: models × hardware profiles × workloads, with validation errors that name
//! the file, line and column and say what is allowed.

pub mod lengths;
pub mod limits;
mod model;
pub mod slo;

pub use model::{EngineKind, ModelEntry};

use crate::engine::arrival;
use crate::engine::load_curve::LoadPoint;
use crate::meter::select::MeterChoice;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration problem at a place in the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// `[suite]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSection {
    pub name: Spanned<String>,
    #[serde(default = "one")]
    pub warmup: u32,
    #[serde(default = "five")]
    pub repetitions: Spanned<u32>,
    #[serde(default = "five_f")]
    pub idle_seconds: Spanned<f64>,
    #[serde(default = "zero_f")]
    pub cooldown_seconds: Spanned<f64>,
    #[serde(default = "min_window")]
    pub min_window_ms: Spanned<f64>,
    #[serde(default = "timeout")]
    pub timeout_seconds: Spanned<f64>,
    /// A server cell whose steady window is shorter is flagged unstable.
    #[serde(default = "min_steady")]
    pub min_steady_s: Spanned<f64>,
}

/// Meter sources: `"auto"`, `"rapl,nvml"` or `["rapl", "nvml"]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Sources {
    One(String),
    List(Vec<String>),
}

/// `[meter]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeterSection {
    #[serde(default = "auto")]
    pub sources: Spanned<Sources>,
    #[serde(default = "ten")]
    pub interval_ms: Spanned<f64>,
    #[serde(default)]
    pub strict: bool,
    /// A total that needs a domain it cannot read is reported without it, labelled PARTIAL,
    /// instead of unknown.
    #[serde(default)]
    pub allow_partial: bool,
    pub powercap_root: Option<PathBuf>,
    pub tdp_w: Option<Spanned<f64>>,
}

impl Default for MeterSection {
    fn default() -> Self {
        MeterSection {
            sources: auto(),
            interval_ms: ten(),
            strict: false,
            allow_partial: false,
            powercap_root: None,
            tdp_w: None,
        }
    }
}

/// `[[profile]]`: how the hardware is used.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default = "cpu")]
    pub device: String,
    pub threads: Option<u32>,
    pub cpu_affinity: Option<Vec<usize>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Profile {
    /// Threads the engine uses: the profile's, else every CPU this process may use.
    pub fn thread_count(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |t| t as usize,
        )
    }
}

/// What a workload does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    Generate,
    Embed,
}

/// `[[workload]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default = "generate")]
    pub kind: WorkloadKind,
    /// Prompt tokens of every request (may be left out with `dataset` or `lengths.prompt`).
    #[serde(default)]
    pub prompt_tokens: usize,
    #[serde(default)]
    pub new_tokens: usize,
    #[serde(default = "one_usize")]
    pub batch: usize,
    #[serde(default = "yes")]
    pub ignore_eos: bool,
    #[serde(default)]
    pub chat_template: bool,
    /// Parallel request streams (external servers); the in-process engine runs them as one
    /// static batch.
    #[serde(default = "one_usize")]
    pub concurrency: usize,
    /// Requests per repetition (default: `concurrency`, or `request_rate` x `duration_s`).
    pub requests: Option<usize>,
    /// Open loop (server engines): requests per second sent on a seeded schedule, whether or
    /// not earlier ones have finished; `"inf"` (the default) is the closed loop above.
    #[serde(default)]
    pub request_rate: Option<arrival::RequestRate>,
    /// Inter-arrival distribution of an open loop: `poisson` (default) or `gamma`.
    #[serde(default)]
    pub arrival: Option<arrival::Process>,
    /// Gamma shape of an open loop's gaps (1 = Poisson; < 1 bursty).
    #[serde(default)]
    pub burstiness: Option<f64>,
    /// Requests in flight at most in an open loop (default: every request may be).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// An open loop's length: `request_rate` x `duration_s` requests (instead of `requests`).
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Seed of the arrival schedule (each repetition draws its own gaps from it), of the
    /// dataset draw and of `lengths`.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Prompts and output lengths from a dataset: `sharegpt` (ShareGPT V3, fetched and cached
    /// like a model) or a path to a ShareGPT-format .json file (relative to the suite).
    #[serde(default)]
    pub dataset: Option<String>,
    /// Per-request lengths drawn from distributions.
    #[serde(default)]
    pub lengths: Option<lengths::Lengths>,
    /// A load curve (server engines): the saturation throughput is measured first (a closed
    /// loop at `max_concurrency`, else `concurrency`), then open loops at these fractions of
    /// it, then the server loaded and idle (`duration_s`, else 10 s).
    #[serde(default)]
    pub load: Option<Vec<f64>>,
    /// Which point of a load curve this workload is (set by the plan, never in a suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_point: Option<LoadPoint>,
}

/// The idle window of a load curve without `duration_s`.
pub const ACTIVE_IDLE_S: f64 = 10.0;

/// The workloads a load-curve workload runs as: saturation, each fraction, active idle.
pub fn load_points(w: &Workload) -> Vec<Workload> {
    let Some(fractions) = &w.load else {
        return vec![w.clone()];
    };
    let streams = w.max_concurrency.unwrap_or(w.concurrency);
    let sat_name = format!("{}-saturation", w.name);
    let mut out = vec![Workload {
        name: sat_name.clone(),
        concurrency: streams,
        requests: Some(w.requests.unwrap_or(4 * streams).max(streams)),
        max_concurrency: None,
        duration_s: None,
        arrival: None,
        burstiness: None,
        load: None,
        load_point: Some(LoadPoint::Saturation),
        ..w.clone()
    }];
    for &f in fractions {
        out.push(Workload {
            name: format!("{}-load{f}", w.name),
            concurrency: 1,
            max_concurrency: Some(streams),
            load: None,
            load_point: Some(LoadPoint::Fraction {
                fraction: f,
                saturation: sat_name.clone(),
            }),
            ..w.clone()
        });
    }
    out.push(Workload {
        name: format!("{}-active-idle", w.name),
        concurrency: 1,
        requests: None,
        max_concurrency: None,
        arrival: None,
        burstiness: None,
        load: None,
        load_point: Some(LoadPoint::ActiveIdle {
            seconds: w.duration_s.unwrap_or(ACTIVE_IDLE_S),
        }),
        duration_s: None,
        ..w.clone()
    });
    out
}

/// Streams an open loop uses at most when `max_concurrency` is not given.
pub const DEFAULT_OPEN_LOOP_STREAMS: usize = 256;

impl Workload {
    /// Requests per repetition.
    pub fn request_count(&self) -> usize {
        if let (Some(arrival::RequestRate::PerSecond(r)), Some(d), None) =
            (self.request_rate, self.duration_s, self.requests)
        {
            return ((r * d).round() as usize).clamp(1, limits::MAX_REQUESTS);
        }
        self.requests.unwrap_or(self.concurrency).max(1)
    }

    /// The open-loop schedule's settings (None: a closed loop).
    pub fn arrivals(&self) -> Option<arrival::Arrivals> {
        let Some(arrival::RequestRate::PerSecond(rate)) = self.request_rate else {
            return None;
        };
        let process = self.arrival.unwrap_or(arrival::Process::Poisson);
        Some(arrival::Arrivals {
            request_rate_per_s: rate,
            process,
            burstiness: match process {
                arrival::Process::Poisson => 1.0,
                arrival::Process::Gamma => self.burstiness.unwrap_or(1.0),
            },
            max_concurrency: self
                .max_concurrency
                .unwrap_or(DEFAULT_OPEN_LOOP_STREAMS)
                .min(self.request_count())
                .max(1),
            seed: self.seed.unwrap_or(0),
        })
    }

    /// (prompt, output) tokens of each request when `lengths` draws them (seeded).
    pub fn drawn_lengths(&self) -> Option<Vec<(usize, usize)>> {
        self.lengths.map(|l| {
            l.draw(
                self.request_count(),
                self.prompt_tokens,
                self.new_tokens,
                self.seed.unwrap_or(0),
            )
        })
    }

    /// Whether requests differ in length (a dataset or `lengths`).
    pub fn varied(&self) -> bool {
        self.dataset.is_some() || self.lengths.is_some()
    }

    /// What is wrong with the dataset and length settings, if anything.
    fn length_problem(&self) -> Option<String> {
        if let Some(d) = &self.dataset {
            let registered = crate::store::registry::dataset(d).is_some();
            if !registered && !d.ends_with(".json") {
                return Some(format!(
                    "dataset {d:?}: use sharegpt or a path to a ShareGPT-format .json file"
                ));
            }
            if self
                .lengths
                .is_some_and(|l| l.prompt.is_some() || l.output.is_some())
            {
                return Some("give dataset or lengths, not both".into());
            }
        }
        if self.varied() {
            if self.kind == WorkloadKind::Embed {
                return Some("dataset and lengths are for generate workloads".into());
            }
            if self.batch > 1 {
                return Some(
                    "requests of different lengths cannot share a static batch: leave batch at 1 \
                     (servers batch them themselves; use concurrency or request_rate)"
                        .into(),
                );
            }
        }
        let prompt_from_elsewhere =
            self.dataset.is_some() || self.lengths.is_some_and(|l| l.prompt.is_some());
        if self.prompt_tokens == 0 && !prompt_from_elsewhere {
            return Some(
                "prompt_tokens must be at least 1 (or give dataset or lengths.prompt)".into(),
            );
        }
        None
    }

    /// What is wrong with the load-curve settings, if anything.
    fn load_problem(&self) -> Option<String> {
        if self.load_point.is_some() {
            return Some("load_point is set by the plan: give load = [fractions] instead".into());
        }
        let l = self.load.as_ref()?;
        if l.is_empty() || l.len() > 20 {
            return Some("load: give 1 to 20 fractions of the saturation throughput".into());
        }
        if let Some(f) = l
            .iter()
            .find(|f| !(f.is_finite() && **f > 0.0 && **f <= 2.0))
        {
            return Some(format!("load {f}: fractions must be above 0, at most 2"));
        }
        if self.request_rate.is_some() {
            return Some("a load curve sets its own request rates: leave out request_rate".into());
        }
        if self.requests.is_none() && self.duration_s.is_none() {
            return Some("a load curve needs requests or duration_s per point".into());
        }
        if self.kind == WorkloadKind::Embed {
            return Some("load curves are for generate workloads on servers".into());
        }
        None
    }

    /// What is wrong with the open-loop settings, if anything.
    fn arrival_problem(&self) -> Option<String> {
        let open = matches!(self.request_rate, Some(arrival::RequestRate::PerSecond(_)))
            || self.load.is_some();
        let given = |b: bool, name: &str| (b && !open).then(|| name.to_string());
        let stray = [
            given(self.arrival.is_some(), "arrival"),
            given(self.burstiness.is_some(), "burstiness"),
            given(self.max_concurrency.is_some(), "max_concurrency"),
            given(self.duration_s.is_some(), "duration_s"),
        ];
        if let Some(name) = stray.into_iter().flatten().next() {
            return Some(format!(
                "{name} shapes an open loop: give a finite request_rate (requests per second) too"
            ));
        }
        if !open {
            return None;
        }
        if self.concurrency > 1 && self.load.is_none() {
            return Some(
                "an open loop (request_rate) sets its streams with max_concurrency, not concurrency"
                    .into(),
            );
        }
        if let Some(b) = self.burstiness {
            if !(b.is_finite() && (0.01..=100.0).contains(&b)) {
                return Some(format!(
                    "burstiness {b}: give a gamma shape from 0.01 to 100"
                ));
            }
            if self.arrival != Some(arrival::Process::Gamma) {
                return Some(
                    "burstiness is the shape of gamma arrivals: add arrival = \"gamma\"".into(),
                );
            }
        }
        if let Some(d) = self.duration_s {
            if !(d.is_finite() && d > 0.0 && d <= 86_400.0) {
                return Some(format!(
                    "duration_s {d}: give seconds above 0, at most a day"
                ));
            }
            if self.requests.is_some() {
                return Some("give requests or duration_s, not both".into());
            }
        }
        if let Some(m) = self.max_concurrency
            && !(1..=limits::MAX_CONCURRENCY).contains(&m)
        {
            return Some(format!(
                "max_concurrency {m}: give 1 to {}",
                limits::MAX_CONCURRENCY
            ));
        }
        None
    }
}

/// `[carbon]`: grid intensity and where the figure comes from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Carbon {
    pub grams_co2e_per_kwh: f64,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    suite: SuiteSection,
    #[serde(default)]
    meter: MeterSection,
    #[serde(default, rename = "model")]
    models: Vec<Spanned<model::RawModel>>,
    #[serde(default, rename = "profile")]
    profiles: Vec<Spanned<Profile>>,
    #[serde(default, rename = "workload")]
    workloads: Vec<Spanned<Workload>>,
    carbon: Option<Spanned<Carbon>>,
    /// Latency deadlines `joulebench frontier` and the report judge configurations by.
    #[serde(default)]
    slo: Option<Spanned<slo::Slo>>,
}

/// A validated suite.
#[derive(Debug, Clone)]
pub struct Suite {
    pub path: PathBuf,
    /// The file's text, copied into every run folder.
    pub text: String,
    pub name: String,
    pub warmup: u32,
    pub repetitions: u32,
    pub idle_seconds: f64,
    pub cooldown_seconds: f64,
    pub min_window_ms: f64,
    pub timeout_seconds: f64,
    /// Server cells with a shorter steady window are flagged unstable.
    pub min_steady_s: f64,
    /// `[slo]`: latency deadlines for `frontier` and the report.
    pub slo: Option<slo::Slo>,
    pub meter: MeterChoice,
    pub interval_ms: f64,
    pub strict: bool,
    /// `[meter] allow_partial` (or `run --allow-partial`): labelled partial totals.
    pub allow_partial: bool,
    /// `[meter] sources = "auto"` written in the file: a sensor lost mid-suite falls back to
    /// the estimate (labelled on every record) instead of failing the remaining cells' energy.
    pub auto_fallback: bool,
    pub powercap_root: Option<PathBuf>,
    pub tdp_w: Option<f64>,
    pub models: Vec<ModelEntry>,
    pub profiles: Vec<Profile>,
    pub workloads: Vec<Workload>,
    pub carbon: Option<Carbon>,
}

fn one() -> u32 {
    1
}
fn one_usize() -> usize {
    1
}
fn five() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}
fn five_f() -> Spanned<f64> {
    Spanned::new(0..0, 5.0)
}
fn zero_f() -> Spanned<f64> {
    Spanned::new(0..0, 0.0)
}
fn min_steady() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}
fn min_window() -> Spanned<f64> {
    Spanned::new(0..0, 200.0)
}
fn timeout() -> Spanned<f64> {
    Spanned::new(0..0, 600.0)
}
fn auto() -> Spanned<Sources> {
    Spanned::new(0..0, Sources::One("auto".into()))
}
fn ten() -> Spanned<f64> {
    Spanned::new(0..0, 10.0)
}
fn cpu() -> String {
    "cpu".into()
}
fn generate() -> WorkloadKind {
    WorkloadKind::Generate
}
fn yes() -> bool {
    true
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

impl Suite {
    /// Reads and validates a suite file.
    pub fn load(path: &Path) -> Result<Suite, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            line: 1,
            column: 1,
            message: format!("cannot read the suite file: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates suite text (`path` is used in errors and to resolve relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Suite, ConfigError> {
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            ConfigError {
                path: path.display().to_string(),
                line,
                column,
                message,
            }
        };
        let raw: RawSuite = toml::from_str(text)
            .map_err(|e| at(e.span().unwrap_or(0..0), e.message().trim().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let name = raw.suite.name.get_ref().trim().to_string();
        crate::names::check("suite name", &name).map_err(|e| at(raw.suite.name.span(), e))?;
        limits::suite(&raw).map_err(|(span, e)| at(span, e))?;
        if *raw.suite.repetitions.get_ref() == 0 {
            return Err(at(
                raw.suite.repetitions.span(),
                "repetitions must be at least 1".into(),
            ));
        }
        for (v, what, min) in [
            (&raw.suite.idle_seconds, "idle_seconds", 0.0),
            (&raw.suite.cooldown_seconds, "cooldown_seconds", 0.0),
            (&raw.suite.min_window_ms, "min_window_ms", 0.0),
            (&raw.suite.min_steady_s, "min_steady_s", 0.0),
        ] {
            if !v.get_ref().is_finite() || *v.get_ref() < min {
                return Err(at(v.span(), format!("{what} must be a number >= {min}")));
            }
        }
        if raw.suite.timeout_seconds.get_ref().is_nan()
            || *raw.suite.timeout_seconds.get_ref() <= 0.0
        {
            return Err(at(
                raw.suite.timeout_seconds.span(),
                "timeout_seconds must be > 0".into(),
            ));
        }
        let sources = match raw.meter.sources.get_ref() {
            Sources::One(s) => s.clone(),
            Sources::List(v) => v.join(","),
        };
        let meter = MeterChoice::parse(&sources).map_err(|e| at(raw.meter.sources.span(), e))?;
        // Written in the file (a default has an empty span).
        let auto_fallback = meter == MeterChoice::Auto && !raw.meter.sources.span().is_empty();
        let iv = *raw.meter.interval_ms.get_ref();
        if !(0.1..=60_000.0).contains(&iv) {
            return Err(at(
                raw.meter.interval_ms.span(),
                "interval_ms must be between 0.1 and 60000".into(),
            ));
        }
        if let Some(t) = &raw.meter.tdp_w
            && (t.get_ref().is_nan() || *t.get_ref() <= 0.0)
        {
            return Err(at(t.span(), "tdp_w must be > 0".into()));
        }
        if raw.models.is_empty() {
            return Err(at(
                0..0,
                "no [[model]]: add at least one (id = \"smollm2-135m-instruct-q4_1\")".into(),
            ));
        }
        if raw.profiles.is_empty() {
            return Err(at(
                0..0,
                "no [[profile]]: add at least one (name = \"cpu-2t\", threads = 2)".into(),
            ));
        }
        if raw.workloads.is_empty() {
            return Err(at(0..0, "no [[workload]]: add at least one (name = \"chat\", prompt_tokens = 64, new_tokens = 32)".into()));
        }
        let cpus = limits::allowed_cpus();
        // Names become file names: refused when unprintable, and when two of a kind share a
        // path form ("a/b" and "a_b" both become "a_b").
        let mut seen: std::collections::HashMap<(&str, String), (String, usize)> =
            std::collections::HashMap::new();
        let mut name_ok = |kind: &'static str,
                           n: &str,
                           span: std::ops::Range<usize>|
         -> Result<(), ConfigError> {
            crate::names::check(&format!("{kind} name"), n).map_err(|e| at(span.clone(), e))?;
            let key = (kind, crate::names::component(n));
            let line = line_col(text, span.start).0;
            if let Some((first, first_line)) = seen.get(&key) {
                let why = if first == n {
                    format!("{kind} name {n:?} is used twice (line {first_line} and here)")
                } else {
                    format!(
                        "{kind} names {:?} (line {first_line}) and {:?} both become {:?} in \
                         file names",
                        crate::names::terminal(first),
                        crate::names::terminal(n),
                        key.1
                    )
                };
                return Err(at(
                    span,
                    format!(
                        "{why}; rename one{}",
                        if kind == "model" {
                            " (alias = ...)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            seen.insert(key, (n.to_string(), line));
            Ok(())
        };
        let mut models = Vec::new();
        for m in &raw.models {
            let e = m
                .get_ref()
                .clone()
                .validate(base)
                .map_err(|msg| at(m.span(), msg))?;
            name_ok("model", &e.name(), m.span())?;
            models.push(e);
        }
        let mut profiles = Vec::new();
        for p in &raw.profiles {
            let pr = p.get_ref().clone();
            name_ok("profile", &pr.name, p.span())?;
            limits::profile(&pr).map_err(|e| at(p.span(), e))?;
            if pr.threads == Some(0) {
                return Err(at(p.span(), "threads must be at least 1".into()));
            }
            if let Some(a) = &pr.cpu_affinity {
                if a.is_empty() {
                    return Err(at(
                        p.span(),
                        "cpu_affinity must list at least one CPU".into(),
                    ));
                }
                if let Some(bad) = a.iter().find(|c| !cpus.contains(c)) {
                    return Err(at(
                        p.span(),
                        format!(
                            "cpu_affinity names CPU {bad}, which this process cannot use (it may \
                             use {})",
                            limits::cpu_list(&cpus)
                        ),
                    ));
                }
            }
            if !(pr.device == "cpu" || pr.device.starts_with("cuda") || pr.device == "metal") {
                return Err(at(
                    p.span(),
                    format!("device {:?}: use cpu, cuda:N or metal", pr.device),
                ));
            }
            profiles.push(pr);
        }
        let mut workloads = Vec::new();
        for w in &raw.workloads {
            let wl = w.get_ref().clone();
            name_ok("workload", &wl.name, w.span())?;
            limits::workload(&wl).map_err(|e| at(w.span(), e))?;
            if wl.batch == 0 {
                return Err(at(w.span(), "batch must be at least 1".into()));
            }
            if let Some(why) = wl.length_problem() {
                return Err(at(w.span(), why));
            }
            if wl.concurrency == 0 || wl.requests == Some(0) {
                return Err(at(
                    w.span(),
                    "concurrency and requests must be at least 1".into(),
                ));
            }
            if wl.requests.is_some_and(|r| r < wl.concurrency) {
                return Err(at(
                    w.span(),
                    format!(
                        "requests ({}) must be at least concurrency ({}): every stream needs a \
                         request",
                        wl.requests.unwrap_or(0),
                        wl.concurrency
                    ),
                ));
            }
            if let Some(why) = wl.load_problem() {
                return Err(at(w.span(), why));
            }
            if let Some(why) = wl.arrival_problem() {
                return Err(at(w.span(), why));
            }
            if wl.kind == WorkloadKind::Generate
                && wl.new_tokens == 0
                && wl.lengths.is_none_or(|l| l.output.is_none())
            {
                return Err(at(
                    w.span(),
                    "a generate workload needs new_tokens >= 1 (or lengths.output)".into(),
                ));
            }
            workloads.push(wl);
        }
        if let Some(s) = &raw.slo {
            s.get_ref()
                .check()
                .map_err(|e| at(s.span(), format!("[slo] {e}")))?;
        }
        let carbon = match raw.carbon {
            Some(c)
                if c.get_ref().grams_co2e_per_kwh.is_nan()
                    || c.get_ref().grams_co2e_per_kwh < 0.0
                    || c.get_ref().source.trim().is_empty() =>
            {
                return Err(at(
                    c.span(),
                    "carbon needs grams_co2e_per_kwh >= 0 and a source".into(),
                ));
            }
            c => c.map(|c| c.into_inner()),
        };
        Ok(Suite {
            path: path.to_path_buf(),
            text: text.to_string(),
            name,
            warmup: raw.suite.warmup,
            repetitions: *raw.suite.repetitions.get_ref(),
            idle_seconds: *raw.suite.idle_seconds.get_ref(),
            cooldown_seconds: *raw.suite.cooldown_seconds.get_ref(),
            min_window_ms: *raw.suite.min_window_ms.get_ref(),
            min_steady_s: *raw.suite.min_steady_s.get_ref(),
            slo: raw.slo.as_ref().map(|s| *s.get_ref()),
            timeout_seconds: *raw.suite.timeout_seconds.get_ref(),
            meter,
            interval_ms: iv,
            strict: raw.meter.strict,
            allow_partial: raw.meter.allow_partial,
            auto_fallback,
            powercap_root: raw
                .meter
                .powercap_root
                .map(|p| if p.is_relative() { base.join(p) } else { p }),
            tdp_w: raw.meter.tdp_w.map(|t| *t.get_ref()),
            models,
            profiles,
            workloads,
            carbon,
        })
    }

    /// sha256 of the file's text: runs and resumes must use the same suite.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[suite]
name = "t"
repetitions = 3

[meter]
sources = ["rapl", "estimate"]

[[model]]
id = "synthetic:llama-tiny"

[[profile]]
name = "one"
threads = 1

[[workload]]
name = "w"
prompt_tokens = 16
new_tokens = 4
"#;

    fn err(text: &str) -> ConfigError {
        match Suite::parse(Path::new("s.toml"), text) {
            Err(e) => e,
            Ok(_) => panic!("must fail"),
        }
    }

    #[test]
    fn parses_a_valid_suite_with_defaults() {
        let s = Suite::parse(Path::new("dir/s.toml"), OK).unwrap();
        assert_eq!((s.repetitions, s.warmup, s.min_window_ms), (3, 1, 200.0));
        assert_eq!(s.workloads[0].batch, 1);
        assert!(s.workloads[0].ignore_eos);
        assert_eq!(s.models[0].name(), "synthetic:llama-tiny");
        assert_eq!(s.hash().len(), 64);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err(&OK.replace("repetitions = 3", "repetitions = 0"));
        assert_eq!((e.line, e.path.as_str()), (4, "s.toml"));
        assert!(e.to_string().starts_with("s.toml:4:"), "{e}");
        let e = err(&OK.replace("threads = 1", "threads = 1\nthreds = 2"));
        assert!(e.message.contains("threds"), "{e}");
        assert_eq!(e.line, 15);
        let e = err(&OK.replace("[\"rapl\", \"estimate\"]", "\"rapl,gpu\""));
        assert!(e.message.contains("unknown meter") && e.line == 7, "{e}");
        let e = err(&OK.replace("new_tokens = 4", "new_tokens = 0"));
        assert!(e.message.contains("new_tokens"), "{e}");
        let e = err(&OK.replace("id = \"synthetic:llama-tiny\"", "id = \"a\"\npath = \"b\""));
        assert!(e.message.contains("exactly one of id or path"));
        let e = err("[suite\nname = 1");
        assert_eq!(e.line, 1);
        let e = err(&OK.replace("prompt_tokens = 16", "prompt_tokens = \"many\""));
        assert_eq!(e.line, 18, "{e}");
    }
}
