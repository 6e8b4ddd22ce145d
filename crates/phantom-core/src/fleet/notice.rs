//! Purge notices: how one instance tells the others, through a Redis stream, what to forget.
//!
//! Other instances need the raw selector (a token, to recompute their own cache digests), yet
//! whoever reads Redis must not learn it. So the payload is sealed like a cached value (see
//! [`super::seal`]): the same version 1 envelope, the same seal keys, and the AAD binds it to
//! the stream's key name, so a notice copied to another stream or key does not open.
//!
//! Plaintext, version 2 (big-endian; no trailing bytes), what this code writes:
//!
//! ```text
//! 0x82 | origin (16) | kind (u8: 1 token, 2 sub, 3 client_id) | t_ms (i64)
//!     | value_len (u32, <= 4096) | value
//! ```
//!
//! The first byte tells the format. Version 1 had none: it began with the kind (1 to 3), and
//! is still read, as a notice of unknown origin:
//!
//! ```text
//! kind (u8) | t_ms (i64) | value_len (u32, <= 4096) | value
//! ```
//!
//! Later formats begin with `0x80 | version` (the high bit keeps them apart from a version 1
//! kind); any other first byte, a version this code does not know included, is rejected.
//!
//! The origin is the instance that made the purge: 16 random bytes drawn once per cache zone
//! and shared by its workers (see [`Notice::is_from`]). That instance applied the purge when it
//! took it, so its own stream reader skips the notice when it reads it back.
//!
//! The stream entry has one field, `n`, holding the sealed payload; `XADD ... MAXLEN ~` keeps
//! the stream short, and readers follow it with `XREAD BLOCK` from the last id they saw.

use super::keys::KeyFile;
use super::resp::{command, Reply};
use super::seal::{open_bytes, seal_bytes, OpenError, Reader, SealError};
use crate::purge::{Kind, MAX_VALUE_LEN};
use std::fmt;

/// The stream field that holds a sealed notice.
pub const FIELD: &[u8] = b"n";

/// Longest stream entry id: two u64 in decimal and a dash.
pub const MAX_ID_LEN: usize = 41;

/// First plaintext byte of a version 2 notice (`0x80 | 2`).
pub const FORMAT_V2: u8 = 0x82;

/// Which instance made a purge: 16 random bytes per cache zone of an nginx instance, shared
/// by its workers and kept across reloads. All zero is no instance.
pub type Origin = [u8; ORIGIN_LEN];

/// Length of an [`Origin`].
pub const ORIGIN_LEN: usize = 16;

/// One purge, as broadcast to the fleet.
#[derive(Clone, PartialEq, Eq)]
pub struct Notice {
    /// What the value selects.
    pub kind: Kind,
    /// The raw selector (token, subject or client id), at most 4096 bytes.
    pub value: Vec<u8>,
    /// Wall time (ms since the epoch) of the purge: entries created up to then are dead.
    pub t_ms: i64,
    /// The instance that made the purge; `None` for a version 1 notice, which does not say
    /// (and is sealed as version 1 again).
    pub origin: Option<Origin>,
}

impl Notice {
    /// Whether this notice was made by the instance `me` (so `me` applied it already). A
    /// notice without an origin, and an all-zero `me` (no origin known), are never "mine":
    /// applying a purge twice only costs time, missing one would keep a revoked token.
    pub fn is_from(&self, me: &Origin) -> bool {
        *me != [0; ORIGIN_LEN] && self.origin.as_ref() == Some(me)
    }
}

/// `Debug` hides the value: it may be a live token.
impl fmt::Debug for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notice")
            .field("kind", &self.kind)
            .field("value_len", &self.value.len())
            .field("t_ms", &self.t_ms)
            .field("origin", &self.origin)
            .finish()
    }
}

/// Seals `n` for the stream `stream_key`: version 2, or version 1 when `n` has no origin.
pub fn seal_notice(keys: &KeyFile, stream_key: &str, n: &Notice) -> Result<Vec<u8>, SealError> {
    if n.value.len() > MAX_VALUE_LEN {
        return Err(SealError::TooLarge);
    }
    let len = u32::try_from(n.value.len()).map_err(|_| SealError::TooLarge)?;
    let mut plain = Vec::with_capacity(1 + ORIGIN_LEN + 13 + n.value.len());
    if let Some(origin) = &n.origin {
        plain.push(FORMAT_V2);
        plain.extend_from_slice(origin);
    }
    plain.push(n.kind.code());
    plain.extend_from_slice(&n.t_ms.to_be_bytes());
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(&n.value);
    seal_bytes(keys, stream_key, &plain)
}

/// Opens a payload read from the stream `stream_key`. Any error means: skip the entry.
pub fn open_notice(keys: &KeyFile, stream_key: &str, bytes: &[u8]) -> Result<Notice, OpenError> {
    let plain = open_bytes(keys, stream_key, bytes)?;
    decode(&plain)
}

/// Decodes a notice plaintext (either version).
fn decode(plain: &[u8]) -> Result<Notice, OpenError> {
    let mut r = Reader(plain);
    let [first] = r.array()?;
    let (origin, code) = match first {
        FORMAT_V2 => {
            let origin: Origin = r.array()?;
            let [code] = r.array()?;
            (Some(origin), code)
        }
        // Version 1: the first byte is the kind (checked below).
        code => (None, code),
    };
    let kind = Kind::from_code(code).ok_or(OpenError::BadPlaintext)?;
    let t_ms = i64::from_be_bytes(r.array()?);
    let value = r.bytes_u32()?;
    if value.len() > MAX_VALUE_LEN || !r.0.is_empty() {
        return Err(OpenError::BadPlaintext);
    }
    Ok(Notice {
        kind,
        value: value.to_vec(),
        t_ms,
        origin,
    })
}

/// `XADD <stream> MAXLEN ~ <maxlen> * n <payload>`.
pub fn xadd_command(stream_key: &str, maxlen: u64, payload: &[u8]) -> Vec<u8> {
    let maxlen = maxlen.to_string();
    command(&[
        b"XADD",
        stream_key.as_bytes(),
        b"MAXLEN",
        b"~",
        maxlen.as_bytes(),
        b"*",
        FIELD,
        payload,
    ])
}

/// `XREAD COUNT <count> BLOCK <block_ms> STREAMS <stream> <last_id>`.
pub fn xread_command(stream_key: &str, last_id: &str, count: u32, block_ms: u64) -> Vec<u8> {
    let count = count.to_string();
    let block = block_ms.to_string();
    command(&[
        b"XREAD",
        b"COUNT",
        count.as_bytes(),
        b"BLOCK",
        block.as_bytes(),
        b"STREAMS",
        stream_key.as_bytes(),
        last_id.as_bytes(),
    ])
}

/// One stream entry from `XREAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry id, `<ms>-<seq>`: the next `XREAD` starts after it.
    pub id: String,
    /// The value of field `n`, or `None` when the entry has none (written by something else).
    pub payload: Option<Vec<u8>>,
}

/// Why an `XREAD` reply is unusable. The caller closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XreadError {
    /// An error reply (`WRONGTYPE`, `NOPERM`...).
    Server,
    /// Not the shape `XREAD` returns for one stream.
    Shape,
    /// An entry id that is not `<digits>-<digits>` of at most [`MAX_ID_LEN`] bytes.
    BadId,
}

impl fmt::Display for XreadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XreadError::Server => "XREAD: error reply",
            XreadError::Shape => "XREAD: unexpected reply shape",
            XreadError::BadId => "XREAD: malformed stream entry id",
        })
    }
}

impl std::error::Error for XreadError {}

/// Whether `id` is `<digits>-<digits>`, at most [`MAX_ID_LEN`] bytes.
pub fn valid_id(id: &[u8]) -> bool {
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let mut parts = id.splitn(2, |&b| b == b'-');
    id.len() <= MAX_ID_LEN && parts.next().is_some_and(digits) && parts.next().is_some_and(digits)
}

fn array<'r, 'a>(r: &'r Reply<'a>) -> Result<&'r [Reply<'a>], XreadError> {
    match r {
        Reply::Array(Some(v)) => Ok(v),
        _ => Err(XreadError::Shape),
    }
}

fn bulk<'a>(r: &Reply<'a>) -> Result<&'a [u8], XreadError> {
    match r {
        Reply::Bulk(Some(b)) => Ok(b),
        _ => Err(XreadError::Shape),
    }
}

fn entry(r: &Reply<'_>) -> Result<StreamEntry, XreadError> {
    let [id, fields] = array(r)? else {
        return Err(XreadError::Shape);
    };
    let id = bulk(id)?;
    if !valid_id(id) {
        return Err(XreadError::BadId);
    }
    let id = String::from_utf8(id.to_vec()).map_err(|_| XreadError::BadId)?;
    // A nil field list is what Redis gives for an entry deleted under a reader: no payload.
    let fields = match fields {
        Reply::Array(None) => &[][..],
        f => array(f)?,
    };
    if fields.len() % 2 != 0 {
        return Err(XreadError::Shape);
    }
    let mut payload = None;
    for pair in fields.chunks_exact(2) {
        let [name, value] = pair else {
            return Err(XreadError::Shape);
        };
        let (name, value) = (bulk(name)?, bulk(value)?);
        if name == FIELD && payload.is_none() {
            payload = Some(value.to_vec());
        }
    }
    Ok(StreamEntry { id, payload })
}

/// The entries of an `XREAD` reply for one stream, in stream order.
///
/// A nil array (the `BLOCK` timeout) and an empty array are no entries; otherwise the reply
/// must be `[[stream, [[id, [field, value, ...]], ...]]]`.
pub fn parse_xread(reply: &Reply<'_>) -> Result<Vec<StreamEntry>, XreadError> {
    let streams = match reply {
        Reply::Array(None) => return Ok(Vec::new()),
        Reply::Error(_) => return Err(XreadError::Server),
        r => array(r)?,
    };
    let stream = match streams {
        [] => return Ok(Vec::new()),
        [one] => one,
        _ => return Err(XreadError::Shape),
    };
    let [name, entries] = array(stream)? else {
        return Err(XreadError::Shape);
    };
    bulk(name)?;
    array(entries)?.iter().map(entry).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::keys::{base64url, parse_key_file};
    use crate::fleet::resp::{parse, Limits};
    use ring::aead::NONCE_LEN;

    const STREAM: &str = "pt:v1:purge";

    fn keys(kid: &str, seed: u8) -> KeyFile {
        let b64 = |s: u8| {
            base64url(&core::array::from_fn::<u8, 32, _>(|i| {
                s.wrapping_add(i as u8)
            }))
        };
        parse_key_file(&format!("name v1 {}\nseal {kid} {}\n", b64(0), b64(seed))).unwrap()
    }

    const ORIGIN: Origin = *b"instance-A-16byt";

    fn notice() -> Notice {
        Notice {
            kind: Kind::Token,
            value: b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln".to_vec(),
            t_ms: 1_700_000_000_123,
            origin: Some(ORIGIN),
        }
    }

    #[test]
    fn round_trip_every_kind() {
        let k = keys("k3", 100);
        for kind in Kind::ALL {
            for value in [vec![b'x'], vec![0xff; MAX_VALUE_LEN], Vec::new()] {
                for origin in [Some(ORIGIN), Some([0; ORIGIN_LEN]), Some([0xff; 16]), None] {
                    let n = Notice {
                        kind,
                        value: value.clone(),
                        t_ms: -5,
                        origin,
                    };
                    let s = seal_notice(&k, STREAM, &n).unwrap();
                    assert_eq!(open_notice(&k, STREAM, &s), Ok(n));
                }
            }
        }
        let s = seal_notice(&k, STREAM, &notice()).unwrap();
        let v2_len = 1 + ORIGIN_LEN + 13 + notice().value.len();
        assert_eq!(s.len(), 4 + NONCE_LEN + v2_len + 16);
        let v1 = Notice {
            origin: None,
            ..notice()
        };
        let s1 = seal_notice(&k, STREAM, &v1).unwrap();
        assert_eq!(s1.len(), 4 + NONCE_LEN + v2_len - 17 + 16);
        assert!(!s.windows(16).any(|w| w == ORIGIN), "the origin is sealed");
        assert!(
            !s.windows(3).any(|w| w == b"eyJ"),
            "the token is not in clear"
        );
        assert_ne!(s, seal_notice(&k, STREAM, &notice()).unwrap());
    }

    #[test]
    fn too_long_does_not_seal() {
        let n = Notice {
            value: vec![b'a'; MAX_VALUE_LEN + 1],
            ..notice()
        };
        assert_eq!(
            seal_notice(&keys("k3", 100), STREAM, &n),
            Err(SealError::TooLarge)
        );
    }

    #[test]
    fn wrong_stream_tamper_and_other_keys_fail() {
        let k = keys("k3", 100);
        let s = seal_notice(&k, STREAM, &notice()).unwrap();
        assert_eq!(open_notice(&k, "pt:v1:purge2", &s), Err(OpenError::Auth));
        assert_eq!(open_notice(&k, "", &s), Err(OpenError::Auth));
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 0x20;
            assert!(open_notice(&k, STREAM, &t).is_err(), "byte {i}");
        }
        for n in 0..s.len() {
            assert!(open_notice(&k, STREAM, &s[..n]).is_err(), "length {n}");
        }
        // Same kid, another key; and another kid altogether.
        assert_eq!(
            open_notice(&keys("k3", 7), STREAM, &s),
            Err(OpenError::Auth)
        );
        assert_eq!(
            open_notice(&keys("k9", 100), STREAM, &s),
            Err(OpenError::UnknownKid)
        );
    }

    /// Authentic payloads that do not decode as a notice.
    #[test]
    fn malformed_plaintexts() {
        let k = keys("k3", 100);
        let open_plain = |p: &[u8]| {
            let s = seal_bytes(&k, STREAM, p).unwrap();
            open_notice(&k, STREAM, &s)
        };
        let mut good = vec![2u8];
        good.extend_from_slice(&7i64.to_be_bytes());
        good.extend_from_slice(&3u32.to_be_bytes());
        good.extend_from_slice(b"bob");
        // Version 1 (what instances without origins wrote): no origin.
        let want = Notice {
            kind: Kind::Sub,
            value: b"bob".to_vec(),
            t_ms: 7,
            origin: None,
        };
        assert_eq!(open_plain(&good), Ok(want));
        for n in 0..good.len() {
            assert_eq!(open_plain(&good[..n]), Err(OpenError::BadPlaintext), "{n}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(open_plain(&extra), Err(OpenError::BadPlaintext));
        for code in [0u8, 4, 0xff] {
            let mut bad = good.clone();
            bad[0] = code;
            assert_eq!(open_plain(&bad), Err(OpenError::BadPlaintext), "{code}");
        }
        let mut huge = vec![1u8];
        huge.extend_from_slice(&0i64.to_be_bytes());
        huge.extend_from_slice(&(MAX_VALUE_LEN as u32 + 1).to_be_bytes());
        huge.extend_from_slice(&vec![b'a'; MAX_VALUE_LEN + 1]);
        assert_eq!(open_plain(&huge), Err(OpenError::BadPlaintext));
        // A cached value's plaintext is not a notice.
        assert!(open_plain(&[0u8; 60]).is_err());
    }

    /// Version 2: `0x82 | origin | kind | t_ms | len | value`, byte for byte.
    #[test]
    fn version_2_plaintexts() {
        let k = keys("k3", 100);
        let open_plain = |p: &[u8]| {
            let s = seal_bytes(&k, STREAM, p).unwrap();
            open_notice(&k, STREAM, &s)
        };
        let mut good = vec![0x82];
        good.extend_from_slice(&ORIGIN);
        good.push(3);
        good.extend_from_slice(&(-7i64).to_be_bytes());
        good.extend_from_slice(&3u32.to_be_bytes());
        good.extend_from_slice(b"web");
        let want = Notice {
            kind: Kind::ClientId,
            value: b"web".to_vec(),
            t_ms: -7,
            origin: Some(ORIGIN),
        };
        assert_eq!(open_plain(&good), Ok(want.clone()));
        assert_eq!(decode(&good), Ok(want.clone()));
        // What seal_notice writes is exactly that.
        let sealed = seal_notice(&k, STREAM, &want).unwrap();
        assert_eq!(open_bytes(&k, STREAM, &sealed).unwrap(), good);
        for n in 0..good.len() {
            assert_eq!(decode(&good[..n]), Err(OpenError::BadPlaintext), "{n}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(decode(&extra), Err(OpenError::BadPlaintext));
        // The kind, after the origin, is checked as in version 1.
        for code in [0u8, 4, 0x82, 0xff] {
            let mut bad = good.clone();
            bad[1 + ORIGIN_LEN] = code;
            assert_eq!(decode(&bad), Err(OpenError::BadPlaintext), "{code}");
        }
        // Another version (or no known one) in the first byte.
        for first in [0x80u8, 0x81, 0x83, 0x8f, 0xc2, 0x02 | 0x40, 0] {
            let mut bad = good.clone();
            bad[0] = first;
            assert_eq!(decode(&bad), Err(OpenError::BadPlaintext), "{first:#x}");
        }
        // A version 2 value too long, even if all there.
        let mut huge = vec![0x82];
        huge.extend_from_slice(&ORIGIN);
        huge.push(1);
        huge.extend_from_slice(&0i64.to_be_bytes());
        huge.extend_from_slice(&(MAX_VALUE_LEN as u32 + 1).to_be_bytes());
        huge.extend_from_slice(&vec![b'a'; MAX_VALUE_LEN + 1]);
        assert_eq!(decode(&huge), Err(OpenError::BadPlaintext));
        // A value length past the end.
        let mut short = good.clone();
        let at = 1 + ORIGIN_LEN + 1 + 8;
        short[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&short), Err(OpenError::BadPlaintext));
    }

    #[test]
    fn own_notices_are_recognised() {
        let other: Origin = *b"instance-B-16byt";
        let mine = notice();
        assert!(mine.is_from(&ORIGIN));
        assert!(!mine.is_from(&other));
        // Without an origin (version 1), a notice is nobody's: applied everywhere.
        let v1 = Notice {
            origin: None,
            ..notice()
        };
        assert!(!v1.is_from(&ORIGIN));
        assert!(!v1.is_from(&[0; ORIGIN_LEN]));
        // An instance that has no origin skips nothing, not even an all-zero origin.
        let zero = Notice {
            origin: Some([0; ORIGIN_LEN]),
            ..notice()
        };
        assert!(!zero.is_from(&[0; ORIGIN_LEN]));
        assert!(!mine.is_from(&[0; ORIGIN_LEN]));
        // One bit off is another instance.
        let mut near = ORIGIN;
        near[15] ^= 1;
        assert!(!mine.is_from(&near));
    }

    #[test]
    fn debug_hides_the_value() {
        let d = format!("{:?}", notice());
        assert!(!d.contains("eyJ") && d.contains("value_len") && d.contains("origin"));
    }

    #[test]
    fn commands() {
        assert_eq!(
            xadd_command("s", 1000, b"\x01\r\n"),
            b"*8\r\n$4\r\nXADD\r\n$1\r\ns\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$4\r\n1000\r\n\
              $1\r\n*\r\n$1\r\nn\r\n$3\r\n\x01\r\n\r\n"
        );
        assert_eq!(
            xread_command("pt:v1:purge", "1700000000000-0", 64, 5000),
            command(&[
                b"XREAD",
                b"COUNT",
                b"64",
                b"BLOCK",
                b"5000",
                b"STREAMS",
                b"pt:v1:purge",
                b"1700000000000-0"
            ])
        );
    }

    fn xread(bytes: &[u8]) -> Result<Vec<StreamEntry>, XreadError> {
        let (reply, n) = parse(bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        parse_xread(&reply)
    }

    fn entry(id: &str, payload: Option<&[u8]>) -> StreamEntry {
        StreamEntry {
            id: id.to_string(),
            payload: payload.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn xread_timeout_and_empty() {
        assert_eq!(xread(b"*-1\r\n"), Ok(vec![]));
        assert_eq!(xread(b"*0\r\n"), Ok(vec![]));
        assert_eq!(xread(b"*1\r\n*2\r\n$1\r\ns\r\n*0\r\n"), Ok(vec![]));
    }

    #[test]
    fn xread_two_entries_and_one_without_n() {
        let r = b"*1\r\n*2\r\n$11\r\npt:v1:purge\r\n*3\r\n\
                  *2\r\n$15\r\n1700000000000-0\r\n*2\r\n$1\r\nn\r\n$3\r\na\r\n\r\n\
                  *2\r\n$15\r\n1700000000000-1\r\n*4\r\n$1\r\nx\r\n$1\r\n1\r\n$1\r\nn\r\n$0\r\n\r\n\
                  *2\r\n$3\r\n5-7\r\n*2\r\n$1\r\nm\r\n$1\r\nz\r\n";
        assert_eq!(
            xread(r),
            Ok(vec![
                entry("1700000000000-0", Some(b"a\r\n")),
                entry("1700000000000-1", Some(b"")),
                entry("5-7", None),
            ])
        );
        // No fields at all, as a nil or an empty list.
        assert_eq!(
            xread(
                b"*1\r\n*2\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n*2\r\n$3\r\n1-1\r\n*0\r\n"
            ),
            Ok(vec![entry("1-0", None), entry("1-1", None)])
        );
    }

    #[test]
    fn xread_malformed_shapes() {
        let shape = [
            &b"+OK\r\n"[..],
            b":1\r\n",
            b"$-1\r\n",
            b"$1\r\nx\r\n",
            b"*1\r\n$1\r\ns\r\n",
            b"*1\r\n*-1\r\n",
            b"*1\r\n*1\r\n$1\r\ns\r\n",
            b"*1\r\n*3\r\n$1\r\ns\r\n*0\r\n*0\r\n",
            b"*1\r\n*2\r\n$-1\r\n*0\r\n",
            b"*1\r\n*2\r\n*0\r\n*0\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*-1\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n$1\r\nx\r\n",
            // Two streams.
            b"*2\r\n*2\r\n$1\r\ns\r\n*0\r\n*2\r\n$1\r\nt\r\n*0\r\n",
            // Entries: not an array, wrong arity, id not bulk, odd fields, non-bulk field.
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n:1\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*1\r\n$3\r\n1-0\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*3\r\n$3\r\n1-0\r\n*0\r\n*0\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n:1\r\n*0\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\nn\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nn\r\n:1\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$-1\r\n$1\r\nx\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n$1\r\nn\r\n",
        ];
        for r in shape {
            assert_eq!(
                xread(r),
                Err(XreadError::Shape),
                "{:?}",
                String::from_utf8_lossy(r)
            );
        }
        assert_eq!(xread(b"-WRONGTYPE no\r\n"), Err(XreadError::Server));
    }

    #[test]
    fn xread_bad_ids() {
        let long = format!("{}-{}", "1".repeat(20), "2".repeat(21));
        let ok_max = format!("{}-{}", "1".repeat(20), "2".repeat(20));
        assert!(valid_id(ok_max.as_bytes()));
        for id in [
            "", "-", "1-", "-1", "1", "1-2-3", "a-1", "1-0x", " 1-0", "1 -0", &long,
        ] {
            assert!(!valid_id(id.as_bytes()), "{id:?}");
            let r = format!(
                "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n${}\r\n{id}\r\n*0\r\n",
                id.len()
            );
            assert_eq!(xread(r.as_bytes()), Err(XreadError::BadId), "{id:?}");
        }
        let r = b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-\xff\r\n*0\r\n";
        assert_eq!(xread(r), Err(XreadError::BadId));
    }
}
