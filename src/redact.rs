//! Secrets never reach a file or a terminal. Every path that stores or prints text from outside
//! (HTTP error bodies, SSE error events, server and command logs, a cell's stderr, error
//! messages) passes it through [`text`] first, which replaces
//!
//! - the value of every key joulebench was given (registered with [`register`] when it is read
//!   from its environment variable), wherever it appears, and
//! - the value after any `Authorization`, `Proxy-Authorization`, `api-key`, `x-api-key` or
//!   `api_key` header or field name, and any `Bearer` token, whoever's key it is,
//!
//! with `[redacted]`. The scan works on raw text and on JSON-escaped text alike.

use std::borrow::Cow;
use std::sync::RwLock;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Header and field names whose values are secrets (compared ignoring case).
const SECRET_NAMES: &[&str] = &[
    "proxy-authorization",
    "authorization",
    "x-api-key",
    "api-key",
    "api_key",
    "apikey",
];

/// Words that introduce a credential after a header name.
const SCHEMES: &[&str] = &["bearer", "basic", "token", "digest"];

/// Remembers `secret` so that every later [`text`] call removes it. Values shorter than four
/// characters are not registered (they would redact ordinary words); they are still caught
/// after a header name.
pub fn register(secret: &str) {
    let s = secret.trim();
    if s.chars().count() < 4 {
        return;
    }
    let mut v = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
        // Longest first, so a key that contains another is removed whole.
        v.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

/// Reads the environment variable `var` and registers its value; returns it.
pub fn register_env(var: &str) -> Option<String> {
    let v = std::env::var(var).ok()?;
    register(&v);
    Some(v)
}

/// Copies a child process's output into `log`, a line (or 64 KiB) at a time, redacted; ends
/// when the child closes its end.
pub fn copy_to_log(
    from: impl std::io::Read + Send + 'static,
    mut log: std::fs::File,
) -> std::thread::JoinHandle<()> {
    use std::io::{BufRead, Read, Write};
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match Read::by_ref(&mut r)
                .take(64 * 1024)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    if log.write_all(text(&line).as_bytes()).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = log.flush();
    })
}

/// A character that ends a credential token.
fn ends_token(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '\\' | ',' | ';' | '}' | ']' | ')' | '<' | '>' | '&'
        )
}

/// `s` with every secret replaced by [`REDACTED`].
pub fn text(s: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut out: Cow<'_, str> = Cow::Borrowed(s);
    for k in secrets.iter() {
        if out.contains(k.as_str()) {
            out = Cow::Owned(out.replace(k.as_str(), REDACTED));
        }
    }
    drop(secrets);
    match scrub_headers(&out) {
        Some(scrubbed) => Cow::Owned(scrubbed),
        None => out,
    }
}

/// Replaces header values and bearer tokens; None when there was nothing to replace.
fn scrub_headers(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    // Of the scheme words only "bearer" is looked for on its own ("token" and "basic" are
    // ordinary words); after a header name any scheme is skipped.
    for name in SECRET_NAMES.iter().chain(&["bearer"]) {
        let mut from = 0;
        while let Some(i) = lower[from..].find(name) {
            let start = from + i;
            from = start + name.len();
            // A whole word: not inside a longer name (`x-api-key` also contains `api-key`,
            // which is fine: both cut the same value).
            if start > 0 && lower.as_bytes()[start - 1].is_ascii_alphanumeric() {
                continue;
            }
            if let Some(v) = value_after(s, from, *name == "bearer") {
                cuts.push(v);
            }
        }
    }
    if cuts.is_empty() {
        return None;
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (a, b) in cuts {
        if b <= at {
            continue;
        }
        let a = a.max(at);
        out.push_str(&s[at..a]);
        out.push_str(REDACTED);
        at = b;
    }
    out.push_str(&s[at..]);
    Some(out)
}

/// The byte range of the credential after a name ending at `i`: for a header or field name, skip
/// closing quotes, `:` or `=`, spaces, an opening quote and a scheme word; for a scheme word
/// itself, one space. None when no value follows.
fn value_after(s: &str, mut i: usize, is_scheme: bool) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
        }
    };
    if is_scheme {
        if i >= b.len() || b[i] != b' ' {
            return None;
        }
        skip(&mut i, b" ");
    } else {
        skip(&mut i, b"\"'\\");
        skip(&mut i, b" \t");
        if i >= b.len() || !(b[i] == b':' || b[i] == b'=') {
            return None;
        }
        i += 1;
        skip(&mut i, b" \t\"'\\");
        let rest = s[i..].to_ascii_lowercase();
        if let Some(w) = SCHEMES
            .iter()
            .find(|w| rest.starts_with(*w) && rest[w.len()..].starts_with(' '))
        {
            i += w.len();
            skip(&mut i, b" ");
        }
    }
    let start = i;
    let end = s[start..]
        .char_indices()
        .find(|&(_, c)| ends_token(c))
        .map_or(s.len(), |(k, _)| start + k);
    (end > start && &s[start..end] != REDACTED).then_some((start, end))
}

/// `url` without the `user:password@` of its authority, for records.
pub fn url_without_credentials(url: &str) -> String {
    let Some(s) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[s + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..s + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_and_bearer_tokens_are_removed() {
        let cases = [
            (
                "echo: Authorization: Bearer sk-live-123abc\nHost: x",
                "echo: Authorization: Bearer [redacted]\nHost: x",
            ),
            (
                r#"{"headers":{"authorization":"Bearer sk-live-123abc","x-api-key":"k-999"}}"#,
                r#"{"headers":{"authorization":"Bearer [redacted]","x-api-key":"[redacted]"}}"#,
            ),
            (
                r#"warning: \"Authorization\": \"Bearer sk-1\" in body"#,
                r#"warning: \"Authorization\": \"Bearer [redacted]\" in body"#,
            ),
            ("api_key=abcd1234&x=1", "api_key=[redacted]&x=1"),
            ("token bearer zzzz", "token bearer [redacted]"),
            (
                "no secrets here: authorization failed",
                "no secrets here: authorization failed",
            ),
            (
                "each token costs 2 J; basic test",
                "each token costs 2 J; basic test",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(text(input), want, "{input}");
        }
    }

    #[test]
    fn registered_keys_are_removed_anywhere() {
        register("sk-unit-test-key-42");
        let t = text("bad key sk-unit-test-key-42 (len 19); again:sk-unit-test-key-42.");
        assert!(!t.contains("sk-unit-test-key-42"), "{t}");
        assert_eq!(t.matches(REDACTED).count(), 2);
        register("ab");
        assert_eq!(text("abc"), "abc");
    }

    #[test]
    fn urls_lose_only_their_credentials() {
        let f = url_without_credentials;
        assert_eq!(
            f("https://user:secret@mirror.example/hub"),
            "https://mirror.example/hub"
        );
        assert_eq!(f("http://h:8080/a@b/metrics"), "http://h:8080/a@b/metrics");
        assert_eq!(f("http://u@h"), "http://h");
        assert_eq!(f("not a url"), "not a url");
    }
}
