//! Charts and the HTML report: well-formed XML, escaped strings, rebuilt from records on demand;
//! the headline's answers.

use crate::common;
use crate::common::fake_run;

use std::path::Path;

use crate::common::only_dir as run_dir;

#[test]
fn report_is_well_formed_escaped_and_rebuildable() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("s.toml");
    std::fs::write(
        &suite,
        format!(
            "[suite]\nname = \"xss\"\nwarmup = 1\nrepetitions = 3\nidle_seconds = 0.2\nmin_window_ms = 20\n\n\
             [meter]\npowercap_root = \"{}\"\n\n[[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"<script>alert(1)</script>\"\n\n\
             [[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"tiny & co\"\nseed = 7\n\n\
             [[profile]]\nname = \"t1\"\nthreads = 1\n\n[[profile]]\nname = \"t2\"\nthreads = 2\n\n\
             [[workload]]\nname = \"w\"\nprompt_tokens = 16\nnew_tokens = 8\n",
            dir.path().join("none").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    common::jb()
        .arg("run")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let d = run_dir(&out);
    let check = |d: &Path| {
        let html = std::fs::read_to_string(d.join("report.html")).unwrap();
        roxmltree::Document::parse_with_options(
            &html,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .expect("report.html is well-formed XML");
        // One script only, the page's own table sorter (no config string reached the page).
        assert_eq!(
            html.matches("<script").count(),
            1,
            "a config string reached the page unescaped"
        );
        assert!(html.contains("<script>\n//<![CDATA[") && !html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("tiny &amp; co"));
        assert!(
            !html.contains("<link") && !html.contains(" src="),
            "no external resources"
        );
        let mut svgs = 0;
        for e in std::fs::read_dir(d.join("charts")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "svg") {
                continue;
            }
            let svg = std::fs::read_to_string(&p).unwrap();
            roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!svg.contains("<script"));
            svgs += 1;
        }
        // Seven suite-wide charts (energy, phase shares, energy against size, heatmap, latency
        // against energy, ITL, scaling) and one timeline per cell (2 models x 2 profiles).
        assert_eq!(svgs, 7 + 4);
        assert_eq!(html.matches("<svg").count(), 11, "every chart is inline");
    };
    check(&d);
    // `joulebench report` rebuilds everything from records and traces.
    std::fs::remove_dir_all(d.join("charts")).unwrap();
    std::fs::remove_file(d.join("report.html")).unwrap();
    std::fs::remove_file(d.join("summary.json")).unwrap();
    common::jb().arg("report").arg(&d).assert().success();
    check(&d);
    common::jb()
        .arg("report")
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("records.jsonl"));
}

/// With the `png` feature every chart also comes as a PNG (embedded font, no system library).
#[cfg(feature = "png")]
#[test]
fn png_charts_with_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("s.toml");
    std::fs::write(
        &suite,
        format!(
            "[suite]\nname = \"png\"\nwarmup = 1\nrepetitions = 3\nidle_seconds = 0\nmin_window_ms = 20\n\n\
             [meter]\npowercap_root = \"{}\"\n\n[[model]]\nid = \"synthetic:llama-tiny\"\n\n\
             [[profile]]\nname = \"t1\"\nthreads = 1\n\n[[workload]]\nname = \"w\"\nprompt_tokens = 16\nnew_tokens = 8\n",
            dir.path().join("none").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    common::jb()
        .arg("run")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let charts = run_dir(&out).join("charts");
    let mut pngs = 0;
    for e in std::fs::read_dir(&charts).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "png") {
            let b = std::fs::read(&p).unwrap();
            assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
            assert!(b.len() > 2000, "{} is suspiciously small", p.display());
            pngs += 1;
        }
    }
    // One cell: six suite-wide charts (no heatmap for a single model and profile) and its
    // timeline, each as a PNG too.
    assert_eq!(pngs, 7);
}

/// The headline names the most efficient cell per workload and the spread to the least
/// efficient, ranks the models, and puts first the warnings that change conclusions.
#[test]
fn the_headline_answers_first_and_warns() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("run");
    fake_run::build(
        &dir,
        &fake_run::FakeRun {
            models: 2,
            profiles: 2,
            workloads: 2,
            reps: 5,
            samples_per_cell: 0,
            provenance: "estimated",
        },
    );
    common::jb().arg("report").arg(&dir).assert().success();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let head = &md[md.find("## Headline").expect("a headline")..md.find("| cell |").unwrap()];
    // The fake run's energy grows with the model index and falls with the profile's threads:
    // model0 on p1 is the most efficient cell of each workload.
    for w in ["w0", "w1"] {
        let line = head
            .lines()
            .find(|l| l.starts_with(&format!("- {w}: ")))
            .unwrap_or_else(|| panic!("no answer for {w} in\n{head}"));
        assert!(
            line.contains(&format!("model0\\_\\_p1\\_\\_{w}"))
                || line.contains(&format!("model0__p1__{w}")),
            "{line}"
        );
        assert!(
            line.contains("ESTIMATED") && line.contains("of 4 cells"),
            "{line}"
        );
        // Worst: model1 on p0, 1.6 x 1.5 / 1.25 = 1.92 times the best (jitter 1.5%).
        let x: f64 = line
            .split("spends ")
            .nth(1)
            .and_then(|r| r.split('x').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!((x - 1.92).abs() < 0.08, "{line}");
    }
    assert!(
        head.contains("Models, least energy per token first: model0"),
        "{head}"
    );
    assert!(head.contains("Every energy figure is ESTIMATED"), "{head}");
    assert!(head.contains("synthetic models"), "{head}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let h = html.find("<section id=\"headline\">").unwrap();
    assert!(
        h < html.find("<h2 id=\"summary\">").unwrap(),
        "the headline comes first"
    );
}

/// A failed repetition that `--resume` measured again is not a lost repetition: the report
/// only says a cell lost repetitions while no later good one made up for the failure.
#[test]
fn failures_measured_again_on_resume_are_not_losses() {
    use joulebench::record::{Status, read_all};
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-v1");
    let recs = read_all(&fixture.join("records.jsonl")).unwrap().0;
    let cell = recs[0].cell_index;
    let mut mine: Vec<_> = recs
        .iter()
        .filter(|r| r.cell_index == cell && r.status == Status::Ok)
        .cloned()
        .collect();
    assert!(mine.len() >= 2);
    let mut failed = mine[0].clone();
    failed.status = Status::Failed;
    failed.repetition = None;
    failed.energy = None;
    failed.error = Some("killed by signal 15".into());
    let last = mine.pop().unwrap();
    // Failed, then measured again: nothing lost.
    let resumed: Vec<_> = mine
        .iter()
        .cloned()
        .chain([failed.clone(), last.clone()])
        .collect();
    let doc = joulebench::report::summarize("s", &resumed, false);
    assert!(
        doc.cells[0].failures.is_empty(),
        "{:?}",
        doc.cells[0].failures
    );
    let h = joulebench::report::headline::headline(&doc, &resumed)
        .warnings
        .join("\n");
    assert!(!h.contains("lost repetitions"), "{h}");
    // Failed last: lost.
    let lost: Vec<_> = mine.iter().cloned().chain([last, failed]).collect();
    let doc = joulebench::report::summarize("s", &lost, false);
    assert_eq!(doc.cells[0].failures, ["killed by signal 15"]);
    let h = joulebench::report::headline::headline(&doc, &lost)
        .warnings
        .join("\n");
    assert!(h.contains("lost repetitions to failures"), "{h}");
}

/// `compare` labels only energy rows ESTIMATED: latency and throughput are measured whatever
/// the energy source.
#[test]
fn compare_marks_only_energy_as_estimated() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-v1");
    let t = tempfile::tempdir().unwrap();
    let mut sides = Vec::new();
    for side in ["a", "b"] {
        let d = t.path().join(side);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["config.toml", "meta.json", "records.jsonl"] {
            let text = std::fs::read_to_string(fixture.join(f)).unwrap();
            std::fs::write(
                d.join(f),
                text.replace(
                    "\"provenance\":\"measured\"",
                    "\"provenance\":\"estimated\"",
                ),
            )
            .unwrap();
        }
        sides.push(d);
    }
    let o = crate::common::jb()
        .arg("compare")
        .args(&sides)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(" / ")).collect();
    assert!(!rows.is_empty(), "{out}");
    let (mut energy, mut latency) = (0, 0);
    for l in rows {
        if l.contains(" tpot_s:") || l.contains(" ttft_s:") || l.contains("tokens_per_s:") {
            assert!(!l.contains("ESTIMATED"), "{l}");
            latency += 1;
        } else if l.contains(" j_per_") {
            assert!(l.contains("[ESTIMATED]"), "{l}");
            energy += 1;
        }
    }
    assert!(energy > 0 && latency > 0, "{out}");
}

/// The fixture's records as JSON, to build runs that contradict what a headline could say.
fn fixture_values() -> Vec<serde_json::Value> {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-v1");
    std::fs::read_to_string(fixture.join("records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn headline_of(values: &[serde_json::Value]) -> String {
    let recs: Vec<joulebench::record::Record> = values
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    let doc = joulebench::report::summarize("s", &recs, false);
    joulebench::report::headline::headline(&doc, &recs)
        .warnings
        .join("\n")
}

/// Each statement the headline makes before conclusions holds for the records: "every figure
/// is estimated" when no cell is measured (a failed cell beside estimated ones is not "next to
/// measured ones"); contaminated and noisy cells are named; none of it is said of a clean run.
#[test]
fn the_headline_says_only_what_the_records_show() {
    // The fixture's tiny-a__one__short really is noisy (decode J/token 14.5-29.3 mJ over its
    // five repetitions): said so; made steady, nothing is said.
    let h = headline_of(&fixture_values());
    assert!(
        h.contains("NOISY") && h.contains("tiny-a__one__short"),
        "{h}"
    );
    let mut clean = fixture_values();
    for v in clean
        .iter_mut()
        .filter(|v| v["cell"] == "tiny-a__one__short")
    {
        v["energy"]["j_per_decode_token"] = 0.0182.into();
    }
    let h = headline_of(&clean);
    for never in ["ESTIMATED", "CONTAMINATED", "NOISY"] {
        assert!(!h.contains(never), "{h}");
    }
    // Estimated energy everywhere, and one cell failed: nothing was measured.
    let mut est = clean.clone();
    for v in &mut est {
        v["energy"]["provenance"] = "estimated".into();
    }
    let mut failed = est[0].clone();
    failed["cell"] = "tiny-c__one__short".into();
    failed["cell_index"] = 9.into();
    failed["status"] = "failed".into();
    failed["error"] = "boom".into();
    failed["energy"] = serde_json::Value::Null;
    est.push(failed);
    let h = headline_of(&est);
    assert!(h.contains("Every energy figure is ESTIMATED"), "{h}");
    assert!(!h.contains("next to"), "{h}");
    // Half estimated: the count of measured cells is said.
    let mut mixed = clean.clone();
    for v in mixed
        .iter_mut()
        .filter(|v| v["cell"].as_str().unwrap().starts_with("tiny-a"))
    {
        v["energy"]["provenance"] = "estimated".into();
    }
    let h = headline_of(&mixed);
    assert!(
        h.contains("2 of 4 cells have ESTIMATED energy (no sensor) next to 2 with measured"),
        "{h}"
    );
    // Other processes used the machine during one cell.
    let mut dirty = clean.clone();
    for v in dirty
        .iter_mut()
        .filter(|v| v["cell"] == "tiny-b__one__longer")
    {
        v["warnings"] = serde_json::json!([
            "other processes used 1.20 CPU-seconds (55% of the machine) during this repetition: its energy is contaminated"
        ]);
    }
    let h = headline_of(&dirty);
    assert!(
        h.contains("CONTAMINATED") && h.contains("tiny-b__one__longer"),
        "{h}"
    );
    // How much: the share of repetitions (the fixture's cells ran 5 each) and the worst share
    // of the machine.
    let total: usize = 4 * 5;
    assert!(
        h.contains(&format!(
            "(5 of {total} repetitions; at worst 55% of its CPUs)"
        )),
        "{h}"
    );
    let mut one = clean.clone();
    let mut k = 0;
    for v in one
        .iter_mut()
        .filter(|v| v["cell"] == "tiny-b__one__longer")
    {
        k += 1;
        if k == 2 {
            v["warnings"] = serde_json::json!([
                "other processes used 2.00 CPU-seconds (91% of the machine) during this repetition: its energy is contaminated"
            ]);
        }
    }
    let h = headline_of(&one);
    assert!(
        h.contains(&format!(
            "(1 of {total} repetitions; at worst 91% of its CPUs)"
        )),
        "{h}"
    );
    // More threads decoding slower than fewer: the same cells again under a 2-thread profile,
    // decoding at half the speed, are called out; at a higher speed nothing is said.
    // (Real models: a synthetic model's threads are its shape's, flagged on their own.)
    let twice = |factor: f64, synthetic: bool| {
        let mut v = clean.clone();
        for r in v.iter_mut() {
            r["synthetic"] = synthetic.into();
        }
        for r in v.clone().iter() {
            let mut r = r.clone();
            r["profile"] = "two".into();
            r["cell"] = r["cell"]
                .as_str()
                .unwrap()
                .replace("__one__", "__two__")
                .into();
            r["cell_index"] = (r["cell_index"].as_u64().unwrap() + 10).into();
            r["model_info"]["engine"]["threads"] = 2.into();
            let s = r["decode_tokens_per_s"].as_f64().unwrap();
            r["decode_tokens_per_s"] = (s * factor).into();
            v.push(r);
        }
        headline_of(&v)
    };
    let h = twice(0.5, false);
    assert!(
        h.contains("THREADS INVERTED: tiny-a__two__short decoded slower at 2 threads than tiny-a__one__short at 1"),
        "{h}"
    );
    assert_eq!(h.matches("THREADS INVERTED").count(), 4, "{h}");
    let h = twice(1.7, false);
    assert!(!h.contains("THREADS INVERTED"), "{h}");
    let h = twice(0.5, true);
    assert!(!h.contains("THREADS INVERTED"), "{h}");
    // Another cell's repetitions disagree by 6x.
    let mut noisy = clean.clone();
    for (i, v) in noisy
        .iter_mut()
        .filter(|v| v["cell"] == "tiny-b__one__short")
        .enumerate()
    {
        let j = v["energy"]["j_per_decode_token"].as_f64().unwrap();
        v["energy"]["j_per_decode_token"] = (j * [1.0, 6.0, 1.0, 6.0, 3.0][i]).into();
    }
    let h = headline_of(&noisy);
    assert!(
        h.contains("NOISY") && h.contains("tiny-b__one__short"),
        "{h}"
    );
    assert!(!h.contains("tiny-a__one__short"), "{h}");
}

/// The headline's figure is a column of the table beside it (same name, unit and value, the
/// same interval), and report.md says how each figure was obtained, with the formula of the
/// estimate this run used and its numbers.
#[test]
fn the_headline_figure_is_in_the_table_and_report_md_gives_the_method() {
    let t = tempfile::tempdir().unwrap();
    let body = format!(
        "[suite]\nname = \"fig\"\nwarmup = 0\nrepetitions = 3\nidle_seconds = 0\nmin_window_ms = 20\n\n\
         [meter]\npowercap_root = \"{}\"\ninterval_ms = 5\n\n[[model]]\nid = \"synthetic:llama-tiny\"\n\n\
         [[profile]]\nname = \"one\"\nthreads = 1\n\n\
         [[workload]]\nname = \"w\"\nprompt_tokens = 16\nnew_tokens = 8\n",
        t.path().join("no-powercap").display()
    );
    let suite = common::write_suite(t.path(), "fig", &body);
    let out = t.path().join("out");
    common::jb()
        .arg("run")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let md = std::fs::read_to_string(run_dir(&out).join("report.md")).unwrap();
    // The headline: "- w: CELL at 1.23 mJ/token (95% interval 1.1-1.4), ESTIMATED ...".
    let line = md
        .lines()
        .find(|l| l.starts_with("- w: "))
        .unwrap_or_else(|| panic!("no answer for w in\n{md}"));
    let fig = line.split(" at ").nth(1).unwrap();
    let (value, rest) = fig.split_once(' ').unwrap();
    assert!(rest.starts_with("mJ/token"), "{line}");
    let interval = rest
        .split("95% interval ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no interval in {line}"));
    // The table: a column under exactly that name and unit.
    let header = md.lines().find(|l| l.starts_with("| cell |")).unwrap();
    let cols: Vec<&str> = header.split('|').map(str::trim).collect();
    let k = cols
        .iter()
        .position(|c| *c == "mJ/token")
        .unwrap_or_else(|| panic!("no mJ/token column in {header}"));
    let row = md
        .lines()
        .find(|l| l.starts_with("| ") && l.contains("synthetic") && !l.starts_with("| cell"))
        .unwrap();
    let cell: Vec<&str> = row.split('|').map(str::trim).collect();
    // "1.234 [1.100, 1.400]": the headline prints the same numbers to three digits.
    let (median, ci) = cell[k].split_once(' ').unwrap();
    let tick = |s: &str| joulebench::report::charts::style::tick(s.parse::<f64>().unwrap());
    assert_eq!(tick(median), value, "{line}\n{row}");
    let (lo, hi) = ci
        .trim_matches(|c| c == '[' || c == ']')
        .split_once(", ")
        .unwrap();
    assert_eq!(
        format!("{}-{}", tick(lo), tick(hi)),
        interval,
        "{line}\n{row}"
    );
    // The method, with this run's estimate formula.
    let plain = md.replace('\\', "");
    let method = &plain[plain
        .find("## How each figure was obtained")
        .unwrap_or_else(|| panic!("no method in\n{md}"))..];
    assert!(
        method.contains("- mJ/token, the headline's figure, is"),
        "{method}"
    );
    let formula = method
        .lines()
        .find(|l| l.starts_with("- ESTIMATED CPU energy: E = cpu_time_s x "))
        .unwrap_or_else(|| panic!("no estimate formula in\n{method}"));
    assert!(formula.contains("TDP"), "{formula}");
    assert!(!md.contains("the estimate's note gives"), "{md}");
}
