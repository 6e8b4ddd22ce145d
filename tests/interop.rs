//! Interoperability with a certified OpenID provider the project did not write: oidc-provider
//! (npm, pinned in tests/oidc/package.json), started from tests/oidc/server.mjs with Node.js.
//! The module introspects its opaque client_credentials tokens and gets RFC 9701 JWT
//! introspection responses (`phantom_token_response_format rfc9701`). The DPoP tests (RFC 9449)
//! get DPoP-bound tokens from it and call the gateway with proofs made by the `dpop` npm library
//! (tests/oidc/dpop-client.mjs), not by the project's own code.

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
use support::dpop::challenges;
use support::http::{raw, request};
use support::*;

/// The clients registered in tests/oidc/server.mjs.
const API_CLIENT: (&str, &str) = ("api-client", "api-secret");
const GATEWAY: (&str, &str) = ("gateway", "gateway-secret");
/// The DPoP client of tests/oidc/server.mjs (`dpop_bound_access_tokens`), which
/// tests/oidc/dpop-client.mjs uses.
const DPOP_CLIENT_ID: &str = "dpop-client";

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
    /// Not answering after [`STARTUP`] (seen once in CI on a loaded machine: node printed
    /// its first line and no more): tried once more.
    Slow,
    Failed(String),
}

impl Oidc {
    fn start() -> Oidc {
        ensure_installed();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let mut slow = 0;
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
                Ready::Slow if slow == 0 => {
                    slow += 1;
                    eprintln!(
                        "oidc-provider not ready after {STARTUP:?}: starting it again\n{}",
                        oidc.log()
                    );
                    oidc.kill();
                    continue;
                }
                Ready::Slow => panic!(
                    "oidc-provider did not start: not ready after {STARTUP:?}, twice\n{}",
                    oidc.log()
                ),
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
        Ready::Slow
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

/// What tests/oidc/dpop-client.mjs printed: a DPoP-bound token of oidc-provider and proofs
/// for it, all made by the `dpop` library with one key.
struct DpopClient {
    token: String,
    token_type: String,
    /// The key's RFC 7638 thumbprint as the library computes it.
    jkt: String,
    /// Proofs for `GET <gateway URL>` with `ath`, each with its own `jti`.
    get: Vec<String>,
    /// A proof for `POST <gateway URL>` with `ath`.
    post: String,
}

impl Oidc {
    /// Runs tests/oidc/dpop-client.mjs: an ES256 key pair, a DPoP-bound client_credentials
    /// token from this provider (with a library-made proof for its token endpoint) and `count`
    /// proofs for `GET url` plus one for `POST url`.
    fn dpop_client(&self, url: &str, count: usize) -> DpopClient {
        self.dpop_client_alg("ES256", url, count)
    }

    /// `dpop_client` with a key for `alg`, a name the library knows (ES256, Ed25519, PS256,
    /// RS256).
    fn dpop_client_alg(&self, alg: &str, url: &str, count: usize) -> DpopClient {
        let out = Command::new("node")
            .arg(root().join("tests/oidc/dpop-client.mjs"))
            .env("DPOP_ALG", alg)
            .arg(self.issuer())
            .arg(url)
            .arg(count.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot start node: {e}"));
        assert!(
            out.status.success(),
            "dpop-client.mjs failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "dpop-client.mjs printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let text = |key: &str| {
            v[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} in {v}"))
                .to_string()
        };
        let get: Vec<String> = v["proofs"]
            .as_array()
            .unwrap_or_else(|| panic!("no proofs in {v}"))
            .iter()
            .map(|p| p.as_str().expect("a proof").to_string())
            .collect();
        assert_eq!(get.len(), count, "{v}");
        assert_eq!(v["htu"], url, "{v}");
        assert_eq!(v["alg"], alg, "{v}");
        DpopClient {
            token: text("token"),
            token_type: text("token_type"),
            jkt: text("jkt"),
            get,
            post: text("post_proof"),
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

impl Interop {
    /// The gateway with `phantom_token_dpop on`, the cache and the cache recipe (hiding the
    /// provider's `Cache-Control: no-store`), so that later requests are cache hits.
    fn start_dpop() -> Interop {
        Interop::start_dpop_with("")
    }

    /// `start_dpop` with more directives in the protected location.
    fn start_dpop_with(extra: &str) -> Interop {
        Interop::start(
            "phantom_token_cache_zone c:1m;",
            &format!("phantom_token_dpop on; phantom_token_cache c; {extra}"),
            GATEWAY,
            "proxy_hide_header Cache-Control;",
        )
    }

    /// The URL the DPoP client calls and puts in its proofs' `htu`. Requests go to it with the
    /// matching `Host` header (see `call`), from which the module builds the URL it checks.
    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.nginx.port)
    }

    /// `GET /api` with `Host: 127.0.0.1:<port>`, as a client of `api_url` sends it, and the
    /// given `Authorization` and `DPoP` headers.
    fn call(&self, authorization: &str, proof: Option<&str>) -> Response {
        let mut req = format!(
            "GET /api HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Authorization: {authorization}\r\n",
            self.nginx.port
        );
        if let Some(p) = proof {
            req.push_str(&format!("DPoP: {p}\r\n"));
        }
        req.push_str("\r\n");
        raw(self.nginx.port, req.as_bytes())
    }

    fn call_dpop(&self, token: &str, proof: &str) -> Response {
        self.call(&format!("DPoP {token}"), Some(proof))
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

/// oidc-provider's DPoP-bound token (its cnf.jkt in the RFC 9701 response) with a proof from
/// the `dpop` library: the API gets `Bearer <JWT>` and neither the opaque token nor the proof.
#[test]
fn dpop_bound_token_with_library_proof_becomes_bearer_jwt_upstream() {
    let t = Interop::start_dpop();
    let c = t.oidc.dpop_client(&t.api_url(), 2);
    assert_eq!(c.token_type, "DPoP");
    assert_eq!(c.token.matches('.').count(), 0, "not opaque: {}", c.token);

    let r = t.call_dpop(&c.token, &c.get[0]);
    assert_eq!(
        r.status,
        200,
        "{} {}\n{}",
        challenges(&r),
        r.text(),
        t.nginx.error_log()
    );
    assert_eq!(r.header("x-cache"), Some("MISS"));
    let up = t.echo.last().expect("the API got the request");
    assert!(up.header("dpop").is_none(), "the proof reached the API");
    for (name, value) in &up.headers {
        assert!(
            !value.contains(&c.token),
            "the opaque token reached the API in {name}"
        );
    }
    let jwt = up
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("Bearer <JWT> upstream")
        .to_string();
    assert_eq!(jws_part(&jwt, 0)["typ"], "token-introspection+jwt");
    let payload = jws_part(&jwt, 1);
    let ti = &payload["token_introspection"];
    assert_eq!(ti["active"], true, "{payload}");
    assert_eq!(ti["client_id"], DPOP_CLIENT_ID, "{payload}");
    assert_eq!(ti["token_type"], "DPoP", "{payload}");
    // The provider's thumbprint of the key it bound the token to is the library's.
    assert_eq!(ti["cnf"]["jkt"], c.jkt.as_str(), "{payload}");

    // A second proof of the same key: a cache hit, the proof still checked.
    let r = t.call_dpop(&c.token, &c.get[1]);
    assert_eq!(r.status, 200, "{}", challenges(&r));
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(
        t.echo.last().unwrap().header("authorization"),
        Some(format!("Bearer {jwt}").as_str())
    );
    // The first proof again: its jti was seen.
    let r = t.call_dpop(&c.token, &c.get[0]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        challenges(&r).contains(r#"error="invalid_dpop_proof""#),
        "{}",
        challenges(&r)
    );
    assert_eq!(t.echo.requests(), 2);
    assert_eq!(t.oidc.introspections(), 1);
    t.nginx.assert_clean_log();
}

/// The DPoP-bound token sent as a Bearer token is refused (RFC 9449 section 7.2), before and
/// after the gateway has cached its introspection.
#[test]
fn dpop_bound_token_sent_as_bearer_is_rejected() {
    let t = Interop::start_dpop();
    let c = t.oidc.dpop_client(&t.api_url(), 1);
    let bearer = format!("Bearer {}", c.token);
    let check = |r: &Response| {
        assert_eq!(r.status, 401, "{}\n{}", r.text(), t.nginx.error_log());
        let ch = challenges(r);
        assert!(
            ch.contains(r#"Bearer "#) && ch.contains(r#"error="invalid_token""#),
            "{ch}"
        );
        assert!(ch.contains("DPoP realm=\"api\", algs="), "{ch}");
    };
    check(&t.call(&bearer, None));
    assert_eq!(t.echo.requests(), 0);

    // With its proof it is granted; as Bearer it still is not, cache hit or not.
    let r = t.call_dpop(&c.token, &c.get[0]);
    assert_eq!(r.status, 200, "{}", challenges(&r));
    check(&t.call(&bearer, None));
    assert_eq!(t.echo.requests(), 1);
    assert!(t.nginx.wait_log("A DPoP-bound token came as Bearer"));
    t.nginx.assert_clean_log();
}

/// A library-made proof for `POST` sent with a `GET` is an invalid proof; the token itself is
/// fine, as a right proof shows after.
#[test]
fn library_proof_for_the_wrong_method_is_invalid_dpop_proof() {
    let t = Interop::start_dpop();
    let c = t.oidc.dpop_client(&t.api_url(), 1);
    let r = t.call_dpop(&c.token, &c.post);
    assert_eq!(r.status, 401, "{}\n{}", r.text(), t.nginx.error_log());
    let ch = challenges(&r);
    assert!(
        ch.starts_with("DPoP ") && ch.contains(r#"error="invalid_dpop_proof""#),
        "{ch}"
    );
    assert_eq!(t.echo.requests(), 0);

    let r = t.call_dpop(&c.token, &c.get[0]);
    assert_eq!(r.status, 200, "{}", challenges(&r));
    assert_eq!(t.echo.requests(), 1);
    t.nginx.assert_clean_log();
}

/// Keys and proofs of each algorithm the `dpop` library makes, with the JWS `alg` names it
/// uses (`Ed25519`, RFC 9864, for EdDSA on Ed25519): the provider binds the token to the key,
/// the gateway accepts the proof.
#[test]
fn library_proofs_of_each_algorithm_are_accepted() {
    let t = Interop::start_dpop_with("phantom_token_dpop_algs ES256 EdDSA PS256 RS256;");
    for (i, alg) in ["ES256", "Ed25519", "PS256", "RS256"]
        .into_iter()
        .enumerate()
    {
        let c = t.oidc.dpop_client_alg(alg, &t.api_url(), 1);
        assert_eq!(jws_part(&c.get[0], 0)["alg"], alg);
        let r = t.call_dpop(&c.token, &c.get[0]);
        assert_eq!(
            r.status,
            200,
            "{alg}: {}\n{}",
            challenges(&r),
            t.nginx.error_log()
        );
        assert_eq!(t.echo.requests(), i + 1);
        let up = t.echo.last().unwrap();
        assert!(up.header("dpop").is_none());
        let jwt = up
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .expect("Bearer <JWT> upstream");
        let payload = jws_part(jwt, 1);
        assert_eq!(
            payload["token_introspection"]["cnf"]["jkt"],
            c.jkt.as_str(),
            "{alg}: {payload}"
        );
    }
    t.nginx.assert_clean_log();
}
