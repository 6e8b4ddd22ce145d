//! The access-phase handler: a small state machine over the request context.
//!
//! First pass: extract the token, look it up in the cache, else join or start an
//! introspection and return `NGX_AGAIN`. Later passes: decide from the result, then
//! forward `Bearer <JWT>` upstream or answer with the module's error response.

use std::rc::Rc;

use nginx_sys::{
    ngx_http_request_t, ngx_int_t, ngx_str_t, ngx_timeofday, NGX_AGAIN, NGX_DECLINED,
    NGX_HTTP_NO_CONTENT, NGX_HTTP_OPTIONS, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::{ngx_log_debug_http, ngx_log_error};
use phantom_core::introspection::{content_type_ok, interpret, Verdict};
use phantom_core::token::{bearer_token, source_token, TokenError};

use crate::cache::{CacheStatus, Entry, Lookup, ZoneConf};
use crate::ctx::{self, Ctx, Phase};
use crate::introspect::{self, Reply, MAX_RESPONSE};
use crate::respond::{self, Reject};
use crate::{coalesce, headers, LocConf, Module};

/// What an introspection (or a coalesced one) decided.
#[derive(Clone)]
pub enum Outcome {
    Decided(Entry),
    /// The identity server returned a JWT whose `exp` has passed: 401, never cached.
    Expired,
    Unavailable(Option<u64>),
    Failed,
    /// The leader ended without deciding; introspect again.
    Retry,
}

/// The access phase handler registered in postconfiguration.
pub extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a valid request.
    handle(unsafe { Request::from_ngx_http_request(r) })
}

fn handle(request: &mut Request) -> ngx_int_t {
    if !request.is_main() {
        return NGX_DECLINED as ngx_int_t;
    }
    let Some(conf) = Module::location_conf(request) else {
        return NGX_DECLINED as ngx_int_t;
    };
    if !conf.enabled() {
        ngx_log_debug_http!(request, "Module disabled");
        return NGX_DECLINED as ngx_int_t;
    }
    // Curity's order: OPTIONS is answered before the endpoint is checked.
    if request.as_ref().method == NGX_HTTP_OPTIONS as usize {
        if conf.allow_preflight == 1 {
            return NGX_DECLINED as ngx_int_t;
        }
        ngx_log_debug_http!(request, "Not processing OPTIONS request");
        return NGX_HTTP_NO_CONTENT as ngx_int_t;
    }
    let Some(endpoint) = conf.endpoint else {
        ngx_log_error!(
            NGX_LOG_WARN,
            request.log(),
            "Module not configured properly: missing introspection endpoint"
        );
        return NGX_DECLINED as ngx_int_t;
    };
    let r: *mut ngx_http_request_t = request.into();
    // SAFETY: r is the valid main request this handler was called for.
    if let Some(ctx) = unsafe { ctx::get(r) } {
        return resume(request, conf, ctx, endpoint);
    }
    ngx_log_debug_http!(request, "Handling request to convert token to JWT");
    begin(request, conf, endpoint)
}

/// First pass: token, cache, then coalesce or introspect.
fn begin(request: &mut Request, conf: &LocConf, endpoint: ngx_str_t) -> ngx_int_t {
    let r: *mut ngx_http_request_t = request.into();
    let token = match extract(request, conf) {
        Ok(t) => t,
        Err(e) => return reject_token(request, conf, e),
    };
    // SAFETY: r is a valid main request.
    let Some(ctx) = (unsafe { ctx::create(r) }) else {
        return 500;
    };
    ctx.digest = phantom_core::digest::token_digest(token);
    lookup_or_introspect(request, conf, ctx, endpoint, token)
}

fn lookup_or_introspect(
    request: &mut Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    endpoint: ngx_str_t,
    token: &[u8],
) -> ngx_int_t {
    let r: *mut ngx_http_request_t = request.into();
    let zone = zone(request, conf);
    let mut elsewhere = false;
    if let Some(zone) = zone {
        match zone.lookup(&ctx.digest, now_ms()) {
            Lookup::Hit(entry) => {
                ctx.cache_status = CacheStatus::Hit;
                ctx.phase = Phase::Done;
                return apply(request, conf, ctx, Outcome::Decided(entry));
            }
            Lookup::Pending => elsewhere = true,
            Lookup::Miss(status) => ctx.cache_status = status,
        }
    }
    if !coalesce::lead(&ctx.digest) {
        // SAFETY: r is a valid main request that will wait with NGX_AGAIN.
        if unsafe { coalesce::join(&ctx.digest, r) } {
            ctx.phase = Phase::Coalesced;
            return NGX_AGAIN as ngx_int_t;
        }
    } else {
        ctx.leading = true;
    }
    if let Some(zone) = zone {
        if elsewhere || !zone.claim(&ctx.digest, now_ms()) {
            return await_other_worker(r, ctx);
        }
    }
    introspect(request, conf, ctx, endpoint, token)
}

/// Waits (polling the zone) for another worker's introspection of the same token.
fn await_other_worker(r: *mut ngx_http_request_t, ctx: &mut Ctx) -> ngx_int_t {
    ctx.phase = Phase::Awaiting;
    // SAFETY: r is a valid main request; the timer lives in its context.
    unsafe { coalesce::poll_later(r, &mut ctx.timer) };
    NGX_AGAIN as ngx_int_t
}

fn introspect(
    request: &mut Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    endpoint: ngx_str_t,
    token: &[u8],
) -> ngx_int_t {
    let r: *mut ngx_http_request_t = request.into();
    ctx.phase = Phase::Introspecting;
    ctx.reply = Reply::default();
    // SAFETY: r and ctx are valid for the request's life.
    if unsafe { introspect::start(r, endpoint, conf.format(), token, ctx) }.is_err() {
        ngx_log_error!(
            NGX_LOG_ERR,
            request.log(),
            "Failed to start the introspection subrequest"
        );
        if let Some(zone) = zone(request, conf) {
            zone.release(&ctx.digest);
        }
        ctx.finish_flight(&Outcome::Failed);
        return 500;
    }
    NGX_AGAIN as ngx_int_t
}

/// An awaiting request looks again: the other worker's result, still pending, or gone.
fn recheck(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, endpoint: ngx_str_t) -> ngx_int_t {
    let r: *mut ngx_http_request_t = request.into();
    let Some(zone) = zone(request, conf) else {
        return retry(request, conf, ctx, endpoint);
    };
    let now = now_ms();
    match zone.lookup(&ctx.digest, now) {
        Lookup::Hit(entry) => {
            let outcome = Outcome::Decided(entry);
            ctx.finish_flight(&outcome);
            ctx.phase = Phase::Done;
            apply(request, conf, ctx, outcome)
        }
        Lookup::Miss(_) if zone.claim(&ctx.digest, now) => match extract(request, conf) {
            Ok(token) => introspect(request, conf, ctx, endpoint, token),
            Err(e) => reject_token(request, conf, e),
        },
        _ => await_other_worker(r, ctx),
    }
}

/// Later passes: wait, decide, or (after an internal redirect) pass on.
fn resume(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, endpoint: ngx_str_t) -> ngx_int_t {
    match ctx.phase {
        Phase::Introspecting if !ctx.reply.done => NGX_AGAIN as ngx_int_t,
        Phase::Introspecting => {
            let outcome = decide(request, conf, &mut ctx.reply);
            store(request, conf, ctx, &outcome);
            ctx.finish_flight(&outcome);
            ctx.phase = Phase::Done;
            apply(request, conf, ctx, outcome)
        }
        Phase::Awaiting => recheck(request, conf, ctx, endpoint),
        Phase::Coalesced => match ctx.shared.take() {
            None => NGX_AGAIN as ngx_int_t,
            Some(Outcome::Retry) => retry(request, conf, ctx, endpoint),
            Some(outcome) => {
                ctx.phase = Phase::Done;
                apply(request, conf, ctx, outcome)
            }
        },
        Phase::Done if ctx.granted => NGX_OK as ngx_int_t,
        Phase::Done => NGX_DECLINED as ngx_int_t,
    }
}

/// A waiter whose leader vanished: extract the token again and start over.
fn retry(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, endpoint: ngx_str_t) -> ngx_int_t {
    match extract(request, conf) {
        Ok(token) => lookup_or_introspect(request, conf, ctx, endpoint, token),
        Err(e) => reject_token(request, conf, e),
    }
}

fn zone<'a>(request: &Request, conf: &LocConf) -> Option<&'a ZoneConf> {
    let i = conf.cache?;
    Module::main_conf(request)?.zones.get(i)
}

pub fn now_ms() -> i64 {
    let t = ngx_timeofday();
    (t.sec as i64) * 1000 + t.msec as i64
}

/// The token from `phantom_token_source` or the `Authorization: Bearer` header.
///
/// The slice points into the request's header memory or pool, which outlive the handler,
/// so it is detached from the borrow of `request`.
fn extract<'a>(request: &Request, conf: &LocConf) -> Result<&'a [u8], TokenError> {
    let raw: &[u8] = match conf.source {
        Some(cv) => {
            // SAFETY: the complex value was compiled at configuration time.
            let value = request
                .get_complex_value(unsafe { &*cv })
                .ok_or(TokenError::Missing)?;
            source_token(value.as_bytes())?
        }
        None => {
            let auth = request.as_ref().headers_in.authorization;
            // SAFETY: authorization is NULL or points into the request's header list.
            match unsafe { auth.as_ref() } {
                None => return Err(TokenError::Missing),
                Some(h) => bearer_token(h.value.as_bytes())?,
            }
        }
    };
    // SAFETY: header values and complex values live in r->pool for the request's life.
    Ok(unsafe { core::slice::from_raw_parts(raw.as_ptr(), raw.len()) })
}

fn reject_token(request: &mut Request, conf: &LocConf, e: TokenError) -> ngx_int_t {
    let log = request.log();
    let ch = &conf.challenges;
    let challenge = match e {
        TokenError::Missing => {
            ngx_log_error!(NGX_LOG_INFO, log, "Authorization header not present");
            &ch.missing
        }
        TokenError::NotBearer => {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "Authorization header does not contain a bearer token"
            );
            &ch.missing
        }
        TokenError::Malformed | TokenError::TooLong => {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "Authorization header contains a malformed bearer token"
            );
            &ch.invalid_request
        }
    };
    // SAFETY: the request is valid and no response was sent yet.
    unsafe { respond::send(request.into(), Reject::Unauthorized(challenge)) }
}

/// Maps the introspection reply to an outcome, logging why when it is not a grant.
fn decide(request: &Request, conf: &LocConf, reply: &mut Reply) -> Outcome {
    let log = request.log();
    let status = reply.status;
    if reply.broken {
        ngx_log_error!(
            NGX_LOG_ERR,
            log,
            "Introspection response could not be read completely (status {status})"
        );
        return Outcome::Failed;
    }
    if !reply.from_upstream && status >= 500 {
        if reply.received > 0 {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "Introspection response is not valid HTTP (status {status})"
            );
            return Outcome::Failed;
        }
        ngx_log_error!(NGX_LOG_ERR, log, "Identity server unavailable: introspection subrequest failed with status {status} (connection refused, closed or timed out)");
        return Outcome::Unavailable(None);
    }
    match status {
        200 => decide_body(request, conf, reply),
        204 => Outcome::Decided(Entry::Inactive),
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
            Outcome::Failed
        }
    }
}

fn decide_body(request: &Request, conf: &LocConf, reply: &mut Reply) -> Outcome {
    let log = request.log();
    if reply.too_large {
        ngx_log_error!(NGX_LOG_ERR, log, "Failed to obtain JWT access token from introspection response or cache: response larger than {MAX_RESPONSE} bytes");
        return Outcome::Failed;
    }
    if !content_type_ok(conf.format(), &reply.content_type) {
        let ct = String::from_utf8_lossy(&reply.content_type);
        let want = conf.format().media_type();
        ngx_log_error!(NGX_LOG_ERR, log, "Failed to obtain JWT access token from introspection response or cache: Content-Type \"{ct}\" instead of \"{want}\"");
        return Outcome::Failed;
    }
    let now = now_ms() / 1000;
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
            Outcome::Decided(Entry::Active {
                jwt: Rc::from(jwt.as_slice()),
                scope: Rc::from(info.scope.as_str()),
            })
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

/// Caches a decided outcome with its lifetime (positive) or `negative_ttl` (inactive).
fn store(request: &Request, conf: &LocConf, ctx: &Ctx, outcome: &Outcome) {
    let Some(zone) = zone(request, conf) else {
        return;
    };
    let now_ms = now_ms();
    let max_age = ctx.reply.max_age;
    let ttl = match outcome {
        Outcome::Decided(e @ Entry::Active { .. }) => {
            let ttl = phantom_core::ttl::positive_ttl(
                now_ms / 1000,
                ctx.reply.exp,
                zone.leeway as i64,
                max_age,
                zone.max_ttl,
            );
            (e, ttl)
        }
        Outcome::Decided(e @ Entry::Inactive) if zone.negative_ttl > 0 => (
            e,
            phantom_core::ttl::negative_ttl(zone.negative_ttl, max_age),
        ),
        _ => {
            // Nothing to cache: withdraw the marker so that other workers stop waiting.
            zone.release(&ctx.digest);
            return;
        }
    };
    // Replaces the marker other workers wait on (or withdraws it when nothing is stored).
    zone.store(&ctx.digest, ttl.0, ttl.1, now_ms);
}

/// Turns an outcome into the request's result.
fn apply(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, outcome: Outcome) -> ngx_int_t {
    let r: *mut ngx_http_request_t = request.into();
    let reject = match outcome {
        Outcome::Decided(Entry::Active { jwt, scope }) => {
            return grant(request, conf, ctx, &jwt, &scope)
        }
        Outcome::Decided(Entry::Inactive) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                request.log(),
                "The access token is not active"
            );
            Reject::Unauthorized(&conf.challenges.invalid_token)
        }
        Outcome::Expired => Reject::Unauthorized(&conf.challenges.invalid_token),
        Outcome::Unavailable(retry) => Reject::Unavailable(retry),
        Outcome::Failed | Outcome::Retry => Reject::BadGateway,
    };
    // SAFETY: r is valid and no response was sent yet.
    unsafe { respond::send(r, reject) }
}

/// Checks required scopes, then puts `Bearer <JWT>` into the upstream request.
fn grant(
    request: &mut Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    jwt: &[u8],
    scope: &str,
) -> ngx_int_t {
    let r: *mut ngx_http_request_t = request.into();
    if let Some(required) = &conf.required_scopes {
        if !phantom_core::scope::has_all(scope, required) {
            ngx_log_error!(
                NGX_LOG_INFO,
                request.log(),
                "The access token lacks a required scope (requires \"{}\")",
                required.join(" ")
            );
            // SAFETY: r is valid and no response was sent yet.
            return unsafe {
                respond::send(r, Reject::Forbidden(&conf.challenges.insufficient_scope))
            };
        }
    }
    let fill = |buf: &mut [u8]| {
        let (scheme, token) = buf.split_at_mut(7);
        scheme.copy_from_slice(b"Bearer ");
        token.copy_from_slice(jwt);
    };
    // SAFETY: r->pool outlives the upstream request that reads the header.
    let Some(bearer) = (unsafe { headers::pool_build((*r).pool, 7 + jwt.len(), fill) }) else {
        return 500;
    };
    // SAFETY: r is valid; the header list belongs to it.
    if unsafe { forward(r, conf, bearer) }.is_err() {
        return 500;
    }
    ctx.bearer = bearer;
    ctx.granted = true;
    NGX_OK as ngx_int_t
}

/// Replaces the client's `Authorization` (or sets `phantom_token_header`) with `bearer`.
///
/// # Safety
/// `r` must be a valid main request; `bearer` must live in `r->pool`.
unsafe fn forward(r: *mut ngx_http_request_t, conf: &LocConf, bearer: ngx_str_t) -> Result<(), ()> {
    // SAFETY: per contract.
    let req = unsafe { &mut *r };
    let list = &mut req.headers_in.headers as *mut _;
    let auth = req.headers_in.authorization;
    let Some(name) = conf.header.as_deref() else {
        // SAFETY: auth is NULL or an element of the request's header list.
        if let Some(h) = unsafe { auth.as_mut() } {
            h.value = bearer;
            return Ok(());
        }
        // SAFETY: the list is the request's own header list, allocated from its pool.
        let h = unsafe { headers::push(list, req.pool, b"Authorization", bearer.as_bytes()) }
            .ok_or(())?;
        req.headers_in.authorization = h;
        return Ok(());
    };
    // Every client header with the target name gets our value, so none can be forged.
    let mut found = false;
    // SAFETY: iterating the request's own header list.
    for h in unsafe { headers::iter(list) } {
        if h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
            h.value = bearer;
            found = true;
        }
    }
    // The opaque token must not travel upstream in Authorization either.
    // SAFETY: auth is NULL or an element of the list.
    if let Some(h) = unsafe { auth.as_mut() } {
        // SAFETY: key/lowcase copies are pool allocations for the request.
        let renamed = unsafe { headers::pool_str(req.pool, name.as_bytes()) }.ok_or(())?;
        let lower = unsafe { headers::pool_str(req.pool, name.to_ascii_lowercase().as_bytes()) }
            .ok_or(())?;
        h.key = renamed;
        h.lowcase_key = lower.data;
        // SAFETY: hashing the lowercase name, as nginx does for request headers.
        h.hash = unsafe { nginx_sys::ngx_hash_key(lower.data, lower.len) };
        h.value = bearer;
        req.headers_in.authorization = core::ptr::null_mut();
        found = true;
    }
    if !found {
        // SAFETY: as above.
        unsafe { headers::push(list, req.pool, name.as_bytes(), bearer.as_bytes()) }.ok_or(())?;
    }
    Ok(())
}
