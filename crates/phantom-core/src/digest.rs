//! Cache and coalescing keys: SHA-256 over the introspection context and the token.
//!
//! The context names everything that changes the identity server's answer (the
//! introspection endpoint and the response format), so two locations share an entry only
//! when they would ask the same question of the same server. Raw tokens are never stored.

use sha2::{Digest, Sha256};

/// SHA-256 of the token alone (kept for callers that have no context).
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The key for `token` asked in `context`: SHA-256(len(context) || context || token).
///
/// The length prefix keeps the split between context and token unambiguous.
pub fn keyed_digest(context: &[u8], token: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((context.len() as u64).to_be_bytes());
    h.update(context);
    h.update(token);
    h.finalize().into()
}

/// The context string of a location: endpoint URI and response format, NUL separated.
pub fn context(endpoint: &[u8], format: &str) -> Vec<u8> {
    let mut c = Vec::with_capacity(endpoint.len() + 1 + format.len());
    c.extend_from_slice(endpoint);
    c.push(0);
    c.extend_from_slice(format.as_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_sha256() {
        let d = token_digest(b"abc");
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn context_changes_the_key() {
        let a = context(b"/_ia", "jwt");
        let b = context(b"/_ib", "jwt");
        let json = context(b"/_ia", "json_field:jwt");
        assert_ne!(keyed_digest(&a, b"t"), keyed_digest(&b, b"t"));
        assert_ne!(keyed_digest(&a, b"t"), keyed_digest(&json, b"t"));
        assert_eq!(keyed_digest(&a, b"t"), keyed_digest(&a.clone(), b"t"));
    }

    #[test]
    fn split_between_context_and_token_is_unambiguous() {
        assert_ne!(keyed_digest(b"/a", b"bc"), keyed_digest(b"/ab", b"c"));
    }
}
