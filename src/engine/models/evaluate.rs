//! An evaluation cell on the in-process engine: the task's items read and tokenized once
//! (outside any measured window), then each item one request: its choices scored from a shared
//! prefix, or its answer generated until a stop sequence, and judged.

use crate::engine::driver::{EvalJob, ItemOutput, RequestEvents, RunEvents};
use crate::engine::text::eval::{Items, McMetric, choice_tokens, gsm8k};
use crate::engine::text::tokenizer;
use crate::engine::{GenerateRequest, InferenceBackend, ScoreRequest};
use anyhow::{Context, Result, bail};

/// One item, ready to run.
enum Ready {
    Mc {
        doc_id: u64,
        gold: usize,
        req: ScoreRequest,
        /// Each continuation's length in characters (`acc_per_char`).
        chars: Vec<usize>,
    },
    Gen {
        doc_id: u64,
        prompt: Vec<u32>,
        reference: String,
    },
}

/// A task's items as token ids, and how they are judged.
pub struct EvalItems {
    items: Vec<Ready>,
    metric: McMetric,
    stop: Vec<String>,
    max_new_tokens: usize,
}

impl EvalItems {
    /// Reads the job's items from its data and tokenizes them for `model` (BOS as the
    /// vocabulary says).
    pub fn prepare(model: &dyn InferenceBackend, job: &EvalJob) -> Result<EvalItems> {
        let tok = model
            .tokenizer()
            .context("an evaluation needs the model's tokenizer (synthetic models have none)")?;
        let items =
            job.task.read(&job.data)?.select(&job.docs).map_err(|d| {
                anyhow::anyhow!("the task has no document {d} (a different data set?)")
            })?;
        let info = model.info();
        let bos = info.bos_token_id;
        let eot = info.eos_token_ids.first().copied().unwrap_or(0);
        let encode = |s: &str| tokenizer::encode(tok, s);
        let ctx = info.context_length;
        match items {
            Items::Mc { items, primary } => {
                let mut ready = Vec::with_capacity(items.len());
                for it in items {
                    let mut req = ScoreRequest {
                        choices: Vec::new(),
                        starts: Vec::new(),
                    };
                    for c in &it.choices {
                        let (ids, start) = choice_tokens(&encode, c, bos, eot)
                            .with_context(|| format!("document {}", it.doc_id))?;
                        if ids.len() > ctx {
                            bail!(
                                "document {}: a choice of {} tokens exceeds the model's context \
                                 of {ctx}",
                                it.doc_id,
                                ids.len()
                            );
                        }
                        req.choices.push(ids);
                        req.starts.push(start);
                    }
                    ready.push(Ready::Mc {
                        doc_id: it.doc_id,
                        gold: it.gold,
                        chars: it.choices.iter().map(|c| c.chars()).collect(),
                        req,
                    });
                }
                Ok(EvalItems {
                    items: ready,
                    metric: job.metric.unwrap_or(primary),
                    stop: Vec::new(),
                    max_new_tokens: 0,
                })
            }
            Items::Gen {
                items,
                stop,
                max_new_tokens,
            } => {
                let mut ready = Vec::with_capacity(items.len());
                for it in items {
                    let mut prompt: Vec<u32> = bos.into_iter().collect();
                    prompt.extend(encode(&it.prompt)?);
                    if prompt.len() + max_new_tokens > ctx {
                        bail!(
                            "document {}: a prompt of {} tokens and {max_new_tokens} new ones \
                             exceed the model's context of {ctx}",
                            it.doc_id,
                            prompt.len()
                        );
                    }
                    ready.push(Ready::Gen {
                        doc_id: it.doc_id,
                        prompt,
                        reference: it.answer,
                    });
                }
                Ok(EvalItems {
                    items: ready,
                    metric: McMetric::AccRaw,
                    stop,
                    max_new_tokens,
                })
            }
        }
    }

    /// How many items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The choice rule in force.
    pub fn metric(&self) -> McMetric {
        self.metric
    }

    /// The rule as records name it: the choice rule, or `exact_match` for generated answers.
    pub fn metric_name(&self) -> &'static str {
        match self.items.first() {
            Some(Ready::Gen { .. }) => "exact_match",
            _ => self.metric.name(),
        }
    }

    /// Runs items `range` on `model`, item `i` as request `first + i - range.start` in
    /// `events`.
    pub fn run(
        &self,
        model: &mut dyn InferenceBackend,
        events: &dyn RunEvents,
        first: usize,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<ItemOutput>> {
        let mut out = Vec::with_capacity(range.len());
        for (k, item) in self.items[range].iter().enumerate() {
            let mut obs = RequestEvents {
                events,
                index: first + k,
            };
            out.push(match item {
                Ready::Mc {
                    doc_id,
                    gold,
                    req,
                    chars,
                } => {
                    let s = model
                        .score(req, &mut obs)
                        .with_context(|| format!("document {doc_id}"))?;
                    let choice = self.metric.pick(&s.loglik, chars);
                    ItemOutput {
                        doc_id: *doc_id,
                        correct: choice == Some(*gold),
                        choice,
                        gold: Some(*gold),
                        loglik: s.loglik,
                        answer: None,
                        reference: None,
                        tokens: s.tokens,
                        shared: s.shared,
                        generated: 0,
                        start_ns: s.start_ns,
                        end_ns: s.end_ns,
                    }
                }
                Ready::Gen {
                    doc_id,
                    prompt,
                    reference,
                } => self.generate(model, &mut obs, *doc_id, prompt, reference)?,
            });
        }
        Ok(out)
    }

    /// One generated answer, cut at the first stop sequence, its final number judged.
    fn generate(
        &self,
        model: &mut dyn InferenceBackend,
        obs: &mut RequestEvents,
        doc_id: u64,
        prompt: &[u32],
        reference: &str,
    ) -> Result<ItemOutput> {
        let g = model
            .generate(
                &GenerateRequest {
                    prompts: vec![prompt.to_vec()],
                    max_new_tokens: self.max_new_tokens,
                    ignore_eos: false,
                    stop: self.stop.clone(),
                },
                obs,
            )
            .with_context(|| format!("document {doc_id}"))?;
        let text = match model.tokenizer() {
            Some(t) => tokenizer::decode(t, &g.generated[0])?,
            None => String::new(),
        };
        let text = self
            .stop
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
            .map_or(text.as_str(), |i| &text[..i]);
        let answer = gsm8k::extract(text);
        Ok(ItemOutput {
            doc_id,
            loglik: Vec::new(),
            choice: None,
            gold: None,
            correct: answer.as_deref() == Some(reference),
            answer,
            reference: Some(reference.to_string()),
            tokens: g.prompt_tokens,
            shared: 0,
            generated: g.generated_tokens(),
            start_ns: g.start_ns,
            end_ns: g.end_ns,
        })
    }
}
