//! The fleet cache tier shares: a result introspected on one instance is served by another
//! from Redis (sealed, under an HMAC'd key name), first requests are coalesced fleet-wide, and
//! `phantom_token_cache_max_age` bounds the age of every shared decision.
//!
//! Every test has its own Redis, identity server, echo API and nginx instances, so the tests
//! run in parallel.

mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use support::fleet::*;
use support::http::request;
use support::*;

// ---------------------------------------------------------------------------------------
// Sharing and coalescing
// ---------------------------------------------------------------------------------------

#[test]
fn a_token_introspected_on_one_instance_is_served_by_another_from_redis() {
    let f = Fleet::start(2);
    let token = f.ids.issue("read", 300);
    assert_eq!(get(f.port(0), &token), (200, "MISS".into()));
    assert_eq!(f.ids.introspections(), 1);
    eventually("the result is written to Redis", || {
        f.token_keys().len() == 1
    });
    let keys = f.token_keys();
    let k = &keys[0];
    assert!(
        allowed_key_name(k) && k.len() == "pt:v2:t:{}:".len() + 43 + 22,
        "{k}"
    );
    let ttl = f.redis.pttl(k);
    assert!(
        ttl > 0 && ttl <= 300_000,
        "written with PX, at most the token's lifetime: {ttl}"
    );

    assert_eq!(get(f.port(1), &token), (200, "HIT".into()));
    for _ in 0..4 {
        assert_eq!(get(f.port(1), &token), (200, "HIT".into()));
        assert_eq!(get(f.port(0), &token), (200, "HIT".into()));
    }
    assert_eq!(f.ids.introspections(), 1, "B used A's result");
    let seen = f.echo.all();
    assert_eq!(seen.len(), 10);
    let jwt = seen[0].header("authorization").unwrap().to_string();
    assert!(jwt.starts_with("Bearer ey"), "{jwt}");
    for r in &seen {
        assert_eq!(
            r.header("authorization"),
            Some(jwt.as_str()),
            "every instance forwards the same JWT"
        );
    }
    for n in &f.nodes {
        n.assert_clean_log();
    }
}

#[test]
fn concurrent_first_requests_across_the_fleet_cost_one_introspection() {
    let f = Fleet::start(2);
    let token = f.ids.issue("read", 300);
    // Slow enough that all 20 requests arrive while the first introspection runs.
    f.ids.set_fault(Fault::Delay(Duration::from_millis(800)));
    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let port = f.port(i % 2);
            let (auth, barrier) = (bearer(&token), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                request(port, "GET", "/", &[("Authorization", &auth)], None).status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        f.ids.introspections(),
        1,
        "20 concurrent requests over 2 instances"
    );
    // The fleet lock is released (or expires) once the result is in Redis.
    let locks: Vec<String> = f
        .redis
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("pt:v2:lk:"))
        .collect();
    for k in &locks {
        assert!(allowed_key_name(k), "{k}");
        assert_ne!(f.redis.pttl(k), -1, "a lock without PX: {k}");
    }
    eventually("one result in Redis", || f.token_keys().len() == 1);
    for n in &f.nodes {
        n.assert_clean_log();
    }
}

// ---------------------------------------------------------------------------------------
// phantom_token_cache_max_age
// ---------------------------------------------------------------------------------------

#[test]
fn cache_max_age_zero_introspects_every_request() {
    let f = Fleet::with(
        2,
        Opts {
            api: "phantom_token_cache_max_age 0;",
            ..Opts::default()
        },
    );
    let token = f.ids.issue("read", 300);
    for i in 0..6 {
        assert_eq!(get(f.port(i % 2), &token).0, 200);
        assert_eq!(f.ids.introspections(), i + 1, "request {i}");
    }
    for n in &f.nodes {
        n.assert_clean_log();
    }
}

#[test]
fn cache_max_age_bounds_the_age_of_a_cached_decision() {
    let f = Fleet::with(
        2,
        Opts {
            http: "phantom_token_cache_max_age 1s;",
            ..Opts::default()
        },
    );
    let token = f.ids.issue("read", 300);
    assert_eq!(get(f.port(0), &token), (200, "MISS".into()));
    eventually("written to Redis", || f.token_keys().len() == 1);
    assert_eq!(get(f.port(1), &token), (200, "HIT".into()));
    assert_eq!(get(f.port(0), &token), (200, "HIT".into()));
    assert_eq!(f.ids.introspections(), 1);
    std::thread::sleep(Duration::from_millis(1300));
    // B's copy and the one in Redis are older than 1 s: B introspects.
    assert_eq!(get(f.port(1), &token), (200, "MISS".into()));
    assert_eq!(f.ids.introspections(), 2);
    // A's own copy is too old; Redis now holds B's fresh result (a HIT) or A introspects.
    assert_eq!(get(f.port(0), &token).0, 200);
    assert!((2..=3).contains(&f.ids.introspections()));
    let n = f.ids.introspections();
    assert_eq!(get(f.port(0), &token), (200, "HIT".into()));
    assert_eq!(get(f.port(1), &token), (200, "HIT".into()));
    assert_eq!(f.ids.introspections(), n);
    for n in &f.nodes {
        n.assert_clean_log();
    }
}
