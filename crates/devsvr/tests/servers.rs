//! The development servers over real sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use devsvr::{jwt_claims, EchoServer, Fault, IdConfig, IdServer};

fn send(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn introspect(port: u16, token: &str, accept: &str) -> String {
    let body = format!("token={token}");
    send(
        port,
        &format!(
            "POST /oauth/introspect HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic Z2F0ZXdheTpzZWNyZXQ=\r\n\
             Accept: {accept}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

#[test]
fn token_endpoint_and_jwt_introspection() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let form = "grant_type=client_credentials&scope=read+write";
    let resp = send(
        ids.port(),
        &format!(
            "POST /oauth/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic Z2F0ZXdheTpzZWNyZXQ=\r\n\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    let v: serde_json::Value = serde_json::from_str(body(&resp)).unwrap();
    let token = v["access_token"].as_str().unwrap();
    assert_eq!(v["scope"], "read write");
    let resp = introspect(ids.port(), token, "application/jwt");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("Cache-Control: max-age="));
    let claims = jwt_claims(body(&resp)).unwrap();
    assert_eq!(claims["scope"], "read write");
    assert!(introspect(ids.port(), "unknown", "application/jwt").starts_with("HTTP/1.1 204"));
    assert_eq!(ids.introspections(), 2);
}

#[test]
fn json_and_rfc9701_formats() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let t = &ids.issue("read", 60);
    let v: serde_json::Value =
        serde_json::from_str(body(&introspect(ids.port(), t, "application/json"))).unwrap();
    assert_eq!(v["active"], true);
    assert!(jwt_claims(v["jwt"].as_str().unwrap()).is_some());
    let r = introspect(ids.port(), t, "application/token-introspection+jwt");
    assert_eq!(
        jwt_claims(body(&r)).unwrap()["token_introspection"]["active"],
        true
    );
    let r = introspect(ids.port(), "nope", "application/token-introspection+jwt");
    assert_eq!(
        jwt_claims(body(&r)).unwrap()["token_introspection"]["active"],
        false
    );
    let v: serde_json::Value =
        serde_json::from_str(body(&introspect(ids.port(), "nope", "application/json"))).unwrap();
    assert_eq!(v["active"], false);
}

#[test]
fn client_auth_faults_and_padding() {
    let ids = IdServer::start(IdConfig {
        jwt_size: 20_000,
        ..IdConfig::default()
    })
    .unwrap();
    ids.issue_named("a+b/c==", "read", 60);
    let t = "a%2Bb%2Fc%3D%3D";
    assert!(body(&introspect(ids.port(), t, "application/jwt")).len() >= 20_000);
    ids.set_config(IdConfig {
        client_secret: "x".into(),
        ..IdConfig::default()
    });
    assert!(introspect(ids.port(), t, "application/jwt").starts_with("HTTP/1.1 401"));
    ids.set_config(IdConfig::default());
    ids.set_fault(Fault::Unavailable {
        retry_after: Some(7),
    });
    let r = introspect(ids.port(), t, "application/jwt");
    assert!(r.starts_with("HTTP/1.1 503") && r.contains("Retry-After: 7"));
    ids.set_fault(Fault::Status(500));
    assert!(introspect(ids.port(), t, "application/jwt").starts_with("HTTP/1.1 500"));
    ids.set_fault(Fault::Raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort".to_vec(),
    ));
    assert!(introspect(ids.port(), t, "application/jwt").ends_with("short"));
    ids.stop();
    assert!(TcpStream::connect(("127.0.0.1", ids.port())).is_err());
}

#[test]
fn echo_handles_chunked_bodies_and_keepalive() {
    let echo = EchoServer::start().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", echo.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("\"body\":\"hello\""));
    s.write_all(b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.contains("/second"));
    assert_eq!(echo.requests(), 2);
    assert_eq!(echo.all()[0].target, "/a?b=1");
    assert_eq!(echo.last().unwrap().header("HOST"), Some("x"));
}
