//! The `AUTH` commands of new connections: the data servers' credentials (the key file, or
//! `redis_password_file=`) and the Sentinels' own (`redis_sentinel_password_file=`).

use nginx_sys::NGX_LOG_ERR;
use phantom_core::fleet::errors::ErrorClass;
use phantom_core::fleet::resp;

use super::Fleet;

impl Fleet {
    /// The `AUTH` command for a new connection: the key file's password, or the one in
    /// `redis_password_file`, read again for every connection (tokens that a sidecar
    /// refreshes: AWS IAM, Microsoft Entra, GCP IAM). An unreadable file is logged (once a
    /// minute) and the connection goes without `AUTH`, which the server refuses.
    pub(crate) fn auth(&self) -> Option<Vec<u8>> {
        let from_file;
        let pass = match &self.password_file {
            Some(path) => {
                from_file = self.read_password("redis_password_file", path)?;
                from_file.as_str()
            }
            None => self.keys.redis_password()?,
        };
        Some(match self.keys.redis_user() {
            Some(user) => resp::command(&[b"AUTH", user.as_bytes(), pass.as_bytes()]),
            None => resp::command(&[b"AUTH", pass.as_bytes()]),
        })
    }

    /// The `AUTH` command for a new connection to a Sentinel (`requirepass` on the
    /// Sentinels; the data servers' credentials are not sent to them).
    pub(crate) fn sentinel_auth(&self) -> Option<Vec<u8>> {
        let path = self.sentinel_password_file.as_deref()?;
        let pass = self.read_password("redis_sentinel_password_file", path)?;
        Some(resp::command(&[b"AUTH", pass.as_bytes()]))
    }

    /// A password file's content, trimmed; an unreadable file is counted and logged (once a
    /// minute), and the connection goes without `AUTH`, which the server refuses.
    fn read_password(&self, param: &str, path: &str) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Some(text.trim().to_string()),
            Err(e) => {
                let msg = format!("cannot read {param} \"{path}\" (the workers read it): {e}");
                crate::metrics::count(crate::metrics::Counter::RedisAuth);
                self.log_once(ErrorClass::Auth, NGX_LOG_ERR as usize, &msg);
                None
            }
        }
    }
}
