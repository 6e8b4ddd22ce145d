//! A purge by subject or client in Redis, on the event loop: the entries an index set lists,
//! removed in batches of 500, one `UNLINK` per slot (`phantom_core::fleet::sweep` builds the
//! round trips and reads their replies). Each round trip is one pipelined submit on the
//! worker's connection; the next is sent from the reply's callback, so nothing blocks and a
//! purge of many entries never holds the connection for long. The caller's tail (the purge
//! notice) rides on the last round trip.
//!
//! Nothing here knows a request: the caller hands a callback, which gets the number of keys
//! removed and the tail's replies, or `Err` (a timeout, a closed connection, an error reply,
//! a set that does not empty).

use std::cell::RefCell;
use std::rc::Rc;

use phantom_core::fleet::sweep::{self, Round, MAX_BATCHES};

use super::waiters::{self, Outcome, Value};
use super::Fleet;

/// What a finished sweep reports: keys removed, and the tail's replies.
pub(crate) type Swept = Result<(u64, Vec<Value>), ()>;

struct State {
    fleet: &'static Fleet,
    index: String,
    tail: Vec<u8>,
    tail_replies: usize,
    removed: u64,
    batches: u32,
    done: Box<dyn FnOnce(Swept)>,
}

/// Starts removing the entries listed in `index`, then sends `tail` (`tail_replies`
/// replies). `false` when nothing was sent (breaker open, Redis unreachable now): `done` is
/// then not called.
pub(crate) fn start(
    fleet: &'static Fleet,
    index: String,
    (tail, tail_replies): (Vec<u8>, usize),
    now_ms: i64,
    done: impl FnOnce(Swept) + 'static,
) -> bool {
    let first = Round {
        cmds: sweep::first(&index),
        replies: 1,
        unlinks: 0,
        reads_more: true,
    };
    let st = Box::new(State {
        fleet,
        index,
        tail,
        tail_replies,
        removed: 0,
        batches: 0,
        done: Box::new(done),
    });
    send(st, first, false, now_ms).is_ok()
}

/// Sends one round; gives the state back if nothing was sent.
fn send(st: Box<State>, round: Round, had_members: bool, now_ms: i64) -> Result<(), Box<State>> {
    let fleet = st.fleet;
    let (cmds, replies) = (round.cmds.clone(), round.replies);
    // The callback owns the state; if the submit fails, it is taken back from here.
    let slot = Rc::new(RefCell::new(Some(st)));
    let theirs = slot.clone();
    let id = waiters::register(move |outcome| {
        if let Some(st) = theirs.borrow_mut().take() {
            answered(st, &round, had_members, outcome);
        }
    });
    if fleet.submit_split(&cmds, replies, id, now_ms) {
        return Ok(());
    }
    waiters::cancel(id);
    // Completions are never run inside a submit (they are deferred), so the state is here.
    let taken = slot.borrow_mut().take();
    match taken {
        Some(st) => Err(st),
        None => Ok(()),
    }
}

fn answered(st: Box<State>, round: &Round, had_members: bool, outcome: Outcome) {
    let Ok(values) = outcome else {
        return (st.done)(Err(()));
    };
    let replies: Vec<_> = values.iter().map(Value::as_reply).collect();
    let read = match sweep::read(round, had_members, &replies) {
        Ok(r) => r,
        Err(_) => return (st.done)(Err(())),
    };
    let mut st = st;
    st.removed += read.removed;
    let Some(members) = read.next else {
        let tail = values[round.replies - st.tail_replies.min(round.replies)..].to_vec();
        return (st.done)(Ok((st.removed, tail)));
    };
    st.batches += 1;
    if st.batches > MAX_BATCHES {
        return (st.done)(Err(()));
    }
    let round = sweep::round(
        &st.fleet.layout,
        &st.index,
        &members,
        (&st.tail, st.tail_replies),
    );
    let had = !members.is_empty();
    if let Err(st) = send(st, round, had, crate::glue::time::now_ms()) {
        (st.done)(Err(()));
    }
}
