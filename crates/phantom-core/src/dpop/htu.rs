//! `htu` comparison (RFC 9449 §4.3 #9 and the paragraph after the list): both URIs are
//! normalised (RFC 3986 §6.2.2 syntax-based, §6.2.3 scheme-based) and compared exactly.
//!
//! Only absolute `http`/`https` URIs with an ASCII host and no userinfo are accepted. Query and
//! fragment are cut off. Not equivalent after normalisation: `/api` vs `/api/`, `//` vs `/`,
//! `%2F` vs `/`, path case.

/// The normal form of an `htu` value or request URI: lower-case scheme and host, default port
/// and empty port dropped, empty path as `/`, percent-encodings upper-case with unreserved
/// characters decoded, dot segments removed, query and fragment cut off. `None` when the URI is
/// not an absolute http(s) URI this module accepts.
pub fn normalize_htu(uri: &str) -> Option<String> {
    let uri = uri.split(['?', '#']).next().unwrap_or("");
    let (scheme, rest) = uri.split_once(':')?;
    let (scheme, default_port) = if scheme.eq_ignore_ascii_case("https") {
        ("https", 443)
    } else if scheme.eq_ignore_ascii_case("http") {
        ("http", 80)
    } else {
        return None;
    };
    let rest = rest.strip_prefix("//")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = host_port(authority)?;
    let port = match port {
        None | Some("") => None,
        Some(p) => {
            if p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let v: u32 = p.parse().ok()?;
            if v > 65535 {
                return None;
            }
            (v != default_port).then_some(v)
        }
    };
    let path = remove_dot_segments(&normalize_path(path)?);
    let mut out = format!("{scheme}://{host}");
    if let Some(p) = port {
        out.push(':');
        out.push_str(&p.to_string());
    }
    if path.is_empty() {
        out.push('/');
    } else {
        out.push_str(&path);
    }
    Some(out)
}

/// `claim` (the proof's `htu`) and `url` (the request) are the same resource.
pub fn htu_matches(claim: &str, url: &str) -> bool {
    match (normalize_htu(claim), normalize_htu(url)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Lower-cased host (reg-name of unreserved characters, or a bracketed IP literal) and the
/// raw port text, if any.
fn host_port(authority: &str) -> Option<(String, Option<&str>)> {
    if authority.contains('@') {
        return None; // userinfo
    }
    if let Some(lit) = authority.strip_prefix('[') {
        let (ip, after) = lit.split_once(']')?;
        let ok = !ip.is_empty()
            && ip
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
        if !ok {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        return Some((format!("[{}]", ip.to_ascii_lowercase()), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c));
    ok.then(|| (host.to_ascii_lowercase(), port))
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~".contains(&c)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Validates a path (`*( "/" / pchar )`), upper-cases percent-encodings and decodes those of
/// unreserved characters.
fn normalize_path(path: &str) -> Option<String> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(c) = bytes.next() {
        if c == b'%' {
            let hi = hex(bytes.next()?)?;
            let lo = hex(bytes.next()?)?;
            let v = hi << 4 | lo;
            if unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(hi)]));
                out.push(char::from(HEX[usize::from(lo)]));
            }
        } else if unreserved(c) || b"!$&'()*+,;=:@/".contains(&c) {
            out.push(char::from(c));
        } else {
            return None;
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4 on an ASCII path.
fn remove_dot_segments(path: &str) -> String {
    fn pop_segment(out: &mut String) {
        match out.rfind('/') {
            Some(i) => out.truncate(i),
            None => out.clear(),
        }
    }
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(r) = input.strip_prefix("../") {
            input = r;
        } else if let Some(r) = input.strip_prefix("./") {
            input = r;
        } else if input.starts_with("/./") {
            input = input.get(2..).unwrap_or("");
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = input.get(3..).unwrap_or("");
            pop_segment(&mut out);
        } else if input == "/.." {
            input = "/";
            pop_segment(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input
                .get(start..)
                .and_then(|s| s.find('/'))
                .map_or(input.len(), |i| i + start);
            let (seg, rest) = input.split_at(end);
            out.push_str(seg);
            input = rest;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<String> {
        normalize_htu(s)
    }

    #[test]
    fn normalises() {
        let r = Some("https://resource.example.org/protectedresource".to_string());
        for s in [
            "https://resource.example.org/protectedresource",
            "HTTPS://Resource.Example.ORG/protectedresource",
            "https://resource.example.org:443/protectedresource",
            "https://resource.example.org:/protectedresource",
            "https://resource.example.org/protectedresource?x=1",
            "https://resource.example.org/protectedresource#frag",
            "https://resource.example.org/a/../protectedresource",
            "https://resource.example.org/./protectedresource",
            "https://resource.example.org/%70rotectedresource",
            "https://resource.example.org/../protectedresource",
        ] {
            assert_eq!(n(s), r, "{s}");
        }
        assert_eq!(n("http://h"), Some("http://h/".into()));
        assert_eq!(n("http://h?q"), Some("http://h/".into()));
        assert_eq!(n("http://h:80/"), Some("http://h/".into()));
        assert_eq!(n("http://h:443/"), Some("http://h:443/".into()));
        assert_eq!(n("https://h:0443/"), Some("https://h/".into()));
        assert_eq!(
            n("http://127.0.0.1:3000/x"),
            Some("http://127.0.0.1:3000/x".into())
        );
        assert_eq!(n("http://[::1]:8080/x"), Some("http://[::1]:8080/x".into()));
        assert_eq!(n("http://[FE80::1]/"), Some("http://[fe80::1]/".into()));
        assert_eq!(n("http://h/a%2fb"), Some("http://h/a%2Fb".into()));
        assert_eq!(n("http://h/a%7e%41"), Some("http://h/a~A".into()));
        assert_eq!(n("http://h/a/b/c/./../../g"), Some("http://h/a/g".into()));
        assert_eq!(n("http://h/a/b/.."), Some("http://h/a/".into()));
        assert_eq!(n("http://h/a/."), Some("http://h/a/".into()));
        assert_eq!(n("http://h/%2E%2E/x"), Some("http://h/x".into()));
        assert_eq!(n("http://h/a:b@c;d=e"), Some("http://h/a:b@c;d=e".into()));
    }

    #[test]
    fn refuses() {
        for s in [
            "",
            "/path",
            "//h/path",
            "ftp://h/",
            "https:/h/",
            "https://",
            "https:///x",
            "https://u@h/",
            "https://u:p@h/",
            "https://h:x/",
            "https://h:65536/",
            "https://h:123456/",
            "https://h:1:2/",
            "https://h\u{e9}/",
            "https://h%41/",
            "https://h h/",
            "https://[::1/",
            "https://[::g]/",
            "https://[]/",
            "https://[::1]x/",
            "https://h/a b",
            "https://h/a%",
            "https://h/a%4",
            "https://h/a%zz",
            "https://h/\u{e9}",
            "https://h/a\\b",
            "https://h/a\"b",
        ] {
            assert_eq!(n(s), None, "{s}");
        }
    }

    #[test]
    fn compares() {
        assert!(htu_matches("https://H/x?a#b", "https://h:443/x"));
        assert!(!htu_matches("https://h/api/", "https://h/api"));
        assert!(!htu_matches("https://h//api", "https://h/api"));
        assert!(!htu_matches("https://h/a%2Fb", "https://h/a/b"));
        assert!(!htu_matches("https://h/API", "https://h/api"));
        assert!(!htu_matches("http://h/", "https://h/"));
        assert!(!htu_matches("https://h:8443/", "https://h/"));
        assert!(!htu_matches("bogus", "bogus"));
    }

    #[test]
    fn idempotent_and_total() {
        for s in [
            "http://h/a/../../b/./c/%2e%2E/d%2f",
            "https://X:1/%7E/..",
            "http://h/..",
        ] {
            let once = n(s).unwrap();
            assert_eq!(n(&once).as_deref(), Some(once.as_str()));
        }
        for a in 0..=255u8 {
            let s = String::from_utf8_lossy(&[
                b'h', b't', b't', b'p', b':', b'/', b'/', b'h', b'/', a, b'.', b'.',
            ])
            .into_owned();
            if let Some(once) = n(&s) {
                assert_eq!(n(&once), Some(once.clone()));
            }
        }
    }
}
