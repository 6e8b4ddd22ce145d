//! The development identity server: issues opaque tokens and introspects them into JWTs.
//!
//! `POST /oauth/token` (client_credentials; with a `DPoP` proof the token is DPoP-bound,
//! RFC 9449 §5, and the development-only form parameter `cnf_x5t_s256` binds it to a client
//! certificate's thumbprint, RFC 8705), `POST /oauth/introspect` (Basic client auth;
//! `Accept: application/jwt` -> JWT or 204, `application/token-introspection+jwt` -> RFC 9701,
//! otherwise RFC 7662 JSON with a `jwt` member), `POST /oauth/revoke` (RFC 7009; the
//! revocation is then announced to the configured purge URLs), `GET /health`, and
//! `/admin/fault`, `/admin/stats` to script failures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::answer::answer;
use crate::binding::confirmation;
use crate::form::form;
use crate::http::{Recorded, Reply};
use crate::purge;
use crate::serve::{Action, Server};

#[derive(Clone, Debug)]
pub struct IdConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime in seconds of tokens issued by the token endpoint.
    pub token_lifetime: u64,
    /// Pad JWTs to at least this many bytes (0: natural size).
    pub jwt_size: usize,
    /// `None`: `max-age=<remaining lifetime>`; `Some("")`: no header; `Some(v)`: `v`.
    pub cache_control: Option<String>,
    /// Plain `http://host:port/path` URLs told of each revocation (`POST`, form body
    /// `token=<token>`), e.g. gateways' purge locations; empty: none.
    pub purge_urls: Vec<String>,
}

impl Default for IdConfig {
    fn default() -> Self {
        IdConfig {
            client_id: "gateway".into(),
            client_secret: "secret".into(),
            token_lifetime: 300,
            jwt_size: 0,
            cache_control: None,
            purge_urls: Vec::new(),
        }
    }
}

/// Ways to make the introspection endpoint misbehave.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    None,
    Status(u16),
    Unavailable { retry_after: Option<u64> },
    Delay(Duration),
    Raw(Vec<u8>),
}

pub(crate) struct Token {
    pub(crate) scope: String,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    pub(crate) sub: String,
    pub(crate) claims: Map<String, Value>,
    /// The token's `cnf` claim (RFC 7800): `jkt` for DPoP, `x5t#S256` for a certificate;
    /// empty for a Bearer token.
    pub(crate) cnf: Map<String, Value>,
    revoked: bool,
}

impl Token {
    /// Whether the token is DPoP-bound (`token_type` `DPoP`, RFC 9449 §5 and §6.2).
    pub(crate) fn token_type(&self) -> &'static str {
        if self.cnf.contains_key("jkt") {
            "DPoP"
        } else {
            "bearer"
        }
    }
}

struct State {
    config: IdConfig,
    fault: Fault,
    tokens: HashMap<String, Token>,
    introspections: usize,
    last: Option<Recorded>,
    /// Each purge notification sent: URL and status code or error.
    purges: Vec<(String, Result<u16, String>)>,
}

pub struct IdServer {
    server: Mutex<Server>,
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let digest = Sha256::digest(format!("{nanos}-{n}-{}", std::process::id()));
    URL_SAFE_NO_PAD.encode(&digest[..30])
}

impl IdServer {
    pub fn start(config: IdConfig) -> std::io::Result<IdServer> {
        IdServer::start_on("127.0.0.1:0", config)
    }

    pub fn start_on(addr: &str, config: IdConfig) -> std::io::Result<IdServer> {
        let state = Arc::new(Mutex::new(State {
            config,
            fault: Fault::None,
            tokens: HashMap::new(),
            introspections: 0,
            last: None,
            purges: Vec::new(),
        }));
        let server = listen(addr, &state)?;
        let addr = server.addr();
        Ok(IdServer {
            server: Mutex::new(server),
            addr,
            state,
        })
    }

    /// Listens again on the same address with the same tokens, after [`IdServer::stop`].
    pub fn restart(&self) -> std::io::Result<()> {
        let server = listen(&self.addr.to_string(), &self.state)?;
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = server;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    }

    /// Issues an opaque token as the token endpoint would.
    pub fn issue(&self, scope: &str, lifetime: u64) -> String {
        let token = new_token();
        self.issue_named(&token, scope, lifetime);
        token
    }

    /// Registers a caller-chosen opaque token.
    pub fn issue_named(&self, token: &str, scope: &str, lifetime: u64) {
        self.with(|s| insert(s, token, scope, lifetime));
    }

    pub fn set_claims(&self, token: &str, claims: Map<String, Value>) {
        self.with(|s| {
            if let Some(t) = s.tokens.get_mut(token) {
                t.claims = claims;
            }
        });
    }

    /// Revokes a token as `POST /oauth/revoke` does: introspection answers inactive from
    /// now on, and if the token is known the purge URLs are told (before this returns).
    pub fn revoke(&self, token: &str) {
        revoke_and_purge(&self.state, token);
    }

    /// The purge notifications sent so far, in order: URL and the response's status code,
    /// or why none was received.
    pub fn purge_results(&self) -> Vec<(String, Result<u16, String>)> {
        self.with(|s| s.purges.clone())
    }

    pub fn set_fault(&self, fault: Fault) {
        self.with(|s| s.fault = fault);
    }

    pub fn set_config(&self, config: IdConfig) {
        self.with(|s| s.config = config);
    }

    pub fn introspections(&self) -> usize {
        self.with(|s| s.introspections)
    }

    pub fn last_introspection(&self) -> Option<Recorded> {
        self.with(|s| s.last.clone())
    }

    /// Stops accepting: connections to the port are refused afterwards.
    pub fn stop(&self) {
        self.server.lock().unwrap_or_else(|e| e.into_inner()).stop();
    }
}

fn listen(addr: &str, state: &Arc<Mutex<State>>) -> std::io::Result<Server> {
    let port = Arc::new(AtomicU64::new(0));
    let (st, p) = (state.clone(), port.clone());
    let handler = move |req: &Recorded| route(&st, p.load(Ordering::SeqCst), req);
    let server = Server::start(addr, Arc::new(handler))?;
    port.store(u64::from(server.port()), Ordering::SeqCst);
    Ok(server)
}

fn insert(s: &mut State, token: &str, scope: &str, lifetime: u64) {
    let iat = now();
    let sub = format!(
        "user-{}",
        &URL_SAFE_NO_PAD.encode(Sha256::digest(token))[..8]
    );
    let t = Token {
        scope: scope.into(),
        exp: iat + lifetime as i64,
        iat,
        sub,
        claims: Map::new(),
        cnf: Map::new(),
        revoked: false,
    };
    s.tokens.insert(token.to_string(), t);
}

fn route(state: &Mutex<State>, port: u64, req: &Recorded) -> Action {
    let path = req.target.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("POST", "/oauth/introspect") => introspect(state, port, req),
        ("POST", "/oauth/token") => Action::Reply(token_endpoint(state, req)),
        ("POST", "/oauth/revoke") => Action::Reply(revoke_endpoint(state, req)),
        ("POST", "/admin/fault") => Action::Reply(set_fault(state, req)),
        ("GET", "/admin/stats") => {
            let n = state.lock().map(|s| s.introspections).unwrap_or(0);
            Action::Reply(Reply::json(200, &json!({ "introspections": n })))
        }
        ("GET", "/health") => Action::Reply(Reply::new(200, "text/plain", "ok")),
        _ => Action::Reply(Reply::json(404, &json!({ "error": "not_found" }))),
    }
}

/// Client credentials from HTTP Basic, else from the form.
fn client_ok(cfg: &IdConfig, req: &Recorded, fields: &HashMap<String, String>) -> bool {
    let basic = req
        .header("authorization")
        .and_then(|a| {
            a.strip_prefix("Basic ")
                .or_else(|| a.strip_prefix("basic "))
        })
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (id, secret) = match &basic {
        Some(pair) => match pair.split_once(':') {
            Some((i, s)) => (i.to_string(), s.to_string()),
            None => return false,
        },
        None => (
            fields.get("client_id").cloned().unwrap_or_default(),
            fields.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    id == cfg.client_id && secret == cfg.client_secret
}

fn token_endpoint(state: &Mutex<State>, req: &Recorded) -> Reply {
    let fields = form(&req.body);
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if !client_ok(&s.config, req, &fields) {
        return Reply::json(401, &json!({ "error": "invalid_client" }));
    }
    if fields.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return Reply::json(400, &json!({ "error": "unsupported_grant_type" }));
    }
    let scope = fields
        .get("scope")
        .cloned()
        .unwrap_or_else(|| "read".into());
    let cnf = match confirmation(req, &fields) {
        Ok(cnf) => cnf,
        Err(reply) => return reply,
    };
    let lifetime = s.config.token_lifetime;
    let token = new_token();
    insert(&mut s, &token, &scope, lifetime);
    let mut token_type = "bearer";
    if let Some(t) = s.tokens.get_mut(&token) {
        t.cnf = cnf;
        token_type = t.token_type();
    }
    Reply::json(200, &json!({ "access_token": token, "token_type": token_type, "expires_in": lifetime, "scope": scope }))
        .with("Cache-Control", "no-store")
}

/// `POST /oauth/revoke` (RFC 7009): 200 with an empty body, also for unknown tokens
/// (`token_type_hint` is ignored: there are only access tokens).
fn revoke_endpoint(state: &Mutex<State>, req: &Recorded) -> Reply {
    let fields = form(&req.body);
    let client = {
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        client_ok(&s.config, req, &fields)
    };
    if !client {
        return Reply::json(401, &json!({ "error": "invalid_client" }))
            .with("WWW-Authenticate", "Basic realm=\"idsvr\"");
    }
    let Some(token) = fields.get("token").filter(|t| !t.is_empty()) else {
        return Reply::json(400, &json!({ "error": "invalid_request" }));
    };
    revoke_and_purge(state, token);
    Reply::empty(200).with("Cache-Control", "no-store")
}

/// Marks `token` revoked; if it is known, `POST`s it to each purge URL, without holding the
/// lock (a gateway may introspect meanwhile), and records the results. Failures are logged
/// and never fail the revocation.
fn revoke_and_purge(state: &Mutex<State>, token: &str) {
    let urls = {
        let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        match s.tokens.get_mut(token) {
            Some(t) => {
                t.revoked = true;
                s.config.purge_urls.clone()
            }
            None => return,
        }
    };
    for url in urls {
        let result = purge::notify(&url, token);
        match &result {
            Ok(code) if (200..300).contains(code) => {}
            Ok(code) => eprintln!("phantom-devsvr: purge {url}: status {code}"),
            Err(e) => eprintln!("phantom-devsvr: purge {url}: {e}"),
        }
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.purges.push((url, result));
    }
}

fn set_fault(state: &Mutex<State>, req: &Recorded) -> Reply {
    let text = String::from_utf8_lossy(&req.body).trim().to_string();
    let fault = match text.as_str() {
        "none" => Fault::None,
        "unavailable" => Fault::Unavailable { retry_after: None },
        t => {
            let num = |p: &str| {
                t.rsplit_once('=')
                    .filter(|(k, _)| k.ends_with(p))
                    .and_then(|(_, v)| v.parse::<u64>().ok())
            };
            if t.starts_with("status=") {
                match num("status") {
                    Some(c) => Fault::Status(c as u16),
                    None => return Reply::json(400, &json!({ "error": "bad fault" })),
                }
            } else if t.starts_with("unavailable retry_after=") {
                Fault::Unavailable {
                    retry_after: num("retry_after"),
                }
            } else if t.starts_with("delay_ms=") {
                Fault::Delay(Duration::from_millis(num("delay_ms").unwrap_or(0)))
            } else {
                return Reply::json(400, &json!({ "error": "unknown fault" }));
            }
        }
    };
    if let Ok(mut s) = state.lock() {
        s.fault = fault;
    }
    Reply::json(200, &json!({ "fault": text }))
}

fn introspect(state: &Mutex<State>, port: u64, req: &Recorded) -> Action {
    let fault = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.introspections += 1;
        s.last = Some(req.clone());
        s.fault.clone()
    };
    match fault {
        Fault::None => {}
        Fault::Status(code) => return Action::Reply(Reply::empty(code)),
        Fault::Unavailable { retry_after } => {
            let r = Reply::json(503, &json!({ "error": "temporarily_unavailable" }));
            return Action::Reply(match retry_after {
                Some(s) => r.with("Retry-After", &s.to_string()),
                None => r,
            });
        }
        Fault::Delay(d) => std::thread::sleep(d),
        Fault::Raw(bytes) => return Action::Raw(bytes),
    }
    let fields = form(&req.body);
    let s = state.lock().unwrap_or_else(|e| e.into_inner());
    if !client_ok(&s.config, req, &HashMap::new()) {
        return Action::Reply(
            Reply::json(401, &json!({ "error": "invalid_client" }))
                .with("WWW-Authenticate", "Basic realm=\"idsvr\""),
        );
    }
    let Some(token) = fields.get("token") else {
        return Action::Reply(Reply::json(400, &json!({ "error": "invalid_request" })));
    };
    let now = now();
    let active = s
        .tokens
        .get(token.as_str())
        .filter(|t| !t.revoked && t.exp > now);
    let accept = req.header("accept").unwrap_or("").to_ascii_lowercase();
    Action::Reply(answer(&s.config, port, active, &accept, now))
}
