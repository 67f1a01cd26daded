//! Names people choose (suite names, model aliases, profile, workload and baseline names) become
//! folder names, file names and script tokens. One rule for all of them:
//!
//! - A name may not be empty, longer than [`MAX_LEN`] characters, or contain control characters
//!   (newlines, tabs, escape sequences), bidirectional overrides or other invisible format
//!   characters: those are refused where the name is written, with its position.
//! - In a path it is reduced to the safe set: ASCII letters, digits, `.`, `-` and `_`; every other
//!   character becomes `_`, and a leading `.` or `-` becomes `_`, so no name can be `.`, `..`, a
//!   hidden file, an option, or reach outside its parent folder.
//! - Two names of one kind that reduce to the same path form are refused (they would share files).

use std::borrow::Cow;
use std::path::{Component, Path};

/// The longest name accepted, in characters.
pub const MAX_LEN: usize = 100;

/// True for characters that change how text displays without being visible: bidirectional
/// embeddings, overrides and isolates, zero-width characters, and the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{061c}')
}

/// Why `s` cannot be a name of kind `what`, if it cannot.
pub fn check(what: &str, s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if s.chars().count() > MAX_LEN {
        return Err(format!(
            "{what} {:?} is longer than {MAX_LEN} characters",
            terminal(s)
        ));
    }
    if let Some(c) = s.chars().find(|&c| c.is_control() || invisible(c)) {
        return Err(format!(
            "{what} {:?} contains the control or invisible character U+{:04X}; use letters, \
             digits, '.', '-' and '_'",
            terminal(s),
            c as u32
        ));
    }
    Ok(())
}

/// The name as one path component: only `[A-Za-z0-9._-]`, never starting with `.` or `-`.
pub fn component(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(['.', '-']) {
        out.replace_range(..1, "_");
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The id of the cell of model `model`, profile `profile` and workload `workload`: a folder and
/// file name (`<model>__<profile>__<workload>`, each in its path form). The suite parser refuses
/// two cells with one id.
pub fn cell_id(model: &str, profile: &str, workload: &str) -> String {
    format!(
        "{}__{}__{}",
        component(model),
        component(profile),
        component(workload)
    )
}

/// True when `s` is already its own path component (baseline names typed on the command line
/// must be, rather than be silently renamed).
pub fn is_component(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= MAX_LEN && component(s) == s
}

/// `child` joined to `parent`, refused when `child` is absolute or climbs out of `parent`.
pub fn inside(parent: &Path, child: &str) -> Result<std::path::PathBuf, String> {
    let p = Path::new(child);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "{:?} would resolve outside {}",
            terminal(child),
            parent.display()
        ));
    }
    Ok(parent.join(p))
}

/// Text safe to print on a terminal: control and invisible characters are shown escaped
/// (`\n`, `\u{1b}`, `\u{202e}`) instead of acting on the terminal.
pub fn terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || invisible(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || invisible(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Like [`terminal`] for multi-line text: newlines and tabs stay, every other control or
/// invisible character is shown escaped.
pub fn terminal_text(s: &str) -> Cow<'_, str> {
    if !s
        .chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || invisible(c))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for line in s.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        for part in body.split('\t').enumerate() {
            if part.0 > 0 {
                out.push('\t');
            }
            out.push_str(&terminal(part.1));
        }
        out.push_str(nl);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names_are_refused_or_made_harmless() {
        assert!(check("suite name", "x\ntouch pwned\n#").is_err());
        assert!(check("suite name", "a\u{1b}[31mred").is_err());
        assert!(check("suite name", "abc\u{202e}txt.exe").is_err());
        assert!(check("suite name", "").is_err());
        assert!(check("suite name", &"a".repeat(101)).is_err());
        assert!(check("suite name", "ok name (v2)").is_ok());
        assert_eq!(component("../../escaped"), "_._.._escaped");
        assert_eq!(component("/etc/passwd"), "_etc_passwd");
        assert_eq!(component(".."), "_.");
        assert_eq!(component("-rf"), "_rf");
        assert_eq!(component("a/b"), "a_b");
        assert_eq!(component(""), "_");
        assert!(!is_component(".."));
        assert!(is_component("nightly-2026.12"));
        assert!(inside(Path::new("/b"), "../x").is_err());
        assert!(inside(Path::new("/b"), "/etc").is_err());
        assert_eq!(inside(Path::new("/b"), "x").unwrap(), Path::new("/b/x"));
        assert_eq!(terminal("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(terminal_text("a\u{1b}[2Jb\n\tc\r"), "a\\u{1b}[2Jb\n\tc\\r");
    }

    proptest! {
        #[test]
        fn a_component_never_leaves_its_folder(s in "\\PC{0,40}") {
            let c = component(&s);
            prop_assert!(!c.is_empty() && c != "." && c != "..");
            prop_assert!(!c.contains('/') && !c.starts_with('.') && !c.starts_with('-'));
            let p = Path::new("/base").join(&c);
            prop_assert_eq!(p.parent(), Some(Path::new("/base")));
        }
    }
}
