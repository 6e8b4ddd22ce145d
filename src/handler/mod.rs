//! The access-phase handler: a small state machine over the request context.
//!
//! First pass: extract the token, look it up in the cache, else join or start an
//! introspection and return `NGX_AGAIN`. Later passes: decide from the result, then
//! forward `Bearer <JWT>` upstream or reject. After an internal redirect, the policy of the
//! location that now serves the request is applied to the decision already made.
//! The fleet tier's steps are in [`fleet`], storing results in [`store`], the fleet-wide
//! replay check of DPoP proofs before a grant in [`proof`], the token in [`token`], the
//! grant or rejection in [`grant`].

mod fleet;
mod grant;
mod proof;
mod store;
mod token;

use fleet::{ask_fleet, from_fleet};
use grant::apply;
use store::{purged_meanwhile, record_introspection, stale_if_error, store};
use token::{extract, reject_token};

use nginx_sys::{
    ngx_http_block_reading, ngx_http_request_t, ngx_http_test_reading, ngx_int_t, ngx_str_t,
    NGX_AGAIN, NGX_DECLINED, NGX_HTTP_NO_CONTENT, NGX_HTTP_OPTIONS, NGX_LOG_ERR, NGX_LOG_INFO,
    NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};
use ngx::{ngx_log_debug_http, ngx_log_error};
use phantom_core::digest::keyed_digest;

use crate::cache::{CacheStatus, Level, Lookup, ZoneConf};
use crate::config::Compat;
use crate::config::LocConf;
use crate::ctx::{self, Ctx, Phase};
use crate::decide::{decide, Outcome};
use crate::glue::time::now_ms;
use crate::introspect::{self, Reply};
use crate::metrics::{self, Counter};
use crate::reject::Reject;
use crate::respond;
use crate::{coalesce, pop, Module};

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
