//! What the DPoP tests share: the clock and fresh `jti`s for `dpop_sign`'s proofs, and the
//! challenges of a refusal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Response;

/// Seconds since the epoch: the `iat` of a proof made now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A `jti` no other proof has (process, second and counter), so no proof is taken for a replay.
pub fn jti() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "jti-{}-{}-{}",
        std::process::id(),
        now(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// All `WWW-Authenticate` values of a response, joined with ` | ` (a refusal may carry several).
pub fn challenges(r: &Response) -> String {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}
