//! Consul as the source of the active Vault node: the health query and its
//! failover between agents (`client`), what an answer says (`answer`,
//! pure), the ACL token file (`token`), TLS to the agents (`crate::discovery::client_tls`) and
//! how to reach them (`settings`). Deciding what answers and errors mean
//! over time is the tracker's job, not this module's.

pub mod answer;
mod client;
pub mod settings;
mod token;

pub use answer::Selection;
pub use client::{Client, FetchBudget};
use std::fmt;
use std::time::Duration;

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
