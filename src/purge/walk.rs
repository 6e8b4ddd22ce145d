//! A purge by subject or client takes the entries of that subject's (client's) chain in the
//! zone, not a walk over the zone: in steps of [`STEP`] entries, one per event loop
//! iteration, so neither the other workers (the zone lock) nor the requests of this worker
//! (its event loop) wait for more than one step. Its cost is that subject's entries.

use core::ffi::c_void;

use nginx_sys::{ngx_cycle, ngx_event_t, ngx_post_event, ngx_posted_next_events};
use phantom_core::chain::Chain;
use phantom_core::purge::Kind;

use crate::cache::ZoneConf;

/// Entries removed per step (each a few index slots and two slab frees).
const STEP: usize = 256;

type Done = Box<dyn FnOnce(u64)>;

struct Walk {
    zone: &'static ZoneConf,
    chain: Chain,
    value: Vec<u8>,
    removed: u64,
    ev: ngx_event_t,
    done: Option<Done>,
}

/// Starts a walk removing the entries whose JWT has `kind`'s claim equal to `value` (`sub`
/// or `client_id`; nothing for a token); `done` gets the count once the walk is over (every
/// worker's L1 is then dropped).
pub(crate) fn start(zone: &'static ZoneConf, kind: Kind, value: Vec<u8>, done: Done) {
    let chain = match kind {
        Kind::Sub => Chain::Sub,
        Kind::ClientId => Chain::Client,
        Kind::Token => return done(0),
    };
    let walk = Box::new(Walk {
        zone,
        chain,
        value,
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
        let (removed, end) = w.zone.zone.purge_chain_step(w.chain, &w.value, STEP);
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
