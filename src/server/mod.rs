//! Serving clients on one thread: the mio event loop (`reactor`), taking
//! connections (`accept`), each connection's I/O (`conn`, `transport`) and
//! request stream (`session`), every response we send (`responses`,
//! `health`, `metrics` with `process`), the listener's TLS (`tls`), and the limits that bound all of
//! it.

pub mod accept;
pub mod conn;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod process;
pub mod reactor;
pub mod responses;
pub mod session;
pub mod tls;
pub mod transport;
