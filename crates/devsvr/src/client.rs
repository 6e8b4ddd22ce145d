//! The client side of DPoP for demos: a key kept in a file, and proofs made with it
//! (`phantom-devsvr dpop-proof`).

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use dpop_sign::SigningKey;
use phantom_core::dpop::Alg;
use sha2::{Digest, Sha256};

/// The ES256 key in `path` (PKCS#8 DER, base64), created there first if the file does not
/// exist (readable by its owner only).
pub fn load_or_create_key(path: &Path) -> Result<SigningKey, String> {
    let shown = path.display();
    match fs::read_to_string(path) {
        Ok(text) => {
            let der = STANDARD
                .decode(text.trim())
                .map_err(|_| format!("{shown}: not base64"))?;
            SigningKey::from_pkcs8(Alg::Es256, &der)
                .map_err(|e| format!("{shown}: not an ES256 PKCS#8 key ({e})"))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let (key, der) = SigningKey::generate(Alg::Es256).map_err(str::to_string)?;
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut f) => {
                    f.write_all(format!("{}\n", STANDARD.encode(&der)).as_bytes())
                        .map_err(|e| format!("{shown}: {e}"))?;
                    Ok(key)
                }
                // Created meanwhile by another invocation: use that one.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => load_or_create_key(path),
                Err(e) => Err(format!("{shown}: {e}")),
            }
        }
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// A fresh, unique `jti`.
pub fn new_jti() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let digest = Sha256::digest(format!("jti-{nanos}-{n}-{}", std::process::id()));
    URL_SAFE_NO_PAD.encode(&digest[..18])
}

/// A proof for `htm htu` made now, with `ath` for `token` and the server's `nonce` if given.
pub fn proof_now(
    key: &SigningKey,
    htm: &str,
    htu: &str,
    token: Option<&str>,
    nonce: Option<&str>,
) -> Result<String, String> {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    key.proof(htm, htu, iat, &new_jti(), token.map(str::as_bytes), nonce)
        .map_err(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("devsvr-key-{}", new_jti()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dpop.key");
        let a = load_or_create_key(&path).unwrap();
        let b = load_or_create_key(&path).unwrap();
        assert_eq!(a.jkt(), b.jkt());
        assert_ne!(new_jti(), new_jti());
        fs::write(&path, "not base64!").unwrap();
        assert!(load_or_create_key(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
