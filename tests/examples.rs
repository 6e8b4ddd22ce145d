//! Every example configuration in nginx-conf/ passes `nginx -t` with the module loaded.

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
        let dir = std::env::temp_dir().join(format!(
            "phantom-example-{}-{}",
            std::process::id(),
            path.file_stem().unwrap().to_string_lossy()
        ));
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
        fs::write(&conf, substitute(&fs::read_to_string(path).unwrap(), &dir)).unwrap();
        let (ok, out) = test_config_file(&dir, &conf);
        assert!(ok, "{} fails nginx -t:\n{out}", path.display());
        let _ = fs::remove_dir_all(&dir);
    }
}
