//! The handlers of the location directives: parse, check, store; errors name the directive.

use core::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_compile_complex_value, ngx_http_compile_complex_value_t,
    ngx_http_complex_value_t, ngx_str_t, NGX_LOG_EMERG, NGX_LOG_WARN,
};
use ngx::core::{Pool, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ngx_conf_log_error;
use phantom_core::claims::Requirement;
use phantom_core::introspection::parse_format;
use phantom_core::source::{self, Source};

use super::{args, loc, Compat};

const DUPLICATE: *mut c_char = c"is duplicate".as_ptr() as *mut c_char;

pub(crate) extern "C" fn set_endpoint(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.endpoint.is_some() {
        return DUPLICATE;
    }
    if args[0].is_empty() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"phantom_token_introspection_endpoint\" needs a location, e.g. /_introspect"
        );
        return NGX_CONF_ERROR;
    }
    // SAFETY: cf->args elements live in the configuration pool for the whole cycle.
    let value = unsafe { (*(*cf).args).as_slice::<ngx_str_t>()[1] };
    lcf.endpoint = Some(value);
    NGX_CONF_OK
}

pub(crate) extern "C" fn set_realm(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.realm.is_some() {
        return DUPLICATE;
    }
    lcf.realm = Some(args[0].to_string());
    NGX_CONF_OK
}

pub(crate) extern "C" fn set_scopes(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.scopes.is_some() {
        return DUPLICATE;
    }
    lcf.scopes = Some(args[0].split_whitespace().collect::<Vec<_>>().join(" "));
    NGX_CONF_OK
}

pub(crate) extern "C" fn set_scope(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    lcf.scope_list
        .extend(args[0].split_whitespace().map(str::to_string));
    NGX_CONF_OK
}

pub(crate) extern "C" fn set_required_scope(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    let list = lcf.required_scopes.get_or_insert_with(Vec::new);
    for a in args {
        list.extend(a.split_whitespace().map(str::to_string));
    }
    NGX_CONF_OK
}

pub(crate) extern "C" fn set_cache(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.cache_name.is_some() {
        return DUPLICATE;
    }
    lcf.cache_name = Some(args[0].to_string());
    NGX_CONF_OK
}

pub(crate) extern "C" fn set_header(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.header.is_some() {
        return DUPLICATE;
    }
    let name = args[0];
    let token_char = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.is_empty() || !name.bytes().all(token_char) {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"phantom_token_header\": invalid header name \"{name}\""
        );
        return NGX_CONF_ERROR;
    }
    lcf.header = Some(name.to_string());
    NGX_CONF_OK
}

pub(crate) extern "C" fn set_source(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let lcf = unsafe { loc(conf) };
    if lcf.source.is_some() {
        return DUPLICATE;
    }
    // SAFETY: directive handler contract.
    let Some(cv) = (unsafe { compile_arg(cf) }) else {
        return NGX_CONF_ERROR;
    };
    // SAFETY: directive handler contract.
    let text = unsafe { args(cf) }[0];
    let kind = source::classify(text);
    if kind == Source::Other {
        ngx_conf_log_error!(
            NGX_LOG_WARN,
            cf,
            "\"phantom_token_source\": the module cannot remove \"{text}\" from the proxied \
             request, so the opaque token may reach the upstream; use $http_<name>, \
             $cookie_<name> or $arg_<name>, or remove it with proxy_set_header or rewrite"
        );
    }
    lcf.source = Some(cv);
    lcf.source_kind = Some(kind);
    NGX_CONF_OK
}

pub(crate) extern "C" fn set_compat(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.compat.is_some() {
        return DUPLICATE;
    }
    lcf.compat = match args[0] {
        "off" => Some(Compat::Off),
        "curity" => Some(Compat::Curity),
        other => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"phantom_token_compat\": unknown value \"{other}\" (expected curity or off)"
            );
            return NGX_CONF_ERROR;
        }
    };
    NGX_CONF_OK
}

pub(crate) extern "C" fn set_format(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    if lcf.format.is_some() {
        return DUPLICATE;
    }
    match parse_format(&args) {
        Ok(f) => lcf.format = Some(f),
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"phantom_token_response_format\": {e}");
            return NGX_CONF_ERROR;
        }
    }
    NGX_CONF_OK
}

pub(crate) extern "C" fn reject_client_credential(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    _: *mut c_void,
) -> *mut c_char {
    ngx_conf_log_error!(
        NGX_LOG_EMERG,
        cf,
        "\"phantom_token_client_credential\" was removed (as in Curity's module 2.0): set \
         proxy_set_header Authorization \"Basic ...\" in the introspection location instead"
    );
    NGX_CONF_ERROR
}

/// `phantom_token_require_claim <name> <value> [<value> ...];` (repeatable).
pub(crate) extern "C" fn set_require_claim(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe { (loc(conf), args(cf)) };
    let name = args[0];
    if name.is_empty() || args[1..].iter().any(|v| v.is_empty()) {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"phantom_token_require_claim\": needs a claim name and non-empty values"
        );
        return NGX_CONF_ERROR;
    }
    lcf.required_claims
        .get_or_insert_with(Vec::new)
        .push(Requirement {
            name: name.to_string(),
            values: args[1..].iter().map(|v| v.to_string()).collect(),
        });
    NGX_CONF_OK
}

/// Compiles the directive's first argument as a complex value in the configuration pool.
///
/// # Safety
/// `cf` must be the context of a directive with at least one argument.
pub(super) unsafe fn compile_arg(cf: *mut ngx_conf_t) -> Option<*mut ngx_http_complex_value_t> {
    // SAFETY: args[1] exists and lives for the cycle.
    let value = unsafe { &mut (*(*cf).args).as_slice_mut::<ngx_str_t>()[1] };
    // SAFETY: per contract.
    unsafe { compile(cf, value) }
}

/// Compiles `value` (which must live for the cycle) as a complex value.
///
/// # Safety
/// `cf` must be a valid configuration context.
pub(super) unsafe fn compile(
    cf: *mut ngx_conf_t,
    value: *mut ngx_str_t,
) -> Option<*mut ngx_http_complex_value_t> {
    // SAFETY: cf is valid; the complex value is allocated from the configuration pool.
    let cv = unsafe { Pool::from_ngx_pool((*cf).pool) }.calloc_type::<ngx_http_complex_value_t>();
    if cv.is_null() {
        return None;
    }
    // SAFETY: a zeroed compile structure is the documented starting state.
    let mut ccv: ngx_http_compile_complex_value_t = unsafe { core::mem::zeroed() };
    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = cv;
    // SAFETY: ccv is fully initialised as nginx expects.
    (unsafe { ngx_http_compile_complex_value(&mut ccv) } == 0).then_some(cv)
}
