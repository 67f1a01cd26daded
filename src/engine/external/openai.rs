//! A streaming client for OpenAI-compatible servers: one request, read as server-sent events,
//! with the time of every content chunk, the server's token usage when it sends one, and a clear
//! error for every way a stream can go wrong (HTTP errors, rate limits, malformed events, a
//! server that dies or falls silent). Timeouts bound every wait.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

pub use crate::engine::spec::Endpoint;

/// Token counts the server reported (`usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// One content chunk: when it arrived and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub t_ns: u64,
    pub text: String,
}

/// One streamed request.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOutcome {
    pub start_ns: u64,
    pub chunks: Vec<Chunk>,
    pub end_ns: u64,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    /// llama.cpp's `timings` object, when sent.
    pub timings: Option<serde_json::Value>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("cannot reach {url}: {msg}")]
    Connect { url: String, msg: String },
    #[error("HTTP 429 Too Many Requests from {url}{}: the server is rate-limiting; lower the concurrency or raise its limits (body: {body})", retry_after.as_deref().map(|r| format!(" (retry-after {r})")).unwrap_or_default())]
    RateLimited {
        url: String,
        retry_after: Option<String>,
        body: String,
    },
    #[error("HTTP {status} from {url}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the server sent an error event: {0}")]
    Server(String),
    #[error("malformed event at line {line} of the stream ({err}): {text}")]
    Malformed {
        line: usize,
        err: String,
        text: String,
    },
    #[error(
        "the stream ended without [DONE] or a finish reason after {chunks} chunks: the server \
         closed the connection (did it crash?)"
    )]
    Truncated { chunks: usize },
    #[error("the stream broke after {chunks} chunks: {msg}")]
    Broken { chunks: usize, msg: String },
    #[error("no answer within {secs} s ({what})")]
    Timeout { secs: f64, what: String },
    #[error(
        "{what} from {url} is larger than {} MiB, the most joulebench reads (it stopped reading \
         there rather than hold it in memory): is this an OpenAI-compatible stream?",
        limit >> 20
    )]
    TooLarge {
        url: String,
        what: String,
        limit: usize,
    },
}

/// The longest line of a server's event stream joulebench reads (a token's chunk is a few
/// hundred bytes; a final event with usage and timings a few kilobytes).
pub const MAX_SSE_LINE: usize = 4 << 20;
/// The most one event (its `data:` lines together) may hold.
pub const MAX_SSE_EVENT: usize = 16 << 20;
/// The most a non-streamed answer (a completion, `/v1/models`, `/metrics`) may hold.
pub const MAX_BODY: usize = 16 << 20;

/// Why a bounded read stopped.
#[derive(Debug)]
pub enum CappedError {
    /// Longer than the limit: reading stopped there.
    TooLarge,
    Io(std::io::Error),
}

/// Reads one line (through `\n`, or to the end) into `buf`, never more than `max` bytes:
/// `Ok(0)` at the end of input.
pub fn read_line_capped(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<usize, CappedError> {
    buf.clear();
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CappedError::Io(e)),
        };
        if avail.is_empty() {
            return Ok(buf.len());
        }
        let (take, end) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > max {
            return Err(CappedError::TooLarge);
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if end {
            return Ok(buf.len());
        }
    }
}

/// A whole answer of at most `max` bytes, as text; `url` names the server in the error.
pub fn read_body_capped(r: impl Read, max: usize, url: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    r.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("reading the answer of {url}: {e}"))?;
    if bytes.len() > max {
        return Err(StreamError::TooLarge {
            url: url.to_string(),
            what: "an answer".into(),
            limit: max,
        }
        .into());
    }
    String::from_utf8(bytes).map_err(|e| anyhow::anyhow!("the answer of {url} is not UTF-8: {e}"))
}

/// How to send one request.
#[derive(Debug, Clone)]
pub struct StreamRequest {
    /// The endpoint URL (base URL + `/chat/completions` or `/completions`).
    pub url: String,
    pub api_key: Option<String>,
    pub body: serde_json::Value,
    /// Whole-request limit; also the longest silence tolerated between two reads.
    pub timeout: Duration,
}

/// The endpoint URL under `base_url`.
pub fn endpoint_url(base_url: &str, e: Endpoint) -> String {
    let base = base_url.trim_end_matches('/');
    match e {
        Endpoint::Chat => format!("{base}/chat/completions"),
        Endpoint::Completions => format!("{base}/completions"),
    }
}

/// The request body: greedy, streamed, usage asked for, `max_tokens` new tokens.
pub fn request_body(
    e: Endpoint,
    model: &str,
    prompt: &str,
    max_tokens: usize,
    ignore_eos: bool,
) -> serde_json::Value {
    let mut b = serde_json::json!({
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    match e {
        Endpoint::Chat => b["messages"] = serde_json::json!([{"role": "user", "content": prompt}]),
        Endpoint::Completions => b["prompt"] = prompt.into(),
    }
    if ignore_eos {
        // vLLM and llama.cpp's server read it; others ignore unknown fields.
        b["ignore_eos"] = true.into();
    }
    b
}

/// An HTTP agent with the given limits.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .timeout_per_read(Some(timeout))
        .build()
        .into()
}

fn body_text(r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.take(2000).read_to_string(&mut s);
    s.trim().to_string()
}

fn classify(url: &str, e: ureq::Error, timeout: Duration, what: &str) -> StreamError {
    match e {
        ureq::Error::Timeout(t) => StreamError::Timeout {
            secs: timeout.as_secs_f64(),
            what: format!("{what}: {t}"),
        },
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => StreamError::Timeout {
            secs: timeout.as_secs_f64(),
            what: what.to_string(),
        },
        other => StreamError::Connect {
            url: url.to_string(),
            msg: other.to_string(),
        },
    }
}

/// What one event's JSON says.
#[derive(Debug, Default, PartialEq)]
pub struct Event {
    pub content: Option<String>,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    pub timings: Option<serde_json::Value>,
}

/// Parses one `data:` payload (chat or completions chunk).
pub fn parse_event(json: &str) -> Result<Event, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    if let Some(err) = v.get("error") {
        return Err(format!(
            "error event: {}",
            err.get("message")
                .and_then(|m| m.as_str())
                .map_or_else(|| err.to_string(), str::to_string)
        ));
    }
    let mut ev = Event::default();
    if let Some(c) = v["choices"].as_array().and_then(|a| a.first()) {
        let text = c["delta"]["content"]
            .as_str()
            .or_else(|| c["text"].as_str());
        ev.content = text.filter(|t| !t.is_empty()).map(str::to_string);
        ev.finish_reason = c["finish_reason"].as_str().map(str::to_string);
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let n = |k: &str| u[k].as_u64().map(|x| x as usize);
        if let (Some(p), Some(c)) = (n("prompt_tokens"), n("completion_tokens")) {
            ev.usage = Some(Usage {
                prompt_tokens: p,
                completion_tokens: c,
            });
        }
    }
    ev.timings = v.get("timings").filter(|t| t.is_object()).cloned();
    Ok(ev)
}

/// Reads an SSE body: calls `on_chunk(t_ns)` at each content chunk (the first one is the first
/// token) and returns what the stream said.
pub fn read_stream(
    body: impl Read,
    start_ns: u64,
    now: &dyn Fn() -> u64,
    on_chunk: &mut dyn FnMut(usize, u64),
) -> Result<StreamOutcome, StreamError> {
    let mut out = StreamOutcome {
        start_ns,
        chunks: Vec::new(),
        end_ns: start_ns,
        usage: None,
        finish_reason: None,
        timings: None,
    };
    let mut reader = BufReader::new(body);
    let mut data = String::new();
    let mut line_no = 0usize;
    let mut data_line = 0usize;
    let mut done = false;
    let mut bytes = Vec::new();
    let too_large = |what: &str, limit| StreamError::TooLarge {
        url: String::new(),
        what: what.to_string(),
        limit,
    };
    loop {
        let n = match read_line_capped(&mut reader, &mut bytes, MAX_SSE_LINE) {
            Ok(n) => n,
            Err(CappedError::TooLarge) => {
                return Err(too_large(
                    &format!("line {} of the stream", line_no + 1),
                    MAX_SSE_LINE,
                ));
            }
            Err(CappedError::Io(e))
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.to_string().to_ascii_lowercase().contains("timeout") =>
            {
                return Err(StreamError::Timeout {
                    secs: 0.0,
                    what: format!("the stream fell silent after {} chunks", out.chunks.len()),
                });
            }
            Err(CappedError::Io(e)) => {
                return Err(StreamError::Broken {
                    chunks: out.chunks.len(),
                    msg: e.to_string(),
                });
            }
        };
        let t = now();
        let eof = n == 0;
        line_no += usize::from(!eof);
        let line = std::str::from_utf8(&bytes).map_err(|e| StreamError::Malformed {
            line: line_no,
            err: format!("not UTF-8 ({e})"),
            text: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        })?;
        let l = line.trim_end_matches(['\r', '\n']);
        if !eof && !l.is_empty() {
            if let Some(d) = l.strip_prefix("data:") {
                if data.is_empty() {
                    data_line = line_no;
                } else {
                    data.push('\n');
                }
                if data.len() + d.len() > MAX_SSE_EVENT {
                    return Err(too_large(
                        &format!("the event starting at line {data_line} of the stream"),
                        MAX_SSE_EVENT,
                    ));
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if l.starts_with('{') && data.is_empty() {
                // A server answering with plain JSON (no SSE) is a malformed stream.
                return Err(StreamError::Malformed {
                    line: line_no,
                    err: "a JSON line outside an SSE data: field".into(),
                    text: l.chars().take(200).collect(),
                });
            }
            // event:, id:, retry: and comments carry nothing we need.
            continue;
        }
        // A blank line (or the end) dispatches the event.
        if !data.is_empty() {
            let payload = std::mem::take(&mut data);
            if payload.trim() == "[DONE]" {
                done = true;
                out.end_ns = t;
                break;
            }
            let ev = parse_event(&payload).map_err(|err| {
                if err.starts_with("error event: ") {
                    StreamError::Server(err.trim_start_matches("error event: ").to_string())
                } else {
                    StreamError::Malformed {
                        line: data_line,
                        err,
                        text: payload.chars().take(200).collect(),
                    }
                }
            })?;
            if let Some(text) = ev.content {
                on_chunk(out.chunks.len(), t);
                out.chunks.push(Chunk { t_ns: t, text });
            }
            if ev.usage.is_some() {
                out.usage = ev.usage;
            }
            if ev.timings.is_some() {
                out.timings = ev.timings;
            }
            if ev.finish_reason.is_some() {
                out.finish_reason = ev.finish_reason;
            }
            out.end_ns = t;
        }
        if eof {
            break;
        }
    }
    if !done && out.finish_reason.is_none() {
        return Err(StreamError::Truncated {
            chunks: out.chunks.len(),
        });
    }
    Ok(out)
}

/// Sends one streamed request. `on_start` runs just before sending, `on_chunk` at every
/// content chunk; both get CLOCK_MONOTONIC ns.
pub fn stream(
    agent: &ureq::Agent,
    req: &StreamRequest,
    now: &dyn Fn() -> u64,
    on_start: &mut dyn FnMut(u64),
    on_chunk: &mut dyn FnMut(usize, u64),
) -> Result<StreamOutcome, StreamError> {
    let body = serde_json::to_string(&req.body).map_err(|e| StreamError::Connect {
        url: req.url.clone(),
        msg: e.to_string(),
    })?;
    let mut r = agent
        .post(&req.url)
        .header("Content-Type", "application/json")
        .header("Accept", "text/event-stream");
    if let Some(k) = &req.api_key {
        r = r.header("Authorization", &format!("Bearer {k}"));
    }
    let start = now();
    on_start(start);
    let resp = r
        .send(body.as_bytes())
        .map_err(|e| classify(&req.url, e, req.timeout, "waiting for the response headers"))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let reader = resp.into_body().into_reader();
    if status == 429 {
        return Err(StreamError::RateLimited {
            url: req.url.clone(),
            retry_after,
            body: body_text(reader),
        });
    }
    if status >= 400 {
        return Err(StreamError::Http {
            url: req.url.clone(),
            status,
            body: body_text(reader),
        });
    }
    read_stream(reader, start, now, on_chunk).map_err(|e| match e {
        StreamError::Timeout { what, .. } => StreamError::Timeout {
            secs: req.timeout.as_secs_f64(),
            what,
        },
        StreamError::Broken { chunks, msg }
            if msg.contains("timed out") || msg.contains("Timeout") =>
        {
            StreamError::Timeout {
                secs: req.timeout.as_secs_f64(),
                what: format!("the stream fell silent after {chunks} chunks"),
            }
        }
        StreamError::TooLarge { what, limit, .. } => StreamError::TooLarge {
            url: req.url.clone(),
            what,
            limit,
        },
        other => other,
    })
}

/// GETs `url` until it answers 2xx or `give_up()` says stop; returns the last failure.
pub fn ready(agent: &ureq::Agent, url: &str) -> Result<(), String> {
    match agent.get(url).call() {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str) -> Result<StreamOutcome, StreamError> {
        let t = std::cell::Cell::new(0u64);
        let now = || {
            t.set(t.get() + 1);
            t.get()
        };
        read_stream(s.as_bytes(), 0, &now, &mut |_, _| {})
    }

    /// An endless source of one byte, counting what was read.
    struct Endless<'a> {
        prefix: &'a [u8],
        byte: u8,
        read: usize,
    }

    impl Read for Endless<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1 << 16);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                let at = self.read + i;
                *b = self.prefix.get(at).copied().unwrap_or(self.byte);
            }
            self.read += n;
            Ok(n)
        }
    }

    /// A line, an event or an answer without end is refused once it passes its limit, having
    /// read little more than the limit (never the whole thing).
    #[test]
    fn endless_lines_events_and_bodies_stop_at_their_limits() {
        let now = || 0;
        let mut r = Endless {
            prefix: b"data: ",
            byte: b'x',
            read: 0,
        };
        let e = read_stream(&mut r, 0, &now, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(e, StreamError::TooLarge { limit, .. } if limit == MAX_SSE_LINE),
            "{e}"
        );
        assert!(r.read <= MAX_SSE_LINE + (1 << 17), "{}", r.read);
        // Many short data: lines of one event.
        let line = b"data: 0123456789abcdef0123456789abcdef\n";
        struct Lines<'a>(&'a [u8], usize);
        impl Read for Lines<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len());
                let start = self.1 % self.0.len();
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = self.0[(start + i) % self.0.len()];
                }
                self.1 += n;
                Ok(n)
            }
        }
        let mut r = Lines(line, 0);
        let e = read_stream(&mut r, 0, &now, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(e, StreamError::TooLarge { limit, .. } if limit == MAX_SSE_EVENT),
            "{e}"
        );
        assert!(r.1 <= MAX_SSE_EVENT * 2, "{}", r.1);
        let mut r = Endless {
            prefix: b"",
            byte: b'{',
            read: 0,
        };
        let e = read_body_capped(&mut r, 1 << 20, "http://h/x").unwrap_err();
        assert!(
            format!("{e}").contains("larger than 1 MiB") && format!("{e}").contains("http://h/x")
        );
        assert!(r.read <= (1 << 20) + (1 << 16) + 1, "{}", r.read);
        assert_eq!(read_body_capped(&b"{}"[..], 2, "u").unwrap(), "{}");
    }

    #[test]
    fn reads_chat_chunks_usage_and_done() {
        let s = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                 data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                 : keep-alive comment\n\n\
                 data: {\"choices\":[{\"delta\":{\"content\":\"lo there\"},\"finish_reason\":null}]}\n\n\
                 data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n\
                 data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3},\"timings\":{\"predicted_n\":3}}\n\n\
                 data: [DONE]\n\n";
        let o = run(s).unwrap();
        assert_eq!(o.chunks.len(), 2);
        assert_eq!(o.chunks[1].text, "lo there");
        assert_eq!(
            o.usage,
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 3
            })
        );
        assert_eq!(o.finish_reason.as_deref(), Some("length"));
        assert!(o.timings.is_some());
    }

    #[test]
    fn completions_text_and_crlf_and_multiline_data() {
        let s = "data: {\"choices\":[{\"text\":\"a\"}]}\r\n\r\ndata: {\"choices\":\r\ndata: [{\"text\":\"b\",\"finish_reason\":\"stop\"}]}\r\n\r\n";
        let o = run(s).unwrap();
        assert_eq!(
            o.chunks.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(o.usage.is_none());
    }

    #[test]
    fn every_broken_stream_is_a_clear_error() {
        let e = run("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n").unwrap_err();
        assert!(matches!(e, StreamError::Truncated { chunks: 1 }), "{e}");
        let e = run("data: {\"choices\": [oops\n\n").unwrap_err();
        assert!(matches!(e, StreamError::Malformed { line: 1, .. }), "{e}");
        let e = run("data: {\"error\":{\"message\":\"out of memory\"}}\n\n").unwrap_err();
        assert!(e.to_string().contains("out of memory"), "{e}");
        let e = run("{\"choices\":[]}\n").unwrap_err();
        assert!(matches!(e, StreamError::Malformed { .. }), "{e}");
    }

    #[test]
    fn bodies_ask_for_usage_and_greedy_decoding() {
        let b = request_body(Endpoint::Chat, "m", "hi", 8, true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["messages"][0]["content"], "hi");
        assert_eq!(b["temperature"], 0.0);
        let b = request_body(Endpoint::Completions, "m", "hi", 8, false);
        assert_eq!(b["prompt"], "hi");
        assert!(b.get("ignore_eos").is_none());
        assert_eq!(
            endpoint_url("http://h:1/v1/", Endpoint::Completions),
            "http://h:1/v1/completions"
        );
    }
}
