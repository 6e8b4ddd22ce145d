//! Hardening (issue 5): hostile clients, hostile identity-server responses, security invariants.

mod support;

use std::time::Duration;

use support::http::{raw, request};
use support::*;

const UNAUTHORIZED: &str = r#"{"code":"unauthorized_request","message":"Access denied due to missing, invalid or expired credentials"}"#;
const SERVER_ERROR: &str =
    r#"{"code":"server_error","message":"Problem encountered processing the request"}"#;

fn get_raw_auth(s: &Stack, value: &[u8]) -> Response {
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: ".to_vec();
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n\r\n");
    raw(s.nginx.port, &req)
}

#[test]
fn hostile_authorization_headers_never_reach_the_identity_server() {
    let s = Stack::start(
        "phantom_token_cache_zone c:1m; large_client_header_buffers 4 32k;",
        "phantom_token_cache c;",
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("empty", b"".to_vec(), 401),
        ("bearer only", b"Bearer".to_vec(), 401),
        ("bearer and spaces", b"Bearer    ".to_vec(), 401),
        ("inner space", b"Bearer abc def".to_vec(), 401),
        ("comma", b"Bearer a,b".to_vec(), 401),
        ("quote", b"Bearer \"abc\"".to_vec(), 401),
        ("control bytes", b"Bearer ab\x01\x7fcd".to_vec(), 401),
        ("non-ascii", "Bearer t\u{f6}ken".as_bytes().to_vec(), 401),
        ("latin1", b"Bearer tok\xe9n".to_vec(), 401),
        ("padding inside", b"Bearer ab=cd".to_vec(), 401),
        (
            "9 KiB token",
            [b"Bearer ".as_slice(), &[b'a'; 9000]].concat(),
            401,
        ),
        (
            "64 KiB header",
            [b"Bearer ".as_slice(), &[b'a'; 65536]].concat(),
            400,
        ),
    ];
    for (name, value, status) in cases {
        let r = get_raw_auth(&s, &value);
        assert_eq!(r.status, status, "{name}");
        if status == 401 {
            assert_eq!(r.text(), UNAUTHORIZED, "{name}");
            assert!(
                r.header("www-authenticate")
                    .unwrap()
                    .starts_with("Bearer realm=\"api\""),
                "{name}"
            );
        }
    }
    // NUL in a header and a second Authorization header are refused by nginx itself.
    assert_eq!(get_raw_auth(&s, b"Bearer ab\0cd").status, 400);
    let dup = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n";
    assert_eq!(raw(s.nginx.port, dup).status, 400);
    assert_eq!(
        s.ids.introspections(),
        0,
        "a malformed token must never be introspected"
    );
    assert_eq!(s.echo.requests(), 0);
    s.nginx.assert_clean_log();
}

/// A raw HTTP response from the identity server.
fn http_response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .into_bytes();
    r.extend_from_slice(body);
    r
}

fn jwt_with(payload: &str) -> String {
    use base64::Engine;
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.c2lnbmF0dXJl", e(r#"{"alg":"HS256"}"#), e(payload))
}

#[test]
fn hostile_identity_server_responses_fail_cleanly_and_are_not_cached() {
    let s = Stack::start(
        "phantom_token_cache_zone c:1m negative_ttl=30s;",
        "phantom_token_cache c;",
    );
    let token = s.ids.issue("read", 300);
    let far = 4_000_000_000i64;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage body", http_response("200 OK", "application/jwt", b"<html>oops</html>"), 502),
        ("truncated JWT", http_response("200 OK", "application/jwt", b"eyJhbGciOiJIUzI1NiJ9.eyJle"), 502),
        ("payload not JSON", http_response("200 OK", "application/jwt", jwt_with("not json").as_bytes()), 502),
        ("payload not object", http_response("200 OK", "application/jwt", jwt_with("[1,2]").as_bytes()), 502),
        ("exp missing", http_response("200 OK", "application/jwt", jwt_with(r#"{"sub":"a"}"#).as_bytes()), 502),
        ("exp not a number", http_response("200 OK", "application/jwt", jwt_with(r#"{"exp":"soon"}"#).as_bytes()), 502),
        ("exp huge", http_response("200 OK", "application/jwt", jwt_with(r#"{"exp":1e300}"#).as_bytes()), 502),
        ("exp in the past", http_response("200 OK", "application/jwt", jwt_with(r#"{"exp":1000}"#).as_bytes()), 401),
        ("empty 200", http_response("200 OK", "application/jwt", b""), 502),
        ("1 MiB body", http_response("200 OK", "application/jwt", &vec![b'a'; 1 << 20]), 502),
        (
            "wrong Content-Type",
            http_response("200 OK", "text/html", jwt_with(&format!(r#"{{"exp":{far}}}"#)).as_bytes()),
            502,
        ),
        (
            "header injection in JWT",
            http_response("200 OK", "application/jwt", format!("{}\r\nX-Evil: 1", jwt_with(&format!(r#"{{"exp":{far}}}"#))).as_bytes()),
            502,
        ),
        ("closed mid-body", b"HTTP/1.1 200 OK\r\nContent-Type: application/jwt\r\nContent-Length: 500\r\n\r\neyJhbGci".to_vec(), 502),
        ("not HTTP", b"SSH-2.0-OpenSSH\r\n".to_vec(), 502),
        ("closed at once", Vec::new(), 503),
    ];
    for (name, response, status) in cases {
        let before = s.ids.introspections();
        s.ids.set_fault(Fault::Raw(response));
        let r = s.get_bearer("/", &token);
        assert_eq!(r.status, status, "{name}: {}", s.nginx.error_log());
        let body = if status == 401 {
            UNAUTHORIZED
        } else {
            SERVER_ERROR
        };
        assert!(status < 503 || r.header("content-type") == Some("application/json"));
        assert_eq!(r.text(), body, "{name}");
        assert!(
            !r.text().contains("eyJ") && r.headers.iter().all(|(_, v)| !v.contains("eyJ")),
            "{name}"
        );
        // Nothing cached: the next request introspects again.
        s.get_bearer("/", &token);
        assert_eq!(s.ids.introspections(), before + 2, "{name} was cached");
    }
    assert_eq!(s.echo.requests(), 0, "no hostile response may grant access");
    s.nginx.assert_clean_log();
    let log = s.nginx.error_log();
    assert!(log.contains("Content-Type \"text/html\" instead of \"application/jwt\""));
    assert!(log.contains("response larger than"));
    assert!(log.contains("JWT payload is not a JSON object"));
}

#[test]
fn cached_tokens_keep_working_while_the_identity_server_is_down() {
    let s = Stack::start("phantom_token_cache_zone c:1m;", "phantom_token_cache c;");
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    s.ids.stop();
    for _ in 0..5 {
        assert_eq!(s.get_bearer("/", &token).status, 200);
    }
    assert_eq!(s.get_bearer("/", "another-token").status, 503);
}

#[test]
fn slow_identity_server_ends_within_the_configured_timeout() {
    let s = Stack::start("", "");
    let token = s.ids.issue("read", 300);
    s.ids.set_fault(Fault::Delay(Duration::from_secs(10)));
    let started = std::time::Instant::now();
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?} (proxy_read_timeout is 3s)",
        started.elapsed()
    );
}

/// The anonymous shared mappings of a process (where nginx puts shared memory zones).
fn shared_memory(pid: u32) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut out = Vec::new();
    for line in maps
        .lines()
        .filter(|l| l.contains("rw-s") && l.contains("/dev/zero"))
    {
        let range = line.split_whitespace().next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0; (b - a) as usize];
        mem.seek(SeekFrom::Start(a)).unwrap();
        if mem.read_exact(&mut buf).is_ok() {
            out.extend_from_slice(&buf);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn raw_tokens_are_never_in_shared_memory_or_logs() {
    let http = "phantom_token_cache_zone c:1m negative_ttl=30s;
                log_format full '$request $status $http_cookie $phantom_token_cache_status';";
    let s = Stack::start(
        http,
        "phantom_token_cache c; access_log full.log full; error_log debug_log.log debug;",
    );
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    assert_eq!(s.get_bearer("/", "inactive-token-xyz").status, 401);
    s.ids.set_fault(Fault::Status(500));
    assert_eq!(s.get_bearer("/", "failing-token-xyz").status, 502);
    let jwt = s
        .echo
        .last()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .unwrap_or_default();
    let jwt = jwt.strip_prefix("Bearer ").unwrap_or("").to_string();
    assert!(!jwt.is_empty());
    std::thread::sleep(Duration::from_millis(300));

    let master = std::fs::read_to_string(s.nginx.dir.join("nginx.pid")).unwrap();
    let shm = shared_memory(master.trim().parse().unwrap());
    assert!(
        contains(&shm, jwt.as_bytes()),
        "the cached JWT should be in the zone (wrong memory scanned?)"
    );
    for t in [token.as_str(), "inactive-token-xyz", "failing-token-xyz"] {
        assert!(!contains(&shm, t.as_bytes()), "raw token in shared memory");
        for log in ["error.log", "debug_log.log", "access.log", "full.log"] {
            let text = std::fs::read_to_string(s.nginx.dir.join(log)).unwrap_or_default();
            // nginx's own debug log (--with-debug builds) dumps request headers; that is
            // nginx, not the module, and documented in docs/troubleshooting.md.
            let leaks: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(t) && !l.contains("http header: "))
                .collect();
            assert!(leaks.is_empty(), "raw token in {log}: {leaks:?}");
        }
    }
}

#[test]
fn jwt_never_reaches_the_client_on_error_paths() {
    let s = Stack::start("", "phantom_token_required_scope admin;");
    let token = s.ids.issue("read", 300);
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("eyJ"));
    assert!(r.headers.iter().all(|(_, v)| !v.contains("eyJ")));
    let r = request(
        s.nginx.port,
        "HEAD",
        "/",
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(r.status, 403);
    assert!(r.body.is_empty());
}
