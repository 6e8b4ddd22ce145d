//! A primary that moves: demoted with `REPLICAOF` under load (the static list follows it by
//! `ROLE` and `READONLY`), and failed over by Sentinel after it is killed under load
//! (`redis_sentinel=`: asked, and `+switch-master` followed). No request fails; writes and
//! purges reach the new primary and every instance. A DNS name that moves is followed with
//! nginx's `resolver`.

mod support;

use std::time::{Duration, Instant};

use support::dns::Dns;
use support::fleet::*;
use support::redis::Redis;
use support::sentinel::{Setup, Watched, MASTER};
use support::*;

const LOAD_SECONDS: u64 = 8;
/// Load during a Sentinel failover: longer than the slowest failover seen (12 s).
const SENTINEL_LOAD_SECONDS: u64 = 18;

fn stored(r: &Redis) -> usize {
    r.keys().iter().filter(|k| k.contains(":t:")).count()
}

fn follows(replica: &Redis) -> bool {
    let info = replica.cmd_str(&["INFO", "replication"]);
    String::from_utf8_lossy(info.bytes().unwrap_or_default()).contains("master_link_status:up")
}

/// Two instances under wrk while `fault` runs; every response is a 200.
fn under_load(ids: &IdServer, nodes: &[&Nginx], hot: &[String], fault: impl FnOnce()) -> Vec<f64> {
    support::wrk::under_load(ids, nodes, hot, LOAD_SECONDS, fault)
}

/// Waits until the load writes to `r` (a new token entry), by `since + within`; the time
/// from `since`.
fn new_writes(r: &Redis, since: Instant, within: Duration) -> Duration {
    let before = stored(r);
    while stored(r) <= before {
        assert!(
            since.elapsed() < within,
            "no write on the new primary within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    since.elapsed()
}

/// Polls until a new token, introspected on `a`, lands in `r`.
fn writes_land_on(ids: &IdServer, a: &Nginx, r: &Redis, within: Duration) {
    writes_within(ids, a, r, within);
}

/// As [`writes_land_on`]; the time it took.
fn writes_within(ids: &IdServer, a: &Nginx, r: &Redis, within: Duration) -> Duration {
    let start = Instant::now();
    let before = stored(r);
    loop {
        let t = ids.issue("read", 300);
        assert_eq!(get(a.port, &t).0, 200);
        std::thread::sleep(Duration::from_millis(50));
        if stored(r) > before {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "no write on the new primary within {within:?}"
        );
    }
}

/// A purge on `a` of a revoked token reaches `b` within a second.
fn purge_reaches(ids: &IdServer, a: &Nginx, b: &Nginx, r: &Redis) {
    let t = ids.issue("read", 300);
    for n in [a, b] {
        assert_eq!(get(n.port, &t).0, 200);
    }
    ids.revoke(&t);
    let at = Instant::now();
    purge_ok(&purge(a.port, &format!("token={t}")));
    if let Err(got) = answers_by(b.port, &t, 401, at + Duration::from_secs(1)) {
        panic!(
            "the other instance still answers {got:?} 1 s after the purge:\n{}\n{:?}",
            b.error_log(),
            r.cmd_str(&["CLIENT", "LIST"]).text()
        );
    }
}

#[test]
fn a_primary_demoted_under_load_is_followed_to_the_new_primary() {
    let old = Redis::start();
    let new = Redis::start();
    old.cmd_str(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    new.cmd_str(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    new.cmd_str(&["REPLICAOF", "127.0.0.1", &old.port.to_string()]);
    eventually("the replica follows", || follows(&new));
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = KeyFile::new();
    let http = format!(
        "upstream phantom_redis {{ server 127.0.0.1:{}; server 127.0.0.1:{}; }}
         phantom_token_cache_zone jwt:10m redis=phantom_redis redis_key={} redis_timeout=200ms;",
        old.port,
        new.port,
        keys.path().display()
    );
    let server = fleet_server(&ids, &echo, "");
    let a = Nginx::start_workers(2, &http, &server, "");
    let b = Nginx::start_workers(2, &http, &server, "");
    let hot: Vec<String> = (0..20).map(|_| ids.issue("read", 300)).collect();
    for t in &hot {
        assert_eq!(get(a.port, t).0, 200);
    }
    eventually("the old primary has the hot tokens", || stored(&old) >= 20);
    let mut writes = Duration::ZERO;
    let p99 = under_load(&ids, &[&a, &b], &hot, || {
        new.cmd_str(&["REPLICAOF", "NO", "ONE"]);
        old.cmd_str(&["REPLICAOF", "127.0.0.1", &new.port.to_string()]);
        writes = new_writes(&new, Instant::now(), Duration::from_secs(2));
    });
    eprintln!("demotion: p99 {p99:?} ms; the load's writes on the new primary {writes:?} after the demotion");
    writes_land_on(&ids, &a, &new, Duration::from_secs(3));
    purge_reaches(&ids, &a, &b, &new);
    purge_reaches(&ids, &b, &a, &new);
    for n in [&a, &b] {
        assert_no_crash(n);
    }
}

#[test]
fn sentinel_failover_under_load_fails_no_request_and_moves_writes_and_purges() {
    let mut w = Watched::start();
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = KeyFile::new();
    let http = format!(
        "{}
         phantom_token_cache_zone jwt:10m redis=sentinels redis_sentinel={MASTER} redis_key={} redis_timeout=200ms;",
        w.upstream(),
        keys.path().display()
    );
    let server = fleet_server(&ids, &echo, "");
    let a = Nginx::start_workers(2, &http, &server, "");
    let b = Nginx::start_workers(2, &http, &server, "");
    assert!(a.wait_log("is 127.0.0.1:"), "{}", a.error_log());
    let hot: Vec<String> = (0..20).map(|_| ids.issue("read", 300)).collect();
    for t in &hot {
        assert_eq!(get(a.port, t).0, 200);
    }
    eventually("the primary has the hot tokens", || {
        stored(&w.primary) >= 20
    });
    assert_eq!(
        get(b.port, &hot[0]),
        (200, "HIT".into()),
        "B reads A's entry"
    );
    let new_port = w.replica.port;
    let (mut failover, mut writes) = (Duration::ZERO, Duration::ZERO);
    // The load lasts past a slow failover too (CI once saw Sentinel take 12 s, after the
    // 8 s of load had ended, so no write of the load could land on the new primary).
    let p99 = support::wrk::under_load(&ids, &[&a, &b], &hot, SENTINEL_LOAD_SECONDS, || {
        w.primary.stop();
        let killed = Instant::now();
        failover = w.wait_primary(new_port, Duration::from_secs(15));
        // Measured: about 20 ms after the failover; bounded loosely, for a loaded machine.
        writes = new_writes(&w.replica, killed, failover + Duration::from_secs(3));
    });
    eprintln!(
        "sentinel: p99 {p99:?} ms through the failover; Sentinel failover {failover:?} after the kill; the load's writes on the new primary {writes:?} after the kill"
    );
    let t = ids.issue("read", 300);
    assert_eq!(get(a.port, &t).0, 200);
    eventually("A writes to the new primary", || stored(&w.replica) > 20);
    assert_eq!(get(b.port, &t), (200, "HIT".into()), "B reads it there");
    purge_reaches(&ids, &a, &b, &w.replica);
    purge_reaches(&ids, &b, &a, &w.replica);
    for n in [&a, &b] {
        let log = n.error_log();
        assert!(
            log.contains(&format!("is 127.0.0.1:{new_port} (Sentinel")),
            "the move is logged:\n{log}"
        );
        assert_no_crash(n);
    }
}

#[test]
fn a_dns_name_that_moves_is_followed_with_the_resolver() {
    let port = free_port();
    let first = Redis::start_at([127, 0, 0, 2], port);
    let second = Redis::start_at([127, 0, 0, 3], port);
    let dns = Dns::start([127, 0, 0, 2]);
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = KeyFile::new();
    // The name does not resolve with the system's resolver: it is followed at run time only.
    let http = format!(
        "resolver 127.0.0.1:{} valid=1s ipv6=off;
         phantom_token_cache_zone jwt:10m redis=redis.phantom.test:{port} redis_key={} redis_timeout=200ms;",
        dns.port,
        keys.path().display()
    );
    let server = fleet_server(&ids, &echo, "");
    let a = Nginx::start_workers(2, &http, &server, "");
    let b = Nginx::start_workers(2, &http, &server, "");
    assert!(a.wait_log("resolves to 127.0.0.2"), "{}", a.error_log());
    let t = ids.issue("read", 300);
    assert_eq!(get(a.port, &t), (200, "MISS".into()));
    eventually("written to the first address", || stored(&first) == 1);
    assert_eq!(get(b.port, &t), (200, "HIT".into()));
    // The name moves (a failover behind DNS): followed within the TTL and a second.
    dns.point_to([127, 0, 0, 3]);
    let moved = Instant::now();
    let writes = writes_within(&ids, &a, &second, Duration::from_secs(4));
    eprintln!("dns: writes at the new address {writes:?} after the record changed");
    let u = ids.issue("read", 300);
    assert_eq!(get(a.port, &u), (200, "MISS".into()));
    eventually("written to the second address", || stored(&second) >= 2);
    assert_eq!(get(b.port, &u), (200, "HIT".into()), "B follows too");
    assert!(moved.elapsed() < Duration::from_secs(10));
    purge_reaches(&ids, &a, &b, &second);
    for n in [&a, &b] {
        assert!(
            n.error_log().contains("resolves to 127.0.0.3"),
            "{}",
            n.error_log()
        );
        assert_no_crash(n);
    }
}

/// Sentinels with `requirepass`: the module logs in with `redis_sentinel_password_file=`
/// and follows the primary; without it, each Sentinel's refusal is logged and requests go on
/// without the fleet tier.
#[test]
fn sentinels_with_a_password_are_asked_after_auth() {
    let w = Watched::start_with(Setup {
        password: Some("sentinel-secret"),
        ..Setup::default()
    });
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = KeyFile::new();
    let dir = fresh_dir();
    let pass = dir.join("sentinel.pass");
    std::fs::write(&pass, "sentinel-secret\n").unwrap();
    let zone = |extra: &str| {
        format!(
            "{}
             phantom_token_cache_zone jwt:10m redis=sentinels redis_sentinel={MASTER} redis_key={} redis_timeout=200ms {extra};",
            w.upstream(),
            keys.path().display()
        )
    };
    let server = fleet_server(&ids, &echo, "");
    let with = Nginx::start_workers(
        2,
        &zone(&format!("redis_sentinel_password_file={}", pass.display())),
        &server,
        "",
    );
    assert!(
        with.wait_log(&format!("is 127.0.0.1:{} (Sentinel", w.primary.port)),
        "{}",
        with.error_log()
    );
    let t = ids.issue("read", 300);
    assert_eq!(get(with.port, &t), (200, "MISS".into()));
    eventually("the entry is on the primary", || stored(&w.primary) == 1);
    assert_eq!(get(with.port, &t), (200, "HIT".into()));
    assert!(!with.error_log().contains("NOAUTH"), "{}", with.error_log());

    let without = Nginx::start_workers(1, &zone(""), &server, "");
    assert!(
        without.wait_log("its password (requirepass) goes in redis_sentinel_password_file="),
        "{}",
        without.error_log()
    );
    let u = ids.issue("read", 300);
    assert_eq!(
        get(without.port, &u).0,
        200,
        "no Sentinel answers: introspected"
    );
    assert!(
        !without.error_log().contains("(Sentinel"),
        "no primary was learnt:\n{}",
        without.error_log()
    );
    for n in [&with, &without] {
        assert_no_crash(n);
    }
}

/// Sentinels that name the primary by host name (`announce-hostnames yes`, as Kubernetes
/// charts set them up): the name is followed with the http block's resolver; without one, a
/// warning says what to add.
#[test]
fn a_primary_named_by_host_name_is_resolved() {
    let w = Watched::start_with(Setup {
        hostnames: true,
        ..Setup::default()
    });
    let dns = Dns::start([127, 0, 0, 1]);
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = KeyFile::new();
    let http = |resolver: &str| {
        format!(
            "{resolver}
             {}
             phantom_token_cache_zone jwt:10m redis=sentinels redis_sentinel={MASTER} redis_key={} redis_timeout=200ms;",
            w.upstream(),
            keys.path().display()
        )
    };
    let server = fleet_server(&ids, &echo, "");
    let port = w.primary.port;
    let resolver = format!("resolver 127.0.0.1:{} valid=1s ipv6=off;", dns.port);
    let with = Nginx::start_workers(2, &http(&resolver), &server, "");
    for line in [
        format!("is localhost:{port} (Sentinel, asked): resolving it"),
        format!("\"localhost\" resolves to 127.0.0.1:{port}"),
    ] {
        assert!(with.wait_log(&line), "{line}:\n{}", with.error_log());
    }
    let t = ids.issue("read", 300);
    assert_eq!(get(with.port, &t), (200, "MISS".into()));
    eventually("the entry is on the primary", || stored(&w.primary) == 1);
    assert_eq!(get(with.port, &t), (200, "HIT".into()));

    let without = Nginx::start_workers(1, &http(""), &server, "");
    let warning = "a host name: add a resolver to the http block to follow it";
    assert!(without.wait_log(warning), "{}", without.error_log());
    assert_eq!(get(without.port, &ids.issue("read", 300)).0, 200);
    for n in [&with, &without] {
        assert_no_crash(n);
    }
}

#[test]
fn sentinel_parameters_are_checked_by_nginx_t() {
    let keys = KeyFile::new();
    for (zone, want) in [
        (
            "redis_sentinel=",
            "invalid \"redis_sentinel=\" (the master name",
        ),
        (
            "redis_sentinel=a\u{7f}b",
            "invalid \"redis_sentinel=a\u{7f}b\" (the master name",
        ),
    ] {
        let (ok, out) = nginx_test_config(&fleet_http(6390, keys.path(), zone, ""), "");
        assert!(!ok, "{zone}: nginx -t passed");
        assert!(out.contains(want), "{zone}: {out}");
    }
    let (ok, out) = nginx_test_config(
        &fleet_http(6390, keys.path(), "redis_sentinel=mymaster", ""),
        "",
    );
    assert!(ok, "{out}");
    let pass = fresh_dir().join("pass");
    std::fs::write(&pass, "p").unwrap();
    for (zone, want) in [
        (
            format!("redis_sentinel_password_file={}", pass.display()),
            "\"redis_sentinel_password_file=\" needs \"redis_sentinel=\"".to_string(),
        ),
        (
            "redis_sentinel=m redis_sentinel_password_file=/nonexistent/pass".into(),
            "cannot read redis_sentinel_password_file \"/nonexistent/pass\"".into(),
        ),
        (
            "redis_sentinel=m redis_sentinel_password_file=".into(),
            "empty \"redis_sentinel_password_file=\"".into(),
        ),
    ] {
        let (ok, out) = nginx_test_config(&fleet_http(6390, keys.path(), &zone, ""), "");
        assert!(!ok, "{zone}: nginx -t passed");
        assert!(out.contains(&want), "{zone}: {out}");
    }
}
