//! The last step before a grant with a DPoP proof: its `jti` is claimed for the whole fleet.
//!
//! The instance's replay cache has already accepted the proof (the cheap check, which
//! catches same-instance replays first). With a Redis tier and `phantom_token_dpop_replay`
//! `fleet` (the default there) or `fleet_required`, the request then waits
//! ([`Phase::Proof`]) for `SET <jti key> 1 NX PX <ms>`: `OK` grants, `nil` is a replay from
//! another instance. When Redis cannot answer, `fleet` goes on with the instance's check
//! alone (counted) and `fleet_required` answers 503.

use nginx_sys::{ngx_http_request_t, ngx_post_event, ngx_posted_events, NGX_LOG_INFO};
use ngx::http::Request;
use ngx::{ngx_log_debug_http, ngx_log_error};

use super::grant::grant;
use super::{now_ms, zone, Step, AGAIN};
use crate::cache::Entry;
use crate::config::LocConf;
use crate::config::Replay;
use crate::ctx::{self, Ctx, Phase};
use crate::fleet::jti::{self, Answer};
use crate::metrics::{self, Counter};
use crate::pop;
use crate::reject::Reject;

/// Before granting `entry`: `None` to grant now, or the step that waits for Redis (or
/// refuses because it cannot ask).
pub(super) fn claim(
    request: &mut Request,
    conf: &LocConf,
    ctx: &mut Ctx,
    entry: &Entry,
) -> Option<Step> {
    if ctx.proof_claimed {
        return None;
    }
    let proof = ctx.proof.as_ref()?;
    let fleet = zone(request, conf).and_then(|z| z.fleet.as_ref());
    let mode = conf.pop.replay(fleet.is_some());
    let Some(fleet) = fleet.filter(|_| mode != Replay::Local) else {
        ctx.proof_claimed = true;
        return None;
    };
    let r: *mut ngx_http_request_t = request.into();
    let wake = move |outcome| {
        // SAFETY: the waiter is cancelled when the request's context (which holds the
        // claim) is dropped, so `r` is alive whenever this runs.
        unsafe {
            if let Some(c) = ctx::get(r) {
                c.jti.op = 0;
                c.jti.reply = Some(outcome);
            }
            ngx_post_event((*(*r).connection).write, &raw mut ngx_posted_events);
        }
    };
    let ids = (proof.jkt.as_str(), proof.jti.as_str());
    let px = pop::fleet_memory_ms(conf);
    if !jti::claim(fleet, &mut ctx.jti, ids, px, now_ms(), wake) {
        metrics::count(Counter::RedisErrors);
        return unconfirmed(request, mode, ctx).err().map(Step::Reject);
    }
    ctx.claim_for = Some(entry.clone());
    ctx.phase = Phase::Proof;
    Some(AGAIN)
}

/// Redis answered the claim (or its timeout passed): grant the decision that waited, or
/// refuse the replay.
pub(super) fn claimed(request: &mut Request, conf: &LocConf, ctx: &mut Ctx) -> Step {
    ctx.phase = Phase::Done;
    let fleet = zone(request, conf).and_then(|z| z.fleet.as_ref());
    let (Some(fleet), Some(entry)) = (fleet, ctx.claim_for.take()) else {
        // Not reached: a claim is only sent with both.
        return Step::Rc(500);
    };
    let mode = conf.pop.replay(true);
    match jti::answer(fleet, &mut ctx.jti, now_ms()) {
        Answer::Claimed => {}
        Answer::Replayed => return Step::Reject(pop::replayed(request, " at another instance")),
        Answer::Unavailable => {
            metrics::count(Counter::RedisErrors);
            if let Err(reject) = unconfirmed(request, mode, ctx) {
                return Step::Reject(reject);
            }
        }
    }
    ctx.proof_claimed = true;
    grant(request, conf, ctx, entry)
}

/// Redis could not claim the proof: the instance's replay cache decides alone (`fleet`), or
/// the request is refused (`fleet_required`).
fn unconfirmed(request: &Request, mode: Replay, ctx: &mut Ctx) -> Result<(), Reject> {
    if mode == Replay::FleetRequired {
        ngx_log_error!(
            NGX_LOG_INFO,
            request.log(),
            "The DPoP proof could not be claimed for the fleet (Redis unavailable): refusing (phantom_token_dpop_replay fleet_required)"
        );
        return Err(Reject::Unavailable {
            retry_after: Some(1),
            unreachable: false,
        });
    }
    ngx_log_debug_http!(
        request,
        "DPoP proof checked against this instance's replay cache only (Redis unavailable)"
    );
    metrics::count(Counter::DpopReplayLocalFallback);
    ctx.proof_claimed = true;
    Ok(())
}
