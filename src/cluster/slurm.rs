//! `joulebench slurm`: a Slurm job array whose task I runs shard I/N of a suite on a node of its
//! own, and a merge job that runs after the array whatever its outcome (`afterany`), so a failed
//! shard still gets its cells reported as missing. The scripts are pure text from a [`SlurmJobSpec`];
//! submitting goes through `sbatch`.

use anyhow::{Context, Result, bail};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Everything the scripts need; paths are absolute (jobs start on other nodes).
#[derive(Debug, Clone)]
pub struct SlurmJobSpec {
    pub suite: String,
    pub config_hash: String,
    pub config: PathBuf,
    pub exe: PathBuf,
    /// Folder of the scripts, logs, shard runs (job-<array id>/shards) and merged run.
    pub job_dir: PathBuf,
    pub workdir: PathBuf,
    pub shards: u32,
    pub plan_cells: usize,
    pub partition: Option<String>,
    pub time: Option<String>,
    pub gpus_per_task: Option<u32>,
    pub shared: bool,
    pub extra: Vec<String>,
}

/// Quotes a word for bash.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Refuses option values that would break out of an `#SBATCH` line.
pub fn check_option(what: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("{what} {v:?} is empty or has spaces or control characters");
    }
    Ok(())
}

/// Refuses paths that an `#SBATCH` line cannot carry as one word (whitespace, quotes,
/// backslashes, control characters) or that Slurm would expand (`%`).
pub fn check_path(what: &str, p: &Path) -> Result<()> {
    let s = p.to_string_lossy();
    if let Some(c) = s
        .chars()
        .find(|&c| c.is_control() || c.is_whitespace() || "%'\"\\".contains(c))
    {
        bail!(
            "{what} {:?} has {:?}, which an #SBATCH line cannot carry; use a folder without \
             spaces, quotes, '%' or control characters (--out DIR)",
            crate::names::terminal(&s),
            c
        );
    }
    Ok(())
}

impl SlurmJobSpec {
    /// Checks every value the scripts interpolate outside a quoted shell word.
    pub fn check(&self) -> Result<()> {
        check_path("the job folder", &self.job_dir)?;
        check_path("the working folder", &self.workdir)?;
        for (what, v) in [("--partition", &self.partition), ("--time", &self.time)] {
            if let Some(v) = v {
                check_option(what, v)?;
            }
        }
        for e in &self.extra {
            if !e.starts_with('-') || e.chars().any(char::is_control) {
                bail!("--sbatch-arg {e:?} is not an sbatch option (like --account=lab)");
            }
        }
        for (what, p) in [("the suite file", &self.config), ("the binary", &self.exe)] {
            let s = p.to_string_lossy();
            if s.chars().any(char::is_control) {
                bail!(
                    "{what} {:?} has control characters",
                    crate::names::terminal(&s)
                );
            }
        }
        Ok(())
    }
}

fn common_header(s: &mut String, spec: &SlurmJobSpec) {
    if let Some(p) = &spec.partition {
        let _ = writeln!(s, "#SBATCH --partition={p}");
    }
    if let Some(t) = &spec.time {
        let _ = writeln!(s, "#SBATCH --time={t}");
    }
    let _ = writeln!(s, "#SBATCH --chdir={}", spec.workdir.display());
    for e in &spec.extra {
        let _ = writeln!(s, "#SBATCH {e}");
    }
}

/// The array job: task I runs shard I/N into job-<array id>/shards.
pub fn array_script(spec: &SlurmJobSpec) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(
        s,
        "# joulebench {}: suite {:?} (config sha256 {}), {} cells in {} shards.\n\
         # Task I runs the cells whose plan index is I modulo {}.",
        env!("CARGO_PKG_VERSION"),
        crate::names::terminal(&spec.suite),
        spec.config_hash,
        spec.plan_cells,
        spec.shards,
        spec.shards
    );
    let _ = writeln!(
        s,
        "#SBATCH --job-name=jb-{}",
        crate::names::component(&spec.suite)
    );
    let _ = writeln!(s, "#SBATCH --array=0-{}", spec.shards - 1);
    s.push_str("#SBATCH --nodes=1\n#SBATCH --ntasks=1\n");
    if spec.shared {
        s.push_str(
            "# --shared: no --exclusive; RAPL meters the whole node, so records are marked as\n\
             # sharing it (their energy may include other jobs).\n",
        );
    } else {
        s.push_str(
            "# RAPL meters the whole node: each shard holds its node alone, or shards would bill\n\
             # each other's energy.\n#SBATCH --exclusive\n",
        );
    }
    if let Some(g) = spec.gpus_per_task {
        let _ = writeln!(s, "#SBATCH --gpus-per-task={g}");
    }
    let _ = writeln!(
        s,
        "#SBATCH --output={}/logs/shard-%A_%a.out",
        spec.job_dir.display()
    );
    common_header(&mut s, spec);
    let _ = write!(
        s,
        "set -euo pipefail\n\
         JOB_DIR={}\n\
         SHARDS=\"$JOB_DIR/job-$SLURM_ARRAY_JOB_ID/shards\"\n\
         mkdir -p \"$SHARDS\"\n\
         exec {} run {} --shard \"$SLURM_ARRAY_TASK_ID/{}\" --out \"$SHARDS\"{}\n",
        sh_quote(&spec.job_dir.to_string_lossy()),
        sh_quote(&spec.exe.to_string_lossy()),
        sh_quote(&spec.config.to_string_lossy()),
        spec.shards,
        if spec.shared { " --node-shared" } else { "" }
    );
    s
}

/// The merge job: merges whatever shards produced (missing cells are listed in the report).
pub fn merge_script(spec: &SlurmJobSpec) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(
        s,
        "# joulebench: merges the shards of suite {:?} after the array job, whatever its outcome.\n\
         # Submit with --dependency=afterany:ARRAY --export=ALL,JOULEBENCH_ARRAY_JOB=ARRAY.",
        crate::names::terminal(&spec.suite)
    );
    let _ = writeln!(
        s,
        "#SBATCH --job-name=jb-{}-merge",
        crate::names::component(&spec.suite)
    );
    s.push_str("#SBATCH --nodes=1\n#SBATCH --ntasks=1\n");
    let _ = writeln!(
        s,
        "#SBATCH --output={}/logs/merge-%j.out",
        spec.job_dir.display()
    );
    common_header(&mut s, spec);
    let _ = write!(
        s,
        "set -euo pipefail\n\
         JOB_DIR={}\n\
         RUN=\"$JOB_DIR/job-${{JOULEBENCH_ARRAY_JOB:?set JOULEBENCH_ARRAY_JOB to the array job id}}\"\n\
         shopt -s nullglob\n\
         parts=(\"$RUN\"/shards/*/)\n\
         if [ ${{#parts[@]}} -eq 0 ]; then\n  \
           echo \"no shard produced a run folder; see $JOB_DIR/logs\" >&2\n  \
           exit 1\n\
         fi\n\
         exec {} merge \"${{parts[@]}}\" --out \"$RUN/merged\" --allow-partial\n",
        sh_quote(&spec.job_dir.to_string_lossy()),
        sh_quote(&spec.exe.to_string_lossy()),
    );
    s
}

/// A script that submits both jobs the way `--submit` does.
pub fn submit_script(spec: &SlurmJobSpec) -> String {
    format!(
        "#!/bin/bash\n\
         # Submits the shard array, then the merge job after it (afterany).\n\
         set -euo pipefail\n\
         cd {dir}\n\
         array=$(sbatch --parsable shards.sbatch)\n\
         array=${{array%%;*}}\n\
         merge=$(sbatch --parsable --dependency=afterany:$array \
         --export=ALL,JOULEBENCH_ARRAY_JOB=$array merge.sbatch)\n\
         merge=${{merge%%;*}}\n\
         echo \"array job $array, merge job $merge; merged run: \"{dir}\"/job-$array/merged\"\n",
        dir = sh_quote(&spec.job_dir.to_string_lossy())
    )
}

/// Writes shards.sbatch, merge.sbatch and submit.sh into the job folder.
pub fn write_scripts(spec: &SlurmJobSpec) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    spec.check()?;
    std::fs::create_dir_all(spec.job_dir.join("logs"))
        .with_context(|| format!("cannot create {}", spec.job_dir.display()))?;
    for (name, text) in [
        ("shards.sbatch", array_script(spec)),
        ("merge.sbatch", merge_script(spec)),
        ("submit.sh", submit_script(spec)),
    ] {
        let path = spec.job_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(())
}

/// The job id from `sbatch --parsable` (`id` or `id;cluster`).
pub fn parse_job_id(out: &str) -> Option<String> {
    let id = out.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

fn sbatch(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("sbatch")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run sbatch ({e}): run this on a Slurm submit node, or copy {} there and \
                 run submit.sh",
                dir.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "sbatch {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_job_id(&text).with_context(|| format!("sbatch printed no job id: {text:?}"))
}

/// Submits the array, then the merge job depending on it; returns both job ids.
pub fn submit(spec: &SlurmJobSpec) -> Result<(String, String)> {
    let array = sbatch(&spec.job_dir, &["--parsable", "shards.sbatch"])?;
    let dep = format!("--dependency=afterany:{array}");
    let export = format!("--export=ALL,JOULEBENCH_ARRAY_JOB={array}");
    let merge = sbatch(
        &spec.job_dir,
        &["--parsable", &dep, &export, "merge.sbatch"],
    )
    .with_context(|| format!("the array job {array} is submitted but the merge job is not"))?;
    Ok((array, merge))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shared: bool) -> SlurmJobSpec {
        SlurmJobSpec {
            suite: "s".into(),
            config_hash: "ab".into(),
            config: "/w/my suite.toml".into(),
            exe: "/opt/jb/joulebench".into(),
            job_dir: "/w/reports/slurm-s".into(),
            workdir: "/w".into(),
            shards: 4,
            plan_cells: 10,
            partition: Some("cpu".into()),
            time: Some("1:00:00".into()),
            gpus_per_task: Some(1),
            shared,
            extra: vec!["--account=lab".into()],
        }
    }

    #[test]
    fn array_script_runs_one_shard_per_task_on_its_own_node() {
        let s = array_script(&spec(false));
        assert!(s.contains("#SBATCH --array=0-3\n"));
        assert!(s.contains("#SBATCH --exclusive\n"));
        assert!(s.contains("#SBATCH --partition=cpu\n"));
        assert!(s.contains("#SBATCH --gpus-per-task=1\n"));
        assert!(s.contains("#SBATCH --account=lab\n"));
        assert!(s.contains("run '/w/my suite.toml' --shard \"$SLURM_ARRAY_TASK_ID/4\""));
        assert!(!s.contains("--node-shared"));
        let sh = array_script(&spec(true));
        assert!(!sh.contains("#SBATCH --exclusive"));
        assert!(sh.contains("--node-shared"));
    }

    #[test]
    fn merge_script_accepts_partial_results() {
        let s = merge_script(&spec(false));
        assert!(s.contains("merge \"${parts[@]}\" --out \"$RUN/merged\" --allow-partial"));
        assert!(!s.contains("--array"));
        assert!(submit_script(&spec(false)).contains("--dependency=afterany:$array"));
    }

    /// Hostile names and paths: `bash -n` accepts the scripts, and running their bodies (with a
    /// stand-in for joulebench that records its arguments) runs nothing else and passes every
    /// value through unchanged.
    #[test]
    fn hostile_values_run_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let exe = root.join("fake jb $(touch pwned-exe)");
        std::fs::write(
            &exe,
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$ARGS_OUT\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = root.join("s'; touch pwned-config; '$(touch pwned-sub)`touch pwned-bt`.toml");
        // The job folder's name reaches every generated file, submit.sh's message included.
        let job_dir = root.join("job$(touch${IFS}pwned-dir)`touch${IFS}pwned-dirbt`");
        let mut sp = spec(false);
        sp.suite = "x;touch pwned-name;$(touch pwned-name2)".into();
        sp.exe = exe;
        sp.config = config.clone();
        sp.job_dir = job_dir.clone();
        sp.workdir = root.to_path_buf();
        sp.partition = None;
        sp.extra.clear();
        sp.check().unwrap();
        write_scripts(&sp).unwrap();
        for f in ["shards.sbatch", "merge.sbatch", "submit.sh"] {
            let st = Command::new("bash")
                .arg("-n")
                .arg(job_dir.join(f))
                .status()
                .unwrap();
            assert!(st.success(), "bash -n {f}");
        }
        let args_out = root.join("args.txt");
        let st = Command::new("bash")
            .arg(job_dir.join("shards.sbatch"))
            .current_dir(root)
            .env("SLURM_ARRAY_JOB_ID", "7")
            .env("SLURM_ARRAY_TASK_ID", "0")
            .env("ARGS_OUT", &args_out)
            .status()
            .unwrap();
        assert!(st.success());
        let args = std::fs::read_to_string(&args_out).unwrap();
        let lines: Vec<&str> = args.lines().collect();
        assert_eq!(lines[0], "run");
        assert_eq!(lines[1], config.to_string_lossy());
        std::fs::create_dir_all(job_dir.join("job-7/shards/part-0")).unwrap();
        let st = Command::new("bash")
            .arg(job_dir.join("merge.sbatch"))
            .current_dir(root)
            .env("JOULEBENCH_ARRAY_JOB", "7")
            .env("ARGS_OUT", &args_out)
            .status()
            .unwrap();
        assert!(st.success());
        assert!(
            std::fs::read_to_string(&args_out)
                .unwrap()
                .starts_with("merge\n")
        );
        // submit.sh with an sbatch that answers job ids: its message names the folder as it is.
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("sbatch"), "#!/bin/sh\necho 7\n").unwrap();
        std::fs::set_permissions(bin.join("sbatch"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let out = Command::new("bash")
            .arg(job_dir.join("submit.sh"))
            .current_dir(root)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("{}/job-7/merged", job_dir.display())),
            "{said}"
        );
        // Nothing ran: no file of the injected commands where the scripts run or cd to.
        let stray: Vec<String> = [root, job_dir.as_path()]
            .iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap().filter_map(Result::ok))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("pwned"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
        let script = std::fs::read_to_string(job_dir.join("shards.sbatch")).unwrap();
        assert!(script.contains("#SBATCH --job-name=jb-x_touch_pwned-name___touch_pwned-name2_\n"));
        // A job folder an #SBATCH line cannot carry is refused, not written.
        sp.job_dir = root.join("with space");
        assert!(sp.check().is_err());
        sp.job_dir = root.join("pct%j");
        assert!(sp.check().is_err());
    }

    #[test]
    fn quoting_and_ids() {
        assert_eq!(sh_quote("a'b c"), r"'a'\''b c'");
        assert_eq!(sh_quote("/x/y.toml"), "/x/y.toml");
        assert_eq!(parse_job_id("123;cluster\n"), Some("123".into()));
        assert_eq!(parse_job_id("42\n"), Some("42".into()));
        assert_eq!(parse_job_id("Submitted batch job 7"), None);
        assert!(check_option("--time", "1:00 ; rm").is_err());
        assert!(check_option("--time", "1:00:00").is_ok());
    }
}
