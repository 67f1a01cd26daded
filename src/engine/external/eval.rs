//! Evaluation items on an OpenAI-compatible server. Multiple choice is scored from the server's
//! prompt log-probabilities (`/v1/completions` with `echo` and `logprobs`, as vLLM gives them):
//! each choice's continuation summed, as lm-evaluation-harness does with such servers. A server
//! that gives none (llama.cpp's server, most hosted APIs) answers by generation instead: GSM8K's
//! final number, or a multiple-choice letter (the `mc_` variants, whose choices are ` A`, ` B`,
//! ...) parsed exactly; the `rc_` variants cannot be scored there and say so before any item
//! runs. Which of the two a cell used is in its records (`scored_by`).

use crate::engine::driver::Boundary;
use crate::engine::driver::{EvalJob, ItemOutput, RunEvents};
use crate::engine::text::eval::{Choice, Items, McMetric, choice_tokens, gsm8k};
use crate::engine::text::tokenizer;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::time::Duration;
use tokenizers::Tokenizer;

/// How a server's items are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoredBy {
    /// The prompt's log-probabilities, echoed.
    Logprobs,
    /// A generated answer (a number, or a choice's letter).
    Generation,
}

impl ScoredBy {
    /// As records and the plan say it.
    pub fn describe(self) -> &'static str {
        match self {
            ScoredBy::Logprobs => "the server's prompt log-probabilities (echo)",
            ScoredBy::Generation => "a generated answer (a number, or a choice's letter)",
        }
    }
}

/// Where and how to send a server's requests.
#[derive(Debug, Clone)]
pub struct Target {
    /// `{base}/completions`.
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

/// A task's items for a server, and how they are scored.
pub struct ServerItems {
    items: Items,
    metric: McMetric,
    pub scored_by: ScoredBy,
    tok: Option<Tokenizer>,
}

/// POSTs `body` and reads the JSON answer (non-streamed).
fn post(agent: &ureq::Agent, t: &Target, body: &Value) -> Result<Value> {
    let text = serde_json::to_string(body)?;
    let mut r = agent
        .post(&t.url)
        .header("Content-Type", "application/json");
    if let Some(k) = &t.api_key {
        r = r.header("Authorization", &format!("Bearer {k}"));
    }
    let resp = r
        .send(text.as_bytes())
        .map_err(|e| anyhow!("cannot reach {}: {e}", t.url))?;
    let status = resp.status().as_u16();
    let s = super::openai::read_body_capped(
        resp.into_body().into_reader(),
        super::openai::MAX_BODY,
        &t.url,
    )?;
    if status >= 400 {
        let cut: String = s.chars().take(500).collect();
        bail!("HTTP {status} from {}: {cut}", t.url);
    }
    serde_json::from_str(&s).map_err(|e| {
        let cut: String = s.chars().take(200).collect();
        anyhow!(
            "{} answered with something that is not JSON ({e}): {cut}",
            t.url
        )
    })
}

/// The echoed prompt's per-token log-probabilities and text offsets (None: the answer has
/// none, so the server does not echo them).
fn echoed(v: &Value) -> Option<(Vec<Option<f64>>, Vec<usize>)> {
    let lp = v.pointer("/choices/0/logprobs")?;
    let lps: Vec<Option<f64>> = lp
        .get("token_logprobs")?
        .as_array()?
        .iter()
        .map(Value::as_f64)
        .collect();
    let offs: Vec<usize> = lp
        .get("text_offset")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| o.as_u64().map(|o| o as usize))
                .collect()
        })
        .unwrap_or_default();
    (!lps.is_empty()).then_some((lps, offs))
}

/// The body of an echo request: the prompt (text or token ids), one new token, greedy.
fn echo_body(t: &Target, prompt: Value) -> Value {
    json!({
        "model": t.model,
        "prompt": prompt,
        "max_tokens": 1,
        "temperature": 0.0,
        "echo": true,
        "logprobs": 1,
        "stream": false,
    })
}

/// Whether the server echoes prompt log-probabilities (one short request, outside any window).
pub fn probe(agent: &ureq::Agent, t: &Target) -> bool {
    post(
        agent,
        t,
        &echo_body(t, json!("The capital of France is Paris")),
    )
    .ok()
    .and_then(|v| echoed(&v))
    .is_some_and(|(lps, _)| lps.len() >= 3)
}

/// Each choice's letter where every continuation is one (` A`, ` B`, ...), in order.
fn letters(choices: &[Choice]) -> Option<Vec<char>> {
    let l: Option<Vec<char>> = choices
        .iter()
        .map(|c| {
            let t = c.continuation.trim();
            let mut it = t.chars();
            match (it.next(), it.next()) {
                (Some(ch), None) if ch.is_ascii_uppercase() => Some(ch),
                _ => None,
            }
        })
        .collect();
    l.filter(|v| {
        let mut s = v.clone();
        s.dedup();
        s.len() == v.len()
    })
}

impl ServerItems {
    /// Reads the job's items; `logprobs` says whether the server echoes them. Errors before any
    /// item runs when the server cannot score this variant.
    pub fn prepare(
        job: &EvalJob,
        tok: Option<Tokenizer>,
        logprobs: bool,
        url: &str,
    ) -> Result<ServerItems> {
        let items = job
            .task
            .read(&job.data)?
            .select(&job.docs)
            .map_err(|d| anyhow!("the task has no document {d} (a different data set?)"))?;
        let (metric, scored_by) = match &items {
            Items::Gen { .. } => (McMetric::AccRaw, ScoredBy::Generation),
            Items::Mc { primary, .. } if logprobs => {
                (job.metric.unwrap_or(*primary), ScoredBy::Logprobs)
            }
            Items::Mc { items, primary } => {
                if items.iter().any(|i| letters(&i.choices).is_none()) {
                    bail!(
                        "{url} gives no prompt log-probabilities (/v1/completions with echo and \
                         logprobs, as vLLM has), so it cannot score {} / {}: use an mc_ variant \
                         (answered with a letter) or task gsm8k on this server",
                        job.task.task,
                        job.task.variant
                    );
                }
                (*primary, ScoredBy::Generation)
            }
        };
        Ok(ServerItems {
            items,
            metric,
            scored_by,
            tok,
        })
    }

    /// How many items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The rule as records name it.
    pub fn metric_name(&self) -> &'static str {
        match (&self.items, self.scored_by) {
            (Items::Gen { .. }, _) => "exact_match",
            (Items::Mc { .. }, ScoredBy::Generation) => "letter_exact_match",
            (Items::Mc { .. }, ScoredBy::Logprobs) => self.metric.name(),
        }
    }

    /// Runs items `range`, item `i` as request `first + i - range.start` in `events`.
    pub fn run(
        &self,
        agent: &ureq::Agent,
        t: &Target,
        events: &dyn RunEvents,
        first: usize,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<ItemOutput>> {
        let mut out = Vec::with_capacity(range.len());
        for (k, i) in range.enumerate() {
            let index = first + k;
            events.request(index, Boundary::Start);
            let start_ns = crate::clock::monotonic_ns();
            let mut o = match &self.items {
                Items::Mc { items, .. } => {
                    let it = &items[i];
                    let (loglik, choice, tokens) = match self.scored_by {
                        ScoredBy::Logprobs => self.score(agent, t, &it.choices)?,
                        ScoredBy::Generation => self.letter(agent, t, &it.choices)?,
                    };
                    ItemOutput {
                        doc_id: it.doc_id,
                        correct: choice == Some(it.gold),
                        choice,
                        gold: Some(it.gold),
                        loglik,
                        answer: None,
                        reference: None,
                        tokens,
                        shared: 0,
                        generated: 0,
                        start_ns,
                        end_ns: 0,
                    }
                }
                Items::Gen {
                    items,
                    stop,
                    max_new_tokens,
                } => {
                    let it = &items[i];
                    let (text, prompt_tokens, generated) =
                        complete(agent, t, &it.prompt, *max_new_tokens, stop)
                            .with_context(|| format!("document {}", it.doc_id))?;
                    let cut = stop
                        .iter()
                        .filter_map(|s| text.find(s.as_str()))
                        .min()
                        .map_or(text.as_str(), |p| &text[..p]);
                    let answer = gsm8k::extract(cut);
                    ItemOutput {
                        doc_id: it.doc_id,
                        loglik: Vec::new(),
                        choice: None,
                        gold: None,
                        correct: answer.as_deref() == Some(it.answer.as_str()),
                        answer,
                        reference: Some(it.answer.clone()),
                        tokens: prompt_tokens,
                        shared: 0,
                        generated,
                        start_ns,
                        end_ns: 0,
                    }
                }
            };
            o.end_ns = crate::clock::monotonic_ns();
            events.request(index, Boundary::End);
            out.push(o);
        }
        Ok(out)
    }

    /// Every choice's log-likelihood from echoed prompts: with the tokenizer, the prompt goes
    /// as token ids and the continuation is the tokens after the context's count (the harness's
    /// rule); without it, as text, and the continuation is the tokens that start at or after the
    /// context's end.
    fn score(
        &self,
        agent: &ureq::Agent,
        t: &Target,
        choices: &[Choice],
    ) -> Result<(Vec<f64>, Option<usize>, usize)> {
        let mut loglik = Vec::with_capacity(choices.len());
        let mut tokens = 0;
        for c in choices {
            let (prompt, start, len, by_offset) = match &self.tok {
                Some(tok) => {
                    let enc = |s: &str| tokenizer::encode(tok, s);
                    let (ids, start) = choice_tokens(&enc, c, None, 0)?;
                    let n = ids.len();
                    (json!(ids), start, n, None)
                }
                None => {
                    let (ctx, cont) = c.normalized();
                    let ctx_chars = ctx.chars().count();
                    let whole = format!("{ctx}{cont}");
                    let whole_chars = whole.chars().count();
                    (json!(whole), 0, 0, Some((ctx_chars, whole_chars)))
                }
            };
            let v = post(agent, t, &echo_body(t, prompt))?;
            let (lps, offs) = echoed(&v).ok_or_else(|| {
                anyhow!("{} stopped echoing prompt log-probabilities mid-run", t.url)
            })?;
            let picked: Vec<Option<f64>> = match by_offset {
                None => {
                    if lps.len() < len {
                        bail!(
                            "{} echoed {} log-probabilities for a prompt of {len} tokens",
                            t.url,
                            lps.len()
                        );
                    }
                    lps[start..len].to_vec()
                }
                Some((ctx_chars, whole_chars)) => lps
                    .iter()
                    .zip(&offs)
                    .filter(|(_, o)| **o >= ctx_chars && **o < whole_chars)
                    .map(|(l, _)| *l)
                    .collect(),
            };
            tokens += picked.len().max(len);
            let sum: Option<f64> = picked.iter().copied().sum();
            loglik.push(match sum {
                Some(s) if !picked.is_empty() => s,
                _ => f64::NAN,
            });
        }
        let chars: Vec<usize> = choices.iter().map(Choice::chars).collect();
        let choice = self.metric.pick(&loglik, &chars);
        Ok((loglik, choice, tokens))
    }

    /// A multiple-choice item answered with a letter: the context sent, the first letter of
    /// the answer matched exactly against the choices' letters (anything else: no choice).
    fn letter(
        &self,
        agent: &ureq::Agent,
        t: &Target,
        choices: &[Choice],
    ) -> Result<(Vec<f64>, Option<usize>, usize)> {
        let l = letters(choices).ok_or_else(|| anyhow!("choices are not letters"))?;
        let ctx = choices.first().map_or("", |c| c.context.as_str());
        let (text, prompt_tokens, _) = complete(agent, t, ctx, 2, &[])?;
        let first = text.trim_start().chars().next();
        let choice = first.and_then(|f| l.iter().position(|c| *c == f));
        Ok((Vec::new(), choice, prompt_tokens))
    }
}

/// One greedy completion: its text, the prompt's tokens (the server's count, else 0) and the
/// tokens generated.
fn complete(
    agent: &ureq::Agent,
    t: &Target,
    prompt: &str,
    max_tokens: usize,
    stop: &[String],
) -> Result<(String, usize, usize)> {
    let mut body = json!({
        "model": t.model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 0,
        "stream": false,
    });
    if !stop.is_empty() {
        // The API takes at most four; the rest are cut here after the answer arrives.
        body["stop"] = json!(stop.iter().take(4).collect::<Vec<_>>());
    }
    let v = post(agent, t, &body)?;
    let text = v
        .pointer("/choices/0/text")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{} answered without choices[0].text", t.url))?
        .to_string();
    let usage = |k: &str| {
        v.pointer(&format!("/usage/{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize
    };
    Ok((text, usage("prompt_tokens"), usage("completion_tokens")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(cont: &str) -> Choice {
        Choice {
            context: "Q: which? A:".into(),
            continuation: cont.into(),
        }
    }

    #[test]
    fn letter_choices_are_recognized_and_others_are_not() {
        let abc: Vec<Choice> = [" A", " B", " C"].iter().map(|c| choice(c)).collect();
        assert_eq!(letters(&abc), Some(vec!['A', 'B', 'C']));
        let words: Vec<Choice> = [" red", " blue"].iter().map(|c| choice(c)).collect();
        assert_eq!(letters(&words), None);
        let twice: Vec<Choice> = [" A", " A"].iter().map(|c| choice(c)).collect();
        assert_eq!(letters(&twice), None);
    }

    #[test]
    fn echoed_log_probabilities_are_read_or_absent() {
        let v = json!({"choices": [{"text": "x", "logprobs": {
            "token_logprobs": [null, -1.5, -0.5],
            "text_offset": [0, 3, 6]
        }}]});
        let (lps, offs) = echoed(&v).unwrap();
        assert_eq!(lps, vec![None, Some(-1.5), Some(-0.5)]);
        assert_eq!(offs, vec![0, 3, 6]);
        assert!(echoed(&json!({"choices": [{"text": "x"}]})).is_none());
        assert!(echoed(&json!({"choices": [{"text": "x", "logprobs": null}]})).is_none());
    }
}
