//! HTTP/3: nginx with a `listen ... quic` port beside its TCP one, and requests sent by a
//! real HTTP/3 client, aioquic (`tests/py/h3client.py`, installed by `scripts/py-deps.sh`).
//!
//! Only an nginx built `--with-http_v3_module` serves HTTP/3 (`scripts/http3.sh` builds one);
//! with another, [`available`] says why the tests are skipped, or fails when `TEST_HTTP3=1`
//! (`scripts/http3.sh test` sets it, so CI cannot skip them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::pki::Pki;
use super::{api_location, introspection_location, nginx_binary, EchoServer, IdConfig};
use super::{IdServer, Nginx, Response};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the nginx under test was built with the HTTP/3 module.
pub fn nginx_has_http3() -> bool {
    let out = Command::new(nginx_binary())
        .arg("-V")
        .output()
        .expect("nginx -V");
    String::from_utf8_lossy(&out.stderr).contains("--with-http_v3_module")
}

/// Whether the HTTP/3 tests can run here: `false` (with a note) for an nginx without the
/// HTTP/3 module, a failure instead when `TEST_HTTP3=1`.
pub fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    let has = *HAS.get_or_init(nginx_has_http3);
    if !has {
        assert!(
            std::env::var("TEST_HTTP3").as_deref() != Ok("1"),
            "TEST_HTTP3=1 but {} was built without --with-http_v3_module",
            nginx_binary().display()
        );
        eprintln!(
            "skipped: {} has no HTTP/3 module (scripts/http3.sh test runs these tests)",
            nginx_binary().display()
        );
    }
    has
}

/// The lines that make a server block listen for HTTP/3 on UDP `port` with the test PKI's
/// server certificate (`reuseport`: each worker its own socket, so that the packets of one
/// connection reach one worker).
pub fn quic_listen(pki: &Pki, port: u16) -> String {
    format!(
        "listen 127.0.0.1:{port} quic reuseport;
         ssl_certificate {crt};
         ssl_certificate_key {key};
         add_header Alt-Svc 'h3=\":{port}\"; ma=60' always;",
        crt = pki.path("server.crt"),
        key = pki.path("server.key"),
    )
}

/// Identity server, echo API and nginx serving the protected `location /` over HTTP/3 too.
pub struct H3Stack {
    pub ids: IdServer,
    pub echo: EchoServer,
    pub pki: Pki,
    pub nginx: Nginx,
}

impl H3Stack {
    /// `api` goes into the protected location, `http` into the http block, `more` into the
    /// server block.
    pub fn start(http: &str, api: &str, more: &str) -> H3Stack {
        Self::with_ids(IdConfig::default(), http, api, more)
    }

    pub fn with_ids(cfg: IdConfig, http: &str, api: &str, more: &str) -> H3Stack {
        let ids = IdServer::start(cfg).unwrap();
        let echo = EchoServer::start().unwrap();
        let pki = Pki::new();
        let body = format!(
            "{}\n{}\n{more}",
            api_location(echo.port(), api),
            introspection_location(ids.port(), "")
        );
        let nginx = Nginx::start_on(
            2,
            http,
            |port| format!("{}\n{body}", quic_listen(&pki, port)),
            "",
        );
        H3Stack {
            ids,
            echo,
            pki,
            nginx,
        }
    }

    /// Sends `reqs` on one HTTP/3 connection to this nginx.
    pub fn send(&self, reqs: &[Req]) -> Vec<Response> {
        send(self.nginx.port, &self.pki, reqs)
    }

    /// One request on a connection of its own.
    pub fn one(&self, req: Req) -> Response {
        self.send(&[req]).pop().unwrap()
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub fn get_bearer(&self, path: &str, token: &str) -> Response {
        self.one(Req::get(path).header("authorization", &format!("Bearer {token}")))
    }
}

/// One request for the client.
#[derive(Clone, Debug)]
pub struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    reset_after: Option<f64>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            reset_after: None,
        }
    }

    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }

    /// A header field, sent as given (HTTP/3 names are lower case).
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: &[u8]) -> Req {
        self.body = body.to_vec();
        self
    }

    /// The client cancels the request (`RESET_STREAM` and `STOP_SENDING`) this long after
    /// sending it; its response has status 0.
    pub fn reset_after(mut self, secs: f64) -> Req {
        self.reset_after = Some(secs);
        self
    }

    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body_b64": STANDARD.encode(&self.body),
        });
        if let Some(s) = self.reset_after {
            v["reset_after"] = s.into();
        }
        v
    }
}

fn client_script() -> PathBuf {
    root().join("tests/py/h3client.py")
}

/// Installs the client's Python packages once per test binary.
fn python_deps() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let st = Command::new(root().join("scripts/py-deps.sh"))
            .status()
            .expect("scripts/py-deps.sh");
        assert!(st.success(), "scripts/py-deps.sh failed");
    });
}

/// Sends `reqs` one after the other on one HTTP/3 connection to 127.0.0.1:`port`, the
/// server's certificate verified against the test CA.
pub fn send(port: u16, pki: &Pki, reqs: &[Req]) -> Vec<Response> {
    python_deps();
    let doc = serde_json::json!({
        "port": port,
        "ca": pki.path("ca.crt"),
        "requests": reqs.iter().map(Req::json).collect::<Vec<_>>(),
        // After a reset, the connection stays open a while: what ends the request is the
        // reset, not the connection's close.
        "linger": if reqs.iter().any(|r| r.reset_after.is_some()) { 2.5 } else { 0.0 },
    });
    let mut child = Command::new("python3")
        .arg(client_script())
        .env("PYTHONPATH", root().join("tests/py/site"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "HTTP/3 client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client output ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    results
        .into_iter()
        .map(|r| Response {
            status: r["status"].as_u64().unwrap_or(0) as u16,
            headers: r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_string(),
                        h[1].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            body: STANDARD.decode(r["body_b64"].as_str().unwrap()).unwrap(),
        })
        .collect()
}
