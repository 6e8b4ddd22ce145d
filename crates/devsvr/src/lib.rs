//! Development identity server and echo API.
