//! Where `phantom_token_source` takes the token from, and how to remove it from the request.
//!
//! The token must never reach the upstream, so a source the module reads (a query argument,
//! a cookie, a header) is also removed from what is proxied. The matching rules are nginx's
//! own for `$arg_`, `$cookie_` and `$http_` (names compared case-insensitively; for headers,
//! `-` in the header name stands for `_` in the variable name).

/// A token source that the module knows how to strip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A query argument, by its lowercase name (`$arg_t` -> `t`).
    Arg(Vec<u8>),
    /// A cookie, by its lowercase name (`$cookie_t` -> `t`).
    Cookie(Vec<u8>),
    /// The variable's suffix, lowercase (`$http_x_api_token` -> `x_api_token`).
    Header(Vec<u8>),
    /// Any other complex value: read, but not strippable.
    Other,
}

/// Classifies the text of `phantom_token_source` (`$arg_t`, `${cookie_t}`, `$http_x_t`, ...).
pub fn classify(value: &str) -> Source {
    let Some(var) = value.strip_prefix('$') else {
        return Source::Other;
    };
    let var = match var.strip_prefix('{') {
        Some(v) => match v.strip_suffix('}') {
            Some(v) => v,
            None => return Source::Other,
        },
        None => var,
    };
    if !var.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Source::Other;
    }
    let lower = var.to_ascii_lowercase();
    let named = |prefix: &str| {
        lower
            .strip_prefix(prefix)
            .filter(|n| !n.is_empty())
            .map(|n| n.as_bytes().to_vec())
    };
    if let Some(n) = named("arg_") {
        return Source::Arg(n);
    }
    if let Some(n) = named("cookie_") {
        return Source::Cookie(n);
    }
    if let Some(n) = named("http_") {
        return Source::Header(n);
    }
    Source::Other
}

/// Whether a header named `key` is what `$http_<var>` reads (or a spelling of it).
pub fn header_is(key: &[u8], var: &[u8]) -> bool {
    key.len() == var.len()
        && key.iter().zip(var).all(|(k, v)| {
            let k = if *k == b'-' {
                b'_'
            } else {
                k.to_ascii_lowercase()
            };
            let v = if *v == b'-' {
                b'_'
            } else {
                v.to_ascii_lowercase()
            };
            k == v
        })
}

/// The query string without any `name=...` parameter; `None` when nothing was removed.
pub fn strip_arg(args: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    strip_list(args, b'&', name, b"&", |p| p)
}

/// A `Cookie` header value without any `name=...` pair; `None` when nothing was removed.
/// An empty result means the header should go.
pub fn strip_cookie(value: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    strip_list(value, b';', name, b"; ", trim_ws)
}

fn trim_ws(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn strip_list(
    list: &[u8],
    sep: u8,
    name: &[u8],
    joiner: &[u8],
    clean: fn(&[u8]) -> &[u8],
) -> Option<Vec<u8>> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut removed = false;
    for item in list.split(|c| *c == sep) {
        let item = clean(item);
        let key = item.split(|c| *c == b'=').next().unwrap_or(item);
        if clean(key).eq_ignore_ascii_case(name) {
            removed = true;
        } else if !item.is_empty() {
            kept.push(item);
        }
    }
    removed.then(|| kept.join(joiner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sources() {
        assert_eq!(
            classify("$arg_access_token"),
            Source::Arg(b"access_token".to_vec())
        );
        assert_eq!(classify("${cookie_AT}"), Source::Cookie(b"at".to_vec()));
        assert_eq!(
            classify("$http_x_token"),
            Source::Header(b"x_token".to_vec())
        );
        assert_eq!(classify("$token_from_map"), Source::Other);
        assert_eq!(classify("Bearer $arg_t"), Source::Other);
        assert_eq!(classify("$arg_"), Source::Other);
        assert_eq!(classify("${arg_t"), Source::Other);
        assert_eq!(classify("$arg_t$arg_u"), Source::Other);
    }

    #[test]
    fn header_spellings() {
        assert!(header_is(b"X-Token", b"x_token"));
        assert!(header_is(b"x_token", b"x_token"));
        assert!(header_is(b"X-JWT", b"x-jwt"));
        assert!(header_is(b"X_JWT", b"X-JWT"));
        assert!(!header_is(b"X-Tokens", b"x_token"));
        assert!(!header_is(b"XToken", b"x_token"));
    }

    #[test]
    fn strips_arguments() {
        assert_eq!(strip_arg(b"a=1&t=secret&b=2", b"t").unwrap(), b"a=1&b=2");
        assert_eq!(strip_arg(b"T=secret", b"t").unwrap(), b"");
        assert_eq!(strip_arg(b"t=x&t=y&tt=z", b"t").unwrap(), b"tt=z");
        assert_eq!(strip_arg(b"a=1&&t=x&", b"t").unwrap(), b"a=1");
        assert_eq!(strip_arg(b"a=1&b=t", b"t"), None);
        assert_eq!(strip_arg(b"", b"t"), None);
    }

    #[test]
    fn strips_cookies() {
        assert_eq!(
            strip_cookie(b"a=1; at=secret; b=2", b"at").unwrap(),
            b"a=1; b=2"
        );
        assert_eq!(strip_cookie(b"AT=secret", b"at").unwrap(), b"");
        assert_eq!(strip_cookie(b"at=x;at=y ; c=3", b"at").unwrap(), b"c=3");
        assert_eq!(strip_cookie(b"a=at", b"at"), None);
    }
}
