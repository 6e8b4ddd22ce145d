//! Proof-of-possession directives: `phantom_token_dpop*` (RFC 9449) and `phantom_token_mtls`
//! (RFC 8705), their merge and their `nginx -t` errors.

use core::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_flag_t, ngx_http_complex_value_t, NGX_CONF_UNSET, NGX_LOG_EMERG,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ngx_conf_log_error;
use phantom_core::dpop::{parse_algs, Alg};

use super::directives::{compile, compile_arg};
use super::{args, loc, parse_seconds};

/// `phantom_token_dpop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DpopMode {
    Off,
    /// `Authorization: DPoP` with a proof, or `Bearer` for tokens that are not bound.
    On,
    /// Only `Authorization: DPoP`.
    Required,
}

/// `phantom_token_dpop_replay`: where a proof's `jti` is used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// The instance's replay cache only (each instance accepts a proof once).
    Local,
    /// Also claimed in Redis, once per fleet; the instance's cache alone while Redis cannot
    /// answer (counted).
    Fleet,
    /// As `Fleet`, but 503 while Redis cannot answer.
    FleetRequired,
}

impl Replay {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Replay::Local => "local",
            Replay::Fleet => "fleet",
            Replay::FleetRequired => "fleet_required",
        }
    }
}

/// `phantom_token_mtls`: where the client certificate comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mtls {
    Off,
    /// This connection's TLS client certificate (`$ssl_client_escaped_cert`).
    Tls(*mut ngx_http_complex_value_t),
    /// A value set by a trusted TLS terminator (URL-encoded PEM or RFC 9440).
    Var(*mut ngx_http_complex_value_t),
}

/// The proof-of-possession part of a location's configuration.
pub(crate) struct PopConf {
    pub(crate) dpop: Option<DpopMode>,
    pub(crate) algs: Option<Vec<Alg>>,
    pub(crate) url: Option<*mut ngx_http_complex_value_t>,
    pub(crate) window: Option<u64>,
    pub(crate) replay: Option<Replay>,
    pub(crate) nonce: ngx_flag_t,
    pub(crate) forward_proof: ngx_flag_t,
    pub(crate) mtls: Option<Mtls>,
}

impl Default for PopConf {
    fn default() -> Self {
        PopConf {
            dpop: None,
            algs: None,
            url: None,
            window: None,
            replay: None,
            nonce: NGX_CONF_UNSET as ngx_flag_t,
            forward_proof: NGX_CONF_UNSET as ngx_flag_t,
            mtls: None,
        }
    }
}

/// Default `phantom_token_dpop_window`.
const WINDOW: u64 = 60;

fn merge_flag(this: &mut ngx_flag_t, prev: ngx_flag_t) {
    if *this == NGX_CONF_UNSET as ngx_flag_t {
        *this = if prev == NGX_CONF_UNSET as ngx_flag_t {
            0
        } else {
            prev
        };
    }
}

impl PopConf {
    pub(crate) fn merge_from(&mut self, prev: &PopConf) {
        self.dpop = self.dpop.or(prev.dpop);
        if self.algs.is_none() {
            self.algs.clone_from(&prev.algs);
        }
        self.url = self.url.or(prev.url);
        self.window = self.window.or(prev.window);
        self.replay = self.replay.or(prev.replay);
        merge_flag(&mut self.nonce, prev.nonce);
        merge_flag(&mut self.forward_proof, prev.forward_proof);
        self.mtls = self.mtls.or(prev.mtls);
    }

    pub(crate) fn dpop(&self) -> DpopMode {
        self.dpop.unwrap_or(DpopMode::Off)
    }

    pub(crate) fn algs(&self) -> &[Alg] {
        self.algs.as_deref().unwrap_or(&[Alg::Es256])
    }

    /// `algs="ES256 RS256"`'s value.
    pub(crate) fn algs_text(&self) -> String {
        let names: Vec<&str> = self.algs().iter().map(|a| a.name()).collect();
        names.join(" ")
    }

    pub(crate) fn window(&self) -> u64 {
        self.window.unwrap_or(WINDOW)
    }

    /// The replay scope on a zone with (`fleet`) or without a Redis tier: `fleet` where there
    /// is one, unless configured.
    pub(crate) fn replay(&self, fleet: bool) -> Replay {
        self.replay
            .unwrap_or(if fleet { Replay::Fleet } else { Replay::Local })
    }

    pub(crate) fn mtls(&self) -> Mtls {
        self.mtls.unwrap_or(Mtls::Off)
    }

    /// Whether tokens must be checked for a binding (their claims are read on every request).
    pub(crate) fn binds(&self) -> bool {
        self.dpop() != DpopMode::Off || !matches!(self.mtls(), Mtls::Off)
    }
}

const DUPLICATE: *mut c_char = c"is duplicate".as_ptr() as *mut c_char;

/// `phantom_token_dpop off | on | required;`
pub(crate) extern "C" fn set_dpop(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.pop.dpop.is_some() {
        return DUPLICATE;
    }
    lcf.pop.dpop = Some(match args[0] {
        "off" => DpopMode::Off,
        "on" => DpopMode::On,
        "required" => DpopMode::Required,
        other => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"phantom_token_dpop\": unknown value \"{other}\" (expected off, on or required)"
            );
            return NGX_CONF_ERROR;
        }
    });
    NGX_CONF_OK
}

/// `phantom_token_dpop_algs <alg> ...;`
pub(crate) extern "C" fn set_dpop_algs(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.pop.algs.is_some() {
        return DUPLICATE;
    }
    match parse_algs(&args) {
        Ok(algs) => lcf.pop.algs = Some(algs),
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"phantom_token_dpop_algs\": {e}");
            return NGX_CONF_ERROR;
        }
    }
    NGX_CONF_OK
}

/// `phantom_token_dpop_url <complex value>;`: scheme and authority the clients use.
pub(crate) extern "C" fn set_dpop_url(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let lcf = unsafe { loc(conf) };
    if lcf.pop.url.is_some() {
        return DUPLICATE;
    }
    // SAFETY: as above.
    match unsafe { compile_arg(cf) } {
        Some(cv) => lcf.pop.url = Some(cv),
        None => return NGX_CONF_ERROR,
    }
    NGX_CONF_OK
}

/// `phantom_token_dpop_window <time>;` (1s to 1h).
pub(crate) extern "C" fn set_dpop_window(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.pop.window.is_some() {
        return DUPLICATE;
    }
    match parse_seconds(args[0]).filter(|s| (1..=3600).contains(s)) {
        Some(s) => lcf.pop.window = Some(s),
        None => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"phantom_token_dpop_window\": invalid time \"{}\" (1s to 1h)",
                args[0]
            );
            return NGX_CONF_ERROR;
        }
    }
    NGX_CONF_OK
}

/// `phantom_token_dpop_replay local | fleet | fleet_required;`
pub(crate) extern "C" fn set_dpop_replay(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.pop.replay.is_some() {
        return DUPLICATE;
    }
    lcf.pop.replay = Some(match args[0] {
        "local" => Replay::Local,
        "fleet" => Replay::Fleet,
        "fleet_required" => Replay::FleetRequired,
        other => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"phantom_token_dpop_replay\": unknown value \"{other}\" (expected local, fleet or fleet_required)"
            );
            return NGX_CONF_ERROR;
        }
    });
    NGX_CONF_OK
}

/// Merge: a fleet-wide replay scope set for a location that verifies DPoP proofs needs a
/// cache zone with a Redis tier; `false` after logging the error.
///
/// # Safety
/// `cf` must be valid during merge.
pub(crate) unsafe fn check_replay(
    cf: *mut ngx_conf_t,
    pop: &PopConf,
    zone_has_redis: bool,
) -> bool {
    let Some(replay) = pop.replay else {
        return true;
    };
    if pop.dpop() == DpopMode::Off || replay == Replay::Local || zone_has_redis {
        return true;
    }
    ngx_conf_log_error!(
        NGX_LOG_EMERG,
        cf,
        "\"phantom_token_dpop_replay {}\" needs a \"phantom_token_cache\" zone with redis=; use \"local\" for a zone without it",
        replay.name()
    );
    false
}

/// `phantom_token_mtls off | on | <complex value>;`
pub(crate) extern "C" fn set_mtls(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.pop.mtls.is_some() {
        return DUPLICATE;
    }
    lcf.pop.mtls = Some(match args[0] {
        "off" => Mtls::Off,
        // SAFETY: the name is copied into the configuration pool, which lives for the cycle.
        "on" => match unsafe { tls_certificate(cf) } {
            Some(cv) => Mtls::Tls(cv),
            None => return NGX_CONF_ERROR,
        },
        // SAFETY: cf is valid while the directive is parsed.
        v if v.contains('$') => match unsafe { compile_arg(cf) } {
            Some(cv) => Mtls::Var(cv),
            None => return NGX_CONF_ERROR,
        },
        other => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"phantom_token_mtls\": expected off, on or a variable, got \"{other}\""
            );
            return NGX_CONF_ERROR;
        }
    });
    NGX_CONF_OK
}

/// `$ssl_client_escaped_cert` as a complex value: nginx's own PEM of this connection's
/// client certificate.
///
/// # Safety
/// `cf` must be a valid configuration context.
unsafe fn tls_certificate(cf: *mut ngx_conf_t) -> Option<*mut ngx_http_complex_value_t> {
    // SAFETY: cf is valid; the copy lives in the configuration pool.
    let name =
        unsafe { nginx_sys::ngx_str_t::from_bytes((*cf).pool, b"$ssl_client_escaped_cert") }?;
    // SAFETY: the pool-allocated name outlives the cycle's configuration.
    let value =
        unsafe { ngx::core::Pool::from_ngx_pool((*cf).pool) }.calloc_type::<nginx_sys::ngx_str_t>();
    if value.is_null() {
        return None;
    }
    // SAFETY: value is fresh pool memory.
    unsafe {
        *value = name;
        compile(cf, value)
    }
}
