//! vault-redirector: answers every HTTP request with a 307 to the active
//! Vault node. `main` parses the command line, starts logging, hands over to
//! `startup`, and turns the outcome into the original's exit codes.
//!
//! The daemon's modules are the library target (`lib.rs`).

use std::io::Write;
use std::process::ExitCode;
use vault_redirector::cli::{self, EXIT_ERROR, Outcome};
use vault_redirector::{logging, startup};

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
