//! A purge by subject or client in Redis: the entries an index set lists, removed in batches.
//!
//! The set lives in its own slot and its members (entry names) in the slots of their tokens,
//! so no one command or script can do it on a Redis Cluster or behind a sharding proxy. Each
//! round trip reads up to [`BATCH`] members (`SRANDMEMBER <set> 500`); the next one removes
//! them, one `UNLINK` per slot, takes them out of the set (`SREM`, the set's slot), and reads
//! the next batch. A batch shorter than [`BATCH`] is the last: its round trip carries the
//! caller's tail instead (the purge notice's `XADD`). Every command names keys of one slot.
//!
//! Only members with the shape of an entry of the layout are unlinked ([`Layout::is_entry`]);
//! the others are only taken out of the set. [`MAX_BATCHES`] bounds a purge, so that a set
//! that grows as fast as it is swept cannot keep a purge going forever.

use super::layout::Layout;
use super::resp::{push_command, Reply};
use super::slot::by_slot;

/// Members read per round trip.
pub const BATCH: usize = 500;

/// Most batches of one purge (500,000 entries of one subject or client).
pub const MAX_BATCHES: u32 = 1000;

/// The first round trip: read the first batch.
pub fn first(index: &str) -> Vec<u8> {
    let mut cmds = Vec::with_capacity(64 + index.len());
    push_srandmember(&mut cmds, index);
    cmds
}

fn push_srandmember(cmds: &mut Vec<u8>, index: &str) {
    let n = BATCH.to_string();
    push_command(cmds, &[b"SRANDMEMBER", index.as_bytes(), n.as_bytes()]);
}

/// One round trip of the sweep, and what to expect of its replies.
#[derive(Debug, PartialEq, Eq)]
pub struct Round {
    /// The commands, pipelined.
    pub cmds: Vec<u8>,
    /// How many replies they give.
    pub replies: usize,
    /// The first `unlinks` replies answer `UNLINK`s.
    pub unlinks: usize,
    /// Whether the round ends with `SREM` + `SRANDMEMBER` (more may follow), or with `SREM`
    /// and the tail (or the tail alone, when there were no members).
    pub reads_more: bool,
}

/// The round trip after a batch of `members` was read: their removal and the set's next
/// batch, or, after a short batch, their removal and `tail` (`tail_replies` replies).
pub fn round(
    layout: &Layout,
    index: &str,
    members: &[&[u8]],
    (tail, tail_replies): (&[u8], usize),
) -> Round {
    let mut cmds = Vec::new();
    let entries = members.iter().copied().filter(|m| layout.is_entry(m));
    let groups = by_slot(entries);
    for (_, keys) in &groups {
        let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
        args.push(b"UNLINK");
        args.extend(keys.iter().copied());
        push_command(&mut cmds, &args);
    }
    let mut replies = groups.len();
    if !members.is_empty() {
        let mut args: Vec<&[u8]> = Vec::with_capacity(members.len() + 2);
        args.push(b"SREM");
        args.push(index.as_bytes());
        args.extend(members.iter().copied());
        push_command(&mut cmds, &args);
        replies += 1;
    }
    let reads_more = members.len() >= BATCH;
    if reads_more {
        push_srandmember(&mut cmds, index);
        replies += 1;
    } else {
        cmds.extend_from_slice(tail);
        replies += tail_replies;
    }
    Round {
        cmds,
        replies,
        unlinks: groups.len(),
        reads_more,
    }
}

/// Why a sweep stopped short.
#[derive(Debug, PartialEq, Eq)]
pub enum SweepError {
    /// An error reply, or a reply of another type than the command gives.
    Reply,
    /// [`MAX_BATCHES`] batches and the set is not empty yet.
    TooLong,
}

/// The members of an `SRANDMEMBER` reply.
pub fn members<'a>(reply: &Reply<'a>) -> Result<Vec<&'a [u8]>, SweepError> {
    let Reply::Array(Some(items)) = reply else {
        return Err(SweepError::Reply);
    };
    items
        .iter()
        .map(|i| match i {
            Reply::Bulk(Some(b)) => Ok(*b),
            _ => Err(SweepError::Reply),
        })
        .collect()
}

/// What a round's replies say.
#[derive(Debug, PartialEq, Eq)]
pub struct Read<'a> {
    /// Keys its `UNLINK`s removed.
    pub removed: u64,
    /// The next batch; `None` after the last round (the tail's replies are then the
    /// caller's, the last `tail_replies` of the round's).
    pub next: Option<Vec<&'a [u8]>>,
}

/// Reads the replies of `round` (`had_members`: it removed a batch, so it has an `SREM`).
pub fn read<'a>(
    round: &Round,
    had_members: bool,
    replies: &[Reply<'a>],
) -> Result<Read<'a>, SweepError> {
    if replies.len() != round.replies {
        return Err(SweepError::Reply);
    }
    let mut removed = 0u64;
    for r in &replies[..round.unlinks] {
        match r {
            Reply::Integer(n) if *n >= 0 => removed += *n as u64,
            _ => return Err(SweepError::Reply),
        }
    }
    let mut rest = &replies[round.unlinks..];
    if had_members {
        let Some((Reply::Integer(_), more)) = rest.split_first() else {
            return Err(SweepError::Reply);
        };
        rest = more;
    }
    if !round.reads_more {
        return Ok(Read {
            removed,
            next: None,
        });
    }
    let next = members(rest.first().ok_or(SweepError::Reply)?)?;
    Ok(Read {
        removed,
        next: Some(next),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::resp::{parse, Limits};
    use crate::fleet::slot::key_slot;
    use crate::purge::Kind;

    /// Every reply (or command: an array of bulk strings) in `wire`.
    fn parse_all(mut wire: &[u8]) -> Vec<Reply<'_>> {
        let limits = Limits {
            max_array: 4096,
            ..Limits::default()
        };
        let mut out = Vec::new();
        while !wire.is_empty() {
            let (r, n) = parse(wire, &limits).unwrap().expect("complete");
            out.push(r);
            wire = &wire[n..];
        }
        out
    }

    fn layout() -> Layout {
        Layout::new(&[3u8; 32], "pt:v2:")
    }

    fn commands(cmds: &[u8]) -> Vec<Vec<Vec<u8>>> {
        parse_all(cmds)
            .into_iter()
            .map(|r| match r {
                Reply::Array(Some(args)) => args
                    .into_iter()
                    .map(|a| match a {
                        Reply::Bulk(Some(b)) => b.to_vec(),
                        other => panic!("{other:?}"),
                    })
                    .collect(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_first_round_reads_a_batch() {
        assert_eq!(
            commands(&first("pt:v2:sub:{x}")),
            [[b"SRANDMEMBER" as &[u8], b"pt:v2:sub:{x}", b"500"]]
        );
    }

    #[test]
    fn a_full_batch_is_removed_one_slot_per_unlink_and_the_next_is_read() {
        let l = layout();
        let index = l.index(Kind::Sub, b"alice");
        let ctx = crate::digest::context(b"/_i", "jwt");
        let ctx2 = crate::digest::context(b"/_j", "jwt");
        let mut names: Vec<String> = (0..BATCH / 2)
            .flat_map(|i| {
                let t = format!("token-{i}");
                [l.entry(&ctx, t.as_bytes()), l.entry(&ctx2, t.as_bytes())]
            })
            .collect();
        names[7] = "somebody:else's:key".into();
        let members: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        let r = round(&l, &index, &members, (b"*1\r\n$4\r\nPING\r\n", 1));
        assert!(r.reads_more);
        let cmds = commands(&r.cmds);
        assert_eq!(cmds.len(), r.replies);
        assert_eq!(r.unlinks, r.replies - 2);
        let mut unlinked = 0;
        for c in &cmds[..r.unlinks] {
            assert_eq!(c[0], b"UNLINK");
            let slot = key_slot(&c[1]);
            assert!(c[1..].iter().all(|k| key_slot(k) == slot), "one slot");
            assert!(c[1..].iter().all(|k| l.is_entry(k)));
            unlinked += c.len() - 1;
        }
        assert_eq!(unlinked, BATCH - 1, "all but the foreign member");
        // Both contexts of a token are removed by one command.
        assert!(cmds[..r.unlinks].iter().any(|c| c.len() >= 3));
        let srem = &cmds[r.unlinks];
        assert_eq!(srem[..2], [b"SREM" as &[u8], index.as_bytes()]);
        assert_eq!(srem.len(), BATCH + 2, "every member leaves the set");
        assert_eq!(
            cmds[r.unlinks + 1],
            [b"SRANDMEMBER" as &[u8], index.as_bytes(), b"500"]
        );
        // The replies: removed counts, SREM, the next batch.
        let mut wire = Vec::new();
        for i in 0..r.unlinks {
            wire.extend_from_slice(format!(":{}\r\n", i % 2).as_bytes());
        }
        wire.extend_from_slice(b":500\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        let replies = parse_all(&wire);
        let got = read(&r, true, &replies).unwrap();
        assert_eq!(got.removed, (r.unlinks / 2) as u64);
        assert_eq!(got.next, Some(vec![b"a" as &[u8], b"b"]));
    }

    #[test]
    fn a_short_batch_ends_with_the_tail() {
        let l = layout();
        let index = l.index(Kind::ClientId, b"app");
        let e = l.entry(b"c", b"t");
        let tail = b"*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n";
        let r = round(&l, &index, &[e.as_bytes()], (tail, 1));
        assert!(!r.reads_more);
        let cmds = commands(&r.cmds);
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0], [b"UNLINK" as &[u8], e.as_bytes()]);
        assert_eq!(cmds[1][0], b"SREM");
        assert_eq!(cmds[2], [b"ECHO" as &[u8], b"x"]);
        let replies = parse_all(b":1\r\n:1\r\n$1\r\nx\r\n");
        let last = Read {
            removed: 1,
            next: None,
        };
        assert_eq!(read(&r, true, &replies), Ok(last));
        // An empty set: the tail alone.
        let r = round(&l, &index, &[], (tail, 1));
        assert_eq!(commands(&r.cmds), [[b"ECHO" as &[u8], b"x"]]);
        assert_eq!((r.replies, r.unlinks, r.reads_more), (1, 0, false));
        let empty = Read {
            removed: 0,
            next: None,
        };
        assert_eq!(read(&r, false, &parse_all(b"$1\r\nx\r\n")), Ok(empty));
        // Foreign members only: taken out of the set, nothing unlinked.
        let r = round(&l, &index, &[b"other"], (tail, 1));
        assert_eq!(commands(&r.cmds)[0][0], b"SREM");
        assert_eq!(r.unlinks, 0);
    }

    #[test]
    fn unexpected_replies_stop_the_sweep() {
        let l = layout();
        let index = l.index(Kind::Sub, b"a");
        let e = l.entry(b"c", b"t");
        let r = round(&l, &index, &[e.as_bytes()], (b"", 0));
        for wire in [
            &b"-CROSSSLOT Keys in request don't hash to the same slot\r\n:1\r\n"[..],
            b":1\r\n-ERR x\r\n",
            b":-1\r\n:1\r\n",
            b"$1\r\nx\r\n:1\r\n",
            b":1\r\n",
            b":1\r\n:1\r\n:1\r\n",
        ] {
            assert_eq!(
                read(&r, true, &parse_all(wire)),
                Err(SweepError::Reply),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        for reply in [
            &b"-ERR wrong\r\n"[..],
            b"$-1\r\n",
            b"*-1\r\n",
            b"*1\r\n:1\r\n",
            b":0\r\n",
        ] {
            assert_eq!(members(&parse_all(reply)[0]), Err(SweepError::Reply));
        }
        assert_eq!(members(&parse_all(b"*0\r\n")[0]), Ok(vec![]));
    }
}
