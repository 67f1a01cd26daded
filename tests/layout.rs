//! README's layout table against the source: every folder of `src/` and every file at its top
//! is in the table, and every path the table names exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The backticked `src/...` and `tests/...` paths in README's "How the code is laid out".
fn listed() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme
        .find("## How the code is laid out")
        .expect("README has the layout section");
    let section = &readme[start..];
    let section = match section[3..].find("\n## ") {
        Some(end) => &section[..end + 3],
        None => section,
    };
    section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.starts_with("src/") || t.starts_with("tests/"))
        .map(str::to_string)
        .collect()
}

/// Every folder below `src/` (as `src/a/b/`) and every file directly in `src/`.
fn modules() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let src = root().join("src");
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("src readable").flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root()).expect("below the root");
            let rel = rel.to_string_lossy().replace('\\', "/");
            if p.is_dir() {
                out.insert(format!("{rel}/"));
                stack.push(p);
            } else if d == src && rel.ends_with(".rs") {
                out.insert(rel);
            }
        }
    }
    out
}

#[test]
fn every_module_is_in_the_readme_layout_and_every_listed_path_exists() {
    let listed = listed();
    let missing: Vec<String> = modules()
        .into_iter()
        .filter(|m| !listed.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "README's layout table lacks {missing:?}: add a row (or the path to a row) under \
         \"How the code is laid out\""
    );
    let gone: Vec<&String> = listed
        .iter()
        .filter(|p| !Path::new(&root().join(p.trim_end_matches('/'))).exists())
        .collect();
    assert!(
        gone.is_empty(),
        "README's layout table names {gone:?}, which do not exist"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// README's table of contents, right after the two commands, links every section in order,
/// and every link lands on a heading.
#[test]
fn the_readme_contents_list_every_section() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme
        .find("## Contents")
        .expect("README has a Contents section");
    let first_section = readme[start + 3..]
        .find("\n## ")
        .map(|i| start + 3 + i)
        .expect("sections after the contents");
    assert!(
        readme[..start].contains("cargo test --release"),
        "the contents come after the two commands"
    );
    let links: Vec<(String, String)> = readme[start..first_section]
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("- [")?;
            let (text, rest) = l.split_once("](#")?;
            Some((text.to_string(), rest.trim_end_matches(')').to_string()))
        })
        .collect();
    let headings: Vec<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter(|h| *h != "Contents")
        .map(str::to_string)
        .collect();
    let listed: Vec<&String> = links.iter().map(|(t, _)| t).collect();
    assert_eq!(
        listed,
        headings.iter().collect::<Vec<_>>(),
        "README's contents and its sections differ"
    );
    for (text, target) in &links {
        assert_eq!(*target, anchor(text), "the link of {text:?}");
    }
}
