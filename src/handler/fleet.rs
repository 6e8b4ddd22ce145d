//! The fleet tier's steps of the state machine: ask Redis before introspecting, then read
//! its answer (a shared entry, the fleet lock, or another instance introspecting).

use nginx_sys::{ngx_http_request_t, ngx_post_event, ngx_posted_events, ngx_str_t};
use ngx::http::Request;

use super::{apply, introspect, now_ms, Step, AGAIN};
use crate::cache::CacheStatus;
use crate::coalesce;
use crate::config::LocConf;
use crate::ctx::{self, Ctx, Phase};
use crate::decide::Outcome;
use crate::fleet::ops::{self, Found};
use crate::fleet::waiters::Outcome as Replies;
use crate::metrics::{self, Counter};

/// With `redis=`: asks the fleet before introspecting (this worker holds the zone's
/// marker, so it speaks for the instance).
pub(super) fn ask_fleet(
    request: &mut Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    endpoint: ngx_str_t,
) -> Step {
    let r: *mut ngx_http_request_t = request.into();
    let fleet = ctx.claimed.and_then(|z| z.fleet.as_ref());
    let Some(fleet) = fleet else {
        return introspect(request, conf, ctx, endpoint);
    };
    let token = ctx.token();
    if let Some(zone) = ctx.claimed {
        ctx.asked_purges = crate::purge::local::purges(zone);
    }
    let ids = (&conf.context[..], token);
    let sent = ops::lookup(fleet, &mut ctx.fleet, ids, now_ms(), waker(r));
    if !sent {
        metrics::count(Counter::RedisErrors);
        return introspect(request, conf, ctx, endpoint);
    }
    ctx.phase = Phase::Fleet;
    AGAIN
}

/// Redis answered the lookup, or the wait for another instance's lock is up.
pub(super) fn from_fleet(
    request: &mut Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    endpoint: ngx_str_t,
) -> Step {
    let r: *mut ngx_http_request_t = request.into();
    let (Some(zone), now) = (ctx.claimed, now_ms()) else {
        return introspect(request, conf, ctx, endpoint);
    };
    let Some(fleet) = zone.fleet.as_ref() else {
        return introspect(request, conf, ctx, endpoint);
    };
    if ctx.fleet.reply.is_none() {
        // Polling while another instance introspects.
        if now - ctx.fleet.since_ms > fleet.lock_ms as i64 + 100 {
            return introspect(request, conf, ctx, endpoint);
        }
        return ask_fleet(request, conf, ctx, endpoint);
    }
    let token = ctx.token();
    let ids = (&conf.context[..], token);
    match ops::found(fleet, &mut ctx.fleet, ids, now, waker(r)) {
        Found::Asked => AGAIN,
        Found::Hit(sealed) => {
            let young = conf
                .cache_max_age
                .is_none_or(|a| now - sealed.created_ms < a as i64);
            let jwt = sealed.active.then_some(sealed.jwt.as_slice());
            let (made, asked) = (Some(sealed.created_ms), ctx.asked_purges);
            if !young || crate::purge::local::buried(zone, token, jwt, made, asked) {
                return introspect(request, conf, ctx, endpoint);
            }
            let entry = ops::entry_of(&sealed);
            ctx.claimed = None;
            let times = (sealed.expires_ms, sealed.created_ms);
            zone.store(&ctx.digest, &entry, times, sealed.expires_ms, now);
            metrics::count(Counter::RedisHits);
            ctx.cache_status = CacheStatus::Hit;
            let outcome = Outcome::Decided(entry);
            ctx.finish_flight(&outcome);
            ctx.phase = Phase::Done;
            apply(request, conf, ctx, outcome)
        }
        Found::Held => {
            if ctx.fleet.since_ms == 0 {
                ctx.fleet.since_ms = now;
                metrics::count(Counter::WaitFleet);
            }
            // SAFETY: r is a valid main request; the timer lives in its context.
            unsafe { coalesce::poll_later(r, &mut ctx.timer) };
            AGAIN
        }
        Found::Lead | Found::Unavailable => introspect(request, conf, ctx, endpoint),
    }
}

/// Hands a Redis reply to the request and wakes it (its write event re-runs the phases).
fn waker(r: *mut ngx_http_request_t) -> impl FnOnce(Replies) + 'static {
    move |outcome| {
        // SAFETY: the waiter is cancelled when the request's context (which holds the
        // operation) is dropped, so `r` is alive whenever this runs.
        unsafe {
            if let Some(c) = ctx::get(r) {
                c.fleet.op = 0;
                c.fleet.reply = Some(outcome);
            }
            ngx_post_event((*(*r).connection).write, &raw mut ngx_posted_events);
        }
    }
}
