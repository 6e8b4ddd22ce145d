//! The purge stream reader: worker 0 of each instance follows `<prefix>purge:<zone>` with
//! `XREAD BLOCK`, so a purge made on any instance reaches this one within a second.
//!
//! The stream (not pub/sub) keeps entries, so a reader that reconnects resumes after the
//! last id it applied (kept in the zone, so a new worker generation resumes there too).
//! Entries are sealed: Redis sees no token, subject or client id. Each carries the instance
//! that made the purge; an instance skips its own (it applied them when it took them).

use core::ffi::c_void;

use nginx_sys::{
    ngx_add_timer, ngx_cycle, ngx_del_timer, ngx_event_t, ngx_exiting, ngx_quit, ngx_terminate,
};
use phantom_core::fleet::notice::{self, Notice, Origin};

use super::conn::{Conn, Kind};
use super::waiters::{self, Outcome};
use super::Fleet;
use crate::cache::zone::Zone;
use crate::metrics::{self, Counter};

/// How long one `XREAD` blocks in Redis; the read deadline is this plus the op timeout.
const BLOCK_MS: u64 = 500;
/// Entries per read.
const COUNT: u32 = 100;
/// Reconnect backoff bounds.
const MIN_BACKOFF_MS: u64 = 50;
const MAX_BACKOFF_MS: u64 = 2000;

pub(crate) struct Reader {
    conn: Box<Conn>,
    fleet: *const Fleet,
    zone: &'static Zone,
    /// What applies a purge made on another instance (the fleet tier only carries it).
    on_notice: Box<dyn Fn(Notice)>,
    stream: String,
    last_id: String,
    /// This instance (all zero if unknown: then every notice is applied).
    origin: Origin,
    backoff_ms: u64,
    timer: ngx_event_t,
    stopped: bool,
}

impl Reader {
    /// Starts following the stream of `zone` (worker 0, at worker start); `on_notice` gets
    /// each purge made on another instance.
    pub(crate) fn start(
        zone: &'static Zone,
        fleet: &'static Fleet,
        now_ms: i64,
        on_notice: Box<dyn Fn(Notice)>,
    ) {
        let last_id = zone
            .fleet_locked(|f| stored_id(&f.last_id))
            .flatten()
            .unwrap_or_else(|| format!("{now_ms}-0"));
        let mut conn = Conn::new(Kind::Data, fleet.timeout_ms, fleet);
        conn.set_cancelable();
        let reader = Box::new(Reader {
            conn,
            fleet,
            zone,
            on_notice,
            stream: fleet.stream_key(),
            last_id,
            origin: zone.origin().unwrap_or_default(),
            backoff_ms: MIN_BACKOFF_MS,
            // SAFETY: an all-zero event is its initial state; the fields below are set.
            timer: unsafe { core::mem::zeroed() },
            stopped: false,
        });
        let Ok(mut slot) = fleet.reader.try_borrow_mut() else {
            return;
        };
        let reader = slot.insert(reader);
        reader.timer.handler = Some(on_timer);
        reader.timer.data = &mut **reader as *mut Reader as *mut c_void;
        // SAFETY: the cycle log is valid in a worker.
        reader.timer.log = unsafe { (*ngx_cycle).log };
        reader.timer.set_cancelable(1);
        reader.read_next();
    }

    fn read_next(&mut self) {
        if self.stopped || exiting() {
            return;
        }
        let cmd = notice::xread_command(&self.stream, &self.last_id, COUNT, BLOCK_MS);
        let me = self as *mut Reader;
        let id = waiters::register(move |outcome| {
            // SAFETY: the reader is boxed in the fleet, which lives for the cycle; its
            // connection (and so this waiter) is closed before it is dropped.
            unsafe { (*me).answered(outcome) };
        });
        if !self.conn.submit(&cmd, 1, id, BLOCK_MS) {
            waiters::cancel(id);
            self.retry_later();
        }
    }

    fn answered(&mut self, outcome: Outcome) {
        if self.stopped || exiting() {
            return;
        }
        let Ok(replies) = outcome else {
            return self.retry_later();
        };
        let Some(reply) = replies.first() else {
            return self.retry_later();
        };
        match notice::parse_xread(&reply.as_reply()) {
            Ok(entries) => {
                for e in entries {
                    self.apply(e.payload.as_deref());
                    self.last_id = e.id;
                }
                self.save_id();
                self.backoff_ms = MIN_BACKOFF_MS;
                self.read_next();
            }
            Err(_) => {
                self.conn.close();
                self.retry_later();
            }
        }
    }

    fn apply(&self, payload: Option<&[u8]>) {
        // SAFETY: the fleet lives for the cycle.
        let fleet = unsafe { &*self.fleet };
        let Some(payload) = payload else { return };
        match notice::open_notice(&fleet.keys, &self.stream, payload) {
            // This instance's own purge, applied when it was made: once is enough (a second
            // tombstone, and a second walk for a subject or client, would only cost). The
            // cursor still moves past it (the caller).
            Ok(n) if n.is_from(&self.origin) => metrics::count(Counter::NoticesOwn),
            Ok(n) => {
                metrics::count(Counter::NoticesApplied);
                (self.on_notice)(n);
            }
            Err(_) => metrics::count(Counter::RedisBadValues),
        }
    }

    fn save_id(&self) {
        let id = self.last_id.as_bytes();
        self.zone.fleet_locked(|f| {
            f.last_id = [0; 48];
            if let Some(dst) = f.last_id.get_mut(..id.len()) {
                dst.copy_from_slice(id);
            }
        });
    }

    fn retry_later(&mut self) {
        if self.stopped || exiting() {
            return;
        }
        // SAFETY: the timer lives in this boxed reader; it is removed on shutdown.
        unsafe { ngx_add_timer(&mut self.timer, self.backoff_ms as usize) };
        self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
    }

    /// The servers moved: a reader waiting to retry reconnects now.
    pub(crate) fn retry_now(&mut self) {
        self.backoff_ms = MIN_BACKOFF_MS;
        if !self.stopped && self.timer.timer_set() != 0 {
            // SAFETY: the timer lives in this boxed reader; re-adding moves it.
            unsafe { ngx_add_timer(&mut self.timer, 1) };
        }
    }

    pub(crate) fn shutdown(&mut self) {
        self.stopped = true;
        if self.timer.timer_set() != 0 {
            // SAFETY: the timer is in the tree.
            unsafe { ngx_del_timer(&mut self.timer) };
        }
        self.conn.shutdown();
    }
}

fn stored_id(raw: &[u8; 48]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let id = core::str::from_utf8(raw.get(..end)?).ok()?;
    (!id.is_empty()).then(|| id.to_string())
}

fn exiting() -> bool {
    // SAFETY: process-wide flags set by signal handlers, read in the event loop.
    unsafe { ngx_exiting != 0 || ngx_quit != 0 || ngx_terminate != 0 }
}

unsafe extern "C" fn on_timer(ev: *mut ngx_event_t) {
    // SAFETY: data is the boxed reader that armed the timer.
    let reader = unsafe { (*ev).data } as *mut Reader;
    // SAFETY: as above.
    unsafe { (*reader).read_next() };
}
