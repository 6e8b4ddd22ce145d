//! Redis failing under the fleet never fails a request: stopped, paused past the timeout and
//! out of memory under load, a lock holder that died, a dead primary with a backup server; and
//! the Redis harness these tests rely on (start, pause, stop, restart).
//!
//! Every test has its own Redis, identity server, echo API and nginx instances, so the tests
//! run in parallel.

mod support;

use std::time::{Duration, Instant};

use support::fleet::*;
use support::redis::{Conn, Redis, Value};
use support::wrk::{count, wrk_on};
use support::*;

// ---------------------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------------------

#[test]
fn redis_harness_starts_answers_and_stops() {
    let mut r = Redis::start();
    let other = Redis::start();
    assert_ne!(r.port, 6379);
    assert_ne!(r.port, other.port);
    assert_eq!(r.cmd_str(&["PING"]), Value::Ok("PONG".into()));
    drop(other);

    let mon = r.monitor();
    assert_eq!(
        r.cmd_str(&["SET", "a", "1", "PX", "60000"]),
        Value::Ok("OK".into())
    );
    assert_eq!(r.get("a"), Some(b"1".to_vec()));
    assert!((1..=60000).contains(&r.pttl("a")), "{}", r.pttl("a"));
    assert_eq!(r.get("missing"), None);
    let binary: &[u8] = b"\0\r\n$3\r\n\xff*";
    assert_eq!(r.cmd(&[b"SET", b"bin", binary]), Value::Ok("OK".into()));
    assert_eq!(r.get("bin").as_deref(), Some(binary));
    assert_eq!(r.cmd_str(&["SADD", "s", "x", "y"]), Value::Int(2));
    let id = r.cmd_str(&["XADD", "st", "*", "f", "v"]);
    assert!(matches!(id, Value::Bulk(_)), "{id:?}");
    assert!(matches!(r.cmd_str(&["NOSUCHCOMMAND"]), Value::Err(e) if e.starts_with("ERR")));
    assert_eq!(
        r.cmd_str(&["MGET", "a", "missing"]).array().unwrap().len(),
        2
    );
    assert_eq!(r.keys(), ["a", "bin", "s", "st"]);

    let dump = r.dump_all();
    let find = |k: &str| dump.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(find("a"), b"1");
    assert_eq!(find("bin"), binary);
    let s = String::from_utf8(find("s")).unwrap();
    assert!(s == "x\ny" || s == "y\nx", "{s}");
    let st = String::from_utf8(find("st")).unwrap();
    assert!(st.ends_with("\nf\nv"), "{st}");

    // SCAN follows the cursor past the first batch.
    assert_eq!(
        r.cmd_str(&["DEBUG", "POPULATE", "2500", "many"]),
        Value::Ok("OK".into())
    );
    assert_eq!(r.keys().len(), 2504);
    assert_eq!(r.cmd_str(&["FLUSHALL"]), Value::Ok("OK".into()));
    assert!(r.keys().is_empty());

    assert!(mon.wait_for("\"SADD\" \"s\" \"x\" \"y\""), "{}", mon.text());
    assert!(
        mon.text().contains("\"SET\" \"a\" \"1\" \"PX\" \"60000\""),
        "{}",
        mon.text()
    );
    drop(mon);

    // Paused: the kernel accepts, nothing answers; then it answers again.
    r.pause();
    let mut c = Conn::open(r.port, Duration::from_millis(300)).unwrap();
    assert!(c.cmd(&[b"PING"]).is_err(), "a paused server answered");
    r.resume();
    assert_eq!(r.cmd_str(&["PING"]), Value::Ok("PONG".into()));

    // Stopped: refused; restarted on the same port: empty.
    let port = r.port;
    r.cmd_str(&["SET", "kept", "no"]);
    let pid = r.pid().unwrap();
    r.stop();
    assert!(r.pid().is_none());
    // SAFETY: probing a pid we reaped; ESRCH expected.
    assert_eq!(
        // SAFETY: kill has no memory preconditions; the pid is ours.
        unsafe { libc::kill(pid as i32, 0) },
        -1,
        "killed and reaped"
    );
    assert!(Conn::open(port, Duration::from_millis(300)).is_err());
    assert!(r.try_cmd(&[b"PING"]).is_err());
    r.restart();
    assert_eq!(r.port, port);
    assert_eq!(r.cmd_str(&["PING"]), Value::Ok("PONG".into()));
    assert!(r.keys().is_empty(), "no persistence");
    assert!(!r.dir().join("dump.rdb").exists());
    r.stop();

    let again = Redis::start_on(port);
    assert_eq!(again.port, port);
    assert_eq!(again.cmd_str(&["PING"]), Value::Ok("PONG".into()));
    let pid = again.pid().unwrap();
    drop(again);
    // SAFETY: as above.
    assert_eq!(
        // SAFETY: kill has no memory preconditions; the pid is ours.
        unsafe { libc::kill(pid as i32, 0) },
        -1,
        "dropped is killed"
    );
    assert!(Conn::open(port, Duration::from_millis(300)).is_err());
    drop(r);
}

// ---------------------------------------------------------------------------------------
// Redis failures under load
// ---------------------------------------------------------------------------------------

const LOAD_SECONDS: u64 = 5;

/// Two instances under wrk; `fault` breaks Redis 1.5 s in and repairs it before returning.
/// Every response must be a 200, the logs stay quiet, and Redis is written again afterwards.
fn survives_under_load(name: &str, fault: impl FnOnce(&mut Fleet)) {
    let mut f = Fleet::start(2);
    let hot: Vec<String> = (0..50).map(|_| f.ids.issue("read", 300)).collect();
    let cold: Vec<String> = (0..40_000).map(|_| f.ids.issue("read", 300)).collect();
    for t in &hot[..10] {
        assert_eq!(get(f.port(0), t).0, 200);
    }
    let runs: Vec<_> = f
        .nodes
        .iter()
        .map(|n| wrk_on(n.port, &n.dir, &hot, &cold, LOAD_SECONDS))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    fault(&mut f);
    eprintln!("{name}: Redis repaired after {:?}", started.elapsed());
    let outs: Vec<String> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    for (i, out) in outs.iter().enumerate() {
        eprintln!(
            "{name}: instance {i}: {} x 200, {} other, p99 {:.1} ms, max {:.1} ms\n{out}",
            count(out, "200="),
            count(out, "other="),
            count(out, "p99us=") as f64 / 1000.0,
            count(out, "maxus=") as f64 / 1000.0,
        );
        assert_eq!(count(out, "other="), 0, "{name}: instance {i}: {out}");
        assert_eq!(count(out, "errors="), 0, "{name}: instance {i}: {out}");
        assert!(
            count(out, "200=") > 500,
            "{name}: too little traffic: {out}"
        );
    }
    eprintln!(
        "{name}: {} introspections, {} token keys in Redis",
        f.ids.introspections(),
        f.token_keys().len()
    );
    for (i, n) in f.nodes.iter().enumerate() {
        assert_no_crash(n);
        let log = n.error_log();
        let redis_lines: Vec<&str> = log
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("redis"))
            .collect();
        assert!(
            redis_lines.len() < 20,
            "{name}: instance {i} logged {} Redis lines:\n{}",
            redis_lines.len(),
            redis_lines.join("\n")
        );
    }
    // Back to normal: a new token is written to Redis again.
    let before = f.token_keys();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = f.ids.issue("read", 300);
        assert_eq!(get(f.port(0), &t).0, 200);
        assert_eq!(get(f.port(1), &t).0, 200);
        if f.token_keys().iter().any(|k| !before.contains(k)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no new key in Redis 5 s after the repair: {:?}",
            f.redis.keys().len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn redis_stopped_and_restarted_under_load_fails_no_request() {
    survives_under_load("restart", |f| {
        f.redis.stop();
        std::thread::sleep(Duration::from_millis(1500));
        f.redis.restart();
    });
}

#[test]
fn redis_paused_beyond_the_timeout_under_load_fails_no_request() {
    survives_under_load("pause", |f| {
        f.redis.pause();
        std::thread::sleep(Duration::from_millis(1500));
        f.redis.resume();
    });
}

#[test]
fn redis_out_of_memory_under_load_fails_no_request() {
    survives_under_load("full", |f| {
        let r = &f.redis;
        assert_eq!(
            r.cmd_str(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]),
            Value::Ok("OK".into())
        );
        assert_eq!(
            r.cmd_str(&["CONFIG", "SET", "maxmemory", "1"]),
            Value::Ok("OK".into())
        );
        let refused = r.cmd_str(&["SET", "probe-full", "x"]);
        assert!(
            matches!(&refused, Value::Err(e) if e.starts_with("OOM")),
            "{refused:?}"
        );
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            r.cmd_str(&["CONFIG", "SET", "maxmemory", "0"]),
            Value::Ok("OK".into())
        );
    });
}

// ---------------------------------------------------------------------------------------
// The fleet lock and failover
// ---------------------------------------------------------------------------------------

#[test]
fn a_lock_holder_that_died_delays_others_by_at_most_the_lock_time() {
    let f = Fleet::with(
        1,
        Opts {
            zone: "redis_lock=1s",
            ..Opts::default()
        },
    );
    let token = f.ids.issue("read", 300);
    // Another instance took the lock for this token and died: nobody releases it.
    let context = phantom_core::digest::context(b"/_introspect", "jwt");
    let lock = phantom_core::fleet::layout::Layout::new(&f.keys.name, "pt:v2:")
        .lock(&context, token.as_bytes());
    f.redis
        .cmd(&[b"SET", lock.as_bytes(), b"dead-holder", b"PX", b"1000"]);
    let start = Instant::now();
    assert_eq!(get(f.port(0), &token), (200, "MISS".into()));
    let waited = start.elapsed();
    eprintln!("waited {waited:?} for a dead lock holder (redis_lock=1s)");
    assert!(
        waited >= Duration::from_millis(800),
        "{waited:?}: the lock was ignored"
    );
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    assert_eq!(f.ids.introspections(), 1);
}

#[test]
fn a_dead_primary_fails_over_to_the_backup_server() {
    let f = Fleet::with(0, Opts::default());
    let dead = free_port();
    let http = format!(
        "upstream phantom_redis {{ server 127.0.0.1:{dead}; server 127.0.0.1:{} backup; }}
         phantom_token_cache_zone jwt:10m redis=phantom_redis redis_key={} redis_timeout=200ms;",
        f.redis.port,
        f.keys.path().display()
    );
    let n = Nginx::start_workers(1, &http, &fleet_server(&f.ids, &f.echo, ""), "");
    for _ in 0..10 {
        assert_eq!(get(n.port, &f.ids.issue("read", 300)).0, 200);
    }
    // Once the breaker lets it try again, the next connection goes to the backup.
    eventually("entries written through the backup", || {
        assert_eq!(get(n.port, &f.ids.issue("read", 300)).0, 200);
        !f.token_keys().is_empty()
    });
    assert!(!n.error_log().contains("[alert]"));
}
