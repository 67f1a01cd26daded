//! report.html in a real browser: headless Chromium driven through chromedriver (WebDriver over
//! plain HTTP). The page loads without console errors; every chart is there and not blank
//! (pixel variance of its screenshot); tables sort; dark mode and printing work; a 1,000-cell
//! report stays under 5 MB and opens in under 2 s. Screenshots go into the run's `charts/`.
//!
//! Skipped, saying so, where Chromium or chromedriver is absent; with
//! `JOULEBENCH_REQUIRE_BROWSER=1` (CI sets it) their absence fails the test instead.

use crate::common;
use crate::common::fake_run;

use crate::common::jb;
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find(env: &str, names: &[&str], extra: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    extra.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Chromium and chromedriver, or None (after saying why) when the test must be skipped.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = find(
        "JOULEBENCH_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome", "chrome"],
        &["/usr/lib/chromium/chromium"],
    );
    let driver = find(
        "JOULEBENCH_CHROMEDRIVER",
        &["chromedriver"],
        &["/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver"],
    );
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let msg = format!(
                "browser test skipped: {}{} not found (Debian: apt-get install chromium \
                 chromium-driver; or set JOULEBENCH_CHROMIUM / JOULEBENCH_CHROMEDRIVER)",
                if c.is_none() { "chromium " } else { "" },
                if d.is_none() { "chromedriver" } else { "" }
            );
            if std::env::var("JOULEBENCH_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("{msg}, and JOULEBENCH_REQUIRE_BROWSER=1");
            }
            eprintln!("{msg}");
            None
        }
    }
}

/// A chromedriver process and one headless session.
struct Session {
    driver: Child,
    base: String,
    id: String,
    agent: ureq::Agent,
}

impl Session {
    fn start(chromium: &Path, driver: &Path) -> Session {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let agent = joulebench::engine::external::openai::agent(Duration::from_secs(120));
        let mut s = Session {
            driver: child,
            base,
            id: String::new(),
            agent,
        };
        let t = Instant::now();
        while s
            .get("/status")
            .map(|v| v["value"]["ready"] != true)
            .unwrap_or(true)
        {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "chromedriver never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--allow-file-access-from-files",
                         "--hide-scrollbars", "--force-device-scale-factor=1"]
            }
        }}});
        let v = s.post("/session", &caps);
        s.id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        s.post(
            &format!("/session/{}/window/rect", s.id),
            &json!({"width": 1280, "height": 1000}),
        );
        s
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .map_err(|e| e.to_string())?;
        let text = r
            .body_mut()
            .with_config()
            .limit(200 << 20)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status();
        let text = r
            .body_mut()
            .with_config()
            .limit(200 << 20)
            .read_to_string()
            .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(status.is_success(), "POST {path} -> {status}: {v}");
        v
    }

    fn url(&self, path: &Path) {
        let url = format!("file://{}", path.display());
        self.post(&format!("/session/{}/url", self.id), &json!({ "url": url }));
    }

    fn script(&self, js: &str) -> Value {
        self.post(
            &format!("/session/{}/execute/sync", self.id),
            &json!({"script": js, "args": []}),
        )["value"]
            .clone()
    }

    /// Console messages at SEVERE level since the last call.
    fn errors(&self) -> Vec<String> {
        let v = self.post(
            &format!("/session/{}/se/log", self.id),
            &json!({"type": "browser"}),
        );
        v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn elements(&self, css: &str) -> Vec<String> {
        let v = self.post(
            &format!("/session/{}/elements", self.id),
            &json!({"using": "css selector", "value": css}),
        );
        v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    fn screenshot(&self, element: &str) -> Vec<u8> {
        let v = self
            .get(&format!(
                "/session/{}/element/{element}/screenshot",
                self.id
            ))
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            let _ = self
                .agent
                .delete(format!("{}/session/{}", self.base, self.id))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The luminance variance of a PNG (0 for a blank image) and its size.
fn variance(png_bytes: &[u8]) -> (f64, u32, u32) {
    let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let lum: Vec<f64> = buf[..info.buffer_size()]
        .chunks(ch)
        .map(|p| {
            if ch >= 3 {
                0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
            } else {
                p[0] as f64
            }
        })
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len().max(1) as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len().max(1) as f64;
    (var, info.width, info.height)
}

/// Loads `report` and returns the navigation's load time in ms (loadEventEnd).
fn open(s: &Session, report: &Path) -> f64 {
    s.url(report);
    let t = s.script(
        "var n = performance.getEntriesByType('navigation')[0]; return n ? n.loadEventEnd : -1;",
    );
    t.as_f64().unwrap()
}

/// A small real run (two synthetic models, two profiles): every chart renders, nothing logs an
/// error, a table sorts on click, dark mode applies, and the page prints.
#[test]
fn the_report_renders_in_a_browser_with_every_chart_drawn() {
    let Some((chromium, driver)) = browser() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let suite = format!(
        "[suite]\nname = \"browser\"\nwarmup = 0\nrepetitions = 3\nidle_seconds = 0.2\nmin_window_ms = 20\n\n\
         [meter]\npowercap_root = \"{}\"\n\n\
         [[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"tiny-a\"\nseed = 1\n\n\
         [[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"tiny-b\"\nseed = 2\n\n\
         [[profile]]\nname = \"one\"\nthreads = 1\n\n[[profile]]\nname = \"two\"\nthreads = 2\n\n\
         [[workload]]\nname = \"short\"\nprompt_tokens = 8\nnew_tokens = 8\n",
        t.path().join("none").display()
    );
    let run = common::run_suite_text(t.path(), &suite);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.run.join("report.html");
    let svgs: Vec<String> = std::fs::read_dir(run.run.join("charts"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    assert!(svgs.len() >= 8, "{svgs:?}");
    let s = Session::start(&chromium, &driver);
    let ms = open(&s, &report);
    assert!(ms > 0.0, "{ms}");
    let errors = s.errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let figures = s.elements("figure svg");
    assert_eq!(
        figures.len(),
        svgs.len(),
        "one inline chart per file: {svgs:?}"
    );
    let ids = s.script(
        "return Array.prototype.map.call(document.querySelectorAll('figure'), function (f) { return f.id; });",
    );
    for (i, el) in figures.iter().enumerate() {
        let png_bytes = s.screenshot(el);
        let (var, w, h) = variance(&png_bytes);
        let id = ids[i].as_str().unwrap_or("chart").to_string();
        std::fs::write(
            run.run.join("charts").join(format!("screenshot-{id}.png")),
            &png_bytes,
        )
        .unwrap();
        assert!(w >= 300 && h >= 50, "{id}: {w}x{h}");
        assert!(var > 50.0, "{id} looks blank (luminance variance {var:.1})");
    }
    // Sorting: the decode column ascending, then descending, by its numbers.
    let sorted = s.script(
        "var t = document.querySelector('table.sortable'); var th = t.querySelectorAll('thead th')[3];
         th.click(); var a = Array.prototype.map.call(t.tBodies[0].rows, function (r) { return parseFloat(r.cells[3].getAttribute('data-v')); });
         th.click(); var d = Array.prototype.map.call(t.tBodies[0].rows, function (r) { return parseFloat(r.cells[3].getAttribute('data-v')); });
         return [a, d, th.getAttribute('aria-sort')];",
    );
    let col = |k: usize| -> Vec<f64> {
        sorted[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (asc, desc) = (col(0), col(1));
    assert_eq!(asc.len(), 4);
    assert!(asc.windows(2).all(|w| w[0] <= w[1]), "{asc:?}");
    assert!(desc.windows(2).all(|w| w[0] >= w[1]), "{desc:?}");
    assert!(asc.first() < asc.last() || asc.first() == asc.last());
    assert_eq!(sorted[2], "descending");
    // Dark mode: the page follows prefers-color-scheme.
    let light = s.script("return getComputedStyle(document.body).backgroundColor;");
    s.post(
        &format!("/session/{}/goog/cdp/execute", s.id),
        &json!({"cmd": "Emulation.setEmulatedMedia",
                "params": {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}}),
    );
    let dark = s.script("return getComputedStyle(document.body).backgroundColor;");
    assert_eq!(light, "rgb(255, 255, 255)");
    assert_ne!(dark, light, "dark mode did not change the page");
    // Printing gives a PDF.
    let pdf = s.post(&format!("/session/{}/print", s.id), &json!({}));
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(pdf["value"].as_str().unwrap())
        .unwrap();
    assert!(
        pdf.starts_with(b"%PDF") && pdf.len() > 10_000,
        "{}",
        pdf.len()
    );
    assert!(s.errors().is_empty());
}

/// 10 models x 10 profiles x 10 workloads: report.html stays under 5 MB, links the 1,000
/// timelines instead of inlining them, and opens in under 2 s.
#[test]
fn a_thousand_cell_report_is_light_and_opens_fast() {
    let Some((chromium, driver)) = browser() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("run");
    let cells = fake_run::build(
        &dir,
        &fake_run::FakeRun {
            models: 10,
            profiles: 10,
            workloads: 10,
            reps: 3,
            samples_per_cell: 60,
            provenance: "measured",
        },
    );
    assert_eq!(cells, 1000);
    let built = Instant::now();
    jb().arg("report").arg(&dir).assert().success();
    let build_s = built.elapsed().as_secs_f64();
    let report = dir.join("report.html");
    let bytes = std::fs::metadata(&report).unwrap().len();
    assert!(bytes < 5 << 20, "report.html is {bytes} bytes");
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<li><a href=\"charts/timeline-").count(), 1000);
    assert!(
        dir.join("charts")
            .join(format!("timeline-{}.svg", fake_run::cell_id(9, 9, 9)))
            .is_file()
    );
    let s = Session::start(&chromium, &driver);
    // The first load warms the browser's caches; the median of the next three is the figure
    // (this VM's speed drifts between loads).
    open(&s, &report);
    let mut loads: Vec<f64> = (0..3).map(|_| open(&s, &report)).collect();
    loads.sort_by(f64::total_cmp);
    let ms = loads[1];
    eprintln!(
        "1,000 cells: report built in {build_s:.1} s, report.html {:.2} MB, opened in {ms:.0} ms \
         (median of {loads:?})",
        bytes as f64 / 1048576.0
    );
    assert!(ms < 2000.0, "report.html took {ms:.0} ms to open");
    assert!(s.errors().is_empty());
    let figures = s.elements("figure svg");
    assert!(figures.len() >= 7, "{}", figures.len());
    for el in figures {
        let (var, _, h) = variance(&s.screenshot(&el));
        assert!(
            var > 50.0 && h < 4000,
            "blank or huge chart: var {var:.1}, {h} px tall"
        );
    }
    // The most efficient cells first, then all of them in a folded table.
    let rows = s.script(
        "return [document.querySelector('table.sortable').tBodies[0].rows.length,
                 document.querySelector('#all-cells table.sortable').tBodies[0].rows.length];",
    );
    assert_eq!(rows, json!([joulebench::report::charts::TOP_N, 1000]));
}
