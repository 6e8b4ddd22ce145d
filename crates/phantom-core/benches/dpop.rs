//! DPoP proof verification cost per algorithm, and the RFC 7638 thumbprint alone.
//!
//! cargo bench -p phantom-core --bench dpop -- --warm-up-time 1 --measurement-time 3
//!
//! Measured (ring 0.17.14, 2 shared vCPUs, median): ES256 68 us, RS256-2048 32 us,
//! PS256-2048 36 us, EdDSA 68 us, ES384 1.04 ms, thumbprint alone 0.64 us. Everything but the
//! signature costs a few microseconds; keep ES384 opt-in (CPU per proof).
// `criterion_group!` defines an undocumented `pub fn benches`; the crate's `missing_docs`
// lint is for the library's API.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use dpop_sign::SigningKey;
use phantom_core::dpop::{thumbprint, verify_proof, Alg, ProofInput};
use std::hint::black_box;

/// RFC 9449 §7.1 Fig. 13.
const FIG13: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
const URL: &str = "https://resource.example.org/protectedresource";
const TOKEN: &[u8] = b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const IAT: i64 = 1_562_262_618;

fn input(proof: &str) -> ProofInput<'_> {
    ProofInput {
        proof: proof.as_bytes(),
        method: b"GET",
        url: URL,
        token: TOKEN,
        now: IAT + 3,
        window: 60,
        algs: &Alg::ALL,
        nonce_key: None,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_proof");
    g.bench_function("ES256 (RFC 9449 Fig. 13)", |b| {
        let i = input(FIG13);
        assert!(verify_proof(&i).is_ok());
        b.iter(|| verify_proof(black_box(&i)))
    });
    let keys = [
        ("RS256 (2048)", SigningKey::test_rsa(Alg::Rs256)),
        ("PS256 (2048)", SigningKey::test_rsa(Alg::Ps256)),
        (
            "EdDSA (Ed25519)",
            SigningKey::generate(Alg::EdDsa).map(|k| k.0),
        ),
        ("ES384", SigningKey::generate(Alg::Es384).map(|k| k.0)),
    ];
    for (name, key) in keys {
        let Ok(key) = key else {
            panic!("{name}: no key");
        };
        let Ok(proof) = key.proof("GET", URL, IAT, "bench-jti", Some(TOKEN), None) else {
            panic!("{name}: signing failed");
        };
        let i = input(&proof);
        assert!(verify_proof(&i).is_ok());
        g.bench_function(name, |b| b.iter(|| verify_proof(black_box(&i))));
    }
    g.finish();

    let jwk = serde_json::json!({
        "kty": "EC",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        "crv": "P-256"
    });
    let Some(jwk) = jwk.as_object() else {
        panic!("jwk")
    };
    c.bench_function("thumbprint (EC P-256)", |b| {
        b.iter(|| thumbprint(black_box(jwk)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
