//! The access-phase handler: a small state machine over the request context.
//!
//! First pass: extract the token, look it up in the cache, else join or start an
//! introspection and return `NGX_AGAIN`. Later passes: decide from the result, then
//! forward `Bearer <JWT>` upstream or reject. After an internal redirect, the policy of the
//! location that now serves the request is applied to the decision already made.
//! The fleet tier's steps are in [`fleet`], storing results in [`store`], the fleet-wide
//! replay check of DPoP proofs before a grant in [`proof`].

mod fleet;
mod proof;
mod store;

use fleet::{ask_fleet, from_fleet};
use store::{purged_meanwhile, record_introspection, stale_if_error, store};

use nginx_sys::{
    ngx_http_block_reading, ngx_http_request_t, ngx_http_test_reading, ngx_int_t, ngx_str_t,
    NGX_AGAIN, NGX_DECLINED, NGX_HTTP_NO_CONTENT, NGX_HTTP_OPTIONS, NGX_LOG_ERR, NGX_LOG_INFO,
    NGX_LOG_WARN, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::{ngx_log_debug_http, ngx_log_error};
use phantom_core::digest::keyed_digest;
use phantom_core::token::{auth_token, source_token, Scheme, TokenError};

use crate::cache::{CacheStatus, Entry, Level, Lookup, ZoneConf};
use crate::config::LocConf;
use crate::config::{Compat, DpopMode};
use crate::ctx::{self, Ctx, Phase};
use crate::decide::{decide, Outcome};
use crate::glue::time::now_ms;
use crate::introspect::{self, Reply};
use crate::metrics::{self, Counter};
use crate::reject::{Challenge, DpopReject, Reject};
use crate::respond;
use crate::{coalesce, forward, glue::headers, pop, Module};

/// What a pass of the handler ends with.
pub(crate) enum Step {
    /// A phase handler result for nginx.
    Rc(ngx_int_t),
    /// A rejection, sent once no reference into the request is alive.
    Reject(Reject),
}

pub(crate) const AGAIN: Step = Step::Rc(NGX_AGAIN as ngx_int_t);
const DECLINED: Step = Step::Rc(NGX_DECLINED as ngx_int_t);

/// The access phase handler registered in postconfiguration.
pub(crate) extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a valid request.
    let step = handle(unsafe { Request::from_ngx_http_request(r) });
    // Every borrow of the request and of its context has ended: a rejection may finalize
    // the request, which can free the pool holding both.
    match step {
        Step::Rc(rc) => {
            // SAFETY: r is valid; no borrow of it or of its context is alive.
            unsafe { watch_client(r, rc) };
            rc
        }
        // SAFETY: r is valid and no response was sent yet.
        Step::Reject(reject) => unsafe { respond::send(r, reject) },
    }
}

/// While a request waits (for another request, worker or instance, or for Redis), nginx
/// reads nothing from its client, so a client that went away (HTTP/1.1 close, HTTP/2
/// `RST_STREAM`) would hold the zone's marker and the fleet lock until the wait ends. nginx's
/// own `ngx_http_test_reading` finalizes such a request at once (499), which releases them;
/// reading is blocked again once the request goes on.
///
/// # Safety
/// `r` must be a valid main request, with no live borrow of it or of its context.
unsafe fn watch_client(r: *mut ngx_http_request_t, rc: ngx_int_t) {
    // SAFETY: per contract.
    let phase = unsafe { ctx::get(r) }.map(|c| c.phase);
    let waiting = rc == NGX_AGAIN as ngx_int_t
        && matches!(
            phase,
            Some(Phase::Awaiting | Phase::Fleet | Phase::Coalesced | Phase::Proof)
        );
    let test: unsafe extern "C" fn(*mut ngx_http_request_t) = ngx_http_test_reading;
    // SAFETY: r is valid; both handlers are nginx's own for a request's read events.
    unsafe {
        if waiting {
            (*r).read_event_handler = Some(test);
        } else if (*r)
            .read_event_handler
            .is_some_and(|h| core::ptr::fn_addr_eq(h, test))
        {
            (*r).read_event_handler = Some(ngx_http_block_reading);
        }
    }
}

fn handle(request: &mut Request) -> Step {
    if !request.is_main() {
        return DECLINED;
    }
    let Some(conf) = Module::location_conf(request) else {
        return DECLINED;
    };
    if !conf.enabled() {
        ngx_log_debug_http!(request, "Module disabled");
        return DECLINED;
    }
    // Curity's order: OPTIONS is answered before the endpoint is checked.
    if request.as_ref().method == NGX_HTTP_OPTIONS as usize {
        if conf.allow_preflight == 1 {
            return DECLINED;
        }
        ngx_log_debug_http!(request, "Not processing OPTIONS request");
        return Step::Rc(NGX_HTTP_NO_CONTENT as ngx_int_t);
    }
    let Some(endpoint) = conf.endpoint else {
        ngx_log_error!(
            NGX_LOG_WARN,
            request.log(),
            "Module not configured properly: missing introspection endpoint"
        );
        return DECLINED;
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
fn begin(request: &mut Request, conf: &LocConf, endpoint: ngx_str_t) -> Step {
    let r: *mut ngx_http_request_t = request.into();
    let (scheme, token) = match extract(request, conf) {
        Ok(t) => t,
        Err(e) => return reject_token(request, conf, e),
    };
    let proof = match pop::check_request(request, conf, scheme, token, zone(request, conf)) {
        Ok(p) => p,
        Err(reject) => return Step::Reject(reject),
    };
    // SAFETY: r is a valid main request.
    let Some(ctx) = (unsafe { ctx::create(r) }) else {
        return Step::Rc(500);
    };
    ctx.proof = proof;
    ctx.token = ngx_str_t {
        len: token.len(),
        data: token.as_ptr() as *mut u8,
    };
    ctx.digest = keyed_digest(&conf.context, token);
    lookup_or_introspect(request, conf, ctx, endpoint)
}

fn lookup_or_introspect(
    request: &mut Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    endpoint: ngx_str_t,
) -> Step {
    let r: *mut ngx_http_request_t = request.into();
    // `phantom_token_cache_max_age 0`: every request introspects.
    let zone = zone(request, conf).filter(|_| conf.cache_max_age != Some(0));
    let mut elsewhere = false;
    if let Some(zone) = zone {
        let found = zone.lookup(&ctx.digest, now_ms(), conf.cache_max_age);
        if !core::mem::replace(&mut ctx.looked, true) {
            count_lookup(&found);
        }
        match found {
            Lookup::Hit(entry, _) => {
                ctx.cache_status = CacheStatus::Hit;
                ctx.phase = Phase::Done;
                return apply(request, conf, ctx, Outcome::Decided(entry));
            }
            Lookup::Pending => elsewhere = true,
            Lookup::Miss(status, stale) => {
                ctx.cache_status = status;
                ctx.stale = stale;
            }
        }
    }
    if !coalesce::lead(&ctx.digest) {
        let slot: *mut Option<Outcome> = &mut ctx.shared;
        // SAFETY: r is a valid main request that will wait with NGX_AGAIN; the slot is in
        // its context.
        if unsafe { coalesce::join(&ctx.digest, r, slot) } {
            metrics::count(Counter::WaitWorker);
            ctx.phase = Phase::Coalesced;
            return AGAIN;
        }
    } else {
        ctx.leading = true;
    }
    if let Some(zone) = zone {
        if elsewhere || !zone.claim(&ctx.digest, now_ms(), conf.cache_max_age) {
            return await_other_worker(r, ctx);
        }
        ctx.claimed = Some(zone);
        return ask_fleet(request, conf, ctx, endpoint);
    }
    introspect(request, conf, ctx, endpoint)
}

fn count_lookup(found: &Lookup) {
    metrics::count(match found {
        Lookup::Hit(_, Level::L1) => Counter::L1Hits,
        Lookup::Hit(_, Level::Zone) => Counter::ZoneHits,
        Lookup::Miss(CacheStatus::Expired, _) => Counter::Expired,
        Lookup::Miss(..) | Lookup::Pending => Counter::Misses,
    });
}

/// Waits (polling the zone) for another worker's introspection of the same token.
fn await_other_worker(r: *mut ngx_http_request_t, ctx: &mut Ctx) -> Step {
    if ctx.phase != Phase::Awaiting {
        metrics::count(Counter::WaitWorkers);
    }
    ctx.phase = Phase::Awaiting;
    // SAFETY: r is a valid main request; the timer lives in its context.
    unsafe { coalesce::poll_later(r, &mut ctx.timer) };
    AGAIN
}

pub(crate) fn introspect(
    request: &mut Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    endpoint: ngx_str_t,
) -> Step {
    let r: *mut ngx_http_request_t = request.into();
    ctx.phase = Phase::Introspecting;
    ctx.reply = Reply::default();
    ctx.intro_start_ms = now_ms();
    if let Some(zone) = ctx.claimed {
        ctx.asked_purges = crate::purge::local::purges(zone);
    }
    let token = ctx.token();
    let reply: *mut Reply = &mut ctx.reply;
    // SAFETY: r is valid; the reply slot lives in its context, in r->pool.
    if unsafe { introspect::start(r, endpoint, conf.format(), token, reply) }.is_err() {
        ngx_log_error!(
            NGX_LOG_ERR,
            request.log(),
            "Failed to start the introspection subrequest"
        );
        ctx.release_claim();
        ctx.finish_flight(&Outcome::Failed);
        return Step::Rc(500);
    }
    AGAIN
}

/// An awaiting request looks again: the other worker's result, still pending, or gone.
fn recheck(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, endpoint: ngx_str_t) -> Step {
    let r: *mut ngx_http_request_t = request.into();
    let Some(zone) = zone(request, conf) else {
        return lookup_or_introspect(request, conf, ctx, endpoint);
    };
    let now = now_ms();
    match zone.lookup(&ctx.digest, now, conf.cache_max_age) {
        Lookup::Hit(entry, _) => {
            let outcome = Outcome::Decided(entry);
            ctx.finish_flight(&outcome);
            ctx.phase = Phase::Done;
            apply(request, conf, ctx, outcome)
        }
        Lookup::Miss(_, stale) if zone.claim(&ctx.digest, now, conf.cache_max_age) => {
            ctx.claimed = Some(zone);
            ctx.stale = stale;
            ask_fleet(request, conf, ctx, endpoint)
        }
        _ => await_other_worker(r, ctx),
    }
}

/// A purge came while the introspection ran: its answer may predate the purge, so it is
/// neither stored nor granted. The token is introspected once more; a second purge in
/// between is a 503 (the copy cannot be trusted and the purges keep coming).
fn ask_again(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, endpoint: ngx_str_t) -> Step {
    ngx_log_error!(
        NGX_LOG_INFO,
        request.log(),
        "The token was purged while it was being introspected: introspecting again"
    );
    if core::mem::replace(&mut ctx.asked_again, true) {
        ctx.release_claim();
        let outcome = Outcome::Unavailable(None);
        ctx.finish_flight(&outcome);
        ctx.phase = Phase::Done;
        return apply(request, conf, ctx, outcome);
    }
    introspect(request, conf, ctx, endpoint)
}

/// Later passes: wait, decide, or (after an internal redirect) apply the new location.
fn resume(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, endpoint: ngx_str_t) -> Step {
    match ctx.phase {
        Phase::Introspecting if !ctx.reply.done => {
            if conf.compat() == Compat::Curity {
                ngx_log_debug_http!(
                    request,
                    "Called again without having received the introspection response"
                );
            }
            AGAIN
        }
        Phase::Introspecting => {
            let outcome = decide(request, conf, &mut ctx.reply);
            record_introspection(ctx, &outcome);
            if purged_meanwhile(ctx, &outcome) {
                return ask_again(request, conf, ctx, endpoint);
            }
            let outcome = stale_if_error(request, conf, ctx, outcome);
            store(request, conf, ctx, &outcome);
            ctx.finish_flight(&outcome);
            ctx.phase = Phase::Done;
            apply(request, conf, ctx, outcome)
        }
        Phase::Awaiting => recheck(request, conf, ctx, endpoint),
        Phase::Fleet if ctx.fleet.op != 0 => AGAIN,
        Phase::Fleet => from_fleet(request, conf, ctx, endpoint),
        Phase::Proof if ctx.jti.op != 0 => AGAIN,
        Phase::Proof => proof::claimed(request, conf, ctx),
        Phase::Coalesced => match ctx.shared.take() {
            None => AGAIN,
            // The leader went away: start over with the token already extracted.
            Some(Outcome::Retry) => lookup_or_introspect(request, conf, ctx, endpoint),
            Some(outcome) => {
                ctx.phase = Phase::Done;
                apply(request, conf, ctx, outcome)
            }
        },
        Phase::Done => revisit(request, conf, ctx, endpoint),
    }
}

/// The request moved (`try_files`, `error_page`, `X-Accel-Redirect`) to another location:
/// a different endpoint or format means a new introspection; the same means its scopes
/// and header are applied to the decision already made. A rejection stays final, so the
/// error page it led to is served.
fn revisit(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, endpoint: ngx_str_t) -> Step {
    let digest = keyed_digest(&conf.context, ctx.token());
    if digest != ctx.digest {
        ctx.restart(digest);
        return lookup_or_introspect(request, conf, ctx, endpoint);
    }
    match ctx.decision.clone() {
        Some(entry) if ctx.granted => apply(request, conf, ctx, Outcome::Decided(entry)),
        _ => DECLINED,
    }
}

fn zone(request: &Request, conf: &LocConf) -> Option<&'static ZoneConf> {
    let i = conf.cache?;
    Module::main_conf(request)?.zones.get(i)
}

/// The token (and its scheme) from `phantom_token_source` or the `Authorization` header
/// (`Bearer`, or also `DPoP` where `phantom_token_dpop` allows it).
///
/// The slice points into the request's header memory or pool, which outlive the handler
/// (removing the source later copies, never overwrites), so it is detached from the borrow.
fn extract<'a>(request: &Request, conf: &LocConf) -> Result<(Scheme, &'a [u8]), TokenError> {
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

fn reject_token(request: &Request, conf: &LocConf, e: TokenError) -> Step {
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

/// Turns an outcome into the request's result.
pub(crate) fn apply(
    request: &mut Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    outcome: Outcome,
) -> Step {
    ctx.granted = false;
    let reject = match outcome {
        Outcome::Decided(entry @ Entry::Active { .. }) => return grant(request, conf, ctx, entry),
        Outcome::Decided(Entry::Inactive) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                request.log(),
                "The access token is not active"
            );
            inactive(ctx)
        }
        Outcome::Expired => inactive(ctx),
        Outcome::Unavailable(retry_after) => Reject::Unavailable {
            retry_after,
            unreachable: false,
        },
        Outcome::Unreachable => Reject::Unavailable {
            retry_after: None,
            unreachable: true,
        },
        Outcome::ServerError => Reject::ServerError,
        Outcome::RateLimited(retry_after) => Reject::TooManyRequests(retry_after),
        Outcome::Stale(stale) => {
            ctx.cache_status = CacheStatus::Stale;
            metrics::count(Counter::StaleServed);
            ngx_log_error!(
                NGX_LOG_INFO,
                request.log(),
                "Identity server unavailable: serving a cached JWT past its lifetime (stale_if_error)"
            );
            return grant(request, conf, ctx, stale.entry);
        }
        Outcome::Failed | Outcome::Retry => Reject::BadGateway,
    };
    Step::Reject(reject)
}

/// `invalid_token` on the scheme the client used.
fn inactive(ctx: &Ctx) -> Reject {
    match ctx.proof {
        Some(_) => Reject::Dpop(DpopReject::Binding("The access token is not active")),
        None => Reject::Unauthorized(Challenge::InvalidToken),
    }
}

/// The token's binding to the request (DPoP key, client certificate), then the proof is
/// remembered against replay in the instance: the last checks before a grant (and
/// [`proof::claim`], for the fleet).
fn bound(
    request: &Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    jwt: &[u8],
    binding: &core::cell::OnceCell<phantom_core::dpop::Binding>,
) -> Result<(), Reject> {
    if !conf.pop.binds() {
        return Ok(());
    }
    let binding =
        binding.get_or_init(|| phantom_core::dpop::binding(&phantom_core::jwt::claims_of(jwt)));
    pop::check_binding(request, conf, ctx.proof.as_ref(), binding)?;
    if let (Some(proof), Some(zone)) = (&ctx.proof, zone(request, conf)) {
        if !ctx.proof_remembered {
            pop::remember(request, conf, zone, proof)?;
            ctx.proof_remembered = true;
        }
    }
    Ok(())
}

/// Checks required scopes, then puts `Bearer <JWT>` into the upstream request.
fn grant(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, entry: Entry) -> Step {
    let r: *mut ngx_http_request_t = request.into();
    let Entry::Active {
        jwt,
        scope,
        binding,
    } = &entry
    else {
        return DECLINED;
    };
    if let Some(required) = &conf.required_scopes {
        if !phantom_core::scope::has_all(scope, required) {
            ngx_log_error!(
                NGX_LOG_INFO,
                request.log(),
                "The access token lacks a required scope (requires \"{}\")",
                required.join(" ")
            );
            return Step::Reject(Reject::Forbidden);
        }
    }
    if let Some(required) = &conf.required_claims {
        let claims = ctx
            .claims
            .get_or_insert_with(|| phantom_core::jwt::claims_of(jwt));
        if let Some(unmet) = phantom_core::claims::first_unmet(required, claims) {
            ngx_log_error!(
                NGX_LOG_INFO,
                request.log(),
                "The access token's claim \"{}\" does not have a required value",
                unmet.name
            );
            return Step::Reject(Reject::Unauthorized(Challenge::InvalidToken));
        }
    }
    if let Err(reject) = bound(request, conf, ctx, jwt, binding) {
        return Step::Reject(reject);
    }
    if let Some(step) = proof::claim(request, conf, ctx, &entry) {
        return step;
    }
    let fill = |buf: &mut [u8]| {
        let (scheme, token) = buf.split_at_mut(7);
        scheme.copy_from_slice(b"Bearer ");
        token.copy_from_slice(jwt);
    };
    // SAFETY: r->pool outlives the upstream request that reads the header.
    let Some(bearer) = (unsafe { headers::pool_build((*r).pool, 7 + jwt.len(), fill) }) else {
        return Step::Rc(500);
    };
    // SAFETY: r is valid; the header list belongs to it; bearer lives in its pool.
    if unsafe { forward::forward(r, conf, bearer) }.is_err() {
        return Step::Rc(500);
    }
    ctx.bearer = bearer;
    ctx.granted = true;
    ctx.decision = Some(entry);
    metrics::count(Counter::Granted);
    Step::Rc(NGX_OK as ngx_int_t)
}
