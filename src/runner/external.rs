//! Cells of external engines: an OpenAI-compatible server (optionally started and stopped by
//! joulebench, outside the measured window) driven by parallel streams, and a command run per
//! repetition. The machine-level meters cover whatever the engine does; figures say how they
//! were attributed.

use super::cell::CellContext;
use super::figures::{Inner, concurrency_figures, fill};
use crate::config::ModelEntry;
use crate::engine::external::openai::{self, StreamOutcome, StreamRequest};
use crate::engine::external::server::{ManagedServer, free_port};
use crate::engine::{EngineConfig, GenerateOutput, ModelInfo, registry};
use crate::meter::sampler::Sampler;
use crate::meter::select::EstimateScope;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokenizers::Tokenizer;

/// The file or folder behind `{model_path}` (a registered model is fetched if needed).
pub fn weights_path(spec: &str) -> Result<PathBuf> {
    if let Some(m) = registry::lookup(spec) {
        let dir = registry::resolve(m, true, &mut |s| eprintln!("[cell] {s}"))?;
        let ggufs: Vec<&str> = m
            .files
            .iter()
            .map(|f| f.name)
            .filter(|n| n.ends_with(".gguf"))
            .collect();
        return Ok(match ggufs.as_slice() {
            [one] => dir.join(one),
            _ => dir,
        });
    }
    if spec.starts_with("synthetic:") {
        bail!("{spec} has no weights on disk for an external engine to load");
    }
    Ok(PathBuf::from(spec))
}

/// A tokenizer for exact-length prompts from a registered id, a .gguf, a tokenizer.json or a
/// folder holding one.
pub fn load_tokenizer(spec: &str) -> Result<Tokenizer> {
    let p = weights_path(spec)?;
    let from_gguf = |g: &Path| -> Result<Tokenizer> {
        let gg = crate::engine::candle::gguf::Gguf::open(g)?;
        Ok(crate::engine::text::tokenizer::from_gguf(&gg)?)
    };
    if p.extension().is_some_and(|e| e == "gguf") {
        return from_gguf(&p);
    }
    if p.is_file() {
        return Ok(crate::engine::text::tokenizer::from_json(&p)?);
    }
    if p.join("tokenizer.json").is_file() {
        return Ok(crate::engine::text::tokenizer::from_json(
            &p.join("tokenizer.json"),
        )?);
    }
    let g = crate::engine::candle::load::gguf_in(&p).with_context(|| {
        format!(
            "no tokenizer at {} (give tokenizer = a registered id, a .gguf, or a tokenizer.json)",
            p.display()
        )
    })?;
    from_gguf(&g)
}

/// The prompt of one request and how its length is known.
struct Prompt {
    text: String,
    tokens: usize,
    how: &'static str,
}

/// The prompt of request number `seq` of the cell: `n` tokens of the bundled text starting at
/// a different place for every request, so a server's prompt (prefix) cache never skips the
/// prefill a fresh request would pay.
fn build_prompt(tok: Option<&Tokenizer>, n: usize, seq: usize) -> Result<Prompt> {
    use crate::engine::text::prompt::TEXT;
    use crate::engine::text::tokenizer::{decode, encode};
    match tok {
        Some(t) => {
            let all = encode(t, TEXT)?;
            if all.is_empty() {
                bail!("the tokenizer made no tokens of the bundled text");
            }
            let start = seq.wrapping_mul(7919) % all.len();
            let ids: Vec<u32> = all.iter().cycle().skip(start).take(n).copied().collect();
            let text = decode(t, &ids)?;
            let tokens = encode(t, &text)?.len();
            Ok(Prompt {
                text,
                tokens,
                how: "joulebench's tokenizer",
            })
        }
        None => {
            // About 0.75 words per token for English BPE tokenizers; the server's usage corrects it.
            let words: Vec<&str> = TEXT.split_whitespace().collect();
            let start = seq.wrapping_mul(7919) % words.len().max(1);
            let text: Vec<&str> = words
                .iter()
                .cycle()
                .skip(start)
                .take((n * 3 / 4).max(1))
                .copied()
                .collect();
            Ok(Prompt {
                text: text.join(" "),
                tokens: n,
                how: "declared",
            })
        }
    }
}

/// Spreads `total` tokens over chunks in proportion to `weights`, by largest remainder.
pub fn spread(total: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() {
        return Vec::new();
    }
    if sum <= 0.0 {
        return spread(total, &vec![1.0; weights.len()]);
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut k: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = total - k.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..k.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        k[i] += 1;
        left -= 1;
    }
    k
}

/// One streamed request as the engine-neutral output figures are made from. A chunk carrying
/// k tokens gives k arrival times spread evenly since the previous chunk.
pub fn to_output(
    o: &StreamOutcome,
    prompt_tokens: usize,
    tok: Option<&Tokenizer>,
) -> (GenerateOutput, Vec<(u64, f64)>) {
    let chunks = o.chunks.len();
    let total = o.usage.map_or(chunks, |u| u.completion_tokens);
    let weights: Vec<f64> = match tok {
        Some(t) if total != chunks => o
            .chunks
            .iter()
            .map(|c| {
                crate::engine::text::tokenizer::encode(t, &c.text)
                    .map_or(1.0, |v| v.len().max(1) as f64)
            })
            .collect(),
        _ => vec![1.0; chunks],
    };
    let k = if total == chunks {
        vec![1; chunks]
    } else {
        spread(total, &weights)
    };
    let mut times = Vec::with_capacity(total);
    let mut per_chunk = Vec::with_capacity(chunks);
    let mut prev = o.chunks.first().map_or(o.start_ns, |c| c.t_ns);
    for (c, &n) in o.chunks.iter().zip(&k) {
        for j in 0..n {
            times.push(if times.is_empty() {
                c.t_ns
            } else {
                prev + (c.t_ns - prev) * (j as u64 + 1) / n as u64
            });
        }
        per_chunk.push((c.t_ns, n as f64));
        prev = c.t_ns;
    }
    let first = o.chunks.first().map_or(o.end_ns, |c| c.t_ns);
    let out = GenerateOutput {
        prompt_tokens: o.usage.map_or(prompt_tokens, |u| u.prompt_tokens),
        generated: vec![vec![0; times.len()]],
        steps: times.len(),
        start_ns: o.start_ns,
        first_token_ns: first,
        token_ns: times,
        end_ns: o.end_ns,
    };
    (out, per_chunk)
}

/// How the token counts of a set of outcomes are known.
fn token_count_source(outs: &[StreamOutcome]) -> (String, Option<String>) {
    let with = outs.iter().filter(|o| o.usage.is_some()).count();
    if with == outs.len() {
        ("server usage".into(), None)
    } else if with == 0 {
        (
            "estimated: streamed chunks counted (the server sent no usage)".into(),
            Some(
                "token counts are ESTIMATED: the server reported no usage, so each streamed \
                 chunk counts as one token"
                    .into(),
            ),
        )
    } else {
        (
            format!(
                "server usage for {with} of {} requests, streamed chunks for the rest",
                outs.len()
            ),
            Some("some token counts are estimated from streamed chunks".into()),
        )
    }
}

struct Pass<'a> {
    agent: &'a ureq::Agent,
    /// One request per index of the pass.
    reqs: Vec<StreamRequest>,
    sampler: &'a Sampler,
    concurrency: usize,
}

/// Runs `requests` requests over `concurrency` streams, marking every start, first chunk and
/// end under `prefix`, and the steady state (all streams running until the first one is done).
fn run_pass(p: &Pass, prefix: &str) -> Result<Vec<StreamOutcome>> {
    let next = AtomicUsize::new(0);
    let running = AtomicUsize::new(0);
    let steady_end = AtomicBool::new(false);
    let abort = AtomicBool::new(false);
    let requests = p.reqs.len();
    let results: Mutex<Vec<Option<StreamOutcome>>> = Mutex::new(vec![None; requests]);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let now = crate::clock::monotonic_ns;
    std::thread::scope(|s| {
        for _ in 0..p.concurrency {
            s.spawn(|| {
                let mut seen_first = false;
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= requests || abort.load(Ordering::SeqCst) {
                        if !steady_end.swap(true, Ordering::SeqCst) {
                            p.sampler.mark(&format!("{prefix}:steady-end"));
                        }
                        return;
                    }
                    let mut on_start = |_t: u64| {
                        p.sampler.mark(&format!("{prefix}.{i}:start"));
                    };
                    let mut on_chunk = |c: usize, _t: u64| {
                        if c == 0 {
                            p.sampler.mark(&format!("{prefix}.{i}:first"));
                            if !seen_first {
                                seen_first = true;
                                if running.fetch_add(1, Ordering::SeqCst) + 1 == p.concurrency {
                                    p.sampler.mark(&format!("{prefix}:steady-start"));
                                }
                            }
                        }
                    };
                    match openai::stream(p.agent, &p.reqs[i], &now, &mut on_start, &mut on_chunk) {
                        Ok(o) => {
                            p.sampler.mark(&format!("{prefix}.{i}:end"));
                            if o.chunks.is_empty() {
                                abort.store(true, Ordering::SeqCst);
                                first_error
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .get_or_insert(format!(
                                        "request {i}: the server streamed no content (finish \
                                         reason {:?})",
                                        o.finish_reason
                                    ));
                            }
                            results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(o);
                        }
                        Err(e) => {
                            abort.store(true, Ordering::SeqCst);
                            first_error
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(format!("request {i}: {e}"));
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        bail!(e);
    }
    Ok(results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect())
}

fn vars(ctx: &CellContext, port: u16, model_path: Option<&Path>) -> BTreeMap<&'static str, String> {
    let w = &ctx.cell.workload;
    let threads = ctx.cell.profile.thread_count();
    let mut v = BTreeMap::new();
    v.insert("port", port.to_string());
    v.insert("threads", threads.to_string());
    v.insert("prompt_tokens", w.prompt_tokens.to_string());
    v.insert("new_tokens", w.new_tokens.to_string());
    v.insert("concurrency", w.concurrency.to_string());
    v.insert("requests", w.request_count().to_string());
    if let Some(p) = model_path {
        v.insert("model_path", p.display().to_string());
    }
    v
}

/// Expands placeholders; a relative program path with a `/` resolves against the suite's folder
/// (like model paths), a bare name is looked up on PATH.
fn expand_all(
    args: &[String],
    v: &BTreeMap<&str, String>,
    ctx: &CellContext,
) -> Result<Vec<String>> {
    let mut out: Vec<String> = args
        .iter()
        .map(|a| crate::engine::external::expand(a, v).map_err(|e| anyhow::anyhow!(e)))
        .collect::<Result<_>>()?;
    if let Some(p) = out.first_mut()
        && p.contains('/')
        && Path::new(p.as_str()).is_relative()
    {
        let base = ctx.meta.config_path.parent().unwrap_or(Path::new("."));
        *p = base.join(&*p).display().to_string();
    }
    Ok(out)
}

fn external_info(
    m: &ModelEntry,
    backend: String,
    ctx: &CellContext,
    path: Option<PathBuf>,
) -> ModelInfo {
    ModelInfo {
        id: m.name(),
        family: "external".into(),
        architecture: "unknown (external engine)".into(),
        parameters: 0,
        quantization: "unknown".into(),
        synthetic: false,
        path,
        vocab_size: 0,
        context_length: 0,
        eos_token_ids: Vec::new(),
        engine: EngineConfig {
            backend,
            device: ctx.cell.profile.device.clone(),
            threads: ctx.cell.profile.thread_count(),
            prefill_matmul: "external".into(),
            decode_matmul: "external".into(),
            weights_dtype: "external".into(),
        },
    }
}

/// Runs an `engine = "openai"` cell.
pub fn run_openai(ctx: &CellContext, reps: &[u32], interrupt: &AtomicBool) -> Result<u8> {
    let (suite, cell) = (&ctx.suite, &ctx.cell);
    let m = &cell.model;
    let w = &cell.workload;
    let model_path = m.weights().map(|s| weights_path(&s)).transpose()?;
    let tok = match m.tokenizer.clone().or_else(|| m.weights()) {
        Some(spec) if !spec.starts_with("synthetic:") => Some(
            load_tokenizer(&spec).with_context(|| format!("tokenizer {spec} for exact prompts"))?,
        ),
        _ => None,
    };
    let port = free_port()?;
    let v = vars(ctx, port, model_path.as_deref());
    let base = crate::engine::external::expand(m.base_url.as_deref().unwrap_or(""), &v)
        .map_err(|e| anyhow::anyhow!(e))?;
    let api_key = match &m.api_key_env {
        Some(k) => Some(std::env::var(k).map_err(|_| {
            anyhow::anyhow!("api_key_env = {k:?}, but the environment variable {k} is not set")
        })?),
        None => None,
    };
    crate::engine::external::check_key_transport(&base, api_key.is_some(), m.allow_insecure_http)
        .map_err(|e| anyhow::anyhow!(e))?;
    let timeout = Duration::from_secs_f64(m.request_timeout_s.unwrap_or(300.0));
    let agent = openai::agent(timeout);
    // Start the server (outside any measured window) and wait until it answers.
    let mut server = None;
    if let Some(l) = &m.launch {
        let argv = expand_all(l, &v, ctx)?;
        let log = ctx
            .run_dir
            .join("logs")
            .join(format!("{}.server.log", cell.id));
        let env: Vec<(String, String)> = cell
            .profile
            .env
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        eprintln!("[cell] starting the server: {}", argv.join(" "));
        let mut s = ManagedServer::launch(&argv, &env, &log)?;
        let ready = match &m.ready_url {
            Some(r) => crate::engine::external::expand(r, &v).map_err(|e| anyhow::anyhow!(e))?,
            None => format!("{}/models", base.trim_end_matches('/')),
        };
        let probe_agent = openai::agent(Duration::from_secs(2));
        let took = s.wait_ready(
            &ready,
            Duration::from_secs_f64(m.ready_timeout_s.unwrap_or(180.0)),
            &|| openai::ready(&probe_agent, &ready),
        )?;
        eprintln!(
            "[cell] server ready after {:.1} s (pid {:?})",
            took.as_secs_f64(),
            s.pid()
        );
        server = Some(s);
    }
    let with_tail = |e: anyhow::Error, server: &mut Option<ManagedServer>| -> anyhow::Error {
        match server {
            Some(s) => {
                let alive = s.check_alive().err().map(|e| format!("{e:#}"));
                match alive {
                    Some(dead) => e.context(dead),
                    None => e.context(format!("server output ends with:\n{}", s.tail(15))),
                }
            }
            None => e,
        }
    };
    let meters = ctx.meters(EstimateScope::Machine)?;
    let requests = w.request_count();
    let url = openai::endpoint_url(&base, m.endpoint);
    let mut seq = 0usize;
    let mut next_pass = || -> Result<(Pass, Vec<Prompt>)> {
        let mut reqs = Vec::with_capacity(requests);
        let mut prompts = Vec::with_capacity(requests);
        for _ in 0..requests {
            let p = build_prompt(tok.as_ref(), w.prompt_tokens, seq)?;
            seq += 1;
            reqs.push(StreamRequest {
                url: url.clone(),
                api_key: api_key.clone(),
                body: openai::request_body(
                    m.endpoint,
                    m.model.as_deref().unwrap_or(""),
                    &p.text,
                    w.new_tokens,
                    w.ignore_eos,
                ),
                timeout,
            });
            prompts.push(p);
        }
        Ok((
            Pass {
                agent: &agent,
                reqs,
                sampler: &meters.sampler,
                concurrency: w.concurrency,
            },
            prompts,
        ))
    };
    for k in 0..suite.warmup.max(1) {
        let (pass, _) = next_pass()?;
        if let Err(e) = run_pass(&pass, &format!("warmup{}", k + 1)) {
            return Err(with_tail(e.context("warmup failed"), &mut server));
        }
    }
    let configured = m.base_url.as_deref().unwrap_or("");
    let backend = match &m.launch {
        Some(l) => format!(
            "openai-compatible server at {configured}, started by joulebench: {}",
            l.join(" ")
        ),
        None => format!("openai-compatible server at {configured}"),
    };
    let info = external_info(m, backend, ctx, model_path.clone());
    for &rep in reps {
        if interrupt.load(Ordering::Relaxed) {
            return Ok(130);
        }
        let (pass, prompts) = next_pass()?;
        let outs = match run_pass(&pass, &format!("r{rep}")) {
            Ok(o) => o,
            Err(e) => {
                return Err(with_tail(
                    e.context(format!("repetition {rep} of {}", cell.id)),
                    &mut server,
                ));
            }
        };
        meters.sampler.mark(&format!("r{rep}:settle"));
        let rec = meters.sampler.snapshot();
        let mut warnings = meters.warnings.clone();
        warnings.extend(meters.sampler.health());
        let mut inner = Vec::with_capacity(outs.len());
        let mut chunks = Vec::new();
        for (o, p) in outs.iter().zip(&prompts) {
            let (g, c) = to_output(o, p.tokens, tok.as_ref());
            chunks.extend(c);
            inner.push(Inner::Generate(g));
        }
        let (source, warn) = token_count_source(&outs);
        warnings.extend(warn);
        if let Some((o, p)) = outs
            .iter()
            .zip(&prompts)
            .find(|(o, p)| p.how == "declared" && o.usage.is_some())
            && let Some(u) = o.usage
            && u.prompt_tokens.abs_diff(p.tokens) * 10 > p.tokens
        {
            warnings.push(format!(
                "the server counted {} prompt tokens for a declared {} (no tokenizer here): the \
                 figures use the server's count; give `tokenizer` for exact-length prompts",
                u.prompt_tokens, p.tokens
            ));
        }
        if outs.iter().all(|o| o.usage.is_none()) {
            warnings.push(format!(
                "prompt tokens counted by {} (the server sent no usage)",
                prompts.first().map_or("nobody", |p| p.how)
            ));
        }
        let mut r = ctx.new_record(rep);
        r.model_info = Some(info.clone());
        r.concurrency = Some(w.concurrency);
        r.requests = Some(requests);
        r.token_counts = Some(source);
        r.batch = 1;
        warnings.extend(fill(
            &mut r,
            &rec,
            &format!("r{rep}"),
            &inner,
            ctx.idle.as_ref(),
            suite,
        ));
        let total_generated: usize = inner
            .iter()
            .map(|i| match i {
                Inner::Generate(g) => g.generated_tokens(),
                _ => 0,
            })
            .sum();
        r.generated_tokens = total_generated / requests.max(1);
        warnings.extend(concurrency_figures(
            &mut r,
            &rec,
            &format!("r{rep}"),
            requests,
            &chunks,
        ));
        if let Some(wh) = r.whole.as_mut() {
            wh.generated_tokens = total_generated;
            wh.j_per_generated_token =
                (total_generated > 0).then(|| wh.energy_j / total_generated as f64);
        }
        if w.concurrency > 1 {
            warnings.push(format!(
                "{} streams overlapped: each stretch of energy between two events is shared \
                 equally by the requests in flight (per-request and per-phase figures are \
                 apportioned); steady-state J/token needs no apportioning",
                w.concurrency
            ));
            if let Some(s) = &r.steady {
                r.energy_per_token_joules = s.j_per_token;
            }
        }
        r.warnings = warnings;
        ctx.save(r, &rec)?;
        if let Some(s) = server.as_mut() {
            s.check_alive()?;
        }
    }
    drop(meters.sampler.stop());
    if let Some(mut s) = server {
        s.stop(Duration::from_secs(10));
    }
    Ok(0)
}

/// Reads the token count from a command's output with `tokens_regex` (group `tokens`, else the
/// first group, else the whole match); several matches add up.
pub fn tokens_from_output(re: &regex::Regex, text: &str) -> Option<usize> {
    let mut total = None;
    for c in re.captures_iter(text) {
        let m = c.name("tokens").or_else(|| c.get(1)).or_else(|| c.get(0))?;
        let n: usize = m.as_str().trim().replace(',', "").parse().ok()?;
        total = Some(total.unwrap_or(0) + n);
    }
    total
}

/// Runs an `engine = "command"` cell.
pub fn run_command(ctx: &CellContext, reps: &[u32], interrupt: &AtomicBool) -> Result<u8> {
    let (suite, cell) = (&ctx.suite, &ctx.cell);
    let m = &cell.model;
    let model_path = m.weights().map(|s| weights_path(&s)).transpose()?;
    let v = vars(ctx, free_port()?, model_path.as_deref());
    let argv = expand_all(m.command.as_deref().unwrap_or(&[]), &v, ctx)?;
    let re = m
        .tokens_regex
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("tokens_regex")?;
    let meters = ctx.meters(EstimateScope::ChildTree)?;
    let log_dir = ctx.run_dir.join("logs");
    let run_once = |label: &str| -> Result<(u64, u64, String)> {
        let out_path = log_dir.join(format!("{}.{label}.out", cell.id));
        let out = std::fs::File::create(&out_path)
            .with_context(|| format!("cannot create {}", out_path.display()))?;
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(&cell.profile.env)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        meters.sampler.mark(&format!("{label}.0:start"));
        let start = crate::clock::monotonic_ns();
        let mut child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot start {:?}: {e} (the command runs without a shell)",
                argv[0]
            )
        })?;
        if let Some(t) = &meters.child_tracker {
            t.store(child.id() as i32, Ordering::SeqCst);
        }
        let status = child.wait()?;
        let end = crate::clock::monotonic_ns();
        meters.sampler.mark(&format!("{label}.0:end"));
        if let Some(t) = &meters.child_tracker {
            t.store(0, Ordering::SeqCst);
        }
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if !status.success() {
            bail!(
                "{} {status}; its output ends with:\n{}",
                argv.join(" "),
                crate::engine::external::server::tail_text(&text, 15)
            );
        }
        Ok((start, end, text))
    };
    for k in 0..suite.warmup {
        run_once(&format!("warmup{}", k + 1))?;
    }
    let info = external_info(m, format!("command: {}", argv.join(" ")), ctx, model_path);
    for &rep in reps {
        if interrupt.load(Ordering::Relaxed) {
            return Ok(130);
        }
        let (start_ns, end_ns, text) = run_once(&format!("r{rep}"))?;
        let rec = meters.sampler.snapshot();
        let mut warnings = meters.warnings.clone();
        let tokens = re.as_ref().and_then(|r| tokens_from_output(r, &text));
        if re.is_some() && tokens.is_none() {
            warnings.push(
                "tokens_regex matched nothing in the command's output: energy per run only".into(),
            );
        }
        let mut r = ctx.new_record(rep);
        r.model_info = Some(info.clone());
        r.token_counts = Some(match tokens {
            Some(_) => "command output (tokens_regex)".into(),
            None => "none".into(),
        });
        warnings.extend(fill(
            &mut r,
            &rec,
            &format!("r{rep}"),
            &[Inner::Opaque {
                start_ns,
                end_ns,
                tokens,
            }],
            ctx.idle.as_ref(),
            suite,
        ));
        r.prompt_tokens = 0;
        r.warnings = warnings;
        ctx.save(r, &rec)?;
    }
    drop(meters.sampler.stop());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreading_keeps_the_total() {
        assert_eq!(spread(6, &[1.0, 1.0, 1.0]), vec![2, 2, 2]);
        assert_eq!(spread(5, &[1.0, 1.0, 1.0]).iter().sum::<usize>(), 5);
        assert_eq!(spread(4, &[3.0, 1.0]), vec![3, 1]);
        assert_eq!(spread(2, &[1.0, 1.0, 1.0]).iter().sum::<usize>(), 2);
        assert!(spread(3, &[]).is_empty());
    }

    #[test]
    fn multi_token_chunks_spread_their_arrival_times() {
        let o = StreamOutcome {
            start_ns: 0,
            chunks: vec![
                openai::Chunk {
                    t_ns: 100,
                    text: "a".into(),
                },
                openai::Chunk {
                    t_ns: 400,
                    text: "bcd".into(),
                },
            ],
            end_ns: 500,
            usage: Some(openai::Usage {
                prompt_tokens: 9,
                completion_tokens: 4,
            }),
            finish_reason: Some("length".into()),
            timings: None,
        };
        let (g, per_chunk) = to_output(&o, 1, None);
        assert_eq!(g.prompt_tokens, 9);
        assert_eq!(g.generated_tokens(), 4);
        assert_eq!(g.token_ns, vec![100, 100, 250, 400]);
        assert_eq!(per_chunk, vec![(100, 2.0), (400, 2.0)]);
        // Without usage, every chunk is one token.
        let o2 = StreamOutcome { usage: None, ..o };
        let (g2, _) = to_output(&o2, 7, None);
        assert_eq!((g2.generated_tokens(), g2.prompt_tokens), (2, 7));
    }

    #[test]
    fn token_counts_from_command_output() {
        let re = regex::Regex::new(r"generated (?P<tokens>\d+) tokens").unwrap();
        assert_eq!(
            tokens_from_output(&re, "generated 12 tokens\ngenerated 3 tokens"),
            Some(15)
        );
        assert_eq!(tokens_from_output(&re, "nothing"), None);
        let re = regex::Regex::new(r"tg\d+ +\| +(\d+)").unwrap();
        assert_eq!(tokens_from_output(&re, "tg128 | 128 |"), Some(128));
    }
}
