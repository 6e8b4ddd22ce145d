//! Purge notifications: after a revocation the identity server tells gateways to drop the
//! token from their caches with `POST <url>` and the form body `token=<token>`.
//!
//! A tiny blocking HTTP/1.1 client for plain `http://host[:port][/path]` URLs, with 2 s
//! timeouts; only the response's status code is read.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Timeout for connecting, writing the request and reading the status line.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// `POST`s `token=<percent-encoded token>` to `url` and returns the response's status code.
pub fn notify(url: &str, token: &str) -> Result<u16, String> {
    let (authority, path) = split_url(url)?;
    let addrs = authority_addrs(authority)?;
    let mut stream = connect(&addrs)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let body = format!("token={}", percent_encode(token));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| format!("cannot send: {e}"))?;
    read_status(&mut stream)
}

/// `http://authority/path` -> (`authority`, `/path`); other schemes are refused.
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not a plain http:// URL: {url}"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => rest.split_at(i),
        Some(_) => return Err(format!("a query needs a path: {url}")),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("bad host in {url}"));
    }
    Ok((authority, path))
}

fn authority_addrs(authority: &str) -> Result<Vec<std::net::SocketAddr>, String> {
    // `host:port`, `[v6]:port`, or a host alone (port 80).
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let target = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<_> = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("cannot resolve {authority}"));
    }
    Ok(addrs)
}

fn connect(addrs: &[std::net::SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::new();
    for a in addrs {
        match TcpStream::connect_timeout(a, TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    Err(last)
}

/// The status code of `HTTP/1.x NNN ...` (reads up to the end of the status line).
fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no response: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/") => Ok(code),
        _ if head.is_empty() => Err("connection closed without a response".into()),
        _ => Err(format!("bad status line: {line:?}")),
    }
}

/// Percent-encodes all but the unreserved characters of RFC 3986.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/purge").unwrap(),
            ("127.0.0.1:8080", "/purge")
        );
        assert_eq!(split_url("http://h").unwrap(), ("h", "/"));
        assert_eq!(split_url("http://h/a?b=1").unwrap(), ("h", "/a?b=1"));
        assert!(split_url("https://h/").is_err());
        assert!(split_url("http:///x").is_err());
        assert!(split_url("http://u@h/").is_err());
        assert!(split_url("http://h?x").is_err());
        assert!(authority_addrs("127.0.0.1:1").is_ok());
        assert_eq!(authority_addrs("127.0.0.1").unwrap()[0].port(), 80);
        assert_eq!(authority_addrs("[::1]").unwrap()[0].port(), 80);
        assert_eq!(authority_addrs("[::1]:81").unwrap()[0].port(), 81);
    }

    #[test]
    fn encoding() {
        assert_eq!(
            percent_encode("a+b/c== ~x_y.z-"),
            "a%2Bb%2Fc%3D%3D%20~x_y.z-"
        );
    }
}
