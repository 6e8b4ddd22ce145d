//! nginx glue, the bottom layer: the clock, pool strings and header lists, and sending an
//! in-memory response. Nothing here knows the module's capabilities.

pub(crate) mod headers;
pub(crate) mod send;
pub(crate) mod time;
