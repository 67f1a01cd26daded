//! Serving datasets: conversations in the ShareGPT format read one by one (the packaged ShareGPT
//! V3 file is cut in the middle of a record, so it is not valid JSON as a whole), and requests
//! sampled from them as serving benchmarks do: the first human turn is the prompt, the reply's
//! length in the model's tokenizer is the output length, short and over-long pairs are left out,
//! and the draw is seeded.

use crate::engine::EngineError;
use crate::engine::text::prompt::ChatFormat;
use crate::engine::text::tokenizer::encode;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tokenizers::Tokenizer;

/// The largest dataset file read (the ShareGPT V3 file is 125 MB).
pub const MAX_DATASET_BYTES: u64 = 4 << 30;

/// Prompts and replies shorter than this many tokens are left out (as serving benchmarks do).
pub const MIN_TOKENS: usize = 4;

/// One usable conversation: a human turn and the assistant's reply to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub prompt: String,
    pub reply: String,
}

/// What reading a dataset file found.
#[derive(Debug, Clone)]
pub struct DatasetRead {
    /// Complete conversations in the file.
    pub conversations: usize,
    /// Those that start with a human turn answered by the assistant.
    pub usable: Vec<Turn>,
    /// The file ends inside a record (that record is not counted).
    pub truncated: bool,
}

/// Reads a ShareGPT-format file: a JSON array of `{"conversations": [{"from", "value"}, ...]}`.
/// A file cut in the middle of a record gives the complete records before the cut; anything
/// else that is not such an array is an error naming the file and the record.
pub fn read_sharegpt(path: &Path) -> Result<DatasetRead, EngineError> {
    let len = std::fs::metadata(path)
        .map_err(|e| EngineError::io(path, e))?
        .len();
    if len > MAX_DATASET_BYTES {
        return Err(EngineError::bad_file(
            path,
            format!("{len} bytes is more than the {MAX_DATASET_BYTES} a dataset may have"),
        ));
    }
    let buf = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    parse_sharegpt(&buf).map_err(|m| EngineError::bad_file(path, m))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// [`read_sharegpt`] on bytes.
pub fn parse_sharegpt(b: &[u8]) -> Result<DatasetRead, String> {
    let mut out = DatasetRead {
        conversations: 0,
        usable: Vec::new(),
        truncated: false,
    };
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return Err("not a ShareGPT file: expected a JSON array of conversations".into());
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            None => {
                out.truncated = true;
                break;
            }
            Some(b']') => break,
            _ => {}
        }
        let mut it = serde_json::Deserializer::from_slice(&b[i..]).into_iter::<serde_json::Value>();
        match it.next() {
            Some(Ok(v)) => {
                i += it.byte_offset();
                out.conversations += 1;
                if let Some(t) = usable(&v) {
                    out.usable.push(t);
                }
            }
            Some(Err(e)) if e.is_eof() => {
                out.truncated = true;
                break;
            }
            Some(Err(e)) => {
                return Err(format!(
                    "conversation {} (byte {i}): {e}",
                    out.conversations + 1
                ));
            }
            None => {
                out.truncated = true;
                break;
            }
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b']') => break,
            None => {
                out.truncated = true;
                break;
            }
            Some(c) => {
                return Err(format!(
                    "after conversation {} (byte {i}): expected `,` or `]`, found {:?}",
                    out.conversations, *c as char
                ));
            }
        }
    }
    Ok(out)
}

/// The first human turn and the assistant's reply (`human` then `gpt`, ShareGPT's names), when
/// the conversation starts that way.
fn usable(v: &serde_json::Value) -> Option<Turn> {
    let turns = v.get("conversations")?.as_array()?;
    let text = |t: &serde_json::Value, who: &[&str]| -> Option<String> {
        let from = t.get("from")?.as_str()?;
        who.contains(&from)
            .then(|| t.get("value")?.as_str().map(str::to_string))
            .flatten()
    };
    Some(Turn {
        prompt: text(turns.first()?, &["human"])?,
        reply: text(turns.get(1)?, &["gpt"])?,
    })
}

/// One request drawn from a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The prompt text as the user wrote it (servers apply their own chat template).
    pub text: String,
    /// Its tokens in the model's tokenizer, through the chat template when one is given.
    pub ids: Vec<u32>,
    /// New tokens to generate: the reply's length, capped.
    pub output_tokens: usize,
}

/// How a dataset's requests were drawn, for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetFigures {
    pub name: String,
    /// The file's sha256 where it is a registered dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Complete conversations read, and those starting with a human turn and its reply.
    pub conversations: usize,
    pub usable: usize,
    /// The file ended inside a record.
    pub truncated: bool,
    /// Usable conversations looked at and left out (too short, or past the context).
    pub filtered_out: usize,
    pub sampled: usize,
    pub seed: u64,
    /// New tokens are the reply's length capped at this.
    pub output_cap: usize,
}

/// How requests are drawn from a dataset for one model.
#[derive(Clone, Copy)]
pub struct Draw<'a> {
    pub tok: &'a Tokenizer,
    /// The chat template prompts are counted through (None: raw text).
    pub chat: Option<ChatFormat>,
    /// A start-of-sequence token every prompt begins with.
    pub bos: Option<u32>,
    /// Requests to draw.
    pub n: usize,
    /// New tokens are the reply's length capped at this.
    pub output_cap: usize,
    /// Prompt + output must fit in this many tokens.
    pub context: usize,
}

/// Draws `d.n` requests (seeded) from the usable conversations: prompt and reply of at least
/// [`MIN_TOKENS`] tokens, prompt + capped reply within `d.context`. Conversations are tokenized
/// only until enough are found. Fails when fewer pass.
pub fn sample(
    read: &DatasetRead,
    name: &str,
    d: &Draw,
    seed: u64,
) -> Result<(Vec<Sampled>, DatasetFigures), EngineError> {
    let Draw {
        tok,
        chat,
        bos,
        n,
        output_cap,
        context,
    } = *d;
    let mut order: Vec<usize> = (0..read.usable.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let (mut out, mut filtered) = (Vec::with_capacity(n), 0);
    for i in order {
        if out.len() == n {
            break;
        }
        let t = &read.usable[i];
        let wrapped = match chat {
            Some(c) => {
                let (a, b) = c.wrap();
                format!("{a}{}{b}", t.prompt)
            }
            None => t.prompt.clone(),
        };
        let mut ids: Vec<u32> = bos.into_iter().collect();
        ids.extend(encode(tok, &wrapped)?);
        let reply = encode(tok, &t.reply)?.len();
        let output_tokens = reply.min(output_cap.max(1));
        if ids.len() < MIN_TOKENS || reply < MIN_TOKENS || ids.len() + output_tokens > context {
            filtered += 1;
            continue;
        }
        out.push(Sampled {
            text: t.prompt.clone(),
            ids,
            output_tokens,
        });
    }
    if out.len() < n {
        return Err(EngineError::Request(format!(
            "dataset {name}: only {} of {} usable conversations fit (prompt and reply of at least \
             {MIN_TOKENS} tokens, within a context of {context}); {n} requests were asked for",
            out.len(),
            read.usable.len()
        )));
    }
    let figures = DatasetFigures {
        name: name.to_string(),
        sha256: None,
        conversations: read.conversations,
        usable: read.usable.len(),
        truncated: read.truncated,
        filtered_out: filtered,
        sampled: out.len(),
        seed,
        output_cap,
    };
    Ok((out, figures))
}

/// A workload's dataset as its engine gets it: a registered name (`sharegpt`) or a file in
/// the ShareGPT format, and the seed of the draw.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetJob {
    pub name: String,
    /// A user's file (None: the registered dataset `name`).
    pub path: Option<std::path::PathBuf>,
    pub seed: u64,
}

impl DatasetJob {
    /// Reads the dataset (fetching a registered one into the cache if needed; its size and
    /// sha256 are checked as a model's are) and draws `n` requests from it.
    pub fn draw(
        &self,
        d: &Draw,
        log: &mut dyn FnMut(&str),
    ) -> Result<(Vec<Sampled>, DatasetFigures), EngineError> {
        use crate::store::registry;
        let (path, sha) = match &self.path {
            Some(p) => (p.clone(), None),
            None => {
                let m = registry::dataset(&self.name).ok_or_else(|| {
                    EngineError::Request(format!(
                        "unknown dataset {:?}: use sharegpt or a path to a ShareGPT-format .json file",
                        self.name
                    ))
                })?;
                let dir = registry::resolve(m, true, log)?;
                let f = &m.files[0];
                let p = dir.join(f.name);
                registry::check_size(&p, f)?;
                (p, Some(f.sha256.to_string()))
            }
        };
        let read = read_sharegpt(&path)?;
        if read.truncated {
            log(&format!(
                "{}: the file ends inside a record; {} complete conversations read, {} usable",
                path.display(),
                read.conversations,
                read.usable.len()
            ));
        }
        let (s, mut f) = sample(&read, &self.name, d, self.seed)?;
        f.sha256 = sha;
        Ok((s, f))
    }
}

/// One request's shape when requests differ in length.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A prompt of exactly `prompt` tokens of the bundled text (`lengths`).
    Tokens { prompt: usize, output: usize },
    /// A dataset's prompt.
    Text(Sampled),
}

impl Shape {
    /// New tokens to generate.
    pub fn output(&self) -> usize {
        match self {
            Shape::Tokens { output, .. } => *output,
            Shape::Text(s) => s.output_tokens,
        }
    }
}

/// What a job says about its requests' lengths.
pub struct Varied<'a> {
    pub workload: &'a str,
    pub dataset: Option<&'a DatasetJob>,
    /// (prompt, output) tokens per request, drawn from `lengths`.
    pub lengths: Option<&'a [(usize, usize)]>,
    pub requests: usize,
    pub new_tokens: usize,
}

/// The per-request shapes of a job whose requests differ in length (None: every request is
/// `prompt_tokens` and `new_tokens`), and how a dataset's were drawn.
pub fn shapes_for(
    job: Varied,
    tok: Option<&Tokenizer>,
    chat: Option<ChatFormat>,
    bos: Option<u32>,
    context: usize,
    log: &mut dyn FnMut(&str),
) -> Result<(Option<Vec<Shape>>, Option<DatasetFigures>), EngineError> {
    if let Some(d) = job.dataset {
        let tok = tok.ok_or_else(|| {
            EngineError::Request(format!(
                "workload {}: a dataset needs the model's tokenizer to count prompt and reply \
                 tokens (synthetic models have none; servers: give `tokenizer`)",
                job.workload
            ))
        })?;
        let draw = Draw {
            tok,
            chat,
            bos,
            n: job.requests,
            output_cap: job.new_tokens,
            context,
        };
        let (s, f) = d.draw(&draw, log)?;
        return Ok((Some(s.into_iter().map(Shape::Text).collect()), Some(f)));
    }
    Ok((
        job.lengths.map(|v| {
            v.iter()
                .map(|&(prompt, output)| Shape::Tokens { prompt, output })
                .collect()
        }),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(from: &[(&str, &str)]) -> String {
        let turns: Vec<serde_json::Value> = from
            .iter()
            .map(|(f, v)| serde_json::json!({"from": f, "value": v}))
            .collect();
        serde_json::json!({"id": "x", "conversations": turns}).to_string()
    }

    /// A file of `n` conversations, and the byte offset where each record ends.
    fn file_with_ends(n: usize) -> (String, Vec<usize>) {
        let mut text = String::from("[\n  ");
        let mut ends = Vec::new();
        for i in 0..n {
            if i > 0 {
                text.push_str(",\n  ");
            }
            text.push_str(&match i % 3 {
                0 => conv(&[("human", &format!("question {i}")), ("gpt", "an answer")]),
                1 => conv(&[("gpt", "hello"), ("human", "hi")]),
                _ => conv(&[("human", "alone")]),
            });
            ends.push(text.len());
        }
        text.push_str("\n]\n");
        (text, ends)
    }

    fn file(n: usize) -> String {
        file_with_ends(n).0
    }

    #[test]
    fn a_whole_file_reads_every_conversation() {
        let r = parse_sharegpt(file(9).as_bytes()).unwrap();
        assert_eq!(
            (r.conversations, r.usable.len(), r.truncated),
            (9, 3, false)
        );
        assert_eq!(r.usable[1].prompt, "question 3");
        assert_eq!(r.usable[1].reply, "an answer");
    }

    /// Cut anywhere, the file gives the complete conversations before the cut and says it was
    /// cut; never an error, never a partial record.
    #[test]
    fn a_file_cut_anywhere_gives_the_complete_records_before_the_cut() {
        let (f, ends) = file_with_ends(9);
        for cut in 1..f.len() - 2 {
            let r = parse_sharegpt(&f.as_bytes()[..cut]).unwrap_or_else(|e| panic!("{cut}: {e}"));
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(r.conversations, complete, "cut at {cut}");
            assert!(r.truncated, "cut at {cut}");
        }
    }

    #[test]
    fn what_is_not_a_sharegpt_array_is_an_error_naming_the_record() {
        assert!(
            parse_sharegpt(b"{\"a\": 1}")
                .unwrap_err()
                .contains("JSON array")
        );
        let e = parse_sharegpt(b"[{\"conversations\": []} {\"x\": 1}]").unwrap_err();
        assert!(e.contains("after conversation 1"), "{e}");
        let e = parse_sharegpt(b"[{\"conversations\": []}, {\"x\": tru}]").unwrap_err();
        assert!(e.contains("conversation 2"), "{e}");
        assert!(parse_sharegpt(b"[]").unwrap().usable.is_empty());
    }
}
