//! RESP2: the command encoder and a reply parser for the fleet tier's Redis connections.
//!
//! Commands are always arrays of bulk strings (binary safe, never inline commands). Replies are
//! parsed from the start of a buffer that the caller fills from the socket: `Ok(None)` means
//! "incomplete, call again from the start with more bytes", `Ok(Some((reply, n)))` means the
//! first `n` bytes were one reply, which borrows its strings from the buffer.
//!
//! The parser is iterative (an explicit stack, never recursion), so hostile nesting cannot
//! overflow the worker's stack. It checks every CRLF (`$3\r\nabcXY` is an error), rejects
//! negative lengths other than -1, integer overflow, leading `+`, empty numbers, bare LF or CR
//! inside lines, RESP3 and other unknown type bytes, and enforces [`Limits`]. Every decision is
//! taken on bytes already seen, so a prefix of a valid reply is always `Ok(None)`, never an
//! error, and a prefix of an invalid one is `Ok(None)` or an error.
//!
//! Incomplete input costs a reparse from the start: the caller must cap its buffer (a full
//! buffer without a complete reply is a protocol error), which also bounds that cost.

use std::fmt;

/// Bounds applied to every reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Arrays nested deeper than this are an error (`XREAD` replies need 5, others 1 or 2).
    pub max_depth: usize,
    /// Longest bulk string, and longest simple-string or error line, in bytes.
    pub max_bulk: usize,
    /// Most elements in one array.
    pub max_array: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 5,
            max_bulk: 256 * 1024,
            max_array: 1024,
        }
    }
}

/// One RESP2 reply; strings borrow from the parsed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+OK`: the line without its type byte and CRLF.
    Simple(&'a [u8]),
    /// `-ERR text`: the line without its type byte and CRLF (starts with the error code).
    Error(&'a [u8]),
    /// `:<n>`
    Integer(i64),
    /// `$<n>` bulk string; `None` is the nil bulk `$-1`.
    Bulk(Option<&'a [u8]>),
    /// `*<n>` array; `None` is the nil array `*-1`.
    Array(Option<Vec<Reply<'a>>>),
}

impl Reply<'_> {
    /// The error code of an error reply (`OOM`, `ERR`, `WRONGPASS`...): its first word.
    pub fn error_code(&self) -> Option<&[u8]> {
        match self {
            Reply::Error(line) => line.split(|&b| b == b' ').next(),
            _ => None,
        }
    }
}

/// Why bytes are not a RESP2 reply. The connection must be closed: the stream is out of sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    /// The first byte of a reply or element is not one of `+ - : $ *`.
    BadType(u8),
    /// A line does not end in CRLF, or contains a bare CR or LF.
    BadLine,
    /// A bulk payload is not followed by CRLF.
    BadBulkEnd,
    /// An integer, length or count is empty, not decimal, or overflows `i64`.
    BadInteger,
    /// A length or count below -1.
    NegativeLength,
    /// A bulk string, simple string or error line longer than [`Limits::max_bulk`].
    BulkTooLong,
    /// An array with more elements than [`Limits::max_array`].
    ArrayTooLong,
    /// Arrays nested deeper than [`Limits::max_depth`].
    TooDeep,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::BadType(b) => write!(f, "unexpected RESP type byte 0x{b:02x}"),
            ProtoError::BadLine => f.write_str("RESP line not terminated by CRLF"),
            ProtoError::BadBulkEnd => f.write_str("RESP bulk string not followed by CRLF"),
            ProtoError::BadInteger => f.write_str("invalid RESP integer"),
            ProtoError::NegativeLength => f.write_str("negative RESP length"),
            ProtoError::BulkTooLong => f.write_str("RESP string over the length limit"),
            ProtoError::ArrayTooLong => f.write_str("RESP array over the element limit"),
            ProtoError::TooDeep => f.write_str("RESP arrays nested over the depth limit"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Encodes one command as an array of bulk strings: `*<n>\r\n` then `$<len>\r\n<arg>\r\n`.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let len = 16 + args.iter().map(|a| a.len() + 24).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    push_command(&mut out, args);
    out
}

/// Appends one encoded command to `out` (for pipelining several commands in one write).
pub fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Longest content of a length, count or integer line: `-9223372036854775808` is 20 bytes.
const MAX_NUMBER_LINE: usize = 20;

/// Finds the line starting at `pos`: `Ok(Some((content_end, next)))` where `buf[content_end..next]`
/// is the CRLF. A content longer than `max` is an error as soon as its byte `max + 1` is seen.
fn line(
    buf: &[u8],
    pos: usize,
    max: usize,
    too_long: ProtoError,
) -> Result<Option<(usize, usize)>, ProtoError> {
    let rest = buf.get(pos..).unwrap_or_default();
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'\r' => {
                return match rest.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((pos + i, pos + i + 2))),
                    Some(_) => Err(ProtoError::BadLine),
                }
            }
            b'\n' => return Err(ProtoError::BadLine),
            _ if i >= max => return Err(too_long),
            _ => {}
        }
    }
    Ok(None)
}

/// Strict decimal `i64`: optional `-`, then at least one digit, nothing else.
fn integer(s: &[u8]) -> Result<i64, ProtoError> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(ProtoError::BadInteger);
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ProtoError::BadInteger);
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10).ok_or(ProtoError::BadInteger)?;
        v = if neg {
            v.checked_sub(d)
        } else {
            v.checked_add(d)
        }
        .ok_or(ProtoError::BadInteger)?;
    }
    Ok(v)
}

/// A length or count: -1 (nil) or 0..=max.
fn length(s: &[u8], max: usize, too_long: ProtoError) -> Result<Option<usize>, ProtoError> {
    match integer(s)? {
        -1 => Ok(None),
        n if n < 0 => Err(ProtoError::NegativeLength),
        n => match usize::try_from(n) {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(too_long),
        },
    }
}

/// One element: a complete value, or the header of a non-empty array still to be filled.
enum Item<'a> {
    Value(Reply<'a>),
    Open(usize),
}

/// Parses the element at `pos`; `depth` is the number of arrays already open around it.
fn element<'a>(
    buf: &'a [u8],
    pos: usize,
    depth: usize,
    limits: &Limits,
) -> Result<Option<(Item<'a>, usize)>, ProtoError> {
    let Some(&ty) = buf.get(pos) else {
        return Ok(None);
    };
    let start = pos + 1;
    let (max_line, too_long) = match ty {
        b'+' | b'-' => (limits.max_bulk, ProtoError::BulkTooLong),
        b':' | b'$' | b'*' => (MAX_NUMBER_LINE, ProtoError::BadInteger),
        other => return Err(ProtoError::BadType(other)),
    };
    let Some((end, next)) = line(buf, start, max_line, too_long)? else {
        return Ok(None);
    };
    let content = buf.get(start..end).unwrap_or_default();
    let item = match ty {
        b'+' => Item::Value(Reply::Simple(content)),
        b'-' => Item::Value(Reply::Error(content)),
        b':' => Item::Value(Reply::Integer(integer(content)?)),
        b'$' => match length(content, limits.max_bulk, ProtoError::BulkTooLong)? {
            None => Item::Value(Reply::Bulk(None)),
            Some(n) => {
                let Some(end) = next.checked_add(n).and_then(|e| e.checked_add(2)) else {
                    return Err(ProtoError::BulkTooLong);
                };
                let Some(tail) = buf.get(next..end) else {
                    return Ok(None);
                };
                let (payload, crlf) = tail.split_at(n);
                if crlf != b"\r\n" {
                    return Err(ProtoError::BadBulkEnd);
                }
                return Ok(Some((Item::Value(Reply::Bulk(Some(payload))), end)));
            }
        },
        _ => {
            if depth >= limits.max_depth {
                return Err(ProtoError::TooDeep);
            }
            match length(content, limits.max_array, ProtoError::ArrayTooLong)? {
                None => Item::Value(Reply::Array(None)),
                Some(0) => Item::Value(Reply::Array(Some(Vec::new()))),
                Some(n) => Item::Open(n),
            }
        }
    };
    Ok(Some((item, next)))
}

/// Parses one reply from the start of `buf`.
///
/// `Ok(None)`: incomplete, call again with more bytes. `Ok(Some((reply, n)))`: `buf[..n]` was one
/// reply; bytes after it are not looked at. `Err`: not RESP2 or over a limit; close the
/// connection.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(Reply<'a>, usize)>, ProtoError> {
    // Open arrays: elements so far and the declared count (never 0: empty arrays are values).
    let mut stack: Vec<(Vec<Reply<'a>>, usize)> = Vec::new();
    let mut pos = 0;
    loop {
        let Some((item, next)) = element(buf, pos, stack.len(), limits)? else {
            return Ok(None);
        };
        pos = next;
        let mut value = match item {
            Item::Open(n) => {
                // Reserve modestly: a declared count is untrusted until its elements arrive.
                stack.push((Vec::with_capacity(n.min(16)), n));
                continue;
            }
            Item::Value(v) => v,
        };
        // Attach the value to the innermost open array, closing every array it completes.
        loop {
            let Some((items, n)) = stack.last_mut() else {
                return Ok(Some((value, pos)));
            };
            items.push(value);
            if items.len() < *n {
                break;
            }
            match stack.pop() {
                Some((items, _)) => value = Reply::Array(Some(items)),
                None => break, // unreachable: last_mut() just returned Some
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(buf: &[u8]) -> (Reply<'_>, usize) {
        parse(buf, &Limits::default())
            .expect("valid")
            .expect("complete")
    }

    fn err(buf: &[u8]) -> ProtoError {
        parse(buf, &Limits::default()).expect_err("invalid")
    }

    /// Every strict prefix is incomplete, the whole gives `want`, and trailing bytes are ignored.
    fn check_splits(buf: &[u8], want: &Reply<'_>) {
        let limits = Limits::default();
        for cut in 0..buf.len() {
            assert_eq!(
                parse(&buf[..cut], &limits),
                Ok(None),
                "prefix {cut} of {:?}",
                String::from_utf8_lossy(buf)
            );
        }
        assert_eq!(parse(buf, &limits), Ok(Some((want.clone(), buf.len()))));
        let mut more = buf.to_vec();
        more.extend_from_slice(b"+OK\r\n:1\r\n");
        assert_eq!(parse(&more, &limits), Ok(Some((want.clone(), buf.len()))));
    }

    fn bulk(s: &[u8]) -> Reply<'_> {
        Reply::Bulk(Some(s))
    }

    fn arr(v: Vec<Reply<'_>>) -> Reply<'_> {
        Reply::Array(Some(v))
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            command(&[b"GET", b"pt:v1:t:abc"]),
            b"*2\r\n$3\r\nGET\r\n$11\r\npt:v1:t:abc\r\n"
        );
        assert_eq!(command(&[]), b"*0\r\n");
        // Binary safe: CRLF and NUL inside an argument.
        let c = command(&[b"SET", b"k", b"a\r\n\0b", b"PX", b"1500"]);
        assert_eq!(
            c,
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\n\0b\r\n$2\r\nPX\r\n$4\r\n1500\r\n"
        );
        let mut pipe = Vec::new();
        push_command(&mut pipe, &[b"GET", b"k"]);
        push_command(&mut pipe, &[b"PING"]);
        assert_eq!(pipe, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn encoded_commands_parse_back_as_arrays_of_bulks() {
        let c = command(&[b"SET", b"k", b"v\r\n", b""]);
        let want = arr(vec![bulk(b"SET"), bulk(b"k"), bulk(b"v\r\n"), bulk(b"")]);
        check_splits(&c, &want);
    }

    #[test]
    fn get_hit_and_nil() {
        check_splits(b"$5\r\nhello\r\n", &bulk(b"hello"));
        check_splits(b"$0\r\n\r\n", &bulk(b""));
        check_splits(b"$-1\r\n", &Reply::Bulk(None));
        // Binary payload with CRLF inside: the length decides, not the content.
        check_splits(b"$4\r\n\r\n\r\n\r\n", &bulk(b"\r\n\r\n"));
    }

    #[test]
    fn set_ok_set_nx_nil_and_errors() {
        check_splits(b"+OK\r\n", &Reply::Simple(b"OK"));
        check_splits(b"$-1\r\n", &Reply::Bulk(None));
        let oom = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n";
        let want = Reply::Error(b"OOM command not allowed when used memory > 'maxmemory'.");
        check_splits(oom, &want);
        assert_eq!(want.error_code(), Some(&b"OOM"[..]));
        let (e, _) = ok(b"-ERR invalid expire time in 'set' command\r\n");
        assert_eq!(e.error_code(), Some(&b"ERR"[..]));
        let (e, _) = ok(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
        assert_eq!(e.error_code(), Some(&b"WRONGPASS"[..]));
        assert_eq!(Reply::Simple(b"OK").error_code(), None);
        check_splits(b"+\r\n", &Reply::Simple(b""));
    }

    #[test]
    fn integers() {
        check_splits(b":1\r\n", &Reply::Integer(1));
        check_splits(b":0\r\n", &Reply::Integer(0));
        check_splits(b":-5\r\n", &Reply::Integer(-5));
        check_splits(b":9223372036854775807\r\n", &Reply::Integer(i64::MAX));
        check_splits(b":-9223372036854775808\r\n", &Reply::Integer(i64::MIN));
        assert_eq!(err(b":9223372036854775808\r\n"), ProtoError::BadInteger);
        assert_eq!(err(b":-9223372036854775809\r\n"), ProtoError::BadInteger);
        assert_eq!(err(b":99999999999999999999999\r\n"), ProtoError::BadInteger);
        assert_eq!(err(b":\r\n"), ProtoError::BadInteger);
        assert_eq!(err(b":-\r\n"), ProtoError::BadInteger);
        assert_eq!(err(b":+1\r\n"), ProtoError::BadInteger);
        assert_eq!(err(b":1 \r\n"), ProtoError::BadInteger);
        assert_eq!(err(b":0x10\r\n"), ProtoError::BadInteger);
    }

    #[test]
    fn xadd_del_publish() {
        check_splits(b"$15\r\n1700000000000-0\r\n", &bulk(b"1700000000000-0"));
        check_splits(b":3\r\n", &Reply::Integer(3));
    }

    #[test]
    fn xread_nil_and_nested_reply() {
        check_splits(b"*-1\r\n", &Reply::Array(None));
        check_splits(b"*0\r\n", &arr(vec![]));
        // *1 [ *2 [ $stream, *k [ *2 [ $id, *2f [ $f $v ... ] ] ] ] ]: five levels of arrays.
        let xread = b"*1\r\n*2\r\n$11\r\npt:v1:purge\r\n\
            *2\r\n\
            *2\r\n$15\r\n1700000000000-0\r\n*4\r\n$1\r\nk\r\n$3\r\ntok\r\n$1\r\ns\r\n$3\r\nabc\r\n\
            *2\r\n$15\r\n1700000000001-0\r\n*2\r\n$1\r\nv\r\n$1\r\n1\r\n";
        let want = arr(vec![arr(vec![
            bulk(b"pt:v1:purge"),
            arr(vec![
                arr(vec![
                    bulk(b"1700000000000-0"),
                    arr(vec![bulk(b"k"), bulk(b"tok"), bulk(b"s"), bulk(b"abc")]),
                ]),
                arr(vec![
                    bulk(b"1700000000001-0"),
                    arr(vec![bulk(b"v"), bulk(b"1")]),
                ]),
            ]),
        ])]);
        check_splits(xread, &want);
        // Depth 5 is exactly what XREAD needs.
        let tight = Limits {
            max_depth: 4,
            ..Limits::default()
        };
        assert_eq!(parse(xread, &tight), Err(ProtoError::TooDeep));
    }

    #[test]
    fn xrange_hit_and_miss() {
        check_splits(b"*0\r\n", &arr(vec![]));
        let hit = b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nv\r\n$1\r\n1\r\n";
        let want = arr(vec![arr(vec![
            bulk(b"1-0"),
            arr(vec![bulk(b"v"), bulk(b"1")]),
        ])]);
        check_splits(hit, &want);
    }

    #[test]
    fn subscribe_message_and_pong() {
        let sub = b"*3\r\n$9\r\nsubscribe\r\n$11\r\npt:v1:purge\r\n:1\r\n";
        check_splits(
            sub,
            &arr(vec![
                bulk(b"subscribe"),
                bulk(b"pt:v1:purge"),
                Reply::Integer(1),
            ]),
        );
        let msg = b"*3\r\n$7\r\nmessage\r\n$11\r\npt:v1:purge\r\n$7\r\npayload\r\n";
        check_splits(
            msg,
            &arr(vec![
                bulk(b"message"),
                bulk(b"pt:v1:purge"),
                bulk(b"payload"),
            ]),
        );
        check_splits(
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
            &arr(vec![bulk(b"pong"), bulk(b"")]),
        );
        // Two pipelined replies: the first is returned with its length, the rest untouched.
        let mut two = sub.to_vec();
        two.extend_from_slice(msg);
        let (first, n) = ok(&two);
        assert_eq!(n, sub.len());
        assert_eq!(first, ok(sub).0);
        assert_eq!(ok(&two[n..]).1, msg.len());
    }

    #[test]
    fn nil_and_empty_inside_arrays() {
        check_splits(
            b"*4\r\n$-1\r\n*-1\r\n*0\r\n+x\r\n",
            &arr(vec![
                Reply::Bulk(None),
                Reply::Array(None),
                arr(vec![]),
                Reply::Simple(b"x"),
            ]),
        );
    }

    #[test]
    fn rejects_bad_crlf() {
        assert_eq!(err(b"$3\r\nabcXY"), ProtoError::BadBulkEnd);
        assert_eq!(err(b"$3\r\nabc\rX"), ProtoError::BadBulkEnd);
        assert_eq!(err(b"$3\r\nabc\n\r"), ProtoError::BadBulkEnd);
        assert_eq!(err(b"+OK\n"), ProtoError::BadLine);
        assert_eq!(err(b"+OK\rX"), ProtoError::BadLine);
        assert_eq!(err(b"+O\nK\r\n"), ProtoError::BadLine);
        assert_eq!(err(b"$3\nabc\r\n"), ProtoError::BadLine);
        assert_eq!(err(b"$3\rXabc\r\n"), ProtoError::BadLine);
        assert_eq!(err(b":1\r\r\n"), ProtoError::BadLine);
        // Too few bytes to tell: incomplete, not an error.
        assert_eq!(parse(b"$3\r\nabc\r", &Limits::default()), Ok(None));
    }

    #[test]
    fn rejects_negative_lengths_and_limits() {
        assert_eq!(err(b"$-2\r\n"), ProtoError::NegativeLength);
        assert_eq!(err(b"*-2\r\n"), ProtoError::NegativeLength);
        assert_eq!(
            err(b"$-9223372036854775808\r\n"),
            ProtoError::NegativeLength
        );
        assert_eq!(err(b"$999999999\r\n"), ProtoError::BulkTooLong);
        assert_eq!(err(b"$262145\r\n"), ProtoError::BulkTooLong);
        assert_eq!(
            parse(b"$262144\r\n", &Limits::default()),
            Ok(None),
            "exactly max_bulk is allowed"
        );
        assert_eq!(err(b"*1025\r\n"), ProtoError::ArrayTooLong);
        assert_eq!(parse(b"*1024\r\n", &Limits::default()), Ok(None));
        assert_eq!(err(b"$9223372036854775807\r\n"), ProtoError::BulkTooLong);
        assert_eq!(err(b"*9223372036854775808\r\n"), ProtoError::BadInteger);
        // A length line that never ends is an error once it is too long to be a number.
        assert_eq!(err(b"$111111111111111111111"), ProtoError::BadInteger);
        assert_eq!(
            parse(b"$11111111111111111111", &Limits::default()),
            Ok(None)
        );
        // A simple string line over max_bulk without CRLF.
        let small = Limits {
            max_bulk: 4,
            ..Limits::default()
        };
        assert_eq!(parse(b"+abcd", &small), Ok(None));
        assert_eq!(
            parse(b"+abcd\r\n", &small),
            Ok(Some((Reply::Simple(b"abcd"), 7)))
        );
        assert_eq!(parse(b"+abcde", &small), Err(ProtoError::BulkTooLong));
        assert_eq!(parse(b"-abcde\r\n", &small), Err(ProtoError::BulkTooLong));
        assert_eq!(
            parse(b"$5\r\nabcde\r\n", &small),
            Err(ProtoError::BulkTooLong)
        );
    }

    #[test]
    fn rejects_garbage_types() {
        for b in [
            b'_', b'#', b',', b'(', b'!', b'=', b'%', b'~', b'|', b'>', b'H', 0, 0xff,
        ] {
            assert_eq!(err(&[b, b'1', b'\r', b'\n']), ProtoError::BadType(b));
        }
        assert_eq!(
            err(b"HTTP/1.1 400 Bad Request\r\n"),
            ProtoError::BadType(b'H')
        );
        assert_eq!(err(b"*2\r\n:1\r\n_\r\n"), ProtoError::BadType(b'_'));
        assert_eq!(parse(b"", &Limits::default()), Ok(None));
    }

    #[test]
    fn depth_limit_holds_without_recursion() {
        // 100k nested arrays: rejected at depth 6, no stack growth.
        let deep = b"*1\r\n".repeat(100_000);
        assert_eq!(err(&deep), ProtoError::TooDeep);
        let five = [&b"*1\r\n".repeat(5)[..], b":7\r\n"].concat();
        let mut want = Reply::Integer(7);
        for _ in 0..5 {
            want = arr(vec![want]);
        }
        check_splits(&five, &want);
        let six = [&b"*1\r\n".repeat(6)[..], b":7\r\n"].concat();
        assert_eq!(err(&six), ProtoError::TooDeep);
        // Nil and empty arrays count as a level too.
        let six_nil = [&b"*1\r\n".repeat(5)[..], b"*-1\r\n"].concat();
        assert_eq!(err(&six_nil), ProtoError::TooDeep);
        let flat = Limits {
            max_depth: 0,
            ..Limits::default()
        };
        assert_eq!(parse(b"*0\r\n", &flat), Err(ProtoError::TooDeep));
        assert_eq!(parse(b":1\r\n", &flat), Ok(Some((Reply::Integer(1), 4))));
    }

    #[test]
    fn wide_arrays() {
        let mut buf = b"*1024\r\n".to_vec();
        for _ in 0..1024 {
            buf.extend_from_slice(b":1\r\n");
        }
        let (r, n) = ok(&buf);
        assert_eq!(n, buf.len());
        assert!(matches!(r, Reply::Array(Some(v)) if v.len() == 1024));
        // A declared count the elements never fill is incomplete, and reserves little.
        assert_eq!(parse(b"*1000\r\n:1\r\n", &Limits::default()), Ok(None));
    }

    /// A small deterministic generator (no dev-dependency): xorshift64*.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_reply(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        let kind = if depth >= 5 {
            rng.below(4)
        } else {
            rng.below(5)
        };
        match kind {
            0 => out.extend_from_slice(b"+OK\r\n"),
            1 => out.extend_from_slice(b"-ERR x\r\n"),
            2 => out.extend_from_slice(format!(":{}\r\n", rng.next() as i64).as_bytes()),
            3 => {
                let n = rng.below(6) as usize;
                if n == 5 {
                    out.extend_from_slice(b"$-1\r\n");
                } else {
                    out.extend_from_slice(format!("${n}\r\n").as_bytes());
                    out.extend((0..n).map(|_| rng.next() as u8));
                    out.extend_from_slice(b"\r\n");
                }
            }
            _ => {
                let n = rng.below(5) as usize;
                if n == 4 {
                    out.extend_from_slice(b"*-1\r\n");
                } else {
                    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
                    for _ in 0..n {
                        random_reply(rng, depth + 1, out);
                    }
                }
            }
        }
    }

    /// The fuzz target's properties over generated valid replies and their mutations.
    #[test]
    fn generated_replies_and_mutations() {
        let limits = Limits::default();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let mut buf = Vec::new();
            random_reply(&mut rng, 0, &mut buf);
            let (_, n) = parse(&buf, &limits).unwrap().unwrap();
            assert_eq!(n, buf.len());
            for cut in 0..buf.len() {
                assert_eq!(parse(&buf[..cut], &limits), Ok(None));
            }
            // Flip one byte: never a panic, never more than the input, prefixes consistent.
            let i = rng.below(buf.len() as u64) as usize;
            buf[i] = rng.next() as u8;
            let full = parse(&buf, &limits);
            if let Ok(Some((_, n))) = &full {
                assert!(*n <= buf.len());
            }
            for cut in 0..buf.len() {
                match parse(&buf[..cut], &limits) {
                    Ok(None) => {}
                    Ok(Some(r)) => assert_eq!(Ok(Some(r)), full),
                    Err(e) => assert_eq!(Err(e), full),
                }
            }
        }
    }
}
