//! `phantom-devsvr idsvr|echo [options]`: the development servers as a program;
//! `phantom-devsvr dpop-proof ...`: DPoP proofs for the demo's curl commands.

use std::path::Path;
use std::process::exit;

use devsvr::client::{load_or_create_key, proof_now};
use devsvr::{EchoServer, IdConfig, IdServer};

const USAGE: &str = "usage:
  phantom-devsvr idsvr [--listen 127.0.0.1:8443] [--client-id gateway] [--client-secret secret]
                       [--lifetime 300] [--jwt-size 0] [--purge-url http://host:port/path]...
      --purge-url (repeatable; also PHANTOM_DEVSVR_PURGE_URLS, comma-separated): revocations
      at POST /oauth/revoke are announced there (POST, form body token=<token>).
  phantom-devsvr echo  [--listen 127.0.0.1:9000]
  phantom-devsvr dpop-proof --key <file> --htm <method> --htu <url> [--token <access token>]
                            [--nonce <server nonce>]
  phantom-devsvr dpop-proof --key <file> --jkt
      Prints a DPoP proof (RFC 9449) signed with the ES256 key in <file> (PKCS#8, base64;
      created if missing), or the key's thumbprint (the cnf.jkt of tokens bound to it).";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, opts)) = args.split_first() else {
        fail("missing command")
    };
    if cmd == "dpop-proof" {
        dpop_proof(opts);
        return;
    }
    let mut listen = None;
    let mut cfg = IdConfig::default();
    if let Ok(urls) = std::env::var("PHANTOM_DEVSVR_PURGE_URLS") {
        cfg.purge_urls.extend(
            urls.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from),
        );
    }
    for pair in opts.chunks(2) {
        let [flag, value] = pair else {
            fail(&format!("{} needs a value", pair[0]))
        };
        match flag.as_str() {
            "--listen" => listen = Some(value.clone()),
            "--client-id" => cfg.client_id = value.clone(),
            "--client-secret" => cfg.client_secret = value.clone(),
            "--lifetime" => cfg.token_lifetime = number(flag, value),
            "--jwt-size" => cfg.jwt_size = number(flag, value) as usize,
            "--purge-url" => {
                if !value.starts_with("http://") {
                    fail(&format!(
                        "--purge-url needs a plain http:// URL, got {value}"
                    ))
                }
                cfg.purge_urls.push(value.clone())
            }
            _ => fail(&format!("unknown option {flag}")),
        }
    }
    let addr = match cmd.as_str() {
        "idsvr" => {
            for url in &cfg.purge_urls {
                eprintln!("phantom-devsvr: revocations are announced to {url}");
            }
            let s = IdServer::start_on(listen.as_deref().unwrap_or("127.0.0.1:8443"), cfg);
            let s = s.unwrap_or_else(|e| fail(&format!("cannot listen: {e}")));
            let a = s.addr();
            std::mem::forget(s);
            a
        }
        "echo" => {
            let s = EchoServer::start_on(listen.as_deref().unwrap_or("127.0.0.1:9000"));
            let s = s.unwrap_or_else(|e| fail(&format!("cannot listen: {e}")));
            let a = s.addr();
            std::mem::forget(s);
            a
        }
        other => fail(&format!("unknown command {other}")),
    };
    println!("listening on {addr}");
    loop {
        std::thread::park();
    }
}

/// `dpop-proof`: prints a proof, or with `--jkt` the key's thumbprint.
fn dpop_proof(opts: &[String]) {
    let (mut key, mut htm, mut htu, mut token, mut nonce) = (None, None, None, None, None);
    let mut jkt = false;
    let mut it = opts.iter();
    while let Some(flag) = it.next() {
        if flag == "--jkt" {
            jkt = true;
            continue;
        }
        let slot = match flag.as_str() {
            "--key" => &mut key,
            "--htm" => &mut htm,
            "--htu" => &mut htu,
            "--token" => &mut token,
            "--nonce" => &mut nonce,
            _ => fail(&format!("unknown option {flag}")),
        };
        let Some(value) = it.next() else {
            fail(&format!("{flag} needs a value"))
        };
        *slot = Some(value.clone());
    }
    let key = key.unwrap_or_else(|| fail("dpop-proof needs --key"));
    let key = load_or_create_key(Path::new(&key)).unwrap_or_else(|e| fail(&e));
    if jkt {
        println!("{}", key.jkt());
        return;
    }
    let (Some(htm), Some(htu)) = (htm, htu) else {
        fail("dpop-proof needs --htm and --htu (or --jkt)")
    };
    match proof_now(&key, &htm, &htu, token.as_deref(), nonce.as_deref()) {
        Ok(proof) => println!("{proof}"),
        Err(e) => fail(&format!("cannot sign: {e}")),
    }
}

fn number(flag: &str, value: &str) -> u64 {
    value
        .parse()
        .unwrap_or_else(|_| fail(&format!("{flag} needs a number, got {value}")))
}

fn fail(msg: &str) -> ! {
    eprintln!("phantom-devsvr: {msg}\n{USAGE}");
    exit(2)
}
