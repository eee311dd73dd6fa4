//! Command line: raw arguments -> a validated `Config`, with the Python 0.2.0
//! tool's flags, help text, error texts and exit codes. No I/O beyond what
//! `Outcome` asks `main` to print.

use crate::consul_settings::{self, ConsulSettings, Secret};
use crate::limits::Limits;
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
    /// echoed in the health JSON.
    pub consul_host_port: String,
    pub consul: ConsulSettings,
    pub limits: Limits,
    /// TLS session resumption (tickets, session cache); `--no-tls-resumption`.
    pub tls_resumption: bool,
}

impl Config {
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
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

pub const USAGE: &str = "\
usage: vault-redirector [-h] [-v] [-l] [-V] [-S] [-I] [-p POLL_INTERVAL]
                        [-P BIND_PORT] [-C CHECKID] [-c CERT_PATH]
                        [-k KEY_PATH] [--bind ADDR] [--max-connections N]
                        [--head-timeout SECS] [--idle-timeout SECS]
                        [--service NAME] [--dc NAME] [--stale]
                        [--consul-token-file PATH] [--consul-ca PATH]
                        [--no-tls-resumption]
                        CONSUL_HOST_PORT
";

const DESCRIPTION: &str = "\
Redirect Hashicorp Vault (and OpenBao) client requests to the active node in
a HA cluster, as found in Consul.
";

const OPTIONS: &str = "
positional arguments:
  CONSUL_HOST_PORT      Consul address in host:port form; also https://host:port,
                        and several separated by commas (tried in turn).
                        Optional when CONSUL_HTTP_ADDR is set

options:
  -h, --help            show this help message and exit
  -v, --verbose         verbose output. specify twice for debug-level output.
                        See also -l|--log-disable
  -l, --log-disable     If specified, disable ALL logging after initial setup.
                        This can be changed at runtime via signals (SIGUSR1
                        enables, SIGUSR2 disables)
  -V, --version         show program's version number and exit
  -S, --https           Redirect to HTTPS scheme instead of plain HTTP.
  -I, --ip              redirect to active node IP instead of name
  -p POLL_INTERVAL, --poll-interval POLL_INTERVAL
                        Consul service health poll interval in seconds
                        (default 5.0)
  -P BIND_PORT, --port BIND_PORT
                        Port number to listen on (default 8080; 0 picks a
                        free port and logs it)
  -C CHECKID, --checkid CHECKID
                        Accepted and ignored (kept for compatibility with
                        0.2.0, which ignored it too)
  -c CERT_PATH, --cert-path CERT_PATH
                        Path to PEM-encoded TLS certificate. If you need a
                        certificate chain to verify trust, this file should be
                        composed of the server certificate followed by one or
                        more chain certificates. If specified, you must also
                        specify -k|--key-path
  -k KEY_PATH, --key-path KEY_PATH
                        Path to PEM-encoded TLS private key. If specified, you
                        must also specify -c|--cert-path
  --bind ADDR           IP address to listen on (default 0.0.0.0; IPv6
                        literals such as :: are accepted)
  --max-connections N   Concurrent client connections; at the cap new ones
                        wait in the kernel's backlog (default 10000)
  --head-timeout SECS   Close a connection whose request head has not fully
                        arrived within SECS of its first byte (default 10)
  --idle-timeout SECS   Close a keep-alive connection idle for SECS
                        (default 60)
  --no-tls-resumption   Turn off TLS session tickets and the session cache
                        (every connection does a full handshake)
  --service NAME        Consul service name of Vault (default vault)
  --dc NAME             Consul datacenter to ask (default: the agent's)
  --stale               Let any Consul server answer, not only the leader
  --consul-token-file PATH
                        File holding the Consul ACL token (re-read before
                        every query); else CONSUL_HTTP_TOKEN_FILE, else
                        CONSUL_HTTP_TOKEN
  --consul-ca PATH      CA certificate(s) for https:// agents; else
                        CONSUL_CACERT, else the system's CA bundle

Consul environment variables: CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY, CONSUL_CACERT,
CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME.
";

pub fn help_text() -> String {
    format!("{USAGE}\n{DESCRIPTION}{OPTIONS}")
}

pub fn version_text() -> String {
    format!("vault-redirector {VERSION} (see <{SOURCE_URL}> for source code)\n")
}

fn usage_error(what: impl std::fmt::Display) -> Outcome {
    Outcome::Fail {
        message: format!("{USAGE}vault-redirector: error: {what}\n"),
        code: EXIT_USAGE,
    }
}

fn config_error(what: &str) -> Outcome {
    Outcome::Fail {
        message: format!("ERROR: {what}\n"),
        code: EXIT_ERROR,
    }
}

/// The value of an option that may be given several times: the last one wins,
/// as with argparse.
fn last_value<T>(
    args: &mut pico_args::Arguments,
    keys: impl Into<pico_args::Keys>,
    name: &str,
    kind: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, Outcome> {
    let raw: Vec<String> = args.values_from_str(keys).map_err(|e| match e {
        pico_args::Error::OptionWithoutAValue(_) => {
            usage_error(format!("argument {name}: expected one argument"))
        }
        other => usage_error(other),
    })?;
    match raw.last() {
        None => Ok(None),
        Some(text) => match parse(text) {
            Some(v) => Ok(Some(v)),
            None => Err(usage_error(format!(
                "argument {name}: invalid {kind} value: '{text}'"
            ))),
        },
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

/// Parse the command line, reading Consul's variables from the environment.
pub fn parse(argv: Vec<OsString>) -> Outcome {
    parse_with_env(argv, &|name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })
}

pub fn parse_with_env(argv: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Outcome {
    match parse_inner(argv, env) {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

fn parse_inner(
    argv: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Outcome, Outcome> {
    let mut args = pico_args::Arguments::from_vec(argv);
    if args.contains(["-h", "--help"]) {
        return Ok(Outcome::Print(help_text()));
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Outcome::Print(version_text()));
    }
    // Options with values first, so that their values are not mistaken for
    // combined short flags; then the flags; then the positional.
    let poll = last_value(
        &mut args,
        ["-p", "--poll-interval"],
        "-p/--poll-interval",
        "float",
        parse_interval,
    )?;
    let port = last_value(&mut args, ["-P", "--port"], "-P/--port", "int", parse_port)?;
    let _checkid = last_value(&mut args, ["-C", "--checkid"], "-C/--checkid", "str", |s| {
        Some(s.to_owned())
    })?;
    let cert_path = last_value(
        &mut args,
        ["-c", "--cert-path"],
        "-c/--cert-path",
        "str",
        parse_path,
    )?;
    let key_path = last_value(
        &mut args,
        ["-k", "--key-path"],
        "-k/--key-path",
        "str",
        parse_path,
    )?;
    let bind = last_value(&mut args, "--bind", "--bind", "address", parse_bind)?;
    let max_connections = last_value(
        &mut args,
        "--max-connections",
        "--max-connections",
        "count",
        parse_count,
    )?;
    let head_timeout = last_value(
        &mut args,
        "--head-timeout",
        "--head-timeout",
        "seconds",
        parse_seconds,
    )?;
    let idle_timeout = last_value(
        &mut args,
        "--idle-timeout",
        "--idle-timeout",
        "seconds",
        parse_seconds,
    )?;
    let service = last_value(&mut args, "--service", "--service", "name", parse_name)?;
    let datacenter = last_value(&mut args, "--dc", "--dc", "name", parse_name)?;
    let token_file = last_value(
        &mut args,
        "--consul-token-file",
        "--consul-token-file",
        "path",
        parse_path,
    )?;
    let ca_file = last_value(&mut args, "--consul-ca", "--consul-ca", "path", parse_path)?;
    let defaults = Limits::default();
    let limits = Limits {
        max_connections: max_connections.unwrap_or(defaults.max_connections),
        head_timeout: head_timeout.unwrap_or(defaults.head_timeout),
        idle_timeout: idle_timeout.unwrap_or(defaults.idle_timeout),
    };

    let mut verbosity: u8 = 0;
    while args.contains(["-v", "--verbose"]) {
        verbosity = verbosity.saturating_add(1);
    }
    let log_disable = flag(&mut args, ["-l", "--log-disable"]);
    let https = flag(&mut args, ["-S", "--https"]);
    let redirect_to_ip = flag(&mut args, ["-I", "--ip"]);
    let stale = flag_long(&mut args, "--stale");
    let tls_resumption = !flag_long(&mut args, "--no-tls-resumption");

    let rest: Vec<String> = args
        .finish()
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (options, positionals): (Vec<&String>, Vec<&String>) =
        rest.iter().partition(|a| a.starts_with('-') && a.len() > 1);
    let consul_host_port = match positionals.first() {
        Some(p) => (*p).clone(),
        None if options.is_empty() && env("CONSUL_HTTP_ADDR").is_some() => {
            env("CONSUL_HTTP_ADDR").unwrap_or_default()
        }
        None if options.is_empty() => {
            return Err(usage_error(
                "the following arguments are required: CONSUL_HOST_PORT",
            ));
        }
        None => String::new(),
    };
    let unrecognized: Vec<&str> = options
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

    let default_https = consul_settings::env_bool(env("CONSUL_HTTP_SSL")).unwrap_or(false);
    let agents = consul_settings::parse_agents(&consul_host_port, default_https);
    let Some(agents) = agents.filter(|_| is_host_port(&consul_host_port)) else {
        return Err(config_error(
            "CONSUL_HOST_PORT must be in host:port or ip:port format",
        ));
    };
    if cert_path.is_some() != key_path.is_some() {
        return Err(config_error(
            "-k|--key-path and -c|--cert-path must be specified together",
        ));
    }

    let consul = ConsulSettings {
        service: service.unwrap_or_else(|| "vault".to_owned()),
        datacenter,
        stale,
        token: env("CONSUL_HTTP_TOKEN").map(Secret),
        token_file: token_file.or_else(|| env("CONSUL_HTTP_TOKEN_FILE").map(PathBuf::from)),
        ca_file: ca_file.or_else(|| env("CONSUL_CACERT").map(PathBuf::from)),
        client_cert: env("CONSUL_CLIENT_CERT").map(PathBuf::from),
        client_key: env("CONSUL_CLIENT_KEY").map(PathBuf::from),
        server_name: env("CONSUL_TLS_SERVER_NAME"),
        verify: consul_settings::env_bool(env("CONSUL_HTTP_SSL_VERIFY")).unwrap_or(true),
        ..ConsulSettings::for_agents(agents)
    };
    let ip = bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Ok(Outcome::Run(Box::new(Config {
        verbosity,
        log_disable,
        https,
        redirect_to_ip,
        poll_interval: Duration::from_secs_f64(poll.unwrap_or(DEFAULT_POLL_INTERVAL)),
        listen: SocketAddr::new(ip, port.unwrap_or(DEFAULT_PORT)),
        cert_path,
        key_path,
        consul_host_port,
        consul,
        limits,
        tls_resumption,
    })))
}

/// A long-only boolean flag (combined short flags do not apply).
fn flag_long(args: &mut pico_args::Arguments, key: &'static str) -> bool {
    let mut seen = false;
    while args.contains(key) {
        seen = true;
    }
    seen
}

/// A boolean flag; giving it twice is allowed, as with argparse.
fn flag(args: &mut pico_args::Arguments, keys: [&'static str; 2]) -> bool {
    let mut seen = false;
    while args.contains(keys) {
        seen = true;
    }
    seen
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
        assert_eq!(c.consul_host_port, "https://c1:8501,https://c2:8501");
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
                assert_eq!(c.consul_host_port, "consul:8500");
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
        assert_eq!(c.consul_host_port, "consul:8500");
        assert_eq!(c.scheme(), "http");
        assert_eq!(c.limits, Limits::default());
        assert!(c.tls_resumption);
        assert!(!config(&["--no-tls-resumption", "c:1"]).tls_resumption);
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
        assert_eq!(config(&["-C", "whatever", "c:1"]).consul_host_port, "c:1");
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
                assert!(text.starts_with(USAGE));
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
