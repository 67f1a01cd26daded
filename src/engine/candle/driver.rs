//! The in-process engine as a [`Driver`]: the model loads when the driver opens (outside any
//! measured window), inputs are built once, and every pass is one generation (or embedding) of
//! the whole batch.

use crate::engine::candle::load::{LoadOptions, load};
use crate::engine::driver::{Driver, Job, Output, Pass, RequestEvents, RunEvents};
use crate::engine::spec::CandleSpec;
use crate::engine::text::prompt;
use crate::engine::{EmbedRequest, GenerateRequest, InferenceBackend, ModelInfo};
use crate::meter::select::EstimateScope;
use anyhow::{Context, Result};

/// A loaded model and the inputs of its cell.
pub struct CandleDriver {
    model: Box<dyn InferenceBackend>,
    inputs: Vec<Vec<u32>>,
    job: Job,
}

impl CandleDriver {
    /// Loads the model (progress lines go to `log`) and builds the cell's inputs.
    pub fn open(spec: &CandleSpec, job: &Job, log: &mut dyn FnMut(&str)) -> Result<CandleDriver> {
        let opts = LoadOptions {
            device: job.device.clone(),
            seed: spec.seed.unwrap_or(42),
            ..Default::default()
        };
        let model = load(&spec.weights.spec(), &opts, log)?;
        let inputs = inputs(model.as_ref(), job)?;
        Ok(CandleDriver {
            model,
            inputs,
            job: job.clone(),
        })
    }
}

/// Inputs of one request, built deterministically; every sequence of the batch is the same.
fn inputs(model: &dyn InferenceBackend, job: &Job) -> Result<Vec<Vec<u32>>> {
    let one = match (job.embed, model.tokenizer()) {
        (true, Some(t)) => prompt::exact_encoder_tokens(t, job.prompt_tokens)?,
        (false, Some(t)) => {
            let chat = if job.chat_template {
                let tpl = model.chat_template().unwrap_or("");
                Some(prompt::ChatFormat::detect(tpl).with_context(|| {
                    format!(
                        "workload {}: the model has no chat template joulebench can apply",
                        job.workload
                    )
                })?)
            } else {
                None
            };
            prompt::prompt_tokens(t, job.prompt_tokens, chat, model.info().bos_token_id)?
        }
        (_, None) => prompt::synthetic_tokens(model.info().vocab_size, job.prompt_tokens, 7),
    };
    Ok(vec![one; job.batch * job.concurrency])
}

impl Driver for CandleDriver {
    fn info(&self) -> &ModelInfo {
        self.model.info()
    }

    fn estimate_scope(&self) -> EstimateScope {
        EstimateScope::Process
    }

    fn in_process(&self) -> bool {
        true
    }

    fn shape(&self, job: &Job) -> (usize, Option<usize>) {
        if job.concurrency > 1 {
            (job.batch * job.concurrency, Some(job.concurrency))
        } else {
            (job.batch, None)
        }
    }

    fn run(&mut self, events: &dyn RunEvents, first: usize) -> Result<Pass> {
        let mut obs = RequestEvents {
            events,
            index: first,
        };
        let output = if self.job.embed {
            Output::Embed(self.model.embed(
                &EmbedRequest {
                    inputs: self.inputs.clone(),
                },
                &mut obs,
            )?)
        } else {
            Output::Generate(self.model.generate(
                &GenerateRequest {
                    prompts: self.inputs.clone(),
                    max_new_tokens: self.job.new_tokens,
                    ignore_eos: self.job.ignore_eos,
                },
                &mut obs,
            )?)
        };
        let mut warnings = Vec::new();
        if self.job.concurrency > 1 {
            warnings.push(format!(
                "concurrency {} ran as one static batch of {} sequences (the in-process engine \
                 serves concurrent requests by batching them)",
                self.job.concurrency,
                self.job.concurrency * self.job.batch
            ));
        }
        Ok(Pass {
            outputs: vec![output],
            chunks: Vec::new(),
            streams: None,
            token_counts: "engine".into(),
            warnings,
        })
    }
}
