//! Credentials that expire (tokens a sidecar refreshes: AWS IAM, Microsoft Entra, GCP IAM):
//! `redis_password_file` is read again for every new connection, and
//! `redis_max_connection_age` replaces connections before their login expires.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use support::fleet::*;
use support::redis::Redis;
use support::*;

/// A key file whose `redis_user` takes its password from the zone's file.
fn keys_for_user(user: &str) -> KeyFile {
    let base = KeyFile::new();
    let text = fs::read_to_string(base.path()).unwrap() + &format!("redis_user {user}\n");
    KeyFile::from_text(&text, base.name)
}

fn entries(r: &Redis) -> usize {
    r.keys()
        .iter()
        .filter(|k| k.starts_with("pt:v2:t:"))
        .count()
}

fn gateway(ids: &IdServer, echo: &EchoServer, port: u16, keys: &KeyFile, zone: &str) -> Nginx {
    Nginx::start_workers(
        1,
        &fleet_http(port, keys.path(), zone, ""),
        &fleet_server(ids, echo, ""),
        "",
    )
}

#[test]
fn a_rotated_password_file_is_used_by_the_next_connections_with_no_failed_request() {
    let redis = Redis::start();
    redis.cmd_str(&[
        "ACL",
        "SETUSER",
        "phantom",
        "on",
        ">first-token",
        "~pt:*",
        "+@all",
    ]);
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = keys_for_user("phantom");
    let pw = keys.path().with_file_name("redis-token");
    fs::write(&pw, "first-token\n").unwrap();
    let zone = format!(
        "redis_password_file={} redis_max_connection_age=1s",
        pw.display()
    );
    let a = gateway(&ids, &echo, redis.port, &keys, &zone);
    let b = gateway(&ids, &echo, redis.port, &keys, &zone);
    let first = ids.issue("read", 300);
    assert_eq!(get(a.port, &first), (200, "MISS".into()));
    eventually("A's entry, written as phantom", || entries(&redis) == 1);
    assert_eq!(get(b.port, &first), (200, "HIT".into()));
    // The sidecar rotates the token: the old one stops working for new logins.
    fs::write(&pw, "second-token\n").unwrap();
    redis.cmd_str(&["ACL", "SETUSER", "phantom", "resetpass", ">second-token"]);
    // Traffic through the rotation: no request fails.
    let until = Instant::now() + Duration::from_millis(2500);
    let mut served = 0;
    while Instant::now() < until {
        for n in [&a, &b] {
            assert_eq!(get(n.port, &first).0, 200);
            served += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // New connections logged in with the new token: a new entry is shared again.
    let second = ids.issue("read", 300);
    assert_eq!(get(a.port, &second), (200, "MISS".into()));
    eventually("A's second entry, written after the rotation", || {
        entries(&redis) == 2
    });
    assert_eq!(get(b.port, &second), (200, "HIT".into()));
    let clients = redis.cmd_str(&["CLIENT", "LIST"]);
    let clients = String::from_utf8_lossy(clients.bytes().unwrap_or_default()).to_string();
    let young = clients
        .lines()
        .filter(|l| l.contains("user=phantom"))
        .all(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("age="))
                .and_then(|a| a.parse::<u64>().ok())
                .is_some_and(|age| age <= 2)
        });
    assert!(young, "connections replaced within their age:\n{clients}");
    for n in [&a, &b] {
        let log = n.error_log();
        assert!(!log.contains("WRONGPASS"), "{log}");
        assert_no_crash(n);
    }
    assert!(served > 50);
}

#[test]
fn a_wrong_password_in_the_file_fails_no_request_and_logs_one_line() {
    let redis = Redis::start();
    redis.cmd_str(&[
        "ACL", "SETUSER", "phantom", "on", ">right", "~pt:*", "+@all",
    ]);
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let keys = keys_for_user("phantom");
    let pw = keys.path().with_file_name("redis-token");
    fs::write(&pw, "wrong\n").unwrap();
    let zone = format!("redis_password_file={}", pw.display());
    let n = gateway(&ids, &echo, redis.port, &keys, &zone);
    for _ in 0..8 {
        let t = ids.issue("read", 300);
        assert_eq!(get(n.port, &t).0, 200);
    }
    assert_eq!(entries(&redis), 0);
    let log = n.error_log();
    assert_eq!(log.matches("WRONGPASS").count(), 1, "one line:\n{log}");
    assert!(
        !log.contains("right") && !log.contains("wrong\""),
        "no secret: {log}"
    );
    assert_no_crash(&n);
}

#[test]
fn credential_parameters_are_checked_by_nginx_t() {
    let keys = keys_for_user("phantom");
    let cases = [
        (
            "redis_password_file=/nonexistent/token",
            "cannot read redis_password_file \"/nonexistent/token\"",
        ),
        (
            "redis_max_connection_age=10ms",
            "invalid time in \"redis_max_connection_age=10ms\" (1s to 24h)",
        ),
        (
            "",
            "redis_user needs a redis_password (or the zone's redis_password_file=)",
        ),
    ];
    for (zone, want) in cases {
        let (ok, out) = nginx_test_config(&fleet_http(6390, keys.path(), zone, ""), "");
        assert!(!ok, "{zone}: nginx -t passed");
        assert!(out.contains(want), "{zone}: {out}");
    }
}
