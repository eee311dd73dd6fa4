//! Asking one node: `GET /v1/sys/health` (and, from a standby,
//! `GET /v1/sys/leader`), each bounded by the probe timeout, with Vault's
//! TLS conventions. One ureq agent per node, so that a server name to
//! verify (`VAULT_TLS_SERVER_NAME`) can map to each node's own address.

use super::node::{NodeStatus, leader_address, named_node};
use super::settings::{NodeUrl, VaultSettings};
use crate::discovery::client_tls::{TlsFiles, tls_config};
use crate::discovery::resolver::{NameResolver, agent_config};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::unversioned::transport::DefaultConnector;

/// A health or leader answer is a few hundred bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// ureq's buffers for one exchange.
const INPUT_BUFFER_BYTES: usize = 8 * 1024;
const OUTPUT_BUFFER_BYTES: usize = 2 * 1024;
/// How much of a transport error goes into the health JSON and the log.
const MAX_ERROR_CHARS: usize = 200;

/// What one probe of one node found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub node: usize,
    pub sent: Instant,
    /// The health answer's status code; None when the node did not answer.
    pub code: Option<u16>,
    /// Why the node did not answer.
    pub error: Option<String>,
    /// The listed node this one names as leader (standbys only).
    pub names_leader: Option<usize>,
}

/// How to ask every listed node; shared by the threads that probe.
pub struct Prober {
    agents: Vec<ureq::Agent>,
    /// Per node: the URL prefix to ask (scheme, host or server name, port).
    bases: Vec<String>,
    nodes: Vec<NodeUrl>,
}

impl Prober {
    pub fn new(settings: &VaultSettings, timeout: Duration) -> Result<Arc<Prober>, String> {
        let tls = if settings.uses_https() {
            Some(tls_config(&TlsFiles {
                ca_file: settings.ca_file.as_deref(),
                ca_dir: settings.ca_dir.as_deref(),
                client_cert: settings.client_cert.as_deref(),
                client_key: settings.client_key.as_deref(),
                verify: settings.verify,
                ca_hint: "set VAULT_CACERT, VAULT_CAPATH or --vault-ca",
                client_pair: "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY",
            })?)
        } else {
            None
        };
        let mut agents = Vec::new();
        let mut bases = Vec::new();
        for node in &settings.nodes {
            let mut config =
                agent_config(INPUT_BUFFER_BYTES, OUTPUT_BUFFER_BYTES).timeout_global(Some(timeout));
            if let Some(tls) = &tls {
                config = config.tls_config(tls.clone());
            }
            let mut overrides = Vec::new();
            let base = match (&settings.server_name, node.https) {
                (Some(name), true) => {
                    let port = node.target.as_str().rsplit_once(':').map_or("", |(_, p)| p);
                    let named = format!("{name}:{port}");
                    overrides.push((named.clone(), node.target.as_str().to_owned()));
                    format!("https://{named}")
                }
                _ => node.to_string(),
            };
            let resolver = NameResolver { overrides };
            agents.push(ureq::Agent::with_parts(
                config.build(),
                DefaultConnector::default(),
                resolver,
            ));
            bases.push(base);
        }
        Ok(Arc::new(Prober {
            agents,
            bases,
            nodes: settings.nodes.clone(),
        }))
    }

    pub fn count(&self) -> usize {
        self.nodes.len()
    }

    /// Probe `node` now; blocks this thread for at most two timeouts.
    pub fn probe(&self, node: usize) -> Probe {
        let sent = Instant::now();
        let mut probe = Probe {
            node,
            sent,
            code: None,
            error: None,
            names_leader: None,
        };
        match self.get(node, "/v1/sys/health") {
            Ok((code, _)) => probe.code = Some(code),
            Err(e) => probe.error = Some(e),
        }
        let status = NodeStatus::classify(probe.code);
        if status.knows_leader() && status != NodeStatus::Active {
            probe.names_leader = self
                .get(node, "/v1/sys/leader")
                .ok()
                .filter(|(code, _)| *code == 200)
                .and_then(|(_, body)| leader_address(&body))
                .and_then(|address| named_node(&address, &self.nodes));
        }
        probe
    }

    fn get(&self, node: usize, path: &str) -> Result<(u16, Vec<u8>), String> {
        let url = format!("{}{path}", self.bases[node]);
        let short =
            |e: ureq::Error| -> String { e.to_string().chars().take(MAX_ERROR_CHARS).collect() };
        let mut response = self.agents[node].get(&url).call().map_err(short)?;
        let code = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(short)?;
        Ok((code, body))
    }
}
