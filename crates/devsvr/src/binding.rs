//! Sender-constrained tokens at the token endpoint: the `cnf` claim from a `DPoP` proof
//! (RFC 9449 §5) or, for development, a certificate thumbprint given in the form (RFC 8705).

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use phantom_core::dpop::{self, Alg, ProofInput};

use crate::http::{Recorded, Reply};
use crate::idsvr::now;

/// Algorithms the token endpoint accepts in DPoP proofs.
pub const DPOP_ALGS: [Alg; 4] = [Alg::Es256, Alg::Rs256, Alg::Ps256, Alg::EdDsa];
/// Maximum age in seconds of a DPoP proof at the token endpoint.
pub const DPOP_WINDOW: u64 = 60;

/// The `cnf` claim of a token requested with `req`: `jkt` of the key of a valid `DPoP` proof
/// (RFC 9449 §5), `x5t#S256` from the form parameter `cnf_x5t_s256`. The latter is for
/// development only: it lets a demo bind a token to a certificate without TLS; a real
/// authorization server takes the thumbprint from the mutual-TLS connection (RFC 8705 §3).
pub(crate) fn confirmation(
    req: &Recorded,
    fields: &HashMap<String, String>,
) -> Result<Map<String, Value>, Reply> {
    let mut cnf = Map::new();
    let proofs: Vec<&str> = req
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("dpop"))
        .map(|(_, v)| v.as_str())
        .collect();
    match proofs.as_slice() {
        [] => {}
        [proof] => {
            let jkt = verify_token_request_proof(req, proof).map_err(|why| {
                Reply::json(
                    400,
                    &json!({ "error": "invalid_dpop_proof", "error_description": why }),
                )
            })?;
            cnf.insert("jkt".into(), jkt.into());
        }
        _ => {
            return Err(Reply::json(
                400,
                &json!({ "error": "invalid_dpop_proof", "error_description": "more than one DPoP header" }),
            ))
        }
    }
    if let Some(x5t) = fields.get("cnf_x5t_s256") {
        if x5t.is_empty() {
            return Err(Reply::json(
                400,
                &json!({ "error": "invalid_request", "error_description": "cnf_x5t_s256 is empty" }),
            ));
        }
        cnf.insert("x5t#S256".into(), x5t.clone().into());
    }
    Ok(cnf)
}

/// Verifies a token request's proof (`htm` POST, `htu` this endpoint as the client addressed
/// it, no `ath`) and returns the RFC 7638 thumbprint of its key.
fn verify_token_request_proof(req: &Recorded, proof: &str) -> Result<String, String> {
    let host = req.header("host").unwrap_or("");
    let path = req.target.split('?').next().unwrap_or("");
    let url = format!("http://{host}{path}");
    let input = ProofInput {
        proof: proof.as_bytes(),
        method: req.method.as_bytes(),
        url: &url,
        token: b"",
        now: now(),
        window: DPOP_WINDOW,
        algs: &DPOP_ALGS,
        nonce_key: None,
    };
    dpop::verify_proof(&input).map_err(|e| e.to_string())?;
    // The signature verified with the header's `jwk`: the token is bound to that key.
    let header = proof
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Map<String, Value>>(&h).ok())
        .ok_or("DPoP proof header is not a JSON object")?;
    match header.get("jwk") {
        Some(Value::Object(jwk)) => dpop::thumbprint(jwk).map_err(str::to_string),
        _ => Err("DPoP proof has no jwk header".into()),
    }
}
