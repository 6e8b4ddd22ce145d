//! Purge notices carry the instance that made them (issue 17, item 3).
//!
//! A purge is applied at once on the instance that takes it, then broadcast on the zone's
//! purge stream. That instance's own stream reader reads the notice back: it must skip it (one
//! tombstone and at most one walk per purge), while every other instance applies it. The
//! status page shows both: `phantom_token_purge_tombstones{zone}` (purges in the ring of 64)
//! and `phantom_token_purge_notices_total{result="applied"|"own"}`.

mod support;

use std::time::{Duration, Instant};

use support::fleet::*;
use support::http::request;
use support::*;

/// The status page, inside the protected location (nested, so the harness needs no change).
const STATUS: &str = "location = /metrics { phantom_token off; phantom_token_status; }";

fn fleet(instances: usize) -> Fleet {
    Fleet::with(
        instances,
        Opts {
            api: STATUS,
            ..Opts::default()
        },
    )
}

/// One sample of the status page of `port`: `name` or `name{label="value"}`.
fn sample(port: u16, series: &str) -> f64 {
    let r = request(port, "GET", "/metrics", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

/// Purges remembered by the zone `jwt` of `port`.
fn tombstones(port: u16) -> f64 {
    sample(port, "phantom_token_purge_tombstones{zone=\"jwt\"}")
}

/// (applied, own) purge notices read by the stream reader of `port`.
fn notices(port: u16) -> (f64, f64) {
    (
        sample(
            port,
            "phantom_token_purge_notices_total{result=\"applied\"}",
        ),
        sample(port, "phantom_token_purge_notices_total{result=\"own\"}"),
    )
}

/// Waits until the reader of `port` has read `n` notices in all, own or not.
fn read_notices(port: u16, n: f64) {
    eventually(&format!("instance :{port} reads {n} notices"), || {
        let (applied, own) = notices(port);
        applied + own >= n
    });
}

/// Tokens whose JWTs carry `claims`.
fn issue_with(ids: &IdServer, n: usize, claims: serde_json::Value) -> Vec<String> {
    (0..n)
        .map(|_| {
            let t = ids.issue("read", 300);
            ids.set_claims(&t, claims.as_object().unwrap().clone());
            t
        })
        .collect()
}

/// Caches every token on every instance.
fn cache_everywhere(f: &Fleet, tokens: &[String]) {
    for t in tokens {
        for i in 0..f.nodes.len() {
            assert_eq!(get(f.port(i), t).0, 200);
        }
        for i in 0..f.nodes.len() {
            assert_eq!(get(f.port(i), t), (200, "HIT".into()));
        }
    }
}

#[test]
fn a_purge_lays_one_tombstone_on_its_own_instance_and_reaches_the_others() {
    let f = fleet(2);
    let (a, b) = (f.port(0), f.port(1));
    assert_eq!((tombstones(a), tombstones(b)), (0.0, 0.0));
    assert_eq!((notices(a), notices(b)), ((0.0, 0.0), (0.0, 0.0)));

    // By token, on A: refused on A and on B within a second.
    let token = f.ids.issue("read", 300);
    cache_everywhere(&f, std::slice::from_ref(&token));
    f.ids.revoke(&token);
    let at = Instant::now();
    let r = purge(a, &format!("token={}", form_encode(&token)));
    assert_eq!(purge_ok(&r), (1, 1), "{}", r.text());
    refused_everywhere_within_1s(&f, &token, at);
    read_notices(a, 1.0);
    read_notices(b, 1.0);
    // Time for a second application, were there one.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(tombstones(a), 1.0, "one tombstone for one purge on A");
    assert_eq!(tombstones(b), 1.0, "one tombstone for one purge on B");
    assert_eq!(
        notices(a),
        (0.0, 1.0),
        "A reads its own notice and skips it"
    );
    assert_eq!(notices(b), (1.0, 0.0), "B applies A's notice");

    // By subject, on B: B walks its zone once, A applies B's notice.
    let sub = format!("alice-{}", random_hex(8));
    let tokens = issue_with(&f.ids, 3, serde_json::json!({ "sub": sub }));
    cache_everywhere(&f, &tokens);
    for t in &tokens {
        f.ids.revoke(t);
    }
    let purged_before = sample(b, "phantom_token_cache_purges_total");
    let at = Instant::now();
    let r = purge(b, &format!("sub={}", form_encode(&sub)));
    assert_eq!(purge_ok(&r), (3, 3), "{}", r.text());
    for t in &tokens {
        refused_everywhere_within_1s(&f, t, at);
    }
    read_notices(a, 2.0);
    read_notices(b, 2.0);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(notices(a), (1.0, 1.0));
    assert_eq!(notices(b), (1.0, 1.0));
    assert_eq!((tombstones(a), tombstones(b)), (2.0, 2.0));
    assert_eq!(
        sample(b, "phantom_token_cache_purges_total") - purged_before,
        3.0
    );
    for n in &f.nodes {
        assert_no_crash(n);
    }
}

#[test]
fn the_ring_holds_the_last_64_purges_of_the_purging_instance_too() {
    let f = fleet(2);
    let (a, b) = (f.port(0), f.port(1));
    // 40 purges on A (tokens nobody cached: each still lays a tombstone and a notice).
    for i in 0..40 {
        purge_ok(&purge(a, &format!("token=never-cached-{i}")));
    }
    read_notices(a, 40.0);
    read_notices(b, 40.0);
    std::thread::sleep(Duration::from_millis(600));
    let figures = (tombstones(a), tombstones(b));
    eprintln!(
        "after 40 purges on A: tombstones A {} B {}",
        figures.0, figures.1
    );
    assert_eq!(figures, (40.0, 40.0), "40 purges, 40 tombstones each");
    assert_eq!(notices(a), (0.0, 40.0));
    assert_eq!(notices(b), (40.0, 0.0));
    // Past the ring's capacity, the oldest go.
    for i in 40..70 {
        purge_ok(&purge(a, &format!("token=never-cached-{i}")));
    }
    read_notices(a, 70.0);
    read_notices(b, 70.0);
    assert_eq!((tombstones(a), tombstones(b)), (64.0, 64.0));
}

#[test]
fn the_origin_is_shared_by_the_workers_and_survives_a_reload() {
    let f = Fleet::with(
        2,
        Opts {
            api: STATUS,
            workers: 4,
            ..Opts::default()
        },
    );
    let (a, b) = (f.port(0), f.port(1));
    // Several purges on A, taken by whichever of its workers: all A's own.
    for i in 0..8 {
        purge_ok(&purge(a, &format!("token=before-reload-{i}")));
    }
    read_notices(a, 8.0);
    read_notices(b, 8.0);
    assert_eq!(tombstones(a), 8.0);
    assert_eq!(notices(a), (0.0, 8.0));

    // After a reload, A still knows its notices (and its reader resumes after them).
    f.nodes[0].reload();
    let token = f.ids.issue("read", 300);
    cache_everywhere(&f, std::slice::from_ref(&token));
    f.ids.revoke(&token);
    let at = Instant::now();
    purge_ok(&purge(a, &format!("token={}", form_encode(&token))));
    refused_everywhere_within_1s(&f, &token, at);
    read_notices(a, 9.0);
    read_notices(b, 9.0);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(notices(a), (0.0, 9.0), "own notices after the reload");
    assert_eq!(tombstones(a), 9.0);
    assert_eq!(notices(b), (9.0, 0.0));
    assert_eq!(tombstones(b), 9.0);
    for n in &f.nodes {
        assert_no_crash(n);
    }
}
