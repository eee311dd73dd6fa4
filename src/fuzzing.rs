//! Entry points for the fuzz targets under `tests/fuzz/`: the parsers that
//! read what peers and operators send, each from bytes, with no I/O. Thin
//! on purpose: the same code the daemon runs, reached without making the
//! daemon's modules public.

use crate::discovery::consul::answer::parse_answer;
use crate::discovery::consul::{Answer, Selection};
use crate::discovery::target::format_target;
use crate::discovery::tracker::Tracker;
use crate::discovery::vault::node::{self, NodeStatus};
use crate::server::responses::Responses;
use crate::server::session::{Answering, Session};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// The active node the request-stream harness redirects to.
const ACTIVE_HOST: &str = "vault-a";
const ACTIVE_PORT: u64 = 8200;
/// Every Location the harness may send starts with this.
pub const LOCATION_PREFIX: &str = "http://vault-a:8200/";

/// One connection's request stream, answered as the daemon answers it
/// (plain HTTP, `ACTIVE_NODE` active), without sockets.
pub struct RequestStream {
    responses: Responses,
    session: Session,
}

/// What one `feed` did.
pub struct Fed {
    /// The session will close once its answers are out.
    pub closing: bool,
    /// Requests remain held back: feed nothing to get their answers.
    pub held_back: bool,
}

impl RequestStream {
    pub fn new() -> Option<RequestStream> {
        let active = format_target(ACTIVE_HOST, ACTIVE_PORT).ok()?;
        let answer = Answer {
            selection: Selection::One(active),
            unusable: Vec::new(),
            index: None,
            agent: "consul:8500".to_owned(),
        };
        let tracker = Tracker::first(Duration::from_secs(5), false, answer, SystemTime::now())?;
        let mut responses = Responses::new("http", Some("consul:8500"), 5.0);
        responses.update(&tracker);
        Some(RequestStream {
            responses,
            session: Session::default(),
        })
    }

    /// Feed one read's bytes; answers (up to about `out_budget` bytes) are
    /// appended to `out`.
    pub fn feed(&mut self, input: &[u8], out_budget: usize, out: &mut Vec<u8>) -> Fed {
        let how = Answering {
            responses: &self.responses,
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
            stopping: false,
            out_budget,
        };
        self.session.feed(input, &how, out);
        Fed {
            closing: self.session.is_closing(),
            held_back: self.session.holds_back_requests(),
        }
    }
}

/// A Consul `/v1/health/service/<name>` answer: the active node's
/// `host:port` if the answer names a usable one, and how many active
/// entries were skipped; `Err` (as text) if the answer is refused.
pub fn consul_answer(body: &[u8], use_ip: bool) -> Result<(Option<String>, usize), String> {
    let parsed = parse_answer(body, use_ip).map_err(|e| e.to_string())?;
    let target = parsed.selection.target().map(|t| t.to_string());
    Ok((target, parsed.unusable.len()))
}

/// A Vault `/v1/sys/health` status code, classified (its name).
pub fn vault_health_status(code: Option<u16>) -> &'static str {
    NodeStatus::classify(code).name()
}

/// A Vault `/v1/sys/leader` answer's `leader_address`.
pub fn vault_leader_address(body: &[u8]) -> Option<String> {
    node::leader_address(body)
}

/// PEM text split into sections (kind name, DER length), or the error.
pub fn pem_sections(pem: &[u8]) -> Result<Vec<(String, usize)>, String> {
    let sections = crate::pem::sections_of(pem)?;
    Ok(sections
        .into_iter()
        .map(|(kind, der)| (format!("{kind:?}"), der.len()))
        .collect())
}
