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
