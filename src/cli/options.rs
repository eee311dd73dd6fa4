//! Every option and environment variable, declared once: the keys, what the
//! option takes, and its help line. The parser extracts by this table and
//! the help text is generated from it, so the two cannot drift apart.

/// What an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// A boolean flag; giving it twice is allowed, as with argparse.
    Flag,
    /// A flag counted each time it is given (`-vv`).
    Count,
    /// A value: `metavar` in the help, `kind` in argparse's error texts
    /// ("invalid int value").
    Value {
        metavar: &'static str,
        kind: &'static str,
    },
}

#[derive(Debug)]
pub struct Opt {
    pub short: Option<&'static str>,
    pub long: &'static str,
    pub takes: Takes,
    pub help: &'static str,
}

const fn flag(short: Option<&'static str>, long: &'static str, help: &'static str) -> Opt {
    Opt {
        short,
        long,
        takes: Takes::Flag,
        help,
    }
}

const fn value(
    short: Option<&'static str>,
    long: &'static str,
    metavar: &'static str,
    kind: &'static str,
    help: &'static str,
) -> Opt {
    Opt {
        short,
        long,
        takes: Takes::Value { metavar, kind },
        help,
    }
}

pub const HELP: &str = "--help";
pub const VERSION: &str = "--version";
pub const VERBOSE: &str = "--verbose";
pub const LOG_DISABLE: &str = "--log-disable";
pub const HTTPS: &str = "--https";
pub const IP: &str = "--ip";
pub const POLL_INTERVAL: &str = "--poll-interval";
pub const PORT: &str = "--port";
pub const CHECKID: &str = "--checkid";
pub const CERT_PATH: &str = "--cert-path";
pub const KEY_PATH: &str = "--key-path";
pub const BIND: &str = "--bind";
pub const MAX_CONNECTIONS: &str = "--max-connections";
pub const HEAD_TIMEOUT: &str = "--head-timeout";
pub const IDLE_TIMEOUT: &str = "--idle-timeout";
pub const NO_TLS_RESUMPTION: &str = "--no-tls-resumption";
pub const NO_METRICS: &str = "--no-metrics";
pub const DRAIN: &str = "--drain";
pub const REUSE_PORT: &str = "--reuse-port";
pub const SERVICE: &str = "--service";
pub const DC: &str = "--dc";
pub const STALE: &str = "--stale";
pub const CONSUL_TOKEN_FILE: &str = "--consul-token-file";
pub const CONSUL_CA: &str = "--consul-ca";
pub const VAULT_NODES: &str = "--vault-nodes";
pub const VAULT_CA: &str = "--vault-ca";

/// The options that only mean something with Consul.
pub const CONSUL_ONLY: &[&str] = &[SERVICE, DC, STALE, CONSUL_TOKEN_FILE, CONSUL_CA];

/// In the order of the help text. The first eleven are the Python 0.2.0
/// tool's, with its help texts.
pub const OPTIONS: &[Opt] = &[
    flag(Some("-h"), HELP, "show this help message and exit"),
    Opt {
        short: Some("-v"),
        long: VERBOSE,
        takes: Takes::Count,
        help: "verbose output. specify twice for debug-level output. See also -l|--log-disable",
    },
    flag(
        Some("-l"),
        LOG_DISABLE,
        "If specified, disable ALL logging after initial setup. This can be changed at runtime \
         via signals (SIGUSR1 enables, SIGUSR2 disables)",
    ),
    flag(
        Some("-V"),
        VERSION,
        "show program's version number and exit",
    ),
    flag(
        Some("-S"),
        HTTPS,
        "Redirect to HTTPS scheme instead of plain HTTP.",
    ),
    flag(Some("-I"), IP, "redirect to active node IP instead of name"),
    value(
        Some("-p"),
        POLL_INTERVAL,
        "POLL_INTERVAL",
        "float",
        "Consul service health poll interval in seconds (default 5.0)",
    ),
    value(
        Some("-P"),
        PORT,
        "BIND_PORT",
        "int",
        "Port number to listen on (default 8080; 0 picks a free port and logs it)",
    ),
    value(
        Some("-C"),
        CHECKID,
        "CHECKID",
        "str",
        "Accepted and ignored (kept for compatibility with 0.2.0, which ignored it too)",
    ),
    value(
        Some("-c"),
        CERT_PATH,
        "CERT_PATH",
        "str",
        "Path to PEM-encoded TLS certificate. If you need a certificate chain to verify trust, \
         this file should be composed of the server certificate followed by one or more chain \
         certificates. If specified, you must also specify -k|--key-path",
    ),
    value(
        Some("-k"),
        KEY_PATH,
        "KEY_PATH",
        "str",
        "Path to PEM-encoded TLS private key. If specified, you must also specify -c|--cert-path",
    ),
    value(
        None,
        BIND,
        "ADDR",
        "address",
        "IP address to listen on (default 0.0.0.0; IPv6 literals such as :: are accepted)",
    ),
    value(
        None,
        MAX_CONNECTIONS,
        "N",
        "count",
        "Concurrent client connections; at the cap new ones wait in the kernel's backlog \
         (default 10000)",
    ),
    value(
        None,
        HEAD_TIMEOUT,
        "SECS",
        "seconds",
        "Close a connection whose request head has not fully arrived within SECS of its first \
         byte, or whose body has not within SECS of the end of its head (default 10)",
    ),
    value(
        None,
        IDLE_TIMEOUT,
        "SECS",
        "seconds",
        "Close a keep-alive connection idle for SECS (default 60)",
    ),
    value(
        None,
        DRAIN,
        "SECS",
        "seconds",
        "On SIGTERM/SIGINT, keep accepting and redirecting for SECS while the health check \
         answers 503 (draining), then shut down (default 0: shut down at once)",
    ),
    flag(
        None,
        REUSE_PORT,
        "Listen with SO_REUSEPORT: several processes may share the port (one per core, or a \
         new one started before the old one drains)",
    ),
    flag(
        None,
        NO_TLS_RESUMPTION,
        "Turn off TLS session tickets and the session cache (every connection does a full \
         handshake)",
    ),
    flag(
        None,
        NO_METRICS,
        "Do not serve Prometheus metrics at /vault-redirector-metrics: redirect that path like \
         any other",
    ),
    value(
        None,
        SERVICE,
        "NAME",
        "name",
        "Consul service name of Vault (default vault)",
    ),
    value(
        None,
        DC,
        "NAME",
        "name",
        "Consul datacenter to ask (default: the agent's)",
    ),
    flag(
        None,
        STALE,
        "Let any Consul server answer, not only the leader",
    ),
    value(
        None,
        CONSUL_TOKEN_FILE,
        "PATH",
        "path",
        "File holding the Consul ACL token (re-read before every query); else \
         CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN",
    ),
    value(
        None,
        CONSUL_CA,
        "PATH",
        "path",
        "CA certificate(s) for https:// agents; else CONSUL_CACERT, else SSL_CERT_FILE, else the \
         system's CA bundle",
    ),
    value(
        None,
        VAULT_NODES,
        "URL[,URL...]",
        "URL list",
        "Without Consul: ask these Vault nodes (http://host:port or https://host:port, IPv6 in \
         brackets) which one is active, in place of CONSUL_HOST_PORT. Clients are sent to the \
         listed URL of the active node",
    ),
    value(
        None,
        VAULT_CA,
        "PATH",
        "path",
        "CA certificate(s) for https:// Vault nodes; else VAULT_CACERT, else VAULT_CAPATH, else \
         the system's CA bundle",
    ),
];

/// The positional argument.
pub const POSITIONAL: (&str, &str) = (
    "CONSUL_HOST_PORT",
    "Consul address in host:port form; also https://host:port, and several separated by \
     commas (tried in turn). Optional when CONSUL_HTTP_ADDR is set; not with --vault-nodes",
);

pub const CONSUL_HTTP_ADDR: &str = "CONSUL_HTTP_ADDR";
pub const CONSUL_HTTP_TOKEN: &str = "CONSUL_HTTP_TOKEN";
pub const CONSUL_HTTP_TOKEN_FILE: &str = "CONSUL_HTTP_TOKEN_FILE";
pub const CONSUL_HTTP_SSL: &str = "CONSUL_HTTP_SSL";
pub const CONSUL_HTTP_SSL_VERIFY: &str = "CONSUL_HTTP_SSL_VERIFY";
pub const CONSUL_CACERT: &str = "CONSUL_CACERT";
pub const CONSUL_CLIENT_CERT: &str = "CONSUL_CLIENT_CERT";
pub const CONSUL_CLIENT_KEY: &str = "CONSUL_CLIENT_KEY";
pub const CONSUL_TLS_SERVER_NAME: &str = "CONSUL_TLS_SERVER_NAME";
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
pub const VAULT_CACERT: &str = "VAULT_CACERT";
pub const VAULT_CAPATH: &str = "VAULT_CAPATH";
pub const VAULT_CLIENT_CERT: &str = "VAULT_CLIENT_CERT";
pub const VAULT_CLIENT_KEY: &str = "VAULT_CLIENT_KEY";
pub const VAULT_TLS_SERVER_NAME: &str = "VAULT_TLS_SERVER_NAME";
pub const VAULT_SKIP_VERIFY: &str = "VAULT_SKIP_VERIFY";
use crate::service::activation::{LISTEN_FDS, LISTEN_PID};
use crate::service::notify::{NOTIFY_SOCKET, WATCHDOG_PID, WATCHDOG_USEC};

/// Every environment variable read, with its help line. Options win over
/// variables.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        CONSUL_HTTP_ADDR,
        "Consul address(es) when CONSUL_HOST_PORT is not given",
    ),
    (CONSUL_HTTP_TOKEN, "Consul ACL token"),
    (
        CONSUL_HTTP_TOKEN_FILE,
        "File holding the Consul ACL token (wins over CONSUL_HTTP_TOKEN)",
    ),
    (
        CONSUL_HTTP_SSL,
        "true: agents given without a scheme speak https",
    ),
    (
        CONSUL_HTTP_SSL_VERIFY,
        "false: do not verify the agents' certificates",
    ),
    (CONSUL_CACERT, "CA certificate(s) for https:// agents"),
    (
        CONSUL_CLIENT_CERT,
        "Client certificate for agents that verify clients (with CONSUL_CLIENT_KEY)",
    ),
    (CONSUL_CLIENT_KEY, "Private key of CONSUL_CLIENT_CERT"),
    (
        CONSUL_TLS_SERVER_NAME,
        "Name to verify the agents' certificates against",
    ),
    (
        SSL_CERT_FILE,
        "CA bundle used when no Consul CA is given, instead of the system's",
    ),
    (
        VAULT_CACERT,
        "With --vault-nodes: CA certificate(s) for https:// nodes",
    ),
    (
        VAULT_CAPATH,
        "With --vault-nodes: a directory of CA certificates, when VAULT_CACERT is not set",
    ),
    (
        VAULT_CLIENT_CERT,
        "With --vault-nodes: client certificate for nodes that verify clients (with \
         VAULT_CLIENT_KEY)",
    ),
    (VAULT_CLIENT_KEY, "Private key of VAULT_CLIENT_CERT"),
    (
        VAULT_TLS_SERVER_NAME,
        "With --vault-nodes: name to verify the nodes' certificates against",
    ),
    (
        VAULT_SKIP_VERIFY,
        "With --vault-nodes: true: do not verify the nodes' certificates",
    ),
    (
        NOTIFY_SOCKET,
        "Set by systemd (Type=notify): where to send READY, STATUS, RELOADING, STOPPING and \
         WATCHDOG notifications",
    ),
    (
        WATCHDOG_USEC,
        "Set by systemd (WatchdogSec=): send WATCHDOG=1 every half of it while the event loop \
         and discovery work",
    ),
    (
        WATCHDOG_PID,
        "Set by systemd: the process WATCHDOG_USEC is for",
    ),
    (
        LISTEN_FDS,
        "Set by systemd (socket activation): serve that many passed listening sockets instead \
         of binding",
    ),
    (LISTEN_PID, "Set by systemd: the process LISTEN_FDS is for"),
];

impl Opt {
    /// pico-args' keys for this option.
    pub fn keys(&self) -> pico_args::Keys {
        match self.short {
            Some(short) => [short, self.long].into(),
            None => self.long.into(),
        }
    }

    /// The name argparse uses in its error texts: `-P/--port`, `--bind`.
    pub fn name(&self) -> String {
        match self.short {
            Some(short) => format!("{short}/{}", self.long),
            None => self.long.to_owned(),
        }
    }
}

/// The option declared with this long name.
pub fn find(long: &str) -> &'static Opt {
    OPTIONS
        .iter()
        .find(|o| o.long == long)
        .unwrap_or_else(|| panic!("{long} is not declared in OPTIONS"))
}
