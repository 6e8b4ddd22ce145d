//! The fleet key file: Redis never sees a token, a JWT, a subject or a client id (HMAC'd key
//! names, sealed values); values sealed under other keys are a miss; seal keys rotate; Redis
//! ACL credentials come from the key file; fleet configuration errors fail `nginx -t`; and a
//! reload keeps the fleet working.
//!
//! Every test has its own Redis, identity server, echo API and nginx instances, so the tests
//! run in parallel.

mod support;

use std::time::{Duration, Instant};

use phantom_core::fleet::keys::base64url;
use support::fleet::*;
use support::redis::Value;
use support::*;

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
    // Each instance applies the other's purges when their notices arrive (within a second):
    // a late one would take the tokens cached below too, as they have the same subject.
    std::thread::sleep(Duration::from_millis(1200));
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
    assert!(
        mon.wait_for("\"SET\""),
        "MONITOR saw no SET: {}",
        mon.text()
    );
    let text = mon.text();
    drop(mon);
    for (key, _) in &dump {
        assert!(allowed_key_name(key), "key name {key:?}");
    }
    assert!(
        dump.iter().any(|(k, _)| k.starts_with("pt:v2:t:")),
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
                "redis=127.0.0.1:{redis_port} redis_key={k} redis_timeout=200ms redis_lock=3s redis_prefix=pt:v2:"
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
    let bad: [(&str, String, &str, &[&str]); 11] = [
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
        // A brace would move the hash tags that keep a token's keys in one cluster slot.
        (
            "a redis_prefix= with a hash tag",
            zone(&format!(
                "redis=phantom_redis redis_key={k} \"redis_prefix=pt:{{v2}}:\""
            )),
            "",
            &["\"redis_prefix=pt:{v2}:\" (no \"{\" or \"}\""],
        ),
        (
            "a redis_prefix= with a closing brace",
            zone(&format!(
                "redis=phantom_redis redis_key={k} \"redis_prefix=pt}}v2:\""
            )),
            "",
            &["\"redis_prefix=pt}v2:\""],
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
// Redis credentials and seal key rotation
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
    // The ACL that docs/fleet.md gives, word for word (with this test's password).
    let docs = std::fs::read_to_string("docs/fleet.md").unwrap();
    let acl = docs
        .lines()
        .find(|l| l.starts_with("ACL SETUSER phantom "))
        .expect("the ACL in docs/fleet.md")
        .replace(">pw ", ">s3cret-pw ");
    let words: Vec<&str> = acl.split_whitespace().collect();
    assert_eq!(f.redis.cmd_str(&words), Value::Ok("OK".into()), "{acl}");
    let good = keys_with_credentials(&f.keys, "phantom", "s3cret-pw");
    let bad = keys_with_credentials(&f.keys, "phantom", "wrong-pw");
    let a = f.instance(&good, Opts::default());
    let b = f.instance(&bad, Opts::default());
    let claims = serde_json::json!({ "sub": "acl-sub", "client_id": "acl-client" });
    let token = issue_with(&f.ids, 1, claims.clone()).remove(0);
    assert_eq!(get(a.port, &token), (200, "MISS".into()));
    eventually("the entry written as user phantom", || {
        f.token_keys().len() == 1
    });
    // The index sets too: the script that adds to them runs with the user's permissions.
    eventually("the index sets written as user phantom, with a TTL", || {
        let sets: Vec<String> = f
            .redis
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("pt:v2:sub:") || k.starts_with("pt:v2:cid:"))
            .collect();
        sets.len() == 2 && sets.iter().all(|k| f.redis.pttl(k) > 0)
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
    // Purges of each kind as user phantom: the entry goes, the notice is appended.
    let layout = phantom_core::fleet::layout::Layout::new(&f.keys.name, "pt:v2:");
    let context = phantom_core::digest::context(b"/_introspect", "jwt");
    for selector in ["sub=acl-sub", "client_id=acl-client", "token="] {
        let t = issue_with(&f.ids, 1, claims.clone()).remove(0);
        let entry = layout.entry(&context, t.as_bytes());
        assert_eq!(get(a.port, &t), (200, "MISS".into()));
        eventually("written", || f.redis.pttl(&entry) > 0);
        let body = match selector {
            "token=" => format!("token={t}"),
            other => other.to_string(),
        };
        let r = purge(a.port, &body);
        let (_, redis_removed) = purge_ok(&r);
        assert!(redis_removed >= 1, "{selector}: {}", r.text());
        assert_eq!(f.redis.pttl(&entry), -2, "{selector}");
    }
    assert!(!a.error_log().contains("NOPERM"), "{}", a.error_log());
    f.nodes.push(a);
    f.nodes.push(b);
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
