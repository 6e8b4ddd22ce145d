//! The shared-memory JWT cache (issue 3): hits, lifetimes, eviction, reload, coalescing.

mod support;

use std::thread::sleep;
use std::time::Duration;

use support::http::request;
use support::*;

const ZONE: &str = "phantom_token_cache_zone tokens:1m leeway=0;";

fn cached(api_extra: &str) -> String {
    format!("phantom_token_cache tokens; add_header X-Cache $phantom_token_cache_status always; {api_extra}")
}

/// `n` concurrent GET requests with this Authorization value; their statuses.
fn concurrent(port: u16, n: usize, auth: &str) -> Vec<u16> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let auth = auth.to_string();
            std::thread::spawn(move || {
                request(port, "GET", "/", &[("Authorization", &auth)], None).status
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The `Authorization` the API last received: `Bearer <JWT>` (what tests compare).
fn upstream_auth(s: &Stack) -> String {
    s.echo
        .last()
        .unwrap()
        .header("authorization")
        .unwrap()
        .to_string()
}

fn sub_upstream(s: &Stack) -> String {
    let auth = upstream_auth(s);
    let claims = devsvr::jwt_claims(auth.strip_prefix("Bearer ").unwrap()).unwrap();
    claims["sub"].as_str().unwrap_or_default().to_string()
}

/// The cached stack with the identity server sending `Cache-Control: <cache_control>`.
fn with_cache_control(cache_control: &str) -> Stack {
    let cfg = IdConfig {
        cache_control: Some(cache_control.into()),
        ..IdConfig::default()
    };
    Stack::with_ids(cfg, ZONE, &cached(""), "")
}

/// A stack caching in `zone` (named `tiny`) JWTs of `jwt_size` bytes, to fill it.
fn with_jwt_size(jwt_size: usize, zone: &str) -> Stack {
    let cfg = IdConfig {
        jwt_size,
        ..IdConfig::default()
    };
    Stack::with_ids(cfg, zone, "phantom_token_cache tiny;", "")
}

/// A cached stack of `workers` whose introspections take 700 ms, and a token's `Authorization`.
fn slow_introspection(workers: usize) -> (Stack, String) {
    let s = Stack::with_workers(workers, IdConfig::default(), ZONE, &cached(""), "");
    let token = s.ids.issue("read", 300);
    s.ids.set_fault(Fault::Delay(Duration::from_millis(700)));
    (s, format!("Bearer {token}"))
}

#[test]
fn repeated_token_is_introspected_once_across_workers() {
    let s = Stack::start(ZONE, &cached(""));
    let token = s.ids.issue("read", 300);
    let first = s.get_bearer("/", &token);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let jwt = upstream_auth(&s);
    for _ in 0..30 {
        let r = s.get_bearer("/", &token);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-cache"), Some("HIT"));
        assert_eq!(
            s.echo.last().unwrap().header("authorization"),
            Some(jwt.as_str())
        );
    }
    assert_eq!(s.ids.introspections(), 1);
    s.nginx.assert_clean_log();
}

#[test]
fn max_age_expires_entries() {
    let s = with_cache_control("max-age=1");
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).header("x-cache"), Some("MISS"));
    assert_eq!(s.get_bearer("/", &token).header("x-cache"), Some("HIT"));
    sleep(Duration::from_millis(1300));
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 200);
    assert!(matches!(
        r.header("x-cache"),
        Some("EXPIRED") | Some("MISS")
    ));
    assert_eq!(s.ids.introspections(), 2);
}

#[test]
fn jwt_exp_bounds_the_lifetime() {
    let s = with_cache_control("");
    let token = s.ids.issue("read", 2);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    assert_eq!(s.get_bearer("/", &token).header("x-cache"), Some("HIT"));
    sleep(Duration::from_millis(2600));
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 401, "expired token must not be served from cache");
    assert_eq!(s.ids.introspections(), 2);
}

#[test]
fn max_ttl_caps_the_lifetime() {
    let s = Stack::start(
        "phantom_token_cache_zone tokens:1m max_ttl=1s leeway=0;",
        &cached(""),
    );
    let token = s.ids.issue("read", 300);
    s.get_bearer("/", &token);
    assert_eq!(s.get_bearer("/", &token).header("x-cache"), Some("HIT"));
    sleep(Duration::from_millis(1300));
    s.get_bearer("/", &token);
    assert_eq!(s.ids.introspections(), 2);
}

#[test]
fn no_store_is_not_cached() {
    let s = with_cache_control("no-store");
    let token = s.ids.issue("read", 300);
    s.get_bearer("/", &token);
    s.get_bearer("/", &token);
    assert_eq!(s.ids.introspections(), 2);
}

#[test]
fn negative_caching_only_when_configured() {
    let s = Stack::start(ZONE, &cached(""));
    assert_eq!(s.get_bearer("/", "bad-token").status, 401);
    assert_eq!(s.get_bearer("/", "bad-token").status, 401);
    assert_eq!(s.ids.introspections(), 2);

    let s = Stack::start(
        "phantom_token_cache_zone tokens:1m negative_ttl=10s;",
        &cached(""),
    );
    assert_eq!(s.get_bearer("/", "bad-token").status, 401);
    let r = s.get_bearer("/", "bad-token");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    assert_eq!(s.ids.introspections(), 1);
}

#[test]
fn tokens_never_get_each_others_jwt() {
    let s = Stack::start(ZONE, &cached(""));
    let tokens: Vec<String> = (0..10).map(|_| s.ids.issue("read", 300)).collect();
    let mut subs = Vec::new();
    for t in &tokens {
        assert_eq!(s.get_bearer("/", t).status, 200);
        subs.push(sub_upstream(&s));
    }
    for (i, t) in tokens.iter().enumerate().rev() {
        assert_eq!(s.get_bearer("/", t).header("x-cache"), Some("HIT"));
        assert_eq!(sub_upstream(&s), subs[i]);
    }
}

#[test]
fn full_zone_evicts_and_never_fails() {
    let s = with_jwt_size(4096, "phantom_token_cache_zone tiny:32k l1=0 leeway=0;");
    let tokens: Vec<String> = (0..40).map(|_| s.ids.issue("read", 300)).collect();
    for t in &tokens {
        assert_eq!(s.get_bearer("/", t).status, 200);
    }
    assert_eq!(s.ids.introspections(), 40);
    // The most recent token is still cached, the first one was evicted.
    s.get_bearer("/", &tokens[39]);
    assert_eq!(s.ids.introspections(), 40);
    s.get_bearer("/", &tokens[0]);
    assert_eq!(s.ids.introspections(), 41);
    s.nginx.assert_clean_log();
}

#[test]
fn oversized_entries_are_simply_not_cached() {
    let s = with_jwt_size(40_000, "phantom_token_cache_zone tiny:32k;");
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    s.nginx.assert_clean_log();
}

#[test]
fn reload_keeps_the_entries() {
    let s = Stack::start(ZONE, &cached(""));
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    s.nginx.reload();
    let r = s.get_bearer("/", &token);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(s.ids.introspections(), 1);
    s.nginx.assert_clean_log();
}

#[test]
fn concurrent_first_requests_are_coalesced() {
    let (s, auth) = slow_introspection(1);
    let port = s.nginx.port;
    for status in concurrent(port, 8, auth.as_str()) {
        assert_eq!(status, 200);
    }
    assert_eq!(s.ids.introspections(), 1);
    assert_eq!(s.echo.requests(), 8);
}

#[test]
fn coalesced_waiters_share_failures_too() {
    let s = Stack::with_workers(1, IdConfig::default(), ZONE, &cached(""), "");
    s.ids.set_fault(Fault::Delay(Duration::from_millis(1500)));
    let port = s.nginx.port;
    for status in concurrent(port, 5, "Bearer unknown") {
        assert_eq!(status, 401);
    }
    assert_eq!(s.ids.introspections(), 1);
}

#[test]
fn cache_status_variable_in_log_format() {
    let s = Stack::start(
        &format!("{ZONE} log_format st 'status=$phantom_token_cache_status';"),
        &cached("access_log logs_status.log st;"),
    );
    let token = s.ids.issue("read", 300);
    s.get_bearer("/", &token);
    s.get_bearer("/", &token);
    sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(s.nginx.dir.join("logs_status.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        vec!["status=MISS", "status=HIT"]
    );
    let s = Stack::start("", "add_header X-Cache $phantom_token_cache_status always;");
    let token = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &token).header("x-cache"), Some("BYPASS"));
}

#[test]
fn bad_cache_configuration_fails_nginx_t() {
    let loc = "location / { phantom_token on; phantom_token_introspection_endpoint /i; phantom_token_cache nope; }";
    let (ok, out) = nginx_test_config("", loc);
    assert!(!ok);
    assert!(out.contains("unknown zone \"nope\""), "{out}");
    let (ok, out) = nginx_test_config("phantom_token_cache_zone z:abc;", "");
    assert!(!ok);
    assert!(
        out.contains("phantom_token_cache_zone") && out.contains("invalid zone size"),
        "{out}"
    );
    let (ok, out) = nginx_test_config(
        "phantom_token_cache_zone z:1m; phantom_token_cache_zone z:2m;",
        "",
    );
    assert!(!ok);
    assert!(out.contains("duplicate zone \"z\""), "{out}");
    let (ok, out) = nginx_test_config("phantom_token_cache_zone z:1m foo=1;", "");
    assert!(!ok);
    assert!(out.contains("unknown parameter \"foo=1\""), "{out}");
    let (ok, out) = nginx_test_config("phantom_token_cache_zone z;", "");
    assert!(!ok);
    assert!(out.contains("expected name:size"), "{out}");
}

#[test]
fn coalescing_works_over_http2() {
    let (s, auth) = slow_introspection(1);
    let port = s.nginx.h2_port;
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let auth = auth.clone();
            std::thread::spawn(move || {
                support::http::curl_h2(port, "/h2", &[("Authorization", &auth)], None).0
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(s.ids.introspections(), 1);
    s.nginx.assert_clean_log();
}

#[test]
fn concurrent_first_requests_are_coalesced_across_workers() {
    let (s, auth) = slow_introspection(2);
    let port = s.nginx.port;
    for status in concurrent(port, 10, auth.as_str()) {
        assert_eq!(status, 200);
    }
    assert_eq!(s.ids.introspections(), 1, "2 workers, one introspection");
    // Not cacheable (inactive, no negative_ttl): waiters of the other worker introspect themselves.
    for status in concurrent(port, 6, "Bearer nope") {
        assert_eq!(status, 401);
    }
    s.nginx.assert_clean_log();
}
