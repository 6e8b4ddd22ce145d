//! The clock: nginx's cached time, updated once per event loop iteration.

use nginx_sys::ngx_timeofday;

/// Milliseconds since the Unix epoch, from nginx's cached time.
pub(crate) fn now_ms() -> i64 {
    let t = ngx_timeofday();
    (t.sec as i64) * 1000 + t.msec as i64
}
