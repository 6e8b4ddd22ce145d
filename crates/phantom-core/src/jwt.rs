//! Reading the claims of a compact JWT (no signature verification: the API does that).

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{Map, Value};

/// Why a JWT's claims could not be read; its `Display` is the error log's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url segments separated by dots.
    NotCompact,
    /// The payload segment does not decode as base64url.
    BadBase64,
    /// The decoded payload is not a JSON object.
    NotJsonObject,
    /// `exp` is missing, not a number, not an integer or out of range (the reason).
    BadExp(&'static str),
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::NotCompact => f.write_str("response is not a compact JWT"),
            JwtError::BadBase64 => f.write_str("JWT payload is not base64url"),
            JwtError::NotJsonObject => f.write_str("JWT payload is not a JSON object"),
            JwtError::BadExp(why) => write!(f, "JWT {why}"),
        }
    }
}

/// Latest `exp` accepted: 9999-12-31T23:59:59Z.
const MAX_EXP: i64 = 253_402_300_799;

fn b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// A compact JWS: `header.payload.signature`, base64url only (so safe in an HTTP header).
pub fn is_compact(jwt: &[u8]) -> bool {
    let mut parts = jwt.split(|c| *c == b'.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    jwt.len() >= 5
        && !h.is_empty()
        && !p.is_empty()
        && [h, p, s].iter().all(|seg| seg.iter().all(|c| b64url(*c)))
}

/// Decodes the payload segment into a JSON object.
pub fn payload(jwt: &[u8]) -> Result<Map<String, Value>, JwtError> {
    if !is_compact(jwt) {
        return Err(JwtError::NotCompact);
    }
    let seg = jwt
        .split(|c| *c == b'.')
        .nth(1)
        .ok_or(JwtError::NotCompact)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(seg)
        .or_else(|_| URL_SAFE.decode(seg))
        .map_err(|_| JwtError::BadBase64)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::NotJsonObject),
    }
}

/// The claims a location sees: the payload, or for Curity-style `token_introspection`
/// JWTs the object it wraps. Anything undecodable is no claims.
pub fn claims_of(jwt: &[u8]) -> Map<String, Value> {
    let mut claims = payload(jwt).unwrap_or_default();
    match claims.remove("token_introspection") {
        Some(Value::Object(inner)) => inner,
        Some(other) => {
            claims.insert("token_introspection".into(), other);
            claims
        }
        None => claims,
    }
}

/// A cheap test before [`payload`] when looking for a claim value in many JWTs (purges by
/// subject walk the whole cache): `false` only when the decoded payload cannot contain
/// `value` as a JSON string. Values JSON may escape (`"`, `\`, `/`, control or non-ASCII
/// bytes) always give `true`.
pub fn may_contain(jwt: &[u8], value: &[u8]) -> bool {
    let plain = value
        .iter()
        .all(|c| c.is_ascii_graphic() && !matches!(c, b'"' | b'\\' | b'/') || *c == b' ');
    if !plain {
        return true;
    }
    let Some(seg) = jwt.split(|c| *c == b'.').nth(1) else {
        return false;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD
        .decode(seg)
        .or_else(|_| URL_SAFE.decode(seg))
    else {
        return false;
    };
    value.is_empty() || bytes.windows(value.len()).any(|w| w == value)
}

/// What the module needs from a token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenInfo {
    /// The `exp` claim: Unix seconds, 0 to 9999-12-31.
    pub exp: i64,
    /// Space separated, from `scope` (string) or `scp` (array of strings).
    pub scope: String,
}

/// Reads `exp` (required) and the scopes from a claims object.
pub fn token_info(claims: &Map<String, Value>) -> Result<TokenInfo, JwtError> {
    let exp = match claims.get("exp") {
        None => return Err(JwtError::BadExp("missing exp claim")),
        Some(Value::Number(n)) => exp_value(n)?,
        Some(_) => return Err(JwtError::BadExp("exp claim is not a number")),
    };
    Ok(TokenInfo {
        exp,
        scope: scopes(claims),
    })
}

fn exp_value(n: &serde_json::Number) -> Result<i64, JwtError> {
    let out_of_range = JwtError::BadExp("exp claim out of range");
    if let Some(i) = n.as_i64() {
        return if (0..=MAX_EXP).contains(&i) {
            Ok(i)
        } else {
            Err(out_of_range)
        };
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=MAX_EXP as f64).contains(&f) => Ok(f as i64),
        Some(f) if f.is_finite() && f.fract() != 0.0 && (0.0..=MAX_EXP as f64).contains(&f) => {
            Err(JwtError::BadExp("exp claim is not an integer"))
        }
        _ => Err(out_of_range),
    }
}

fn scopes(claims: &Map<String, Value>) -> String {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().collect::<Vec<_>>().join(" "),
        (_, Some(Value::Array(a))) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        (_, Some(Value::String(s))) => s.split_whitespace().collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

/// A top-level claim as text for an nginx variable: strings, numbers and booleans only.
pub fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn may_contain_filters_only_what_cannot_match() {
        let jwt = make(r#"{"sub":"alice","client_id":"web-app","n":"a\/b"}"#);
        assert!(may_contain(jwt.as_bytes(), b"alice"));
        assert!(may_contain(jwt.as_bytes(), b"web-app"));
        assert!(!may_contain(jwt.as_bytes(), b"bob"));
        // Values JSON may escape are never filtered out.
        assert!(may_contain(jwt.as_bytes(), b"a/b"));
        assert!(may_contain(jwt.as_bytes(), "é".as_bytes()));
        assert!(!may_contain(b"not-a-jwt", b"alice"));
    }
    use super::*;

    fn enc(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    pub fn make(payload: &str) -> String {
        format!("{}.{}.c2ln", enc(r#"{"alg":"RS256"}"#), enc(payload))
    }

    #[test]
    fn compact_form() {
        assert!(is_compact(make("{}").as_bytes()));
        assert!(is_compact(b"aa.bb."));
        assert!(!is_compact(b"aa.bb"));
        assert!(!is_compact(b"aa.bb.cc.dd"));
        assert!(!is_compact(b".bb.cc"));
        assert!(!is_compact(b"aa.bb.c\r\nX: y"));
        assert!(!is_compact(b"aa.b=.cc"));
        assert!(!is_compact(b""));
    }

    #[test]
    fn payload_must_be_a_json_object() {
        assert_eq!(payload(make(r#"{"a":1}"#).as_bytes()).unwrap()["a"], 1);
        assert_eq!(
            payload(make("[1]").as_bytes()),
            Err(JwtError::NotJsonObject)
        );
        assert_eq!(
            payload(make("nope").as_bytes()),
            Err(JwtError::NotJsonObject)
        );
        assert_eq!(payload(b"aa.a.cc"), Err(JwtError::BadBase64));
        assert_eq!(payload(b"garbage"), Err(JwtError::NotCompact));
    }

    #[test]
    fn exp_and_scopes() {
        let info = |p: &str| token_info(&payload(make(p).as_bytes()).unwrap());
        assert_eq!(
            info(r#"{"exp":100,"scope":"a  b"}"#),
            Ok(TokenInfo {
                exp: 100,
                scope: "a b".into()
            })
        );
        assert_eq!(
            info(r#"{"exp":100.0,"scp":["x","y",3]}"#).unwrap().scope,
            "x y"
        );
        assert_eq!(
            info(r#"{"scope":"a"}"#),
            Err(JwtError::BadExp("missing exp claim"))
        );
        assert_eq!(
            info(r#"{"exp":"100"}"#),
            Err(JwtError::BadExp("exp claim is not a number"))
        );
        assert_eq!(
            info(r#"{"exp":-1}"#),
            Err(JwtError::BadExp("exp claim out of range"))
        );
        assert_eq!(
            info(r#"{"exp":1e300}"#),
            Err(JwtError::BadExp("exp claim out of range"))
        );
        assert_eq!(
            info(r#"{"exp":99999999999999999999}"#),
            Err(JwtError::BadExp("exp claim out of range"))
        );
        assert_eq!(
            info(r#"{"exp":1.5}"#),
            Err(JwtError::BadExp("exp claim is not an integer"))
        );
        assert_eq!(info(r#"{"exp":5}"#).unwrap().scope, "");
    }

    #[test]
    fn claim_texts() {
        let c = payload(make(r#"{"s":"x","n":42,"b":true,"o":{},"a":[],"z":null}"#).as_bytes())
            .unwrap();
        assert_eq!(claim_text(&c, "s").as_deref(), Some("x"));
        assert_eq!(claim_text(&c, "n").as_deref(), Some("42"));
        assert_eq!(claim_text(&c, "b").as_deref(), Some("true"));
        for k in ["o", "a", "z", "missing"] {
            assert_eq!(claim_text(&c, k), None);
        }
    }
}
