//! The `redis*=` parameters of `phantom_token_cache_zone`, and where the servers are.

use nginx_sys::{
    ngx_array_t, ngx_conf_t, ngx_http_upstream_server_t, ngx_http_upstream_srv_conf_t,
    ngx_parse_url, ngx_str_t, ngx_url_t, NGX_HTTP_UPSTREAM_CREATE, NGX_OK,
};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};

use crate::fleet::{Addr, FleetSpec};

/// Longest operation timeout and lock time.
const MAX_MS: u64 = 60_000;

/// Takes one `redis*=` parameter; `Ok(false)` if `k` is not one.
pub(crate) fn parse_param(
    spec: &mut FleetSpec,
    k: &str,
    v: &str,
    arg: &str,
) -> Result<bool, String> {
    let ms = || {
        super::parse_ms(v)
            .filter(|ms| (1..=MAX_MS).contains(ms))
            .ok_or_else(|| format!("invalid time in \"{arg}\" (1ms to 60s)"))
    };
    match k {
        "redis" if !v.is_empty() => spec.target = v.into(),
        "redis_key" if !v.is_empty() => spec.key_file = v.into(),
        "redis_timeout" => spec.timeout_ms = ms()?,
        "redis_lock" => spec.lock_ms = ms()?,
        "redis_prefix" => {
            if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "invalid \"{arg}\" (1 to 64 printable characters, no spaces)"
                ));
            }
            spec.prefix = v.into();
        }
        "redis" | "redis_key" => return Err(format!("empty \"{arg}\"")),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Finds the servers of `redis=`: an `upstream` block of that name (primaries, then
/// backups; `down` ones skipped), else an address. Runs once the http block is parsed.
///
/// # Safety
/// `cf` must be the configuration context of postconfiguration.
pub(crate) unsafe fn resolve(cf: *mut ngx_conf_t, target: &str) -> Result<Vec<Addr>, String> {
    // SAFETY: per contract.
    if let Some(addrs) = unsafe { from_upstream(cf, target) } {
        return if addrs.is_empty() {
            Err(format!("upstream \"{target}\" has no usable server"))
        } else {
            Ok(addrs)
        };
    }
    // SAFETY: per contract.
    unsafe { from_url(cf, target) }.ok_or_else(|| {
        format!("redis=\"{target}\" names no upstream block and is not an address (host:port or unix:/path)")
    })
}

unsafe fn from_upstream(cf: *mut ngx_conf_t, name: &str) -> Option<Vec<Addr>> {
    // SAFETY: cf is valid; the upstream module's main configuration exists in any http block.
    let umcf = NgxHttpUpstreamModule::main_conf(unsafe { &*cf })?;
    let blocks: &ngx_array_t = &umcf.upstreams;
    if blocks.nelts == 0 || blocks.elts.is_null() {
        return None;
    }
    // SAFETY: upstreams is an array of pointers to server configurations.
    let blocks = unsafe {
        core::slice::from_raw_parts(
            blocks.elts as *const *mut ngx_http_upstream_srv_conf_t,
            blocks.nelts,
        )
    };
    for &us in blocks {
        // SAFETY: every element is a live upstream configuration.
        let us = unsafe { &*us };
        if us.flags & NGX_HTTP_UPSTREAM_CREATE as usize == 0
            || us.host.as_bytes() != name.as_bytes()
        {
            continue;
        }
        let mut primary = Vec::new();
        let mut backup = Vec::new();
        // SAFETY: servers is NULL or the block's array of servers, alive with the cycle.
        if !us.servers.is_null() && unsafe { (*us.servers).nelts } > 0 {
            // SAFETY: servers is an array of ngx_http_upstream_server_t.
            let servers = unsafe {
                core::slice::from_raw_parts(
                    (*us.servers).elts as *const ngx_http_upstream_server_t,
                    (*us.servers).nelts,
                )
            };
            for s in servers.iter().filter(|s| s.down == 0 && !s.addrs.is_null()) {
                // SAFETY: addrs has naddrs resolved addresses in the configuration pool.
                let addrs = unsafe { core::slice::from_raw_parts(s.addrs, s.naddrs) };
                let list = if s.backup() != 0 {
                    &mut backup
                } else {
                    &mut primary
                };
                list.extend(addrs.iter().map(|a| Addr {
                    sockaddr: a.sockaddr,
                    socklen: a.socklen,
                    name: a.name,
                }));
            }
        }
        primary.extend(backup);
        return Some(primary);
    }
    None
}

unsafe fn from_url(cf: *mut ngx_conf_t, target: &str) -> Option<Vec<Addr>> {
    // SAFETY: cf is valid; the copy lives in the configuration pool.
    let url = unsafe { ngx_str_t::from_bytes((*cf).pool, target.as_bytes()) }?;
    // SAFETY: a zeroed ngx_url_t is its initial state.
    let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
    u.url = url;
    u.default_port = 6379;
    // SAFETY: cf->pool is valid; ngx_parse_url resolves the host (configuration time).
    if unsafe { ngx_parse_url((*cf).pool, &mut u) } != NGX_OK as isize || u.addrs.is_null() {
        return None;
    }
    // SAFETY: addrs has naddrs entries in the configuration pool.
    let addrs = unsafe { core::slice::from_raw_parts(u.addrs, u.naddrs) };
    Some(
        addrs
            .iter()
            .map(|a| Addr {
                sockaddr: a.sockaddr,
                socklen: a.socklen,
                name: a.name,
            })
            .collect(),
    )
}
