//! DPoP proofs, htu normalisation, nonces, JWK thumbprints and certificate headers.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use phantom_core::dpop::{self, Alg, ProofError, ProofInput};

/// RFC 9449 Fig. 13: header, payload and signature segments.
const HEADER: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19";
const PAYLOAD: &str = "eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9";
const SIG: &str = "2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
const NONCE_KEY: &[u8] = b"fuzzing nonce key";

fn check(proof: &[u8]) {
    for nonce_key in [None, Some(NONCE_KEY)] {
        let input = ProofInput {
            proof,
            method: b"GET",
            url: "https://resource.example.org/protectedresource",
            token: b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU",
            now: 1_562_262_620,
            window: 60,
            algs: &Alg::ALL,
            nonce_key,
        };
        match dpop::verify_proof(&input) {
            Ok(v) => {
                assert!(proof.len() <= dpop::MAX_PROOF_LEN);
                assert_eq!(v.jkt.len(), 43);
                assert!(!v.jti.is_empty() && v.jti.len() <= dpop::MAX_JTI_LEN);
            }
            Err(ProofError::Invalid(why)) => assert!(!why.is_empty()),
            Err(ProofError::UseNonce) => assert!(nonce_key.is_some()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // Whole proofs.
        0 => check(rest),
        // A header under the RFC payload and signature (reaches the jwk checks).
        1 => check(format!("{}.{PAYLOAD}.{SIG}", URL_SAFE_NO_PAD.encode(rest)).as_bytes()),
        // Claims under the RFC header (reaches htm, htu, iat, ath, nonce and the signature).
        2 => check(format!("{HEADER}.{}.{SIG}", URL_SAFE_NO_PAD.encode(rest)).as_bytes()),
        // The helpers.
        _ => {
            if let Some(der) = dpop::cert_der_from_header(rest) {
                assert_eq!(dpop::x5t_s256(&der).len(), 43);
            }
            let text = String::from_utf8_lossy(rest);
            if let Some(n) = dpop::normalize_htu(&text) {
                assert_eq!(dpop::normalize_htu(&n).as_deref(), Some(n.as_str()));
                assert!(dpop::htu_matches(&text, &n));
            }
            let _ = dpop::check_nonce(NONCE_KEY, &text, 1_562_262_620, 60);
            if let Ok(serde_json::Value::Object(jwk)) = serde_json::from_slice(rest) {
                if let Ok(t) = dpop::thumbprint(&jwk) {
                    assert_eq!(t.len(), 43);
                }
                let _ = dpop::binding(&jwk);
            }
            let _ = dpop::parse_algs(&text.split(' ').collect::<Vec<_>>());
        }
    }
});
