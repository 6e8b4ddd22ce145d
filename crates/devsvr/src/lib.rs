//! Development identity server and echo API for ngx-phantom-token's demo and tests.
//!
//! Both serve real HTTP/1.1 on 127.0.0.1 with one thread per connection; the identity
//! server can be told to fail in the ways a gateway must survive.
//!
//! The identity server issues DPoP-bound tokens for requests with a valid `DPoP` proof, and
//! [`client`] makes proofs (the `phantom-devsvr dpop-proof` command of the demo).

mod answer;
mod binding;
pub mod client;
mod echo;
mod form;
mod http;
mod idsvr;
mod jwt;
mod purge;
mod serve;

pub use binding::{DPOP_ALGS, DPOP_WINDOW};
pub use echo::EchoServer;
pub use http::Recorded;
pub use idsvr::{Fault, IdConfig, IdServer};
pub use jwt::DEV_KEY;

/// Decodes a JWT payload without verifying it (a test helper).
pub fn jwt_claims(jwt: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    jwt::claims(jwt)
}
