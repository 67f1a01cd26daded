//! The in-process engine as a [`Driver`]: the model loads when the driver opens (outside any
//! measured window), inputs are built once, and every pass is one generation (or embedding) of
//! the whole batch.

use crate::engine::driver::{
    Driver, EVAL_WARMUP_ITEMS, Job, Output, Pass, RequestEvents, RunEvents,
};
use crate::engine::models::evaluate::EvalItems;
use crate::engine::models::{LoadOptions, load};
use crate::engine::spec::CandleSpec;
use crate::engine::text::dataset::{DatasetFigures, Shape, shapes_for};
use crate::engine::text::prompt;
use crate::engine::{EmbedRequest, GenerateRequest, InferenceBackend, ModelInfo};
use crate::meter::select::EstimateScope;
use anyhow::{Context, Result};

/// A loaded model and the inputs of its cell.
pub struct CandleDriver {
    model: Box<dyn InferenceBackend>,
    inputs: Vec<Vec<u32>>,
    /// Requests of different lengths (a dataset or `lengths`): prompt ids and new tokens of
    /// each, run one at a time.
    varied: Option<Vec<(Vec<u32>, usize)>>,
    dataset: Option<DatasetFigures>,
    /// An evaluation cell's items, tokenized.
    eval: Option<EvalItems>,
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
        if let Some(e) = &job.eval {
            let eval = EvalItems::prepare(model.as_ref(), e)?;
            log(&format!(
                "{} / {}: {} items, {}",
                e.task.task,
                e.task.variant,
                eval.len(),
                eval.metric_name()
            ));
            return Ok(CandleDriver {
                model,
                inputs: Vec::new(),
                varied: None,
                dataset: None,
                eval: Some(eval),
                job: job.clone(),
            });
        }
        let m = model.as_ref();
        let chat = chat_format(m, job)?;
        // A dataset's prompts go through the model's chat template whenever it has one.
        let data_chat = chat.or_else(|| m.chat_template().and_then(prompt::ChatFormat::detect));
        let bos = m.info().bos_token_id;
        let (shapes, dataset) = shapes_for(
            job.varied(),
            m.tokenizer(),
            data_chat,
            bos,
            m.info().context_length,
            log,
        )?;
        let varied = match shapes {
            Some(v) => Some(
                v.into_iter()
                    .map(|s| {
                        let out = s.output();
                        let ids = match (s, m.tokenizer()) {
                            (Shape::Text(t), _) => t.ids,
                            (Shape::Tokens { prompt, .. }, Some(t)) => {
                                prompt::prompt_tokens(t, prompt, chat, bos)?
                            }
                            (Shape::Tokens { prompt, .. }, None) => {
                                prompt::synthetic_tokens(m.info().vocab_size, prompt, 7)
                            }
                        };
                        Ok((ids, out))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let inputs = if varied.is_some() {
            Vec::new()
        } else {
            inputs(m, job, chat)?
        };
        Ok(CandleDriver {
            model,
            inputs,
            varied,
            dataset,
            eval: None,
            job: job.clone(),
        })
    }
}

/// The chat template a workload with `chat_template = true` asks for.
fn chat_format(model: &dyn InferenceBackend, job: &Job) -> Result<Option<prompt::ChatFormat>> {
    if !job.chat_template || job.embed || model.tokenizer().is_none() {
        return Ok(None);
    }
    let tpl = model.chat_template().unwrap_or("");
    Ok(Some(prompt::ChatFormat::detect(tpl).with_context(
        || {
            format!(
                "workload {}: the model has no chat template joulebench can apply",
                job.workload
            )
        },
    )?))
}

/// Inputs of one request, built deterministically; every sequence of the batch is the same.
fn inputs(
    model: &dyn InferenceBackend,
    job: &Job,
    chat: Option<prompt::ChatFormat>,
) -> Result<Vec<Vec<u32>>> {
    let one = match (job.embed, model.tokenizer()) {
        (true, Some(t)) => prompt::exact_encoder_tokens(t, job.prompt_tokens)?,
        (false, Some(t)) => {
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

    fn repeat_in_window(&self) -> bool {
        self.eval.is_none()
    }

    fn eval_metric(&self) -> Option<String> {
        self.eval.as_ref().map(|e| e.metric_name().to_string())
    }

    fn warmup(&mut self, events: &dyn RunEvents) -> Result<Pass> {
        match &self.eval {
            Some(e) => {
                let n = EVAL_WARMUP_ITEMS.min(e.len());
                let outputs = e.run(self.model.as_mut(), events, 0, 0..n)?;
                Ok(item_pass(outputs))
            }
            None => self.run(events, 0),
        }
    }

    fn shape(&self, job: &Job) -> (usize, Option<usize>) {
        if self.varied.is_some() || self.eval.is_some() {
            (1, None)
        } else if job.concurrency > 1 {
            (job.batch * job.concurrency, Some(job.concurrency))
        } else {
            (job.batch, None)
        }
    }

    fn dataset(&self) -> Option<&DatasetFigures> {
        self.dataset.as_ref()
    }

    fn run(&mut self, events: &dyn RunEvents, first: usize) -> Result<Pass> {
        if let Some(e) = &self.eval {
            let outputs = e.run(self.model.as_mut(), events, first, 0..e.len())?;
            return Ok(item_pass(outputs));
        }
        if let Some(reqs) = &self.varied {
            let mut outputs = Vec::with_capacity(reqs.len());
            for (i, (ids, new)) in reqs.iter().enumerate() {
                let mut obs = RequestEvents {
                    events,
                    index: first + i,
                };
                outputs.push(Output::Generate(self.model.generate(
                    &GenerateRequest {
                        prompts: vec![ids.clone()],
                        max_new_tokens: *new,
                        ignore_eos: self.job.ignore_eos,
                        stop: Vec::new(),
                    },
                    &mut obs,
                )?));
            }
            let mut warnings = Vec::new();
            if self.job.concurrency > 1 {
                warnings.push(format!(
                    "requests of different lengths ran one at a time (concurrency {} ignored: \
                     the in-process engine batches only equal lengths)",
                    self.job.concurrency
                ));
            }
            return Ok(Pass {
                outputs,
                chunks: Vec::new(),
                streams: None,
                token_counts: "engine".into(),
                warnings,
            });
        }
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
                    stop: Vec::new(),
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

/// A pass of evaluation items.
fn item_pass(outputs: Vec<crate::engine::driver::ItemOutput>) -> Pass {
    Pass {
        outputs: outputs.into_iter().map(Output::Item).collect(),
        chunks: Vec::new(),
        streams: None,
        token_counts: "engine".into(),
        warnings: Vec::new(),
    }
}
