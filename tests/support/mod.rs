//! Test harness: the real nginx with the real module, on free 127.0.0.1 ports.
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod dns;
pub mod dpop;
pub mod fleet;
pub mod h3;
pub mod http;
pub mod pki;
pub mod redis;
pub mod sentinel;
pub mod wrk;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use devsvr::{EchoServer, Fault, IdConfig, IdServer};
pub use http::Response;

/// The nginx binary: `TEST_NGINX_BINARY`, else the one the vendored build produced.
pub fn nginx_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TEST_NGINX_BINARY") {
        return p.into();
    }
    let Some(dir) = option_env!("DEP_NGINX_BUILD_DIR") else {
        panic!("set TEST_NGINX_BINARY: this build has no vendored nginx");
    };
    Path::new(dir).join("nginx")
}

/// The module: `TEST_PHANTOM_MODULE`, else the cdylib next to this test binary.
pub fn module_path() -> PathBuf {
    if let Ok(p) = std::env::var("TEST_PHANTOM_MODULE") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let so = dir.join("libngx_phantom_token.so");
    assert!(
        so.exists(),
        "{} missing: run `cargo build` with the same profile first",
        so.display()
    );
    so
}

/// The nginx command, under `PHANTOM_TEST_WRAPPER` when set (e.g. a valgrind command line).
fn nginx_command() -> Command {
    match std::env::var("PHANTOM_TEST_WRAPPER") {
        Ok(w) if !w.trim().is_empty() => {
            let mut parts = w.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap());
            cmd.args(parts).arg(nginx_binary());
            cmd
        }
        _ => Command::new(nginx_binary()),
    }
}

/// How long nginx may take to listen (much longer under a wrapper such as valgrind).
fn startup_time() -> Duration {
    if std::env::var("PHANTOM_TEST_WRAPPER").is_ok_and(|w| !w.trim().is_empty()) {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(10)
    }
}

/// A port that was free a moment ago, taken below the kernel's ephemeral range so that
/// no other test's `bind(0)` listener or outgoing connection can grab it before nginx
/// binds it (falls back to `bind(0)` when the range leaves no room).
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let low = ephemeral_low().min(32768);
    if low > 12000 {
        let span = low - 10000;
        let base = (std::process::id() as usize * 7919) % span;
        for _ in 0..200 {
            let port = 10000 + (base + NEXT.fetch_add(1, Ordering::SeqCst)) % span;
            if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_low() -> usize {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A new empty directory for one test's files.
pub fn fresh_dir() -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("phantom-test-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Basic credentials of the development identity server's default client.
pub const CLIENT_BASIC: &str = "Basic Z2F0ZXdheTpzZWNyZXQ="; // gateway:secret

/// A standard introspection location for the identity server on `ids_port`.
pub fn introspection_location(ids_port: u16, extra: &str) -> String {
    let pass = if extra.contains("proxy_pass_request_headers") {
        ""
    } else {
        "proxy_pass_request_headers off;"
    };
    let accept = if extra.contains("Accept") {
        ""
    } else {
        "proxy_set_header Accept \"application/jwt\";"
    };
    format!(
        "location = /_introspect {{
            internal;
            {pass}
            {accept}
            proxy_set_header Content-Type \"application/x-www-form-urlencoded\";
            proxy_set_header Authorization \"{CLIENT_BASIC}\";
            proxy_connect_timeout 2s;
            proxy_read_timeout 3s;
            {extra}
            proxy_pass http://127.0.0.1:{ids_port}/oauth/introspect;
        }}"
    )
}

/// A protected `location /` proxying to the echo server.
pub fn api_location(echo_port: u16, extra: &str) -> String {
    format!(
        "location / {{
            phantom_token on;
            phantom_token_introspection_endpoint /_introspect;
            {extra}
            proxy_pass http://127.0.0.1:{echo_port};
        }}"
    )
}

/// Identity server, echo API and nginx in the usual arrangement.
pub struct Stack {
    pub ids: IdServer,
    pub echo: EchoServer,
    pub nginx: Nginx,
}

impl Stack {
    /// `api` goes into the protected location, `http` into the http block.
    pub fn start(http: &str, api: &str) -> Stack {
        Stack::with_ids(IdConfig::default(), http, api, "")
    }

    pub fn with_ids(cfg: IdConfig, http: &str, api: &str, introspect: &str) -> Stack {
        Stack::with_workers(2, cfg, http, api, introspect)
    }

    pub fn with_workers(
        workers: usize,
        cfg: IdConfig,
        http: &str,
        api: &str,
        introspect: &str,
    ) -> Stack {
        let ids = IdServer::start(cfg).unwrap();
        let echo = EchoServer::start().unwrap();
        let server = format!(
            "{}\n{}",
            api_location(echo.port(), api),
            introspection_location(ids.port(), introspect)
        );
        let nginx = Nginx::start_workers(workers, http, &server, "");
        Stack { ids, echo, nginx }
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http::request(self.nginx.port, "GET", path, headers, None)
    }

    pub fn get_bearer(&self, path: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.get(path, &[("Authorization", &auth)])
    }
}

/// A running nginx master with its prefix directory.
pub struct Nginx {
    pub dir: PathBuf,
    pub port: u16,
    /// Where HTTP/2 (prior knowledge) is served: `port` on nginx >= 1.25.1, a second
    /// listener before (a plaintext `listen ... http2` port speaks only HTTP/2 there).
    pub h2_port: u16,
    /// Main-context lines ahead of the module's `load_module` (other modules loaded first).
    before: String,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx with `http` in the http block and `server` in a server on a free port.
    pub fn start(http: &str, server: &str) -> Nginx {
        Nginx::start_with(http, server, "")
    }

    /// As [`Nginx::start`], with `main` added to the main context.
    pub fn start_with(http: &str, server: &str, main: &str) -> Nginx {
        Nginx::start_workers(2, http, server, main)
    }

    /// As [`Nginx::start_with`], with `workers` worker processes.
    pub fn start_workers(workers: usize, http: &str, server: &str, main: &str) -> Nginx {
        Nginx::start_after("", workers, http, server, main)
    }

    /// As [`Nginx::start_workers`], with `before` ahead of the module's `load_module` line
    /// (e.g. other modules' `load_module` lines, to choose the load order). `main` comes
    /// after it, so `load_module` lines there load after the module.
    pub fn start_after(
        before: &str,
        workers: usize,
        http: &str,
        server: &str,
        main: &str,
    ) -> Nginx {
        Nginx::start_full(before, workers, http, |_| server.to_string(), main)
    }

    /// As [`Nginx::start_workers`], with the server block's text made for the port nginx
    /// will listen on (e.g. a `listen ... quic` line on the same port number).
    pub fn start_on(
        workers: usize,
        http: &str,
        server: impl Fn(u16) -> String,
        main: &str,
    ) -> Nginx {
        Nginx::start_full("", workers, http, server, main)
    }

    fn start_full(
        before: &str,
        workers: usize,
        http: &str,
        server: impl Fn(u16) -> String,
        main: &str,
    ) -> Nginx {
        for _ in 0..5 {
            let port = free_port();
            let h2_port = if cfg!(nginx1_25_1) { port } else { free_port() };
            let dir = fresh_dir();
            let main = format!("worker_processes {workers};\n{main}");
            let conf = render(&dir, port, h2_port, before, &main, http, &server(port));
            fs::write(dir.join("nginx.conf"), conf).unwrap();
            let mut n = Nginx {
                dir,
                port,
                h2_port,
                before: before.to_string(),
                child: None,
            };
            match n.spawn() {
                Ok(()) => return n,
                Err(e) if e.contains("Address already in use") => continue,
                Err(e) => panic!("nginx failed to start:\n{e}"),
            }
        }
        panic!("no free port for nginx");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = nginx_command()
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        self.child = Some(child);
        let deadline = Instant::now() + startup_time();
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}\n{}", self.error_log()));
            }
            match probe(self.port, &self.marker()) {
                Probe::Ours => return Ok(()),
                Probe::Foreign => {
                    return Err("Address already in use: another server answered".into())
                }
                Probe::NotYet => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not listening after 10s\n{}", self.error_log()))
    }

    /// What the probe server of this instance answers with (unique per test directory).
    fn marker(&self) -> String {
        probe_marker(&self.dir)
    }

    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Waits until `needle` appears in the error log (log writes are asynchronous to us).
    pub fn wait_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.error_log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// `nginx -s reload` and wait until new workers serve.
    pub fn reload(&self) {
        let before = self.error_log().matches("start worker process").count();
        self.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.error_log().matches("start worker process").count() > before {
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("reload did not start new workers:\n{}", self.error_log());
    }

    /// Rewrites the configuration and reloads.
    pub fn reconfigure(&self, http: &str, server: &str) {
        let conf = render(
            &self.dir,
            self.port,
            self.h2_port,
            &self.before,
            "worker_processes 2;",
            http,
            server,
        );
        fs::write(self.dir.join("nginx.conf"), conf).unwrap();
        self.reload();
    }

    /// Asserts no crash or alert lines were logged.
    pub fn assert_clean_log(&self) {
        let log = self.error_log();
        for bad in [
            "[alert]",
            "[emerg]",
            "[crit]",
            "exited on signal",
            "segfault",
        ] {
            assert!(!log.contains(bad), "error log contains {bad}:\n{log}");
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGQUIT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "nginx prefix kept at {}\n{}",
                self.dir.display(),
                self.error_log()
            );
        }
    }
}

/// What a readiness probe found on the port.
enum Probe {
    Ours,
    Foreign,
    NotYet,
}

fn probe_marker(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// Readiness is a full HTTP exchange with this instance's probe server, not a bare
/// connect: a connect also succeeds against another test's server that briefly held
/// the port, or before the workers accept.
fn probe(port: u16, marker: &str) -> Probe {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return Probe::NotYet;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /ready HTTP/1.1\r\nHost: phantom.probe\r\nConnection: close\r\n\r\n";
    if std::io::Write::write_all(&mut s, req.as_bytes()).is_err() {
        return Probe::NotYet;
    }
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut buf);
    let text = String::from_utf8_lossy(&buf);
    if text.contains(&format!("X-Phantom-Probe: {marker}")) {
        Probe::Ours
    } else if text.starts_with("HTTP/") {
        Probe::Foreign
    } else {
        Probe::NotYet
    }
}

/// Runs `nginx -t` on a configuration and returns (success, output).
pub fn nginx_test_config(http: &str, server: &str) -> (bool, String) {
    let dir = fresh_dir();
    let (port, h2_port) = (free_port(), free_port());
    let h2_port = if cfg!(nginx1_25_1) { port } else { h2_port };
    let conf = render(&dir, port, h2_port, "", "worker_processes 1;", http, server);
    fs::write(dir.join("nginx.conf"), &conf).unwrap();
    test_config_file(&dir, &dir.join("nginx.conf"))
}

/// Runs `nginx -t` on a full configuration file with prefix `dir`.
pub fn test_config_file(dir: &Path, conf: &Path) -> (bool, String) {
    let out = Command::new(nginx_binary())
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.success(), text)
}

fn render(
    dir: &Path,
    port: u16,
    h2_port: u16,
    before: &str,
    main: &str,
    http: &str,
    server: &str,
) -> String {
    let d = dir.display();
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let http2 = if cfg!(nginx1_25_1) {
        "http2 on;".to_string()
    } else {
        format!("listen 127.0.0.1:{h2_port} http2;")
    };
    format!(
        "{before}
load_module {module};
{user}
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log info;
{main}
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    {http}
    server {{
        listen 127.0.0.1:{port};
        {http2}
        {server}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name phantom.probe;
        access_log off;
        location = /ready {{
            phantom_token off;
            add_header X-Phantom-Probe {marker};
            return 204;
        }}
    }}
}}
",
        marker = probe_marker(dir),
        module = module_path().display(),
    )
}
