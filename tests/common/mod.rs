//! What the integration tests share: one way to start the binary (with one list of the
//! environment variables that would steer it), one lock for timing-sensitive tests, and
//! builders for suite files and run folders.
#![allow(dead_code)]

pub mod candle_ref;
pub mod fake_run;
pub mod http;
pub mod llama_cpp;

use std::path::{Path, PathBuf};

/// Environment variables that change what a joulebench run does; tests start from none of them.
pub const STEERING_VARS: &[&str] = &[
    "JOULEBENCH_POWERCAP_ROOT",
    "JOULEBENCH_CELL_FAULT",
    "JOULEBENCH_SHARD_FAULT",
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
];

/// The joulebench binary as a test command, with the steering variables cleared.
pub fn jb() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("joulebench").expect("the joulebench binary");
    for v in STEERING_VARS {
        c.env_remove(v);
    }
    c
}

/// The same as a plain `std::process::Command`, for runs started in the background.
pub fn jb_process() -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("joulebench"));
    for v in STEERING_VARS {
        c.env_remove(v);
    }
    c
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs that time fake counters advanced by a thread take this lock, one at a time per test
/// file, so they stay off each other's load.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A temporary folder for fake counter trees that a thread keeps advancing: on tmpfs where the
/// machine has one, because on a journaling filesystem the driver's rename can wait behind
/// another process's fsync and the counter then lags the wattage it is driven at (real RAPL
/// counters never wait on a journal).
pub fn counter_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("temp dir")
}

/// An Intel client powercap tree in a fresh counter folder, its package zone driven at `watts`
/// every `step`: (the folder, kept alive by the caller; the tree; the driver).
pub fn driven_tree(
    watts: f64,
    step: std::time::Duration,
) -> (
    tempfile::TempDir,
    joulebench::meter::fake::FakePowercap,
    joulebench::meter::fake::PowerDriver,
) {
    use joulebench::meter::fake::{FakePowercap, PowerDriver};
    let counters = counter_dir();
    let root = counters.path().join("powercap");
    std::fs::create_dir_all(&root).expect("powercap folder");
    let tree = FakePowercap::intel_client(&root).expect("fake powercap tree");
    let driver = PowerDriver::start(&tree, &[("intel-rapl:0", watts)], step);
    (counters, tree, driver)
}

/// Writes `body` as `dir/NAME` and returns its path.
pub fn write_suite(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("suite file written");
    p
}

/// `dir/ab.toml`: a one-profile, one-workload suite for A/B jobs (one warmup, no idle window,
/// counters under `powercap_root`, 5 ms sampling) around the `[[model]]` tables in `models`.
pub fn ab_suite(dir: &Path, powercap_root: &Path, models: &str) -> PathBuf {
    write_suite(
        dir,
        "ab.toml",
        &format!(
            "[suite]\nname = \"ab\"\nwarmup = 1\nrepetitions = 3\nidle_seconds = 0\n\
             timeout_seconds = 120\nmin_window_ms = 0\n\n[meter]\npowercap_root = \"{}\"\n\
             interval_ms = 5\n\n[[profile]]\nname = \"p\"\nthreads = 1\n\n[[workload]]\n\
             name = \"w\"\nprompt_tokens = 16\nnew_tokens = 8\n{models}",
            powercap_root.display()
        ),
    )
}

/// The only folder inside `out` (a run's folder).
pub fn only_dir(out: &Path) -> PathBuf {
    let v: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("output folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v[0].clone()
}

/// A finished suite: its run folder, records, exit code and standard error.
pub struct SuiteRun {
    pub run: PathBuf,
    pub records: Vec<joulebench::record::Record>,
    pub code: i32,
    pub stderr: String,
}

/// Writes `body` as `dir/s.toml` and runs it into `dir/out`.
pub fn run_suite_text(dir: &Path, body: &str) -> SuiteRun {
    let cfg = dir.join("s.toml");
    std::fs::write(&cfg, body).unwrap();
    let out = dir.join("out");
    let o = jb()
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let run = only_dir(&out);
    let records = joulebench::record::read_all(&run.join("records.jsonl"))
        .unwrap()
        .0;
    SuiteRun {
        run,
        records,
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Writes `body` as `dir/s.toml` and checks that `run --dry-run` refuses it with an error that
/// names the file and says `says`.
pub fn assert_suite_refused(dir: &Path, body: &str, says: &str) {
    let cfg = dir.join("s.toml");
    std::fs::write(&cfg, body).unwrap();
    let o = jb().arg("run").arg(&cfg).arg("--dry-run").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted:\n{body}");
    assert!(
        err.contains(says) && err.contains("s.toml"),
        "{says:?} not in: {err}"
    );
}

/// Copies a folder tree (fixtures into a temp dir).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("destination");
    for e in std::fs::read_dir(from)
        .expect("source")
        .filter_map(Result::ok)
    {
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).expect("copied");
        }
    }
}

/// The machine's hardware seams with `root` as the powercap tree and no NVML library.
pub fn no_gpu(root: &Path) -> joulebench::meter::select::Hardware {
    let mut hw = joulebench::meter::select::Hardware::real(root.to_path_buf());
    hw.gpu = Box::new(|| {
        Err(joulebench::meter::nvml::GpuError::LibraryNotFound(
            "NVML library not found".into(),
        ))
    });
    hw
}

/// `measure` options for one run of `cmd`, sampling every 5 ms, automatic sources.
pub fn measure_opts(cmd: &[&str]) -> joulebench::measure::MeasureOptions {
    joulebench::measure::MeasureOptions {
        meter: joulebench::meter::select::MeterChoice::Auto,
        interval: std::time::Duration::from_millis(5),
        runs: 1,
        warmup: 0,
        idle: std::time::Duration::ZERO,
        tdp_w: None,
        strict: false,
        allow_partial: false,
        command: cmd.iter().map(|s| s.to_string()).collect(),
    }
}

/// Every file below `d`.
pub fn files_under(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Fails when any file below `dirs` contains `secret`; returns how many files were read.
pub fn assert_no_file_holds(dirs: &[&Path], secret: &str) -> usize {
    let mut n = 0;
    for d in dirs {
        for f in files_under(d) {
            n += 1;
            let bytes = std::fs::read(&f).expect("readable");
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{} holds the secret",
                f.display()
            );
        }
    }
    n
}

/// Starts `joulebench run SUITE --out OUT` in the background, stderr discarded.
pub fn spawn_run(suite: &Path, out: &Path) -> std::process::Child {
    jb_process()
        .arg("run")
        .arg(suite)
        .arg("--out")
        .arg(out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("joulebench run started")
}

/// Records on disk in the only run folder under `out` (0 before it exists).
pub fn records_now(out: &Path) -> usize {
    let has_dir = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if !has_dir {
        return 0;
    }
    joulebench::record::read_all(&only_dir(out).join("records.jsonl")).map_or(0, |(r, _)| r.len())
}

/// Removes a fake tree's contents (a driver reload or hot-unplug).
pub fn remove_tree(root: &Path) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = e.path();
        let _ = if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

/// A byte-level BPE vocabulary: the 256 byte symbols in order, `<|endoftext|>` (id 256), then
/// fillers up to `n` tokens.
pub fn byte_level_vocab(n: usize) -> Vec<String> {
    let mut v: Vec<String> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .map(String::from)
        .collect();
    v.sort();
    v.push("<|endoftext|>".into());
    while v.len() < n {
        v.push(format!("<extra_{}>", v.len()));
    }
    v
}

/// The records of a run folder (torn lines skipped, as `report` does).
pub fn records(run: &Path) -> Vec<joulebench::record::Record> {
    joulebench::record::read_all(&run.join("records.jsonl"))
        .expect("records.jsonl readable")
        .0
}

/// Whether `got` is within `rel` (relative) of `want`.
pub fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs()
}

/// The registered default model's file, fetched on first use.
pub fn default_model() -> PathBuf {
    use joulebench::store::registry;
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let m = registry::lookup(registry::DEFAULT_MODEL).expect("registered");
        registry::resolve(m, true, &mut |s| eprintln!("{s}"))
            .expect("the default model must be fetchable")
            .join(m.files[0].name)
    })
    .clone()
}
