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
