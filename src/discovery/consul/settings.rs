//! How to reach Consul: the agents (one or several, http or https), the
//! service, datacenter and consistency to ask for, the ACL token and the TLS
//! files, from our options and Consul's own environment variables. Parsing
//! and validation only; `consul` does the asking.

use std::fmt;
use std::path::PathBuf;

/// One Consul agent's HTTP(S) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAddr {
    pub https: bool,
    /// `host:port`, IPv6 hosts in brackets.
    pub host_port: String,
}

impl AgentAddr {
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.host_port
        )
    }
}

impl fmt::Display for AgentAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.https {
            write!(f, "https://{}", self.host_port)
        } else {
            f.write_str(&self.host_port)
        }
    }
}

/// A value that must never reach a log line: `Debug` shows no content.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulSettings {
    pub agents: Vec<AgentAddr>,
    /// Consul service name Vault registers as (`vault` unless configured).
    pub service: String,
    pub datacenter: Option<String>,
    /// Let any Consul server answer, not only the leader.
    pub stale: bool,
    pub token: Option<Secret>,
    /// Re-read before every query, so a rotated token is picked up.
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The name to verify the agents' certificates against, if not their host.
    pub server_name: Option<String>,
    pub verify: bool,
}

impl ConsulSettings {
    /// With only the agents: the defaults of the original tool.
    pub fn for_agents(agents: Vec<AgentAddr>) -> ConsulSettings {
        ConsulSettings {
            agents,
            service: "vault".to_owned(),
            datacenter: None,
            stale: false,
            token: None,
            token_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            server_name: None,
            verify: true,
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.token_file.is_some()
    }

    pub fn uses_https(&self) -> bool {
        self.agents.iter().any(|a| a.https)
    }
}

/// `host:port[,host:port...]`, each optionally with `http://` or `https://`
/// (Consul's `CONSUL_HTTP_ADDR` form). `default_https` applies where no
/// scheme is given (`CONSUL_HTTP_SSL=true`).
pub fn parse_agents(spec: &str, default_https: bool) -> Option<Vec<AgentAddr>> {
    spec.split(',')
        .map(|item| {
            let item = item.trim();
            let (https, rest) = if let Some(r) = item.strip_prefix("https://") {
                (true, r)
            } else if let Some(r) = item.strip_prefix("http://") {
                (false, r)
            } else {
                (default_https, item)
            };
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest.rsplit_once(':')?;
            let port_ok =
                !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
            let host_ok = !host.is_empty() && !host.contains(['/', '?', '#', '@', ' ']);
            (port_ok && host_ok).then(|| AgentAddr {
                https,
                host_port: rest.to_owned(),
            })
        })
        .collect()
}

/// Consul's convention for boolean environment variables.
pub fn env_bool(value: Option<String>) -> Option<bool> {
    match value?.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" => Some(true),
        "0" | "false" | "f" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(https: bool, host_port: &str) -> AgentAddr {
        AgentAddr {
            https,
            host_port: host_port.to_owned(),
        }
    }

    #[test]
    fn agent_lists_and_schemes() {
        assert_eq!(
            parse_agents("127.0.0.1:8500", false),
            Some(vec![agent(false, "127.0.0.1:8500")])
        );
        assert_eq!(
            parse_agents(
                "https://consul-a:8501, consul-b:8501,http://[::1]:8500",
                true
            ),
            Some(vec![
                agent(true, "consul-a:8501"),
                agent(true, "consul-b:8501"),
                agent(false, "[::1]:8500")
            ])
        );
        assert_eq!(parse_agents("a:1,", false), None);
        assert_eq!(parse_agents("a", false), None);
        assert_eq!(parse_agents("https://a:1/v1", false), None);
        assert_eq!(agent(true, "c:8501").base_url(), "https://c:8501");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = ConsulSettings {
            token: Some(Secret("s.TOPSECRET".into())),
            ..ConsulSettings::for_agents(vec![])
        };
        assert!(!format!("{s:?}").contains("TOPSECRET"));
    }

    #[test]
    fn booleans_as_consul_reads_them() {
        assert_eq!(env_bool(Some("TRUE".into())), Some(true));
        assert_eq!(env_bool(Some("0".into())), Some(false));
        assert_eq!(env_bool(Some("maybe".into())), None);
        assert_eq!(env_bool(None), None);
    }
}
