//! `[[workload]]`: what a cell asks of its engine, the load-curve points a workload runs as, and
//! what is wrong with a workload's combination of settings.

use super::{lengths, limits};
use crate::engine::arrival;
use crate::engine::load_curve::LoadPoint;
use serde::{Deserialize, Serialize};

/// What a workload does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    Generate,
    Embed,
    /// Answers scored on an evaluation task (accuracy per joule): `task`, `variant`, `items`,
    /// `seed`, `metric`.
    Eval,
}

/// `[[workload]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default = "super::sections::generate")]
    pub kind: WorkloadKind,
    /// Prompt tokens of every request (may be left out with `dataset` or `lengths.prompt`).
    #[serde(default)]
    pub prompt_tokens: usize,
    #[serde(default)]
    pub new_tokens: usize,
    #[serde(default = "super::sections::one_usize")]
    pub batch: usize,
    #[serde(default = "super::sections::yes")]
    pub ignore_eos: bool,
    #[serde(default)]
    pub chat_template: bool,
    /// Parallel request streams (external servers); the in-process engine runs them as one
    /// static batch.
    #[serde(default = "super::sections::one_usize")]
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
    /// Evaluation: the task (`arc_easy`, ..., `gsm8k`).
    #[serde(default)]
    pub task: Option<String>,
    /// Evaluation: the task's variant (default `rc_0shot`; `8shot` for gsm8k).
    #[serde(default)]
    pub variant: Option<String>,
    /// Evaluation: how many items, drawn with `seed` (default: every item).
    #[serde(default)]
    pub items: Option<usize>,
    /// Evaluation: `acc_raw` or `acc_per_char` (default: the task's primary metric).
    #[serde(default)]
    pub metric: Option<String>,
    /// Evaluation: the document ids every model of the suite scores (drawn by the runner
    /// before the first cell and written into the plan; never in a suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_docs: Option<Vec<u64>>,
}

/// Items an evaluation workload may ask for at most.
pub const MAX_EVAL_ITEMS: usize = 100_000;

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

    /// The evaluation task and variant (evaluation workloads).
    pub fn task_ref(&self) -> Option<crate::engine::text::eval::TaskRef> {
        use crate::engine::text::eval::TaskRef;
        let task = self.task.clone()?;
        let variant = self
            .variant
            .clone()
            .unwrap_or_else(|| TaskRef::default_variant(&task).to_string());
        Some(TaskRef { task, variant })
    }

    /// The choice rule asked for (None: the task's primary metric).
    pub fn mc_metric(&self) -> Option<crate::engine::text::eval::McMetric> {
        self.metric
            .as_deref()
            .and_then(crate::engine::text::eval::McMetric::parse)
    }

    /// What is wrong with the evaluation settings, if anything.
    pub(super) fn eval_problem(&self) -> Option<String> {
        let eval = self.kind == WorkloadKind::Eval;
        let given = [
            (self.task.is_some(), "task"),
            (self.variant.is_some(), "variant"),
            (self.items.is_some(), "items"),
            (self.metric.is_some(), "metric"),
        ];
        if !eval {
            return given.iter().find(|(g, _)| *g).map(|(_, name)| {
                format!("{name} is for evaluation workloads: add kind = \"eval\"")
            });
        }
        if self.eval_docs.is_some() {
            return Some("eval_docs is set by the runner: give items and seed instead".into());
        }
        let Some(t) = self.task_ref() else {
            return Some("an eval workload needs task = \"arc_easy\" (or another task)".into());
        };
        if let Some(why) = t.problem() {
            return Some(why);
        }
        if let Some(n) = self.items
            && !(1..=MAX_EVAL_ITEMS).contains(&n)
        {
            return Some(format!("items = {n}: give 1 to {MAX_EVAL_ITEMS}"));
        }
        if let Some(m) = &self.metric {
            if crate::engine::text::eval::McMetric::parse(m).is_none() {
                return Some(format!("metric {m:?}: use acc_raw or acc_per_char"));
            }
            if t.task == crate::engine::text::eval::GSM8K {
                return Some("gsm8k is scored by exact match: leave out metric".into());
            }
        }
        let stray = [
            (self.dataset.is_some(), "dataset"),
            (self.lengths.is_some(), "lengths"),
            (self.load.is_some(), "load"),
            (self.request_rate.is_some(), "request_rate"),
            (self.batch > 1, "batch"),
            (self.concurrency > 1, "concurrency"),
            (self.requests.is_some(), "requests"),
            (self.prompt_tokens > 0, "prompt_tokens"),
            (self.new_tokens > 0, "new_tokens"),
        ];
        stray.iter().find(|(g, _)| *g).map(|(_, name)| {
            format!("{name} does not apply to an eval workload: each item is one request of its own length")
        })
    }

    /// Whether requests differ in length (a dataset or `lengths`).
    pub fn varied(&self) -> bool {
        self.dataset.is_some() || self.lengths.is_some()
    }

    /// What is wrong with the dataset and length settings, if anything.
    pub(super) fn length_problem(&self) -> Option<String> {
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
        let prompt_from_elsewhere = self.dataset.is_some()
            || self.lengths.is_some_and(|l| l.prompt.is_some())
            || self.kind == WorkloadKind::Eval;
        if self.prompt_tokens == 0 && !prompt_from_elsewhere {
            return Some(
                "prompt_tokens must be at least 1 (or give dataset or lengths.prompt)".into(),
            );
        }
        None
    }

    /// What is wrong with the load-curve settings, if anything.
    pub(super) fn load_problem(&self) -> Option<String> {
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
    pub(super) fn arrival_problem(&self) -> Option<String> {
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
