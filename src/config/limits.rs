//! The range every number in a suite file must lie in, checked once when the file is read (by
//! `check`, so a typo such as `timeout_seconds = 1e20` is a `FILE:LINE:COL` error, not a crash
//! an hour in). README's "Limits" lists the same table.

/// Longest duration any setting may ask for: one week, in seconds.
pub const WEEK_S: f64 = 7.0 * 24.0 * 3600.0;
pub const MAX_REPETITIONS: u32 = 10_000;
pub const MAX_WARMUP: u32 = 10_000;
pub const MAX_TOKENS: usize = 1 << 20;
pub const MAX_BATCH: usize = 1024;
pub const MAX_CONCURRENCY: usize = 4096;
pub const MAX_REQUESTS: usize = 1_000_000;
pub const MAX_THREADS: u32 = 1024;
pub const MAX_TDP_W: f64 = 100_000.0;
pub const MAX_GRAMS_PER_KWH: f64 = 10_000.0;

/// `Err` unless `v` is finite and in `[lo, hi]` (or `(lo, hi]` when `open_low`).
pub fn in_range(
    what: &str,
    v: f64,
    lo: f64,
    hi: f64,
    open_low: bool,
    unit: &str,
) -> Result<(), String> {
    let low_ok = if open_low { v > lo } else { v >= lo };
    if v.is_finite() && low_ok && v <= hi {
        return Ok(());
    }
    Err(format!(
        "{what} = {v} is out of range: it must be {} {lo} and at most {hi}{unit}",
        if open_low { ">" } else { ">=" }
    ))
}

/// `Err` unless the count `v` is in `[lo, hi]`.
pub fn count(what: &str, v: usize, lo: usize, hi: usize) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        return Ok(());
    }
    Err(format!(
        "{what} = {v} is out of range: it must be from {lo} to {hi}"
    ))
}

/// The CPUs this process may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer and size describe `set`.
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ok != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// `0-3,6` style.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use crate::config::Suite;
    use std::path::Path;

    const OK: &str = "[suite]\nname = \"t\"\nrepetitions = 3\n\n\
        [[model]]\nid = \"synthetic:llama-tiny\"\n\n\
        [[profile]]\nname = \"one\"\nthreads = 1\n\n\
        [[workload]]\nname = \"w\"\nprompt_tokens = 16\nnew_tokens = 4\n";

    fn err(text: &str) -> String {
        match Suite::parse(Path::new("s.toml"), text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    /// Every absurd number is a parse error naming the file, line and setting, not a panic or
    /// an 8 GiB allocation later.
    #[test]
    fn absurd_numbers_are_refused_with_their_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("repetitions = 3", "repetitions = 4294967295", "repetitions"),
            (
                "repetitions = 3",
                "repetitions = 3\ntimeout_seconds = inf",
                "timeout_seconds",
            ),
            (
                "repetitions = 3",
                "repetitions = 3\ntimeout_seconds = 1e20",
                "timeout_seconds",
            ),
            (
                "repetitions = 3",
                "repetitions = 3\nidle_seconds = 1e20",
                "idle_seconds",
            ),
            (
                "repetitions = 3",
                "repetitions = 3\ncooldown_seconds = 1e20",
                "cooldown_seconds",
            ),
            (
                "repetitions = 3",
                "repetitions = 3\nwarmup = 4000000000",
                "warmup",
            ),
            (
                "repetitions = 3",
                "repetitions = 3\n\n[meter]\ntdp_w = 1e308",
                "tdp_w",
            ),
            (
                "repetitions = 3",
                "repetitions = 3\n\n[carbon]\ngrams_co2e_per_kwh = inf\nsource = \"x\"",
                "grams_co2e_per_kwh",
            ),
            ("threads = 1", "threads = 100000", "threads"),
            (
                "threads = 1",
                "threads = 1\ncpu_affinity = [4095]",
                "cpu_affinity",
            ),
            ("new_tokens = 4", "new_tokens = 4\nbatch = 1000000", "batch"),
            (
                "prompt_tokens = 16",
                "prompt_tokens = 100000000",
                "prompt_tokens",
            ),
            (
                "new_tokens = 4",
                "new_tokens = 4\nconcurrency = 100000",
                "concurrency",
            ),
        ];
        for (from, to, what) in cases {
            let e = err(&OK.replace(from, to));
            assert!(e.starts_with("s.toml:") && e.contains(what), "{to}: {e}");
        }
        let openai = "[[model]]\nengine = \"openai\"\nmodel = \"m\"\nalias = \"o\"\n\
            base_url = \"http://127.0.0.1:1/v1\"\n";
        for field in ["ready_timeout_s", "request_timeout_s"] {
            let text = format!("{OK}\n{openai}{field} = 1e308\n");
            let e = err(&text);
            assert!(e.contains(field) && e.contains("s.toml:"), "{e}");
        }
    }

    /// Names that would escape folders, break scripts or collide are refused where written.
    #[test]
    fn hostile_and_colliding_names_are_refused() {
        let e = err(&OK.replace("name = \"t\"", "name = \"x\\ntouch pwned\\n#\""));
        assert!(e.contains("s.toml:2:") && e.contains("suite name"), "{e}");
        let e = err(&OK.replace("name = \"one\"", "name = \"a\\u001b[2J\""));
        assert!(e.contains("profile name"), "{e}");
        let two = OK.replace(
            "[[profile]]",
            "[[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"a/b\"\n\n\
             [[model]]\nid = \"synthetic:llama-tiny\"\nalias = \"a_b\"\n\n[[profile]]",
        );
        let e = err(&two);
        assert!(
            e.contains("\"a/b\"") && e.contains("\"a_b\"") && e.contains("a_b"),
            "{e}"
        );
        let e = err(&OK.replace(
            "id = \"synthetic:llama-tiny\"",
            "id = \"synthetic:llama-tiny\"\nalias = \"\"",
        ));
        assert!(e.contains("model name must not be empty"), "{e}");
        // A name with slashes is accepted; its folder form stays inside --out.
        let s = Suite::parse(
            Path::new("s.toml"),
            &OK.replace("name = \"t\"", "name = \"../../escaped\""),
        )
        .unwrap();
        assert_eq!(crate::names::component(&s.name), "_._.._escaped");
    }
}
