//! The public key of a DPoP proof (`jwk` header, RFC 7517/7518/8037), its RFC 7638
//! thumbprint and signature verification with `ring`.

use super::{b64url, sha256, unb64url, Alg};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// Smallest and largest accepted RSA moduli, in bits (RFC 7518 §3.3; the upper bound is
/// policy: ring would take 8192-bit keys, which cost far more to verify).
pub(crate) const RSA_MIN_BITS: usize = 2048;
pub(crate) const RSA_MAX_BITS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
    fn coord_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// A validated public key; the `*_b64` fields are the received base64url member values, which
/// strict decoding guarantees are canonical (so they are what RFC 7638 hashes).
#[derive(Debug)]
pub(crate) enum PublicKey<'a> {
    Ec {
        curve: Curve,
        /// SEC1 uncompressed point `04 || x || y`.
        point: Vec<u8>,
        x: &'a str,
        y: &'a str,
    },
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        n_b64: &'a str,
        e_b64: &'a str,
    },
    Ed25519 {
        key: Vec<u8>,
        x: &'a str,
    },
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, &'static str> {
    match jwk.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err("jwk member is not a string"),
        None => Err("jwk lacks a required member"),
    }
}

fn decoded(s: &str) -> Result<Vec<u8>, &'static str> {
    unb64url(s.as_bytes()).ok_or("jwk member is not base64url")
}

/// A big-endian unsigned integer in minimal form (RFC 7518 §2 Base64urlUInt).
fn uint(s: &str) -> Result<Vec<u8>, &'static str> {
    let v = decoded(s)?;
    match v.first() {
        None => Err("jwk integer is empty"),
        Some(0) => Err("jwk integer has a leading zero octet"),
        Some(_) => Ok(v),
    }
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(b) => be.len() * 8 - b.leading_zeros() as usize,
    }
}

fn curve(name: &str) -> Result<Curve, &'static str> {
    match name {
        "P-256" => Ok(Curve::P256),
        "P-384" => Ok(Curve::P384),
        _ => Err("unsupported EC curve"),
    }
}

impl<'a> PublicKey<'a> {
    /// Structural parse: `kty`, the required members, lengths. Shared by thumbprints and
    /// proofs; [`PublicKey::for_proof`] adds the policy checks.
    fn parse(jwk: &'a Map<String, Value>) -> Result<Self, &'static str> {
        match member(jwk, "kty")? {
            "EC" => {
                let curve = curve(member(jwk, "crv")?)?;
                let (x, y) = (member(jwk, "x")?, member(jwk, "y")?);
                let (xb, yb) = (decoded(x)?, decoded(y)?);
                if xb.len() != curve.coord_len() || yb.len() != curve.coord_len() {
                    return Err("EC coordinate has the wrong length");
                }
                let mut point = Vec::with_capacity(1 + 2 * curve.coord_len());
                point.push(4);
                point.extend_from_slice(&xb);
                point.extend_from_slice(&yb);
                Ok(PublicKey::Ec { curve, point, x, y })
            }
            "RSA" => {
                let (n_b64, e_b64) = (member(jwk, "n")?, member(jwk, "e")?);
                Ok(PublicKey::Rsa {
                    n: uint(n_b64)?,
                    e: uint(e_b64)?,
                    n_b64,
                    e_b64,
                })
            }
            "OKP" => {
                if member(jwk, "crv")? != "Ed25519" {
                    return Err("unsupported OKP curve");
                }
                let x = member(jwk, "x")?;
                let key = decoded(x)?;
                if key.len() != 32 {
                    return Err("Ed25519 key has the wrong length");
                }
                Ok(PublicKey::Ed25519 { key, x })
            }
            "oct" => Err("symmetric jwk"),
            _ => Err("unsupported jwk kty"),
        }
    }

    /// The key of a proof signed with `alg`: a public key of the matching type, curve and
    /// size, without private members (RFC 9449 §4.2, §4.3 #7).
    pub(crate) fn for_proof(jwk: &'a Map<String, Value>, alg: Alg) -> Result<Self, &'static str> {
        const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
        if PRIVATE.iter().any(|m| jwk.contains_key(*m)) {
            return Err("jwk contains private key material");
        }
        match jwk.get("alg") {
            None => {}
            Some(Value::String(a)) if Alg::from_jws(a) == Some(alg) => {}
            Some(_) => return Err("jwk alg differs from the header alg"),
        }
        match jwk.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(_) => return Err("jwk use is not sig"),
        }
        let key = Self::parse(jwk)?;
        let fits = match (&key, alg) {
            (PublicKey::Ec { curve, .. }, Alg::Es256) => *curve == Curve::P256,
            (PublicKey::Ec { curve, .. }, Alg::Es384) => *curve == Curve::P384,
            (PublicKey::Rsa { .. }, Alg::Rs256 | Alg::Ps256) => true,
            (PublicKey::Ed25519 { .. }, Alg::EdDsa) => true,
            _ => false,
        };
        if !fits {
            return Err("jwk does not match the alg");
        }
        if let PublicKey::Rsa { n, e, .. } = &key {
            let bits = bit_len(n);
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err("RSA key size out of range");
            }
            // ring accepts 3 <= e < 2^33, odd.
            let small_or_even = e.len() > 4
                || e.last().is_none_or(|b| b & 1 == 0)
                || (e.len() == 1 && e.first().is_some_and(|b| *b < 3));
            if small_or_even {
                return Err("RSA exponent not accepted");
            }
        }
        Ok(key)
    }

    /// The RFC 7638 canonical JSON (required members, lexicographic order, no whitespace).
    fn canonical(&self) -> String {
        match self {
            PublicKey::Ec { curve, x, y, .. } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{x}","y":"{y}"}}"#,
                curve.name()
            ),
            PublicKey::Rsa { n_b64, e_b64, .. } => {
                format!(r#"{{"e":"{e_b64}","kty":"RSA","n":"{n_b64}"}}"#)
            }
            PublicKey::Ed25519 { x, .. } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        }
    }

    pub(crate) fn thumbprint(&self) -> String {
        b64url(&sha256(self.canonical().as_bytes()))
    }

    /// Verifies a JWS signature; `alg` must be the one [`PublicKey::for_proof`] checked.
    pub(crate) fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        let ok =
            match (self, alg) {
                (PublicKey::Ec { point, .. }, Alg::Es256) => {
                    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(msg, sig)
                }
                (PublicKey::Ec { point, .. }, Alg::Es384) => {
                    UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                        .verify(msg, sig)
                }
                (PublicKey::Rsa { n, e, .. }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig),
                (PublicKey::Rsa { n, e, .. }, Alg::Ps256) => RsaPublicKeyComponents { n, e }
                    .verify(&signature::RSA_PSS_2048_8192_SHA256, msg, sig),
                (PublicKey::Ed25519 { key, .. }, Alg::EdDsa) => {
                    UnparsedPublicKey::new(&signature::ED25519, key).verify(msg, sig)
                }
                _ => return false,
            };
        ok.is_ok()
    }
}

/// RFC 7638 thumbprint of a JWK object (no policy checks beyond well-formed members).
pub(crate) fn thumbprint(jwk: &Map<String, Value>) -> Result<String, &'static str> {
    PublicKey::parse(jwk).map(|k| k.thumbprint())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Map<String, Value> {
        serde_json::from_str(s).unwrap()
    }

    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn rfc7638_rsa_thumbprint() {
        // RFC 7638 §3.1, with the extra members of the example (`alg`, `kid`) ignored.
        let jwk = obj(&format!(
            r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","alg":"RS256","kid":"2011-04-29"}}"#
        ));
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        // The same key is fine for RS256 proofs.
        assert!(PublicKey::for_proof(&jwk, Alg::Rs256).is_ok());
        assert!(PublicKey::for_proof(&jwk, Alg::Ps256).is_err()); // jwk alg RS256
    }

    #[test]
    fn rfc8037_okp_thumbprint() {
        let jwk = obj(
            r#"{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        );
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rfc9449_ec_thumbprint() {
        // Member order of RFC 9449 Fig. 4 (kty, x, y, crv) must not matter.
        let jwk = obj(
            r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#,
        );
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
        assert!(PublicKey::for_proof(&jwk, Alg::Es256).is_ok());
        assert_eq!(
            PublicKey::for_proof(&jwk, Alg::Es384).unwrap_err(),
            "jwk does not match the alg"
        );
        assert!(PublicKey::for_proof(&jwk, Alg::EdDsa).is_err());
    }

    #[test]
    fn refuses_bad_keys() {
        let ec = r#""kty":"EC","crv":"P-256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA""#;
        let bad = |extra: &str| {
            let jwk = obj(&format!("{{{ec}{extra}}}"));
            PublicKey::for_proof(&jwk, Alg::Es256).unwrap_err()
        };
        assert_eq!(bad(r#","d":"AAAA""#), "jwk contains private key material");
        assert_eq!(
            bad(r#","alg":"ES384""#),
            "jwk alg differs from the header alg"
        );
        assert_eq!(bad(r#","use":"enc""#), "jwk use is not sig");
        for (jwk, why) in [
            (
                r#"{"kty":"oct","k":"AAAA"}"#,
                "jwk contains private key material",
            ),
            (r#"{"kty":"oct"}"#, "symmetric jwk"),
            (r#"{"kty":"XYZ"}"#, "unsupported jwk kty"),
            (r#"{"kty":1}"#, "jwk member is not a string"),
            (r#"{}"#, "jwk lacks a required member"),
            (
                r#"{"kty":"EC","crv":"P-521","x":"","y":""}"#,
                "unsupported EC curve",
            ),
            (
                r#"{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}"#,
                "EC coordinate has the wrong length",
            ),
            (
                r#"{"kty":"EC","crv":"P-256","x":"AA==","y":"AA"}"#,
                "jwk member is not base64url",
            ),
            (
                r#"{"kty":"OKP","crv":"Ed448","x":"AA"}"#,
                "unsupported OKP curve",
            ),
            (
                r#"{"kty":"OKP","crv":"X25519","x":"AA"}"#,
                "unsupported OKP curve",
            ),
        ] {
            assert_eq!(
                PublicKey::for_proof(&obj(jwk), Alg::Es256).unwrap_err(),
                why,
                "{jwk}"
            );
        }
    }

    #[test]
    fn rsa_size_and_exponent_rules() {
        let rsa = |n: &[u8], e: &[u8]| {
            let jwk = obj(&format!(
                r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#,
                b64url(n),
                b64url(e)
            ));
            PublicKey::for_proof(&jwk, Alg::Rs256).map(|_| ())
        };
        let mut n2048 = vec![0xc5u8; 256];
        assert_eq!(rsa(&n2048, &[1, 0, 1]), Ok(()));
        assert_eq!(rsa(&n2048, &[3]), Ok(()));
        // Leading zero octet: not minimal (and refused by ring).
        let mut lead = vec![0u8];
        lead.extend_from_slice(&n2048);
        assert_eq!(
            rsa(&lead, &[1, 0, 1]),
            Err("jwk integer has a leading zero octet")
        );
        n2048[0] = 0x7f; // 2047 bits
        assert_eq!(rsa(&n2048, &[1, 0, 1]), Err("RSA key size out of range"));
        assert_eq!(rsa(&[0xc5; 512], &[1, 0, 1]), Ok(()));
        assert_eq!(
            rsa(&[0xc5; 513], &[1, 0, 1]),
            Err("RSA key size out of range")
        );
        let n = [0xc5u8; 256];
        assert_eq!(rsa(&n, &[1, 0, 0]), Err("RSA exponent not accepted"));
        assert_eq!(rsa(&n, &[1]), Err("RSA exponent not accepted"));
        assert_eq!(rsa(&n, &[1, 0, 0, 0, 1]), Err("RSA exponent not accepted"));
        assert_eq!(rsa(&n, &[]), Err("jwk integer is empty"));
        for m in ["p", "q", "dp", "dq", "qi", "oth"] {
            let jwk = obj(&format!(
                r#"{{"kty":"RSA","n":"{}","e":"AQAB","{m}":"AQAB"}}"#,
                b64url(&n)
            ));
            assert!(PublicKey::for_proof(&jwk, Alg::Rs256).is_err(), "{m}");
        }
    }
}
