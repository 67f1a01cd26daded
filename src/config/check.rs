//! One check per section of a suite file, each range checked once (with the bounds in
//! `limits`), every error at the line of the value or entry it is about.

use super::limits::{self, count, in_range};
use super::model::RawModel;
use super::sections::{Carbon, MeterSection, Profile, RawSuite, Sources, SuiteSection};
use super::workload::{Workload, WorkloadKind};
use super::{ConfigError, Locator, ModelEntry};
use crate::meter::select::MeterChoice;
use std::collections::HashMap;
use std::path::Path;
use toml::Spanned;

/// `[suite]`: its name (checked as a file name) and every number in range.
pub(super) fn suite_section(s: &SuiteSection, at: &Locator) -> Result<String, ConfigError> {
    let name = s.name.get_ref().trim().to_string();
    crate::names::check("suite name", &name).map_err(|e| at.err(s.name.span(), e))?;
    count(
        "repetitions",
        *s.repetitions.get_ref() as usize,
        1,
        limits::MAX_REPETITIONS as usize,
    )
    .map_err(|e| at.err(s.repetitions.span(), e))?;
    count(
        "warmup",
        *s.warmup.get_ref() as usize,
        0,
        limits::MAX_WARMUP as usize,
    )
    .map_err(|e| at.err(s.warmup.span(), e))?;
    let week = limits::WEEK_S;
    for (v, what, hi, open) in [
        (&s.idle_seconds, "idle_seconds", week, false),
        (&s.cooldown_seconds, "cooldown_seconds", week, false),
        (&s.min_window_ms, "min_window_ms", week * 1e3, false),
        (&s.min_steady_s, "min_steady_s", week, false),
        (&s.timeout_seconds, "timeout_seconds", week, true),
    ] {
        in_range(what, *v.get_ref(), 0.0, hi, open, "").map_err(|e| at.err(v.span(), e))?;
    }
    Ok(name)
}

/// `[meter]`: the sources (and whether `"auto"` was written, which allows a labelled fallback
/// when a sensor is lost mid-suite), the sampling interval, the TDP.
pub(super) fn meter(m: &MeterSection, at: &Locator) -> Result<(MeterChoice, bool), ConfigError> {
    let sources = match m.sources.get_ref() {
        Sources::One(s) => s.clone(),
        Sources::List(v) => v.join(","),
    };
    let meter = MeterChoice::parse(&sources).map_err(|e| at.err(m.sources.span(), e))?;
    // Written in the file (a default has an empty span).
    let auto_fallback = meter == MeterChoice::Auto && !m.sources.span().is_empty();
    if !(0.1..=60_000.0).contains(m.interval_ms.get_ref()) {
        return Err(at.err(
            m.interval_ms.span(),
            "interval_ms must be between 0.1 and 60000".into(),
        ));
    }
    if let Some(t) = &m.tdp_w {
        in_range("tdp_w", *t.get_ref(), 0.0, limits::MAX_TDP_W, true, " W")
            .map_err(|e| at.err(t.span(), e))?;
    }
    Ok((meter, auto_fallback))
}

/// At least one model, profile and workload.
pub(super) fn present(raw: &RawSuite, at: &Locator) -> Result<(), ConfigError> {
    if raw.models.is_empty() {
        return Err(at.err(
            0..0,
            "no [[model]]: add at least one (id = \"smollm2-135m-instruct-q4_1\")".into(),
        ));
    }
    if raw.profiles.is_empty() {
        return Err(at.err(
            0..0,
            "no [[profile]]: add at least one (name = \"cpu-2t\", threads = 2)".into(),
        ));
    }
    if raw.workloads.is_empty() {
        return Err(at.err(
            0..0,
            "no [[workload]]: add at least one (name = \"chat\", prompt_tokens = 64, \
             new_tokens = 32)"
                .into(),
        ));
    }
    Ok(())
}

/// The names seen so far, by kind and file-name form. Names become file names: refused when
/// unprintable, and when two of a kind share a path form ("a/b" and "a_b" both become "a_b").
#[derive(Default)]
pub(super) struct Names {
    seen: HashMap<(&'static str, String), (String, usize)>,
}

impl Names {
    fn add(
        &mut self,
        kind: &'static str,
        n: &str,
        span: std::ops::Range<usize>,
        at: &Locator,
    ) -> Result<(), ConfigError> {
        crate::names::check(&format!("{kind} name"), n).map_err(|e| at.err(span.clone(), e))?;
        let key = (kind, crate::names::component(n));
        if let Some((first, first_line)) = self.seen.get(&key) {
            let why = if first == n {
                format!("{kind} name {n:?} is used twice (line {first_line} and here)")
            } else {
                format!(
                    "{kind} names {:?} (line {first_line}) and {:?} both become {:?} in file names",
                    crate::names::terminal(first),
                    crate::names::terminal(n),
                    key.1
                )
            };
            let hint = if kind == "model" {
                " (alias = ...)"
            } else {
                ""
            };
            return Err(at.err(span, format!("{why}; rename one{hint}")));
        }
        let line = at.line(&span);
        self.seen.insert(key, (n.to_string(), line));
        Ok(())
    }
}

/// `[[model]]` entries, each validated into its engine's form.
pub(super) fn models(
    raw: &[Spanned<RawModel>],
    base: &Path,
    names: &mut Names,
    at: &Locator,
) -> Result<Vec<ModelEntry>, ConfigError> {
    let mut out = Vec::new();
    for m in raw {
        let e = m
            .get_ref()
            .clone()
            .validate(base)
            .map_err(|msg| at.err(m.span(), msg))?;
        names.add("model", &e.name(), m.span(), at)?;
        out.push(e);
    }
    Ok(out)
}

/// `[[profile]]` entries: threads, CPUs this process may use, a known device.
pub(super) fn profiles(
    raw: &[Spanned<Profile>],
    names: &mut Names,
    at: &Locator,
) -> Result<Vec<Profile>, ConfigError> {
    let cpus = limits::allowed_cpus();
    let mut out = Vec::new();
    for p in raw {
        let pr = p.get_ref().clone();
        names.add("profile", &pr.name, p.span(), at)?;
        if let Some(t) = pr.threads {
            count("threads", t as usize, 1, limits::MAX_THREADS as usize)
                .map_err(|e| at.err(p.span(), e))?;
        }
        if let Some(a) = &pr.cpu_affinity {
            if a.is_empty() {
                return Err(at.err(p.span(), "cpu_affinity must list at least one CPU".into()));
            }
            if let Some(bad) = a.iter().find(|c| !cpus.contains(c)) {
                return Err(at.err(
                    p.span(),
                    format!(
                        "cpu_affinity names CPU {bad}, which this process cannot use (it may \
                         use {})",
                        limits::cpu_list(&cpus)
                    ),
                ));
            }
        }
        if !(pr.device == "cpu" || pr.device.starts_with("cuda") || pr.device == "metal") {
            return Err(at.err(
                p.span(),
                format!("device {:?}: use cpu, cuda:N or metal", pr.device),
            ));
        }
        out.push(pr);
    }
    Ok(out)
}

/// `[[workload]]` entries: counts in range, then each combination of settings.
pub(super) fn workloads(
    raw: &[Spanned<Workload>],
    names: &mut Names,
    at: &Locator,
) -> Result<Vec<Workload>, ConfigError> {
    let mut out = Vec::new();
    for w in raw {
        let wl = w.get_ref().clone();
        names.add("workload", &wl.name, w.span(), at)?;
        workload(&wl).map_err(|e| at.err(w.span(), e))?;
        out.push(wl);
    }
    Ok(out)
}

/// Every cell's id (`<model>__<profile>__<workload>`, a folder and file name) is unique: names
/// of different kinds can join into one id ("a__b" × "c" and "a" × "b__c"), and a workload's
/// load points ("chat-saturation") can meet another workload's name. Refused at the later
/// entry, naming both cells and their lines.
pub(super) fn cell_ids(
    models: (&[ModelEntry], &[Spanned<RawModel>]),
    profiles: (&[Profile], &[Spanned<Profile>]),
    workloads: (&[Workload], &[Spanned<Workload>]),
    at: &Locator,
) -> Result<(), ConfigError> {
    // Id -> (model, profile, workload) positions of the first cell that has it.
    let mut seen: HashMap<String, [usize; 3]> = HashMap::new();
    let spans = [
        models.1.iter().map(|m| m.span()).collect::<Vec<_>>(),
        profiles.1.iter().map(|p| p.span()).collect(),
        workloads.1.iter().map(|w| w.span()).collect(),
    ];
    let say = |c: [usize; 3], wname: &str| {
        format!(
            "model {:?} (line {}) × profile {:?} (line {}) × workload {:?} (line {})",
            crate::names::terminal(&models.0[c[0]].name()),
            at.line(&spans[0][c[0]]),
            crate::names::terminal(&profiles.0[c[1]].name),
            at.line(&spans[1][c[1]]),
            crate::names::terminal(wname),
            at.line(&spans[2][c[2]]),
        )
    };
    for (mi, m) in models.0.iter().enumerate() {
        for (pi, p) in profiles.0.iter().enumerate() {
            for (wi, w) in workloads.0.iter().enumerate() {
                for point in super::load_points(w) {
                    let id = crate::names::cell_id(&m.name(), &p.name, &point.name);
                    let here = [mi, pi, wi];
                    let Some(&first) = seen.get(&id) else {
                        seen.insert(id, here);
                        continue;
                    };
                    if first == here {
                        // Two load points of one workload: its own names differ by suffix.
                        continue;
                    }
                    let first_w = super::load_points(&workloads.0[first[2]])
                        .into_iter()
                        .map(|p| p.name)
                        .find(|n| {
                            crate::names::cell_id(
                                &models.0[first[0]].name(),
                                &profiles.0[first[1]].name,
                                n,
                            ) == id
                        })
                        .unwrap_or_else(|| workloads.0[first[2]].name.clone());
                    // At the later of the entries that differ.
                    let k = (0..3).rev().find(|&k| first[k] != here[k]).unwrap_or(2);
                    return Err(at.err(
                        spans[k][here[k]].clone(),
                        format!(
                            "two cells would share the id {:?} (its log, trace and records): \
                             {} and {}; rename one so the joined names differ",
                            crate::names::terminal(&id),
                            say(first, &first_w),
                            say(here, &point.name),
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What is wrong with one workload, if anything.
fn workload(w: &Workload) -> Result<(), String> {
    count("prompt_tokens", w.prompt_tokens, 0, limits::MAX_TOKENS)?;
    count("new_tokens", w.new_tokens, 0, limits::MAX_TOKENS)?;
    count("batch", w.batch, 1, limits::MAX_BATCH)?;
    count("concurrency", w.concurrency, 1, limits::MAX_CONCURRENCY)?;
    if let Some(r) = w.requests {
        count("requests", r, 1, limits::MAX_REQUESTS)?;
    }
    if let Some(why) = w.eval_problem().or_else(|| w.length_problem()) {
        return Err(why);
    }
    if let Some(r) = w.requests.filter(|r| *r < w.concurrency) {
        return Err(format!(
            "requests ({r}) must be at least concurrency ({}): every stream needs a request",
            w.concurrency
        ));
    }
    if let Some(why) = w.load_problem().or_else(|| w.arrival_problem()) {
        return Err(why);
    }
    if w.kind == WorkloadKind::Generate
        && w.new_tokens == 0
        && w.lengths.is_none_or(|l| l.output.is_none())
    {
        return Err("a generate workload needs new_tokens >= 1 (or lengths.output)".into());
    }
    Ok(())
}

/// `[carbon]`: a grid intensity in range and where it comes from.
pub(super) fn carbon(
    c: Option<Spanned<Carbon>>,
    at: &Locator,
) -> Result<Option<Carbon>, ConfigError> {
    let Some(c) = c else { return Ok(None) };
    in_range(
        "grams_co2e_per_kwh",
        c.get_ref().grams_co2e_per_kwh,
        0.0,
        limits::MAX_GRAMS_PER_KWH,
        false,
        "",
    )
    .map_err(|e| at.err(c.span(), e))?;
    if c.get_ref().source.trim().is_empty() {
        return Err(at.err(c.span(), "carbon needs a source".into()));
    }
    Ok(Some(c.into_inner()))
}

/// Every file a run would load is there: model paths (and ids written as paths), Hugging Face
/// ids (without the `hub` feature they load from the local hub cache only) and data set files.
/// Checked when a suite file is loaded to run, so `--dry-run` names a missing file at its line
/// instead of a cell failing on it later. Registered ids are fetched on first use and need no
/// file yet.
pub(super) fn files(
    models: (&[ModelEntry], &[Spanned<RawModel>]),
    workloads: (&[Workload], &[Spanned<Workload>]),
    base: &Path,
    at: &Locator,
) -> Result<(), ConfigError> {
    use crate::engine::spec::Weights;
    use crate::store::{hub, registry};
    for (m, raw) in models.0.iter().zip(models.1) {
        let path = match m.engine.weights() {
            Some(Weights::Path(p)) => p.clone(),
            Some(Weights::Id(id)) => {
                if let Some(Ok(h)) = hub::HubId::parse(id) {
                    if !cfg!(feature = "hub") {
                        hub::resolve(&h, false, hub::Freshness::CacheFirst, &mut |_| {})
                            .map_err(|e| at.err(raw.span(), format!("model {id:?}: {e}")))?;
                    }
                    continue;
                }
                if registry::lookup(id).is_some() || id.starts_with("synthetic:") {
                    continue;
                }
                // An id written as a path is read as one, from the working folder.
                std::path::PathBuf::from(id)
            }
            None => continue,
        };
        if !path.exists() {
            return Err(at.err(
                raw.span(),
                format!(
                    "model file {} does not exist: fix the path (relative paths are read from \
                     the suite's folder), or use a registered id (`joulebench models list`)",
                    path.display()
                ),
            ));
        }
    }
    for (w, raw) in workloads.0.iter().zip(workloads.1) {
        let Some(d) = &w.dataset else { continue };
        if registry::dataset(d).is_some() {
            continue;
        }
        let path = base.join(d);
        if !path.is_file() {
            return Err(at.err(
                raw.span(),
                format!(
                    "dataset file {} does not exist: fix the path (read from the suite's folder), \
                     or use a registered data set (sharegpt)",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}
