//! Makes DPoP proofs (RFC 9449) for the tests, the benchmarks and the development identity
//! server. Test tooling: the nginx module only verifies proofs and never links this crate.
#![forbid(unsafe_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use phantom_core::dpop::{ath, thumbprint, Alg};
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Map, Value};

/// A fixed 2048-bit RSA test key, PKCS#8 DER in base64 (ring cannot generate RSA keys).
pub const TEST_RSA_2048_PKCS8_B64: &str = include_str!("../testdata/rsa2048.pk8.b64");

/// A private key that signs DPoP proofs.
pub enum SigningKey {
    /// A P-256 or P-384 key, for ES256 or ES384.
    Ecdsa(Alg, EcdsaKeyPair),
    /// An Ed25519 key, for EdDSA.
    Ed25519(Ed25519KeyPair),
    /// An RSA key, for RS256 or PS256.
    Rsa(Alg, RsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.alg().name())
    }
}

fn ecdsa_alg(alg: Alg) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match alg {
        Alg::Es256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        Alg::Es384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

impl SigningKey {
    /// A fresh key for ES256, ES384 or EdDSA, with its PKCS#8 document. RSA keys cannot be
    /// generated with ring: use [`SigningKey::from_pkcs8`] (e.g. [`SigningKey::test_rsa`]).
    pub fn generate(alg: Alg) -> Result<(SigningKey, Vec<u8>), &'static str> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            Alg::Es256 | Alg::Es384 => {
                let a = ecdsa_alg(alg).ok_or("not an ECDSA alg")?;
                EcdsaKeyPair::generate_pkcs8(a, &rng).map_err(|_| "key generation failed")?
            }
            Alg::EdDsa => {
                Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "key generation failed")?
            }
            Alg::Rs256 | Alg::Ps256 => return Err("ring cannot generate RSA keys"),
        };
        let der = pkcs8.as_ref().to_vec();
        Ok((SigningKey::from_pkcs8(alg, &der)?, der))
    }

    /// A key from its PKCS#8 DER document, for signing with `alg`.
    pub fn from_pkcs8(alg: Alg, pkcs8: &[u8]) -> Result<SigningKey, &'static str> {
        let bad = |_| "key rejected";
        Ok(match alg {
            Alg::Es256 | Alg::Es384 => {
                let a = ecdsa_alg(alg).ok_or("not an ECDSA alg")?;
                SigningKey::Ecdsa(
                    alg,
                    EcdsaKeyPair::from_pkcs8(a, pkcs8, &SystemRandom::new()).map_err(bad)?,
                )
            }
            Alg::EdDsa => SigningKey::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(bad)?),
            Alg::Rs256 | Alg::Ps256 => {
                SigningKey::Rsa(alg, RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?)
            }
        })
    }

    /// The fixed RSA test key ([`TEST_RSA_2048_PKCS8_B64`]) for RS256 or PS256.
    pub fn test_rsa(alg: Alg) -> Result<SigningKey, &'static str> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(TEST_RSA_2048_PKCS8_B64.trim())
            .map_err(|_| "bad test key")?;
        SigningKey::from_pkcs8(alg, &der)
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        match self {
            SigningKey::Ecdsa(alg, _) | SigningKey::Rsa(alg, _) => *alg,
            SigningKey::Ed25519(_) => Alg::EdDsa,
        }
    }

    /// The public key as a JWK object (required members only).
    pub fn public_jwk(&self) -> Map<String, Value> {
        let v = match self {
            SigningKey::Ecdsa(alg, k) => {
                let point = k.public_key().as_ref();
                let n = (point.len().saturating_sub(1)) / 2;
                let x = point.get(1..1 + n).unwrap_or_default();
                let y = point.get(1 + n..).unwrap_or_default();
                let crv = if *alg == Alg::Es384 { "P-384" } else { "P-256" };
                json!({"kty": "EC", "crv": crv, "x": b64url(x), "y": b64url(y)})
            }
            SigningKey::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(k.public_key().as_ref())})
            }
            SigningKey::Rsa(_, k) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "n": b64url(&c.n), "e": b64url(&c.e)})
            }
        };
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// RFC 7638 thumbprint of the public key (the `cnf.jkt` of tokens bound to it).
    pub fn jkt(&self) -> String {
        thumbprint(&self.public_jwk()).unwrap_or_default()
    }

    /// Signs `b64url(header).b64url(payload)` as given (for malformed test proofs).
    pub fn sign_compact(&self, header: &[u8], payload: &[u8]) -> Result<String, &'static str> {
        let input = format!("{}.{}", b64url(header), b64url(payload));
        let sig = self.sign(input.as_bytes())?;
        Ok(format!("{input}.{}", b64url(&sig)))
    }

    /// The JWS signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, &'static str> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Ecdsa(_, k) => k
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "signing failed"),
            SigningKey::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
            SigningKey::Rsa(alg, k) => {
                let padding: &'static dyn signature::RsaEncoding = if *alg == Alg::Ps256 {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(padding, &rng, msg, &mut sig)
                    .map_err(|_| "signing failed")?;
                Ok(sig)
            }
        }
    }

    /// Signs a proof with header `{"typ":"dpop+jwt","alg":..,"jwk":..}` and `claims`.
    pub fn sign_claims(&self, claims: &Map<String, Value>) -> Result<String, &'static str> {
        let header = json!({"typ": "dpop+jwt", "alg": self.alg().name(), "jwk": self.public_jwk()});
        let header = serde_json::to_vec(&header).map_err(|_| "JSON")?;
        let payload = serde_json::to_vec(claims).map_err(|_| "JSON")?;
        self.sign_compact(&header, &payload)
    }

    /// A proof for `htm htu` made at `iat`, with `ath` when `token` is given and `nonce` when
    /// given.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        iat: i64,
        jti: &str,
        token: Option<&[u8]>,
        nonce: Option<&str>,
    ) -> Result<String, &'static str> {
        let mut claims = Map::new();
        claims.insert("jti".into(), jti.into());
        claims.insert("htm".into(), htm.into());
        claims.insert("htu".into(), htu.into());
        claims.insert("iat".into(), iat.into());
        if let Some(t) = token {
            claims.insert("ath".into(), ath(t).into());
        }
        if let Some(n) = nonce {
            claims.insert("nonce".into(), n.into());
        }
        self.sign_claims(&claims)
    }
}

/// An ES256 proof signed with the P-256 key in `pkcs8` (see [`SigningKey::proof`]).
pub fn sign_proof_es256(
    pkcs8: &[u8],
    htm: &str,
    htu: &str,
    iat: i64,
    jti: &str,
    token: Option<&[u8]>,
    nonce: Option<&str>,
) -> Result<String, &'static str> {
    SigningKey::from_pkcs8(Alg::Es256, pkcs8)?.proof(htm, htu, iat, jti, token, nonce)
}

fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}
