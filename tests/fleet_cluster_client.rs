//! The cluster client (`redis_cluster=on`) on a Redis Cluster: three primaries and three
//! replicas made by the test with `redis-cli --cluster create` (tests/fleet_cluster.rs tests
//! the key layout on the same clusters). Each operation goes to the primary
//! that owns its key's slot; a slot's owner comes from the map (`CLUSTER SHARDS`) or a
//! `MOVED` reply.

mod support;

use std::time::{Duration, Instant};

use support::cluster::Cluster;
use support::fleet::*;
use support::{EchoServer, Fault, IdConfig, IdServer, Nginx};

/// An instance whose zone `jwt` uses the cluster, with its seed nodes in an `upstream`
/// (their TLS ports when `zone` has `redis_ssl=on`).
fn instance(c: &Cluster, ids: &IdServer, echo: &EchoServer, keys: &KeyFile, zone: &str) -> Nginx {
    instance_of(c, (ids, echo, keys), zone, 2)
}

/// As [`instance`], with `workers` workers.
fn instance_of(
    c: &Cluster,
    (ids, echo, keys): (&IdServer, &EchoServer, &KeyFile),
    zone: &str,
    workers: usize,
) -> Nginx {
    let (http, server) = instance_conf(c, (ids, echo, keys), zone);
    let n = Nginx::start_workers(workers, &http, &server, "");
    assert!(
        n.wait_log("cluster map 1: 3 primaries, 16384 of 16384 slots served"),
        "{}",
        n.error_log()
    );
    n
}

/// The `http` and `server` blocks of an instance on `c`.
fn instance_conf(
    c: &Cluster,
    (ids, echo, keys): (&IdServer, &EchoServer, &KeyFile),
    zone: &str,
) -> (String, String) {
    let upstream = if zone.contains("redis_ssl=on") {
        c.tls_upstream("phantom_redis")
    } else {
        c.upstream("phantom_redis")
    };
    let http = format!(
        "{upstream}
         phantom_token_cache_zone jwt:10m redis=phantom_redis redis_cluster=on redis_key={}
             redis_timeout=200ms {zone};",
        keys.path().display()
    );
    let server = format!("{}\n{METRICS}", fleet_server(ids, echo, ""));
    (http, server)
}

/// Two instances on `c` with one identity server, API and key file, once workers have maps.
fn two_instances(c: &Cluster, zone: &str) -> (IdServer, EchoServer, KeyFile, Nginx, Nginx) {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = KeyFile::new();
    let a = instance(c, &ids, &echo, &keys, zone);
    let b = instance(c, &ids, &echo, &keys, zone);
    // Each worker asks for its map when it starts: let both workers of each have it.
    std::thread::sleep(Duration::from_millis(300));
    (ids, echo, keys, a, b)
}

#[test]
fn tokens_are_shared_through_the_primaries_that_own_their_slots() {
    let c = Cluster::start();
    let (ids, _echo, _keys, a, b) = two_instances(&c, "");

    let tokens = issue_with(&ids, 30, serde_json::json!({ "sub": "alice" }));
    for t in &tokens {
        assert_eq!(get(a.port, t), (200, "MISS".into()));
    }
    eventually("30 entries in the cluster", || {
        c.keys().iter().filter(|k| k.contains(":t:")).count() == 30
    });
    // The entries are spread over the three primaries.
    let per_node: Vec<usize> = c
        .live_primaries()
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

/// A node's cluster id.
fn id_of(n: &support::redis::Redis) -> String {
    n.cmd_str(&["CLUSTER", "MYID"])
        .text()
        .expect("CLUSTER MYID")
}

#[test]
fn a_slot_migrated_under_load_is_followed_through_ask_then_moved() {
    let c = Cluster::start();
    let (ids, _echo, _keys, a, b) = two_instances(&c, "");
    // Hot tokens, cached in the cluster; the slot of the first one's entry migrates.
    let hot = issue_with(&ids, 20, serde_json::json!({ "sub": "alice" }));
    for t in &hot {
        assert_eq!(get(a.port, t).0, 200);
    }
    eventually("20 entries", || {
        c.keys().iter().filter(|k| k.contains(":t:")).count() == 20
    });
    // 300 slots of the first primary move to the second: new tokens whose entries fall in
    // them (1.8 % of them) get ASK while the slots migrate, then MOVED.
    let first = c.primaries[0].ranges[0].0 as u32;
    let (src, dst) = (c.node(c.primaries[0].port), c.node(c.primaries[1].port));
    let slots: Vec<String> = (first..first + 300).map(|s| s.to_string()).collect();
    let (src_id, dst_id) = (id_of(src), id_of(dst));
    let maps_before: f64 = [&a, &b]
        .iter()
        .map(|n| metric(n.port, "phantom_token_redis_cluster_maps_total"))
        .sum();

    support::wrk::under_load(&ids, &[&a, &b], &hot, 6, || {
        // MIGRATING / IMPORTING, then the slots' keys move: requests for them get ASK.
        let port = dst.port.to_string();
        for slot in &slots {
            assert!(dst
                .cmd_str(&["CLUSTER", "SETSLOT", slot, "IMPORTING", &src_id])
                .is_ok_reply());
            assert!(src
                .cmd_str(&["CLUSTER", "SETSLOT", slot, "MIGRATING", &dst_id])
                .is_ok_reply());
        }
        for slot in &slots {
            loop {
                let moving = src.cmd_str(&["CLUSTER", "GETKEYSINSLOT", slot, "100"]);
                let moving: Vec<String> = moving
                    .array()
                    .unwrap()
                    .iter()
                    .filter_map(|v| v.text())
                    .collect();
                if moving.is_empty() {
                    break;
                }
                let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
                args.extend(moving.iter().map(String::as_str));
                let r = src.cmd_str(&args);
                assert!(r.is_ok_reply(), "MIGRATE: {r:?}");
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
        // The slots are dst's: requests sent to src get MOVED.
        for slot in &slots {
            for n in c.live_primaries() {
                assert!(n
                    .cmd_str(&["CLUSTER", "SETSLOT", slot, "NODE", &dst_id])
                    .is_ok_reply());
            }
        }
    });
    let sum = |name: &str| -> f64 { [&a, &b].iter().map(|n| metric(n.port, name)).sum() };
    let asks = sum("phantom_token_redis_cluster_redirects_total{kind=\"ask\"}");
    let moved = sum("phantom_token_redis_cluster_redirects_total{kind=\"moved\"}");
    let maps = sum("phantom_token_redis_cluster_maps_total") - maps_before;
    eprintln!("ASK {asks}, MOVED {moved}, maps taken during the migration: {maps} (4 workers)");
    assert!(asks > 0.0, "no ASK followed");
    assert!(moved > 0.0, "no MOVED seen");
    // Every hot token is still served on both instances; the entry is on its new node.
    for t in &hot {
        assert_eq!(get(a.port, t).0, 200);
        assert_eq!(get(b.port, t).0, 200);
    }
    assert_no_crash(&a);
    assert_no_crash(&b);
}

#[test]
fn a_primary_killed_under_load_fails_no_request_and_its_replica_takes_its_writes() {
    let mut c = Cluster::start_timeout(&support::redis::redis_server_binary(), 1000);
    let (ids, _echo, _keys, a, b) = two_instances(&c, "");
    let hot = issue_with(&ids, 20, serde_json::json!({ "sub": "alice" }));
    let mut killed = Instant::now();
    // The primary of the purge stream's slot: the stream readers must follow it too.
    let stream_slot = phantom_core::fleet::slot::key_slot(b"pt:v2:purge:jwt");
    let victim = c.owner(stream_slot).port;
    support::wrk::under_load(&ids, &[&a, &b], &hot, 8, || {
        killed = Instant::now();
        c.kill(victim);
    });
    c.wait_ok();
    eprintln!(
        "the cluster was ok again {:?} after the kill",
        killed.elapsed()
    );
    // The killed primary's replica took its slots, and new writes land on it.
    let promoted = c
        .live_primaries()
        .into_iter()
        .find(|n| c.primaries.iter().all(|p| p.port != n.port))
        .expect("a replica was promoted");
    let before = promoted.keys().len();
    let fresh = issue_with(&ids, 30, serde_json::json!({ "sub": "bob" }));
    for t in &fresh {
        assert_eq!(get(a.port, t).0, 200);
    }
    eventually("new entries on the promoted replica", || {
        promoted.keys().len() > before
    });
    for t in &fresh {
        assert_eq!(
            get(b.port, t),
            (200, "HIT".into()),
            "B has A's entries from every shard"
        );
    }
    // Purges reach every instance afterwards: the notice goes to the stream on its new
    // primary, where both readers now read.
    for (i, t) in fresh.iter().take(3).enumerate() {
        let from = [&a, &b][i % 2];
        ids.revoke(t);
        let r = purge(from.port, &format!("token={}", form_encode(t)));
        let at = Instant::now();
        purge_ok(&r);
        refused_by_within_1s(&[&a, &b], t, at);
    }
    assert_no_crash(&a);
    assert_no_crash(&b);
}

#[test]
fn coalescing_and_purges_work_across_the_shards_with_no_error_reply() {
    full_session(&Cluster::start(), "");
}

#[test]
fn over_tls_with_tls_between_the_nodes_too() {
    let pki = support::pki::Pki::new();
    let c = Cluster::start_tls(&support::redis::redis_server_binary(), &pki);
    let zone = format!(
        "redis_ssl=on redis_ssl_trusted_certificate={} redis_ssl_name=localhost",
        pki.path("ca.crt")
    );
    full_session(&c, &zone);
}

#[test]
fn on_a_valkey_9_cluster() {
    if let Some(bin) = support::cluster::valkey_9_1() {
        full_session(&Cluster::start_with(&bin), "");
    }
}

/// Sharing, fleet-wide coalescing and purges of every kind on the cluster `c`, with `zone`
/// parameters; no node gives an error reply.
fn full_session(c: &Cluster, zone: &str) {
    let (ids, _echo, _keys, a, b) = two_instances(c, zone);
    let claims = serde_json::json!({ "sub": "alice", "client_id": "app" });

    // Fleet-wide coalescing: 20 concurrent first requests over two instances, one
    // introspection (the lock and the entry in the token's slot, on its node).
    for round in 0..3 {
        let busy = issue_with(&ids, 1, claims.clone()).remove(0);
        let before = ids.introspections();
        let statuses = twenty_first_requests(&ids, &[a.port, b.port], &busy);
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        assert_eq!(
            ids.introspections() - before,
            1,
            "round {round}: one introspection for 20 requests"
        );
    }

    // Purges by token, subject and client: the entries lie on every primary, the index
    // sets and the stream on others; every instance refuses within a second.
    let tokens = issue_with(&ids, 12, claims.clone());
    for t in &tokens {
        assert_eq!(get(a.port, t).0, 200);
        assert_eq!(get(b.port, t), (200, "HIT".into()));
    }
    ids.revoke(&tokens[0]);
    let r = purge(a.port, &format!("token={}", form_encode(&tokens[0])));
    let at = Instant::now();
    assert_eq!(purge_ok(&r).1, 1, "{}", r.text());
    refused_by_within_1s(&[&a, &b], &tokens[0], at);
    for t in &tokens[1..6] {
        ids.revoke(t);
    }
    let r = purge(b.port, "sub=alice");
    let at = Instant::now();
    let (_, in_redis) = purge_ok(&r);
    assert!(in_redis >= 5, "{}", r.text());
    for t in &tokens[1..6] {
        refused_by_within_1s(&[&a, &b], t, at);
    }
    let more = issue_with(
        &ids,
        4,
        serde_json::json!({ "sub": "bob", "client_id": "app" }),
    );
    for t in &more {
        assert_eq!(get(a.port, t).0, 200);
    }
    for t in &more {
        ids.revoke(t);
    }
    let r = purge(a.port, "client_id=app");
    let at = Instant::now();
    assert!(purge_ok(&r).1 >= 4, "{}", r.text());
    for t in &more {
        refused_by_within_1s(&[&a, &b], t, at);
    }

    // No node answered anything with an error over the whole run: no CROSSSLOT, MOVED, ASK
    // or script error.
    let errors = c.error_stats(&c.ports);
    assert!(errors.is_empty(), "error replies: {errors:?}");
    let sum = |name: &str| -> f64 { [&a, &b].iter().map(|n| metric(n.port, name)).sum() };
    assert_eq!(
        sum("phantom_token_redis_errors_total{reason=\"cluster\"}"),
        0.0
    );
    for n in [&a, &b] {
        assert_no_crash(n);
    }
}

/// Nodes that prefer host names (`cluster-preferred-endpoint-type hostname`, set after the
/// cluster formed): the map takes their IPs from `CLUSTER SHARDS` and their names, so a
/// `MOVED` that names a host is followed at once, to the primary of that name.
#[test]
fn a_moved_that_names_a_host_is_followed() {
    let c = Cluster::start();
    for &port in &c.ports {
        let host = format!("node-{port}.cluster.test");
        for (k, v) in [
            ("cluster-announce-hostname", host.as_str()),
            ("cluster-preferred-endpoint-type", "hostname"),
        ] {
            assert!(c.cmd_at(port, &["CONFIG", "SET", k, v]).is_ok_reply());
        }
    }
    // Host names spread with the gossip's pings: every node pings every other at least once
    // per half node timeout (2.5 s), later on a loaded machine.
    eventually_within(20, "every node knows every host name", || {
        c.ports.iter().all(|&p| {
            let nodes = c
                .cmd_at(p, &["CLUSTER", "NODES"])
                .text()
                .unwrap_or_default();
            nodes.matches(".cluster.test").count() == 6
        })
    });
    let (ids, _echo, _keys, a, b) = two_instances(&c, "");
    let t = ids.issue("read", 300);
    assert_eq!(get(a.port, &t), (200, "MISS".into()));
    let entry = || c.keys().into_iter().find(|k| k.contains(":t:"));
    eventually("the entry is in the cluster", || entry().is_some());
    let slot = c.keyslot(entry().unwrap().as_bytes());
    // The slot, emptied, moves to another primary; B's map still names the old owner.
    let src = c.owner(slot).port;
    let dst = c.primaries.iter().find(|p| p.port != src).unwrap().port;
    let keys = c.cmd_at(src, &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "100"]);
    for k in keys.array().unwrap().iter().filter_map(|v| v.text()) {
        c.cmd_at(src, &["DEL", &k]);
    }
    let dst_id = id_of(c.node(dst));
    for port in [dst, src] {
        let r = c.cmd_at(
            port,
            &["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &dst_id],
        );
        assert!(r.is_ok_reply(), "{r:?}");
    }
    let moved = "phantom_token_redis_cluster_redirects_total{kind=\"moved\"}";
    let before = metric(b.port, moved);
    assert_eq!(get(b.port, &t), (200, "MISS".into()));
    assert!(metric(b.port, moved) > before, "the MOVED was not followed");
    eventually("the new entry is on the slot's new primary", || {
        c.node(dst).keys().iter().any(|k| k.contains(":t:"))
    });
    assert_eq!(get(a.port, &t).0, 200);
    assert_no_crash(&a);
    assert_no_crash(&b);
}

/// A worker that exits while its request holds the fleet lock releases the lock on its way
/// out, on the node that owns the lock's slot: the other instance then asks the identity
/// server at once instead of waiting out `redis_lock`.
#[test]
fn a_worker_that_exits_releases_its_locks_on_their_nodes() {
    let c = Cluster::start();
    let (ids, _echo, _keys, a, b) = two_instances(&c, "redis_lock=5s");
    let token = ids.issue("read", 300);
    ids.set_fault(Fault::Delay(Duration::from_secs(10)));
    let _holder = open_request(a.port, &token);
    let lock = || c.keys().into_iter().find(|k| k.contains(":lk:"));
    eventually("A holds the fleet lock", || lock().is_some());
    // Lifted before A's introspection arrives, the fault would not hold it: A would store
    // the entry and B's request would be a HIT.
    introspections_arrived(&ids, 1);
    ids.set_fault(Fault::None);
    // A fast shutdown: the worker exits with the request (and its lock) still in flight.
    a.signal(libc::SIGTERM);
    eventually("the lock is released", || lock().is_none());
    let started = Instant::now();
    assert_eq!(get(b.port, &token), (200, "MISS".into()));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "B waited {:?} for the lock of an instance that exited (redis_lock=5s)",
        started.elapsed()
    );
    assert_no_crash(&b);
}

/// A primary down, its replica not yet promoted: every worker finds its map wrong again and
/// again. One worker of each instance asks for the map, at most once a second, and the
/// others take it from the zone (before, each of the eight workers asked once a second).
#[test]
fn the_map_is_refreshed_once_per_instance_not_once_per_worker() {
    // cluster-node-timeout 5 s: no failover while the test watches.
    let mut c = Cluster::start();
    let (ids, echo, keys) = (
        IdServer::start(IdConfig::default()).unwrap(),
        EchoServer::start().unwrap(),
        KeyFile::new(),
    );
    let a = instance_of(&c, (&ids, &echo, &keys), "", 4);
    let b = instance_of(&c, (&ids, &echo, &keys), "", 4);
    let hot = issue_with(&ids, 20, serde_json::json!({ "sub": "alice" }));
    let victim = c.primaries[0].port;
    let mut down = Instant::now();
    support::wrk::under_load(&ids, &[&a, &b], &hot, 5, || {
        for n in c.live_primaries() {
            assert!(n.cmd_str(&["CONFIG", "RESETSTAT"]).is_ok_reply());
        }
        down = Instant::now();
        c.kill(victim);
    });
    let secs = down.elapsed().as_secs_f64();
    let asked = c.calls("cluster|shards");
    eprintln!("maps asked for in the {secs:.1} s the primary was down: {asked} (2 instances of 4 workers)");
    assert!(
        (asked as f64) <= 2.0 * (secs + 2.0),
        "{asked} maps asked for in {secs:.1} s by two instances"
    );
    for n in [&a, &b] {
        assert_no_crash(n);
    }
}

/// The zone, kept across a reload, holds the map the old workers published. After a reload
/// that names another cluster, the new workers take their map from the new seeds, not the
/// old cluster's map from the zone.
#[test]
fn a_reload_that_names_another_cluster_does_not_take_the_old_map() {
    let (old, new) = (Cluster::start(), Cluster::start());
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = KeyFile::new();
    let a = instance(&old, &ids, &echo, &keys, "");
    let (http, server) = instance_conf(&new, (&ids, &echo, &keys), "");
    a.reconfigure(&http, &server);
    eventually("both new workers have a map", || {
        a.error_log().matches("cluster map 1: 3 primaries").count() == 4
    });
    let t = ids.issue("read", 300);
    assert_eq!(get(a.port, &t), (200, "MISS".into()));
    let entries = |c: &Cluster| c.keys().into_iter().filter(|k| k.contains(":t:")).count();
    eventually("the entry is in the new cluster", || entries(&new) == 1);
    assert_eq!(
        entries(&old),
        0,
        "the new workers used the old cluster's map"
    );
    assert_no_crash(&a);
}
