//! DPoP proof verification (RFC 9449 §4.3), cheap checks first, the signature last.

use super::htu::htu_matches;
use super::jwk::PublicKey;
use super::nonce::check_nonce;
use super::{ath, json, unb64url, Alg};
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

/// Why [`verify_proof`] refused a proof, as the two RFC 9449 challenges the module sends.
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
