//! Consul: the health query for the active Vault node, parsing its answer
//! into a redirect target, and the poller thread that runs queries off the
//! event loop. Deciding what an answer or error means over time is
//! `tracker`'s job, not this module's.

use mio::Waker;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

/// Connecting to a local agent takes microseconds; a few seconds means trouble.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound for a whole query (connect, request, answer), however slow Consul is.
const MIN_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A health answer for a few nodes is a few KiB; refuse to buffer megabytes.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;
/// How much of an error answer's body goes into the log line.
const MAX_ERROR_TEXT: usize = 200;

/// Where the active Vault node is: the `host:port` the Location points at,
/// as logged and shown in the health JSON.
pub type Target = String;

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
    /// The poller thread is gone (it panicked); restarted on the next poll.
    PollerDied,
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::Transport(e) => write!(f, "{e}"),
            PollError::Status(code, text) if text.is_empty() => {
                write!(f, "Consul answered HTTP {code}")
            }
            PollError::Status(code, text) => write!(f, "Consul answered HTTP {code}: {text}"),
            PollError::Json(e) => write!(f, "Consul's answer is not a health service list: {e}"),
            PollError::PollerDied => write!(f, "the Consul poller thread died; restarting it"),
        }
    }
}

/// Turn a target host into the form a URL authority needs.
pub fn format_target(host: &str, port: u64) -> Target {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parse `/v1/health/service/vault` JSON into the active node. Entries must
/// carry the `active` tag and have every check passing: we ask Consul for
/// exactly that (`?passing&tag=active`), and check again so that a crashed
/// active node, which keeps its tag, is never chosen.
pub fn parse_answer(body: &[u8], use_ip: bool) -> Result<Selection, PollError> {
    let json: Value = serde_json::from_slice(body).map_err(|e| PollError::Json(e.to_string()))?;
    let entries = json
        .as_array()
        .ok_or_else(|| PollError::Json("expected a JSON list".into()))?;
    let mut candidates: Vec<(u64, Target)> = Vec::new();
    for entry in entries {
        let service = &entry["Service"];
        let node = &entry["Node"];
        let tags = service["Tags"].as_array();
        let active = tags.is_some_and(|t| t.iter().any(|t| t.as_str() == Some("active")));
        if !active || !all_checks_passing(&entry["Checks"]) {
            continue;
        }
        let host_key = if use_ip { "Address" } else { "Node" };
        let (Some(host), Some(port)) = (node[host_key].as_str(), service["Port"].as_u64()) else {
            return Err(PollError::Json(format!(
                "an active entry lacks Node.{host_key} or Service.Port"
            )));
        };
        if host.is_empty() {
            return Err(PollError::Json(format!(
                "an active entry has an empty Node.{host_key}"
            )));
        }
        let modified = service["ModifyIndex"].as_u64().unwrap_or(0);
        candidates.push((modified, format_target(host, port)));
    }
    Ok(choose(candidates))
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
    candidates.dedup_by(|a, b| a.1 == b.1);
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

/// How to ask Consul; cloned into the poller thread.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    url: String,
    use_ip: bool,
}

impl Client {
    pub fn new(host_port: &str, use_ip: bool, poll_interval: Duration) -> Client {
        let timeout = poll_interval.clamp(MIN_QUERY_TIMEOUT, MAX_QUERY_TIMEOUT);
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A Consul agent is local or in the same network: never via a proxy.
            .proxy(None)
            .max_redirects(0)
            .user_agent(concat!("vault-redirector/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            url: format!("http://{host_port}/v1/health/service/vault?passing&tag=active"),
            use_ip,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One query, blocking this thread for at most the query timeout.
    pub fn fetch(&self) -> Result<Selection, PollError> {
        let mut response = self
            .agent
            .get(&self.url)
            .call()
            .map_err(|e| PollError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
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
        parse_answer(&body, self.use_ip)
    }
}

/// One finished query, as the event loop receives it.
#[derive(Debug)]
pub struct PollOutcome {
    pub result: Result<Selection, PollError>,
}

/// The event loop's handle on the poller thread: it asks for a poll, the
/// thread answers over a channel and wakes the loop.
pub struct Poller {
    requests: Sender<()>,
    outcomes: Receiver<PollOutcome>,
}

impl Poller {
    pub fn spawn(client: Client, waker: Arc<Waker>) -> std::io::Result<Poller> {
        let (request_tx, request_rx) = mpsc::channel::<()>();
        let (outcome_tx, outcome_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("consul-poller".into())
            .spawn(move || {
                for () in request_rx {
                    log::debug!("Polling active node from: {}", client.url());
                    let result = client.fetch();
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

    /// Ask for one poll; false if the thread is gone.
    pub fn request(&self) -> bool {
        self.requests.send(()).is_ok()
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

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../shared/fixtures/consul/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn real_answer_gives_node_name_or_ip() {
        let body = fixture("health_service_vault_passing_active.json");
        assert_eq!(
            parse_answer(&body, false).unwrap(),
            Selection::One("testnode:8200".into())
        );
        assert_eq!(
            parse_answer(&body, true).unwrap(),
            Selection::One("127.0.0.1:8200".into())
        );
    }

    #[test]
    fn crashed_active_node_with_its_tag_is_skipped() {
        // The dead node (8210) is listed first, still tagged active, check critical.
        let body = fixture("killed_tag_active.json");
        assert_eq!(
            parse_answer(&body, true).unwrap(),
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
            let want = Selection::One(format!("127.0.0.1:{port}"));
            assert_eq!(parse_answer(&fixture(name), true).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn step_down_window_has_no_active() {
        let body = fixture("stepdown_blocking_result_passing.json");
        assert_eq!(parse_answer(&body, false).unwrap(), Selection::None);
        assert_eq!(parse_answer(b"[]", false).unwrap(), Selection::None);
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
            parse_answer(body, true).unwrap(),
            Selection::One("[fd00::1]:8200".into())
        );
        assert_eq!(
            parse_answer(body, false).unwrap(),
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
            parse_answer(body, false).unwrap(),
            Selection::Several {
                chosen: "b:8200".into(),
                all: vec!["b:8200".into(), "a:8200".into()]
            }
        );
    }

    #[test]
    fn warning_checks_are_not_passing() {
        let body = br#"[{"Node":{"Node":"a"},"Service":{"Tags":["active"],"Port":1},
            "Checks":[{"Status":"passing"},{"Status":"warning"}]}]"#;
        assert_eq!(parse_answer(body, false).unwrap(), Selection::None);
    }
}
