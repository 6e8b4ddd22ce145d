//! Load with reloads (issue 5): wrk mixes cached, new, malformed and missing tokens against
//! 2 workers while the configuration is reloaded; no 5xx, no crash, no opaque token upstream.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const SECONDS: u64 = 15;

fn lua_script(tokens: &[String]) -> String {
    let list: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"
local tokens = {{ {} }}
local n = 0
request = function()
  n = n + 1
  local r = math.random(100)
  local h = {{}}
  if r <= 60 then h["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]
  elseif r <= 75 then h["Authorization"] = "Bearer unknown-" .. math.random(100000)
  elseif r <= 90 then h["Authorization"] = "Bearer not a token!"
  end
  return wrk.format("GET", "/load/" .. n, h)
end
s200, s401, s5xx, sother = 0, 0, 0, 0
response = function(status, headers, body)
  if status == 200 then s200 = s200 + 1
  elseif status == 401 then s401 = s401 + 1
  elseif status >= 500 then s5xx = s5xx + 1
  else sother = sother + 1 end
end
local threads = {{}}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local t = {{0, 0, 0, 0}}
  for _, th in ipairs(threads) do
    t[1] = t[1] + th:get("s200"); t[2] = t[2] + th:get("s401")
    t[3] = t[3] + th:get("s5xx"); t[4] = t[4] + th:get("sother")
  end
  io.write(string.format("STATUS 200=%d 401=%d 5xx=%d other=%d\n", t[1], t[2], t[3], t[4]))
end
"#,
        list.join(", ")
    )
}

fn count(out: &str, key: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in wrk output:\n{out}"))
}

#[test]
fn sustained_mixed_load_with_reloads() {
    if Command::new("wrk").arg("--version").output().is_err() {
        panic!("wrk is required (scripts/deps.sh installs it)");
    }
    let http = "phantom_token_cache_zone c:4m negative_ttl=5s;";
    let s = Stack::start(http, "phantom_token_cache c;");
    let tokens: Vec<String> = (0..40).map(|_| s.ids.issue("read", 300)).collect();
    let script = s.nginx.dir.join("mix.lua");
    std::fs::write(&script, lua_script(&tokens)).unwrap();
    let url = format!("http://127.0.0.1:{}/", s.nginx.port);
    let wrk = std::thread::spawn(move || {
        Command::new("wrk")
            .args(["-t2", "-c32", &format!("-d{SECONDS}s"), "-s"])
            .arg(script)
            .arg(url)
            .output()
            .unwrap()
    });
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(SECONDS / 4));
        s.nginx.reload();
    }
    let out = wrk.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}");
    let (ok, unauth, failed) = (
        count(&text, "200="),
        count(&text, "401="),
        count(&text, "5xx="),
    );
    assert!(ok > 1000 && unauth > 1000, "too little traffic: {text}");
    assert_eq!(failed, 0, "5xx under load: {text}");
    assert_eq!(count(&text, "other="), 0, "{text}");
    s.nginx.assert_clean_log();
    let log = s.nginx.error_log();
    assert!(!log.contains("exited on signal"), "a worker crashed");
    let seen = s.echo.all();
    // In-flight requests cut off when wrk stops reach the upstream without being counted.
    assert!(seen.len() as u64 >= ok, "every 200 came from the upstream");
    for r in &seen {
        let auth = r.header("authorization").unwrap_or("");
        assert!(auth.starts_with("Bearer ey"), "upstream got {auth:?}");
        assert!(
            !tokens.iter().any(|t| auth.contains(t.as_str())),
            "opaque token upstream"
        );
    }
    eprintln!(
        "load: {ok} x 200, {unauth} x 401, {failed} x 5xx; {} introspections; 3 reloads",
        s.ids.introspections()
    );
}

/// How a wrk run picks its tokens.
#[derive(Clone, Copy, PartialEq)]
enum Pick {
    /// At random from a small set: all cached after the first few requests.
    Random,
    /// Each in turn, so that (with enough tokens) every request brings an uncached one.
    InTurn,
}

fn wrk_tokens(
    port: u16,
    dir: &std::path::Path,
    name: &str,
    tokens: &[String],
    pick: Pick,
    secs: u64,
) -> std::thread::JoinHandle<String> {
    let list = dir.join(format!("{name}.tokens"));
    std::fs::write(&list, tokens.join("\n")).unwrap();
    let script = format!(
        r#"local tokens = {{}}
for line in io.lines("{}") do tokens[#tokens + 1] = line end
local n, in_turn = 0, {}
request = function()
  n = n + 1
  local t = in_turn and tokens[(n - 1) % #tokens + 1] or tokens[math.random(#tokens)]
  return wrk.format("GET", "/", {{ Authorization = "Bearer " .. t }})
end
s200, s503, sother = 0, 0, 0
response = function(status)
  if status == 200 then s200 = s200 + 1 elseif status == 503 then s503 = s503 + 1 else sother = sother + 1 end
end
local threads = {{}}
setup = function(t) table.insert(threads, t) end
done = function(summary, latency)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("s200"); b = b + t:get("s503"); c = c + t:get("sother") end
  io.write(string.format("STATUS 200=%d 503=%d other=%d maxms=%d\n", a, b, c, latency.max / 1000))
end
"#,
        list.display(),
        pick == Pick::InTurn
    );
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, script).unwrap();
    std::thread::spawn(move || {
        let out = Command::new("wrk")
            .args(["-t1", "-c8", &format!("-d{secs}s"), "-s"])
            .arg(path)
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    })
}

#[test]
fn identity_server_restart_under_load() {
    let s = Stack::start("phantom_token_cache_zone c:4m;", "phantom_token_cache c;");
    let warm: Vec<String> = (0..10).map(|_| s.ids.issue("read", 300)).collect();
    // More cold tokens than requests: every cold request needs the identity server.
    let cold: Vec<String> = (0..100_000).map(|_| s.ids.issue("read", 300)).collect();
    for t in &warm {
        assert_eq!(s.get_bearer("/", t).status, 200);
    }
    let warm_run = wrk_tokens(s.nginx.port, &s.nginx.dir, "warm", &warm, Pick::Random, 9);
    let cold_run = wrk_tokens(s.nginx.port, &s.nginx.dir, "cold", &cold, Pick::InTurn, 9);
    std::thread::sleep(Duration::from_secs(3));
    let before = s.ids.introspections();
    s.ids.stop();
    std::thread::sleep(Duration::from_secs(3));
    s.ids.restart().expect("restart on the same port");
    let (warm_out, cold_out) = (warm_run.join().unwrap(), cold_run.join().unwrap());
    eprintln!("warm: {warm_out}\ncold: {cold_out}");
    assert_eq!(
        count(&warm_out, "503="),
        0,
        "cached tokens must keep working: {warm_out}"
    );
    assert_eq!(count(&warm_out, "other="), 0, "{warm_out}");
    assert!(count(&warm_out, "200=") > 1000, "{warm_out}");
    assert_eq!(
        count(&cold_out, "other="),
        0,
        "only 200 or 503 while restarting: {cold_out}"
    );
    assert!(
        count(&cold_out, "503=") > 0,
        "the outage was not seen: {cold_out}"
    );
    assert!(
        s.ids.introspections() > before,
        "requests resumed after the restart"
    );
    for out in [&warm_out, &cold_out] {
        assert!(
            count(out, "maxms=") < 4000,
            "a request outlived the timeouts: {out}"
        );
    }
    s.nginx.assert_clean_log();
}
