//! Interpreting the identity server's 200 response in the configured format.

use serde_json::{Map, Value};

use crate::jwt::{is_compact, payload, token_info, TokenInfo};

/// How the identity server answers (`phantom_token_response_format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Curity: `Accept: application/jwt`, the body is the JWT, 204 when inactive.
    Jwt,
    /// RFC 7662 JSON with the JWT in the named member (Keycloak: `jwt`).
    JsonField(String),
    /// RFC 9701 `application/token-introspection+jwt`.
    Rfc9701,
}

/// What a 200 introspection response says about the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The token is active; `jwt` goes upstream.
    Active {
        /// The JWT to forward (for RFC 9701, the whole signed response).
        jwt: Vec<u8>,
        /// Its expiry and scopes, for caching and the scope check.
        info: TokenInfo,
    },
    /// The response says `"active": false` (Curity's 204 is handled before [`interpret`]).
    Inactive,
    /// The response is unusable; the reason is for the error log (never token bytes).
    Invalid(String),
}

/// Interprets a 200 response body. `_now` is reserved for freshness checks of RFC 9701
/// responses; expiry of the token itself is decided by the caller from `info.exp`.
pub fn interpret(format: &Format, body: &[u8], _now: i64) -> Verdict {
    let body = body.trim_ascii();
    if body.is_empty() {
        return Verdict::Invalid("empty introspection response".into());
    }
    match format {
        Format::Jwt => active_jwt(body),
        Format::JsonField(name) => json_field(body, name),
        Format::Rfc9701 => rfc9701(body),
    }
}

fn active_jwt(jwt: &[u8]) -> Verdict {
    if !is_compact(jwt) {
        return Verdict::Invalid("response is not a compact JWT".into());
    }
    match payload(jwt).and_then(|c| token_info(&c)) {
        Ok(info) => Verdict::Active {
            jwt: jwt.to_vec(),
            info,
        },
        Err(e) => Verdict::Invalid(e.to_string()),
    }
}

fn active_flag(obj: &Map<String, Value>) -> Result<bool, Verdict> {
    match obj.get("active") {
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Verdict::Invalid("\"active\" is not a boolean".into())),
        None => Err(Verdict::Invalid("\"active\" is missing".into())),
    }
}

fn json_field(body: &[u8], name: &str) -> Verdict {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        _ => return Verdict::Invalid("response is not a JSON object".into()),
    };
    match active_flag(&obj) {
        Err(v) => v,
        Ok(false) => Verdict::Inactive,
        Ok(true) => match obj.get(name) {
            Some(Value::String(jwt)) => active_jwt(jwt.as_bytes()),
            _ => Verdict::Invalid(format!("member \"{name}\" with the JWT is missing")),
        },
    }
}

/// RFC 9701: signature verification is left to the API, which receives the whole response.
fn rfc9701(body: &[u8]) -> Verdict {
    if !is_compact(body) {
        return Verdict::Invalid("response is not a compact JWT".into());
    }
    let claims = match payload(body) {
        Ok(c) => c,
        Err(e) => return Verdict::Invalid(e.to_string()),
    };
    let Some(Value::Object(ti)) = claims.get("token_introspection") else {
        return Verdict::Invalid("\"token_introspection\" claim is missing".into());
    };
    match active_flag(ti) {
        Err(v) => v,
        Ok(false) => Verdict::Inactive,
        Ok(true) => match token_info(ti) {
            Ok(info) => Verdict::Active {
                jwt: body.to_vec(),
                info,
            },
            Err(e) => Verdict::Invalid(e.to_string()),
        },
    }
}

/// Whether an error response (RFC 6749 section 5.2 JSON) says that the token itself is not
/// acceptable (`invalid_token`, `unsupported_token_type`): such a token is inactive, not a
/// gateway failure. Identity servers such as `oidc-provider` answer so for JWT-shaped input.
pub fn token_rejected(status: usize, body: &[u8]) -> bool {
    if status != 400 {
        return false;
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body.trim_ascii()) else {
        return false;
    };
    matches!(
        obj.get("error"),
        Some(Value::String(e)) if e == "invalid_token" || e == "unsupported_token_type"
    )
}

impl Format {
    /// A stable name of the format, part of the cache key's context.
    pub fn key(&self) -> String {
        match self {
            Format::Jwt => "jwt".into(),
            Format::JsonField(name) => format!("json_field:{name}"),
            Format::Rfc9701 => "rfc9701".into(),
        }
    }

    /// The media type this format's responses carry (and the `Accept` to send).
    pub fn media_type(&self) -> &'static str {
        match self {
            Format::Jwt => "application/jwt",
            Format::JsonField(_) => "application/json",
            Format::Rfc9701 => "application/token-introspection+jwt",
        }
    }
}

/// Whether a 200 response's `Content-Type` fits the format: the media type (parameters
/// ignored) must match; a missing header is accepted, as Curity's module does.
pub fn content_type_ok(format: &Format, content_type: &[u8]) -> bool {
    let media = content_type
        .split(|c| *c == b';')
        .next()
        .unwrap_or(&[])
        .trim_ascii();
    media.is_empty() || media.eq_ignore_ascii_case(format.media_type().as_bytes())
}

/// Parses the directive arguments: `jwt`, `rfc9701` or `json_field <member>`.
pub fn parse_format(args: &[&str]) -> Result<Format, String> {
    match args {
        ["jwt"] => Ok(Format::Jwt),
        ["rfc9701"] => Ok(Format::Rfc9701),
        ["json_field", name] if !name.is_empty() => Ok(Format::JsonField((*name).to_string())),
        ["json_field"] => Err("json_field needs the name of the member holding the JWT".into()),
        _ => Err(format!(
            "unknown format \"{}\" (expected jwt, json_field <member> or rfc9701)",
            args.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn token_rejections_are_recognised() {
        assert!(token_rejected(400, br#"{"error":"invalid_token"}"#));
        assert!(token_rejected(
            400,
            br#" {"error":"unsupported_token_type","error_description":"x"} "#
        ));
        assert!(!token_rejected(400, br#"{"error":"invalid_client"}"#));
        assert!(!token_rejected(400, br#"{"error":"invalid_request"}"#));
        assert!(!token_rejected(401, br#"{"error":"invalid_token"}"#));
        assert!(!token_rejected(400, b"invalid_token"));
        assert!(!token_rejected(400, br#"["invalid_token"]"#));
    }

    #[test]
    fn format_keys_differ() {
        assert_eq!(Format::Jwt.key(), "jwt");
        assert_eq!(Format::JsonField("jwt".into()).key(), "json_field:jwt");
        assert_ne!(Format::Rfc9701.key(), Format::Jwt.key());
    }

    #[test]
    fn curity_jwt_body() {
        let j = jwt(r#"{"exp":200,"scope":"read"}"#);
        let v = interpret(&Format::Jwt, format!("{j}\n").as_bytes(), 100);
        assert_eq!(
            v,
            Verdict::Active {
                jwt: j.into_bytes(),
                info: TokenInfo {
                    exp: 200,
                    scope: "read".into()
                }
            }
        );
        assert_eq!(
            interpret(&Format::Jwt, b"", 0),
            Verdict::Invalid("empty introspection response".into())
        );
        assert!(matches!(
            interpret(&Format::Jwt, b"<html>", 0),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            interpret(&Format::Jwt, jwt("[]").as_bytes(), 0),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            interpret(&Format::Jwt, jwt("{}").as_bytes(), 0),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn json_field_body() {
        let f = Format::JsonField("jwt".into());
        let j = jwt(r#"{"exp":200}"#);
        let body = format!(r#"{{"active":true,"jwt":"{j}"}}"#);
        assert!(matches!(
            interpret(&f, body.as_bytes(), 0),
            Verdict::Active { .. }
        ));
        assert_eq!(interpret(&f, br#"{"active":false}"#, 0), Verdict::Inactive);
        assert!(matches!(
            interpret(&f, br#"{"active":"true"}"#, 0),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            interpret(&f, br#"{"active":true}"#, 0),
            Verdict::Invalid(_)
        ));
        assert!(matches!(interpret(&f, br#"[1]"#, 0), Verdict::Invalid(_)));
    }

    #[test]
    fn rfc9701_body() {
        let active =
            jwt(r#"{"iss":"x","token_introspection":{"active":true,"exp":300,"scope":"a b"}}"#);
        match interpret(&Format::Rfc9701, active.as_bytes(), 0) {
            Verdict::Active { jwt: j, info } => {
                assert_eq!(j, active.as_bytes());
                assert_eq!(info.scope, "a b");
            }
            v => panic!("{v:?}"),
        }
        let inactive = jwt(r#"{"token_introspection":{"active":false}}"#);
        assert_eq!(
            interpret(&Format::Rfc9701, inactive.as_bytes(), 0),
            Verdict::Inactive
        );
        assert!(matches!(
            interpret(&Format::Rfc9701, jwt(r#"{"a":1}"#).as_bytes(), 0),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn content_types() {
        assert!(content_type_ok(&Format::Jwt, b"application/jwt"));
        assert!(content_type_ok(
            &Format::Jwt,
            b"Application/JWT; charset=utf-8"
        ));
        assert!(content_type_ok(&Format::Jwt, b""));
        assert!(!content_type_ok(&Format::Jwt, b"text/html"));
        assert!(!content_type_ok(
            &Format::JsonField("jwt".into()),
            b"application/jwt"
        ));
        assert!(content_type_ok(
            &Format::Rfc9701,
            b"application/token-introspection+jwt"
        ));
    }

    #[test]
    fn formats_parse() {
        assert_eq!(parse_format(&["jwt"]), Ok(Format::Jwt));
        assert_eq!(parse_format(&["rfc9701"]), Ok(Format::Rfc9701));
        assert_eq!(
            parse_format(&["json_field", "jwt"]),
            Ok(Format::JsonField("jwt".into()))
        );
        assert!(parse_format(&["json_field"]).is_err());
        assert!(parse_format(&["xml"]).is_err());
    }
}
