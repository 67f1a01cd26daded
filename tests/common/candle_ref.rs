//! candle-transformers' answers (its own llama, Qwen2, Qwen3, Phi-3 and Gemma 3 modules) on the
//! synthetic model files the tests write, recorded in `tests/fixtures/candle-transformers/`.
//!
//! The default test build does not compile candle-transformers (it took ~3 minutes of CPU of a
//! fresh clone's build): it checks the engine against these recordings, each pinned to the
//! sha256 of the files it answers for (the tests write the same files from fixed seeds, so a
//! change of the writer or of the random generator is a failure that says how to regenerate).
//! Built with `--features qwen-modules` (which compiles candle-transformers) the tests ask the
//! modules themselves, check the engine against the live answers, and say where those differ
//! from the recording; with `JOULEBENCH_RECORD=1` as well they rewrite the recordings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Whether this build asks candle-transformers itself.
pub const LIVE: bool = cfg!(feature = "qwen-modules");

const REGENERATE: &str = "JOULEBENCH_RECORD=1 cargo test --release --features qwen-modules \
                          --test tests -- arch:: engine_hf::";

/// One answer of a reference module.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    /// The sha256 of the inputs it answers for (model files and config), hex.
    pub input_sha256: String,
    /// Logits of the last position: every `logits_every`-th of the vocabulary, from id 0.
    pub logits_every: usize,
    pub logits: Vec<f32>,
    /// A greedy continuation, where the check asked for one.
    pub tokens: Vec<u32>,
}

impl Answer {
    /// `logits` kept at every `every`-th id.
    pub fn new(input_sha256: String, logits: &[f32], every: usize, tokens: Vec<u32>) -> Answer {
        Answer {
            input_sha256,
            logits_every: every.max(1),
            logits: logits.iter().step_by(every.max(1)).copied().collect(),
            tokens,
        }
    }

    /// The entries of `full` (a whole vocabulary's logits) at the ids this answer kept.
    pub fn same_ids(&self, full: &[f32]) -> Vec<f32> {
        full.iter().step_by(self.logits_every).copied().collect()
    }
}

/// The sha256 of several files in order (each file's digest, then the digest of those).
pub fn digest(files: &[PathBuf]) -> String {
    let each: Vec<String> = files
        .iter()
        .map(|f| joulebench::store::registry::sha256_file(f).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    if let [one] = each.as_slice() {
        return one.clone();
    }
    use sha2::{Digest, Sha256};
    let sum = Sha256::digest(each.join("\n").as_bytes());
    sum.iter().map(|b| format!("{b:02x}")).collect()
}

/// The recordings of one test, by case name.
pub struct Recorded {
    fixture: PathBuf,
    answers: BTreeMap<String, Answer>,
    live: BTreeMap<String, Answer>,
}

impl Recorded {
    /// `tests/fixtures/candle-transformers/<name>.json` (absent is empty when recording).
    pub fn open(name: &str) -> Recorded {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/candle-transformers")
            .join(format!("{name}.json"));
        let answers = match std::fs::read_to_string(&fixture) {
            Ok(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}; regenerate: {REGENERATE}", fixture.display())),
            Err(_) if LIVE => BTreeMap::new(),
            Err(e) => panic!("{}: {e}; regenerate: {REGENERATE}", fixture.display()),
        };
        Recorded {
            fixture,
            answers,
            live: BTreeMap::new(),
        }
    }

    /// The reference's answer for `case` on inputs with digest `input_sha256`: `live` where this
    /// build asked the module (always `Some` with the feature on, `None` without), else the
    /// recording, which must be for the same inputs.
    pub fn answer(&mut self, case: &str, input_sha256: &str, live: Option<Answer>) -> Answer {
        if let Some(a) = live {
            assert_eq!(a.input_sha256, input_sha256, "{case}");
            self.live.insert(case.to_string(), a.clone());
            return a;
        }
        let a = self.answers.get(case).unwrap_or_else(|| {
            panic!(
                "{} has no answer for {case}; regenerate: {REGENERATE}",
                self.fixture.display()
            )
        });
        assert_eq!(
            a.input_sha256,
            input_sha256,
            "{}: {case} was recorded on other inputs than the test wrote now (the writer or its \
             random generator changed); regenerate: {REGENERATE}",
            self.fixture.display()
        );
        a.clone()
    }

    /// After the checks passed on live answers: with `JOULEBENCH_RECORD=1` they replace the
    /// recording; otherwise a live answer that differs from the recorded one is reported.
    pub fn finish(self) {
        if self.live.is_empty() {
            return;
        }
        if std::env::var_os("JOULEBENCH_RECORD").is_some() {
            if let Some(dir) = self.fixture.parent() {
                std::fs::create_dir_all(dir).unwrap();
            }
            let text = serde_json::to_string(&self.live).expect("serializable");
            std::fs::write(&self.fixture, text + "\n")
                .unwrap_or_else(|e| panic!("{}: {e}", self.fixture.display()));
            eprintln!(
                "recorded candle-transformers' answers in {}",
                self.fixture.display()
            );
            return;
        }
        for (case, a) in &self.live {
            if self.answers.get(case) != Some(a) {
                eprintln!(
                    "note: candle-transformers' live answer for {case} differs from {} \
                     (another CPU may sum in another order); {REGENERATE} rewrites it",
                    self.fixture.display()
                );
            }
        }
    }
}
