//! The end of the exchange: an outcome becomes a grant (scopes, claims, the token's binding,
//! then `Bearer <JWT>` upstream) or a rejection.

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_LOG_INFO, NGX_OK};
use ngx::http::Request;
use ngx::ngx_log_error;

use super::{proof, zone, Step, DECLINED};
use crate::cache::{CacheStatus, Entry};
use crate::config::LocConf;
use crate::ctx::Ctx;
use crate::decide::Outcome;
use crate::metrics::{self, Counter};
use crate::reject::{Challenge, DpopReject, Reject};
use crate::{forward, glue::headers, pop};

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
pub(super) fn grant(request: &mut Request, conf: &LocConf, ctx: &mut Ctx, entry: Entry) -> Step {
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
    // SAFETY: r->pool outlives the upstream request that reads the header.
    let Some(bearer) = (unsafe { headers::pool_concat((*r).pool, &[b"Bearer ", jwt]) }) else {
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
