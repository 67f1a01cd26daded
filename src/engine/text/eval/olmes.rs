//! The OLMES task files (`oe_eval_tasks/<task>/<variant>/`): `requests.jsonl.gz`, one
//! log-likelihood request per document and choice (`doc_id`, `idx`, `label`,
//! `request.context`, `request.continuation`), and `config.json` (the primary metric, and the
//! offset of the unconditional requests only `acc_uncond` uses: not items). Read directly from
//! the gzip, every line and count bounded.

use super::{Choice, Items, McItem, McMetric};
use crate::engine::EngineError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The variants joulebench reads where a task has them.
pub const VARIANTS: &[&str] = &[
    "rc_0shot",
    "rc_5shot",
    "mc_5shot",
    "val_rc_5shot",
    "val_mc_5shot",
    "test_rc_5shot",
    "test_mc_5shot",
];

/// The requests file of a variant.
pub const REQUESTS: &str = "requests.jsonl.gz";
/// The config file of a variant.
pub const CONFIG: &str = "config.json";

/// Longest line read (a 5-shot HellaSwag request is about 5 KB).
const MAX_LINE: usize = 1 << 20;
/// Most requests read from one file (HellaSwag's 10,042 documents x 4 choices, twice).
const MAX_REQUESTS: usize = 200_000;
/// Most choices per document.
const MAX_CHOICES: usize = 26;

#[derive(Deserialize)]
struct Config {
    task_config: TaskConfig,
}

#[derive(Deserialize)]
struct TaskConfig {
    primary_metric: Option<String>,
    #[serde(default)]
    metric_kwargs: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Line {
    doc_id: u64,
    idx: usize,
    label: serde_json::Value,
    request: Request,
}

#[derive(Deserialize)]
struct Request {
    context: String,
    continuation: String,
}

fn bad(path: &Path, why: impl Into<String>) -> EngineError {
    EngineError::bad_file(path, why)
}

/// Reads the config: the primary metric (acc_raw when it names another) and the
/// unconditional-request offset.
fn config(path: &Path) -> Result<(McMetric, Option<u64>), EngineError> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    let c: Config = serde_json::from_str(&text).map_err(|e| {
        bad(
            path,
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })?;
    let metric = c
        .task_config
        .primary_metric
        .as_deref()
        .and_then(McMetric::parse)
        .unwrap_or(McMetric::AccRaw);
    let offset = c
        .task_config
        .metric_kwargs
        .as_ref()
        .and_then(|m| m.get("uncond_docid_offset"))
        .and_then(serde_json::Value::as_u64);
    Ok((metric, offset))
}

/// The gold index a request's `label` states (a number, or a letter A, B, ...).
fn label(v: &serde_json::Value) -> Option<usize> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as usize),
        serde_json::Value::String(s) if s.len() == 1 => {
            let c = s.as_bytes()[0];
            c.is_ascii_uppercase().then(|| (c - b'A') as usize)
        }
        _ => None,
    }
}

/// Every item of the variant in `dir`, by document id.
pub fn read(dir: &Path) -> Result<Items, EngineError> {
    let (primary, offset) = config(&dir.join(CONFIG))?;
    let path = dir.join(REQUESTS);
    let file = std::fs::File::open(&path).map_err(|e| EngineError::io(&path, e))?;
    let mut r = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut docs: BTreeMap<u64, (usize, Vec<(usize, Choice)>)> = BTreeMap::new();
    let mut line = Vec::new();
    let mut n = 0usize;
    for lineno in 1.. {
        line.clear();
        let read = (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| bad(&path, format!("line {lineno}: {e} (a truncated download?)")))?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE {
            return Err(bad(
                &path,
                format!("line {lineno} is longer than {MAX_LINE} bytes"),
            ));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        n += 1;
        if n > MAX_REQUESTS {
            return Err(bad(&path, format!("more than {MAX_REQUESTS} requests")));
        }
        let l: Line =
            serde_json::from_slice(&line).map_err(|e| bad(&path, format!("line {lineno}: {e}")))?;
        if offset.is_some_and(|o| l.doc_id >= o) {
            continue; // an unconditional request (acc_uncond only)
        }
        let gold = label(&l.label).ok_or_else(|| {
            bad(
                &path,
                format!("line {lineno}: label {} is not an index", l.label),
            )
        })?;
        let e = docs.entry(l.doc_id).or_insert((gold, Vec::new()));
        if e.0 != gold {
            return Err(bad(
                &path,
                format!("line {lineno}: document {} has two gold labels", l.doc_id),
            ));
        }
        if e.1.len() >= MAX_CHOICES || l.idx >= MAX_CHOICES {
            return Err(bad(
                &path,
                format!("line {lineno}: more than {MAX_CHOICES} choices"),
            ));
        }
        e.1.push((
            l.idx,
            Choice {
                context: l.request.context,
                continuation: l.request.continuation,
            },
        ));
    }
    let mut items = Vec::with_capacity(docs.len());
    for (doc_id, (gold, mut choices)) in docs {
        choices.sort_by_key(|c| c.0);
        let complete = choices.iter().enumerate().all(|(i, c)| c.0 == i);
        if !complete || gold >= choices.len() || choices.len() < 2 {
            return Err(bad(
                &path,
                format!(
                    "document {doc_id}: choices {:?} with gold {gold} are not a complete item",
                    choices.iter().map(|c| c.0).collect::<Vec<_>>()
                ),
            ));
        }
        items.push(McItem {
            doc_id,
            gold,
            choices: choices.into_iter().map(|c| c.1).collect(),
        });
    }
    if items.is_empty() {
        return Err(bad(&path, "no item (an empty or truncated file?)"));
    }
    Ok(Items::Mc { items, primary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_task(dir: &Path, lines: &[String], offset: Option<u64>) {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = serde_json::json!({"task_config": {"primary_metric": "acc_per_char",
            "metric_kwargs": {"uncond_docid_offset": offset}}});
        std::fs::write(dir.join(CONFIG), cfg.to_string()).unwrap();
        let f = std::fs::File::create(dir.join(REQUESTS)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        for l in lines {
            writeln!(gz, "{l}").unwrap();
        }
        gz.finish().unwrap();
    }

    fn req(doc: u64, idx: usize, label: u64, ctx: &str, cont: &str) -> String {
        serde_json::json!({"request_type": "loglikelihood", "doc_id": doc, "idx": idx,
            "label": label, "request": {"context": ctx, "continuation": cont}})
        .to_string()
    }

    #[test]
    fn items_group_choices_in_order_and_drop_unconditional_requests() {
        let d = tempfile::tempdir().unwrap();
        let lines = vec![
            req(1, 1, 0, "Q1", " b"),
            req(1, 0, 0, "Q1", " a"),
            req(0, 0, 1, "Q0", " x"),
            req(0, 1, 1, "Q0", " y"),
            req(1_000_000, 0, 0, "", " a"),
        ];
        write_task(d.path(), &lines, Some(1_000_000));
        let Items::Mc { items, primary } = read(d.path()).unwrap() else {
            panic!("multiple choice")
        };
        assert_eq!(primary, McMetric::AccPerChar);
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].doc_id, items[0].gold), (0, 1));
        assert_eq!(items[1].choices[0].continuation, " a");
        assert_eq!(items[1].choices[1].continuation, " b");
    }

    #[test]
    fn broken_files_are_errors_naming_the_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        write_task(
            d.path(),
            &[req(0, 0, 0, "Q", " a"), "{not json".into()],
            None,
        );
        let e = read(d.path()).unwrap_err().to_string();
        assert!(e.contains(REQUESTS) && e.contains("line 2"), "{e}");
        // A missing choice (idx 1 of 0..3) is not an item.
        write_task(
            d.path(),
            &[req(0, 0, 0, "Q", " a"), req(0, 2, 0, "Q", " c")],
            None,
        );
        let e = read(d.path()).unwrap_err().to_string();
        assert!(e.contains("not a complete item"), "{e}");
        // A gzip cut in the middle.
        write_task(
            d.path(),
            &[req(0, 0, 0, "Q", " a"), req(0, 1, 0, "Q", " b")],
            None,
        );
        let p = d.path().join(REQUESTS);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read(d.path()).is_err());
        std::fs::remove_file(d.path().join(CONFIG)).unwrap();
        let e = read(d.path()).unwrap_err().to_string();
        assert!(e.contains(CONFIG), "{e}");
    }
}
