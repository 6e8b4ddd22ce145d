//! The `redis*=` parameters of `phantom_token_cache_zone` as written, before they are checked
//! and turned into a [`super::Fleet`] at configuration time.

use phantom_core::fleet::layout::DEFAULT_PREFIX;

/// The `redis*=` parameters as written.
#[derive(Default)]
pub(crate) struct FleetSpec {
    /// `redis=`: an `upstream` block's name, `host:port` or `unix:/path`.
    pub(crate) target: String,
    /// `redis_sentinel=`: the master name; `redis=` then names the Sentinels.
    pub(crate) sentinel: Option<String>,
    /// `redis_cluster=on`: `redis=` names seed nodes of a Redis Cluster.
    pub(crate) cluster: bool,
    /// `redis_key=`: the key file.
    pub(crate) key_file: String,
    /// `redis_timeout=`: connect and reply timeout per operation (ms).
    pub(crate) timeout_ms: u64,
    /// `redis_lock=`: how long the fleet lock holds others back (ms).
    pub(crate) lock_ms: u64,
    /// `redis_prefix=`: prepended to every key.
    pub(crate) prefix: String,
    /// `redis_ssl=on` and its `redis_ssl_*=` parameters.
    pub(crate) tls: Option<TlsSpec>,
    /// `redis_password_file=`: the password, read for every new connection.
    pub(crate) password_file: Option<String>,
    /// `redis_sentinel_password_file=`: the Sentinels' password (`requirepass`), read for
    /// every new connection to a Sentinel.
    pub(crate) sentinel_password_file: Option<String>,
    /// `redis_max_connection_age=`: a connection is replaced once it is this old (ms).
    pub(crate) max_connection_age_ms: Option<u64>,
}

/// The `redis_ssl*=` parameters as written (`proxy_ssl_*` is the model).
#[derive(Clone, Debug)]
pub(crate) struct TlsSpec {
    /// `redis_ssl_verify=`: check the server's certificate (on by default).
    pub(crate) verify: bool,
    /// `redis_ssl_trusted_certificate=`: the CAs to trust (else the system's).
    pub(crate) trusted: String,
    /// `redis_ssl_name=`: the name to send and expect (else each address's host).
    pub(crate) name: Option<String>,
    /// `redis_ssl_verify_depth=`.
    pub(crate) depth: u32,
    /// `redis_ssl_certificate=` and `redis_ssl_certificate_key=`: a client certificate.
    pub(crate) certificate: String,
    pub(crate) certificate_key: String,
}

impl Default for TlsSpec {
    fn default() -> TlsSpec {
        TlsSpec {
            verify: true,
            trusted: String::new(),
            name: None,
            depth: 2,
            certificate: String::new(),
            certificate_key: String::new(),
        }
    }
}

impl FleetSpec {
    pub(crate) fn new() -> FleetSpec {
        FleetSpec {
            timeout_ms: 200,
            lock_ms: 3000,
            prefix: DEFAULT_PREFIX.into(),
            ..FleetSpec::default()
        }
    }
}
