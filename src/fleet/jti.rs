//! The fleet-wide DPoP replay check: a proof's `jti` is used once per fleet.
//!
//! `SET <prefix>jti:<HMAC of the proof's replay key> 1 NX PX <ms>`: `OK` means this request
//! is the first in the fleet to use the proof, `nil` that another instance (or worker)
//! already did. The key name is HMAC'd like every other key, so Redis sees neither the key
//! thumbprint nor the `jti`. Nothing here knows a request: the caller hands a slot and a
//! callback that wakes it.

use phantom_core::fleet::resp::push_command;

use super::waiters::{self, Outcome, Value};
use super::Fleet;

/// A request's claim in flight; dropping it (with the request) forgets the waiter, so a
/// late reply finds nobody.
#[derive(Default)]
pub(crate) struct JtiClaim {
    /// The operation the request waits for (0: none).
    pub(crate) op: u64,
    pub(crate) reply: Option<Outcome>,
}

impl Drop for JtiClaim {
    fn drop(&mut self) {
        waiters::cancel(self.op);
    }
}

/// What Redis said about a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// First use in the fleet.
    Claimed,
    /// Used before, somewhere in the fleet.
    Replayed,
    /// No answer to trust (timeout, connection, error reply).
    Unavailable,
}

/// The Redis key of a proof (`replay_key` binds the `jti` to the proof's key).
pub(crate) fn key(fleet: &Fleet, jkt: &str, jti: &str) -> String {
    fleet.layout.jti(&phantom_core::dpop::replay_key(jkt, jti))
}

/// Sends the claim of a proof for `px_ms`; `wake` runs with the reply, unless the slot was
/// dropped first. `false` when nothing was sent (breaker open, Redis full, unreachable now).
pub(crate) fn claim(
    fleet: &Fleet,
    slot: &mut JtiClaim,
    (jkt, jti): (&str, &str),
    px_ms: u64,
    now_ms: i64,
    wake: impl FnOnce(Outcome) + 'static,
) -> bool {
    // A claim is a write: Redis answered `-OOM` recently.
    if !fleet.writable(now_ms) {
        return false;
    }
    let key = key(fleet, jkt, jti);
    let px = px_ms.max(1).to_string();
    let mut cmd = Vec::with_capacity(96);
    push_command(
        &mut cmd,
        &[b"SET", key.as_bytes(), b"1", b"NX", b"PX", px.as_bytes()],
    );
    let id = waiters::register(wake);
    if !fleet.submit(key.as_bytes(), &cmd, (1, id), now_ms) {
        waiters::cancel(id);
        return false;
    }
    slot.op = id;
    slot.reply = None;
    true
}

/// Reads the reply the slot received.
pub(crate) fn answer(fleet: &Fleet, slot: &mut JtiClaim, now_ms: i64) -> Answer {
    let Some(Ok(replies)) = slot.reply.take() else {
        return Answer::Unavailable;
    };
    let answer = classify(replies.first());
    if replies.first().and_then(Value::error_code) == Some(b"OOM") {
        fleet.full(now_ms);
    }
    answer
}

/// `+OK` claimed, `nil` replayed, anything else (an error reply, an unexpected type) is no
/// answer.
fn classify(reply: Option<&Value>) -> Answer {
    match reply {
        Some(Value::Simple(ok)) if ok == b"OK" => Answer::Claimed,
        Some(Value::Nil) => Answer::Replayed,
        _ => Answer::Unavailable,
    }
}
