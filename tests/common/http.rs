//! One fake HTTP/1.1 server for the tests that need a peer (an OpenAI-compatible server, a
//! Hugging Face mirror): a listener on a free loopback port, one thread per connection, the
//! request parsed, and the test's handler writing whatever reply it wants (well-formed or not).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The header lines as sent (`Name: value\r\n` each).
    pub raw_headers: String,
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// Reads one request (headers and a `Content-Length` body) from `s`.
pub fn read_request(s: &TcpStream) -> std::io::Result<Request> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut first = String::new();
    r.read_line(&mut first)?;
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let (mut headers, mut raw_headers) = (BTreeMap::new(), String::new());
    loop {
        let mut l = String::new();
        r.read_line(&mut l)?;
        if l == "\r\n" || l.is_empty() {
            break;
        }
        raw_headers.push_str(&l);
        if let Some((k, v)) = l.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Request {
        method,
        path,
        headers,
        raw_headers,
        body,
    })
}

/// Writes a complete reply: status line, `headers`, `Content-Length`, `body`.
pub fn reply(
    s: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes())?;
    s.write_all(body)
}

/// A server on a free loopback port, answering every connection with `handler` (given the
/// parsed request and the stream to write to) until the test process ends.
pub struct Server {
    pub port: u16,
}

impl Server {
    pub fn start<F>(handler: F) -> Server
    where
        F: Fn(Request, &mut TcpStream) + Send + Sync + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = l.local_addr().expect("bound").port();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let h = handler.clone();
                std::thread::spawn(move || {
                    if let Ok(req) = read_request(&s) {
                        h(req, &mut s);
                    }
                });
            }
        });
        Server { port }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
