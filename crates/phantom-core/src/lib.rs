//! Pure parsing and policy for ngx-phantom-token: no nginx FFI, unit-tested and fuzzable.
//!
//! The module's FFI glue calls these functions with bytes taken from requests and from the
//! identity server's responses; every function here is total over untrusted input.
#![forbid(unsafe_code)]

pub mod cache_control;
pub mod chain;
pub mod challenge;
pub mod claims;
pub mod digest;
pub mod dpop;
pub mod fleet;
pub mod form;
pub mod index;
pub mod introspection;
pub mod jwt;
pub mod metrics;
pub mod purge;
pub mod scope;
pub mod slab;
pub mod source;
pub mod table;
pub mod token;
pub mod trace;
pub mod ttl;
pub mod zone_index;
