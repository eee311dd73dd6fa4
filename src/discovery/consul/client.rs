//! Asking Consul: the ureq agent (timeouts, small buffers, no proxy, our
//! resolver), the health query with its blocking index, failover between
//! several agents, and the ACL token sent with each query.

use super::answer::parse_answer;
use super::settings::{ConsulSettings, Secret};
use super::token::read_token_file;
use super::{Answer, PollError, Query};
use crate::discovery::client_tls::{TlsFiles, tls_config};
use crate::discovery::resolver::{NameResolver, agent_config};
use std::path::PathBuf;
use std::time::Duration;
use ureq::unversioned::transport::DefaultConnector;

/// Connecting to a local agent takes microseconds; a few seconds means trouble.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound for a whole non-blocking query (connect, request, answer), however
/// slow Consul is.
const MIN_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A health answer for a few nodes is a few KiB; refuse to buffer megabytes.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;
/// How much of an error answer's body goes into the log line.
const MAX_ERROR_TEXT: usize = 200;

/// ureq's buffers for one Consul exchange (the body has its own limit).
const INPUT_BUFFER_BYTES: usize = 16 * 1024;
const OUTPUT_BUFFER_BYTES: usize = 4 * 1024;

/// How to ask Consul; one per thread that asks (start-up, poller).
pub struct Client {
    agent: ureq::Agent,
    /// Per agent: the URL prefix to ask (scheme, host or server name, port).
    bases: Vec<String>,
    names: Vec<String>,
    /// The agent to ask first: the last one that answered.
    current: usize,
    path_and_query: String,
    token: Option<Secret>,
    token_file: Option<PathBuf>,
    use_ip: bool,
    poll_interval: Duration,
}

/// Wait for a blocking query is capped by Consul at ten minutes.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// Beyond `wait` and Consul's jitter (wait/16): connection and answer time.
const BLOCKING_SLACK: Duration = Duration::from_secs(3);

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// How long one query to one agent may take: a blocking query its wait
/// and Consul's jitter and some slack, any other the poll interval within
/// bounds.
fn query_timeout(query: Query, poll_interval: Duration) -> Duration {
    match query.wait {
        Some(wait) if query.index > 0 => {
            let wait = wait.min(MAX_WAIT);
            wait + wait / 16 + BLOCKING_SLACK
        }
        _ => poll_interval.clamp(MIN_QUERY_TIMEOUT, MAX_QUERY_TIMEOUT),
    }
}

/// The longest a `fetch` can take: every agent's timeout in turn. Past it,
/// the thread running it is stuck (a bug), not waiting for Consul.
#[derive(Debug, Clone, Copy)]
pub struct FetchBudget {
    agents: u32,
    poll_interval: Duration,
}

impl FetchBudget {
    pub fn of(&self, query: Query) -> Duration {
        query_timeout(query, self.poll_interval) * self.agents.max(1)
    }
}

impl Client {
    /// How long its `fetch` may take at most.
    pub fn budget(&self) -> FetchBudget {
        FetchBudget {
            agents: u32::try_from(self.bases.len()).unwrap_or(u32::MAX),
            poll_interval: self.poll_interval,
        }
    }

    pub fn new(
        settings: &ConsulSettings,
        use_ip: bool,
        poll_interval: Duration,
    ) -> Result<Client, String> {
        let mut config = agent_config(INPUT_BUFFER_BYTES, OUTPUT_BUFFER_BYTES)
            .timeout_connect(Some(CONNECT_TIMEOUT));
        if settings.uses_https() {
            config = config.tls_config(tls_config(&TlsFiles {
                ca_file: settings.ca_file.as_deref(),
                ca_dir: None,
                client_cert: settings.client_cert.as_deref(),
                client_key: settings.client_key.as_deref(),
                verify: settings.verify,
                ca_hint: "set CONSUL_CACERT or --consul-ca",
                client_pair: "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY",
            })?);
        }
        let mut overrides = Vec::new();
        let mut bases = Vec::new();
        for agent in &settings.agents {
            match (&settings.server_name, agent.https) {
                (Some(name), true) => {
                    let port = agent.host_port.rsplit_once(':').map_or("", |(_, p)| p);
                    let named = format!("{name}:{port}");
                    overrides.push((named.clone(), agent.host_port.clone()));
                    bases.push(format!("https://{named}"));
                }
                _ => bases.push(agent.base_url()),
            }
        }
        let resolver = NameResolver { overrides };
        let agent = ureq::Agent::with_parts(config.build(), DefaultConnector::default(), resolver);
        let mut path_and_query = format!(
            "/v1/health/service/{}?passing&tag=active",
            percent_encode(&settings.service)
        );
        if let Some(dc) = &settings.datacenter {
            path_and_query.push_str(&format!("&dc={}", percent_encode(dc)));
        }
        if settings.stale {
            path_and_query.push_str("&stale");
        }
        Ok(Client {
            agent,
            bases,
            names: settings.agents.iter().map(ToString::to_string).collect(),
            current: 0,
            path_and_query,
            token: settings.token.clone(),
            token_file: settings.token_file.clone(),
            use_ip,
            poll_interval,
        })
    }

    /// The ACL token to send: the file wins (re-read now, so a rotated
    /// token is used), then the variable.
    fn token(&self) -> Result<Option<String>, PollError> {
        if let Some(path) = &self.token_file {
            let token = read_token_file(path)
                .map_err(|e| PollError::Token(format!("{}: {e}", path.display())))?;
            return Ok(Some(token));
        }
        Ok(self.token.as_ref().map(|t| t.0.clone()))
    }

    /// Ask the agents in turn, starting with the last one that answered;
    /// blocks this thread for at most the query timeout per agent.
    pub fn fetch(&mut self, query: Query) -> Result<Answer, PollError> {
        let token = self.token()?;
        let mut last_error = PollError::Transport("no Consul agent configured".into());
        for attempt in 0..self.bases.len() {
            let i = (self.current + attempt) % self.bases.len();
            match self.fetch_from(i, query, token.as_deref()) {
                Ok(answer) => {
                    self.current = i;
                    return Ok(answer);
                }
                Err(e) => {
                    if self.bases.len() > 1 {
                        log::debug!("Consul agent {} failed: {e}", self.names[i]);
                    }
                    last_error = e;
                }
            }
        }
        // Next time, start with the agent after the one that failed first.
        self.current = (self.current + 1) % self.bases.len().max(1);
        Err(last_error)
    }

    fn fetch_from(&self, i: usize, query: Query, token: Option<&str>) -> Result<Answer, PollError> {
        let mut url = format!("{}{}", self.bases[i], self.path_and_query);
        if let (Some(wait), true) = (query.wait, query.index > 0) {
            url.push_str(&format!(
                "&index={}&wait={}ms",
                query.index,
                wait.min(MAX_WAIT).as_millis().max(1)
            ));
        }
        let timeout = query_timeout(query, self.poll_interval);
        log::debug!("Polling active node from: {url}");
        let mut request = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(timeout))
            .build();
        if let Some(token) = token {
            request = request.header("X-Consul-Token", token);
        }
        let mut response = request
            .call()
            .map_err(|e| PollError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| PollError::Transport(e.to_string()))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&body);
            let line = text.lines().next().unwrap_or("").trim();
            let short: String = line.chars().take(MAX_ERROR_TEXT).collect();
            return Err(PollError::Status(status, short));
        }
        let parsed = parse_answer(&body, self.use_ip)?;
        Ok(Answer {
            selection: parsed.selection,
            unusable: parsed.unusable,
            index,
            agent: self.names[i].clone(),
        })
    }
}
