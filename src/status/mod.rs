//! `phantom_token_status;`: the module's numbers for Prometheus.
//!
//! A content handler for a location that operators protect with nginx's own access
//! control. Counters come from the metrics zone (summed over all workers by construction);
//! zone gauges are read from each cache zone. Counting happens only when some location has
//! the directive: one relaxed atomic add per event, into a zone of its own.

use core::ffi::{c_char, c_void};
use core::sync::atomic::Ordering;

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_discard_request_body, ngx_http_request_t, ngx_int_t,
    NGX_ERROR, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_NOT_ALLOWED, NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use phantom_core::metrics::{render, Family, Histogram};

use crate::glue::headers;
use crate::metrics::{self, Counter};
use crate::Module;

/// The directive: makes the location answer with the metrics.
pub(crate) extern "C" fn set_status(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    _: *mut c_void,
) -> *mut c_char {
    // SAFETY: cf is valid while the directive is parsed; the core location conf is ours to set.
    let cf = unsafe { &*cf };
    let (Some(clcf), Some(mcf)) = (
        NgxHttpCoreModule::location_conf_mut(cf),
        Module::main_conf_mut(cf),
    ) else {
        return NGX_CONF_ERROR;
    };
    clcf.handler = Some(status_handler);
    mcf.metrics = true;
    NGX_CONF_OK
}

extern "C" fn status_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    let req = unsafe { &mut *r };
    if req.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    // SAFETY: as above.
    if unsafe { ngx_http_discard_request_body(r) } != NGX_OK as ngx_int_t {
        return NGX_ERROR as ngx_int_t;
    }
    let text = exposition(req);
    // SAFETY: the text is copied into the request pool, which outlives the response.
    let Some(body) = (unsafe { headers::pool_str(req.pool, text.as_bytes()) }) else {
        return NGX_ERROR as ngx_int_t;
    };
    let content_type = ngx::ngx_string!("text/plain; version=0.0.4; charset=utf-8");
    // SAFETY: r is valid; the body lives in its pool.
    unsafe { crate::glue::send::send_memory(r, 200, content_type, body.as_bytes()) }
}

fn counter(c: Counter) -> f64 {
    metrics::get().map_or(0.0, |m| {
        m.counters[c as usize].load(Ordering::Relaxed) as f64
    })
}

fn family<'a>(
    name: &'a str,
    help: &'a str,
    label: &'a str,
    samples: &[(&str, Counter)],
) -> Family<'a> {
    Family {
        name,
        help,
        kind: "counter",
        label,
        samples: samples
            .iter()
            .map(|(v, c)| (v.to_string(), counter(*c)))
            .collect(),
    }
}

fn exposition(req: &ngx_http_request_t) -> String {
    use Counter::*;
    let mut fams = vec![
        family(
            "phantom_token_requests_total",
            "Requests decided by the module, by outcome.",
            "outcome",
            &[
                ("granted", Granted),
                ("401", Unauthorized),
                ("403", Forbidden),
                ("429", TooManyRequests),
                ("500", ServerError),
                ("502", BadGateway),
                ("503", Unavailable),
            ],
        ),
        family(
            "phantom_token_introspections_total",
            "Introspections by result.",
            "result",
            &[
                ("active", IntroActive),
                ("inactive", IntroInactive),
                ("error", IntroError),
                ("unavailable", IntroUnavailable),
            ],
        ),
        family(
            "phantom_token_cache_hits_total",
            "Cache hits, by level.",
            "level",
            &[("l1", L1Hits), ("zone", ZoneHits), ("redis", RedisHits)],
        ),
        family(
            "phantom_token_cache_misses_total",
            "Lookups that found nothing (or only another worker's introspection in progress).",
            "",
            &[("", Misses)],
        ),
        family(
            "phantom_token_cache_expired_total",
            "Lookups that found an expired entry.",
            "",
            &[("", Expired)],
        ),
        family(
            "phantom_token_cache_stores_total",
            "Introspection results stored in a zone.",
            "",
            &[("", Stored)],
        ),
        family(
            "phantom_token_cache_not_stored_total",
            "Introspection results not stored, by reason.",
            "reason",
            &[
                ("no_store", NotStoredNoStore),
                ("too_big", NotStoredTooBig),
                ("not_cacheable", NotStoredNotCacheable),
            ],
        ),
        family(
            "phantom_token_cache_evictions_total",
            "Entries evicted to make room.",
            "",
            &[("", Evicted)],
        ),
        family(
            "phantom_token_coalesced_waits_total",
            "Requests that waited for another request's introspection.",
            "scope",
            &[
                ("worker", WaitWorker),
                ("workers", WaitWorkers),
                ("fleet", WaitFleet),
            ],
        ),
        family(
            "phantom_token_cache_stale_served_total",
            "Entries served past their lifetime while the identity server was unavailable.",
            "",
            &[("", StaleServed)],
        ),
        family(
            "phantom_token_redis_errors_total",
            "Redis operations of the fleet tier that failed (timeout, connection, breaker open), values that failed authentication, and error replies by meaning: role (READONLY, MASTERDOWN, LOADING), auth (NOAUTH, WRONGPASS, NOPERM), cluster (MOVED, ASK, CROSSSLOT, CLUSTERDOWN, TRYAGAIN), error_reply (any other, OOM included).",
            "reason",
            &[
                ("unavailable", RedisErrors),
                ("bad_value", RedisBadValues),
                ("role", RedisRole),
                ("auth", RedisAuth),
                ("cluster", RedisCluster),
                ("error_reply", RedisErrorReply),
            ],
        ),
        family(
            "phantom_token_dpop_replay_local_fallback_total",
            "DPoP proofs checked against this instance's replay cache only, because Redis could not claim them for the fleet.",
            "",
            &[("", DpopReplayLocalFallback)],
        ),
        family(
            "phantom_token_cache_purges_total",
            "Entries removed by purge.",
            "",
            &[("", Purges)],
        ),
        family(
            "phantom_token_redis_tls_handshakes_total",
            "TLS handshakes with Redis (redis_ssl=on): a full handshake, or a session resumed.",
            "session",
            &[("new", RedisTlsFull), ("resumed", RedisTlsResumed)],
        ),
        family(
            "phantom_token_redis_cluster_maps_total",
            "Slot maps taken from a Redis Cluster (redis_cluster=on): at worker start, after a MOVED or a failed node, and every 30 s.",
            "",
            &[("", ClusterMaps)],
        ),
        family(
            "phantom_token_redis_cluster_redirects_total",
            "Redirects from a Redis Cluster: MOVED (the slot moves in the map; that operation is a miss), ASK (sent once more to the importing node).",
            "kind",
            &[("moved", ClusterMoved), ("ask", ClusterAsk)],
        ),
        family(
            "phantom_token_purge_notices_total",
            "Purge notices read from the fleet's purge stream: applied (from another instance), or skipped (this instance's own, applied when it was made).",
            "result",
            &[("applied", NoticesApplied), ("own", NoticesOwn)],
        ),
    ];
    fams.extend(zone_gauges(req));
    let hist = metrics::get().map(|m| Histogram {
        name: "phantom_token_introspection_duration_seconds",
        help: "Introspection latency.",
        counts: m
            .latency
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect(),
        sum_seconds: m.latency_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0,
    });
    render(&fams, hist.as_slice())
}

fn zone_gauges(req: &ngx_http_request_t) -> Vec<Family<'static>> {
    let zones = Module::main_conf(req).map(|m| &m.zones[..]).unwrap_or(&[]);
    let gauge = |name, help, f: &dyn Fn(&crate::cache::Usage) -> u64| Family {
        name,
        help,
        kind: "gauge",
        label: "zone",
        samples: zones
            .iter()
            .map(|z| (z.name.clone(), f(&z.zone.usage()) as f64))
            .collect(),
    };
    let tombstones = Family {
        name: "phantom_token_purge_tombstones",
        help: "Purges remembered by the cache zone's tombstone ring (at most 64).",
        kind: "gauge",
        label: "zone",
        samples: zones
            .iter()
            .map(|z| (z.name.clone(), z.zone.tombstones() as f64))
            .collect(),
    };
    vec![
        gauge(
            "phantom_token_zone_size_bytes",
            "Size of the cache zone.",
            &|u| u.size,
        ),
        gauge(
            "phantom_token_zone_used_bytes",
            "Bytes of the cache zone in use (whole slab pages).",
            &|u| u.used,
        ),
        gauge(
            "phantom_token_zone_entries",
            "Entries in the cache zone.",
            &|u| u.entries,
        ),
        tombstones,
    ]
}
