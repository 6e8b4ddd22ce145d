//! Bearer token extraction (RFC 6750 section 2.1).

/// Why no usable access token was found in the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No credentials at all.
    Missing,
    /// Credentials of another scheme (e.g. Basic).
    NotBearer,
    /// `Bearer` with an empty or syntactically invalid token.
    Malformed,
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLong,
}

/// Longest token accepted; opaque tokens are far shorter.
pub const MAX_TOKEN_LEN: usize = 8192;

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ws(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ws(*last) {
            break;
        }
        v = rest;
    }
    v
}

/// Extracts the token from an `Authorization` header value.
///
/// The scheme is case-insensitive and followed by one or more spaces or tabs; trailing
/// whitespace is ignored. The token must be an RFC 6750 `b64token`.
pub fn bearer_token(header: &[u8]) -> Result<&[u8], TokenError> {
    let value = trim(header);
    if value.is_empty() {
        return Err(TokenError::Missing);
    }
    let scheme_end = value.iter().position(|c| is_ws(*c)).unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(TokenError::NotBearer);
    }
    let token = trim(rest);
    if token.is_empty() {
        return Err(TokenError::Malformed);
    }
    check(token)
}

/// The scheme of an `Authorization` header that carries an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 6750: whoever holds the token may use it.
    Bearer,
    /// RFC 9449 section 7.1: the token is bound to the key of the `DPoP` proof.
    Dpop,
}

/// Extracts the token and its scheme: `Bearer`, or also `DPoP` when `dpop` is allowed
/// (otherwise a `DPoP` scheme is "not bearer", as before DPoP support).
pub fn auth_token(header: &[u8], dpop: bool) -> Result<(Scheme, &[u8]), TokenError> {
    match bearer_token(header) {
        Ok(t) => Ok((Scheme::Bearer, t)),
        Err(TokenError::NotBearer) if dpop => {
            let value = trim(header);
            let end = value.iter().position(|c| is_ws(*c)).unwrap_or(value.len());
            let (scheme, rest) = value.split_at(end);
            if !scheme.eq_ignore_ascii_case(b"dpop") {
                return Err(TokenError::NotBearer);
            }
            let token = trim(rest);
            if token.is_empty() {
                return Err(TokenError::Malformed);
            }
            check(token).map(|t| (Scheme::Dpop, t))
        }
        Err(e) => Err(e),
    }
}

/// Validates a token taken from another source (cookie, custom header, query argument).
pub fn source_token(value: &[u8]) -> Result<&[u8], TokenError> {
    let token = trim(value);
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    check(token)
}

fn check(token: &[u8]) -> Result<&[u8], TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    if is_b64token(token) {
        Ok(token)
    } else {
        Err(TokenError::Malformed)
    }
}

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(t: &[u8]) -> bool {
    let body_end = t.iter().rposition(|c| *c != b'=').map_or(0, |i| i + 1);
    let (body, pad) = t.split_at(body_end);
    !body.is_empty()
        && body
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~+/".contains(c))
        && pad.iter().all(|c| *c == b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_bearer_tokens() {
        assert_eq!(bearer_token(b"Bearer abc"), Ok(&b"abc"[..]));
        assert_eq!(bearer_token(b"bEaReR    a+b/c=="), Ok(&b"a+b/c=="[..]));
        assert_eq!(bearer_token(b"Bearer\tabc  "), Ok(&b"abc"[..]));
        assert_eq!(bearer_token(b"  Bearer x-y.z_~"), Ok(&b"x-y.z_~"[..]));
    }

    #[test]
    fn classifies_failures() {
        assert_eq!(bearer_token(b""), Err(TokenError::Missing));
        assert_eq!(bearer_token(b"   "), Err(TokenError::Missing));
        assert_eq!(bearer_token(b"Basic dXNlcg=="), Err(TokenError::NotBearer));
        assert_eq!(bearer_token(b"Bearerx abc"), Err(TokenError::NotBearer));
        assert_eq!(bearer_token(b"Bear"), Err(TokenError::NotBearer));
        assert_eq!(bearer_token(b"Bearer"), Err(TokenError::Malformed));
        assert_eq!(bearer_token(b"Bearer   "), Err(TokenError::Malformed));
        assert_eq!(bearer_token(b"Bearer a b"), Err(TokenError::Malformed));
        assert_eq!(bearer_token(b"Bearer a,b"), Err(TokenError::Malformed));
        assert_eq!(bearer_token(b"Bearer a=b"), Err(TokenError::Malformed));
        assert_eq!(bearer_token(b"Bearer ===="), Err(TokenError::Malformed));
        assert_eq!(bearer_token(b"Bearer a\0b"), Err(TokenError::Malformed));
        assert_eq!(
            bearer_token(b"Bearer a\r\nX: y"),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            bearer_token("Bearer t\u{e9}".as_bytes()),
            Err(TokenError::Malformed)
        );
        let long = [b"Bearer ".as_slice(), &[b'a'; MAX_TOKEN_LEN + 1]].concat();
        assert_eq!(bearer_token(&long), Err(TokenError::TooLong));
        let max = [b"Bearer ".as_slice(), &[b'a'; MAX_TOKEN_LEN]].concat();
        assert!(bearer_token(&max).is_ok());
    }

    #[test]
    fn dpop_scheme_only_when_allowed() {
        assert_eq!(
            auth_token(b"DPoP Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU", true),
            Ok((
                Scheme::Dpop,
                &b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"[..]
            ))
        );
        assert_eq!(auth_token(b"dpop abc", false), Err(TokenError::NotBearer));
        assert_eq!(
            auth_token(b"Bearer abc", true),
            Ok((Scheme::Bearer, &b"abc"[..]))
        );
        assert_eq!(auth_token(b"DPoP ", true), Err(TokenError::Malformed));
        assert_eq!(auth_token(b"DPoPx abc", true), Err(TokenError::NotBearer));
        assert_eq!(auth_token(b"Basic abc", true), Err(TokenError::NotBearer));
    }

    #[test]
    fn validates_other_sources() {
        assert_eq!(source_token(b" tok "), Ok(&b"tok"[..]));
        assert_eq!(source_token(b""), Err(TokenError::Missing));
        assert_eq!(source_token(b"a;b"), Err(TokenError::Malformed));
    }

    #[test]
    fn never_panics_on_any_short_input() {
        for a in 0..=255u8 {
            for b in [0u8, b' ', b'=', b'a', 0xff] {
                let _ = bearer_token(&[b'B', b'e', b'a', b'r', b'e', b'r', b' ', a, b]);
                let _ = source_token(&[a, b]);
            }
        }
    }
}
