//! Requests over parallel streams: each stream takes the next request until none is left; every
//! start, first content chunk and end is reported as it happens, and so is the steady state
//! (every stream producing tokens, until the first one runs out of work). Chunks become token
//! arrival times for the engine-neutral figures.

use crate::engine::GenerateOutput;
use crate::engine::driver::{Boundary, RunEvents};
use crate::engine::external::openai::{self, StreamOutcome, StreamRequest};
use anyhow::{Result, bail};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokenizers::Tokenizer;

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
pub fn token_count_source(outs: &[StreamOutcome]) -> (String, Option<String>) {
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

/// One pass of requests over parallel streams.
pub struct StreamPass<'a> {
    pub agent: &'a ureq::Agent,
    /// One request per index of the pass.
    pub reqs: Vec<StreamRequest>,
    pub concurrency: usize,
    /// Open loop: when each request is due, ns after the pass starts (None: closed loop, every
    /// stream sending its next request when the last one ends).
    pub schedule: Option<Vec<u64>>,
    /// The number of the pass's first request in the events.
    pub first: usize,
}

/// How late a request may leave and still count as sent on schedule.
const LATE_NS: u64 = 5_000_000;

/// What a pass's requests gave back.
pub struct PassOutcome {
    /// One per request, in request order.
    pub outcomes: Vec<StreamOutcome>,
    /// Open loop: requests that left more than 5 ms after they were due (every stream busy).
    pub late: usize,
}

/// Runs the pass's requests over its streams, reporting every start, first chunk and end (request
/// `first + i`), and in a closed loop the steady state (all streams running until the first one
/// is done). An open loop sends each request when it is due, or when a stream frees up.
pub fn run_pass(p: &StreamPass, events: &dyn RunEvents) -> Result<PassOutcome> {
    let late = AtomicUsize::new(0);
    let open = p.schedule.is_some();
    let t0 = crate::clock::monotonic_ns();
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
                        if !open && !steady_end.swap(true, Ordering::SeqCst) {
                            events.steady(false);
                        }
                        return;
                    }
                    if let Some(due) = p.schedule.as_ref().map(|s| t0 + s[i]) {
                        let now = crate::clock::monotonic_ns();
                        if now < due {
                            std::thread::sleep(std::time::Duration::from_nanos(due - now));
                        } else if now - due > LATE_NS {
                            late.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    let mut on_start = |_t: u64| {
                        events.request(p.first + i, Boundary::Start);
                    };
                    let mut on_chunk = |c: usize, _t: u64| {
                        if c == 0 {
                            events.request(p.first + i, Boundary::FirstToken);
                            if !open && !seen_first {
                                seen_first = true;
                                if running.fetch_add(1, Ordering::SeqCst) + 1 == p.concurrency {
                                    events.steady(true);
                                }
                            }
                        }
                    };
                    match openai::stream(p.agent, &p.reqs[i], &now, &mut on_start, &mut on_chunk) {
                        Ok(o) => {
                            events.request(p.first + i, Boundary::End);
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
    Ok(PassOutcome {
        outcomes: results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .flatten()
            .collect(),
        late: late.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::external::openai;

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
}
