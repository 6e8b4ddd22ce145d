//! The module's version, logged once per configuration load so that an operator (and a bug
//! report) can tell from the error log which build is running.

use nginx_sys::{ngx_conf_t, NGX_LOG_NOTICE};
use ngx::ngx_log_error;

/// `ngx_phantom_token <crate version>`, e.g. `ngx_phantom_token 0.1.0`.
pub(crate) const VERSION: &str = concat!("ngx_phantom_token ", env!("CARGO_PKG_VERSION"));

/// Writes one `notice` line with [`VERSION`] to the configuration's log. Called from the
/// module's `postconfiguration`, which nginx runs once for each configuration it loads
/// (start, `nginx -t`, every reload) that has an `http` block.
pub(crate) fn log_version(cf: &ngx_conf_t) {
    if cf.log.is_null() {
        return;
    }
    ngx_log_error!(NGX_LOG_NOTICE, cf.log, "{VERSION}");
}
