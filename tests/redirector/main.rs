//! Black-box tests: the real binary against an in-test fake Consul (or
//! fake Vault nodes), over loopback.

mod client;
mod daemon;
mod fake_consul;
mod fake_vault;
#[path = "../data/fixtures.rs"]
mod fixtures;

mod backpressure;
mod cli;
mod consul_changes;
mod consul_client;
mod consul_data;
mod descriptors;
mod drain;
mod fairness;
mod hostile;
mod logging;
mod metrics;
mod pki;
mod requests;
mod service;
mod signals;
mod startup;
mod tls;
mod vault_nodes;
