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
    let started = std::time::Instant::now();
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
    // limit_req at 5 r/s without burst lets one through per 200 ms.
    let allowed = 2 + (started.elapsed().as_secs_f64() * 5.0) as usize;
    assert!(
        limited >= 1 && limited + ok == 30,
        "{ok} introspected, {limited} limited"
    );
    assert!(
        s.ids.introspections() <= allowed,
        "{} reached the identity server, at most {allowed} allowed",
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

/// Parses the exposition with the Python `prometheus_client` parser into "name{labels} value"
/// lines (sorted labels), failing on anything the real parser rejects.
fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = std::process::Command::new(root.join("scripts/py-deps.sh"))
        .status()
        .unwrap();
    assert!(st.success());
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", root.join("tests/py/site"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "parser rejected:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn scrape(port: u16) -> std::collections::BTreeMap<String, f64> {
    let r = request(port, "GET", "/metrics", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_metrics(&r.text())
}

fn metrics_stack() -> Stack {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let server = format!(
        "location / {{ phantom_token on; phantom_token_introspection_endpoint /_introspect;
             phantom_token_cache c; proxy_pass http://127.0.0.1:{e}; }}
         location /admin {{ phantom_token on; phantom_token_introspection_endpoint /_introspect;
             phantom_token_cache c; phantom_token_required_scope admin;
             proxy_pass http://127.0.0.1:{e}; }}
         location = /metrics {{ allow 127.0.0.1; deny all; phantom_token_status; }}
         {}",
        introspection_location(ids.port(), ""),
        e = echo.port()
    );
    let nginx = Nginx::start("phantom_token_cache_zone c:1m;", &server);
    Stack { ids, echo, nginx }
}

#[test]
fn metrics_count_exactly_across_workers_and_survive_reload() {
    let s = metrics_stack();
    let port = s.nginx.port;
    assert_eq!(s.get("/", &[]).status, 401);
    let t1 = s.ids.issue("read", 300);
    assert_eq!(s.get_bearer("/", &t1).status, 200);
    assert_eq!(s.get_bearer("/", &t1).status, 200);
    assert_eq!(s.get_bearer("/admin", &t1).status, 403);
    assert_eq!(s.get_bearer("/", "unknown").status, 401);
    s.ids.set_fault(Fault::Status(500));
    assert_eq!(s.get_bearer("/", "e1").status, 502);
    s.ids.set_fault(Fault::Unavailable { retry_after: None });
    assert_eq!(s.get_bearer("/", "u1").status, 503);
    s.ids.set_fault(Fault::Delay(Duration::from_millis(1500)));
    let t2 = s.ids.issue("read", 300);
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let auth = format!("Bearer {t2}");
            std::thread::spawn(move || {
                request(port, "GET", "/", &[("Authorization", &auth)], None).status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    s.ids.set_fault(Fault::None);
    assert_eq!(
        s.ids.introspections(),
        2 + 1 + 1 + 1,
        "identity server count"
    );

    let m = scrape(port);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing in {m:#?}"));
    let expected = [
        ("phantom_token_requests_total{outcome=\"granted\"}", 8.0),
        ("phantom_token_requests_total{outcome=\"401\"}", 2.0),
        ("phantom_token_requests_total{outcome=\"403\"}", 1.0),
        ("phantom_token_requests_total{outcome=\"502\"}", 1.0),
        ("phantom_token_requests_total{outcome=\"503\"}", 1.0),
        ("phantom_token_requests_total{outcome=\"429\"}", 0.0),
        ("phantom_token_introspections_total{result=\"active\"}", 2.0),
        (
            "phantom_token_introspections_total{result=\"inactive\"}",
            1.0,
        ),
        ("phantom_token_introspections_total{result=\"error\"}", 1.0),
        (
            "phantom_token_introspections_total{result=\"unavailable\"}",
            1.0,
        ),
        ("phantom_token_cache_misses_total{}", 10.0),
        ("phantom_token_cache_expired_total{}", 0.0),
        ("phantom_token_cache_stores_total{}", 2.0),
        (
            "phantom_token_cache_not_stored_total{reason=\"no_store\"}",
            0.0,
        ),
        ("phantom_token_cache_evictions_total{}", 0.0),
        ("phantom_token_introspection_duration_seconds_count{}", 5.0),
        ("phantom_token_zone_entries{zone=\"c\"}", 2.0),
        ("phantom_token_zone_size_bytes{zone=\"c\"}", 1048576.0),
    ];
    for (k, v) in expected {
        assert_eq!(get(k), v, "{k}");
    }
    let hits = get("phantom_token_cache_hits_total{level=\"l1\"}")
        + get("phantom_token_cache_hits_total{level=\"zone\"}");
    assert_eq!(hits, 2.0);
    let waits = get("phantom_token_coalesced_waits_total{scope=\"worker\"}")
        + get("phantom_token_coalesced_waits_total{scope=\"workers\"}");
    assert_eq!(waits, 5.0);
    assert!(get("phantom_token_zone_used_bytes{zone=\"c\"}") > 0.0);
    assert!(get("phantom_token_introspection_duration_seconds_bucket{le=\"10\"}") >= 5.0);

    s.nginx.reload();
    let after = scrape(port);
    for (k, v) in &m {
        if !k.starts_with("phantom_token_zone_used") {
            assert_eq!(after.get(k), Some(v), "{k} after reload");
        }
    }
    assert_eq!(s.get_bearer("/", &t1).status, 200);
    let again = scrape(port);
    assert_eq!(
        again["phantom_token_requests_total{outcome=\"granted\"}"], 9.0,
        "monotonic across reload"
    );
    s.nginx.assert_clean_log();
}

#[test]
fn metrics_location_is_protected_by_nginx_access_control() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let server = format!(
        "location = /metrics {{ deny all; phantom_token_status; }}
         location = /m {{ phantom_token_status; }}
         {}",
        introspection_location(ids.port(), "")
    );
    let n = Nginx::start("", &server);
    assert_eq!(request(n.port, "GET", "/metrics", &[], None).status, 403);
    assert_eq!(request(n.port, "POST", "/m", &[], Some(b"x")).status, 405);
    assert_eq!(request(n.port, "HEAD", "/m", &[], None).status, 200);
}

#[test]
fn introspection_time_is_a_log_variable() {
    let s = Stack::start(
        "log_format t '$phantom_token_cache_status [$phantom_token_introspection_time]';
         phantom_token_cache_zone c:1m;",
        "phantom_token_cache c; access_log t.log t;",
    );
    let token = s.ids.issue("read", 300);
    s.ids.set_fault(Fault::Delay(Duration::from_millis(50)));
    assert_eq!(s.get_bearer("/", &token).status, 200);
    assert_eq!(s.get_bearer("/", &token).status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut log = String::new();
    while std::time::Instant::now() < deadline {
        log = std::fs::read_to_string(s.nginx.dir.join("t.log")).unwrap_or_default();
        if log.lines().count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].starts_with("MISS [0.0"), "{log}");
    let secs: f64 = lines[0][6..11].parse().unwrap();
    assert!((0.04..1.0).contains(&secs), "{log}");
    assert_eq!(lines[1], "HIT []");
}

fn cache_status(s: &Stack, token: &str) -> (u16, String) {
    let r = s.get_bearer("/", token);
    (r.status, r.header("x-cache").unwrap_or("").to_string())
}

#[test]
fn stale_if_error_serves_expired_entries_while_the_identity_server_is_down() {
    let s = Stack::start(
        "phantom_token_cache_zone c:1m max_ttl=1s leeway=0 negative_ttl=1s stale_if_error=2s;",
        "phantom_token_cache c; add_header X-Cache $phantom_token_cache_status always;
         location = /metrics { phantom_token off; phantom_token_status; }",
    );
    let token = s.ids.issue("read", 300);
    let short = s.ids.issue("read", 2);
    assert_eq!(cache_status(&s, &token), (200, "MISS".into()));
    assert_eq!(cache_status(&s, &short), (200, "MISS".into()));
    assert_eq!(cache_status(&s, "unknown").0, 401);
    s.ids.stop();
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(cache_status(&s, &token), (200, "STALE".into()));
    assert_eq!(
        cache_status(&s, &token),
        (200, "STALE".into()),
        "still kept after serving"
    );
    assert_eq!(
        s.echo
            .last()
            .unwrap()
            .header("authorization")
            .map(|a| a.starts_with("Bearer ey")),
        Some(true)
    );
    assert_eq!(
        cache_status(&s, "unknown").0,
        503,
        "never stale for inactive tokens"
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(cache_status(&s, &short).0, 503, "never past the JWT's exp");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(cache_status(&s, &token).0, 503, "never past the window");
    let m = scrape(s.nginx.port);
    assert_eq!(m["phantom_token_cache_stale_served_total{}"], 2.0);
}

#[test]
fn a_flood_of_unknown_tokens_never_evicts_active_entries() {
    let http = "phantom_token_cache_zone c:1m negative_ttl=60s;";
    let s = Stack::start(
        http,
        "phantom_token_cache c; add_header X-Cache $phantom_token_cache_status always;",
    );
    let token = s.ids.issue("read", 300);
    assert_eq!(cache_status(&s, &token), (200, "MISS".into()));
    let script = s.nginx.dir.join("random.lua");
    std::fs::write(
        &script,
        "math.randomseed(os.time())\nrequest = function()\n  return wrk.format('GET', '/', {['Authorization'] = 'Bearer r' .. math.random(1, 1e12) .. 'x' .. math.random(1, 1e12)})\nend\n",
    )
    .unwrap();
    let mut rounds = 0;
    while s.ids.introspections() < 10_001 && rounds < 10 {
        let st = std::process::Command::new("wrk")
            .args(["-t2", "-c8", "-d3s", "-s"])
            .arg(&script)
            .arg(format!("http://127.0.0.1:{}/", s.nginx.port))
            .output()
            .unwrap();
        assert!(st.status.success());
        rounds += 1;
    }
    assert!(
        s.ids.introspections() > 10_000,
        "{}",
        s.ids.introspections()
    );
    assert_eq!(cache_status(&s, &token), (200, "HIT".into()));
    s.nginx.assert_clean_log();
}
