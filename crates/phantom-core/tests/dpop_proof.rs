//! `verify_proof` against the RFC 9449 examples and against proofs made here with `dpop-sign`
//! (valid ones for every algorithm, and ones with one header member or claim wrong). An
//! integration test because `dpop-sign` links the library crate, not its unit-test build.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dpop_sign::SigningKey;
use phantom_core::dpop::ProofError::Invalid;
use phantom_core::dpop::{
    ath, make_nonce, replay_key, verify_proof, Alg, ProofError, ProofInput, Verified, MAX_PROOF_LEN,
};
use serde_json::{json, Map, Value};

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
    let p = dpop_sign::sign_proof_es256(&pkcs8, "GET", URL, NOW, "x", Some(TOKEN), None).unwrap();
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
