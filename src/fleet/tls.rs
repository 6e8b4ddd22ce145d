//! TLS on the fleet tier's connections, with nginx's own OpenSSL layer (as `proxy_ssl_*`):
//! SNI, the server's certificate checked against the trusted CAs and the expected name,
//! an optional client certificate, and the session kept for the next connection.
//!
//! nginx's verify callback lets every handshake finish, so the result is checked after it
//! (`SSL_get_verify_result`), with the expected name set before it.

use core::ffi::{c_char, c_long, CStr};
use std::ffi::CString;

use nginx_sys::{
    ngx_connection_t, ngx_ssl_create_connection, ngx_ssl_get_session, ngx_ssl_handshake,
    ngx_ssl_set_session, ngx_ssl_shutdown, ngx_ssl_t, SSL_SESSION_free, SSL_ctrl, SSL_get0_param,
    SSL_get_verify_result, SSL_session_reused, TLSEXT_NAMETYPE_host_name,
    X509_VERIFY_PARAM_set1_host, X509_VERIFY_PARAM_set1_ip_asc, X509_verify_cert_error_string,
    NGX_AGAIN, NGX_OK, NGX_SSL_BUFFER, NGX_SSL_CLIENT, SSL_CTRL_SET_TLSEXT_HOSTNAME, X509_V_OK,
};

/// What `redis_ssl*=` asks for, once nginx's SSL context is made (postconfiguration).
pub(crate) struct Tls {
    /// nginx's SSL context: protocols, ciphers, trusted CAs, client certificate.
    pub(crate) ssl: Box<ngx_ssl_t>,
    /// Check the server's certificate (`redis_ssl_verify`, on by default).
    pub(crate) verify: bool,
    /// `redis_ssl_name`: the name to send (SNI) and expect; else each address's host.
    pub(crate) name: Option<String>,
}

/// How a handshake went.
pub(crate) enum Handshake {
    Done,
    /// Waiting for the network: nginx calls the connection's SSL handler when it is over.
    Again,
}

/// Why TLS failed, for the breaker's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsError {
    /// The handshake failed (not a TLS server, protocol or cipher mismatch, no client
    /// certificate where one is required).
    Handshake,
    /// The server did not finish the handshake in time (a plain server waits for a line).
    Timeout,
    /// The handshake finished but the certificate did not verify (OpenSSL's code).
    Verify(c_long),
}

impl TlsError {
    pub(crate) fn describe(self) -> String {
        match self {
            TlsError::Handshake => "TLS handshake failed".into(),
            TlsError::Timeout => "TLS handshake timed out".into(),
            TlsError::Verify(code) => {
                // SAFETY: OpenSSL returns a static string for every code (a generic one for
                // unknown codes).
                let text = unsafe { CStr::from_ptr(X509_verify_cert_error_string(code)) };
                format!(
                    "TLS certificate verify error: ({code}:{})",
                    text.to_string_lossy()
                )
            }
        }
    }
}

/// Starts TLS on a connected socket: SNI, the expected name, the previous session.
///
/// # Safety
/// `c` must be a live connection without TLS yet.
pub(crate) unsafe fn start(
    c: *mut ngx_connection_t,
    tls: &Tls,
    host: &str,
    session: *mut nginx_sys::SSL_SESSION,
) -> Result<Handshake, TlsError> {
    let flags = (NGX_SSL_CLIENT | NGX_SSL_BUFFER) as usize;
    let ssl = &*tls.ssl as *const ngx_ssl_t as *mut ngx_ssl_t;
    // SAFETY: c is live; nginx only takes a reference on the SSL context.
    if unsafe { ngx_ssl_create_connection(ssl, c, flags) } != NGX_OK as isize {
        return Err(TlsError::Handshake);
    }
    let name = tls.name.as_deref().unwrap_or(host);
    // SAFETY: c->ssl was just created.
    let conn = unsafe { (*(*c).ssl).connection };
    let is_ip = name.parse::<std::net::IpAddr>().is_ok();
    let cname = CString::new(name).map_err(|_| TlsError::Handshake)?;
    if !is_ip {
        // SAFETY: conn is the new SSL object; OpenSSL copies the name.
        let rc = unsafe {
            SSL_ctrl(
                conn,
                SSL_CTRL_SET_TLSEXT_HOSTNAME as i32,
                TLSEXT_NAMETYPE_host_name as c_long,
                cname.as_ptr() as *mut core::ffi::c_void,
            )
        };
        if rc != 1 {
            return Err(TlsError::Handshake);
        }
    }
    if tls.verify {
        // SAFETY: the verify parameters belong to conn; OpenSSL copies the name.
        let ok = unsafe {
            let vp = SSL_get0_param(conn);
            if is_ip {
                X509_VERIFY_PARAM_set1_ip_asc(vp, cname.as_ptr() as *const c_char)
            } else {
                X509_VERIFY_PARAM_set1_host(vp, cname.as_ptr(), name.len())
            }
        };
        if ok != 1 {
            return Err(TlsError::Handshake);
        }
    }
    if !session.is_null() {
        // SAFETY: session came from `ngx_ssl_get_session` and is still referenced by us.
        unsafe { ngx_ssl_set_session(c, session) };
    }
    // SAFETY: c->ssl is ours; nginx calls this when the server sends a session (during the
    // handshake in TLS 1.2, after it in TLS 1.3).
    unsafe { (*(*c).ssl).save_session = Some(save_session) };
    // SAFETY: c has its SSL object.
    unsafe { handshake(c, tls) }
}

/// Runs (or goes on with) the handshake, then checks the certificate.
///
/// # Safety
/// `c` must be a live connection whose TLS was started by [`start`].
pub(crate) unsafe fn handshake(c: *mut ngx_connection_t, tls: &Tls) -> Result<Handshake, TlsError> {
    // SAFETY: per contract.
    let rc = unsafe { ngx_ssl_handshake(c) };
    if rc == NGX_AGAIN as isize {
        return Ok(Handshake::Again);
    }
    if rc != NGX_OK as isize {
        return Err(TlsError::Handshake);
    }
    if tls.verify {
        // SAFETY: the handshake is over; the SSL object holds its verify result.
        let code = unsafe { SSL_get_verify_result((*(*c).ssl).connection) };
        if code != X509_V_OK as c_long {
            return Err(TlsError::Verify(code));
        }
    }
    Ok(Handshake::Done)
}

/// Whether the finished handshake resumed a session.
///
/// # Safety
/// `c` must be a live connection whose handshake is done.
pub(crate) unsafe fn resumed(c: *mut ngx_connection_t) -> bool {
    // SAFETY: per contract.
    unsafe { SSL_session_reused((*(*c).ssl).connection) == 1 }
}

/// A session the server sent: kept by the connection for the next one.
unsafe extern "C" fn save_session(c: *mut ngx_connection_t) {
    // SAFETY: c is a fleet connection; its data is the boxed `Conn` that started TLS.
    unsafe { (*((*c).data as *mut super::conn::Conn)).save_session(c) };
}

/// The session of a live connection, to resume on the next connection (replacing `old`,
/// which is freed).
///
/// # Safety
/// `c` must be a live connection with TLS; `old` NULL or a session of ours.
pub(crate) unsafe fn keep_session(
    c: *mut ngx_connection_t,
    old: *mut nginx_sys::SSL_SESSION,
) -> *mut nginx_sys::SSL_SESSION {
    // SAFETY: per contract; `ngx_ssl_get_session` takes a reference we own.
    let new = unsafe { ngx_ssl_get_session(c) };
    if !old.is_null() {
        // SAFETY: old is a session we referenced.
        unsafe { SSL_SESSION_free(old) };
    }
    new
}

/// Frees a kept session (worker exit).
///
/// # Safety
/// `session` must be NULL or a session of ours.
pub(crate) unsafe fn free_session(session: *mut nginx_sys::SSL_SESSION) {
    if !session.is_null() {
        // SAFETY: per contract.
        unsafe { SSL_SESSION_free(session) };
    }
}

/// Shuts TLS down before the socket closes, without waiting for the peer.
///
/// # Safety
/// `c` must be a live connection.
pub(crate) unsafe fn shutdown(c: *mut ngx_connection_t) {
    // SAFETY: per contract.
    unsafe {
        if !(*c).ssl.is_null() {
            (*(*c).ssl).set_no_wait_shutdown(1);
            let _ = ngx_ssl_shutdown(c);
        }
    }
}
