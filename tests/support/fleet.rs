//! The fleet harness: instances sharing one Redis, key file and identity server, and the
//! requests the fleet tests make of them.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use phantom_core::fleet::keys::base64url;

use super::http::request;
use super::redis::Redis;
use super::*;

pub const FORM: &str = "application/x-www-form-urlencoded";

// ---------------------------------------------------------------------------------------

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    b
}

pub fn random_hex(n: usize) -> String {
    random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..n]
        .to_string()
}

pub static KEY_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fleet key file (mode 0600) in its own directory, removed on drop.
pub struct KeyFile {
    pub dir: PathBuf,
    pub path: PathBuf,
    pub name: [u8; 32],
}

impl KeyFile {
    /// Fresh random `name` and `seal` keys.
    pub fn new() -> KeyFile {
        KeyFile::with(random_bytes(), "k1", random_bytes())
    }

    /// The same `name` key as `self` (so the same Redis key names), another `seal` key
    /// under the same kid.
    pub fn same_names_other_seal(&self) -> KeyFile {
        KeyFile::with(self.name, "k1", random_bytes())
    }

    pub fn with(name: [u8; 32], kid: &str, seal: [u8; 32]) -> KeyFile {
        let text = format!(
            "name  v1 {}\nseal  {kid} {}\n",
            base64url(&name),
            base64url(&seal)
        );
        KeyFile::from_text(&text, name)
    }

    pub fn from_text(text: &str, name: [u8; 32]) -> KeyFile {
        let n = KEY_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("phantom-keys-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fleet.keys");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        KeyFile { dir, path, name }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The http-level fleet configuration: the Redis upstream and the zone `jwt`.
pub fn fleet_http(redis_port: u16, keys: &Path, zone_extra: &str, http_extra: &str) -> String {
    format!(
        "upstream phantom_redis {{ server 127.0.0.1:{redis_port}; }}
         phantom_token_cache_zone jwt:10m redis=phantom_redis redis_key={} redis_timeout=200ms {zone_extra};
         {http_extra}",
        keys.display()
    )
}

/// The server of one instance: the protected API, the introspection location and `/purge`.
pub fn fleet_server(ids: &IdServer, echo: &EchoServer, api_extra: &str) -> String {
    format!(
        "{}
         {}
         location = /purge {{ allow 127.0.0.1; deny all; phantom_token_purge jwt; }}",
        api_location(
            echo.port(),
            &format!(
                "phantom_token_cache jwt;
                 add_header X-Cache $phantom_token_cache_status always;
                 {api_extra}"
            )
        ),
        introspection_location(ids.port(), "")
    )
}

/// Instances sharing one Redis, one key file and one identity server.
pub struct Fleet {
    // Dropped in this order: nginx first, then the servers it talks to.
    pub nodes: Vec<Nginx>,
    pub ids: IdServer,
    pub echo: EchoServer,
    pub redis: Redis,
    pub keys: KeyFile,
}

#[derive(Default, Clone, Copy)]
pub struct Opts<'a> {
    /// More parameters of `phantom_token_cache_zone`.
    pub zone: &'a str,
    /// More directives in the http block.
    pub http: &'a str,
    /// More directives in the protected location.
    pub api: &'a str,
    /// Worker processes per instance (2 when 0).
    pub workers: usize,
}

impl Fleet {
    pub fn start(instances: usize) -> Fleet {
        Fleet::with(instances, Opts::default())
    }

    pub fn with(instances: usize, opts: Opts) -> Fleet {
        Fleet::with_redis(Redis::start(), instances, opts)
    }

    /// As [`Fleet::with`], on a server already started (e.g. [`Redis::start_with`] another
    /// version).
    pub fn with_redis(redis: Redis, instances: usize, opts: Opts) -> Fleet {
        let ids = IdServer::start(IdConfig::default()).unwrap();
        let echo = EchoServer::start().unwrap();
        let keys = KeyFile::new();
        let mut f = Fleet {
            nodes: Vec::new(),
            ids,
            echo,
            redis,
            keys,
        };
        for _ in 0..instances {
            let n = f.instance(&f.keys, opts);
            f.nodes.push(n);
        }
        f
    }

    /// Another instance on this fleet's Redis and identity server, with `keys`.
    pub fn instance(&self, keys: &KeyFile, opts: Opts) -> Nginx {
        let workers = if opts.workers == 0 { 2 } else { opts.workers };
        Nginx::start_workers(
            workers,
            &fleet_http(self.redis.port, keys.path(), opts.zone, opts.http),
            &fleet_server(&self.ids, &self.echo, opts.api),
            "",
        )
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// The token entries in Redis.
    pub fn token_keys(&self) -> Vec<String> {
        self.redis
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("pt:v2:t:"))
            .collect()
    }
}

/// Polls `cond` for up to 3 s (Redis writes may complete after the response).
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(3, what, cond)
}

/// Polls `cond` for up to `secs` s: for what Redis spreads on its own clock (cluster gossip).
pub fn eventually_within(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the identity server has received `n` introspections in all. It reads its
/// fault when a request arrives, so a fault lifted after this still holds that request.
pub fn introspections_arrived(ids: &IdServer, n: usize) {
    eventually("the introspection is at the identity server", || {
        ids.introspections() >= n
    });
}

/// A client that sent a request for `token` and is still connected.
pub fn open_request(port: u16, token: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = format!("GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// (status, `$phantom_token_cache_status`) of `GET /` with `token`.
pub fn get(port: u16, token: &str) -> (u16, String) {
    let r = request(port, "GET", "/", &[("Authorization", &bearer(token))], None);
    (r.status, r.header("x-cache").unwrap_or("").to_string())
}

/// 20 first requests for `token` at once over `ports`, introspection taking 800 ms: statuses.
pub fn twenty_first_requests(ids: &IdServer, ports: &[u16], token: &str) -> Vec<u16> {
    ids.set_fault(Fault::Delay(Duration::from_millis(800)));
    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let port = ports[i % ports.len()];
            let (auth, barrier) = (bearer(token), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                request(port, "GET", "/", &[("Authorization", &auth)], None).status
            })
        })
        .collect();
    let statuses = threads.into_iter().map(|t| t.join().unwrap()).collect();
    ids.set_fault(Fault::None);
    statuses
}

/// Caches every token on every instance (the first instance introspects).
pub fn cache_everywhere(f: &Fleet, tokens: &[String]) {
    for t in tokens {
        for i in 0..f.nodes.len() {
            assert_eq!(get(f.port(i), t).0, 200);
        }
        for i in 0..f.nodes.len() {
            assert_eq!(get(f.port(i), t), (200, "HIT".into()));
        }
    }
}

pub fn purge(port: u16, body: &str) -> Response {
    request(
        port,
        "POST",
        "/purge",
        &[("Content-Type", FORM)],
        Some(body.as_bytes()),
    )
}

/// Percent-encodes a form value (everything but unreserved characters).
pub fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Checks a 200 purge answer and returns (removed, redis_removed).
pub fn purge_ok(r: &Response) -> (u64, u64) {
    assert_eq!(r.status, 200, "purge: {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    let j = r.json();
    assert_eq!(j["notified"], serde_json::Value::Bool(true), "{j}");
    let removed = j["removed"].as_u64().unwrap_or_else(|| panic!("{j}"));
    let redis_removed = j["redis_removed"].as_u64().unwrap_or_else(|| panic!("{j}"));
    (removed, redis_removed)
}

/// Polls `GET /` with `token` on `port` until it answers `want`, at the latest at `deadline`.
pub fn answers_by(
    port: u16,
    token: &str,
    want: u16,
    deadline: Instant,
) -> Result<(), (u16, String)> {
    loop {
        let got = get(port, token);
        if got.0 == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(got);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// After a purge answered at `at`: `token` is refused on every instance within 1 s, and then
/// on every request (whichever worker takes it).
pub fn refused_everywhere_within_1s(f: &Fleet, token: &str, at: Instant) {
    let nodes: Vec<&Nginx> = f.nodes.iter().collect();
    refused_by_within_1s(&nodes, token, at);
}

/// `token` is refused (401) by every worker of each of `nodes` within a second of `at`.
pub fn refused_by_within_1s(nodes: &[&Nginx], token: &str, at: Instant) {
    let deadline = at + Duration::from_secs(1);
    for (i, n) in nodes.iter().enumerate() {
        if let Err(got) = answers_by(n.port, token, 401, deadline) {
            panic!(
                "instance {i} still answers {got:?} {:?} after the purge",
                at.elapsed()
            );
        }
        for _ in 0..4 {
            assert_eq!(get(n.port, token).0, 401, "instance {i}, every worker");
        }
    }
}

pub fn assert_no_crash(n: &Nginx) {
    let log = n.error_log();
    for bad in ["[alert]", "[emerg]", "segfault", "exited on signal"] {
        assert!(!log.contains(bad), "error log contains {bad}:\n{log}");
    }
}

/// A Redis key name the layout allows (`pt:v2:`, `phantom_core::fleet::layout`), made only of
/// HMACs in base64url and fixed words:
/// - `pt:v2:t:{<43>}:<22>` and `pt:v2:lk:{<43>}:<22>` (an entry and a lock: the token's hash
///   tag, and the introspection context's id);
/// - `pt:v2:sub:{<43>}` and `pt:v2:cid:{<43>}` (index sets, tagged with their own MAC);
/// - `pt:v2:jti:<43>` (a DPoP proof's claim);
/// - `pt:v2:purge:jwt` (the purge stream of zone `jwt`).
pub fn allowed_key_name(k: &str) -> bool {
    fn mac(s: &str, len: usize) -> bool {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
    if k == "pt:v2:purge:jwt" {
        return true;
    }
    let Some(rest) = k.strip_prefix("pt:v2:") else {
        return false;
    };
    let Some((label, rest)) = rest.split_once(':') else {
        return false;
    };
    let tagged = |rest: &str| -> Option<(String, String)> {
        let rest = rest.strip_prefix('{')?;
        let (tag, after) = rest.split_once('}')?;
        Some((tag.to_string(), after.to_string()))
    };
    match label {
        "t" | "lk" => tagged(rest).is_some_and(|(tag, after)| {
            mac(&tag, 43) && after.strip_prefix(':').is_some_and(|c| mac(c, 22))
        }),
        "sub" | "cid" => tagged(rest).is_some_and(|(tag, after)| mac(&tag, 43) && after.is_empty()),
        "jti" => mac(rest, 43),
        _ => false,
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// `eyJ` followed by 5 more base64url characters: the start of a base64-encoded JSON object
/// (a JWT header or payload). Plain `eyJ` can occur by chance in sealed random bytes.
pub fn has_json_base64(hay: &[u8]) -> Option<String> {
    hay.windows(8).find_map(|w| {
        (w.starts_with(b"eyJ")
            && w[3..]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
        .then(|| String::from_utf8_lossy(w).into_owned())
    })
}

/// Issues `n` tokens whose JWTs carry `claims`.
pub fn issue_with(ids: &IdServer, n: usize, claims: serde_json::Value) -> Vec<String> {
    (0..n)
        .map(|_| {
            let t = ids.issue("read", 300);
            ids.set_claims(&t, claims.as_object().unwrap().clone());
            t
        })
        .collect()
}

/// The value of the metric line starting with `name` (labels included) on `/metrics`.
pub fn metric(port: u16, name: &str) -> f64 {
    let r = super::http::request(port, "GET", "/metrics", &[], None);
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A `/metrics` location for [`metric`].
pub const METRICS: &str = "location = /metrics { phantom_token off; phantom_token_status; }";
