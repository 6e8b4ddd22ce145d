//! Error bodies (Curity-compatible) and `WWW-Authenticate` values (RFC 6750).

/// Body of a 401: no token, or an invalid, expired or badly bound one.
pub const UNAUTHORIZED_BODY: &str = r#"{"code":"unauthorized_request","message":"Access denied due to missing, invalid or expired credentials"}"#;
/// Body of a 500, 502 or 503: the identity server is unreachable, failing or answered
/// something unusable.
pub const SERVER_ERROR_BODY: &str =
    r#"{"code":"server_error","message":"Problem encountered processing the request"}"#;
/// Body of a 429: the introspection request was rate limited (the identity server gave 429).
pub const TOO_MANY_REQUESTS_BODY: &str =
    r#"{"code":"too_many_requests","message":"Too many requests, retry later"}"#;
/// Body of a 403: the token lacks a scope the location requires.
pub const FORBIDDEN_BODY: &str =
    r#"{"code":"forbidden","message":"Access denied due to insufficient scope"}"#;

/// The `error` of a Bearer challenge (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// The request is malformed, e.g. the `Authorization` header cannot be parsed.
    InvalidRequest,
    /// The token is expired, revoked, malformed or otherwise not accepted.
    InvalidToken,
    /// The token is valid but lacks the scope the location requires.
    InsufficientScope,
}

impl BearerError {
    /// The RFC 6750 error code, e.g. `invalid_token`.
    pub fn as_str(self) -> &'static str {
        match self {
            BearerError::InvalidRequest => "invalid_request",
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
        }
    }
}

/// `Bearer realm="..", scope="..", error=".."` (for `insufficient_scope`: realm, error, scope).
/// Empty realm or scope are left out; values are quoted-string escaped.
pub fn www_authenticate(realm: &str, scope: &str, error: Option<BearerError>) -> String {
    let mut params: Vec<(&str, &str)> = Vec::new();
    if !realm.is_empty() {
        params.push(("realm", realm));
    }
    let scope_param = (!scope.is_empty()).then_some(("scope", scope));
    let error_param = error.map(|e| ("error", e.as_str()));
    if error == Some(BearerError::InsufficientScope) {
        params.extend(error_param.into_iter().chain(scope_param));
    } else {
        params.extend(scope_param.into_iter().chain(error_param));
    }
    let list: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", quote(v)))
        .collect();
    if list.is_empty() {
        "Bearer".to_string()
    } else {
        format!("Bearer {}", list.join(", "))
    }
}

/// `DPoP [realm="..", ][error="..", error_description="..", ]algs=".."` (RFC 9449 7.1).
pub fn dpop_challenge(
    realm: &str,
    algs: &str,
    error: Option<&str>,
    description: Option<&str>,
) -> String {
    let mut params: Vec<String> = Vec::new();
    if !realm.is_empty() {
        params.push(format!("realm=\"{}\"", quote(realm)));
    }
    if let Some(e) = error {
        params.push(format!("error=\"{}\"", quote(e)));
    }
    if let Some(d) = description {
        params.push(format!("error_description=\"{}\"", quote(d)));
    }
    params.push(format!("algs=\"{}\"", quote(algs)));
    format!("DPoP {}", params.join(", "))
}

/// `Bearer [realm="..", ]error="..", error_description=".."` (a bound token sent as Bearer).
pub fn bearer_error(realm: &str, error: &str, description: &str) -> String {
    let realm = match realm {
        "" => String::new(),
        r => format!("realm=\"{}\", ", quote(r)),
    };
    format!(
        "Bearer {realm}error=\"{}\", error_description=\"{}\"",
        quote(error),
        quote(description)
    )
}

/// Body of a 400: a request with both a Bearer token and a DPoP proof (RFC 9449 §7.2).
pub const BAD_REQUEST_BODY: &str = r#"{"code":"invalid_request","message":"The request carries both a Bearer token and a DPoP proof"}"#;

fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_curity_without_its_trailing_comma() {
        assert_eq!(www_authenticate("api", "", None), r#"Bearer realm="api""#);
        assert_eq!(
            www_authenticate("api", "a b c", None),
            r#"Bearer realm="api", scope="a b c""#
        );
        assert_eq!(
            www_authenticate("api", "a", Some(BearerError::InvalidToken)),
            r#"Bearer realm="api", scope="a", error="invalid_token""#
        );
        assert_eq!(
            www_authenticate("api", "read write", Some(BearerError::InsufficientScope)),
            r#"Bearer realm="api", error="insufficient_scope", scope="read write""#
        );
        assert_eq!(www_authenticate("", "", None), "Bearer");
        assert_eq!(www_authenticate("", "s", None), r#"Bearer scope="s""#);
    }

    #[test]
    fn dpop_challenges() {
        assert_eq!(
            dpop_challenge("", "ES256", None, None),
            r#"DPoP algs="ES256""#
        );
        assert_eq!(
            dpop_challenge("api", "ES256", None, None),
            r#"DPoP realm="api", algs="ES256""#
        );
        assert_eq!(
            dpop_challenge(
                "",
                "ES256 RS256",
                Some("invalid_dpop_proof"),
                Some("bad \"htu\"")
            ),
            r#"DPoP error="invalid_dpop_proof", error_description="bad \"htu\"", algs="ES256 RS256""#
        );
        assert_eq!(
            bearer_error("api", "invalid_token", "The token is DPoP-bound"),
            r#"Bearer realm="api", error="invalid_token", error_description="The token is DPoP-bound""#
        );
    }

    #[test]
    fn escapes_and_drops_controls() {
        assert_eq!(
            www_authenticate("a\"b\\c\r\nd", "", None),
            r#"Bearer realm="a\"b\\cd""#
        );
    }

    #[test]
    fn bodies_are_json() {
        for b in [UNAUTHORIZED_BODY, SERVER_ERROR_BODY, FORBIDDEN_BODY] {
            assert!(serde_json::from_str::<serde_json::Value>(b)
                .unwrap()
                .is_object());
        }
    }
}
