//! The fleet cache tier: several nginx instances share introspection results through one
//! Redis (sealed values under HMAC'd key names), coalesce introspections fleet-wide, purge
//! fleet-wide, and never fail a request because of Redis.
//!
//! Every test has its own Redis, identity server, echo API and nginx instances, so the tests
//! run in parallel.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use phantom_core::fleet::keys::base64url;
use support::fleet::*;
use support::http::{curl_h2, request};
use support::redis::{Conn, Redis, Value};
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
        unsafe { libc::kill(pid as i32, 0) },
        -1,
        "dropped is killed"
    );
    assert!(Conn::open(port, Duration::from_millis(300)).is_err());
    drop(r);
}

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
        allowed_key_name(k) && k.len() == "pt:v1:t:".len() + 43,
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
        .filter(|k| k.starts_with("pt:v1:lk:"))
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
// Purge
// ---------------------------------------------------------------------------------------

#[test]
fn purge_by_token_reaches_every_instance_within_a_second() {
    let f = Fleet::start(2);
    let token = f.ids.issue("read", 300);
    let other = f.ids.issue("read", 300);
    for (i, t) in [&token, &other].into_iter().enumerate() {
        assert_eq!(get(f.port(0), t), (200, "MISS".into()));
        eventually("written to Redis", || f.token_keys().len() == i + 1);
        assert_eq!(get(f.port(1), t), (200, "HIT".into()));
    }
    f.ids.revoke(&token);
    // Still cached everywhere until purged.
    assert_eq!(get(f.port(0), &token), (200, "HIT".into()));
    assert_eq!(get(f.port(1), &token), (200, "HIT".into()));
    let before = f.ids.introspections();

    let r = purge(
        f.port(0),
        &format!("token={}&token_type_hint=access_token", form_encode(&token)),
    );
    let at = Instant::now();
    let (removed, redis_removed) = purge_ok(&r);
    assert_eq!(removed, 1, "{}", r.text());
    assert!(redis_removed >= 1, "{}", r.text());
    refused_everywhere_within_1s(&f, &token, at);
    assert!(f.ids.introspections() > before, "introspected again");
    // The purge stream of the zone carries the notification.
    assert_eq!(
        f.redis
            .cmd_str(&["TYPE", "pt:v1:purge:jwt"])
            .text()
            .as_deref(),
        Some("stream")
    );
    for i in 0..2 {
        assert_eq!(get(f.port(i), &other), (200, "HIT".into()), "untouched");
    }
    for n in &f.nodes {
        n.assert_clean_log();
    }
}

/// Caches every token on every instance (the first instance introspects).
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
fn purge_by_subject_removes_every_token_of_that_user_fleet_wide() {
    let f = Fleet::start(2);
    let alice = format!("alice smith+{}@example.com", random_hex(8));
    let mine = issue_with(&f.ids, 3, serde_json::json!({ "sub": alice }));
    let bobs = issue_with(&f.ids, 1, serde_json::json!({ "sub": "bob" }));
    cache_everywhere(&f, &mine);
    cache_everywhere(&f, &bobs);
    for t in &mine {
        f.ids.revoke(t);
    }
    let r = purge(f.port(1), &format!("sub={}", form_encode(&alice)));
    let at = Instant::now();
    let (removed, redis_removed) = purge_ok(&r);
    assert_eq!(removed, 3, "{}", r.text());
    assert!(redis_removed >= 3, "{}", r.text());
    for t in &mine {
        refused_everywhere_within_1s(&f, t, at);
    }
    for i in 0..2 {
        assert_eq!(get(f.port(i), &bobs[0]), (200, "HIT".into()), "other user");
    }
    for n in &f.nodes {
        n.assert_clean_log();
    }
}

#[test]
fn purge_by_client_id_removes_every_token_of_that_client_fleet_wide() {
    let f = Fleet::start(2);
    let client = format!("mobile-{}", random_hex(8));
    let theirs = issue_with(&f.ids, 2, serde_json::json!({ "client_id": client }));
    let others = issue_with(&f.ids, 1, serde_json::json!({}));
    cache_everywhere(&f, &theirs);
    cache_everywhere(&f, &others);
    for t in &theirs {
        f.ids.revoke(t);
    }
    let r = purge(f.port(0), &format!("client_id={client}"));
    let at = Instant::now();
    let (removed, redis_removed) = purge_ok(&r);
    assert_eq!(removed, 2, "{}", r.text());
    assert!(redis_removed >= 2, "{}", r.text());
    for t in &theirs {
        refused_everywhere_within_1s(&f, t, at);
    }
    for i in 0..2 {
        assert_eq!(
            get(f.port(i), &others[0]),
            (200, "HIT".into()),
            "client \"gateway\" is untouched"
        );
    }
    for n in &f.nodes {
        n.assert_clean_log();
    }
}

#[test]
fn purge_over_http2_reaches_every_instance() {
    let f = Fleet::start(2);
    let token = f.ids.issue("read", 300);
    cache_everywhere(&f, std::slice::from_ref(&token));
    f.ids.revoke(&token);
    let (status, head, body) = curl_h2(
        f.nodes[0].h2_port,
        "/purge",
        &[("Content-Type", FORM)],
        Some(&format!("token={token}")),
    );
    let at = Instant::now();
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(head.starts_with("HTTP/2"), "{head}");
    let j: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(j["removed"], 1, "{j}");
    assert_eq!(j["notified"], true, "{j}");
    assert!(j["redis_removed"].as_u64().unwrap_or(0) >= 1, "{j}");
    refused_everywhere_within_1s(&f, &token, at);
    // A bad purge over HTTP/2 is a 400 as well.
    let (status, _, body) = curl_h2(
        f.nodes[0].h2_port,
        "/purge",
        &[("Content-Type", FORM)],
        Some("token=a&sub=b"),
    );
    assert_eq!(status, 400, "{body}");
    for n in &f.nodes {
        n.assert_clean_log();
    }
}

#[test]
fn bad_purge_requests_are_400_invalid_request() {
    let f = Fleet::with(
        1,
        Opts {
            workers: 1,
            ..Opts::default()
        },
    );
    let port = f.port(0);
    let token = f.ids.issue("read", 300);
    assert_eq!(get(port, &token), (200, "MISS".into()));
    let long = format!("token={}", "a".repeat(9000));
    let cases: Vec<(&str, Response)> = vec![
        (
            "GET",
            // nginx logs the request line with any error, so a token in a query string would be
            // logged whatever the module does: a GET carries none here.
            request(port, "GET", "/purge", &[], None),
        ),
        ("no parameter", purge(port, "")),
        ("only a hint", purge(port, "token_type_hint=access_token")),
        (
            "two selectors",
            purge(port, &format!("token={token}&sub=x")),
        ),
        ("sub and client_id", purge(port, "sub=x&client_id=y")),
        (
            "a selector twice",
            purge(port, &format!("token={token}&token=b")),
        ),
        (
            "unknown parameter",
            purge(port, &format!("token={token}&foo=bar")),
        ),
        (
            "bad content type",
            request(
                port,
                "POST",
                "/purge",
                &[("Content-Type", "text/plain")],
                Some(format!("token={token}").as_bytes()),
            ),
        ),
        (
            "JSON content type",
            request(
                port,
                "POST",
                "/purge",
                &[("Content-Type", "application/json")],
                Some(format!("{{\"token\":\"{token}\"}}").as_bytes()),
            ),
        ),
        (
            "no content type",
            request(
                port,
                "POST",
                "/purge",
                &[],
                Some(format!("token={token}").as_bytes()),
            ),
        ),
        ("body over 8 KiB", purge(port, &long)),
        ("bad percent-encoding", purge(port, "token=%zz")),
        ("truncated percent-encoding", purge(port, "token=ab%4")),
    ];
    for (what, r) in &cases {
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}: {:?}",
            r.headers
        );
        let j = r.json();
        assert_eq!(j["error"], "invalid_request", "{what}: {j}");
        assert!(
            j["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{what}: {j}"
        );
        assert!(!r.text().contains(&token), "{what}: the token is echoed");
    }
    // None of them purged anything.
    assert_eq!(get(port, &token), (200, "HIT".into()));
    // A well-formed purge of an unknown token removes nothing and succeeds.
    let r = purge(port, "token=unknown-token&token_type_hint=access_token");
    assert_eq!(purge_ok(&r), (0, 0), "{}", r.text());
    let log = f.nodes[0].error_log();
    assert!(!log.contains(&token), "the token is not logged");
    f.nodes[0].assert_clean_log();
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

// ---------------------------------------------------------------------------------------
// Confidentiality
// ---------------------------------------------------------------------------------------

#[test]
fn redis_never_sees_a_token_a_jwt_a_subject_or_a_client_id() {
    let f = Fleet::start(2);
    let mon = f.redis.monitor();
    let sub = format!("subject-{}", random_hex(12));
    let client = format!("client-{}", random_hex(12));
    let claims = serde_json::json!({ "sub": sub, "client_id": client });
    let tokens = issue_with(&f.ids, 6, claims);
    cache_everywhere(&f, &tokens);
    // An unknown token (an inactive result) and the three kinds of purge.
    assert_eq!(get(f.port(0), "unknown-opaque-token-value").0, 401);
    assert_eq!(get(f.port(1), "unknown-opaque-token-value").0, 401);
    purge_ok(&purge(f.port(0), &format!("token={}", tokens[5])));
    purge_ok(&purge(f.port(1), &format!("sub={sub}")));
    purge_ok(&purge(f.port(0), &format!("client_id={client}")));
    // More traffic after the purges (re-introspections and writes).
    let more = issue_with(
        &f.ids,
        2,
        serde_json::json!({ "sub": sub, "client_id": client }),
    );
    cache_everywhere(&f, &more);
    std::thread::sleep(Duration::from_millis(300));

    let mut secrets: Vec<(String, String)> = Vec::new();
    for t in tokens.iter().chain(&more) {
        secrets.push(("opaque token".into(), t.clone()));
    }
    secrets.push(("unknown token".into(), "unknown-opaque-token-value".into()));
    secrets.push(("sub".into(), sub.clone()));
    secrets.push(("client_id".into(), client.clone()));
    let seen = f.echo.all();
    assert!(seen.len() >= 16);
    for r in &seen {
        let jwt = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap()
            .to_string();
        let claims = devsvr::jwt_claims(&jwt).expect("a JWT upstream");
        assert_eq!(claims["sub"], sub.as_str());
        for seg in jwt.split('.') {
            secrets.push(("JWT segment".into(), seg.to_string()));
        }
        secrets.push(("JWT".into(), jwt));
    }

    let dump = f.redis.dump_all();
    assert!(!dump.is_empty());
    let text = mon.text();
    assert!(text.contains("\"SET\""), "MONITOR saw no SET: {text}");
    drop(mon);
    for (key, _) in &dump {
        assert!(allowed_key_name(key), "key name {key:?}");
    }
    assert!(
        dump.iter().any(|(k, _)| k.starts_with("pt:v1:t:")),
        "{dump:?}"
    );
    for (what, secret) in &secrets {
        for (key, content) in &dump {
            assert!(
                !contains(key.as_bytes(), secret.as_bytes()),
                "{what} in the key name {key}"
            );
            assert!(
                !contains(content, secret.as_bytes()),
                "{what} in the value of {key}"
            );
        }
        assert!(!text.contains(secret.as_str()), "{what} in MONITOR output");
    }
    for (key, content) in &dump {
        if let Some(found) = has_json_base64(content) {
            panic!("base64 JSON ({found}) in the value of {key}");
        }
    }
    if let Some(found) = has_json_base64(text.as_bytes()) {
        panic!("base64 JSON ({found}) in MONITOR output");
    }
    for n in &f.nodes {
        n.assert_clean_log();
        let log = n.error_log();
        for (what, secret) in &secrets {
            assert!(!log.contains(secret.as_str()), "{what} in the error log");
        }
    }
}

#[test]
fn values_sealed_under_another_key_file_are_a_miss() {
    let f = Fleet::with(
        1,
        Opts {
            workers: 1,
            ..Opts::default()
        },
    );
    let one = Opts {
        workers: 1,
        ..Opts::default()
    };
    let same_keys = f.instance(&f.keys, one);
    let other_seal_keys = f.keys.same_names_other_seal();
    let other_seal = f.instance(&other_seal_keys, one);
    let other_fleet_keys = KeyFile::new();
    let other_fleet = f.instance(&other_fleet_keys, one);

    let token = f.ids.issue("read", 300);
    assert_eq!(get(f.port(0), &token), (200, "MISS".into()));
    assert_eq!(f.ids.introspections(), 1);
    eventually("written to Redis", || f.token_keys().len() == 1);
    let keys = f.token_keys();

    // Tampered: every byte flipped, same TTL. An instance with the right keys misses.
    let value = f.redis.get(&keys[0]).unwrap();
    let flipped: Vec<u8> = value.iter().map(|b| b ^ 0xff).collect();
    assert_eq!(
        f.redis
            .cmd(&[b"SET", keys[0].as_bytes(), &flipped, b"KEEPTTL"]),
        Value::Ok("OK".into())
    );
    assert_eq!(get(same_keys.port, &token), (200, "MISS".into()));
    assert_eq!(f.ids.introspections(), 2, "a tampered value is a miss");

    // Same key names, another seal key under the same kid: whatever Redis holds for the
    // token now (sealed with the fleet's key, or the tampered value) is a miss.
    assert_eq!(get(other_seal.port, &token), (200, "MISS".into()));
    assert_eq!(f.ids.introspections(), 3);
    // ...and what it seals is a miss for the fleet's key.
    let other = f.ids.issue("read", 300);
    assert_eq!(get(other_seal.port, &other), (200, "MISS".into()));
    assert_eq!(f.ids.introspections(), 4);
    eventually("written to Redis", || f.token_keys().len() == 2);
    assert_eq!(get(same_keys.port, &other), (200, "MISS".into()));
    assert_eq!(f.ids.introspections(), 5);

    // Another name key: other key names entirely.
    assert_eq!(get(other_fleet.port, &token), (200, "MISS".into()));
    assert_eq!(f.ids.introspections(), 6);
    eventually("written under another name", || f.token_keys().len() == 3);

    for n in f
        .nodes
        .iter()
        .chain([&same_keys, &other_seal, &other_fleet])
    {
        n.assert_clean_log();
    }
}

// ---------------------------------------------------------------------------------------
// Redis failures under load
// ---------------------------------------------------------------------------------------

const LOAD_SECONDS: u64 = 5;

/// wrk on one instance: half the requests with a few hot tokens, half with cold tokens in
/// turn (each a Redis lookup and write, and an introspection unless another instance was
/// first). Prints `STATUS 200=<n> other=<n> p99us=<n> maxus=<n>`.
fn wrk_on(
    port: u16,
    dir: &Path,
    hot: &[String],
    cold: &[String],
) -> std::thread::JoinHandle<String> {
    fs::write(dir.join("hot.tokens"), hot.join("\n")).unwrap();
    fs::write(dir.join("cold.tokens"), cold.join("\n")).unwrap();
    let script = format!(
        r#"local hot, cold = {{}}, {{}}
for line in io.lines("{hot}") do hot[#hot + 1] = line end
for line in io.lines("{cold}") do cold[#cold + 1] = line end
local n = 0
request = function()
  n = n + 1
  local t
  if n % 2 == 0 then t = hot[math.random(#hot)] else t = cold[math.floor(n / 2) % #cold + 1] end
  return wrk.format("GET", "/", {{ Authorization = "Bearer " .. t }})
end
s200, sother = 0, 0
response = function(status)
  if status == 200 then s200 = s200 + 1 else sother = sother + 1 end
end
local threads = {{}}
setup = function(t) table.insert(threads, t) end
done = function(summary, latency)
  local a, b = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("s200"); b = b + t:get("sother") end
  io.write(string.format("STATUS 200=%d other=%d errors=%d p99us=%d maxus=%d\n", a, b,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(99), latency.max))
end
"#,
        hot = dir.join("hot.tokens").display(),
        cold = dir.join("cold.tokens").display(),
    );
    let path = dir.join("fleet.lua");
    fs::write(&path, script).unwrap();
    std::thread::spawn(move || {
        let out = Command::new("wrk")
            .args([
                "-t1",
                "-c6",
                "--timeout",
                "5s",
                &format!("-d{LOAD_SECONDS}s"),
                "-s",
            ])
            .arg(path)
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .expect("wrk (scripts/deps.sh installs it)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn count(out: &str, key: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in wrk output:\n{out}"))
}

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
        .map(|n| wrk_on(n.port, &n.dir, &hot, &cold))
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
// Configuration errors
// ---------------------------------------------------------------------------------------

#[test]
fn fleet_configuration_errors_fail_nginx_t() {
    let keys = KeyFile::new();
    let k = keys.path().display().to_string();
    let redis_port = free_port();
    let upstream = format!("upstream phantom_redis {{ server 127.0.0.1:{redis_port}; }}");
    let zone = |params: &str| format!("{upstream} phantom_token_cache_zone jwt:10m {params};");
    let purge_loc = |zone: &str| format!("location = /purge {{ phantom_token_purge {zone}; }}");
    let api = "location / { phantom_token on; phantom_token_introspection_endpoint /_i;
        phantom_token_cache jwt; proxy_pass http://127.0.0.1:9; }
        location = /_i { internal; proxy_pass http://127.0.0.1:9; }";

    // What must pass, so that the failures below are about the fleet tier.
    let good = [
        (
            "upstream name",
            zone(&format!("redis=phantom_redis redis_key={k}")),
            String::new(),
        ),
        (
            "address",
            zone(&format!(
                "redis=127.0.0.1:{redis_port} redis_key={k} redis_timeout=200ms redis_lock=3s redis_prefix=pt:v1:"
            )),
            String::new(),
        ),
        (
            "purge and max_age",
            zone(&format!(
                "redis=phantom_redis redis_key={k}"
            )) + "phantom_token_cache_max_age 30s;",
            purge_loc("jwt") + "location /x { phantom_token_cache_max_age 0; }",
        ),
    ];
    for (what, http, server) in &good {
        let (ok, out) = nginx_test_config(http, &format!("{api} {server}"));
        assert!(ok, "{what} must pass:\n{http}\n{out}");
    }

    let missing = format!("{}/nope.keys", std::env::temp_dir().display());
    let malformed = KeyFile::from_text("name v1 tooshort\nseal k1 AAAA\n", [0; 32]);
    let same = base64url(&random_bytes::<32>());
    let reused = KeyFile::from_text(&format!("name v1 {same}\nseal k1 {same}\n"), [0; 32]);
    let equal = base64url(&[7u8; 32]);
    let placeholder = KeyFile::from_text(
        &format!(
            "name v1 {equal}\nseal k1 {}\n",
            base64url(&random_bytes::<32>())
        ),
        [0; 32],
    );
    let bad: [(&str, String, &str, &[&str]); 9] = [
        (
            "redis= without redis_key=",
            zone("redis=phantom_redis"),
            "",
            &["redis_key"],
        ),
        (
            "a missing key file",
            zone(&format!("redis=phantom_redis redis_key={missing}")),
            "",
            &["nope.keys"],
        ),
        (
            "a malformed key file",
            zone(&format!(
                "redis=phantom_redis redis_key={}",
                malformed.path().display()
            )),
            "",
            &["line", "fleet.keys"],
        ),
        (
            "the same key twice",
            zone(&format!(
                "redis=phantom_redis redis_key={}",
                reused.path().display()
            )),
            "",
            &["line", "fleet.keys"],
        ),
        (
            "a placeholder key",
            zone(&format!(
                "redis=phantom_redis redis_key={}",
                placeholder.path().display()
            )),
            "",
            &["line", "fleet.keys"],
        ),
        (
            "an unknown upstream",
            zone(&format!("redis=no_such_upstream redis_key={k}")),
            "",
            &["no_such_upstream"],
        ),
        (
            "a bad redis_timeout=",
            zone(&format!(
                "redis=phantom_redis redis_key={k} redis_timeout=soon"
            )),
            "",
            &["redis_timeout"],
        ),
        (
            "purge of an unknown zone",
            zone(&format!("redis=phantom_redis redis_key={k}")),
            "location = /purge { phantom_token_purge nope; }",
            &["nope"],
        ),
        (
            "a bad max_age",
            zone(&format!("redis=phantom_redis redis_key={k}")),
            "location /y { phantom_token_cache_max_age forever; }",
            &["phantom_token_cache_max_age"],
        ),
    ];
    for (what, http, server, mention) in &bad {
        let (ok, out) = nginx_test_config(http, &format!("{api} {server}"));
        assert!(!ok, "{what} must fail nginx -t:\n{out}");
        assert!(out.contains("[emerg]"), "{what}: {out}");
        for unexpected in ["unknown directive", "unknown parameter"] {
            assert!(
                !out.contains(unexpected),
                "{what}: fails for another reason: {out}"
            );
        }
        assert!(
            mention.iter().any(|m| out.contains(m)),
            "{what}: should mention one of {mention:?}: {out}"
        );
    }
    // Errors never show a key.
    let (_, out) = nginx_test_config(
        &zone(&format!(
            "redis=phantom_redis redis_key={}",
            reused.path().display()
        )),
        api,
    );
    assert!(!out.contains(&same), "a key in the error: {out}");
}

// ---------------------------------------------------------------------------------------
// Worker generations
// ---------------------------------------------------------------------------------------

#[test]
fn reload_keeps_the_fleet_working_and_old_workers_exit_cleanly() {
    let f = Fleet::start(2);
    let (a, b) = (f.port(0), f.port(1));
    let token = f.ids.issue("read", 300);
    assert_eq!(get(a, &token), (200, "MISS".into()));
    f.nodes[1].reload();
    // The new generation of B reads Redis and follows the purge stream.
    assert_eq!(get(b, &token), (200, "HIT".into()));
    assert_eq!(f.ids.introspections(), 1);
    f.ids.revoke(&token);
    let r = purge(a, &format!("token={}", form_encode(&token)));
    purge_ok(&r);
    refused_everywhere_within_1s(&f, &token, Instant::now());
    // The old workers closed their Redis connections: no "open socket ... left" alert, and
    // they exited (the stream reader's blocking read does not hold them).
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.nodes[1].error_log().matches("exited with code 0").count() < 2 {
        assert!(Instant::now() < deadline, "{}", f.nodes[1].error_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    f.nodes[1].assert_clean_log();
}

// ---------------------------------------------------------------------------------------
// Redis credentials and the fleet lock
// ---------------------------------------------------------------------------------------

/// A key file with Redis credentials, and the same `name` key as `keys`.
fn keys_with_credentials(keys: &KeyFile, user: &str, password: &str) -> KeyFile {
    let text = format!(
        "name  v1 {}\nseal  k1 {}\nredis_user {user}\nredis_password {password}\n",
        base64url(&keys.name),
        base64url(&random_bytes::<32>())
    );
    KeyFile::from_text(&text, keys.name)
}

#[test]
fn an_acl_user_from_the_key_file_authenticates_and_a_wrong_password_fails_no_request() {
    let mut f = Fleet::with(0, Opts::default());
    f.redis.cmd_str(&[
        "ACL",
        "SETUSER",
        "phantom",
        "on",
        ">s3cret-pw",
        "~pt:*",
        "+get",
        "+set",
        "+del",
        "+unlink",
        "+sadd",
        "+pexpire",
        "+eval",
        "+xadd",
        "+xread",
        "+smembers",
    ]);
    let good = keys_with_credentials(&f.keys, "phantom", "s3cret-pw");
    let bad = keys_with_credentials(&f.keys, "phantom", "wrong-pw");
    let a = f.instance(&good, Opts::default());
    let b = f.instance(&bad, Opts::default());
    let token = f.ids.issue("read", 300);
    assert_eq!(get(a.port, &token), (200, "MISS".into()));
    eventually("the entry written as user phantom", || {
        f.token_keys().len() == 1
    });
    // The wrong password: Redis is not used, and no request fails.
    for _ in 0..5 {
        assert_eq!(get(b.port, &f.ids.issue("read", 300)).0, 200);
    }
    assert_eq!(f.token_keys().len(), 1, "nothing written without a login");
    let log = b.error_log();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(!log.contains("wrong-pw") && !a.error_log().contains("s3cret-pw"));
    assert!(
        log.matches("redis").count() < 5,
        "one line per change:\n{log}"
    );
    f.nodes.push(a);
    f.nodes.push(b);
}

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
    let lock = phantom_core::fleet::keys::redis_key(
        &f.keys.name,
        "pt:v1:",
        "lk",
        &context,
        token.as_bytes(),
    );
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
fn a_purge_by_subject_walks_a_large_zone_in_steps_and_misses_none() {
    let f = Fleet::with(
        1,
        Opts {
            workers: 1,
            ..Opts::default()
        },
    );
    let port = f.port(0);
    // More entries than one step of the walk (256), interleaved in digest order.
    let carol = issue_with(&f.ids, 400, serde_json::json!({ "sub": "carol" }));
    let dave = issue_with(&f.ids, 400, serde_json::json!({ "sub": "dave" }));
    for t in carol.iter().chain(&dave) {
        assert_eq!(get(port, t).0, 200);
    }
    let r = purge(port, "sub=carol");
    let (removed, redis_removed) = purge_ok(&r);
    assert_eq!((removed, redis_removed), (400, 400), "{}", r.text());
    let before = f.ids.introspections();
    for t in dave.iter().step_by(20) {
        assert_eq!(get(port, t), (200, "HIT".into()), "another subject stays");
    }
    for t in carol.iter().step_by(20) {
        assert_eq!(get(port, t), (200, "MISS".into()), "purged");
    }
    assert_eq!(f.ids.introspections() - before, 20);
    f.nodes[0].assert_clean_log();
}

#[test]
fn seal_key_rotation_reads_old_values_with_the_new_key_first() {
    let f = Fleet::with(0, Opts::default());
    let old = random_bytes::<32>();
    let new = random_bytes::<32>();
    let text = |lines: &str| format!("name  v1 {}\n{lines}", base64url(&f.keys.name));
    // Step 1 everywhere: the old key seals, the new one is known. Step 2: the new key seals.
    let step1 = KeyFile::from_text(
        &text(&format!(
            "seal k1 {}\nseal k2 {}\n",
            base64url(&old),
            base64url(&new)
        )),
        f.keys.name,
    );
    let step2 = KeyFile::from_text(
        &text(&format!(
            "seal k2 {}\nseal k1 {}\n",
            base64url(&new),
            base64url(&old)
        )),
        f.keys.name,
    );
    let a = f.instance(&step1, Opts::default());
    let b = f.instance(&step2, Opts::default());
    let sealed_old = f.ids.issue("read", 300);
    assert_eq!(get(a.port, &sealed_old), (200, "MISS".into()));
    eventually("sealed with k1", || f.token_keys().len() == 1);
    assert_eq!(
        get(b.port, &sealed_old),
        (200, "HIT".into()),
        "k1 still opens"
    );
    let sealed_new = f.ids.issue("read", 300);
    assert_eq!(get(b.port, &sealed_new), (200, "MISS".into()));
    eventually("sealed with k2", || f.token_keys().len() == 2);
    assert_eq!(
        get(a.port, &sealed_new),
        (200, "HIT".into()),
        "k2 known in step 1"
    );
    assert_eq!(f.ids.introspections(), 2);
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
