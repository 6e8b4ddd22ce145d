//! Certificate-bound tokens (RFC 8705): `phantom_token_mtls` with the TLS client certificate
//! of the connection, and with a certificate a TLS terminator put in a header.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::http::request;
use support::*;

/// A self-signed certificate and key made with the openssl command line.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap()
        .stdout;
    (cert, key, der)
}

fn bound_token(ids: &IdServer, der: &[u8]) -> String {
    let token = ids.issue("read", 300);
    let x5t = phantom_core::dpop::x5t_s256(der);
    let claims = serde_json::json!({ "cnf": { "x5t#S256": x5t } });
    ids.set_claims(&token, claims.as_object().unwrap().clone());
    token
}

fn curl_tls(port: u16, token: &str, cert: Option<(&Path, &Path)>) -> u16 {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
        "-H",
    ])
    .arg(format!("Authorization: Bearer {token}"));
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{port}/api"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

#[test]
fn the_connections_client_certificate_must_be_the_tokens() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let echo = EchoServer::start().unwrap();
    let dir = std::env::temp_dir().join(format!("phantom-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_cert, server_key, _) = certificate(&dir, "server");
    let (c1, k1, der1) = certificate(&dir, "client1");
    let (c2, k2, _) = certificate(&dir, "client2");
    let tls_port = free_port();
    let http = format!(
        "phantom_token_cache_zone c:1m;
         server {{
            listen 127.0.0.1:{tls_port} ssl;
            ssl_certificate {sc}; ssl_certificate_key {sk};
            ssl_verify_client optional_no_ca;
            location /api {{ phantom_token on; phantom_token_introspection_endpoint /_introspect;
                phantom_token_cache c; phantom_token_mtls on; proxy_pass http://127.0.0.1:{e}; }}
            {intro}
         }}",
        sc = server_cert.display(),
        sk = server_key.display(),
        e = echo.port(),
        intro = introspection_location(ids.port(), "")
    );
    let n = Nginx::start(&http, "");
    let token = bound_token(&ids, &der1);
    assert_eq!(
        curl_tls(tls_port, &token, Some((&c1, &k1))),
        200,
        "{}",
        n.error_log()
    );
    assert_eq!(
        curl_tls(tls_port, &token, Some((&c1, &k1))),
        200,
        "cache hit"
    );
    assert_eq!(
        curl_tls(tls_port, &token, Some((&c2, &k2))),
        401,
        "another certificate"
    );
    assert_eq!(curl_tls(tls_port, &token, None), 401, "no certificate");
    let unbound = ids.issue("read", 300);
    assert_eq!(
        curl_tls(tls_port, &unbound, Some((&c1, &k1))),
        401,
        "a token without cnf"
    );
    assert_eq!(echo.requests(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_certificate_from_a_trusted_terminator_header() {
    let dir = std::env::temp_dir().join(format!("phantom-mtls-h-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (c1, _, der1) = certificate(&dir, "client1");
    let (c2, _, _) = certificate(&dir, "client2");
    let s = Stack::start(
        "phantom_token_cache_zone c:1m;",
        "phantom_token_cache c; phantom_token_mtls $http_x_client_cert;",
    );
    let token = bound_token(&s.ids, &der1);
    let escaped = |p: &Path| {
        let pem = std::fs::read_to_string(p).unwrap();
        pem.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let auth = format!("Bearer {token}");
    let r = request(
        s.nginx.port,
        "GET",
        "/",
        &[("Authorization", &auth), ("X-Client-Cert", &escaped(&c1))],
        None,
    );
    assert_eq!(r.status, 200);
    let r = request(
        s.nginx.port,
        "GET",
        "/",
        &[("Authorization", &auth), ("X-Client-Cert", &escaped(&c2))],
        None,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    let r = request(s.nginx.port, "GET", "/", &[("Authorization", &auth)], None);
    assert_eq!(r.status, 401);
    let _ = std::fs::remove_dir_all(&dir);
}
