//! Values stored in Redis: sealed with ChaCha20-Poly1305 and bound to their key name.
//!
//! Why `ring` 0.17: it offers AES-256-GCM, ChaCha20-Poly1305 and HMAC-SHA-256 in one well-kept
//! crate that is already in Cargo.lock, with prefixed symbols that coexist with nginx's OpenSSL;
//! its per-operation cost (about a microsecond for a 1 KB JWT) is noise next to one Redis round
//! trip (about 100 µs on a LAN).
//!
//! Why ChaCha20-Poly1305: constant time in software on every target (AES-GCM is only with
//! AES-NI/PMULL), and the same 96-bit nonce. Nonces are random, 12 bytes per seal, drawn from
//! `ring::rand::SystemRandom` (the `getrandom` system call, safe after fork: never a userspace
//! generator seeded in the master). Random 96-bit nonces keep the collision probability under
//! 2^-32 for 2^32 seals per key: rotate the seal key well before that many stores.
//!
//! Value format, version 1:
//!
//! ```text
//! ver (1 byte, = 1) | kid_len (1 byte, 1..=32) | kid (kid_len bytes) | nonce (12)
//!     | ciphertext (plaintext length) | tag (16)
//! AAD = ver | kid_len | kid | the full Redis key name
//! ```
//!
//! The kid is the key file's kid string, length-prefixed, not an index into the file: the order
//! of `seal` lines changes during a rotation, and old and new workers (or instances) hold
//! different orders at once. The AAD binds the value to its Redis key, so a value copied to
//! another key does not open. Overhead: 30 bytes plus the kid.
//!
//! Plaintext, version 1 (all integers big-endian; no trailing bytes):
//!
//! ```text
//! created_ms (i64) | expires_ms (i64) | flags (u8: bit 0 active, bit 1 sub_h, bit 2 cid_h;
//!     other bits zero) | sub_h (16, if bit 1) | cid_h (16, if bit 2)
//!     | scope_len (u32) | scope (UTF-8) | jwt_len (u32) | jwt
//! ```
//!
//! Any failure to open is a cache miss for the caller (plus a counter), never a request error.

use super::keys::{KeyFile, MAX_KID_LEN};
use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// The only value format this code writes and reads.
pub const VERSION: u8 = 1;

/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;

const FLAG_ACTIVE: u8 = 1;
const FLAG_SUB: u8 = 2;
const FLAG_CID: u8 = 4;

/// One cached introspection result, as stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Wall time (ms since the epoch) when the introspection started; compared with tombstones.
    pub created_ms: i64,
    /// Wall time (ms since the epoch) after which the entry must not be used, whatever PX says.
    pub expires_ms: i64,
    /// Whether the token was active (an inactive result is cached too).
    pub active: bool,
    /// Truncated HMAC of the subject, for purges by subject.
    pub sub_h: Option<[u8; 16]>,
    /// Truncated HMAC of the client id, for purges by client.
    pub cid_h: Option<[u8; 16]>,
    /// The granted scope.
    pub scope: String,
    /// The JWT handed to the upstream.
    pub jwt: Vec<u8>,
}

/// Why a value could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// The system random generator failed.
    Random,
    /// The scope or the JWT is longer than 4 GiB - 1.
    TooLarge,
    /// The AEAD refused to seal (not expected with a valid key).
    Crypto,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::Random => "system random generator failed",
            SealError::TooLarge => "value too large to seal",
            SealError::Crypto => "AEAD seal failed",
        })
    }
}

impl std::error::Error for SealError {}

/// Why a stored value could not be opened. Every case is a cache miss for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Too short for the header, an unknown format version or an invalid kid length.
    BadEnvelope,
    /// Sealed under a kid the key file does not list (rotated out, or another fleet).
    UnknownKid,
    /// Authentication failed: tampered, truncated, wrong key, or moved from another key name.
    Auth,
    /// Authentic, but the plaintext does not decode (a writer bug, or another format).
    BadPlaintext,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenError::BadEnvelope => "sealed value: bad envelope",
            OpenError::UnknownKid => "sealed value: unknown seal key id",
            OpenError::Auth => "sealed value: authentication failed",
            OpenError::BadPlaintext => "sealed value: malformed plaintext",
        })
    }
}

impl std::error::Error for OpenError {}

fn encode(value: &Sealed, out: &mut Vec<u8>) -> Result<(), SealError> {
    let scope_len = u32::try_from(value.scope.len()).map_err(|_| SealError::TooLarge)?;
    let jwt_len = u32::try_from(value.jwt.len()).map_err(|_| SealError::TooLarge)?;
    out.extend_from_slice(&value.created_ms.to_be_bytes());
    out.extend_from_slice(&value.expires_ms.to_be_bytes());
    let mut flags = 0;
    if value.active {
        flags |= FLAG_ACTIVE;
    }
    if value.sub_h.is_some() {
        flags |= FLAG_SUB;
    }
    if value.cid_h.is_some() {
        flags |= FLAG_CID;
    }
    out.push(flags);
    for h in [&value.sub_h, &value.cid_h].into_iter().flatten() {
        out.extend_from_slice(h);
    }
    out.extend_from_slice(&scope_len.to_be_bytes());
    out.extend_from_slice(value.scope.as_bytes());
    out.extend_from_slice(&jwt_len.to_be_bytes());
    out.extend_from_slice(&value.jwt);
    Ok(())
}

/// A bounds-checked reader over a plaintext (also used by purge notices).
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], OpenError> {
        if n > self.0.len() {
            return Err(OpenError::BadPlaintext);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], OpenError> {
        self.take(N)?
            .try_into()
            .map_err(|_| OpenError::BadPlaintext)
    }

    pub(crate) fn bytes_u32(&mut self) -> Result<&'a [u8], OpenError> {
        let n = u32::from_be_bytes(self.array()?);
        let n = usize::try_from(n).map_err(|_| OpenError::BadPlaintext)?;
        self.take(n)
    }
}

fn decode(plain: &[u8]) -> Result<Sealed, OpenError> {
    let mut r = Reader(plain);
    let created_ms = i64::from_be_bytes(r.array()?);
    let expires_ms = i64::from_be_bytes(r.array()?);
    let [flags] = r.array()?;
    if flags & !(FLAG_ACTIVE | FLAG_SUB | FLAG_CID) != 0 {
        return Err(OpenError::BadPlaintext);
    }
    let sub_h = if flags & FLAG_SUB != 0 {
        Some(r.array()?)
    } else {
        None
    };
    let cid_h = if flags & FLAG_CID != 0 {
        Some(r.array()?)
    } else {
        None
    };
    let scope = std::str::from_utf8(r.bytes_u32()?)
        .map_err(|_| OpenError::BadPlaintext)?
        .to_string();
    let jwt = r.bytes_u32()?.to_vec();
    if !r.0.is_empty() {
        return Err(OpenError::BadPlaintext);
    }
    Ok(Sealed {
        created_ms,
        expires_ms,
        active: flags & FLAG_ACTIVE != 0,
        sub_h,
        cid_h,
        scope,
        jwt,
    })
}

/// `header || redis_key`, where the header is `ver | kid_len | kid`.
fn aad(header: &[u8], redis_key: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + redis_key.len());
    a.extend_from_slice(header);
    a.extend_from_slice(redis_key.as_bytes());
    a
}

/// Seals `plaintext` under `kid`/`key` for `redis_key`.
fn seal_plaintext(
    kid: &str,
    key: &LessSafeKey,
    redis_key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let kid_len = u8::try_from(kid.len()).map_err(|_| SealError::Crypto)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Random)?;
    let mut out = Vec::with_capacity(2 + kid.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(VERSION);
    out.push(kid_len);
    out.extend_from_slice(kid.as_bytes());
    let aad = aad(&out, redis_key);
    out.extend_from_slice(&nonce);
    let body = out.len();
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            out.get_mut(body..).unwrap_or_default(),
        )
        .map_err(|_| SealError::Crypto)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Seals any plaintext in the version 1 envelope, bound to `redis_key`, under the key file's
/// first seal key. Shared with purge notices, which differ only in their plaintext.
pub(crate) fn seal_bytes(
    keys: &KeyFile,
    redis_key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let Some(sk) = keys.seal_keys().first() else {
        return Err(SealError::Crypto); // parse_key_file guarantees one; never reached
    };
    seal_plaintext(&sk.kid, &sk.key, redis_key, plaintext)
}

/// Seals `value` for the Redis key `redis_key` under the key file's first seal key.
pub fn seal(keys: &KeyFile, redis_key: &str, value: &Sealed) -> Result<Vec<u8>, SealError> {
    let mut plain = Vec::with_capacity(17 + 32 + 8 + value.scope.len() + value.jwt.len());
    encode(value, &mut plain)?;
    seal_bytes(keys, redis_key, &plain)
}

/// Opens a value read from the Redis key `redis_key` with any seal key the key file lists.
pub fn open(keys: &KeyFile, redis_key: &str, bytes: &[u8]) -> Result<Sealed, OpenError> {
    decode(&open_bytes(keys, redis_key, bytes)?)
}

/// Opens a version 1 envelope bound to `redis_key` and returns its authentic plaintext.
pub(crate) fn open_bytes(
    keys: &KeyFile,
    redis_key: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, OpenError> {
    let (&ver, rest) = bytes.split_first().ok_or(OpenError::BadEnvelope)?;
    let (&kid_len, rest) = rest.split_first().ok_or(OpenError::BadEnvelope)?;
    let kid_len = usize::from(kid_len);
    if ver != VERSION || kid_len == 0 || kid_len > MAX_KID_LEN {
        return Err(OpenError::BadEnvelope);
    }
    if rest.len() < kid_len + NONCE_LEN + TAG_LEN {
        return Err(OpenError::BadEnvelope);
    }
    let (kid, rest) = rest.split_at(kid_len);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let sk = keys.seal_key(kid).ok_or(OpenError::UnknownKid)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError::BadEnvelope)?;
    let header = bytes.get(..2 + kid_len).ok_or(OpenError::BadEnvelope)?;
    let aad = aad(header, redis_key);
    let mut buf = sealed.to_vec();
    let plain_len = sk
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut buf,
        )
        .map_err(|_| OpenError::Auth)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::keys::{base64url, parse_key_file};

    fn b64(seed: u8) -> String {
        base64url(&core::array::from_fn::<u8, 32, _>(|i| {
            seed.wrapping_add(i as u8)
        }))
    }

    /// name v1, seal lines for the given (kid, seed) pairs in order.
    fn keys(seals: &[(&str, u8)]) -> KeyFile {
        let mut text = format!("name v1 {}\n", b64(0));
        for (kid, seed) in seals {
            text.push_str(&format!("seal {kid} {}\n", b64(*seed)));
        }
        parse_key_file(&text).unwrap()
    }

    fn value() -> Sealed {
        Sealed {
            created_ms: 1_700_000_000_123,
            expires_ms: 1_700_000_300_123,
            active: true,
            sub_h: Some([0x11; 16]),
            cid_h: Some([0x22; 16]),
            scope: "read write".to_string(),
            jwt: b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln".to_vec(),
        }
    }

    const KEY: &str = "pt:v1:t:lmUtLKZUQJpvNl8ubOGfgcIXTSBeAJAusqItEzFt7Zs";

    #[test]
    fn round_trip_and_layout() {
        let k = keys(&[("k3", 100)]);
        let v = value();
        let s = seal(&k, KEY, &v).unwrap();
        assert_eq!(s[0], VERSION);
        assert_eq!(&s[1..4], b"\x02k3");
        let plain_len = 17 + 32 + 4 + v.scope.len() + 4 + v.jwt.len();
        assert_eq!(s.len(), 4 + NONCE_LEN + plain_len + TAG_LEN);
        assert_eq!(open(&k, KEY, &s), Ok(v.clone()));
        // Nothing in clear: neither the JWT nor the scope.
        assert!(!s.windows(3).any(|w| w == b"eyJ"));
        assert!(!s.windows(5).any(|w| w == b"write"));
        // Random nonces: two seals of one value differ, both open.
        let s2 = seal(&k, KEY, &v).unwrap();
        assert_ne!(s, s2);
        assert_eq!(open(&k, KEY, &s2), Ok(v));
    }

    #[test]
    fn round_trip_edge_values() {
        let k = keys(&[("k3", 100)]);
        let cases = [
            Sealed {
                created_ms: i64::MIN,
                expires_ms: i64::MAX,
                active: false,
                sub_h: None,
                cid_h: None,
                scope: String::new(),
                jwt: Vec::new(),
            },
            Sealed {
                sub_h: None,
                ..value()
            },
            Sealed {
                cid_h: None,
                scope: "ünïcode scope".to_string(),
                jwt: vec![0; 70_000],
                ..value()
            },
        ];
        for v in cases {
            let s = seal(&k, KEY, &v).unwrap();
            assert_eq!(open(&k, KEY, &s), Ok(v));
        }
    }

    #[test]
    fn every_tampered_byte_fails() {
        let k = keys(&[("k3", 100), ("k2", 50)]);
        let s = seal(&k, KEY, &value()).unwrap();
        for i in 0..s.len() {
            for bit in [0x01, 0x80] {
                let mut t = s.clone();
                t[i] ^= bit;
                assert!(open(&k, KEY, &t).is_err(), "byte {i} bit {bit:#x}");
            }
        }
        let mut t = s.clone();
        t[5] ^= 1; // nonce
        assert_eq!(open(&k, KEY, &t), Err(OpenError::Auth));
        let last = s.len() - 1;
        let mut t = s.clone();
        t[last] ^= 1; // tag
        assert_eq!(open(&k, KEY, &t), Err(OpenError::Auth));
        let mut t = s.clone();
        t.push(0);
        assert_eq!(open(&k, KEY, &t), Err(OpenError::Auth));
    }

    #[test]
    fn a_value_moved_to_another_key_fails() {
        let k = keys(&[("k3", 100)]);
        let s = seal(&k, KEY, &value()).unwrap();
        let other = KEY.replace(":t:", ":lk:");
        assert_eq!(open(&k, &other, &s), Err(OpenError::Auth));
        assert_eq!(open(&k, &KEY[..KEY.len() - 1], &s), Err(OpenError::Auth));
        assert_eq!(open(&k, "", &s), Err(OpenError::Auth));
    }

    #[test]
    fn rotation_and_unknown_kid() {
        let old = keys(&[("k2", 50)]);
        let s_old = seal(&old, KEY, &value()).unwrap();
        // Step 1: the new key listed second; step 2: first. Both open the old value.
        let step1 = keys(&[("k2", 50), ("k3", 100)]);
        let step2 = keys(&[("k3", 100), ("k2", 50)]);
        assert_eq!(open(&step1, KEY, &s_old), Ok(value()));
        assert_eq!(open(&step2, KEY, &s_old), Ok(value()));
        // Step 2 seals with k3, which step 1 (an old worker during the reload) can open too.
        let s_new = seal(&step2, KEY, &value()).unwrap();
        assert_eq!(&s_new[1..4], b"\x02k3");
        assert_eq!(open(&step1, KEY, &s_new), Ok(value()));
        // Step 3: k2 removed.
        let step3 = keys(&[("k3", 100)]);
        assert_eq!(open(&step3, KEY, &s_old), Err(OpenError::UnknownKid));
        assert_eq!(open(&step3, KEY, &s_new), Ok(value()));
        // Same kid, different key (another fleet, or a kid reused by mistake).
        let other = keys(&[("k3", 7)]);
        assert_eq!(open(&other, KEY, &s_new), Err(OpenError::Auth));
    }

    #[test]
    fn truncated_at_every_length_fails() {
        let k = keys(&[("k3", 100)]);
        let s = seal(&k, KEY, &value()).unwrap();
        for n in 0..s.len() {
            let e = open(&k, KEY, &s[..n]).expect_err("truncated");
            let header = 2 + 2 + NONCE_LEN + TAG_LEN;
            if n < header {
                assert_eq!(e, OpenError::BadEnvelope, "length {n}");
            } else {
                assert_eq!(e, OpenError::Auth, "length {n}");
            }
        }
    }

    #[test]
    fn bad_envelopes() {
        let k = keys(&[("k3", 100)]);
        let s = seal(&k, KEY, &value()).unwrap();
        let mut t = s.clone();
        t[0] = 2;
        assert_eq!(open(&k, KEY, &t), Err(OpenError::BadEnvelope));
        let mut t = s.clone();
        t[1] = 0;
        assert_eq!(open(&k, KEY, &t), Err(OpenError::BadEnvelope));
        let mut t = s.clone();
        t[1] = 33;
        assert_eq!(open(&k, KEY, &t), Err(OpenError::BadEnvelope));
        let mut t = s;
        t[1] = 3; // kid "k3" + first nonce byte: not listed
        assert_eq!(open(&k, KEY, &t), Err(OpenError::UnknownKid));
    }

    /// Authentic values whose plaintext does not decode: the key is right, the writer is not.
    #[test]
    fn malformed_plaintexts() {
        let k = keys(&[("k3", 100)]);
        let sk = &k.seal_keys()[0];
        let mut good = Vec::new();
        encode(&value(), &mut good).unwrap();
        let open_plain = |p: &[u8]| {
            let s = seal_plaintext(sk.kid(), &sk.key, KEY, p).unwrap();
            open(&k, KEY, &s)
        };
        assert_eq!(open_plain(&good), Ok(value()));
        for n in 0..good.len() {
            assert_eq!(open_plain(&good[..n]), Err(OpenError::BadPlaintext), "{n}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(open_plain(&extra), Err(OpenError::BadPlaintext));
        let mut flags = good.clone();
        flags[16] |= 8;
        assert_eq!(open_plain(&flags), Err(OpenError::BadPlaintext));
        // Scope length beyond the plaintext; then a scope that is not UTF-8.
        let scope_at = 17 + 32;
        let mut long = good.clone();
        long[scope_at..scope_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(open_plain(&long), Err(OpenError::BadPlaintext));
        let mut utf = good;
        utf[scope_at + 4] = 0xff;
        assert_eq!(open_plain(&utf), Err(OpenError::BadPlaintext));
    }

    #[test]
    fn random_bytes_never_panic() {
        let k = keys(&[("k3", 100)]);
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for len in 0..300usize {
            let mut buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert!(open(&k, KEY, &buf).is_err());
            if buf.len() > 3 {
                buf[..4].copy_from_slice(b"\x01\x02k3");
                assert!(open(&k, KEY, &buf).is_err());
            }
        }
    }
}
