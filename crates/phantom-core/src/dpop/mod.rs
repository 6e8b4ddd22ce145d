//! DPoP proofs (RFC 9449) and certificate-bound tokens (RFC 8705).
//!
//! Cryptography (signatures, SHA-256, HMAC) comes from `ring` 0.17: measured within 10-30 % of
//! aws-lc-rs for ES256/RS256/PS256/EdDSA (ES384 is ~4x slower, keep it opt-in), the fastest of
//! the two to build (C via `cc` only) and already in the lockfile.
//!
//! Everything here is total over untrusted input: no panics, only `Err`/`None`/`false`.
//!
//! * [`verify_proof`]: the RFC 9449 §4.3 checks except replay and the `cnf.jkt` binding;
//! * [`thumbprint`], [`binding`], [`replay_key`]: what the caller needs for those two;
//! * [`make_nonce`], [`check_nonce`]: stateless server nonces (§8, §9);
//! * [`x5t_s256`], [`cert_der_from_header`]: RFC 8705 `x5t#S256` of a client certificate.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

mod htu;
mod json;
mod jwk;
mod mtls;
mod nonce;
mod proof;

pub use htu::{htu_matches, normalize_htu};
pub use mtls::{cert_der_from_header, x5t_s256, MAX_CERT_HEADER_LEN};
pub use nonce::{check_nonce, make_nonce, NONCE_STEP};
pub use proof::{
    verify_proof, ProofError, ProofInput, Verified, FUTURE_LEEWAY, MAX_JTI_LEN, MAX_PROOF_LEN,
};

/// A JWS algorithm allowed for DPoP proofs (RFC 7518, RFC 8037).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384 (about 15x the cost of ES256 to verify: opt-in).
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// Ed25519 (also sent as `Ed25519`, RFC 9864).
    EdDsa,
}

impl Alg {
    /// All supported algorithms.
    pub const ALL: [Alg; 5] = [Alg::Es256, Alg::Es384, Alg::Rs256, Alg::Ps256, Alg::EdDsa];

    /// The JWS `alg` name: "ES256", "ES384", "RS256", "PS256", "EdDSA".
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The algorithm of a JWS `alg` header value (case-sensitive, RFC 7515 §4.1.1).
    /// `Ed25519` (RFC 9864, sent by the `dpop` npm package v2) is EdDSA.
    pub fn from_jws(name: &str) -> Option<Alg> {
        match name {
            "ES256" => Some(Alg::Es256),
            "ES384" => Some(Alg::Es384),
            "RS256" => Some(Alg::Rs256),
            "PS256" => Some(Alg::Ps256),
            "EdDSA" | "Ed25519" => Some(Alg::EdDsa),
            _ => None,
        }
    }
}

/// Parses directive arguments like `["ES256", "RS256"]` (duplicates are dropped). The error
/// names the bad value; `none`, `HS*` and unknown names are refused, and so is an empty list.
pub fn parse_algs(args: &[&str]) -> Result<Vec<Alg>, String> {
    let mut out = Vec::new();
    for arg in args {
        let Some(alg) = Alg::from_jws(arg) else {
            let why = if arg.eq_ignore_ascii_case("none") {
                "unsigned proofs are never accepted"
            } else if arg
                .as_bytes()
                .get(..2)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"HS"))
            {
                "symmetric algorithms cannot be used for DPoP"
            } else {
                "supported: ES256 ES384 RS256 PS256 EdDSA"
            };
            return Err(format!(
                "invalid DPoP algorithm \"{}\": {why}",
                arg.escape_debug()
            ));
        };
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    if out.is_empty() {
        return Err("no DPoP algorithm given".to_string());
    }
    Ok(out)
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub(crate) fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Strict base64url without padding (non-canonical trailing bits are refused).
pub(crate) fn unb64url(data: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(data).ok()
}

/// `base64url(SHA-256(token))` without padding: the `ath` claim for an access token (§4.2).
/// Computed over the opaque token exactly as the client sent it.
pub fn ath(token: &[u8]) -> String {
    b64url(&sha256(token))
}

/// RFC 7638 thumbprint (base64url SHA-256) of a JWK JSON object: EC (P-256, P-384), RSA and
/// OKP Ed25519. Only the required members count; they must be well-formed base64url.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, &'static str> {
    jwk::thumbprint(jwk)
}

/// The confirmation claims of a token (`cnf.jkt`, `cnf.x5t#S256`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// `cnf.jkt`: the RFC 7638 thumbprint of the DPoP key the token is bound to.
    pub jkt: Option<String>,
    /// `cnf.x5t#S256`: the SHA-256 thumbprint of the client certificate (RFC 8705).
    pub x5t_s256: Option<String>,
}

/// Reads `cnf.jkt` and `cnf.x5t#S256` from a token's claims (or a top-level introspection
/// response).
///
/// Fails closed: a member that is present but not a non-empty string gives `Some("")`, which
/// matches no thumbprint, so such a token can never be used as an unbound Bearer token. A `cnf`
/// that is not an object is treated the same way for `jkt`.
pub fn binding(claims: &Map<String, Value>) -> Binding {
    let member = |v: Option<&Value>| match v {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => Some(String::new()),
    };
    match claims.get("cnf") {
        None => Binding::default(),
        Some(Value::Object(cnf)) => Binding {
            jkt: member(cnf.get("jkt")),
            x5t_s256: member(cnf.get("x5t#S256")),
        },
        Some(_) => Binding {
            jkt: Some(String::new()),
            x5t_s256: None,
        },
    }
}

/// Replay-cache key: the first 16 bytes of SHA-256("dpop-jti" || jkt || 0x00 || jti).
/// Binding to the key stops one client from burning another's `jti` values.
pub fn replay_key(jkt: &str, jti: &str) -> [u8; 16] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"dpop-jti");
    ctx.update(jkt.as_bytes());
    ctx.update(&[0]);
    ctx.update(jti.as_bytes());
    let d = ctx.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alg_names_round_trip() {
        for a in Alg::ALL {
            assert_eq!(Alg::from_jws(a.name()), Some(a));
        }
        assert_eq!(Alg::from_jws("Ed25519"), Some(Alg::EdDsa));
        assert_eq!(Alg::from_jws("es256"), None);
        assert_eq!(Alg::from_jws("none"), None);
    }

    #[test]
    fn parses_directive_algs() {
        assert_eq!(
            parse_algs(&["ES256", "RS256", "ES256"]),
            Ok(vec![Alg::Es256, Alg::Rs256])
        );
        assert_eq!(
            parse_algs(&["EdDSA", "PS256", "ES384"]),
            Ok(vec![Alg::EdDsa, Alg::Ps256, Alg::Es384])
        );
        let e = parse_algs(&["ES256", "none"]).unwrap_err();
        assert!(e.contains("\"none\""), "{e}");
        let e = parse_algs(&["HS256"]).unwrap_err();
        assert!(e.contains("\"HS256\"") && e.contains("symmetric"), "{e}");
        let e = parse_algs(&["ES512"]).unwrap_err();
        assert!(e.contains("\"ES512\""), "{e}");
        assert!(parse_algs(&[]).is_err());
        assert!(parse_algs(&["H"]).is_err());
        assert!(parse_algs(&["\u{e9}"]).is_err());
    }

    #[test]
    fn ath_of_the_rfc_token() {
        // RFC 9449 §7.1 Fig. 13 / §5 Fig. 6.
        assert_eq!(
            ath(b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    fn obj(s: &str) -> Map<String, Value> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn reads_confirmation_claims() {
        assert_eq!(binding(&obj(r#"{"sub":"a"}"#)), Binding::default());
        assert_eq!(
            binding(&obj(r#"{"cnf":{"jkt":"abc","x5t#S256":"def"}}"#)),
            Binding {
                jkt: Some("abc".into()),
                x5t_s256: Some("def".into())
            }
        );
        assert_eq!(
            binding(&obj(r#"{"cnf":{"x5t#S256":"def"}}"#)),
            Binding {
                jkt: None,
                x5t_s256: Some("def".into())
            }
        );
        // Malformed confirmation members fail closed.
        assert_eq!(
            binding(&obj(r#"{"cnf":{"jkt":1,"x5t#S256":""}}"#)),
            Binding {
                jkt: Some(String::new()),
                x5t_s256: Some(String::new())
            }
        );
        assert_eq!(binding(&obj(r#"{"cnf":"x"}"#)).jkt, Some(String::new()));
    }

    #[test]
    fn replay_keys_depend_on_key_and_jti() {
        let a = replay_key("k", "j");
        assert_eq!(a, replay_key("k", "j"));
        assert_ne!(a, replay_key("k", "j2"));
        assert_ne!(a, replay_key("k2", "j"));
        // The separator keeps the split unambiguous.
        assert_ne!(replay_key("ab", "c"), replay_key("a", "bc"));
        let full = sha256(b"dpop-jtik\0j");
        assert_eq!(a[..], full[..16]);
    }
}
