//! Sender-constrained tokens (issue 11): DPoP proofs (RFC 9449) and certificate-bound tokens
//! (RFC 8705) at the gateway, with proofs made by `dpop_sign`.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dpop_sign::SigningKey;
use phantom_core::dpop::Alg;
use support::dpop::{challenges, jti, now};
use support::http::request;
use support::*;

/// The support client sends `Host: localhost`.
const HTU: &str = "http://localhost/api";

struct Dpop {
    s: Stack,
    key: SigningKey,
}

impl Dpop {
    fn start(extra: &str) -> Dpop {
        let s = Stack::start(
            "phantom_token_cache_zone c:1m;",
            &format!(
                "phantom_token_cache c; add_header X-Cache $phantom_token_cache_status always;
                 {extra}"
            ),
        );
        let (key, _) = SigningKey::generate(Alg::Es256).unwrap();
        Dpop { s, key }
    }

    /// A token bound to `jkt`.
    fn bound(&self, jkt: &str) -> String {
        let token = self.s.ids.issue("read", 300);
        let claims = serde_json::json!({ "cnf": { "jkt": jkt } });
        self.s
            .ids
            .set_claims(&token, claims.as_object().unwrap().clone());
        token
    }

    fn proof(&self, htm: &str, htu: &str, iat: i64, token: &str) -> String {
        self.key
            .proof(htm, htu, iat, &jti(), Some(token.as_bytes()), None)
            .unwrap()
    }

    fn call(&self, token: &str, proofs: &[&str]) -> Response {
        let auth = format!("DPoP {token}");
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend(proofs.iter().map(|p| ("DPoP", *p)));
        request(self.s.nginx.port, "GET", "/api", &headers, None)
    }
}

#[test]
fn a_valid_proof_is_granted_and_the_api_gets_bearer_without_the_proof() {
    let d = Dpop::start("phantom_token_dpop on;");
    let token = d.bound(&d.key.jkt());
    let r = d.call(&token, &[&d.proof("GET", HTU, now(), &token)]);
    assert_eq!(r.status, 200, "{}", challenges(&r));
    let up = d.s.echo.last().unwrap();
    assert!(up.header("authorization").unwrap().starts_with("Bearer ey"));
    assert!(up.header("dpop").is_none());
    // A cache hit still verifies the proof.
    let r = d.call(&token, &[&d.proof("GET", HTU, now(), &token)]);
    assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
    let r = d.call(&token, &[&d.proof("POST", HTU, now(), &token)]);
    assert_eq!(r.status, 401);
    assert!(
        challenges(&r).contains("invalid_dpop_proof"),
        "{}",
        challenges(&r)
    );
    assert_eq!(d.s.ids.introspections(), 1);
}

#[test]
fn each_proof_failure_is_a_401_invalid_dpop_proof() {
    let d = Dpop::start("phantom_token_dpop on; phantom_token_dpop_algs ES256 RS256;");
    let token = d.bound(&d.key.jkt());
    let t = now();
    let other = d.s.ids.issue("read", 300);
    let header = |alg: &str, jwk: serde_json::Value| {
        URL_SAFE_NO_PAD
            .encode(serde_json::json!({"typ":"dpop+jwt","alg":alg,"jwk":jwk}).to_string())
    };
    let payload = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"jti": jti(), "htm": "GET", "htu": HTU, "iat": t,
            "ath": phantom_core::dpop::ath(token.as_bytes())})
        .to_string(),
    );
    let jwk = serde_json::Value::Object(d.key.public_jwk());
    let mut private = d.key.public_jwk();
    private.insert("d".into(), "AAAA".into());
    let signed = |h: String| {
        let input = format!("{h}.{payload}");
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(d.key.sign(input.as_bytes()).unwrap())
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("htm", d.proof("POST", HTU, t, &token)),
        ("htu", d.proof("GET", "http://localhost/other", t, &token)),
        ("ath", d.proof("GET", HTU, t, &other)),
        ("stale iat", d.proof("GET", HTU, t - 600, &token)),
        ("future iat", d.proof("GET", HTU, t + 600, &token)),
        (
            "alg none",
            format!("{}.{payload}.", header("none", jwk.clone())),
        ),
        ("HS256", signed(header("HS256", jwk.clone()))),
        (
            "private jwk",
            signed(header("ES256", serde_json::Value::Object(private))),
        ),
        ("malformed", "not-a-jws".to_string()),
    ];
    for (what, proof) in cases {
        let r = d.call(&token, &[&proof]);
        assert_eq!(r.status, 401, "{what}");
        let ch = challenges(&r);
        assert!(
            ch.contains(r#"DPoP realm="api", error="invalid_dpop_proof""#)
                && ch.contains(r#"algs="ES256 RS256""#),
            "{what}: {ch}"
        );
    }
    let p = d.proof("GET", HTU, t, &token);
    let r = d.call(&token, &[&p, &p]);
    assert_eq!(r.status, 401, "two DPoP headers");
    assert_eq!(d.s.echo.requests(), 0);
    assert!(
        !d.s.nginx.error_log().contains("[error]"),
        "{}",
        d.s.nginx.error_log()
    );
}

#[test]
fn a_proof_replayed_against_any_worker_is_refused() {
    let d = Dpop::start("phantom_token_dpop on;");
    let token = d.bound(&d.key.jkt());
    let p = d.proof("GET", HTU, now(), &token);
    assert_eq!(d.call(&token, &[&p]).status, 200);
    for _ in 0..4 {
        let r = d.call(&token, &[&p]);
        assert_eq!(r.status, 401);
        assert!(challenges(&r).contains("replayed"), "{}", challenges(&r));
    }
}

#[test]
fn binding_mismatch_and_bearer_downgrade_are_invalid_token() {
    let d = Dpop::start("phantom_token_dpop on;");
    let (other, _) = SigningKey::generate(Alg::Es256).unwrap();
    let token = d.bound(&other.jkt());
    let r = d.call(&token, &[&d.proof("GET", HTU, now(), &token)]);
    assert_eq!(r.status, 401);
    let ch = challenges(&r);
    assert!(
        ch.contains(r#"DPoP realm="api", error="invalid_token""#),
        "{ch}"
    );
    // The bound token sent as Bearer.
    let token = d.bound(&d.key.jkt());
    let r = d.s.get_bearer("/api", &token);
    assert_eq!(r.status, 401);
    let ch = challenges(&r);
    assert!(
        ch.contains(r#"Bearer realm="api", error="invalid_token""#) && ch.contains("DPoP realm"),
        "{ch}"
    );
    // An unbound token as Bearer still works with `on`.
    let plain = d.s.ids.issue("read", 300);
    assert_eq!(d.s.get_bearer("/api", &plain).status, 200);
    // Bearer with a proof is ambiguous.
    let auth = format!("Bearer {plain}");
    let p = d.proof("GET", HTU, now(), &plain);
    let r = request(
        d.s.nginx.port,
        "GET",
        "/api",
        &[("Authorization", &auth), ("DPoP", &p)],
        None,
    );
    assert_eq!(r.status, 400);
}

#[test]
fn required_mode_offers_only_dpop() {
    let d = Dpop::start("phantom_token_dpop required;");
    let r = d.s.get("/api", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(challenges(&r), r#"DPoP realm="api", algs="ES256""#);
    let plain = d.s.ids.issue("read", 300);
    let r = d.s.get_bearer("/api", &plain);
    assert_eq!(r.status, 401);
    assert!(
        challenges(&r).starts_with(r#"DPoP realm="api", error="invalid_token""#),
        "{}",
        challenges(&r)
    );
    let token = d.bound(&d.key.jkt());
    assert_eq!(
        d.call(&token, &[&d.proof("GET", HTU, now(), &token)])
            .status,
        200
    );
}

#[test]
fn on_mode_offers_both_schemes_when_there_is_no_token() {
    let d = Dpop::start("phantom_token_dpop on;");
    let r = d.s.get("/api", &[]);
    assert_eq!(
        challenges(&r),
        r#"Bearer realm="api" | DPoP realm="api", algs="ES256""#
    );
}

#[test]
fn server_nonces_are_required_when_on() {
    let d = Dpop::start("phantom_token_dpop on; phantom_token_dpop_nonce on;");
    let token = d.bound(&d.key.jkt());
    let r = d.call(&token, &[&d.proof("GET", HTU, now(), &token)]);
    assert_eq!(r.status, 401);
    assert!(
        challenges(&r).contains(r#"error="use_dpop_nonce""#),
        "{}",
        challenges(&r)
    );
    let nonce = r.header("dpop-nonce").expect("DPoP-Nonce").to_string();
    let wrong = d
        .key
        .proof(
            "GET",
            HTU,
            now(),
            &jti(),
            Some(token.as_bytes()),
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .unwrap();
    assert_eq!(d.call(&token, &[&wrong]).status, 401, "a wrong nonce");
    let good = d
        .key
        .proof(
            "GET",
            HTU,
            now(),
            &jti(),
            Some(token.as_bytes()),
            Some(&nonce),
        )
        .unwrap();
    assert_eq!(d.call(&token, &[&good]).status, 200);
}

#[test]
fn dpop_configuration_errors_name_the_directive() {
    let (ok, out) = nginx_test_config(
        "",
        "location / { phantom_token on; phantom_token_introspection_endpoint /i; phantom_token_dpop on; }",
    );
    assert!(!ok);
    assert!(
        out.contains("\"phantom_token_dpop\" needs \"phantom_token_cache\""),
        "{out}"
    );
    let (ok, out) = nginx_test_config("", "location / { phantom_token_dpop_algs HS256; }");
    assert!(!ok);
    assert!(out.contains("\"phantom_token_dpop_algs\""), "{out}");
    let (ok, out) = nginx_test_config("", "location / { phantom_token_dpop maybe; }");
    assert!(!ok);
    assert!(
        out.contains("\"phantom_token_dpop\": unknown value"),
        "{out}"
    );
}
