//! What an introspection reply means: grant, inactive, or which failure.
//!
//! Only the identity server's answers reach here, so error-level lines are about the
//! identity server or the gateway's configuration; anything a client controls (its token,
//! closing its connection) is decided and logged at `info` at most — except that
//! `phantom_token_compat curity` also writes Curity's `error` line for every identity-server
//! status but 200 and 204 (a 400 for a bad token, a 429), as Curity's module does.

use std::rc::Rc;

use nginx_sys::{NGX_LOG_ERR, NGX_LOG_INFO};
use ngx::http::Request;
use ngx::{ngx_log_debug_http, ngx_log_error};
use phantom_core::introspection::{content_type_ok, interpret, token_rejected, Verdict};

use crate::cache::{Entry, Stale};
use crate::config::Compat;
use crate::config::LocConf;
use crate::introspect::{Reply, MAX_RESPONSE};

/// What an introspection (or a coalesced one) decided.
#[derive(Clone)]
pub(crate) enum Outcome {
    Decided(Entry),
    /// The identity server returned a JWT whose `exp` has passed: 401, never cached.
    Expired,
    /// The identity server answered 503 (with its `Retry-After`, if any).
    Unavailable(Option<u64>),
    /// No answer: connection refused, closed or timed out.
    Unreachable,
    Failed,
    /// An unexpected status under `phantom_token_compat curity`, which answers 500.
    ServerError,
    /// The introspection location refused with 429 (e.g. `limit_req`): the client retries.
    RateLimited(Option<u64>),
    /// Introspection was unavailable; an expired entry is served (`stale_if_error`).
    Stale(Stale),
    /// The leader ended without deciding; introspect again.
    Retry,
}

/// nginx's status for a request whose client went away.
const CLIENT_CLOSED: usize = 499;

/// Maps the introspection reply to an outcome, logging why when it is not a grant.
pub(crate) fn decide(request: &Request, conf: &LocConf, reply: &mut Reply) -> Outcome {
    let log = request.log();
    let status = reply.status;
    if conf.compat() == Compat::Curity {
        ngx_log_debug_http!(request, "auth request done status = {status}");
    }
    if status == CLIENT_CLOSED {
        ngx_log_error!(
            NGX_LOG_INFO,
            log,
            "Client closed the request during introspection"
        );
        return Outcome::Retry;
    }
    if reply.broken {
        if !matches!(status, 200 | 204) {
            curity_status_line(request, conf, status);
        }
        ngx_log_error!(
            NGX_LOG_ERR,
            log,
            "Introspection response could not be read completely (status {status})"
        );
        return Outcome::Failed;
    }
    if status == 429 {
        curity_status_line(request, conf, status);
        ngx_log_error!(
            NGX_LOG_INFO,
            log,
            "Introspection was rate limited (429); answering 429"
        );
        return Outcome::RateLimited(reply.retry_after);
    }
    if !reply.from_upstream && status >= 500 {
        curity_status_line(request, conf, status);
        if reply.received > 0 {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "Introspection response is not valid HTTP (status {status})"
            );
            return Outcome::Failed;
        }
        ngx_log_error!(NGX_LOG_ERR, log, "Identity server unavailable: introspection subrequest failed with status {status} (connection refused, closed or timed out)");
        return Outcome::Unreachable;
    }
    match status {
        200 => decide_body(request, conf, reply),
        204 => Outcome::Decided(Entry::Inactive),
        400 if token_rejected(status, &reply.body) => {
            curity_status_line(request, conf, status);
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "The identity server rejected the access token as invalid"
            );
            Outcome::Decided(Entry::Inactive)
        }
        503 => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "Introspection subrequest returned response code: 503"
            );
            Outcome::Unavailable(reply.retry_after)
        }
        _ => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "Introspection subrequest returned response code: {status}"
            );
            failed_status(conf, status)
        }
    }
}

/// Curity's module logs every status but 200 and 204 at `error`; under
/// `phantom_token_compat curity` its line is written too where the module's own differs.
fn curity_status_line(request: &Request, conf: &LocConf, status: usize) {
    if conf.compat() == Compat::Curity {
        ngx_log_error!(
            NGX_LOG_ERR,
            request.log(),
            "Introspection subrequest returned response code: {status}"
        );
    }
}

/// Curity's module answers 502 for 401, 403, 404 and 5xx, and 500 for anything else.
fn failed_status(conf: &LocConf, status: usize) -> Outcome {
    match conf.compat() {
        Compat::Curity if !matches!(status, 401 | 403 | 404 | 500..) => Outcome::ServerError,
        _ => Outcome::Failed,
    }
}

fn decide_body(request: &Request, conf: &LocConf, reply: &mut Reply) -> Outcome {
    let log = request.log();
    if reply.too_large {
        // Curity's text for a JWT it cannot hold; the module's own line gives the real limit.
        if conf.compat() == Compat::Curity {
            ngx_log_error!(NGX_LOG_ERR, log, "The introspection response buffer is too small to contain the JWT: increase the proxy_buffer_size configuration setting");
        }
        ngx_log_error!(NGX_LOG_ERR, log, "Failed to obtain JWT access token from introspection response or cache: response larger than {MAX_RESPONSE} bytes");
        return Outcome::Failed;
    }
    if !content_type_ok(conf.format(), &reply.content_type) {
        let ct = String::from_utf8_lossy(&reply.content_type);
        let want = conf.format().media_type();
        ngx_log_error!(NGX_LOG_ERR, log, "Failed to obtain JWT access token from introspection response or cache: Content-Type \"{ct}\" instead of \"{want}\"");
        return Outcome::Failed;
    }
    let now = crate::glue::time::now_ms() / 1000;
    match interpret(conf.format(), &reply.body, now) {
        Verdict::Active { info, .. } if info.exp <= now => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "Introspection returned an expired JWT; treating the token as inactive"
            );
            Outcome::Expired
        }
        Verdict::Active { jwt, info } => {
            reply.exp = info.exp;
            Outcome::Decided(Entry::active(
                Rc::from(jwt.as_slice()),
                Rc::from(info.scope.as_str()),
            ))
        }
        Verdict::Inactive => Outcome::Decided(Entry::Inactive),
        Verdict::Invalid(reason) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "Failed to obtain JWT access token from introspection response or cache: {reason}"
            );
            Outcome::Failed
        }
    }
}
