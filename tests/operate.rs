//! Operating it (issue 12): claim checks, trace context, rate limits, stale-if-error,
//! negative budget, metrics.

mod support;

use std::time::Duration;

use support::http::request;
use support::*;

fn with_claims(ids: &IdServer, claims: serde_json::Value) -> String {
    let token = ids.issue("read", 300);
    ids.set_claims(&token, claims.as_object().unwrap().clone());
    token
}

#[test]
fn required_claims_match_one_value_or_array_member() {
    let s = Stack::start(
        "phantom_token_cache_zone c:1m;",
        "phantom_token_cache c; add_header X-Cache $phantom_token_cache_status always;
         phantom_token_require_claim aud api other;
         phantom_token_require_claim tier gold;",
    );
    let ok = with_claims(
        &s.ids,
        serde_json::json!({"aud": ["web", "api"], "tier": "gold"}),
    );
    assert_eq!(s.get_bearer("/", &ok).status, 200);
    let r = s.get_bearer("/", &ok);
    assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
    let wrong = with_claims(&s.ids, serde_json::json!({"aud": "web", "tier": "gold"}));
    for _ in 0..2 {
        let r = s.get_bearer("/", &wrong);
        assert_eq!(r.status, 401, "checked on hits too");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="api", error="invalid_token""#)
        );
    }
    let missing = with_claims(&s.ids, serde_json::json!({"aud": "api"}));
    assert_eq!(s.get_bearer("/", &missing).status, 401);
    let log = s.nginx.error_log();
    assert!(
        log.contains("claim \"aud\" does not have a required value"),
        "{log}"
    );
    assert!(
        log.contains("claim \"tier\" does not have a required value"),
        "{log}"
    );
    assert!(!log.contains("\"web\""), "the value is not logged: {log}");
    assert_eq!(s.echo.requests(), 2);
}

#[test]
fn a_bad_claim_requirement_fails_nginx_t() {
    let (ok, out) = nginx_test_config("", "location / { phantom_token_require_claim aud; }");
    assert!(!ok);
    assert!(out.contains("\"phantom_token_require_claim\""), "{out}");
}

/// Sends a request with trace context and returns what the identity server saw.
fn traced(s: &Stack, traceparent: &str, tracestate: &str) -> devsvr::Recorded {
    let token = s.ids.issue("read", 300);
    let auth = format!("Bearer {token}");
    let r = s.get(
        "/",
        &[
            ("Authorization", &auth),
            ("traceparent", traceparent),
            ("tracestate", tracestate),
        ],
    );
    assert_eq!(r.status, 200);
    s.ids.last_introspection().unwrap()
}

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const BAD_TP: &str = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";

#[test]
fn trace_context_reaches_the_identity_server_when_well_formed() {
    // The module's fresh header list is passed as it is...
    let s = Stack::with_ids(
        IdConfig::default(),
        "",
        "",
        "proxy_pass_request_headers on;",
    );
    let seen = traced(&s, TP, "congo=t61rcWkgMzE");
    assert_eq!(seen.header("traceparent"), Some(TP));
    assert_eq!(seen.header("tracestate"), Some("congo=t61rcWkgMzE"));
    let seen = traced(&s, BAD_TP, "a=b");
    assert!(seen.header("traceparent").is_none());
    assert!(
        seen.header("tracestate").is_none(),
        "tracestate needs a valid traceparent"
    );
    // ...or, with Curity's proxy_pass_request_headers off, named with proxy_set_header.
    let s = Stack::with_ids(
        IdConfig::default(),
        "",
        "",
        "proxy_set_header traceparent $http_traceparent; proxy_set_header tracestate $http_tracestate;",
    );
    let seen = traced(&s, TP, "congo=t61rcWkgMzE");
    assert_eq!(seen.header("traceparent"), Some(TP));
    assert_eq!(seen.header("tracestate"), Some("congo=t61rcWkgMzE"));
    let seen = traced(
        &s,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\\x",
        "a=b",
    );
    assert!(seen.header("traceparent").is_none());
    assert!(seen.header("tracestate").is_none());
}

#[test]
fn a_rate_limited_introspection_is_a_429_with_retry_after() {
    let http = "limit_req_zone $binary_remote_addr zone=introspect:1m rate=5r/s;";
    let s = Stack::with_ids(
        IdConfig::default(),
        http,
        "",
        "limit_req zone=introspect; limit_req_status 429; limit_req_log_level info;",
    );
    let (mut ok, mut limited) = (0, 0);
    for i in 0..30 {
        let r = s.get_bearer("/", &format!("random-{i}"));
        match r.status {
            401 => ok += 1,
            429 => {
                limited += 1;
                assert_eq!(r.header("retry-after"), Some("1"));
                assert_eq!(
                    r.text(),
                    r#"{"code":"too_many_requests","message":"Too many requests, retry later"}"#
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(limited >= 20, "{ok} introspected, {limited} limited");
    assert!(
        s.ids.introspections() <= 8,
        "{} reached the identity server",
        s.ids.introspections()
    );
    assert!(
        !s.nginx.error_log().contains("[error]"),
        "{}",
        s.nginx.error_log()
    );
    let _ = Duration::ZERO;
    let _ = request;
}
