//! llama.cpp, the peer the engine is checked against: its C++ tools built once per test binary
//! from the llama.cpp that the llama-cpp-python 0.3.36 sdist vendors (scripts/llama-cpp-build.sh,
//! AMX off; about 5 minutes on 2 cores the first time, cached in joulebench's cache folder), and
//! its own `llama-server` started on a model file to answer what llama.cpp computes: tokens,
//! greedy continuations and the top log-probabilities at every step.
//!
//! What the server answers on a registered file is also kept in `tests/fixtures/llama-cpp/`
//! ([`Peer`]), so the default test run checks the engine against llama.cpp without building it;
//! the live tests (named `peer_...`, ignored by default: `cargo test --release -- --ignored
//! peer_`) ask the server itself, and `JOULEBENCH_RECORD=1` makes them rewrite the recordings.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every llama.cpp tool a test uses, built together in one cmake run.
const TOOLS: &[&str] = &["llama-server", "llama-quantize"];

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The path of llama.cpp's `tool`, building every tool the tests use the first time (one build
/// per test binary, whichever test asks first; the others wait for it).
pub fn bin(tool: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    assert!(TOOLS.contains(&tool), "{tool} is not one of {TOOLS:?}");
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/llama-cpp-build.sh"))
            .args(TOOLS)
            .output()
            .expect("scripts/llama-cpp-build.sh runs");
        assert!(
            out.status.success(),
            "building llama.cpp ({}) failed; the last lines of its output:\n{}",
            TOOLS.join(", "),
            tail(&String::from_utf8_lossy(&out.stderr), 40)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .join(tool)
}

/// `llama-quantize --allow-requantize src dst TYPE` (llama.cpp's own quantizer).
pub fn quantize(src: &Path, dst: &Path, ftype: &str) {
    let out = Command::new(bin("llama-quantize"))
        .arg("--allow-requantize")
        .arg(src)
        .arg(dst)
        .arg(ftype)
        .arg("2")
        .output()
        .expect("llama-quantize runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "llama-quantize to {ftype} failed:\n{}",
        tail(&text, 20)
    );
}

/// llama.cpp's `llama-server` on one model file, on a free loopback port; stopped (and waited
/// for) when dropped, also when the test fails.
pub struct Server {
    child: Child,
    url: String,
    log: tempfile::NamedTempFile,
}

impl Server {
    /// Starts the server on `model` with a context of `ctx` tokens and two threads, and waits
    /// until it answers `/health` (a failure shows the end of its log).
    pub fn start(model: &Path, ctx: usize) -> Server {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin("llama-server"))
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "-t",
                "2",
                "-tb",
                "2",
                "-c",
                &ctx.to_string(),
                "--parallel",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("llama-server starts");
        let mut s = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let t0 = Instant::now();
        loop {
            if ureq::get(format!("{}/health", s.url)).call().is_ok() {
                return s;
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!(
                    "llama-server exited ({st}) on {}:\n{}",
                    model.display(),
                    s.log_tail()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "llama-server did not answer /health within 300 s on {}:\n{}",
                model.display(),
                s.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&mut self) -> String {
        let mut text = String::new();
        let mut f = self.log.reopen().expect("log");
        let _ = f.rewind();
        let _ = f.take(16 << 20).read_to_string(&mut text);
        tail(&text, 30)
    }

    /// POSTs `body` to `path`; the JSON answer (a failure shows the end of the server's log).
    pub fn post(&mut self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let res = ureq::post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .and_then(|mut r| r.body_mut().read_to_string());
        match res {
            Ok(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", tail(&text, 5))),
            Err(e) => panic!("{path} failed: {e}\n{}", self.log_tail()),
        }
    }

    /// llama.cpp's tokens of `text` (special tokens parsed), with or without BOS.
    pub fn tokenize(&mut self, text: &str, add_special: bool) -> Vec<u32> {
        let v = self.post(
            "/tokenize",
            &serde_json::json!({"content": text, "add_special": add_special, "parse_special": true}),
        );
        serde_json::from_value(v["tokens"].clone()).expect("tokens")
    }

    /// Greedy decoding from `prompt` (token ids) for `n` tokens, end of text ignored: per step
    /// the chosen token and llama.cpp's `top` most likely tokens with their log-probabilities
    /// (softmax of the raw logits, before any sampler), most likely first.
    pub fn greedy(&mut self, prompt: &[u32], n: usize, top: usize) -> Vec<Step> {
        let v = self.post(
            "/completion",
            &serde_json::json!({
                "prompt": prompt,
                "n_predict": n,
                "temperature": 0.0,
                "top_k": 1,
                "ignore_eos": true,
                "cache_prompt": false,
                "n_probs": top,
            }),
        );
        let steps: Vec<Step> = v["completion_probabilities"]
            .as_array()
            .unwrap_or_else(|| panic!("no completion_probabilities in {v}"))
            .iter()
            .map(|p| Step {
                token: p["id"].as_u64().expect("id") as u32,
                top: p["top_logprobs"]
                    .as_array()
                    .expect("top_logprobs")
                    .iter()
                    .map(|t| {
                        (
                            t["id"].as_u64().expect("id") as u32,
                            t["logprob"].as_f64().expect("logprob") as f32,
                        )
                    })
                    .collect(),
            })
            .collect();
        assert_eq!(
            steps.len(),
            n,
            "llama-server generated {} of {n} tokens",
            steps.len()
        );
        steps
    }
}

/// One greedy step as llama.cpp took it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub token: u32,
    /// (token, log-probability), most likely first.
    pub top: Vec<(u32, f32)>,
}

impl Step {
    /// The gap between llama.cpp's two most likely tokens, in logits (a difference of
    /// log-probabilities is a difference of logits).
    pub fn gap(&self) -> f32 {
        self.top[0].1 - self.top[1].1
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// llama.cpp's answers on one model file, as `tests/fixtures/llama-cpp/*.json` keeps them.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Recording {
    /// Which llama.cpp answered, and how to regenerate the file.
    pub peer: String,
    /// The model file's sha256: a recording answers for that file only.
    pub file_sha256: String,
    pub tokenize: Vec<Tokenized>,
    pub greedy: Vec<Greedy>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tokenized {
    pub text: String,
    pub add_special: bool,
    pub tokens: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Greedy {
    pub prompt: Vec<u32>,
    pub n: usize,
    pub top: usize,
    pub steps: Vec<Step>,
}

const REGENERATE: &str = "JOULEBENCH_RECORD=1 cargo test --release -- --ignored peer_";

/// A model file's sha256, hex (the store's own digest).
fn sha256(path: &Path) -> String {
    joulebench::store::registry::sha256_file(path).unwrap_or_else(|e| panic!("{e}"))
}

/// llama.cpp as the checks ask it: its live server (whose answers are recorded as they come),
/// or the answers it gave before on the same file.
pub enum Peer {
    Live {
        server: Option<Server>,
        rec: Recording,
        fixture: PathBuf,
    },
    Recorded {
        rec: Recording,
        fixture: PathBuf,
    },
}

impl Peer {
    /// The live server on `model`; its answers may be written to `fixture` by [`Peer::finish`].
    pub fn live(model: &Path, ctx: usize, fixture: &Path) -> Peer {
        Peer::Live {
            server: Some(Server::start(model, ctx)),
            rec: Recording {
                peer: format!(
                    "llama-server from the llama.cpp that llama-cpp-python 0.3.36 vendors \
                     (scripts/llama-cpp-build.sh); regenerate: {REGENERATE}"
                ),
                file_sha256: sha256(model),
                ..Recording::default()
            },
            fixture: fixture.to_path_buf(),
        }
    }

    /// The answers recorded in `fixture`, which must be for this very `model` file.
    pub fn recorded(model: &Path, fixture: &Path) -> Peer {
        let text = std::fs::read_to_string(fixture)
            .unwrap_or_else(|e| panic!("{}: {e}; regenerate: {REGENERATE}", fixture.display()));
        let rec: Recording = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}; regenerate: {REGENERATE}", fixture.display()));
        assert_eq!(
            sha256(model),
            rec.file_sha256,
            "{} records llama.cpp on another file than {}; regenerate: {REGENERATE}",
            fixture.display(),
            model.display()
        );
        Peer::Recorded {
            rec,
            fixture: fixture.to_path_buf(),
        }
    }

    fn missing(fixture: &Path, what: String) -> ! {
        panic!(
            "{} has no answer to {what}; regenerate: {REGENERATE}",
            fixture.display()
        )
    }

    /// llama.cpp's tokens of `text` (special tokens parsed), with or without BOS.
    pub fn tokenize(&mut self, text: &str, add_special: bool) -> Vec<u32> {
        match self {
            Peer::Live { server, rec, .. } => {
                let tokens = server
                    .as_mut()
                    .expect("the server is running")
                    .tokenize(text, add_special);
                rec.tokenize.push(Tokenized {
                    text: text.into(),
                    add_special,
                    tokens: tokens.clone(),
                });
                tokens
            }
            Peer::Recorded { rec, fixture } => rec
                .tokenize
                .iter()
                .find(|t| t.text == text && t.add_special == add_special)
                .map(|t| t.tokens.clone())
                .unwrap_or_else(|| Peer::missing(fixture, format!("tokenize {text:?}"))),
        }
    }

    /// llama.cpp's greedy continuation of `prompt` ([`Server::greedy`]).
    pub fn greedy(&mut self, prompt: &[u32], n: usize, top: usize) -> Vec<Step> {
        match self {
            Peer::Live { server, rec, .. } => {
                let steps = server
                    .as_mut()
                    .expect("the server is running")
                    .greedy(prompt, n, top);
                rec.greedy.push(Greedy {
                    prompt: prompt.to_vec(),
                    n,
                    top,
                    steps: steps.clone(),
                });
                steps
            }
            Peer::Recorded { rec, fixture } => rec
                .greedy
                .iter()
                .find(|g| g.prompt == prompt && g.n == n && g.top == top)
                .map(|g| g.steps.clone())
                .unwrap_or_else(|| {
                    Peer::missing(fixture, format!("{n} greedy tokens after {prompt:?}"))
                }),
        }
    }

    /// Stops a live server (the engine then has the cores to itself).
    pub fn stop(&mut self) {
        if let Peer::Live { server, .. } = self {
            server.take();
        }
    }

    /// After a live check passed: with `JOULEBENCH_RECORD=1` the recording replaces the
    /// fixture; otherwise where live answers differ from the recorded ones it says so (another
    /// CPU may sum in another order: the checks' margins allow that, the note shows it).
    pub fn finish(self) {
        let Peer::Live { rec, fixture, .. } = self else {
            return;
        };
        if std::env::var_os("JOULEBENCH_RECORD").is_some() {
            let text = serde_json::to_string(&rec).expect("serializable");
            std::fs::write(&fixture, text + "\n")
                .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
            eprintln!("recorded llama.cpp's answers in {}", fixture.display());
            return;
        }
        let old: Option<Recording> = std::fs::read_to_string(&fixture)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let same = old.as_ref().is_some_and(|o| {
            o.file_sha256 == rec.file_sha256
                && rec.tokenize.iter().all(|t| o.tokenize.contains(t))
                && rec.greedy.iter().all(|g| {
                    o.greedy.iter().any(|h| {
                        h.prompt == g.prompt
                            && h.steps
                                .iter()
                                .map(|s| s.token)
                                .eq(g.steps.iter().map(|s| s.token))
                    })
                })
        });
        if !same {
            eprintln!(
                "note: llama.cpp's live answers differ from {} (tokens or greedy tokens); \
                 {REGENERATE} rewrites it",
                fixture.display()
            );
        }
    }
}
