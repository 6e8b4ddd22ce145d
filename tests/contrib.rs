//! contrib/: the Grafana dashboard and the Prometheus alerts are well formed and use only
//! metrics (and label values) that `phantom_token_status` exposes.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

fn contrib(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    (path, text)
}

/// The PromQL expressions of the dashboard (targets and template queries).
fn dashboard_exprs() -> Vec<String> {
    let (_, text) = contrib("grafana-dashboard.json");
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(d.is_object());
    assert!(d["title"].is_string() && d["schemaVersion"].as_u64() >= Some(36));
    let vars = d["templating"]["list"].as_array().expect("templating");
    let var = |n: &str| vars.iter().find(|v| v["name"] == n);
    assert_eq!(var("DS_PROMETHEUS").unwrap()["type"], "datasource");
    let instance = var("instance").expect("instance variable");
    let mut exprs = vec![instance["definition"].as_str().unwrap().to_string()];
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{}", panels.len());
    for p in panels {
        let title = p["title"].as_str().expect("panel title");
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            let e = t["expr"].as_str().expect("expr");
            assert!(e.contains("$instance"), "{title}: {e}");
            exprs.push(e.to_string());
        }
    }
    exprs
}

/// The `expr:` values of the rule file (inline or `|`/`>` blocks), with a structural check,
/// and, when PyYAML is there, a real parse that must agree.
fn alert_exprs() -> Vec<String> {
    let (path, text) = contrib("prometheus-alerts.yml");
    assert!(!text.contains('\t'), "tabs in YAML");
    assert!(text.lines().any(|l| l == "groups:"), "no top-level groups");
    let count = |key: &str| {
        text.lines()
            .filter(|l| l.trim_start().trim_start_matches("- ").starts_with(key))
            .count()
    };
    let alerts = count("alert:");
    assert!(alerts >= 3, "{alerts} alerts");
    for key in ["expr:", "for:", "severity:", "summary:", "description:"] {
        assert_eq!(count(key), alerts, "every alert has {key}");
    }
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(v) = l.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let v = v.trim();
        if v.starts_with(['|', '>']) {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|b| b.trim().is_empty() || indent(b) > indent(l))
                .copied()
                .collect();
            exprs.push(block.join("\n"));
        } else {
            exprs.push(v.to_string());
        }
    }
    let norm = |e: &str| e.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut mine: Vec<String> = exprs.iter().map(|e| norm(e)).collect();
    mine.sort();
    let has_yaml = Command::new("python3")
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_yaml {
        let out = Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut parsed = Vec::new();
        for g in doc["groups"].as_array().expect("groups") {
            assert!(g["name"].is_string());
            for r in g["rules"].as_array().expect("rules") {
                let name = r["alert"].as_str().expect("alert");
                for key in ["summary", "description"] {
                    assert!(r["annotations"][key].is_string(), "{name}: {key}");
                }
                let sev = r["labels"]["severity"].as_str();
                assert!(matches!(sev, Some("warning" | "critical")), "{name}");
                parsed.push(norm(r["expr"].as_str().expect("expr")));
            }
        }
        parsed.sort();
        assert_eq!(parsed, mine, "PyYAML and the line reader disagree");
    } else {
        eprintln!("PyYAML not importable: structural check of the rule file only");
    }
    exprs
}

/// `phantom_token_*` names in `text`, histogram series reduced to their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("phantom_token_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

/// `label="value"` matchers on the module's own labels.
fn label_matchers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for label in ["outcome", "result", "level", "reason", "scope"] {
        let pat = format!("{label}=\"");
        let mut rest = text;
        while let Some(i) = rest.find(&pat) {
            let tail = &rest[i + pat.len()..];
            let end = tail.find('"').unwrap();
            out.insert(format!("{label}=\"{}\"", &tail[..end]));
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn contrib_files_are_well_formed_and_use_only_exposed_metrics() {
    let exprs = [dashboard_exprs(), alert_exprs()].concat();
    let all = exprs.join("\n");
    let used = metric_names(&all);
    assert!(used.len() >= 10, "{used:?}");
    let s = Stack::start(
        "phantom_token_cache_zone c:1m;",
        "phantom_token_cache c; location = /metrics { phantom_token off; phantom_token_status; }",
    );
    assert_eq!(s.get("/", &[]).status, 401);
    assert_eq!(s.get_bearer("/", &s.ids.issue("read", 300)).status, 200);
    let r = support::http::request(s.nginx.port, "GET", "/metrics", &[], None);
    assert_eq!(r.status, 200);
    let scrape = r.text();
    let exposed: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    let missing: Vec<_> = used.difference(&exposed).collect();
    assert!(missing.is_empty(), "not exposed: {missing:?}\n{scrape}");
    for m in label_matchers(&all) {
        assert!(scrape.contains(&m), "no sample with {m}\n{scrape}");
    }
    assert!(scrape.contains("phantom_token_zone_entries{zone=\"c\"}"));
    assert!(scrape.contains("phantom_token_introspection_duration_seconds_bucket{le=\"+Inf\"}"));
}
