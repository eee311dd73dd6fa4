//! vault-redirector: answers every HTTP request with a 307 to the active
//! Vault node. `main` parses the command line, starts logging, hands over to
//! `startup`, and turns the outcome into the original's exit codes.
//!
//! The two halves of the daemon: `discovery` finds the active node on a
//! thread of its own; `server` answers clients on the event loop; the
//! discovery thread hands each answer to the loop (`discovery::poller`);
//! `service` speaks to the service manager (systemd) when there is one.

mod cli;
mod discovery;
mod http;
mod logging;
mod pem;
mod server;
mod service;
mod startup;

/// Captured Consul answers, shared with the black-box tests.
#[cfg(test)]
#[path = "../tests/data/fixtures.rs"]
mod fixtures;

use cli::{EXIT_ERROR, Outcome};
use std::io::Write;
use std::process::ExitCode;

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
    let code = match startup::run(&config) {
        Ok(()) => 0,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    };
    // Lines are written by logging's own thread: let it finish (bounded).
    logging::flush(logging::FLUSH_TIMEOUT);
    ExitCode::from(code)
}
