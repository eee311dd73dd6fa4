//! How to reach the Vault nodes: the listed URLs (each one the only thing
//! a Location may point at for that node) and the TLS files, from
//! `--vault-nodes`, `--vault-ca` and Vault's own environment variables.
//! Parsing and validation only.

use crate::discovery::target::{Target, format_target};
use std::fmt;
use std::path::PathBuf;

/// One listed node: `http(s)://host:port`, validated by the target rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUrl {
    pub https: bool,
    /// `host:port` as it goes into a Location (IPv6 in brackets).
    pub target: Target,
}

impl NodeUrl {
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

impl fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.target)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    pub nodes: Vec<NodeUrl>,
    pub ca_file: Option<PathBuf>,
    /// A directory of CA certificates (`VAULT_CAPATH`), used without a file.
    pub ca_dir: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The name to verify the nodes' certificates against, if not their host.
    pub server_name: Option<String>,
    pub verify: bool,
}

impl VaultSettings {
    pub fn for_nodes(nodes: Vec<NodeUrl>) -> VaultSettings {
        VaultSettings {
            nodes,
            ca_file: None,
            ca_dir: None,
            client_cert: None,
            client_key: None,
            server_name: None,
            verify: true,
        }
    }

    pub fn uses_https(&self) -> bool {
        self.nodes.iter().any(|n| n.https)
    }

    /// The one scheme of every listed node, if they share one.
    pub fn scheme(&self) -> Option<&'static str> {
        let first = self.nodes.first()?.scheme();
        self.nodes
            .iter()
            .all(|n| n.scheme() == first)
            .then_some(first)
    }
}

/// Why a listed URL is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadNodeUrl {
    Shape(String),
    Target(String, String),
    Duplicate(String),
}

impl fmt::Display for BadNodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadNodeUrl::Shape(url) => write!(
                f,
                "{url:?} is not http://host:port or https://host:port (IPv6 in brackets)"
            ),
            BadNodeUrl::Target(url, why) => write!(f, "{url:?}: {why}"),
            BadNodeUrl::Duplicate(url) => write!(f, "{url:?} is listed twice"),
        }
    }
}

/// `URL[,URL...]`, each `http://host:port` or `https://host:port` with an
/// explicit port and nothing after it but an optional `/`.
pub fn parse_node_urls(spec: &str) -> Result<Vec<NodeUrl>, BadNodeUrl> {
    let mut nodes: Vec<NodeUrl> = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let node = parse_node_url(item)?;
        if nodes.iter().any(|n| n.target == node.target) {
            return Err(BadNodeUrl::Duplicate(item.to_owned()));
        }
        nodes.push(node);
    }
    Ok(nodes)
}

fn parse_node_url(item: &str) -> Result<NodeUrl, BadNodeUrl> {
    let shape = || BadNodeUrl::Shape(item.to_owned());
    let (https, rest) = if let Some(r) = item.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = item.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(shape());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').ok_or_else(shape)?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(shape());
    }
    // A bare IPv6 literal must come in brackets: `http://fd00::1:8200` is ambiguous.
    if host.contains(':') && !host.starts_with('[') {
        return Err(shape());
    }
    let port: u64 = port.parse().map_err(|_| shape())?;
    let target = format_target(host, port)
        .map_err(|e| BadNodeUrl::Target(item.to_owned(), e.to_string()))?;
    Ok(NodeUrl { https, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(spec: &str) -> Vec<String> {
        parse_node_urls(spec)
            .unwrap_or_else(|e| panic!("{spec}: {e}"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn listed_urls_are_scheme_host_and_port() {
        assert_eq!(
            urls("http://vault-a:8200, https://10.0.0.2:8200/,http://[fd00::1]:8200"),
            [
                "http://vault-a:8200",
                "https://10.0.0.2:8200",
                "http://[fd00::1]:8200"
            ]
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "vault-a:8200",
            "ftp://a:1",
            "http://a",
            "http://a:",
            "http://a:0",
            "http://a:65536",
            "http://a:8200/v1",
            "http://a:8200?x",
            "http://user@a:8200",
            "http://fd00::1:8200",
            "http://evil\r\nX: y:8200",
            "http://a:8200,",
            "",
        ] {
            assert!(parse_node_urls(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_node_urls("http://a:1,https://a:1"),
            Err(BadNodeUrl::Duplicate("https://a:1".into()))
        );
    }

    #[test]
    fn one_scheme_or_none() {
        let mixed = VaultSettings::for_nodes(parse_node_urls("http://a:1,https://b:1").unwrap());
        assert_eq!(mixed.scheme(), None);
        let tls = VaultSettings::for_nodes(parse_node_urls("https://a:1,https://b:1").unwrap());
        assert_eq!(tls.scheme(), Some("https"));
        assert!(tls.uses_https());
    }
}
