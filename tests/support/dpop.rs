//! What every DPoP test needs to make proofs with `dpop_sign`: the clock and fresh `jti`s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
