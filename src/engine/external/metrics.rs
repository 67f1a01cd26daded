//! Server telemetry: the Prometheus text a serving engine exposes at `/metrics` (llama.cpp's
//! `llama-server --metrics`, vLLM, TGI), scraped while a pass runs, so a record says how many
//! requests the server was actually running (the achieved batch), how many waited, and how full
//! its KV cache was.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Gauges per engine, first match wins: requests running (in the batch), waiting, KV-cache use.
const RUNNING: &[&str] = &[
    "llamacpp:requests_processing",
    "vllm:num_requests_running",
    "tgi_batch_current_size",
    "sglang:num_running_reqs",
];
const WAITING: &[&str] = &[
    "llamacpp:requests_deferred",
    "vllm:num_requests_waiting",
    "tgi_queue_size",
    "sglang:num_queue_reqs",
];
const KV: &[&str] = &[
    "llamacpp:kv_cache_usage_ratio",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
];

/// The largest /metrics body read (bytes); vLLM's is tens of kB.
const MAX_BODY: usize = 4 << 20;

pub use crate::engine::driver::Sample;

/// The value of gauge `name` summed over its label sets (vLLM labels per model), if present.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || !line.starts_with(name) {
            continue;
        }
        let rest = &line[name.len()..];
        let rest = match rest.chars().next() {
            Some('{') => match rest.find('}') {
                Some(i) => &rest[i + 1..],
                None => continue,
            },
            Some(' ') | Some('\t') => rest,
            _ => continue,
        };
        let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        if v.is_finite() {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

fn first(text: &str, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|n| gauge(text, n))
}

/// The gauges of one /metrics body (None: none of the known ones is there).
pub fn parse(text: &str, t_ns: u64) -> Option<Sample> {
    let s = Sample {
        t_ns,
        running: first(text, RUNNING),
        waiting: first(text, WAITING),
        kv_cache: first(text, KV).map(|v| if v > 1.0 { v / 100.0 } else { v }),
    };
    (s.running.is_some() || s.waiting.is_some() || s.kv_cache.is_some()).then_some(s)
}

/// GETs `url` once: the body's gauges, or why not.
pub fn scrape(agent: &ureq::Agent, url: &str) -> Result<Sample, String> {
    let r = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let body = super::openai::read_body_capped(r.into_body().into_reader(), MAX_BODY, url)
        .map_err(|e| format!("{e:#}"))?;
    parse(&body, crate::clock::monotonic_ns())
        .ok_or_else(|| format!("{url}: no running/waiting/KV-cache gauge joulebench knows"))
}

/// Scrapes `url` every `every` on a thread until the returned guard is finished.
pub struct Scraper {
    stop: std::sync::Arc<AtomicBool>,
    samples: std::sync::Arc<Mutex<Vec<Sample>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Scraper {
    pub fn start(agent: ureq::Agent, url: String, every: Duration) -> Scraper {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let samples = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (s2, v2) = (stop.clone(), samples.clone());
        let handle = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                if let Ok(s) = scrape(&agent, &url) {
                    v2.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                }
                // Sleep in short steps so finishing does not wait a whole interval.
                let until = std::time::Instant::now() + every;
                while !s2.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Scraper {
            stop,
            samples,
            handle: Some(handle),
        }
    }

    /// Stops scraping; the samples taken.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Averages of the samples taken between `from` and `to` (ns), as the record states them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub url: String,
    /// Scrapes inside the window.
    pub samples: usize,
    /// Mean requests the server was running: the achieved batch.
    pub running_avg: Option<f64>,
    pub waiting_avg: Option<f64>,
    pub kv_cache_avg: Option<f64>,
}

/// The window's averages (None: no scrape fell inside it).
pub fn summarize(url: &str, samples: &[Sample], from: u64, to: u64) -> Option<Telemetry> {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_ns >= from && s.t_ns <= to)
        .collect();
    if inside.is_empty() {
        return None;
    }
    let avg = |f: fn(&Sample) -> Option<f64>| {
        let v: Vec<f64> = inside.iter().filter_map(|s| f(s)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Some(Telemetry {
        url: crate::redact::url_without_credentials(url),
        samples: inside.len(),
        running_avg: avg(|s| s.running),
        waiting_avg: avg(|s| s.waiting),
        kv_cache_avg: avg(|s| s.kv_cache),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA: &str = "# HELP llamacpp:requests_processing Number of requests processing.\n\
        # TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 3\n\
        llamacpp:requests_deferred 1\nllamacpp:kv_cache_usage_ratio 0.25\n\
        llamacpp:prompt_tokens_total 1200\n";
    const VLLM: &str = "vllm:num_requests_running{model_name=\"a\"} 2.0\n\
        vllm:num_requests_running{model_name=\"b\"} 5.0\n\
        vllm:num_requests_waiting{model_name=\"a\"} 0.0\nvllm:gpu_cache_usage_perc{model_name=\"a\"} 0.5\n\
        vllm:num_requests_running_total 99\n";

    #[test]
    fn gauges_of_llama_server_vllm_and_tgi_are_read() {
        let s = parse(LLAMA, 1).unwrap();
        assert_eq!(
            (s.running, s.waiting, s.kv_cache),
            (Some(3.0), Some(1.0), Some(0.25))
        );
        let s = parse(VLLM, 1).unwrap();
        // Summed over label sets; a longer metric name sharing the prefix is not the gauge.
        assert_eq!(
            (s.running, s.waiting, s.kv_cache),
            (Some(7.0), Some(0.0), Some(0.5))
        );
        let s = parse("tgi_batch_current_size 4\ntgi_queue_size 2\n", 1).unwrap();
        assert_eq!((s.running, s.waiting), (Some(4.0), Some(2.0)));
        assert!(parse("# nothing\nother_metric 1\n", 1).is_none());
        assert!(parse("llamacpp:requests_processing NaN\n", 1).is_none());
        assert!(parse("llamacpp:requests_processing{broken 1\n", 1).is_none());
    }

    #[test]
    fn averages_cover_only_the_window() {
        let s = |t, r| Sample {
            t_ns: t,
            running: Some(r),
            waiting: None,
            kv_cache: Some(0.1),
        };
        let v = [s(5, 100.0), s(10, 2.0), s(20, 4.0), s(30, 100.0)];
        let t = summarize("http://u:p@h/metrics", &v, 10, 20).unwrap();
        assert_eq!(
            (t.samples, t.running_avg, t.waiting_avg),
            (2, Some(3.0), None)
        );
        assert!(!t.url.contains("u:p"));
        assert!(summarize("x", &v, 40, 50).is_none());
    }
}
