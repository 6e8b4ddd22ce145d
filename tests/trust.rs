//! Trust under every configuration (issue 9): keys, redirects, leaders that go away,
//! token and header scrubbing, nginx conventions, identity-server answers, Curity mode.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::http::{curl_h2, request};
use support::*;

/// `location = <name>` proxying to the identity server on `port`.
fn introspect_at(name: &str, port: u16, extra: &str) -> String {
    introspection_location(port, extra)
        .replace("location = /_introspect", &format!("location = {name}"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `GET path` with `token` as the bearer, straight to nginx on `port` (no [`Stack`] here).
fn get_bearer(port: u16, path: &str, token: &str) -> Response {
    request(
        port,
        "GET",
        path,
        &[("Authorization", &bearer(token))],
        None,
    )
}

/// Identity servers A and B and an echo API, for [`two_servers`].
fn a_b_and_echo() -> (IdServer, IdServer, EchoServer) {
    let a = IdServer::start(IdConfig::default()).unwrap();
    let b = IdServer::start(IdConfig::default()).unwrap();
    (a, b, EchoServer::start().unwrap())
}

/// Two protected locations, `/a` on identity server A and `/b` on B.
fn two_servers(a: &IdServer, b: &IdServer, echo: &EchoServer, cache: &str) -> String {
    format!(
        "location /a {{ phantom_token on; phantom_token_introspection_endpoint /_ia; {cache}
             add_header X-Cache $phantom_token_cache_status always;
             proxy_pass http://127.0.0.1:{e}; }}
         location /b {{ phantom_token on; phantom_token_introspection_endpoint /_ib; {cache}
             add_header X-Cache $phantom_token_cache_status always;
             proxy_pass http://127.0.0.1:{e}; }}
         location /a2 {{ phantom_token on; phantom_token_introspection_endpoint /_ia; {cache}
             add_header X-Cache $phantom_token_cache_status always;
             proxy_pass http://127.0.0.1:{e}; }}
         {}
         {}",
        introspect_at("/_ia", a.port(), ""),
        introspect_at("/_ib", b.port(), ""),
        e = echo.port()
    )
}

#[test]
fn a_token_known_to_one_server_is_not_granted_on_the_other() {
    let (a, b, echo) = a_b_and_echo();
    let n = Nginx::start(
        "phantom_token_cache_zone c:1m;",
        &two_servers(&a, &b, &echo, "phantom_token_cache c;"),
    );
    let token = a.issue("read", 300);
    assert_eq!(get_bearer(n.port, "/a", &token).status, 200);
    let r = get_bearer(n.port, "/b", &token);
    assert_eq!(r.status, 401, "/b must ask its own identity server");
    assert_eq!(b.introspections(), 1);
    // Same endpoint and format: the entry is shared.
    let r = get_bearer(n.port, "/a2", &token);
    assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
    assert_eq!(a.introspections(), 1);
}

/// `/a` and `/b` at once with A slow, so that the two introspections overlap.
fn concurrently(workers: usize, cache_http: &str, cache: &str) {
    let (a, b, echo) = a_b_and_echo();
    let n = Nginx::start_workers(workers, cache_http, &two_servers(&a, &b, &echo, cache), "");
    let token = a.issue("read", 300);
    a.set_fault(Fault::Delay(Duration::from_millis(800)));
    let (port, first_token) = (n.port, token.clone());
    let first = std::thread::spawn(move || get_bearer(port, "/a", &first_token).status);
    std::thread::sleep(Duration::from_millis(200));
    let r = get_bearer(n.port, "/b", &token);
    assert_eq!(r.status, 401, "/b joined /a's introspection");
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(b.introspections(), 1);
}

#[test]
fn concurrent_requests_for_other_endpoints_are_not_coalesced_without_a_zone() {
    concurrently(1, "", "");
}

#[test]
fn concurrent_requests_for_other_endpoints_are_not_coalesced_with_a_zone() {
    concurrently(
        2,
        "phantom_token_cache_zone c:1m;",
        "phantom_token_cache c;",
    );
}

/// `/` falls through `try_files` to `@api`, whose policy differs.
fn redirected(ids: &IdServer, echo: &EchoServer, api: &str) -> Nginx {
    let server = format!(
        "location / {{ phantom_token on; phantom_token_introspection_endpoint /_introspect;
             try_files /nonexistent @api; }}
         location @api {{ {api}
             proxy_pass http://127.0.0.1:{e}; }}
         {}",
        introspection_location(ids.port(), ""),
        e = echo.port()
    );
    Nginx::start("", &server)
}

#[test]
fn try_files_into_a_named_location_applies_its_scopes_and_header() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let n = redirected(
        &ids,
        &echo,
        "phantom_token on; phantom_token_introspection_endpoint /_introspect;
         phantom_token_required_scope admin; phantom_token_header X-JWT;",
    );
    let read = ids.issue("read", 300);
    let r = get_bearer(n.port, "/x", &read);
    assert_eq!(r.status, 403, "@api requires admin");
    assert_eq!(echo.requests(), 0);
    let admin = ids.issue("admin", 300);
    let r = get_bearer(n.port, "/x", &admin);
    assert_eq!(r.status, 200);
    let up = echo.last().unwrap();
    assert!(up.header("x-jwt").unwrap().starts_with("Bearer ey"));
    assert!(up.header("authorization").is_none(), "{:?}", up.headers);
    assert_eq!(
        ids.introspections(),
        2,
        "same endpoint: no second introspection"
    );
}

#[test]
fn a_redirect_to_another_endpoint_introspects_again() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let other = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let server = format!(
        "location / {{ phantom_token on; phantom_token_introspection_endpoint /_introspect;
             try_files /nonexistent @api; }}
         location @api {{ phantom_token on; phantom_token_introspection_endpoint /_other;
             proxy_pass http://127.0.0.1:{e}; }}
         {}
         {}",
        introspection_location(ids.port(), ""),
        introspect_at("/_other", other.port(), ""),
        e = echo.port()
    );
    let n = Nginx::start("", &server);
    let token = ids.issue("read", 300);
    let r = get_bearer(n.port, "/x", &token);
    assert_eq!(
        r.status, 401,
        "@api's identity server does not know the token"
    );
    assert_eq!(other.introspections(), 1);
    assert_eq!(echo.requests(), 0);
}

#[test]
fn a_redirect_to_an_unprotected_location_passes() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let n = redirected(&ids, &echo, "phantom_token off;");
    let token = ids.issue("read", 300);
    let r = get_bearer(n.port, "/x", &token);
    assert_eq!(r.status, 200);
    assert!(echo
        .last()
        .unwrap()
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ey"));
}

/// A client that sends a request for `token` and closes after 100 ms.
fn send_and_close(port: u16, token: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = format!("GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(s);
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn a_leader_whose_client_closes_releases_its_claim() {
    let s = Stack::start("phantom_token_cache_zone c:1m;", "phantom_token_cache c;");
    let token = s.ids.issue("read", 300);
    s.ids.set_fault(Fault::Delay(Duration::from_secs(1)));
    send_and_close(s.nginx.port, &token);
    let t = Instant::now();
    let r = s.get_bearer("/", &token);
    let took = t.elapsed();
    assert_eq!(r.status, 200);
    assert!(
        took < Duration::from_secs(3),
        "waited {took:?} for a leader that had gone"
    );
    assert!(s.nginx.wait_log("client prematurely closed connection"));
    assert!(
        !s.nginx.error_log().contains("[error]"),
        "{}",
        s.nginx.error_log()
    );
}

#[test]
fn a_leader_whose_http2_client_goes_away_releases_its_claim() {
    let s = Stack::start("phantom_token_cache_zone c:1m;", "phantom_token_cache c;");
    let token = s.ids.issue("read", 300);
    s.ids.set_fault(Fault::Delay(Duration::from_secs(1)));
    let out = std::process::Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "--max-time", "0.1", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{}/", s.nginx.h2_port))
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl should have given up");
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    let (status, _, _) = curl_h2(
        s.nginx.h2_port,
        "/",
        &[("Authorization", &bearer(&token))],
        None,
    );
    assert_eq!(status, 200);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "waited {took:?} for a leader that had gone"
    );
}

#[test]
fn a_query_argument_source_is_removed_from_the_proxied_uri() {
    let s = Stack::start("", "phantom_token_source $arg_access_token;");
    let token = s.ids.issue("read", 300);
    let r = s.get(&format!("/p/a%2Fb?x=1&access_token={token}&y=2"), &[]);
    assert_eq!(r.status, 200);
    let up = s.echo.last().unwrap();
    assert_eq!(up.target, "/p/a%2Fb?x=1&y=2");
    let r = s.get(&format!("/q?access_token={token}"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(s.echo.last().unwrap().target, "/q");
}

#[test]
fn a_cookie_source_is_removed_from_the_cookie_header() {
    let s = Stack::start("", "phantom_token_source $cookie_at;");
    let token = s.ids.issue("read", 300);
    let r = s.get("/", &[("Cookie", &format!("other=1; at={token}; more=2"))]);
    assert_eq!(r.status, 200);
    let up = s.echo.last().unwrap();
    assert_eq!(up.header("cookie"), Some("other=1; more=2"));
    let r = s.get(
        "/",
        &[("Cookie", &format!("at={token}")), ("X-After", "kept")],
    );
    assert_eq!(r.status, 200);
    let up = s.echo.last().unwrap();
    assert!(up.header("cookie").is_none(), "{:?}", up.headers);
    assert_eq!(up.header("x-after"), Some("kept"));
    assert!(!format!("{:?}", up.headers).contains(&token));
}

#[test]
fn a_header_source_is_removed_from_the_header_list() {
    let s = Stack::start("", "phantom_token_source $http_x_api_token;");
    let token = s.ids.issue("read", 300);
    let r = s.get(
        "/",
        &[("X-Before", "1"), ("X-Api-Token", &token), ("X-After", "2")],
    );
    assert_eq!(r.status, 200);
    let up = s.echo.last().unwrap();
    assert!(
        !format!("{:?}", up.headers).contains(&token),
        "{:?}",
        up.headers
    );
    assert_eq!(
        (up.header("x-before"), up.header("x-after")),
        (Some("1"), Some("2"))
    );
    assert!(up.header("authorization").unwrap().starts_with("Bearer ey"));
}

#[test]
fn a_source_that_cannot_be_removed_is_warned_about() {
    let (ok, out) = nginx_test_config(
        "map $http_x_t $tok { default $http_x_t; }",
        "location / { phantom_token_source $tok; }",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("[warn]")
            && out.contains("\"phantom_token_source\": the module cannot remove \"$tok\""),
        "{out}"
    );
}

#[test]
fn no_client_spelling_of_the_jwt_header_reaches_the_upstream() {
    let s = Stack::start("underscores_in_headers on;", "phantom_token_header X-JWT;");
    let token = s.ids.issue("read", 300);
    let r = s.get(
        "/",
        &[
            ("X-JWT", "forged1"),
            ("Authorization", &bearer(&token)),
            ("x-jwt", "forged2"),
            ("X_JWT", "forged3"),
        ],
    );
    assert_eq!(r.status, 200);
    let up = s.echo.last().unwrap();
    let jwt: Vec<_> = up
        .headers
        .iter()
        .filter(|(k, _)| k.replace('_', "-").eq_ignore_ascii_case("x-jwt"))
        .collect();
    assert_eq!(jwt.len(), 1, "{:?}", up.headers);
    assert!(jwt[0].1.starts_with("Bearer ey"));
    assert!(up.header("authorization").is_none());
}

#[test]
fn error_page_is_used_for_rejections_when_configured() {
    let api = "error_page 401 /e401; error_page 503 /e503;";
    let pages = "location = /e401 { internal; default_type text/plain; return 401 \"custom 401\\n\"; }
                 location = /e503 { internal; default_type text/plain; return 503 \"custom 503\\n\"; }";
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let server = format!(
        "{}\n{}\n{pages}",
        api_location(echo.port(), api),
        introspection_location(ids.port(), "")
    );
    let n = Nginx::start("", &server);
    let r = get_bearer(n.port, "/", "unknown");
    assert_eq!((r.status, r.text().as_str()), (401, "custom 401\n"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    ids.stop();
    let r = get_bearer(n.port, "/", "other");
    assert_eq!((r.status, r.text().as_str()), (503, "custom 503\n"));
    // No error_page for 403 here: the module's JSON.
    let r = request(n.port, "GET", "/", &[], None);
    assert_eq!(r.status, 401);
    n.assert_clean_log();
}

#[test]
fn satisfy_any_lets_another_access_module_grant() {
    let s = Stack::start("", "satisfy any; allow 127.0.0.1; deny all;");
    let r = s.get("/", &[]);
    assert_eq!(r.status, 200, "allowed address without a token");
    assert!(s.echo.last().unwrap().header("authorization").is_none());
    assert!(r.header("www-authenticate").is_none());
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    assert!(s
        .echo
        .last()
        .unwrap()
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ey"));

    let s = Stack::start("", "satisfy any; deny all;");
    let r = s.get("/", &[]);
    assert_eq!(
        r.status, 401,
        "neither grants: nginx answers with the module's status"
    );
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));
    let r = s.get_bearer("/", "unknown");
    assert_eq!(r.status, 401);
    assert_eq!(
        s.get_bearer("/", &token).status,
        401,
        "another server's token"
    );
    let token = s.ids.issue("read", 300);
    assert_eq!(
        s.get_bearer("/", &token).status,
        200,
        "a valid token grants"
    );
}

#[test]
fn directive_parameters_are_bounded() {
    for (zone, name) in [
        ("c:1m l1=18446744073709551615", "l1=18446744073709551615"),
        ("c:1m l1=1000001", "l1=1000001"),
        ("c:1m max_ttl=99999999999d", "max_ttl=99999999999d"),
        ("c:1m negative_ttl=1000d", "negative_ttl=1000d"),
        ("c:1m leeway=-1", "leeway=-1"),
    ] {
        let (ok, out) = nginx_test_config(&format!("phantom_token_cache_zone {zone};"), "");
        assert!(!ok, "{zone}: {out}");
        assert!(
            out.contains("\"phantom_token_cache_zone\"") && out.contains(name),
            "{zone}: {out}"
        );
    }
}

fn raw_reply(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn an_identity_server_rejecting_the_token_is_a_401() {
    let s = Stack::start(
        "phantom_token_cache_zone c:1m negative_ttl=30s;",
        "phantom_token_cache c;",
    );
    for error in ["invalid_token", "unsupported_token_type"] {
        let body = format!(r#"{{"error":"{error}","error_description":"no"}}"#);
        s.ids.set_fault(Fault::Raw(raw_reply(
            "400 Bad Request",
            "application/json",
            &body,
        )));
        let token = format!("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.{error}");
        let r = s.get_bearer("/", &token);
        assert_eq!(r.status, 401, "{error}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="api", error="invalid_token""#)
        );
        let before = s.ids.introspections();
        assert_eq!(s.get_bearer("/", &token).status, 401);
        assert_eq!(s.ids.introspections(), before, "negative-cached");
    }
    // Any other 400 is still the gateway's problem.
    s.ids.set_fault(Fault::Raw(raw_reply(
        "400 Bad Request",
        "application/json",
        r#"{"error":"invalid_request"}"#,
    )));
    assert_eq!(s.get_bearer("/", "other").status, 502);
    let log = s.nginx.error_log();
    assert_eq!(log.matches("[error]").count(), 1, "{log}");
    assert!(
        log.contains("rejected the access token as invalid"),
        "{log}"
    );
}

/// A cached location whose identity server sends `cache_control` on introspection responses.
fn cached_with_cache_control(cache_control: &str, introspect: &str, workers: usize) -> Stack {
    let cfg = IdConfig {
        cache_control: Some(cache_control.into()),
        ..IdConfig::default()
    };
    Stack::with_workers(
        workers,
        cfg,
        "phantom_token_cache_zone c:1m;",
        "phantom_token_cache c; add_header X-Cache $phantom_token_cache_status always;",
        introspect,
    )
}

#[test]
fn no_store_anywhere_in_cache_control_is_not_cached_and_says_why() {
    let s = cached_with_cache_control("max-age=abc, no-store", "", 1);
    let token = s.ids.issue("read", 300);
    for _ in 0..3 {
        let r = s.get_bearer("/", &token);
        assert_eq!((r.status, r.header("x-cache")), (200, Some("NOSTORE")));
    }
    assert_eq!(s.ids.introspections(), 3);
    assert!(s.nginx.wait_log("stores nothing"));
    let log = s.nginx.error_log();
    let line = log.lines().find(|l| l.contains("stores nothing")).unwrap();
    assert!(line.contains("[notice]"), "{line}");
    assert_eq!(
        log.matches("stores nothing").count(),
        1,
        "logged once: {log}"
    );
}

#[test]
fn hiding_cache_control_caches_until_exp() {
    let s = cached_with_cache_control("no-store", "proxy_hide_header Cache-Control;", 2);
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).header("x-cache"), Some("MISS"));
    assert_eq!(s.get_bearer("/", &token).header("x-cache"), Some("HIT"));
    assert_eq!(s.ids.introspections(), 1);
}

#[test]
fn curity_compat_gives_curity_responses() {
    let s = Stack::start("", "phantom_token_compat curity; phantom_token_scope read;");
    let r = s.get_bearer("/", "unknown");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", scope="read""#)
    );
    assert_eq!(
        r.text(),
        r#"{"code":"unauthorized_request","message":"Access denied due to missing, invalid or expired credentials"}"#
    );
    let r = s.get("/", &[("Authorization", "Bearer a\"b")]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", scope="read""#)
    );
    s.ids.set_fault(Fault::Unavailable {
        retry_after: Some(30),
    });
    let r = s.get_bearer("/", "t1");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_none());
    s.ids.set_fault(Fault::Status(400));
    assert_eq!(s.get_bearer("/", "t2").status, 500);
    s.ids.set_fault(Fault::Status(404));
    assert_eq!(s.get_bearer("/", "t3").status, 502);
    s.ids.stop();
    let r = s.get_bearer("/", "t4");
    assert_eq!(
        r.status, 502,
        "an unreachable server is a 502 in Curity's module"
    );
    assert_eq!(
        r.text(),
        r#"{"code":"server_error","message":"Problem encountered processing the request"}"#
    );
}

#[test]
fn default_mode_keeps_rfc6750_and_503() {
    let s = Stack::start("", "");
    s.ids.set_fault(Fault::Status(400));
    assert_eq!(s.get_bearer("/", "t2").status, 502);
    s.ids.stop();
    assert_eq!(s.get_bearer("/", "t4").status, 503);
}

#[test]
fn bad_compat_value_fails_nginx_t() {
    let (ok, out) = nginx_test_config("", "location / { phantom_token_compat kong; }");
    assert!(!ok);
    assert!(
        out.contains("\"phantom_token_compat\": unknown value \"kong\""),
        "{out}"
    );
}
