//! Purges across the fleet: by token, subject and client id, over HTTP/1.1 and HTTP/2, every
//! instance refuses the token within a second; bad purge requests are 400 `invalid_request`;
//! a purge by subject walks a large zone in steps and misses nothing.
//!
//! Every test has its own Redis, identity server, echo API and nginx instances, so the tests
//! run in parallel.

mod support;

use std::time::Instant;

use support::fleet::*;
use support::http::{curl_h2, request};
use support::*;

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
            .cmd_str(&["TYPE", "pt:v2:purge:jwt"])
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
// Walks of a large zone
// ---------------------------------------------------------------------------------------

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
fn a_purge_by_subject_sweeps_redis_in_batches_with_one_slot_per_command() {
    use phantom_core::fleet::layout::Layout;
    use phantom_core::fleet::slot::key_slot;
    use phantom_core::purge::Kind;
    use support::redis::monitor_args;

    let f = Fleet::with(
        1,
        Opts {
            workers: 1,
            ..Opts::default()
        },
    );
    let port = f.port(0);
    // More entries than one batch (500): three round trips.
    let erin = issue_with(&f.ids, 600, serde_json::json!({ "sub": "erin" }));
    let frank = issue_with(&f.ids, 3, serde_json::json!({ "sub": "frank" }));
    for t in erin.iter().chain(&frank) {
        assert_eq!(get(port, t).0, 200);
    }
    let layout = Layout::new(&f.keys.name, "pt:v2:");
    let set = layout.index(Kind::Sub, b"erin");
    eventually("600 entries in erin's set", || {
        f.redis.cmd_str(&["SCARD", &set]).int() == Some(600)
    });
    // Members that are not entries of the layout only leave the set: a key of somebody else
    // (or a version 1 name) is never deleted on the word of a set.
    for foreign in [
        "somebody:else",
        "pt:v1:t:lmUtLKZUQJpvNl8ubOGfgcIXTSBeAJAusqItEzFt7Zs",
    ] {
        f.redis.cmd_str(&["SET", foreign, "keep", "PX", "60000"]);
        f.redis.cmd_str(&["SADD", &set, foreign]);
    }

    let mon = f.redis.monitor();
    let r = purge(port, "sub=erin");
    let (removed, redis_removed) = purge_ok(&r);
    assert_eq!((removed, redis_removed), (600, 600), "{}", r.text());
    assert!(mon.wait_for("\"XADD\""), "{}", mon.text());
    let text = mon.text();
    drop(mon);

    assert_eq!(f.redis.pttl(&set), -2, "the set is gone");
    for foreign in [
        "somebody:else",
        "pt:v1:t:lmUtLKZUQJpvNl8ubOGfgcIXTSBeAJAusqItEzFt7Zs",
    ] {
        assert_eq!(f.redis.get(foreign).as_deref(), Some(&b"keep"[..]));
    }
    assert_eq!(f.token_keys().len(), 3, "frank's entries stay");
    // What Redis was asked: reads of at most 500 members, one slot per UNLINK, no script,
    // and the notice after the last removal.
    let cmds: Vec<Vec<Vec<u8>>> = text
        .lines()
        .filter(|l| !l.contains("lua]"))
        .map(monitor_args)
        .filter(|a| !a.is_empty())
        .collect();
    let name = |a: &[Vec<u8>]| String::from_utf8_lossy(&a[0]).to_uppercase();
    let reads = cmds.iter().filter(|a| name(a) == "SRANDMEMBER").count();
    assert_eq!(reads, 2, "two reads of 500 members, then the last batch");
    let mut unlinked = 0;
    for a in cmds.iter().filter(|a| name(a) == "UNLINK") {
        let slot = key_slot(&a[1]);
        assert!(a[1..].iter().all(|k| key_slot(k) == slot), "{a:?}");
        assert!(a[1..].iter().all(|k| layout.is_entry(k)));
        unlinked += a.len() - 1;
    }
    assert_eq!(unlinked, 600);
    let srem: Vec<usize> = cmds
        .iter()
        .filter(|a| name(a) == "SREM")
        .map(|a| a.len() - 2)
        .collect();
    assert_eq!(srem, [500, 102]);
    assert!(!cmds.iter().any(|a| name(a) == "EVAL"), "no script");
    let last_unlink = cmds.iter().rposition(|a| name(a) == "UNLINK").unwrap();
    let xadd = cmds.iter().position(|a| name(a) == "XADD").unwrap();
    assert!(xadd > last_unlink, "the notice comes last");

    let before = f.ids.introspections();
    for t in frank.iter() {
        assert_eq!(get(port, t), (200, "HIT".into()), "another subject stays");
    }
    for t in erin.iter().step_by(50) {
        assert_eq!(get(port, t), (200, "MISS".into()), "purged");
    }
    assert_eq!(f.ids.introspections() - before, 12);
    f.nodes[0].assert_clean_log();
}
