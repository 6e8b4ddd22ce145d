//! The fleet tier over TLS (nginx's OpenSSL layer): the server's certificate checked against
//! the trusted CAs and the expected name, client certificates, AUTH over TLS, and every
//! failure a Redis failure (requests go on without it) with one log line that says why.

mod support;

use std::time::Duration;

use support::fleet::*;
use support::pki::Pki;
use support::redis::Redis;
use support::*;

/// A Redis with a plain port (for the test's own client) and a TLS port (for the gateways).
struct TlsRedis {
    redis: Redis,
    tls_port: u16,
}

fn tls_redis(pki: &Pki, cert: &str, auth_clients: bool, extra: &[&str]) -> TlsRedis {
    let tls_port = free_port();
    let mut args = pki.redis_tls_args(tls_port, cert, auth_clients);
    args.extend(extra.iter().map(|s| s.to_string()));
    TlsRedis {
        redis: Redis::start_with_args(&args),
        tls_port,
    }
}

struct Stack {
    ids: IdServer,
    echo: EchoServer,
    keys: KeyFile,
}

impl Stack {
    fn new(keys: KeyFile) -> Stack {
        Stack {
            ids: IdServer::start(IdConfig::default()).unwrap(),
            echo: EchoServer::start().unwrap(),
            keys,
        }
    }

    /// A gateway on Redis port `port` with these zone parameters (and `/metrics`).
    fn gateway(&self, port: u16, zone: &str) -> Nginx {
        Nginx::start_workers(
            1,
            &fleet_http(port, self.keys.path(), zone, ""),
            &format!("{}\n{METRICS}", fleet_server(&self.ids, &self.echo, "")),
            "",
        )
    }
}

fn trusting(pki: &Pki) -> String {
    format!(
        "redis_ssl=on redis_ssl_trusted_certificate={}",
        pki.path("ca.crt")
    )
}

/// Requests all succeed (introspected, Redis unusable), and the log says why once.
fn fails_over_to_introspection(s: &Stack, n: &Nginx, why: &str) {
    for _ in 0..6 {
        let t = s.ids.issue("read", 300);
        assert_eq!(get(n.port, &t), (200, "MISS".into()));
    }
    std::thread::sleep(Duration::from_millis(100));
    let log = n.error_log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("unavailable ("))
        .collect();
    assert_eq!(lines.len(), 1, "one line that says why:\n{log}");
    assert!(lines[0].contains(why), "expected \"{why}\":\n{log}");
    assert_no_crash(n);
}

#[test]
fn the_right_ca_gives_hits_across_two_instances_with_auth_over_tls() {
    let pki = Pki::new();
    let r = tls_redis(&pki, "server", false, &[]);
    r.redis.cmd_str(&[
        "ACL",
        "SETUSER",
        "phantom",
        "on",
        ">tls-s3cret",
        "~pt:*",
        "+@all",
    ]);
    let base = KeyFile::new();
    let text = std::fs::read_to_string(base.path()).unwrap()
        + "redis_user phantom\nredis_password tls-s3cret\n";
    let keys = KeyFile::from_text(&text, base.name);
    let s = Stack::new(keys);
    let a = s.gateway(r.tls_port, &trusting(&pki));
    let b = s.gateway(r.tls_port, &trusting(&pki));
    let tokens: Vec<String> = (0..3).map(|_| s.ids.issue("read", 300)).collect();
    for t in &tokens {
        assert_eq!(get(a.port, t), (200, "MISS".into()));
    }
    eventually("the entries in Redis, written over TLS", || {
        r.redis
            .keys()
            .iter()
            .filter(|k| k.starts_with("pt:v2:t:"))
            .count()
            == tokens.len()
    });
    let before = s.ids.introspections();
    for t in &tokens {
        assert_eq!(
            get(b.port, t),
            (200, "HIT".into()),
            "B reads A's entry over TLS"
        );
    }
    assert_eq!(s.ids.introspections(), before);
    let users = r.redis.cmd_str(&["CLIENT", "LIST"]);
    let users = String::from_utf8_lossy(users.bytes().unwrap_or_default()).to_string();
    assert!(
        users.contains("user=phantom"),
        "the gateways logged in: {users}"
    );
    for n in [&a, &b] {
        assert!(!n.error_log().contains("redis"), "{}", n.error_log());
        assert_no_crash(n);
    }
}

#[test]
fn each_tls_failure_fails_no_request_and_is_logged_once_with_its_reason() {
    let pki = Pki::new();
    let good = tls_redis(&pki, "server", false, &[]);
    let expired = tls_redis(&pki, "expired", false, &[]);
    let s = Stack::new(KeyFile::new());
    let other_ca = format!(
        "redis_ssl=on redis_ssl_trusted_certificate={}",
        pki.path("other-ca.crt")
    );
    let wrong_name = format!("{} redis_ssl_name=redis.example.com", trusting(&pki));
    let cases: Vec<(u16, String, &str)> = vec![
        (good.tls_port, other_ca, "TLS certificate verify error"),
        (good.tls_port, wrong_name, "hostname mismatch"),
        (expired.tls_port, trusting(&pki), "certificate has expired"),
        // TLS toward a plain port (which waits for a line that never comes).
        (good.redis.port, trusting(&pki), "TLS handshake timed out"),
        // A plain client on the TLS port: the server closes on it.
        (good.tls_port, String::new(), "connection closed"),
    ];
    for (port, zone, why) in &cases {
        let n = s.gateway(*port, zone);
        fails_over_to_introspection(&s, &n, why);
    }
}

#[test]
fn a_server_that_asks_for_client_certificates_gets_ours_and_refuses_none() {
    let pki = Pki::new();
    let r = tls_redis(&pki, "server", true, &[]);
    let s = Stack::new(KeyFile::new());
    let mtls = format!(
        "{} redis_ssl_certificate={} redis_ssl_certificate_key={}",
        trusting(&pki),
        pki.path("client.crt"),
        pki.path("client.key")
    );
    let a = s.gateway(r.tls_port, &mtls);
    let b = s.gateway(r.tls_port, &mtls);
    let t = s.ids.issue("read", 300);
    assert_eq!(get(a.port, &t), (200, "MISS".into()));
    eventually("A's entry in Redis", || {
        r.redis.keys().iter().any(|k| k.starts_with("pt:v2:t:"))
    });
    assert_eq!(get(b.port, &t), (200, "HIT".into()));
    // Without a client certificate: refused by the server, and requests go on without it.
    let c = s.gateway(r.tls_port, &trusting(&pki));
    for _ in 0..6 {
        let t = s.ids.issue("read", 300);
        assert_eq!(get(c.port, &t).0, 200);
    }
    std::thread::sleep(Duration::from_millis(100));
    let log = c.error_log();
    assert_eq!(
        log.matches("unavailable (").count(),
        1,
        "one line that says why:\n{log}"
    );
    assert_no_crash(&c);
}

#[test]
fn tls_configuration_errors_fail_nginx_t_naming_the_parameter() {
    let pki = Pki::new();
    let keys = KeyFile::new();
    let cases = [
        (
            "redis_ssl=on redis_ssl_trusted_certificate=/nonexistent/ca.crt".to_string(),
            "cannot read redis_ssl_trusted_certificate file \"/nonexistent/ca.crt\"",
        ),
        (
            format!(
                "redis_ssl=on redis_ssl_certificate={}",
                pki.path("client.crt")
            ),
            "\"redis_ssl_certificate=\" needs \"redis_ssl_certificate_key=\"",
        ),
        (
            "redis_ssl_verify=off".to_string(),
            "\"redis_ssl_verify=off\" needs \"redis_ssl=on\" before it",
        ),
        (
            "redis_ssl=yes".to_string(),
            "invalid \"redis_ssl=yes\" (on or off)",
        ),
        (
            "redis_ssl=on redis_ssl_verify_depth=0".to_string(),
            "invalid \"redis_ssl_verify_depth=0\" (1 to 100)",
        ),
    ];
    for (zone, want) in &cases {
        let http = fleet_http(6390, keys.path(), zone, "");
        let (ok, out) = nginx_test_config(&http, "");
        assert!(!ok, "{zone}: nginx -t passed");
        assert!(out.contains(want), "{zone}: {out}");
    }
    let good = fleet_http(6390, keys.path(), &trusting(&pki), "");
    let (ok, out) = nginx_test_config(&good, "");
    assert!(ok, "{out}");
}

#[test]
fn reconnects_resume_the_tls_session_under_tls_1_3_and_1_2() {
    let pki = Pki::new();
    for protocol in ["TLSv1.3", "TLSv1.2"] {
        let r = tls_redis(&pki, "server", false, &["--tls-protocols", protocol]);
        let s = Stack::new(KeyFile::new());
        // Connections replaced every second: each reconnect may resume.
        let zone = format!("{} redis_max_connection_age=1s", trusting(&pki));
        let n = s.gateway(r.tls_port, &zone);
        let t = s.ids.issue("read", 300);
        assert_eq!(get(n.port, &t).0, 200);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(1100));
            assert_eq!(get(n.port, &t), (200, "HIT".into()), "{protocol}");
        }
        let full = metric(
            n.port,
            "phantom_token_redis_tls_handshakes_total{session=\"new\"}",
        );
        let resumed = metric(
            n.port,
            "phantom_token_redis_tls_handshakes_total{session=\"resumed\"}",
        );
        eprintln!("{protocol}: {full} full handshakes, {resumed} resumed");
        assert!(full >= 1.0, "{protocol}");
        assert!(resumed >= 3.0, "{protocol}: {full} full, {resumed} resumed");
        assert_no_crash(&n);
    }
}
