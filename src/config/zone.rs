//! `phantom_token_cache_zone`: the zone's parameters (and its `redis*=` ones), read into a
//! [`ZoneConf`] whose shared memory is declared here.

use core::ffi::{c_char, c_void};

use nginx_sys::{ngx_command_t, ngx_conf_t, NGX_LOG_EMERG};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ngx_conf_log_error;

use super::{args, parse_seconds, parse_size, MainConf};
use crate::cache::zone;
use crate::cache::ZoneConf;

/// `phantom_token_cache_zone name:size [max_ttl=time] [negative_ttl=time] [leeway=time]
/// [stale_if_error=time] [negative_share=N%] [l1=N] [redis=upstream|host:port|unix:path
/// redis_key=file [redis_timeout=time] [redis_lock=time] [redis_prefix=prefix]];`
pub(crate) extern "C" fn set_cache_zone(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract; conf is this module's main configuration.
    let (mcf, args) = unsafe { (&mut *(conf as *mut MainConf), args(cf)) };
    let spec = match parse_zone_args(&args) {
        Ok(s) => s,
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"phantom_token_cache_zone\": {e}");
            return NGX_CONF_ERROR;
        }
    };
    if mcf.zones.iter().any(|z| z.name == spec.name) {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"phantom_token_cache_zone\": duplicate zone \"{}\"",
            spec.name
        );
        return NGX_CONF_ERROR;
    }
    let fleet = match spec.fleet.map(|f| load_fleet(f, &spec.name)).transpose() {
        Ok(f) => f,
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"phantom_token_cache_zone\": {e}");
            return NGX_CONF_ERROR;
        }
    };
    let mut zc = ZoneConf::new(spec.name, spec.l1, fleet);
    zc.max_ttl = spec.max_ttl;
    zc.negative_ttl = spec.negative_ttl;
    zc.leeway = spec.leeway;
    zc.stale_if_error = spec.stale_if_error;
    // SAFETY: cf is valid during configuration parsing.
    let declared =
        unsafe { zone::declare(cf, &mut zc.zone, &zc.name, spec.size, spec.negative_share) };
    if declared.is_err() {
        return NGX_CONF_ERROR;
    }
    mcf.zones.push(zc);
    NGX_CONF_OK
}

struct ZoneSpec {
    name: String,
    size: usize,
    max_ttl: Option<u64>,
    negative_ttl: u64,
    leeway: u64,
    l1: usize,
    stale_if_error: u64,
    /// Percent of the zone inactive entries may take.
    negative_share: u64,
    /// The `redis*=` parameters, when `redis=` is given.
    fleet: Option<crate::fleet::FleetSpec>,
}

/// Reads the key file of `redis_key=` (as root, at configuration time; `nginx -t` checks it).
fn load_fleet(spec: crate::fleet::FleetSpec, zone: &str) -> Result<crate::fleet::Fleet, String> {
    let path = &spec.key_file;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read redis_key file \"{path}\": {e}"))?;
    let keys = phantom_core::fleet::keys::parse_key_file(&text)
        .map_err(|e| format!("redis_key file \"{path}\": {e}"))?;
    let no_password = keys.redis_password().is_none() && spec.password_file.is_none();
    if keys.redis_user().is_some() && no_password {
        return Err(format!("redis_key file \"{path}\": key file: redis_user needs a redis_password (or the zone's redis_password_file=)"));
    }
    Ok(crate::fleet::Fleet::new(spec, keys, zone))
}

/// Largest per-worker L1 (entries); each is allocated up front by the LRU's table.
const MAX_L1: usize = 100_000;

/// Longest time parameter, in seconds.
const MAX_TIME: u64 = 365 * 24 * 3600;

/// Smallest zone nginx's slab allocator accepts (8 pages).
const MIN_ZONE: usize = 32 * 1024;

fn parse_zone_args(args: &[&str]) -> Result<ZoneSpec, String> {
    let first = args.first().copied().unwrap_or("");
    let (name, size) = first
        .split_once(':')
        .filter(|(n, s)| !n.is_empty() && !s.is_empty())
        .ok_or_else(|| format!("expected name:size, e.g. phantom_tokens:10m, got \"{first}\""))?;
    let size = parse_size(size).ok_or_else(|| format!("invalid zone size \"{size}\""))?;
    if size < MIN_ZONE {
        return Err(format!(
            "zone \"{name}\" is too small ({size} bytes), use at least 32k"
        ));
    }
    let mut spec = ZoneSpec {
        name: name.into(),
        size,
        max_ttl: None,
        negative_ttl: 0,
        stale_if_error: 0,
        negative_share: 10,
        leeway: 5,
        l1: 512,
        fleet: None,
    };
    let mut fleet = crate::fleet::FleetSpec::new();
    for a in &args[1..] {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("invalid parameter \"{a}\""))?;
        if crate::config::redis::parse_param(&mut fleet, k, v, a)? {
            continue;
        }
        let secs = || {
            parse_seconds(v)
                .filter(|s| *s <= MAX_TIME)
                .ok_or_else(|| format!("invalid time in \"{a}\" (at most 365d)"))
        };
        match k {
            "max_ttl" => spec.max_ttl = Some(secs()?),
            "negative_ttl" => spec.negative_ttl = secs()?,
            "leeway" => spec.leeway = secs()?,
            "stale_if_error" => spec.stale_if_error = secs()?,
            "negative_share" => {
                spec.negative_share = v
                    .strip_suffix('%')
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=90).contains(n))
                    .ok_or_else(|| format!("invalid share in \"{a}\" (1% to 90%)"))?
            }
            "l1" => {
                spec.l1 = v
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_L1)
                    .ok_or_else(|| format!("invalid number in \"{a}\" (0 to {MAX_L1})"))?
            }
            _ => {
                return Err(format!(
                    "unknown parameter \"{a}\" (expected max_ttl=, negative_ttl=, leeway=, stale_if_error=, negative_share=, l1=, redis=, redis_sentinel=, redis_cluster=, redis_key=, redis_timeout=, redis_lock=, redis_prefix=, redis_password_file=, redis_sentinel_password_file=, redis_max_connection_age= or redis_ssl*=)"
                ))
            }
        }
    }
    if fleet.target.is_empty() && fleet.tls.is_some() {
        return Err("\"redis_ssl=\" is given without \"redis=\"".into());
    }
    if fleet.sentinel_password_file.is_some() && fleet.sentinel.is_none() {
        return Err("\"redis_sentinel_password_file=\" needs \"redis_sentinel=\"".into());
    }
    if fleet.cluster && fleet.sentinel.is_some() {
        return Err("\"redis_cluster=on\" and \"redis_sentinel=\" exclude each other (a cluster's nodes fail over by themselves)".into());
    }
    match (fleet.target.is_empty(), fleet.key_file.is_empty()) {
        (true, true) => {}
        (false, false) => {
            super::redis::check_tls(&fleet)?;
            spec.fleet = Some(fleet)
        }
        (false, true) => return Err("\"redis=\" needs \"redis_key=\", the file of the keys that name and seal what Redis stores".into()),
        (true, false) => return Err("\"redis_key=\" is given without \"redis=\"".into()),
    }
    Ok(spec)
}
