//! The freshness an introspection response allows, from its `Cache-Control` header.
//!
//! Parsed as RFC 9111 section 5.2 lists (tokens, `=`, quoted strings with escapes), and
//! decided conservatively: `no-store`, `no-cache` and `private` (bare or qualified) win
//! wherever they appear; an invalid, negative, zero or conflicting `max-age`, or a header
//! that is not a valid list, means "do not store" (section 4.2.1).

/// `Some(0)`: must not be stored; `Some(n)`: at most `n` seconds; `None`: no limit given.
pub fn max_age(value: &[u8]) -> Option<u64> {
    match parse(value) {
        Ok(age) => age,
        Err(()) => Some(0),
    }
}

/// Largest `max-age` honoured (RFC 9111 section 1.2.2 suggests 2^31).
const MAX_DELTA: u64 = 1 << 31;

fn parse(value: &[u8]) -> Result<Option<u64>, ()> {
    let mut p = Parser { s: value, i: 0 };
    let mut age: Option<u64> = None;
    let mut forbid = false;
    loop {
        p.skip_ows_and_commas();
        if p.done() {
            break;
        }
        let name = p.token().ok_or(())?;
        p.skip_ows();
        let arg = if p.eat(b'=') {
            p.skip_ows();
            Some(p.value().ok_or(())?)
        } else {
            None
        };
        p.skip_ows();
        if !p.done() && !p.eat(b',') {
            return Err(());
        }
        if ["no-store", "no-cache", "private"]
            .iter()
            .any(|d| name.eq_ignore_ascii_case(d.as_bytes()))
        {
            forbid = true;
        } else if name.eq_ignore_ascii_case(b"max-age") {
            let n = arg.as_deref().and_then(delta_seconds).ok_or(())?;
            if age.is_some_and(|a| a != n) {
                return Err(());
            }
            age = Some(n);
        }
    }
    Ok(if forbid { Some(0) } else { age })
}

/// `1*DIGIT`, capped at [`MAX_DELTA`].
fn delta_seconds(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s
        .iter()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .unwrap_or(u64::MAX);
    Some(n.min(MAX_DELTA))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

impl<'a> Parser<'a> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            return true;
        }
        false
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ows_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        let s: &'a [u8] = self.s;
        (self.i > start).then(|| &s[start..self.i])
    }

    /// A token or a quoted string (unescaped).
    fn value(&mut self) -> Option<Vec<u8>> {
        if !self.eat(b'"') {
            return self.token().map(<[u8]>::to_vec);
        }
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.i += 1;
                    out.push(self.peek()?);
                }
                c if c == b'\t' || c >= 0x20 && c != 0x7f => out.push(c),
                _ => return None,
            }
            self.i += 1;
        }
    }
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
        assert_eq!(max_age(b"max-age=99999999999999999999"), Some(MAX_DELTA));
        assert_eq!(max_age(b""), None);
        assert_eq!(max_age(b" , ,"), None);
    }

    #[test]
    fn forbidding_directives_win_wherever_they_are() {
        assert_eq!(max_age(b"max-age=abc, no-store"), Some(0));
        assert_eq!(max_age(b"max-age=60, private=\"set-cookie\""), Some(0));
        assert_eq!(max_age(b"no-cache=\"a, b\", max-age=60"), Some(0));
        assert_eq!(max_age(b"public,max-age=60,no-store"), Some(0));
    }

    #[test]
    fn invalid_or_conflicting_max_age_is_not_cacheable() {
        assert_eq!(max_age(b"max-age=abc"), Some(0));
        assert_eq!(max_age(b"max-age=-1"), Some(0));
        assert_eq!(max_age(b"max-age="), Some(0));
        assert_eq!(max_age(b"max-age"), Some(0));
        assert_eq!(max_age(b"max-age=0"), Some(0));
        assert_eq!(max_age(b"max-age=5, max-age=60"), Some(0));
        assert_eq!(max_age(b"max-age=5, max-age=5"), Some(5));
        assert_eq!(max_age(b"\xff\xfe"), Some(0));
        assert_eq!(max_age(b"max-age=60 junk"), Some(0));
        assert_eq!(max_age(b"ext=\"unterminated, max-age=60"), Some(0));
    }

    #[test]
    fn quoted_strings_hide_commas_and_directives() {
        assert_eq!(
            max_age(b"ext=\"no-store, max-age=1\", max-age=60"),
            Some(60)
        );
        assert_eq!(max_age(b"ext=\"a\\\"b\", max-age=7"), Some(7));
    }

    #[test]
    fn combines_to_the_minimum() {
        assert_eq!(combine(Some(5), Some(3)), Some(3));
        assert_eq!(combine(None, Some(3)), Some(3));
        assert_eq!(combine(Some(5), None), Some(5));
        assert_eq!(combine(None, None), None);
    }
}
