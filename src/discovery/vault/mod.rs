//! The Vault nodes themselves as the source of the active node, without
//! Consul: the listed URLs and TLS files (`settings`), what one node's
//! answers mean (`node`, pure), which node is active given all of them
//! (`selection`, pure), when to probe which node (`pacing`, pure), asking
//! one node (`prober`), and the source as the loop drives it (`watch`).

pub mod node;
pub mod pacing;
pub mod prober;
pub mod selection;
pub mod settings;
pub mod watch;
