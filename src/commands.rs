//! The module's directives: one table, naming the setter of each (the configuration's, or
//! the handler's own for `phantom_token_purge` and `phantom_token_status`).

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::{
    ngx_command_t, ngx_conf_set_flag_slot, ngx_conf_t, ngx_str_t, ngx_uint_t, NGX_CONF_1MORE,
    NGX_CONF_2MORE, NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12,
    NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET,
    NGX_HTTP_SRV_CONF,
};
use ngx::ngx_string;

use crate::{config, purge, status};

const ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

const fn cmd(
    name: ngx_str_t,
    flags: u32,
    conf: usize,
    set: unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
    offset: usize,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: flags as ngx_uint_t,
        set: Some(set),
        conf,
        offset,
        post: ptr::null_mut(),
    }
}

pub(crate) static mut COMMANDS: [ngx_command_t; 27] = [
    cmd(
        ngx_string!("phantom_token"),
        ANY | NGX_CONF_FLAG,
        NGX_HTTP_LOC_CONF_OFFSET,
        ngx_conf_set_flag_slot,
        core::mem::offset_of!(config::LocConf, enable),
    ),
    cmd(
        ngx_string!("phantom_token_introspection_endpoint"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_endpoint,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_realm"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_realm,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_scopes"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_scopes,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_scope"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_scope,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_required_scope"),
        ANY | NGX_CONF_1MORE,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_required_scope,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_cache_zone"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        NGX_HTTP_MAIN_CONF_OFFSET,
        config::zone::set_cache_zone,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_cache"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_cache,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_header"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_header,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_source"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_source,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_response_format"),
        ANY | NGX_CONF_TAKE12,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_format,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_allow_preflight"),
        ANY | NGX_CONF_FLAG,
        NGX_HTTP_LOC_CONF_OFFSET,
        ngx_conf_set_flag_slot,
        core::mem::offset_of!(config::LocConf, allow_preflight),
    ),
    cmd(
        ngx_string!("phantom_token_require_claim"),
        ANY | NGX_CONF_2MORE,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_require_claim,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_dpop"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::pop::set_dpop,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_dpop_algs"),
        ANY | NGX_CONF_1MORE,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::pop::set_dpop_algs,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_dpop_url"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::pop::set_dpop_url,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_dpop_window"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::pop::set_dpop_window,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_dpop_replay"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::pop::set_dpop_replay,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_dpop_nonce"),
        ANY | NGX_CONF_FLAG,
        NGX_HTTP_LOC_CONF_OFFSET,
        ngx_conf_set_flag_slot,
        core::mem::offset_of!(config::LocConf, pop) + core::mem::offset_of!(config::PopConf, nonce),
    ),
    cmd(
        ngx_string!("phantom_token_dpop_forward_proof"),
        ANY | NGX_CONF_FLAG,
        NGX_HTTP_LOC_CONF_OFFSET,
        ngx_conf_set_flag_slot,
        core::mem::offset_of!(config::LocConf, pop)
            + core::mem::offset_of!(config::PopConf, forward_proof),
    ),
    cmd(
        ngx_string!("phantom_token_mtls"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::pop::set_mtls,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_status"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
        NGX_HTTP_LOC_CONF_OFFSET,
        status::set_status,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_compat"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::set_compat,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_cache_max_age"),
        ANY | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::fleet::set_cache_max_age,
        0,
    ),
    cmd(
        ngx_string!("phantom_token_purge"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        NGX_HTTP_LOC_CONF_OFFSET,
        purge::set_purge,
        0,
    ),
    // Accepted for configurations written for Curity's module 1.x, where it was removed in 2.0.
    cmd(
        ngx_string!("phantom_token_client_credential"),
        ANY | NGX_CONF_TAKE12,
        NGX_HTTP_LOC_CONF_OFFSET,
        config::directives::reject_client_credential,
        0,
    ),
    ngx_command_t::empty(),
];
