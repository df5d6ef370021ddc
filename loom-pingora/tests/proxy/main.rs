//! The data plane over real sockets: one Pingora server in this process (a process has one
//! server), backends on loopback, plain clients. Each test publishes its own Gateway on its own
//! ports through [`harness::publish`], which republishes the union of every test's
//! configuration, so tests are independent and run in parallel.

mod backend_tls;
mod backends;
mod clients;
mod harness;

mod client_policy;
mod filters;
mod h2c;
mod hardening;
mod l4;
mod listeners;
mod reload;
mod retries;
mod routing;
mod streaming;
mod tls;
