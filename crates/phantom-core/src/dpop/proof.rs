//! DPoP proof verification (RFC 9449 §4.3), cheap checks first, the signature last.

use super::htu::htu_matches;
use super::jwk::PublicKey;
use super::nonce::check_nonce;
use super::{ath, json, unb64url, Alg};
#[cfg(test)]
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::{Map, Value};

/// Longest `DPoP` header value accepted (an RSA-4096 proof is about 2 KB).
pub const MAX_PROOF_LEN: usize = 8192;
/// Longest `jti` accepted (RFC 9449 §11.1: bound the replay state).
pub const MAX_JTI_LEN: usize = 128;
/// Seconds an `iat` may lie in the future (client clocks running ahead).
pub const FUTURE_LEEWAY: i64 = 10;

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ProofInput<'a> {
    /// The `DPoP` header value.
    pub proof: &'a [u8],
    /// The request method, e.g. `b"GET"` (compared byte for byte).
    pub method: &'a [u8],
    /// The request's `scheme://authority/path` (no query), as the gateway reconstructed it.
    pub url: &'a str,
    /// The opaque access token from `Authorization: DPoP <token>`. Empty for a proof made
    /// without an access token (token endpoint): `ath` is then not checked.
    pub token: &'a [u8],
    /// Unix seconds.
    pub now: i64,
    /// Maximum proof age in seconds: `now - window <= iat <= now + FUTURE_LEEWAY`.
    pub window: u64,
    /// The allowed algorithms.
    pub algs: &'a [Alg],
    /// `Some(key)`: a valid server nonce (see [`super::make_nonce`]) is required in the proof's
    /// `nonce` claim, with `window` as its lifetime.
    pub nonce_key: Option<&'a [u8]>,
}

/// A proof that passed every check of [`verify_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// RFC 7638 thumbprint of the proof's key (compare with the token's `cnf.jkt`).
    pub jkt: String,
    /// The proof's `jti` (for the replay cache, see [`super::replay_key`]).
    pub jti: String,
    /// The proof's `iat`, floored to whole seconds.
    pub iat: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// 401 `error="invalid_dpop_proof"`; a short description for `error_description` and the
    /// log (never contains token or proof bytes).
    Invalid(&'static str),
    /// 401 `error="use_dpop_nonce"`: nonces are on and the proof's is missing, stale or bad.
    UseNonce,
}

impl std::fmt::Display for ProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProofError::Invalid(why) => f.write_str(why),
            ProofError::UseNonce => f.write_str("DPoP nonce required"),
        }
    }
}

use ProofError::Invalid;

fn b64url_chars(seg: &[u8]) -> bool {
    !seg.is_empty()
        && seg
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// `typ` is `dpop+jwt`, compared like a media type (RFC 7515 §4.1.9): case-insensitive, with an
/// optional `application/` prefix.
fn typ_ok(typ: &str) -> bool {
    let t = match typ.get(..12) {
        Some(p) if p.eq_ignore_ascii_case("application/") => typ.get(12..).unwrap_or(""),
        _ => typ,
    };
    t.eq_ignore_ascii_case("dpop+jwt")
}

/// A NumericDate (RFC 7519 §2) floored to whole seconds.
fn numeric_date(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // `i64::MAX as f64` is 2^63, one past the largest i64.
    let f = f.floor();
    (f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

fn string<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// All RFC 9449 §4.3 checks except replay (#10) and the binding to the token's `cnf.jkt`
/// (#12), which the caller does with [`Verified::jkt`] and [`Verified::jti`]:
///
/// a single compact JWS of at most [`MAX_PROOF_LEN`] bytes; `typ` `dpop+jwt`; `alg` allowed
/// and matching the key; a public `jwk` only (no private members, no `oct` keys, the curve of
/// the `alg`, RSA of 2048-4096 bits); no `crit`; `jti` a non-empty string of at most
/// [`MAX_JTI_LEN`] bytes; `htm` equal to the method; `htu` matching the URL after
/// normalisation; `iat` within the window; `ath` equal to [`ath`]`(token)`; the `nonce` when
/// `nonce_key` is set; the signature last.
pub fn verify_proof(input: &ProofInput) -> Result<Verified, ProofError> {
    let proof = input.proof;
    if proof.is_empty() {
        return Err(Invalid("DPoP proof is empty"));
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(Invalid("DPoP proof is too long"));
    }
    let mut parts = proof.split(|c| *c == b'.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid("DPoP proof is not a compact JWS"));
    };
    if ![h, p, s].iter().all(|seg| b64url_chars(seg)) {
        return Err(Invalid("DPoP proof is not a compact JWS"));
    }

    // Header.
    let header = unb64url(h)
        .and_then(|b| json::object(&b))
        .ok_or(Invalid("DPoP proof header is not a JSON object"))?;
    if !string(&header, "typ").is_some_and(typ_ok) {
        return Err(Invalid("DPoP proof typ is not dpop+jwt"));
    }
    if header.contains_key("crit") {
        return Err(Invalid("DPoP proof has critical header parameters"));
    }
    let alg = string(&header, "alg")
        .and_then(Alg::from_jws)
        .ok_or(Invalid("DPoP proof alg is not supported"))?;
    if !input.algs.contains(&alg) {
        return Err(Invalid("DPoP proof alg is not allowed"));
    }
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(Invalid("DPoP proof has no jwk header"));
    };
    let key = PublicKey::for_proof(jwk, alg).map_err(Invalid)?;

    // Claims.
    let claims = unb64url(p)
        .and_then(|b| json::object(&b))
        .ok_or(Invalid("DPoP proof payload is not a JSON object"))?;
    let jti = match string(&claims, "jti") {
        Some(j) if !j.is_empty() && j.len() <= MAX_JTI_LEN => j,
        Some(_) => return Err(Invalid("DPoP proof jti is empty or too long")),
        None => return Err(Invalid("DPoP proof has no jti")),
    };
    let htm = string(&claims, "htm").ok_or(Invalid("DPoP proof has no htm"))?;
    if htm.as_bytes() != input.method {
        return Err(Invalid("DPoP proof htm does not match the request method"));
    }
    let htu = string(&claims, "htu").ok_or(Invalid("DPoP proof has no htu"))?;
    if !htu_matches(htu, input.url) {
        return Err(Invalid("DPoP proof htu does not match the request URI"));
    }
    let iat = claims
        .get("iat")
        .and_then(numeric_date)
        .ok_or(Invalid("DPoP proof has no numeric iat"))?;
    let (now, iat_wide) = (i128::from(input.now), i128::from(iat));
    if iat_wide < now - i128::from(input.window) {
        return Err(Invalid("DPoP proof is too old"));
    }
    if iat_wide > now + i128::from(FUTURE_LEEWAY) {
        return Err(Invalid("DPoP proof iat is in the future"));
    }
    match claims.get("ath") {
        _ if input.token.is_empty() => {}
        None => return Err(Invalid("DPoP proof has no ath")),
        Some(Value::String(a)) if *a == ath(input.token) => {}
        Some(_) => return Err(Invalid("DPoP proof ath does not match the access token")),
    }
    let nonce = match claims.get("nonce") {
        None => None,
        Some(Value::String(n)) => Some(n.as_str()),
        Some(_) => return Err(Invalid("DPoP proof nonce is not a string")),
    };
    if let Some(nonce_key) = input.nonce_key {
        match nonce {
            Some(n) if check_nonce(nonce_key, n, input.now, input.window) => {}
            _ => return Err(ProofError::UseNonce),
        }
    }

    // Signature over `header.payload`.
    let sig = unb64url(s).ok_or(Invalid("DPoP proof signature is not base64url"))?;
    let signing_input = proof
        .get(..h.len() + 1 + p.len())
        .ok_or(Invalid("DPoP proof is not a compact JWS"))?;
    if !key.verify(alg, signing_input, &sig) {
        return Err(Invalid("DPoP proof signature does not verify"));
    }
    Ok(Verified {
        jkt: key.thumbprint(),
        jti: jti.to_owned(),
        iat,
    })
}

#[cfg(test)]
mod tests {
    use super::super::sign::SigningKey;
    use super::super::{make_nonce, replay_key};
    use super::*;
    use serde_json::json;

    /// RFC 9449 §7.1 Fig. 13 (resource request).
    const FIG13: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
    const FIG13_IAT: i64 = 1_562_262_618;
    const FIG13_URL: &str = "https://resource.example.org/protectedresource";
    /// RFC 9449 §4.1 Fig. 2 (token request, no `ath`).
    const FIG2: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
    /// RFC 9449 §5 Fig. 7 (refresh request: the `jti` of Fig. 2, 2680 s later).
    const FIG7: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjY1Mjk2fQ.pAqut2IRDm_De6PR93SYmGBPXpwrAk90e8cP2hjiaG5QsGSuKDYW7_X620BxqhvYC8ynrrvZLTk41mSRroapUA";
    const TOKEN: &[u8] = b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    const NONCE_KEY: &[u8] = b"nonce key for the unit tests....";

    const NOW: i64 = 1_700_000_000;
    const URL: &str = "https://api.example.com/v1/things";

    fn fig13(proof: &str) -> ProofInput<'_> {
        ProofInput {
            proof: proof.as_bytes(),
            method: b"GET",
            url: FIG13_URL,
            token: TOKEN,
            now: FIG13_IAT + 3,
            window: 60,
            algs: &[Alg::Es256],
            nonce_key: None,
        }
    }

    fn at_now(proof: &str) -> ProofInput<'_> {
        ProofInput {
            proof: proof.as_bytes(),
            method: b"GET",
            url: URL,
            token: TOKEN,
            now: NOW,
            window: 60,
            algs: &Alg::ALL,
            nonce_key: None,
        }
    }

    fn err(input: &ProofInput) -> &'static str {
        match verify_proof(input) {
            Err(Invalid(why)) => why,
            other => panic!("expected an invalid proof, got {other:?}"),
        }
    }

    fn es256() -> SigningKey {
        SigningKey::generate(Alg::Es256).unwrap().0
    }

    fn claims(extra: serde_json::Value) -> Map<String, Value> {
        let mut c = json!({"jti": "j1", "htm": "GET", "htu": URL, "iat": NOW, "ath": ath(TOKEN)});
        if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
            for (k, v) in extra {
                if v.is_null() {
                    c.remove(&k);
                } else {
                    c.insert(k, v);
                }
            }
        }
        c.as_object().cloned().unwrap()
    }

    /// A proof by `key` with header members replaced (null removes) and the given claims.
    fn custom(key: &SigningKey, header: serde_json::Value, claims: &Map<String, Value>) -> String {
        let mut h = json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": key.public_jwk()});
        if let (Some(h), Value::Object(extra)) = (h.as_object_mut(), header) {
            for (k, v) in extra {
                if v.is_null() {
                    h.remove(&k);
                } else {
                    h.insert(k, v);
                }
            }
        }
        key.sign_compact(
            &serde_json::to_vec(&h).unwrap(),
            &serde_json::to_vec(claims).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn rfc9449_resource_proof_verifies() {
        let v = verify_proof(&fig13(FIG13)).unwrap();
        assert_eq!(
            v,
            Verified {
                jkt: RFC_JKT.into(),
                jti: "e1j3V_bKic8-LAEB".into(),
                iat: FIG13_IAT
            }
        );
        // Equivalent request URIs.
        for url in [
            "https://Resource.Example.org:443/protectedresource",
            "https://resource.example.org/protectedresource?q=1",
        ] {
            assert!(
                verify_proof(&ProofInput {
                    url,
                    ..fig13(FIG13)
                })
                .is_ok(),
                "{url}"
            );
        }
        // iat bounds: exactly `window` old, and 10 s ahead of "now".
        assert!(verify_proof(&ProofInput {
            now: FIG13_IAT + 60,
            ..fig13(FIG13)
        })
        .is_ok());
        assert!(verify_proof(&ProofInput {
            now: FIG13_IAT - 10,
            ..fig13(FIG13)
        })
        .is_ok());
    }

    #[test]
    fn rfc9449_token_proofs_verify() {
        let token_request = |proof: &'static str, now: i64| ProofInput {
            proof: proof.as_bytes(),
            method: b"POST",
            url: "https://server.example.com/token",
            token: b"",
            now,
            window: 60,
            algs: &[Alg::Es256, Alg::EdDsa],
            nonce_key: None,
        };
        let fig2 = verify_proof(&token_request(FIG2, 1_562_262_616)).unwrap();
        assert_eq!(fig2.jkt, RFC_JKT);
        assert_eq!(fig2.jti, "-BwC3ESc6acc2lTc");
        let fig7 = verify_proof(&token_request(FIG7, 1_562_265_296 + 30)).unwrap();
        assert_eq!(fig7.iat, 1_562_265_296);
        // Same key and jti: the replay cache sees the same entry.
        assert_eq!(
            replay_key(&fig2.jkt, &fig2.jti),
            replay_key(&fig7.jkt, &fig7.jti)
        );
        // No ath in the proof while a token is presented.
        let with_token = ProofInput {
            token: TOKEN,
            ..token_request(FIG2, 1_562_262_616)
        };
        assert_eq!(err(&with_token), "DPoP proof has no ath");
        assert_eq!(
            err(&ProofInput {
                method: b"GET",
                ..token_request(FIG2, 1_562_262_616)
            }),
            "DPoP proof htm does not match the request method"
        );
    }

    #[test]
    fn flipped_signature_byte() {
        let sig_start = FIG13.rfind('.').unwrap() + 1;
        let mut b = FIG13.as_bytes().to_vec();
        let i = sig_start + 10;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let p = String::from_utf8(b).unwrap();
        assert_eq!(err(&fig13(&p)), "DPoP proof signature does not verify");
        // Flipped payload byte.
        let mut b = FIG13.as_bytes().to_vec();
        let i = FIG13.find('.').unwrap() + 5;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        assert!(verify_proof(&fig13(&String::from_utf8(b).unwrap())).is_err());
    }

    #[test]
    fn htm_post_for_a_get() {
        let input = ProofInput {
            method: b"POST",
            ..fig13(FIG13)
        };
        assert_eq!(
            err(&input),
            "DPoP proof htm does not match the request method"
        );
        let input = ProofInput {
            method: b"get",
            ..fig13(FIG13)
        };
        assert_eq!(
            err(&input),
            "DPoP proof htm does not match the request method"
        );
    }

    #[test]
    fn htu_with_trailing_slash() {
        let url = "https://resource.example.org/protectedresource/";
        assert_eq!(
            err(&ProofInput {
                url,
                ..fig13(FIG13)
            }),
            "DPoP proof htu does not match the request URI"
        );
        let url = "http://resource.example.org/protectedresource";
        assert_eq!(
            err(&ProofInput {
                url,
                ..fig13(FIG13)
            }),
            "DPoP proof htu does not match the request URI"
        );
    }

    #[test]
    fn typ_must_be_dpop_jwt() {
        let k = es256();
        let c = claims(json!({}));
        assert_eq!(
            err(&at_now(&custom(&k, json!({"typ": "JWT"}), &c))),
            "DPoP proof typ is not dpop+jwt"
        );
        assert_eq!(
            err(&at_now(&custom(&k, json!({"typ": null}), &c))),
            "DPoP proof typ is not dpop+jwt"
        );
        assert_eq!(
            err(&at_now(&custom(&k, json!({"typ": "application/jwt"}), &c))),
            "DPoP proof typ is not dpop+jwt"
        );
        for typ in ["application/dpop+jwt", "DPoP+JWT", "Application/DPOP+jwt"] {
            assert!(
                verify_proof(&at_now(&custom(&k, json!({"typ": typ}), &c))).is_ok(),
                "{typ}"
            );
        }
    }

    #[test]
    fn alg_none_and_hs256_are_refused() {
        let k = es256();
        let c = claims(json!({}));
        for alg in ["none", "HS256", "ES512", "es256", ""] {
            assert_eq!(
                err(&at_now(&custom(&k, json!({"alg": alg}), &c))),
                "DPoP proof alg is not supported",
                "{alg}"
            );
        }
        // An unsigned JWS has an empty third segment.
        let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"dpop+jwt","alg":"none"}"#);
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(
            err(&at_now(&format!("{h}.{p}."))),
            "DPoP proof is not a compact JWS"
        );
        // An alg that is supported but not configured.
        let input = ProofInput {
            algs: &[Alg::Rs256],
            ..fig13(FIG13)
        };
        assert_eq!(err(&input), "DPoP proof alg is not allowed");
    }

    #[test]
    fn jwk_with_private_key_is_refused() {
        let k = es256();
        let mut jwk = k.public_jwk();
        jwk.insert("d".into(), "AAAA".into());
        assert_eq!(
            err(&at_now(&custom(
                &k,
                json!({ "jwk": jwk }),
                &claims(json!({}))
            ))),
            "jwk contains private key material"
        );
        assert_eq!(
            err(&at_now(&custom(
                &k,
                json!({"jwk": null}),
                &claims(json!({}))
            ))),
            "DPoP proof has no jwk header"
        );
        assert_eq!(
            err(&at_now(&custom(
                &k,
                json!({"jwk": "x"}),
                &claims(json!({}))
            ))),
            "DPoP proof has no jwk header"
        );
    }

    #[test]
    fn iat_too_old() {
        let input = ProofInput {
            now: FIG13_IAT + 61,
            ..fig13(FIG13)
        };
        assert_eq!(err(&input), "DPoP proof is too old");
        let input = ProofInput {
            now: FIG13_IAT + 6,
            window: 5,
            ..fig13(FIG13)
        };
        assert_eq!(err(&input), "DPoP proof is too old");
    }

    #[test]
    fn iat_too_far_in_the_future() {
        let input = ProofInput {
            now: FIG13_IAT - 11,
            ..fig13(FIG13)
        };
        assert_eq!(err(&input), "DPoP proof iat is in the future");
    }

    #[test]
    fn iat_forms() {
        let k = es256();
        // Fractional iat is floored.
        let p = k
            .sign_claims(&claims(json!({"iat": NOW as f64 + 0.75})))
            .unwrap();
        assert_eq!(verify_proof(&at_now(&p)).unwrap().iat, NOW);
        for iat in [
            json!("1700000000"),
            json!(null),
            json!(1e300),
            json!(-1e300),
            json!(u64::MAX),
        ] {
            let p = k.sign_claims(&claims(json!({ "iat": iat }))).unwrap();
            assert!(verify_proof(&at_now(&p)).is_err(), "{iat}");
        }
        for now in [i64::MIN, i64::MAX] {
            let p = k.sign_claims(&claims(json!({"iat": now}))).unwrap();
            let input = ProofInput {
                now,
                window: u64::MAX,
                ..at_now(&p)
            };
            assert!(verify_proof(&input).is_ok());
            let input = ProofInput {
                now: now.wrapping_neg(),
                window: u64::MAX,
                ..at_now(&p)
            };
            let _ = verify_proof(&input);
        }
    }

    #[test]
    fn ath_over_another_token() {
        let input = ProofInput {
            token: b"the-jwt-the-gateway-forwards",
            ..fig13(FIG13)
        };
        assert_eq!(
            err(&input),
            "DPoP proof ath does not match the access token"
        );
        let k = es256();
        let p = k.sign_claims(&claims(json!({"ath": null}))).unwrap();
        assert_eq!(err(&at_now(&p)), "DPoP proof has no ath");
        let p = k.sign_claims(&claims(json!({"ath": 1}))).unwrap();
        assert_eq!(
            err(&at_now(&p)),
            "DPoP proof ath does not match the access token"
        );
    }

    #[test]
    fn nonce_required_but_missing() {
        let input = ProofInput {
            nonce_key: Some(NONCE_KEY),
            ..fig13(FIG13)
        };
        assert_eq!(verify_proof(&input), Err(ProofError::UseNonce));
    }

    #[test]
    fn nonces() {
        let k = es256();
        let with_nonce = |n: &str| k.sign_claims(&claims(json!({ "nonce": n }))).unwrap();
        let nonced = |p: &str| {
            verify_proof(&ProofInput {
                nonce_key: Some(NONCE_KEY),
                ..at_now(p)
            })
        };
        // Fresh nonce.
        assert!(nonced(&with_nonce(&make_nonce(NONCE_KEY, NOW - 5))).is_ok());
        // Stale nonce (older than the 60 s window).
        let stale = with_nonce(&make_nonce(NONCE_KEY, NOW - 100));
        assert_eq!(nonced(&stale), Err(ProofError::UseNonce));
        // Made with another key, or garbage.
        assert_eq!(
            nonced(&with_nonce(&make_nonce(b"other", NOW))),
            Err(ProofError::UseNonce)
        );
        assert_eq!(nonced(&with_nonce("abc")), Err(ProofError::UseNonce));
        // Nonces off: a nonce claim is ignored, but must be a string.
        assert!(verify_proof(&at_now(&stale)).is_ok());
        let p = k.sign_claims(&claims(json!({"nonce": 5}))).unwrap();
        assert_eq!(err(&at_now(&p)), "DPoP proof nonce is not a string");
        // A bad signature is still reported after a good nonce.
        let good = with_nonce(&make_nonce(NONCE_KEY, NOW));
        let other = es256();
        let h = &good[..good.find('.').unwrap()];
        let forged = format!(
            "{h}{}",
            &other
                .sign_claims(&claims(json!({ "nonce": make_nonce(NONCE_KEY, NOW) })))
                .unwrap()[other
                .sign_claims(&claims(json!({})))
                .unwrap()
                .find('.')
                .unwrap()..]
        );
        assert_eq!(
            err(&ProofInput {
                nonce_key: Some(NONCE_KEY),
                ..at_now(&forged)
            }),
            "DPoP proof signature does not verify"
        );
    }

    #[test]
    fn rsa_n_with_leading_zero() {
        let k = SigningKey::test_rsa(Alg::Rs256).unwrap();
        let mut jwk = k.public_jwk();
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        let padded = [&[0u8][..], &n].concat();
        jwk.insert("n".into(), URL_SAFE_NO_PAD.encode(padded).into());
        assert_eq!(
            err(&at_now(&custom(
                &k,
                json!({ "jwk": jwk }),
                &claims(json!({}))
            ))),
            "jwk integer has a leading zero octet"
        );
    }

    #[test]
    fn every_alg_signs_and_verifies() {
        let keys = [
            es256(),
            SigningKey::generate(Alg::Es384).unwrap().0,
            SigningKey::generate(Alg::EdDsa).unwrap().0,
            SigningKey::test_rsa(Alg::Rs256).unwrap(),
            SigningKey::test_rsa(Alg::Ps256).unwrap(),
        ];
        for k in &keys {
            let p = k
                .proof("GET", URL, NOW, "jti-1", Some(TOKEN), None)
                .unwrap();
            let v = verify_proof(&at_now(&p)).unwrap_or_else(|e| panic!("{:?}: {e:?}", k.alg()));
            assert_eq!(v.jkt, k.jkt());
            assert_eq!(v.jti, "jti-1");
            // Only the configured algs.
            let others: Vec<Alg> = Alg::ALL.into_iter().filter(|a| *a != k.alg()).collect();
            let input = ProofInput {
                algs: &others,
                ..at_now(&p)
            };
            assert_eq!(err(&input), "DPoP proof alg is not allowed");
        }
        // A PS256 signature under an RS256 header (same key) does not verify, and vice versa.
        let (rs, ps) = (&keys[3], &keys[4]);
        let c = claims(json!({}));
        let ps_sig = custom(ps, json!({}), &c);
        let rs_hdr = custom(rs, json!({}), &c);
        let swapped = format!(
            "{}{}",
            &rs_hdr[..rs_hdr.rfind('.').unwrap()],
            &ps_sig[ps_sig.rfind('.').unwrap()..]
        );
        assert_eq!(
            err(&at_now(&swapped)),
            "DPoP proof signature does not verify"
        );
        // The RFC 9864 name.
        let ed = &keys[2];
        assert!(verify_proof(&at_now(&custom(ed, json!({"alg": "Ed25519"}), &c))).is_ok());
        // alg and key type disagree.
        assert_eq!(
            err(&at_now(&custom(ed, json!({"alg": "ES256"}), &c))),
            "jwk does not match the alg"
        );
        assert_eq!(
            err(&at_now(&custom(&keys[1], json!({"alg": "ES256"}), &c))),
            "jwk does not match the alg"
        );
    }

    #[test]
    fn es256_helper_and_generated_pkcs8() {
        let (_, pkcs8) = SigningKey::generate(Alg::Es256).unwrap();
        let p =
            super::super::sign::sign_proof_es256(&pkcs8, "GET", URL, NOW, "x", Some(TOKEN), None)
                .unwrap();
        assert!(verify_proof(&at_now(&p)).is_ok());
    }

    #[test]
    fn header_and_claim_rules() {
        let k = es256();
        let c = claims(json!({}));
        assert_eq!(
            err(&at_now(&custom(&k, json!({"crit": ["exp"]}), &c))),
            "DPoP proof has critical header parameters"
        );
        // kid, x5c, jku are ignored: the key comes only from jwk.
        assert!(verify_proof(&at_now(&custom(
            &k,
            json!({"kid": "k", "jku": "https://x", "x5c": []}),
            &c
        )))
        .is_ok());
        let jti = |j: serde_json::Value| k.sign_claims(&claims(json!({ "jti": j }))).unwrap();
        assert!(verify_proof(&at_now(&jti(json!("a".repeat(128))))).is_ok());
        assert_eq!(
            err(&at_now(&jti(json!("a".repeat(129))))),
            "DPoP proof jti is empty or too long"
        );
        assert_eq!(
            err(&at_now(&jti(json!("")))),
            "DPoP proof jti is empty or too long"
        );
        assert_eq!(err(&at_now(&jti(json!(7)))), "DPoP proof has no jti");
        for (m, why) in [
            ("htm", "DPoP proof has no htm"),
            ("htu", "DPoP proof has no htu"),
            ("iat", "DPoP proof has no numeric iat"),
        ] {
            let p = k.sign_claims(&claims(json!({ m: null }))).unwrap();
            assert_eq!(err(&at_now(&p)), why);
        }
        // Duplicate member names, in the header or the claims.
        let h = format!(
            r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{},"alg":"ES256"}}"#,
            serde_json::to_string(&k.public_jwk()).unwrap()
        );
        let p = k
            .sign_compact(h.as_bytes(), &serde_json::to_vec(&c).unwrap())
            .unwrap();
        assert_eq!(err(&at_now(&p)), "DPoP proof header is not a JSON object");
        let h = format!(
            r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{}}}"#,
            serde_json::to_string(&k.public_jwk()).unwrap()
        );
        let body = format!(
            r#"{{"jti":"a","jti":"b","htm":"GET","htu":"{URL}","iat":{NOW},"ath":"{}"}}"#,
            ath(TOKEN)
        );
        let p = k.sign_compact(h.as_bytes(), body.as_bytes()).unwrap();
        assert_eq!(err(&at_now(&p)), "DPoP proof payload is not a JSON object");
    }

    #[test]
    fn malformed_compact_forms() {
        let input = |p: &[u8]| {
            verify_proof(&ProofInput {
                proof: p,
                ..fig13(FIG13)
            })
        };
        assert_eq!(input(b""), Err(Invalid("DPoP proof is empty")));
        let long = vec![b'a'; MAX_PROOF_LEN + 1];
        assert_eq!(input(&long), Err(Invalid("DPoP proof is too long")));
        for p in [
            &b"a.b"[..],
            b"a.b.c.d",
            b".b.c",
            b"a..c",
            b"a.b.",
            b"a=.b.c",
            b"a.b+.c",
            b"a.b.c ",
        ] {
            assert_eq!(
                input(p),
                Err(Invalid("DPoP proof is not a compact JWS")),
                "{p:?}"
            );
        }
        // Two proofs glued together (a comma-joined duplicate header).
        let two = format!("{FIG13},{FIG13}");
        assert!(input(two.as_bytes()).is_err());
        assert_eq!(
            input(b"e30.e30.e30"),
            Err(Invalid("DPoP proof typ is not dpop+jwt"))
        );
        assert_eq!(
            input(b"a.e30.e30"),
            Err(Invalid("DPoP proof header is not a JSON object"))
        );
    }

    #[test]
    fn never_panics_on_mutations() {
        let base = FIG13.as_bytes();
        for i in 0..base.len() {
            for c in [b'A', b'.', b'_', 0, 0xff] {
                let mut m = base.to_vec();
                m[i] = c;
                let _ = verify_proof(&fig13(std::str::from_utf8(&m).unwrap_or("")));
                let _ = verify_proof(&ProofInput {
                    proof: &m,
                    ..fig13(FIG13)
                });
            }
            let _ = verify_proof(&ProofInput {
                proof: &base[..i],
                ..fig13(FIG13)
            });
        }
    }
}
