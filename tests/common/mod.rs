//! What the integration tests share: one way to start the binary (with one list of the
//! environment variables that would steer it), one lock for timing-sensitive tests, and
//! builders for suite files and run folders.
#![allow(dead_code)]

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

/// Writes `body` as `dir/NAME` and returns its path.
pub fn write_suite(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("suite file written");
    p
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
