//! Pure building blocks of the fleet cache tier (a Redis / Valkey cache shared by instances).
//!
//! - [`addr`]: server addresses as configured.
//! - [`cluster`]: Redis Cluster hash slots, the slot map and redirects.
//! - [`hello`]: the server's name, version and mode (`HELLO 2`).
//! - [`sentinel`]: where a Sentinel says the primary is, and when it moves.
//! - [`errors`]: what an error reply means (a replica, credentials, a cluster, a miss).
//! - [`lookup`]: what the replies of a fleet lookup (and its lock) say.
//! - [`role`]: the server's answer to `ROLE` (the primary is wanted).
//! - [`resp`]: RESP2 command encoder and a bounded, iterative reply parser.
//! - [`keys`]: the key file (HMAC and seal keys, Redis credentials) and HMAC'd Redis key names,
//!   so Redis never sees a token, subject or client id.
//! - [`layout`]: the key names (version 2, `pt:v2:`), with hash tags that keep the keys of one
//!   token in one Redis Cluster slot.
//! - [`slot`]: Redis Cluster hash slots (CRC16 and hash tags).
//! - [`sweep`]: a purge by subject or client in Redis, in batches, one slot per command.
//! - [`seal`]: values sealed with ChaCha20-Poly1305 and bound to their Redis key name.
//! - [`notice`]: sealed purge notices on a Redis stream, and the `XADD` / `XREAD` around them.
//! - [`tombstones`]: a fixed ring of recent purges, plain data for nginx shared memory.
//!
//! Nothing here does I/O; everything is total over untrusted input (replies from Redis, values
//! read back from Redis), which may come from a compromised or confused server.

pub mod addr;
pub mod cluster;
mod cluster_bytes;
pub mod errors;
pub mod hello;
pub mod keys;
pub mod layout;
pub mod lookup;
pub mod notice;
pub mod resp;
pub mod role;
pub mod seal;
pub mod sentinel;
pub mod slot;
pub mod sweep;
pub mod tombstones;
