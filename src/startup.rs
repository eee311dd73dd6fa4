//! Start-up: from a parsed command line to a running event loop. Loads the
//! listener's TLS files, asks discovery for the first answer, binds, sizes
//! the connection cap to the descriptors there are, and announces what it
//! did in the lines operators know. Every way this can fail is a
//! `StartError`, which `main` turns into one line and an exit code.

use crate::cli::{Config, EXIT_ERROR, EXIT_NO_ACTIVE};
use crate::discovery::consul::{self, Client, PollError};
use crate::discovery::pacing::Pacing;
use crate::discovery::tracker::Tracker;
use crate::discovery::vault::settings::VaultSettings;
use crate::discovery::vault::watch::{FirstRound, FirstRoundError};
use crate::discovery::{Discovery, Started};
use crate::logging;
use crate::server::accept;
use crate::server::limits::{self, Limits};
use crate::server::reactor::Reactor;
use crate::server::responses::Responses;
use crate::server::tls::{TlsError, TlsSource};
use crate::service::Service;
use crate::service::activation::{self, ActivationError};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Instant, SystemTime};

/// Why the daemon could not start, or why its loop ended in failure.
#[derive(Debug)]
pub enum StartError {
    Tls(TlsError),
    ConsulTls(String),
    /// Consul refused, timed out or answered with an error or garbage.
    ConsulUnreachable {
        consul: String,
        error: PollError,
    },
    /// Consul answered, but knows no usable passing active node.
    NoActiveNode,
    VaultTls(String),
    /// No listed Vault node answered.
    VaultUnreachable(PollError),
    /// The Vault nodes answered; none is active.
    NoActiveVaultNode,
    Listen {
        addr: SocketAddr,
        error: io::Error,
    },
    /// The service manager passed sockets we cannot serve.
    Activation(ActivationError),
    EventLoopSetUp(io::Error),
    EventLoopFailed(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::ConsulTls(e) => write!(f, "Consul TLS: {e}"),
            StartError::ConsulUnreachable { consul, error } => {
                write!(f, "Could not poll Consul at {consul}: {error}")
            }
            StartError::NoActiveNode => {
                f.write_str("Could not get active vault node from Consul. Exiting.")
            }
            StartError::VaultTls(e) => write!(f, "Vault TLS: {e}"),
            StartError::VaultUnreachable(e) => write!(f, "Could not poll the Vault nodes: {e}"),
            StartError::NoActiveVaultNode => f.write_str(
                "Could not get active vault node from the Vault nodes (none answers 200 on \
                 /v1/sys/health). Exiting.",
            ),
            StartError::Listen { addr, error } => write!(f, "Could not listen on {addr}: {error}"),
            StartError::Activation(e) => write!(f, "Socket activation: {e}"),
            StartError::EventLoopSetUp(e) => write!(f, "Could not start the event loop: {e}"),
            StartError::EventLoopFailed(e) => write!(f, "Event loop failed: {e}"),
        }
    }
}

impl StartError {
    /// The original's exit codes: 3 for "no active node", 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::NoActiveNode | StartError::NoActiveVaultNode => EXIT_NO_ACTIVE,
            _ => EXIT_ERROR,
        }
    }

    /// One line on stderr. "No active node" is an error log line, as the
    /// original printed it; the others are plain `ERROR: ...` lines.
    pub fn report(&self) {
        match self {
            StartError::NoActiveNode | StartError::NoActiveVaultNode => {
                log::error!("ERROR: {self}")
            }
            _ => logging::plain(format_args!("ERROR: {self}")),
        }
    }
}

/// Start, then run the loop until a signal ends it.
pub fn run(config: &Config) -> Result<(), StartError> {
    // SAFETY: tzset only reads TZ and /etc/localtime; the only other thread
    // (the log writer) does not touch the time zone.
    unsafe { libc_tzset() };
    if config.log_disable {
        log::warn!(
            "Starting VaultRedirector with ALL LOGGING DISABLED; send SIGUSR1 to PID {} enable logging.",
            std::process::id()
        );
    }
    // Certificate problems are found before anything else happens.
    let tls = match (&config.cert_path, &config.key_path) {
        (Some(cert), Some(key)) => {
            Some(TlsSource::load(cert, key, config.tls_resumption).map_err(StartError::Tls)?)
        }
        _ => None,
    };
    let (started, tracker) = match &config.vault {
        Some(vault) => first_vault_answer(vault, config)?,
        None => first_answer(config)?,
    };
    let (listeners, bound) = listen(config)?;
    let mut responses = Responses::new(
        config.scheme(),
        config.consul_host_port.as_deref(),
        config.poll_interval.as_secs_f64(),
    )
    .serve_metrics(config.metrics);
    responses.update(&tracker);
    // Signals are registered with the loop before the listening line, so
    // that whoever reads it can signal us at once.
    let mut reactor = Reactor::new(
        listeners,
        responses,
        |waker| Discovery::start(started, tracker, waker),
        connection_limits(config.limits),
        config.drain,
        tls,
        Service::from_env(),
    )
    .map_err(StartError::EventLoopSetUp)?;
    announce(config, bound);
    if config.log_disable {
        logging::set_enabled(false);
    }
    reactor.run().map_err(StartError::EventLoopFailed)
}

/// The sockets the service manager passed (`LISTEN_FDS`), or one we bind
/// as the options say; and the address to announce (the first one's).
fn listen(config: &Config) -> Result<(Vec<TcpListener>, SocketAddr), StartError> {
    let bind_error = |error| StartError::Listen {
        addr: config.listen,
        error,
    };
    let listeners = match activation::inherited_listeners().map_err(StartError::Activation)? {
        Some(passed) => {
            let addrs: Vec<String> = passed
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .map(|a| a.to_string())
                .collect();
            log::warn!(
                "Socket activation: serving the {} listening socket(s) passed by the service \
                 manager ({}) instead of binding; --bind and -P are not used",
                passed.len(),
                addrs.join(", ")
            );
            passed
        }
        None => vec![accept::bind_listener(config.listen, config.reuse_port).map_err(bind_error)?],
    };
    let bound = listeners[0].local_addr().map_err(bind_error)?;
    Ok((listeners, bound))
}

/// Ask every Vault node once, before listening: none answering is exit 1,
/// none active exit 3, as with Consul.
fn first_vault_answer(
    vault: &VaultSettings,
    config: &Config,
) -> Result<(Started, Tracker), StartError> {
    let mut first = FirstRound::run(vault, config.poll_interval).map_err(|e| match e {
        FirstRoundError::Tls(e) => StartError::VaultTls(e),
        FirstRoundError::Unreachable(e) => StartError::VaultUnreachable(e),
        FirstRoundError::NoActive => StartError::NoActiveVaultNode,
    })?;
    let tracker = first
        .tracker(config.poll_interval)
        .ok_or(StartError::NoActiveVaultNode)?;
    let started = Started::Vault {
        first,
        interval: config.poll_interval,
    };
    Ok((started, tracker))
}

/// Ask Consul once, before listening: unreachable is exit 1, no active
/// node exit 3, as the original did.
fn first_answer(config: &Config) -> Result<(Started, Tracker), StartError> {
    let mut client = Client::new(&config.consul, config.redirect_to_ip, config.poll_interval)
        .map_err(StartError::ConsulTls)?;
    let has_token = config.consul.has_token();
    if has_token {
        log::info!("Sending a Consul ACL token with every query");
    }
    let sent = Instant::now();
    let answer = client
        .fetch(consul::Query {
            index: 0,
            wait: None,
        })
        .map_err(|error| StartError::ConsulUnreachable {
            consul: config.consul_host_port.clone().unwrap_or_default(),
            error,
        })?;
    let pacing = Pacing::new(config.poll_interval, answer.index, sent, Instant::now());
    let tracker = Tracker::first(config.poll_interval, has_token, answer, SystemTime::now())
        .ok_or(StartError::NoActiveNode)?;
    Ok((Started::Consul { client, pacing }, tracker))
}

/// Client connections leave a reserve of descriptors for discovery, TLS
/// reloads and logging: they could otherwise take them all.
fn connection_limits(mut wanted: Limits) -> Limits {
    let Some(soft) = limits::raise_descriptor_limit(wanted.max_connections) else {
        return wanted;
    };
    let cap = limits::connection_cap(wanted.max_connections, soft);
    if cap < wanted.max_connections {
        log::warn!(
            "Open-file limit is {soft}: accepting at most {cap} connections at once, not {} \
             ({} descriptors are kept for Consul, TLS files and logging)",
            wanted.max_connections,
            limits::DESCRIPTOR_RESERVE
        );
        wanted.max_connections = cap;
    }
    wanted
}

/// The original's start-up lines (tests and operators read the listening
/// address from them).
fn announce(config: &Config, bound: SocketAddr) {
    if config.cert_path.is_some() {
        log::warn!(
            "Setting TCP TLS listener on port {} for HTTPS requests (listening on {bound})",
            bound.port()
        );
        if !config.https {
            log::warn!(
                "Listening with TLS but redirecting to http:// (no -S): Vault's Go client refuses \
                 an https->http redirect"
            );
        }
    } else {
        log::warn!(
            "Setting TCP listener on port {} for HTTP requests (listening on {bound})",
            bound.port()
        );
    }
    match &config.vault {
        None => log::warn!(
            "Setting Consul poll interval to {:?} seconds",
            config.poll_interval.as_secs_f64()
        ),
        Some(vault) => log::warn!(
            "Setting Vault node poll interval to {:?} seconds ({} nodes, no Consul)",
            config.poll_interval.as_secs_f64(),
            vault.nodes.len()
        ),
    }
    log::warn!("Starting event loop");
}

// Declared by hand: the libc crate binds tzset only for Windows. POSIX
// asks for it before localtime_r, so that the health JSON's local times
// follow TZ and /etc/localtime.
unsafe extern "C" {
    #[link_name = "tzset"]
    fn libc_tzset();
}
