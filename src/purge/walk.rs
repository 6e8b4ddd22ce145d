//! A purge by subject or client walks the whole zone: in steps of [`STEP`] entries, one per
//! event loop iteration, so neither the other workers (the zone lock) nor the requests of
//! this worker (its event loop) wait for more than one step.

use core::ffi::c_void;

use nginx_sys::{ngx_cycle, ngx_event_t, ngx_post_event, ngx_posted_next_events};
use phantom_core::purge::Kind;

use crate::cache::ZoneConf;

/// Entries looked at per step (a few milliseconds with 1 KiB JWTs in cold memory).
const STEP: usize = 256;

type Done = Box<dyn FnOnce(u64)>;

struct Walk {
    zone: &'static ZoneConf,
    kind: Kind,
    value: Vec<u8>,
    after: Option<[u8; 32]>,
    removed: u64,
    ev: ngx_event_t,
    done: Option<Done>,
}

/// Starts a walk removing the entries whose JWT has `kind`'s claim equal to `value`; `done`
/// gets the count once the walk is over (every worker's L1 is then dropped).
pub(crate) fn start(zone: &'static ZoneConf, kind: Kind, value: Vec<u8>, done: Done) {
    let walk = Box::new(Walk {
        zone,
        kind,
        value,
        after: None,
        removed: 0,
        // SAFETY: an all-zero event is its initial state; the fields below are set.
        ev: unsafe { core::mem::zeroed() },
        done: Some(done),
    });
    let walk = Box::into_raw(walk);
    // SAFETY: walk is a fresh allocation owned by its event until the walk ends.
    unsafe {
        (*walk).ev.handler = Some(step);
        (*walk).ev.data = walk as *mut c_void;
        (*walk).ev.log = (*ngx_cycle).log;
        step(&mut (*walk).ev);
    }
}

unsafe extern "C" fn step(ev: *mut ngx_event_t) {
    // SAFETY: data is the walk that owns the event (see `start`).
    let walk = unsafe { (*ev).data } as *mut Walk;
    // SAFETY: as above; the borrow ends before the walk is freed.
    let finished = unsafe {
        let w = &mut *walk;
        let (kind, value) = (w.kind, &w.value);
        let (removed, end) = w
            .zone
            .zone
            .purge_step(&mut w.after, STEP, |jwt| claim_is(jwt, kind, value));
        w.removed += removed;
        if !end {
            // The next step runs in the next event loop iteration, after other events.
            ngx_post_event(&mut w.ev, &raw mut ngx_posted_next_events);
        }
        end
    };
    if finished {
        // SAFETY: the walk's event is not posted; the walk is freed exactly once here.
        let w = unsafe { Box::from_raw(walk) };
        w.zone.zone.bump_epoch();
        if let Some(done) = w.done {
            done(w.removed);
        }
    }
}

fn claim_is(jwt: &[u8], kind: Kind, value: &[u8]) -> bool {
    if !phantom_core::jwt::may_contain(jwt, value) {
        return false;
    }
    phantom_core::jwt::claims_of(jwt)
        .get(kind.label())
        .and_then(|v| v.as_str())
        .is_some_and(|v| v.as_bytes() == value)
}
