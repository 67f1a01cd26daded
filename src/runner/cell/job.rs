//! The cell's workload as its engine sees it ([`Job`]), load-curve points included.

use super::CellContext;
use crate::config::WorkloadKind;
use crate::engine::driver::Job;
use anyhow::{Context, Result};
use std::path::Path;

impl CellContext {
    /// The cell's workload as its engine sees it. A load-curve point reads the throughput its
    /// saturation cell achieved in this run (an error when that cell has none).
    pub fn job(&self) -> Result<Job> {
        let (w, p) = (&self.cell.workload, &self.cell.profile);
        let mut job = Job {
            cell_id: self.cell.id.clone(),
            workload: w.name.clone(),
            prompt_tokens: w.prompt_tokens,
            new_tokens: w.new_tokens,
            batch: w.batch,
            concurrency: w.concurrency,
            requests: w.request_count(),
            arrivals: w.arrivals(),
            lengths: w.drawn_lengths(),
            dataset: w
                .dataset
                .as_ref()
                .map(|d| crate::engine::text::dataset::DatasetJob {
                    name: d.clone(),
                    path: crate::store::registry::dataset(d).is_none().then(|| {
                        self.meta
                            .config_path
                            .parent()
                            .unwrap_or(Path::new("."))
                            .join(d)
                    }),
                    seed: w.seed.unwrap_or(0),
                }),
            ignore_eos: w.ignore_eos,
            chat_template: w.chat_template,
            embed: w.kind == WorkloadKind::Embed,
            eval: self.eval_job()?,
            threads: p.thread_count(),
            device: p.device.clone(),
            env: p.env.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
            logs_dir: self.run_dir.join("logs"),
            suite_dir: self
                .meta
                .config_path
                .parent()
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            active_idle_s: None,
            load: None,
        };
        if let Some(point) = &w.load_point {
            let curve = w
                .name
                .rsplit_once('-')
                .map_or(w.name.clone(), |(a, _)| a.to_string());
            let curve = curve.strip_suffix("-active").unwrap_or(&curve).to_string();
            let mut fig = crate::engine::load_curve::LoadFigures {
                curve,
                point: point.clone(),
                saturation_requests_per_s: None,
                offered_requests_per_s: None,
            };
            match point {
                crate::engine::load_curve::LoadPoint::Saturation => {}
                crate::engine::load_curve::LoadPoint::ActiveIdle { seconds } => {
                    job.active_idle_s = Some(*seconds);
                    job.requests = 1;
                }
                crate::engine::load_curve::LoadPoint::Fraction {
                    fraction,
                    saturation,
                } => {
                    let sat = self.saturation_rate(saturation)?;
                    let rate = sat * fraction;
                    let requests = match (w.requests, w.duration_s) {
                        (Some(n), _) => n,
                        (None, Some(d)) => ((rate * d).round() as usize)
                            .clamp(1, crate::config::limits::MAX_REQUESTS),
                        (None, None) => 1,
                    };
                    let process = w
                        .arrival
                        .unwrap_or(crate::engine::arrival::Process::Poisson);
                    job.requests = requests;
                    job.concurrency = 1;
                    job.arrivals = Some(crate::engine::arrival::Arrivals {
                        request_rate_per_s: rate,
                        process,
                        burstiness: match process {
                            crate::engine::arrival::Process::Poisson => 1.0,
                            crate::engine::arrival::Process::Gamma => w.burstiness.unwrap_or(1.0),
                        },
                        max_concurrency: w.max_concurrency.unwrap_or(1).min(requests).max(1),
                        seed: w.seed.unwrap_or(0),
                    });
                    fig.saturation_requests_per_s = Some(sat);
                    fig.offered_requests_per_s = Some(rate);
                }
            }
            job.load = Some(fig);
        }
        Ok(job)
    }

    /// An evaluation cell's task, items (drawn by the parent into the plan) and data folder.
    fn eval_job(&self) -> Result<Option<crate::engine::driver::EvalJob>> {
        let w = &self.cell.workload;
        let Some(task) = w.task_ref() else {
            return Ok(None);
        };
        let docs = w
            .eval_docs
            .clone()
            .with_context(|| format!("the plan has no items for workload {}", w.name))?;
        let data = task.data_dir(false, &mut |_| {})?;
        Ok(Some(crate::engine::driver::EvalJob {
            task,
            metric: w.mc_metric(),
            docs,
            data,
        }))
    }

    /// Requests per second the saturation cell `workload` of the same model and profile
    /// completed in this run (median over its repetitions).
    fn saturation_rate(&self, workload: &str) -> Result<f64> {
        let path = self.run_dir.join(crate::run_dir::RECORDS);
        let (recs, _) = crate::record::read_all(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut rates: Vec<f64> = recs
            .iter()
            .filter(|r| {
                r.status == crate::record::Status::Ok
                    && r.model == self.cell.model.name()
                    && r.profile == self.cell.profile.name
                    && r.workload == workload
            })
            .filter_map(|r| {
                let w = r.whole.as_ref()?;
                (w.duration_s > 0.0).then(|| w.requests as f64 / w.duration_s)
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        match rates.get(rates.len() / 2) {
            Some(&r) if r > 0.0 => Ok(r),
            _ => anyhow::bail!(
                "load curve: the saturation cell {workload} has no completed repetition in {} \
                 (it runs first; its failure is recorded there)",
                path.display()
            ),
        }
    }
}
