//! Every example configuration passes `nginx -t` with the module loaded: the files in
//! nginx-conf/, and the fenced ```nginx blocks of README.md and docs/*.md whose first line is
//! `# complete configuration` (the other blocks are fragments of a configuration). A block with
//! a `listen ... quic` line is checked with an nginx built for HTTP/3 only
//! (`scripts/http3.sh test`), and skipped with a note otherwise.

mod support;

use std::fs;
use std::process::Command;

use support::*;

fn substitute(text: &str, dir: &std::path::Path) -> String {
    let mut text = text
        .replace("__MODULE__", &module_path().display().to_string())
        .replace("__PREFIX__", &dir.display().to_string())
        .replace("__IDSVR__", "127.0.0.1")
        .replace(
            "/usr/lib/nginx/modules/ngx_http_phantom_token_module.so",
            &module_path().display().to_string(),
        )
        .replace(
            "load_module modules/ngx_http_phantom_token_module.so;",
            &format!("load_module {};", module_path().display()),
        )
        .replace(
            "/var/run/nginx.pid",
            &dir.join("nginx.pid").display().to_string(),
        );
    if !cfg!(nginx1_25_1) {
        // nginx before 1.25.1 enables HTTP/2 on the listen line.
        text = text
            .replace("listen 443 ssl;", "listen 443 ssl http2;")
            .replace("http2 on;", "");
    }
    let temps = format!(
        "http {{\n    client_body_temp_path {d}/cb; proxy_temp_path {d}/px; fastcgi_temp_path {d}/fc; \
         uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;",
        d = dir.display()
    );
    if text.contains("client_body_temp_path") {
        return text;
    }
    text.replacen("http {", &temps, 1)
}

fn self_signed(dir: &std::path::Path) {
    fs::create_dir_all(dir.join("tls")).unwrap();
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=api",
        ])
        .arg("-keyout")
        .arg(dir.join("tls/api.key"))
        .arg("-out")
        .arg(dir.join("tls/api.crt"))
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl could not create a test certificate");
}

#[test]
fn every_example_configuration_passes_nginx_t() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx-conf");
    let mut names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(
        names.len() >= 6,
        "expected the example configurations in {}",
        root.display()
    );
    for path in names
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
    {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let (ok, out) = nginx_t(&stem, &fs::read_to_string(path).unwrap());
        assert!(ok, "{} fails nginx -t:\n{out}", path.display());
    }
}

/// Writes `text` (with the placeholders substituted) as nginx.conf in a fresh prefix, with a
/// test certificate and a fleet key file, and runs `nginx -t` on it.
fn nginx_t(label: &str, text: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("phantom-example-{}-{label}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("logs")).unwrap();
    self_signed(&dir);
    // The fleet example's key file (redis_key=__PREFIX__/phantom-redis.key).
    fs::write(
        dir.join("phantom-redis.key"),
        "name v1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n\
         seal k1 IB8eHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE\n",
    )
    .unwrap();
    let conf = dir.join("nginx.conf");
    fs::write(&conf, substitute(text, &dir)).unwrap();
    let result = test_config_file(&dir, &conf);
    let _ = fs::remove_dir_all(&dir);
    result
}

/// The first line that marks a fenced ```nginx block as a whole configuration file.
const COMPLETE: &str = "# complete configuration";

/// `(line, text)` of each fenced ```nginx block of a Markdown file marked [`COMPLETE`].
fn complete_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    let mut other_fence = false;
    for (n, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut block, fence) {
            (Some(_), true) => out.push(block.take().unwrap()),
            (Some((_, text)), false) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, true) if other_fence => other_fence = false,
            (None, true) if line.trim() == "```nginx" => block = Some((n + 1, String::new())),
            (None, true) => other_fence = true,
            (None, false) => {}
        }
    }
    out.retain(|(_, text)| text.lines().next().is_some_and(|l| l.trim() == COMPLETE));
    out
}

/// Whether a configuration listens for HTTP/3 (`listen ... quic`), which only an nginx built
/// `--with-http_v3_module` accepts.
fn needs_http3(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("listen ")
            && l.split_whitespace()
                .any(|w| w.trim_end_matches(';') == "quic")
    })
}

#[test]
fn every_complete_configuration_in_the_docs_passes_nginx_t() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut checked = 0;
    for file in files {
        let name = file.strip_prefix(root).unwrap().display().to_string();
        for (line, text) in complete_blocks(&fs::read_to_string(&file).unwrap()) {
            if needs_http3(&text) && !support::h3::available() {
                // scripts/http3.sh test checks it with the nginx built for HTTP/3.
                eprintln!("{name}:{line}: skipped: this nginx has no HTTP/3 module");
                continue;
            }
            let label = format!("{}-{line}", name.replace(['/', '.'], "_"));
            let (ok, out) = nginx_t(&label, &text);
            assert!(
                ok,
                "{name}:{line}: the block marked `{COMPLETE}` fails nginx -t:\n{out}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected at least two blocks marked `{COMPLETE}` in README.md and docs/, found {checked}"
    );
}
