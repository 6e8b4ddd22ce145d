//! A private Redis for the fleet tests: Debian's `redis-server` (or `TEST_REDIS_SERVER`, or a
//! binary the test names: Redis 6.2+, Valkey 8+) on a free 127.0.0.1 port with its own
//! directory, no persistence, and a small synchronous RESP2 client.
//!
//! Never a system Redis: the server is always one this process spawned, on a port from
//! [`super::free_port`] (never 6379), and it is killed when the handle is dropped.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a reply may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the server may take to answer PING after it is spawned.
const STARTUP: Duration = Duration::from_secs(5);

/// The `redis-server` binary: `TEST_REDIS_SERVER` (a `redis-server` or `valkey-server`), else
/// Debian's.
pub fn redis_server_binary() -> PathBuf {
    std::env::var_os("TEST_REDIS_SERVER")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// What a server binary says it is (`--version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// `Redis` or `Valkey`.
    pub name: String,
    /// Major, minor, patch.
    pub version: (u32, u32, u32),
}

impl ServerVersion {
    /// Runs `<binary> --version` (`Redis server v=7.0.15 sha=...`, `Valkey server v=8.1.1 ...`).
    pub fn of(binary: &Path) -> Result<ServerVersion, String> {
        let out = Command::new(binary)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ServerVersion::parse(&text)
            .ok_or_else(|| format!("{} --version answered {text:?}", binary.display()))
    }

    fn parse(text: &str) -> Option<ServerVersion> {
        let mut words = text.split_whitespace();
        let name = words.next()?.to_string();
        let v = words.find_map(|w| w.strip_prefix("v="))?;
        let mut n = v.split('.').map(|p| p.parse::<u32>().ok());
        let version = (n.next()??, n.next()??, n.next().flatten().unwrap_or(0));
        Some(ServerVersion { name, version })
    }

    /// Whether the server knows `enable-debug-command` (Redis 7.0+, every Valkey); before it,
    /// `DEBUG` is always allowed and the flag is a fatal configuration error.
    pub fn has_debug_command_flag(&self) -> bool {
        self.name.eq_ignore_ascii_case("valkey") || self.version >= (7, 0, 0)
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b, c) = self.version;
        write!(f, "{} {a}.{b}.{c}", self.name)
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A null bulk string or null array.
    Nil,
    /// A simple string (`+OK`).
    Ok(String),
    /// An error reply (`-ERR ...`).
    Err(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Value>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) => Some(b),
            Value::Ok(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// A bulk or simple string as text (lossy).
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// A simple-string reply (`+OK`), not an error.
    pub fn is_ok_reply(&self) -> bool {
        matches!(self, Value::Ok(_))
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Every byte string inside, depth first, joined with `\n`.
    pub fn flatten(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.flatten_into(&mut out);
        out
    }

    fn flatten_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Nil => {}
            Value::Ok(s) | Value::Err(s) => push_item(out, s.as_bytes()),
            Value::Int(i) => push_item(out, i.to_string().as_bytes()),
            Value::Bulk(b) => push_item(out, b),
            Value::Array(a) => a.iter().for_each(|v| v.flatten_into(out)),
        }
    }
}

fn push_item(out: &mut Vec<u8>, item: &[u8]) {
    if !out.is_empty() {
        out.push(b'\n');
    }
    out.extend_from_slice(item);
}

/// Encodes a command as a RESP2 array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Reads one line without its `\r\n` (EOF is an error).
fn read_line(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "connection closed in a reply: {:?}",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

/// Reads one RESP2 reply.
pub fn read_value(r: &mut impl BufRead) -> std::io::Result<Value> {
    let line = read_line(r)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err(bad("empty reply line".into()));
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let number = || -> std::io::Result<i64> {
        text.parse()
            .map_err(|_| bad(format!("bad number {text:?}")))
    };
    match kind {
        b'+' => Ok(Value::Ok(text.clone())),
        b'-' => Ok(Value::Err(text.clone())),
        b':' => Ok(Value::Int(number()?)),
        b'$' => {
            let n = number()?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf)?;
            if !buf.ends_with(b"\r\n") {
                return Err(bad("bulk string without CRLF".into()));
            }
            buf.truncate(n as usize);
            Ok(Value::Bulk(buf))
        }
        b'*' => {
            let n = number()?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            (0..n)
                .map(|_| read_value(r))
                .collect::<std::io::Result<Vec<_>>>()
                .map(Value::Array)
        }
        other => Err(bad(format!("unknown reply type {:?}", other as char))),
    }
}

/// A connection: one command, one reply.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16, timeout: Duration) -> std::io::Result<Conn> {
        Conn::open_at([127, 0, 0, 1], port, timeout)
    }

    /// As [`Conn::open`], on another loopback address.
    pub fn open_at(ip: [u8; 4], port: u16, timeout: Duration) -> std::io::Result<Conn> {
        assert_ne!(port, 6379, "never the system Redis");
        let addr = SocketAddr::from((ip, port));
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s),
        })
    }

    pub fn cmd(&mut self, args: &[&[u8]]) -> std::io::Result<Value> {
        self.reader.get_mut().write_all(&encode(args))?;
        read_value(&mut self.reader)
    }
}

/// A `redis-server` child process on 127.0.0.1, killed on drop.
pub struct Redis {
    pub port: u16,
    /// The server binary and what it says it is.
    binary: PathBuf,
    version: ServerVersion,
    child: Option<Child>,
    dir: PathBuf,
    conn: Mutex<Option<Conn>>,
    /// More arguments for `redis-server` (e.g. its TLS port and files).
    extra: Vec<String>,
    /// The loopback address it listens on (127.0.0.1 unless [`Redis::start_at`]).
    pub ip: [u8; 4],
}

impl Redis {
    /// Starts a server on a free port (another port if the chosen one was taken meanwhile).
    pub fn start() -> Redis {
        Redis::start_with(&redis_server_binary())
    }

    /// As [`Redis::start`], with a given `redis-server` or `valkey-server` binary.
    pub fn start_with(binary: &Path) -> Redis {
        Redis::start_full(binary, &[])
    }

    /// As [`Redis::start`], with more `redis-server` arguments.
    pub fn start_with_args(extra: &[String]) -> Redis {
        Redis::start_full(&redis_server_binary(), extra)
    }

    /// As [`Redis::start`], with a given binary and more `redis-server` arguments.
    pub fn start_full(binary: &Path, extra: &[String]) -> Redis {
        Redis::try_start_full(binary, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Redis::start_full`]; why it failed instead of a panic.
    pub fn try_start_full(binary: &Path, extra: &[String]) -> Result<Redis, String> {
        let version = ServerVersion::of(binary)?;
        let mut last = String::new();
        for _ in 0..10 {
            let port = super::free_port();
            if port == 6379 {
                continue;
            }
            // A directory per attempt: a failed attempt's handle removes its own.
            let mut r = Redis {
                port,
                binary: binary.to_path_buf(),
                version: version.clone(),
                child: None,
                dir: super::fresh_dir(),
                conn: Mutex::new(None),
                extra: extra.to_vec(),
                ip: [127, 0, 0, 1],
            };
            match r.spawn() {
                Ok(()) => return Ok(r),
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => return Err(format!("redis-server failed to start:\n{e}")),
            }
        }
        Err(format!("no free port for redis-server:\n{last}"))
    }

    /// Starts a server on `port`, e.g. again after [`Redis::stop`] (the nginx instances name the
    /// port in their configuration). Retries for a few seconds while the port is still taken.
    pub fn start_on(port: u16) -> Redis {
        Redis::start_at([127, 0, 0, 1], port)
    }

    /// Starts a server on another loopback address (`127.0.0.x`) and `port` (servers that
    /// a DNS name moves between share the port).
    pub fn start_at(ip: [u8; 4], port: u16) -> Redis {
        let binary = redis_server_binary();
        let mut r = Redis {
            port,
            version: ServerVersion::of(&binary).unwrap_or_else(|e| panic!("{e}")),
            binary,
            child: None,
            dir: super::fresh_dir(),
            conn: Mutex::new(None),
            extra: Vec::new(),
            ip,
        };
        r.spawn_retrying();
        r
    }

    /// Starts this server again on the same port and directory, after [`Redis::stop`]. The data
    /// is gone (no persistence).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after stop");
        self.spawn_retrying();
    }

    fn spawn_retrying(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if e.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("redis-server failed to start on {}:\n{e}", self.port),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// The server's log file.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The directory the server runs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the server binary says it is.
    pub fn version(&self) -> &ServerVersion {
        &self.version
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Result<(), String> {
        assert_ne!(self.port, 6379, "never the system Redis port");
        let log = self.log_path();
        let _ = fs::remove_file(&log);
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--port", &self.port.to_string()])
            .arg("--bind")
            .arg(std::net::Ipv4Addr::from(self.ip).to_string())
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "yes"]);
        if self.version.has_debug_command_flag() {
            cmd.args(["--enable-debug-command", "local"]);
        }
        let child = cmd
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        self.child = Some(child);
        *self.conn.lock().unwrap() = None;
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            if self.log().contains("Address already in use") {
                self.kill();
                return Err(format!("Address already in use\n{}", self.log()));
            }
            if self.answers_as_ours() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log();
        self.kill();
        Err(format!("no PONG after {STARTUP:?}\n{log}"))
    }

    /// Whether PING answers +PONG and the answering server is our child.
    fn answers_as_ours(&self) -> bool {
        let Ok(mut c) = Conn::open_at(self.ip, self.port, Duration::from_millis(500)) else {
            return false;
        };
        if c.cmd(&[b"PING"]).ok() != Some(Value::Ok("PONG".into())) {
            return false;
        }
        let info = c
            .cmd(&[b"INFO", b"server"])
            .ok()
            .and_then(|v| v.text())
            .unwrap_or_default();
        let pid = self.pid().unwrap_or(0);
        info.lines()
            .any(|l| l.trim() == format!("process_id:{pid}"))
    }

    fn kill(&mut self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// Kills the server (SIGKILL) and waits for it: connections are refused afterwards.
    pub fn stop(&mut self) {
        self.kill();
    }

    fn signal(&self, sig: i32) {
        let pid = self.pid().expect("redis-server is not running");
        // SAFETY: signalling our own child process.
        let rc = unsafe { libc::kill(pid as i32, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel, never answered.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Runs one command on the kept connection (opened again if it broke), or an I/O error.
    pub fn try_cmd(&self, args: &[&[u8]]) -> std::io::Result<Value> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = guard.as_mut() {
            match c.cmd(args) {
                Ok(v) => return Ok(v),
                Err(_) => *guard = None,
            }
        }
        let mut c = Conn::open_at(self.ip, self.port, READ_TIMEOUT)?;
        let v = c.cmd(args)?;
        *guard = Some(c);
        Ok(v)
    }

    /// Runs one command; panics on I/O errors (an error reply is a [`Value::Err`]).
    pub fn cmd(&self, args: &[&[u8]]) -> Value {
        let show = || {
            args.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis {}: {e}", show()))
    }

    /// As [`Redis::cmd`] with text arguments.
    pub fn cmd_str(&self, args: &[&str]) -> Value {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd(&args)
    }

    /// Every key name, with SCAN until the cursor is back at 0.
    pub fn keys(&self) -> Vec<String> {
        let mut cursor = "0".to_string();
        let mut keys = Vec::new();
        loop {
            let reply = self.cmd_str(&["SCAN", &cursor, "MATCH", "*", "COUNT", "1000"]);
            let parts = reply
                .array()
                .unwrap_or_else(|| panic!("SCAN answered {reply:?}"));
            cursor = parts[0].text().expect("SCAN cursor");
            for k in parts[1].array().expect("SCAN keys") {
                keys.push(k.text().expect("key name"));
            }
            if cursor == "0" {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// The value of a string key.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.cmd_str(&["GET", key]) {
            Value::Bulk(b) => Some(b),
            Value::Nil => None,
            other => panic!("GET {key}: {other:?}"),
        }
    }

    /// The remaining time to live of a key in ms (-1: none, -2: no such key).
    pub fn pttl(&self, key: &str) -> i64 {
        self.cmd_str(&["PTTL", key]).int().expect("PTTL")
    }

    /// Every key with its content: the string, set members, stream entries (ids, fields and
    /// values), list items, hash fields and values, or sorted set members, joined with `\n`.
    pub fn dump_all(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for key in self.keys() {
            let kind = self.cmd_str(&["TYPE", &key]).text().unwrap_or_default();
            let content = match kind.as_str() {
                "string" => self.cmd_str(&["GET", &key]).flatten(),
                "set" => self.cmd_str(&["SMEMBERS", &key]).flatten(),
                "stream" => self.cmd_str(&["XRANGE", &key, "-", "+"]).flatten(),
                "list" => self.cmd_str(&["LRANGE", &key, "0", "-1"]).flatten(),
                "hash" => self.cmd_str(&["HGETALL", &key]).flatten(),
                "zset" => self
                    .cmd_str(&["ZRANGE", &key, "0", "-1", "WITHSCORES"])
                    .flatten(),
                "none" => continue, // expired between SCAN and TYPE
                other => panic!("{key}: unexpected type {other}"),
            };
            out.push((key, content));
        }
        out
    }

    /// Starts capturing every command the server receives (MONITOR) until the handle drops.
    pub fn monitor(&self) -> Monitor {
        Monitor::start(self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let log = self.log();
        self.kill();
        if std::thread::panicking() {
            eprintln!("redis-server log ({}):\n{log}", self.dir.display());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A MONITOR connection whose output a background thread collects.
pub struct Monitor {
    stream: TcpStream,
    text: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    fn start(port: u16) -> Monitor {
        let mut c = Conn::open(port, READ_TIMEOUT).expect("connect for MONITOR");
        let first = c.cmd(&[b"MONITOR"]).expect("MONITOR");
        assert_eq!(first, Value::Ok("OK".into()), "MONITOR answered {first:?}");
        let stream = c.reader.get_ref().try_clone().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let text = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (text.clone(), stop.clone());
        let mut reader = c.reader;
        let thread = std::thread::spawn(move || {
            let mut line = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        if line.ends_with(b"\n") {
                            t.lock().unwrap().extend_from_slice(&line);
                            line.clear();
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            t.lock().unwrap().extend_from_slice(&line);
        });
        Monitor {
            stream,
            text,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything captured so far (one `+<time> [db addr] "CMD" "arg" ...` line per command).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Waits up to 5 s until the capture contains `needle`.
    pub fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The quoted arguments of a MONITOR line, unescaped.
pub fn monitor_args(line: &str) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    let mut bytes = line.bytes().skip_while(|&b| b != b']').skip(1).peekable();
    while let Some(b) = bytes.next() {
        if b != b'"' {
            continue;
        }
        let mut arg = Vec::new();
        while let Some(c) = bytes.next() {
            match c {
                b'"' => break,
                b'\\' => match bytes.next() {
                    Some(b'n') => arg.push(b'\n'),
                    Some(b'r') => arg.push(b'\r'),
                    Some(b't') => arg.push(b'\t'),
                    Some(b'a') => arg.push(7),
                    Some(b'b') => arg.push(8),
                    Some(b'x') => {
                        let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                        let hex = std::str::from_utf8(&hex).unwrap_or("");
                        arg.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    }
                    Some(other) => arg.push(other),
                    None => break,
                },
                c => arg.push(c),
            }
        }
        args.push(arg);
    }
    args
}
