//! vault-redirector as a library: the modules the daemon (`main.rs`) is
//! built from, and what the fuzz targets under `tests/fuzz/` drive directly
//! through `fuzzing` (the request stream, the Consul and Vault answer
//! parsers, the PEM reader; the command line is `cli`). Not a stable API:
//! only the binary and the fuzz crate use it, so the rest stays private.
//!
//! The two halves of the daemon: `discovery` finds the active node on a
//! thread of its own; `server` answers clients on the event loop; the
//! discovery thread hands each answer to the loop (`discovery::poller`);
//! `service` speaks to the service manager (systemd) when there is one.

pub mod cli;
mod discovery;
pub mod fuzzing;
mod http;
pub mod logging;
mod pem;
mod server;
mod service;
pub mod startup;

/// Captured Consul answers, shared with the black-box tests.
#[cfg(test)]
#[path = "../tests/data/fixtures.rs"]
mod fixtures;
