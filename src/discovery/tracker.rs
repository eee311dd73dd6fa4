//! What the redirector believes about the active Vault node over time: each
//! answer or error of the source (Consul, or the Vault nodes) updates it, with the grace period that keeps an
//! agent restart invisible to clients. Logs the lines operators grep for.
//! No I/O besides logging.

use crate::discovery::consul::{Answer, PollError, Selection};
use crate::discovery::target::Target;
use crate::discovery::vault::watch::NodeReport;
use crate::logging;
use crate::server::health::local_timestamp;
use log::Level;
use std::time::{Duration, Instant, SystemTime};

/// Poll intervals without an answer from Consul after which the last known
/// active node is dropped (`pacing` makes a last try just before).
pub const GRACE_INTERVALS: u32 = 2;

/// What discovery has seen since start-up, counted as the loop takes its
/// outcomes (for the metrics page).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    /// Queries Consul answered ("no active node" is an answer too).
    pub answers: u64,
    /// Queries that failed (refused, timed out, error status, bad JSON).
    pub errors: u64,
    /// Changes of the active node, to or from none included.
    pub active_changes: u64,
    /// Wall-clock time of the last answer.
    pub last_answer: Option<SystemTime>,
}

/// What the redirector believes about the active node: the node (or none),
/// since when discovery has been failing, and what the health JSON shows
/// about the last answer. Fed every answer and error; drops the node when
/// the grace period runs out; logs the changes operators grep for.
pub struct Tracker {
    grace: Duration,
    counts: Counts,
    /// An ACL token is sent: an empty answer is then not explained by its
    /// absence.
    has_token: bool,
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
    /// Each listed node's state, when the source is the Vault nodes.
    vault_nodes: Option<Vec<NodeReport>>,
}

/// Shown while Consul answers "no active node" and we send no ACL token.
/// Shown while Consul's only active entries are not usable redirect targets.
pub const UNUSABLE_HINT: &str = "Consul lists an active Vault node whose name or port cannot be \
     a redirect target: it is skipped (see the log)";

/// Log why active entries of an answer were skipped; every value in them is
/// escaped already (`target::UnusableTarget`).
fn warn_unusable(unusable: &[String]) {
    for reason in unusable {
        log::warn!("Skipping an active Vault node that is not a usable redirect target: {reason}");
    }
}

pub const NO_TOKEN_HINT: &str = "Consul returned no passing active Vault node and no Consul ACL token is \
     configured: with default-deny ACLs Consul answers an empty list. Set CONSUL_HTTP_TOKEN, \
     CONSUL_HTTP_TOKEN_FILE or --consul-token-file (policy: service read, node_prefix read)";

impl Tracker {
    /// Start from the start-up poll's answer; `None` when it names no
    /// active node (the daemon then exits, as the original did).
    /// `has_token` says whether an ACL token is sent with the queries.
    pub fn first(
        poll_interval: Duration,
        has_token: bool,
        answer: Answer,
        wall: SystemTime,
    ) -> Option<Tracker> {
        let mut tracker = Tracker {
            grace: poll_interval * GRACE_INTERVALS,
            counts: Counts::default(),
            has_token,
            active: None,
            failing_since: None,
            last_poll_time: None,
            last_error: None,
            agent: None,
            warning: None,
            unusable: Vec::new(),
            vault_nodes: None,
        };
        let active = tracker.take_answer(answer, wall)?;
        log::warn!("Initial Vault active node: {active}");
        tracker.active = Some(active);
        Some(tracker)
    }

    pub fn counts(&self) -> Counts {
        self.counts
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

    pub fn vault_nodes(&self) -> Option<&[NodeReport]> {
        self.vault_nodes.as_deref()
    }

    /// The Vault-nodes source's view of every listed node.
    pub fn set_vault_nodes(&mut self, nodes: Vec<NodeReport>) {
        self.vault_nodes = Some(nodes);
    }

    /// An answer ("no active node" is an answer too).
    pub fn on_answer(&mut self, answer: Answer, wall: SystemTime) {
        let active = self.take_answer(answer, wall);
        self.set_active(active);
    }

    /// What every answer does, the first included: clear the error, note
    /// the time and the agent, log what is odd about it, and say which node
    /// it names.
    fn take_answer(&mut self, answer: Answer, wall: SystemTime) -> Option<Target> {
        let Answer {
            selection,
            unusable,
            agent,
            ..
        } = answer;
        self.failing_since = None;
        self.counts.answers += 1;
        self.counts.last_answer = Some(wall);
        self.last_poll_time = Some(local_timestamp(wall));
        self.last_error = None;
        self.agent = Some(agent);
        if unusable != self.unusable {
            warn_unusable(&unusable);
            self.unusable = unusable;
        }
        let hint = match selection {
            Selection::None if !self.unusable.is_empty() => Some(UNUSABLE_HINT),
            Selection::None if !self.has_token => Some(NO_TOKEN_HINT),
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
        selection.target().cloned()
    }

    /// A failed poll: logged every time (even with `-l`); the last known node
    /// is kept until the grace period since the first failure runs out.
    pub fn on_error(&mut self, error: &PollError, now: Instant) {
        logging::always(
            Level::Error,
            format_args!("Exception encountered when polling active node: {error}"),
        );
        self.last_error = Some(error.to_string());
        self.counts.errors += 1;
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
            self.counts.active_changes += 1;
        }
    }
}

/// A tracker that knows `node` as the active one, for other modules' tests.
#[cfg(test)]
pub fn knowing(node: &str) -> Tracker {
    let answer = tests::answer(Selection::One(node.into()), "consul:8500");
    Tracker::first(Duration::from_secs(5), false, answer, SystemTime::now()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    pub fn answer(selection: Selection, agent: &str) -> Answer {
        Answer {
            selection,
            unusable: Vec::new(),
            index: None,
            agent: agent.to_owned(),
        }
    }

    fn tracker() -> Tracker {
        knowing("a:8200")
    }

    #[test]
    fn the_first_answer_must_name_an_active_node() {
        let none = answer(Selection::None, "consul:8500");
        assert!(Tracker::first(5 * SECOND, false, none, SystemTime::now()).is_none());
        let t = tracker();
        assert_eq!(t.active(), Some("a:8200"));
        assert_eq!(t.agent(), Some("consul:8500"));
        assert!(t.last_poll_time().is_some());
        let several = Selection::Several {
            chosen: "b:8200".into(),
            all: vec!["b:8200".into(), "a:8200".into()],
        };
        let t = Tracker::first(5 * SECOND, false, answer(several, "c:1"), SystemTime::now());
        assert_eq!(t.unwrap().active(), Some("b:8200"));
    }

    #[test]
    fn answers_replace_the_node_and_the_poll_time() {
        let mut t = tracker();
        t.on_answer(
            answer(Selection::One("b:8200".into()), "consul:8500"),
            SystemTime::now(),
        );
        assert_eq!(t.active(), Some("b:8200"));
        t.on_answer(answer(Selection::None, "consul-b:8500"), SystemTime::now());
        assert_eq!(t.active(), None);
        assert_eq!(t.agent(), Some("consul-b:8500"));
        assert_eq!(t.warning(), Some(NO_TOKEN_HINT), "no token is sent");
        assert!(t.last_poll_time().is_some());
        let first = answer(Selection::One("a:8200".into()), "consul:8500");
        let mut with_token = Tracker::first(5 * SECOND, true, first, SystemTime::now()).unwrap();
        with_token.on_answer(answer(Selection::None, "consul:8500"), SystemTime::now());
        assert_eq!(with_token.warning(), None, "a token is sent");
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
            answer(Selection::One("a:8200".into()), "consul:8500"),
            SystemTime::now(),
        );
        assert_eq!(t.last_error(), None);
        t.on_error(&PollError::Status(500, "boom".into()), t0 + 11 * SECOND);
        assert_eq!(t.active(), Some("a:8200"));
    }

    #[test]
    fn answers_errors_and_changes_are_counted_once_each() {
        let t0 = Instant::now();
        let mut t = tracker();
        let started = t.counts();
        assert_eq!(
            (started.answers, started.errors, started.active_changes),
            (1, 0, 0)
        );
        let same = || answer(Selection::One("a:8200".into()), "consul:8500");
        let at = SystemTime::UNIX_EPOCH + 1_000 * SECOND;
        t.on_answer(same(), at);
        t.on_answer(answer(Selection::One("b:8200".into()), "c:1"), at);
        t.on_answer(answer(Selection::None, "c:1"), at);
        let err = PollError::Transport("refused".into());
        t.on_error(&err, t0);
        t.on_error(&err, t0 + SECOND);
        t.on_answer(same(), at + SECOND);
        let counts = t.counts();
        assert_eq!((counts.answers, counts.errors), (5, 2));
        // a -> b -> None -> a; an unchanged answer is no change.
        assert_eq!(counts.active_changes, 3);
        assert_eq!(counts.last_answer, Some(at + SECOND));
        // Dropped at the end of the grace period: a change too.
        t.on_error(&err, t0 + 20 * SECOND);
        t.on_error(&err, t0 + 40 * SECOND);
        assert_eq!(t.active(), None);
        assert_eq!(t.counts().active_changes, 4);
        assert_eq!(t.counts().last_answer, Some(at + SECOND), "errors leave it");
    }
}
