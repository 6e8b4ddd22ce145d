//! The token of a request, from `phantom_token_source` or the `Authorization` header, and the
//! 401 when there is none or it is malformed.

use nginx_sys::NGX_LOG_INFO;
use ngx::http::Request;
use ngx::ngx_log_error;
use phantom_core::token::{auth_token, source_token, Scheme, TokenError};

use super::Step;
use crate::config::LocConf;
use crate::config::{Compat, DpopMode};
use crate::reject::{Challenge, Reject};

/// The token (and its scheme) from `phantom_token_source` or the `Authorization` header
/// (`Bearer`, or also `DPoP` where `phantom_token_dpop` allows it).
///
/// The slice points into the request's header memory or pool, which outlive the handler
/// (removing the source later copies, never overwrites), so it is detached from the borrow.
pub(super) fn extract<'a>(
    request: &Request,
    conf: &LocConf,
) -> Result<(Scheme, &'a [u8]), TokenError> {
    let (scheme, raw): (Scheme, &[u8]) = match conf.source {
        Some(cv) => {
            // SAFETY: the complex value was compiled at configuration time.
            let value = request
                .get_complex_value(unsafe { &*cv })
                .ok_or(TokenError::Missing)?;
            (Scheme::Bearer, source_token(value.as_bytes())?)
        }
        None => {
            let auth = request.as_ref().headers_in.authorization;
            let dpop = conf.pop.dpop() != DpopMode::Off;
            // SAFETY: authorization is NULL or points into the request's header list.
            match unsafe { auth.as_ref() } {
                None => return Err(TokenError::Missing),
                Some(h) => auth_token(h.value.as_bytes(), dpop)?,
            }
        }
    };
    // SAFETY: header values and complex values live in r->pool for the request's life.
    Ok((scheme, unsafe {
        core::slice::from_raw_parts(raw.as_ptr(), raw.len())
    }))
}

pub(super) fn reject_token(request: &Request, conf: &LocConf, e: TokenError) -> Step {
    let log = request.log();
    let challenge = match e {
        TokenError::Missing => {
            ngx_log_error!(NGX_LOG_INFO, log, "Authorization header not present");
            Challenge::Missing
        }
        TokenError::NotBearer => {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "Authorization header does not contain a bearer token"
            );
            Challenge::Missing
        }
        TokenError::Malformed | TokenError::TooLong => {
            if curity_sees_no_bearer(request, conf) {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    log,
                    "Authorization header does not contain a bearer token"
                );
            }
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "Authorization header contains a malformed bearer token"
            );
            Challenge::InvalidRequest
        }
    };
    Step::Reject(Reject::Unauthorized(challenge))
}

/// Under `phantom_token_compat curity`: whether Curity's module, which looks for `Bearer `
/// (case-insensitive, with its space) anywhere in the `Authorization` header, would call
/// the header not bearer (e.g. `Bearer` with no token), and so log that.
fn curity_sees_no_bearer(request: &Request, conf: &LocConf) -> bool {
    if conf.compat() != Compat::Curity || conf.source.is_some() {
        return false;
    }
    let auth = request.as_ref().headers_in.authorization;
    // SAFETY: authorization is NULL or points into the request's header list.
    unsafe { auth.as_ref() }.is_some_and(|h| {
        !h.value
            .as_bytes()
            .windows(7)
            .any(|w| w.eq_ignore_ascii_case(b"bearer "))
    })
}
