//! Command line: raw arguments -> a validated `Config`, with the Python 0.2.0
//! tool's flags, help text, error texts and exit codes. The options are
//! declared once in `options`; `help` lays them out. No I/O beyond what
//! `Outcome` asks `main` to print.

mod help;
mod options;

use crate::discovery::consul::settings::{self, AgentAddr, ConsulSettings, Secret};
use crate::discovery::vault::settings::{VaultSettings, parse_node_urls};
use crate::server::limits::Limits;
use options::{Opt, Takes};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const SOURCE_URL: &str = env!("CARGO_PKG_REPOSITORY");

/// Exit code for a command line the parser rejects (argparse's).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a command line that parses but is inconsistent, and for
/// start-up failures (Consul unreachable, port in use, bad TLS files).
pub const EXIT_ERROR: u8 = 1;
/// Exit code when Consul answers but knows no active Vault node at start-up.
pub const EXIT_NO_ACTIVE: u8 = 3;

const DEFAULT_POLL_INTERVAL: f64 = 5.0;
const DEFAULT_PORT: u16 = 8080;
const DEFAULT_SERVICE: &str = "vault";
/// The longest `--drain` accepted: a day, like the other durations.
const MAX_DRAIN_SECS: f64 = 86_400.0;

/// Everything the daemon needs to know from its command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `-v` count: 0 warning, 1 info, 2+ debug.
    pub verbosity: u8,
    /// `-l`: disable logging once start-up is done.
    pub log_disable: bool,
    /// `-S`: redirect to https:// instead of http://.
    pub https: bool,
    /// `-I`: redirect to the node's address instead of its Consul node name.
    pub redirect_to_ip: bool,
    pub poll_interval: Duration,
    pub listen: SocketAddr,
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    /// The positional (or `CONSUL_HTTP_ADDR`), exactly as given: it is
    /// echoed in the health JSON. None with `--vault-nodes`.
    pub consul_host_port: Option<String>,
    pub consul: ConsulSettings,
    /// `--vault-nodes`: the nodes themselves are the source, not Consul.
    pub vault: Option<VaultSettings>,
    pub limits: Limits,
    /// TLS session resumption (tickets, session cache); `--no-tls-resumption`.
    pub tls_resumption: bool,
    /// Serve `/vault-redirector-metrics`; `--no-metrics` redirects it.
    pub metrics: bool,
    /// `--drain`: how long a terminating daemon keeps serving while its
    /// health check says 503 (zero: shut down at once).
    pub drain: Duration,
    /// `--reuse-port`: SO_REUSEPORT on the listener.
    pub reuse_port: bool,
}

impl Config {
    /// The scheme of every Location: `-S`'s, or that of the listed Vault
    /// nodes (one scheme for all, checked when parsing).
    pub fn scheme(&self) -> &'static str {
        match &self.vault {
            Some(vault) => vault.scheme().unwrap_or("http"),
            None if self.https => "https",
            None => "http",
        }
    }
}

/// What parsing asks `main` to do.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Run(Box<Config>),
    /// Print to stdout and exit 0 (`-h`, `-V`).
    Print(String),
    /// Print to stderr and exit with the code.
    Fail {
        message: String,
        code: u8,
    },
}

pub fn version_text() -> String {
    format!("vault-redirector {VERSION} (see <{SOURCE_URL}> for source code)\n")
}

fn usage_error(what: impl std::fmt::Display) -> Outcome {
    Outcome::Fail {
        message: format!("{}vault-redirector: error: {what}\n", help::usage()),
        code: EXIT_USAGE,
    }
}

fn config_error(what: &str) -> Outcome {
    Outcome::Fail {
        message: format!("ERROR: {what}\n"),
        code: EXIT_ERROR,
    }
}

/// The command line as given, before any meaning is attached: the last
/// value of each option (argparse's rule), how often each flag was given,
/// and the positional.
struct Raw {
    values: Vec<(&'static str, String)>,
    counts: Vec<(&'static str, u8)>,
    positional: Option<String>,
}

impl Raw {
    /// Options with values first, so that their values are not mistaken for
    /// combined short flags; then the flags; then the positional, and
    /// anything left over is an error.
    fn extract(argv: Vec<OsString>) -> Result<Raw, Outcome> {
        let mut args = pico_args::Arguments::from_vec(argv);
        let mut raw = Raw {
            values: Vec::new(),
            counts: Vec::new(),
            positional: None,
        };
        // Help and version win over everything else on the line.
        for long in [options::HELP, options::VERSION] {
            if args.contains(options::find(long).keys()) {
                raw.counts.push((long, 1));
                return Ok(raw);
            }
        }
        for opt in options::OPTIONS {
            if let Takes::Value { .. } = opt.takes {
                let given: Vec<String> = args.values_from_str(opt.keys()).map_err(|e| match e {
                    pico_args::Error::OptionWithoutAValue(_) => {
                        usage_error(format!("argument {}: expected one argument", opt.name()))
                    }
                    other => usage_error(other),
                })?;
                if let Some(last) = given.into_iter().last() {
                    raw.values.push((opt.long, last));
                }
            }
        }
        for opt in options::OPTIONS {
            if let Takes::Flag | Takes::Count = opt.takes {
                let mut count: u8 = 0;
                while args.contains(opt.keys()) {
                    count = count.saturating_add(1);
                }
                raw.counts.push((opt.long, count));
            }
        }
        raw.positional = raw.take_positional(args)?;
        Ok(raw)
    }

    fn take_positional(&self, args: pico_args::Arguments) -> Result<Option<String>, Outcome> {
        let rest: Vec<String> = args
            .finish()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let (unknown, positionals): (Vec<&String>, Vec<&String>) =
            rest.iter().partition(|a| a.starts_with('-') && a.len() > 1);
        let unrecognized: Vec<&str> = unknown
            .iter()
            .chain(positionals.iter().skip(1))
            .map(|s| s.as_str())
            .collect();
        if !unrecognized.is_empty() {
            return Err(usage_error(format!(
                "unrecognized arguments: {}",
                unrecognized.join(" ")
            )));
        }
        Ok(positionals.first().map(|p| (*p).clone()))
    }

    fn count(&self, long: &str) -> u8 {
        self.counts
            .iter()
            .find(|(l, _)| *l == long)
            .map_or(0, |(_, n)| *n)
    }

    fn flag(&self, long: &str) -> bool {
        self.count(long) > 0
    }

    /// The option's value, parsed; argparse's error text if it does not parse.
    fn value<T>(&self, long: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>, Outcome> {
        let Some((_, text)) = self.values.iter().find(|(l, _)| *l == long) else {
            return Ok(None);
        };
        let opt: &Opt = options::find(long);
        let Takes::Value { kind, .. } = opt.takes else {
            unreachable!("{long} takes no value");
        };
        match parse(text) {
            Some(v) => Ok(Some(v)),
            None => Err(usage_error(format!(
                "argument {}: invalid {kind} value: '{text}'",
                opt.name()
            ))),
        }
    }
}

fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse().ok()
}

fn parse_interval(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v <= 86_400.0)
}

fn parse_count(text: &str) -> Option<usize> {
    text.trim().parse().ok().filter(|n| *n > 0)
}

/// Zero or more seconds, at most a day.
fn parse_drain(text: &str) -> Option<Duration> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= MAX_DRAIN_SECS)
        .map(Duration::from_secs_f64)
}

fn parse_seconds(text: &str) -> Option<Duration> {
    parse_interval(text).map(Duration::from_secs_f64)
}

/// Consul service and datacenter names: letters, digits, `-`, `_`, `.`.
fn parse_name(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| text.to_owned())
}

fn parse_path(text: &str) -> Option<PathBuf> {
    Some(PathBuf::from(text))
}

fn parse_any(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn parse_bind(text: &str) -> Option<IpAddr> {
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// `<anything>:<digits>`, the original's `^.*:\d+$`.
fn is_host_port(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Reads one environment variable (empty counts as unset); injected so that
/// tests can give any environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parse the command line, reading Consul's variables from the environment.
pub fn parse(argv: Vec<OsString>) -> Outcome {
    parse_with_env(argv, &|name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })
}

pub fn parse_with_env(argv: Vec<OsString>, env: Env<'_>) -> Outcome {
    let raw = match Raw::extract(argv) {
        Ok(raw) => raw,
        Err(outcome) => return outcome,
    };
    if raw.flag(options::HELP) {
        return Outcome::Print(help::help());
    }
    if raw.flag(options::VERSION) {
        return Outcome::Print(version_text());
    }
    match Config::from_raw(&raw, env) {
        Ok(config) => Outcome::Run(Box::new(config)),
        Err(outcome) => outcome,
    }
}

impl Config {
    /// Meaning, defaults and the environment, in the original's order of
    /// checks: values that do not parse (exit 2), a missing positional
    /// (exit 2), then CONSUL_HOST_PORT's shape and -c/-k together (exit 1).
    fn from_raw(raw: &Raw, env: Env<'_>) -> Result<Config, Outcome> {
        let poll = raw.value(options::POLL_INTERVAL, parse_interval)?;
        let port = raw.value(options::PORT, parse_port)?;
        let _ignored = raw.value(options::CHECKID, parse_any)?;
        let cert_path = raw.value(options::CERT_PATH, parse_path)?;
        let key_path = raw.value(options::KEY_PATH, parse_path)?;
        let bind = raw.value(options::BIND, parse_bind)?;
        let limits = limits(raw)?;
        let drain = raw.value(options::DRAIN, parse_drain)?;
        let vault = vault_settings(raw, env)?;
        let (consul_host_port, agents) = match &vault {
            Some(_) => (None, Vec::new()),
            None => {
                let given = match &raw.positional {
                    Some(p) => p.clone(),
                    None => env(options::CONSUL_HTTP_ADDR).ok_or_else(|| {
                        usage_error("the following arguments are required: CONSUL_HOST_PORT")
                    })?,
                };
                let agents = agents(&given, env)?;
                (Some(given), agents)
            }
        };
        if cert_path.is_some() != key_path.is_some() {
            return Err(config_error(
                "-k|--key-path and -c|--cert-path must be specified together",
            ));
        }
        let ip = bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(Config {
            verbosity: raw.count(options::VERBOSE),
            log_disable: raw.flag(options::LOG_DISABLE),
            https: raw.flag(options::HTTPS),
            redirect_to_ip: raw.flag(options::IP),
            poll_interval: Duration::from_secs_f64(poll.unwrap_or(DEFAULT_POLL_INTERVAL)),
            listen: SocketAddr::new(ip, port.unwrap_or(DEFAULT_PORT)),
            cert_path,
            key_path,
            consul: consul_settings(raw, env, agents)?,
            consul_host_port,
            vault,
            limits,
            tls_resumption: !raw.flag(options::NO_TLS_RESUMPTION),
            metrics: !raw.flag(options::NO_METRICS),
            drain: drain.unwrap_or(Duration::ZERO),
            reuse_port: raw.flag(options::REUSE_PORT),
        })
    }
}

fn limits(raw: &Raw) -> Result<Limits, Outcome> {
    let defaults = Limits::default();
    Ok(Limits {
        max_connections: raw
            .value(options::MAX_CONNECTIONS, parse_count)?
            .unwrap_or(defaults.max_connections),
        head_timeout: raw
            .value(options::HEAD_TIMEOUT, parse_seconds)?
            .unwrap_or(defaults.head_timeout),
        idle_timeout: raw
            .value(options::IDLE_TIMEOUT, parse_seconds)?
            .unwrap_or(defaults.idle_timeout),
    })
}

/// The Consul agents of CONSUL_HOST_PORT (or CONSUL_HTTP_ADDR).
fn agents(consul_host_port: &str, env: Env<'_>) -> Result<Vec<AgentAddr>, Outcome> {
    let default_https = settings::env_bool(env(options::CONSUL_HTTP_SSL)).unwrap_or(false);
    settings::parse_agents(consul_host_port, default_https)
        .filter(|_| is_host_port(consul_host_port))
        .ok_or_else(|| config_error("CONSUL_HOST_PORT must be in host:port or ip:port format"))
}

/// `--vault-nodes` and its TLS settings (our option first, then Vault's own
/// variables), or None for Consul. Options that cannot apply are refused.
fn vault_settings(raw: &Raw, env: Env<'_>) -> Result<Option<VaultSettings>, Outcome> {
    let given = raw.values.iter().find(|(l, _)| *l == options::VAULT_NODES);
    let Some((_, spec)) = given else {
        if raw.values.iter().any(|(l, _)| *l == options::VAULT_CA) {
            return Err(usage_error("argument --vault-ca: only with --vault-nodes"));
        }
        return Ok(None);
    };
    let not_allowed = |what: &str, why: &str| {
        usage_error(format!(
            "argument {what}: not allowed with argument --vault-nodes{why}"
        ))
    };
    if raw.positional.is_some() {
        return Err(not_allowed("CONSUL_HOST_PORT", ""));
    }
    if raw.flag(options::HTTPS) {
        return Err(not_allowed(
            "-S/--https",
            " (the Location keeps the scheme of the listed URL)",
        ));
    }
    if raw.flag(options::IP) {
        return Err(not_allowed(
            "-I/--ip",
            " (the Location keeps the host of the listed URL)",
        ));
    }
    for long in options::CONSUL_ONLY {
        if raw.flag(long) || raw.values.iter().any(|(l, _)| l == long) {
            return Err(not_allowed(long, " (it is a Consul option)"));
        }
    }
    let nodes =
        parse_node_urls(spec).map_err(|e| usage_error(format!("argument --vault-nodes: {e}")))?;
    let path = |name: &str| env(name).map(PathBuf::from);
    let settings = VaultSettings {
        ca_file: raw
            .value(options::VAULT_CA, parse_path)?
            .or_else(|| path(options::VAULT_CACERT)),
        ca_dir: path(options::VAULT_CAPATH),
        client_cert: path(options::VAULT_CLIENT_CERT),
        client_key: path(options::VAULT_CLIENT_KEY),
        server_name: env(options::VAULT_TLS_SERVER_NAME),
        verify: !settings::env_bool(env(options::VAULT_SKIP_VERIFY)).unwrap_or(false),
        ..VaultSettings::for_nodes(nodes)
    };
    if settings.scheme().is_none() {
        return Err(usage_error(
            "argument --vault-nodes: the listed URLs mix http:// and https:// (one cluster's \
             nodes share a scheme)",
        ));
    }
    Ok(Some(settings))
}

/// How to ask Consul: our options first, then Consul's own variables.
fn consul_settings(
    raw: &Raw,
    env: Env<'_>,
    agents: Vec<AgentAddr>,
) -> Result<ConsulSettings, Outcome> {
    let path = |name: &str| env(name).map(PathBuf::from);
    let token_file = raw.value(options::CONSUL_TOKEN_FILE, parse_path)?;
    let ca_file = raw.value(options::CONSUL_CA, parse_path)?;
    Ok(ConsulSettings {
        service: raw
            .value(options::SERVICE, parse_name)?
            .unwrap_or_else(|| DEFAULT_SERVICE.to_owned()),
        datacenter: raw.value(options::DC, parse_name)?,
        stale: raw.flag(options::STALE),
        token: env(options::CONSUL_HTTP_TOKEN).map(Secret),
        token_file: token_file.or_else(|| path(options::CONSUL_HTTP_TOKEN_FILE)),
        ca_file: ca_file
            .or_else(|| path(options::CONSUL_CACERT))
            .or_else(|| path(options::SSL_CERT_FILE)),
        client_cert: path(options::CONSUL_CLIENT_CERT),
        client_key: path(options::CONSUL_CLIENT_KEY),
        server_name: env(options::CONSUL_TLS_SERVER_NAME),
        verify: settings::env_bool(env(options::CONSUL_HTTP_SSL_VERIFY)).unwrap_or(true),
        ..ConsulSettings::for_agents(agents)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Outcome {
        parse_with_env(args.iter().map(OsString::from).collect(), &|_| None)
    }

    fn run_env(args: &[&str], vars: &[(&str, &str)]) -> Outcome {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_with_env(args.iter().map(OsString::from).collect(), &move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn consul_options_and_environment() {
        let c = match run_env(
            &[
                "--service",
                "vault-prod",
                "--dc=eu1",
                "--stale",
                "--consul-ca",
                "/etc/ca.pem",
                "https://c1:8501,https://c2:8501",
            ],
            &[
                ("CONSUL_HTTP_TOKEN", "s.secret"),
                ("CONSUL_TLS_SERVER_NAME", "consul.service"),
                ("CONSUL_HTTP_SSL_VERIFY", "false"),
            ],
        ) {
            Outcome::Run(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(c.consul.service, "vault-prod");
        assert_eq!(c.consul.datacenter.as_deref(), Some("eu1"));
        assert!(c.consul.stale && !c.consul.verify);
        assert_eq!(c.consul.agents.len(), 2);
        assert!(c.consul.agents.iter().all(|a| a.https));
        assert_eq!(c.consul.token, Some(Secret("s.secret".into())));
        assert_eq!(c.consul.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(c.consul.server_name.as_deref(), Some("consul.service"));
        assert_eq!(
            c.consul_host_port.as_deref(),
            Some("https://c1:8501,https://c2:8501")
        );
    }

    #[test]
    fn consul_http_addr_stands_in_for_the_positional() {
        match run_env(
            &["-P", "0"],
            &[
                ("CONSUL_HTTP_ADDR", "consul:8500"),
                ("CONSUL_HTTP_SSL", "true"),
            ],
        ) {
            Outcome::Run(c) => {
                assert_eq!(c.consul_host_port.as_deref(), Some("consul:8500"));
                assert!(c.consul.agents[0].https);
            }
            other => panic!("{other:?}"),
        }
        // The positional wins over the variable.
        match run_env(&["a:1"], &[("CONSUL_HTTP_ADDR", "b:2")]) {
            Outcome::Run(c) => assert_eq!(c.consul.agents[0].host_port, "a:1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(failure(&["--service", "bad name", "c:1"]).1, EXIT_USAGE);
        assert_eq!(failure(&["a:1,b"]).1, EXIT_ERROR);
    }

    #[test]
    fn vault_nodes_replace_consul_host_port() {
        let c = match run_env(
            &[
                "--vault-nodes",
                "https://vault-a:8200,https://[fd00::2]:8200",
                "--vault-ca=/etc/ca.pem",
            ],
            &[
                ("VAULT_CACERT", "/env/ca.pem"),
                ("VAULT_CAPATH", "/env/cas"),
                ("VAULT_CLIENT_CERT", "/c.pem"),
                ("VAULT_CLIENT_KEY", "/k.pem"),
                ("VAULT_TLS_SERVER_NAME", "vault.service"),
                ("VAULT_SKIP_VERIFY", "true"),
                ("CONSUL_HTTP_ADDR", "consul:8500"),
            ],
        ) {
            Outcome::Run(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(c.consul_host_port, None, "CONSUL_HTTP_ADDR does not apply");
        let vault = c.vault.as_ref().unwrap();
        let urls: Vec<String> = vault.nodes.iter().map(ToString::to_string).collect();
        assert_eq!(urls, ["https://vault-a:8200", "https://[fd00::2]:8200"]);
        assert_eq!(
            vault.ca_file,
            Some(PathBuf::from("/etc/ca.pem")),
            "the option wins"
        );
        assert_eq!(vault.ca_dir, Some(PathBuf::from("/env/cas")));
        assert_eq!(vault.client_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(vault.client_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(vault.server_name.as_deref(), Some("vault.service"));
        assert!(!vault.verify);
        assert_eq!(c.scheme(), "https");
        match run_env(&["--vault-nodes", "http://a:1"], &[("VAULT_CACERT", "/e")]) {
            Outcome::Run(c) => {
                let vault = c.vault.unwrap();
                assert_eq!(vault.ca_file, Some(PathBuf::from("/e")));
                assert!(vault.verify);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn vault_nodes_refuse_what_cannot_apply_with_exit_2() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--vault-nodes", "http://a:1", "c:1"],
                "argument CONSUL_HOST_PORT: not allowed with argument --vault-nodes",
            ),
            (
                &["-S", "--vault-nodes", "http://a:1"],
                "argument -S/--https: not allowed with argument --vault-nodes",
            ),
            (
                &["-I", "--vault-nodes", "http://a:1"],
                "argument -I/--ip: not allowed with argument --vault-nodes",
            ),
            (
                &["--service", "v", "--vault-nodes", "http://a:1"],
                "argument --service: not allowed with argument --vault-nodes",
            ),
            (
                &["--vault-nodes", "a:1"],
                "argument --vault-nodes: \"a:1\" is not http://host:port",
            ),
            (
                &["--vault-nodes", "http://a:1,https://b:1"],
                "argument --vault-nodes: the listed URLs mix http:// and https://",
            ),
            (
                &["--vault-ca", "/ca", "c:1"],
                "argument --vault-ca: only with --vault-nodes",
            ),
        ];
        for (args, text) in cases {
            let (msg, code) = failure(args);
            assert_eq!(code, EXIT_USAGE, "{args:?}");
            let last = msg.lines().last().unwrap_or("");
            assert!(
                last.starts_with(&format!("vault-redirector: error: {text}")),
                "{args:?}: {msg}"
            );
        }
    }

    fn config(args: &[&str]) -> Config {
        match run(args) {
            Outcome::Run(c) => *c,
            other => panic!("expected a config for {args:?}, got {other:?}"),
        }
    }

    fn failure(args: &[&str]) -> (String, u8) {
        match run(args) {
            Outcome::Fail { message, code } => (message, code),
            other => panic!("expected a failure for {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_original() {
        let c = config(&["consul:8500"]);
        assert_eq!(c.verbosity, 0);
        assert!(!c.log_disable && !c.https && !c.redirect_to_ip);
        assert_eq!(c.poll_interval, Duration::from_secs(5));
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.consul_host_port.as_deref(), Some("consul:8500"));
        assert_eq!(c.scheme(), "http");
        assert_eq!(c.limits, Limits::default());
        assert!(c.tls_resumption);
        assert!(!config(&["--no-tls-resumption", "c:1"]).tls_resumption);
        assert!(c.metrics);
        assert!(!config(&["--no-metrics", "c:1"]).metrics);
    }

    #[test]
    fn limits_options() {
        let c = config(&[
            "--max-connections",
            "5",
            "--head-timeout=0.5",
            "--idle-timeout",
            "2",
            "c:1",
        ]);
        assert_eq!(c.limits.max_connections, 5);
        assert_eq!(c.limits.head_timeout, Duration::from_millis(500));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(2));
        assert_eq!(failure(&["--max-connections", "0", "c:1"]).1, EXIT_USAGE);
        assert_eq!(failure(&["--idle-timeout", "-1", "c:1"]).1, EXIT_USAGE);
    }

    #[test]
    fn drain_and_reuse_port() {
        let c = config(&["c:1"]);
        assert_eq!((c.drain, c.reuse_port), (Duration::ZERO, false));
        let c = config(&["--drain", "2.5", "--reuse-port", "c:1"]);
        assert_eq!((c.drain, c.reuse_port), (Duration::from_millis(2500), true));
        assert_eq!(config(&["--drain=0", "c:1"]).drain, Duration::ZERO);
        for bad in ["-1", "x", "inf", "86401"] {
            assert_eq!(failure(&["--drain", bad, "c:1"]).1, EXIT_USAGE, "{bad}");
        }
    }

    #[test]
    fn combined_short_flags_and_counts() {
        let c = config(&["-vlSI", "consul:8500"]);
        assert_eq!(c.verbosity, 1);
        assert!(c.log_disable && c.https && c.redirect_to_ip);
        assert_eq!(config(&["-vv", "c:1"]).verbosity, 2);
        assert_eq!(config(&["-v", "c:1", "-v", "--verbose"]).verbosity, 3);
    }

    #[test]
    fn option_value_forms_and_order() {
        assert_eq!(config(&["-P99", "c:1"]).listen.port(), 99);
        assert_eq!(config(&["--port=99", "c:1"]).listen.port(), 99);
        assert_eq!(config(&["c:1", "--port", "99"]).listen.port(), 99);
        assert_eq!(config(&["-P", "1", "c:1", "-P", "2"]).listen.port(), 2);
        assert_eq!(
            config(&["-p", "0.25", "c:1"]).poll_interval,
            Duration::from_millis(250)
        );
        assert_eq!(
            config(&["-C", "whatever", "c:1"])
                .consul_host_port
                .as_deref(),
            Some("c:1")
        );
    }

    #[test]
    fn bind_accepts_ipv4_and_ipv6() {
        assert_eq!(
            config(&["--bind", "::1", "-P", "0", "c:1"]).listen,
            "[::1]:0".parse().unwrap()
        );
        assert_eq!(
            config(&["--bind=[::]", "c:1"]).listen,
            "[::]:8080".parse().unwrap()
        );
        assert_eq!(
            config(&["--bind", "127.0.0.1", "c:1"]).listen,
            "127.0.0.1:8080".parse().unwrap()
        );
        let (msg, code) = failure(&["--bind", "localhost", "c:1"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(
            msg.contains("argument --bind: invalid address value"),
            "{msg}"
        );
    }

    #[test]
    fn usage_errors_exit_2_with_argparse_texts() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[],
                "the following arguments are required: CONSUL_HOST_PORT",
            ),
            (
                &["-P", "x", "c:1"],
                "argument -P/--port: invalid int value: 'x'",
            ),
            (
                &["-P", "70000", "c:1"],
                "argument -P/--port: invalid int value: '70000'",
            ),
            (
                &["-p", "x", "c:1"],
                "argument -p/--poll-interval: invalid float value: 'x'",
            ),
            (
                &["-p", "0", "c:1"],
                "argument -p/--poll-interval: invalid float value: '0'",
            ),
            (&["--bogus", "c:1"], "unrecognized arguments: --bogus"),
            (&["c:1", "d:2"], "unrecognized arguments: d:2"),
            (&["c:1", "-P"], "argument -P/--port: expected one argument"),
        ];
        for (args, text) in cases {
            let (msg, code) = failure(args);
            assert_eq!(code, EXIT_USAGE, "{args:?}");
            assert!(msg.starts_with("usage: vault-redirector"), "{msg}");
            assert!(
                msg.ends_with(&format!("vault-redirector: error: {text}\n")),
                "{args:?}: {msg}"
            );
        }
    }

    #[test]
    fn consistency_errors_exit_1_with_the_original_texts() {
        assert_eq!(
            failure(&["consul"]),
            (
                "ERROR: CONSUL_HOST_PORT must be in host:port or ip:port format\n".into(),
                EXIT_ERROR
            )
        );
        assert_eq!(failure(&["consul:"]).1, EXIT_ERROR);
        assert_eq!(failure(&["consul:85x"]).1, EXIT_ERROR);
        assert_eq!(
            failure(&["-c", "cert.pem", "c:1"]),
            (
                "ERROR: -k|--key-path and -c|--cert-path must be specified together\n".into(),
                EXIT_ERROR
            )
        );
        assert_eq!(failure(&["-k", "key.pem", "c:1"]).1, EXIT_ERROR);
        // The host:port check comes first, as in the original.
        assert!(failure(&["-k", "k", "nope"]).0.contains("CONSUL_HOST_PORT"));
    }

    #[test]
    fn host_port_shapes() {
        assert!(is_host_port("127.0.0.1:8500"));
        assert!(is_host_port("[::1]:8500"));
        assert!(is_host_port(":8500"));
        assert!(!is_host_port("consul"));
        assert!(!is_host_port("consul:port"));
    }

    #[test]
    fn help_and_version_go_to_stdout() {
        match run(&["-h"]) {
            Outcome::Print(text) => {
                assert!(text.starts_with(&help::usage()));
                for flag in [
                    "-v,",
                    "-l,",
                    "-V,",
                    "-S,",
                    "-I,",
                    "-p POLL",
                    "-P BIND",
                    "-C CHECKID",
                    "-c CERT",
                    "-k KEY",
                    "--bind ADDR",
                ] {
                    assert!(text.contains(flag), "help lacks {flag}");
                }
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run(&["c:1", "-V"]),
            Outcome::Print(format!(
                "vault-redirector {VERSION} (see <{SOURCE_URL}> for source code)\n"
            ))
        );
    }
}
