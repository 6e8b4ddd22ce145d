//! The freshness an introspection response allows, from its `Cache-Control` header.

/// `no-store`, `no-cache` or `private` -> `Some(0)`; `max-age=N` -> `Some(N)`; else `None`.
pub fn max_age(value: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(value);
    let mut age = None;
    for directive in text.split(',') {
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if ["no-store", "no-cache", "private"]
            .iter()
            .any(|d| name.eq_ignore_ascii_case(d))
        {
            return Some(0);
        }
        if name.eq_ignore_ascii_case("max-age") {
            let n = arg.and_then(parse_seconds)?;
            age = combine(age, Some(n));
        }
    }
    age
}

fn parse_seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(
        s.parse::<u64>()
            .unwrap_or(u64::MAX)
            .min(u64::from(u32::MAX)),
    )
}

/// The stricter of two freshness limits.
pub fn combine(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directives() {
        assert_eq!(max_age(b"max-age=300"), Some(300));
        assert_eq!(max_age(b"public, MAX-AGE = \"60\""), Some(60));
        assert_eq!(max_age(b"s-maxage=10"), None);
        assert_eq!(max_age(b"no-store"), Some(0));
        assert_eq!(max_age(b"max-age=300, no-cache"), Some(0));
        assert_eq!(max_age(b"Private"), Some(0));
        assert_eq!(
            max_age(b"max-age=99999999999999999999"),
            Some(u64::from(u32::MAX))
        );
        assert_eq!(max_age(b"max-age=abc"), None);
        assert_eq!(max_age(b"max-age=-1"), None);
        assert_eq!(max_age(b""), None);
        assert_eq!(max_age(b"\xff\xfe"), None);
    }

    #[test]
    fn combines_to_the_minimum() {
        assert_eq!(combine(Some(5), Some(3)), Some(3));
        assert_eq!(combine(None, Some(3)), Some(3));
        assert_eq!(combine(Some(5), None), Some(5));
        assert_eq!(combine(None, None), None);
    }
}
