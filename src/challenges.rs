//! Which `WWW-Authenticate` lines a rejection carries (RFC 6750 section 3, RFC 9449
//! sections 7.1 and 7.2): Bearer alone where DPoP is off; with DPoP, the error goes on the
//! scheme the client used, and `phantom_token_dpop on` offers both schemes.

use phantom_core::challenge::{bearer_error, dpop_challenge};

use crate::config::LocConf;
use crate::config::{Compat, DpopMode};
use crate::reject::{Challenge, DpopReject, Reject};

/// The challenges of `reject` in the location `conf`, in order.
pub(crate) fn of(conf: &LocConf, reject: &Reject) -> Vec<String> {
    let ch = &conf.challenges;
    let mode = conf.pop.dpop();
    let algs = conf.pop.algs_text();
    let realm = conf.realm.as_deref().unwrap_or("api");
    let dpop = |error: Option<&str>, why: Option<&str>| dpop_challenge(realm, &algs, error, why);
    // Curity's module has no DPoP and no error parameters: its exact challenges only.
    let curity = conf.compat() == Compat::Curity;
    let bearer = match reject {
        Reject::Unauthorized(Challenge::Missing) => &ch.missing,
        Reject::Unauthorized(Challenge::InvalidRequest) => &ch.invalid_request,
        Reject::Unauthorized(Challenge::InvalidToken) => &ch.invalid_token,
        Reject::Forbidden => &ch.insufficient_scope,
        Reject::Dpop(d) if !curity => return dpop_rejection(mode, d, realm, dpop),
        _ => return Vec::new(),
    };
    match (mode, reject) {
        (DpopMode::Off, _) | (_, Reject::Forbidden) => vec![bearer.clone()],
        (DpopMode::On, _) => vec![bearer.clone(), dpop(None, None)],
        (DpopMode::Required, Reject::Unauthorized(Challenge::Missing)) => vec![dpop(None, None)],
        (DpopMode::Required, Reject::Unauthorized(Challenge::InvalidRequest)) => {
            vec![dpop(Some("invalid_request"), None)]
        }
        (DpopMode::Required, _) => vec![dpop(Some("invalid_token"), None)],
    }
}

fn dpop_rejection(
    mode: DpopMode,
    reject: &DpopReject,
    realm: &str,
    dpop: impl Fn(Option<&str>, Option<&str>) -> String,
) -> Vec<String> {
    match reject {
        DpopReject::Proof(why) => vec![dpop(Some("invalid_dpop_proof"), Some(why))],
        DpopReject::UseNonce(_) => vec![dpop(
            Some("use_dpop_nonce"),
            Some("Resource server requires nonce in DPoP proof"),
        )],
        DpopReject::Binding(why) => vec![dpop(Some("invalid_token"), Some(why))],
        DpopReject::Downgrade if mode == DpopMode::On => vec![
            bearer_error(realm, "invalid_token", "The token is DPoP-bound"),
            dpop(None, None),
        ],
        DpopReject::Downgrade | DpopReject::Required => {
            vec![dpop(
                Some("invalid_token"),
                Some("DPoP-bound token required"),
            )]
        }
        DpopReject::Ambiguous => vec![
            bearer_error(realm, "invalid_request", "Bearer token with a DPoP proof"),
            dpop(Some("invalid_request"), None),
        ],
    }
}
