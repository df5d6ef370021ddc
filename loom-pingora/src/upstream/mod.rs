//! The backend side of a request: which endpoint (passive health), how to connect to it
//! (backend TLS, HTTP/2), and the copies of requests sent to mirrors.

pub(crate) mod backend_tls;
pub mod dns;
pub mod health;
pub mod mirror;
pub mod peer;
