//! The body of a purge request and its JSON replies.
//!
//! A purge request is shaped like an RFC 7009 revocation request: an
//! `application/x-www-form-urlencoded` body naming what to forget, by exactly one of `token`,
//! `sub` or `client_id`. `token_type_hint` is accepted and ignored, as RFC 7009 allows; any other
//! parameter is an error, so a typo (`client-id=`) never turns into a silent no-op.
//!
//! Errors never echo a value: the body carries tokens, and error descriptions end up in logs.

use std::fmt;

/// Longest selector value, in bytes after percent-decoding (a token, subject or client id).
pub const MAX_VALUE_LEN: usize = 4096;

/// Longest parameter name an error may echo.
const MAX_ECHOED_NAME: usize = 32;

/// What a purge selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One access token.
    Token,
    /// Every token of one subject.
    Sub,
    /// Every token issued to one client.
    ClientId,
}

impl Kind {
    /// Every kind, in code order.
    pub const ALL: [Kind; 3] = [Kind::Token, Kind::Sub, Kind::ClientId];

    /// The form parameter name, also the label hashed into selector digests.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Sub => "sub",
            Kind::ClientId => "client_id",
        }
    }

    /// The label of the Redis key names of this kind's index sets (`<prefix>sub:<HMAC>`, ...).
    pub fn index_label(self) -> &'static str {
        match self {
            Kind::Token => "tok",
            Kind::Sub => "sub",
            Kind::ClientId => "cid",
        }
    }

    /// The wire code used in notices and tombstones (0 means "none" there).
    pub fn code(self) -> u8 {
        match self {
            Kind::Token => 1,
            Kind::Sub => 2,
            Kind::ClientId => 3,
        }
    }

    /// The kind for a wire code, if it is one.
    pub fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Token),
            2 => Some(Kind::Sub),
            3 => Some(Kind::ClientId),
            _ => None,
        }
    }

    fn from_name(name: &[u8]) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.label().as_bytes() == name)
    }
}

/// A parsed purge request: what to forget.
#[derive(Clone, PartialEq, Eq)]
pub struct Selector {
    /// Which parameter named it.
    pub kind: Kind,
    /// The percent-decoded value: non-empty, at most [`MAX_VALUE_LEN`] bytes, no control bytes.
    pub value: Vec<u8>,
}

/// `Debug` hides the value: it may be a live token.
impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("kind", &self.kind)
            .field("value_len", &self.value.len())
            .finish()
    }
}

/// Why a purge body was refused. `Display` is a short description for `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeError {
    /// None of `token`, `sub`, `client_id`.
    Missing,
    /// More than one selector, or one selector twice.
    Several,
    /// A parameter other than the selectors and `token_type_hint`. The name is kept only when
    /// it is short and made of `[A-Za-z0-9_]`, so echoing it cannot inject anything.
    Unsupported(Option<String>),
    /// `%` not followed by two hex digits.
    Malformed,
    /// A selector value over [`MAX_VALUE_LEN`] bytes.
    TooLong,
    /// A selector with an empty value.
    Empty,
    /// A selector value with a control byte (below 0x20, or 0x7f).
    Control,
}

impl fmt::Display for PurgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PurgeError::Missing => {
                f.write_str("exactly one of token, sub or client_id is required")
            }
            PurgeError::Several => f.write_str("several selectors given"),
            PurgeError::Unsupported(Some(name)) => {
                write!(f, "parameter \"{name}\" is not supported")
            }
            PurgeError::Unsupported(None) => f.write_str("an unsupported parameter"),
            PurgeError::Malformed => f.write_str("malformed percent-encoding"),
            PurgeError::TooLong => f.write_str("value too long"),
            PurgeError::Empty => f.write_str("empty value"),
            PurgeError::Control => f.write_str("value contains control characters"),
        }
    }
}

impl std::error::Error for PurgeError {}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Form-decodes `s` (`+` is a space). Stops with `TooLong` once past `max` bytes, so a huge
/// body costs no more than `max` bytes of memory.
fn decode(s: &[u8], max: usize) -> Result<Vec<u8>, PurgeError> {
    let mut out = Vec::with_capacity(s.len().min(max));
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        let c = match b {
            b'+' => b' ',
            b'%' => {
                let hi = it.next().copied().and_then(hex);
                let lo = it.next().copied().and_then(hex);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => hi << 4 | lo,
                    _ => return Err(PurgeError::Malformed),
                }
            }
            _ => b,
        };
        if out.len() == max {
            return Err(PurgeError::TooLong);
        }
        out.push(c);
    }
    Ok(out)
}

fn echoable(name: &[u8]) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ECHOED_NAME
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    ok.then(|| String::from_utf8_lossy(name).into_owned())
}

/// Parses a purge request body. Names are form-decoded too (`client%5Fid` is `client_id`);
/// empty pairs (`&&`) are skipped; the first problem found, left to right, is returned.
/// An unsupported name is echoed only when short, `[A-Za-z0-9_]`, and followed by `=`.
pub fn parse_body(body: &[u8]) -> Result<Selector, PurgeError> {
    let mut found: Option<Selector> = None;
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let eq = pair.iter().position(|&b| b == b'=');
        let (raw_name, raw_value) = match eq {
            Some(i) => (
                pair.get(..i).unwrap_or_default(),
                pair.get(i + 1..).unwrap_or_default(),
            ),
            None => (pair, &b""[..]),
        };
        // Any name we accept is short: decoding a longer one only needs to tell it is not one.
        let name = decode(raw_name, MAX_VALUE_LEN).map_err(|e| match e {
            PurgeError::TooLong => PurgeError::Unsupported(None),
            e => e,
        })?;
        if name == b"token_type_hint" {
            decode(raw_value, MAX_VALUE_LEN)?;
            continue;
        }
        let Some(kind) = Kind::from_name(&name) else {
            // A pair without `=` is most likely a bare token sent as the body: never echo it.
            let shown = eq.and_then(|_| echoable(&name));
            return Err(PurgeError::Unsupported(shown));
        };
        if found.is_some() {
            return Err(PurgeError::Several);
        }
        let value = decode(raw_value, MAX_VALUE_LEN)?;
        if value.is_empty() {
            return Err(PurgeError::Empty);
        }
        if value.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(PurgeError::Control);
        }
        found = Some(Selector { kind, value });
    }
    found.ok_or(PurgeError::Missing)
}

/// The success reply: `{"removed":3,"redis_removed":2,"notified":true}`; `None` fields are
/// left out (no fleet tier, or nothing to notify).
pub fn result_json(removed: u64, redis_removed: Option<u64>, notified: Option<bool>) -> String {
    let mut out = format!("{{\"removed\":{removed}");
    if let Some(n) = redis_removed {
        out.push_str(&format!(",\"redis_removed\":{n}"));
    }
    if let Some(b) = notified {
        out.push_str(&format!(",\"notified\":{b}"));
    }
    out.push('}');
    out
}

/// An error reply in the shape of RFC 6749 section 5.2: `{"error":..,"error_description":..}`.
pub fn error_json(error: &str, description: &str) -> String {
    format!(
        "{{\"error\":{},\"error_description\":{}}}",
        serde_json::Value::from(error),
        serde_json::Value::from(description)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &[u8]) -> (Kind, Vec<u8>) {
        let s = parse_body(body).expect("valid");
        (s.kind, s.value)
    }

    fn err(body: &[u8]) -> PurgeError {
        parse_body(body).expect_err("invalid")
    }

    #[test]
    fn labels_and_codes() {
        let labels: Vec<_> = Kind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels, ["token", "sub", "client_id"]);
        for k in Kind::ALL {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(4), None);
    }

    #[test]
    fn one_selector_of_each_kind() {
        assert_eq!(ok(b"token=abc.def"), (Kind::Token, b"abc.def".to_vec()));
        assert_eq!(ok(b"sub=alice"), (Kind::Sub, b"alice".to_vec()));
        assert_eq!(
            ok(b"client_id=web-app"),
            (Kind::ClientId, b"web-app".to_vec())
        );
    }

    #[test]
    fn decodes_values_and_names() {
        assert_eq!(ok(b"sub=a+b%20c"), (Kind::Sub, b"a b c".to_vec()));
        assert_eq!(
            ok(b"token=a%2Bb%2fc%3D%3D"),
            (Kind::Token, b"a+b/c==".to_vec())
        );
        assert_eq!(ok(b"sub=%C3%A9"), (Kind::Sub, "é".as_bytes().to_vec()));
        assert_eq!(ok(b"client%5Fid=x"), (Kind::ClientId, b"x".to_vec()));
        // `=` inside a value is part of it.
        assert_eq!(ok(b"token=a=b"), (Kind::Token, b"a=b".to_vec()));
    }

    #[test]
    fn hint_is_ignored_and_empty_pairs_tolerated() {
        assert_eq!(
            ok(b"token=t1&token_type_hint=access_token"),
            (Kind::Token, b"t1".to_vec())
        );
        assert_eq!(
            ok(b"token_type_hint=refresh_token&sub=s"),
            (Kind::Sub, b"s".to_vec())
        );
        assert_eq!(ok(b"token_type_hint&sub=s"), (Kind::Sub, b"s".to_vec()));
        assert_eq!(ok(b"&&sub=s&&&"), (Kind::Sub, b"s".to_vec()));
        assert_eq!(ok(b"&sub=s&token_type_hint=&"), (Kind::Sub, b"s".to_vec()));
        // The hint must still be well-formed.
        assert_eq!(err(b"sub=s&token_type_hint=%zz"), PurgeError::Malformed);
    }

    #[test]
    fn missing_or_several_selectors() {
        for body in [&b""[..], b"&", b"&&", b"token_type_hint=access_token"] {
            assert_eq!(err(body), PurgeError::Missing, "{body:?}");
        }
        for body in [
            &b"token=a&sub=b"[..],
            b"sub=a&sub=b",
            b"sub=a&sub=a",
            b"client_id=a&token=b",
        ] {
            assert_eq!(err(body), PurgeError::Several, "{body:?}");
        }
    }

    #[test]
    fn unsupported_parameters() {
        assert_eq!(err(b"a=1&&b"), PurgeError::Unsupported(Some("a".into())));
        // Without `=`, the name may be a bare token: not echoed.
        assert_eq!(err(b"sub=s&&b"), PurgeError::Unsupported(None));
        assert_eq!(
            err(b"sub=s&client-id=x"),
            PurgeError::Unsupported(None),
            "`-` is not echoed"
        );
        assert_eq!(
            err(b"sub=s&Token=x"),
            PurgeError::Unsupported(Some("Token".into()))
        );
        assert_eq!(err(b"=x"), PurgeError::Unsupported(None));
        let long = format!("{}=1&sub=s", "a".repeat(33));
        assert_eq!(err(long.as_bytes()), PurgeError::Unsupported(None));
        let max = format!("{}=1", "a".repeat(32));
        assert!(err(max.as_bytes()).to_string().contains(&"a".repeat(32)));
        let huge = format!("{}=1", "a".repeat(10_000));
        assert_eq!(err(huge.as_bytes()), PurgeError::Unsupported(None));
        // Decoded names are checked: an injected quote is not echoed.
        assert_eq!(err(b"a%22b=1"), PurgeError::Unsupported(None));
        assert_eq!(err(b"x%zz=1"), PurgeError::Malformed);
    }

    #[test]
    fn malformed_percent_encoding() {
        for body in [
            &b"token=%zz"[..],
            b"token=%4",
            b"token=%",
            b"token=ab%4g",
            b"sub=%%41",
        ] {
            assert_eq!(err(body), PurgeError::Malformed, "{body:?}");
        }
    }

    #[test]
    fn value_length_bounds() {
        let at = format!("token={}", "a".repeat(MAX_VALUE_LEN));
        assert_eq!(ok(at.as_bytes()).1.len(), MAX_VALUE_LEN);
        let over = format!("token={}", "a".repeat(MAX_VALUE_LEN + 1));
        assert_eq!(err(over.as_bytes()), PurgeError::TooLong);
        // The limit applies after decoding: 4096 bytes written as 12288 characters pass.
        let enc = format!("sub={}", "%41".repeat(MAX_VALUE_LEN));
        assert_eq!(ok(enc.as_bytes()).1, vec![b'A'; MAX_VALUE_LEN]);
        let enc = format!("sub={}", "%41".repeat(MAX_VALUE_LEN + 1));
        assert_eq!(err(enc.as_bytes()), PurgeError::TooLong);
    }

    #[test]
    fn empty_and_control_values() {
        assert_eq!(err(b"token="), PurgeError::Empty);
        assert_eq!(err(b"token"), PurgeError::Empty);
        assert_eq!(err(b"sub=&token_type_hint=x"), PurgeError::Empty);
        for body in [
            &b"token=a%00b"[..],
            b"token=a%0A",
            b"sub=%0D%0Ax",
            b"sub=a\tb",
            b"client_id=%7F",
            b"client_id=%1f",
        ] {
            assert_eq!(err(body), PurgeError::Control, "{body:?}");
        }
        // DEL is the last control byte; 0x80 and above are not controls here.
        assert_eq!(ok(b"sub=%7E%80%FF").1, b"~\x80\xff");
    }

    #[test]
    fn errors_never_echo_the_value() {
        let secret = "eyJhbGciOiJSUzI1NiJ9";
        for body in [
            format!("token={secret}&token={secret}"),
            format!("token={secret}%zz"),
            format!("token={secret}%00"),
            format!("token={}{secret}", "a".repeat(MAX_VALUE_LEN)),
            format!("{secret}.x={secret}"),
            secret.to_string(),
            format!("sub=s&{secret}"),
            format!("sub=x&{secret}.y={secret}"),
        ] {
            let e = err(body.as_bytes()).to_string();
            assert!(!e.contains(secret), "{e:?}");
            assert!(!error_json("invalid_request", &e).contains(secret));
        }
        let s = parse_body(format!("token={secret}").as_bytes()).unwrap();
        assert!(!format!("{s:?}").contains(secret));
    }

    #[test]
    fn messages() {
        let cases = [
            (
                PurgeError::Missing,
                "exactly one of token, sub or client_id is required",
            ),
            (PurgeError::Several, "several selectors given"),
            (
                PurgeError::Unsupported(Some("x".into())),
                "parameter \"x\" is not supported",
            ),
            (PurgeError::Unsupported(None), "an unsupported parameter"),
            (PurgeError::Malformed, "malformed percent-encoding"),
            (PurgeError::TooLong, "value too long"),
            (PurgeError::Empty, "empty value"),
            (PurgeError::Control, "value contains control characters"),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn result_json_omits_none() {
        assert_eq!(
            result_json(3, Some(2), Some(true)),
            r#"{"removed":3,"redis_removed":2,"notified":true}"#
        );
        assert_eq!(result_json(0, None, None), r#"{"removed":0}"#);
        assert_eq!(
            result_json(u64::MAX, None, Some(false)),
            r#"{"removed":18446744073709551615,"notified":false}"#
        );
        assert_eq!(
            result_json(1, Some(0), None),
            r#"{"removed":1,"redis_removed":0}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&result_json(5, Some(4), Some(true))).unwrap();
        assert_eq!(v["redis_removed"], 4);
    }

    #[test]
    fn error_json_escapes() {
        let e = PurgeError::Unsupported(Some("x".into())).to_string();
        let j = error_json("invalid_request", &e);
        assert_eq!(
            j,
            r#"{"error":"invalid_request","error_description":"parameter \"x\" is not supported"}"#
        );
        let j = error_json("invalid_request", "a\\b\n\u{1}\u{2028}");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["error"], "invalid_request");
        assert_eq!(v["error_description"], "a\\b\n\u{1}\u{2028}");
        assert!(!j.contains('\n'));
    }
}
