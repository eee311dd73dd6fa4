//! vault-redirector: answers every HTTP request with a 307 to the active
//! Vault node that Consul knows of. `main` parses the command line, does the
//! start-up checks, and maps failures to the original's exit codes.

mod cli;
mod discovery;
mod http;
mod logging;
mod pem;
mod server;

/// Captured Consul answers, shared with the black-box tests.
#[cfg(test)]
#[path = "../tests/data/fixtures.rs"]
mod fixtures;

use cli::{Config, EXIT_ERROR, EXIT_NO_ACTIVE, Outcome};
use discovery::consul::{self, Selection};
use discovery::{pacing, tracker};
use server::{limits, reactor, responses, tls};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let config = match cli::parse(std::env::args_os().skip(1).collect()) {
        Outcome::Run(config) => config,
        Outcome::Print(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            return ExitCode::SUCCESS;
        }
        Outcome::Fail { message, code } => {
            let _ = std::io::stderr().write_all(message.as_bytes());
            return ExitCode::from(code);
        }
    };
    if let Err(e) = logging::init(config.verbosity) {
        let _ = writeln!(std::io::stderr(), "ERROR: Could not start logging: {e}");
        return ExitCode::from(EXIT_ERROR);
    }
    let outcome = run(&config);
    // Lines are written by logging's own thread: let it finish (bounded).
    logging::flush(logging::FLUSH_TIMEOUT);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

/// Start-up failures print one line and give the exit code.
fn fail(code: u8, message: std::fmt::Arguments<'_>) -> u8 {
    logging::plain(format_args!("ERROR: {message}"));
    code
}

fn run(config: &Config) -> Result<(), u8> {
    // SAFETY: tzset only reads TZ and /etc/localtime; no other thread runs yet.
    unsafe { libc_tzset() };
    if config.log_disable {
        log::warn!(
            "Starting VaultRedirector with ALL LOGGING DISABLED; send SIGUSR1 to PID {} enable logging.",
            std::process::id()
        );
    }
    // Certificate problems are found before anything else happens.
    let tls = match (&config.cert_path, &config.key_path) {
        (Some(cert), Some(key)) => Some(
            tls::TlsSource::load(cert, key, config.tls_resumption)
                .map_err(|e| fail(EXIT_ERROR, format_args!("TLS: {e}")))?,
        ),
        _ => None,
    };

    let mut client =
        consul::Client::new(&config.consul, config.redirect_to_ip, config.poll_interval)
            .map_err(|e| fail(EXIT_ERROR, format_args!("Consul TLS: {e}")))?;
    if config.consul.has_token() {
        log::info!("Sending a Consul ACL token with every query");
    }
    let sent = Instant::now();
    let fetched = client.fetch(consul::Query {
        index: 0,
        wait: None,
    });
    if let Ok(answer) = &fetched {
        tracker::warn_unusable(&answer.unusable);
    }
    let answer = match fetched {
        Ok(answer) if answer.selection == Selection::None => {
            log::error!("NO vault services found with health check passing");
            if !client.has_token() {
                log::warn!("{}", tracker::NO_TOKEN_HINT);
            }
            log::error!("ERROR: Could not get active vault node from Consul. Exiting.");
            return Err(EXIT_NO_ACTIVE);
        }
        Ok(answer) => answer,
        Err(e) => {
            return Err(fail(
                EXIT_ERROR,
                format_args!("Could not poll Consul at {}: {e}", config.consul_host_port),
            ));
        }
    };
    if let Selection::Several { all, .. } = &answer.selection {
        log::warn!(
            "Several passing Vault nodes are tagged active in Consul: {}",
            all.join(", ")
        );
    }
    let Some(active) = answer.selection.target().cloned() else {
        return Err(EXIT_NO_ACTIVE);
    };
    log::warn!("Initial Vault active node: {active}");
    let now = Instant::now();
    let pacing = pacing::Pacing::new(config.poll_interval, answer.index, sent, now);
    let tracker = tracker::Tracker::new(config.poll_interval, active, &answer.agent)
        .with_unusable(answer.unusable);

    let cannot_listen = |e: std::io::Error| {
        fail(
            EXIT_ERROR,
            format_args!("Could not listen on {}: {e}", config.listen),
        )
    };
    let listener = std::net::TcpListener::bind(config.listen).map_err(cannot_listen)?;
    let bound = listener.local_addr().map_err(cannot_listen)?;
    // Signals are registered with the loop before the listening line, so
    // that whoever reads it can signal us at once.
    let mut site = responses::Site::new(
        config.scheme(),
        &config.consul_host_port,
        config.poll_interval.as_secs_f64(),
    );
    site.update(&tracker);
    // Client connections leave a reserve of descriptors for discovery, TLS
    // reloads and logging: they could otherwise take them all.
    let mut conn_limits = config.limits;
    if let Some(soft) = limits::raise_descriptor_limit(conn_limits.max_connections) {
        let cap = limits::connection_cap(conn_limits.max_connections, soft);
        if cap < conn_limits.max_connections {
            log::warn!(
                "Open-file limit is {soft}: accepting at most {cap} connections at once, not {} \
                 ({} descriptors are kept for Consul, TLS files and logging)",
                conn_limits.max_connections,
                limits::DESCRIPTOR_RESERVE
            );
            conn_limits.max_connections = cap;
        }
    }
    let mut reactor =
        reactor::Reactor::new(listener, site, tracker, client, pacing, conn_limits, tls).map_err(
            |e| {
                fail(
                    EXIT_ERROR,
                    format_args!("Could not start the event loop: {e}"),
                )
            },
        )?;
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
    log::warn!(
        "Setting Consul poll interval to {:?} seconds",
        config.poll_interval.as_secs_f64()
    );

    log::warn!("Starting event loop");
    if config.log_disable {
        logging::set_enabled(false);
    }
    reactor
        .run()
        .map_err(|e| fail(EXIT_ERROR, format_args!("Event loop failed: {e}")))
}

unsafe extern "C" {
    #[link_name = "tzset"]
    fn libc_tzset();
}
