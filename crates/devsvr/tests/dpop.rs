//! DPoP-bound (RFC 9449 §5) and certificate-bound (RFC 8705) tokens from the token endpoint,
//! and the `phantom-devsvr dpop-proof` client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use devsvr::{jwt_claims, IdConfig, IdServer};
use dpop_sign::SigningKey;
use phantom_core::dpop::{thumbprint, Alg};
use serde_json::Value;

fn send(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `POST /oauth/token` with `Host: host`, the given extra header lines and form.
fn token_request(port: u16, host: &str, extra: &str, form: &str) -> (u16, Value) {
    let resp = send(
        port,
        &format!(
            "POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
             Authorization: Basic Z2F0ZXdheTpzZWNyZXQ=\r\n{extra}Content-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    let status = resp[9..12].parse().unwrap();
    (status, serde_json::from_str(body(&resp)).unwrap())
}

fn introspect(port: u16, token: &str, accept: &str) -> String {
    let form = format!("token={token}");
    let resp = send(
        port,
        &format!(
            "POST /oauth/introspect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Basic Z2F0ZXdheTpzZWNyZXQ=\r\nAccept: {accept}\r\n\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    body(&resp).to_string()
}

/// The claims of the JWT the gateway would get for `token`.
fn jwt_of(port: u16, token: &str) -> serde_json::Map<String, Value> {
    jwt_claims(&introspect(port, token, "application/jwt")).unwrap()
}

const FORM: &str = "grant_type=client_credentials&scope=read";

fn dpop_token(ids: &IdServer, key: &SigningKey, host: &str, htu: &str) -> (u16, Value) {
    let proof = key
        .proof("POST", htu, now(), &devsvr::client::new_jti(), None, None)
        .unwrap();
    token_request(ids.port(), host, &format!("DPoP: {proof}\r\n"), FORM)
}

#[test]
fn a_valid_proof_gets_a_dpop_bound_token() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let (key, _) = SigningKey::generate(Alg::Es256).unwrap();
    let host = format!("127.0.0.1:{}", ids.port());
    let (status, v) = dpop_token(&ids, &key, &host, &format!("http://{host}/oauth/token"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "DPoP");
    let token = v["access_token"].as_str().unwrap();

    let claims = jwt_of(ids.port(), token);
    assert_eq!(claims["cnf"]["jkt"], key.jkt());
    assert_eq!(claims["cnf"]["jkt"], thumbprint(&key.public_jwk()).unwrap());
    assert_eq!(claims["cnf"].as_object().unwrap().len(), 1);
    assert_eq!(claims["scope"], "read");

    // RFC 9449 §6.2: the introspection response says DPoP too.
    let v: Value =
        serde_json::from_str(&introspect(ids.port(), token, "application/json")).unwrap();
    assert_eq!(v["token_type"], "DPoP");
    assert_eq!(v["cnf"]["jkt"], key.jkt());
    assert_eq!(
        jwt_claims(v["jwt"].as_str().unwrap()).unwrap()["cnf"]["jkt"],
        key.jkt()
    );
    let r = introspect(ids.port(), token, "application/token-introspection+jwt");
    let ti = &jwt_claims(&r).unwrap()["token_introspection"];
    assert_eq!(ti["token_type"], "DPoP");
    assert_eq!(ti["cnf"]["jkt"], key.jkt());
}

#[test]
fn every_allowed_algorithm_and_the_url_normalised() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let keys = [
        SigningKey::generate(Alg::EdDsa).unwrap().0,
        SigningKey::test_rsa(Alg::Rs256).unwrap(),
        SigningKey::test_rsa(Alg::Ps256).unwrap(),
    ];
    for key in &keys {
        let (status, v) = dpop_token(&ids, key, "gw.example", "http://gw.example/oauth/token");
        assert_eq!(status, 200, "{:?}: {v}", key.alg());
        assert_eq!(
            jwt_of(ids.port(), v["access_token"].as_str().unwrap())["cnf"]["jkt"],
            key.jkt()
        );
    }
    // The default port and the host's case do not matter.
    let (key, _) = SigningKey::generate(Alg::Es256).unwrap();
    let (status, v) = dpop_token(&ids, &key, "gw.example", "HTTP://GW.example:80/oauth/token");
    assert_eq!(status, 200, "{v}");
    let (status, v) = dpop_token(&ids, &key, "gw.example:80", "http://gw.example/oauth/token");
    assert_eq!(status, 200, "{v}");
}

#[test]
fn an_invalid_proof_is_400_invalid_dpop_proof() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let host = format!("127.0.0.1:{}", ids.port());
    let htu = format!("http://{host}/oauth/token");
    let (key, _) = SigningKey::generate(Alg::Es256).unwrap();
    let jti = devsvr::client::new_jti;
    let proofs = [
        key.proof("GET", &htu, now(), &jti(), None, None).unwrap(),
        key.proof(
            "POST",
            &format!("http://{host}/other"),
            now(),
            &jti(),
            None,
            None,
        )
        .unwrap(),
        key.proof(
            "POST",
            "http://127.0.0.1:1/oauth/token",
            now(),
            &jti(),
            None,
            None,
        )
        .unwrap(),
        key.proof("POST", &htu, now() - 120, &jti(), None, None)
            .unwrap(),
        key.proof("POST", &htu, now() + 120, &jti(), None, None)
            .unwrap(),
        SigningKey::generate(Alg::Es384)
            .unwrap()
            .0
            .proof("POST", &htu, now(), &jti(), None, None)
            .unwrap(),
        "not.a.proof".to_string(),
    ];
    for proof in &proofs {
        let (status, v) = token_request(ids.port(), &host, &format!("DPoP: {proof}\r\n"), FORM);
        assert_eq!(status, 400, "{proof}: {v}");
        assert_eq!(v["error"], "invalid_dpop_proof", "{v}");
    }
    // A tampered signature.
    let good = key.proof("POST", &htu, now(), &jti(), None, None).unwrap();
    let (head, sig) = good.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let bad = format!("{head}.{flipped}{}", &sig[1..]);
    let (status, v) = token_request(ids.port(), &host, &format!("DPoP: {bad}\r\n"), FORM);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    // Two proofs.
    let two = format!("DPoP: {good}\r\nDPoP: {good}\r\n");
    let (status, v) = token_request(ids.port(), &host, &two, FORM);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    // Client authentication still comes first.
    let resp = send(
        ids.port(),
        &format!(
            "POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nDPoP: x\r\n\
             Content-Length: {}\r\n\r\n{FORM}",
            FORM.len()
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
}

#[test]
fn without_a_proof_the_token_is_bearer_and_unbound() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let (status, v) = token_request(ids.port(), "x", "", FORM);
    assert_eq!(status, 200);
    assert_eq!(v["token_type"], "bearer");
    let token = v["access_token"].as_str().unwrap();
    assert!(!jwt_of(ids.port(), token).contains_key("cnf"));
    let v: Value =
        serde_json::from_str(&introspect(ids.port(), token, "application/json")).unwrap();
    assert_eq!(v["token_type"], "bearer");
}

#[test]
fn cnf_x5t_s256_binds_the_token_to_a_certificate() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let x5t = phantom_core::dpop::x5t_s256(b"a certificate's DER");
    let form = format!("{FORM}&cnf_x5t_s256={x5t}");
    let (status, v) = token_request(ids.port(), "x", "", &form);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "bearer");
    let claims = jwt_of(ids.port(), v["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["x5t#S256"], x5t);
    assert!(claims["cnf"].get("jkt").is_none());

    // Both bindings at once.
    let (key, _) = SigningKey::generate(Alg::Es256).unwrap();
    let proof = key
        .proof("POST", "http://x/oauth/token", now(), "j1", None, None)
        .unwrap();
    let (status, v) = token_request(ids.port(), "x", &format!("DPoP: {proof}\r\n"), &form);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "DPoP");
    let claims = jwt_of(ids.port(), v["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["x5t#S256"], x5t);
    assert_eq!(claims["cnf"]["jkt"], key.jkt());

    let (status, v) = token_request(ids.port(), "x", "", &format!("{FORM}&cnf_x5t_s256="));
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[test]
fn set_claims_can_still_override_cnf() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let (key, _) = SigningKey::generate(Alg::Es256).unwrap();
    let (_, v) = dpop_token(&ids, &key, "x", "http://x/oauth/token");
    let token = v["access_token"].as_str().unwrap();
    let mut claims = serde_json::Map::new();
    claims.insert("cnf".into(), serde_json::json!({ "jkt": "other" }));
    ids.set_claims(token, claims);
    assert_eq!(jwt_of(ids.port(), token)["cnf"]["jkt"], "other");
}

fn devsvr(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phantom-devsvr"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_dpop_proof_command() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("devsvr-cli-{}", devsvr::client::new_jti()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("dpop.key");
    let key = key.to_str().unwrap();
    let host = format!("127.0.0.1:{}", ids.port());
    let htu = format!("http://{host}/oauth/token");

    // The first call creates the key; later calls use it.
    let (ok, proof, err) = devsvr(&["dpop-proof", "--key", key, "--htm", "POST", "--htu", &htu]);
    assert!(ok, "{err}");
    let (ok, jkt, err) = devsvr(&["dpop-proof", "--key", key, "--jkt"]);
    assert!(ok, "{err}");
    assert_eq!(jkt.len(), 43);
    let (status, v) = token_request(ids.port(), &host, &format!("DPoP: {proof}\r\n"), FORM);
    assert_eq!(status, 200, "{v}");
    let token = v["access_token"].as_str().unwrap();
    assert_eq!(jwt_of(ids.port(), token)["cnf"]["jkt"], jkt.as_str());

    // A resource request's proof: ath of the token, and the server's nonce.
    let (ok, proof, err) = devsvr(&[
        "dpop-proof",
        "--key",
        key,
        "--htm",
        "GET",
        "--htu",
        "http://127.0.0.1:8080/dpop/hello",
        "--token",
        token,
        "--nonce",
        "n-1",
    ]);
    assert!(ok, "{err}");
    let payload = proof.split('.').nth(1).unwrap();
    let claims = jwt_claims(&format!("x.{payload}.x")).unwrap();
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], "http://127.0.0.1:8080/dpop/hello");
    assert_eq!(claims["ath"], phantom_core::dpop::ath(token.as_bytes()));
    assert_eq!(claims["nonce"], "n-1");
    let verified = phantom_core::dpop::verify_proof(&phantom_core::dpop::ProofInput {
        proof: proof.as_bytes(),
        method: b"GET",
        url: "http://127.0.0.1:8080/dpop/hello",
        token: token.as_bytes(),
        now: now(),
        window: 60,
        algs: &[Alg::Es256],
        nonce_key: None,
    })
    .unwrap();
    assert_eq!(verified.jkt, jkt);

    // Usage errors.
    assert!(!devsvr(&["dpop-proof", "--key", key]).0);
    assert!(!devsvr(&["dpop-proof", "--htm", "GET", "--htu", "http://x/"]).0);
    assert!(!devsvr(&["dpop-proof", "--key", key, "--htm"]).0);
    assert!(!devsvr(&["dpop-proof", "--key", key, "--bogus", "1"]).0);
    std::fs::remove_dir_all(&dir).unwrap();
}
