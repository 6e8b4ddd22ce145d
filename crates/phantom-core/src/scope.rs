//! Scope checks against the space separated `scope` of a token.

/// True if every required scope is one of the granted ones.
pub fn has_all(granted: &str, required: &[String]) -> bool {
    required
        .iter()
        .all(|r| granted.split_whitespace().any(|g| g == r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        let req = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(has_all("read write", &req(&["write", "read"])));
        assert!(has_all("read", &req(&[])));
        assert!(!has_all("read", &req(&["write"])));
        assert!(!has_all("readonly", &req(&["read"])));
        assert!(!has_all("", &req(&["read"])));
    }
}
