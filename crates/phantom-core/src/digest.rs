//! The cache key: SHA-256 of the token, so raw tokens are never stored.

use sha2::{Digest, Sha256};

pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_sha256() {
        let d = super::token_digest(b"abc");
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
