//! How long an introspection result may be cached.

/// `min(exp - now - leeway, max_age, max_ttl)` seconds; 0 means "do not cache".
pub fn positive_ttl(
    now: i64,
    exp: i64,
    leeway: i64,
    max_age: Option<u64>,
    max_ttl: Option<u64>,
) -> u64 {
    let left = exp.saturating_sub(now).saturating_sub(leeway);
    if left <= 0 {
        return 0;
    }
    let mut ttl = left as u64;
    for cap in [max_age, max_ttl].into_iter().flatten() {
        ttl = ttl.min(cap);
    }
    ttl
}

/// `negative_ttl` capped by the response's `max-age` when it sent one.
pub fn negative_ttl(negative_ttl: u64, max_age: Option<u64>) -> u64 {
    max_age.map_or(negative_ttl, |m| negative_ttl.min(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_minimum() {
        assert_eq!(positive_ttl(100, 400, 0, None, None), 300);
        assert_eq!(positive_ttl(100, 400, 30, None, None), 270);
        assert_eq!(positive_ttl(100, 400, 0, Some(60), None), 60);
        assert_eq!(positive_ttl(100, 400, 0, Some(60), Some(10)), 10);
        assert_eq!(positive_ttl(100, 400, 0, Some(0), None), 0);
    }

    #[test]
    fn never_positive_for_expired_tokens() {
        assert_eq!(positive_ttl(100, 100, 0, None, None), 0);
        assert_eq!(positive_ttl(100, 50, 0, Some(60), None), 0);
        assert_eq!(positive_ttl(100, 110, 30, None, None), 0);
        assert_eq!(
            positive_ttl(i64::MIN, i64::MAX, i64::MIN, None, None),
            u64::try_from(i64::MAX).unwrap()
        );
    }

    #[test]
    fn negative_is_capped_by_max_age() {
        assert_eq!(negative_ttl(10, None), 10);
        assert_eq!(negative_ttl(10, Some(3)), 3);
        assert_eq!(negative_ttl(10, Some(0)), 0);
    }
}
