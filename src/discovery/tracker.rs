//! What the redirector believes about the active Vault node over time: each
//! Consul answer or error updates it, with the grace period that keeps an
//! agent restart invisible to clients. Logs the lines operators grep for.
//! No I/O besides logging.

use crate::discovery::consul::{PollError, Selection};
use crate::discovery::target::Target;
use crate::logging;
use crate::server::health::local_timestamp;
use log::Level;
use std::time::{Duration, Instant, SystemTime};

/// Poll intervals without an answer from Consul after which the last known
/// active node is dropped (`pacing` makes a last try just before).
pub const GRACE_INTERVALS: u32 = 2;

pub struct Tracker {
    grace: Duration,
    active: Option<Target>,
    /// Since when every query has failed (None while Consul answers). With
    /// blocking queries, answers may be a poll interval apart in a quiet
    /// cluster, so the grace period counts from the first failure, not from
    /// the last answer; a hung agent fails at the query's timeout.
    failing_since: Option<Instant>,
    /// Local wall-clock time of the last answer, for the health JSON.
    last_poll_time: Option<String>,
    last_error: Option<String>,
    /// The Consul agent that answered last.
    agent: Option<String>,
    /// Something odd about the answers that is not an error (shown in health).
    warning: Option<String>,
    /// Why the last answer's skipped entries were skipped, so that an
    /// unchanged answer is not logged again at every poll.
    unusable: Vec<String>,
}

/// Shown while Consul answers "no active node" and we send no ACL token.
/// Shown while Consul's only active entries are not usable redirect targets.
pub const UNUSABLE_HINT: &str = "Consul lists an active Vault node whose name or port cannot be \
     a redirect target: it is skipped (see the log)";

/// Log why active entries of an answer were skipped; every value in them is
/// escaped already (`target::UnusableTarget`).
pub fn warn_unusable(unusable: &[String]) {
    for reason in unusable {
        log::warn!("Skipping an active Vault node that is not a usable redirect target: {reason}");
    }
}

pub const NO_TOKEN_HINT: &str = "Consul returned no passing active Vault node and no Consul ACL token is \
     configured: with default-deny ACLs Consul answers an empty list. Set CONSUL_HTTP_TOKEN, \
     CONSUL_HTTP_TOKEN_FILE or --consul-token-file (policy: service read, node_prefix read)";

impl Tracker {
    /// Start from the answer of the start-up poll.
    pub fn new(poll_interval: Duration, initial: Target, agent: &str) -> Tracker {
        Tracker {
            grace: poll_interval * GRACE_INTERVALS,
            active: Some(initial),
            failing_since: None,
            last_poll_time: Some(local_timestamp(SystemTime::now())),
            last_error: None,
            agent: Some(agent.to_owned()),
            warning: None,
            unusable: Vec::new(),
        }
    }

    /// The start-up answer's skipped entries (logged by then), so that the
    /// same answer is not logged again at the next poll.
    pub fn with_unusable(mut self, unusable: Vec<String>) -> Tracker {
        self.unusable = unusable;
        self
    }

    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    pub fn active(&self) -> Option<&str> {
        self.active.as_ref().map(Target::as_str)
    }

    pub fn last_poll_time(&self) -> Option<&str> {
        self.last_poll_time.as_deref()
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// An answer from `agent` ("no active node" is an answer too), with the
    /// reasons its unusable active entries were skipped; `has_token` says
    /// whether an ACL token was sent.
    pub fn on_answer(
        &mut self,
        selection: Selection,
        unusable: Vec<String>,
        agent: &str,
        has_token: bool,
        wall: SystemTime,
    ) {
        self.failing_since = None;
        self.last_poll_time = Some(local_timestamp(wall));
        self.last_error = None;
        if self.agent.as_deref() != Some(agent) {
            self.agent = Some(agent.to_owned());
        }
        if unusable != self.unusable {
            warn_unusable(&unusable);
            self.unusable = unusable;
        }
        let hint = match selection {
            Selection::None if !self.unusable.is_empty() => Some(UNUSABLE_HINT),
            Selection::None if !has_token => Some(NO_TOKEN_HINT),
            _ => None,
        };
        if hint == Some(NO_TOKEN_HINT) && self.warning.as_deref() != hint {
            log::warn!("{NO_TOKEN_HINT}");
        }
        self.warning = hint.map(str::to_owned);
        match &selection {
            Selection::None => log::error!("NO vault services found with health check passing"),
            Selection::One(t) => log::info!("Got active node as: {t}"),
            Selection::Several { chosen, all } => log::warn!(
                "Several passing Vault nodes are tagged active in Consul ({}); redirecting to {chosen}",
                all.join(", ")
            ),
        }
        self.set_active(selection.target().cloned());
    }

    /// A failed poll: logged every time (even with `-l`); the last known node
    /// is kept until the grace period since the first failure runs out.
    pub fn on_error(&mut self, error: &PollError, now: Instant) {
        logging::always(
            Level::Error,
            format_args!("Exception encountered when polling active node: {error}"),
        );
        self.last_error = Some(error.to_string());
        self.failing_since.get_or_insert(now);
        self.expire(now);
    }

    /// Drop the active node once Consul has failed for the grace period.
    /// Returns true if it changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        if self.expiry().is_some_and(|at| now >= at) {
            self.set_active(None);
            return true;
        }
        false
    }

    /// When `expire` will drop the node, if Consul is failing.
    pub fn expiry(&self) -> Option<Instant> {
        self.active.as_ref()?;
        self.failing_since.map(|since| since + self.grace)
    }

    fn set_active(&mut self, new: Option<Target>) {
        if new != self.active {
            let name = |t: &Option<Target>| t.as_ref().map_or("None", Target::as_str).to_owned();
            log::warn!(
                "Active vault node changed from {} to {}",
                name(&self.active),
                name(&new)
            );
            self.active = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn tracker() -> Tracker {
        Tracker::new(5 * SECOND, "a:8200".into(), "consul:8500")
    }

    #[test]
    fn answers_replace_the_node_and_the_poll_time() {
        let mut t = tracker();
        t.on_answer(
            Selection::One("b:8200".into()),
            Vec::new(),
            "consul:8500",
            false,
            SystemTime::now(),
        );
        assert_eq!(t.active(), Some("b:8200"));
        t.on_answer(
            Selection::None,
            Vec::new(),
            "consul-b:8500",
            true,
            SystemTime::now(),
        );
        assert_eq!(t.active(), None);
        assert_eq!(t.agent(), Some("consul-b:8500"));
        assert_eq!(t.warning(), None, "a token was sent");
        t.on_answer(
            Selection::None,
            Vec::new(),
            "consul-b:8500",
            false,
            SystemTime::now(),
        );
        assert_eq!(t.warning(), Some(NO_TOKEN_HINT));
        assert!(t.last_poll_time().is_some());
    }

    #[test]
    fn errors_keep_the_node_for_two_intervals() {
        let t0 = Instant::now();
        let mut t = tracker();
        let err = PollError::Transport("connection refused".into());
        let poll_time = t.last_poll_time().map(str::to_owned);
        t.on_error(&err, t0 + 5 * SECOND);
        assert_eq!(t.active(), Some("a:8200"));
        assert_eq!(t.last_error(), Some("connection refused"));
        assert_eq!(
            t.last_poll_time().map(str::to_owned),
            poll_time,
            "failed polls leave the time"
        );
        t.on_error(&err, t0 + 10 * SECOND);
        assert_eq!(t.active(), Some("a:8200"), "5 s of failures: kept");
        t.on_error(&err, t0 + 15 * SECOND);
        assert_eq!(t.active(), None, "two intervals of failures: dropped");
    }

    #[test]
    fn the_grace_period_counts_from_the_first_failure_and_expires_on_the_timer() {
        let t0 = Instant::now();
        let mut t = tracker();
        // A quiet cluster: no answer for a long time is no failure.
        assert_eq!(t.expiry(), None);
        assert!(!t.expire(t0 + 60 * SECOND));
        let err = PollError::Transport("timed out".into());
        t.on_error(&err, t0 + 60 * SECOND);
        t.on_error(&err, t0 + 61 * SECOND);
        assert_eq!(t.expiry(), Some(t0 + 70 * SECOND));
        assert!(!t.expire(t0 + 69 * SECOND));
        assert!(t.expire(t0 + 70 * SECOND));
        assert_eq!(t.active(), None);
        assert_eq!(t.expiry(), None);
    }

    #[test]
    fn an_answer_clears_the_error_and_restarts_the_grace() {
        let t0 = Instant::now();
        let mut t = tracker();
        t.on_error(&PollError::Status(500, "boom".into()), t0 + 5 * SECOND);
        t.on_answer(
            Selection::One("a:8200".into()),
            Vec::new(),
            "consul:8500",
            false,
            SystemTime::now(),
        );
        assert_eq!(t.last_error(), None);
        t.on_error(&PollError::Status(500, "boom".into()), t0 + 11 * SECOND);
        assert_eq!(t.active(), Some("a:8200"));
    }
}
