//! Finding the active Vault node, off the event loop: the source (Consul
//! today), when to ask it (`pacing`), and what its answers mean over time
//! (`tracker`). The event loop only ever sees a target or none.

pub mod consul;
pub mod pacing;
pub mod poller;
pub mod target;
pub mod tracker;
