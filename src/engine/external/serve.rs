//! An OpenAI-compatible server as a [`Driver`]: optionally started (no shell) and waited for when
//! the driver opens, outside any measured window; every pass sends the cell's requests over its
//! parallel streams with prompts that start at a different place each time, so a prefix cache
//! never skips a prefill; stopped when the driver closes.

use crate::engine::ModelInfo;
use crate::engine::driver::{Boundary, Driver, Job, Output, Pass, RunEvents, Streams};
use crate::engine::external::eval::{ServerItems, Target, probe};
use crate::engine::external::metrics;
use crate::engine::external::openai::{self, StreamOutcome, StreamRequest};
use crate::engine::external::server::{ManagedServer, free_port};
use crate::engine::external::stream::{StreamPass, run_pass, to_output, token_count_source};
use crate::engine::external::{
    check_key_transport, expand, expand_command, external_info, load_tokenizer, vars, weights_path,
};
use crate::engine::spec::OpenaiSpec;
use crate::engine::text::dataset::{DatasetFigures, Shape, shapes_for};
use crate::engine::text::prompt::{PromptLength, StreamPrompt, stream_prompt};
use crate::meter::select::EstimateScope;
use anyhow::{Context, Result};
use std::time::Duration;
use tokenizers::Tokenizer;

/// A server and the requests of its cell.
pub struct ServeDriver {
    spec: OpenaiSpec,
    job: Job,
    agent: ureq::Agent,
    url: String,
    api_key: Option<String>,
    timeout: Duration,
    tok: Option<Tokenizer>,
    server: Option<ManagedServer>,
    /// Requests sent so far (each starts its prompt at a different place).
    seq: usize,
    /// Passes run so far (each open-loop pass draws its own schedule).
    passes: u64,
    /// Requests of different lengths (a dataset or `lengths`), one per request of a pass.
    shapes: Option<Vec<Shape>>,
    dataset: Option<DatasetFigures>,
    /// The server's /metrics, scraped during every pass (None: it has none joulebench reads).
    metrics_url: Option<String>,
    info: ModelInfo,
    /// An evaluation cell's items and where they go.
    eval: Option<(ServerItems, Target)>,
}

impl ServeDriver {
    /// Loads the prompt tokenizer, starts the server if the entry says how, and waits until it
    /// answers. `name` is the model's name in results.
    pub fn open(
        spec: &OpenaiSpec,
        job: &Job,
        name: String,
        log: &mut dyn FnMut(&str),
    ) -> Result<ServeDriver> {
        let model_path = spec
            .weights
            .as_ref()
            .map(|w| weights_path(w, log))
            .transpose()?;
        let tok_spec = spec
            .tokenizer
            .clone()
            .or_else(|| spec.weights.as_ref().map(|w| w.spec()));
        let tok = match tok_spec {
            Some(s) if !s.starts_with("synthetic:") => Some(
                load_tokenizer(&s, log)
                    .with_context(|| format!("tokenizer {s} for exact prompts"))?,
            ),
            _ => None,
        };
        let (shapes, dataset) =
            shapes_for(job.varied(), tok.as_ref(), None, None, SERVER_CONTEXT, log)?;
        let v = vars(job, free_port()?, model_path.as_deref());
        let base = expand(&spec.base_url, &v).map_err(|e| anyhow::anyhow!(e))?;
        let api_key = match &spec.api_key_env {
            Some(k) => Some(crate::redact::register_env(k).ok_or_else(|| {
                anyhow::anyhow!("api_key_env = {k:?}, but the environment variable {k} is not set")
            })?),
            None => None,
        };
        check_key_transport(&base, api_key.is_some(), spec.allow_insecure_http)
            .map_err(|e| anyhow::anyhow!(e))?;
        let timeout = Duration::from_secs_f64(spec.request_timeout_s.unwrap_or(300.0));
        let mut server = None;
        if let Some(l) = &spec.launch {
            let argv = expand_command(l, &v, job)?;
            let server_log = job.logs_dir.join(format!("{}.server.log", job.cell_id));
            log(&format!("starting the server: {}", argv.join(" ")));
            let mut s = ManagedServer::launch(&argv, &job.env, &server_log)?;
            let ready = match &spec.ready_url {
                Some(r) => expand(r, &v).map_err(|e| anyhow::anyhow!(e))?,
                None => format!("{}/models", base.trim_end_matches('/')),
            };
            let probe_agent = openai::agent(Duration::from_secs(2));
            let took = s.wait_ready(
                &ready,
                Duration::from_secs_f64(spec.ready_timeout_s.unwrap_or(180.0)),
                &|| openai::ready(&probe_agent, &ready),
            )?;
            log(&format!(
                "server ready after {:.1} s (pid {:?})",
                took.as_secs_f64(),
                s.pid()
            ));
            server = Some(s);
        }
        let metrics_url = metrics_endpoint(spec, &base, &v, log)?;
        let eval = match &job.eval {
            Some(e) => {
                let target = Target {
                    url: openai::endpoint_url(&base, crate::engine::spec::Endpoint::Completions),
                    model: spec.model.clone(),
                    api_key: api_key.clone(),
                    timeout,
                };
                let logprobs = probe(&openai::agent(timeout), &target);
                let items = ServerItems::prepare(e, tok.clone(), logprobs, &target.url)?;
                log(&format!(
                    "{} / {}: {} items, scored by {}",
                    e.task.task,
                    e.task.variant,
                    items.len(),
                    items.scored_by.describe()
                ));
                Some((items, target))
            }
            None => None,
        };
        let backend = match &spec.launch {
            Some(l) => format!(
                "openai-compatible server at {}, started by joulebench: {}",
                spec.base_url,
                l.join(" ")
            ),
            None => format!("openai-compatible server at {}", spec.base_url),
        };
        Ok(ServeDriver {
            info: external_info(name, backend, job, model_path),
            url: openai::endpoint_url(&base, spec.endpoint),
            agent: openai::agent(timeout),
            spec: spec.clone(),
            job: job.clone(),
            api_key,
            timeout,
            tok,
            server,
            seq: 0,
            passes: 0,
            shapes,
            dataset,
            metrics_url,
            eval,
        })
    }

    fn requests(&mut self) -> Result<(Vec<StreamRequest>, Vec<StreamPrompt>)> {
        let n = self.job.requests;
        let (mut reqs, mut prompts) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let (p, new_tokens) = match self.shapes.as_ref().and_then(|s| s.get(i)) {
                Some(Shape::Text(s)) => (
                    StreamPrompt {
                        text: s.text.clone(),
                        tokens: s.ids.len(),
                        how: PromptLength::Tokenizer,
                    },
                    s.output_tokens,
                ),
                Some(Shape::Tokens { prompt, output }) => (
                    stream_prompt(self.tok.as_ref(), *prompt, self.seq)?,
                    *output,
                ),
                None => (
                    stream_prompt(self.tok.as_ref(), self.job.prompt_tokens, self.seq)?,
                    self.job.new_tokens,
                ),
            };
            self.seq += 1;
            reqs.push(StreamRequest {
                url: self.url.clone(),
                api_key: self.api_key.clone(),
                body: openai::request_body(
                    self.spec.endpoint,
                    &self.spec.model,
                    &p.text,
                    new_tokens,
                    self.job.ignore_eos,
                ),
                timeout: self.timeout,
            });
            prompts.push(p);
        }
        Ok((reqs, prompts))
    }
}

/// The context a dataset's prompt and reply must fit in on a server (whose own limit
/// joulebench cannot see): 2,048 tokens, as serving benchmarks filter ShareGPT.
pub const SERVER_CONTEXT: usize = 2048;

/// A load curve's active-idle pass: the server loaded, no request, for `secs`; one opaque
/// output spans the window, so the record has its energy and power and no tokens.
fn active_idle(events: &dyn RunEvents, first: usize, secs: f64) -> Pass {
    events.request(first, Boundary::Start);
    let start_ns = crate::clock::monotonic_ns();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let end_ns = crate::clock::monotonic_ns();
    events.request(first, Boundary::End);
    Pass {
        outputs: vec![Output::Opaque {
            start_ns,
            end_ns,
            tokens: None,
        }],
        chunks: Vec::new(),
        streams: None,
        token_counts: "none (active idle: no requests)".into(),
        warnings: vec![format!(
            "active idle: the server loaded and waiting, no requests, for {secs} s"
        )],
    }
}

/// A pass of evaluation items, saying how they were scored.
fn item_pass(outputs: Vec<crate::engine::driver::ItemOutput>, e: &ServerItems) -> Pass {
    Pass {
        outputs: outputs.into_iter().map(Output::Item).collect(),
        chunks: Vec::new(),
        streams: None,
        token_counts: "server".into(),
        warnings: vec![format!("items scored by {}", e.scored_by.describe())],
    }
}

/// How often a pass scrapes the server's /metrics.
const SCRAPE_EVERY: Duration = Duration::from_millis(200);

/// The /metrics URL to scrape: the entry's `metrics_url` (which must answer with known
/// gauges), else `/metrics` at the base URL's root when it does.
fn metrics_endpoint(
    spec: &OpenaiSpec,
    base: &str,
    v: &std::collections::BTreeMap<&'static str, String>,
    log: &mut dyn FnMut(&str),
) -> Result<Option<String>> {
    let probe = openai::agent(Duration::from_secs(2));
    if let Some(m) = &spec.metrics_url {
        let url = expand(m, v).map_err(|e| anyhow::anyhow!(e))?;
        metrics::scrape(&probe, &url).map_err(|e| {
            anyhow::anyhow!("metrics_url {url} gives no telemetry joulebench reads: {e}")
        })?;
        return Ok(Some(url));
    }
    let root = base.trim_end_matches('/');
    let root = root.strip_suffix("/v1").unwrap_or(root);
    let url = format!("{root}/metrics");
    match metrics::scrape(&probe, &url) {
        Ok(_) => {
            log(&format!("server telemetry from {url}"));
            Ok(Some(url))
        }
        Err(_) => Ok(None),
    }
}

/// Parallel streams a job's passes use: its open loop's cap, else its concurrency.
fn streams_of(job: &Job) -> usize {
    job.arrivals.map_or(job.concurrency, |a| a.max_concurrency)
}

/// What the outcomes say about how their prompt lengths are known.
fn prompt_warnings(outs: &[StreamOutcome], prompts: &[StreamPrompt]) -> Vec<String> {
    let mut w = Vec::new();
    if let Some((o, p)) = outs
        .iter()
        .zip(prompts)
        .find(|(o, p)| p.how == PromptLength::Declared && o.usage.is_some())
        && let Some(u) = o.usage
        && u.prompt_tokens.abs_diff(p.tokens) * 10 > p.tokens
    {
        w.push(format!(
            "the server counted {} prompt tokens for a declared {} (no tokenizer here): the \
             figures use the server's count; give `tokenizer` for exact-length prompts",
            u.prompt_tokens, p.tokens
        ));
    }
    if outs.iter().all(|o| o.usage.is_none()) {
        w.push(format!(
            "prompt tokens counted by {} (the server sent no usage)",
            prompts.first().map_or("nobody", |p| p.how.describe())
        ));
    }
    w
}

impl Driver for ServeDriver {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn cpu_is_ours(&self) -> bool {
        self.server.is_some()
    }

    fn estimate_scope(&self) -> EstimateScope {
        EstimateScope::Machine
    }

    fn shape(&self, job: &Job) -> (usize, Option<usize>) {
        (1, Some(streams_of(job)))
    }

    fn dataset(&self) -> Option<&DatasetFigures> {
        self.dataset.as_ref()
    }

    fn eval_metric(&self) -> Option<String> {
        self.eval.as_ref().map(|(e, _)| e.metric_name().to_string())
    }

    fn warmup(&mut self, events: &dyn RunEvents) -> Result<Pass> {
        match &self.eval {
            Some((e, t)) => {
                let n = crate::engine::driver::EVAL_WARMUP_ITEMS.min(e.len());
                Ok(item_pass(e.run(&self.agent, t, events, 0, 0..n)?, e))
            }
            None => self.run(events, 0),
        }
    }

    fn run(&mut self, events: &dyn RunEvents, first: usize) -> Result<Pass> {
        if let Some((e, t)) = &self.eval {
            return Ok(item_pass(
                e.run(&self.agent, t, events, first, 0..e.len())?,
                e,
            ));
        }
        if let Some(secs) = self.job.active_idle_s {
            return Ok(active_idle(events, first, secs));
        }
        let (reqs, prompts) = self.requests()?;
        let arrivals = self.job.arrivals;
        let schedule = arrivals.map(|a| a.schedule(reqs.len(), self.passes));
        self.passes += 1;
        let concurrency = streams_of(&self.job);
        let pass = StreamPass {
            agent: &self.agent,
            reqs,
            concurrency,
            schedule,
            first,
        };
        let scraper = self.metrics_url.as_ref().map(|u| {
            metrics::Scraper::start(
                openai::agent(Duration::from_secs(2)),
                u.clone(),
                SCRAPE_EVERY,
            )
        });
        let done = run_pass(&pass, events);
        let telemetry = scraper.map(|s| s.finish());
        let done = done?;
        let outs = done.outcomes;
        let mut outputs = Vec::with_capacity(outs.len());
        let mut chunks = Vec::new();
        for (o, p) in outs.iter().zip(&prompts) {
            let (g, c) = to_output(o, p.tokens, self.tok.as_ref());
            chunks.extend(c);
            outputs.push(Output::Generate(g));
        }
        let (token_counts, warn) = token_count_source(&outs);
        let mut warnings: Vec<String> = warn.into_iter().collect();
        warnings.extend(prompt_warnings(&outs, &prompts));
        if let Some(a) = arrivals {
            warnings.push(format!(
                "open loop: {}; requests overlap, so per-request and per-phase energy is \
                 apportioned, and J/token is the whole repetition's",
                a.describe()
            ));
            if done.late > 0 {
                warnings.push(format!(
                    "{} of {} requests left more than 5 ms after they were due (all {} streams \
                     busy): the offered rate was not achieved; raise max_concurrency or lower \
                     request_rate",
                    done.late,
                    outs.len(),
                    concurrency
                ));
            }
        } else if concurrency > 1 {
            warnings.push(format!(
                "{} streams overlapped: each stretch of energy between two events is shared \
                 equally by the requests in flight (per-request and per-phase figures are \
                 apportioned); steady-state J/token needs no apportioning",
                concurrency
            ));
        }
        Ok(Pass {
            outputs,
            chunks,
            streams: Some(Streams {
                concurrency,
                requests: self.job.requests,
                arrivals,
                late: done.late,
                telemetry: self.metrics_url.clone().zip(telemetry),
            }),
            token_counts,
            warnings,
        })
    }

    fn explain(&mut self, e: anyhow::Error) -> anyhow::Error {
        match self.server.as_mut() {
            Some(s) => match s.check_alive().err().map(|e| format!("{e:#}")) {
                Some(dead) => e.context(dead),
                None => e.context(format!("server output ends with:\n{}", s.tail(15))),
            },
            None => e,
        }
    }

    fn check(&mut self) -> Result<()> {
        match self.server.as_mut() {
            Some(s) => s.check_alive(),
            None => Ok(()),
        }
    }

    fn close(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop(Duration::from_secs(10));
        }
    }
}
