//! A revocation is final: no stale copy, Redis value or in-flight introspection brings a
//! purged decision back, and `phantom_token_cache_max_age` bounds every use of a cached one.

mod support;

use std::time::{Duration, Instant};

use support::fleet::{get, introspections_arrived, purge, FORM};
use support::*;

/// One instance with a purge location; `zone` and `api` extend the zone and the API location.
fn instance(ids: &IdServer, echo: &EchoServer, zone: &str, api: &str) -> Nginx {
    let http = format!("phantom_token_cache_zone jwt:1m {zone};");
    let server = format!(
        "{}
         {}
         location = /purge {{ allow 127.0.0.1; deny all; phantom_token_purge jwt; }}",
        api_location(
            echo.port(),
            &format!(
                "phantom_token_cache jwt;
                 add_header X-Cache $phantom_token_cache_status always;
                 {api}"
            )
        ),
        introspection_location(ids.port(), "")
    );
    Nginx::start_workers(2, &http, &server, "")
}

/// A token whose JWT has `sub`.
fn token_of(ids: &IdServer, sub: &str) -> String {
    let t = ids.issue("read", 300);
    let claims = serde_json::json!({ "sub": sub });
    ids.set_claims(&t, claims.as_object().unwrap().clone());
    t
}

#[test]
fn a_purge_during_an_introspection_is_not_undone_by_stale_if_error() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let n = instance(&ids, &echo, "max_ttl=1s leeway=0 stale_if_error=120s", "");
    let by_token = token_of(&ids, "alice");
    let by_sub = token_of(&ids, "bob");
    for t in [&by_token, &by_sub] {
        assert_eq!(get(n.port, t), (200, "MISS".into()));
    }
    std::thread::sleep(Duration::from_millis(1200));
    // The identity server takes connections and never answers in time.
    ids.set_fault(Fault::Delay(Duration::from_secs(30)));
    let bodies = [format!("token={by_token}"), "sub=bob".to_string()];
    for (t, body) in [&by_token, &by_sub].into_iter().zip(bodies) {
        let port = n.port;
        let token = t.clone();
        let before = ids.introspections();
        let in_flight = std::thread::spawn(move || get(port, &token));
        // The purge comes while the introspection is at the identity server.
        introspections_arrived(&ids, before + 1);
        let r = purge(n.port, &body);
        assert_eq!(r.status, 200, "{}", r.text());
        let (status, cache) = in_flight.join().unwrap();
        assert_ne!(
            status, 200,
            "the in-flight request served a purged copy ({cache})"
        );
        assert_eq!(status, 503, "{cache}");
        let (status, cache) = get(n.port, t);
        assert_ne!(
            status, 200,
            "a later request served a purged copy ({cache})"
        );
    }
    let log = n.error_log();
    assert!(
        log.contains("was purged, so it is not served (stale_if_error)"),
        "{log}"
    );
    n.assert_clean_log();
}

#[test]
fn cache_max_age_bounds_stale_if_error() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let n = instance(
        &ids,
        &echo,
        "max_ttl=1s leeway=0 stale_if_error=120s",
        "phantom_token_cache_max_age 3s;",
    );
    let token = ids.issue("read", 300);
    let made = Instant::now();
    assert_eq!(get(n.port, &token), (200, "MISS".into()));
    ids.stop();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(get(n.port, &token), (200, "STALE".into()), "within max_age");
    // Past `phantom_token_cache_max_age` (whole seconds: entries look up to 1 s older).
    std::thread::sleep(Duration::from_secs(3).saturating_sub(made.elapsed()));
    std::thread::sleep(Duration::from_millis(1100));
    let (status, cache) = get(n.port, &token);
    assert_eq!(
        status, 503,
        "a decision older than max_age was served ({cache})"
    );
}

#[test]
fn a_request_right_after_a_purge_introspects_and_is_served() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let n = instance(&ids, &echo, "", "");
    let t = ids.issue("read", 300);
    assert_eq!(get(n.port, &t), (200, "MISS".into()));
    let r = support::http::request(
        n.port,
        "POST",
        "/purge",
        &[("Content-Type", FORM)],
        Some(format!("token={t}").as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(n.port, &t), (200, "MISS".into()));
}
