//! ngx-phantom-token: the OAuth Phantom Token Pattern as an NGINX module.
//!
//! Clients send an opaque access token; in the access phase the module introspects it through
//! an in-memory subrequest to an `internal` location, caches the JWT the identity server
//! returns in a shared-memory zone, and forwards `Authorization: Bearer <JWT>` upstream.
//!
//! This file holds only the module table and its registration; each job lives in its own file.

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::{
    ngx_array_push, ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_int_t, ngx_module_t, NGX_HTTP_MODULE,
};
use ngx::core::Status;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

mod cache;
mod challenges;
mod coalesce;
mod commands;
mod config;
mod ctx;
mod decide;
mod fleet;
mod forward;
mod glue;
mod handler;
mod introspect;
mod metrics;
mod pop;
mod purge;
mod reject;
mod respond;
mod status;
mod variables;
mod version;

/// The module's type for ngx-rust's configuration traits.
pub(crate) struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static is initialised at load time and only read afterwards.
        unsafe { &*ptr::addr_of!(ngx_http_phantom_token_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a valid configuration context to preconfiguration.
        unsafe { variables::register(cf) }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a valid configuration context to postconfiguration.
        let cf = unsafe { &mut *cf };
        version::log_version(cf);
        let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(cf) else {
            return Status::NGX_ERROR.into();
        };
        let phase = &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize];
        // SAFETY: the access phase handler array is an ngx_array_t of handler pointers.
        let h = unsafe { ngx_array_push(&mut phase.handlers) } as *mut ngx_http_handler_pt;
        if h.is_null() {
            return Status::NGX_ERROR.into();
        }
        // SAFETY: `h` points at a freshly pushed, writable slot of the array.
        unsafe { *h = Some(handler::access_handler) };
        let Some(mcf) = Module::main_conf_mut(cf) else {
            return Status::NGX_ERROR.into();
        };
        for zone in mcf.zones.iter_mut() {
            let Some(fleet) = zone.fleet.as_mut() else {
                continue;
            };
            // SAFETY: cf is the configuration context of postconfiguration.
            fleet.resolver = unsafe { config::redis::http_resolver(cf) };
            // SAFETY: as above.
            fleet.dns = unsafe {
                config::redis::run_time_name(
                    cf,
                    &fleet.target,
                    fleet.sentinel.is_some() || fleet.cluster.is_some(),
                    fleet.resolver,
                )
            };
            // SAFETY: as above.
            let found = unsafe { config::redis::resolve(cf, &fleet.target) };
            // A name followed at run time need not resolve yet.
            let found = found.or_else(|e| fleet.dns.as_ref().map(|_| Vec::new()).ok_or(e));
            let made = found.and_then(|addrs| {
                fleet.seeds = addrs;
                let Some(spec) = fleet.tls_spec.clone() else {
                    return Ok(());
                };
                // SAFETY: as above.
                fleet.tls = Some(unsafe { config::redis::make_tls(cf, &spec) }?);
                Ok(())
            });
            match made {
                Ok(()) => {}
                Err(e) => {
                    ngx::ngx_conf_log_error!(
                        nginx_sys::NGX_LOG_EMERG,
                        cf,
                        "\"phantom_token_cache_zone\" \"{}\": {}",
                        zone.name,
                        e
                    );
                    return Status::NGX_ERROR.into();
                }
            }
        }
        if mcf.metrics {
            // SAFETY: cf is the configuration context of postconfiguration.
            match unsafe { metrics::declare(cf) } {
                Ok(zone) => mcf.metrics_zone = Some(zone),
                Err(()) => return Status::NGX_ERROR.into(),
            }
        }
        introspect::register_body_filter();
        Status::NGX_OK.into()
    }

    unsafe extern "C" fn merge_loc_conf(
        cf: *mut ngx_conf_t,
        prev: *mut c_void,
        conf: *mut c_void,
    ) -> *mut c_char {
        // SAFETY: nginx passes this module's parent and child location configurations.
        unsafe { config::merge_loc_conf(cf, prev, conf) }
    }
}

// SAFETY: the configuration types below are the ones the module context allocates.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = config::MainConf;
}

// SAFETY: as above.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = config::LocConf;
}

/// Worker start: attach to this cycle's counters.
extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the worker's cycle; its http configuration is complete.
    let zone = unsafe { cycle.as_ref() }
        .and_then(Module::main_conf)
        .and_then(|m| m.metrics_zone)
        .unwrap_or(core::ptr::null_mut());
    // SAFETY: the zone is NULL or this cycle's metrics zone, initialised before workers start.
    unsafe { metrics::attach(zone) };
    // SAFETY: as above.
    if let Some(mcf) = unsafe { cycle.as_ref() }.and_then(Module::main_conf) {
        start_fleet(&mcf.zones);
    }
    Status::NGX_OK.into()
}

/// Worker start: each fleet tier is attached to its zone's shared state; worker 0 (or a
/// single process) follows the purge streams and applies other instances' purges.
fn start_fleet(zones: &'static [cache::ZoneConf]) {
    // SAFETY: process globals, set before init_process runs.
    let (worker, process) = unsafe { (nginx_sys::ngx_worker, nginx_sys::ngx_process) };
    let reads = worker == 0
        && matches!(
            process as u32,
            nginx_sys::NGX_PROCESS_WORKER | nginx_sys::NGX_PROCESS_SINGLE
        );
    for zone in zones {
        let Some(fleet) = &zone.fleet else { continue };
        fleet.attach(&zone.zone);
        if reads {
            let apply = move |n: phantom_core::fleet::notice::Notice| {
                purge::local::apply(zone, n.kind, &n.value, n.t_ms, |_| {})
            };
            let now = glue::time::now_ms();
            fleet::reader::Reader::start(&zone.zone, fleet, now, Box::new(apply));
        }
    }
}

/// Worker exit: close the fleet tier's connections (nginx would report them left open).
extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: nginx passes the worker's cycle.
    if let Some(mcf) = unsafe { cycle.as_ref() }.and_then(Module::main_conf) {
        for zone in &mcf.zones {
            if let Some(fleet) = &zone.fleet {
                fleet.shutdown();
            }
        }
    }
}

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(Module::merge_loc_conf),
};

#[used]
#[allow(non_upper_case_globals)]
#[cfg_attr(not(feature = "export-modules"), no_mangle)]
pub static mut ngx_http_phantom_token_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(MODULE_CTX) as _,
    // SAFETY: the command table is a static that lives for the program.
    commands: unsafe { ptr::addr_of_mut!(commands::COMMANDS[0]) as *mut ngx_command_t },
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};

/// The module table `load_module` looks up. Written out instead of `ngx_modules!` because the
/// order matters: placing the module before the copy filter puts the copy filter above ours
/// in the body filter chain, so the introspection response reaches our filter in memory.
#[cfg(feature = "export-modules")]
mod exports {
    use core::ffi::c_char;

    use nginx_sys::ngx_module_t;

    /// A `Sync` wrapper for the exported pointer tables.
    #[repr(transparent)]
    pub struct Table<T: 'static, const N: usize>(pub [*const T; N]);

    // SAFETY: the tables are immutable after load and only read by nginx's loader.
    unsafe impl<T, const N: usize> Sync for Table<T, N> {}

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static ngx_modules: Table<ngx_module_t, 2> = Table([
        core::ptr::addr_of!(super::ngx_http_phantom_token_module),
        core::ptr::null(),
    ]);

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static ngx_module_names: Table<c_char, 2> =
        Table([c"ngx_http_phantom_token_module".as_ptr(), core::ptr::null()]);

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static ngx_module_order: Table<c_char, 3> = Table([
        c"ngx_http_phantom_token_module".as_ptr(),
        c"ngx_http_copy_filter_module".as_ptr(),
        core::ptr::null(),
    ]);
}
