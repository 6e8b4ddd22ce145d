//! DPoP proofs are used once per fleet (issue 17, item 8): with a Redis tier, each proof's
//! `jti` is claimed with `SET NX PX` before a grant, so a proof captured at one gateway
//! cannot be replayed at another; `phantom_token_dpop_replay` chooses what happens while
//! Redis cannot answer.

mod support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use dpop_sign::SigningKey;
use phantom_core::dpop::Alg;
use support::dpop::{challenges, jti, now};
use support::fleet::*;
use support::http::request;
use support::*;

/// The fleet harness's protected location is `/`; the support client sends
/// `Host: localhost`.
const HTU: &str = "http://localhost/";

/// DPoP on, and the status page nested in the protected location.
fn api(extra: &str) -> String {
    format!(
        "phantom_token_dpop on; {extra}
         location = /metrics {{ phantom_token off; phantom_token_status; }}"
    )
}

struct Client {
    key: SigningKey,
    token: String,
}

impl Client {
    /// A key and a token of the fleet's identity server bound to it.
    fn new(f: &Fleet) -> Client {
        let (key, _) = SigningKey::generate(Alg::Es256).unwrap();
        let token = f.ids.issue("read", 300);
        let claims = serde_json::json!({ "cnf": { "jkt": key.jkt() } });
        f.ids
            .set_claims(&token, claims.as_object().unwrap().clone());
        Client { key, token }
    }

    fn proof(&self) -> String {
        self.key
            .proof("GET", HTU, now(), &jti(), Some(self.token.as_bytes()), None)
            .unwrap()
    }
}

fn call(port: u16, c: &Client, proof: &str) -> Response {
    let auth = format!("DPoP {}", c.token);
    request(
        port,
        "GET",
        "/",
        &[("Authorization", &auth), ("DPoP", proof)],
        None,
    )
}

fn assert_replayed(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}");
    let ch = challenges(r);
    assert!(
        ch.contains(r#"error="invalid_dpop_proof""#) && ch.contains("replayed"),
        "{what}: {ch}"
    );
}

/// `phantom_token_dpop_replay_local_fallback_total` on the instance's status page.
fn fallbacks(port: u16) -> f64 {
    let r = request(port, "GET", "/metrics", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix("phantom_token_dpop_replay_local_fallback_total "))
        .unwrap_or_else(|| panic!("no fallback counter:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn jti_keys(f: &Fleet) -> Vec<String> {
    f.redis
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("pt:v2:jti:"))
        .collect()
}

fn fleet(extra: &str) -> Fleet {
    let api = api(extra);
    Fleet::with(
        2,
        Opts {
            api: &api,
            ..Opts::default()
        },
    )
}

#[test]
fn a_proof_accepted_by_one_instance_is_refused_by_another() {
    let f = fleet("");
    let c = Client::new(&f);
    let p = c.proof();
    let r = call(f.port(0), &c, &p);
    assert_eq!(r.status, 200, "{}", challenges(&r));
    // The same proof and token at the other instance: the fleet has seen it.
    assert_replayed(&call(f.port(1), &c, &p), "instance B");
    // And again at the first (its own replay cache answers first).
    assert_replayed(&call(f.port(0), &c, &p), "instance A again");
    assert!(f.nodes[1].wait_log("Invalid DPoP proof: replayed at another instance"));
    // A fresh proof is fine at either.
    assert_eq!(call(f.port(1), &c, &c.proof()).status, 200);
    assert_eq!(call(f.port(0), &c, &c.proof()).status, 200);

    // One HMAC'd key per proof, kept for the window (60 s) plus the future leeway (10 s) and
    // a second; nothing in Redis names the jti or the key's thumbprint.
    let keys = jti_keys(&f);
    assert_eq!(keys.len(), 3, "{keys:?}");
    for k in &keys {
        assert!(allowed_key_name(k), "{k}");
        let ttl = f.redis.pttl(k);
        assert!((60_000..=71_000).contains(&ttl), "{k}: PTTL {ttl}");
        assert_eq!(f.redis.get(k), Some(b"1".to_vec()));
    }
    for (k, v) in f.redis.dump_all() {
        let jkt = c.key.jkt();
        assert!(!k.contains("jti-") && !k.contains(&jkt), "{k}");
        assert!(
            !contains(&v, b"jti-") && !contains(&v, jkt.as_bytes()),
            "{k}"
        );
    }
    for i in 0..2 {
        assert_eq!(fallbacks(f.port(i)), 0.0, "instance {i}");
        assert_no_crash(&f.nodes[i]);
        let log = f.nodes[i].error_log();
        assert!(!log.contains("[error]"), "{log}");
    }
}

#[test]
fn the_same_proof_at_two_instances_at_once_is_granted_once() {
    let f = fleet("");
    let c = Client::new(&f);
    // The token is known to both instances first, so both race on the proof alone.
    for i in 0..2 {
        assert_eq!(call(f.port(i), &c, &c.proof()).status, 200);
    }
    for round in 0..5 {
        let p = c.proof();
        let auth = format!("DPoP {}", c.token);
        let barrier = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (port, auth, p, barrier) =
                    (f.port(i % 2), auth.clone(), p.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    request(
                        port,
                        "GET",
                        "/",
                        &[("Authorization", &auth), ("DPoP", &p)],
                        None,
                    )
                    .status
                })
            })
            .collect();
        let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| matches!(s, 200 | 401)),
            "{statuses:?}"
        );
    }
}

#[test]
fn without_redis_the_default_mode_falls_back_to_each_instance_and_counts_it() {
    let mut f = fleet("");
    let c = Client::new(&f);
    f.redis.stop();
    let p = c.proof();
    let started = Instant::now();
    let r = call(f.port(0), &c, &p);
    assert_eq!(r.status, 200, "{}", challenges(&r));
    assert_replayed(&call(f.port(0), &c, &p), "instance A, its own replay cache");
    // Per-instance behaviour: the other instance has not seen it.
    assert_eq!(call(f.port(1), &c, &p).status, 200);
    assert_replayed(&call(f.port(1), &c, &p), "instance B, its own replay cache");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fallbacks(f.port(0)), 1.0);
    assert_eq!(fallbacks(f.port(1)), 1.0);
    // Each new proof that the fleet cannot confirm is counted.
    assert_eq!(call(f.port(0), &c, &c.proof()).status, 200);
    assert_eq!(fallbacks(f.port(0)), 2.0);
    for n in &f.nodes {
        assert_no_crash(n);
    }
}

#[test]
fn a_redis_that_does_not_answer_costs_a_timeout_then_falls_back() {
    let f = fleet("");
    let c = Client::new(&f);
    assert_eq!(call(f.port(0), &c, &c.proof()).status, 200);
    f.redis.pause();
    let started = Instant::now();
    let r = call(f.port(0), &c, &c.proof());
    let took = started.elapsed();
    f.redis.resume();
    assert_eq!(r.status, 200, "{}", challenges(&r));
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(fallbacks(f.port(0)) >= 1.0);
    assert_no_crash(&f.nodes[0]);
}

#[test]
fn fleet_required_answers_503_while_redis_cannot_confirm() {
    let mut f = fleet("phantom_token_dpop_replay fleet_required;");
    let c = Client::new(&f);
    let p = c.proof();
    assert_eq!(call(f.port(0), &c, &p).status, 200);
    assert_replayed(&call(f.port(1), &c, &p), "instance B");
    f.redis.stop();
    for i in 0..2 {
        let r = call(f.port(i), &c, &c.proof());
        assert_eq!(r.status, 503, "instance {i}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"), "instance {i}");
        assert_eq!(fallbacks(f.port(i)), 0.0, "instance {i}");
    }
    assert_eq!(f.echo.requests(), 1, "only the first proof reached the API");
    for n in &f.nodes {
        assert_no_crash(n);
    }
}

#[test]
fn local_mode_keeps_replays_per_instance() {
    let f = fleet("phantom_token_dpop_replay local;");
    let c = Client::new(&f);
    let p = c.proof();
    assert_eq!(call(f.port(0), &c, &p).status, 200);
    assert_replayed(&call(f.port(0), &c, &p), "instance A");
    assert_eq!(call(f.port(1), &c, &p).status, 200);
    assert!(jti_keys(&f).is_empty(), "{:?}", jti_keys(&f));
    assert_eq!(fallbacks(f.port(0)), 0.0);
}

#[test]
fn dpop_replay_configuration_errors_name_the_directive() {
    let loc = |extra: &str| {
        format!(
            "location / {{ phantom_token on; phantom_token_introspection_endpoint /i;
               phantom_token_cache c; phantom_token_dpop on; {extra} }}"
        )
    };
    let (ok, out) = nginx_test_config(
        "phantom_token_cache_zone c:1m;",
        &loc("phantom_token_dpop_replay sometimes;"),
    );
    assert!(!ok);
    assert!(
        out.contains(r#""phantom_token_dpop_replay": unknown value "sometimes" (expected local, fleet or fleet_required)"#),
        "{out}"
    );
    let (ok, out) = nginx_test_config(
        "phantom_token_cache_zone c:1m;",
        &loc("phantom_token_dpop_replay local; phantom_token_dpop_replay fleet;"),
    );
    assert!(!ok);
    assert!(
        out.contains(r#""phantom_token_dpop_replay" directive is duplicate"#),
        "{out}"
    );
    for mode in ["fleet", "fleet_required"] {
        let (ok, out) = nginx_test_config(
            "phantom_token_cache_zone c:1m;",
            &loc(&format!("phantom_token_dpop_replay {mode};")),
        );
        assert!(!ok, "{mode}");
        assert!(
            out.contains(&format!(
                r#""phantom_token_dpop_replay {mode}" needs a "phantom_token_cache" zone with redis="#
            )),
            "{out}"
        );
    }
    let (ok, out) = nginx_test_config(
        "phantom_token_cache_zone c:1m;",
        &loc("phantom_token_dpop_replay local;"),
    );
    assert!(ok, "{out}");
    // Inherited from http by a location that does not verify proofs: nothing to check.
    let (ok, out) = nginx_test_config(
        "phantom_token_cache_zone c:1m; phantom_token_dpop_replay fleet;",
        "location / { phantom_token on; phantom_token_introspection_endpoint /i; phantom_token_cache c; }",
    );
    assert!(ok, "{out}");
}

#[test]
fn clients_that_leave_while_their_proof_is_claimed_leave_nothing_behind() {
    let f = fleet("");
    let c = Client::new(&f);
    assert_eq!(call(f.port(0), &c, &c.proof()).status, 200);
    let n = &f.nodes[0];
    // HTTP/2 (the stream ends with the client's connection) and HTTP/1.1, each cut off while
    // Redis sits on the claim.
    let htu = format!("http://127.0.0.1:{}/", n.h2_port);
    let auth = format!("DPoP {}", c.token);
    let h2_proof = || {
        c.key
            .proof("GET", &htu, now(), &jti(), Some(c.token.as_bytes()), None)
            .unwrap()
    };
    // The HTTP/2 requests below would pass if they waited.
    let (status, head, _) = support::http::curl_h2(
        n.h2_port,
        "/",
        &[("Authorization", &auth), ("DPoP", &h2_proof())],
        None,
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.starts_with("HTTP/2"), "{head}");
    f.redis.pause();
    let curls: Vec<_> = (0..4)
        .map(|_| {
            let proof = h2_proof();
            std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "--http2-prior-knowledge"])
                .args(["--max-time", "0.05"])
                .arg("-H")
                .arg(format!("Authorization: {auth}"))
                .arg("-H")
                .arg(format!("DPoP: {proof}"))
                .arg(format!("http://127.0.0.1:{}/", n.h2_port))
                .spawn()
                .expect("curl")
        })
        .collect();
    let h1: Vec<_> = (0..4)
        .map(|_| {
            let (port, auth, proof) = (n.port, auth.clone(), c.proof());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                let req = format!(
                    "GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nDPoP: {proof}\r\n\r\n"
                );
                s.write_all(req.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(30));
                // Gone before Redis answers.
            })
        })
        .collect();
    for mut c in curls {
        let _ = c.wait();
    }
    for t in h1 {
        t.join().unwrap();
    }
    // The claims time out (redis_timeout=200ms) after their requests ended.
    std::thread::sleep(Duration::from_millis(500));
    f.redis.resume();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = call(f.port(0), &c, &c.proof());
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{} {}", r.status, challenges(&r));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_no_crash(n);
}
