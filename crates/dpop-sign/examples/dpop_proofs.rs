//! Prints a key's thumbprint, then `count` DPoP proofs (ES256, distinct `jti`, `iat` now) for
//! `GET <htu>` bound to `token`, one per line: input for `scripts/bench.sh`'s DPoP run.
//!
//! `cargo run --release -p dpop-sign --example dpop_proofs -- \
//!   <count> <htu> <token> <key-file>` (the PKCS#8 key is made once and kept in the file).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use dpop_sign::SigningKey;
use phantom_core::dpop::Alg;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [count, htu, token, key_file] = args.as_slice() else {
        eprintln!("usage: dpop_proofs <count> <htu> <token> <key-file>");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("count");
    let key = match std::fs::read(key_file) {
        Ok(pkcs8) => SigningKey::from_pkcs8(Alg::Es256, &pkcs8).expect("key file"),
        Err(_) => {
            let (key, pkcs8) = SigningKey::generate(Alg::Es256).expect("key");
            std::fs::write(key_file, pkcs8).expect("write key file");
            key
        }
    };
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "{}", key.jkt()).expect("write");
    for i in 0..count {
        let proof = key
            .proof(
                "GET",
                htu,
                iat,
                &format!("bench-{iat}-{i}"),
                Some(token.as_bytes()),
                None,
            )
            .expect("proof");
        writeln!(out, "{proof}").expect("write");
    }
}
