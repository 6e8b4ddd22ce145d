//! What the module answers instead of passing a request on: the rejection, its status, its
//! body and its Curity-mode form. Choosing challenges is [`crate::challenges`]; sending is
//! [`crate::respond`].

use phantom_core::challenge::{
    BAD_REQUEST_BODY, FORBIDDEN_BODY, SERVER_ERROR_BODY, TOO_MANY_REQUESTS_BODY, UNAUTHORIZED_BODY,
};

/// Which `WWW-Authenticate` value a 401 carries.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Challenge {
    /// No credentials: no `error` parameter (RFC 6750 section 3.1).
    Missing,
    InvalidRequest,
    InvalidToken,
}

/// Why a DPoP request (or a Bearer request in a DPoP location) is refused.
#[derive(Clone, Debug)]
pub(crate) enum DpopReject {
    /// 401 `invalid_dpop_proof`, with a short description.
    Proof(&'static str),
    /// 401 `use_dpop_nonce`, with a fresh nonce for `DPoP-Nonce`.
    UseNonce(String),
    /// 401 `invalid_token` on the DPoP challenge (key or certificate binding, inactive token).
    Binding(&'static str),
    /// 401: a DPoP-bound token sent as Bearer (RFC 9449 section 7.2).
    Downgrade,
    /// 401: `phantom_token_dpop required` and a Bearer token.
    Required,
    /// 400: a Bearer token with a DPoP proof.
    Ambiguous,
}

/// A response the module gives instead of passing the request on.
#[derive(Clone, Debug)]
pub(crate) enum Reject {
    Unauthorized(Challenge),
    Dpop(DpopReject),
    /// 403 `insufficient_scope`.
    Forbidden,
    /// 429 with `Retry-After` (1 s unless the introspection location gave one).
    TooManyRequests(Option<u64>),
    /// 502: the identity server or its response is unusable.
    BadGateway,
    /// 500: only Curity's mapping of unexpected identity-server statuses gives it.
    ServerError,
    /// 503, or 502 under `phantom_token_compat curity` when the server was unreachable.
    Unavailable {
        retry_after: Option<u64>,
        unreachable: bool,
    },
}

impl Reject {
    pub(crate) fn status(&self) -> usize {
        match self {
            Reject::Unauthorized(_) => 401,
            Reject::Dpop(DpopReject::Ambiguous) => 400,
            Reject::Dpop(_) => 401,
            Reject::Forbidden => 403,
            Reject::TooManyRequests(_) => 429,
            Reject::BadGateway => 502,
            Reject::ServerError => 500,
            Reject::Unavailable { .. } => 503,
        }
    }

    pub(crate) fn body(&self) -> &'static str {
        match self {
            Reject::Unauthorized(_) => UNAUTHORIZED_BODY,
            Reject::Dpop(DpopReject::Ambiguous) => BAD_REQUEST_BODY,
            Reject::Dpop(_) => UNAUTHORIZED_BODY,
            Reject::Forbidden => FORBIDDEN_BODY,
            Reject::TooManyRequests(_) => TOO_MANY_REQUESTS_BODY,
            _ => SERVER_ERROR_BODY,
        }
    }

    /// Curity's module 2.0: an unreachable server is a 502, a 503 carries no `Retry-After`.
    pub(crate) fn into_curity(self) -> Reject {
        match self {
            Reject::Unavailable {
                unreachable: true, ..
            } => Reject::BadGateway,
            Reject::Unavailable { .. } => Reject::Unavailable {
                retry_after: None,
                unreachable: false,
            },
            other => other,
        }
    }
}
