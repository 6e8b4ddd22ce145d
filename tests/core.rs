//! Core behaviour (issue 2): Curity-compatible directives, errors and the token exchange.

mod support;

use std::time::Duration;

use support::http::{curl_h2, request};
use support::*;

const UNAUTHORIZED: &str = r#"{"code":"unauthorized_request","message":"Access denied due to missing, invalid or expired credentials"}"#;
const SERVER_ERROR: &str =
    r#"{"code":"server_error","message":"Problem encountered processing the request"}"#;

fn upstream_auth(s: &Stack) -> String {
    s.echo
        .last()
        .expect("upstream request")
        .header("authorization")
        .unwrap_or("")
        .to_string()
}

#[test]
fn missing_token_is_401_with_curity_body_and_challenge() {
    let s = Stack::start("", "");
    let r = s.get("/api", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));
    assert_eq!(s.echo.requests(), 0);
    assert_eq!(s.ids.introspections(), 0);
    assert!(s.nginx.wait_log("Authorization header not present"));
}

#[test]
fn other_scheme_is_401_and_logged() {
    let s = Stack::start("", "");
    let r = s.get("/api", &[("Authorization", "basic dXNlcjpwYXNz")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));
    assert!(s
        .nginx
        .wait_log("Authorization header does not contain a bearer token"));
    assert_eq!(s.ids.introspections(), 0);
}

#[test]
fn realm_and_scopes_form_a_well_formed_challenge() {
    let s = Stack::start(
        "",
        "phantom_token_realm myrealm; phantom_token_scopes \"read write\";",
    );
    let r = s.get("/api", &[]);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="myrealm", scope="read write""#)
    );
    let s = Stack::start("", "phantom_token_scope a; phantom_token_scope b;");
    assert_eq!(
        s.get("/", &[]).header("www-authenticate"),
        Some(r#"Bearer realm="api", scope="a b""#)
    );
    let s = Stack::start("", "phantom_token_scope a; phantom_token_scopes \"x y\";");
    assert_eq!(
        s.get("/", &[]).header("www-authenticate"),
        Some(r#"Bearer realm="api", scope="x y""#)
    );
}

#[test]
fn active_token_reaches_upstream_as_jwt() {
    let s = Stack::start("", "");
    let token = s.ids.issue("read write", 300);
    let r = s.get_bearer("/api/items?x=1", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    let auth = upstream_auth(&s);
    let jwt = auth.strip_prefix("Bearer ").expect("Bearer prefix");
    let claims = devsvr::jwt_claims(jwt).expect("a JWT upstream");
    assert_eq!(claims["scope"], "read write");
    let up = s.echo.last().unwrap();
    assert_eq!(up.target, "/api/items?x=1");
    for (_, v) in &up.headers {
        assert!(!v.contains(&token), "opaque token leaked upstream");
    }
    for (_, v) in &r.headers {
        assert!(
            !v.contains(jwt),
            "JWT leaked to the client in a response header"
        );
    }
    assert_eq!(s.ids.introspections(), 1);
    s.nginx.assert_clean_log();
}

#[test]
fn scheme_is_case_insensitive_and_spaces_are_skipped() {
    let s = Stack::start("", "");
    let token = s.ids.issue("read", 300);
    let r = s.get("/", &[("Authorization", &format!("bEaReR    {token}"))]);
    assert_eq!(r.status, 200);
    assert!(upstream_auth(&s).starts_with("Bearer ey"));
}

#[test]
fn inactive_token_is_401_invalid_token() {
    let s = Stack::start("", "phantom_token_scopes \"read\";");
    let r = s.get_bearer("/", "not-a-known-token");
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", scope="read", error="invalid_token""#)
    );
    assert_eq!(s.echo.requests(), 0);
    let revoked = s.ids.issue("read", 300);
    s.ids.revoke(&revoked);
    assert_eq!(s.get_bearer("/", &revoked).status, 401);
}

#[test]
fn identity_server_sees_only_the_form_post() {
    // Also with the client's headers passed: the module gives the subrequest its own.
    let s = Stack::with_ids(
        IdConfig::default(),
        "",
        "",
        "proxy_pass_request_headers on;",
    );
    let token = "a+b/c==";
    s.ids.issue_named(token, "read", 300);
    let r = http::request(
        s.nginx.port,
        "POST",
        "/submit",
        &[
            ("Authorization", "Bearer a+b/c=="),
            ("Cookie", "session=secret"),
            ("X-Client", "yes"),
        ],
        Some(b"client-body"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = s.ids.last_introspection().unwrap();
    assert_eq!(got.method, "POST");
    assert_eq!(got.body, b"token=a%2Bb%2Fc%3D%3D");
    assert_eq!(got.header("content-length"), Some("21"));
    assert_eq!(
        got.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(got.header("accept"), Some("application/jwt"));
    assert!(got.header("cookie").is_none());
    assert!(got.header("x-client").is_none());
    assert!(got.header("transfer-encoding").is_none());
    assert_eq!(s.echo.last().unwrap().body, b"client-body");
}

#[test]
fn identity_server_rejecting_client_is_502() {
    let s = Stack::start("", "");
    let token = s.ids.issue("read", 300);
    s.ids.set_config(IdConfig {
        client_secret: "other".into(),
        ..IdConfig::default()
    });
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), SERVER_ERROR);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(s
        .nginx
        .wait_log("Introspection subrequest returned response code: 401"));
}

#[test]
fn identity_server_errors_are_502() {
    let s = Stack::start("", "");
    let token = s.ids.issue("read", 300);
    for code in [403, 404, 500, 502] {
        s.ids.set_fault(Fault::Status(code));
        let r = s.get_bearer("/", &token);
        assert_eq!(r.status, 502, "identity server status {code}");
        assert_eq!(r.text(), SERVER_ERROR);
        assert!(s.nginx.wait_log(&format!("returned response code: {code}")));
    }
    assert_eq!(s.echo.requests(), 0);
}

#[test]
fn unreachable_or_slow_identity_server_is_503() {
    let s = Stack::start("", "");
    let token = s.ids.issue("read", 300);
    s.ids.set_fault(Fault::Delay(Duration::from_secs(5)));
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), SERVER_ERROR);
    s.ids.set_fault(Fault::None);
    s.ids.stop();
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 503);
    assert!(s.nginx.wait_log("Identity server unavailable"));
    s.nginx.assert_clean_log();
}

#[test]
fn request_bodies_and_methods_reach_upstream_intact() {
    let s = Stack::start("", "");
    let token = s.ids.issue("read", 300);
    let auth = format!("Bearer {token}");
    let body = "x".repeat(100_000);
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let r = request(
            s.nginx.port,
            method,
            "/upload?a=b",
            &[("Authorization", &auth)],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 200, "{method}");
        let up = s.echo.last().unwrap();
        assert_eq!(up.method, method);
        assert_eq!(up.target, "/upload?a=b");
        assert_eq!(up.body.len(), body.len(), "{method} body");
    }
    let chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = request(
        s.nginx.port,
        "POST",
        "/chunked",
        &[("Authorization", &auth), ("Transfer-Encoding", "chunked")],
        Some(chunked),
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.echo.last().unwrap().body, b"hello world");
}

#[test]
fn many_and_large_headers_reach_upstream() {
    let s = Stack::start("large_client_header_buffers 8 64k;", "");
    let token = s.ids.issue("read", 300);
    let auth = format!("Bearer {token}");
    let big = "v".repeat(20_000);
    let mut headers: Vec<(String, String)> = (0..30)
        .map(|i| (format!("X-H{i}"), format!("value-{i}")))
        .collect();
    headers.push(("X-Big".into(), big.clone()));
    headers.push(("Accept".into(), "text/csv".into()));
    headers.push(("Content-Type".into(), "application/xml".into()));
    headers.push(("Authorization".into(), auth));
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = request(s.nginx.port, "POST", "/", &refs, Some(b"<a/>"));
    assert_eq!(r.status, 200);
    let up = s.echo.last().unwrap();
    for i in 0..30 {
        assert_eq!(
            up.header(&format!("x-h{i}")),
            Some(format!("value-{i}").as_str())
        );
    }
    assert_eq!(up.header("x-big").map(str::len), Some(big.len()));
    assert_eq!(up.header("accept"), Some("text/csv"));
    assert_eq!(up.header("content-type"), Some("application/xml"));
    assert_eq!(
        up.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("accept"))
            .count(),
        1
    );
}

#[test]
fn http2_requests_work() {
    let s = Stack::start("", "");
    let token = s.ids.issue("read", 300);
    let auth = format!("Bearer {token}");
    let (status, _, _) = curl_h2(s.nginx.h2_port, "/h2", &[("Authorization", &auth)], None);
    assert_eq!(status, 200);
    assert!(upstream_auth(&s).starts_with("Bearer ey"));
    let (status, _, _) = curl_h2(
        s.nginx.h2_port,
        "/h2post",
        &[("Authorization", &auth)],
        Some("h2-body"),
    );
    assert_eq!(status, 200);
    let up = s.echo.last().unwrap();
    assert_eq!(up.body, b"h2-body");
    assert_eq!(up.method, "POST");
    let (status, head, body) = curl_h2(s.nginx.h2_port, "/h2", &[], None);
    assert_eq!(status, 401);
    assert!(head
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer realm=\"api\""));
    assert_eq!(body, UNAUTHORIZED);
}

#[test]
fn large_jwts_need_no_buffer_tuning() {
    for size in [16 * 1024, 64 * 1024] {
        let cfg = IdConfig {
            jwt_size: size,
            ..IdConfig::default()
        };
        let s = Stack::with_ids(cfg, "", "", "");
        let token = s.ids.issue("read", 300);
        let r = s.get_bearer("/", &token);
        assert_eq!(
            r.status,
            200,
            "JWT of {size} bytes: {}",
            s.nginx.error_log()
        );
        assert!(upstream_auth(&s).len() >= size);
        s.nginx.assert_clean_log();
    }
}

#[test]
fn enabled_without_endpoint_passes_unprotected_and_warns() {
    let echo = EchoServer::start().unwrap();
    let server = format!(
        "location / {{ phantom_token on; proxy_pass http://127.0.0.1:{}; }}",
        echo.port()
    );
    let n = Nginx::start("", &server);
    let r = request(n.port, "GET", "/", &[], None);
    assert_eq!(r.status, 200);
    assert!(n.wait_log("Module not configured properly: missing introspection endpoint"));
}

#[test]
fn off_in_a_location_overrides_http_level_on() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let server = format!(
        "location /public {{ phantom_token off; proxy_pass http://127.0.0.1:{e}; }}
         location / {{ proxy_pass http://127.0.0.1:{e}; }}
         {}",
        introspection_location(ids.port(), ""),
        e = echo.port()
    );
    let http = "phantom_token on; phantom_token_introspection_endpoint /_introspect;";
    let n = Nginx::start(http, &server);
    assert_eq!(request(n.port, "GET", "/public", &[], None).status, 200);
    assert_eq!(request(n.port, "GET", "/private", &[], None).status, 401);
}

#[test]
fn options_is_204_like_curity_or_passed_when_allowed() {
    let s = Stack::start("", "");
    let r = request(s.nginx.port, "OPTIONS", "/", &[], None);
    assert_eq!(r.status, 204);
    assert_eq!(s.echo.requests(), 0);
    let s = Stack::start("", "phantom_token_allow_preflight on;");
    let r = request(
        s.nginx.port,
        "OPTIONS",
        "/",
        &[("Origin", "https://spa.example")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.echo.last().unwrap().method, "OPTIONS");
}

#[test]
fn internal_redirect_after_exchange_does_not_introspect_again() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let server = format!(
        "location / {{
            phantom_token on;
            phantom_token_introspection_endpoint /_introspect;
            root /nonexistent;
            try_files /missing-file @api;
        }}
        location @api {{
            phantom_token on;
            phantom_token_introspection_endpoint /_introspect;
            proxy_pass http://127.0.0.1:{};
        }}
        {}",
        echo.port(),
        introspection_location(ids.port(), "")
    );
    let n = Nginx::start("", &server);
    let token = ids.issue("read", 300);
    let r = request(
        n.port,
        "GET",
        "/",
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(r.status, 200, "{}", n.error_log());
    assert_eq!(ids.introspections(), 1);
    assert!(echo
        .last()
        .unwrap()
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ey"));
}

#[test]
fn head_requests_get_status_only() {
    let s = Stack::start("", "");
    let r = request(s.nginx.port, "HEAD", "/", &[], None);
    assert_eq!(r.status, 401);
    assert!(r.body.is_empty());
}
