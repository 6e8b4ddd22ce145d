//! Token revocation (RFC 7009) at `POST /oauth/revoke`, and the purge notifications it sends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use devsvr::{IdConfig, IdServer};

const BASIC: &str = "Authorization: Basic Z2F0ZXdheTpzZWNyZXQ=\r\n";

fn send(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn status(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// `POST /oauth/revoke` with the extra header lines (client authentication) and form.
fn revoke(port: u16, auth: &str, form: &str) -> String {
    send(
        port,
        &format!(
            "POST /oauth/revoke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
}

/// Whether introspection says the token is active (RFC 7662 JSON).
fn active(port: u16, token: &str) -> bool {
    let form = format!("token={token}");
    let resp = send(
        port,
        &format!(
            "POST /oauth/introspect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{BASIC}\
             Accept: application/json\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    let v: serde_json::Value = serde_json::from_str(body(&resp)).unwrap();
    v["active"].as_bool().unwrap()
}

/// A request as the recorder received it.
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP server that answers each request with `code` and hands it to the test.
fn recorder(code: u16) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/purge/path", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut r = BufReader::new(stream);
            let mut request_line = String::new();
            r.read_line(&mut request_line).unwrap();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap();
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            let mut seen = Seen {
                request_line: request_line.trim_end().to_string(),
                headers,
                body: String::new(),
            };
            let len: usize = seen.header("content-length").unwrap().parse().unwrap();
            let mut b = vec![0; len];
            r.read_exact(&mut b).unwrap();
            seen.body = String::from_utf8(b).unwrap();
            // Handed over before answering: once the identity server has the answer, the
            // test has the request.
            if tx.send(seen).is_err() {
                return;
            }
            let mut w = r.into_inner();
            let _ = w.write_all(
                format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, rx)
}

/// A URL where nothing listens (the port was just freed).
fn unreachable_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/purge")
}

#[test]
fn revoked_tokens_are_inactive() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let token = ids.issue("read", 300);
    let other = ids.issue("read", 300);
    assert!(active(ids.port(), &token));
    let r = revoke(
        ids.port(),
        BASIC,
        &format!("token={token}&token_type_hint=access_token"),
    );
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(body(&r), "");
    assert!(!active(ids.port(), &token));
    assert!(active(ids.port(), &other));
    // Revoking again is fine; nothing is purged without purge URLs.
    assert_eq!(
        status(&revoke(ids.port(), BASIC, &format!("token={token}"))),
        200
    );
    assert!(ids.purge_results().is_empty());
}

#[test]
fn client_credentials_in_the_form() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let token = ids.issue("read", 300);
    let form = format!("client_id=gateway&client_secret=secret&token={token}");
    assert_eq!(status(&revoke(ids.port(), "", &form)), 200);
    assert!(!active(ids.port(), &token));
}

#[test]
fn unknown_tokens_are_200() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let r = revoke(ids.port(), BASIC, "token=never-issued");
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(body(&r), "");
}

#[test]
fn a_bad_client_is_401() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    let token = ids.issue("read", 300);
    let form = format!("token={token}");
    for auth in [
        "",
        "Authorization: Basic Z2F0ZXdheTp3cm9uZw==\r\n", // gateway:wrong
        "Authorization: Basic bm9jb2xvbg==\r\n",         // nocolon
    ] {
        let r = revoke(ids.port(), auth, &form);
        assert_eq!(status(&r), 401, "{r}");
        let v: serde_json::Value = serde_json::from_str(body(&r)).unwrap();
        assert_eq!(v, serde_json::json!({ "error": "invalid_client" }));
    }
    let r = revoke(
        ids.port(),
        "",
        &format!("client_id=gateway&client_secret=nope&token={token}"),
    );
    assert_eq!(status(&r), 401, "{r}");
    assert!(active(ids.port(), &token));
}

#[test]
fn a_missing_token_is_400() {
    let ids = IdServer::start(IdConfig::default()).unwrap();
    for form in ["", "token_type_hint=access_token", "token="] {
        let r = revoke(ids.port(), BASIC, form);
        assert_eq!(status(&r), 400, "{form}: {r}");
        let v: serde_json::Value = serde_json::from_str(body(&r)).unwrap();
        assert_eq!(v, serde_json::json!({ "error": "invalid_request" }));
    }
}

#[test]
fn revocations_are_posted_to_the_purge_urls() {
    let (url_a, seen_a) = recorder(204);
    let (url_b, seen_b) = recorder(500);
    let ids = IdServer::start(IdConfig {
        purge_urls: vec![url_a.clone(), url_b.clone()],
        ..IdConfig::default()
    })
    .unwrap();
    let token = ids.issue("read", 300);
    assert_eq!(
        status(&revoke(ids.port(), BASIC, &format!("token={token}"))),
        200
    );
    // Sent before the revocation was answered.
    for seen in [&seen_a, &seen_b] {
        let req = seen.try_recv().expect("no purge request before the answer");
        assert_eq!(req.request_line, "POST /purge/path HTTP/1.1");
        assert_eq!(
            req.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(req.body, format!("token={token}"));
        assert!(req.header("host").unwrap().starts_with("127.0.0.1:"));
    }
    // A non-2xx answer is recorded, and does not fail the revocation.
    assert_eq!(
        ids.purge_results(),
        vec![(url_a.clone(), Ok(204)), (url_b.clone(), Ok(500))]
    );
    assert!(!active(ids.port(), &token));

    // IdServer::revoke notifies too; the token is percent-encoded.
    ids.issue_named("a+b/c==", "read", 300);
    ids.revoke("a+b/c==");
    assert_eq!(seen_a.try_recv().unwrap().body, "token=a%2Bb%2Fc%3D%3D");
    assert_eq!(seen_b.try_recv().unwrap().body, "token=a%2Bb%2Fc%3D%3D");
    assert_eq!(ids.purge_results().len(), 4);
    assert!(!active(ids.port(), "a%2Bb%2Fc%3D%3D"));

    // Unknown tokens were never introspected as active: nothing to purge.
    assert_eq!(status(&revoke(ids.port(), BASIC, "token=unknown")), 200);
    assert!(seen_a.try_recv().is_err());
    assert_eq!(ids.purge_results().len(), 4);
}

#[test]
fn an_unreachable_purge_url_does_not_fail_the_revocation() {
    let dead = unreachable_url();
    let (live, seen) = recorder(200);
    let ids = IdServer::start(IdConfig {
        purge_urls: vec![dead.clone(), "https://127.0.0.1:1/tls".into(), live.clone()],
        ..IdConfig::default()
    })
    .unwrap();
    let token = ids.issue("read", 300);
    let r = revoke(ids.port(), BASIC, &format!("token={token}"));
    assert_eq!(status(&r), 200, "{r}");
    assert!(!active(ids.port(), &token));
    let results = ids.purge_results();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].0, dead);
    assert!(results[0].1.is_err(), "{results:?}");
    assert!(results[1].1.as_ref().unwrap_err().contains("http://"));
    assert_eq!(results[2], (live, Ok(200)));
    assert_eq!(seen.try_recv().unwrap().body, format!("token={token}"));
}

/// Kills the server when the test ends, also when it fails.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_purge_url_option() {
    let (url_a, seen_a) = recorder(200);
    let (url_b, seen_b) = recorder(200);
    let (url_c, seen_c) = recorder(200);
    let mut child = Kill(
        Command::new(env!("CARGO_BIN_EXE_phantom-devsvr"))
            .args(["idsvr", "--listen", "127.0.0.1:0"])
            .args(["--purge-url", &url_a, "--purge-url", &url_b])
            .env("PHANTOM_DEVSVR_PURGE_URLS", format!(" {url_c} ,"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();

    // Get a token at the token endpoint, then revoke it.
    let form = "grant_type=client_credentials&scope=read";
    let resp = send(
        port,
        &format!(
            "POST /oauth/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{BASIC}\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    let v: serde_json::Value = serde_json::from_str(body(&resp)).unwrap();
    let token = v["access_token"].as_str().unwrap().to_string();
    let r = revoke(port, BASIC, &format!("token={token}"));
    drop(child);
    assert_eq!(status(&r), 200, "{r}");
    for seen in [seen_a, seen_b, seen_c] {
        assert_eq!(seen.try_recv().unwrap().body, format!("token={token}"));
    }

    let out = Command::new(env!("CARGO_BIN_EXE_phantom-devsvr"))
        .args(["idsvr", "--purge-url", "https://example.com/"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
