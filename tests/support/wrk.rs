//! wrk load on an instance, with the count of every status (a failed request is any
//! status but 200, or a socket error).

use std::fs;
use std::path::Path;
use std::process::Command;

/// wrk on one instance: half the requests with a few hot tokens, half with cold tokens in
/// turn (each a Redis lookup and write, and an introspection unless another instance was
/// first). Prints `STATUS 200=<n> other=<n> p99us=<n> maxus=<n>`.
pub fn wrk_on(
    port: u16,
    dir: &Path,
    hot: &[String],
    cold: &[String],
    seconds: u64,
) -> std::thread::JoinHandle<String> {
    fs::write(dir.join("hot.tokens"), hot.join("\n")).unwrap();
    fs::write(dir.join("cold.tokens"), cold.join("\n")).unwrap();
    let script = format!(
        r#"local hot, cold = {{}}, {{}}
for line in io.lines("{hot}") do hot[#hot + 1] = line end
for line in io.lines("{cold}") do cold[#cold + 1] = line end
local n = 0
request = function()
  n = n + 1
  local t
  if n % 2 == 0 then t = hot[math.random(#hot)] else t = cold[math.floor(n / 2) % #cold + 1] end
  return wrk.format("GET", "/", {{ Authorization = "Bearer " .. t }})
end
s200, sother = 0, 0
response = function(status)
  if status == 200 then s200 = s200 + 1 else sother = sother + 1 end
end
local threads = {{}}
setup = function(t) table.insert(threads, t) end
done = function(summary, latency)
  local a, b = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("s200"); b = b + t:get("sother") end
  io.write(string.format("STATUS 200=%d other=%d errors=%d p99us=%d maxus=%d\n", a, b,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(99), latency.max))
end
"#,
        hot = dir.join("hot.tokens").display(),
        cold = dir.join("cold.tokens").display(),
    );
    let path = dir.join("fleet.lua");
    fs::write(&path, script).unwrap();
    std::thread::spawn(move || {
        let out = Command::new("wrk")
            .args([
                "-t1",
                "-c6",
                "--timeout",
                "5s",
                &format!("-d{seconds}s"),
                "-s",
            ])
            .arg(path)
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .expect("wrk (scripts/deps.sh installs it)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn count(out: &str, key: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in wrk output:\n{out}"))
}

/// Checks a [`wrk_on`] run of instance `i`: every response a 200 and no socket error (after
/// printing its counts); returns its p99 in ms.
pub fn all_200(i: usize, out: &str) -> f64 {
    let p99 = count(out, "p99us=") as f64 / 1000.0;
    eprintln!(
        "instance {i}: {} x 200, {} other, {} errors, p99 {p99:.1} ms, max {:.1} ms",
        count(out, "200="),
        count(out, "other="),
        count(out, "errors="),
        count(out, "maxus=") as f64 / 1000.0,
    );
    assert_eq!(count(out, "other="), 0, "instance {i}: {out}");
    assert_eq!(count(out, "errors="), 0, "instance {i}: {out}");
    p99
}

/// [`wrk_on`] each of `nodes` for `seconds` (the hot tokens, and cold ones issued by `ids`)
/// while `fault` runs (from 1.5 s in); every response is a 200. Returns the p99 of each
/// instance (ms).
pub fn under_load(
    ids: &super::IdServer,
    nodes: &[&super::Nginx],
    hot: &[String],
    seconds: u64,
    fault: impl FnOnce(),
) -> Vec<f64> {
    let cold: Vec<String> = (0..seconds * 4000)
        .map(|_| ids.issue("read", 300))
        .collect();
    let runs: Vec<_> = nodes
        .iter()
        .map(|n| wrk_on(n.port, &n.dir, hot, &cold, seconds))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    fault();
    let mut p99 = Vec::new();
    for (i, r) in runs.into_iter().enumerate() {
        let out = r.join().unwrap();
        p99.push(all_200(i, &out));
        assert!(count(&out, "200=") > 500, "too little traffic: {out}");
    }
    p99
}
