//! GSM8K's 1,319 test problems (`test.jsonl`: `question`, `answer` ending in `#### N`): greedy
//! generation that stops at the next question, scored by exact match of the final number.
//!
//! Variants: `0shot` asks `Question: ...\nAnswer:`; `8shot` puts the first 8 test problems with
//! their worked answers (calculator annotations removed) before it, and leaves those 8 out of
//! the items, so the model sees the answer format (`#### N`) it is scored by.

use super::{GenItem, Items};
use crate::engine::EngineError;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The test file in the data set's folder.
pub const FILE: &str = "test.jsonl";
/// The variants.
pub const VARIANTS: &[&str] = &["0shot", "8shot"];
/// New tokens at most per answer.
pub const MAX_NEW_TOKENS: usize = 256;
/// Generation stops at the first of these.
pub const STOP: &[&str] = &["Question:", "</s>", "<|im_end|>", "<|endoftext|>", "\n\n\n"];

const SHOTS: usize = 8;
const MAX_LINE: usize = 1 << 16;
const MAX_ITEMS: usize = 100_000;

#[derive(Deserialize)]
struct Line {
    question: String,
    answer: String,
}

/// The number after `####` in a reference answer.
fn reference(answer: &str) -> Option<String> {
    let (_, n) = answer.rsplit_once("####")?;
    normalize(n.trim())
}

/// A number as compared: no thousands separators, currency sign or trailing period; `12.0`
/// and `12` alike.
pub fn normalize(s: &str) -> Option<String> {
    let t: String = s
        .trim()
        .trim_end_matches('.')
        .chars()
        .filter(|c| !matches!(c, ',' | '$'))
        .collect();
    if t.is_empty() || t.parse::<f64>().is_err() {
        return None;
    }
    Some(match t.split_once('.') {
        Some((int, frac)) if frac.chars().all(|c| c == '0') => int.to_string(),
        _ => t,
    })
}

/// The final number of a generated answer: the one after `####` where the answer has the
/// marker, else the last number in it.
pub fn extract(text: &str) -> Option<String> {
    if let Some((_, after)) = text.rsplit_once("####") {
        let token: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '.' | ',' | '$'))
            .collect();
        if let Some(n) = normalize(&token) {
            return Some(n);
        }
    }
    let mut last = None;
    let mut cur = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit()
            || (c == '-' && cur.is_empty())
            || (matches!(c, '.' | ',') && !cur.is_empty())
        {
            cur.push(c);
        } else {
            if let Some(n) = normalize(&cur) {
                last = Some(n);
            }
            cur.clear();
        }
    }
    last
}

/// A worked answer without the calculator annotations (`<<16-3-4=9>>`).
fn worked(answer: &str) -> String {
    let mut out = String::new();
    let mut rest = answer;
    while let Some(i) = rest.find("<<") {
        out.push_str(&rest[..i]);
        rest = rest[i..].find(">>").map_or("", |j| &rest[i + j + 2..]);
    }
    out.push_str(rest);
    out
}

/// The items of `variant` from the test file at `path` (document id: the line's index).
pub fn read(path: &Path, variant: &str) -> Result<Items, EngineError> {
    let bad = |why: String| EngineError::bad_file(path, why);
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let mut r = BufReader::new(file);
    let mut rows = Vec::new();
    let mut line = Vec::new();
    for lineno in 1.. {
        line.clear();
        let n = (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| bad(format!("line {lineno}: {e}")))?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE || rows.len() >= MAX_ITEMS {
            return Err(bad(format!("line {lineno}: too long, or too many lines")));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let l: Line =
            serde_json::from_slice(&line).map_err(|e| bad(format!("line {lineno}: {e}")))?;
        let gold = reference(&l.answer).ok_or_else(|| {
            bad(format!(
                "line {lineno}: the answer has no final #### number"
            ))
        })?;
        rows.push((l.question, l.answer, gold));
    }
    let shots = match variant {
        "0shot" => 0,
        "8shot" => SHOTS,
        other => return Err(EngineError::Request(format!("gsm8k variant {other:?}"))),
    };
    if rows.len() <= shots {
        return Err(bad(format!("{} problems: too few", rows.len())));
    }
    let prefix: String = rows[..shots]
        .iter()
        .map(|(q, a, _)| format!("Question: {}\nAnswer: {}\n\n", q.trim(), worked(a).trim()))
        .collect();
    let items = rows
        .iter()
        .enumerate()
        .skip(shots)
        .map(|(i, (q, _, gold))| GenItem {
            doc_id: i as u64,
            prompt: format!("{prefix}Question: {}\nAnswer:", q.trim()),
            answer: gold.clone(),
        })
        .collect();
    Ok(Items::Gen {
        items,
        stop: STOP.iter().map(|s| s.to_string()).collect(),
        max_new_tokens: MAX_NEW_TOKENS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_number_is_read_as_the_task_scores_it() {
        assert_eq!(reference("so 9 * 2 = 18\n#### 18").as_deref(), Some("18"));
        assert_eq!(reference("#### 1,234").as_deref(), Some("1234"));
        assert_eq!(extract("She makes $18. #### 18").as_deref(), Some("18"));
        assert_eq!(
            extract("9 eggs, so 9 * 2 = 18 dollars.").as_deref(),
            Some("18")
        );
        assert_eq!(extract("The answer is -3.50.").as_deref(), Some("-3.50"));
        assert_eq!(extract("#### $1,000.00").as_deref(), Some("1000"));
        assert_eq!(extract("no number here"), None);
        assert_eq!(normalize("18.0").as_deref(), Some("18"));
        assert_eq!(normalize("abc"), None);
    }

    #[test]
    fn shots_are_the_first_problems_without_annotations_and_left_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE);
        let mut text = String::new();
        for i in 0..10 {
            text.push_str(
                &serde_json::json!({"question": format!("q{i}?"),
                    "answer": format!("{i} + 1 = <<{i}+1={}>>{}\n#### {}", i + 1, i + 1, i + 1)})
                .to_string(),
            );
            text.push('\n');
        }
        std::fs::write(&p, text).unwrap();
        let Items::Gen { items, stop, .. } = read(&p, "8shot").unwrap() else {
            panic!("generated answers")
        };
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].doc_id, items[0].answer.as_str()), (8, "9"));
        assert!(
            items[0]
                .prompt
                .starts_with("Question: q0?\nAnswer: 0 + 1 = 1\n#### 1\n\n")
        );
        assert!(items[0].prompt.ends_with("Question: q8?\nAnswer:"));
        assert!(!items[0].prompt.contains("<<"));
        assert!(stop.contains(&"Question:".to_string()));
        let Items::Gen { items, .. } = read(&p, "0shot").unwrap() else {
            panic!()
        };
        assert_eq!(
            (items.len(), items[0].prompt.as_str()),
            (10, "Question: q0?\nAnswer:")
        );
        std::fs::write(&p, "{\"question\": \"x\", \"answer\": \"no marker\"}\n").unwrap();
        let e = read(&p, "0shot").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains(FILE), "{e}");
    }
}
