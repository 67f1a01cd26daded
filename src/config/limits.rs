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

    /// A suite of `models` aliases, `profiles` and `workloads` names (one line each).
    fn suite_of(models: &[String], profiles: &[String], workloads: &[String]) -> String {
        let mut t = String::from("[suite]\nname = \"t\"\n");
        let q = |s: &str| serde_json::to_string(s).unwrap();
        for m in models {
            t += &format!(
                "[[model]]\nid = \"synthetic:llama-tiny\"\nalias = {}\n",
                q(m)
            );
        }
        for p in profiles {
            t += &format!("[[profile]]\nname = {}\n", q(p));
        }
        for w in workloads {
            t += &format!(
                "[[workload]]\nname = {}\nprompt_tokens = 4\nnew_tokens = 2\n",
                q(w)
            );
        }
        t
    }

    /// Names of different kinds that join into one cell id are refused at the later entry,
    /// naming both cells; so is a load point meeting another workload's name.
    #[test]
    fn cells_whose_ids_coincide_are_refused_naming_both() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = err(&suite_of(
            &v(&["a__b", "a"]),
            &v(&["c", "b__c"]),
            &v(&["w"]),
        ));
        assert!(e.contains("a__b__c__w"), "{e}");
        assert!(e.contains("model \"a__b\" (line 3)"), "{e}");
        assert!(e.contains("model \"a\" (line 6)"), "{e}");
        assert!(e.contains("profile \"b__c\" (line 11)"), "{e}");
        // At the profile (the later entry that differs).
        assert!(e.starts_with("s.toml:11:"), "{e}");
        // The same join through the workload.
        let e = err(&suite_of(
            &v(&["m"]),
            &v(&["p", "p__x"]),
            &v(&["x__w", "w"]),
        ));
        assert!(e.contains("m__p__x__w"), "{e}");
        // A load sweep's point and a workload of that name.
        let mut t = suite_of(&v(&["m"]), &v(&["p"]), &v(&["chat-saturation"]));
        t += "[[workload]]\nname = \"chat\"\nprompt_tokens = 4\nnew_tokens = 2\n\
              concurrency = 2\nrequests = 4\nload = [0.5]\n";
        let e = err(&t);
        assert!(
            e.contains("m__p__chat-saturation") && e.contains("s.toml:12:"),
            "{e}"
        );
        // Distinct ids pass.
        Suite::parse(
            Path::new("s.toml"),
            &suite_of(&v(&["a__b", "a"]), &v(&["c", "d"]), &v(&["w"])),
        )
        .unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Whatever the names, a suite the parser accepts has cells with distinct ids, and a
        /// suite it refuses for an id names a real coincidence.
        #[test]
        fn accepted_suites_have_distinct_cell_ids(
            models in proptest::collection::vec("[ab_/]{1,4}", 1..4),
            profiles in proptest::collection::vec("[ab_/]{1,4}", 1..4),
            workloads in proptest::collection::vec("[ab_/]{1,4}", 1..4),
        ) {
            let text = suite_of(&models, &profiles, &workloads);
            match Suite::parse(Path::new("s.toml"), &text) {
                Ok(s) => {
                    let plan = crate::plan::plan(&s);
                    let mut ids: Vec<&str> = plan.cells.iter().map(|c| c.id.as_str()).collect();
                    ids.extend(plan.skipped.iter().map(|(id, _)| id.as_str()));
                    let n = ids.len();
                    ids.sort_unstable();
                    ids.dedup();
                    proptest::prop_assert_eq!(ids.len(), n, "{}", text);
                    proptest::prop_assert_eq!(n, models.len() * profiles.len() * workloads.len());
                }
                Err(e) => {
                    let e = e.to_string();
                    if e.contains("share the id") {
                        // The refused id really arises from two different triples.
                        let mut seen = std::collections::HashMap::new();
                        let mut clash = false;
                        for m in &models { for p in &profiles { for w in &workloads {
                            let id = crate::names::cell_id(m, p, w);
                            if let Some(t) = seen.insert(id, (m, p, w)) {
                                clash |= t != (m, p, w);
                            }
                        }}}
                        proptest::prop_assert!(clash, "{}", e);
                    } else {
                        // Otherwise two names of one kind met ("a/b" and "a_b").
                        proptest::prop_assert!(e.contains("name"), "{}", e);
                    }
                }
            }
        }
    }
}
