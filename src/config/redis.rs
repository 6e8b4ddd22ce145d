//! The `redis*=` parameters of `phantom_token_cache_zone`, and where the servers are.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_array_t, ngx_conf_t, ngx_http_upstream_server_t, ngx_http_upstream_srv_conf_t,
    ngx_parse_url, ngx_pnalloc, ngx_pool_cleanup_add, ngx_ssl_certificate, ngx_ssl_ciphers,
    ngx_ssl_cleanup_ctx, ngx_ssl_client_session_cache, ngx_ssl_create, ngx_ssl_t,
    ngx_ssl_trusted_certificate, ngx_str_t, ngx_url_t, NGX_SSL_TLSv1_2, NGX_SSL_TLSv1_3,
    SSL_CTX_set_default_verify_paths, NGX_HTTP_UPSTREAM_CREATE, NGX_OK,
};
use ngx::http::{
    HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, NgxHttpUpstreamModule,
};

use crate::fleet::peer::Peer;
use crate::fleet::tls::Tls;
use crate::fleet::{FleetSpec, TlsSpec};

/// Longest operation timeout and lock time.
const MAX_MS: u64 = 60_000;

/// Longest `redis_max_connection_age`.
const MAX_AGE_MS: u64 = 24 * 3600 * 1000;

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
        "redis_sentinel" => {
            if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "invalid \"{arg}\" (the master name the Sentinels monitor: 1 to 128 printable characters)"
                ));
            }
            spec.sentinel = Some(v.into());
        }
        "redis_cluster" => {
            spec.cluster = match v {
                "on" => true,
                "off" => false,
                _ => return Err(format!("invalid \"{arg}\" (on or off)")),
            }
        }
        "redis_key" if !v.is_empty() => spec.key_file = v.into(),
        "redis_timeout" => spec.timeout_ms = ms()?,
        "redis_lock" => spec.lock_ms = ms()?,
        "redis_password_file" if !v.is_empty() => {
            std::fs::File::open(v)
                .map_err(|e| format!("cannot read redis_password_file \"{v}\": {e}"))?;
            spec.password_file = Some(v.into());
        }
        "redis_sentinel_password_file" if !v.is_empty() => {
            std::fs::File::open(v)
                .map_err(|e| format!("cannot read redis_sentinel_password_file \"{v}\": {e}"))?;
            spec.sentinel_password_file = Some(v.into());
        }
        "redis_max_connection_age" => {
            spec.max_connection_age_ms = Some(
                super::parse_ms(v)
                    .filter(|ms| (1000..=MAX_AGE_MS).contains(ms))
                    .ok_or_else(|| format!("invalid time in \"{arg}\" (1s to 24h)"))?,
            )
        }
        "redis_prefix" => {
            phantom_core::fleet::layout::check_prefix(v)
                .map_err(|why| format!("invalid \"{arg}\" ({why})"))?;
            spec.prefix = v.into();
        }
        "redis" | "redis_key" | "redis_password_file" | "redis_sentinel_password_file" => {
            return Err(format!("empty \"{arg}\""))
        }
        _ if k.starts_with("redis_ssl") => return parse_tls(spec, k, v, arg).map(|_| true),
        _ => return Ok(false),
    }
    Ok(true)
}

/// One `redis_ssl*=` parameter. Files are checked here, so `nginx -t` names the parameter
/// of a file that is missing or unreadable.
fn parse_tls(spec: &mut FleetSpec, k: &str, v: &str, arg: &str) -> Result<(), String> {
    let on_off = || match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("invalid \"{arg}\" (on or off)")),
    };
    if k == "redis_ssl" {
        spec.tls = on_off()?.then(TlsSpec::default);
        return Ok(());
    }
    let Some(tls) = spec.tls.as_mut() else {
        return Err(format!("\"{arg}\" needs \"redis_ssl=on\" before it"));
    };
    let file = || {
        std::fs::File::open(v)
            .map(|_| v.to_string())
            .map_err(|e| format!("cannot read {k} file \"{v}\": {e}"))
    };
    match k {
        "redis_ssl_verify" => tls.verify = on_off()?,
        "redis_ssl_trusted_certificate" => tls.trusted = file()?,
        "redis_ssl_certificate" => tls.certificate = file()?,
        "redis_ssl_certificate_key" => tls.certificate_key = file()?,
        "redis_ssl_name" => {
            if v.is_empty() || v.len() > 253 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("invalid \"{arg}\" (a host name)"));
            }
            tls.name = Some(v.to_string());
        }
        "redis_ssl_verify_depth" => {
            tls.depth = v
                .parse()
                .ok()
                .filter(|d| (1..=100).contains(d))
                .ok_or_else(|| format!("invalid \"{arg}\" (1 to 100)"))?
        }
        _ => return Err(format!("unknown parameter \"{arg}\" (expected redis_ssl=, redis_ssl_verify=, redis_ssl_trusted_certificate=, redis_ssl_name=, redis_ssl_verify_depth=, redis_ssl_certificate= or redis_ssl_certificate_key=)")),
    }
    Ok(())
}

/// Checks what the `redis_ssl*=` parameters need together.
pub(crate) fn check_tls(spec: &FleetSpec) -> Result<(), String> {
    let Some(tls) = &spec.tls else { return Ok(()) };
    match (tls.certificate.is_empty(), tls.certificate_key.is_empty()) {
        (true, false) => {
            Err("\"redis_ssl_certificate_key=\" needs \"redis_ssl_certificate=\"".into())
        }
        (false, true) => {
            Err("\"redis_ssl_certificate=\" needs \"redis_ssl_certificate_key=\"".into())
        }
        _ => Ok(()),
    }
}

/// Makes nginx's TLS context for `redis_ssl=on`: TLS 1.2 and 1.3 with nginx's default
/// ciphers, the trusted CAs (the file, else the system's), the client certificate.
///
/// # Safety
/// `cf` must be the configuration context of postconfiguration.
pub(crate) unsafe fn make_tls(cf: *mut ngx_conf_t, spec: &TlsSpec) -> Result<Tls, String> {
    // SAFETY: an all-zero ngx_ssl_t is what ngx_ssl_create fills.
    let mut ssl: Box<ngx_ssl_t> = Box::new(unsafe { core::mem::zeroed() });
    // SAFETY: cf is valid; its log and pool outlive the configuration.
    unsafe {
        ssl.log = (*cf).log;
        let protocols = (NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3) as usize;
        if ngx_ssl_create(&mut *ssl, protocols, ptr::null_mut()) != NGX_OK as isize {
            return Err("cannot create the TLS context for redis_ssl".into());
        }
        let cln = ngx_pool_cleanup_add((*cf).pool, 0);
        if cln.is_null() {
            return Err("out of memory".into());
        }
        (*cln).handler = Some(ngx_ssl_cleanup_ctx);
        (*cln).data = &mut *ssl as *mut ngx_ssl_t as *mut c_void;
        // New sessions reach the connection's `save_session` (TLS 1.3 sends them after the
        // handshake), to be resumed by the next connection.
        if ngx_ssl_client_session_cache(cf, &mut *ssl, 1) != NGX_OK as isize {
            return Err("cannot keep TLS sessions for redis_ssl".into());
        }
        let mut ciphers = conf_str(cf, "DEFAULT").ok_or("out of memory")?;
        if ngx_ssl_ciphers(cf, &mut *ssl, &mut ciphers, 0) != NGX_OK as isize {
            return Err("cannot set the TLS ciphers for redis_ssl".into());
        }
        if !spec.certificate.is_empty() {
            let mut cert = conf_str(cf, &spec.certificate).ok_or("out of memory")?;
            let mut key = conf_str(cf, &spec.certificate_key).ok_or("out of memory")?;
            let rc = ngx_ssl_certificate(cf, &mut *ssl, &mut cert, &mut key, ptr::null_mut());
            if rc != NGX_OK as isize {
                return Err(format!(
                    "cannot use redis_ssl_certificate \"{}\" with redis_ssl_certificate_key \"{}\"",
                    spec.certificate, spec.certificate_key
                ));
            }
        }
        if spec.verify {
            let mut trusted = conf_str(cf, &spec.trusted).ok_or("out of memory")?;
            let depth = spec.depth as isize;
            if ngx_ssl_trusted_certificate(cf, &mut *ssl, &mut trusted, depth) != NGX_OK as isize {
                return Err(format!(
                    "cannot use redis_ssl_trusted_certificate \"{}\"",
                    spec.trusted
                ));
            }
            if spec.trusted.is_empty() && SSL_CTX_set_default_verify_paths(ssl.ctx as _) != 1 {
                return Err("cannot load the system's trusted CAs for redis_ssl".into());
            }
        }
    }
    Ok(Tls {
        ssl,
        verify: spec.verify,
        name: spec.name.clone(),
    })
}

/// A NUL-terminated copy of `s` in the configuration pool (nginx opens files by name).
///
/// # Safety
/// `cf` must be valid.
unsafe fn conf_str(cf: *mut ngx_conf_t, s: &str) -> Option<ngx_str_t> {
    // SAFETY: the pool is valid; the copy is len + 1 bytes.
    unsafe {
        let p = ngx_pnalloc((*cf).pool, s.len() + 1) as *mut u8;
        if p.is_null() {
            return None;
        }
        ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
        *p.add(s.len()) = 0;
        Some(ngx_str_t {
            len: s.len(),
            data: p,
        })
    }
}

/// The name `redis=host:port` follows at run time with `resolver` (the http block's): when
/// the host is a name (not an upstream block, an IP address or a socket path). Sentinels are
/// resolved once (their answers are what moves; host names in them are followed with the
/// same resolver).
///
/// # Safety
/// `cf` must be the configuration context of postconfiguration.
pub(crate) unsafe fn run_time_name(
    cf: *mut ngx_conf_t,
    target: &str,
    fixed: bool,
    resolver: Option<crate::fleet::dns::Resolver>,
) -> Option<crate::fleet::dns::Name> {
    if fixed || target.starts_with("unix:") {
        return None;
    }
    // SAFETY: per contract.
    if unsafe { from_upstream(cf, target) }.is_some() {
        return None;
    }
    let host = phantom_core::fleet::addr::host_of(target);
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let port = match target.rsplit_once(':') {
        Some((_, p)) if target.len() > host.len() => p.parse().ok()?,
        _ => 6379,
    };
    Some(crate::fleet::dns::Name {
        resolver: resolver?,
        host: host.to_string(),
        port,
    })
}

/// The http block's `resolver` (and its timeout), if it has one.
///
/// # Safety
/// `cf` must be the configuration context of postconfiguration.
pub(crate) unsafe fn http_resolver(cf: *mut ngx_conf_t) -> Option<crate::fleet::dns::Resolver> {
    // SAFETY: cf is the http block's context; its location configuration is the http level.
    let clcf = NgxHttpCoreModule::location_conf(unsafe { &*cf })?;
    let resolver = clcf.resolver;
    // SAFETY: a resolver of the configuration lives for the cycle.
    if resolver.is_null() || unsafe { (*resolver).connections.nelts } == 0 {
        return None;
    }
    Some(crate::fleet::dns::Resolver {
        resolver,
        // Unset at the http level: nginx's default.
        timeout_ms: match clcf.resolver_timeout {
            usize::MAX => 30_000,
            t => t,
        },
    })
}

/// Finds the servers of `redis=`: an `upstream` block of that name (primaries, then
/// backups; `down` ones skipped), else an address. Runs once the http block is parsed.
///
/// # Safety
/// `cf` must be the configuration context of postconfiguration.
pub(crate) unsafe fn resolve(cf: *mut ngx_conf_t, target: &str) -> Result<Vec<Peer>, String> {
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

unsafe fn from_upstream(cf: *mut ngx_conf_t, name: &str) -> Option<Vec<Peer>> {
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
                // SAFETY: each address was resolved by nginx into the configuration pool.
                list.extend(addrs.iter().filter_map(|a| unsafe { copy(a) }));
            }
        }
        primary.extend(backup);
        return Some(primary);
    }
    None
}

unsafe fn from_url(cf: *mut ngx_conf_t, target: &str) -> Option<Vec<Peer>> {
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
    // SAFETY: as above.
    Some(addrs.iter().filter_map(|a| unsafe { copy(a) }).collect())
}

/// An owned copy of an address nginx resolved.
///
/// # Safety
/// `a` must hold a valid socket address and name.
unsafe fn copy(a: &nginx_sys::ngx_addr_t) -> Option<Peer> {
    let name = core::str::from_utf8(a.name.as_bytes()).ok()?;
    // SAFETY: per contract.
    unsafe { Peer::copy(a.sockaddr, a.socklen, name) }
}
