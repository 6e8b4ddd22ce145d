//! Directives of the fleet tier's location side: cache age limits, and the merge that
//! resolves the purge zone.

use core::ffi::{c_char, c_void};

use nginx_sys::{ngx_command_t, ngx_conf_t, NGX_LOG_EMERG};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::HttpModuleMainConf;
use ngx::ngx_conf_log_error;

use super::{args, loc, parse_ms, LocConf};
use crate::Module;

/// Longest `phantom_token_cache_max_age` (365 days).
const MAX_AGE_MS: u64 = 365 * 24 * 3600 * 1000;

/// `phantom_token_cache_max_age <time> | 0;`
pub(crate) extern "C" fn set_cache_max_age(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.cache_max_age.is_some() {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    match parse_ms(args[0]).filter(|ms| *ms <= MAX_AGE_MS) {
        Some(ms) => lcf.cache_max_age = Some(ms),
        None => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"phantom_token_cache_max_age\": invalid time \"{}\" (0 to 365d; 0 = always introspect)",
                args[0]
            );
            return NGX_CONF_ERROR;
        }
    }
    NGX_CONF_OK
}

/// Merge: resolves the purge zone and records the location's introspection context with
/// its cache zone (a purge by token removes the token under every context).
///
/// # Safety
/// `cf` must be valid during merge.
pub(super) unsafe fn merge(cf: *mut ngx_conf_t, conf: &mut LocConf) -> *mut c_char {
    // SAFETY: per contract.
    let Some(mcf) = Module::main_conf(unsafe { &*cf }) else {
        return NGX_CONF_ERROR;
    };
    if let Some(name) = &conf.purge_name {
        match mcf.zones.iter().position(|z| z.name == *name) {
            Some(i) => conf.purge = Some(i),
            None => {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "\"phantom_token_purge\": unknown zone \"{name}\"; declare it with phantom_token_cache_zone {name}:<size>"
                );
                return NGX_CONF_ERROR;
            }
        }
    }
    if let (Some(i), false) = (conf.cache, conf.context.is_empty()) {
        if let Some(zone) = mcf.zones.get(i) {
            let mut contexts = zone.contexts.borrow_mut();
            if !contexts.contains(&conf.context) {
                contexts.push(conf.context.clone());
            }
        }
    }
    NGX_CONF_OK
}
