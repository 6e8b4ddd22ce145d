//! Issue 17, item 9: under `phantom_token_compat curity`, every line Curity's C module
//! (`phantom_token.c`) writes for an event is written too, at its level or higher, so that
//! log alerts written for Curity's module keep matching. Curity's debug-level lines
//! ("Authorization header not present", ...) are written at `info` by this module.

mod support;

use std::time::{Duration, Instant};

use support::http::request;
use support::*;

const COMPAT: &str = "phantom_token_compat curity;";
const RESPONSE_CODE: &str = "Introspection subrequest returned response code: ";

fn curity() -> Stack {
    Stack::start("", COMPAT)
}

/// Whether `line` holds `text` as a whole message part (not `...: 50` inside `...: 502`).
fn holds(line: &str, text: &str) -> bool {
    line.match_indices(text).any(|(i, _)| {
        !line[i + text.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Error-log lines at `level` (`error`, `warn`, `info`) holding `text`.
fn count(n: &Nginx, level: &str, text: &str) -> usize {
    let tag = format!("[{level}]");
    n.error_log()
        .lines()
        .filter(|l| l.contains(&tag) && holds(l, text))
        .count()
}

/// Waits (briefly) until more than `before` such lines are logged.
fn logged(n: &Nginx, before: usize, level: &str, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if count(n, level, text) > before {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `auth` (if any) and checks the status and that Curity's `line` was logged at `level`.
fn expect(s: &Stack, auth: Option<&str>, status: u16, level: &str, line: &str) {
    let before = count(&s.nginx, level, line);
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    let r = s.get("/", &headers);
    assert_eq!(r.status, status, "{auth:?}\n{}", s.nginx.error_log());
    assert!(
        logged(&s.nginx, before, level, line),
        "[{level}] {line:?} missing for {auth:?}:\n{}",
        s.nginx.error_log()
    );
}

/// A whole raw HTTP response from the identity server.
fn http_response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn missing_authorization_header_logs_curity_line() {
    let s = curity();
    let line = "Authorization header not present";
    expect(&s, None, 401, "info", line);
    expect(&s, Some(""), 401, "info", line);
    assert_eq!(s.ids.introspections(), 0);
}

#[test]
fn other_scheme_logs_curity_line() {
    let s = curity();
    let line = "Authorization header does not contain a bearer token";
    expect(&s, Some("Basic dXNlcjpwYXNz"), 401, "info", line);
    expect(&s, Some("Token abc"), 401, "info", line);
}

#[test]
fn bearer_without_token_logs_curity_line() {
    // Curity looks for "Bearer " with its space; nginx trims the header's trailing spaces.
    let s = curity();
    let line = "Authorization header does not contain a bearer token";
    expect(&s, Some("Bearer"), 401, "info", line);
    expect(&s, Some("Bearer   "), 401, "info", line);
    // With "Bearer " present Curity would introspect: no such line, only the module's.
    let before = count(&s.nginx, "info", line);
    expect(
        &s,
        Some("Bearer a\"b"),
        401,
        "info",
        "Authorization header contains a malformed bearer token",
    );
    assert_eq!(count(&s.nginx, "info", line), before);
    assert_eq!(s.ids.introspections(), 0);
}

#[test]
fn inactive_token_logs_no_curity_error() {
    // Curity logs nothing but debug for a 204: "expected".
    let s = curity();
    expect(
        &s,
        Some("Bearer unknown-token"),
        401,
        "info",
        "The access token is not active",
    );
    let log = s.nginx.error_log();
    assert!(!log.contains(RESPONSE_CODE), "{log}");
    assert!(!log.contains("[error]"), "{log}");
}

#[test]
fn identity_server_statuses_log_curity_line() {
    let s = curity();
    let token = s.ids.issue("read", 300);
    let auth = format!("Bearer {token}");
    // Curity's mapping: 401, 403, 404 and 5xx are 502, 503 is 503, anything else 500.
    for (code, status) in [
        (401, 502),
        (403, 502),
        (404, 502),
        (400, 500),
        (418, 500),
        (500, 502),
        (502, 502),
        (504, 502),
    ] {
        s.ids.set_fault(Fault::Status(code));
        expect(
            &s,
            Some(&auth),
            status,
            "error",
            &format!("{RESPONSE_CODE}{code}"),
        );
    }
    s.ids.set_fault(Fault::Unavailable { retry_after: None });
    expect(
        &s,
        Some(&auth),
        503,
        "error",
        &format!("{RESPONSE_CODE}503"),
    );
    assert_eq!(s.echo.requests(), 0);
}

#[test]
fn identity_server_rejecting_the_token_logs_curity_line() {
    let s = curity();
    let body = br#"{"error":"invalid_token","error_description":"no"}"#;
    s.ids.set_fault(Fault::Raw(http_response(
        "400 Bad Request",
        "application/json",
        body,
    )));
    expect(
        &s,
        Some("Bearer t1"),
        401,
        "error",
        &format!("{RESPONSE_CODE}400"),
    );
}

#[test]
fn rate_limited_introspection_logs_curity_line() {
    let s = curity();
    s.ids.set_fault(Fault::Status(429));
    expect(
        &s,
        Some("Bearer t1"),
        429,
        "error",
        &format!("{RESPONSE_CODE}429"),
    );
}

#[test]
fn unreachable_identity_server_logs_curity_line() {
    let s = curity();
    let token = s.ids.issue("read", 300);
    let auth = format!("Bearer {token}");
    // Closed without a byte.
    s.ids.set_fault(Fault::Raw(Vec::new()));
    expect(
        &s,
        Some(&auth),
        502,
        "error",
        &format!("{RESPONSE_CODE}502"),
    );
    // Connection refused: Curity's line, and the module's own.
    s.ids.stop();
    let own = "Identity server unavailable";
    let before = count(&s.nginx, "error", own);
    expect(
        &s,
        Some(&auth),
        502,
        "error",
        &format!("{RESPONSE_CODE}502"),
    );
    assert!(logged(&s.nginx, before, "error", own));
    s.nginx.assert_clean_log();
}

#[test]
fn timed_out_identity_server_logs_curity_line() {
    // The introspection location's proxy_read_timeout is 3s: nginx's 504.
    let s = curity();
    let token = s.ids.issue("read", 300);
    s.ids.set_fault(Fault::Delay(Duration::from_secs(5)));
    expect(
        &s,
        Some(&format!("Bearer {token}")),
        502,
        "error",
        &format!("{RESPONSE_CODE}504"),
    );
}

#[test]
fn non_http_reply_logs_curity_line() {
    let s = curity();
    s.ids.set_fault(Fault::Raw(b"SSH-2.0-OpenSSH\r\n".to_vec()));
    expect(
        &s,
        Some("Bearer t1"),
        502,
        "error",
        &format!("{RESPONSE_CODE}502"),
    );
}

#[test]
fn oversized_jwt_logs_curity_buffer_line() {
    let cfg = IdConfig {
        jwt_size: 300 * 1024,
        ..IdConfig::default()
    };
    let s = Stack::with_ids(cfg, "", COMPAT, "");
    let token = s.ids.issue("read", 300);
    expect(
        &s,
        Some(&format!("Bearer {token}")),
        502,
        "error",
        "The introspection response buffer is too small to contain the JWT: increase the proxy_buffer_size configuration setting",
    );
    assert_eq!(s.echo.requests(), 0);
}

#[test]
fn unusable_body_logs_curity_line() {
    let s = curity();
    s.ids.set_fault(Fault::Raw(http_response(
        "200 OK",
        "application/jwt",
        b"<html>oops</html>",
    )));
    expect(
        &s,
        Some("Bearer t1"),
        502,
        "error",
        "Failed to obtain JWT access token from introspection response or cache",
    );
}

#[test]
fn options_is_204_with_no_error_lines() {
    // Curity's only line here is at debug ("Not processing OPTIONS request").
    let s = curity();
    let r = request(s.nginx.port, "OPTIONS", "/", &[], None);
    assert_eq!(r.status, 204);
    assert_eq!(s.echo.requests(), 0);
    let log = s.nginx.error_log();
    assert!(!log.contains("[error]") && !log.contains("[warn]"), "{log}");
}

#[test]
fn missing_endpoint_warns_like_curity() {
    let echo = EchoServer::start().unwrap();
    let server = format!(
        "location / {{ phantom_token on; {COMPAT} proxy_pass http://127.0.0.1:{}; }}",
        echo.port()
    );
    let n = Nginx::start("", &server);
    let before = count(&n, "warn", "Module not configured properly");
    let r = request(n.port, "GET", "/", &[], None);
    assert_eq!(r.status, 200);
    assert!(logged(
        &n,
        before,
        "warn",
        "Module not configured properly: missing introspection endpoint"
    ));
}
