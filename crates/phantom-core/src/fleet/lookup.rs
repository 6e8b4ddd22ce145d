//! What the replies of a fleet lookup say: `GET <entry>`, or after a miss
//! `SET <lock> <value> NX PX <ms>` then `GET <entry>` in one round trip.

use super::resp::Reply;

/// The entry's `GET`.
#[derive(Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A stored value (still to be opened and checked).
    Stored(&'a [u8]),
    /// No entry.
    Missing,
    /// Anything else (an error reply, another type, no reply): Redis does not help.
    Unusable,
}

/// The lock's `SET NX`.
#[derive(Debug, PartialEq, Eq)]
pub enum Lock {
    /// `+OK`: this instance introspects for the fleet.
    Taken,
    /// `nil`: another instance holds it.
    Held,
    /// An error reply or anything else.
    Failed {
        /// Redis answered `-OOM`: writes should pause.
        full: bool,
    },
}

/// The replies of a lookup, in order: `[GET]`, or `[SET NX, GET]` when the lock was asked.
pub fn classify<'a>(replies: &'a [Reply<'a>], locking: bool) -> (Option<Lock>, Value<'a>) {
    let value = match replies.last() {
        Some(Reply::Bulk(Some(bytes))) => Value::Stored(bytes),
        Some(Reply::Bulk(None)) => Value::Missing,
        _ => Value::Unusable,
    };
    if !locking {
        return (None, value);
    }
    let lock = match replies.len().checked_sub(2).and_then(|i| replies.get(i)) {
        Some(Reply::Simple(ok)) if *ok == b"OK" => Lock::Taken,
        Some(Reply::Bulk(None)) => Lock::Held,
        Some(Reply::Error(line)) => Lock::Failed {
            full: line.split(|&b| b == b' ').next() == Some(b"OOM"),
        },
        _ => Lock::Failed { full: false },
    };
    (Some(lock), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_alone() {
        let stored = [Reply::Bulk(Some(b"v"))];
        assert_eq!(classify(&stored, false), (None, Value::Stored(b"v")));
        assert_eq!(
            classify(&[Reply::Bulk(None)], false),
            (None, Value::Missing)
        );
        let err = [Reply::Error(b"ERR x")];
        assert_eq!(classify(&err, false), (None, Value::Unusable));
        assert_eq!(classify(&[], false), (None, Value::Unusable));
        assert_eq!(
            classify(&[Reply::Integer(1)], false),
            (None, Value::Unusable)
        );
    }

    #[test]
    fn a_lock_then_a_get() {
        let taken = [Reply::Simple(b"OK"), Reply::Bulk(None)];
        assert_eq!(classify(&taken, true), (Some(Lock::Taken), Value::Missing));
        let held = [Reply::Bulk(None), Reply::Bulk(Some(b"v"))];
        assert_eq!(
            classify(&held, true),
            (Some(Lock::Held), Value::Stored(b"v"))
        );
        let full = [Reply::Error(b"OOM command not allowed"), Reply::Bulk(None)];
        assert_eq!(
            classify(&full, true),
            (Some(Lock::Failed { full: true }), Value::Missing)
        );
        let ro = [Reply::Error(b"READONLY replica"), Reply::Bulk(None)];
        assert_eq!(
            classify(&ro, true),
            (Some(Lock::Failed { full: false }), Value::Missing)
        );
        let short = [Reply::Bulk(None)];
        assert_eq!(
            classify(&short, true),
            (Some(Lock::Failed { full: false }), Value::Missing)
        );
        let odd = [Reply::Simple(b"QUEUED"), Reply::Integer(3)];
        assert_eq!(
            classify(&odd, true),
            (Some(Lock::Failed { full: false }), Value::Unusable)
        );
    }
}
