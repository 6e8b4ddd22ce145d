//! Redis's error replies, heard by their meaning: each is counted, and logged at most once a
//! minute per class and instance with what the module does next.

use core::sync::atomic::Ordering;

use nginx_sys::{NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN};
use phantom_core::fleet::errors::ErrorClass;

use super::Fleet;

/// An error reply of one class is logged at most this often per instance (they are all
/// counted).
const ERROR_LOG_MS: i64 = 60_000;

impl Fleet {
    /// Redis answered with an error: counted by its meaning, and logged (once a minute per
    /// class and instance) with what happens next (`sentinel`: the server is a Sentinel).
    pub(crate) fn reply_error(&self, class: ErrorClass, line: &[u8], server: &str, sentinel: bool) {
        use crate::metrics::{count, Counter};
        count(match class {
            ErrorClass::Role => Counter::RedisRole,
            ErrorClass::Auth => Counter::RedisAuth,
            ErrorClass::Cluster => Counter::RedisCluster,
            ErrorClass::Full | ErrorClass::Other => Counter::RedisErrorReply,
        });
        let (level, next) = match class {
            ErrorClass::Role => (
                NGX_LOG_WARN,
                "this server cannot take writes now (a replica, or a primary that was demoted or is loading): trying the next server",
            ),
            ErrorClass::Auth if sentinel => (
                NGX_LOG_ERR,
                "the Sentinel refused: its password (requirepass) goes in redis_sentinel_password_file=; asking another",
            ),
            ErrorClass::Auth => (
                NGX_LOG_ERR,
                "authentication failed: check the user and password of the key file and the server's ACL",
            ),
            ErrorClass::Cluster if self.cluster.is_some() => (
                NGX_LOG_NOTICE,
                "the cluster is changing (a slot moved, or a node fails over): that operation is a miss and the slot map is refreshed",
            ),
            ErrorClass::Cluster => (
                NGX_LOG_WARN,
                "the server is sharded: set redis_cluster=on for a Redis Cluster; behind a sharding proxy, those operations are misses",
            ),
            // Logged by `full` when writes pause.
            ErrorClass::Full => return,
            ErrorClass::Other => (NGX_LOG_WARN, "the operation is a miss"),
        };
        let shown = &line[..line.len().min(160)];
        let msg = format!(
            "server {server} answered \"{}\": {next}",
            String::from_utf8_lossy(shown)
        );
        self.log_once(class, level as usize, &msg);
    }

    /// Logs `msg` unless a line of `class` was logged by this instance within a minute.
    pub(super) fn log_once(&self, class: ErrorClass, level: usize, msg: &str) {
        let now = crate::glue::time::now_ms();
        let Some(last) = self.shared().and_then(|s| s.logged_ms.get(class.index())) else {
            return;
        };
        let before = last.load(Ordering::Relaxed);
        if before != 0 && now - before < ERROR_LOG_MS {
            return;
        }
        if last
            .compare_exchange(before, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.log(level, msg);
    }

    /// A new connection found a replica (or a Sentinel) where it wants the primary: it moves
    /// on to the next address (counted, and logged once a minute per instance).
    pub(crate) fn not_primary(&self, server: &str) {
        self.reply_error(ErrorClass::Role, b"ROLE: not the primary", server, false);
    }
}
