//! Directives, their parsing and merge rules; every error names the directive to fix.

use core::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_conf_t, ngx_flag_t, ngx_http_complex_value_t, ngx_parse_size, ngx_parse_time, ngx_str_t,
    NGX_CONF_UNSET, NGX_LOG_EMERG,
};
use ngx::core::NGX_CONF_ERROR;
use ngx::http::HttpModuleMainConf;
use ngx::ngx_conf_log_error;
use phantom_core::challenge::{www_authenticate, BearerError};
use phantom_core::claims::Requirement;
use phantom_core::digest;
use phantom_core::introspection::Format;
use phantom_core::source::Source;

use crate::cache;
use crate::Module;

pub(crate) mod directives;
pub(crate) mod fleet;
pub(crate) mod pop;
pub(crate) mod redis;
pub(crate) mod zone;
use pop::check_replay;
pub(crate) use pop::{DpopMode, Mtls, PopConf, Replay};

/// Per-location settings, merged down from `http` and `server`.
pub(crate) struct LocConf {
    pub(crate) enable: ngx_flag_t,
    pub(crate) allow_preflight: ngx_flag_t,
    pub(crate) endpoint: Option<ngx_str_t>,
    pub(crate) realm: Option<String>,
    pub(crate) scopes: Option<String>,
    pub(crate) scope_list: Vec<String>,
    pub(crate) required_scopes: Option<Vec<String>>,
    pub(crate) required_claims: Option<Vec<Requirement>>,
    pub(crate) cache_name: Option<String>,
    pub(crate) header: Option<String>,
    pub(crate) source: Option<*mut ngx_http_complex_value_t>,
    /// What `source` reads, so that it can be removed from the proxied request.
    pub(crate) source_kind: Option<Source>,
    pub(crate) format: Option<Format>,
    pub(crate) compat: Option<Compat>,
    /// Proof of possession: DPoP and certificate-bound tokens.
    pub(crate) pop: PopConf,
    /// Derived at merge: the introspection context (endpoint and format) of cache keys.
    pub(crate) context: Vec<u8>,
    /// Derived at merge: the selected zone (index into `MainConf::zones`).
    pub(crate) cache: Option<usize>,
    /// Derived at merge: `WWW-Authenticate` values, built once.
    pub(crate) challenges: Challenges,
    /// `phantom_token_cache_max_age` (ms): cached decisions older than this are not used.
    pub(crate) cache_max_age: Option<u64>,
    /// `phantom_token_purge`: the zone this location's purge handler empties (not inherited).
    pub(crate) purge_name: Option<String>,
    /// Derived at merge: its index into `MainConf::zones`.
    pub(crate) purge: Option<usize>,
}

/// `phantom_token_compat`: whose exact responses the module gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compat {
    /// RFC 6750 challenges with `error=`, 503 for an unreachable identity server.
    Off,
    /// Curity's module 2.0, byte for byte.
    Curity,
}

/// Precomputed `WWW-Authenticate` values for each error kind.
#[derive(Default, Clone)]
pub(crate) struct Challenges {
    pub(crate) missing: String,
    pub(crate) invalid_request: String,
    pub(crate) invalid_token: String,
    pub(crate) insufficient_scope: String,
}

impl Default for LocConf {
    fn default() -> Self {
        Self {
            enable: NGX_CONF_UNSET as ngx_flag_t,
            allow_preflight: NGX_CONF_UNSET as ngx_flag_t,
            endpoint: None,
            realm: None,
            scopes: None,
            scope_list: Vec::new(),
            required_scopes: None,
            required_claims: None,
            cache_name: None,
            header: None,
            source: None,
            source_kind: None,
            format: None,
            compat: None,
            pop: PopConf::default(),
            context: Vec::new(),
            cache: None,
            challenges: Challenges::default(),
            cache_max_age: None,
            purge_name: None,
            purge: None,
        }
    }
}

impl LocConf {
    pub(crate) fn enabled(&self) -> bool {
        self.enable == 1
    }

    pub(crate) fn compat(&self) -> Compat {
        self.compat.unwrap_or(Compat::Off)
    }

    pub(crate) fn format(&self) -> &Format {
        self.format.as_ref().unwrap_or(&Format::Jwt)
    }

    /// The scopes advertised in `WWW-Authenticate` (`phantom_token_scopes` wins).
    fn advertised_scopes(&self) -> String {
        match &self.scopes {
            Some(s) => s.clone(),
            None => self.scope_list.join(" "),
        }
    }

    fn build_challenges(&mut self) {
        let realm = self.realm.clone().unwrap_or_else(|| "api".into());
        let scope = self.advertised_scopes();
        let required = self.required_scopes.clone().unwrap_or_default().join(" ");
        // Curity's module never sends an `error` parameter.
        let curity = self.compat() == Compat::Curity;
        let error = |e| (!curity).then_some(e);
        self.challenges = Challenges {
            missing: www_authenticate(&realm, &scope, None),
            invalid_request: www_authenticate(&realm, &scope, error(BearerError::InvalidRequest)),
            invalid_token: www_authenticate(&realm, &scope, error(BearerError::InvalidToken)),
            insufficient_scope: www_authenticate(
                &realm,
                &required,
                error(BearerError::InsufficientScope),
            ),
        };
    }

    fn merge_from(&mut self, prev: &LocConf) {
        if self.enable == NGX_CONF_UNSET as ngx_flag_t {
            self.enable = if prev.enable == NGX_CONF_UNSET as ngx_flag_t {
                0
            } else {
                prev.enable
            };
        }
        if self.allow_preflight == NGX_CONF_UNSET as ngx_flag_t {
            self.allow_preflight = if prev.allow_preflight == NGX_CONF_UNSET as ngx_flag_t {
                0
            } else {
                prev.allow_preflight
            };
        }
        merge_opt(&mut self.endpoint, &prev.endpoint);
        merge_opt(&mut self.realm, &prev.realm);
        merge_opt(&mut self.scopes, &prev.scopes);
        if self.scope_list.is_empty() {
            self.scope_list = prev.scope_list.clone();
        }
        merge_opt(&mut self.required_scopes, &prev.required_scopes);
        merge_opt(&mut self.required_claims, &prev.required_claims);
        merge_opt(&mut self.cache_name, &prev.cache_name);
        merge_opt(&mut self.header, &prev.header);
        if self.source.is_none() {
            self.source = prev.source;
            self.source_kind.clone_from(&prev.source_kind);
        }
        merge_opt(&mut self.format, &prev.format);
        merge_opt(&mut self.compat, &prev.compat);
        merge_opt(&mut self.cache_max_age, &prev.cache_max_age);
        self.pop.merge_from(&prev.pop);
    }
}

/// Required by ngx's trait bounds; the real merge is [`merge_loc_conf`], which can log.
impl ngx::http::Merge for LocConf {
    fn merge(&mut self, prev: &Self) -> Result<(), ngx::http::MergeConfigError> {
        self.merge_from(prev);
        Ok(())
    }
}

fn merge_opt<T: Clone>(this: &mut Option<T>, prev: &Option<T>) {
    if this.is_none() {
        this.clone_from(prev);
    }
}

/// `http`-level settings: the declared cache zones.
#[derive(Default)]
pub(crate) struct MainConf {
    pub(crate) zones: Vec<cache::ZoneConf>,
    /// Some location has `phantom_token_status`: the counters are kept (else not at all).
    pub(crate) metrics: bool,
    /// The counters' zone, when kept.
    pub(crate) metrics_zone: Option<*mut nginx_sys::ngx_shm_zone_t>,
}

/// Merge hook: inherit, resolve the cache zone by name and build the challenges.
///
/// # Safety
/// Called by nginx with valid configuration pointers of this module's types.
pub(crate) unsafe fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes this module's location configurations, created by create_loc_conf.
    let (prev, conf) = unsafe { (&*(prev as *const LocConf), &mut *(conf as *mut LocConf)) };
    conf.merge_from(prev);
    conf.cache = None;
    if let Some(name) = conf.cache_name.as_deref().filter(|n| *n != "off") {
        // SAFETY: cf is valid during merge.
        let Some(mcf) = Module::main_conf(unsafe { &*cf }) else {
            return NGX_CONF_ERROR;
        };
        match mcf.zones.iter().position(|z| z.name == name) {
            Some(i) => conf.cache = Some(i),
            None => {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "\"phantom_token_cache\": unknown zone \"{name}\"; declare it with phantom_token_cache_zone {name}:<size>"
                );
                return NGX_CONF_ERROR;
            }
        }
    }
    if conf.pop.dpop() != DpopMode::Off && conf.enabled() && conf.cache.is_none() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"phantom_token_dpop\" needs \"phantom_token_cache\": the replay cache of DPoP proofs lives in the cache zone"
        );
        return NGX_CONF_ERROR;
    }
    if conf.enabled() {
        // SAFETY: cf is valid during merge.
        let mcf = Module::main_conf(unsafe { &*cf });
        let redis = conf
            .cache
            .and_then(|i| mcf?.zones.get(i))
            .is_some_and(|z| z.fleet.is_some());
        // SAFETY: as above.
        if !unsafe { check_replay(cf, &conf.pop, redis) } {
            return NGX_CONF_ERROR;
        }
    }
    conf.build_challenges();
    if let Some(endpoint) = conf.endpoint {
        conf.context = digest::context(endpoint.as_bytes(), &conf.format().key());
    }
    // SAFETY: cf is valid during merge.
    unsafe { fleet::merge(cf, conf) }
}

/// The directive's arguments after its name, as UTF-8 (nginx config files are bytes).
///
/// # Safety
/// `cf` must be the configuration context passed to a directive handler.
pub(crate) unsafe fn args<'a>(cf: *mut ngx_conf_t) -> Vec<&'a str> {
    // SAFETY: cf->args is an array of ngx_str_t for the directive being parsed.
    let all = unsafe { (*(*cf).args).as_slice::<ngx_str_t>() };
    all.iter()
        .skip(1)
        .map(|s| core::str::from_utf8(s.as_bytes()).unwrap_or("\u{fffd}"))
        .collect()
}

/// # Safety
/// `conf` must be this module's location configuration.
pub(super) unsafe fn loc<'a>(conf: *mut c_void) -> &'a mut LocConf {
    // SAFETY: nginx passes the configuration selected by NGX_HTTP_LOC_CONF_OFFSET.
    unsafe { &mut *(conf as *mut LocConf) }
}

/// Parses an nginx size ("10m") for a directive; `None` when invalid.
pub(crate) fn parse_size(value: &str) -> Option<usize> {
    let mut s = ngx_str_t {
        len: value.len(),
        data: value.as_ptr() as *mut u8,
    };
    // SAFETY: ngx_parse_size only reads `len` bytes of `data`.
    let n = unsafe { ngx_parse_size(&mut s) };
    usize::try_from(n).ok()
}

/// Parses an nginx time ("30s", "5m") in seconds; `None` when invalid.
pub(crate) fn parse_seconds(value: &str) -> Option<u64> {
    let mut s = ngx_str_t {
        len: value.len(),
        data: value.as_ptr() as *mut u8,
    };
    // SAFETY: ngx_parse_time only reads `len` bytes of `data`.
    let n = unsafe { ngx_parse_time(&mut s, 1) };
    u64::try_from(n).ok()
}

/// Parses an nginx time (`200ms`, `3s`, `1m`; a bare number is seconds) to milliseconds.
pub(crate) fn parse_ms(value: &str) -> Option<u64> {
    let mut s = ngx_str_t {
        len: value.len(),
        data: value.as_ptr() as *mut u8,
    };
    // SAFETY: ngx_parse_time only reads `len` bytes of `data`.
    let n = unsafe { ngx_parse_time(&mut s, 0) };
    u64::try_from(n).ok()
}
