//! What discovery's HTTP clients share: the agent settings (no proxy, no
//! redirects, small buffers), and name resolution: the standard library's
//! lookup on the calling thread (ureq's default spawns a thread per lookup
//! to time it out; discovery's threads may block), and the
//! `*_TLS_SERVER_NAME` overrides: a URL names the certificate's name, the
//! connection goes to the real server.

use std::net::ToSocketAddrs;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// ureq's settings for talking to a discovery server: statuses are answers,
/// not errors; the answer must come from the server asked, so no proxy and
/// no redirect; buffers sized for small answers (ureq's 128 KiB defaults
/// would only add to the resident size).
pub fn agent_config(
    input_buffer_bytes: usize,
    output_buffer_bytes: usize,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .input_buffer_size(input_buffer_bytes)
        .output_buffer_size(output_buffer_bytes)
        .user_agent(concat!("vault-redirector/", env!("CARGO_PKG_VERSION")))
}

/// Addresses ureq keeps from a lookup.
const MAX_RESOLVED: usize = 16;

/// Resolves names with the standard library, on the calling thread (ureq's
/// default spawns a thread per lookup to time it out; the poller thread may
/// block), and sends `CONSUL_TLS_SERVER_NAME` requests to the real agent.
#[derive(Debug)]
pub struct NameResolver {
    /// (server name used in the URL, the agent's real host:port)
    pub overrides: Vec<(String, String)>,
}

impl Resolver for NameResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let port = authority
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let wanted = format!("{}:{port}", authority.host());
        let target = self
            .overrides
            .iter()
            .find(|(name, _)| *name == wanted)
            .map_or(wanted.as_str(), |(_, real)| real.as_str());
        let mut out = self.empty();
        for addr in target
            .to_socket_addrs()
            .map_err(|_| ureq::Error::HostNotFound)?
            .take(MAX_RESOLVED)
        {
            out.push(addr);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}
