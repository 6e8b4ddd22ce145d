//! Storing what an introspection decided: the zone (in place of the worker's marker), the
//! fleet tier, and the counters of what was and was not stored.

use nginx_sys::{NGX_LOG_INFO, NGX_LOG_NOTICE};
use ngx::http::Request;
use ngx::ngx_log_error;

use super::now_ms;
use crate::cache::{CacheStatus, Entry, Stored, ZoneConf};
use crate::config::LocConf;
use crate::ctx::Ctx;
use crate::decide::Outcome;
use crate::fleet::ops;
use crate::metrics::{self, Counter};

/// Caches a decided outcome until its expiry (positive) or for `negative_ttl` (inactive),
/// in place of this worker's marker, and with `redis=` for the fleet; withdraws the marker
/// when nothing is stored. A purge that came while the introspection ran wins.
pub(super) fn store(request: &Request, conf: &LocConf, ctx: &mut Ctx, outcome: &Outcome) {
    let Some(zone) = ctx.claimed.take() else {
        return;
    };
    let now = now_ms();
    if let Outcome::Stale(stale) = outcome {
        zone.restore(&ctx.digest, stale, now);
        return;
    }
    let until = storable_until(zone, ctx, outcome, now);
    let token = ctx.token();
    if let (Outcome::Decided(entry), Some(until)) = (outcome, until) {
        let exp_ms = ctx.reply.exp.saturating_mul(1000);
        let times = (until, ctx.intro_start_ms);
        metrics::count(match zone.store(&ctx.digest, entry, times, exp_ms, now) {
            Stored::Yes => Counter::Stored,
            Stored::TooBig => Counter::NotStoredTooBig,
            Stored::NoRoom => Counter::NotStoredNotCacheable,
        });
        if let Some(fleet) = &zone.fleet {
            ops::store(
                fleet,
                &mut ctx.fleet,
                &conf.context,
                token,
                Some(entry),
                times,
                now,
            );
        }
        return;
    }
    zone.release(&ctx.digest);
    if let Some(fleet) = &zone.fleet {
        ops::abandon(fleet, &mut ctx.fleet, &conf.context, token, now);
    }
    not_stored(request, ctx, zone, outcome);
}

/// Until when an outcome may be cached, if at all.
fn storable_until(zone: &ZoneConf, ctx: &Ctx, outcome: &Outcome, now: i64) -> Option<i64> {
    let max_age = ctx.reply.max_age;
    match outcome {
        Outcome::Decided(Entry::Active { .. }) => phantom_core::ttl::positive_expiry_ms(
            now,
            ctx.reply.exp,
            zone.leeway,
            max_age,
            zone.max_ttl,
        ),
        Outcome::Decided(Entry::Inactive) => {
            phantom_core::ttl::negative_expiry_ms(now, zone.negative_ttl, max_age)
        }
        _ => None,
    }
}

/// Counts (and explains, once) why a result was not cached.
fn not_stored(request: &Request, ctx: &mut Ctx, zone: &ZoneConf, outcome: &Outcome) {
    let max_age = ctx.reply.max_age;
    let storable = match outcome {
        Outcome::Decided(Entry::Active { .. }) => true,
        Outcome::Decided(Entry::Inactive) => zone.negative_ttl > 0,
        _ => false,
    };
    if !storable {
        return;
    }
    if max_age != Some(0) {
        metrics::count(Counter::NotStoredNotCacheable);
    } else {
        metrics::count(Counter::NotStoredNoStore);
        ctx.cache_status = CacheStatus::NoStore;
        if first_no_store() {
            ngx_log_error!(NGX_LOG_NOTICE, request.log(), "Introspection responses forbid caching (Cache-Control: no-store, no-cache, private or max-age=0), so zone \"{}\" stores nothing; to cache anyway, add proxy_hide_header Cache-Control; to the introspection location (entries then live until the JWT's exp minus leeway, capped by max_ttl)", zone.name);
        }
    }
}

/// Latency and result of the introspection that just ended.
pub(super) fn record_introspection(ctx: &mut Ctx, outcome: &Outcome) {
    let ms = now_ms().saturating_sub(ctx.intro_start_ms).max(0) as u64;
    ctx.intro_ms = Some(ms);
    metrics::observe(ms);
    let result = match outcome {
        Outcome::Decided(Entry::Active { .. }) => Counter::IntroActive,
        Outcome::Decided(Entry::Inactive) | Outcome::Expired => Counter::IntroInactive,
        Outcome::Unavailable(_) | Outcome::Unreachable | Outcome::RateLimited(_) => {
            Counter::IntroUnavailable
        }
        Outcome::Failed | Outcome::ServerError => Counter::IntroError,
        Outcome::Retry | Outcome::Stale(_) => return,
    };
    metrics::count(result);
}

/// Whether a purge came while this request's introspection ran (its answer may predate the
/// purge: asked again, never stored or granted).
pub(super) fn purged_meanwhile(ctx: &Ctx, outcome: &Outcome) -> bool {
    let (Some(zone), Outcome::Decided(entry)) = (ctx.claimed, outcome) else {
        return false;
    };
    let jwt = match entry {
        Entry::Active { jwt, .. } => Some(&jwt[..]),
        Entry::Inactive => None,
    };
    crate::purge::local::buried(zone, ctx.token(), jwt, None, ctx.asked_purges)
}

/// While introspection is unavailable, an expired entry the zone still keeps is served
/// (never for inactive tokens: the zone keeps only active ones past their lifetime), unless
/// it is older than `phantom_token_cache_max_age` or a purge came since it was copied.
pub(super) fn stale_if_error(
    request: &Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    outcome: Outcome,
) -> Outcome {
    if !matches!(outcome, Outcome::Unavailable(_) | Outcome::Unreachable) {
        return outcome;
    }
    let (Some(stale), Some(zone)) = (ctx.stale.take(), ctx.claimed) else {
        return outcome;
    };
    let now = now_ms();
    let young = conf
        .cache_max_age
        .is_none_or(|a| now - stale.created_ms < a as i64);
    if stale.keep_ms <= now || !young {
        return outcome;
    }
    let jwt = match &stale.entry {
        Entry::Active { jwt, .. } => Some(&jwt[..]),
        Entry::Inactive => None,
    };
    let made = Some(stale.created_ms);
    if crate::purge::local::buried(zone, ctx.token(), jwt, made, stale.purges) {
        ngx_log_error!(
            NGX_LOG_INFO,
            request.log(),
            "Identity server unavailable: a cached JWT past its lifetime was purged, so it is not served (stale_if_error)"
        );
        return outcome;
    }
    Outcome::Stale(stale)
}

thread_local! {
    static NO_STORE_LOGGED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// `true` the first time in this worker that a `no-store` answer kept an entry out.
fn first_no_store() -> bool {
    !NO_STORE_LOGGED.with(|l| l.replace(true))
}
