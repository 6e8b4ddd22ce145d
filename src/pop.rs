//! Proof of possession: DPoP proofs (RFC 9449) and certificate-bound tokens (RFC 8705).
//!
//! The proof is verified on every request, cache hit or miss, before the token is looked
//! up; the binding (`cnf.jkt`, `cnf.x5t#S256`) is checked once the JWT is known; the proof
//! is remembered (replay cache in the zone) only after every other check passed, so a
//! failed request never burns a `jti`; with a Redis tier the handler's `proof` step then
//! claims it for the whole fleet. The checks themselves are `phantom_core::dpop`.

use nginx_sys::{ngx_http_request_t, NGX_HTTP_VERSION_20, NGX_LOG_ERR, NGX_LOG_INFO};
use ngx::http::Request;
use ngx::ngx_log_error;
use phantom_core::dpop::{self, Binding, ProofError, ProofInput, Verified};
use phantom_core::token::Scheme;

use crate::cache::{ReplayError, ZoneConf};
use crate::config::LocConf;
use crate::config::{DpopMode, Mtls};
use crate::glue::headers;
use crate::reject::{Challenge, DpopReject, Reject};

/// Seconds a proof may be dated in the future (clock skew), as the window allows in the past.
const FUTURE_LEEWAY: i64 = 10;

/// Checks the scheme and, for `DPoP`, the proof; returns what the proof established.
pub(crate) fn check_request(
    request: &Request,
    conf: &LocConf,
    scheme: Scheme,
    token: &[u8],
    zone: Option<&ZoneConf>,
) -> Result<Option<Verified>, Reject> {
    let mode = conf.pop.dpop();
    // The common case, DPoP off: no header scan on the hot path (the scheme is Bearer then).
    if mode == DpopMode::Off {
        return Ok(None);
    }
    let r: *const ngx_http_request_t = request.into();
    // SAFETY: r is the valid request the handler runs for.
    let proofs: Vec<&[u8]> =
        unsafe { headers::values(&(*r).headers_in.headers, b"dpop") }.collect();
    match scheme {
        Scheme::Bearer if mode == DpopMode::Required => {
            ngx_log_error!(
                NGX_LOG_INFO,
                request.log(),
                "DPoP is required but the token came as Bearer"
            );
            Err(Reject::Dpop(DpopReject::Required))
        }
        Scheme::Bearer if mode == DpopMode::On && !proofs.is_empty() => {
            ngx_log_error!(
                NGX_LOG_INFO,
                request.log(),
                "A Bearer token came with a DPoP proof"
            );
            Err(Reject::Dpop(DpopReject::Ambiguous))
        }
        Scheme::Bearer => Ok(None),
        Scheme::Dpop => verify(request, conf, token, &proofs, zone).map(Some),
    }
}

fn verify(
    request: &Request,
    conf: &LocConf,
    token: &[u8],
    proofs: &[&[u8]],
    zone: Option<&ZoneConf>,
) -> Result<Verified, Reject> {
    let invalid = |why: &'static str| {
        ngx_log_error!(NGX_LOG_INFO, request.log(), "Invalid DPoP proof: {why}");
        Reject::Dpop(DpopReject::Proof(why))
    };
    let [proof] = proofs else {
        return Err(invalid("a request needs exactly one DPoP header"));
    };
    let Some(url) = request_url(request, conf) else {
        return Err(invalid("the request URL could not be determined"));
    };
    let nonce_key = (conf.pop.nonce == 1)
        .then(|| zone.and_then(|z| z.zone.nonce_key()))
        .flatten();
    let now = crate::glue::time::now_ms() / 1000;
    let method = request.as_ref().method_name.as_bytes();
    let input = ProofInput {
        proof,
        method,
        url: &url,
        token,
        now,
        window: conf.pop.window(),
        algs: conf.pop.algs(),
        nonce_key: nonce_key.as_ref().map(|k| &k[..]),
    };
    match dpop::verify_proof(&input) {
        Ok(v) => Ok(v),
        Err(ProofError::Invalid(why)) => Err(invalid(why)),
        Err(ProofError::UseNonce) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                request.log(),
                "DPoP proof without a valid nonce"
            );
            let key = nonce_key.unwrap_or([0; 32]);
            Err(Reject::Dpop(DpopReject::UseNonce(dpop::make_nonce(
                &key, now,
            ))))
        }
    }
}

/// `scheme://authority/path` of the request as the client addressed it: the scheme and
/// authority from `phantom_token_dpop_url`, else from the connection and `Host`; the path
/// as sent (not `$uri`, which is decoded and rewritten).
fn request_url(request: &Request, conf: &LocConf) -> Option<String> {
    let req = request.as_ref();
    let unparsed = req.unparsed_uri.as_bytes();
    let path = unparsed.split(|c| *c == b'?').next().unwrap_or(unparsed);
    let path = core::str::from_utf8(path).ok()?;
    let base = match conf.pop.url {
        // SAFETY: the complex value was compiled at configuration time.
        Some(cv) => request
            .get_complex_value(unsafe { &*cv })?
            .to_str()
            .ok()?
            .to_string(),
        None => {
            // SAFETY: the connection is checked for NULL first, and is live with its request.
            let scheme = if req.connection.is_null() || unsafe { (*req.connection).ssl }.is_null() {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{}", core::str::from_utf8(authority(req)?).ok()?)
        }
    };
    Some(format!("{}{path}", base.trim_end_matches('/')))
}

/// The authority the client addressed: its `Host` header, else, over HTTP/2 and HTTP/3, its
/// `:authority`: an HTTP/3 request needs no `Host`, and nginx keeps that pseudo-header's value
/// as `r->host_start..host_end`, port included (`r->headers_in.server` has the host without
/// the port; for an HTTP/1 absolute URI `host_end` stops before the port too, so HTTP/1 has
/// no fallback).
fn authority(req: &ngx_http_request_t) -> Option<&[u8]> {
    // SAFETY: host is NULL or an element of the request's header list.
    if let Some(host) = unsafe { req.headers_in.host.as_ref() } {
        return Some(host.value.as_bytes());
    }
    if req.http_version < NGX_HTTP_VERSION_20 as usize {
        return None;
    }
    let (start, end) = (req.host_start, req.host_end);
    if start.is_null() || end.is_null() || end <= start {
        return None;
    }
    // SAFETY: over HTTP/2 and HTTP/3 nginx sets both to the bounds of the `:authority`
    // value, which it keeps in the stream's pool (HTTP/3 copies QPACK dynamic-table values
    // there too): alive at least as long as the request.
    Some(unsafe { core::slice::from_raw_parts(start, end.offset_from(start) as usize) })
}

/// Checks the token's confirmation claims against the request: a DPoP-bound token needs a
/// proof with its key, a certificate-bound one (with `phantom_token_mtls`) the certificate.
pub(crate) fn check_binding(
    request: &Request,
    conf: &LocConf,
    proof: Option<&Verified>,
    binding: &Binding,
) -> Result<(), Reject> {
    let log = request.log();
    match (proof, &binding.jkt) {
        (Some(p), Some(jkt)) if *jkt == p.jkt => {}
        (Some(_), _) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "The DPoP proof's key is not the token's (cnf.jkt)"
            );
            return Err(Reject::Dpop(DpopReject::Binding(
                "Invalid DPoP key binding",
            )));
        }
        (None, Some(_)) => {
            ngx_log_error!(NGX_LOG_INFO, log, "A DPoP-bound token came as Bearer");
            return Err(Reject::Dpop(DpopReject::Downgrade));
        }
        (None, None) => {}
    }
    if matches!(conf.pop.mtls(), Mtls::Off) {
        return Ok(());
    }
    let Some(der) = client_certificate(request, conf) else {
        ngx_log_error!(
            NGX_LOG_INFO,
            log,
            "A certificate-bound token came without a client certificate"
        );
        return Err(token_rejected(proof));
    };
    if binding.x5t_s256.as_deref() != Some(dpop::x5t_s256(&der).as_str()) {
        ngx_log_error!(
            NGX_LOG_INFO,
            log,
            "The client certificate is not the token's (cnf.x5t#S256)"
        );
        return Err(token_rejected(proof));
    }
    Ok(())
}

/// `invalid_token` on the scheme the client used.
fn token_rejected(proof: Option<&Verified>) -> Reject {
    match proof {
        Some(_) => Reject::Dpop(DpopReject::Binding("Invalid certificate binding")),
        None => Reject::Unauthorized(Challenge::InvalidToken),
    }
}

/// The DER of the client certificate: this connection's, or the one a trusted TLS
/// terminator put in the `phantom_token_mtls` value.
fn client_certificate(request: &Request, conf: &LocConf) -> Option<Vec<u8>> {
    let cv = match conf.pop.mtls() {
        Mtls::Off => return None,
        Mtls::Tls(cv) | Mtls::Var(cv) => cv,
    };
    // SAFETY: the complex value was compiled at configuration time.
    let value = request.get_complex_value(unsafe { &*cv })?;
    dpop::cert_der_from_header(value.as_bytes())
}

/// The rejection of a proof used before (`elsewhere`: where, for the log line).
pub(crate) fn replayed(request: &Request, elsewhere: &str) -> Reject {
    ngx_log_error!(
        NGX_LOG_INFO,
        request.log(),
        "Invalid DPoP proof: replayed{elsewhere}"
    );
    Reject::Dpop(DpopReject::Proof("replayed proof"))
}

/// How long the fleet remembers a proof (ms): as long as any instance may still accept it
/// after its first use, wherever its `iat` was in the window (up to the future leeway), and
/// one second more. Dated from the first use, so clocks that differ a little between
/// instances do not shorten it.
pub(crate) fn fleet_memory_ms(conf: &LocConf) -> u64 {
    (conf.pop.window() + FUTURE_LEEWAY as u64 + 1) * 1000
}

/// Remembers the proof until it leaves the window; a second use is a replay.
pub(crate) fn remember(
    request: &Request,
    conf: &LocConf,
    zone: &ZoneConf,
    proof: &Verified,
) -> Result<(), Reject> {
    let key =
        phantom_core::digest::keyed_digest(b"dpop-jti", &dpop::replay_key(&proof.jkt, &proof.jti));
    let window = conf.pop.window() as i64;
    let until = proof
        .iat
        .saturating_add(window + FUTURE_LEEWAY + 1)
        .saturating_mul(1000);
    match zone
        .zone
        .remember_proof(&key, until, crate::glue::time::now_ms())
    {
        Ok(()) => Ok(()),
        Err(ReplayError::Replayed) => Err(replayed(request, "")),
        Err(ReplayError::Full) => {
            ngx_log_error!(NGX_LOG_ERR, request.log(), "DPoP replay cache of zone \"{}\" is full of live proofs; refusing (enlarge the zone or shorten phantom_token_dpop_window)", zone.name);
            Err(Reject::Unavailable {
                retry_after: Some(1),
                unreachable: false,
            })
        }
    }
}
