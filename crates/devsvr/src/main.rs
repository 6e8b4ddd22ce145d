//! `phantom-devsvr idsvr|echo [options]`: the development servers as a program.

use std::process::exit;

use devsvr::{EchoServer, IdConfig, IdServer};

const USAGE: &str = "usage:
  phantom-devsvr idsvr [--listen 127.0.0.1:8443] [--client-id gateway] [--client-secret secret]
                       [--lifetime 300] [--jwt-size 0]
  phantom-devsvr echo  [--listen 127.0.0.1:9000]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, opts)) = args.split_first() else {
        fail("missing command")
    };
    let mut listen = None;
    let mut cfg = IdConfig::default();
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
            _ => fail(&format!("unknown option {flag}")),
        }
    }
    let addr = match cmd.as_str() {
        "idsvr" => {
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

fn number(flag: &str, value: &str) -> u64 {
    value
        .parse()
        .unwrap_or_else(|_| fail(&format!("{flag} needs a number, got {value}")))
}

fn fail(msg: &str) -> ! {
    eprintln!("phantom-devsvr: {msg}\n{USAGE}");
    exit(2)
}
