//! Interoperability with a certified OpenID provider the project did not write: oidc-provider
//! (npm, pinned in tests/oidc/package.json), started from tests/oidc/server.mjs with Node.js.
//! The module introspects its opaque client_credentials tokens and gets RFC 9701 JWT
//! introspection responses (`phantom_token_response_format rfc9701`).

mod support;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;
use support::http::request;
use support::*;

/// The clients registered in tests/oidc/server.mjs.
const API_CLIENT: (&str, &str) = ("api-client", "api-secret");
const GATEWAY: (&str, &str) = ("gateway", "gateway-secret");

/// A JWT-shaped token (`{"alg":"none"}.{"sub":"x"}.sig`): oidc-provider refuses to introspect it.
const JWT_SHAPED: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln";

/// How long Node.js and oidc-provider may take to listen on a loaded machine.
const STARTUP: Duration = Duration::from_secs(60);

fn basic((id, secret): (&str, &str)) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the pinned oidc-provider once per test binary (a no-op when it is there, as after
/// scripts/test.sh); panics with the script's output when that fails.
fn ensure_installed() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("scripts/oidc-provider.sh"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run scripts/oidc-provider.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/oidc-provider.sh failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("oidc-provider is not installed: {e}");
    }
}

/// A running oidc-provider (tests/oidc/server.mjs) on a free port. Dropping it kills the
/// process; it also exits by itself when its stdin (held here) closes, so it never outlives
/// the test binary.
struct Oidc {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

enum Ready {
    Yes,
    PortTaken,
    Failed(String),
}

impl Oidc {
    fn start() -> Oidc {
        ensure_installed();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        for _ in 0..5 {
            let n = SEQ.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("phantom-oidc-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let marker = format!("oidc-{}-{n}", std::process::id());
            let port = free_port();
            let log = File::create(dir.join("oidc.log")).unwrap();
            let mut child = Command::new("node")
                .arg(root().join("tests/oidc/server.mjs"))
                .arg(port.to_string())
                .arg(&marker)
                .stdin(Stdio::piped())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start node: {e}"));
            let stdin = child.stdin.take();
            let mut oidc = Oidc {
                port,
                dir,
                child: Some(child),
                stdin,
            };
            match oidc.wait_ready(&marker) {
                Ready::Yes => return oidc,
                Ready::PortTaken => continue,
                Ready::Failed(e) => panic!("oidc-provider did not start: {e}\n{}", oidc.log()),
            }
        }
        panic!("no free port for oidc-provider");
    }

    /// Polls until this instance answers its marker at /test/ready.
    fn wait_ready(&mut self, marker: &str) -> Ready {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                // server.mjs exits with 98 when the port is in use.
                return if status.code() == Some(98) {
                    Ready::PortTaken
                } else {
                    Ready::Failed(format!("node exited with {status}"))
                };
            }
            if let Some(text) = try_get(self.port, "/test/ready") {
                if text.starts_with("HTTP/1.1 200") && text.ends_with(marker) {
                    return Ready::Yes;
                }
                if text.starts_with("HTTP/") {
                    self.kill();
                    return Ready::PortTaken;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ready::Failed(format!("not ready after {STARTUP:?}"))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("oidc.log")).unwrap_or_default()
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn post_form(&self, path: &str, client: (&str, &str), form: &str) -> Response {
        let auth = basic(client);
        request(
            self.port,
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            Some(form.as_bytes()),
        )
    }

    /// An access token of the API client from the token endpoint (client_credentials).
    fn client_credentials_token(&self) -> String {
        let r = self.post_form(
            "/token",
            API_CLIENT,
            "grant_type=client_credentials&scope=read",
        );
        assert_eq!(r.status, 200, "token endpoint: {}", r.text());
        let body = r.json();
        assert_eq!(body["token_type"], "Bearer", "{body}");
        assert_eq!(body["scope"], "read", "{body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {body}"))
            .to_string()
    }

    /// Revokes a token at the revocation endpoint (as its own client, RFC 7009).
    fn revoke(&self, token: &str) {
        let r = self.post_form("/token/revocation", API_CLIENT, &format!("token={token}"));
        assert_eq!(r.status, 200, "revocation endpoint: {}", r.text());
    }

    /// Introspection requests the provider has received so far.
    fn introspections(&self) -> usize {
        let r = request(self.port, "GET", "/test/introspections", &[], None);
        assert_eq!(r.status, 200);
        r.text().trim().parse().unwrap()
    }

    fn get(&self, path: &str) -> Response {
        let r = request(self.port, "GET", path, &[], None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r
    }

    fn kill(&mut self) {
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("oidc-provider output:\n{}", self.log());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A GET that never panics: the raw response text, or None when nothing answers yet.
fn try_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    (!text.is_empty()).then_some(text)
}

/// The introspection location for oidc-provider: RFC 9701 responses, the gateway's
/// credentials (`client`), and `extra` (e.g. the cache recipe).
fn oidc_introspection(oidc_port: u16, client: (&str, &str), extra: &str) -> String {
    format!(
        "location = /_introspect {{
            internal;
            proxy_pass_request_headers off;
            proxy_set_header Accept \"application/token-introspection+jwt\";
            proxy_set_header Content-Type \"application/x-www-form-urlencoded\";
            proxy_set_header Authorization \"{auth}\";
            proxy_connect_timeout 5s;
            proxy_read_timeout 20s;
            {extra}
            proxy_pass http://127.0.0.1:{oidc_port}/token/introspection;
        }}",
        auth = basic(client)
    )
}

/// oidc-provider, the echo API and nginx with a protected `location /` (rfc9701 format, the
/// cache status in `X-Cache`).
struct Interop {
    oidc: Oidc,
    echo: EchoServer,
    nginx: Nginx,
}

impl Interop {
    fn start(http: &str, api: &str, client: (&str, &str), introspect: &str) -> Interop {
        let oidc = Oidc::start();
        let echo = EchoServer::start().unwrap();
        let api = format!(
            "phantom_token_response_format rfc9701;
             add_header X-Cache $phantom_token_cache_status always;
             {api}"
        );
        let server = format!(
            "{}\n{}",
            api_location(echo.port(), &api),
            oidc_introspection(oidc.port, client, introspect)
        );
        let nginx = Nginx::start(http, &server);
        Interop { oidc, echo, nginx }
    }

    fn get_bearer(&self, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        request(
            self.nginx.port,
            "GET",
            "/",
            &[("Authorization", &auth)],
            None,
        )
    }
}

/// The JSON object in one part of a compact JWS.
fn jws_part(jwt: &str, i: usize) -> Value {
    let part = jwt.split('.').nth(i).expect("JWS part");
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Verifies an RS256 JWS with openssl and the provider's public key.
fn verify_rs256(jwt: &str, public_pem: &str, dir: &Path) -> bool {
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let (key, data, sig_file) = (dir.join("key.pem"), dir.join("data"), dir.join("sig"));
    fs::write(&key, public_pem).unwrap();
    fs::write(&data, input).unwrap();
    fs::write(&sig_file, URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&key)
        .arg("-signature")
        .arg(&sig_file)
        .arg(&data)
        .output()
        .expect("openssl");
    out.status.success()
}

#[test]
fn opaque_client_credentials_token_becomes_rfc9701_jwt_upstream() {
    let t = Interop::start(
        "",
        "proxy_set_header X-Client $phantom_token_claim_client_id;",
        GATEWAY,
        "",
    );
    let token = t.oidc.client_credentials_token();
    assert_eq!(token.matches('.').count(), 0, "not opaque: {token}");

    let r = t.get_bearer(&token);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), t.nginx.error_log());
    assert_eq!(r.header("x-cache"), Some("BYPASS"));
    assert_eq!(t.oidc.introspections(), 1);

    let up = t.echo.last().expect("the API got the request");
    for (name, value) in &up.headers {
        assert!(
            !value.contains(&token),
            "the opaque token reached the API in {name}"
        );
    }
    let jwt = up
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("Bearer <JWT> upstream");
    assert_eq!(jwt.split('.').count(), 3, "not a compact JWS: {jwt}");

    let header = jws_part(jwt, 0);
    assert_eq!(header["typ"], "token-introspection+jwt", "{header}");
    assert_eq!(header["alg"], "RS256", "{header}");
    let payload = jws_part(jwt, 1);
    let ti = &payload["token_introspection"];
    assert_eq!(ti["active"], true, "{payload}");
    assert_eq!(ti["client_id"], "api-client", "{payload}");
    assert_eq!(ti["scope"], "read", "{payload}");
    assert!(ti["exp"].is_i64(), "{payload}");
    assert_eq!(payload["iss"], t.oidc.issuer().as_str(), "{payload}");
    assert_eq!(payload["aud"], "gateway", "{payload}");
    // Claims of token_introspection are variables.
    assert_eq!(up.header("x-client"), Some("api-client"));

    // The API can verify what it receives with the provider's published key.
    let jwks = t.oidc.get("/jwks").json();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "kid {} not in {jwks}",
        header["kid"]
    );
    let pem = t.oidc.get("/test/public-key.pem").text();
    assert!(
        verify_rs256(jwt, &pem, &t.nginx.dir),
        "signature does not verify"
    );
    t.nginx.assert_clean_log();
}

#[test]
fn revoked_token_is_rejected_without_cache() {
    let t = Interop::start("", "", GATEWAY, "");
    let token = t.oidc.client_credentials_token();
    assert_eq!(t.get_bearer(&token).status, 200);
    assert_eq!(t.echo.requests(), 1);

    t.oidc.revoke(&token);
    let r = t.get_bearer(&token);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    assert_eq!(t.oidc.introspections(), 2);
    assert_eq!(t.echo.requests(), 1);
    assert!(t.nginx.wait_log("The access token is not active"));
    t.nginx.assert_clean_log();
}

#[test]
fn wrong_gateway_credentials_give_502() {
    let t = Interop::start("", "", (GATEWAY.0, "wrong-secret"), "");
    let token = t.oidc.client_credentials_token();
    let r = t.get_bearer(&token);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"code":"server_error","message":"Problem encountered processing the request"}"#
    );
    assert!(r.header("www-authenticate").is_none());
    assert_eq!(t.oidc.introspections(), 1);
    assert_eq!(t.echo.requests(), 0);
    assert!(
        t.nginx
            .wait_log("Introspection subrequest returned response code: 401"),
        "{}",
        t.nginx.error_log()
    );
    t.nginx.assert_clean_log();
}

/// oidc-provider refuses to introspect JWT-shaped tokens: HTTP 400
/// `{"error":"unsupported_token_type",...}`. For the client that is an invalid token (401), not
/// a gateway problem, so nothing is logged at `error`.
#[test]
fn jwt_shaped_token_is_an_invalid_token() {
    let t = Interop::start("", "", GATEWAY, "");
    let r = t.get_bearer(JWT_SHAPED);
    assert_eq!(r.status, 401, "{}\n{}", r.text(), t.nginx.error_log());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(t.echo.requests(), 0);
    let log = t.nginx.error_log();
    assert!(!log.contains("[error]"), "{log}");
    t.nginx.assert_clean_log();
}

/// oidc-provider sends `Cache-Control: no-store` on every introspection response, so the
/// module caches nothing unless the introspection location hides that header.
#[test]
fn cache_recipe_hides_no_store_and_introspects_once() {
    let t = Interop::start(
        "phantom_token_cache_zone c:1m;",
        "phantom_token_cache c;",
        GATEWAY,
        "proxy_hide_header Cache-Control;",
    );
    let token = t.oidc.client_credentials_token();
    let first = t.get_bearer(&token);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let jwt = t
        .echo
        .last()
        .unwrap()
        .header("authorization")
        .unwrap()
        .to_string();
    let second = t.get_bearer(&token);
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(
        t.echo.last().unwrap().header("authorization"),
        Some(jwt.as_str())
    );
    assert_eq!(t.oidc.introspections(), 1);
    t.nginx.assert_clean_log();
}

#[test]
fn no_store_introspection_responses_are_not_cached() {
    let t = Interop::start(
        "phantom_token_cache_zone c:1m;",
        "phantom_token_cache c;",
        GATEWAY,
        "",
    );
    let token = t.oidc.client_credentials_token();
    let first = t.get_bearer(&token);
    assert_eq!(first.status, 200, "{}", first.text());
    let second = t.get_bearer(&token);
    assert_eq!(second.status, 200);
    assert_eq!(t.oidc.introspections(), 2);
    // Each request was introspected and the response was not storable.
    assert_eq!(first.header("x-cache"), Some("NOSTORE"));
    assert_eq!(second.header("x-cache"), Some("NOSTORE"));
    t.nginx.assert_clean_log();
}
