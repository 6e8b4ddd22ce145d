//! Purge notices: how one instance tells the others, through a Redis stream, what to forget.
//!
//! Other instances need the raw selector (a token, to recompute their own cache digests), yet
//! whoever reads Redis must not learn it. So the payload is sealed like a cached value (see
//! [`super::seal`]): the same version 1 envelope, the same seal keys, and the AAD binds it to
//! the stream's key name, so a notice copied to another stream or key does not open.
//!
//! Plaintext, version 1 (big-endian; no trailing bytes):
//!
//! ```text
//! kind (u8: 1 token, 2 sub, 3 client_id) | t_ms (i64) | value_len (u32, <= 4096) | value
//! ```
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

/// One purge, as broadcast to the fleet.
#[derive(Clone, PartialEq, Eq)]
pub struct Notice {
    /// What the value selects.
    pub kind: Kind,
    /// The raw selector (token, subject or client id), at most 4096 bytes.
    pub value: Vec<u8>,
    /// Wall time (ms since the epoch) of the purge: entries created up to then are dead.
    pub t_ms: i64,
}

/// `Debug` hides the value: it may be a live token.
impl fmt::Debug for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notice")
            .field("kind", &self.kind)
            .field("value_len", &self.value.len())
            .field("t_ms", &self.t_ms)
            .finish()
    }
}

/// Seals `n` for the stream `stream_key`.
pub fn seal_notice(keys: &KeyFile, stream_key: &str, n: &Notice) -> Result<Vec<u8>, SealError> {
    if n.value.len() > MAX_VALUE_LEN {
        return Err(SealError::TooLarge);
    }
    let len = u32::try_from(n.value.len()).map_err(|_| SealError::TooLarge)?;
    let mut plain = Vec::with_capacity(13 + n.value.len());
    plain.push(n.kind.code());
    plain.extend_from_slice(&n.t_ms.to_be_bytes());
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(&n.value);
    seal_bytes(keys, stream_key, &plain)
}

/// Opens a payload read from the stream `stream_key`. Any error means: skip the entry.
pub fn open_notice(keys: &KeyFile, stream_key: &str, bytes: &[u8]) -> Result<Notice, OpenError> {
    let plain = open_bytes(keys, stream_key, bytes)?;
    let mut r = Reader(&plain);
    let [code] = r.array()?;
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

    fn notice() -> Notice {
        Notice {
            kind: Kind::Token,
            value: b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln".to_vec(),
            t_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn round_trip_every_kind() {
        let k = keys("k3", 100);
        for kind in Kind::ALL {
            for value in [vec![b'x'], vec![0xff; MAX_VALUE_LEN], Vec::new()] {
                let n = Notice {
                    kind,
                    value,
                    t_ms: -5,
                };
                let s = seal_notice(&k, STREAM, &n).unwrap();
                assert_eq!(open_notice(&k, STREAM, &s), Ok(n));
            }
        }
        let s = seal_notice(&k, STREAM, &notice()).unwrap();
        assert_eq!(s.len(), 4 + NONCE_LEN + 13 + notice().value.len() + 16);
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
        let want = Notice {
            kind: Kind::Sub,
            value: b"bob".to_vec(),
            t_ms: 7,
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

    #[test]
    fn debug_hides_the_value() {
        let d = format!("{:?}", notice());
        assert!(!d.contains("eyJ") && d.contains("value_len"));
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
