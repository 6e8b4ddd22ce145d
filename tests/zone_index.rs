//! The zone's hash index and its subject and client chains, through nginx with two workers
//! and no L1 (every hit is a zone lookup): churn with evictions, a purge by subject and by
//! client in a full zone, and a reload of a full zone.

mod support;

use std::time::{Duration, Instant};

use support::fleet::{get, purge};
use support::*;

/// Two workers, L1 off, a small zone (a few hundred entries) and a purge location.
fn instance(ids: &IdServer, echo: &EchoServer) -> Nginx {
    let http = "phantom_token_cache_zone jwt:256k l1=0 leeway=0;";
    let server = format!(
        "{}
         {}
         location = /purge {{ allow 127.0.0.1; deny all; phantom_token_purge jwt; }}",
        api_location(
            echo.port(),
            "phantom_token_cache jwt;
             add_header X-Cache $phantom_token_cache_status always;"
        ),
        introspection_location(ids.port(), "")
    );
    Nginx::start_workers(2, http, &server, "")
}

/// A token with this `sub` (and the identity server's one `client_id`, unless given).
fn token_of(ids: &IdServer, sub: &str, client: Option<&str>) -> String {
    let t = ids.issue("read", 300);
    let mut claims = serde_json::json!({ "sub": sub });
    if let Some(c) = client {
        claims["client_id"] = c.into();
    }
    ids.set_claims(&t, claims.as_object().unwrap().clone());
    t
}

/// Several requests on fresh connections, so both workers answer some.
fn all_workers(port: u16, token: &str) -> Vec<(u16, String)> {
    (0..6).map(|_| get(port, token)).collect()
}

/// Fills the zone well past its size: the oldest entries are evicted.
fn fill(n: &Nginx, ids: &IdServer, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let t = token_of(ids, &format!("filler-{i}"), None);
            assert_eq!(get(n.port, &t).0, 200);
            t
        })
        .collect()
}

#[test]
fn churn_keeps_every_recent_entry_and_drops_evicted_ones() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let n = instance(&ids, &echo);
    let tokens = fill(&n, &ids, 1200);
    // The most recent ones are in the zone, whichever worker stored or asks.
    let asked = ids.introspections();
    for t in &tokens[tokens.len() - 40..] {
        for (status, cache) in all_workers(n.port, t) {
            assert_eq!((status, cache.as_str()), (200, "HIT"));
        }
    }
    assert_eq!(ids.introspections(), asked, "no recent entry was lost");
    // The first ones were evicted: asked again (and stored again, evicting others).
    let (status, cache) = get(n.port, &tokens[0]);
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    assert_eq!(ids.introspections(), asked + 1);
    assert_eq!(get(n.port, &tokens[0]), (200, "HIT".into()));
    n.assert_clean_log();
}

#[test]
fn concurrent_churn_on_both_workers_keeps_the_index_whole() {
    let ids = std::sync::Arc::new(IdServer::start(IdConfig::default()).unwrap());
    let echo = EchoServer::start().unwrap();
    let n = instance(&ids, &echo);
    let port = n.port;
    // Four clients at once: stores, evictions and lookups of both workers interleave.
    let threads: Vec<_> = (0..4)
        .map(|k| {
            let ids = ids.clone();
            std::thread::spawn(move || {
                (0..400)
                    .map(|i| {
                        let t = token_of(&ids, &format!("c{k}-{i}"), Some(&format!("cl{k}")));
                        assert_eq!(get(port, &t).0, 200);
                        t
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let tokens: Vec<Vec<String>> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    let asked = ids.introspections();
    for ts in &tokens {
        for t in &ts[ts.len() - 10..] {
            assert_eq!(get(port, t), (200, "HIT".into()), "a recent entry was lost");
        }
    }
    assert_eq!(ids.introspections(), asked);
    // Each client's chain holds exactly its entries still in the zone.
    let r = purge(port, "client_id=cl0");
    let removed = r.json()["removed"].as_u64().unwrap();
    assert!((10..400).contains(&removed), "{removed}");
    for t in &tokens[1][tokens[1].len() - 10..] {
        assert_eq!(
            get(port, t),
            (200, "HIT".into()),
            "another client's entry went"
        );
    }
    for t in &tokens[0][tokens[0].len() - 10..] {
        assert_eq!(get(port, t), (200, "MISS".into()), "a purged entry stayed");
    }
    n.assert_clean_log();
}

#[test]
fn a_purge_by_subject_or_client_in_a_full_zone_is_quick_and_exact() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let n = instance(&ids, &echo);
    fill(&n, &ids, 600);
    let alice: Vec<String> = (0..10).map(|_| token_of(&ids, "alice", None)).collect();
    let app: Vec<String> = (0..5)
        .map(|i| token_of(&ids, &format!("app-user-{i}"), Some("app")))
        .collect();
    let bob: Vec<String> = (0..20).map(|_| token_of(&ids, "bob", None)).collect();
    for t in alice.iter().chain(&app).chain(&bob) {
        assert_eq!(get(n.port, t), (200, "MISS".into()));
    }
    for (sel, revoked) in [("sub=alice", &alice), ("client_id=app", &app)] {
        let started = Instant::now();
        let r = purge(n.port, sel);
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.json()["removed"],
            revoked.len() as u64,
            "{sel}: {}",
            r.text()
        );
        eprintln!("{sel}: {} entries in {took:?}", revoked.len());
        assert!(took < Duration::from_millis(500), "{sel} took {took:?}");
        for t in revoked.iter() {
            ids.revoke(t);
        }
        for t in revoked.iter() {
            for (status, _) in all_workers(n.port, t) {
                assert_eq!(status, 401, "{sel}: a purged token was served");
            }
        }
    }
    for t in &bob {
        for (status, cache) in all_workers(n.port, t) {
            assert_eq!(
                (status, cache.as_str()),
                (200, "HIT"),
                "other subjects stay"
            );
        }
    }
    n.assert_clean_log();
}

#[test]
fn a_reload_with_a_full_zone_keeps_its_entries_and_chains() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let n = instance(&ids, &echo);
    fill(&n, &ids, 600);
    let carol: Vec<String> = (0..5).map(|_| token_of(&ids, "carol", None)).collect();
    let recent: Vec<String> = (0..20)
        .map(|i| token_of(&ids, &format!("r{i}"), None))
        .collect();
    for t in carol.iter().chain(&recent) {
        assert_eq!(get(n.port, t).0, 200);
    }
    let asked = ids.introspections();
    n.reload();
    for t in carol.iter().chain(&recent) {
        assert_eq!(
            get(n.port, t),
            (200, "HIT".into()),
            "kept across the reload"
        );
    }
    assert_eq!(ids.introspections(), asked);
    // The chains came through the reload too.
    let r = purge(n.port, "sub=carol");
    assert_eq!(r.json()["removed"], 5u64, "{}", r.text());
    for t in &recent {
        assert_eq!(get(n.port, t), (200, "HIT".into()));
    }
    n.assert_clean_log();
}
