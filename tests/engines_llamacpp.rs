//! A real peer, not a mock: llama.cpp's own C++ `llama-server` (built once for every test that
//! needs llama.cpp, from the llama.cpp that llama-cpp-python 0.3.36 vendors; about 5 minutes the
//! first time, cached) runs the shipped configs/engines.toml next to the candle engine, at 1 and
//! 4 concurrent streams.

use crate::common;

use joulebench::record::{Status, read_all};
use std::path::Path;

/// The llama.cpp servers this suite starts running now (configs/engines.toml names its model
/// `smollm2`; the reference tests' own servers, which may run beside this test, do not).
fn llama_servers() -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", "llama-server -m .* --alias smollm2 "])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
#[ignore = "builds llama.cpp (~10 min on 2 cores, once): cargo test --release -- --ignored peer_"]
fn peer_candle_and_llama_cpp_side_by_side_at_concurrency_1_and_4() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Build (or find) the server first, so a build failure reads as one.
    common::llama_cpp::bin("llama-server");
    let before = llama_servers();
    let out = tempfile::tempdir().unwrap();
    let o = common::jb()
        .arg("run")
        .arg(root.join("configs/engines.toml"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let run = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // On failure: what joulebench said, and the end of each cell's log (not whole server logs).
    let logs: String = std::fs::read_dir(run.join("logs"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            format!(
                "--- the end of {}:\n{}",
                e.file_name().to_string_lossy(),
                common::llama_cpp::tail(&text, 15)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        o.status.success(),
        "{}\n{logs}",
        common::llama_cpp::tail(&String::from_utf8_lossy(&o.stderr), 40)
    );
    assert_eq!(
        llama_servers(),
        before,
        "every server joulebench started was stopped"
    );

    let (recs, _) = read_all(&run.join("records.jsonl")).unwrap();
    assert!(recs.iter().all(|r| r.status == Status::Ok));
    for (alias, c) in [
        ("smollm2-135m.candle", 1),
        ("smollm2-135m.candle", 4),
        ("smollm2-135m.llama-server", 1),
        ("smollm2-135m.llama-server", 4),
    ] {
        let rs: Vec<_> = recs
            .iter()
            .filter(|r| r.model == alias && r.workload.ends_with(&format!("-c{c}")))
            .collect();
        assert_eq!(rs.len(), 3, "{alias} c{c}: three repetitions");
        for r in rs {
            let e = r.energy.as_ref().expect("energy");
            assert!(e.j_per_decode_token.unwrap() > 0.0);
            assert!(r.ttft_s.unwrap() > 0.0 && r.decode_tokens_per_s.unwrap() > 0.0);
            if alias.ends_with("llama-server") {
                assert_eq!(r.concurrency, Some(c));
                assert!(
                    (120..=136).contains(&r.prompt_tokens),
                    "{}",
                    r.prompt_tokens
                );
                let w = r.whole.as_ref().unwrap();
                assert!(w.energy_j > 0.0 && w.requests == if c == 1 { 4 } else { 8 });
                assert!(
                    r.model_info
                        .as_ref()
                        .unwrap()
                        .engine
                        .backend
                        .contains("llama-server.sh")
                );
            }
        }
    }
    // llama-server batches: at c4 its steady window produces more tokens per second than at
    // c1, its /metrics says four requests were running, and usage gives exact counts.
    let steady = |c: usize| -> Vec<f64> {
        recs.iter()
            .filter(|r| {
                r.model == "smollm2-135m.llama-server" && r.workload.ends_with(&format!("-c{c}"))
            })
            .map(|r| {
                assert_eq!(r.token_counts.as_deref(), Some("server usage"));
                assert_eq!(r.generated_tokens, 32);
                let t = r.telemetry.as_ref().expect("llama-server telemetry");
                let st = r.stability.as_ref().unwrap();
                assert_eq!(st.achieved_batch, t.running_avg);
                assert!(t.running_avg.unwrap() > 0.85 * c as f64, "c{c}: {t:?}");
                r.steady.as_ref().expect("steady window").tokens_per_s
            })
            .collect()
    };
    let (c1, c4) = (steady(1), steady(4));
    assert_eq!((c1.len(), c4.len()), (3, 3));
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[1]
    };
    let (m1, m4) = (med(c1), med(c4));
    // The server batched 4 streams (its telemetry, checked above). Whether that raises the
    // aggregate rate depends on the cores it gets while the other tests run beside it: with both
    // busy c4 equalled c1 (8.2 tok/s), and in full test runs of 2026-12-07 c4 came out at 0.72x
    // and 0.55x of c1 (alone: above it). The c1 and c4 cells run minutes apart, so no bound on
    // their ratio holds on a shared machine: the rates must be measured (positive, finite), and
    // a note says when c4 is not above c1.
    assert!(
        m1.is_finite() && m4.is_finite() && m1 > 0.0 && m4 > 0.0,
        "llama-server steady rates c1 {m1} c4 {m4}"
    );
    if m4 <= m1 {
        eprintln!("note: llama-server c4 {m4:.1} tok/s is not above c1 {m1:.1} (a loaded machine)");
    }
    // Both engines in every chart.
    for chart in [
        "energy-per-token.svg",
        "latency-vs-energy.svg",
        "itl-cdf.svg",
    ] {
        let svg = std::fs::read_to_string(run.join("charts").join(chart)).unwrap();
        assert!(
            svg.contains("candle") && svg.contains("llama-server"),
            "{chart}"
        );
    }
}
