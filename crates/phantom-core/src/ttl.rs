//! Until when an introspection result may be served, to the millisecond.

/// Seconds to milliseconds, saturating (configuration values are bounded, headers are not).
fn ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// The instant (ms) an active entry stops being served: the earliest of `exp - leeway`,
/// `now + max_age` and `now + max_ttl`. `None` when that is not after `now_ms`, so an entry
/// is never served at or after `exp - leeway`.
pub fn positive_expiry_ms(
    now_ms: i64,
    exp: i64,
    leeway: u64,
    max_age: Option<u64>,
    max_ttl: Option<u64>,
) -> Option<i64> {
    let mut until = exp.saturating_mul(1000).saturating_sub(ms(leeway));
    for cap in [max_age, max_ttl].into_iter().flatten() {
        until = until.min(now_ms.saturating_add(ms(cap)));
    }
    (until > now_ms).then_some(until)
}

/// The instant (ms) an inactive entry stops being served: `negative_ttl`, capped by the
/// response's `max-age` when it sent one.
pub fn negative_expiry_ms(now_ms: i64, negative_ttl: u64, max_age: Option<u64>) -> Option<i64> {
    let ttl = max_age.map_or(negative_ttl, |m| negative_ttl.min(m));
    (ttl > 0).then(|| now_ms.saturating_add(ms(ttl)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_earliest_limit() {
        assert_eq!(
            positive_expiry_ms(100_000, 400, 0, None, None),
            Some(400_000)
        );
        assert_eq!(
            positive_expiry_ms(100_000, 400, 30, None, None),
            Some(370_000)
        );
        assert_eq!(
            positive_expiry_ms(100_000, 400, 0, Some(60), None),
            Some(160_000)
        );
        assert_eq!(
            positive_expiry_ms(100_000, 400, 0, Some(60), Some(10)),
            Some(110_000)
        );
        assert_eq!(positive_expiry_ms(100_000, 400, 0, Some(0), None), None);
    }

    #[test]
    fn never_reaches_exp_minus_leeway_to_the_millisecond() {
        // 999 ms into second 100, exp 101, leeway 0: served until 101.000 exactly, not 101.999.
        assert_eq!(
            positive_expiry_ms(100_999, 101, 0, None, None),
            Some(101_000)
        );
        assert_eq!(positive_expiry_ms(100_999, 101, 1, None, None), None);
        assert_eq!(positive_expiry_ms(101_000, 101, 0, None, None), None);
    }

    #[test]
    fn never_positive_for_expired_tokens() {
        assert_eq!(positive_expiry_ms(100_000, 100, 0, None, None), None);
        assert_eq!(positive_expiry_ms(100_000, 50, 0, Some(60), None), None);
        assert_eq!(positive_expiry_ms(100_000, 110, 30, None, None), None);
        assert_eq!(
            positive_expiry_ms(0, i64::MAX, u64::MAX, None, None),
            None,
            "a leeway beyond any exp leaves nothing"
        );
        assert_eq!(
            positive_expiry_ms(0, i64::MAX, 0, Some(u64::MAX), None),
            Some(i64::MAX)
        );
    }

    #[test]
    fn negative_is_capped_by_max_age() {
        assert_eq!(negative_expiry_ms(1000, 10, None), Some(11_000));
        assert_eq!(negative_expiry_ms(1000, 10, Some(3)), Some(4000));
        assert_eq!(negative_expiry_ms(1000, 10, Some(0)), None);
        assert_eq!(negative_expiry_ms(1000, 0, None), None);
    }
}
