//! The JWT cache: a per-worker L1 (`lru`) in front of a shared-memory zone (L2).
//!
//! Keys are SHA-256 digests of the opaque token; raw tokens are never stored.

mod l1;
pub mod redis;
mod zone;

use core::ffi::{c_char, c_void};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use nginx_sys::{ngx_command_t, ngx_conf_t, NGX_LOG_EMERG};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ngx_conf_log_error;

use crate::config::{args, parse_seconds, parse_size, MainConf};
use phantom_core::dpop::Binding;

pub use zone::{Life, ReplayError, Stale, Stored, Usage, Zone};

/// `$phantom_token_cache_status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CacheStatus {
    Bypass,
    Miss,
    Hit,
    Expired,
    /// The identity server was unavailable; an expired entry was served (`stale_if_error`).
    Stale,
    /// Missed, and the identity server's `Cache-Control` forbade storing the answer.
    NoStore,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Miss => "MISS",
            CacheStatus::Hit => "HIT",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Stale => "STALE",
            CacheStatus::NoStore => "NOSTORE",
        }
    }
}

/// Which level answered a hit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    L1,
    Zone,
}

/// What a cache lookup found.
pub enum Lookup {
    Hit(Entry, Level),
    /// Another worker is introspecting this token right now.
    Pending,
    /// `Miss` or `Expired`, with the expired entry when `stale_if_error` still keeps it.
    Miss(CacheStatus, Option<Stale>),
}

/// How long a worker's "introspecting" marker holds other workers back.
const PENDING_MS: i64 = 5000;

/// A cached introspection result.
#[derive(Clone, Debug)]
pub enum Entry {
    Active {
        jwt: Rc<[u8]>,
        scope: Rc<str>,
        /// The JWT's confirmation claims, read once per entry in this worker (L1 hits
        /// share it), only where a location checks bindings.
        binding: Rc<OnceCell<Binding>>,
    },
    Inactive,
}

impl Entry {
    pub fn active(jwt: Rc<[u8]>, scope: Rc<str>) -> Entry {
        Entry::Active {
            jwt,
            scope,
            binding: Rc::default(),
        }
    }
}

/// One `phantom_token_cache_zone`: its parameters, its shared zone and this worker's L1.
pub struct ZoneConf {
    pub name: String,
    pub max_ttl: Option<u64>,
    pub negative_ttl: u64,
    pub leeway: u64,
    /// Seconds an active entry may be served past its lifetime while introspection is
    /// unavailable (never past the JWT's `exp`); 0 = off.
    pub stale_if_error: u64,
    pub zone: Zone,
    l1: RefCell<l1::L1>,
    /// The Redis tier (`redis=`), shared by the instances of a fleet.
    pub fleet: Option<redis::Fleet>,
    /// The introspection contexts of the locations using this zone (for purges by token).
    pub contexts: RefCell<Vec<Vec<u8>>>,
}

impl ZoneConf {
    /// Finds a fresh entry: L1 first, then the shared zone (refilling L1). With `max_age`
    /// (ms), an entry created longer ago than that is a miss.
    pub fn lookup(&self, digest: &[u8; 32], now_ms: i64, max_age: Option<u64>) -> Lookup {
        let young = |created: i64| max_age.is_none_or(|a| now_ms - created < a as i64);
        // Read before the zone: a purge after it leaves this L1 behind, so it is dropped.
        let epoch = self.zone.epoch();
        if let Ok(mut l1) = self.l1.try_borrow_mut() {
            if let Some((e, created)) = l1.get(digest, now_ms, epoch) {
                if young(created) {
                    return Lookup::Hit(e, Level::L1);
                }
            }
        }
        match self.zone.lookup(digest, now_ms) {
            zone::Found::Fresh(_, life) if !young(life.created_ms) => {
                Lookup::Miss(CacheStatus::Miss, None)
            }
            zone::Found::Fresh(entry, life) => {
                if let Ok(mut l1) = self.l1.try_borrow_mut() {
                    l1.put(
                        *digest,
                        (entry.clone(), life.expires_ms, life.created_ms),
                        epoch,
                    );
                }
                Lookup::Hit(entry, Level::Zone)
            }
            zone::Found::Pending => Lookup::Pending,
            zone::Found::Expired(stale) => Lookup::Miss(CacheStatus::Expired, stale),
            zone::Found::Missing => Lookup::Miss(CacheStatus::Miss, None),
        }
    }

    /// Tells other workers this one introspects `digest`; `false` if one already does.
    /// With `max_age` (ms), an entry older than that does not count as fresh.
    pub fn claim(&self, digest: &[u8; 32], now_ms: i64, max_age: Option<u64>) -> bool {
        let made_after = max_age.map_or(i64::MIN, |a| now_ms - a as i64);
        self.zone
            .claim(digest, now_ms + PENDING_MS, now_ms, made_after)
    }

    /// Withdraws this worker's marker (before storing, or when nothing is stored).
    pub fn release(&self, digest: &[u8; 32]) {
        self.zone.release(digest);
    }

    /// Stores `entry` until `expires_ms` in both levels, in place of this worker's marker;
    /// with `stale_if_error`, the zone keeps an active entry longer, up to the JWT's `exp`.
    pub fn store(
        &self,
        digest: &[u8; 32],
        entry: &Entry,
        (expires_ms, created_ms): (i64, i64),
        exp_ms: i64,
        now_ms: i64,
    ) -> Stored {
        let epoch = self.zone.epoch();
        let keep = match entry {
            Entry::Active { .. } if self.stale_if_error > 0 => expires_ms
                .saturating_add(self.stale_if_error as i64 * 1000)
                .min(exp_ms),
            _ => expires_ms,
        };
        let life = Life {
            expires_ms,
            keep_ms: keep,
            created_ms,
        };
        let stored = self.zone.store(digest, entry, life, now_ms);
        if stored == Stored::Yes {
            if let Ok(mut l1) = self.l1.try_borrow_mut() {
                l1.put(*digest, (entry.clone(), expires_ms, created_ms), epoch);
            }
        }
        stored
    }

    /// Puts a stale entry back after it was served, so that it stays available while the
    /// identity server is down (never into L1, which serves only fresh entries).
    pub fn restore(&self, digest: &[u8; 32], stale: &Stale, now_ms: i64) {
        let life = Life {
            expires_ms: stale.expires_ms,
            keep_ms: stale.keep_ms,
            created_ms: stale.created_ms,
        };
        self.zone.store(digest, &stale.entry, life, now_ms);
    }
}

thread_local! {
    static NO_STORE_LOGGED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// `true` the first time in this worker that a `no-store` answer kept an entry out.
pub fn first_no_store() -> bool {
    !NO_STORE_LOGGED.with(|l| l.replace(true))
}

/// `phantom_token_cache_zone name:size [max_ttl=time] [negative_ttl=time] [leeway=time]
/// [stale_if_error=time] [negative_share=N%] [l1=N];`
pub extern "C" fn set_cache_zone(
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
    let mut zc = ZoneConf {
        fleet,
        contexts: RefCell::default(),
        name: spec.name,
        max_ttl: spec.max_ttl,
        negative_ttl: spec.negative_ttl,
        leeway: spec.leeway,
        stale_if_error: spec.stale_if_error,
        zone: Zone::default(),
        l1: RefCell::new(l1::L1::new(spec.l1)),
    };
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
    fleet: Option<redis::FleetSpec>,
}

/// Reads the key file of `redis_key=` (as root, at configuration time; `nginx -t` checks it).
fn load_fleet(spec: redis::FleetSpec, zone: &str) -> Result<redis::Fleet, String> {
    let path = &spec.key_file;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read redis_key file \"{path}\": {e}"))?;
    let keys = phantom_core::fleet::keys::parse_key_file(&text)
        .map_err(|e| format!("redis_key file \"{path}\": {e}"))?;
    Ok(redis::Fleet::new(spec, keys, zone))
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
    let mut fleet = redis::FleetSpec::new();
    for a in &args[1..] {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("invalid parameter \"{a}\""))?;
        if redis::parse_param(&mut fleet, k, v, a)? {
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
                    "unknown parameter \"{a}\" (expected max_ttl=, negative_ttl=, leeway=, stale_if_error=, negative_share=, l1=, redis=, redis_key=, redis_timeout=, redis_lock= or redis_prefix=)"
                ))
            }
        }
    }
    match (fleet.target.is_empty(), fleet.key_file.is_empty()) {
        (true, true) => {}
        (false, false) => spec.fleet = Some(fleet),
        (false, true) => return Err("\"redis=\" needs \"redis_key=\", the file of the keys that name and seal what Redis stores".into()),
        (true, false) => return Err("\"redis_key=\" is given without \"redis=\"".into()),
    }
    Ok(spec)
}
