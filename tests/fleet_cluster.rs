//! The fleet tier on a Redis Cluster (`redis_cluster=on`): three primaries and three replicas
//! made by the test with `redis-cli --cluster create`. Each operation goes to the primary
//! that owns its key's slot; a slot's owner comes from the map (`CLUSTER SHARDS`) or a
//! `MOVED` reply.

mod support;

use std::time::Duration;

use support::cluster::Cluster;
use support::fleet::*;
use support::{EchoServer, IdConfig, IdServer, Nginx};

/// An instance whose zone `jwt` uses the cluster, with its seed nodes in an `upstream`.
fn instance(c: &Cluster, ids: &IdServer, echo: &EchoServer, keys: &KeyFile, zone: &str) -> Nginx {
    let http = format!(
        "{}
         phantom_token_cache_zone jwt:10m redis=phantom_redis redis_cluster=on redis_key={}
             redis_timeout=200ms {zone};",
        c.upstream("phantom_redis"),
        keys.path().display()
    );
    let server = format!("{}\n{METRICS}", fleet_server(ids, echo, ""));
    let n = Nginx::start_workers(2, &http, &server, "");
    assert!(
        n.wait_log("cluster map 1: 3 primaries, 16384 of 16384 slots served"),
        "{}",
        n.error_log()
    );
    n
}

#[test]
fn tokens_are_shared_through_the_primaries_that_own_their_slots() {
    let c = Cluster::start();
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = KeyFile::new();
    let a = instance(&c, &ids, &echo, &keys, "");
    let b = instance(&c, &ids, &echo, &keys, "");
    // Each worker asks for its map when it starts: let both workers of each have it.
    std::thread::sleep(Duration::from_millis(300));

    let tokens = issue_with(&ids, 30, serde_json::json!({ "sub": "alice" }));
    for t in &tokens {
        assert_eq!(get(a.port, t), (200, "MISS".into()));
    }
    eventually("30 entries in the cluster", || {
        c.keys().iter().filter(|k| k.contains(":t:")).count() == 30
    });
    // The entries are spread over the three primaries.
    let per_node: Vec<usize> = c
        .primaries()
        .iter()
        .map(|n| n.keys().iter().filter(|k| k.contains(":t:")).count())
        .collect();
    assert!(
        per_node.iter().all(|&n| n > 0),
        "entries per primary: {per_node:?}"
    );
    for t in &tokens {
        assert_eq!(get(b.port, t), (200, "HIT".into()));
    }
    assert_eq!(ids.introspections(), 30, "B used A's results");
    for n in [&a, &b] {
        eprintln!(
            "cluster replies: {}",
            metric(
                n.port,
                "phantom_token_redis_errors_total{reason=\"cluster\"}"
            )
        );
    }
    assert_no_crash(&a);
    assert_no_crash(&b);
}

#[test]
fn cluster_parameters_are_checked_by_nginx_t() {
    let keys = KeyFile::new();
    for (zone, want) in [
        (
            "redis_cluster=yes",
            "invalid \"redis_cluster=yes\" (on or off)",
        ),
        (
            "redis_cluster=on redis_sentinel=mymaster",
            "\"redis_cluster=on\" and \"redis_sentinel=\" exclude each other",
        ),
    ] {
        let http = format!(
            "upstream phantom_redis {{ server 127.0.0.1:7000; }}
             phantom_token_cache_zone jwt:10m redis=phantom_redis redis_key={} {zone};",
            keys.path().display()
        );
        let (ok, out) = support::nginx_test_config(&http, "");
        assert!(!ok && out.contains(want), "{zone}: {out}");
    }
}
