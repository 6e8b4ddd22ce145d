//! Test certificates made with the `openssl` command: a CA, a server certificate for
//! `localhost` and `127.0.0.1`, a client certificate, another CA, and an expired server
//! certificate. EC P-256 keys, so making them takes milliseconds.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn ca(dir: &Path, name: &str, cn: &str) {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", &subj];
    args.extend(KEY);
    args.extend(["-keyout", &key, "-out", &crt]);
    openssl(dir, &args);
}

fn request(dir: &Path, name: &str, cn: &str) {
    let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-nodes", "-subj", &subj];
    args.extend(KEY);
    args.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &args);
}

fn sign(dir: &Path, name: &str, ext: &str) {
    let (csr, crt) = (format!("{name}.csr"), format!("{name}.crt"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            &crt,
        ],
    );
}

const CA_CONF: &str = "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n\
serial = serial\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\n[p]\ncommonName = supplied\n";

impl Pki {
    /// Makes every certificate in a fresh directory.
    pub fn new() -> Pki {
        let dir = super::fresh_dir();
        fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        ca(&dir, "ca", "Phantom Test CA");
        ca(&dir, "other-ca", "Another CA");
        request(&dir, "server", "localhost");
        sign(&dir, "server", "server.ext");
        request(&dir, "client", "gateway");
        sign(&dir, "client", "client.ext");
        // Expired: valid for one day in 2020.
        fs::write(dir.join("ca.cnf"), CA_CONF).unwrap();
        fs::write(dir.join("index.txt"), "").unwrap();
        fs::write(dir.join("serial"), "1000\n").unwrap();
        request(&dir, "expired", "localhost");
        openssl(
            &dir,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-cert",
                "ca.crt",
                "-keyfile",
                "ca.key",
                "-in",
                "expired.csr",
                "-out",
                "expired.crt",
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200102000000Z",
                "-extfile",
                "server.ext",
                "-notext",
            ],
        );
        Pki { dir }
    }

    /// The path of one of the files (`ca.crt`, `server.key`, ...).
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `redis-server` arguments for a TLS port serving `cert` (`server` or `expired`),
    /// asking clients for a certificate when `auth_clients`.
    pub fn redis_tls_args(&self, tls_port: u16, cert: &str, auth_clients: bool) -> Vec<String> {
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            self.path(&format!("{cert}.crt")),
            "--tls-key-file".into(),
            self.path(&format!("{cert}.key")),
            "--tls-ca-cert-file".into(),
            self.path("ca.crt"),
            "--tls-auth-clients".into(),
            if auth_clients { "yes" } else { "no" }.into(),
        ]
    }
}
