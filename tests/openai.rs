//! The OpenAI-compatible backend against a fake SSE server that misbehaves on request: chunks
//! with several tokens, missing usage, a server dying mid-stream, malformed events, HTTP 500 and
//! 429, silence. Every case ends as figures or as a clear error (a failed record), never a hang.
//! The command backend and the managed-server lifecycle are here too.

use crate::common;

use crate::common::http;
use crate::common::jb;

use joulebench::engine::external::openai::Endpoint;
use joulebench::engine::external::openai::{self, StreamError, StreamRequest};
use joulebench::record::{Record, Status, read_all};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn chunk_json(text: &str) -> String {
    serde_json::json!({"object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    .to_string()
}

/// The request's JSON body (its `model` steers the reply); a GET is `{"model": "GET"}` (or
/// `METRICS` for `/metrics`), and `needs-key` turns into `no-usage` when the key was sent.
fn request_json(req: &http::Request) -> Option<serde_json::Value> {
    let authorized = req
        .header("authorization")
        .is_some_and(|v| v.eq_ignore_ascii_case(&format!("bearer {SECRET}")));
    if req.method == "GET" && req.path.starts_with("/metrics") {
        return Some(serde_json::json!({"model": "METRICS"}));
    }
    if req.method == "GET" {
        return Some(serde_json::json!({"model": "GET"}));
    }
    let mut v: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
    if v["model"] == "needs-key" && authorized {
        v["model"] = "no-usage".into();
    }
    v["_headers"] = req.raw_headers.clone().into();
    Some(v)
}

/// Requests the fake batching server is generating for, and holding in its queue.
static INFLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// One telemetry test at a time (the fake server's gauges are process-wide).
static TELEMETRY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// When each `paced` request reached the fake server.
static ARRIVALS: std::sync::Mutex<Vec<(String, std::time::Instant)>> =
    std::sync::Mutex::new(Vec::new());

const SECRET: &str = "sk-test-7f3a9c-never-written";

const SSE: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

/// Answers according to the request's `model` field.
fn serve(req: http::Request, s: &mut TcpStream) {
    let Some(req) = request_json(&req) else {
        return;
    };
    let n = req["max_tokens"].as_u64().unwrap_or(8) as usize;
    let pause = || std::thread::sleep(Duration::from_millis(3));
    let model = req["model"].as_str().unwrap_or("").to_string();
    let mut w = |t: &str| {
        let _ = s.write_all(t.as_bytes());
        let _ = s.flush();
    };
    match model.as_str() {
        "huge-line" => {
            // One 300 MB line, written as it goes (the client must stop reading, not buffer it).
            w(SSE);
            let block = vec![b'x'; 64 << 10];
            let _ = s.write_all(b"data: ");
            for _ in 0..(300 << 20) / block.len() {
                if s.write_all(&block).is_err() {
                    return;
                }
            }
        }
        "GET" => {
            w("HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"data\":[]}")
        }
        "multi-usage" => {
            // Chunked transfer encoding; two tokens per chunk; usage before [DONE].
            w(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let mut send = |ev: String| {
                let body = format!("data: {ev}\n\n");
                w(&format!("{:x}\r\n{body}\r\n", body.len()));
            };
            send(serde_json::json!({"choices": [{"delta": {"role": "assistant"}}]}).to_string());
            for i in 0..n / 2 {
                pause();
                send(chunk_json(&format!(" w{i}a w{i}b")));
            }
            send(
                serde_json::json!({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": n / 2 * 2}})
                    .to_string(),
            );
            send("[DONE]".into());
            w("0\r\n\r\n");
        }
        "uneven" => {
            // Of every four requests, three get `max_tokens` tokens and the fourth gets 4; the
            // usage says so.
            static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let k = if SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 4 == 3 {
                4
            } else {
                n
            };
            w(SSE);
            for i in 0..k {
                pause();
                w(&format!("data: {}\n\n", chunk_json(&format!(" t{i}"))));
            }
            let usage = serde_json::json!({"choices": [],
                "usage": {"prompt_tokens": 16, "completion_tokens": k}});
            w(&format!("data: {usage}\n\n"));
            w("data: [DONE]\n\n");
        }
        "METRICS" => {
            let body = format!(
                "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing {}\n\
                 llamacpp:requests_deferred {}\nllamacpp:kv_cache_usage_ratio 0.125\n",
                INFLIGHT.load(std::sync::atomic::Ordering::SeqCst),
                WAITING.load(std::sync::atomic::Ordering::SeqCst)
            );
            w(&format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ));
        }
        "batching" | "serial" => {
            // A batching server: every token takes 2 ms per request in the batch. `serial`
            // runs one request at a time and holds the others in its queue.
            use std::sync::atomic::Ordering::SeqCst;
            WAITING.fetch_add(1, SeqCst);
            let _one =
                (model == "serial").then(|| SERIAL.lock().unwrap_or_else(|e| e.into_inner()));
            WAITING.fetch_sub(1, SeqCst);
            INFLIGHT.fetch_add(1, SeqCst);
            w(SSE);
            for i in 0..n {
                let k = INFLIGHT.load(SeqCst).max(1) as u64;
                std::thread::sleep(Duration::from_millis(2 * k));
                w(&format!("data: {}\n\n", chunk_json(&format!(" t{i}"))));
            }
            INFLIGHT.fetch_sub(1, SeqCst);
            let usage = serde_json::json!({"choices": [],
                "usage": {"prompt_tokens": 16, "completion_tokens": n}});
            w(&format!("data: {usage}\n\n"));
            w("data: [DONE]\n\n");
        }
        m if m.starts_with("paced") => {
            // Notes when each request arrived, then streams with usage.
            ARRIVALS
                .lock()
                .unwrap()
                .push((m.to_string(), std::time::Instant::now()));
            w(SSE);
            for i in 0..n {
                pause();
                w(&format!("data: {}\n\n", chunk_json(&format!(" t{i}"))));
            }
            let usage = serde_json::json!({"choices": [],
                "usage": {"prompt_tokens": 16, "completion_tokens": n}});
            w(&format!("data: {usage}\n\n"));
            w("data: [DONE]\n\n");
        }
        "no-usage" => {
            w(SSE);
            for i in 0..n {
                pause();
                w(&format!("data: {}\n\n", chunk_json(&format!(" t{i}"))));
            }
            w("data: [DONE]\n\n");
        }
        "dies" => {
            w(SSE);
            for i in 0..3 {
                w(&format!("data: {}\n\n", chunk_json(&format!(" t{i}"))));
            }
            // Connection closed mid-stream: no finish reason, no [DONE].
        }
        "malformed" => {
            w(SSE);
            w(&format!("data: {}\n\n", chunk_json(" ok")));
            w("data: {\"choices\": [{\"delta\": {\"content\": \"x\"\n\n");
        }
        "http500" => w(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 41\r\nConnection: close\r\n\r\n{\"error\":{\"message\":\"CUDA out of memory\"}}",
        ),
        "http429" => w(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 12\r\nConnection: close\r\n\r\nslow down!!!",
        ),
        "stalls" => {
            w(SSE);
            w(&format!("data: {}\n\n", chunk_json(" one")));
            std::thread::sleep(Duration::from_secs(20));
        }
        "echo500" => {
            // Proxies and some servers echo the request (headers and all) in an error body.
            let body = format!(
                "bad request; you sent:\n{}",
                req["_headers"].as_str().unwrap_or("")
            );
            w(&format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ));
        }
        "echo429" => {
            let body = serde_json::json!({"error": "rate limited", "request": {"headers": req["_headers"]}, "key": SECRET}).to_string();
            w(&format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ));
        }
        "echo-sse" => {
            w(SSE);
            let ev = serde_json::json!({"error": {"message": format!("denied: {}", req["_headers"].as_str().unwrap_or(""))}});
            w(&format!("data: {ev}\n\n"));
        }
        "error-event" => {
            w(SSE);
            w("data: {\"error\": {\"message\": \"model overloaded\"}}\n\n");
        }
        _ => w("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

/// A fake server on a free port, answering until the test ends.
fn fake_server() -> u16 {
    http::Server::start(serve).port
}

fn request(port: u16, model: &str, max_tokens: usize, timeout_s: f64) -> StreamRequest {
    StreamRequest {
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        api_key: None,
        body: openai::request_body(Endpoint::Chat, model, "hello", max_tokens, true),
        timeout: Duration::from_secs_f64(timeout_s),
    }
}

fn call(port: u16, model: &str, timeout_s: f64) -> Result<openai::StreamOutcome, StreamError> {
    let r = request(port, model, 8, timeout_s);
    let agent = openai::agent(r.timeout);
    let now = joulebench::clock::monotonic_ns;
    openai::stream(&agent, &r, &now, &mut |_| {}, &mut |_, _| {})
}

#[test]
fn streams_with_and_without_usage() {
    let port = fake_server();
    let o = call(port, "multi-usage", 10.0).unwrap();
    assert_eq!(o.chunks.len(), 4, "role-only chunks are not tokens");
    assert_eq!(o.usage.unwrap().completion_tokens, 8);
    assert!(o.chunks.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    let o = call(port, "no-usage", 10.0).unwrap();
    assert_eq!((o.chunks.len(), o.usage), (8, None));
}

#[test]
fn every_failure_is_a_clear_error_within_the_timeout() {
    let port = fake_server();
    let t0 = std::time::Instant::now();
    let e = call(port, "dies", 10.0).unwrap_err();
    assert!(matches!(e, StreamError::Truncated { chunks: 3 }), "{e}");
    let e = call(port, "malformed", 10.0).unwrap_err();
    assert!(matches!(e, StreamError::Malformed { .. }), "{e}");
    let e = call(port, "http500", 10.0).unwrap_err();
    assert!(
        e.to_string().contains("500") && e.to_string().contains("CUDA out of memory"),
        "{e}"
    );
    let e = call(port, "http429", 10.0).unwrap_err();
    assert!(
        e.to_string().contains("429") && e.to_string().contains("retry-after 7"),
        "{e}"
    );
    let e = call(port, "error-event", 10.0).unwrap_err();
    assert!(e.to_string().contains("model overloaded"), "{e}");
    let e = call(port, "nobody-home", 10.0).unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    assert!(
        t0.elapsed() < Duration::from_secs(9),
        "errors come at once, not by timeout"
    );
    let t1 = std::time::Instant::now();
    let e = call(port, "stalls", 1.0).unwrap_err();
    assert!(matches!(e, StreamError::Timeout { .. }), "{e}");
    assert!(
        t1.elapsed() < Duration::from_secs(10),
        "a silent server is cut off"
    );
    // Nothing listening.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = call(free, "x", 2.0).unwrap_err();
    assert!(matches!(e, StreamError::Connect { .. }), "{e}");
}

fn run_suite(dir: &Path, body: &str) -> (PathBuf, Vec<Record>, i32) {
    let r = common::run_suite_text(dir, body);
    (r.run, r.records, r.code)
}

fn header(dir: &Path) -> String {
    format!(
        "[suite]\nname = \"fake\"\nwarmup = 0\nrepetitions = 2\nidle_seconds = 0\ntimeout_seconds = 60\n\n\
         [meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n\
         [[profile]]\nname = \"p\"\nthreads = 1\n\n\
         [[workload]]\nname = \"c2\"\nprompt_tokens = 16\nnew_tokens = 8\nconcurrency = 2\nrequests = 4\n",
        dir.join("none").display()
    )
}

fn openai_model(port: u16, model: &str, extra: &str) -> String {
    format!(
        "\n[[model]]\nengine = \"openai\"\nalias = \"{model}\"\nmodel = \"{model}\"\n\
         base_url = \"http://127.0.0.1:{port}/v1\"\nrequest_timeout_s = 2\n{extra}\n"
    )
}

#[test]
fn a_suite_turns_every_misbehaviour_into_a_failed_record_and_measures_the_rest() {
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let mut body = header(t.path());
    for m in [
        "multi-usage",
        "no-usage",
        "dies",
        "malformed",
        "http500",
        "http429",
        "stalls",
    ] {
        body.push_str(&openai_model(port, m, ""));
    }
    let (run, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 1, "some cells failed");
    let by = |m: &str| -> Vec<&Record> { recs.iter().filter(|r| r.model == m).collect() };
    // Exact counts from usage: 4 requests of 8 tokens in 2-token chunks.
    let ok = by("multi-usage");
    assert_eq!(ok.len(), 2);
    for r in &ok {
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.token_counts.as_deref(), Some("server usage"));
        assert_eq!((r.prompt_tokens, r.generated_tokens), (40, 8));
        assert_eq!((r.concurrency, r.requests), (Some(2), Some(4)));
        assert_eq!(r.itls_ms.len(), 4 * 7, "one gap per token after the first");
        let e = r.energy.as_ref().unwrap();
        assert!(e.j_per_decode_token.unwrap() > 0.0 && e.request_j > 0.0);
        let w = r.whole.as_ref().unwrap();
        assert_eq!((w.requests, w.generated_tokens), (4, 32));
        assert!(r.warnings.iter().any(|w| w.contains("apportioned")));
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("40 prompt tokens for a declared 16"))
        );
    }
    // Without usage: counted from chunks and labelled as estimated.
    for r in by("no-usage") {
        assert_eq!(r.status, Status::Ok);
        assert!(r.token_counts.as_deref().unwrap().starts_with("estimated"));
        assert_eq!(r.generated_tokens, 8);
        assert!(r.warnings.iter().any(|w| w.contains("ESTIMATED")));
    }
    for (m, says) in [
        ("dies", "without [DONE]"),
        ("malformed", "malformed event"),
        ("http500", "CUDA out of memory"),
        ("http429", "429"),
        ("stalls", "no answer within"),
    ] {
        let rs = by(m);
        assert_eq!(rs.len(), 1, "{m}: one failed record");
        assert_eq!(rs[0].status, Status::Failed);
        let err = rs[0].error.as_deref().unwrap();
        assert!(err.contains(says), "{m}: {err}");
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("multi-usage") && md.contains("failed"), "{md}");
}

#[test]
fn a_managed_server_that_dies_or_never_gets_ready_is_a_failed_record_with_its_output() {
    let t = tempfile::tempdir().unwrap();
    let mut body = header(t.path());
    body.push_str(&openai_model(
        1,
        "crashes",
        "base_url = \"http://127.0.0.1:{port}/v1\"\nlaunch = [\"sh\", \"-c\", \"echo 'ggml: illegal instruction' >&2; kill -SEGV $$\"]",
    ).replace("base_url = \"http://127.0.0.1:1/v1\"\n", ""));
    body.push_str(&openai_model(
        1,
        "slow",
        "base_url = \"http://127.0.0.1:{port}/v1\"\nlaunch = [\"sleep\", \"60\"]\nready_timeout_s = 1",
    ).replace("base_url = \"http://127.0.0.1:1/v1\"\n", ""));
    let t0 = std::time::Instant::now();
    let (_, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 1);
    assert!(t0.elapsed() < Duration::from_secs(40));
    let crash = recs.iter().find(|r| r.model == "crashes").unwrap();
    let err = crash.error.as_deref().unwrap();
    assert!(
        err.contains("SIGSEGV") && err.contains("illegal instruction"),
        "{err}"
    );
    let slow = recs.iter().find(|r| r.model == "slow").unwrap();
    let err = slow.error.as_deref().unwrap();
    assert!(err.contains("not ready"), "{err}");
}

#[test]
fn commands_are_metered_per_run_with_tokens_from_their_output() {
    let t = tempfile::tempdir().unwrap();
    let body = format!(
        "{}\n[[model]]\nengine = \"command\"\nalias = \"counts\"\n\
         command = [\"sh\", \"-c\", \"i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo generated {{new_tokens}} tokens\"]\n\
         tokens_regex = 'generated (?P<tokens>\\d+) tokens'\n\
         \n[[model]]\nengine = \"command\"\nalias = \"plain\"\ncommand = [\"true\"]\n\
         \n[[model]]\nengine = \"command\"\nalias = \"fails\"\ncommand = [\"sh\", \"-c\", \"echo boom >&2; exit 4\"]\n",
        header(t.path())
    );
    let (_, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 1);
    let counted: Vec<&Record> = recs.iter().filter(|r| r.model == "counts").collect();
    assert_eq!(counted.len(), 2);
    for r in counted {
        assert_eq!(r.status, Status::Ok, "{:?}", r.error);
        assert_eq!(r.generated_tokens, 8);
        let e = r.energy.as_ref().unwrap();
        assert!(e.prefill_j.is_none() && e.j_per_prefill_token.is_none());
        let per_token = r.energy_per_token_joules.unwrap();
        assert!((per_token - e.request_j / 8.0).abs() < 1e-9);
    }
    let plain = recs.iter().find(|r| r.model == "plain").unwrap();
    assert!(
        plain.energy_per_token_joules.is_none() && plain.energy.as_ref().unwrap().request_j > 0.0
    );
    let fails = recs.iter().find(|r| r.model == "fails").unwrap();
    let err = fails.error.as_deref().unwrap();
    assert!(err.contains("boom") && err.contains("4"), "{err}");
}

#[test]
fn the_api_key_is_sent_but_never_written() {
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let mut body = header(t.path());
    body.push_str(&openai_model(
        port,
        "needs-key",
        "api_key_env = \"JB_TEST_KEY\"",
    ));
    let cfg = t.path().join("s.toml");
    std::fs::write(&cfg, body).unwrap();
    let out = t.path().join("out");
    let o = jb()
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .env("JB_TEST_KEY", SECRET)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains(SECRET));
    let run = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let recs = read_all(&run.join("records.jsonl")).unwrap().0;
    assert!(recs.len() == 2 && recs.iter().all(|r| r.status == Status::Ok));
    common::assert_no_file_holds(&[&run], SECRET);
    // Without the variable set: a clear error naming it.
    let o = jb()
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(t.path().join("o2"))
        .env_remove("JB_TEST_KEY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let run = std::fs::read_dir(t.path().join("o2"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let err = read_all(&run.join("records.jsonl")).unwrap().0[0]
        .error
        .clone()
        .unwrap();
    assert!(
        err.contains("JB_TEST_KEY") && err.contains("not set"),
        "{err}"
    );
}

/// Servers that echo the request headers (with the key) in HTTP 500 and 429 bodies and in an
/// SSE error event: the key appears in no file of the run, of a baseline saved from it, nor on
/// stderr or stdout.
#[test]
fn an_echoed_key_is_redacted_everywhere() {
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let mut body = header(t.path());
    for m in ["echo500", "echo429", "echo-sse"] {
        body.push_str(&openai_model(port, m, "api_key_env = \"JB_TEST_KEY\""));
    }
    let cfg = t.path().join("s.toml");
    std::fs::write(&cfg, body).unwrap();
    let out = t.path().join("out");
    let o = jb()
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .env("JB_TEST_KEY", SECRET)
        .output()
        .unwrap();
    let run = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let recs = read_all(&run.join("records.jsonl")).unwrap().0;
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert!(recs.iter().all(|r| r.status == Status::Failed));
    // The echo reached the records, redacted.
    assert!(
        recs.iter()
            .any(|r| r.error.as_deref().unwrap_or("").contains("[redacted]")),
        "{:?}",
        recs.iter().map(|r| r.error.clone()).collect::<Vec<_>>()
    );
    let baselines = t.path().join("baselines");
    let b = jb()
        .args(["baseline", "save"])
        .arg(&run)
        .arg("echo")
        .arg("--baselines")
        .arg(&baselines)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    for text in [&o.stderr, &o.stdout, &b.stderr, &b.stdout] {
        assert!(!String::from_utf8_lossy(text).contains(SECRET));
    }
    let files = common::assert_no_file_holds(&[&run, &baselines], SECRET);
    assert!(files > 8, "{files} files checked");
}

#[test]
fn engine_fields_are_checked_with_the_line() {
    let t = tempfile::tempdir().unwrap();
    for (extra, says) in [
        ("engine = \"openai\"\nmodel = \"m\"", "needs base_url"),
        (
            "engine = \"openai\"\nbase_url = \"http://10.1.2.3/v1\"\nmodel = \"m\"\napi_key_env = \"K\"",
            "allow_insecure_http",
        ),
        (
            "engine = \"openai\"\nbase_url = \"http://127.0.0.1:{prot}/v1\"\nmodel = \"m\"",
            "{prot}",
        ),
        (
            "id = \"synthetic:llama-tiny\"\ncommand = [\"x\"]",
            "only applies to engine = \"command\"",
        ),
        (
            "engine = \"command\"\ncommand = [\"x\"]\ntokens_regex = \"(\"",
            "tokens_regex",
        ),
    ] {
        let cfg = t.path().join("bad.toml");
        std::fs::write(&cfg, format!("{}\n[[model]]\n{extra}\n", header(t.path()))).unwrap();
        let o = jb().arg("run").arg(&cfg).arg("--dry-run").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra}: {err}");
        assert!(
            err.contains("bad.toml:") && err.contains(says),
            "{extra}: {err}"
        );
    }
}

/// Four requests per repetition, one at a time, generating 32, 32, 32 and 4 tokens: every
/// per-token figure is the repetition's energy over its own 100 tokens (a mean of 25 per
/// request), never over the last request's 4, and the record agrees with itself.
#[test]
fn per_token_figures_use_every_request_of_the_repetition() {
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let body = format!(
        "[suite]\nname = \"uneven\"\nwarmup = 0\nrepetitions = 2\nidle_seconds = 0\n\
         timeout_seconds = 60\n\n[meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n\
         [[profile]]\nname = \"p\"\nthreads = 1\n\n[[workload]]\nname = \"four\"\n\
         prompt_tokens = 16\nnew_tokens = 32\nconcurrency = 1\nrequests = 4\n{}",
        t.path().join("none").display(),
        openai_model(port, "uneven", "")
    );
    let (_, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 0, "{recs:?}");
    let ok: Vec<&Record> = recs.iter().filter(|r| r.status == Status::Ok).collect();
    assert_eq!(ok.len(), 2);
    for r in ok {
        let e = r.energy.as_ref().unwrap();
        assert_eq!((r.generated_tokens, r.prompt_tokens), (25, 16));
        let per_token = r.energy_per_token_joules.unwrap();
        assert!(
            (per_token * 25.0 / e.request_j - 1.0).abs() < 1e-9,
            "{per_token} J/token x 25 tokens vs {} J per request",
            e.request_j
        );
        let decode = e.j_per_decode_token.unwrap();
        assert!((decode * 25.0 / e.decode_j.unwrap() - 1.0).abs() < 1e-9);
        assert!((e.tokens_per_j.unwrap() * e.request_j / 25.0 - 1.0).abs() < 1e-9);
        let whole = r.whole.as_ref().unwrap();
        assert_eq!(whole.generated_tokens, 100);
    }
}

fn open_loop_suite(dir: &Path, port: u16, model: &str, workload: &str) -> String {
    format!(
        "[suite]\nname = \"open\"\nwarmup = 0\nrepetitions = 1\nidle_seconds = 0\n\
         timeout_seconds = 60\n\n[meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n\
         [[profile]]\nname = \"p\"\nthreads = 1\n\n[[workload]]\nname = \"open\"\n\
         prompt_tokens = 16\nnew_tokens = 8\n{workload}\n{}",
        dir.join("none").display(),
        openai_model(port, model, "")
    )
}

/// An open loop sends each request when the seeded schedule says, not when a stream frees up:
/// the server sees them at the schedule's offsets (never early), the record states the schedule
/// and what it achieved, and latency percentiles cover every request.
#[test]
fn open_loop_requests_leave_on_the_seeded_schedule() {
    use joulebench::engine::arrival::{Arrivals, Process};
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let n = 30;
    let body = open_loop_suite(
        t.path(),
        port,
        "paced",
        &format!("requests = {n}\nrequest_rate = 40\nmax_concurrency = 8\nseed = 3"),
    );
    let (run, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 0, "{recs:?}");
    let r = &recs[0];
    assert_eq!(r.status, Status::Ok, "{r:?}");
    let a = r.arrival.as_ref().expect("arrival figures");
    // The serving table shows the offered and achieved rates and the percentiles.
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| ") && l.contains("40.00/s Poisson"))
        .unwrap_or_else(|| panic!("no open-loop serving row in\n{md}"));
    let cols: Vec<&str> = row.split(" | ").collect();
    let achieved: f64 = cols[2].parse().unwrap();
    assert!(
        (achieved - a.achieved_requests_per_s.unwrap()).abs() < 0.006,
        "{row}"
    );
    assert_eq!(cols[3], "0", "{row}");
    let ttft = r.latency.as_ref().unwrap().ttft_s.unwrap();
    assert_eq!(
        cols[4],
        format!("{:.1} / {:.1}", ttft.p50 * 1e3, ttft.p99 * 1e3),
        "{row}"
    );
    let settings = Arrivals {
        request_rate_per_s: 40.0,
        process: Process::Poisson,
        burstiness: 1.0,
        max_concurrency: 8,
        seed: 3,
    };
    assert_eq!(a.settings, settings);
    assert_eq!(a.late_requests, 0, "{r:?}");
    assert_eq!(r.concurrency, Some(8));
    // The measured repetition is the last pass the server saw (warmups come first).
    let seen: Vec<std::time::Instant> = ARRIVALS
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| m == "paced")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(seen.len() % n, 0);
    let pass = (seen.len() / n - 1) as u64;
    let want = settings.schedule(n, pass);
    let mut got: Vec<u64> = seen[seen.len() - n..]
        .iter()
        .map(|i| i.duration_since(seen[seen.len() - n]).as_nanos() as u64)
        .collect();
    got.sort_unstable();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        // Never before its time; late by no more than scheduling noise. Offsets are taken at
        // the server from the first request's arrival, whose own delay (accept, a busy test
        // machine) shifts every other offset: 10 ms of that is allowed on the early side.
        assert!(
            *g + 10_000_000 >= *w && *g < *w + 250_000_000,
            "request {i}: arrived at {g} ns, due at {w} ns"
        );
    }
    let whole = r.whole.as_ref().unwrap();
    assert!(whole.duration_s >= *want.last().unwrap() as f64 / 1e9);
    let achieved = a.achieved_requests_per_s.unwrap();
    assert!((achieved - n as f64 / whole.duration_s).abs() < 1e-9);
    let l = r.latency.as_ref().expect("latency percentiles");
    assert_eq!(l.requests, n);
    for q in [l.ttft_s, l.tpot_s, l.itl_s, l.e2e_s] {
        let q = q.unwrap();
        assert!(
            q.p50 <= q.p90 && q.p90 <= q.p95 && q.p95 <= q.p99 && q.p50 > 0.0,
            "{q:?}"
        );
    }
    assert_eq!(r.energy_per_token_joules, whole.j_per_generated_token);
}

/// A rate one stream cannot keep up with: requests leave late, and the record and its warning
/// say the offered rate was not achieved.
#[test]
fn an_open_loop_short_of_streams_says_its_rate_was_not_achieved() {
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let body = open_loop_suite(
        t.path(),
        port,
        "paced-one-stream",
        "requests = 8\nrequest_rate = 500\narrival = \"gamma\"\nburstiness = 0.5\nmax_concurrency = 1",
    );
    let (_, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 0, "{recs:?}");
    let r = &recs[0];
    let a = r.arrival.as_ref().unwrap();
    // Each request takes 8 tokens x 3 ms; at 500/s most are due long before a stream frees up.
    assert!(a.late_requests >= 4, "{a:?}");
    assert!(a.achieved_requests_per_s.unwrap() < 250.0, "{a:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("offered rate was not achieved")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn open_loop_settings_are_checked_with_the_line() {
    let t = tempfile::tempdir().unwrap();
    for (workload, says) in [
        (
            "requests = 4\nburstiness = 2.0",
            "give a finite request_rate",
        ),
        (
            "requests = 4\nrequest_rate = 2\nburstiness = 2.0",
            "arrival = \"gamma\"",
        ),
        (
            "requests = 4\nrequest_rate = 2\nconcurrency = 2",
            "max_concurrency",
        ),
        ("requests = 4\nrequest_rate = 2\nduration_s = 3", "not both"),
        ("request_rate = -3", "request_rate"),
        ("request_rate = 2\nmax_concurrency = 0", "max_concurrency 0"),
        (
            "load = [0.5]\nrequest_rate = 2\nrequests = 4",
            "leave out request_rate",
        ),
        ("load = [0.0]\nrequests = 4", "fractions must be above 0"),
        ("load = [0.5]", "requests or duration_s"),
        (
            "load = [0.5]\nrequests = 4\nload_point = \"saturation\"",
            "set by the plan",
        ),
    ] {
        common::assert_suite_refused(
            t.path(),
            &open_loop_suite(t.path(), 1, "paced", workload),
            says,
        );
    }
}

/// `lengths` over a server: each request asks for its own drawn number of new tokens (the fake
/// server streams exactly `max_tokens`), and the record keeps them in order.
#[test]
fn drawn_output_lengths_reach_the_server_per_request() {
    use joulebench::config::lengths::{Dist, Lengths};
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let body = open_loop_suite(
        t.path(),
        port,
        "paced-lengths",
        "requests = 6\nconcurrency = 2\nseed = 5\nlengths = { prompt = \"uniform(8, 40)\", output = \"uniform(2, 12)\" }",
    );
    let (_, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 0, "{recs:?}");
    let want = Lengths {
        prompt: Some(Dist::Uniform(8.0, 40.0)),
        output: Some(Dist::Uniform(2.0, 12.0)),
    }
    .draw(6, 16, 8, 5);
    let got: Vec<usize> = recs[0].request_tokens.iter().map(|x| x[1]).collect();
    assert_eq!(got, want.iter().map(|w| w.1).collect::<Vec<_>>());
}

fn batching_suite(dir: &Path, port: u16, model: &str, min_steady_s: f64) -> String {
    format!(
        "[suite]\nname = \"batching\"\nwarmup = 0\nrepetitions = 1\nidle_seconds = 0\n\
         timeout_seconds = 60\nmin_steady_s = {min_steady_s}\n\n[meter]\npowercap_root = \"{}\"\n\
         interval_ms = 5\n\n[[profile]]\nname = \"p\"\nthreads = 1\n\n[[workload]]\nname = \"c4\"\n\
         prompt_tokens = 16\nnew_tokens = 20\nconcurrency = 4\nrequests = 16\n{}",
        dir.join("none").display(),
        openai_model(port, model, "")
    )
}

/// A batching server's /metrics is scraped during the steady window: the record has its
/// averages (4 running, the achieved batch) and the repetition is stable.
#[test]
fn server_telemetry_gives_the_achieved_batch_of_a_stable_repetition() {
    let _one = TELEMETRY.lock().unwrap_or_else(|e| e.into_inner());
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let (_, recs, code) = run_suite(t.path(), &batching_suite(t.path(), port, "batching", 0.05));
    assert_eq!(code, 0, "{recs:?}");
    let r = &recs[0];
    let tel = r.telemetry.as_ref().expect("telemetry");
    assert!(tel.samples >= 1 && tel.url.ends_with("/metrics"), "{tel:?}");
    let running = tel.running_avg.unwrap();
    assert!(running > 3.0 && running <= 4.0, "{tel:?}");
    assert_eq!(tel.kv_cache_avg, Some(0.125));
    let st = r.stability.as_ref().unwrap();
    assert!(st.stable, "{st:?}");
    assert_eq!(st.achieved_batch, Some(running));
    assert_eq!(
        st.achieved_batch_source.as_deref(),
        Some("server telemetry")
    );
    assert_eq!(st.target_batch, Some(4));
}

/// A server that runs one request at a time behind four open streams: the client sees four in
/// flight, the server's gauges say 1, so the repetition is flagged; a steady window shorter than
/// min_steady_s is flagged too.
#[test]
fn a_serialising_server_and_a_short_window_are_flagged_unstable() {
    let _one = TELEMETRY.lock().unwrap_or_else(|e| e.into_inner());
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let (run, recs, code) = run_suite(t.path(), &batching_suite(t.path(), port, "serial", 60.0));
    assert_eq!(code, 0, "{recs:?}");
    // The report's serving table says so too, in both formats.
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| ") && l.contains("UNSTABLE (1 of 1)"))
        .unwrap_or_else(|| panic!("no unstable serving row in\n{md}"));
    assert!(
        row.contains("closed loop, 4 streams") && row.contains("achieved batch"),
        "{row}"
    );
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("Serving: load, latency percentiles"),
        "{html}"
    );
    assert!(html.contains("UNSTABLE (1 of 1)"));
    let r = &recs[0];
    let st = r.stability.as_ref().unwrap();
    assert!(!st.stable);
    assert!(
        st.reasons.iter().any(|x| x.contains("achieved batch")),
        "{st:?}"
    );
    assert!(
        st.reasons.iter().any(|x| x.contains("min_steady_s")),
        "{st:?}"
    );
    assert!(st.achieved_batch.unwrap() < 1.5, "{st:?}");
    assert!(r.telemetry.as_ref().unwrap().waiting_avg.unwrap() > 1.0);
    assert!(
        r.warnings.iter().any(|w| w.starts_with("UNSTABLE")),
        "{:?}",
        r.warnings
    );
}

/// `joulebench frontier` on a run of one batching server at 1, 2 and 4 streams: the deadline
/// (between the c1 and c4 ITL p90) rejects c4 for its ITL, the choice is the cheapest of the
/// rest, as the library computes it from the same records, and the chart is written.
#[test]
fn the_frontier_picks_the_cheapest_configuration_under_the_deadline() {
    let _one = TELEMETRY.lock().unwrap_or_else(|e| e.into_inner());
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let mut body = format!(
        "[suite]\nname = \"grid\"\nwarmup = 0\nrepetitions = 1\nidle_seconds = 0\n\
         timeout_seconds = 60\nmin_steady_s = 0\n\n[slo]\nttft_p90_ms = 60000\n\n\
         [meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n[[profile]]\nname = \"p\"\nthreads = 1\n{}",
        t.path().join("none").display(),
        openai_model(port, "batching", "")
    );
    for c in [1, 2, 4] {
        body.push_str(&format!(
            "\n[[workload]]\nname = \"c{c}\"\nprompt_tokens = 16\nnew_tokens = 20\nconcurrency = {c}\nrequests = {}\n",
            4 * c
        ));
    }
    let (run, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 0, "{recs:?}");
    let itl90 = |w: &str| {
        recs.iter()
            .find(|r| r.workload == w)
            .and_then(|r| r.latency.as_ref()?.itl_s)
            .unwrap()
            .p90
            * 1e3
    };
    let (c1, c4) = (itl90("c1"), itl90("c4"));
    assert!(
        c4 > c1 * 1.5,
        "batching slows tokens: c1 {c1} ms, c4 {c4} ms"
    );
    let deadline = (c1 + c4) / 2.0;
    let o = jb()
        .arg("frontier")
        .arg(&run)
        .arg("--itl-p90-ms")
        .arg(format!("{deadline}"))
        .arg("--format")
        .arg("json")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The suite's [slo] fills in the deadline the flags leave out.
    assert_eq!(v["slo"]["ttft_p90_ms"], 60000.0);
    let slo = joulebench::frontier::Slo {
        itl_p90_ms: Some(deadline),
        ttft_p90_ms: Some(60000.0),
        tpot_p50_ms: None,
    };
    let want = joulebench::frontier::analyze(&joulebench::frontier::points(&recs), &slo);
    let best = v["models"][0]["best"]["cell"].as_str().unwrap();
    assert_eq!(best, want[0].best.as_ref().unwrap().cell);
    assert!(!best.ends_with("c4"));
    let rejected = v["models"][0]["rejected"].as_array().unwrap();
    assert!(
        rejected
            .iter()
            .any(|r| r[0].as_str().unwrap().ends_with("c4")
                && r[1].as_str().unwrap().contains("itl_p90")),
        "{rejected:?}"
    );
    let svg = std::fs::read_to_string(run.join("charts/frontier.svg")).unwrap();
    assert!(svg.contains("deadline"));
    // Nobody meets an impossible deadline: exit 1 and the table says so.
    let o = jb()
        .arg("frontier")
        .arg(&run)
        .arg("--itl-p90-ms")
        .arg("0.001")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("none meets the deadlines"));
}

/// A load curve on a batching server: the saturation closed loop runs first, each fraction is
/// an open loop at that share of the throughput it achieved, and the active-idle point has
/// energy and power but no request; the report draws the curve.
#[test]
fn a_load_curve_offers_fractions_of_the_measured_saturation() {
    let _one = TELEMETRY.lock().unwrap_or_else(|e| e.into_inner());
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let body = format!(
        "[suite]\nname = \"load\"\nwarmup = 0\nrepetitions = 1\nidle_seconds = 0\n\
         timeout_seconds = 60\nmin_steady_s = 0\n\n[meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n\
         [[profile]]\nname = \"p\"\nthreads = 1\n\n[[workload]]\nname = \"curve\"\nprompt_tokens = 16\n\
         new_tokens = 20\nmax_concurrency = 4\nduration_s = 1\nseed = 2\nload = [0.25, 0.5]\n{}",
        t.path().join("none").display(),
        openai_model(port, "batching", "")
    );
    let (run, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 0, "{recs:?}");
    let by = |w: &str| {
        recs.iter()
            .find(|r| r.workload == w)
            .unwrap_or_else(|| panic!("{w}: {recs:?}"))
    };
    let sat = by("curve-saturation");
    assert_eq!((sat.concurrency, sat.requests), (Some(4), Some(16)));
    let whole = sat.whole.as_ref().unwrap();
    let sat_rate = whole.requests as f64 / whole.duration_s;
    for f in [0.25, 0.5] {
        let r = by(&format!("curve-load{f}"));
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let l = r.load.as_ref().unwrap();
        assert_eq!(l.curve, "curve");
        assert!((l.saturation_requests_per_s.unwrap() - sat_rate).abs() < 1e-9);
        let a = r.arrival.as_ref().unwrap();
        assert!((a.settings.request_rate_per_s - f * sat_rate).abs() < 1e-9);
        assert_eq!(a.settings.max_concurrency, 4.min(r.requests.unwrap()));
        // duration_s = 1: rate x 1 s requests.
        assert_eq!(r.requests, Some(((f * sat_rate).round() as usize).max(1)));
    }
    let idle = by("curve-active-idle");
    assert_eq!(idle.status, Status::Ok, "{idle:?}");
    assert_eq!(idle.generated_tokens, 0);
    assert!(idle.avg_power_watts.unwrap() > 0.0);
    assert!(idle.e2e_s.unwrap() >= 1.0);
    let svg = std::fs::read_to_string(run.join("charts/load-curve.svg")).unwrap();
    assert!(svg.contains("offered load"));
}

/// Whether `pid` is still a running `sleep` (a reused PID would not be one).
fn sleeping(pid: &str) -> bool {
    std::fs::read(format!("/proc/{}/cmdline", pid.trim())).is_ok_and(|c| c.starts_with(b"sleep\0"))
        && std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .is_ok_and(|s| !s.contains(") Z "))
}

/// What a command starts and leaves running (a background job, a `setsid` daemon, the children
/// of a command that timed out) is stopped and named on the record; nothing outlives the suite.
#[test]
fn nothing_a_command_starts_outlives_its_cell() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let pids = |name: &str| d.join(format!("{name}.pids")).display().to_string();
    let cmd = |script: String| serde_json::to_string(&["sh", "-c", &script]).unwrap();
    let body = format!(
        "{}\n[[model]]\nengine = \"command\"\nalias = \"leaves\"\ncommand = {}\n\
         \n[[model]]\nengine = \"command\"\nalias = \"detaches\"\ncommand = {}\n\
         \n[[model]]\nengine = \"command\"\nalias = \"hangs\"\ncommand = {}\n",
        header(d).replace("timeout_seconds = 60", "timeout_seconds = 4"),
        cmd(format!(
            "sleep 300 & echo $! >> {}; echo done",
            pids("leaves")
        )),
        cmd(format!(
            "setsid sleep 300 & echo $! >> {}; echo done",
            pids("detaches")
        )),
        cmd(format!(
            "setsid sleep 300 & echo $! >> {0}; sleep 300 & echo $! >> {0}; wait",
            pids("hangs")
        )),
    );
    let (_, recs, code) = run_suite(d, &body);
    assert_eq!(code, 1);
    for name in ["leaves", "detaches", "hangs"] {
        let started = std::fs::read_to_string(pids(name)).unwrap();
        assert!(!started.trim().is_empty(), "{name} started nothing");
        for pid in started.lines() {
            assert!(!sleeping(pid), "{name}: its process {pid} is still running");
        }
        let r = recs.iter().find(|r| r.model == name).unwrap();
        assert_eq!(r.status, Status::Failed, "{name}");
        let err = r.error.as_deref().unwrap();
        assert!(
            err.contains("sleep") && err.contains("running"),
            "{name}: {err}"
        );
        if name == "hangs" {
            assert!(err.contains("timed out"), "{err}");
        } else {
            assert!(
                err.contains("left 1 process (") && err.contains("stopped"),
                "{err}"
            );
        }
    }
}

/// Busy loops started for a test, stopped when it ends (however it ends).
struct Busy(Vec<std::process::Child>);

impl Drop for Busy {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Other processes' CPU use during a repetition is contamination for a command cell too (a
/// process an earlier cell left behind would show the same way).
#[test]
fn foreign_cpu_use_contaminates_a_command_cell() {
    let t = tempfile::tempdir().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _busy = Busy(
        (0..cpus.div_ceil(3))
            .map(|_| {
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let body = format!(
        "{}\n[[model]]\nengine = \"command\"\nalias = \"waits\"\ncommand = [\"sleep\", \"0.6\"]\n",
        header(t.path())
    );
    let (_, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 0);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("its energy is contaminated")),
            "{:?}",
            r.warnings
        );
    }
}

/// A server that sends one 300 MB line is a clear error naming it and the limit; the cell stops
/// reading at the limit, its peak memory far below the line.
#[test]
fn a_huge_line_from_a_server_is_refused_within_bounded_memory() {
    let port = fake_server();
    let t = tempfile::tempdir().unwrap();
    let mut body = header(t.path()).replace("repetitions = 2", "repetitions = 1");
    body.push_str(&openai_model(port, "huge-line", "request_timeout_s = 60"));
    let body = body.replace("request_timeout_s = 2\n", "");
    let (run, recs, code) = run_suite(t.path(), &body);
    assert_eq!(code, 1);
    let err = recs[0].error.as_deref().unwrap();
    assert!(
        err.contains("larger than 4 MiB") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let log =
        std::fs::read_to_string(run.join(format!("logs/{}.stderr.log", recs[0].cell))).unwrap();
    let mib: f64 = log
        .lines()
        .find_map(|l| {
            l.split("peak memory ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no peak memory in the log:\n{log}"));
    assert!(mib < 256.0, "{mib} MiB");
}
