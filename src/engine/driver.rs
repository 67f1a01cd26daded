//! One seam between the repetition protocol and the engines: a [`Driver`] runs one pass of a
//! cell's workload (an in-process generation, a set of streamed requests, a command) and says
//! when each request starts, gets its first token and ends, so the runner can read the meters at
//! those boundaries. The runner owns warmup, windows, records; the driver owns the engine.

use crate::engine::{EmbedOutput, GenerateOutput, ModelInfo, TokenEvent, TokenObserver};
use crate::meter::select::EstimateScope;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A boundary of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    Start,
    FirstToken,
    End,
}

/// What a driver reports while it runs; the runner reads every meter at each call.
pub trait RunEvents: Sync {
    /// Request `index` of the pass reached `at`.
    fn request(&self, index: usize, at: Boundary);
    /// Every stream is producing tokens (`true`), or the first one ran out of work (`false`).
    fn steady(&self, started: bool);
    /// A child process that does the work started (`Some(pid)`) or ended (`None`).
    fn child(&self, pid: Option<u32>);
    /// The pass's name in file names (`r3`, `warmup1`).
    fn label(&self) -> String;
}

/// Turns an in-process engine's token events for request `index` into [`RunEvents`].
pub struct RequestEvents<'a> {
    pub events: &'a dyn RunEvents,
    pub index: usize,
}

impl TokenObserver for RequestEvents<'_> {
    fn on_event(&mut self, e: TokenEvent, _t: u64) {
        let at = match e {
            TokenEvent::Start => Boundary::Start,
            TokenEvent::FirstToken => Boundary::FirstToken,
            TokenEvent::End => Boundary::End,
            TokenEvent::Token { .. } => return,
        };
        self.events.request(self.index, at);
    }
}

/// One evaluation item: what the engine answered, whether it is right, and the work it took.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutput {
    pub doc_id: u64,
    /// Multiple choice: each choice's log-likelihood, the choice picked and the right one.
    pub loglik: Vec<f64>,
    pub choice: Option<usize>,
    pub gold: Option<usize>,
    /// Generated answers: the final number read from the answer (None: no number), and the
    /// reference.
    pub answer: Option<String>,
    pub reference: Option<String>,
    pub correct: bool,
    /// Tokens read: the shared prefix once and each choice's rest, or the prompt.
    pub tokens: usize,
    /// Tokens every choice shared, run once (0: each choice ran alone).
    pub shared: usize,
    /// Tokens generated (generated answers).
    pub generated: usize,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// One request's result inside a pass.
pub enum Output {
    Generate(GenerateOutput),
    Embed(EmbedOutput),
    /// An evaluation item (scored choices or a generated answer).
    Item(ItemOutput),
    /// A run whose inside joulebench cannot see (a command): duration and maybe tokens.
    Opaque {
        start_ns: u64,
        end_ns: u64,
        tokens: Option<usize>,
    },
}

impl Output {
    /// Request start to last token (or to the embedding, or the command's end), seconds.
    pub fn e2e_s(&self) -> f64 {
        match self {
            Output::Generate(o) => {
                (o.token_ns.last().copied().unwrap_or(o.end_ns) - o.start_ns) as f64 / 1e9
            }
            Output::Embed(o) => (o.end_ns - o.start_ns) as f64 / 1e9,
            Output::Item(o) => (o.end_ns - o.start_ns) as f64 / 1e9,
            Output::Opaque {
                start_ns, end_ns, ..
            } => (end_ns - start_ns) as f64 / 1e9,
        }
    }

    /// Tokens read (the prompt, or the embedding's input; 0 for commands).
    pub fn prompt_tokens(&self) -> usize {
        match self {
            Output::Generate(g) => g.prompt_tokens,
            Output::Embed(e) => e.input_tokens,
            Output::Item(i) => i.tokens,
            Output::Opaque { .. } => 0,
        }
    }

    /// Tokens generated (0 for embeddings and commands that did not say).
    pub fn generated_tokens(&self) -> usize {
        match self {
            Output::Generate(g) => g.generated_tokens(),
            Output::Embed(_) => 0,
            Output::Item(i) => i.generated,
            Output::Opaque { tokens, .. } => tokens.unwrap_or(0),
        }
    }
}

/// Parallel streams of a pass (servers).
#[derive(Debug, Clone, PartialEq)]
pub struct Streams {
    pub concurrency: usize,
    pub requests: usize,
    /// An open loop's schedule settings (None: closed loop).
    pub arrivals: Option<crate::engine::arrival::Arrivals>,
    /// Open loop: requests sent later than due because every stream was busy.
    pub late: usize,
    /// The server's /metrics URL and what was scraped from it during the pass.
    pub telemetry: Option<(String, Vec<Sample>)>,
}

/// Everything one pass produced.
pub struct Pass {
    pub outputs: Vec<Output>,
    /// (arrival time, tokens) of every streamed content chunk (steady-state windows).
    pub chunks: Vec<(u64, f64)>,
    /// Set when the pass ran requests over parallel streams.
    pub streams: Option<Streams>,
    /// How the token counts are known (`engine`, `server usage`, an estimate).
    pub token_counts: String,
    pub warnings: Vec<String>,
}

/// The workload of one cell as an engine sees it.
#[derive(Debug, Clone)]
pub struct Job {
    pub cell_id: String,
    pub workload: String,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub batch: usize,
    pub concurrency: usize,
    /// Requests per repetition (servers; at least `concurrency`).
    pub requests: usize,
    /// Open loop (servers): when requests are sent (None: closed loop over `concurrency`).
    pub arrivals: Option<crate::engine::arrival::Arrivals>,
    /// (prompt, output) tokens of each request, drawn from `lengths`.
    pub lengths: Option<Vec<(usize, usize)>>,
    /// Prompts and output lengths from a dataset.
    pub dataset: Option<crate::engine::text::dataset::DatasetJob>,
    /// A load curve's active-idle point: the server loaded, no requests, for this long.
    pub active_idle_s: Option<f64>,
    /// Which load-curve point this is, for the record.
    pub load: Option<crate::engine::load_curve::LoadFigures>,
    pub ignore_eos: bool,
    pub chat_template: bool,
    /// An embedding workload (else generation).
    pub embed: bool,
    /// An evaluation workload: its task and items (else generation or embedding).
    pub eval: Option<EvalJob>,
    pub threads: usize,
    pub device: String,
    pub env: Vec<(String, String)>,
    /// Where server logs and command output go.
    pub logs_dir: PathBuf,
    /// The suite's folder: relative program paths resolve against it.
    pub suite_dir: PathBuf,
}

impl Job {
    /// What the job says about its requests' lengths (a dataset or `lengths`).
    pub fn varied(&self) -> crate::engine::text::dataset::Varied<'_> {
        crate::engine::text::dataset::Varied {
            workload: &self.workload,
            dataset: self.dataset.as_ref(),
            lengths: self.lengths.as_deref(),
            requests: self.requests,
            new_tokens: self.new_tokens,
        }
    }
}

/// What an evaluation cell scores: the task, its items (document ids drawn once for the whole
/// suite) and where the data was fetched to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalJob {
    pub task: crate::engine::text::eval::TaskRef,
    /// The choice rule (None: the task's primary metric).
    pub metric: Option<crate::engine::text::eval::McMetric>,
    pub docs: Vec<u64>,
    /// The fetched data set's folder.
    pub data: PathBuf,
}

/// Items a warmup pass of an evaluation runs (the model and caches warm; the window is the
/// pass, whatever its length).
pub const EVAL_WARMUP_ITEMS: usize = 2;

/// An engine ready to run a cell's passes.
pub trait Driver {
    /// What records say about the model and the engine.
    fn info(&self) -> &ModelInfo;
    /// Whose CPU time the estimate counts while this engine works.
    fn estimate_scope(&self) -> EstimateScope;
    /// Warmup passes it needs at least (one sizes the window, or warms a server).
    fn min_warmups(&self) -> u32 {
        1
    }
    /// In-process engines: passes may repeat inside one window until it is long enough, and
    /// other processes' CPU use during it is worth a warning.
    fn in_process(&self) -> bool {
        false
    }
    /// Whether every CPU cycle of the engine's work is spent in this process or the processes
    /// it started (true but for a server joulebench did not start, whose CPU cannot be told
    /// from other processes'): then other processes' CPU use during a repetition is
    /// contamination worth a warning.
    fn cpu_is_ours(&self) -> bool {
        true
    }
    /// How a dataset's requests were drawn (dataset workloads).
    fn dataset(&self) -> Option<&crate::engine::text::dataset::DatasetFigures> {
        None
    }
    /// Record fields the engine decides: batch size and concurrency as the record states them.
    fn shape(&self, job: &Job) -> (usize, Option<usize>) {
        (job.batch, None)
    }
    /// Whether passes may repeat inside one window until it is long enough (in-process
    /// generation); an evaluation's pass over its items is one window however long.
    fn repeat_in_window(&self) -> bool {
        self.in_process()
    }
    /// Runs one pass; its requests are numbered from `first` in `events`.
    fn run(&mut self, events: &dyn RunEvents, first: usize) -> anyhow::Result<Pass>;
    /// An evaluation cell's choice rule as records name it (`acc_raw`, `acc_per_char`,
    /// `exact_match`).
    fn eval_metric(&self) -> Option<String> {
        None
    }
    /// A warmup pass: by default a whole pass.
    fn warmup(&mut self, events: &dyn RunEvents) -> anyhow::Result<Pass> {
        self.run(events, 0)
    }
    /// Adds what the engine knows about a failure (a server's output, say).
    fn explain(&mut self, e: anyhow::Error) -> anyhow::Error {
        e
    }
    /// Called after each saved repetition: fails when something it depends on died.
    fn check(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Stops whatever it started.
    fn close(&mut self) {}
}

/// One scrape of a server's Prometheus gauges.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub t_ns: u64,
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    /// 0..1.
    pub kv_cache: Option<f64>,
}
