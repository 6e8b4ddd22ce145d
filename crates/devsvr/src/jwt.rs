//! HS256 JWTs signed with a fixed development key (never use it for anything real).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// The development signing key. Public on purpose: this server is for demos and tests only.
pub const DEV_KEY: &[u8] = b"ngx-phantom-token development key - not a secret";

/// Signs `claims` as a compact JWS with the given `typ`.
pub fn sign(claims: &Map<String, Value>, typ: &str) -> String {
    let header = serde_json::json!({ "alg": "HS256", "typ": typ, "kid": "dev" });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(DEV_KEY).expect("HMAC accepts any key length");
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Signs `claims`, padding them with a `pad` claim so the JWT is at least `min_len` bytes.
pub fn sign_padded(claims: &Map<String, Value>, typ: &str, min_len: usize) -> String {
    let jwt = sign(claims, typ);
    if jwt.len() >= min_len {
        return jwt;
    }
    let mut padded = claims.clone();
    // Each payload byte costs 4/3 bytes of base64; the "pad" member adds ~9 bytes of JSON.
    let extra = (min_len - jwt.len()) * 3 / 4 + 3;
    padded.insert("pad".into(), Value::String("x".repeat(extra)));
    sign(&padded, typ)
}

/// Decodes a JWT payload without verifying it (for tests).
pub fn claims(jwt: &str) -> Option<Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_pads() {
        let mut c = Map::new();
        c.insert("sub".into(), "a".into());
        let j = sign(&c, "at+jwt");
        assert_eq!(j.split('.').count(), 3);
        assert_eq!(claims(&j).unwrap()["sub"], "a");
        let p = sign_padded(&c, "at+jwt", 16 * 1024);
        assert!(
            p.len() >= 16 * 1024 && p.len() < 16 * 1024 + 64,
            "{}",
            p.len()
        );
    }
}
