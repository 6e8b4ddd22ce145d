//! Stateless server nonces (RFC 9449 §8, §9): any worker, and any host sharing the key,
//! validates them without lookups.
//!
//! `nonce = b64url(step (8 bytes, big-endian) || HMAC-SHA256(key, "phantom-dpop-nonce" || step)[..16])`
//! with `step = floor(now / NONCE_STEP)`: 32 characters of `NQCHAR`.

use super::{b64url, unb64url};
use ring::hmac;
use subtle::ConstantTimeEq;

/// Seconds per nonce step.
pub const NONCE_STEP: i64 = 10;

const LABEL: &[u8] = b"phantom-dpop-nonce";
const TAG_LEN: usize = 16;

fn tag(key: &[u8], step: i64) -> [u8; TAG_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(LABEL);
    ctx.update(&step.to_be_bytes());
    let full = ctx.sign();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full.as_ref()[..TAG_LEN]);
    out
}

/// The nonce for the current step.
pub fn make_nonce(key: &[u8], now: i64) -> String {
    let step = now.div_euclid(NONCE_STEP);
    let mut raw = [0u8; 8 + TAG_LEN];
    raw[..8].copy_from_slice(&step.to_be_bytes());
    raw[8..].copy_from_slice(&tag(key, step));
    b64url(&raw)
}

/// Accepts nonces of the steps `cur - ceil(lifetime / 10) ..= cur + 1` (one step ahead for
/// clock differences between hosts sharing the key); the tag is compared in constant time.
pub fn check_nonce(key: &[u8], nonce: &str, now: i64, lifetime: u64) -> bool {
    if nonce.len() != 32 {
        return false;
    }
    let Some(raw) = unb64url(nonce.as_bytes()) else {
        return false;
    };
    let (Some(step), Some(presented)) = (raw.get(..8), raw.get(8..)) else {
        return false;
    };
    let Ok(step) = <[u8; 8]>::try_from(step) else {
        return false;
    };
    let step = i64::from_be_bytes(step);
    let cur = i128::from(now.div_euclid(NONCE_STEP));
    let back = i128::from(lifetime.div_ceil(NONCE_STEP as u64));
    let s = i128::from(step);
    if s < cur - back || s > cur + 1 {
        return false;
    }
    bool::from(tag(key, step).ct_eq(presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_window() {
        let now = 1_700_000_005;
        let n = make_nonce(KEY, now);
        assert_eq!(n.len(), 32);
        assert!(n
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(make_nonce(KEY, now + 4), n); // same step
        assert_ne!(make_nonce(KEY, now + 5), n);
        assert!(check_nonce(KEY, &n, now, 60));
        // Lifetime 60 s: six steps back are fine, the seventh is stale.
        assert!(check_nonce(KEY, &n, now + 60, 60));
        assert!(!check_nonce(KEY, &n, now + 70, 60));
        // Lifetime 15 s: ceil(1.5) = 2 steps.
        assert!(check_nonce(KEY, &n, now + 20, 15));
        assert!(!check_nonce(KEY, &n, now + 30, 15));
        // One step from the future (another host's clock) is fine, two are not.
        assert!(check_nonce(KEY, &n, now - 10, 60));
        assert!(!check_nonce(KEY, &n, now - 20, 60));
        // Other key, altered nonce.
        assert!(!check_nonce(b"other", &n, now, 60));
        let mut bytes = n.clone().into_bytes();
        bytes[31] = if bytes[31] == b'A' { b'B' } else { b'A' };
        assert!(!check_nonce(
            KEY,
            std::str::from_utf8(&bytes).unwrap(),
            now,
            60
        ));
        assert!(!check_nonce(KEY, "", now, 60));
        assert!(!check_nonce(KEY, &n[..31], now, 60));
        assert!(!check_nonce(
            KEY,
            "################################",
            now,
            60
        ));
    }

    #[test]
    fn extreme_times_do_not_panic() {
        for now in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX] {
            let n = make_nonce(KEY, now);
            assert!(check_nonce(KEY, &n, now, u64::MAX));
            assert!(check_nonce(KEY, &n, now, 0));
            let _ = check_nonce(KEY, &n, i64::MAX.wrapping_sub(now), u64::MAX);
        }
    }
}
