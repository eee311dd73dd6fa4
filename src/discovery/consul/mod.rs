//! Consul: the health query for the active Vault node, parsing its answer
//! into a redirect target, and the poller thread that runs queries off the
//! event loop. Deciding what an answer or error means over time is
//! `tracker`'s job, not this module's.

pub mod settings;

use crate::discovery::target::{self, Target, UnusableTarget, format_target};
use mio::Waker;
use serde_json::Value;
use settings::{ConsulSettings, Secret};
use std::collections::HashSet;
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, parse_pem};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

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

/// What one Consul answer says about the active node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    None,
    One(Target),
    /// Several passing nodes tagged `active` (a split brain during failover):
    /// `chosen` is the most recently registered one.
    Several {
        chosen: Target,
        all: Vec<Target>,
    },
}

impl Selection {
    pub fn target(&self) -> Option<&Target> {
        match self {
            Selection::None => None,
            Selection::One(t) | Selection::Several { chosen: t, .. } => Some(t),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollError {
    /// Connection refused, timeout, DNS, broken answer framing.
    Transport(String),
    /// An HTTP status other than 200, with the start of Consul's text.
    Status(u16, String),
    /// A 200 whose body is not the JSON shape of a health answer.
    Json(String),
    /// The ACL token file cannot be read.
    Token(String),
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::Transport(e) => write!(f, "{e}"),
            PollError::Status(code, text) if text.is_empty() => {
                write!(f, "Consul answered HTTP {code}")
            }
            PollError::Status(403, text) => write!(
                f,
                "Consul answered HTTP 403: {text} (the Consul ACL token is missing, wrong or lacks \
                 service and node read: see CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, --consul-token-file)"
            ),
            PollError::Status(code, text) => write!(f, "Consul answered HTTP {code}: {text}"),
            PollError::Token(e) => write!(f, "cannot read the Consul ACL token file {e}"),
            PollError::Json(e) => write!(f, "Consul's answer is not a health service list: {e}"),
        }
    }
}

/// What one health answer says: the active node, and why active entries
/// were skipped as not a usable redirect target (escaped, for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub selection: Selection,
    pub unusable: Vec<String>,
}

/// Parse `/v1/health/service/vault` JSON into the active node. Entries must
/// carry the `active` tag and have every check passing: we ask Consul for
/// exactly that (`?passing&tag=active`), and check again so that a crashed
/// active node, which keeps its tag, is never chosen. Whoever can register
/// a node in Consul controls its name and port: an entry whose host or port
/// is not a usable redirect target is skipped, never put in a Location.
pub fn parse_answer(body: &[u8], use_ip: bool) -> Result<Parsed, PollError> {
    let json: Value = serde_json::from_slice(body).map_err(|e| PollError::Json(e.to_string()))?;
    let entries = json
        .as_array()
        .ok_or_else(|| PollError::Json("expected a JSON list".into()))?;
    let mut candidates: Vec<(u64, Target)> = Vec::new();
    let mut unusable = Vec::new();
    for entry in entries {
        let service = &entry["Service"];
        let node = &entry["Node"];
        let tags = service["Tags"].as_array();
        let active = tags.is_some_and(|t| t.iter().any(|t| t.as_str() == Some("active")));
        if !active || !all_checks_passing(&entry["Checks"]) {
            continue;
        }
        let host_key = if use_ip { "Address" } else { "Node" };
        let (Some(host), Some(port)) = (node[host_key].as_str(), service["Port"].as_number())
        else {
            return Err(PollError::Json(format!(
                "an active entry lacks Node.{host_key} or Service.Port"
            )));
        };
        // A negative or fractional port is no port either.
        let Some(port_number) = port.as_u64() else {
            let node = target::shown(host);
            unusable.push(format!(
                "Node.{host_key} {node}: port {port} is not in 1..=65535"
            ));
            continue;
        };
        match format_target(host, port_number) {
            Ok(target) => {
                let modified = service["ModifyIndex"].as_u64().unwrap_or(0);
                candidates.push((modified, target));
            }
            Err(e @ UnusableTarget::Host(_)) => unusable.push(format!("Node.{host_key}: {e}")),
            Err(e @ UnusableTarget::Port(_)) => {
                unusable.push(format!("Node.{host_key} {}: {e}", target::shown(host)));
            }
        }
    }
    Ok(Parsed {
        selection: choose(candidates),
        unusable,
    })
}

fn all_checks_passing(checks: &Value) -> bool {
    match checks.as_array() {
        Some(list) => list.iter().all(|c| c["Status"].as_str() == Some("passing")),
        // An answer without checks (not Consul's shape) is taken as Consul's word.
        None => true,
    }
}

/// Deterministic pick among several: the most recently modified registration
/// (the node that most recently became active), ties broken by name.
fn choose(mut candidates: Vec<(u64, Target)>) -> Selection {
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    // A node registered twice (several service instances) counts once, at
    // its newest registration, wherever the other one sorted.
    let mut seen = HashSet::new();
    candidates.retain(|(_, target)| seen.insert(target.clone()));
    match candidates.len() {
        0 => Selection::None,
        1 => Selection::One(candidates.remove(0).1),
        _ => {
            let all: Vec<Target> = candidates.into_iter().map(|(_, t)| t).collect();
            Selection::Several {
                chosen: all[0].clone(),
                all,
            }
        }
    }
}

/// One query: for a blocking query, the index last seen and how long
/// Consul may hold the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub index: u64,
    pub wait: Option<Duration>,
}

/// One answer from Consul, and who gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub selection: Selection,
    /// Why active entries were skipped (see `Parsed`).
    pub unusable: Vec<String>,
    /// `X-Consul-Index`, for the next blocking query.
    pub index: Option<u64>,
    /// The agent that answered, as configured.
    pub agent: String,
}

/// Resolves names with the standard library, on the calling thread (ureq's
/// default spawns a thread per lookup to time it out; the poller thread may
/// block), and sends `CONSUL_TLS_SERVER_NAME` requests to the real agent.
#[derive(Debug)]
struct AgentResolver {
    /// (server name used in the URL, the agent's real host:port)
    overrides: Vec<(String, String)>,
}

impl Resolver for AgentResolver {
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

/// ureq's buffers for one Consul exchange (the body has its own limit).
const INPUT_BUFFER_BYTES: usize = 16 * 1024;
const OUTPUT_BUFFER_BYTES: usize = 4 * 1024;

/// Addresses ureq keeps from a lookup.
const MAX_RESOLVED: usize = 16;

/// How to ask Consul; one per thread that asks (start-up, poller).
#[derive(Clone)]
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

fn read_pem(path: &Path) -> Result<Vec<PemItem<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    crate::pem::refuse_encrypted_keys(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_pem(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))
}

fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let certs: Vec<Certificate<'static>> = read_pem(path)?
        .into_iter()
        .filter_map(|item| match item {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn read_pem_key(path: &Path) -> Result<PrivateKey<'static>, String> {
    read_pem(path)?
        .into_iter()
        .find_map(|item| match item {
            PemItem::PrivateKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}

/// A Consul ACL token is a 36-character UUID: a file this large is not one
/// (and would only be sent to Consul as a huge header).
const MAX_TOKEN_FILE_BYTES: u64 = 4 * 1024;

/// Why a token file was refused; never shows the token.
#[derive(Debug)]
enum TokenFileError {
    Io(std::io::Error),
    NotRegular,
    TooLarge,
    Empty,
    NotAToken,
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFileError::Io(e) => write!(f, "{e}"),
            TokenFileError::NotRegular => f.write_str("not a regular file"),
            TokenFileError::TooLarge => {
                write!(f, "larger than {MAX_TOKEN_FILE_BYTES} bytes: not a token")
            }
            TokenFileError::Empty => f.write_str("empty"),
            TokenFileError::NotAToken => {
                f.write_str("holds characters a token cannot have (only visible ASCII)")
            }
        }
    }
}

/// Read the token file on the poller thread without ever blocking it: the
/// open is non-blocking (a FIFO without a writer would wait forever), only
/// a regular file is read, and only up to the bound.
fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(TokenFileError::Io)?;
    let meta = file.metadata().map_err(TokenFileError::Io)?;
    if !meta.is_file() {
        return Err(TokenFileError::NotRegular);
    }
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(TokenFileError::TooLarge);
    }
    let mut bytes = Vec::new();
    // The file may grow between the check and the read.
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(TokenFileError::Io)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(TokenFileError::TooLarge);
    }
    token_from_file_text(&bytes)
}

/// The token in a file's bytes: surrounding whitespace (a final newline)
/// dropped; it goes into a header, so only visible ASCII. An empty file (a
/// rotation half done) is an error, not the anonymous token: the grace
/// period then keeps the node, where Consul's answer to an anonymous query
/// would drop it.
fn token_from_file_text(bytes: &[u8]) -> Result<String, TokenFileError> {
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(TokenFileError::Empty);
    }
    if !token.iter().all(u8::is_ascii_graphic) {
        return Err(TokenFileError::NotAToken);
    }
    Ok(String::from_utf8_lossy(token).into_owned())
}

/// Where the system keeps its CA bundle (Debian, RHEL, Alpine, SUSE).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

fn tls_config(settings: &ConsulSettings) -> Result<TlsConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = TlsConfig::builder()
        .unversioned_rustls_crypto_provider(provider)
        .disable_verification(!settings.verify);
    // The options and the environment (SSL_CERT_FILE included) are read
    // into the settings; only the system's own bundle is looked for here.
    let ca_file = settings.ca_file.clone().or_else(|| {
        SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    });
    match ca_file {
        Some(path) => {
            let certs = read_pem_certs(&path)?;
            builder = builder.root_certs(RootCerts::new_with_certs(&certs));
        }
        None if settings.verify => {
            return Err("no CA certificates: set CONSUL_CACERT or --consul-ca".into());
        }
        None => {}
    }
    match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_pem_certs(cert)?;
            let key = read_pem_key(key)?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => return Err("CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set together".into()),
    }
    Ok(builder.build())
}

impl Client {
    pub fn new(
        settings: &ConsulSettings,
        use_ip: bool,
        poll_interval: Duration,
    ) -> Result<Client, String> {
        let mut config = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .http_status_as_error(false)
            // A Consul agent is local or in the same network: never via a proxy.
            .proxy(None)
            .max_redirects(0)
            // Consul's answers for a few nodes are small: ureq's 128 KiB
            // default buffers would only add to the resident size.
            .input_buffer_size(INPUT_BUFFER_BYTES)
            .output_buffer_size(OUTPUT_BUFFER_BYTES)
            .user_agent(concat!("vault-redirector/", env!("CARGO_PKG_VERSION")));
        if settings.uses_https() {
            config = config.tls_config(tls_config(settings)?);
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
        let resolver = AgentResolver { overrides };
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

    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.token_file.is_some()
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
        let timeout = match query.wait {
            Some(wait) if query.index > 0 => {
                let wait = wait.min(MAX_WAIT);
                url.push_str(&format!(
                    "&index={}&wait={}ms",
                    query.index,
                    wait.as_millis().max(1)
                ));
                wait + wait / 16 + BLOCKING_SLACK
            }
            _ => self
                .poll_interval
                .clamp(MIN_QUERY_TIMEOUT, MAX_QUERY_TIMEOUT),
        };
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

/// One finished query, as the event loop receives it.
#[derive(Debug)]
pub struct PollOutcome {
    pub result: Result<Answer, PollError>,
}

/// The event loop's handle on the poller thread: it asks for a query, the
/// thread runs it, answers over a channel and wakes the loop.
pub struct Poller {
    requests: Sender<Query>,
    outcomes: Receiver<PollOutcome>,
}

/// The poller only runs ureq and parses JSON: a small stack is plenty.
const POLLER_STACK_BYTES: usize = 256 * 1024;

impl Poller {
    pub fn spawn(mut client: Client, waker: Arc<Waker>) -> std::io::Result<Poller> {
        Poller::spawn_with(move |query| client.fetch(query), waker)
    }

    /// The thread around any way of answering a query (tests use this).
    fn spawn_with(
        mut fetch: impl FnMut(Query) -> Result<Answer, PollError> + Send + 'static,
        waker: Arc<Waker>,
    ) -> std::io::Result<Poller> {
        let (request_tx, request_rx) = mpsc::channel::<Query>();
        let (outcome_tx, outcome_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("consul-poller".into())
            .stack_size(POLLER_STACK_BYTES)
            .spawn(move || {
                for query in request_rx {
                    let result = fetch(query);
                    if outcome_tx.send(PollOutcome { result }).is_err() {
                        break;
                    }
                    // A failed wake leaves the outcome queued for the next wake-up.
                    let _ = waker.wake();
                }
            })?;
        Ok(Poller {
            requests: request_tx,
            outcomes: outcome_rx,
        })
    }

    /// Ask for one query; false if the thread is gone.
    pub fn request(&self, query: Query) -> bool {
        self.requests.send(query).is_ok()
    }

    /// The next finished poll, if any; `Err` if the thread is gone.
    pub fn try_outcome(&self) -> Result<Option<PollOutcome>, ()> {
        match self.outcomes.try_recv() {
            Ok(o) => Ok(Some(o)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::consul as fixture;

    #[test]
    fn real_answer_gives_node_name_or_ip() {
        let body = fixture("health_service_vault_passing_active.json");
        assert_eq!(
            parse_answer(&body, false).unwrap().selection,
            Selection::One("testnode:8200".into())
        );
        assert_eq!(
            parse_answer(&body, true).unwrap().selection,
            Selection::One("127.0.0.1:8200".into())
        );
    }

    #[test]
    fn crashed_active_node_with_its_tag_is_skipped() {
        // The dead node (8210) is listed first, still tagged active, check critical.
        let body = fixture("killed_tag_active.json");
        assert_eq!(
            parse_answer(&body, true).unwrap().selection,
            Selection::One("127.0.0.1:8220".into())
        );
    }

    #[test]
    fn unfiltered_answers_pick_only_the_passing_active() {
        for (name, port) in [
            ("steady_all.json", 8210),
            ("steady_passing.json", 8210),
            ("sealed_all.json", 8200),
            ("sealed_passing.json", 8200),
            ("killed_all.json", 8220),
            ("killed_passing.json", 8220),
        ] {
            let want = Selection::One(format!("127.0.0.1:{port}").as_str().into());
            assert_eq!(
                parse_answer(&fixture(name), true).unwrap().selection,
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn step_down_window_has_no_active() {
        let body = fixture("stepdown_blocking_result_passing.json");
        assert_eq!(
            parse_answer(&body, false).unwrap().selection,
            Selection::None
        );
        assert_eq!(
            parse_answer(b"[]", false).unwrap().selection,
            Selection::None
        );
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(matches!(
            parse_answer(b"<html>", false),
            Err(PollError::Json(_))
        ));
        assert!(matches!(
            parse_answer(b"{\"a\":1}", false),
            Err(PollError::Json(_))
        ));
        let no_port = br#"[{"Node":{"Node":"n"},"Service":{"Tags":["active"]},"Checks":[]}]"#;
        assert!(matches!(
            parse_answer(no_port, false),
            Err(PollError::Json(_))
        ));
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let body = br#"[{"Node":{"Node":"n1","Address":"fd00::1"},
            "Service":{"Tags":["active"],"Port":8200},"Checks":[{"Status":"passing"}]}]"#;
        assert_eq!(
            parse_answer(body, true).unwrap().selection,
            Selection::One("[fd00::1]:8200".into())
        );
        assert_eq!(
            parse_answer(body, false).unwrap().selection,
            Selection::One("n1:8200".into())
        );
    }

    #[test]
    fn several_actives_pick_the_newest_registration() {
        let body = br#"[
            {"Node":{"Node":"a","Address":"10.0.0.1"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":10},"Checks":[]},
            {"Node":{"Node":"b","Address":"10.0.0.2"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":30},"Checks":[]},
            {"Node":{"Node":"c","Address":"10.0.0.3"},"Service":{"Tags":["standby"],"Port":8200,"ModifyIndex":40},"Checks":[]}]"#;
        assert_eq!(
            parse_answer(body, false).unwrap().selection,
            Selection::Several {
                chosen: "b:8200".into(),
                all: vec!["b:8200".into(), "a:8200".into()]
            }
        );
    }

    /// Only a panic ends the thread early (which aborts the release build);
    /// where it unwinds, the loop sees the thread gone and ends with an
    /// error rather than waiting for an answer that never comes.
    #[test]
    fn a_dead_poller_thread_is_noticed_not_waited_for() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let poller = Poller::spawn_with(
            |query: Query| {
                assert_eq!(query.index, 0, "the test's query");
                panic!("a bug in the poller thread");
            },
            waker,
        )
        .unwrap();
        assert!(poller.request(Query {
            index: 0,
            wait: None
        }));
        // The loop only ever polls the channel: it sees the thread gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match poller.try_outcome() {
                Err(()) => break,
                Ok(None) => assert!(std::time::Instant::now() < deadline, "never noticed"),
                Ok(Some(outcome)) => panic!("an outcome from a dead thread: {outcome:?}"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!poller.request(Query {
            index: 0,
            wait: None
        }));
    }

    #[test]
    fn warning_checks_are_not_passing() {
        let body = br#"[{"Node":{"Node":"a"},"Service":{"Tags":["active"],"Port":1},
            "Checks":[{"Status":"passing"},{"Status":"warning"}]}]"#;
        assert_eq!(
            parse_answer(body, false).unwrap().selection,
            Selection::None
        );
    }

    #[test]
    fn a_node_listed_twice_is_counted_once_even_when_not_adjacent() {
        // Sorted newest first, `a` comes first and last: two nodes, not three.
        let body = br#"[
            {"Node":{"Node":"a"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":30},"Checks":[]},
            {"Node":{"Node":"b"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":20},"Checks":[]},
            {"Node":{"Node":"a"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":10},"Checks":[]}]"#;
        assert_eq!(
            parse_answer(body, false).unwrap().selection,
            Selection::Several {
                chosen: "a:8200".into(),
                all: vec!["a:8200".into(), "b:8200".into()]
            }
        );
    }

    #[test]
    fn a_token_file_holds_one_visible_ascii_token() {
        let token = |text: &[u8]| token_from_file_text(text).map_err(|e| e.to_string());
        assert_eq!(
            token(b"  3f0c9c1e-5a7b-4c3d-9e2f-1a2b3c4d5e6f\n").as_deref(),
            Ok("3f0c9c1e-5a7b-4c3d-9e2f-1a2b3c4d5e6f")
        );
        assert_eq!(token(b"\n"), Err("empty".to_owned()));
        for bad in [&b"to\r\nX-Evil: 1"[..], b"tok en", b"t\xc3\xa4"] {
            assert!(token(bad).unwrap_err().contains("cannot have"), "{bad:?}");
        }
    }

    #[test]
    fn unusable_active_entries_are_skipped_with_an_escaped_reason() {
        let body = br#"[
            {"Node":{"Node":"evil\r\nX-Injected: yes"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":9},"Checks":[]},
            {"Node":{"Node":"big"},"Service":{"Tags":["active"],"Port":99999,"ModifyIndex":9},"Checks":[]},
            {"Node":{"Node":"neg"},"Service":{"Tags":["active"],"Port":-1,"ModifyIndex":9},"Checks":[]},
            {"Node":{"Node":""},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":9},"Checks":[]},
            {"Node":{"Node":"good"},"Service":{"Tags":["active"],"Port":8200,"ModifyIndex":1},"Checks":[]}]"#;
        let parsed = parse_answer(body, false).unwrap();
        assert_eq!(parsed.selection, Selection::One("good:8200".into()));
        assert_eq!(
            parsed.unusable,
            [
                r#"Node.Node: host "evil\r\nX-Injected: yes" is not a DNS name, an IPv4 or an IPv6 address"#,
                r#"Node.Node "big": port 99999 is not in 1..=65535"#,
                r#"Node.Node "neg": port -1 is not in 1..=65535"#,
                r#"Node.Node: host "" is not a DNS name, an IPv4 or an IPv6 address"#,
            ]
        );
    }
}
