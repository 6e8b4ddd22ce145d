//! HTTP/3 (issue 21): the module behind `listen ... quic`, driven by a real HTTP/3 client
//! (aioquic, `tests/py/h3client.py`). Over HTTP/3 nginx takes request headers, cookies, the
//! request body and stream resets by other code paths than over HTTP/1.1 and HTTP/2, and a
//! request has `:authority` and may have no `Host`.
//!
//! These tests need an nginx built `--with-http_v3_module` (`scripts/http3.sh test`); with
//! another they are skipped with a note, unless `TEST_HTTP3=1`.

mod support;

use std::time::{Duration, Instant};

use dpop_sign::SigningKey;
use phantom_core::dpop::Alg;
use support::dpop::{jti, now};
use support::h3::{available, H3Stack, Req};
use support::*;

const UNAUTHORIZED: &str = r#"{"code":"unauthorized_request","message":"Access denied due to missing, invalid or expired credentials"}"#;
const FORBIDDEN: &str =
    r#"{"code":"forbidden","message":"Access denied due to insufficient scope"}"#;
const SERVER_ERROR: &str =
    r#"{"code":"server_error","message":"Problem encountered processing the request"}"#;
const FORM: &str = "application/x-www-form-urlencoded";

const CACHED: &str =
    "phantom_token_cache c; add_header X-Cache $phantom_token_cache_status always;";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The JWT the upstream got in `Authorization`.
fn upstream_jwt(echo: &EchoServer) -> String {
    let up = echo.last().expect("an upstream request");
    let auth = up.header("authorization").expect("Authorization upstream");
    auth.strip_prefix("Bearer ").expect("Bearer").to_string()
}

/// Waits until the access log has `want` lines of HTTP/3 requests (`$request` ends in
/// `HTTP/3.0`; nginx logs a request after its response is sent), and returns how many it has.
fn http3_log_lines(n: &Nginx, want: usize) -> usize {
    let count = || {
        n.access_log()
            .lines()
            .filter(|l| l.contains(" HTTP/3.0\""))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    count()
}

#[test]
fn bearer_is_granted_with_the_jwt_upstream_and_the_cache_status() {
    if !available() {
        return;
    }
    let s = H3Stack::start("phantom_token_cache_zone c:1m;", CACHED, "");
    let token = s.ids.issue("read write", 300);
    // Two requests on one connection: the first introspects, the second is a hit.
    let rs = s.send(&[
        Req::get("/api/items?x=1").header("authorization", &bearer(&token)),
        Req::get("/api/items?x=2").header("authorization", &bearer(&token)),
    ]);
    assert_eq!(rs[0].status, 200, "{}", rs[0].text());
    assert_eq!(rs[0].header("x-cache"), Some("MISS"));
    assert_eq!(rs[1].status, 200, "{}", rs[1].text());
    assert_eq!(rs[1].header("x-cache"), Some("HIT"));
    assert_eq!(s.ids.introspections(), 1);
    let jwt = upstream_jwt(&s.echo);
    let claims = devsvr::jwt_claims(&jwt).expect("a JWT upstream");
    assert_eq!(claims["scope"], "read write");
    let ups = s.echo.all();
    assert_eq!(ups.len(), 2);
    assert_eq!(ups[0].target, "/api/items?x=1");
    for up in &ups {
        assert!(
            !format!("{:?}", up.headers).contains(&token),
            "opaque token upstream: {:?}",
            up.headers
        );
    }
    for r in &rs {
        assert!(
            !format!("{:?}", r.headers).contains(&jwt),
            "JWT to the client"
        );
    }
    assert_eq!(http3_log_lines(&s.nginx, 2), 2, "{}", s.nginx.access_log());
    s.nginx.assert_clean_log();
}

#[test]
fn each_rejection_has_its_status_headers_and_body() {
    if !available() {
        return;
    }
    let s = H3Stack::start(
        "phantom_token_cache_zone c:1m;",
        &format!("{CACHED} phantom_token_required_scope read write;"),
        "",
    );
    let rs = s.send(&[
        Req::get("/"),
        Req::get("/").header("authorization", "Basic dXNlcjpwYXNz"),
        Req::get("/").header("authorization", "Bearer not-a-known-token"),
        Req::get("/").header("authorization", &bearer(&s.ids.issue("read", 300))),
    ]);
    let challenge = |i: usize| rs[i].header("www-authenticate").unwrap_or("").to_string();
    for r in &rs {
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!((rs[0].status, rs[0].text().as_str()), (401, UNAUTHORIZED));
    assert_eq!(challenge(0), r#"Bearer realm="api""#);
    assert_eq!((rs[1].status, rs[1].text().as_str()), (401, UNAUTHORIZED));
    assert_eq!(challenge(1), r#"Bearer realm="api""#);
    assert_eq!((rs[2].status, rs[2].text().as_str()), (401, UNAUTHORIZED));
    assert_eq!(challenge(2), r#"Bearer realm="api", error="invalid_token""#);
    assert_eq!((rs[3].status, rs[3].text().as_str()), (403, FORBIDDEN));
    assert_eq!(
        challenge(3),
        r#"Bearer realm="api", error="insufficient_scope", scope="read write""#
    );
    // The identity server unavailable: 503 with its Retry-After, then unreachable: 503.
    s.ids.set_fault(Fault::Unavailable {
        retry_after: Some(30),
    });
    let token = s.ids.issue("read write", 300);
    let r = s.get_bearer("/", &token);
    assert_eq!((r.status, r.text().as_str()), (503, SERVER_ERROR));
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("www-authenticate").is_none());
    s.ids.set_fault(Fault::None);
    s.ids.stop();
    let r = s.get_bearer("/", &token);
    assert_eq!((r.status, r.text().as_str()), (503, SERVER_ERROR));
    assert!(r.header("retry-after").is_none(), "{:?}", r.headers);
    assert_eq!(s.echo.requests(), 0);
    assert!(s.nginx.wait_log("Identity server unavailable"));
    s.nginx.assert_clean_log();
}

#[test]
fn a_cookie_source_is_taken_and_removed_from_split_cookie_fields() {
    if !available() {
        return;
    }
    let s = H3Stack::start("", "phantom_token_source $cookie_at;", "");
    let token = s.ids.issue("read", 300);
    // HTTP/3 clients may send each cookie in a field of its own (RFC 9114 4.2.1); nginx
    // joins them into one Cookie header.
    let rs = s.send(&[
        Req::get("/a")
            .header("cookie", "other=1")
            .header("cookie", &format!("at={token}; more=2")),
        Req::get("/b")
            .header("cookie", &format!("at={token}"))
            .header("x-after", "kept"),
    ]);
    assert_eq!(rs[0].status, 200, "{}", rs[0].text());
    assert_eq!(rs[1].status, 200, "{}", rs[1].text());
    let ups = s.echo.all();
    assert_eq!(ups[0].header("cookie"), Some("other=1; more=2"));
    assert!(ups[1].header("cookie").is_none(), "{:?}", ups[1].headers);
    assert_eq!(ups[1].header("x-after"), Some("kept"));
    for up in &ups {
        assert!(!format!("{:?}", up.headers).contains(&token));
        assert!(up.header("authorization").unwrap().starts_with("Bearer ey"));
    }
    // Without the cookie: the usual 401.
    let r = s.one(Req::get("/").header("cookie", "other=1"));
    assert_eq!(r.status, 401);
    s.nginx.assert_clean_log();
}

#[test]
fn a_query_argument_source_is_taken_and_removed_from_the_proxied_uri() {
    if !available() {
        return;
    }
    let s = H3Stack::start("", "phantom_token_source $arg_access_token;", "");
    let token = s.ids.issue("read", 300);
    let rs = s.send(&[
        Req::get(&format!("/p/a%2Fb?x=1&access_token={token}&y=2")),
        Req::get(&format!("/q?access_token={token}")),
    ]);
    assert_eq!((rs[0].status, rs[1].status), (200, 200));
    let ups = s.echo.all();
    assert_eq!(ups[0].target, "/p/a%2Fb?x=1&y=2");
    assert_eq!(ups[1].target, "/q");
    for up in &ups {
        assert!(up.header("authorization").unwrap().starts_with("Bearer ey"));
    }
    s.nginx.assert_clean_log();
}

#[test]
fn no_client_spelling_of_the_jwt_header_reaches_the_upstream() {
    if !available() {
        return;
    }
    let s = H3Stack::start(
        "underscores_in_headers on;",
        "phantom_token_header X-JWT;",
        "",
    );
    let token = s.ids.issue("read", 300);
    let r = s.one(
        Req::get("/")
            .header("x-jwt", "forged1")
            .header("authorization", &bearer(&token))
            .header("x-jwt", "forged2")
            .header("x_jwt", "forged3"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let up = s.echo.last().unwrap();
    let jwt: Vec<_> = up
        .headers
        .iter()
        .filter(|(k, _)| k.replace('_', "-").eq_ignore_ascii_case("x-jwt"))
        .collect();
    assert_eq!(jwt.len(), 1, "{:?}", up.headers);
    assert!(jwt[0].1.starts_with("Bearer ey"), "{:?}", up.headers);
    assert!(up.header("authorization").is_none(), "{:?}", up.headers);
    assert!(!format!("{:?}", up.headers).contains("forged"));
}

#[test]
fn a_dpop_proof_for_the_http3_url_is_granted() {
    if !available() {
        return;
    }
    let s = H3Stack::start(
        "phantom_token_cache_zone c:1m;",
        &format!("{CACHED} phantom_token_dpop on;"),
        "",
    );
    let (key, _) = SigningKey::generate(Alg::Es256).unwrap();
    let token = s.ids.issue("read", 300);
    let cnf = serde_json::json!({ "cnf": { "jkt": key.jkt() } });
    s.ids.set_claims(&token, cnf.as_object().unwrap().clone());
    let port = s.nginx.port;
    let proof = |htu: &str| {
        key.proof("GET", htu, now(), &jti(), Some(token.as_bytes()), None)
            .unwrap()
    };
    let call = |htu: &str, host: Option<&str>| {
        let mut req = Req::get("/api?q=1")
            .header("authorization", &format!("DPoP {token}"))
            .header("dpop", &proof(htu));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        s.one(req)
    };
    // The client sends :authority and no Host: the URL is https://<:authority>/path.
    let url = format!("https://127.0.0.1:{port}/api");
    let r = call(&url, None);
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    assert_eq!(r.header("x-cache"), Some("MISS"));
    let up = s.echo.last().unwrap();
    assert!(up.header("authorization").unwrap().starts_with("Bearer ey"));
    assert!(up.header("dpop").is_none(), "{:?}", up.headers);
    // The same with a Host header (nginx requires it to equal :authority), on a hit.
    let r = call(&url, Some(&format!("127.0.0.1:{port}")));
    assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
    // A proof for another URL is refused: the http scheme, another port, another path.
    for other in [
        format!("http://127.0.0.1:{port}/api"),
        format!("https://127.0.0.1:{}/api", port + 1),
        format!("https://127.0.0.1:{port}/other"),
    ] {
        let r = call(&other, None);
        assert_eq!(r.status, 401, "{other}");
        let ch = r.header("www-authenticate").unwrap_or("");
        assert!(
            ch.contains(r#"error="invalid_dpop_proof""#) && ch.contains("htu"),
            "{other}: {ch}"
        );
    }
    assert_eq!(s.echo.requests(), 2);
    s.nginx.assert_clean_log();
}

#[test]
fn a_purge_over_http3_is_final() {
    if !available() {
        return;
    }
    let s = H3Stack::start(
        "phantom_token_cache_zone c:1m;",
        CACHED,
        "location = /purge { allow 127.0.0.1; deny all; phantom_token_purge c; }",
    );
    let by_token = s.ids.issue("read", 300);
    let by_sub = s.ids.issue("read", 300);
    let sub = serde_json::json!({ "sub": "bob" });
    s.ids.set_claims(&by_sub, sub.as_object().unwrap().clone());
    for t in [&by_token, &by_sub] {
        assert_eq!(s.get_bearer("/", t).header("x-cache"), Some("MISS"));
        assert_eq!(s.get_bearer("/", t).header("x-cache"), Some("HIT"));
    }
    let purge = |body: &str| {
        s.one(
            Req::new("POST", "/purge")
                .header("content-type", FORM)
                .body(body.as_bytes()),
        )
    };
    for (t, body) in [
        (&by_token, format!("token={by_token}")),
        (&by_sub, "sub=bob".to_string()),
    ] {
        let r = purge(&body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["removed"], 1, "{}", r.text());
        s.ids.revoke(t);
        let r = s.get_bearer("/", t);
        assert_eq!(r.status, 401, "purged and revoked: {}", r.text());
        assert_eq!(r.header("x-cache"), Some("MISS"));
    }
    let r = purge("token=a&sub=b");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_request");
    s.nginx.assert_clean_log();
}

#[test]
fn a_client_that_resets_its_stream_while_introspection_runs_releases_its_claim() {
    if !available() {
        return;
    }
    // nginx's own measure of each request: when the reset ends it, far less than the
    // introspection's 2.5 s, and before the client closes its connection (2.5 s later).
    let s = H3Stack::start(
        "phantom_token_cache_zone c:1m;
         log_format timed '$status $request_time $server_protocol';",
        CACHED,
        "access_log timed.log timed;",
    );
    let token = s.ids.issue("read", 300);
    s.ids.set_fault(Fault::Delay(Duration::from_millis(2500)));
    let r = s.one(
        Req::get("/")
            .header("authorization", &bearer(&token))
            .reset_after(0.2),
    );
    assert_eq!(r.status, 0, "no response to a cancelled request");
    let timed = || std::fs::read_to_string(s.nginx.dir.join("timed.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !timed().contains("499 ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = timed();
    let line = log
        .lines()
        .find(|l| l.starts_with("499 "))
        .unwrap_or_else(|| panic!("no 499: {log}"));
    let took: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(line.ends_with(" HTTP/3.0"), "{line}");
    assert!(
        took < 1.8,
        "the request ended after {took} s, not when its stream was reset: {log}"
    );
    assert_eq!(s.echo.requests(), 0);
    // The claim is released: the next request introspects itself (no wait for the leader's
    // introspection, which nginx cancelled) and is granted.
    s.ids.set_fault(Fault::None);
    let t = Instant::now();
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-cache"), Some("MISS"));
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "waited {took:?} for a leader that had gone"
    );
    assert_eq!(s.ids.introspections(), 2);
    assert!(
        !s.nginx.error_log().contains("[error]"),
        "{}",
        s.nginx.error_log()
    );
    s.nginx.assert_clean_log();
}

#[test]
fn request_bodies_reach_the_upstream_intact() {
    if !available() {
        return;
    }
    let s = H3Stack::start("", "", "");
    let token = s.ids.issue("read", 300);
    // Every byte value, larger than the client body buffer and than one QUIC flow window.
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
        .collect();
    let len = big.len().to_string();
    let rs = s.send(&[
        Req::new("POST", "/upload?a=b")
            .header("authorization", &bearer(&token))
            .header("content-type", "application/octet-stream")
            .header("content-length", &len)
            .body(&big),
        // No Content-Length: the length is where the stream ends.
        Req::new("PUT", "/put")
            .header("authorization", &bearer(&token))
            .body(&big),
        Req::new("PATCH", "/small")
            .header("authorization", &bearer(&token))
            .body(b"h3-body"),
    ]);
    for r in &rs {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let ups = s.echo.all();
    assert_eq!(ups.len(), 3);
    assert_eq!(
        (ups[0].method.as_str(), ups[0].target.as_str()),
        ("POST", "/upload?a=b")
    );
    assert_eq!(
        ups[0].header("content-type"),
        Some("application/octet-stream")
    );
    assert!(
        ups[0].body == big,
        "POST body differs ({} bytes)",
        ups[0].body.len()
    );
    assert_eq!(ups[1].method, "PUT");
    assert!(
        ups[1].body == big,
        "PUT body differs ({} bytes)",
        ups[1].body.len()
    );
    assert_eq!(ups[2].body, b"h3-body");
    for up in &ups {
        assert!(up.header("authorization").unwrap().starts_with("Bearer ey"));
    }
    s.nginx.assert_clean_log();
}
