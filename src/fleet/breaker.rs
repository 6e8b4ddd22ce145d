//! The breaker, shared by the workers of an instance through the zone: consecutive failures
//! open it, an open breaker keeps requests away from Redis (they go on without it), and one
//! request probes it again; writes also pause while Redis says it is full. On a cluster each
//! node has its own.

use core::sync::atomic::Ordering;

use nginx_sys::{NGX_LOG_NOTICE, NGX_LOG_WARN};

use super::conn::Failure;
use super::Fleet;

/// Consecutive failures that open the breaker.
const TRIP_AFTER: u32 = 3;
/// How long an open breaker keeps requests away from Redis before one probes it.
const OPEN_MS: i64 = 1000;
/// How long writes stop after Redis answered that it is full (`-OOM`).
const FULL_MS: i64 = 5000;

impl Fleet {
    /// Whether writes are worth sending (Redis is not known to be full).
    pub(crate) fn writable(&self, now_ms: i64) -> bool {
        self.shared()
            .is_none_or(|s| s.full_until_ms.load(Ordering::Relaxed) <= now_ms)
    }

    /// Redis answered a write with `-OOM`: skip writes for a while (one log line).
    pub(crate) fn full(&self, now_ms: i64) {
        let Some(s) = self.shared() else { return };
        let before = s.full_until_ms.swap(now_ms + FULL_MS, Ordering::Relaxed);
        if before <= now_ms {
            self.log(NGX_LOG_WARN as usize, "is full (OOM): writes paused");
        }
    }

    /// The breaker: closed, open (skip), or half-open (exactly one caller probes).
    pub(super) fn allow(&self, now_ms: i64) -> bool {
        let Some(s) = self.shared() else { return true };
        let until = s.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if now_ms < until {
            return false;
        }
        s.open_until_ms
            .compare_exchange(until, now_ms + OPEN_MS, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// A connection failed: count it; the failure that opens the breaker logs one line.
    /// With Sentinels, they are asked again where the primary is.
    pub(crate) fn failed(&self, why: Failure) {
        if let Ok(mut w) = self.sentinel_watch.try_borrow_mut() {
            if let Some(watch) = w.as_mut() {
                watch.ask_soon();
            }
        }
        let Some(s) = self.shared() else { return };
        let now = crate::glue::time::now_ms();
        let n = s.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n < TRIP_AFTER {
            return;
        }
        let opened = s
            .open_until_ms
            .compare_exchange(0, now + OPEN_MS, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if opened {
            let msg = format!("unavailable ({}): going on without it", why.describe());
            self.log(NGX_LOG_WARN as usize, &msg);
        } else {
            s.open_until_ms.store(now + OPEN_MS, Ordering::Release);
        }
    }

    /// A cluster node failed: its own breaker counts it (one log line when it opens), and
    /// the slot map is due for a refresh.
    pub(crate) fn node_failed(
        &self,
        node: &str,
        why: Failure,
        failures: &mut u32,
        open_until_ms: &mut i64,
    ) {
        if let Some(c) = &self.cluster {
            c.suspect();
        }
        *failures += 1;
        let now = crate::glue::time::now_ms();
        if *failures < TRIP_AFTER {
            return;
        }
        if *open_until_ms == 0 {
            let msg = format!(
                "cluster node {node} unavailable ({}): its slots are misses for now",
                why.describe()
            );
            self.log(NGX_LOG_WARN as usize, &msg);
        }
        *open_until_ms = now + OPEN_MS;
    }

    /// The next request probes Redis at once, whatever the breaker says.
    pub(super) fn probe_now(&self) {
        let Some(s) = self.shared() else { return };
        let now = crate::glue::time::now_ms();
        let until = s.open_until_ms.load(Ordering::Relaxed);
        if until > now {
            let _ =
                s.open_until_ms
                    .compare_exchange(until, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// A reply arrived: the breaker closes (one log line if it was open).
    pub(crate) fn answered(&self) {
        let Some(s) = self.shared() else { return };
        s.failures.store(0, Ordering::Relaxed);
        if s.open_until_ms.load(Ordering::Relaxed) != 0
            && s.open_until_ms.swap(0, Ordering::AcqRel) != 0
        {
            self.log(NGX_LOG_NOTICE as usize, "available again");
        }
    }
}
