//! A pipeline whose commands lie in several hash slots, on a cluster: grouped by the node that
//! owns each command's slot, one submit per node, and the replies put back in the order of
//! the commands. A purge sweep's round (one `UNLINK` per slot, the index set's `SREM` and
//! `SRANDMEMBER`, the notice's `XADD`) is such a pipeline.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use phantom_core::fleet::cluster::key_slot;
use phantom_core::fleet::resp::{self, Limits, Reply};

use super::waiters::{self, Outcome, Value};
use super::Fleet;

/// The commands of a pipeline, each with the key that routes it (`EVAL`'s first key, else
/// the first argument); `None` if they do not parse.
fn commands(cmds: &[u8]) -> Option<Vec<(&[u8], Vec<u8>)>> {
    let limits = Limits::default();
    let mut out = Vec::new();
    let mut rest = cmds;
    while !rest.is_empty() {
        let (reply, used) = resp::parse(rest, &limits).ok()??;
        let Reply::Array(Some(args)) = reply else {
            return None;
        };
        let arg = |i: usize| match args.get(i) {
            Some(Reply::Bulk(Some(b))) => Some(*b),
            _ => None,
        };
        let name = arg(0)?;
        let key = if name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVALSHA") {
            arg(3).unwrap_or_default()
        } else {
            arg(1).unwrap_or_default()
        };
        out.push((&rest[..used], key.to_vec()));
        rest = &rest[used..];
    }
    Some(out)
}

/// One node's part: its address, its commands, their positions, and a key that routes them.
type Group = (SocketAddr, Vec<u8>, Vec<usize>, Vec<u8>);

/// Replies gathered from the nodes, by the position of their command.
struct Join {
    pending: usize,
    replies: Vec<Option<Value>>,
    failed: bool,
    waiter: u64,
}

/// Sends `cmds` (one reply each) to the nodes that own their slots; `waiter` gets every
/// reply in order, or `Err` if a node's part failed. `false` if nothing was sent.
pub(crate) fn submit(fleet: &Fleet, cmds: &[u8], waiter: u64, now_ms: i64) -> bool {
    let Some(cluster) = fleet.cluster.as_ref() else {
        return false;
    };
    let Some(list) = commands(cmds) else {
        return false;
    };
    // Group by node, keeping each command's position.
    let mut groups: Vec<Group> = Vec::new();
    for (i, (cmd, key)) in list.iter().enumerate() {
        let Some(node) = cluster.owner_of(key_slot(key)) else {
            cluster.suspect();
            return false;
        };
        match groups.iter_mut().find(|g| g.0 == node) {
            Some(g) => {
                g.1.extend_from_slice(cmd);
                g.2.push(i);
            }
            None => groups.push((node, cmd.to_vec(), vec![i], key.clone())),
        }
    }
    let join = Rc::new(RefCell::new(Join {
        pending: groups.len(),
        replies: vec![None; list.len()],
        failed: false,
        waiter,
    }));
    let mut sent = 0;
    for (_, group, positions, route) in groups {
        let j = join.clone();
        let n = positions.len();
        let id = waiters::register(move |outcome| part(&j, &positions, outcome));
        if !cluster.submit(fleet, &route, &group, (n, id), now_ms) {
            waiters::cancel(id);
            // What was sent still answers; the join fails once they have.
            let mut j = join.borrow_mut();
            j.failed = true;
            j.pending -= 1;
            continue;
        }
        sent += 1;
    }
    if sent == 0 {
        return false;
    }
    finish_if_done(&join);
    true
}

/// One node's replies arrived.
fn part(join: &Rc<RefCell<Join>>, positions: &[usize], outcome: Outcome) {
    {
        let mut j = join.borrow_mut();
        j.pending -= 1;
        match outcome {
            Ok(values) if values.len() == positions.len() => {
                for (&p, v) in positions.iter().zip(values) {
                    j.replies[p] = Some(v);
                }
            }
            _ => j.failed = true,
        }
    }
    finish_if_done(join);
}

fn finish_if_done(join: &Rc<RefCell<Join>>) {
    let done = {
        let mut j = join.borrow_mut();
        if j.pending > 0 || j.waiter == 0 {
            return;
        }
        let waiter = core::mem::take(&mut j.waiter);
        let replies: Option<Vec<Value>> = j.replies.iter_mut().map(Option::take).collect();
        let outcome = match (j.failed, replies) {
            (false, Some(r)) => Ok(r),
            _ => Err(()),
        };
        (waiter, outcome)
    };
    // Run from the event loop: this may be inside a submit.
    waiters::defer(vec![done]);
}
